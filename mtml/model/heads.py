"""Per-voxel prediction heads on top of the shared backbone features."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PointwiseHead(nn.Module):
    """Three 1x1x1 convolutions: [B, in_ch, X, Y, Z] -> [B, out_ch, X, Y, Z] (the authors' head shape), or the
    same per-voxel map on gathered voxels [V, in_ch] -> [V, out_ch]."""

    def __init__(self, in_ch: int, out_ch: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(in_ch, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv3d(hidden, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv3d(hidden, out_ch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            return self.net(x)
        for layer in self.net:  # a 1x1x1 convolution on rows is a matrix product, far cheaper than conv3d on [V,1,1]
            x = F.linear(x, layer.weight.flatten(1), layer.bias) if isinstance(layer, nn.Conv3d) else layer(x)
        return x


class SemanticHead(nn.Module):
    """Language-grounded semantic head (Rozenberszki et al.): a per-voxel feature in the text encoder's space
    and a cosine classifier over the classes.

    ``anchors`` [C, D] (buffer) are the text features of the class names: the targets of the contrastive
    pre-training. ``classifier`` [C, D] (trainable) holds one prototype per class; it starts as the anchors
    (language-grounded fine-tuning) or random (training from scratch, ``set_anchors(..., init_classifier=False)``).
    Logits are ``logit_scale * cos(feature, prototype)``.
    """

    def __init__(self, in_ch: int, num_classes: int, dim: int, logit_scale: float = 15.0, hidden: int = 64):
        super().__init__()
        self.feature = PointwiseHead(in_ch, dim, hidden)
        self.register_buffer("anchors", torch.zeros(num_classes, dim))
        self.classifier = nn.Parameter(F.normalize(torch.randn(num_classes, dim), dim=1))
        self.logit_scale = logit_scale

    @torch.no_grad()
    def set_anchors(self, anchors: torch.Tensor, init_classifier: bool = True) -> None:
        """Store the class-name text features [C, D]; with ``init_classifier`` the prototypes start from them."""
        self.anchors.copy_(F.normalize(anchors.float(), dim=1))
        if init_classifier:
            self.classifier.copy_(self.anchors)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits [M, C] of voxel features [M, D]."""
        return self.logit_scale * F.normalize(features, dim=1) @ F.normalize(self.classifier, dim=1).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature(x)
