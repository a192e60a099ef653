"""With a real Lightning 2.6 Trainer: a job stopped mid-epoch and resumed from its checkpoint trains on exactly the
samples an uninterrupted job sees, in the same order (Lightning's fetcher prefetches a batch; it must not be lost)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import TensorDataset

from normia.data.datamodule import ResumableDataModule


class IndexData(ResumableDataModule):
    """Sample i is (i, i): the training step can record which samples it got."""

    def __init__(self, n: int = 48, batch_size: int = 4) -> None:
        super().__init__(batch_size=batch_size, seed=11)
        self.n = n

    def setup(self, stage: str | None = None) -> None:
        index = torch.arange(self.n, dtype=torch.float32)
        self.train_set = TensorDataset(index, index)
        self.val_set = TensorDataset(index[:4], index[:4])


class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        x, _ = batch
        self.seen.extend(int(v) for v in x)
        return (self.weight * x).sum()

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(max_steps: int, root: Path, ckpt_path: str | None = None, every: int | None = None) -> list[int]:
    callbacks = (
        [ModelCheckpoint(dirpath=root, every_n_train_steps=every, save_top_k=-1, filename="{step}")]
        if every
        else []
    )
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(every),
        callbacks=callbacks,
        limit_val_batches=0,
        default_root_dir=root,
    )
    model = Recorder()
    trainer.fit(model, datamodule=IndexData(), ckpt_path=ckpt_path)
    return model.seen


def test_mid_epoch_resume_neither_repeats_nor_skips(tmp_path: Path) -> None:
    # 12 batches per epoch; stop after 7 (mid-epoch 0), resume to 20 (crosses into epoch 1)
    uninterrupted = fit(20, tmp_path / "full")
    first = fit(7, tmp_path / "a", every=7)
    ckpt = tmp_path / "a" / "step=7.ckpt"
    assert ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)["IndexData"]
    assert state["sampler"]["consumed"] == 28 and state["sampler"]["epoch"] == 0
    rest = fit(20, tmp_path / "b", ckpt_path=str(ckpt))
    assert first == uninterrupted[:28]
    assert first + rest == uninterrupted
    assert sorted(uninterrupted[:48]) == list(range(48))  # one full epoch, every sample once
