"""The in-memory fast path: per-sample crop and mirror, determinism, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from cnnbench.data.augment import CropDraws, CropSource
from cnnbench.data.datasets import InMemoryDataset
from cnnbench.data.loaders import DeviceLoader

CPU = torch.device("cpu")
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def random_images(n: int, size: int = 32, low: int = 1, seed: int = 0) -> torch.Tensor:
    """uint8 images with no zero pixels (``low`` >= 1), so zero padding is recognisable."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def identity_dataset(images: torch.Tensor) -> InMemoryDataset:
    """Labels are the image indices, so every output can be traced to its source."""
    return InMemoryDataset("test", "train", images, torch.arange(len(images)))


def raw_loader(images, train=True, padding=0, hflip=False, seed=0, batch_size=None):
    """A loader whose "normalisation" is the identity, so outputs are the raw pixel values."""
    dataset = identity_dataset(images)
    return DeviceLoader(dataset, batch_size or len(images), CPU, [0.0] * 3, [1 / 255] * 3, train=train,
                        seed=seed, crop_padding=padding, hflip=hflip)


def all_batches(loader):
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


def test_crop_of_a_known_image_is_a_shifted_copy_with_zero_borders():
    image = random_images(1)
    source = CropSource(image, padding=4, hflip=True)
    one = torch.zeros(1, dtype=torch.long)
    # Corner at row 0, column 8 of the padded image: the image moves down 4 and left 4.
    draws = CropDraws(dy=torch.tensor([0]), dx=torch.tensor([8]), flip=torch.tensor([False]))
    crop = source.crops(source.starts(one, draws))[0]
    expected = torch.zeros_like(image[0])
    expected[:, 4:, :28] = image[0, :, :28, 4:]
    assert torch.equal(crop, expected)
    # The same corner, mirrored: the mirror of that shifted copy.
    draws.flip = torch.tensor([True])
    mirrored = source.crops(source.starts(one, draws))[0]
    assert torch.equal(mirrored, expected.flip(2))
    # The centre crop is the image itself.
    centre = CropDraws(dy=torch.tensor([4]), dx=torch.tensor([4]), flip=torch.tensor([False]))
    assert torch.equal(source.crops(source.starts(one, centre))[0], image[0])


def crop_offsets(outputs: torch.Tensor, sources: torch.Tensor, padding: int) -> torch.Tensor:
    """For each output, every (dy, dx) whose crop of the zero-padded source equals it: bool (N, 2p+1, 2p+1)."""
    size = sources.shape[-1]
    padded = F.pad(sources, (padding,) * 4)
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # (N, C, 2p+1, 2p+1, size, size)
    return (windows == outputs[:, :, None, None]).all(dim=(4, 5)).all(dim=1)


def test_training_crops_are_shifted_copies_at_offsets_covering_the_whole_range():
    images = random_images(300)
    outputs, labels = all_batches(raw_loader(images, padding=4, batch_size=64))
    outputs = outputs.round().to(torch.uint8)
    matches = crop_offsets(outputs, images[labels], padding=4)
    assert (matches.flatten(1).sum(1) == 1).all(), "each output is exactly one crop of its source"
    _, dy, dx = matches.nonzero(as_tuple=True)
    assert set(dy.tolist()) == set(range(9)) and set(dx.tolist()) == set(range(9))
    # Uniform over the 9 positions of each axis: each seen about 300/9 = 33 times.
    assert torch.bincount(dy, minlength=9).min() >= 15 and torch.bincount(dx, minlength=9).min() >= 15


def test_flips_mirror_about_half_of_the_samples():
    images = random_images(2000, size=8)
    outputs, labels = all_batches(raw_loader(images, hflip=True, batch_size=500))
    outputs = outputs.round().to(torch.uint8)
    sources = images[labels]
    same = (outputs == sources).flatten(1).all(1)
    mirrored = (outputs == sources.flip(3)).flatten(1).all(1)
    assert (same ^ mirrored).all(), "every output is its source or the source's mirror"
    assert 0.45 < mirrored.float().mean().item() < 0.55


