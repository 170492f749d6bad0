"""Multi-crop evaluation views (`eval.crops`): which boxes of an image the network sees.

- ``1``: the centre ``size`` crop of the image resized so its shorter side is
  ``eval.resize`` (256).
- ``2``: that crop and its mirror image (also for in-memory datasets, where the
  crop is the whole image).
- ``10``: AlexNet (Krizhevsky et al. 2012, section 4.1, "At test time"): the
  four corner crops and the centre crop of the central ``eval.resize`` square,
  and their mirrors.
- ``144``: GoogLeNet (Szegedy et al. 2015, section 7): the shorter side resized
  to each of ``eval.scales`` (256, 288, 320, 352); the left, centre and right
  squares (top, centre, bottom for portrait images); from each square the four
  corner and the centre crops plus the whole square resized to ``size``; and
  their mirrors: 4 x 3 x 6 x 2 = 144.

Both papers average the softmax outputs of the crops; that scoring lives
with evaluation (``cnnbench.engine.evaluate.mean_softmax_log_probs``). The
geometry here is pure functions returning :class:`View` boxes, so they can
be checked by hand.
"""

from __future__ import annotations

from typing import Iterator, List, NamedTuple, Sequence, Tuple

import torch
from torchvision.transforms.v2 import functional as TF

from cnnbench.config import IN_MEMORY_CROP_COUNTS
from cnnbench.data.loaders import Loader


class View(NamedTuple):
    """Resize the image so its shorter side is ``shorter``, cut the box (top, left,
    height, width) out of that, resize the box to the crop size if it is not
    already, and mirror it if ``flip``."""

    shorter: int
    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def resized_shape(height: int, width: int, shorter: int) -> Tuple[int, int]:
    """The (height, width) torchvision's ``resize(image, [shorter])`` gives: the shorter
    side becomes ``shorter``, the longer one is scaled and truncated."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def centre_offset(length: int, size: int) -> int:
    """Where a centred ``size`` span starts in ``length``; torchvision's centre crop rounds
    the same way (Python's round: halves to even), so ``eval.crops=1`` equals
    ``Resize`` then ``CenterCrop``."""
    return int(round((length - size) / 2.0))


def five_boxes(top: int, left: int, side: int, size: int, shorter: int) -> List[View]:
    """The four corner ``size`` crops and the centre one of the square (top, left, side)."""
    far = side - size
    mid = centre_offset(side, size)
    corners = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]
    return [View(shorter, top + dy, left + dx, size, size) for dy, dx in corners]


def with_mirrors(views: List[View]) -> List[View]:
    return views + [view._replace(flip=True) for view in views]


def centre_view(height: int, width: int, size: int, shorter: int) -> View:
    h, w = resized_shape(height, width, shorter)
    return View(shorter, centre_offset(h, size), centre_offset(w, size), size, size)


def ten_crop_views(height: int, width: int, size: int, shorter: int) -> List[View]:
    """AlexNet's 10 crops of a ``height`` x ``width`` image (see the module docstring)."""
    h, w = resized_shape(height, width, shorter)
    return with_mirrors(five_boxes(centre_offset(h, shorter), centre_offset(w, shorter), shorter, size, shorter))


def googlenet_144_views(height: int, width: int, size: int, scales: Sequence[int]) -> List[View]:
    """GoogLeNet's 144 crops of a ``height`` x ``width`` image (see the module docstring)."""
    views = []
    for shorter in scales:
        h, w = resized_shape(height, width, shorter)
        long_side = max(h, w)
        for start in (0, centre_offset(long_side, shorter), long_side - shorter):
            top, left = (0, start) if w >= h else (start, 0)
            views += five_boxes(top, left, shorter, size, shorter)
            views.append(View(shorter, top, left, shorter, shorter))
    return with_mirrors(views)


def eval_views(crops: int, height: int, width: int, size: int, shorter: int, scales: Sequence[int]) -> List[View]:
    """The views `eval.crops` takes of one image; the crop is ``size`` square."""
    if crops == 1:
        return [centre_view(height, width, size, shorter)]
    if crops == 2:
        return with_mirrors([centre_view(height, width, size, shorter)])
    if crops == 10:
        return ten_crop_views(height, width, size, shorter)
    if crops == 144:
        return googlenet_144_views(height, width, size, scales)
    raise ValueError(f"no views for {crops} crops")


def crop_views(image: torch.Tensor, views: Sequence[View], size: int) -> torch.Tensor:
    """Cut ``views`` out of a (C, H, W) image: a (len(views), C, size, size) tensor."""
    resized, cut = {}, {}  # each scale resized once, each box cut once for it and its mirror
    crops = []
    for view in views:
        box = view._replace(flip=False)
        if box not in cut:
            if view.shorter not in resized:
                resized[view.shorter] = TF.resize(image, [view.shorter])
            crop = TF.crop(resized[view.shorter], view.top, view.left, view.height, view.width)
            cut[box] = crop if (view.height, view.width) == (size, size) else TF.resize(crop, [size, size])
        crops.append(TF.horizontal_flip(cut[box]) if view.flip else cut[box])
    return torch.stack(crops)


class MirroredBatches(Loader):
    """Flip-TTA for in-memory loaders: each batch as (image, mirror) views, (N, 2, C, H, W)."""

    def __init__(self, loader: Loader):
        self.loader = loader
        self.labels = loader.labels
        self.device = loader.device

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield torch.stack((images, images.flip(-1)), dim=1), labels


def in_memory_views(loader: Loader, crops: int) -> Loader:
    """An in-memory evaluation loader with the views `eval.crops` asks for."""
    if crops not in IN_MEMORY_CROP_COUNTS:  # cnnbench.validate refuses these for in-memory data
        raise ValueError(f"in-memory data has no views for {crops} crops")
    return loader if crops == 1 else MirroredBatches(loader)
