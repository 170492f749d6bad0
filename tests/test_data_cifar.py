"""CIFAR-10/100 from torchvision's on-disk layout, and the synthetic dataset."""

from __future__ import annotations

import json
import logging
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data.datasets import default_data_root, load_dataset
from cnnbench.data.synthetic import warn_random_labels
from cnnbench.errors import UserError

REPO = Path(__file__).resolve().parent.parent

CIFAR10_FILES = {"train": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
                 "val": ["test_batch"]}
CIFAR100_FILES = {"train": ["train"], "val": ["test"]}


def write_pickle(path: Path, entry: dict) -> None:
    raw = pickle.dumps(entry, protocol=2)
    # numpy 1.x, which wrote the official files, names the module numpy.core.
    raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


def write_cifar10(root: Path, per_batch: int = 3, seed: int = 0) -> dict:
    """CIFAR-10's files with ``per_batch`` images each; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    expected = {}
    for split, names in CIFAR10_FILES.items():
        images, labels = [], []
        for name in names:
            data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
            batch_labels = rng.integers(0, 10, per_batch).tolist()
            write_pickle(folder / name, {"batch_label": f"{name} of 5", "labels": batch_labels, "data": data,
                                         "filenames": [f"img_{i}.png" for i in range(per_batch)]})
            images.append(data)
            labels += batch_labels
        expected[split] = (np.concatenate(images).reshape(-1, 3, 32, 32), labels)
    write_pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                           "num_cases_per_batch": per_batch, "num_vis": 3072})
    return expected


def write_cifar100(root: Path, count: int = 6, seed: int = 1) -> dict:
    """CIFAR-100's files; the keys are bytes here, as a pickle re-saved from Python 3 may have them."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    expected = {}
    for split, (name,) in CIFAR100_FILES.items():
        data = rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8)
        fine = rng.integers(0, 100, count).tolist()
        write_pickle(folder / name, {b"filenames": [b"x.png"] * count, b"batch_label": name.encode(),
                                     b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine], b"data": data})
        expected[split] = (data.reshape(-1, 3, 32, 32), fine)
    write_pickle(folder / "meta", {b"fine_label_names": [b"c"] * 100, b"coarse_label_names": [b"s"] * 20})
    return expected


def data_config(name: str, root) -> "OmegaConf":
    cfg = OmegaConf.load(REPO / "conf" / "data" / f"{name}.yaml")
    cfg.root = None if root is None else str(root)
    return cfg


@pytest.mark.parametrize("split", ["train", "val"])
def test_cifar10_pixels_and_labels_round_trip(tmp_path, split):
    expected = write_cifar10(tmp_path)
    dataset = load_dataset(data_config("cifar10", tmp_path), split)
    images, labels = expected[split]
    assert dataset.name == "cifar10" and dataset.split == split
    assert dataset.images.dtype == torch.uint8 and dataset.images.shape == (len(labels), 3, 32, 32)
    assert torch.equal(dataset.images, torch.from_numpy(images))
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == labels
    assert len(dataset) == (15 if split == "train" else 3)


@pytest.mark.parametrize("split", ["train", "val"])
def test_cifar100_pixels_and_fine_labels_round_trip(tmp_path, split):
    expected = write_cifar100(tmp_path)
    dataset = load_dataset(data_config("cifar100", tmp_path), split)
    images, labels = expected[split]
    assert dataset.name == "cifar100"
    assert torch.equal(dataset.images, torch.from_numpy(images))
    assert dataset.labels.tolist() == labels


def test_pixel_layout_is_red_green_blue_planes_row_major(tmp_path):
    write_cifar10(tmp_path)
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, 0], data[0, 1024 + 33], data[0, 2048 + 1023] = 10, 20, 30  # R(0,0), G(1,1), B(31,31)
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {"labels": [7], "data": data})
    image = load_dataset(data_config("cifar10", tmp_path), "val").images[0]
    assert image[0, 0, 0] == 10 and image[1, 1, 1] == 20 and image[2, 31, 31] == 30 and image.sum() == 60


