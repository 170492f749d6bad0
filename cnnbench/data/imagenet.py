"""ImageNet-style image folders on disk: ``<root>/<split>/<wnid>/<image>.JPEG``.

A class's index is the position of its folder name in sorted order, as in
torchvision's ``ImageFolder``. DataLoader workers read the files with
``torchvision.io.read_file``; then

- training on CUDA with ``data.gpu_decode`` (the default): the main process
  decodes each batch on the GPU with nvJPEG (``decode_jpeg(device="cuda")``)
  and crops there, which leaves the CPU cores to read files;
- otherwise the workers decode and crop on the CPU, and the main process
  copies uint8 batches (from pinned memory when training on CUDA).

Either way the conversion to float, the PCA lighting shift and the
normalisation happen on the training device, as in the in-memory loader.

Preparing the folders from the official archives::

    python -m cnnbench.data.imagenet prepare-val ROOT    # devkit + val tar -> ROOT/val/<wnid>/
    python -m cnnbench.data.imagenet prepare-train ROOT  # train tar -> ROOT/train/<wnid>/
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

from cnnbench.config import OnCorrupt
from cnnbench.data.datasets import default_data_root
from cnnbench.data.loaders import Loader, epoch_generator, shard_positions, uint8_normalization
from cnnbench.data.transforms import pca_lighting_shift, train_transform
from cnnbench.data.views import crop_views, eval_views
from cnnbench.errors import UserError

log = logging.getLogger("cnnbench")

# What decode_image reads. It goes by the bytes, not the name, so the one PNG
# and the CMYK JPEGs among ImageNet's .JPEG files decode too.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
LAYOUT = "<root>/{split}/<wnid>/<image>.JPEG (one folder per class)"


def dataset_root(data: DictConfig) -> Path:
    """`data.root` (the folder holding train/ and val/), else ``default_data_root()/<data.name>``."""
    return Path(data.root).expanduser() if data.root else default_data_root() / data.name


# --------------------------------------------------------------------------- the files


@dataclass
class FolderSplit:
    """The images of one split: file paths relative to ``folder``, and their labels."""

    folder: Path
    classes: List[str]
    # Bytes in a numpy array, not a list of str: forked workers then share the
    # pages instead of copying them as Python touches reference counts.
    files: np.ndarray
    labels: torch.Tensor  # int64, one per file

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        return self.folder / os.fsdecode(self.files[index])


def list_split(data: DictConfig, split: str) -> FolderSplit:
    """Find the class folders and image files of ``split``; a clear error when they are not there."""
    from torchvision.datasets.folder import find_classes, make_dataset

    if data.download:
        raise UserError(
            f"data '{data.name}' cannot be downloaded automatically: ImageNet is given out by image-net.org "
            "to registered users only; download the ILSVRC2012 archives there, prepare them with "
            "`python -m cnnbench.data.imagenet prepare-val ROOT` (and prepare-train), and set data.download=false"
        )
    folder = dataset_root(data) / split
    where = (
        f"data.root={data.root}" if data.root
        else "$CNNBENCH_DATA_ROOT/" + data.name if os.environ.get("CNNBENCH_DATA_ROOT")
        else "the default place; set data.root=PATH or $CNNBENCH_DATA_ROOT to change it"
    )
    if not folder.is_dir():
        raise UserError(
            f"data '{data.name}': no {split} folder at {folder} (from {where}); expected {LAYOUT.format(split=split)}; "
            "see `python -m cnnbench.data.imagenet --help` for turning the official archives into it"
        )
    try:
        classes, class_to_index = find_classes(folder)
        samples = make_dataset(folder, class_to_index, extensions=IMAGE_EXTENSIONS)
    except FileNotFoundError as err:
        raise UserError(f"data '{data.name}': {err} Expected {LAYOUT.format(split=split)}") from err
    if len(classes) != data.num_classes:
        raise UserError(
            f"data '{data.name}': {folder} has {len(classes)} class folders, but data.num_classes={data.num_classes}; "
            "a missing class would shift every label after it, so fix the folder or data.num_classes"
        )
    train_folder = folder.parent / "train"
    if split != "train" and train_folder.is_dir():
        train_classes, _ = find_classes(train_folder)
        if train_classes != classes:
            odd = sorted(set(classes) ^ set(train_classes))[:3]
            raise UserError(
                f"data '{data.name}': the class folders of {folder} differ from those of {train_folder} "
                f"(e.g. {', '.join(odd)}); labels would not mean the same classes, so make them match"
            )
    files = np.array([os.fsencode(os.path.relpath(path, folder)) for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return FolderSplit(folder, classes, files, labels)


def decode_on_cpu(data: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[str]]:
    """(uint8 RGB image, None), or (None, why) for a file that cannot be decoded."""
    try:
        return decode_image(data, mode=ImageReadMode.RGB), None
    except RuntimeError as err:
        return None, decoder_message(err)


def decoder_message(err: Exception) -> str:
    # torchvision prefixes its C++ source location ("decode_jpeg, .../decode_jpeg.cpp:171, "); keep the reason.
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^\w+, \S+:\d+, ", "", text)


# --------------------------------------------------------------------------- per image


@dataclass
class PrepareImage:
    """A decoded uint8 image -> the network's input (or its eval views) and an RGB lighting shift.

    The random draws of training augmentation come from torch's CPU generator
    seeded with the image's own seed (from :class:`EpochSampler`), inside
    ``fork_rng`` so the caller's random state is left as it was.
    """

    size: int
    train_transform: Optional[Callable] = None
    pca_lighting: float = 0.0
    crops: int = 1
    resize: int = 256
    scales: Tuple[int, ...] = ()

    def __call__(self, image: torch.Tensor, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.train_transform is None:
            views = eval_views(self.crops, image.shape[-2], image.shape[-1], self.size, self.resize, self.scales)
            out = crop_views(image, views, self.size)
            return (out[0] if len(views) == 1 else out), torch.zeros(3)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            image = self.train_transform(image)
            shift = pca_lighting_shift(self.pca_lighting) if self.pca_lighting else torch.zeros(3)
        return image, shift


class FolderImages(Dataset):
    """Reads one image per key ``(index, seed)``, in a DataLoader worker.

    With ``prepare`` it is also decoded and prepared there; without, the raw
    bytes go to the main process, which decodes them on the GPU.
    """

    def __init__(self, split: FolderSplit, prepare: Optional[PrepareImage]):
        self.split = split
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: Tuple[int, int]):
        index, seed = key
        try:
            data = read_file(str(self.split.path(index)))
        except RuntimeError as err:
            return None, None, index, decoder_message(err)
        if self.prepare is None:
            return data, seed, index, None
        image, error = decode_on_cpu(data)
        if image is None:
            return None, None, index, error
        image, shift = self.prepare(image, seed)
        return image, shift, index, None


def collate_decoded(items):
    """(images uint8, shifts, indices, failures): failures are (index, why) of unreadable files."""
    kept = [item for item in items if item[3] is None]
    failures = [(item[2], item[3]) for item in items if item[3] is not None]
    if not kept:
        return None, None, torch.empty(0, dtype=torch.long), failures
    return (torch.stack([item[0] for item in kept]), torch.stack([item[1] for item in kept]),
            torch.tensor([item[2] for item in kept]), failures)


def collate_raw(items):
    """(file bytes, seeds, indices, failures) for decoding in the main process."""
    kept = [item for item in items if item[3] is None]
    failures = [(item[2], item[3]) for item in items if item[3] is not None]
    return [item[0] for item in kept], [item[1] for item in kept], [item[2] for item in kept], failures


class EpochSampler(Sampler):
    """Keys ``(index, seed)`` for one pass over a split.

    Training: a permutation of the images and a seed per image for its random
    augmentation, both from ``epoch_generator(seed, epoch)``, so an epoch's
    batches depend on (seed, epoch) only: not on the number of workers, nor
    on whether the run was resumed. Evaluation: every image once, in order.
    With ``world_size`` > 1, rank ``rank`` gets its shard of those keys
    (``shard_positions``: its ``batch_size`` block of each global batch in
    training, a contiguous part in evaluation).
    """

    def __init__(self, size: int, seed: int, shuffle: bool, batch_size: int = 1, rank: int = 0, world_size: int = 1):
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.positions = shard_positions(size, batch_size, rank, world_size, train=shuffle)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        if not self.shuffle:
            return ((index, 0) for index in self.positions.tolist())
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(self.size, generator=generator)
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator)
        # Drawn for the whole split, then sliced: an image's augmentation does not depend on the rank.
        return zip(order[self.positions].tolist(), seeds[self.positions].tolist())


# --------------------------------------------------------------------------- batches


def ignore_stop_signals(worker_id: int) -> None:
    """In each DataLoader worker: a stop signal sent to the whole process group (a scheduler's
    SIGTERM, Ctrl-C's SIGINT, SIGUSR1) is the main process's to handle; it saves at the next
    step and then shuts the workers down. A worker killed by it would end the run instead."""
    for name in ("SIGTERM", "SIGINT", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


class FolderLoader(Loader):
    """Iterates normalised (images, labels) batches of a folder split on ``device``.

    Training loaders shuffle per epoch (call ``set_epoch``) and drop the last
    partial batch; evaluation loaders yield every image exactly once, as
    (N, C, H, W), or (N, views, C, H, W) for multi-crop evaluation. Unreadable
    files stop the run (``on_corrupt="error"``) or are left out and recorded in
    ``skipped`` (path -> reason) with one warning (``on_corrupt="skip"``).
    With ``world_size`` > 1 it iterates rank ``rank``'s shard (see
    :class:`EpochSampler`); ``batch_size`` is per rank.
    """

    def __init__(
        self,
        split: FolderSplit,
        prepare: PrepareImage,
        batch_size: int,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        seed: int = 0,
        workers: int = 0,
        decode_in_main: bool = False,
        on_corrupt: str = "error",
        name: str = "imagenet",
        rank: int = 0,
        world_size: int = 1,
    ):
        # data.on_corrupt comes checked from the schema; a direct caller's typo would otherwise mean "skip".
        if on_corrupt not in OnCorrupt.values():
            raise ValueError(f"on_corrupt must be one of {', '.join(OnCorrupt.values())}, got {on_corrupt!r}")
        self.split = split
        self.labels = split.labels
        self.prepare = prepare
        self.device = device
        self.train = train
        self.decode_in_main = decode_in_main
        self.on_corrupt = on_corrupt
        self.name = name
        self.lighting = train and prepare.pca_lighting > 0
        self._skipped: Dict[str, str] = {}
        self._warned = False
        self.sampler = EpochSampler(len(split), seed, shuffle=train, batch_size=batch_size, rank=rank,
                                    world_size=world_size)
        self.loader = DataLoader(
            FolderImages(split, None if decode_in_main else prepare),
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_raw if decode_in_main else collate_decoded,
            pin_memory=device.type == "cuda" and not decode_in_main,
            drop_last=train,
            persistent_workers=workers > 0,
            worker_init_fn=ignore_stop_signals if workers > 0 else None,
            # Its own generator: starting an epoch's iterator must not draw from the
            # global stream that dropout uses, or a run resumed mid-epoch would drift.
            # (Workers' random draws come from per-image seeds, not from this.)
            generator=torch.Generator().manual_seed(seed),
        )
        self.shift, self.scale = uint8_normalization(mean, std, device)

    @property
    def skipped(self) -> Dict[str, str]:
        return self._skipped

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            images, shifts, indices, failures = self.decode_batch(*batch) if self.decode_in_main else batch
            self.record_failures(failures)
            if images is None:
                continue
            images = images.to(self.device, non_blocking=True).float()
            if self.lighting:
                images += shifts.to(self.device, non_blocking=True).view(-1, 3, 1, 1) * 255.0
            labels = self.labels[indices].to(self.device, non_blocking=True)
            yield (images - self.shift) * self.scale, labels
        if self._skipped and not self._warned:
            self._warned = True
            path, why = next(iter(self._skipped.items()))
            log.warning(
                f"data '{self.name}': left out {len(self._skipped)} unreadable image(s) of {self.split.folder} "
                f"(data.on_corrupt=skip), e.g. {path}: {why}"
            )

    def decode_batch(self, datas, seeds, indices, failures):
        """Decode and prepare a batch of file bytes on ``self.device`` (the GPU path)."""
        try:
            images = decode_jpeg(datas, mode=ImageReadMode.RGB, device=self.device) if datas else []
        except RuntimeError:
            # One bad or non-JPEG file fails the whole batched call: decode each on
            # the CPU instead, which also reads what nvJPEG cannot (PNG, CMYK).
            images = []
            for data, index in zip(datas, indices):
                image, error = decode_on_cpu(data)
                images.append(None if image is None else image.to(self.device))
                if image is None:
                    failures.append((index, error))
        prepared, kept = [], []
        for image, seed, index in zip(images, seeds, indices):
            if image is not None:
                prepared.append(self.prepare(image, seed))
                kept.append(index)
        if not prepared:
            return None, None, torch.empty(0, dtype=torch.long), failures
        images = torch.stack([image for image, _ in prepared])
        shifts = torch.stack([shift for _, shift in prepared])
        return images, shifts, torch.tensor(kept), failures

    def record_failures(self, failures) -> None:
        for index, why in failures:
            path = self.split.path(index)
            if self.on_corrupt == "error":
                raise UserError(
                    f"cannot read image {path}: {why}; replace or delete the file, "
                    "or set data.on_corrupt=skip to leave unreadable images out"
                )
            self._skipped[str(path)] = why


def folder_loader(cfg: DictConfig, split: str, device: torch.device, train: bool, crops: int,
                  input_shape: Tuple[int, ...], rank: int = 0, world_size: int = 1) -> FolderLoader:
    """The loader of a folder dataset (`data.name` in FOLDER_DATASETS) for ``split``."""
    data = cfg.data
    # The input shape, augmentation, crop counts and view sizes were checked by cnnbench.validate.
    _, height, _ = input_shape
    if train:
        prepare = PrepareImage(height, train_transform(cfg.augment, height), float(cfg.augment.pca_lighting))
        batch_size = data.batch_size // world_size  # data.batch_size is the global batch
    else:
        prepare = PrepareImage(height, crops=crops, resize=cfg.eval.resize, scales=tuple(cfg.eval.scales))
        # Each image becomes `crops` network inputs: keep about eval_batch_size inputs per forward pass.
        batch_size = max(1, (data.eval_batch_size or data.batch_size) // crops)
    return FolderLoader(
        list_split(data, split), prepare, batch_size, device, list(data.mean), list(data.std), train=train,
        seed=cfg.seed, workers=data.workers, decode_in_main=bool(data.gpu_decode) and device.type == "cuda",
        on_corrupt=data.on_corrupt, name=data.name, rank=rank, world_size=world_size,
    )


# --------------------------------------------------------------------------- preparing the folders


def prepare_val(root: Path) -> Path:
    """Turn ``ILSVRC2012_img_val.tar`` and ``ILSVRC2012_devkit_t12.tar.gz`` in ``root`` into ``root/val/<wnid>/``.

    The val archive is one flat folder of 50,000 images; the devkit's ground
    truth says which class each is. torchvision's ImageNet parsers do the work
    (they check the archives' MD5 sums first).
    """
    from torchvision.datasets.imagenet import ARCHIVE_META, META_FILE, parse_devkit_archive, parse_val_archive

    root = Path(root).expanduser()
    require_archives(root, [ARCHIVE_META["devkit"][0], ARCHIVE_META["val"][0]])
    if (root / "val").exists():
        raise UserError(f"{root / 'val'} exists already; remove it to prepare the validation images again")
    with archive_errors():
        if not (root / META_FILE).is_file():
            parse_devkit_archive(str(root))
        parse_val_archive(str(root))
    return root / "val"


def prepare_train(root: Path) -> Path:
    """Unpack ``ILSVRC2012_img_train.tar`` (one tar per class inside) in ``root`` into ``root/train/<wnid>/``."""
    from torchvision.datasets.imagenet import ARCHIVE_META, parse_train_archive

    root = Path(root).expanduser()
    require_archives(root, [ARCHIVE_META["train"][0]])
    if (root / "train").exists():
        raise UserError(f"{root / 'train'} exists already; remove it to unpack the training images again")
    with archive_errors():
        parse_train_archive(str(root))
    return root / "train"


def require_archives(root: Path, names: List[str]) -> None:
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise UserError(
            f"{', '.join(missing)} not found in {root}; download the ILSVRC2012 archives from "
            "image-net.org (registration needed) and put them there"
        )


@contextmanager
def archive_errors() -> Iterator[None]:
    """Turn the RuntimeError torchvision raises for a damaged archive into a one-line UserError."""
    try:
        yield
    except RuntimeError as err:
        raise UserError(str(err).strip().splitlines()[0]) from err


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbench.data.imagenet",
        description="Turn the official ILSVRC2012 archives into the folders `data=imagenet` reads: "
                    "ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG. Put the archives in ROOT first.",
    )
    parser.add_argument("command", choices=["prepare-val", "prepare-train"],
                        help="prepare-val: ILSVRC2012_devkit_t12.tar.gz + ILSVRC2012_img_val.tar -> ROOT/val; "
                             "prepare-train: ILSVRC2012_img_train.tar -> ROOT/train")
    parser.add_argument("root", type=Path, help="the folder holding the archives (the future data.root)")
    args = parser.parse_args(argv)
    try:
        done = prepare_val(args.root) if args.command == "prepare-val" else prepare_train(args.root)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"prepared {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
