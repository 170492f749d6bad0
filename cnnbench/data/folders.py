"""Image-folder datasets on disk: ``<root>/<split>/<class>/<image>`` (data=folder, data=imagenet).

A class's index is the position of its folder name in sorted order, as in
torchvision's ``ImageFolder``; train/ and val/ must hold the same class
folders. DataLoader workers read the files with ``torchvision.io.read_file``;
then

- training on CUDA with ``data.gpu_decode`` (the default): the main process
  decodes each batch on the GPU with nvJPEG (``decode_jpeg(device="cuda")``)
  and crops there, which leaves the CPU cores to read files;
- otherwise the workers decode and crop on the CPU, and the main process
  copies uint8 batches (from pinned memory when training on CUDA).

Images are decoded as RGB, or as grey (one channel) with ``data.channels=1``.
Either way the conversion to float, the PCA lighting shift and the
normalisation happen on the training device, as in the in-memory loader.

What the config may leave open is filled in from the folders before the
model is built (:func:`complete_folder_config`): ``data.num_classes`` (the
number of class folders) and ``data.mean``/``data.std`` (the per-channel
statistics of every pixel of every training image as decoded, on the [0, 1]
scale, before any resizing), which are cached in a small JSON file next to
the data, keyed by the training file list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import tempfile
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
from cnnbench.validate import eval_resize

log = logging.getLogger("cnnbench")

# What decode_image reads. It goes by the bytes, not the name, so the one PNG
# and the CMYK JPEGs among ImageNet's .JPEG files decode too.
# Seconds a DataLoader may wait for a batch from its workers (see FolderLoader).
WORKER_TIMEOUT_S = 600
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
LAYOUT = "<root>/{split}/<class>/<image> (one folder per class, .jpg/.jpeg/.png)"
IMAGENET_LAYOUT = "<root>/{split}/<wnid>/<image>.JPEG (one folder per class)"
# The cached training-set statistics (data.mean/std null), in the dataset's root.
STATS_FILE = "cnnbench-stats.json"


def dataset_root(data: DictConfig) -> Path:
    """`data.root` (the folder holding train/ and val/), else ``default_data_root()/<data.name>``;
    data=folder has no default place: it is whatever folder the user points at."""
    if data.root:
        return Path(data.root).expanduser()
    if data.name == "folder":
        raise UserError("data=folder needs the folder holding train/<class>/ and val/<class>/: set data.root=DIR")
    return default_data_root() / data.name


def layout(data: DictConfig, split: str) -> str:
    return (IMAGENET_LAYOUT if data.name == "imagenet" else LAYOUT).format(split=split)


def read_mode(channels: int) -> ImageReadMode:
    """How images are decoded for ``channels`` (validated to be 1 or 3): grey or RGB."""
    return ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB


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

    refuse_download(data)
    folder = split_folder(data, split)
    try:
        classes, class_to_index = find_classes(folder)
        samples = make_dataset(folder, class_to_index, extensions=IMAGE_EXTENSIONS)
    except FileNotFoundError as err:
        raise UserError(f"data '{data.name}': {err} Expected {layout(data, split)}") from err
    if data.num_classes is not None and len(classes) != data.num_classes:
        raise UserError(
            f"data '{data.name}': {folder} has {len(classes)} class folders, but data.num_classes={data.num_classes}; "
            "a missing class would shift every label after it, so fix the folder or set data.num_classes="
            f"{len(classes)} (or null to take the folder count)"
        )
    train_folder = folder.parent / "train"
    if split != "train" and train_folder.is_dir():
        check_same_classes(data, folder, classes, train_folder, find_classes(train_folder)[0])
    files = np.array([os.fsencode(os.path.relpath(path, folder)) for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return FolderSplit(folder, classes, files, labels)


def refuse_download(data: DictConfig) -> None:
    if not data.download:
        return
    if data.name == "imagenet":
        raise UserError(
            f"data '{data.name}' cannot be downloaded automatically: ImageNet is given out by image-net.org "
            "to registered users only; download the ILSVRC2012 archives there, prepare them with "
            "`python -m cnnbench.data.imagenet prepare-val ROOT` (and prepare-train), and set data.download=false"
        )
    raise UserError(f"data '{data.name}' cannot be downloaded automatically: it is your own image folders; "
                    "set data.download=false")


def split_folder(data: DictConfig, split: str) -> Path:
    """``<root>/<split>``, or a UserError saying where it was looked for and what belongs there."""
    folder = dataset_root(data) / split
    if folder.is_dir():
        return folder
    where = (
        f"data.root={data.root}" if data.root
        else "$CNNBENCH_DATA_ROOT/" + data.name if os.environ.get("CNNBENCH_DATA_ROOT")
        else "the default place; set data.root=PATH or $CNNBENCH_DATA_ROOT to change it"
    )
    hint = ("; see `python -m cnnbench.data.imagenet --help` for turning the official archives into it"
            if data.name == "imagenet" else "")
    raise UserError(f"data '{data.name}': no {split} folder at {folder} (from {where}); "
                    f"expected {layout(data, split)}{hint}")


def check_same_classes(data: DictConfig, folder: Path, classes: List[str], train_folder: Path,
                       train_classes: List[str]) -> None:
    """A label is a position in the sorted class list: both splits must list the same classes."""
    if train_classes == classes:
        return
    only_here = sorted(set(classes) - set(train_classes))
    only_train = sorted(set(train_classes) - set(classes))
    differences = [f"only in {folder.name}/: {', '.join(only_here[:3])}{' ...' if len(only_here) > 3 else ''}"
                   if only_here else "",
                   f"only in train/: {', '.join(only_train[:3])}{' ...' if len(only_train) > 3 else ''}"
                   if only_train else ""]
    raise UserError(
        f"data '{data.name}': the class folders of {folder} differ from those of {train_folder} "
        f"({'; '.join(d for d in differences if d)}); labels would not mean the same classes, so make them match"
    )


def decode_on_cpu(data: torch.Tensor, channels: int = 3) -> Tuple[Optional[torch.Tensor], Optional[str]]:
    """(uint8 image, None): RGB, or grey for ``channels=1``; or (None, why) for a file that cannot be decoded."""
    try:
        return decode_image(data, mode=read_mode(channels)), None
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

    ``channels`` says how the files are decoded for it (3: RGB, 1: grey); the
    lighting shift is RGB only (cnnbench.validate refuses it for grey images).

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
    channels: int = 3

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
        image, error = decode_on_cpu(data, self.prepare.channels)
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
        name: str = "folder",
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
            # A worker that has not delivered a batch in this long is hung, not slow: end the run
            # (one line, cnnbench.engine.distributed.dataloader_worker_death) instead of waiting forever.
            timeout=WORKER_TIMEOUT_S if workers > 0 else 0,
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
            mode = read_mode(self.prepare.channels)
            images = decode_jpeg(datas, mode=mode, device=self.device) if datas else []
        except RuntimeError:
            # One bad or non-JPEG file fails the whole batched call: decode each on
            # the CPU instead, which also reads what nvJPEG cannot (PNG, CMYK).
            images = []
            for data, index in zip(datas, indices):
                image, error = decode_on_cpu(data, self.prepare.channels)
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
    """The loader of a folder dataset (`data.name` in FOLDER_DATASETS) for ``split``; the config's
    open keys must have been filled in (:func:`complete_folder_config`)."""
    data = cfg.data
    # The input shape, augmentation, crop counts and view sizes were checked by cnnbench.validate.
    channels, height, _ = input_shape
    if train:
        prepare = PrepareImage(height, train_transform(cfg.augment, height), float(cfg.augment.pca_lighting),
                               channels=channels)
        batch_size = data.batch_size // world_size  # data.batch_size is the global batch
    else:
        prepare = PrepareImage(height, crops=crops, resize=eval_resize(cfg), scales=tuple(cfg.eval.scales),
                               channels=channels)
        # Each image becomes `crops` network inputs: keep about eval_batch_size inputs per forward pass.
        batch_size = max(1, (data.eval_batch_size or data.batch_size) // crops)
    return FolderLoader(
        list_split(data, split), prepare, batch_size, device, list(data.mean), list(data.std), train=train,
        seed=cfg.seed, workers=data.workers, decode_in_main=bool(data.gpu_decode) and device.type == "cuda",
        on_corrupt=data.on_corrupt, name=data.name, rank=rank, world_size=world_size,
    )


# --------------------------------------------------------------------------- what the folders say


def complete_folder_config(cfg: DictConfig) -> None:
    """Fill in the keys a folder dataset's config may leave null, from its training split:
    ``data.num_classes`` (the class folders) and ``data.mean``/``data.std`` (computed once, then
    read from the cache). They are set in ``cfg`` itself, before the model is built, so the
    run's config.yaml and checkpoints hold the numbers it trained with; `cnnbench eval` and a
    resumed run use those, not the folders'."""
    data = cfg.data
    if data.num_classes is not None and data.mean is not None and data.std is not None:
        return
    split = list_split(data, "train")
    if data.num_classes is None:
        data.num_classes = len(split.classes)
    if data.mean is None or data.std is None:
        mean, std = training_statistics(data, split)
        # One given and the other null: the given one is used as it is.
        if data.mean is None:
            data.mean = mean
        if data.std is None:
            data.std = std


