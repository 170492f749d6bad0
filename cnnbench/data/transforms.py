"""Per-image training transforms for folder datasets (ImageNet): the papers' crops and PCA lighting.

Images are uint8 (3, H, W) RGB tensors; the geometry is torchvision's
transforms v2. Their random draws come from torch's global CPU generator,
which the loader seeds for each image from (seed, epoch, image), so an
image's augmentation does not depend on the worker that made it.

``augment.crop`` picks how a training image becomes the network's input
square of side ``size``:

- ``center``: resize the shorter side to ``augment.resize``, take the centre
  square (no randomness: the view `eval.crops=1` sees).
- ``random``: AlexNet (Krizhevsky et al. 2012, section 2 and 4.1): resize the
  shorter side to ``augment.resize`` (256), keep the central square, take a
  random ``size`` crop of it.
- ``random_resized``: GoogLeNet (Szegedy et al. 2015, section 6): a patch of
  ``augment.area`` (8%-100%) of the image with aspect ratio in
  ``augment.aspect`` (3/4-4/3), resized to ``size``.

then a random mirror if ``augment.hflip``.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torchvision.transforms import v2


# Principal components of the RGB values of ImageNet training pixels, for
# AlexNet's colour augmentation (Krizhevsky et al. 2012, section 4.1). The
# paper gives no numbers; these are the widely used ones published with
# fb.resnet.torch (datasets/imagenet.lua, `pca`), for RGB scaled to [0, 1]
# (times 255 they are [55.46, 4.794, 1.148], as in MXNet's Lighting).
IMAGENET_PCA_EIGENVALUES = torch.tensor([0.2175, 0.0188, 0.0045])
# Column i is the eigenvector p_i; rows are R, G, B.
IMAGENET_PCA_EIGENVECTORS = torch.tensor([
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
])


def pca_lighting_shift(alpha_std: float) -> torch.Tensor:
    """The RGB offset sum_i alpha_i lambda_i p_i with alpha_i ~ N(0, alpha_std), on the [0, 1] scale.

    AlexNet adds it to every pixel of an image, with one draw of alpha per
    image per epoch. Drawn from torch's global CPU generator; returns (3,).
    """
    alpha = torch.randn(3) * alpha_std
    return IMAGENET_PCA_EIGENVECTORS @ (alpha * IMAGENET_PCA_EIGENVALUES)


def train_transform(augment: DictConfig, size: int) -> v2.Compose:
    """The geometric part of the training augmentation `augment` describes (see the module docstring);
    its ranges and its fit with ``size`` are checked by cnnbench.validate."""
    if augment.crop == "center":
        steps = [v2.Resize(augment.resize), v2.CenterCrop(size)]
    elif augment.crop == "random":
        steps = [v2.Resize(augment.resize), v2.CenterCrop(augment.resize), v2.RandomCrop(size)]
    elif augment.crop == "random_resized":
        steps = [v2.RandomResizedCrop(size, scale=tuple(augment.area), ratio=tuple(augment.aspect))]
    else:
        raise ValueError(f"no crop named {augment.crop!r}")  # the schema's Crop lists the three above
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)
