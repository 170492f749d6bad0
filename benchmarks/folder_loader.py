"""Images/s of a training pass over an ImageNet-style JPEG folder: cnnbench's folder pipeline vs
torchvision's `ImageFolder` + transforms v2 + `DataLoader`.

    python benchmarks/folder_loader.py                      # 5,000 generated JPEGs in a temporary folder
    python benchmarks/folder_loader.py --root DIR           # generates them into DIR once, then reuses them
    python benchmarks/folder_loader.py --root DIR --workers 4 --images 20000

Both paths read the same files in the same run, with the same worker count and
batch size, and hand the training loop the same thing: a shuffled batch of
normalised float32 (N, 3, 224, 224) images, GoogLeNet's augmentation
(`augment=inception`: a random 8-100% area, 3/4-4/3 aspect patch resized to
224, random mirror), last partial batch dropped, on the CPU.

- cnnbench: `loader_for` on `data=imagenet augment=inception`, as `cnnbench
  train` builds it: workers read and decode with torchvision.io (libjpeg-turbo)
  and crop uint8 tensors; the main process converts and normalises the batch.
- torchvision: `ImageFolder` (PIL) + v2 RandomResizedCrop, RandomHorizontalFlip,
  PILToTensor, ToDtype, Normalize in the workers (the order torchvision's
  classification reference uses for PIL), default collate.

Each rate counts the batches after the first, so worker start-up is left out
of both. Then, on one core in this process, the time per image of each stage
(read, decode, crop and resize, and collate per batch) says where it goes.
The generated images are smooth random fields plus noise at ImageNet's usual
sizes (mostly 500x375 and 375x500, quality 90: about 70 kB each; ImageNet averages about 110 kB).
Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Tuple

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.io import ImageReadMode, decode_image, encode_jpeg, read_file
from torchvision.transforms import v2

from cnnbench.config import CONF_DIR, register_schemas
from cnnbench.data.pipeline import loader_for
from cnnbench.data.transforms import train_transform

SIZES = [(375, 500), (500, 375), (333, 500), (500, 333), (400, 400), (281, 500)]  # (height, width)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def write_jpegs(root: Path, images: int, classes: int, seed: int = 0) -> None:
    """``images`` JPEGs in ``root/train/<class>/``, unless a previous run left them there."""
    folder = root / "train"
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.JPEG")) == images:
        return
    generator = torch.Generator().manual_seed(seed)
    for index in range(images):
        height, width = SIZES[index % len(SIZES)]
        # A coarse random field upsampled gives photo-like smooth regions; the noise gives JPEG some detail to keep.
        coarse = torch.rand(1, 3, height // 16, width // 16, generator=generator)
        smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
        noisy = smooth * 255 + torch.randn(3, height, width, generator=generator) * 12
        path = folder / f"n{index % classes:08d}" / f"image_{index:06d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(noisy.clamp(0, 255).to(torch.uint8), quality=90).numpy().tobytes())


def cnnbench_loader(root: Path, workers: int, batch_size: int, classes: int):
    register_schemas()
    overrides = ["data=imagenet", f"data.root={root}", f"data.workers={workers}", f"data.batch_size={batch_size}",
                 f"data.num_classes={classes}", "augment=inception", "model=resnet18"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=overrides)
    return loader_for(cfg, "train", torch.device("cpu"), train=True)


def torchvision_transform() -> v2.Compose:
    return v2.Compose([
        v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(),
        v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD),
    ])


def torchvision_loader(root: Path, workers: int, batch_size: int) -> DataLoader:
    dataset = datasets.ImageFolder(str(root / "train"), transform=torchvision_transform())
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                      persistent_workers=workers > 0)


def rate(batches: Iterable) -> Tuple[float, int]:
    """Images/s over every batch after the first, and the images counted."""
    iterator = iter(batches)
    first, _ = next(iterator)
    assert first.shape[1:] == (3, 224, 224) and first.dtype == torch.float32, first.shape
    count, started = 0, time.perf_counter()
    for images, _ in iterator:
        count += len(images)
    return count / (time.perf_counter() - started), count


def per_image_ms(paths, step: Callable) -> float:
    started = time.perf_counter()
    for path in paths:
        step(path)
    return (time.perf_counter() - started) * 1000 / len(paths)


def stage_times(root: Path, samples: int, batch_size: int) -> None:
    """Milliseconds per image of each stage on one thread, and collate per batch."""
    torch.set_num_threads(1)
    paths = sorted((root / "train").rglob("*.JPEG"))[:samples]
    crop = train_transform(compose_inception(), 224)
    datas = [read_file(str(path)) for path in paths]
    decoded = [decode_image(data, mode=ImageReadMode.RGB) for data in datas]
    pil = [Image.open(path).convert("RGB") for path in paths]
    pil_crop = v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()])
    to_float = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    rows = [
        ("cnnbench", "read file", per_image_ms(paths, lambda p: read_file(str(p)))),
        ("cnnbench", "decode (torchvision.io)", per_image_ms(datas, lambda d: decode_image(d, mode=ImageReadMode.RGB))),
        ("cnnbench", "crop + resize (uint8 tensor)", per_image_ms(decoded, crop)),
        ("torchvision", "open + decode (PIL)", per_image_ms(paths, lambda p: Image.open(p).convert("RGB"))),
        ("torchvision", "crop + resize (PIL)", per_image_ms(pil, pil_crop)),
        ("torchvision", "to float + normalise", per_image_ms([im.resize((224, 224)) for im in pil], to_float)),
    ]
    uint8_batch = [torch.zeros(3, 224, 224, dtype=torch.uint8)] * batch_size
    float_batch = [torch.zeros(3, 224, 224)] * batch_size
    # per_image_ms over 20 batches gives milliseconds per batch here
    rows.append(("cnnbench", f"collate uint8 (per batch of {batch_size})", per_image_ms([uint8_batch] * 20, torch.stack)))
    rows.append(("torchvision", f"collate float32 (per batch of {batch_size})",
                 per_image_ms([float_batch] * 20, torch.stack)))
    print(f"\nstages on one thread, {samples} images (ms per image unless said):")
    for path_name, stage, ms in rows:
        print(f"  {path_name:<12} {stage:<42} {ms:8.2f}")


def compose_inception():
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=["data=imagenet", "augment=inception"]).augment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="where to write (or find) the generated JPEG tree")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="passes of each path; the best is reported")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="cnnbench-folder-"))
    started = time.perf_counter()
    write_jpegs(root, args.images, args.classes)
    size_mb = sum(path.stat().st_size for path in (root / "train").rglob("*.JPEG")) / 2**20
    print(f"{args.images} JPEGs ({size_mb:.0f} MiB) in {root} ready after {time.perf_counter() - started:.1f} s")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"workers={args.workers}, batch={args.batch_size}, main-process threads={torch.get_num_threads()}")
    ours = cnnbench_loader(root, args.workers, args.batch_size, args.classes)
    theirs = torchvision_loader(root, args.workers, args.batch_size)
    best_ours = best_theirs = 0.0
    for repeat in range(args.repeats):
        ours.set_epoch(repeat)
        best_ours = max(best_ours, rate(ours)[0])
        best_theirs = max(best_theirs, rate(theirs)[0])
    print(f"cnnbench folder loader: {best_ours:8.1f} images/s")
    print(f"torchvision ImageFolder: {best_theirs:8.1f} images/s")
    print(f"ratio: {best_ours / best_theirs:.2f}x")
    stage_times(root, min(200, args.images), args.batch_size)


if __name__ == "__main__":
    main()
