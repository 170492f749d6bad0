"""The promises of README's "Guarantees": stop signals, run folders, no silent wrong results,
one-line errors. In-process where the point is what a run leaves behind; the real CLI in a
subprocess where the point is the process (exit status, stderr, signals)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from cnnbench.errors import EXIT_STOPPED, EXIT_USER_ERROR, UserError
from tests.conftest import run_command
from tests.test_cli import assert_one_line_error
from tests.test_imagenet import imagenet_root  # noqa: F401 - the fixture: a tree of tiny JPEGs

# A run of a second or two: LeNet-5 on a few synthetic images, one step per epoch.
TINY = ["model=lenet5", "data=synthetic", "data.train_size=16", "data.val_size=8", "data.batch_size=16",
        "data.channels=1", "data.mean=[0.5]", "data.std=[0.29]", "augment=none", "trainer.accelerator=cpu",
        "trainer.threads=1", "trainer.progress_bar=false", "trainer.epochs=1"]


def files_of(folder: Path) -> dict:
    """Every file under ``folder`` -> its bytes, to tell that nothing was rewritten."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1. signals ---------------------------------------------------------------------------------


def test_sigint_is_a_stop_request_and_a_second_one_interrupts():
    from cnnbench.engine.preemption import PreemptionFlag

    with PreemptionFlag() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.requested and flag.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stopped_run_exits_3_with_a_quoted_resume_command_and_resumes(tmp_path, monkeypatch):
    import cnnbench.engine.train as engine

    folder = tmp_path / "it's a run"
    monkeypatch.setattr(engine, "agree_to_stop", lambda run, step, due, requested: True)  # as if signalled
    with pytest.raises(SystemExit) as stopped:
        run_command("train", *TINY, f"hydra.run.dir='{tmp_path}/it\\'s a run'", cwd=tmp_path)
    assert stopped.value.code == EXIT_STOPPED
    assert (folder / "checkpoints" / "last.pt").is_file() and not (folder / "results.json").exists()
    log = (folder / "train.log").read_text()
    command = log.split("continue with: ")[1].splitlines()[0]
    words = shlex.split(command)  # what a POSIX shell hands the CLI
    assert words[:2] == ["cnnbench", "train"] and len(words) == 3, command
    monkeypatch.undo()
    resumed = run_command("train", *TINY, words[2], cwd=tmp_path)
    assert resumed.run_dir == folder and (folder / "results.json").is_file()


