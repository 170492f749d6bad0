"""The report's PNGs: val top-1 per epoch per group (mean over seeds, min-max band) and top-1 vs MACs.

Figures are drawn on matplotlib's Agg canvas directly, never through pyplot: no display is
needed and no global figure state is left behind in the process.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

from cnnbench.report.build import Report
from cnnbench.report.collect import Run


def new_axes(title: str, xlabel: str, ylabel: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def epoch_curve(runs: Sequence[Run]) -> Tuple[List[int], List[float], List[float], List[float]]:
    """(epochs, mean, min, max) of val top-1 over the runs that reached each epoch."""
    by_epoch = {}
    for run in runs:
        for record in run.history:
            top1 = (record.get("val") or {}).get("top1")
            if top1 is not None and record.get("epoch") is not None:
                by_epoch.setdefault(int(record["epoch"]), []).append(float(top1))
    epochs = sorted(by_epoch)
    values = [by_epoch[e] for e in epochs]
    return epochs, [sum(v) / len(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def save(figure, axes, path: Path) -> Path:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_curves(report: Report, path: Path) -> Path:
    figure, axes = new_axes("val top-1 per epoch: mean over seeds, band = min–max", "epoch", "val top-1 (%)")
    for i, summary in enumerate(report.groups):
        epochs, mean, low, high = epoch_curve(summary.group.runs)
        if not epochs:
            continue
        color = f"C{i % 10}"
        axes.plot(epochs, mean, color=color, marker="o" if len(epochs) <= 20 else None, markersize=3,
                  label=f"{summary.label} (n={summary.n})")
        axes.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    return save(figure, axes, path)


def plot_accuracy_vs_macs(report: Report, path: Path) -> Path:
    figure, axes = new_axes("final val top-1 vs MACs: mean ± std over seeds; ★ the paper's", "MACs", "val top-1 (%)")
    macs = []
    for i, summary in enumerate(report.groups):
        if summary.macs is None or summary.top1 is None:
            continue
        color = f"C{i % 10}"
        macs.append(summary.macs)
        axes.errorbar([summary.macs], [summary.top1.mean], yerr=[summary.top1.std or 0.0], fmt="o", color=color,
                      capsize=3, label=f"{summary.label} (n={summary.n})")
        if summary.paper and "top1" in summary.paper:
            axes.scatter([summary.macs], [summary.paper["top1"]], marker="*", s=90, color=color)
    if macs and max(macs) > 10 * min(macs):
        axes.set_xscale("log")
    from matplotlib.ticker import EngFormatter

    axes.xaxis.set_major_formatter(EngFormatter())  # 416.5 k, 4.1 G: as the Models table counts
    return save(figure, axes, path)
