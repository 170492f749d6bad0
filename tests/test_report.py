"""`cnnbench report`: runs grouped by the keys that vary, mean ± std over seeds, the paired CI,
unfinished and failed runs listed, the paper's figure, the files written; and one real sweep."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from cnnbench.commands.report import paths_as_override
from cnnbench.errors import UserError
from cnnbench.report.build import build_report, paper_figures, write_report
from cnnbench.report.stats import paired_delta, t_quantile_95
from cnnbench.report.tables import csv_text, json_text, report_body
from tests.conftest import REPO

# top-1 per (momentum, seed): made up, with seed-to-seed noise the pairing should cancel.
TOP1 = {(0.0, 0): 90.0, (0.0, 1): 92.0, (0.0, 2): 88.5, (0.9, 0): 93.0, (0.9, 1): 94.5, (0.9, 2): 92.0}


def write_run(folder: Path, momentum=0.0, seed=0, top1=None, epochs=3, done=None, log=None, model="lenet5",
              published=None, **config) -> Path:
    """A run folder as `cnnbench train` leaves it: config.yaml, metrics.jsonl, results.json (when finished)."""
    folder.mkdir(parents=True)
    tree = {"seed": seed, "run_name": f"{model}_digits",
            "model": {"name": model, "published": published or {}, "layers": [["conv", {"out": 6}]]},
            "regularization": {"momentum": momentum, "lrn": True},
            "trainer": {"epochs": epochs, "resume": None, "progress_bar": True}}
    for key, value in config.items():  # trainer__resume="x" -> trainer.resume
        section, name = key.split("__")
        tree[section][name] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(tree))
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(tree))  # Hydra's copy: not a run
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"regularization.momentum={momentum}", f"seed={seed}"]))
    top1 = TOP1.get((momentum, seed), 50.0) if top1 is None else top1
    history = [{"epoch": e, "train": {"loss": 1.0, "top1": top1}, "val": {"top1": top1 - (epochs - e), "top5": 99.0}}
               for e in range(1, (epochs if done is None else done) + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    if log is not None:
        (folder / "train.log").write_text(log)
    if done is None and log is None:
        (folder / "results.json").write_text(json.dumps({
            "top1": top1, "top5": top1 + 5, "loss": 0.3, "best_top1": top1 + 0.5, "params": 61706,
            "macs": 416520, "wall_time_s": 10.0 + seed}))
    return folder


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A 2 x 3 sweep (momentum x seed) whose jobs differ in where they ran from, too."""
    root = tmp_path / "sweep"
    for job, (momentum, seed) in enumerate(TOP1):
        write_run(root / str(job), momentum, seed, trainer__resume=f"auto{job}", trainer__progress_bar=job % 2 == 0)
    return root


def by_label(report):
    return {g.label: g for g in report.groups}


def test_runs_are_grouped_by_the_keys_that_vary_with_seeds_as_replicates(sweep):
    report = build_report([sweep])
    assert report.keys == ["regularization.momentum"]  # not seed, trainer.resume, trainer.progress_bar, run_name
    groups = by_label(report)
    assert list(groups) == ["regularization.momentum=0.0", "regularization.momentum=0.9"]
    for momentum in (0.0, 0.9):
        group = groups[f"regularization.momentum={momentum}"]
        values = [TOP1[(momentum, seed)] for seed in range(3)]
        assert group.n == 3
        assert group.top1.mean == pytest.approx(statistics.mean(values))
        assert group.top1.std == pytest.approx(statistics.stdev(values))
        assert group.best_top1.mean == pytest.approx(statistics.mean(values) + 0.5)
        assert group.wall_time_s.mean == pytest.approx(11.0)
        assert (group.params, group.macs) == (61706, 416520)
    assert "| regularization.momentum |" in report_body(report)


def test_the_delta_is_paired_by_seed_with_a_t_interval(sweep):
    diffs = [TOP1[(0.9, s)] - TOP1[(0.0, s)] for s in range(3)]  # 3.0, 2.5, 3.5
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = 4.303 * sd / math.sqrt(3)  # t(0.975; 2 degrees of freedom)
    delta = by_label(build_report([sweep]))["regularization.momentum=0.9"].delta
    assert (delta.mean, delta.low, delta.high, delta.n) == pytest.approx((mean, mean - half, mean + half, 3))
    # Unpaired, the seed-to-seed spread (about 1.8 points) would swamp the 3-point gain; paired it does not.
    assert delta.low > 0


