"""End to end: `cnnbench train` on the bundled digits, then `cnnbench eval` of its checkpoint.

The runs go in-process (tests/conftest.py `run_command`); sweeps and the
one-line error of a diverging run go through the real CLI. Runs whose
numbers are compared with each other, or whose device shows in the
assertions, are on the CPU (`trainer.accelerator=cpu`): bit for bit there.
"""

from __future__ import annotations

import json

import pytest
import torch

from cnnbench.engine.checkpoint import atomic_write, save_checkpoint
from cnnbench.engine.speed import cpu_has_native_bf16
from cnnbench.errors import UserError
from tests.conftest import run_command

CPU = "trainer.accelerator=cpu"


def only(paths):
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One 2-epoch run with default settings (on the CPU), in the default outputs/ layout."""
    cwd = tmp_path_factory.mktemp("train")
    result = run_command("train", "trainer.epochs=2", CPU, cwd=cwd)
    run_dir = only(cwd.glob("outputs/*/*_lenet5_digits"))
    assert result.run_dir.resolve() == run_dir.resolve()
    return result, run_dir


def test_run_folder_holds_everything(trained_run):
    _, run_dir = trained_run
    for name in ("config.yaml", ".hydra/config.yaml", "train.log", "metrics.jsonl", "results.json",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert not list(run_dir.rglob("*.tmp")), "no temporary files may be left behind"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"] == "lenet5" and results["data"] == "digits" and results["epochs"] == 2
    assert results["params"] == 61706
    assert 0 <= results["top1"] <= results["top5"] <= 100


def test_tensorboard_has_scalars_filters_and_hparams(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = trained_run
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0}).Reload()
    tags = events.Tags()
    for scalar in ("train/loss", "train/top1", "train/loss_step", "val/top1", "val/top5", "lr", "speed/train_images_per_s"):
        assert scalar in tags["scalars"], scalar
    assert [e.step for e in events.Scalars("val/top1")] == [1, 2]
    assert "filters/first_layer" in tags["images"]
    hparams = [path for path in (run_dir / "tb").iterdir() if path.is_file()]
    assert any(b"hparams" in path.read_bytes() for path in hparams)


def test_results_describe_the_run(trained_run):
    _, run_dir = trained_run
    results = json.loads((run_dir / "results.json").read_text())
    # trainer.precision=auto on the CPU: bf16 where the CPU has it in hardware, else fp32.
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert results["macs"] == 416520 and results["precision"] == expected
    assert results["precision_reason"].startswith("trainer.precision=auto")
    assert results["device"].startswith("cpu") and results["versions"]["torch"] == torch.__version__
    assert len(results["config_hash"]) == 16 and "git_commit" in results


def test_train_prints_epochs_and_a_summary(trained_run):
    result, run_dir = trained_run
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout
    assert "top-1" in result.stdout and "top-5" in result.stdout
    assert "done: lenet5 on digits, 2 epochs" in result.stdout
    assert str(run_dir.name) in result.stdout
    assert "done: lenet5 on digits, 2 epochs" in (run_dir / "train.log").read_text(), "the same lines, with times"


def test_eval_reproduces_the_numbers_the_run_reported(trained_run, run):
    _, run_dir = trained_run
    trained = json.loads((run_dir / "results.json").read_text())
    result = run("eval", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", "accelerator=cpu")
    evaluated = json.loads(only(run.cwd.glob("outputs/*/*_eval/results.json")).read_text())
    for key in ("top1", "top5", "loss"):
        assert evaluated[key] == trained[key], key
    assert evaluated["epoch"] == 2 and evaluated["samples"] == 299
    per_class = evaluated["per_class_top1"]
    assert len(per_class) == 10 and all(0 <= value <= 100 for value in per_class)
    assert f"top-1 {trained['top1']:.2f}%" in result.stdout


def test_eval_accepts_a_run_folder_and_another_split(trained_run, run):
    _, run_dir = trained_run
    result = run("eval", f"run={run_dir}", "eval.split=train", "accelerator=cpu")
    assert "train (1498 images" in result.stdout


def test_resume_continues_to_the_same_weights(tmp_path, run):
    """Two epochs straight == one epoch, then resume for the second (on CPU, bit for bit).

    The step schedule keeps the lr independent of trainer.epochs, so both
    runs see the same lr at every step.
    """
    full_run = tmp_path / "full"
    run("train", "trainer.epochs=2", "schedule=step", CPU, f"hydra.run.dir={full_run}")
    run("train", "trainer.epochs=1", "schedule=step", CPU, f"hydra.run.dir={tmp_path / 'first'}")
    resumed = run("train", "trainer.epochs=2", "schedule=step", CPU, f"trainer.resume={tmp_path / 'first'}",
                  f"hydra.run.dir={tmp_path / 'resumed'}")
    assert "resumed from" in resumed.stdout and "epoch 2/2" in resumed.stdout and "epoch 1/2" not in resumed.stdout
    expected = torch.load(full_run / "checkpoints" / "last.pt", weights_only=False)
    got = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    for key, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][key]), key
    assert got["metrics"] == expected["metrics"]


@pytest.mark.slow
def test_sweep_writes_one_folder_per_job(cli):
    result = cli("train", "-m", "trainer.epochs=1", "regularization.momentum=0,0.9")
    assert result.returncode == 0, result.stderr
    sweep = only(cli.cwd.glob("outputs/multirun/*/*"))  # one folder per sweep: <date>/<time>
    for job in ("0", "1"):
        assert (sweep / job / "results.json").is_file()
        # What Hydra itself writes in a real run (run_command reproduces it in-process).
        assert (sweep / job / ".hydra" / "overrides.yaml").is_file() and (sweep / job / "train.log").is_file()
    assert "done: lenet5 on digits" in (sweep / "1" / "train.log").read_text()
    assert "momentum: 0.0" in (sweep / "0" / "config.yaml").read_text()
    assert "momentum: 0.9" in (sweep / "1" / "config.yaml").read_text()


def test_multi_crop_final_evaluation_is_reported(run):
    result = run("train", "trainer.epochs=1", "eval.crops=2", "hydra.run.dir=run")
    assert "val with 2 crops" in result.stdout
    results = json.loads((run.cwd / "run" / "results.json").read_text())
    assert 0 <= results["top1_2crop"] <= 100 and "loss_2crop" in results
    assert results["unreadable_skipped"] == 0


def test_divergence_never_reaches_a_checkpoint(run):
    # A UserError: the CLI's one line on stderr with exit status 2, no traceback (tests/test_cli.py).
    with pytest.raises(UserError, match="became"):
        run("train", "trainer.epochs=1", "optim.lr=1e12", "trainer.checkpoint_every_n_steps=1", "hydra.run.dir=run")
    last = run.cwd / "run" / "checkpoints" / "last.pt"
    if last.exists():  # what was saved before the run stopped is finite
        state = torch.load(last, weights_only=False)
        assert all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.slow
def test_a_diverging_run_stops_with_a_clear_message(cli):
    result = cli("train", "trainer.epochs=1", "optim.lr=1e6", "hydra.run.dir=run")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "training loss became" in result.stderr and "by step" in result.stderr and "optim.lr" in result.stderr


@pytest.mark.parametrize("failure", ["oserror", "torch_save"])
def test_a_full_disk_leaves_the_old_file_and_says_so(tmp_path, failure):
    target = tmp_path / "last.pt"
    save_checkpoint(target, {"epoch": 1})
    before = target.read_bytes()

    def broken_write(handle):
        handle.write(b"partial")
        disk_full = OSError(28, "No space left on device")
        if failure == "oserror":
            raise disk_full
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file") from disk_full

    with pytest.raises(UserError, match="cannot write .*last.pt: No space left on device; the previous last.pt is as it was"):
        atomic_write(target, broken_write)
    assert target.read_bytes() == before and torch.load(target, weights_only=False)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_other_write_errors_are_not_hidden(tmp_path):
    with pytest.raises(ZeroDivisionError):
        atomic_write(tmp_path / "x", lambda handle: 1 / 0)
    assert not list(tmp_path.iterdir())


def test_a_resumed_run_keeps_its_own_settings(run):
    run("train", "trainer.epochs=1", "optim.lr=0.1", "schedule=step", "hydra.run.dir=run")
    # A UserError: the CLI's one line on stderr with exit status 2, no traceback (tests/test_cli.py).
    with pytest.raises(UserError, match="optim.lr=0.3 changes the run being resumed"):
        run("train", "trainer.resume=run", "optim.lr=0.3")
    resumed = run("train", "trainer.resume=run", "trainer.epochs=2")  # epochs may change, lr comes from the run
    assert resumed.run_dir.resolve() == (run.cwd / "run").resolve(), "a resumed run goes on in its own folder"
    assert "resumed from" in resumed.stdout and "epoch 1/2" not in resumed.stdout
    assert "lr: 0.1" in (run.cwd / "run" / "config.yaml").read_text()
    assert json.loads((run.cwd / "run" / "results.json").read_text())["epochs"] == 2
