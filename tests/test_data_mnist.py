"""MNIST, Fashion-MNIST and KMNIST from torchvision's on-disk layout, in the IDX format."""

from __future__ import annotations

import gzip
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data.datasets import load_dataset
from cnnbench.errors import UserError

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an IDX file: magic 00 00 08 <ndim>, big-endian int32 dims, the bytes row-major."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    else:
        path.write_bytes(idx_bytes(array))
    return path


def write_set(root: Path, name: str = "mnist", counts=(8, 4), gz: bool = False, seed: int = 0) -> dict:
    """The four files of ``name`` under ``root``; returns {split: (images (N, 28, 28), labels)}."""
    rng = np.random.default_rng(seed)
    folder = root / FOLDERS[name] / "raw"
    expected = {}
    for (split, (images_name, labels_name)), count in zip(FILES.items(), counts):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        write_idx(folder / images_name, images, gz)
        write_idx(folder / labels_name, labels, gz)
        expected[split] = (images, labels)
    return expected


def data_config(name: str, root, image_size: int = 28):
    cfg = OmegaConf.load(REPO / "conf" / "data" / f"{name}.yaml")
    cfg.root = None if root is None else str(root)
    cfg.image_size = image_size
    return cfg


def one_line_error(cfg, split: str = "train") -> str:
    with pytest.raises(UserError) as caught:
        load_dataset(cfg, split)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("name", list(FOLDERS))
@pytest.mark.parametrize("split", ["train", "val"])
def test_pixels_and_labels_round_trip(tmp_path, name, split):
    expected = write_set(tmp_path, name)
    dataset = load_dataset(data_config(name, tmp_path), split)
    images, labels = expected[split]
    assert dataset.name == name and dataset.split == split and len(dataset) == len(labels)
    assert dataset.images.dtype == torch.uint8 and dataset.images.shape == (len(labels), 1, 28, 28)
    assert torch.equal(dataset.images[:, 0], torch.from_numpy(images))
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == labels.tolist()


def test_a_known_pixel_lands_at_its_row_and_column(tmp_path):
    write_set(tmp_path)
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[1, 3, 25] = 200  # row 3, column 25 of the second image: a transposed or flipped read moves it
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.array([4, 7], dtype=np.uint8))
    dataset = load_dataset(data_config("mnist", tmp_path), "val")
    assert dataset.images[1, 0, 3, 25] == 200 and int(dataset.images.sum()) == 200
    assert dataset.labels.tolist() == [4, 7]


def test_gzipped_files_are_read_when_the_unpacked_ones_are_absent(tmp_path):
    expected = write_set(tmp_path, "fashion_mnist", gz=True)
    assert not list((tmp_path / "FashionMNIST" / "raw").glob("*-ubyte"))
    dataset = load_dataset(data_config("fashion_mnist", tmp_path), "train")
    assert torch.equal(dataset.images[:, 0], torch.from_numpy(expected["train"][0]))
    assert dataset.labels.tolist() == expected["train"][1].tolist()
    # An unpacked file, once there, is the one read.
    unpacked = write_set(tmp_path, "fashion_mnist", seed=5)
    assert torch.equal(load_dataset(data_config("fashion_mnist", tmp_path), "train").images[:, 0],
                       torch.from_numpy(unpacked["train"][0]))


def test_padding_to_32_centres_the_image(tmp_path):
    expected = write_set(tmp_path)
    padded = load_dataset(data_config("mnist", tmp_path, image_size=32), "val").images
    assert padded.shape == (4, 1, 32, 32)
    assert torch.equal(padded[:, 0, 2:30, 2:30], torch.from_numpy(expected["val"][0]))
    border = padded.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.sum()) == 0, "the 2-pixel frame is background (0)"
    assert load_dataset(data_config("mnist", tmp_path, image_size=30), "val").images[0, 0, 1, 1] == \
        int(expected["val"][0][0, 0, 0])


