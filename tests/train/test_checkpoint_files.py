"""The checkpoint folder's rules, without training: which checkpoint a resume picks (never a partial one), retention,
the last.ckpt link, staged asynchronous writes, a crafted sharded index refused, the checkpoint settings."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from normia.config.checkpoint_settings import checkpoint_settings
from normia.errors import UserError
from normia.training.checkpoint import AtomicCheckpointIO, last_checkpoint, load_checkpoint_file
from normia.training.checkpoint_writer import CheckpointWriter, stage
from normia.training.periodic_checkpoint import point_last_at, remove_killed_writes, remove_old, step_path
from normia.training.sharded_read import DCP_INDEX, META, full_checkpoint, is_sharded


def _sharded(folder: Path, step: int) -> Path:
    """A real one-process DCP checkpoint in Lightning's layout (tensors by DCP, the rest in meta.pt)."""
    import torch.distributed.checkpoint as dcp

    shards = {
        "state_dict": {"model.w": torch.full((3, 2), float(step))},
        "optimizer_0": {
            "state": {"model.w": {"step": torch.tensor(float(step)), "exp_avg": torch.ones(3, 2)}},
            "param_groups": [{"lr": 0.1, "params": ["model.w"]}],
        },
    }
    dcp.save(shards, checkpoint_id=folder, no_dist=True)
    torch.save({"global_step": step, "normia": {"mlflow_run_id": "r"}}, folder / META)
    return folder


def test_a_resume_picks_last_ckpt_else_the_newest_complete_step_never_a_partial(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 4}, step_path(folder, 4))
    io.save_checkpoint({"global_step": 8}, step_path(folder, 8))
    partial = folder / ".step-00000012.ckpt.partial"  # a sharded save killed before its rename
    partial.mkdir()
    (partial / DCP_INDEX).write_bytes(b"")
    (folder / "step-00000016.ckpt").mkdir()  # a folder without DCP's index: not a checkpoint
    assert last_checkpoint(tmp_path) == step_path(folder, 8)  # no link yet (killed between write and link)
    point_last_at(step_path(folder, 4))
    assert last_checkpoint(tmp_path) == folder / "last.ckpt"
    assert load_checkpoint_file(folder / "last.ckpt")["global_step"] == 4
    remove_killed_writes(folder)
    assert not partial.exists()


def test_the_link_replaces_an_older_normias_real_last_ckpt(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, folder / "last.ckpt")  # as normia <= 0.2 wrote it
    io.save_checkpoint({"global_step": 3}, step_path(folder, 3))
    point_last_at(step_path(folder, 3))
    assert (folder / "last.ckpt").is_symlink()
    assert load_checkpoint_file(folder / "last.ckpt")["global_step"] == 3


def test_retention_keeps_the_newest_k_and_never_the_newest(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    for step in (2, 4, 6, 8):
        io.save_checkpoint({"global_step": step}, step_path(tmp_path, step))
    sharded = _sharded(tmp_path / "step-00000010.ckpt", 10)
    removed = remove_old(tmp_path, keep_last=2, newest=sharded)
    assert sorted(p.name for p in removed) == [
        "step-00000002.ckpt",
        "step-00000004.ckpt",
        "step-00000006.ckpt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000008.ckpt", "step-00000010.ckpt"]
    # the one just published is kept even when a newer step exists (the older one is not its to remove either)
    assert remove_old(tmp_path, keep_last=1, newest=step_path(tmp_path, 8)) == []
    assert sharded.is_dir()


def test_an_asynchronous_write_holds_the_state_of_its_step(tmp_path: Path) -> None:
    """The weights change right after the save returns (the next optimizer step): the file must hold the values
    at the save. Lightning's AsyncCheckpointIO hands its thread the live tensors and would write the new ones."""
    weights = torch.zeros(1000)
    io = AtomicCheckpointIO(asynchronous=True)
    from normia.training.checkpoint_writer import WRITER

    io.save_checkpoint({"state_dict": {"w": weights}, "global_step": 1}, tmp_path / "a.ckpt")
    weights.add_(1.0)  # in place, as an optimizer step does
    WRITER.wait()
    assert torch.equal(load_checkpoint_file(tmp_path / "a.ckpt")["state_dict"]["w"], torch.zeros(1000))


def test_stage_copies_tensors_and_keeps_the_structure() -> None:
    live = {"a": [torch.ones(2), (torch.zeros(1), 3)], "b": "text"}
    copy = stage(live, pin=False)
    live["a"][0].mul_(5)
    assert torch.equal(copy["a"][0], torch.ones(2)) and copy["a"][1][1] == 3 and copy["b"] == "text"


def test_a_failed_background_write_is_raised_by_the_next_wait() -> None:
    writer = CheckpointWriter()
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    writer.submit(lambda: None)
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.wait()  # raised once


def test_a_sharded_checkpoint_reads_as_the_one_file_format(tmp_path: Path) -> None:
    folder = _sharded(tmp_path / "step-00000005.ckpt", 5)
    assert is_sharded(folder)
    full = full_checkpoint(folder)
    assert full["global_step"] == 5 and torch.equal(full["state_dict"]["model.w"], torch.full((3, 2), 5.0))
    [optim] = full["optimizer_states"]
    assert optim["param_groups"][0]["params"] == [0] and set(optim["state"]) == {
        0
    }  # by position, as torch.optim


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_crafted_sharded_index_is_refused_before_anything_runs(tmp_path: Path, monkeypatch) -> None:
    """DCP unpickles `.metadata` with plain pickle: a checkpoint handed over by someone else could run code."""
    monkeypatch.chdir(tmp_path)
    folder = _sharded(tmp_path / "evil.ckpt", 1)
    (folder / DCP_INDEX).write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint_file(folder)
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize(
    "node,message",
    [
        ({"every_n_step": 5}, "did you mean 'every_n_steps'"),
        ({"every_n_steps": 0}, "1 or more"),
        ({"every_minutes": -1}, "positive number of minutes"),
        ({"keep_last": 0}, "1 or more"),
        ({"async": "yes"}, "true or false"),
    ],
)
def test_bad_checkpoint_settings_are_refused_with_the_key(node: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        checkpoint_settings(OmegaConf.create({"checkpoint": node, "trainer": {}}))


def test_the_earlier_key_still_sets_the_step_cadence() -> None:
    cfg = OmegaConf.create(
        {"checkpoint": {"every_n_steps": None}, "trainer": {"checkpoint_every_n_steps": 7}}
    )
    assert checkpoint_settings(cfg).every_n_steps == 7
