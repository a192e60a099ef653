"""Per-step dispatch savings of issue 15 that must not change behaviour: CallbackGroup calls exactly the hooks its
members define, in order; normia's ModelCheckpoint has Lightning's state key (checkpoints stay interchangeable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

from normia.training.callbacks import CallbackGroup, NormiaState
from normia.training.checkpoint import ModelCheckpoint


class Recorder(L.Callback):
    def __init__(self, name: str, calls: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        self.name, self.calls = name, calls

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self.calls.append((self.name, "on_train_batch_end", args))


class Starter(Recorder):
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.calls.append((self.name, "on_train_start", ()))


def test_a_group_calls_what_its_members_define_in_order() -> None:
    calls: list[tuple[str, str, tuple[Any, ...]]] = []
    group = CallbackGroup([Starter("a", calls), Recorder("b", calls)])
    group.on_train_batch_end("trainer", "module", "outputs", "batch", 3)
    group.on_train_start("trainer", "module")
    group.on_validation_end("trainer", "module")  # defined by no member: nothing happens
    assert calls == [
        ("a", "on_train_batch_end", ("outputs", "batch", 3)),
        ("b", "on_train_batch_end", ("outputs", "batch", 3)),
        ("a", "on_train_start", ()),
    ]
    assert group.state_dict() == {}


def test_a_callback_with_checkpoint_state_cannot_be_grouped() -> None:
    with pytest.raises(ValueError, match="NormiaState saves state"):
        CallbackGroup([NormiaState()])


def test_normia_model_checkpoint_has_lightnings_state_key(tmp_path: Path) -> None:
    settings = {"dirpath": tmp_path, "filename": "best-{step}", "monitor": "val/acc", "mode": "max"}
    ours, theirs = ModelCheckpoint(**settings), LightningModelCheckpoint(**settings)
    assert ours.state_key == theirs.state_key == ours.state_key
    assert ours.state_key.startswith("ModelCheckpoint{")
