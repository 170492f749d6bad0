"""Which device a run uses: `trainer.accelerator` (auto | cpu | cuda)."""

from __future__ import annotations

import torch

from cnnbench.errors import UserError


def pick_device(accelerator: str) -> torch.device:
    """The device of ``accelerator``, one of the schema's Accelerator choices."""
    accelerator = str(accelerator)  # a Choice member or, from a stored config, the plain string
    # Whether there is a GPU is a fact of this machine, not of the config: checked here, not in validate.
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise UserError("accelerator=cuda, but torch sees no CUDA GPU; use trainer=cpu or accelerator=auto")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(accelerator)
