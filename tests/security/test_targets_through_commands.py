"""Issue 26 A and F through every reader of a run folder: `normia eval`, `normia predict ckpt=` and `run=` (a run
whose normia.output_dir tag points at someone else's folder, on a real mlflow server), `normia.load_run` and the
exported model's load_context. The planted config names `normia.training.checkpoint.torch.load` with
weights_only: false on an attacker's pickle, which creates the canary file when unpickled; the bomb is a config with
nested YAML aliases inside the checkpoint.
"""

from __future__ import annotations

import shutil
import signal
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from normia.cli import main
from normia.errors import UserError

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false", "logger=none"]
TORCH_LOAD = "normia.training.checkpoint.torch.load"


class _Plant:
    """Unpickled, it opens (creates) the canary file: what any attacker's code could do instead."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short quickstart run folder (config.yaml, checkpoints/last.ckpt), trained once for this module."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("NORMIA_OUTPUT_ROOT", raising=False)
        args = ["train", "experiment=quickstart", "trainer.max_steps=2", "trainer.max_epochs=1", *FAST]
        assert main(args) == 0
    return next(root.glob("outputs/quickstart/*/checkpoints/last.ckpt")).parent.parent


@pytest.fixture
def planted(trained: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a copy of the run folder whose config.yaml loads the attacker's pickle, the canary path)."""
    run = tmp_path / "shared" / "run"
    shutil.copytree(trained, run)
    canary = tmp_path / "canary"
    evil = tmp_path / "shared" / "evil.pt"
    torch.save(_Plant(str(canary)), evil)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["dropout"] = {"_target_": TORCH_LOAD, "f": str(evil), "weights_only": False}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    yield run, canary
    assert not canary.exists(), "the attacker's pickle was loaded"


def _one_error(capsys: pytest.CaptureFixture[str], fragment: str) -> None:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_eval_refuses_torch_load_reached_through_a_normia_module(planted, capsys) -> None:
    run, _ = planted
    capsys.readouterr()
    assert main(["eval", f"ckpt={run / 'checkpoints/last.ckpt'}"]) == 2
    _one_error(capsys, f"model.dropout._target_='{TORCH_LOAD}' is not one of normia's buildable classes")


def test_predict_ckpt_refuses_it_and_writes_nothing(planted, tmp_path: Path, capsys) -> None:
    run, _ = planted
    out = tmp_path / "preds.csv"
    capsys.readouterr()
    assert (
        main(["predict", f"ckpt={run / 'checkpoints/last.ckpt'}", "data.path=new.csv", f"output={out}"]) == 2
    )
    _one_error(capsys, f"model.dropout._target_='{TORCH_LOAD}'")
    assert not out.exists()


def test_load_run_and_the_exported_models_load_context_refuse_it(planted) -> None:
    import normia
    from normia.inference.pyfunc import ARTIFACT, NormiaPyfuncModel

    run, _ = planted
    with pytest.raises(UserError, match=TORCH_LOAD.replace(".", r"\.")):
        normia.load_run(run / "checkpoints/last.ckpt")
    exported = run.parent / "exported"  # the layout of the export's artifact folder
    (exported / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "config.yaml", exported / "config.yaml")
    shutil.copy(run / "checkpoints/last.ckpt", exported / "checkpoints/model.ckpt")
    with pytest.raises(UserError, match=TORCH_LOAD.replace(".", r"\.")):
        NormiaPyfuncModel().load_context(types.SimpleNamespace(artifacts={ARTIFACT: str(exported)}))


def test_predict_run_id_whose_folder_tag_points_at_a_planted_folder(
    planted, mlflow_server: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Anyone who can write to the store can point a run's normia.output_dir at a shared folder of theirs."""
    run, _ = planted
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = client.create_run(client.create_experiment("victim")).info.run_id
    client.set_tag(run_id, "normia.output_dir", str(run))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    capsys.readouterr()
    assert main(["predict", f"run={run_id}", "data.path=new.csv"]) == 2
    _one_error(capsys, f"model.dropout._target_='{TORCH_LOAD}'")
    assert len(client.search_runs([client.get_experiment_by_name("victim").experiment_id])) == 1


def _bomb(levels: int, width: int = 10) -> str:
    lines = ["l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_predict_refuses_a_checkpoint_whose_config_is_an_alias_bomb(
    trained: Path, tmp_path: Path, capsys
) -> None:
    """Issue 26 F: the config inside a checkpoint (no config.yaml beside it) with nested aliases: 10**9 values
    once expanded. Refused at once (the alarm fails the test if it is expanded instead)."""
    ckpt = tmp_path / "alone" / "last.ckpt"
    ckpt.parent.mkdir()
    content = torch.load(trained / "checkpoints/last.ckpt", weights_only=True)
    recorded = (trained / "config.yaml").read_text()
    content["normia"]["config"] = (
        recorded + "bomb:\n" + "".join(f"  {line}\n" for line in _bomb(9).splitlines())
    )
    torch.save(content, ckpt)

    def _too_slow(*_):
        raise TimeoutError("the aliases were expanded")

    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(20)
    try:
        capsys.readouterr()
        code = main(["predict", f"ckpt={ckpt}", "data.path=new.csv"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert code == 2
    _one_error(capsys, "uses YAML anchors or aliases")
