"""Sweeps (`cnnbench train -m ...`) through the real CLI: a failing job is recorded and the others
go on; the same command run again with the old hydra.sweep.dir skips finished jobs, resumes
stopped ones and runs the rest; and every job of a sweep lands in one sweep folder."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

TINY = ("model=lenet5", "trainer.epochs=1")


def status(job) -> dict:
    return json.loads((job / "status.json").read_text())


def sweep_folder(cli):
    (folder,) = cli.cwd.glob("outputs/multirun/*/*")
    return folder


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_a_rerun_continues_the_sweep(cli):
    # 100000 passes the config checks, but is larger than the digits training set: it fails in the run.
    args = ("train", "-m", *TINY, "data.batch_size=512,100000")
    first = cli(*args)
    assert first.returncode == 2, first.stderr
    sweep = sweep_folder(cli)
    assert status(sweep / "0") == {"status": "finished", "error": None}
    assert status(sweep / "1")["status"] == "failed"
    assert "larger than the training set" in status(sweep / "1")["error"]
    assert "error: data.batch_size=100000 is larger" in (sweep / "1" / "train.log").read_text()
    assert "sweep: 1 finished, 1 failed (job 1: data.batch_size=100000 is larger" in first.stderr
    results = json.loads((sweep / "0" / "results.json").read_text())
    assert results["seed"] == 0 and "data.batch_size=512" in results["overrides"]

    written = (sweep / "0" / "results.json").stat().st_mtime_ns
    again = cli(*args, f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2, again.stderr
    assert "job 0: finished, skipped" in again.stdout
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == written  # untouched
    assert "job 1: data.batch_size=100000" in again.stderr  # run again, failed again
    assert list(cli.cwd.glob("outputs/multirun/*/*")) == [sweep]

    hydra_record = (sweep / "0" / ".hydra" / "hydra.yaml").read_text()
    assert "hydra.sweep.dir=" not in hydra_record  # a skipped job's record kept as the first run wrote it

    records = {path: path.read_bytes() for path in [sweep / "multirun.yaml", *sweep.glob("0/.hydra/*")]}
    other = cli("train", "-m", *TINY, "data.batch_size=256,512", f"hydra.sweep.dir={sweep}")
    assert other.returncode == 2
    assert "holds another sweep" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert status(sweep / "0")["status"] == "finished"  # the refused sweep wrote nothing there
    assert {path: path.read_bytes() for path in records} == records  # nor did Hydra (its record)


@pytest.mark.slow
def test_a_stopped_sweep_run_again_completes_every_job(cli):
    args = ("train", "-m", *TINY, "data.batch_size=512", "seed=0,1,2")
    assert cli(*args).returncode == 0
    sweep = sweep_folder(cli)
    # As if stopped during the second job: its checkpoint saved but no results, the third never started.
    shutil.rmtree(sweep / "2")
    (sweep / "1" / "results.json").unlink()
    (sweep / "1" / "status.json").unlink()
    records = {path: path.read_bytes() for job in ("0", "1") for path in (sweep / job / ".hydra").iterdir()}
    assert len(records) == 6  # config.yaml, hydra.yaml, overrides.yaml of each
    records[sweep / "multirun.yaml"] = (sweep / "multirun.yaml").read_bytes()  # the sweep's own record
    again = cli(*args, f"hydra.sweep.dir={sweep}")
    assert again.returncode == 0, again.stderr
    assert "sweep: 3 finished (1 skipped: finished before)" in again.stdout
    assert "resumed from" in (sweep / "1" / "train.log").read_text()
    # Each job folder keeps the record of the command that started it; a resume is appended to its history.
    assert {path: path.read_bytes() for path in records} == records
    (entry,) = yaml.safe_load((sweep / "1" / "resume_history.yaml").read_text())
    assert entry["overrides"][-2:] == ["seed=1", f"trainer.resume={sweep / '1'}"], entry
    assert not (sweep / "0" / "resume_history.yaml").exists()  # skipped, not resumed
    (sweep_entry,) = yaml.safe_load((sweep / "resume_history.yaml").read_text())  # the sweep's, likewise
    assert sweep_entry["overrides"][0] == "-m" and f"hydra.sweep.dir={sweep}" in sweep_entry["overrides"]
    assert "seed=2" in (sweep / "2" / ".hydra" / "overrides.yaml").read_text()  # a job run anew gets its record
    for job in ("0", "1", "2"):
        assert status(sweep / job)["status"] == "finished"
        assert json.loads((sweep / job / "results.json").read_text())["seed"] == int(job)


@pytest.mark.slow
def test_a_sweep_over_models_lands_in_one_folder(cli):
    result = cli("train", "-m", "model=lenet5,lenet5", "seed=0,1", "trainer.epochs=1", "data.batch_size=512")
    assert result.returncode == 0, result.stderr
    sweep = sweep_folder(cli)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert "sweep: 4 finished" in result.stdout
