"""Sharded (FSDP2) checkpoints on CPU ranks (gloo): each rank writes its own shards, asynchronously by default; a run
stopped at step k on 2 ranks resumes on 3 ranks and on 1 process with the same weights, optimizer and data order as
an uninterrupted run; eval, predict and consolidate read a sharded checkpoint as they read a one-file one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from normia.training.checkpoint import load_checkpoint_file
from normia.training.sharded_read import is_sharded
from tests.conftest import run_normia
from tests.train.probes import samples_by_step

HERE = Path(__file__).resolve().parent
STEPS = 16
STOP_AT = 6
BASE = [
    "experiment=quickstart",
    "model.dropout=0.0",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=-1",
    f"trainer.max_steps={STEPS}",
    "trainer.limit_val_batches=2",
    "logger.system_metrics=false",
    "energy=off",
]
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
# eval/predict check the run's recorded config, which names the test probes
TRUSTING = {**ENV, "NORMIA_TRUSTED_TARGETS": "probes.,stop_at_step."}


def _ranks(devices: int, per_device_batch: int) -> list[str]:
    """The same global batch of 12 on any number of ranks."""
    if devices == 1:
        return ["trainer=cpu", f"data.batch_size={per_device_batch}"]
    return [
        "trainer=fsdp",
        "trainer.accelerator=cpu",
        f"trainer.devices={devices}",
        f"data.batch_size={per_device_batch}",
    ]


def _probe(folder: Path) -> list[str]:
    return ["+callbacks.ids._target_=probes.SampleIds", f"+callbacks.ids.out_dir={folder}"]


def _train(cwd: Path, *overrides: str) -> tuple[int, str]:
    result = run_normia("train", *BASE, *overrides, cwd=cwd, timeout=600, env=ENV)
    return result.returncode, result.stdout + result.stderr


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def _assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key in want:  # fp32, only the reduction order differs
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An uninterrupted 2-rank FSDP run, and the same run stopped by Ctrl-C at step STOP_AT (its folder)."""
    root = tmp_path_factory.mktemp("sharded")
    whole = root / "whole"
    whole.mkdir()
    code, out = _train(whole, "name=whole", *_ranks(2, 6), *_probe(whole / "ids"))
    assert code == 0, out[-3000:]
    part = root / "part"
    part.mkdir()
    stop = ["+callbacks.stop._target_=stop_at_step.CtrlCAtStep", f"+callbacks.stop.step={STOP_AT}"]
    code, out = _train(
        part, "name=part", "checkpoint.every_n_steps=4", *_ranks(2, 6), *_probe(part / "ids"), *stop
    )
    assert code == 130, out[-3000:]
    [run_dir] = (part / "outputs" / "part").iterdir()
    return {"whole": next((whole / "outputs" / "whole").iterdir()), "part": run_dir, "root": root}


@pytest.mark.slow
def test_the_stopped_run_left_a_sharded_checkpoint_of_its_step(stopped: dict[str, Path]) -> None:
    """Each rank wrote its own shard files; last.ckpt points at the stop's step; no temporary folder is left."""
    folder = stopped["part"] / "checkpoints"
    last = folder / "last.ckpt"
    assert last.is_symlink() and is_sharded(last)
    assert os.readlink(last) == f"step-{STOP_AT:08d}.ckpt"
    shards = sorted(p.name for p in last.resolve().glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"], shards
    assert load_checkpoint_file(last)["global_step"] == STOP_AT
    assert is_sharded(folder / "step-00000004.ckpt")  # the periodic save before the stop
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("devices,batch", [(3, 4), (1, 12)], ids=["3-ranks", "1-process"])
def test_resume_on_another_world_size_continues_the_same_training(
    stopped: dict[str, Path], tmp_path: Path, devices: int, batch: int
) -> None:
    """Written by 2 ranks, resumed by 3 FSDP ranks or by one process (the sharded folder consolidated): the final
    weights equal the uninterrupted run's, every step took the same samples, and the MLflow run is the same."""
    work = tmp_path / "work"
    shutil.copytree(
        stopped["part"].parent.parent.parent, work
    )  # the stopped run's cwd: outputs/, mlflow.db, ids/
    run_dir = work / "outputs" / "part" / stopped["part"].name
    (work / "ids-resumed").mkdir()
    code, out = _train(
        work,
        "name=part",
        "checkpoint.every_n_steps=4",
        *_ranks(devices, batch),
        *_probe(work / "ids-resumed"),
        f"resume={run_dir}",
    )
    assert code == 0, out[-3000:]
    assert f"trainer.devices: 2 -> {devices}" in out or devices == 1
    _assert_same_weights(_weights(run_dir), _weights(stopped["whole"]))
    want = samples_by_step(stopped["whole"].parent.parent.parent / "ids")
    got = {**samples_by_step(work / "ids"), **samples_by_step(work / "ids-resumed")}
    assert sorted(got) == list(range(STEPS))
    for step in range(STEPS):
        assert got[step] == want[step], f"step {step} took other samples"
    summary = json.loads((run_dir / "done.json").read_text())
    stopped_state = load_checkpoint_file(stopped["part"] / "checkpoints" / "last.ckpt")
    assert summary["mlflow_run_id"] == stopped_state["normia"]["mlflow_run_id"]  # the same MLflow run
    assert not list((run_dir / "checkpoints").glob(".resume-*")), "the consolidated copy for the resume stays"


@pytest.mark.slow
def test_eval_predict_and_consolidate_read_a_sharded_checkpoint_as_one_file(
    stopped: dict[str, Path], tmp_path: Path
) -> None:
    import pandas as pd
    from sklearn.datasets import load_digits

    sharded = stopped["part"] / "checkpoints" / f"step-{STOP_AT:08d}.ckpt"
    one_file = tmp_path / "one.ckpt"
    result = run_normia("checkpoint", "consolidate", str(sharded), "--output", str(one_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    full, from_folder = torch.load(one_file, weights_only=True), load_checkpoint_file(sharded)
    assert full["global_step"] == from_folder["global_step"] == STOP_AT
    _assert_same_weights(full["state_dict"], from_folder["state_dict"])
    assert [len(s["state"]) for s in full["optimizer_states"]] == [len(full["state_dict"])]

    # eval: the same metrics from the folder and from the file (the file beside the run's config.yaml)
    beside = stopped["part"] / "checkpoints" / "consolidated-test.ckpt"
    shutil.copy(one_file, beside)
    try:
        evals = []
        for ckpt in (sharded, beside):
            result = run_normia(
                "eval", f"ckpt={ckpt}", "trainer.limit_val_batches=2", cwd=tmp_path, env=TRUSTING
            )
            assert result.returncode == 0, result.stderr[-2000:]
            evals.append(result.stdout)
        assert evals[0] == evals[1]
        digits = load_digits()
        table = pd.DataFrame(digits.data[:8], columns=[f"pixel_{i}" for i in range(64)])
        data = tmp_path / "digits.csv"
        table.to_csv(data, index=False)
        outputs = []
        for name, ckpt in (("sharded", sharded), ("file", beside)):
            out = tmp_path / f"preds-{name}.csv"
            result = run_normia(
                "predict", f"ckpt={ckpt}", f"data.path={data}", f"output={out}", cwd=tmp_path, env=TRUSTING
            )
            assert result.returncode == 0, result.stderr[-2000:]
            outputs.append(out.read_text())
        assert outputs[0] == outputs[1]
    finally:
        beside.unlink()