def test_root_comes_from_the_environment_then_the_cache(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "env")
    monkeypatch.setenv("CNNBENCH_DATA_ROOT", str(tmp_path / "env"))
    assert len(load_dataset(data_config("cifar10", None), "val")) == 3
    monkeypatch.delenv("CNNBENCH_DATA_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_root() == tmp_path / "home" / ".cache" / "cnnbench" / "data"


def test_missing_data_is_one_line_naming_the_path(main_cli, tmp_path):
    empty = tmp_path / "no cifar here"
    result = main_cli("train", "data=cifar10", f"data.root={empty}", "trainer.epochs=1",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(empty / "cifar-10-batches-py" / "data_batch_1") in lines[0]
    assert "data.download=true" in lines[0] and "data.root=" in lines[0] and "CNNBENCH_DATA_ROOT" in lines[0]


def test_missing_cifar100_split_names_its_file(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(UserError, match=r"CIFAR-100 val data not found: no .*cifar-100-python/test\b"):
        load_dataset(data_config("cifar100", tmp_path), "val")
    assert len(load_dataset(data_config("cifar100", tmp_path), "train")) == 6


@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign", "not a batch"])
def test_a_damaged_batch_file_is_named(tmp_path, damage):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign":  # a pickle that would build some other object
        path.write_bytes(pickle.dumps(logging.getLogger("x").__class__, protocol=2))
    else:
        write_pickle(path, {"labels": [1, 2], "data": np.zeros((2, 100), dtype=np.uint8)})
    with pytest.raises(UserError, match=r"data_batch_3 is damaged or not a CIFAR batch file.*data.download=true"):
        load_dataset(data_config("cifar10", tmp_path), "train")


def test_labels_outside_num_classes_are_refused(tmp_path):
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch",
                 {"labels": [3, 42], "data": np.zeros((2, 3072), dtype=np.uint8)})
    with pytest.raises(UserError, match=r"test_batch has labels from 3 to 42, outside 0 .. data.num_classes-1 = 9"):
        load_dataset(data_config("cifar10", tmp_path), "val")


def test_download_fetches_the_official_archive_when_files_are_missing(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, filename, md5):
        calls.append((url, download_root, filename, md5))
        write_cifar10(Path(download_root))

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fake_download)
    cfg = data_config("cifar10", tmp_path)
    cfg.download = True
    assert len(load_dataset(cfg, "val")) == 3
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", str(tmp_path),
                      "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")]
    load_dataset(cfg, "train")
    assert len(calls) == 1, "files already there are not downloaded again"


def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", no_network)
    cfg = data_config("cifar100", tmp_path)
    cfg.download = True
    with pytest.raises(UserError) as caught:
        load_dataset(cfg, "train")
    message = str(caught.value)
    assert "could not download CIFAR-100" in message and str(tmp_path) in message
    assert "name resolution" in message and "\n" not in message


def test_one_epoch_of_training_on_cifar10(run, tmp_path):
    write_cifar10(tmp_path / "data", per_batch=8)
    run_dir = tmp_path / "run"
    result = run("train", "data=cifar10", f"data.root={tmp_path / 'data'}", "data.batch_size=8",
                 "data.eval_batch_size=4", "trainer.epochs=1", "trainer.progress_bar=false",
                 f"hydra.run.dir={run_dir}")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"] == "cifar10" and results["model"] == "lenet5"
    assert "40 train / 8 val images" in result.stdout
    config = (run_dir / "config.yaml").read_text()
    assert "crop_padding: 4" in config and "hflip: true" in config  # the cifar augmentation by default


def synthetic_config(**overrides):
    cfg = data_config("synthetic", None)
    cfg.train_size, cfg.val_size = 40, 10
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def test_synthetic_data_is_fixed_and_warns_once(caplog):
    warn_random_labels.cache_clear()
    with caplog.at_level(logging.WARNING, logger="cnnbench"):
        train = load_dataset(synthetic_config(), "train")
        again = load_dataset(synthetic_config(), "train")
        val = load_dataset(synthetic_config(), "val")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "synthetic" in r.getMessage()]
    assert len(warnings) == 1 and "means nothing" in warnings[0].getMessage()
    assert train.name == "synthetic" and train.images.shape == (40, 3, 32, 32) and len(val) == 10
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)
    assert not torch.equal(train.images[:10], val.images)
    assert 0 <= int(train.labels.min()) and int(train.labels.max()) < 10


def test_synthetic_data_ignores_the_global_seed():
    torch.manual_seed(0)
    first = load_dataset(synthetic_config(), "train")
    torch.manual_seed(1)
    assert torch.equal(load_dataset(synthetic_config(), "train").images, first.images)


def test_synthetic_shape_follows_the_config_and_sizes_are_checked():
    grey = load_dataset(synthetic_config(channels=1, image_size=8, num_classes=3), "val")
    assert grey.images.shape == (10, 1, 8, 8) and int(grey.labels.max()) < 3
    with pytest.raises(UserError, match="data.train_size"):
        load_dataset(synthetic_config(train_size=0), "train")
