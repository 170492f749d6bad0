"""Runs -> groups -> one summary per group, with the deltas against a baseline; and the files written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from cnnbench.errors import UserError
from cnnbench.report.collect import (
    Group, Run, collect_runs, format_value, group_runs, shown_keys, varying_keys,
)
from cnnbench.report.stats import Delta, Stat, describe, paired_delta
from cnnbench.report.target import Target, TargetResult, summarize_target, target_of

CURVES_PNG = "val_top1_per_epoch.png"
SCATTER_PNG = "top1_vs_macs.png"
TB_FOLDER = "tb_report"


@dataclass
class GroupSummary:
    group: Group
    top1: Optional[Stat]
    top5: Optional[Stat]
    best_top1: Optional[Stat]
    wall_time_s: Optional[Stat]
    params: Optional[int]
    macs: Optional[int]
    model: Optional[str]
    paper: Optional[Dict[str, Any]]  # paper_figures() of the model's `published:`
    delta: Optional[Delta] = None  # vs the baseline; None for the baseline itself and without shared seeds
    is_baseline: bool = False
    target: Optional[TargetResult] = None  # epochs to the experiment's target, when it sets one

    @property
    def label(self) -> str:
        return self.group.label

    @property
    def n(self) -> int:
        return len(self.group.runs)


@dataclass
class Report:
    paths: List[Path]
    runs: List[Run]
    keys: List[str]  # every varying key (seed left out): what groups are made by
    shown: List[str]  # the ones worth a column (keys following from a varying `*.name` left out)
    groups: List[GroupSummary] = field(default_factory=list)
    target: Optional[Target] = None  # experiment.target of the runs

    @property
    def not_finished(self) -> List[Run]:
        return [run for run in self.runs if not run.finished]

    @property
    def baseline(self) -> Optional[GroupSummary]:
        return next((g for g in self.groups if g.is_baseline), None)

    def run_label(self, run: Run) -> str:
        """The run's distinguishing settings: its group's values and its seed."""
        values = [f"{k}={format_value(run.config.get(k))}" for k in self.shown]
        return ",".join([*values, f"seed={format_value(run.seed)}"])


def paper_figures(published: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A model file's `published:` as accuracies: `top1`/`top5` as given, `top1_error`/`top5_error` as 100 - error."""
    figures = {}
    for metric in ("top1", "top5"):
        if published.get(metric) is not None:
            figures[metric] = float(published[metric])
        elif published.get(f"{metric}_error") is not None:
            figures[metric] = 100.0 - float(published[f"{metric}_error"])
    if not figures:
        return None
    return {**figures, "protocol": published.get("protocol"), "source": published.get("source")}


def paper_text(paper: Dict[str, Any]) -> str:
    """'76.1% top-1, 92.9% top-5' (what the paper reports)."""
    return ", ".join(f"{paper[m]:.1f}% top-{m[-1]}" for m in ("top1", "top5") if m in paper)


def result_values(runs: Sequence[Run], key: str) -> List[float]:
    return [run.results[key] for run in runs if run.results.get(key) is not None]


def summarize(group: Group) -> GroupSummary:
    runs, first = group.runs, group.runs[0]
    return GroupSummary(
        group=group,
        top1=describe(result_values(runs, "top1")),
        top5=describe(result_values(runs, "top5")),
        best_top1=describe(result_values(runs, "best_top1")),
        wall_time_s=describe(result_values(runs, "wall_time_s")),
        params=first.results.get("params"), macs=first.results.get("macs"),
        model=first.config.get("model.name"), paper=paper_figures(first.published),
    )


def top1_by_seed(group: Group) -> Dict[Any, float]:
    """Final top-1 per seed (the mean, should a seed have been run twice)."""
    by_seed: Dict[Any, List[float]] = {}
    for run in group.runs:
        if run.results.get("top1") is not None:
            by_seed.setdefault(format_value(run.seed), []).append(run.results["top1"])
    return {seed: sum(v) / len(v) for seed, v in by_seed.items()}


def matches(group: Group, key: str, wanted: str) -> bool:
    value = group.runs[0].config.get(key)
    if format_value(value).lower() == wanted.lower():
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(wanted) == float(value)  # 0 and 0.0 are the same momentum
        except ValueError:
            return False
    return False


def choose_baseline(groups: List[Group], baseline: Optional[str], keys: Sequence[str]) -> int:
    """The index of the group named by ``KEY=VALUE[,KEY=VALUE]``; the first group without one."""
    if not baseline:
        return 0
    wanted = []
    for part in baseline.split(","):
        key, eq, value = part.strip().partition("=")
        if key not in keys and f"{key}.name" in keys:
            key = f"{key}.name"  # a config group's choice, as the sweep wrote it: model=vgg13 is model.name=vgg13
        if not eq or key not in keys:
            varying = ", ".join(keys) or "nothing (one group)"
            raise UserError(f"report.baseline={baseline}: give KEY=VALUE with a key that varies across these runs: {varying}")
        wanted.append((key, value))
    found = [i for i, g in enumerate(groups) if all(matches(g, k, v) for k, v in wanted)]
    if len(found) != 1:
        how = "no group" if not found else f"{len(found)} groups ({'; '.join(groups[i].label for i in found)})"
        raise UserError(f"report.baseline={baseline} matches {how}; the groups are: {'; '.join(g.label for g in groups)}")
    return found[0]


def build_report(paths: Sequence[Path], baseline: Optional[str] = None, ignore: Sequence[str] = ()) -> Report:
    runs = collect_runs(paths)
    keys = varying_keys(runs, ignore)
    report = Report(list(paths), runs, keys, shown_keys(keys, [r for r in runs if r.config]))
    groups = group_runs([r for r in runs if r.finished], keys, report.shown)
    if not groups:
        return report
    base = choose_baseline(groups, baseline, keys)
    base_by_seed = top1_by_seed(groups[base])
    report.target = target_of([r.config for r in runs if r.finished])
    for i, group in enumerate(groups):
        summary = summarize(group)
        summary.is_baseline = i == base
        if report.target is not None:
            summary.target = summarize_target([r.history for r in group.runs], report.target)
        if i != base:
            summary.delta = paired_delta(top1_by_seed(group), base_by_seed)
        report.groups.append(summary)
    return report


def write_report(report: Report, out: Path) -> List[Path]:
    """report.md, report.csv, the plots and tb_report/ in ``out``; returns what was written."""
    from cnnbench.report import hparams, plots, tables

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if report.groups:
        written += [plots.plot_curves(report, out / CURVES_PNG), plots.plot_accuracy_vs_macs(report, out / SCATTER_PNG)]
        written.append(hparams.write_hparams(report, out / TB_FOLDER))
    images = [p.name for p in written if p.suffix == ".png"]
    (out / "report.md").write_text(tables.markdown_report(report, images=images, relative_to=out))
    (out / "report.csv").write_text(tables.csv_text(report))
    return [out / "report.md", out / "report.csv", *written]
