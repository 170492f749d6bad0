"""One TensorBoard HParams summary for the whole report: one entry per finished run, whose
columns are the keys that vary across the runs (and seed) plus the final metrics."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict

from cnnbench.report.build import Report
from cnnbench.report.collect import SEED, Run, format_value

METRICS = ("top1", "top5", "best_top1", "loss", "wall_time_s")


def hparam_value(value: Any) -> Any:
    # The HParams plugin takes numbers, strings and booleans only.
    return value if isinstance(value, (bool, int, float, str)) else format_value(value)


def run_hparams(report: Report, run: Run) -> Dict[str, Any]:
    return {key: hparam_value(run.config.get(key)) for key in [*report.shown, SEED]}


def write_hparams(report: Report, folder: Path) -> Path:
    """``folder``/<run label>/ per run; written anew each time, so a re-run report has no duplicates."""
    from torch.utils.tensorboard import SummaryWriter

    if folder.exists():
        shutil.rmtree(folder)
    names: Dict[str, int] = {}
    with SummaryWriter(str(folder)) as writer:
        for summary in report.groups:
            for run in summary.group.runs:
                metrics = {f"hparams/{k}": float(run.results[k]) for k in METRICS if run.results.get(k) is not None}
                name = report.run_label(run)
                names[name] = names.get(name, 0) + 1
                # The same settings and seed twice (a repeated run) get their own entries.
                suffix = f"#{names[name]}" if names[name] > 1 else ""
                writer.add_hparams(run_hparams(report, run), metrics, run_name=name.replace("/", "_") + suffix)
    return folder