def start_cli(cwd: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "CNNBENCH_"))}
    return subprocess.Popen([sys.executable, "-m", "cnnbench", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} never appeared: {process.communicate()}")
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_3_without_a_traceback(tmp_path):
    process = start_cli(tmp_path, "train", *TINY, "trainer.epochs=1000", "trainer.checkpoint_every_n_steps=1",
                        "hydra.run.dir=run")
    wait_for(tmp_path / "run" / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_STOPPED, stderr
    assert "Traceback" not in stderr and "stopped by SIGINT" in stdout and "continue with: cnnbench train trainer.resume=" in stdout
    assert not (tmp_path / "run" / "results.json").exists()


def forked_children(pid: int) -> list:
    """The processes ``pid`` forked (its DataLoader workers), oldest first, from /proc."""
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(child) for child in children if Path(f"/proc/{child}/cmdline").read_bytes() == own)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the DataLoader workers in /proc")
def test_a_killed_dataloader_worker_is_one_line_and_sigterm_spares_them(tmp_path, imagenet_root):
    args = ["train", "model=lenet5", "data=imagenet", f"data.root={imagenet_root}", "data.num_classes=3",
            "data.image_size=32", "augment.resize=36", "eval.resize=36", "data.workers=2", "data.on_corrupt=skip",
            "data.batch_size=2", "trainer=cpu", "trainer.epochs=1000", "trainer.checkpoint_every_n_steps=1",
            "trainer.progress_bar=false"]
    process = start_cli(tmp_path, *args, "hydra.run.dir=run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    wait_for(last, process)
    worker = forked_children(process.pid)[0]
    os.kill(worker, signal.SIGKILL)  # what the out-of-memory killer does to a worker
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert stderr.startswith(f"cnnbench train: error: DataLoader worker (pid {worker}) was killed by signal SIGKILL")
    assert len(stderr.strip().splitlines()) == 1, stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert "is killed by signal" in log and "error: DataLoader worker" in log  # the detail stays in the log
    torch.load(last, weights_only=True)  # whole: a kill mid-save leaves a temporary file, never half a last.pt

    saved = last.stat().st_mtime_ns
    process = start_cli(tmp_path, "train", "trainer.resume=run")  # the checkpoint it left resumes
    deadline = time.monotonic() + 120
    while last.stat().st_mtime_ns == saved:  # until it trains (and saves) again
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)  # what a scheduler or a terminal does: the main process and its workers
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_STOPPED, stderr
    assert "killed by signal" not in stderr and "stopped by SIGTERM" in stdout


# --- 2. run folders -----------------------------------------------------------------------------


@pytest.fixture
def finished_run(tmp_path) -> Path:
    run_command("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    return tmp_path / "run"


def test_a_new_run_never_overwrites_a_used_folder(finished_run, tmp_path):
    before = files_of(finished_run)
    with pytest.raises(UserError, match="already holds a run.*trainer.resume=.*another folder"):
        run_command("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert files_of(finished_run) == before


def test_a_refused_run_leaves_no_folder(run):
    with pytest.raises(UserError, match="trainer.devices"):
        run("train", *TINY, "trainer.devices=0")
    assert not (run.cwd / "outputs").exists()


def test_an_error_after_training_started_is_in_train_log(run, monkeypatch):
    import cnnbench.engine.train as engine

    def broken(*args, **kwargs):
        raise UserError("the disk went away")

    monkeypatch.setattr(engine, "evaluate", broken)
    with pytest.raises(UserError):
        run("train", *TINY, "hydra.run.dir=run")
    assert "error: the disk went away" in (run.cwd / "run" / "train.log").read_text()


def test_resume_cleans_partial_files_counts_all_wall_time_and_keeps_the_record(finished_run, tmp_path):
    record = files_of(finished_run / ".hydra")
    for partial in (finished_run / "checkpoints" / ".last.pt.x1y2.tmp", finished_run / ".results.json.x1y2.tmp"):
        partial.write_bytes(b"half a file")
    last = finished_run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["progress"]["wall_time_s"] = 1000.0  # not a tensor: the checksum still holds
    torch.save(state, last)

    run_command("train", *TINY, "trainer.resume=run", "trainer.epochs=2", cwd=tmp_path)
    results = json.loads((finished_run / "results.json").read_text())
    assert results["epochs"] == 2 and results["wall_time_s"] >= 1000.0, "the first segment's time counts"
    assert not list(finished_run.rglob(".*.tmp"))
    assert files_of(finished_run / ".hydra") == record, "the command line that started the run stays"
    (entry,) = yaml.safe_load((finished_run / "resume_history.yaml").read_text())
    assert entry["overrides"][-2:] == ["trainer.resume=run", "trainer.epochs=2"] and "trainer.epochs=2" in entry["command"]


def test_resuming_a_finished_run_says_how_to_extend_it(finished_run, tmp_path):
    before = files_of(finished_run)
    with pytest.raises(UserError, match="finished run.*trainer.epochs=11"):
        run_command("train", *TINY, "trainer.resume=run", cwd=tmp_path)
    assert files_of(finished_run) == before, "no results.json rewritten, no resume recorded"


def test_a_refused_resume_leaves_the_run_as_it_was(finished_run, tmp_path):
    before = files_of(finished_run)
    with pytest.raises(UserError, match="changes the run being resumed"):
        run_command("train", *TINY, "trainer.resume=run", "trainer.epochs=2", "optim.lr=0.5", cwd=tmp_path)
    assert files_of(finished_run) == before


# --- 3. silent wrong results --------------------------------------------------------------------


@pytest.mark.parametrize("layers, shape", [
    ([["conv", {"out": 6, "kernel": 5}], "flatten", ["linear", {"out": 7}]], "(7,)"),
    ([["conv", {"out": 10, "kernel": 1}]], "(10, 32, 32)"),
])
def test_a_model_must_output_one_score_per_class(layers, shape):
    from hydra import compose, initialize_config_dir

    from cnnbench.config import CONF_DIR, register_schemas
    from cnnbench.models.api import model_from_config

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["model=lenet5"])
    cfg.model.layers = layers
    with pytest.raises(UserError) as refused:
        model_from_config(cfg, "conf/model/lenet5.yaml")
    message = str(refused.value)
    assert message.startswith(f"conf/model/lenet5.yaml: the model's output shape is {shape}"), message
    assert "data.num_classes=10 needs (10,)" in message


@pytest.mark.parametrize("override, fragments", [
    ("+optim.new_key=1", ("unknown config key 'optim.new_key'", "valid keys in optim", "lr")),
    ("++x=1", ("unknown config key 'x'", "valid keys in the top level")),
    ("+foo=1", ("unknown config key 'foo'",)),
    ("optim.lr=${nope}", ("optim.lr", "nope")),
    ("data.num_classes=???", ("data.num_classes has no value",)),
    ("hydra.run.dir=a_file/run", ("cannot write a_file/run", "hydra.run.dir=PATH")),
])
def test_what_hydra_lets_through_is_refused_in_one_line(main_cli, override, fragments):
    (main_cli.cwd / "a_file").write_text("a file, not a folder")
    assert_one_line_error(main_cli("train", override), *fragments)
    assert not (main_cli.cwd / "outputs").exists(), "a refused run leaves no folder"


# --- 4. one line, not a traceback ---------------------------------------------------------------


def model_file(cli, text: str) -> str:
    (cli.cwd / "conf" / "model").mkdir(parents=True, exist_ok=True)
    (cli.cwd / "conf" / "model" / "mine.yaml").write_text(text)
    return f"hydra.searchpath=[file://{cli.cwd / 'conf'}]"


@pytest.mark.parametrize("text, fragments", [
    ("name: mine\nlayers:\n  - [conv, {out: 6, kernel: 5\n  - relu\n", ("mine.yaml, line 3, column 12", "flow mapping")),
    ("name: mine\nlayers:\n\t- relu\n", ("mine.yaml, line 3, column 1", "tabs")),
])
def test_a_yaml_syntax_error_names_file_line_and_column(main_cli, text, fragments):
    assert_one_line_error(main_cli("train", "model=mine", model_file(main_cli, text)), *fragments)


@pytest.mark.parametrize("text, fragments", [
    ("name: mine\nblocks:\n  b: {layers: [relu, b]}\nlayers: [b]\n", ("block b uses itself", "b > b")),
    ("name: mine\nlayers:\n  - [conv, {out: 6, kernel: 0}]\n", ("layers[0] (conv)", "argument kernel", "at least 1")),
])
def test_model_file_mistakes_are_one_line_through_the_cli(main_cli, text, fragments):
    assert_one_line_error(main_cli("train", "model=mine", model_file(main_cli, text)), *fragments)


@pytest.mark.parametrize("row, fragments", [
    (["conv", {"out": 6, "kernel": 5.5}], ("layers[0] (conv)", "argument kernel", "5.5")),
    (["conv", {"out": "six", "kernel": 3}], ("layers[0] (conv)", "argument out", "'six'")),
    (["conv", {"out": 6, "kernel": 0}], ("layers[0] (conv)", "argument kernel", "at least 1")),
    (["maxpool", {"kernel": [2, 0]}], ("layers[0] (maxpool)", "argument kernel", "at least 1")),
])
def test_bad_op_arguments_name_row_and_argument_without_torch_warnings(row, fragments):
    from cnnbench.models.builder import build_model

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torch warning printed before the error would fail here
        with pytest.raises(UserError) as refused:
            build_model({"name": "m", "layers": [row, "flatten"]}, (1, 8, 8), source="m.yaml")
    for fragment in fragments:
        assert fragment in str(refused.value), str(refused.value)


def test_a_block_that_uses_itself_through_another_is_refused():
    from cnnbench.models.builder import build_model

    spec = {"name": "m", "blocks": {"a": {"layers": ["b"]}, "b": {"layers": ["relu", "a"]}}, "layers": ["a"]}
    with pytest.raises(UserError, match=r"block a uses itself \(a > b > a\)"):
        build_model(spec, (1, 8, 8), source="m.yaml")


def test_exit_statuses_are_distinct():
    assert (EXIT_USER_ERROR, EXIT_STOPPED) == (2, 3)
