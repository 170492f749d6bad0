"""The papers' training augmentations for folder datasets: PCA lighting, AlexNet and Inception crops."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from torchvision.transforms import v2

from cnnbench.config import CONF_DIR, AugmentConfig
from cnnbench.data.transforms import (
    IMAGENET_PCA_EIGENVALUES, IMAGENET_PCA_EIGENVECTORS, pca_lighting_shift, train_transform,
)


def augment(name: str, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(AugmentConfig), OmegaConf.load(CONF_DIR / "augment" / f"{name}.yaml"))
    return OmegaConf.merge(cfg, overrides)


def test_pca_eigenvectors_are_orthonormal_columns():
    v = IMAGENET_PCA_EIGENVECTORS
    assert torch.allclose(v.T @ v, torch.eye(3), atol=2e-4)
    # the first component is brightness: equal weight on R, G and B
    assert torch.allclose(v[:, 0].abs(), torch.full((3,), 3 ** -0.5), atol=0.01)


def test_pca_lighting_noise_has_the_eigen_decomposition_as_covariance():
    torch.manual_seed(0)
    n, std = 20000, 0.1
    shifts = torch.stack([pca_lighting_shift(std) for _ in range(n)]).double()
    assert shifts.mean(0).abs().max() < 1e-3  # about 10 standard errors
    cov = torch.cov(shifts.T)
    v = IMAGENET_PCA_EIGENVECTORS.double()
    in_eigenbasis = v.T @ cov @ v
    expected = (std * IMAGENET_PCA_EIGENVALUES.double()) ** 2  # Var(alpha_i lambda_i)
    assert torch.allclose(in_eigenbasis.diagonal(), expected, rtol=0.05)
    correlation = in_eigenbasis / torch.outer(expected, expected).sqrt()
    assert (correlation - torch.diag(correlation.diagonal())).abs().max() < 0.05


def test_inception_crops_keep_area_and_aspect_in_the_papers_ranges():
    transform = train_transform(augment("inception"), 32)
    crop = transform.transforms[0]
    assert isinstance(crop, v2.RandomResizedCrop)
    image = torch.zeros(3, 60, 80, dtype=torch.uint8)
    torch.manual_seed(0)
    areas, aspects = [], []
    for _ in range(2000):
        box = crop.make_params([image])
        areas.append(box["height"] * box["width"] / (60 * 80))
        aspects.append(box["width"] / box["height"])
    # boxes are whole pixels, hence the rounding slack
    assert 0.08 * 0.9 <= min(areas) < 0.12 and 0.9 < max(areas) <= 1.0
    assert 0.75 * 0.93 <= min(aspects) < 0.8 and 1.25 < max(aspects) <= 4 / 3 * 1.07
    assert transform(image).shape == (3, 32, 32)


def test_alexnet_crops_come_from_the_central_square_and_are_mirrored_half_the_time():
    # The shorter side is already augment.resize=36, so pixels keep their coordinates.
    rows, cols = torch.meshgrid(torch.arange(36), torch.arange(50), indexing="ij")
    image = torch.stack([rows, cols, rows]).to(torch.uint8)
    transform = train_transform(augment("alexnet", resize=36), 32)
    torch.manual_seed(0)
    tops, lefts, flips = set(), set(), []
    for _ in range(300):
        out = transform(image)
        assert out.shape == (3, 32, 32)
        flipped = bool(out[1, 0, 0] > out[1, 0, -1])
        left = int(out[1, 0, -1] if flipped else out[1, 0, 0])
        tops.add(int(out[0, 0, 0]))
        lefts.add(left)
        flips.append(flipped)
        columns = torch.arange(32) + left
        assert torch.equal(out[1, 0], columns.flip(0) if flipped else columns)
    # central 36x36 square starts at column round((50 - 36) / 2) = 7; a 32 crop can start 0..4 further
    assert tops == set(range(5)) and lefts == set(range(7, 12))
    assert 0.35 < sum(flips) / len(flips) < 0.65


def test_center_crop_is_the_evaluation_view():
    image = torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8)
    out = train_transform(augment("none", resize=36), 32)(image)
    assert torch.equal(out, v2.CenterCrop(32)(v2.Resize(36)(image)))


# Bad augment values (padding for folder data, resize below the input, area, aspect,
# pca_lighting) are refused by cnnbench.validate before any transform is made:
# tests/test_validate.py has them, and the schema's Crop refuses an unknown crop.


def test_unknown_crop_is_refused():
    with pytest.raises(ValidationError, match="'bogus'"):
        augment("alexnet", crop="bogus")
    plain = OmegaConf.create(OmegaConf.to_container(augment("alexnet")))  # a stored config: no schema
    plain.crop = "bogus"
    with pytest.raises(ValueError, match="no crop named 'bogus'"):
        train_transform(plain, 32)
