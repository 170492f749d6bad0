"""Top-k accuracy on hand-made logits."""

import math

import pytest
import torch

from cnnbench.engine.metrics import reported_ks, topk_accuracy, topk_correct


def test_topk_on_hand_made_logits():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.0],  # true 1: rank 0
            [0.5, 0.2, 0.3, 0.0],  # true 2: rank 1
            [0.4, 0.3, 0.2, 0.1],  # true 3: rank 3
            [0.0, 0.0, 0.0, 1.0],  # true 0: ranks behind 3 and behind (tied) 1, 2
        ]
    )
    targets = torch.tensor([1, 2, 3, 0])
    assert topk_correct(logits, targets, [1, 2, 3, 4]).tolist() == [1, 2, 2, 4]
    assert topk_accuracy(logits, targets, 1) == 0.25
    assert topk_accuracy(logits, targets, 2) == 0.5


def test_ties_count_against_the_prediction():
    # A network that outputs the same score for every class is never right,
    # whichever way torch.topk would break the tie.
    logits = torch.zeros(6, 10)
    targets = torch.arange(6)
    assert topk_correct(logits, targets, [1, 5, 9]).tolist() == [0, 0, 0]
    assert topk_correct(logits, targets, [10]).tolist() == [6]
    # A tie for first place between the true class and one other: top-2, not top-1.
    tied = torch.tensor([[2.0, 2.0, 1.0]])
    assert topk_correct(tied, torch.tensor([0]), [1, 2]).tolist() == [0, 1]


def test_nan_scores_are_never_right():
    logits = torch.tensor([[math.nan, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert topk_correct(logits, torch.tensor([0, 0]), [1, 3]).tolist() == [1, 1]


@pytest.mark.parametrize("k", [0, 4])
def test_k_outside_the_classes_is_rejected(k):
    with pytest.raises(ValueError, match="number of classes"):
        topk_correct(torch.zeros(2, 3), torch.tensor([0, 1]), [k])


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="logits"):
        topk_correct(torch.zeros(2, 3), torch.tensor([0, 1, 2]), [1])


def test_top5_is_reported_only_with_five_classes_or_more():
    assert reported_ks(10) == [1, 5]
    assert reported_ks(5) == [1, 5]
    assert reported_ks(2) == [1]
