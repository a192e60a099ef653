"""A multilayer perceptron classifier: the smallest model that shows the whole train path working."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from normia.models.baseline import MajorityBaseline


class MLPClassifier(MajorityBaseline):
    """Flat features -> hidden layers (GELU, dropout) -> class logits; loss is cross-entropy, metric accuracy."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: list[int] | tuple[int, ...] = (128,),
        dropout: float = 0.0,
    ):
        super().__init__()
        self.init_majority()  # acc_majority in validation, once the data module names the majority class
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
        return loss, self.with_majority({"acc": acc}, targets)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self(x).argmax(dim=-1)
