"""A report as text: the markdown of report.md (also what the console shows), CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional, Sequence

from cnnbench.report.build import GroupSummary, Report, paper_text
from cnnbench.report.collect import format_value
from cnnbench.report.stats import Stat

NONE = "—"


def fmt_stat(stat: Optional[Stat], digits: int = 2) -> str:
    if stat is None:
        return NONE
    if stat.std is None:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def fmt_mean(stat: Optional[Stat], digits: int = 2) -> str:
    return NONE if stat is None else f"{stat.mean:.{digits}f}"


def part(stat: Optional[Stat], name: str) -> Optional[float]:
    return None if stat is None else getattr(stat, name)


def fmt_delta(summary: GroupSummary) -> str:
    if summary.is_baseline:
        return "baseline"
    delta = summary.delta
    if delta is None:
        return "no seed in common"
    if delta.low is None:
        return f"{delta.mean:+.2f} (n=1)"
    return f"{delta.mean:+.2f} [{delta.low:+.2f}, {delta.high:+.2f}]"


def human(count: Optional[float]) -> str:
    """416.52 K, 4.09 G: the Models table's style."""
    if count is None:
        return NONE
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return str(count)


def has_paper(report: Report) -> bool:
    return any(g.paper for g in report.groups)


def table_rows(report: Report) -> List[List[str]]:
    header = [*(report.shown or ["group"]), "n", "top-1 %", "top-5 %", "best top-1 %",
              "Δ top-1 [95% CI]", "params", "MACs", "train s"]
    target = [f"epochs to {report.target.label}"] if report.target else []
    rows = [header + target + (["paper"] if has_paper(report) else [])]
    for g in report.groups:
        values = [format_value(v) for v in g.group.values.values()] or [g.label]
        params = f"{g.params:,}" if g.params is not None else NONE
        row = [*values, str(g.n), fmt_stat(g.top1), fmt_stat(g.top5), fmt_mean(g.best_top1),
               fmt_delta(g), params, human(g.macs), fmt_mean(g.wall_time_s, 1)]
        row += [g.target.text if g.target else NONE] if target else []
        rows.append(row + ([paper_text(g.paper) if g.paper else NONE] if has_paper(report) else []))
    return rows