@pytest.mark.parametrize("size", [26, 31])
def test_a_size_padding_cannot_reach_is_refused(tmp_path, size):
    write_set(tmp_path)
    message = one_line_error(data_config("mnist", tmp_path, image_size=size))
    assert f"data.image_size={size}" in message and "28" in message and "32" in message


def test_a_missing_file_names_its_path_and_what_to_do(tmp_path):
    write_set(tmp_path / "other", "fashion_mnist")  # other data under the root is never used instead
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    message = one_line_error(data_config("mnist", tmp_path), "val")
    assert f"no {tmp_path / 'MNIST' / 'raw' / 't10k-images-idx3-ubyte'}" in message
    assert "data.download=true" in message and "data.root=" in message and "CNNBENCH_DATA_ROOT" in message


def test_the_root_comes_from_the_environment(tmp_path, monkeypatch):
    write_set(tmp_path / "env", "kmnist")
    monkeypatch.setenv("CNNBENCH_DATA_ROOT", str(tmp_path / "env"))
    assert len(load_dataset(data_config("kmnist", None), "val")) == 4


@pytest.mark.parametrize("gz", [False, True])
def test_a_truncated_file_is_named(tmp_path, gz):
    write_set(tmp_path, gz=gz)
    path = tmp_path / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-100])
    message = one_line_error(data_config("mnist", tmp_path))
    assert str(path) in message and "damaged" in message and "data.download=true" in message
    if not gz:
        assert "truncated" in message and f"{16 + 8 * 784} bytes in all" in message


@pytest.mark.parametrize("magic", [b"\x00\x00\x08\x01", b"\x00\x00\x0d\x03", b"PK\x03\x04", b"\x00"])
def test_a_wrong_magic_number_is_named(tmp_path, magic):
    write_set(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(magic + path.read_bytes()[4:] if len(magic) == 4 else magic)
    message = one_line_error(data_config("mnist", tmp_path))
    assert f"{path} is damaged or not an IDX image file" in message and "magic number" in message


def test_files_that_disagree_are_refused(tmp_path):
    write_set(tmp_path)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros(7, dtype=np.uint8))
    assert "has 7 labels but" in one_line_error(data_config("mnist", tmp_path))
    write_idx(labels, np.full(8, 12, dtype=np.uint8))
    assert "labels up to 12" in one_line_error(data_config("mnist", tmp_path))
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte", np.zeros((4, 20, 20), dtype=np.uint8))
    assert "20x20 images, not 28x28" in one_line_error(data_config("mnist", tmp_path), "val")


def test_download_fetches_the_missing_files_from_the_first_mirror(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    calls = []

    def fake_download(url, download_root, filename, md5):
        calls.append((url, filename, md5))
        write_set(tmp_path)  # every file at once, as if all four had arrived

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fake_download)
    cfg = data_config("mnist", tmp_path)
    cfg.download = True
    assert len(load_dataset(cfg, "val")) == 4
    name, md5 = MNIST.resources[0]
    assert calls == [(f"{MNIST.mirrors[0]}{name}", name, md5)], "one call, then the files are there"
    load_dataset(cfg, "train")
    assert len(calls) == 1


def test_a_failed_download_is_one_line(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", no_network)
    cfg = data_config("kmnist", tmp_path)
    cfg.download = True
    message = one_line_error(cfg)
    assert "could not download KMNIST" in message and str(tmp_path / "KMNIST" / "raw") in message
    assert "name resolution" in message


def test_one_epoch_of_lenet5_on_mnist_padded_to_32(run, tmp_path):
    write_set(tmp_path / "data", counts=(8, 4))
    result = run("train", "data=mnist", f"data.root={tmp_path / 'data'}", "model=lenet5", "data.image_size=32",
                 "trainer.epochs=1", "data.batch_size=4", "data.eval_batch_size=4", "trainer.progress_bar=false",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.results["data"] == "mnist" and result.results["model"] == "lenet5"
    assert "8 train / 4 val images" in result.stdout
    assert "name: none" in (result.run_dir / "config.yaml").read_text()  # no augmentation by default
