"""data=folder on tiny generated trees of PNGs and JPEGs: classes from the folders, grey decoding,
mean/std computed from the training images and cached, and the one-line refusals."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from cnnbench.config import CONF_DIR, register_schemas
from cnnbench.data import folders
from cnnbench.data.folders import (
    STATS_FILE, FolderLoader, complete_folder_config, dataset_root, decode_on_cpu, list_split,
)
from cnnbench.data.pipeline import loader_for
from cnnbench.errors import UserError
from cnnbench.validate import validate

CLASSES = ["zebra", "ant", "moth"]  # sorted: ant 0, moth 1, zebra 2
SHAPES = [(20, 24), (24, 20), (22, 22)]  # (height, width)
CPU = torch.device("cpu")
# A 32x32 input, evaluation and training at the same scale, no worker processes.
SMALL = ["data.image_size=32", "augment=none", "augment.resize=32", "data.workers=0", "data.batch_size=4"]


def make_tree(root: Path, seed: int = 0, train_per_class: int = 3) -> Path:
    """Colour PNGs in train/ (lossless, so the statistics can be checked exactly), JPEGs in val/."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        for split, count, suffix in (("train", train_per_class, "png"), ("val", 2, "jpg")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                height, width = SHAPES[(i + label) % len(SHAPES)]
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                pixels[..., label] = pixels[..., label] // 2 + 128  # one dominant colour per class
                Image.fromarray(pixels).save(folder / f"{name}_{i}.{suffix}")
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "images")


@pytest.fixture(scope="module")
def composed():
    """data=folder composed once (Hydra's compose costs a few tenths of a second); tests take copies."""
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=["data=folder", "data.root=/unset", *SMALL])


@pytest.fixture
def config(composed):
    """A fresh copy of the composed config on ``root``, with ``data`` keys set as a command line would."""

    def make(root, **data):
        cfg = copy.deepcopy(composed)
        cfg.data.root = None if root is None else str(root)
        for key, value in data.items():
            cfg.data[key] = value
        return cfg

    return make


def reference_statistics(root: Path, mode: str):
    """numpy's mean and std over every pixel of every training image, on the [0, 1] scale."""
    pixels = [np.asarray(Image.open(path).convert(mode), dtype=np.float64).reshape(-1, len(mode)) / 255.0
              for path in sorted((root / "train").rglob("*.png"))]
    stacked = np.concatenate(pixels)
    return stacked.mean(axis=0), stacked.std(axis=0)


def test_classes_are_the_sorted_folders_and_num_classes_is_inferred(tree, config):
    cfg = config(tree, mean=[0.5] * 3, std=[0.25] * 3)
    assert cfg.data.num_classes is None and cfg.augment.name == "none"
    validate(cfg)
    complete_folder_config(cfg)
    assert cfg.data.num_classes == 3 and list(cfg.data.mean) == [0.5] * 3  # given statistics are kept
    val = list_split(cfg.data, "val")
    assert val.classes == sorted(CLASSES) and len(val) == 6
    assert all(val.labels[i].item() == sorted(CLASSES).index(val.path(i).parent.name) for i in range(len(val)))
    assert not (tree / STATS_FILE).exists()  # nothing computed when nothing is null


def test_a_wrong_num_classes_and_a_missing_root_are_one_line_errors(tree, config):
    with pytest.raises(UserError, match=r"has 3 class folders, but data.num_classes=5; .*data.num_classes=3"):
        list_split(config(tree, num_classes=5).data, "train")
    cfg = config(None)
    for check in (validate, lambda cfg: dataset_root(cfg.data)):
        with pytest.raises(UserError, match=r"^data=folder needs .*: set data.root=DIR$"):
            check(cfg)


def test_val_and_train_must_have_the_same_classes(tree, config):
    (tree / "val" / "wasp").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tree / "val" / "wasp" / "w.png")
    with pytest.raises(UserError, match=r"\(only in val/: wasp\)"):
        list_split(config(tree).data, "val")


