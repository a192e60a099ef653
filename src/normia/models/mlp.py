"""A multilayer perceptron classifier: the smallest model that shows the whole train path working."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLPClassifier(nn.Module):
    """Flat features -> hidden layers (GELU, dropout) -> class logits; loss is cross-entropy, metric accuracy."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: list[int] | tuple[int, ...] = (128,),
        dropout: float = 0.0,
    ):
        super().__init__()
        if in_features <= 0 or num_classes <= 1:
            raise ValueError(
                f"MLPClassifier needs in_features > 0 and num_classes > 1, got {in_features}, {num_classes}"
            )
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.GELU(), nn.Dropout(dropout)]
            width = int(size)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        inputs, targets = batch
        logits = self(inputs)
        loss = nn.functional.cross_entropy(logits, targets)
        acc = (logits.argmax(dim=-1) == targets).float().mean()
        return loss, {"acc": acc}

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self(x).argmax(dim=-1)
