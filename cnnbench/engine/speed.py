"""The speed switches of `trainer`: precision, memory layout, compilation.

Defaults pick what is fastest on the device without changing results
beyond mixed-precision noise: on a GPU, bf16 autocast (fp16 with a gradient
scaler where bf16 is missing), channels-last and cudnn's autotuner; on the
CPU, fp32 and the default layout (CPU autocast and channels-last are slower
than fp32 for most of these networks on common CPUs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig

from cnnbench.errors import UserError


@dataclass
class Speed:
    device: torch.device
    dtype: Optional[torch.dtype]  # autocast dtype; None: fp32
    channels_last: bool
    scaler: torch.amp.GradScaler  # enabled for fp16 only; otherwise its calls pass straight through

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last and images.ndim == 4 else images


def speed_for(trainer: DictConfig, device: torch.device) -> Speed:
    """The speed settings of ``trainer`` (the schema's Precision names the precisions) on ``device``."""
    cuda = device.type == "cuda"
    precision = str(trainer.precision)
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    # Checked here, not in cnnbench.validate: with trainer.accelerator=auto only the
    # device picked on the machine that runs says whether there is a GPU (validate
    # refuses fp16 with an explicit trainer.accelerator=cpu before anything starts).
    if precision == "fp16" and not cuda:
        raise UserError(f"trainer.precision=fp16 needs a CUDA GPU, but this run is on {device.type}; use bf16 or fp32")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    channels_last = cuda if trainer.channels_last is None else bool(trainer.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cudnn pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    return Speed(device, dtype, channels_last, scaler)
