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
        # the training split's most frequent class (set_data_facts); -1 until known. Not saved in checkpoints.
        self.register_buffer("majority_class", torch.tensor(-1, dtype=torch.int64), persistent=False)
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
        metrics = {"acc": acc}
        if not self.training and int(self.majority_class) >= 0:  # the baseline: always the majority class
            metrics["acc_majority"] = (targets == self.majority_class).float().mean()
        return loss, metrics

    def set_data_facts(self, majority_class: int | None = None, **_: object) -> None:
        """majority_class: the index of the most frequent class of the training split, handed over by normia's
        classification data modules; validation then logs `acc_majority`, the accuracy of always predicting it
        (the baseline to beat). Other facts are ignored."""
        if majority_class is not None:
            self.majority_class.fill_(int(majority_class))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self(x).argmax(dim=-1)
