"""Multi-crop evaluation: crop boxes checked against boxes worked out by hand, and the softmax averaging."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2

from cnnbench.data.datasets import InMemoryDataset
from cnnbench.data.loaders import DeviceLoader
from cnnbench.data.views import (
    MirroredBatches, View, crop_views, eval_views, googlenet_144_views, in_memory_views, resized_shape,
    ten_crop_views,
)
from cnnbench.engine.evaluate import evaluate, mean_softmax_log_probs

SCALES = (256, 288, 320, 352)


def unflipped(views):
    return [view for view in views if not view.flip]


@pytest.mark.parametrize("height, width", [(300, 400), (400, 300), (37, 53), (64, 64)])
def test_resized_shape_is_what_torchvision_resize_gives(height, width):
    for shorter in (32, 256, 352):
        out = v2.functional.resize(torch.zeros(1, height, width, dtype=torch.uint8), [shorter])
        assert resized_shape(height, width, shorter) == tuple(out.shape[-2:])


def test_ten_crops_of_a_landscape_image():
    # 300x400 -> 256x341; the central 256 square starts at column round(85/2) = 42;
    # its 224 corners are 32 pixels apart and its centre crop is 16 pixels in.
    views = ten_crop_views(300, 400, 224, 256)
    expected = [(0, 42), (0, 74), (32, 42), (32, 74), (16, 58)]
    assert [(v.top, v.left) for v in views] == expected + expected
    assert [v.flip for v in views] == [False] * 5 + [True] * 5
    assert all((v.shorter, v.height, v.width) == (256, 224, 224) for v in views)


def test_ten_crops_of_a_portrait_image():
    # 400x300 -> 341x256: the central square starts at row 42.
    views = ten_crop_views(400, 300, 224, 256)
    assert [(v.top, v.left) for v in unflipped(views)] == [(42, 0), (42, 32), (74, 0), (74, 32), (58, 16)]


def test_googlenet_144_crops_of_a_landscape_image():
    views = googlenet_144_views(300, 400, 224, SCALES)
    assert len(views) == 144
    plain = unflipped(views)
    assert len(plain) == 72 and len(set(plain)) == 72
    assert sorted(v._replace(flip=True) for v in plain) == sorted(v for v in views if v.flip)
    # 4 scales x 3 squares x (5 crops + the whole square)
    assert [v.shorter for v in plain] == [s for s in SCALES for _ in range(18)]
    # Scale 288: 300x400 -> 288x384; squares start at columns 0, 48, 96. The one at 48:
    at_288 = plain[18:36]
    assert at_288[6:12] == [
        View(288, 0, 48, 224, 224), View(288, 0, 112, 224, 224), View(288, 64, 48, 224, 224),
        View(288, 64, 112, 224, 224), View(288, 32, 80, 224, 224), View(288, 0, 48, 288, 288),
    ]
    # Scale 352: 352x469; the right square starts at column 469 - 352 = 117.
    assert plain[-6:] == [
        View(352, 0, 117, 224, 224), View(352, 0, 245, 224, 224), View(352, 128, 117, 224, 224),
        View(352, 128, 245, 224, 224), View(352, 64, 181, 224, 224), View(352, 0, 117, 352, 352),
    ]
    # Scale 320: 320x426; centre square at column round(106/2) = 53.
    assert [v.left for v in plain[36:54:6]] == [0, 53, 106]


def test_googlenet_144_crops_of_a_portrait_image_take_top_centre_bottom_squares():
    plain = unflipped(googlenet_144_views(400, 300, 224, SCALES))
    # Scale 256: 341x256; squares start at rows 0, 42, 85, each at column 0.
    squares = [v for v in plain[:18] if v.height == 256]
    assert [(v.top, v.left) for v in squares] == [(0, 0), (42, 0), (85, 0)]


def test_single_crop_equals_resize_then_center_crop():
    image = torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    view = crop_views(image, eval_views(1, 45, 61, 32, 36, ()), 32)[0]
    reference = v2.Compose([v2.Resize(36), v2.CenterCrop(32)])(image)
    assert torch.equal(view, reference)


def test_crop_views_cut_the_boxes_out():
    # Pixels hold their own coordinates; the shorter side is already 36, so nothing is resampled.
    rows, cols = torch.meshgrid(torch.arange(36), torch.arange(50), indexing="ij")
    image = torch.stack([rows, cols, rows]).to(torch.uint8)
    views = ten_crop_views(36, 50, 32, 36)
    crops = crop_views(image, views, 32)
    assert crops.shape == (10, 3, 32, 32)
    for view, crop in zip(views, crops):
        first_col = crop[1, 0, -1] if view.flip else crop[1, 0, 0]
        assert (crop[0, 0, 0].item(), first_col.item()) == (view.top, view.left)
    # the whole-square views of 144 are resized to the crop size
    square = crop_views(image, [View(36, 0, 7, 36, 36)], 32)
    assert square.shape == (1, 3, 32, 32)


def test_mean_softmax_averages_probabilities_over_views():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]]])  # 1 image, 2 views, 3 classes

    def model(x):
        return logits.view(2, 3)

    out = mean_softmax_log_probs(model, torch.zeros(1, 2, 1, 4, 4))
    expected = logits.softmax(-1).mean(1).log()
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(out.exp().sum(), torch.tensor(1.0))


def test_evaluate_scores_multi_view_batches_by_the_mean_softmax():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    views = torch.randn(6, 3, 3, 2, 2)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    metrics = evaluate(model, [(views, labels)], num_classes=5)
    with torch.no_grad():
        probs = model(views.flatten(0, 1)).softmax(-1).view(6, 3, 5).mean(1)
    assert metrics["samples"] == 6
    assert metrics["top1"] == pytest.approx(100.0 * (probs.argmax(1) == labels).float().mean().item())
    assert metrics["loss"] == pytest.approx(-probs[torch.arange(6), labels].log().mean().item(), rel=1e-5)


def test_in_memory_flip_tta_pairs_each_image_with_its_mirror():
    images = torch.randint(0, 256, (5, 1, 4, 6), dtype=torch.uint8)
    loader = DeviceLoader(InMemoryDataset("t", "val", images, torch.arange(5)), 2, torch.device("cpu"),
                          [0.0], [1.0], train=False)
    assert in_memory_views(loader, 1) is loader  # crops=1 is the plain loader: the same numbers as ever
    mirrored = in_memory_views(loader, 2)
    assert isinstance(mirrored, MirroredBatches) and len(mirrored) == 3
    batches = list(mirrored)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 2, 1, 4, 6)] * 2 + [(1, 2, 1, 4, 6)]
    first, _ = batches[0]
    assert torch.equal(first[:, 1], first[:, 0].flip(-1))
    assert torch.allclose(first[0, 0], images[0].float() / 255.0)


def test_in_memory_views_have_no_ten_crops():
    # eval.crops is checked by cnnbench.validate (tests/test_validate.py); a direct call still refuses.
    dataset = InMemoryDataset("t", "val", torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    loader = DeviceLoader(dataset, 2, torch.device("cpu"), [0.0], [1.0], train=False)
    with pytest.raises(ValueError, match="no views for 10 crops"):
        in_memory_views(loader, 10)


def test_googlenet_views_count():
    assert math.prod([4, 3, 6, 2]) == len(googlenet_144_views(10, 10, 4, (4, 5, 6, 7)))
