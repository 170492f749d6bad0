"""What a run logs to TensorBoard (``<run>/tb``): step and epoch scalars, the first
layer's filters, and one HParams entry."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
import torchvision
from torch.utils.tensorboard import SummaryWriter


class NoWriter:
    """What processes other than the first log to: nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def open_writer(run_dir: Path, is_main: bool):
    return SummaryWriter(str(run_dir / "tb")) if is_main else NoWriter()


def log_step(writer, global_step: int, loss: float, top1: float, lr: float) -> None:
    writer.add_scalar("train/loss_step", loss, global_step)
    writer.add_scalar("train/top1_step", top1, global_step)
    writer.add_scalar("train/lr_step", lr, global_step)


def log_epoch(writer, record: dict, images_per_s: float, model: torch.nn.Module) -> None:
    epoch = record["epoch"]
    writer.add_scalar("train/loss", record["train"]["loss"], epoch)
    writer.add_scalar("train/top1", record["train"]["top1"], epoch)
    for key in ("top1", "top5", "loss"):
        if key in record["val"]:
            writer.add_scalar(f"val/{key}", record["val"][key], epoch)
    writer.add_scalar("lr", record["lr"], epoch)
    writer.add_scalar("speed/epoch_seconds", record["seconds"], epoch)
    writer.add_scalar("speed/train_images_per_s", images_per_s, epoch)
    filters = first_layer_filters(model)
    if filters is not None:
        writer.add_image("filters/first_layer", filters, epoch)


def first_layer_filters(model: torch.nn.Module) -> Optional[torch.Tensor]:
    """The first convolution's kernels as one image grid (AlexNet, Figure 3): RGB
    kernels in colour, others by their first input channel, each scaled to [0, 1]."""
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None:
        return None
    weights = conv.weight.detach().float().cpu()
    if weights.shape[1] != 3:
        weights = weights[:, :1]
    low = weights.amin(dim=(1, 2, 3), keepdim=True)
    high = weights.amax(dim=(1, 2, 3), keepdim=True)
    weights = (weights - low) / (high - low).clamp_min(1e-12)
    return torchvision.utils.make_grid(weights, nrow=int(math.ceil(math.sqrt(len(weights)))), padding=1, pad_value=1.0)


def write_hparams(run_dir: Path, hparams: dict, results: dict) -> None:
    """One HParams entry per run, so TensorBoard's HParams tab compares a sweep."""
    final = {f"hparams/{k}": results[k] for k in ("top1", "top5", "best_top1") if results.get(k) is not None}
    with SummaryWriter(str(run_dir / "tb")) as writer:
        writer.add_hparams(hparams, final, run_name=".")
