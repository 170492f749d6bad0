"""ImageNet-style folders on a fixture of tiny JPEGs: labels, decoding, unreadable files, the CLI."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from torchvision.io import encode_jpeg, read_file, write_file

from cnnbench.config import CONF_DIR, register_schemas
from cnnbench.data.folders import FolderLoader, PrepareImage, decode_on_cpu, list_split
from cnnbench.data.imagenet import main as imagenet_main, prepare_val
from cnnbench.data.transforms import train_transform
from cnnbench.engine.evaluate import evaluate
from cnnbench.data.pipeline import loader_for
from cnnbench.errors import UserError

WNIDS = ["n01440764", "n01443537", "n01484850"]
SHAPES = [(40, 52), (52, 40), (44, 44), (36, 60)]  # (height, width): landscape, portrait, square
BROKEN = "train/n01443537/n01443537_9999.JPEG"
CPU = torch.device("cpu")
TINY = ["data.num_classes=3", "data.image_size=32", "augment.resize=36", "eval.resize=36", "data.workers=0"]


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    """4 train and 2 val JPEGs per class in 3 wnid folders, plus one truncated train JPEG."""
    root = tmp_path_factory.mktemp("imagenet")
    generator = torch.Generator().manual_seed(0)
    for label, wnid in enumerate(WNIDS):
        for split, count in (("train", 4), ("val", 2)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = SHAPES[(i + label) % len(SHAPES)]
                image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
                image[label] = image[label] // 2 + 128  # one dominant colour per class
                write_file(str(folder / f"{wnid}_{i}.JPEG"), encode_jpeg(image, quality=90))
    good = read_file(str(root / "train" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG"))
    write_file(str(root / BROKEN), good[: len(good) // 2])
    return root


def config(root: Path, *overrides: str):
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("train", overrides=["data=imagenet", f"data.root={root}", *TINY, *overrides])


def batches(loader, epoch: int = 0):
    loader.set_epoch(epoch)
    return list(loader)


def test_imagenet_config_picks_alexnet_augmentation_and_standard_statistics(imagenet_root):
    cfg = config(imagenet_root)
    assert cfg.augment.name == "alexnet" and cfg.augment.pca_lighting == 0.1 and cfg.augment.crop == "random"
    assert list(cfg.data.mean) == [0.485, 0.456, 0.406] and cfg.data.on_corrupt == "error"


def test_classes_are_sorted_wnids_and_labels_follow_the_folders(imagenet_root):
    cfg = config(imagenet_root)
    val = list_split(cfg.data, "val")
    assert val.classes == sorted(WNIDS) and len(val) == 6
    for index in range(len(val)):
        assert val.labels[index].item() == WNIDS.index(val.path(index).parent.name)
    assert len(list_split(cfg.data, "train")) == 13  # the truncated file is listed; reading it is what fails


def test_decoded_pixels_match_pil(imagenet_root):
    path = imagenet_root / "val" / WNIDS[2] / f"{WNIDS[2]}_1.JPEG"
    image, error = decode_on_cpu(read_file(str(path)))
    assert error is None and image.dtype == torch.uint8
    reference = torch.from_numpy(np.array(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))).permute(2, 0, 1)
    assert image.shape == reference.shape
    assert (image.int() - reference.int()).abs().max() <= 1  # libjpeg(-turbo) both; exact in practice


def test_evaluation_sees_every_image_once(imagenet_root):
    cfg = config(imagenet_root, "data.eval_batch_size=4")
    loader = loader_for(cfg, "val", CPU, train=False)
    out = batches(loader)
    assert [tuple(images.shape) for images, _ in out] == [(4, 3, 32, 32), (2, 3, 32, 32)]
    assert torch.equal(torch.cat([labels for _, labels in out]), loader.labels)


def test_training_batches_depend_on_seed_and_epoch_only(imagenet_root):
    cfg = config(imagenet_root, "data.batch_size=4", "data.on_corrupt=skip")
    alone = loader_for(cfg, "train", CPU, train=True)
    with_workers = loader_for(config(imagenet_root, "data.batch_size=4", "data.on_corrupt=skip", "data.workers=2"),
                              "train", CPU, train=True)
    first = batches(alone, 0)
    assert len(first) == 3 and all(images.shape[1:] == (3, 32, 32) for images, _ in first)
    for (a, la), (b, lb) in zip(first, batches(with_workers, 0)):
        assert torch.equal(a, b) and torch.equal(la, lb)
    second = batches(alone, 1)
    assert not torch.equal(first[0][0], second[0][0])
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, batches(alone, 0)))  # epoch 0 again


def test_an_epoch_leaves_the_global_random_stream_alone(imagenet_root):
    """Dropout draws from it; a run resumed mid-epoch must find it where the checkpoint left it."""
    loader = loader_for(config(imagenet_root, "data.batch_size=4", "data.on_corrupt=skip"), "train", CPU, train=True)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    batches(loader, 0)
    assert torch.equal(before, torch.get_rng_state())


def test_decoding_in_the_main_process_gives_the_same_batches(imagenet_root):
    # The GPU path (decode_jpeg on batches in the main process), run on the CPU.
    cfg = config(imagenet_root, "data.on_corrupt=skip")
    split = list_split(cfg.data, "train")
    prepare = PrepareImage(32, train_transform(cfg.augment, 32), 0.1)
    kwargs = dict(batch_size=5, device=CPU, mean=[0.5] * 3, std=[0.25] * 3, train=True, seed=3, on_corrupt="skip")
    in_workers = batches(FolderLoader(split, prepare, **kwargs))
    in_main = batches(FolderLoader(split, prepare, decode_in_main=True, **kwargs))
    assert len(in_workers) == len(in_main) == 2
    for (a, la), (b, lb) in zip(in_workers, in_main):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_prepare_image_is_seeded_per_image_and_leaves_the_global_generator_alone(imagenet_root):
    cfg = config(imagenet_root)
    prepare = PrepareImage(32, train_transform(cfg.augment, 32), 0.1)
    image = torch.randint(0, 256, (3, 40, 52), dtype=torch.uint8)
    state = torch.get_rng_state()
    a, shift_a = prepare(image, 7)
    b, shift_b = prepare(image, 7)
    _, shift_c = prepare(image, 8)
    assert torch.equal(a, b) and torch.equal(shift_a, shift_b) and not torch.equal(shift_a, shift_c)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("decode_in_main", [False, True])
def test_an_unreadable_image_stops_the_run_naming_the_file(imagenet_root, decode_in_main):
    cfg = config(imagenet_root)
    split = list_split(cfg.data, "train")
    loader = FolderLoader(split, PrepareImage(32, crops=1, resize=36), 13, CPU, [0.0] * 3, [1.0] * 3,
                          train=False, decode_in_main=decode_in_main)
    with pytest.raises(UserError, match=r"cannot read image .*n01443537_9999\.JPEG: .*data\.on_corrupt=skip"):
        batches(loader)


@pytest.mark.parametrize("decode_in_main", [False, True])
def test_skip_leaves_an_unreadable_image_out_counts_it_and_warns_once(imagenet_root, decode_in_main, caplog):
    cfg = config(imagenet_root)
    split = list_split(cfg.data, "train")
    loader = FolderLoader(split, PrepareImage(32, train_transform(cfg.augment, 32), 0.1), 13, CPU,
                          [0.0] * 3, [1.0] * 3, train=True, decode_in_main=decode_in_main, on_corrupt="skip")
    with caplog.at_level(logging.WARNING, logger="cnnbench"):
        for epoch in (0, 1):
            (images, labels), = batches(loader, epoch)
            assert len(images) == len(labels) == 12
    assert list(loader.skipped) == [str(imagenet_root / BROKEN)]
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and "left out 1 unreadable image" in warnings[0]


def test_144_crop_evaluation_averages_over_all_views(imagenet_root):
    cfg = config(imagenet_root, "eval.scales=[32,36,40,44]", "data.eval_batch_size=288")
    loader = loader_for(cfg, "val", CPU, train=False, crops=144)
    out = batches(loader)
    assert [tuple(images.shape) for images, _ in out] == [(2, 144, 3, 32, 32)] * 3
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten(), torch.nn.Linear(64, 3))
    assert evaluate(model, out, num_classes=3)["samples"] == 6


def test_root_defaults_to_the_data_root_env_var_plus_the_dataset_name(imagenet_root, tmp_path, monkeypatch):
    (tmp_path / "imagenet").symlink_to(imagenet_root)
    monkeypatch.setenv("CNNBENCH_DATA_ROOT", str(tmp_path))
    split = list_split(config(imagenet_root, "data.root=null").data, "val")
    assert split.folder == tmp_path / "imagenet" / "val" and len(split) == 6


def test_wrong_class_count_download_and_missing_archives_are_user_errors(imagenet_root, tmp_path):
    with pytest.raises(UserError, match="has 3 class folders, but data.num_classes=1000"):
        list_split(config(imagenet_root, "data.num_classes=1000").data, "val")
    with pytest.raises(UserError, match="cannot be downloaded automatically"):
        list_split(config(imagenet_root, "data.download=true").data, "val")
    with pytest.raises(UserError, match="ILSVRC2012_devkit_t12.tar.gz, ILSVRC2012_img_val.tar not found"):
        prepare_val(tmp_path)
    assert imagenet_main(["prepare-train", str(tmp_path)]) == 2


def test_prepare_val_sorts_the_flat_val_archive_into_wnid_folders(tmp_path, monkeypatch):
    # Miniature official archives: the devkit's meta.mat (two leaf synsets and a parent) and
    # ground truth, and a flat tar of 3 val images. Their MD5 sums are not the real ones.
    monkeypatch.setattr("torchvision.datasets.imagenet._verify_archive", lambda *args: None)
    fields = [(name, "O") for name in ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children")]
    rows = [(1, WNIDS[0], "tench", "", 0), (2, WNIDS[1], "goldfish", "", 0), (3, "n00015388", "animal", "", 2)]
    synsets = np.array(rows, dtype=fields)
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(tmp_path / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", b"2\n1\n2\n")
    jpeg = encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)).numpy().tobytes()
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in (1, 2, 3):
            add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg)
    assert prepare_val(tmp_path) == tmp_path / "val"
    found = sorted(str(p.relative_to(tmp_path / "val")) for p in (tmp_path / "val").rglob("*.JPEG"))
    assert found == [f"{WNIDS[0]}/ILSVRC2012_val_00000002.JPEG", f"{WNIDS[1]}/ILSVRC2012_val_00000001.JPEG",
                     f"{WNIDS[1]}/ILSVRC2012_val_00000003.JPEG"]
    with pytest.raises(UserError, match="exists already"):
        prepare_val(tmp_path)


def test_missing_root_is_a_one_line_cli_error(main_cli):
    missing = main_cli.cwd / "no-imagenet-here"
    result = main_cli("train", "data=imagenet", f"data.root={missing}", "trainer=cpu")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"no train folder at {missing / 'train'}" in lines[0] and "<root>/train/<wnid>/<image>.JPEG" in lines[0]


def test_tiny_training_run_then_ten_crop_evaluation(run, imagenet_root):
    train = run("train", "model=lenet5", "data=imagenet", f"data.root={imagenet_root}", *TINY,
                "data.batch_size=4", "data.on_corrupt=skip", "trainer=cpu", "trainer.epochs=1",
                "trainer.progress_bar=false")
    assert "left out 1 unreadable image" in train.stdout + train.stderr
    (run_dir,) = [p.parent for p in (run.cwd / "outputs").glob("*/*_lenet5_imagenet/results.json")]
    assert json.loads((run_dir / "results.json").read_text())["top1"] is not None

    run("eval", f"checkpoint={run_dir}", "eval.crops=10", "eval.resize=36", "accelerator=cpu")
    (results,) = (run.cwd / "outputs").glob("*/*_eval/results.json")
    record = json.loads(results.read_text())
    assert record["crops"] == 10 and record["samples"] == 6 and record["unreadable_skipped"] == 0
    assert 0.0 <= record["top1"] <= 100.0


def test_eval_may_choose_how_unreadable_images_are_handled(run, imagenet_root):
    # The train split holds one broken file: eval's own data.on_corrupt decides, as its error advises.
    run("train", "model=lenet5", "data=imagenet", f"data.root={imagenet_root}", *TINY, "data.batch_size=4",
        "data.on_corrupt=skip", "trainer=cpu", "trainer.epochs=1", "trainer.progress_bar=false")
    (run_dir,) = [p.parent for p in (run.cwd / "outputs").glob("*/*_lenet5_imagenet/results.json")]
    with pytest.raises(UserError, match="cannot read image .*data.on_corrupt=skip"):
        run("eval", f"run={run_dir}", "eval.split=train", "data.on_corrupt=error", "accelerator=cpu")
    run("eval", f"run={run_dir}", "eval.split=train", "data.on_corrupt=skip", "accelerator=cpu")
    (results,) = (run.cwd / "outputs").glob("*/*_eval/results.json")
    assert json.loads(results.read_text())["unreadable_skipped"] == 1


def test_val_classes_must_be_the_train_classes(tmp_path):
    from omegaconf import OmegaConf

    for split, wnids in (("train", ("n01", "n02")), ("val", ("n01", "n03"))):
        for wnid in wnids:
            (tmp_path / split / wnid).mkdir(parents=True)
            (tmp_path / split / wnid / "a.JPEG").write_bytes(b"")
    data = OmegaConf.create({"name": "imagenet", "root": str(tmp_path), "num_classes": 2, "download": False})
    assert list_split(data, "train").classes == ["n01", "n02"]
    with pytest.raises(UserError, match=r"differ from those of .*train \(only in val/: n03; only in train/: n02\)"):
        list_split(data, "val")
