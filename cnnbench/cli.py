"""`cnnbench <command> [hydra arguments...]`: picks the command, hands the rest to Hydra.

Each command is a Hydra app whose primary config is ``conf/<command>.yaml``,
so the whole Hydra command line works after the command word: overrides
(``optim.lr=0.1``, ``+key=v``, ``~key``), ``-m`` sweeps, ``--cfg job``,
``--help``, ``-cn``. Mistakes in that command line end in one line on
stderr and exit status 2; a run stopped by a signal (checkpoint saved,
resumable) exits with status 3; a run whose worker process died or hung
ends in one line and status 1 (cnnbench/errors.py).
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import os
import sys
import tempfile
import traceback
from typing import Callable, Optional, Sequence

from cnnbench import __version__
from cnnbench.errors import EXIT_FAILED, EXIT_USER_ERROR, RunFailed, UserError

# command -> (one-line description, "module:function" run inside Hydra)
COMMANDS = {
    "train": ("train a model, evaluating top-1/top-5 every epoch", "cnnbench.commands.train:train_command"),
    "eval": ("evaluate a saved checkpoint (checkpoint=PATH)", "cnnbench.commands.eval:eval_command"),
    "summary": ("per-layer table of a model: shapes, params, MACs, receptive field", "cnnbench.commands.summary:summary_command"),
    "bench": ("images/s, step time, memory and FLOP/s of a model's step (model=NAME)", "cnnbench.commands.bench:bench_command"),
    "report": ("one table of a sweep's groups: mean ± std over seeds, deltas with 95% CIs, plots", "cnnbench.commands.report:report_command"),
}

USAGE = """usage: cnnbench <command> [overrides...] [hydra flags...]

commands:
{commands}

Each command takes Hydra overrides (key=value, +key=value, ~key), -m for
sweeps, --cfg job to print the composed config, and --help for its options.
Examples:
  cnnbench train
  cnnbench train model=lenet5 data=digits optim.lr=0.05 trainer.epochs=10
  cnnbench train -m regularization.momentum=0,0.9
  cnnbench eval checkpoint=outputs/<date>/<time>_lenet5_digits/checkpoints/last.pt
