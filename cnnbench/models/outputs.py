"""What a model returns, and the training loss over it.

A model without auxiliary heads returns its logits, always. A model with
``aux_head`` rows (GoogLeNet, Szegedy et al. 2015, section 5) returns a
:class:`ModelOutput` in training mode, so the loss can add each head's
weighted cross-entropy, and plain logits in eval mode: the paper discards
the auxiliary networks at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple, Union

import torch
import torch.nn.functional as F


@dataclass
class ModelOutput:
    logits: torch.Tensor
    aux: List[Tuple[torch.Tensor, float]] = field(default_factory=list)  # (logits, loss weight) per head


Output = Union[torch.Tensor, ModelOutput]


def main_logits(output: Output) -> torch.Tensor:
    """The main classifier's logits, whatever the model returned; metrics read only these."""
    return output.logits if isinstance(output, ModelOutput) else output


def classification_loss(output: Output, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the main logits plus, per auxiliary head, weight x its cross-entropy."""
    loss = F.cross_entropy(main_logits(output), labels, label_smoothing=label_smoothing)
    if isinstance(output, ModelOutput):
        for logits, weight in output.aux:
            loss = loss + weight * F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return loss
