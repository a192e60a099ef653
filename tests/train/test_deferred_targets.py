"""A bad cross-entropy target that normia.ops recorded on the device (deferred: no host sync per call, issue 15) is
raised by the training loop at its next check, a logging step, with the op's message, and not before: the step that
made it ran without a host read. On CPU the deferral is forced with NORMIA_CHECK_TARGETS=deferred."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from normia import ops
from normia.training.health import BadTargets, NonFiniteLoss

VOCAB = 8


class _Tiny(L.LightningModule):
    """Logits from a linear layer; the targets of batch `bad_at` hold VOCAB + 3, out of range."""

    def __init__(self, bad_at: int | None):
        super().__init__()
        self.layer = nn.Linear(4, VOCAB)
        self.bad_at = bad_at
        self.steps_run = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if batch_idx == self.bad_at:
            y = y.clone()
            y[1] = VOCAB + 3
        self.steps_run += 1
        return ops.cross_entropy(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module: _Tiny, mode: str = "stop", every: int = 4) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(40, 4), torch.randint(0, VOCAB, (40,)))
    trainer = L.Trainer(
        max_steps=10,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[NonFiniteLoss(mode, every=every)],
    )
    trainer.fit(module, DataLoader(data, batch_size=4))


@pytest.fixture(autouse=True)
def _deferred(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NORMIA_CHECK_TARGETS", "deferred")
    ops.clear_deferred_errors()
    yield
    ops.clear_deferred_errors()


def test_a_recorded_bad_target_stops_the_run_at_the_next_check_not_at_the_call() -> None:
    module = _Tiny(bad_at=1)
    with pytest.raises(BadTargets, match=r"holds 11 .*\[0, 8\).*number of classes"):
        _fit(module, every=4)
    assert module.steps_run == 4  # recorded at batch 1, raised at the check after batch 3


def test_good_targets_train_to_the_end_and_leave_no_record() -> None:
    module = _Tiny(bad_at=None)
    _fit(module, every=2)
    assert module.steps_run == 10
    ops.raise_deferred_errors()  # nothing recorded: does not raise


def test_skip_mode_checks_the_targets_too() -> None:
    module = _Tiny(bad_at=0)
    with pytest.raises(BadTargets):
        _fit(module, mode="skip", every=2)
    assert module.steps_run == 2


def test_a_bad_check_mode_is_refused_before_anything_is_written(
    workdir, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Before: a traceback at the first cross-entropy call (an output folder left behind), or silence for a model
    that makes no such call (the quickstart's MLP)."""
    from normia.cli import main

    monkeypatch.setenv("NORMIA_CHECK_TARGETS", "bogus")
    assert main(["train", "experiment=quickstart"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: NORMIA_CHECK_TARGETS='bogus' is not a target check mode; use one of auto, sync, deferred"
    ]
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()
