"""CIFAR-10 and CIFAR-100 (Krizhevsky, "Learning Multiple Layers of Features
from Tiny Images", 2009), read from torchvision's on-disk layout.

    <root>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    <root>/cifar-100-python/train, test, meta

which is what the official ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``
archives unpack to. Split ``train`` is the 50,000 training images, split
``val`` the official 10,000-image test set (what the papers report on).

Why we read the pickled batches ourselves rather than through
``torchvision.datasets.CIFAR10``: that class refuses any file whose MD5
differs from the official one, so it cannot read test fixtures or a re-packed
copy, and its errors do not say which file is wrong. The format is simple (a
pickled dict per file: ``data`` uint8 (N, 3072) in R, G, B planes of 32x32,
and a label list), and we unpickle it with only the numpy names it needs, so
a stray file in the data folder cannot run code. Downloading goes through
torchvision's utilities, which fetch the official archive and check its MD5.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from omegaconf import DictConfig

from cnnbench.data.datasets import InMemoryDataset, default_data_root
from cnnbench.errors import UserError

# The only globals a CIFAR batch pickle refers to (numpy 1.x, which wrote the
# official files, names the module numpy.core; numpy 2 names it numpy._core).
PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}
IMAGE_BYTES = 3 * 32 * 32


class BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def load_cifar10(cfg: DictConfig, split: str) -> InMemoryDataset:
    """CIFAR-10: 10 classes, 50,000 train / 10,000 val 32x32 RGB images. See `load_cifar`."""
    from torchvision.datasets import CIFAR10

    return load_cifar(cfg, split, "CIFAR-10", CIFAR10, label_key="labels")


def load_cifar100(cfg: DictConfig, split: str) -> InMemoryDataset:
    """CIFAR-100 with its 100 fine labels: 50,000 train / 10,000 val 32x32 RGB images."""
    from torchvision.datasets import CIFAR100

    return load_cifar(cfg, split, "CIFAR-100", CIFAR100, label_key="fine_labels")


def load_cifar(cfg: DictConfig, split: str, title: str, torchvision_class, label_key: str) -> InMemoryDataset:
    """Read ``split`` of a CIFAR dataset under the data root into memory.

    The root is ``data.root`` if set, else the environment variable
    ``CNNBENCH_DATA_ROOT``, else ``~/.cache/cnnbench/data``. With
    ``data.download=true`` and files missing, the official archive is
    downloaded there, checked against its MD5 and unpacked. File names come
    from torchvision's class (``base_folder``, ``train_list``, ``test_list``)
    so the two always agree on the layout.
    """
    root = Path(cfg.root).expanduser() if cfg.root else default_data_root()
    root = root.absolute()
    folder = root / torchvision_class.base_folder
    files = torchvision_class.train_list if split == "train" else torchvision_class.test_list
    paths = [folder / name for name, _md5 in files]
    if not all(path.is_file() for path in paths) and cfg.download:
        download(root, title, torchvision_class)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise UserError(
            f"{title} {split} data not found: no {missing[0]}. Unpack {torchvision_class.filename} into {root} "
            f"(it holds {torchvision_class.base_folder}/), set data.root=DIR or the env var CNNBENCH_DATA_ROOT to "
            f"a folder that holds {torchvision_class.base_folder}/, or pass data.download=true to fetch it"
        )
    batches = [read_batch(path, label_key, int(cfg.num_classes)) for path in paths]
    data = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    images = torch.from_numpy(data).view(-1, 3, 32, 32)  # rows are R, G, B planes, each 32x32 row-major
    return InMemoryDataset(str(cfg.name), split, images, torch.from_numpy(labels).long())


def read_batch(path: Path, label_key: str, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """One batch file: (uint8 images (N, 3072), int64 labels (N,)), checked for shape and range."""
    damaged = f"{path} is damaged or not a CIFAR batch file"
    remedy = "delete the folder and download it again (data.download=true)"
    try:
        with open(path, "rb") as handle:
            # latin1 is how Python 3 reads the Python 2 pickles the archives hold.
            entry = BatchUnpickler(handle, encoding="latin1").load()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from err
    except Exception as err:  # a truncated or foreign pickle raises many types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise UserError(f"{damaged} ({type(err).__name__}: {reason}); {remedy}") from err
    if not isinstance(entry, dict):
        raise UserError(f"{damaged} (holds a {type(entry).__name__}, not a dict); {remedy}")
    entry = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}
    data, labels = entry.get("data"), np.asarray(entry.get(label_key, []))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise UserError(f"{damaged} (no uint8 'data' array of N x {IMAGE_BYTES} pixels); {remedy}")
    if labels.shape != (len(data),) or (len(labels) and not np.issubdtype(labels.dtype, np.integer)):
        raise UserError(f"{damaged} (no '{label_key}' list with one whole-number label per image); {remedy}")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path} has labels from {labels.min()} to {labels.max()}, outside 0 .. data.num_classes-1 "
            f"= {num_classes - 1}; set data.num_classes to the dataset's class count"
        )
    return np.ascontiguousarray(data), labels


def download(root: Path, title: str, torchvision_class) -> None:
    """Fetch and unpack the official archive into ``root``; its MD5 is checked by torchvision."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(
            torchvision_class.url, str(root), filename=torchvision_class.filename, md5=torchvision_class.tgz_md5
        )
    except Exception as err:  # no network, a proxy's error page, a full disk, a bad MD5 ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"could not download {title} from {torchvision_class.url} into {root} ({reason}); download "
            f"{torchvision_class.filename} by hand and unpack it there, or set data.root=DIR to a copy"
        ) from err

