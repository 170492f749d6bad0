"""The command line: help, command dispatch, and one-line config errors.

What only a process shows (the console script, what --help and --cfg print,
an unknown command's status) runs the real CLI in a subprocess. The
batteries of one-line errors run its ``main`` in this process (the
``main_cli`` fixture): the same exit status and stderr, without starting an
interpreter and importing torch for every case.
"""

from __future__ import annotations

import importlib.metadata

import pytest


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_console_script_is_declared():
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("cnnbench") == "cnnbench.cli:main"


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "summary", "bench", "report"):
        assert f"\n  {command} " in result.stdout


def test_command_help_lists_config_groups(cli):
    result = cli("train", "--help")
    assert result.returncode == 0
    assert "model: " in result.stdout and "lenet5" in result.stdout
    assert "regularization: " in result.stdout and "alexnet" in result.stdout


def test_cfg_job_prints_the_composed_config(cli):
    result = cli("train", "--cfg", "job", "optim.lr=0.123")
    assert result.returncode == 0, result.stderr
    assert "name: lenet5" in result.stdout
    assert "lr: 0.123" in result.stdout
    assert not (cli.cwd / "outputs").exists(), "--cfg must not start a run"


def test_unknown_command(cli):
    assert_one_line_error(cli("trian"), "unknown command 'trian'", "train")


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("optim.lr_rate=0.1", ("optim.lr_rate", "valid keys in optim", "lr")),
        ("optim.momentum=0.5", ("optim.momentum", "regularization.momentum")),
        ("trainer.epochs=ten", ("trainer.epochs", "'ten'")),
        ("model=alexnett", ("unknown model 'alexnett'", "lenet5")),
        ("regularization=strong", ("unknown regularization 'strong'", "alexnet", "none")),
        pytest.param("data.batch_size=100000", ("data.batch_size=100000", "larger than the training set"),
                     marks=pytest.mark.slow),
        pytest.param("trainer.devices=-1", ("trainer.devices=-1", "no CUDA GPU"), marks=pytest.mark.slow),
        pytest.param("trainer.devices=0", ("trainer.devices must be",), marks=pytest.mark.slow),
        pytest.param("augment=alexnet", ("augment=alexnet", "folder dataset", "data=digits"), marks=pytest.mark.slow),
    ],
)
def test_config_mistakes_fail_in_one_line(main_cli, override, fragments, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # "no CUDA GPU" on a machine with one too
    assert_one_line_error(main_cli("train", override), *fragments)
    assert not list(main_cli.cwd.glob("outputs/**/checkpoints")), "nothing may be trained"


def test_a_config_mistake_ends_the_process_in_one_line(cli):
    """The same promise through a real process (`python -m cnnbench`): status 2, one line."""
    assert_one_line_error(cli("train", "optim.lr_rate=0.1"), "optim.lr_rate", "valid keys in optim")


@pytest.mark.slow
def test_eval_needs_a_checkpoint(main_cli):
    assert_one_line_error(main_cli("eval"), "checkpoint=PATH")
    assert_one_line_error(main_cli("eval", "checkpoint=missing.pt"), "missing.pt", "does not exist")
    assert_one_line_error(main_cli("eval", "checkpoint=a.pt", "run=b"), "not both")


@pytest.mark.slow
def test_eval_rejects_a_file_that_is_not_a_checkpoint(main_cli):
    (main_cli.cwd / "notes.pt").write_text("not a checkpoint")
    assert_one_line_error(main_cli("eval", "checkpoint=notes.pt"), "cannot read checkpoint", "notes.pt")


def test_report_needs_folders(cli):
    assert_one_line_error(cli("report"), "name the sweep or run folders")
