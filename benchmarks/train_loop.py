"""Whole-epoch training throughput: `cnnbench train`'s loop vs a bare hand-written loop, same precision and layout.

    python benchmarks/train_loop.py                                  # resnet20 and nin_cifar, 4 epochs each
    python benchmarks/train_loop.py --models resnet20 --epochs 6 --threads 2

Both loops train the same cnnbench-built network on the same batches (the
in-memory loader of `data=synthetic`, 32x32 RGB, batch 128) with the speed
settings `trainer.precision=auto` picks on this machine (bf16 autocast +
channels-last where the CPU has bf16 in hardware, else fp32).

- cnnbench: the engine's `train` (what `cnnbench train` runs below the
  command line): progress bar off, with its per-step loss and accuracy sums,
  the periodic loss check and TensorBoard step logging, the stop-flag check,
  the per-epoch evaluation, checkpoint and results writing. Its images/s is
  the one it records: images of the training pass over the pass's own time
  (`train_seconds` in metrics.jsonl), evaluation and saving excluded.
- bare: `for images, labels in loader:` autocast, forward, cross-entropy,
  zero_grad, backward, SGD step (momentum 0.9, weight decay 5e-4), timed the
  same way over the training pass; once at the same precision and layout
  (the loop's own overhead), once in fp32 and the default layout (what the
  speed defaults gain).

The first epoch of each is left out (allocator and oneDNN warm-up); the rate
is over the remaining epochs. The two loops alternate, best of ``--repeats``
each, so a change in the machine's load hits both. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cnnbench.config import CONF_DIR, register_schemas
from cnnbench.data.pipeline import loader_for
from cnnbench.engine.speed import speed_for
from cnnbench.engine.train import train
from cnnbench.models import main_logits
from cnnbench.models.api import model_from_config


def config(model: str, epochs: int, threads: int, images: int):
    register_schemas()
    overrides = [f"model={model}", "data=synthetic", f"data.train_size={images}", "data.val_size=256",
                 "data.batch_size=128", f"trainer.epochs={epochs}", "trainer.accelerator=cpu",
                 f"trainer.threads={threads}", "trainer.progress_bar=false", "augment=none"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=overrides)


def cnnbench_rate(cfg) -> float:
    """Images/s of the engine's training passes after the first epoch, as it records them."""
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        train(cfg, run_dir)
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    later = records[1:]
    steps = len(loader_for(cfg, "train", torch.device("cpu"), train=True))
    return len(later) * steps * cfg.data.batch_size / sum(record["train_seconds"] for record in later)


def bare_rate(cfg, fp32: bool = False) -> float:
    """Images/s of a hand-written loop over the same loader and network, at the run's speed
    settings or (``fp32``) in fp32 eager mode and the default layout."""
    torch.manual_seed(cfg.seed)
    device = torch.device("cpu")
    trainer = OmegaConf.merge(cfg.trainer, {"precision": "fp32", "channels_last": False}) if fp32 else cfg.trainer
    speed = speed_for(trainer, device)
    model = model_from_config(cfg)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = loader_for(cfg, "train", device, train=True)
    model.train()
    seconds: List[float] = []
    for epoch in range(cfg.trainer.epochs):
        loader.set_epoch(epoch)
        started = time.perf_counter()
        for images, labels in loader:
            with speed.autocast():
                loss = F.cross_entropy(main_logits(model(speed.to_input(images))), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    later = seconds[1:]
    return len(later) * len(loader) * cfg.data.batch_size / sum(later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet20", "nin_cifar"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=2560, help="training images per epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print("| model | precision, layout | cnnbench train images/s | bare loop, same settings | ratio "
          "| bare fp32 loop | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in args.models:
        cfg = config(model, args.epochs, args.threads, args.images)
        torch.set_num_threads(args.threads)
        speed = speed_for(cfg.trainer, torch.device("cpu"))
        ours, bare, fp32 = 0.0, 0.0, 0.0
        for _ in range(args.repeats):
            bare = max(bare, bare_rate(cfg))
            fp32 = max(fp32, bare_rate(cfg, fp32=True))
            ours = max(ours, cnnbench_rate(cfg))
        layout = "channels-last" if speed.channels_last else "default layout"
        print(f"| {model} | {speed.precision}, {layout} | {ours:,.1f} | {bare:,.1f} | {ours / bare:.2f}x "
              f"| {fp32:,.1f} | {ours / fp32:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
