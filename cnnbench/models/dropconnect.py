"""DropConnect: a fully connected layer whose *weights* are dropped at random.

Wan, Zeiler, Zhang, LeCun, Fergus. Regularization of Neural Networks using
DropConnect. ICML 2013.

Training (section 2.2): r = a((M * W) v), each entry of the mask M kept with
probability q (the paper's p) and drawn afresh for every example; the bias
is one more masked weight, on a constant input of 1. Nothing is rescaled.

Inference (section 3, Algorithm 2): each pre-activation u = (M * W) v is a
sum of many independent terms, so it is close to a Gaussian with the moments
of the mask's distribution,

    mean = q W v                var = q (1 - q) (W * W)(v * v),

and the layer returns E[a(u)], estimated by drawing ``samples`` values of u
from that Gaussian and averaging a(u) over them. The paper argues this is
better than the dropout-style "mean network" a(q W v), which moves the
expectation inside the non-linearity. The draws come from a generator
seeded with the layer's ``seed`` on every call, so inference is a
deterministic function of the input and never consumes the global random
stream (a validation pass does not change what the next epoch trains on).
The standard-normal draws are ``samples`` x out, shared by every example
of a batch (each example scales them by its own mean and std): an example's
output depends on that example alone, never on its batchmates, the batch
size or its position in the batch, and each example's estimate is still
the average over ``samples`` independent Gaussian draws per unit, as
Algorithm 2 asks.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "none": lambda u: u,
}

# Gaussian draws per chunk at inference: bounds memory to chunk x batch x out.
_SAMPLE_CHUNK = 100


class DropConnectLinear(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        p: float,
        activation: str,
        samples: int,
        per_example: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)  # torch's initialisation
        self.p = p
        self.activation = activation
        self.samples = samples
        self.per_example = per_example
        self.seed = seed

    def extra_repr(self) -> str:
        return (f"p={self.p}, activation={self.activation}, samples={self.samples}, "
                f"per_example={self.per_example}")

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        keep = 1.0 - self.p
        weight, bias = self.linear.weight, self.linear.bias
        if self.training:
            if self.per_example:
                # One mask per example, as in the paper: (batch, out, in) masks.
                w_mask = torch.rand(v.shape[0], *weight.shape, device=v.device) < keep
                b_mask = torch.rand(v.shape[0], *bias.shape, device=v.device) < keep
                u = torch.bmm(w_mask.to(weight.dtype) * weight, v.unsqueeze(-1)).squeeze(-1)
                return act(u + b_mask.to(bias.dtype) * bias)
            w_mask = torch.rand(weight.shape, device=v.device) < keep
            b_mask = torch.rand(bias.shape, device=v.device) < keep
            return act(F.linear(v, w_mask.to(weight.dtype) * weight, b_mask.to(bias.dtype) * bias))
        mean = keep * F.linear(v, weight, bias)
        if self.activation == "none":
            return mean  # E[u] exactly; sampling would only add noise
        if v.device.type == "meta":
            return act(mean)  # shape inference: the meta device has no generator, and no values to sample
        std = (keep * (1.0 - keep) * F.linear(v * v, weight * weight, bias * bias)).sqrt()
        generator = torch.Generator(device=v.device).manual_seed(self.seed)
        total = torch.zeros_like(mean)
        for start in range(0, self.samples, _SAMPLE_CHUNK):
            count = min(_SAMPLE_CHUNK, self.samples - start)
            # (count, 1, ..., out): the same draws broadcast over the batch, see the module docstring.
            shape = (count, *[1] * (mean.dim() - 1), mean.shape[-1])
            noise = torch.randn(shape, generator=generator, device=v.device, dtype=mean.dtype)
            total += act(mean + std * noise).sum(0)
        return total / self.samples