"""


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {desc}" for name, (desc, _) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"cnnbench {__version__}")
        return 0
    command, hydra_args = argv[0], argv[1:]
    if command not in COMMANDS:
        return fail("cnnbench", f"unknown command '{command}'; choose one of: {', '.join(COMMANDS)}")
    _, target = COMMANDS[command]
    if command == "report":  # `cnnbench report DIR...`: Hydra takes key=value only, so bare folders become report.paths
        from cnnbench.commands.report import paths_as_override

        hydra_args = paths_as_override(hydra_args)
    try:
        status = run_hydra_app(command, target, hydra_args)
    except UserError as err:
        return fail(f"cnnbench {command}", str(err))
    except RunFailed as err:
        return fail(f"cnnbench {command}", str(err), EXIT_FAILED)
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves and exits 3), or twice
        print(f"cnnbench {command}: interrupted", file=sys.stderr)
        return 130  # the shell's status for a process ended by SIGINT
    except Exception as err:  # noqa: BLE001 - only config/CLI errors are caught below
        message = explain_config_error(err, command) or explain_os_error(err)
        if message is not None and not os.environ.get("CNNBENCH_TRACEBACK"):
            return fail(f"cnnbench {command}", message)
        # A bug: its traceback, as an uncaught exception prints it, and the status it exits with.
        # Returned rather than raised, so the run's objects are freed (below) before exit.
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        # A failed run's frames, in reference cycles with its error, may still hold DataLoader
        # iterators. Collected now, they shut their workers down; left to the interpreter's
        # exit, which waits for every child process, workers that ignore SIGTERM hang it.
        gc.collect()
    return status


def fail(prog: str, message: str, status: int = EXIT_USER_ERROR) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def load_task(target: str) -> Callable:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def run_hydra_app(command: str, target: str, hydra_args: list[str]) -> int:
    import hydra

    from cnnbench.config import CONF_DIR, register_schemas

    if not CONF_DIR.is_dir():
        raise UserError(f"config folder {CONF_DIR} is missing; reinstall with `pip install -e .` from a clone")
    register_schemas()
    register_resolvers()
    # Hydra prints its own multi-line reports unless told to re-raise; we
    # re-raise and turn them into one line in main().
    os.environ["HYDRA_FULL_ERROR"] = "1"
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

    def job(cfg):
        from cnnbench.commands.sweep import in_multirun, run_sweep_job

        if command == "train" and in_multirun():  # a failing job is recorded, the sweep goes on
            return run_sweep_job(cfg, lambda job_cfg: run_checked(job_cfg, command, target), f"cnnbench {command}")
        # A user mistake found inside the job ends the process here, so Hydra
        # adds no "Error executing job" report around the one line.
        try:
            check_config(cfg, command)
        except UserError as err:
            if command == "train":  # Hydra made the run folder already; nothing ran in it
                from cnnbench.commands.resume import discard_job_folder

                discard_job_folder()
            raise SystemExit(fail(f"cnnbench {command}", str(err))) from None
        try:
            # Imported here, after Hydra has composed and checked the config:
            # torch and friends take seconds to import, a config mistake none.
            return load_task(target)(cfg)
        except UserError as err:
            fail(f"cnnbench {command}", str(err))
        except RunFailed as err:  # ended here, or Hydra would print its report before the line
            fail(f"cnnbench {command}", str(err))
            raise SystemExit(EXIT_FAILED) from None
        except (ConfigAttributeError, ConfigKeyError, MissingMandatoryValue) as err:
            fail(f"cnnbench {command}", f"the config has no value for '{err.full_key}', which this command needs")
        raise SystemExit(EXIT_USER_ERROR)

    app = hydra.main(version_base=None, config_path=str(CONF_DIR), config_name=command)(job)
    if command == "train":
        hydra_args = train_args(hydra_args)
    saved_argv = sys.argv
    sys.argv = [f"cnnbench-{command}", *hydra_args]
    try:
        app()
    finally:
        sys.argv = saved_argv
        if command == "train":
            from cnnbench.commands.sweep import keep_first_sweep_record

            keep_first_sweep_record(hydra_args)
    return sweep_status()


def train_args(hydra_args: list[str]) -> list[str]:
    """The command line of `cnnbench train`, with where a resumed run, a continued sweep and
    a torchrun process other than the first go."""
    from cnnbench.commands.resume import continue_in_run_folder, override_value

    hydra_args = continue_in_run_folder(hydra_args)
    if any(arg in ("-m", "--multirun") for arg in hydra_args):
        from cnnbench.commands.sweep import save_sweep_record

        save_sweep_record(override_value(hydra_args, "hydra.sweep.dir"))
    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun every process composes the config; only the first
        # one's run folder is used (train() shares it), so the others get
        # a scratch folder and leave no record behind.
        if any(arg in ("-m", "--multirun") for arg in hydra_args):
            raise UserError("sweeps (-m) cannot run under torchrun; sweep with a Hydra launcher instead")
        hydra_args = [*hydra_args, "hydra.output_subdir=null", f"hydra.run.dir={tempfile.mkdtemp(prefix='cnnbench-')}"]
    return hydra_args


def run_checked(cfg, command: str, target: str):
    """One sweep job: the config checked, then the command; a mistake raised as a UserError."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

    check_config(cfg, command)
    try:
        return load_task(target)(cfg)
    except (ConfigAttributeError, ConfigKeyError, MissingMandatoryValue) as err:
        raise UserError(f"the config has no value for '{err.full_key}', which this command needs") from None


def sweep_status() -> int:
    """The exit status of the command: a sweep's prints its summary line (2 if a job failed)."""
    from cnnbench.commands.sweep import sweep_summary

    summary = sweep_summary()
    if summary is None:
        return 0
    line, status = summary
    print(line, file=sys.stderr if status else sys.stdout)
    return status


def register_resolvers() -> None:
    """``${cnnbench.suffix:VALUE}``: ``_VALUE``, or nothing when VALUE is null (conf/common.yaml's sweep folder)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("cnnbench.suffix", lambda value: "" if value in (None, "") else f"_{value}",
                                    replace=True)


def check_config(cfg, command: str) -> None:
    """Refuse what Hydra lets through but no code would read: a key the schema does not have
    (``+optim.new_key=1``, ``++x=1``: Hydra adds keys to a structured config on request), a
    broken interpolation, and a ``???`` left unset. Each would otherwise be ignored or fail late."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    from cnnbench.config import SCHEMAS

    unknown = unknown_keys(cfg, SCHEMAS.get(command))
    if unknown:
        raise UserError(unknown_key_message(unknown[0], command) + "; remove it from the command line or config")
    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{missing[0]} has no value (???); give it one, e.g. {missing[0]}=VALUE")
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        raise UserError(f"{err.full_key} has no value (???); give it one, e.g. {err.full_key}=VALUE") from None
    except InterpolationResolutionError as err:
        raise UserError(f"{err.full_key}: {first_line(str(err))}; fix the ${{...}} reference or give a value") from None


