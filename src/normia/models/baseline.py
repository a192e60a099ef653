"""The majority-class baseline every normia classifier logs beside its accuracy (issue 11: a classifier's accuracy
means little without the accuracy of always answering the most frequent class)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MajorityBaseline(nn.Module):
    """Mixin for classifiers: call `init_majority()` in __init__ and `with_majority(metrics, targets)` in loss().

    The data module hands the index of the training split's most frequent class through `set_data_facts`; validation
    then logs `acc_majority` (shape: targets (B,) class indices). The buffer is not saved: a checkpoint gets it again
    from its data module.
    """

    majority_class: Tensor

    def init_majority(self) -> None:
        self.register_buffer("majority_class", torch.tensor(-1, dtype=torch.int64), persistent=False)

    def with_majority(self, metrics: dict[str, Tensor], targets: Tensor) -> dict[str, Tensor]:
        """metrics plus `acc_majority` in validation, once the majority class is known."""
        if not self.training and int(self.majority_class) >= 0:
            metrics["acc_majority"] = (targets == self.majority_class).float().mean()
        return metrics

    def set_data_facts(self, majority_class: int | None = None, **_: object) -> None:
        """majority_class: the index of the most frequent class of the training split, handed over by normia's
        classification data modules. Other facts are ignored."""
        if majority_class is not None:
            self.majority_class.fill_(int(majority_class))


class UnigramBaseline(nn.Module):
    """Mixin for language models: call `init_unigram()` in __init__ and `with_unigram(metrics)` in loss().

    The data module hands the unigram loss of its training split (data/unigram.py) through `set_data_facts`;
    validation then logs `loss_unigram` (nats per token), the loss of a model that ignores the context. Not saved:
    a checkpoint gets it again from its data module."""

    unigram_loss: Tensor

    def init_unigram(self) -> None:
        self.register_buffer("unigram_loss", torch.tensor(float("nan")), persistent=False)

    def with_unigram(self, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
        """metrics plus `loss_unigram` in validation, once the baseline is known."""
        if not self.training and not torch.isnan(self.unigram_loss):
            metrics["loss_unigram"] = self.unigram_loss.clone()
        return metrics

    def set_data_facts(self, unigram_loss: float | None = None, **_: object) -> None:
        """unigram_loss: the training split's unigram entropy (nats), from normia's language-model data modules."""
        if unigram_loss is not None:
            self.unigram_loss.fill_(float(unigram_loss))
