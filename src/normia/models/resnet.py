"""A small ResNet image classifier: residual blocks of two 3x3 convolutions, one stage per width.

Sized for small images (8x8 digits up to ~64x64): no 7x7 stem and no max-pool, each stage after the first halves the
resolution with a strided convolution, and global average pooling makes it independent of the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from normia.models.baseline import MajorityBaseline


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (projected by a 1x1 conv when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNetClassifier(MajorityBaseline):
    """Images (B, C, H, W) -> class logits; loss is cross-entropy (optionally label-smoothed), metric accuracy."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64),
        blocks_per_stage: int = 2,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2 or not widths or blocks_per_stage < 1:
            raise ValueError(
                f"ResNetClassifier needs in_channels >= 1, num_classes >= 2, widths and blocks_per_stage >= 1; got "
                f"{in_channels}, {num_classes}, {list(widths)}, {blocks_per_stage}"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = widths[0]
        for i, width in enumerate(widths):
            for b in range(blocks_per_stage):
                stride = 2 if (i > 0 and b == 0) else 1
                stages.append(ResidualBlock(channels, int(width), stride))
                channels = int(width)
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
        )
        self.label_smoothing = label_smoothing
        self.init_majority()  # acc_majority in validation, once the data module names the majority class

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(images)))

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        images, labels = batch
        logits = self(images)
        loss = nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(dim=-1) == labels).float().mean()
        return loss, self.with_majority({"acc": acc}, labels)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return self(images).argmax(dim=-1)