def test_crop_and_flip_together_give_a_mirrored_or_plain_crop():
    images = random_images(200)
    outputs, labels = all_batches(raw_loader(images, padding=4, hflip=True, batch_size=50))
    outputs = outputs.round().to(torch.uint8)
    plain = crop_offsets(outputs, images[labels], 4).flatten(1).any(1)
    mirrored = crop_offsets(outputs.flip(3), images[labels], 4).flatten(1).any(1)
    assert (plain ^ mirrored).all()
    assert 0.3 < mirrored.float().mean().item() < 0.7


def test_augmentation_depends_on_seed_and_epoch_only():
    images = random_images(64, size=16)

    def epoch(seed: int, number: int) -> torch.Tensor:
        loader = raw_loader(images, padding=2, hflip=True, seed=seed, batch_size=16)
        loader.set_epoch(number)
        return torch.cat([torch.cat([x.flatten(1), y[:, None].float()], 1) for x, y in loader])

    first = epoch(seed=3, number=5)
    torch.manual_seed(12345)  # global RNG state must not matter
    torch.rand(1000)
    np.random.seed(1)
    assert torch.equal(epoch(seed=3, number=5), first)
    assert not torch.equal(epoch(seed=3, number=6), first)
    assert not torch.equal(epoch(seed=4, number=5), first)


def test_evaluation_batches_are_unaugmented_in_order_and_complete():
    images = random_images(10, size=8)
    loader = raw_loader(images, train=False, padding=4, hflip=True, batch_size=4)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(loader) == 3
    outputs, labels = all_batches(loader)
    assert torch.equal(labels, torch.arange(10))
    assert torch.equal(outputs.round().to(torch.uint8), images)


def test_training_drops_the_last_partial_batch():
    loader = raw_loader(random_images(10, size=8), batch_size=4)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]


@pytest.mark.parametrize("train", [False, True])
def test_normalised_batches_equal_torchvision_totensor_normalize(train):
    images = random_images(12, low=0, seed=1)
    loader = DeviceLoader(identity_dataset(images), 5, CPU, MEAN, STD, train=train)
    outputs, labels = all_batches(loader)
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    expected = torch.stack([reference(Image.fromarray(images[i].permute(1, 2, 0).numpy())) for i in labels])
    assert outputs.dtype == torch.float32 and outputs.shape == expected.shape
    torch.testing.assert_close(outputs, expected, rtol=1e-5, atol=1e-5)


def test_bad_padding_and_mean_are_refused():
    with pytest.raises(ValueError, match="padding"):
        CropSource(random_images(2, size=8), padding=-1)
    with pytest.raises(ValueError, match="mean/std need 3 values"):
        DeviceLoader(identity_dataset(random_images(2, size=8)), 2, CPU, [0.5], [0.5], train=True)


def test_pca_lighting_adds_one_rgb_shift_per_image_with_alexnets_covariance():
    """AlexNet's colour augmentation on in-memory data: each training image gets one RGB offset
    (the same at every pixel), drawn per image and epoch with covariance E diag((s lambda)^2) E^T;
    evaluation batches get none. A shift per batch or per pixel, or the wrong eigen-basis, fails."""
    from cnnbench.data.transforms import IMAGENET_PCA_EIGENVALUES, IMAGENET_PCA_EIGENVECTORS

    images, std = random_images(4000, size=4), 0.1
    dataset = identity_dataset(images)
    plain = all_batches(raw_loader(images))[0]
    lit_loader = DeviceLoader(dataset, len(images), CPU, [0.0] * 3, [1 / 255] * 3, train=True, pca_lighting=std)
    lit, labels = all_batches(lit_loader)
    shift = (lit - plain) / 255.0  # same seed, same order and crops: only the colour shift differs
    per_image = shift[:, :, 0, 0]
    assert torch.allclose(shift, per_image[:, :, None, None].expand_as(shift), atol=1e-4)
    expected = IMAGENET_PCA_EIGENVECTORS @ torch.diag((std * IMAGENET_PCA_EIGENVALUES) ** 2) @ IMAGENET_PCA_EIGENVECTORS.T
    assert torch.allclose(torch.cov(per_image.T), expected, atol=3e-5, rtol=0.1)
    lit_loader.set_epoch(1)
    assert not torch.allclose(all_batches(lit_loader)[0], lit)
    evaluation = DeviceLoader(dataset, len(images), CPU, [0.0] * 3, [1 / 255] * 3, train=False, pca_lighting=std)
    assert torch.equal(all_batches(evaluation)[0], images.float())