def training_statistics(data: DictConfig, split: FolderSplit) -> Tuple[List[float], List[float]]:
    """(mean, std) per channel of the training images, from the cache when its file list matches."""
    channels = int(data.channels)
    root = split.folder.parent
    key = file_list_key(split, channels)
    places = stats_places(root)
    for place in places:
        entry = read_stats_entry(place, channels)
        if entry and entry.get("key") == key:
            return list(entry["mean"]), list(entry["std"])
    target = places[0] if os.access(root, os.W_OK) else places[1]
    log.info(
        f"data '{data.name}': data.mean/std are null; computing them from the {len(split)} training images "
        f"of {split.folder} ({'grey' if channels == 1 else 'RGB'}), once: cached in {target}"
    )
    mean, std = channel_statistics(split, channels, int(data.workers), str(data.on_corrupt), data.name)
    entry = {"key": key, "images": len(split), "mean": mean, "std": std}
    for place in places[places.index(target):]:
        if write_stats_entry(place, channels, entry):
            break
    return mean, std


def file_list_key(split: FolderSplit, channels: int) -> str:
    """What the statistics depend on: the decoding, and each file's path, size and modification time
    (a file added, removed, renamed or rewritten changes it)."""
    digest = hashlib.sha256(f"channels={channels}\n".encode())
    for name in split.files:
        info = os.stat(split.folder / os.fsdecode(name))
        digest.update(bytes(name) + f"\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def stats_places(root: Path) -> List[Path]:
    """Where the cache may be: next to the data, else (a read-only root) under the user's cache folder."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnbench" / "stats"
    name = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:16]
    return [root / STATS_FILE, cache / f"{name}.json"]


def read_stats_entry(path: Path, channels: int) -> Optional[dict]:
    try:
        return json.loads(path.read_text()).get(str(channels))
    except (OSError, ValueError, AttributeError):
        return None  # absent, unreadable or damaged: computed again and rewritten


def write_stats_entry(path: Path, channels: int, entry: dict) -> bool:
    """Store ``entry`` for ``channels`` in ``path`` (atomically: ranks of a run may write at once);
    False when the place cannot be written."""
    try:
        existing = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        existing = {}
    existing = existing if isinstance(existing, dict) else {}
    existing[str(channels)] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            json.dump(existing, file, indent=1)
        os.replace(temporary, path)
        return True
    except OSError:
        return False


class PixelSums(Dataset):
    """Per image: (index, int64 sums (2, C) of pixels and squared pixels, pixel count, why unreadable)."""

    def __init__(self, split: FolderSplit, channels: int):
        self.split = split
        self.channels = channels

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        try:
            image, error = decode_on_cpu(read_file(str(self.split.path(index))), self.channels)
        except RuntimeError as err:
            image, error = None, decoder_message(err)
        if image is None:
            return index, None, 0, error
        pixels = image.flatten(1).long()
        return index, torch.stack([pixels.sum(1), pixels.square().sum(1)]), pixels.shape[1], None


def as_list(items):
    return items


def channel_statistics(split: FolderSplit, channels: int, workers: int, on_corrupt: str,
                       name: str) -> Tuple[List[float], List[float]]:
    """Mean and (population) std per channel of every pixel of ``split``, on the [0, 1] scale.
    Integer sums: exact however many pixels, so the result does not depend on the order."""
    sums, count, skipped = torch.zeros(2, channels, dtype=torch.long), 0, 0
    loader = DataLoader(PixelSums(split, channels), batch_size=32, num_workers=workers, collate_fn=as_list,
                        worker_init_fn=ignore_stop_signals if workers > 0 else None)
    for items in loader:
        for index, image_sums, pixels, error in items:
            if error is None:
                sums += image_sums
                count += pixels
            elif on_corrupt == "error":
                raise UserError(f"cannot read image {split.path(index)}: {error}; replace or delete the file, "
                                "or set data.on_corrupt=skip to leave unreadable images out")
            else:
                skipped += 1
    if count == 0:
        raise UserError(f"data '{name}': no readable training images in {split.folder} to compute data.mean/std "
                        "from; add images or set data.mean and data.std")
    mean = [s / count / 255.0 for s in sums[0].tolist()]
    # From exact integers: n * sum(x^2) - sum(x)^2 >= 0, so no negative variance from rounding.
    std = [((count * sq - s * s) ** 0.5) / count / 255.0 for s, sq in zip(sums[0].tolist(), sums[1].tolist())]
    if skipped:
        log.warning(f"data '{name}': left out {skipped} unreadable image(s) of {split.folder} from data.mean/std "
                    "(data.on_corrupt=skip)")
    if min(std) <= 0:
        raise UserError(f"data '{name}': the training images of {split.folder} do not vary (std {std}); "
                        "set data.mean and data.std")
    return mean, std
