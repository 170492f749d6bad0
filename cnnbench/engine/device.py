"""Which device a run uses: `trainer.accelerator` (auto | cpu | cuda)."""

from __future__ import annotations

import torch

from cnnbench.errors import UserError

ACCELERATORS = ("auto", "cpu", "cuda")


def pick_device(accelerator: str) -> torch.device:
    if accelerator not in ACCELERATORS:
        raise UserError(f"accelerator '{accelerator}' is unknown; choose one of: {', '.join(ACCELERATORS)}")
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise UserError("accelerator=cuda, but torch sees no CUDA GPU; use trainer=cpu or accelerator=auto")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(accelerator)
