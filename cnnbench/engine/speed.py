"""The speed switches of `trainer`: precision, memory layout, compilation.

Defaults pick what is fastest on the device without changing results
beyond mixed-precision noise: on a GPU, bf16 autocast (fp16 with a gradient
scaler where bf16 is missing), channels-last and cudnn's autotuner; on a CPU
with bf16 in hardware (AVX512-BF16 or AMX), bf16 autocast and channels-last
(measured 2-3x fp32 on resnet20 and nin_cifar, see BENCHMARKS.md); on other
CPUs, fp32 and the default layout, where bf16 is emulated.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
from omegaconf import DictConfig

from cnnbench.errors import UserError


@dataclass
class Speed:
    device: torch.device
    dtype: Optional[torch.dtype]  # autocast dtype; None: fp32
    channels_last: bool
    scaler: torch.amp.GradScaler  # enabled for fp16 only; otherwise its calls pass straight through
    reason: str = "set by trainer.precision"  # why this precision: the log and results.json say it

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
    precision, reason = auto_precision(device) if str(trainer.precision) == "auto" else (str(trainer.precision), Speed.reason)
    # Checked here, not in cnnbench.validate: with trainer.accelerator=auto only the
    # device picked on the machine that runs says whether there is a GPU (validate
    # refuses fp16 with an explicit trainer.accelerator=cpu before anything starts).
    if precision == "fp16" and not cuda:
        raise UserError(f"trainer.precision=fp16 needs a CUDA GPU, but this run is on {device.type}; use bf16 or fp32")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    # Channels-last goes with the fast paths: cudnn, and oneDNN's bf16 kernels on the CPU.
    native_path = cuda or (precision == "bf16" and cpu_has_native_bf16())
    channels_last = native_path if trainer.channels_last is None else bool(trainer.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cudnn pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    return Speed(device, dtype, channels_last, scaler, reason)


def auto_precision(device: torch.device) -> Tuple[str, str]:
    """``trainer.precision=auto``: the precision for ``device``, and why."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "trainer.precision=auto: the GPU has bf16"
        return "fp16", "trainer.precision=auto: the GPU has no bf16, so fp16 with a gradient scaler"
    if cpu_has_native_bf16():
        return "bf16", "trainer.precision=auto: the CPU has bf16 in hardware (AVX512-BF16 or AMX)"
    return "fp32", "trainer.precision=auto: the CPU has no bf16 in hardware (it would be emulated)"


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: AVX512-BF16 or AMX-BF16 (torch's own
    CPU feature probe; /proc/cpuinfo's flags where that private probe is missing)."""
    try:
        features = torch._C._cpu._get_cpu_capability()
        return bool(features.get("avx512_bf16") or features.get("amx_bf16"))
    except (AttributeError, RuntimeError):
        try:
            flags = Path("/proc/cpuinfo").read_text().split()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