def test_a_delta_over_one_seed_has_no_interval_and_unshared_seeds_are_left_out():
    delta = paired_delta({0: 91.0, 7: 50.0}, {0: 90.0, 1: 80.0})
    assert (delta.mean, delta.low, delta.high, delta.n) == (1.0, None, None, 1)
    assert paired_delta({3: 1.0}, {4: 1.0}) is None


def test_the_t_table():
    assert [t_quantile_95(df) for df in (1, 2, 4, 30, 35, 1000)] == [12.706, 4.303, 2.776, 2.042, 2.042, 1.960]
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 31)) + [40, 60, 120]:
        assert t_quantile_95(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=6e-4)


def test_baseline_is_chosen_by_key_and_value(sweep):
    report = build_report([sweep], baseline="regularization.momentum=0.9")
    groups = by_label(report)
    assert report.baseline.label == "regularization.momentum=0.9"
    assert groups["regularization.momentum=0.0"].delta.mean == pytest.approx(-3.0)
    assert build_report([sweep], baseline="regularization.momentum=0").baseline.label == "regularization.momentum=0.0"
    assert build_report([sweep]).baseline.label == "regularization.momentum=0.0"  # the first group by default
    with pytest.raises(UserError, match="varies across these runs: regularization.momentum"):
        build_report([sweep], baseline="regularization.lrn=true")
    with pytest.raises(UserError, match="matches no group"):
        build_report([sweep], baseline="regularization.momentum=0.5")


def test_an_ambiguous_baseline_is_refused(tmp_path):
    for job, (momentum, lrn) in enumerate([(0.0, True), (0.0, False), (0.9, True), (0.9, False)]):
        write_run(tmp_path / str(job), momentum, regularization__lrn=lrn)
    with pytest.raises(UserError, match="matches 2 groups"):
        build_report([tmp_path], baseline="regularization.momentum=0.9")
    report = build_report([tmp_path], baseline="regularization.momentum=0.9,regularization.lrn=false")
    assert report.baseline.label == "regularization.lrn=false, regularization.momentum=0.9"  # config order
    assert report.groups[0].delta.low is None  # one seed per group: n=1, no interval
    assert "(n=1)" in report_body(report)


def test_unfinished_and_failed_runs_are_listed_not_dropped(sweep):
    write_run(sweep / "6", 0.9, 3, done=2)
    write_run(sweep / "7", 0.9, 4, done=1, log="[2026-01-01 10:00:00,000] epoch 1/3 ...\n"
              "[2026-01-01 10:00:01,000] error: the training loss became nan by step 12 of epoch 2\n")
    report = build_report([sweep])
    assert sum(g.n for g in report.groups) == 6
    problems = {run.path.name: run.problem for run in report.not_finished}
    assert problems["6"].startswith("unfinished: 2 of 3 epochs done")
    assert problems["7"] == "failed: error: the training loss became nan by step 12 of epoch 2"
    body = report_body(report)
    assert "regularization.momentum=0.9,seed=3): unfinished: 2 of 3 epochs done" in body
    assert "failed: error: the training loss became nan" in body
    assert [r["problem"][:10] for r in json.loads(json_text(report))["not_finished"]] == ["unfinished", "failed: er"]


