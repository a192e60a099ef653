"""A project's configs layered over normia's (issue 10): found from the current folder, --config-dir or
NORMIA_CONFIG_PATH; project options added and winning name clashes; normia's options still usable; every mistake
in a project's configs or code is one line, exit 2, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

LEFT_BEHIND = ("outputs", "mlruns", "mlflow.db")


def assert_refused(proc, *needles: str, folder: Path) -> None:
    """Exit 2, one line on stderr naming each needle, and no output folder or MLflow store created."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    for name in LEFT_BEHIND:
        assert not (folder / name).exists(), f"{name} was written"


def test_project_options_join_normias_from_the_project_folder(tiny_project: Path, normia_cli) -> None:
    proc = normia_cli(
        "train", "experiment=my_study", "trainer=ddp", "launcher=austral", "--cfg", cwd=tiny_project
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "_target_: my_study.models.MyNet" in out  # the project's model
    assert "my-study 0.3.0" in out  # the project is named
    assert f"# experiment=my_study: project {tiny_project / 'configs'}" in out
    assert "# launcher=austral: normia " in out and "# trainer=ddp: normia " in out  # normia's still usable


def test_project_found_from_a_subfolder_and_by_config_dir_and_env(
    tiny_project: Path, tmp_path: Path, normia_cli
) -> None:
    sub = tiny_project / "notes" / "deep"
    sub.mkdir(parents=True)
    assert normia_cli("train", "experiment=my_study", "--dry-run", cwd=sub).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    configs = str(tiny_project / "configs")
    by_flag = normia_cli("train", "experiment=my_study", "--config-dir", configs, "--dry-run", cwd=elsewhere)
    assert by_flag.returncode == 0, by_flag.stderr
    by_env = normia_cli(
        "train", "experiment=my_study", "--dry-run", cwd=elsewhere, env={"NORMIA_CONFIG_PATH": configs}
    )
    assert by_env.returncode == 0, by_env.stderr
    # outside any project only normia's options exist
    assert_refused(
        normia_cli("train", "experiment=my_study", cwd=elsewhere), "unknown experiment", folder=elsewhere
    )


def test_a_project_option_wins_a_name_clash(tiny_project: Path, project_writer, normia_cli) -> None:
    project_writer(tiny_project, {"configs/optim/adamw.yaml": "name: adamw\nweight_decay: 0.0123\n"})
    proc = normia_cli("train", "experiment=quickstart", "--cfg", cwd=tiny_project)
    assert proc.returncode == 0, proc.stderr
    assert "weight_decay: 0.0123" in proc.stdout
    assert "# optim=adamw: project" in proc.stdout and "(shadows normia's)" in proc.stdout


def test_did_you_mean_and_ls_hint_cover_the_project(tiny_project: Path, normia_cli) -> None:
    proc = normia_cli("train", "model=my_nte", cwd=tiny_project)
    assert_refused(
        proc, "did you mean 'my_net'", str(tiny_project / "configs" / "model"), folder=tiny_project
    )
    proc = normia_cli("train", "experiment=my_study", "model.widht=8", cwd=tiny_project)
    assert_refused(proc, "model.widht", "did you mean 'width'", folder=tiny_project)


def test_a_typo_in_a_project_config_is_refused(tiny_project: Path, project_writer, normia_cli) -> None:
    project_writer(
        tiny_project, {"configs/model/my_net.yaml": "_target_: my_study.models.MyNet\nin_featurs: 64\n"}
    )
    proc = normia_cli("train", "experiment=my_study", cwd=tiny_project)
    assert_refused(
        proc, "MyNet has no argument 'in_featurs'", "did you mean 'in_features'", folder=tiny_project
    )


def test_a_target_to_a_missing_module_is_refused(tiny_project: Path, project_writer, normia_cli) -> None:
    project_writer(tiny_project, {"configs/model/my_net.yaml": "_target_: my_study.modles.MyNet\n"})
    proc = normia_cli("train", "experiment=my_study", cwd=tiny_project)
    assert_refused(proc, "no module named 'my_study.modles'", "my_study", folder=tiny_project)


def test_a_project_module_that_fails_to_import_names_its_file_and_line(
    tiny_project: Path, project_writer, normia_cli
) -> None:
    models = tiny_project / "src/my_study/models.py"
    text = models.read_text()
    project_writer(
        tiny_project, {"src/my_study/models.py": "import torch\nimport not_a_package_here\n" + text}
    )
    proc = normia_cli("train", "experiment=my_study", cwd=tiny_project)
    assert_refused(proc, f"{models}:2", "No module named 'not_a_package_here'", folder=tiny_project)
    project_writer(tiny_project, {"src/my_study/models.py": text + "\nraise RuntimeError('half-edited')\n"})
    proc = normia_cli("train", "experiment=my_study", cwd=tiny_project)
    assert_refused(proc, str(models), "RuntimeError: half-edited", folder=tiny_project)


def test_a_project_option_shadowing_normias_with_another_schema_is_refused_naming_its_file(
    tiny_project: Path, project_writer, normia_cli
) -> None:
    # Lightning 1.x's `gpus` in a project's trainer/cpu.yaml, which shadows normia's trainer=cpu
    project_writer(tiny_project, {"configs/trainer/cpu.yaml": "accelerator: cpu\ngpus: 1\nmax_epochs: 1\n"})
    proc = normia_cli("train", "experiment=my_study", cwd=tiny_project)
    shadow = str(tiny_project / "configs" / "trainer" / "cpu.yaml")
    assert_refused(proc, "trainer.gpus", shadow, "shadows normia's trainer=cpu", folder=tiny_project)


def test_a_config_dir_that_does_not_exist_is_refused(tmp_path: Path, normia_cli) -> None:
    proc = normia_cli("train", "experiment=quickstart", "--config-dir", "no/such/dir", cwd=tmp_path)
    assert_refused(proc, "config folder 'no/such/dir' does not exist", folder=tmp_path)
    proc = normia_cli("train", "experiment=quickstart", cwd=tmp_path, env={"NORMIA_CONFIG_PATH": "/no/such"})
    assert_refused(proc, "NORMIA_CONFIG_PATH", "'/no/such' does not exist", folder=tmp_path)


def test_a_folder_that_is_not_a_normia_project_changes_nothing(tmp_path: Path, normia_cli) -> None:
    """A Hydra app of one's own (configs/ beside a pyproject that does not name normia) is left alone."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other-app"\ndependencies = ["hydra-core"]\n')
    (tmp_path / "configs" / "model").mkdir(parents=True)
    (tmp_path / "configs" / "model" / "mlp.yaml").write_text("_target_: other_app.Net\n")
    proc = normia_cli("train", "experiment=quickstart", "--cfg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "normia.models.mlp.MLPClassifier" in proc.stdout and "# project" not in proc.stdout


def test_tool_normia_config_dir_points_elsewhere(tmp_path: Path, project_writer, normia_cli) -> None:
    root = project_writer(tmp_path / "study")
    (root / "configs").rename(root / "hydra_conf")
    text = (root / "pyproject.toml").read_text().replace('dependencies = ["normia>=0.1"]\n', "")
    (root / "pyproject.toml").write_text(text + '\n[tool.normia]\nconfig_dir = "hydra_conf"\n')
    proc = normia_cli("train", "experiment=my_study", "--dry-run", cwd=root)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_ddp_ranks_import_the_projects_code_without_installing_it(
    tiny_project: Path, normia_cli, fast_overrides: list[str]
) -> None:
    """Local ranks are new processes: they find the project's src/ through the PYTHONPATH normia exports."""
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = normia_cli(
        "train", "experiment=my_study", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.max_epochs=1", "logger=none", *fast_overrides, cwd=tiny_project, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world size 2" in proc.stdout
    assert (tiny_project / "outputs" / "my_study").is_dir()