def markdown_table(rows: List[List[str]]) -> str:
    """A markdown table padded into columns, so it reads as well on a terminal as rendered."""
    widths = [max(3, *(len(row[i]) for row in rows)) for i in range(len(rows[0]))]  # a rule needs "--:"
    numeric = [i > 0 and all(r[i][:1] in "+-0123456789" + NONE for r in rows[1:]) for i in range(len(widths))]
    def line(cells):
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)) + " |"
    rule = "| " + " | ".join("-" * (w - 1) + (":" if num else "-") for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def shown_path(path: Path, relative_to: Optional[Path]) -> str:
    if relative_to is not None:
        try:
            return os.path.relpath(path.resolve(), relative_to.resolve())
        except ValueError:  # another drive (Windows)
            pass
    return str(path)


def intro(report: Report, relative_to: Optional[Path]) -> str:
    finished = len(report.runs) - len(report.not_finished)
    by = ", ".join(f"`{k}`" for k in report.shown) or "nothing (every run has the same settings)"
    sources = ", ".join(f"`{p}`" for p in report.paths)  # as the command line named them
    text = (f"{len(report.runs)} runs in {sources}: {finished} finished, in {len(report.groups)} groups by {by}; "
            f"seeds are the replicates.")
    if report.not_finished:
        text += f" {len(report.not_finished)} not finished (listed below)."
    return text


def notes(report: Report) -> List[str]:
    base = report.baseline
    lines = [
        "Top-1, top-5: the last epoch's validation accuracy in %, mean ± sample std over seeds (no std for n=1); "
        "best top-1: each run's best epoch, averaged; train s: wall time of a run, averaged.",
        f"Δ top-1: the mean over seeds of (group − baseline) for the same seed, with a 95% t interval "
        f"(n − 1 degrees of freedom); baseline: {base.label}." if base else "",
    ]
    if report.target:
        lines.append(f"Epochs to {report.target.label} (experiment.target): the first epoch of each run that "
                     "reaches it, mean ± std over the runs that did; runs that did not are counted apart.")
    papers = {g.model: g.paper for g in report.groups if g.paper}
    for model, paper in papers.items():
        detail = "; ".join(x for x in (paper.get("protocol"), paper.get("source")) if x)
        lines.append(f"{model} paper: {paper_text(paper)}" + (f" ({detail})" if detail else ""))
    return [line for line in lines if line]


def not_finished_lines(report: Report, relative_to: Optional[Path]) -> List[str]:
    return [f"- `{shown_path(run.path, relative_to)}` ({report.run_label(run) if run.config else 'no config'}): "
            f"{run.problem}" for run in report.not_finished]


def report_body(report: Report, relative_to: Optional[Path] = None) -> str:
    parts = [intro(report, relative_to)]
    if report.groups:
        parts += [markdown_table(table_rows(report)), "\n\n".join(notes(report))]
    else:
        parts.append("No run has finished yet: nothing to compare.")
    if report.not_finished:
        parts.append("Not finished:\n\n" + "\n".join(not_finished_lines(report, relative_to)))
    return "\n\n".join(parts) + "\n"


def markdown_report(report: Report, images: Sequence[str] = (), relative_to: Optional[Path] = None) -> str:
    plots = "".join(f"\n![{name}]({name})\n" for name in images)
    return "# cnnbench report\n\n" + report_body(report, relative_to) + plots


def csv_records(report: Report) -> List[dict]:
    records = []
    for g in report.groups:
        delta = g.delta
        records.append({
            "group": g.label, **{k: format_value(v) for k, v in g.group.values.items()}, "n": g.n,
            "top1_mean": part(g.top1, "mean"), "top1_std": part(g.top1, "std"),
            "top5_mean": part(g.top5, "mean"), "top5_std": part(g.top5, "std"),
            "best_top1_mean": part(g.best_top1, "mean"), "baseline": g.is_baseline,
            "delta_top1": delta and delta.mean, "delta_low": delta and delta.low,
            "delta_high": delta and delta.high, "delta_n": delta and delta.n,
            "params": g.params, "macs": g.macs, "wall_time_s_mean": part(g.wall_time_s, "mean"),
            "paper_top1": (g.paper or {}).get("top1"), "paper_top5": (g.paper or {}).get("top5"),
            **target_record(g),
        })
    return records


def target_record(g: GroupSummary) -> dict:
    """The epochs-to-target columns, only when the experiment sets a target."""
    if g.target is None:
        return {}
    return {"target_epochs_mean": part(g.target.epochs, "mean"), "target_epochs_std": part(g.target.epochs, "std"),
            "target_reached": g.target.reached, "target_runs": g.target.runs}


def csv_text(report: Report) -> str:
    records = csv_records(report)
    out = io.StringIO()
    if records:
        writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return out.getvalue()


def json_text(report: Report) -> str:
    groups = [{"label": g.label, "values": g.group.values, "n": g.n, "baseline": g.is_baseline,
               **{k: asdict(v) if v is not None else None
                  for k, v in (("top1", g.top1), ("top5", g.top5), ("best_top1", g.best_top1),
                               ("wall_time_s", g.wall_time_s), ("delta_top1", g.delta))},
               "params": g.params, "macs": g.macs, "model": g.model, "paper": g.paper,
               "epochs_to_target": asdict(g.target) if g.target else None,
               "runs": [str(r.path) for r in g.group.runs]} for g in report.groups]
    not_finished = [{"path": str(r.path), "problem": r.problem, "seed": r.seed,
                     "values": {k: r.config.get(k) for k in report.shown}} for r in report.not_finished]
    return json.dumps({"paths": [str(p) for p in report.paths], "varying_keys": report.shown,
                       "target": asdict(report.target) if report.target else None,
                       "groups": groups, "not_finished": not_finished}, indent=2, default=str) + "\n"


def render(report: Report, fmt: str) -> str:
    """What `cnnbench report` prints: report.format=table|json|csv."""
    if fmt == "json":
        return json_text(report)
    if fmt == "csv":
        return csv_text(report)
    return report_body(report)
