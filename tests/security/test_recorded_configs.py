"""Issue 16 A/B through the CLI: a run folder or command line naming code outside the allowed targets runs nothing.

A canary file stands for "code ran": the planted target would create it on instantiation. `normia eval` reads the
config.yaml beside a checkpoint, which anyone who can write to a shared run folder controls.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from normia.cli import main

FAST = ["logger.system_metrics=false", "trainer.enable_progress_bar=false", "logger.name=none"]


def _plant(config: Path, canary: Path, key: str = "dropout") -> None:
    """Replace model.<key> with a target that creates the canary file when instantiated."""
    cfg = yaml.safe_load(config.read_text())
    cfg["model"][key] = {"_target_": "builtins.open", "file": str(canary), "mode": "w"}
    config.write_text(yaml.safe_dump(cfg))


def test_train_refuses_a_nested_target_outside_the_allowed_ones(workdir: Path, capsys) -> None:
    canary = workdir / "canary"
    code = main(["train", "experiment=quickstart", f"+model.extra={{_target_: builtins.open, file: {canary}, mode: w}}",
                 "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and not canary.exists() and not (workdir / "outputs").exists()
    assert "model.extra._target_='builtins.open' names code outside the allowed targets" in err
    assert len(err.strip().splitlines()) == 1


def test_eval_refuses_a_tampered_run_folder_and_trust_is_the_only_way_past(workdir: Path, capsys) -> None:
    assert main(["train", "experiment=quickstart", "trainer.max_steps=3", "trainer.max_epochs=1", *FAST]) == 0
    ckpt = next(workdir.glob("outputs/quickstart/*/checkpoints/last.ckpt"))
    config = ckpt.parent.parent / "config.yaml"
    canary = workdir / "canary"
    capsys.readouterr()
    _plant(config, canary)
    assert main(["eval", f"ckpt={ckpt}"]) == 2
    err = capsys.readouterr().err
    assert "model.dropout._target_='builtins.open' names code outside the allowed targets" in err
    assert "--trust" in err and not canary.exists()
    # the recorded config cannot vouch for itself
    cfg = yaml.safe_load(config.read_text())
    cfg["trusted_targets"] = ["builtins."]
    config.write_text(yaml.safe_dump(cfg))
    assert main(["eval", f"ckpt={ckpt}"]) == 2 and not canary.exists()
    # --trust runs it (the planted open() creates the canary; the model then refuses a file as its dropout)
    main(["eval", f"ckpt={ckpt}", "--trust"])
    assert canary.exists()
    assert "--trust" in capsys.readouterr().err


def test_eval_refuses_a_resolver_in_the_recorded_config(workdir: Path, capsys, monkeypatch) -> None:
    """${oc.env:...} in a recorded config would read the evaluating user's environment."""
    monkeypatch.setenv("NORMIA_CANARY_SECRET", "s3cr3t")
    assert main(["train", "experiment=quickstart", "trainer.max_steps=2", "trainer.max_epochs=1", *FAST]) == 0
    ckpt = next(workdir.glob("outputs/quickstart/*/checkpoints/last.ckpt"))
    config = ckpt.parent.parent / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["tags"] = {"note": "${oc.env:NORMIA_CANARY_SECRET,none}"}
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["eval", f"ckpt={ckpt}"]) == 2
    err = capsys.readouterr().err
    assert "tags.note calls the resolver '${oc.env:...}'" in err and "s3cr3t" not in err