def test_the_papers_figure_stands_beside_ours(tmp_path):
    published = {"top1_error": 8.75, "protocol": "CIFAR-10 test", "source": "He et al. 2016, Table 6"}
    for seed in (0, 1):
        write_run(tmp_path / f"a{seed}", seed=seed, model="resnet20", published=published, top1=90.0 + seed)
        write_run(tmp_path / f"b{seed}", seed=seed, model="resnet56", published={"top1": 93.03}, top1=92.0 + seed)
    report = build_report([tmp_path])
    assert report.shown == ["model.name"]  # model.published and model.layers follow from it
    # an experiment's baseline names the group as its sweep does: model=resnet56 is model.name=resnet56
    assert build_report([tmp_path], baseline="model=resnet56").baseline.label == "model.name=resnet56"
    body = report_body(report)
    assert "91.2% top-1" in body and "93.0% top-1" in body
    assert "resnet20 paper: 91.2% top-1 (CIFAR-10 test; He et al. 2016, Table 6)" in body
    assert "paper_top1" in csv_text(report).splitlines()[0]


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_published_shape_in_the_zoo_is_read(path):
    published = yaml.safe_load(path.read_text()).get("published") or {}
    figures = paper_figures(published)
    if not any(k in published for k in ("top1", "top5", "top1_error", "top5_error")):
        assert figures is None
        return
    assert {"top1", "top5"} & set(figures)
    assert all(0 < figures[k] < 100 for k in ("top1", "top5") if k in figures)


