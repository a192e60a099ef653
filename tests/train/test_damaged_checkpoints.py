"""Damaged checkpoints (issue 25 A): a file cut short by a quota or a killed copy, an empty or overwritten one, a
sharded folder with a shard cut short, are refused in one line by resume, `normia eval` and the readers; a resume
starts from the newest checkpoint that reads and names the ones it skipped; a file of torch's older serialization
reads. The failure example: a truncated last.ckpt gave a zip-reader traceback at `resume=true` and `normia eval`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from normia.errors import UserError
from normia.training.checkpoint import load_checkpoint_file, readable_checkpoint
from normia.training.checkpoint_check import DamagedCheckpoint, checkpoint_damage
from tests.conftest import FAST, run_normia

CONTENT = {"state_dict": {"w": torch.arange(20000.0).reshape(200, 100)}, "global_step": 7, "normia": {}}


def _cut(path: Path, keep: float | int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])


@pytest.mark.parametrize(
    "damage",
    ["half", "last-bytes", "empty", "overwritten", "legacy-half"],
)
def test_a_damaged_file_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "step-00000007.ckpt"
    torch.save(CONTENT, path, _use_new_zipfile_serialization=damage != "legacy-half")
    if damage in ("half", "legacy-half"):
        _cut(path, 0.5)
    elif damage == "last-bytes":
        _cut(path, len(path.read_bytes()) - 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("this is not a checkpoint\n" * 50)
    assert checkpoint_damage(path) is not None
    with pytest.raises(DamagedCheckpoint) as caught:
        load_checkpoint_file(path)
    message = str(caught.value)
    assert "\n" not in message and "damaged" in message and str(path) in message and "copy" in message
    assert isinstance(caught.value, UserError)  # the CLI's exit 2, one line


def test_a_file_of_the_older_torch_serialization_reads(tmp_path: Path) -> None:
    """torch.save(_use_new_zipfile_serialization=False) (torch < 1.6, or that setting) has no mmap form."""
    path = tmp_path / "old.ckpt"
    torch.save(CONTENT, path, _use_new_zipfile_serialization=False)
    assert checkpoint_damage(path) is None
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], CONTENT["state_dict"]["w"])


def test_a_checkpoint_holding_code_is_still_refused_as_such_not_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "thing": Path("x")}, path)  # a class outside weights_only's allow-list
    assert checkpoint_damage(path) is None  # it reads; what it holds is refused where it is loaded
    with pytest.raises(UserError, match="arbitrary unpickling") as caught:
        load_checkpoint_file(path)
    assert not isinstance(caught.value, DamagedCheckpoint)


def _sharded(folder: Path) -> Path:
    """A real sharded checkpoint as FSDP writes it: DCP's index and shard file, and Lightning's meta.pt."""
    import torch.distributed.checkpoint as dcp

    folder.mkdir()
    dcp.save(
        {"state_dict": dict(CONTENT["state_dict"])}, storage_writer=dcp.FileSystemWriter(folder), no_dist=True
    )
    torch.save({"global_step": 7, "normia": {}}, folder / "meta.pt")
    return folder


def test_a_sharded_checkpoint_with_a_shard_cut_short_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = _sharded(tmp_path / "step-00000007.ckpt")
    assert checkpoint_damage(folder) is None
    assert torch.equal(load_checkpoint_file(folder)["state_dict"]["w"], CONTENT["state_dict"]["w"])
    [shard] = folder.glob("*.distcp")
    _cut(shard, 0.5)
    assert "cut short" in (checkpoint_damage(folder) or "")
    with pytest.raises(DamagedCheckpoint, match="cut short"):
        load_checkpoint_file(folder)
    shard.unlink()
    assert "missing" in (checkpoint_damage(folder) or "")
    with pytest.raises(DamagedCheckpoint, match="missing"):
        load_checkpoint_file(folder)


def test_resume_takes_the_newest_checkpoint_that_reads(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (10, 20, 30):
        torch.save({**CONTENT, "global_step": step}, folder / f"step-{step:08d}.ckpt")
    (folder / "last.ckpt").symlink_to("step-00000030.ckpt")
    assert readable_checkpoint(tmp_path) == (folder / "last.ckpt", [])
    _cut(folder / "step-00000030.ckpt", 0.5)
    (folder / "step-00000020.ckpt").write_bytes(b"")
    path, skipped = readable_checkpoint(tmp_path)
    assert path == folder / "step-00000010.ckpt"
    assert [p.name for p, _ in skipped] == [
        "last.ckpt",
        "step-00000020.ckpt",
    ]  # step-30 is last.ckpt: named once
    _cut(folder / "step-00000010.ckpt", 100)
    assert readable_checkpoint(tmp_path)[0] is None and len(readable_checkpoint(tmp_path)[1]) == 3


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real quickstart run with three periodic saves (steps 10, 20, 30), shared by the CLI tests below."""
    cwd = tmp_path_factory.mktemp("trained")
    out = cwd / "run"
    result = run_normia(
        "train", "experiment=quickstart", *FAST, "logger=none", "trainer.max_epochs=-1", "trainer.max_steps=30",
        "checkpoint.every_n_steps=10", "checkpoint.keep_last=3", f"paths.output_dir={out}", cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_resume_and_eval_of_a_truncated_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    """The failure example: last.ckpt cut short. `normia eval` of it: one line, exit 2. `resume=true`: skips it with
    its reason and resumes from the step before; with every checkpoint damaged: one line, exit 2, nothing written."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, symlinks=True)
    ckpts = run / "checkpoints"
    _cut(ckpts / "step-00000030.ckpt", 0.6)

    evaluated = run_normia("eval", f"ckpt={ckpts / 'last.ckpt'}", cwd=tmp_path)
    assert evaluated.returncode == 2, evaluated.stderr[-2000:]
    assert "is damaged" in evaluated.stderr and "Traceback" not in evaluated.stderr

    resumed = run_normia(
        "train", "experiment=quickstart", *FAST, "logger=none", "trainer.max_epochs=-1", "trainer.max_steps=40",
        "checkpoint.every_n_steps=10", "checkpoint.keep_last=3", f"paths.output_dir={run}", "resume=true", cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: skipping" in resumed.stdout and "last.ckpt" in resumed.stdout
    assert f"resuming from {ckpts / 'step-00000020.ckpt'}" in resumed.stdout
    assert load_checkpoint_file(ckpts / "last.ckpt")["global_step"] == 40

    for path in ckpts.glob("step-*.ckpt"):
        _cut(path, 0.5)
    before = sorted((p.name, p.stat().st_size) for p in run.rglob("*") if p.is_file())
    refused = run_normia(
        "train",
        "experiment=quickstart",
        *FAST,
        "logger=none",
        f"paths.output_dir={run}",
        "resume=true",
        cwd=tmp_path,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "no checkpoint of" in refused.stderr and "resume=false" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted((p.name, p.stat().st_size) for p in run.rglob("*") if p.is_file()) == before