def missing_keys(node, prefix: str = "") -> list[str]:
    """The keys left ``???``, found without resolving anything (a broken reference elsewhere
    would raise first)."""
    from omegaconf import OmegaConf

    found = []
    keys = node.keys() if OmegaConf.is_dict(node) else range(len(node))
    for key in keys:
        child = node._get_node(key)
        where = f"{prefix}{key}" if OmegaConf.is_dict(node) else f"{prefix.rstrip('.')}[{key}]"
        if child._is_missing():
            found.append(where)
        elif OmegaConf.is_config(child) and not child._is_none() and not child._is_interpolation():
            found += missing_keys(child, f"{where}.")
    return found


def unknown_keys(node, schema, prefix: str = "") -> list[str]:
    """The keys of ``node`` (a composed config) that ``schema`` (a dataclass) has no field for;
    below a field that is not a dataclass (a dict of blocks, a list of layers) anything goes."""
    from omegaconf import OmegaConf

    if schema is None or not dataclasses.is_dataclass(schema):
        return []
    fields, found = field_types(schema), []
    for key in node.keys():
        child = node._get_node(key)  # the node itself: reading the value would resolve it
        if key not in fields:
            found.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(fields[key]) and OmegaConf.is_dict(child):
            found += unknown_keys(child, fields[key], f"{prefix}{key}.")
    return found


def explain_config_error(err: BaseException, command: str) -> Optional[str]:
    """One line for a Hydra/OmegaConf error caused by the command line or a config file.

    Returns None for anything else (a bug), which is then raised as is.
    """
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

    from cnnbench.errors import yaml_syntax_message

    if yaml_syntax_message(err):
        return yaml_syntax_message(err)
    if isinstance(err, MissingConfigException):
        if "submitit_slurm" in str(err):  # conf/hydra/launcher/slurm.yaml builds on the plugin's own config
            return "hydra/launcher=slurm needs hydra-submitit-launcher: pip install -e \".[slurm]\" (or pip install hydra-submitit-launcher)"
        group, _, choice = (err.missing_cfg_file or "").rpartition("/")
        if group and err.options is not None:
            options = ", ".join(sorted(err.options)) or "(none)"
            return f"unknown {group} '{choice}'; choose one of: {options}"
        return first_line(str(err))
    if not isinstance(err, (HydraException, OmegaConfBaseException)):
        return None
    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        return unknown_key_message(cause.full_key, command)
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        choices = enum_choices(cause)
        if choices is not None:
            return f"{cause.full_key} '{cause.value}' is unknown; choose one of: {', '.join(choices)}"
        return f"{cause.full_key}: {first_line(cause.msg)}"
    if cause is not None and cause is not err:
        return f"{first_line(str(err))} {first_line(str(cause))}"
    return first_line(str(err))


def explain_os_error(err: BaseException) -> Optional[str]:
    """One line for a folder Hydra could not make or write (the run folder, its record, its log)."""
    if not isinstance(err, OSError) or not err.filename:
        return None
    return (f"cannot write {err.filename}: {err.strerror or err}; run from a folder you can write to, "
            "or choose one with hydra.run.dir=PATH (hydra.sweep.dir=PATH for -m)")


def enum_choices(err) -> Optional[list[str]]:
    """The choices of the Enum-typed key (cnnbench.config.Choice) a ValidationError refused a value for;
    None for any other error, such as null for a key that may not be null."""
    from omegaconf import EnumNode

    node = getattr(err, "child_node", None)
    if not isinstance(node, EnumNode) or getattr(err, "value", None) is None:
        return None
    return [member.name for member in node.enum_type]


def unknown_key_message(full_key: str, command: str) -> str:
    from cnnbench.config import SCHEMAS

    *parents, leaf = full_key.split(".")
    schema = SCHEMAS.get(command)
    for name in parents:
        schema = field_types(schema).get(name) if schema else None
    where = ".".join(parents) or "the top level"
    message = f"unknown config key '{full_key}'"
    if schema is not None and dataclasses.is_dataclass(schema):
        message += f"; valid keys in {where}: {', '.join(sorted(field_types(schema)))}"
    elsewhere = [key for key in schema_keys(SCHEMAS.get(command)) if key.endswith("." + leaf) and key != full_key]
    if elsewhere:
        message += f" (did you mean {' or '.join(elsewhere)}?)"
    return message


def field_types(schema) -> dict:
    import typing

    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def schema_keys(schema, prefix: str = "") -> list[str]:
    if schema is None or not dataclasses.is_dataclass(schema):
        return []
    keys = []
    for name, kind in field_types(schema).items():
        keys.append(prefix + name)
        keys += schema_keys(kind, prefix + name + ".")
    return keys


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
