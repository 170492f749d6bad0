"""Top-k accuracy with a defined rule for ties."""

from __future__ import annotations

from typing import Sequence

import torch


def topk_hits(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Per sample, whether its true class is within the top k, for each k in ``ks``: (len(ks), N) bools.

    Ties count against the prediction: the true class is within the top k
    when fewer than k *other* classes score at least as high. So a network
    that outputs the same score for every class is never right, however
    ``torch.topk`` would have broken the tie; a NaN score is never right.
    """
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"need logits (N, classes) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    classes = logits.shape[1]
    for k in ks:
        if not 1 <= k <= classes:
            raise ValueError(f"top-{k} accuracy needs 1 <= k <= number of classes ({classes})")
    true_score = logits.gather(1, targets.view(-1, 1))
    others_at_least_as_high = (logits >= true_score).sum(dim=1) - 1
    valid = ~torch.isnan(true_score.view(-1))
    return torch.stack([(others_at_least_as_high < k) & valid for k in ks])


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """How many samples have their true class within the top k, for each k in ``ks``
    (see :func:`topk_hits` for ties). The counts stay on the logits' device, so
    accumulating them needs no host synchronisation."""
    return topk_hits(logits, targets, ks).sum(dim=1)


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose true class is within the top k (see :func:`topk_correct`)."""
    return topk_correct(logits, targets, [k])[0].item() / max(len(targets), 1)


def reported_ks(num_classes: int) -> list[int]:
    """Top-1 always; top-5 where there are at least 5 classes."""
    return [1, 5] if num_classes >= 5 else [1]