def test_a_folder_without_runs_is_one_clear_error(tmp_path):
    (tmp_path / "empty" / ".hydra").mkdir(parents=True)
    (tmp_path / "empty" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(UserError, match="no run folders"):
        build_report([tmp_path / "empty"])
    with pytest.raises(UserError, match="is not a folder"):
        build_report([tmp_path / "missing"])


def test_files_are_written(sweep, tmp_path):
    written = write_report(build_report([sweep]), tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["report.csv", "report.md", "tb_report", "top1_vs_macs.png", "val_top1_per_epoch.png"]
    assert (tmp_path / "out" / "val_top1_per_epoch.png").read_bytes()[:4] == b"\x89PNG"
    assert "![val_top1_per_epoch.png](val_top1_per_epoch.png)" in (tmp_path / "out" / "report.md").read_text()
    assert len([p for p in (tmp_path / "out" / "tb_report").iterdir() if p.is_dir()]) == 6


def test_bare_paths_become_one_override():
    args = ["runs/a", "it's here", "--cfg", "job", "report.format=json", "-m"]
    assert paths_as_override(args) == ["--cfg", "job", "report.format=json", "-m",
                                       "report.paths=['runs/a','it\\'s here']"]
    assert paths_as_override(["report.paths=[x]"]) == ["report.paths=[x]"]
    # Hydra reads one `=` per override: the CLI quotes the baseline's KEY=VALUE.
    assert paths_as_override(["report.baseline=regularization.lrn=true", "report.baseline='a=1'"]) == [
        "report.baseline='regularization.lrn=true'", "report.baseline='a=1'"]


def test_the_command_reads_its_config(run, sweep):
    # (the CLI quotes a bare report.baseline=KEY=VALUE itself: test_bare_paths_become_one_override)
    out = run("report", f"report.paths=[{sweep}]", "report.format=csv", "report.baseline='regularization.momentum=0.9'")
    rows = out.stdout.strip().splitlines()
    assert rows[0].startswith("group,regularization.momentum,n,top1_mean")
    assert rows[2].split(",")[8] == "True"  # baseline column: the 0.9 group
    assert (sweep / "report.md").is_file()
    with pytest.raises(UserError, match="name the sweep or run folders"):
        run("report")


@pytest.mark.slow
def test_a_real_sweep_is_reported(cli):
    trained = cli("train", "-m", "model=lenet5", "trainer.epochs=1", "data.batch_size=256",
                  "regularization.momentum=0,0.9", "seed=0,1")
    assert trained.returncode == 0, trained.stderr
    (sweep,) = (cli.cwd / "outputs" / "multirun").glob("*/*")
    done = cli("report", str(sweep), "report.format=json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["varying_keys"] == ["regularization.momentum"]
    assert [(g["label"], g["n"]) for g in report["groups"]] == [
        ("regularization.momentum=0.0", 2), ("regularization.momentum=0.9", 2)]
    for group in report["groups"]:
        results = [json.loads((Path(run) / "results.json").read_text()) for run in group["runs"]]
        for metric in ("top1", "top5"):
            values = [r[metric] for r in results]
            assert group[metric]["mean"] == pytest.approx(statistics.mean(values))
            assert group[metric]["std"] == pytest.approx(statistics.stdev(values))
    for name in ("report.md", "report.csv", "val_top1_per_epoch.png", "top1_vs_macs.png"):
        assert (sweep / name).is_file(), name
    assert hparam_columns(sweep / "tb_report") == {"regularization.momentum", "seed"}
    empty = cli("report", str(cli.cwd / "outputs" / "nothing-here"))
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == [f"cnnbench report: error: {cli.cwd / 'outputs' / 'nothing-here'} is not a folder; give sweep or run folders"]


def hparam_columns(folder: Path) -> set:
    """The hparam names of the HParams experiment TensorBoard reads from ``folder``'s runs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    runs = [p for p in folder.iterdir() if p.is_dir()]
    assert sorted(p.name for p in runs) == [f"regularization.momentum={m},seed={s}" for m in ("0.0", "0.9") for s in (0, 1)]
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    data = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/experiment"])
    return {info.name for info in data.experiment.hparam_infos}


def write_target_run(folder: Path, activation: str, seed: int, train_top1: list, epochs: int = 6) -> Path:
    """A finished run of an experiment with `experiment.target`, whose epochs had these train top-1s."""
    write_run(folder, seed=seed, epochs=epochs, top1=60.0, model="alexnet_cifar")
    tree = yaml.safe_load((folder / "config.yaml").read_text())
    tree["model"]["activation"] = activation
    tree["experiment"] = {"claim": "ReLU reaches 25% training error faster", "target": {"metric": "train_error", "value": 25}}
    (folder / "config.yaml").write_text(yaml.safe_dump(tree))
    history = [{"epoch": e + 1, "train": {"loss": 1.0, "top1": t}, "val": {"top1": t - 5, "top5": 99.0}}
               for e, t in enumerate(train_top1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    return folder


def test_epochs_to_the_experiments_target_per_arm(tmp_path):
    # train error = 100 - train top-1; reached at the first epoch at or below 25
    curves = {("relu", 0): [50, 70, 75, 80, 85, 90],    # epoch 3 (error 25, at the level counts)
              ("relu", 1): [60, 76, 80, 85, 88, 90],    # epoch 2
              ("relu", 2): [55, 70, 74, 76, 80, 90],    # epoch 4
              ("tanh", 0): [20, 30, 40, 50, 60, 74],    # never (26% at the end)
              ("tanh", 1): [20, 30, 40, 50, 60, 76],    # epoch 6
              ("tanh", 2): [20, 30, 40, 50, 55, 60]}    # never
    for job, ((activation, seed), curve) in enumerate(curves.items()):
        write_target_run(tmp_path / str(job), activation, seed, curve)
    report = build_report([tmp_path], baseline="model.activation=relu")
    assert report.target.label == "train error ≤ 25%"
    relu, tanh = by_label(report)["model.activation=relu"].target, by_label(report)["model.activation=tanh"].target
    assert (relu.epochs.mean, relu.epochs.std, relu.reached, relu.runs) == pytest.approx((3.0, 1.0, 3, 3))
    assert (tanh.epochs.mean, tanh.epochs.std, tanh.reached, tanh.runs, tanh.max_epochs) == (6.0, None, 1, 3, 6)
    body = report_body(report)
    assert "epochs to train error ≤ 25%" in body.splitlines()[2]
    assert "3.0 ± 1.0" in body and "6.0 (2 of 3 not reached in 6 epochs)" in body
    assert "target_epochs_mean" in csv_text(report).splitlines()[0]
    assert json.loads(json_text(report))["groups"][0]["epochs_to_target"]["reached"] == 3


def test_a_target_no_run_reaches_and_a_report_without_one(tmp_path, sweep):
    for seed in (0, 1):
        write_target_run(tmp_path / "tanh" / str(seed), "tanh", seed, [10, 20, 30])
    (group,) = build_report([tmp_path / "tanh"]).groups
    assert group.target.text == "not reached in 3 epochs"
    report = build_report([sweep])  # no experiment.target: no column, nothing computed
    assert report.target is None and "epochs to" not in report_body(report)
    assert "target_epochs_mean" not in csv_text(report)
