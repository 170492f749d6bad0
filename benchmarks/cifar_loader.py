"""Images/s of one CIFAR-10 training epoch: cnnbench's in-memory fast path vs torchvision's classic path.

    python benchmarks/cifar_loader.py                 # on 50,000 random images in CIFAR-10's file format
    python benchmarks/cifar_loader.py --root DIR      # on the real CIFAR-10 under DIR/cifar-10-batches-py

Both paths read the same files in the same run and make the same batches:
batch 128, shuffled, last partial batch dropped, zero-pad 4 + random 32x32
crop + random horizontal flip, then ToTensor + Normalize with CIFAR-10's
mean/std, all on the CPU.

- fast path: `load_dataset` + `DeviceLoader` (uint8 set in memory, batched
  crop/flip/normalise, no workers), as `cnnbench train data=cifar10` uses it.
- classic path: torchvision.datasets.CIFAR10 (one PIL image per sample) +
  RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize +
  DataLoader, with num_workers 0, 1 and 2; the best is reported. On the
  generated files it is a subclass of torchvision's CIFAR10 that skips the
  MD5 checks (the files are not the official ones); loading and
  ``__getitem__`` are torchvision's own code.

Each rate counts the batches after the first, so worker start-up and the
fast path's one-time setup (padding, mirrored copy) are left out of both;
the setup time is printed separately. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import pickle
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from cnnbench.config import CONF_DIR
from cnnbench.data.datasets import load_dataset
from cnnbench.data.loaders import DeviceLoader

TRAIN_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]


def write_random_cifar10(root: Path, per_batch: int = 10_000, seed: int = 0) -> None:
    """CIFAR-10's train batches (pickled dicts of uint8 data (N, 3072) and labels) with random content."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in TRAIN_FILES:
        entry = {"batch_label": name, "labels": rng.integers(0, 10, per_batch).tolist(),
                 "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))


class UncheckedCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 without its MD5 checks, for files that are not the official ones."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.classes = [str(i) for i in range(10)]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


def rate(batches, batch_size: int) -> tuple[float, int]:
    """Images/s over every batch after the first, and how many batches there were."""
    iterator = iter(batches)
    first = next(iterator)
    assert first[0].shape[1:] == (3, 32, 32) and first[0].dtype == torch.float32
    count, started = 0, time.perf_counter()
    for images, _ in iterator:
        count += len(images)
    seconds = time.perf_counter() - started
    return count / seconds, count // batch_size + 1


def fast_path(cfg, batch_size: int, epochs: int) -> float:
    started = time.perf_counter()
    dataset = load_dataset(cfg, "train")
    loader = DeviceLoader(dataset, batch_size, torch.device("cpu"), list(cfg.mean), list(cfg.std), train=True,
                          seed=0, crop_padding=4, hflip=True)
    print(f"fast path: setup (read files, pad, mirror) {time.perf_counter() - started:.2f} s")
    best = 0.0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        images_per_s, batches = rate(loader, batch_size)
        print(f"fast path: epoch {epoch + 1}: {batches} batches, {images_per_s:,.0f} images/s")
        best = max(best, images_per_s)
    return best


def classic_path(root: Path, official: bool, mean, std, batch_size: int, workers: list[int]) -> float:
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(mean, std),
    ])
    kind = datasets.CIFAR10 if official else UncheckedCIFAR10
    dataset = kind(str(root), train=True, transform=transform, download=False)
    best = 0.0
    for count in workers:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=count)
        images_per_s, batches = rate(loader, batch_size)
        print(f"classic path: num_workers={count}: {batches} batches, {images_per_s:,.0f} images/s")
        best = max(best, images_per_s)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="folder holding the real cifar-10-batches-py/")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", default="0,1,2", help="DataLoader num_workers to try, comma-separated")
    parser.add_argument("--epochs", type=int, default=3, help="fast-path epochs to time (the best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = OmegaConf.load(CONF_DIR / "data" / "cifar10.yaml")
    workers = [int(w) for w in args.workers.split(",")]
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            root = Path(scratch)
            started = time.perf_counter()
            write_random_cifar10(root)
            print(f"wrote 50,000 random images in CIFAR-10's format to a temporary folder "
                  f"({time.perf_counter() - started:.1f} s)")
        cfg.root = str(root)
        fast = fast_path(cfg, args.batch_size, args.epochs)
        classic = classic_path(root, args.root is not None, list(cfg.mean), list(cfg.std), args.batch_size, workers)
    print(f"\nfast path    {fast:12,.0f} images/s")
    print(f"classic path {classic:12,.0f} images/s (best of num_workers={args.workers})")
    print(f"ratio        {fast / classic:12.1f}x")


if __name__ == "__main__":
    main()
