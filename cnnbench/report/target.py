"""Epochs to a target: how many epochs each arm took to reach an experiment's ``experiment.target``.

AlexNet's Figure 1 (Krizhevsky et al. 2012) measures ReLU against tanh by the epochs to 25%
training error, not by the final accuracy; ``experiment.target: {metric: train_error, value: 25}``
asks the report for that figure. The per-epoch values come from each run's metrics.jsonl:
``train`` holds the epoch's running loss and top-1 (over the epoch's batches, in training
mode, as the paper's training error curve was), ``val`` the evaluation after the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cnnbench.errors import UserError
from cnnbench.report.stats import Stat, describe

# metric -> (where in an epoch record, how to read it, whether lower is better, its words)
METRICS: Dict[str, Tuple[str, str, Callable[[float], float], bool, str]] = {
    "train_error": ("train", "top1", lambda v: 100.0 - v, True, "train error"),
    "val_error": ("val", "top1", lambda v: 100.0 - v, True, "val error"),
    "train_top1": ("train", "top1", float, False, "train top-1"),
    "val_top1": ("val", "top1", float, False, "val top-1"),
    "val_top5": ("val", "top5", float, False, "val top-5"),
    "train_loss": ("train", "loss", float, True, "train loss"),
    "val_loss": ("val", "loss", float, True, "val loss"),
}


@dataclass
class Target:
    metric: str
    value: float

    @property
    def label(self) -> str:
        *_, lower, words = METRICS[self.metric]
        unit = "" if self.metric.endswith("loss") else "%"
        return f"{words} {'≤' if lower else '≥'} {self.value:g}{unit}"


@dataclass
class TargetResult:
    """One group's epochs to the target: over the runs that reached it, and how many did not."""

    epochs: Optional[Stat]  # None when no run reached it
    reached: int
    runs: int
    max_epochs: int  # the most epochs a run that did not reach it trained

    @property
    def text(self) -> str:
        if self.reached == 0:
            return f"not reached in {self.max_epochs} epochs"
        stat = self.epochs
        mean = f"{stat.mean:.1f}" if stat.std is None else f"{stat.mean:.1f} ± {stat.std:.1f}"
        if self.reached == self.runs:
            return mean
        return f"{mean} ({self.runs - self.reached} of {self.runs} not reached in {self.max_epochs} epochs)"


def target_of(configs: Sequence[Dict[str, Any]]) -> Optional[Target]:
    """The ``experiment.target`` the runs' flattened configs share, checked; None when they have none."""
    found = {(c.get("experiment.target.metric"), c.get("experiment.target.value")) for c in configs}
    found.discard((None, None))
    if not found:
        return None
    if len(found) > 1:
        raise UserError(f"the runs have different experiment.target values ({sorted(map(str, found))}); report them apart")
    (metric, value), = found
    if metric not in METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"experiment.target must be {{metric: {'|'.join(METRICS)}, value: a number}}, "
                        f"got metric={metric!r}, value={value!r}")
    return Target(str(metric), float(value))


def epochs_to(history: Sequence[dict], target: Target) -> Optional[int]:
    """The first epoch whose value reaches the target (at or below it for errors and losses), or None."""
    section, key, read, lower, _ = METRICS[target.metric]
    for record in history:
        raw = (record.get(section) or {}).get(key)
        if raw is None:
            continue
        value = read(raw)
        if (value <= target.value) if lower else (value >= target.value):
            return int(record.get("epoch", 0))
    return None


def summarize_target(histories: Sequence[List[dict]], target: Target) -> TargetResult:
    epochs = [epochs_to(h, target) for h in histories]
    reached = [e for e in epochs if e is not None]
    missed = [max((int(r.get("epoch", 0)) for r in h), default=0) for h, e in zip(histories, epochs) if e is None]
    return TargetResult(describe(reached), len(reached), len(histories), max(missed, default=0))
