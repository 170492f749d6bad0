"""MNIST, Fashion-MNIST and KMNIST: 28x28 grey images of 10 classes in the IDX
format, read from torchvision's on-disk layout.

    <root>/MNIST/raw/         train-images-idx3-ubyte, train-labels-idx1-ubyte,
                              t10k-images-idx3-ubyte,  t10k-labels-idx1-ubyte
    <root>/FashionMNIST/raw/  the same four names
    <root>/KMNIST/raw/        the same four names

each also accepted gzipped (``*.gz``, as published) when the unpacked file is
absent. Split ``train`` is the 60,000 training images, split ``val`` the
official 10,000-image test set (what the papers report on).

Why we parse IDX ourselves rather than through ``torchvision.datasets.MNIST``:
that class reads only unpacked files under the exact names, checks nothing
but the magic number, and its errors do not say which file is wrong or what
to do. The format is small (a magic number giving the element type and the
number of dimensions, the dimensions as big-endian int32, then the elements
row-major), so every size can be checked against the file's length.
Downloading goes through torchvision's utilities, which fetch the published
``.gz`` files from the dataset's mirrors and check their MD5.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from omegaconf import DictConfig

from cnnbench.data.datasets import InMemoryDataset, default_data_root
from cnnbench.errors import UserError

SIDE = 28  # every image of the three datasets is 28x28
UBYTE = 0x08  # the IDX element-type code for unsigned bytes, the only one these files use
SPLIT_PREFIX = {"train": "train-", "val": "t10k-"}
REMEDY = "delete it and download it again (data.download=true)"


def load_mnist(cfg: DictConfig, split: str) -> InMemoryDataset:
    """MNIST (LeCun et al. 1998): handwritten digits, 60,000 train / 10,000 val. See `load_idx`."""
    from torchvision.datasets import MNIST

    return load_idx(cfg, split, "MNIST", MNIST)


def load_fashion_mnist(cfg: DictConfig, split: str) -> InMemoryDataset:
    """Fashion-MNIST (Xiao et al. 2017): Zalando article images, 60,000 train / 10,000 val."""
    from torchvision.datasets import FashionMNIST

    return load_idx(cfg, split, "Fashion-MNIST", FashionMNIST)


def load_kmnist(cfg: DictConfig, split: str) -> InMemoryDataset:
    """KMNIST (Clanuwat et al. 2018): cursive Japanese characters, 60,000 train / 10,000 val."""
    from torchvision.datasets import KMNIST

    return load_idx(cfg, split, "KMNIST", KMNIST)


def load_idx(cfg: DictConfig, split: str, title: str, torchvision_class) -> InMemoryDataset:
    """Read ``split`` of an MNIST-format dataset under the data root into memory,
    zero-padded centrally to ``data.image_size``.

    The root is ``data.root`` if set, else the environment variable
    ``CNNBENCH_DATA_ROOT``, else ``~/.cache/cnnbench/data``. The folder
    (``<class name>/raw``) and the file names come from torchvision's class
    (``raw_folder``'s rule, ``resources``), so the two always agree on the layout.
    With ``data.download=true`` and files missing, the published files are
    downloaded there first.
    """
    pad = padding(cfg, title)  # a wrong size is refused before any file is read
    root = Path(cfg.root).expanduser() if cfg.root else default_data_root()
    root = root.absolute()
    folder = root / torchvision_class.__name__ / "raw"
    names = split_file_names(torchvision_class, split)
    if cfg.download and any(find(folder, name) is None for name in names):
        download(folder, title, torchvision_class)
    paths = []
    for name in names:
        path = find(folder, name)
        if path is None:
            raise UserError(
                f"{title} {split} data not found: no {folder / name} (nor {name}.gz). Put the four IDX files "
                f"(or their .gz) in {folder}, set data.root=DIR or the env var CNNBENCH_DATA_ROOT to a folder "
                f"that holds {torchvision_class.__name__}/raw/, or pass data.download=true to fetch them"
            )
        paths.append(path)
    images = read_idx(paths[0], ndim=3)
    labels = read_idx(paths[1], ndim=1)
    check_images_and_labels(paths, images, labels, int(cfg.num_classes))
    # The background of these sets is 0, so zero padding extends it (LeNet-5's 32x32 field).
    padded = torch.zeros((len(images), 1, SIDE + 2 * pad, SIDE + 2 * pad), dtype=torch.uint8)
    padded[:, 0, pad:pad + SIDE, pad:pad + SIDE] = torch.from_numpy(images)
    return InMemoryDataset(str(cfg.name), split, padded, torch.from_numpy(labels.astype(np.int64)))


def padding(cfg: DictConfig, title: str) -> int:
    """Pixels of zeros on each side that take the 28x28 images to ``data.image_size``."""
    size = int(cfg.image_size)
    if size < SIDE or (size - SIDE) % 2:
        raise UserError(
            f"data.image_size={size} does not fit {title}: its images are {SIDE}x{SIDE} and are only "
            f"zero-padded, by the same amount on each side; use data.image_size={SIDE} or {SIDE} plus an "
            f"even number (32 centres them in LeNet-5's 32x32 field)"
        )
    return (size - SIDE) // 2


def split_file_names(torchvision_class, split: str) -> Tuple[str, str]:
    """(images, labels) file names of ``split``, unpacked, from the class's published ``.gz`` names."""
    names = [name[:-3] if name.endswith(".gz") else name for name, _md5 in torchvision_class.resources]
    ours = [name for name in names if name.startswith(SPLIT_PREFIX[split])]
    images = [name for name in ours if "-images-" in name]
    labels = [name for name in ours if "-labels-" in name]
    assert len(images) == 1 and len(labels) == 1, f"unexpected file names in {torchvision_class.__name__}.resources"
    return images[0], labels[0]


def find(folder: Path, name: str) -> Optional[Path]:
    """The unpacked file if it is there, else its gzipped copy, else None."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def read_bytes(path: Path) -> bytes:
    """The file's contents, decompressed if it is a ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # before OSError: BadGzipFile is one
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is damaged or not a gzip file ({reason}); {REMEDY}") from err
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from err


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions, checked against its length."""
    data = read_bytes(path)
    kind = "image" if ndim == 3 else "label"
    damaged = f"{path} is damaged or not an IDX {kind} file"
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{damaged} (its first bytes are not an IDX magic number 00 00 TT DD); {REMEDY}")
    if data[2] != UBYTE or data[3] != ndim:
        raise UserError(
            f"{damaged} (magic number {data[:4].hex()}: expected {UBYTE:02x} for unsigned bytes and "
            f"{ndim} dimension(s), 0000{UBYTE:02x}{ndim:02x}); {REMEDY}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{damaged} (it ends inside the header, after {len(data)} bytes); {REMEDY}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise UserError(
            f"{damaged} ({what}: the header gives {' x '.join(map(str, dims))} bytes of data, so "
            f"{expected} bytes in all, but it has {len(data)}); {REMEDY}"
        )
    # copy: frombuffer's array is read-only, and torch wants memory it may own
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def check_images_and_labels(paths, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """The images are 28x28, one label each, every label a class index."""
    if images.shape[1:] != (SIDE, SIDE):
        raise UserError(
            f"{paths[0]} holds {images.shape[1]}x{images.shape[2]} images, not {SIDE}x{SIDE}: it is not "
            f"from this dataset; {REMEDY}"
        )
    if len(labels) != len(images):
        raise UserError(
            f"{paths[1]} has {len(labels)} labels but {paths[0]} has {len(images)} images: the two files "
            f"are from different sets; {REMEDY}"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise UserError(
            f"{paths[1]} has labels up to {int(labels.max())}, outside 0 .. data.num_classes-1 = "
            f"{num_classes - 1}; set data.num_classes to the dataset's class count"
        )


def download(folder: Path, title: str, torchvision_class) -> None:
    """Fetch the published ``.gz`` files into ``folder`` and unpack them, each from the
    first of the class's mirrors that answers; torchvision checks every MD5."""
    from torchvision.datasets.utils import download_and_extract_archive

    for filename, md5 in torchvision_class.resources:
        if find(folder, filename[:-3] if filename.endswith(".gz") else filename) is not None:
            continue
        reason = "no mirror"
        for mirror in torchvision_class.mirrors:
            try:
                download_and_extract_archive(f"{mirror}{filename}", str(folder), filename=filename, md5=md5)
                break
            except Exception as err:  # no network, a proxy's error page, a full disk, a bad MD5 ...
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        else:
            raise UserError(
                f"could not download {title} {filename} from {', '.join(torchvision_class.mirrors)} into "
                f"{folder} ({reason}); download the four files by hand into {folder}, or set data.root=DIR "
                f"to a folder that holds {torchvision_class.__name__}/raw/"
            )
