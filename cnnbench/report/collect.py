"""Find run folders, read what each left behind, and group them by the config keys that vary."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from cnnbench.errors import UserError

# Keys that say where or how a run went, never what it computed: they never split groups.
IGNORED = ("run_name", "trainer.resume", "trainer.progress_bar", "data.root", "data.download")
SEED = "seed"  # the replicate axis: runs differing only in it are one group


@dataclass
class Run:
    path: Path
    config: Dict[str, Any]  # the resolved config.yaml, flattened to dotted keys
    published: Dict[str, Any]  # model.published, as the model file wrote it
    overrides: List[str]  # .hydra/overrides.yaml: what the command line set
    results: Optional[dict]  # results.json; None when the run did not finish
    history: List[dict]  # metrics.jsonl, one record per epoch
    problem: Optional[str] = None  # why the run is not in the table: "unfinished: ..." / "failed: ..."

    @property
    def finished(self) -> bool:
        return self.problem is None

    @property
    def seed(self) -> Any:
        return self.config.get(SEED)


@dataclass
class Group:
    values: Dict[str, Any]  # the varying keys shown for the group -> their value
    runs: List[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={format_value(v)}" for k, v in self.values.items()) or "all runs"


def format_value(value: Any) -> str:
    """A value as one would type it in an override (true, null, 0.9)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def natural_key(path: Path) -> list:
    # Job folders are numbers: 10 comes after 9, not after 1.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_run_dirs(paths: Sequence[Path]) -> List[Path]:
    """Every folder at or under ``paths`` holding a config.yaml (Hydra's own copy in .hydra/ excepted)."""
    found = {}
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path} is not a folder; give sweep or run folders")
        for config in path.rglob("config.yaml"):
            if ".hydra" not in config.relative_to(path).parts:
                found[config.parent.resolve()] = config.parent
    return sorted(found.values(), key=natural_key)


def read_yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    # OmegaConf's loader, not plain PyYAML: it reads 1e-3 as a number, as the config did.
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return flat


def read_history(path: Path) -> List[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash says nothing; the others still do
    return records


def last_log_line(run_dir: Path) -> str:
    log = run_dir / "train.log"
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
    # Drop the "[2026-01-01 10:00:00,000] " time stamp the log file adds.
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[-1]) if lines else ""


def read_run(run_dir: Path) -> Run:
    try:
        tree = read_yaml(run_dir / "config.yaml")
    except Exception as err:  # noqa: BLE001 - a broken file is a reason to list, not to stop the report
        return Run(run_dir, {}, {}, [], None, [], f"failed: config.yaml unreadable ({first_line(err)})")
    tree = tree if isinstance(tree, dict) else {}
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = read_yaml(overrides_file) if overrides_file.is_file() else []
    published = (tree.get("model") or {}).get("published") or {}
    run = Run(run_dir, flatten(tree), published, list(overrides or []), None, read_history(run_dir / "metrics.jsonl"))
    results_file = run_dir / "results.json"
    if results_file.is_file():
        try:
            run.results = json.loads(results_file.read_text())
        except json.JSONDecodeError as err:
            run.problem = f"failed: results.json unreadable ({first_line(err)})"
        return run
    run.problem = unfinished_reason(run)
    return run


def unfinished_reason(run: Run) -> str:
    last = last_log_line(run.path)
    if "error" in last.lower() or last.startswith("Traceback"):
        return f"failed: {last}"
    epochs = run.config.get("trainer.epochs", "?")
    done = max((r.get("epoch", 0) for r in run.history), default=0)
    return f"unfinished: {done} of {epochs} epochs done (no results.json; still running, stopped or killed)"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def collect_runs(paths: Sequence[Path]) -> List[Run]:
    dirs = find_run_dirs(paths)
    if not dirs:
        raise UserError(f"no run folders (folders with a config.yaml) under {', '.join(map(str, paths))}")
    return [read_run(d) for d in dirs]


def identity(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def varying_keys(runs: Sequence[Run], ignore: Iterable[str] = ()) -> List[str]:
    """Config keys whose values differ between runs, in config order; seed and the ignored keys left out."""
    ignored = (*IGNORED, *ignore)
    runs = [run for run in runs if run.config]  # an unreadable config.yaml would make every key vary
    keys: Dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.config))
    return [k for k in keys if not is_ignored(k, ignored) and len({identity(r.config.get(k)) for r in runs}) > 1]


def is_ignored(key: str, ignored: Sequence[str]) -> bool:
    return key == SEED or key.startswith("hydra.") or any(key == i or key.startswith(i + ".") for i in ignored)


def follows_from(key: str, other: str, runs: Sequence[Run]) -> bool:
    """Whether every value of ``other`` comes with one value of ``key`` (key is a function of other)."""
    seen: Dict[str, str] = {}
    for run in runs:
        value, given = identity(run.config.get(key)), identity(run.config.get(other))
        if seen.setdefault(given, value) != value:
            return False
    return True


def shown_keys(keys: Sequence[str], runs: Sequence[Run]) -> List[str]:
    """The varying keys worth a column: a key of a config group that follows from the group's varying
    `name` (model.layers from model.name, data.mean from data.name) adds nothing and is left out."""
    shown = []
    for key in keys:
        group, _, rest = key.partition(".")
        name = f"{group}.name"
        if rest and key != name and name in keys and follows_from(key, name, runs):
            continue
        shown.append(key)
    return shown


def group_runs(runs: Sequence[Run], keys: Sequence[str], shown: Sequence[str]) -> List[Group]:
    """Runs with equal values of every varying key, in the order their first run was found."""
    groups: Dict[str, Group] = {}
    for run in runs:
        ident = identity([run.config.get(k) for k in keys])
        groups.setdefault(ident, Group({k: run.config.get(k) for k in shown})).runs.append(run)
    return list(groups.values())