def test_grey_images_decode_to_one_channel_batches(tree, config):
    png = torch.from_numpy(np.frombuffer((tree / "train" / "ant" / "ant_0.png").read_bytes(), dtype=np.uint8).copy())
    image, error = decode_on_cpu(png, channels=1)
    reference = np.asarray(Image.open(tree / "train" / "ant" / "ant_0.png").convert("L"))
    assert error is None and image.shape == (1, *reference.shape)
    assert np.abs(image[0].numpy().astype(int) - reference).max() <= 1  # libpng's and PIL's luma weights
    cfg = config(tree, channels=1, mean=[0.5], std=[0.25], eval_batch_size=6)
    loader = loader_for(cfg, "val", CPU, train=False)
    images, labels = next(iter(loader))
    assert images.shape == (6, 1, 32, 32) and cfg.data.num_classes == 3
    # The GPU path's batched decode_jpeg in the main process, run on the CPU: the same grey batch.
    in_main = FolderLoader(loader.split, loader.prepare, 6, CPU, [0.5], [0.25], train=False, decode_in_main=True)
    assert torch.equal(next(iter(in_main))[0], images)


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (1, "L")])
def test_mean_and_std_are_computed_from_the_training_pixels_and_cached(tree, config, channels, mode, caplog,
                                                                    monkeypatch):
    cfg = config(tree, channels=channels)
    with caplog.at_level(logging.INFO, logger="cnnbench"):
        complete_folder_config(cfg)
    assert sum("computing them from the 9 training images" in r.getMessage() for r in caplog.records) == 1
    mean, std = reference_statistics(tree, mode)
    tolerance = 1e-12 if channels == 3 else 2 / 255  # grey: torchvision's and PIL's luma differ by a level
    assert np.allclose(cfg.data.mean, mean, rtol=0, atol=tolerance), (list(cfg.data.mean), mean)
    assert np.allclose(cfg.data.std, std, rtol=0, atol=tolerance), (list(cfg.data.std), std)
    assert json.loads((tree / STATS_FILE).read_text())[str(channels)]["images"] == 9

    # A second run reads the cache: nothing is decoded again.
    monkeypatch.setattr(folders, "channel_statistics", lambda *args: pytest.fail("recomputed a cached statistic"))
    again = config(tree, channels=channels)
    complete_folder_config(again)
    assert list(again.data.mean) == list(cfg.data.mean) and list(again.data.std) == list(cfg.data.std)


def test_changed_training_files_recompute_the_statistics(tree, config, caplog):
    first = config(tree)
    complete_folder_config(first)
    # Same names, other pixels (a rewritten file), then one file more: both change the key.
    make_tree(tree, seed=1)
    with caplog.at_level(logging.INFO, logger="cnnbench"):
        rewritten = config(tree)
        complete_folder_config(rewritten)
    assert list(rewritten.data.mean) != list(first.data.mean)
    assert np.allclose(rewritten.data.mean, reference_statistics(tree, "RGB")[0], rtol=0, atol=1e-12)
    make_tree(tree, seed=2, train_per_class=4)
    with caplog.at_level(logging.INFO, logger="cnnbench"):
        added = config(tree)
        complete_folder_config(added)
    assert np.allclose(added.data.std, reference_statistics(tree, "RGB")[1], rtol=0, atol=1e-12)
    computed = [r.getMessage() for r in caplog.records if "computing them" in r.getMessage()]
    assert len(computed) == 2 and "12 training images" in computed[1]


def test_a_grey_model_trains_an_epoch_on_grey_images(run, tree):
    train = run("train", "model=lenet5", "data=folder", f"data.root={tree}", *SMALL, "data.channels=1",
                "trainer=cpu", "trainer.epochs=1", "trainer.progress_bar=false")
    assert "computing them from the 9 training images" in train.stdout + train.stderr
    assert train.results["top1"] is not None
    stored = OmegaConf.load(train.run_dir / "config.yaml").data
    # The run's config holds what it trained with, so `cnnbench eval` needs no folder counting.
    assert stored.num_classes == 3 and len(stored.mean) == 1 and stored.std[0] > 0
