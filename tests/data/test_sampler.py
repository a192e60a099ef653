"""The resumable sampler: deterministic, rank-aware, and a mid-epoch resume neither repeats nor skips samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from normia.data.datamodule import ResumableDataModule, _BatchReader
from normia.data.digits import DigitsDataModule
from normia.data.sampler import EvalSampler, ResumableSampler, eval_batches

REPO = Path(__file__).resolve().parents[2]


def take(sampler: ResumableSampler, n: int) -> list[int]:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_same_order_on_every_machine_and_a_new_one_each_epoch() -> None:
    a, b = ResumableSampler(100, seed=3), ResumableSampler(100, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(list(a)) == list(range(100))


def test_ranks_partition_the_single_process_order() -> None:
    """W ranks taking B each per step see exactly the samples one process of batch W*B sees at that step."""
    single = list(ResumableSampler(97, seed=1, rank=0, world_size=1))
    ranks = [list(ResumableSampler(97, seed=1, rank=r, world_size=4)) for r in range(4)]
    assert all(len(r) == 24 for r in ranks)  # drop_last: 96 samples, 24 per rank
    interleaved = [ranks[r][i] for i in range(24) for r in range(4)]
    assert interleaved == single[:96]
    assert not set(ranks[0]) & set(ranks[1])


def test_resume_mid_epoch_continues_exactly() -> None:
    full = list(ResumableSampler(50, seed=7))
    before = ResumableSampler(50, seed=7)
    seen = take(before, 20)  # the loader may have prefetched these ...
    before.advance(12)  # ... but only 12 were trained on
    state = before.state_dict()
    after = ResumableSampler(50, seed=7)
    after.load_state_dict(state)
    rest = list(after)
    assert seen[:12] + rest == full
    after.set_epoch(1)
    assert len(list(after)) == 50  # the next epoch starts from its beginning


def test_resume_with_another_world_size() -> None:
    full = list(ResumableSampler(64, seed=2, rank=0, world_size=1))
    two = [ResumableSampler(64, seed=2, rank=r, world_size=2) for r in range(2)]
    for sampler in two:
        sampler.advance(8)  # 8 steps of batch 1 on each of 2 ranks = 16 global samples
    state = two[0].state_dict()
    assert state["consumed"] == 16
    four = [ResumableSampler(64, seed=2, rank=r, world_size=4) for r in range(4)]
    for sampler in four:
        sampler.load_state_dict(state)
    rest = [list(s) for s in four]
    merged = [rest[r][i] for i in range(len(rest[0])) for r in range(4)]
    assert merged == full[16:]
    assert np.unique(merged).size == 48


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("batch_size", [1, 2, 7, 32])
def test_validation_batches_hold_each_sample_once_with_as_many_batches_on_every_rank(
    world: int, batch_size: int
) -> None:
    """No padding (torch's DistributedSampler repeats samples to even out the ranks, so metrics depended on W), and
    the same number of batches everywhere (FSDP gathers parameters in every forward: an extra one would hang)."""
    for n in [world, world + 1, 2 * world * batch_size - 1, 2 * world * batch_size + 1, 65, 359]:
        if n < world:
            continue
        ranks = [eval_batches(n, batch_size, r, world) for r in range(world)]
        seen = [i for batches in ranks for batch in batches for i in batch]
        assert sorted(seen) == list(range(n)), (n, batch_size, world)
        assert len({len(batches) for batches in ranks}) == 1
        sizes = [len(batch) for batches in ranks for batch in batches]
        assert min(sizes) >= 1 and max(sizes) <= max(batch_size, 2)
        sampler = EvalSampler(n, batch_size, rank=world - 1, world_size=world)
        assert list(sampler) == ranks[-1] and len(sampler) == len(ranks[-1])


def test_validation_sampler_refuses_fewer_samples_than_ranks() -> None:
    with pytest.raises(ValueError, match="3 samples cannot give each of 4 ranks"):
        eval_batches(3, 8, 0, 4)


def test_validation_loader_of_a_data_module_reads_every_sample_once_in_one_process() -> None:
    """The loader a data module gives Lightning (one process here): all samples, in order, batches <= batch_size."""
    dm = DigitsDataModule(batch_size=64, val_fraction=0.2)
    batches = list(dm.val_dataloader())
    labels = torch.cat([y for _, y in batches])
    assert [len(y) for _, y in batches] == [60, 60, 60, 60, 60, 59]
    assert torch.equal(labels, dm.val_set.tensors[1])


def _data_module(name: str, tmp_path: Path) -> ResumableDataModule:
    cfg = OmegaConf.load(REPO / "configs" / "data" / f"{name}.yaml")
    if name == "synthetic_lm":
        cfg.num_samples, cfg.num_val_samples = 64, 50
    if name == "table_csv":
        x = np.arange(120) / 7.0
        pd.DataFrame({"x": x, "z": np.cos(x), "y": 2 * x}).to_csv(tmp_path / "t.csv", index=False)
        cfg.path, cfg.target = str(tmp_path / "t.csv"), "y"
    return instantiate(cfg)


def _concat(batches: list) -> list[torch.Tensor]:
    return [torch.cat([b[i] for b in batches]) for i in range(len(batches[0]))]


@pytest.mark.parametrize(
    "name", ["digits", "digits_images", "co2", "shakespeare_bytes", "synthetic_lm", "table_csv"]
)
def test_every_data_module_validates_each_sample_once_for_any_number_of_ranks(
    name: str, tmp_path: Path
) -> None:
    """Each data module's validation set (tensors, __getitems__ windows, items to collate), read by 1 process
    (its own val_dataloader) and by 3 ranks: the ranks' batches together are the whole set, once, in order."""
    dm = _data_module(name, tmp_path)
    dm.setup("fit")
    n = len(dm.val_set)
    whole = _BatchReader(dm.val_set)[list(range(n))]
    one = _concat(list(dm.val_dataloader()))
    ranks = [
        list(
            DataLoader(_BatchReader(dm.val_set), batch_size=None, sampler=EvalSampler(n, dm.batch_size, r, 3))
        )
        for r in range(3)
    ]
    in_order = [
        batches[k] for k in range(len(ranks[0])) for batches in ranks
    ]  # global batch k = its 3 pieces
    for got in (one, _concat(in_order)):
        assert len(got) == len(whole) and all(torch.equal(a, b) for a, b in zip(got, whole))
