"""The spatial transformer's last stages: theta regression, grid generator, sampler.

Jaderberg, Simonyan, Zisserman, Kavukcuoglu. Spatial Transformer Networks.
NIPS 2015.

The localisation network (section 3.1) is written in the model YAML and ends
in a flat feature vector; this module holds its final regression layer,
which maps those features to the six numbers of the affine transform theta.
The grid generator (section 3.2) maps each output pixel's normalised
coordinates (x_t, y_t) in [-1, 1] to the source point A_theta (x_t, y_t, 1),
and the sampler (section 3.3) reads the input there with the bilinear kernel
of eq. 5, giving gradients for both the image and theta. torch's
``affine_grid``/``grid_sample`` are exactly these two stages.

As the paper's experiments do (section 4), the regression layer starts with
zero weights and the identity transform as its bias, so a fresh transformer
passes its input through unchanged and learns to move away from it.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class SpatialTransformer(nn.Module):
    def __init__(self, features: int, size: Optional[Sequence[int]] = None):
        super().__init__()
        self.regressor = nn.Linear(features, 6)
        nn.init.zeros_(self.regressor.weight)
        with torch.no_grad():
            self.regressor.bias.copy_(torch.tensor(IDENTITY_THETA))
        self.size = None if size is None else tuple(int(s) for s in size)

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        image, features = inputs
        theta = self.regressor(features).view(-1, 2, 3)
        n, c, h, w = image.shape
        height, width = self.size or (h, w)
        # align_corners=False: -1 and 1 are the outer edges of the image, so
        # the identity theta samples every pixel centre exactly.
        grid = F.affine_grid(theta, [n, c, height, width], align_corners=False)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
