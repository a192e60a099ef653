"""Issue 9, A and B: unusual overrides and sweeps. A bad one gets exit code 2 and one line naming the key and the
fix, with nothing written; a valid one gives the right config; a sweep job's folder follows its own overrides.

In-process through normia.cli.main (the console script's code path); only the sweep test trains (a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from normia.cli import main
from normia.config.compose import compose_job
from normia.config.secrets import redact

QS = "experiment=quickstart"
FAST = [
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
]


def refused(capsys, workdir: Path, *args: str) -> str:
    """Run `normia train ...`; assert exit 2, one `error:` line, no traceback, nothing written; return the line."""
    code = main(["train", *args])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()
    return captured.err.strip()


def accepted(capsys, *args: str) -> str:
    code = main(["train", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


# --- A1: an interpolation that cannot resolve is named during validation (also under --dry-run and --cfg) -------


@pytest.mark.parametrize("flag", ["--dry-run", "--cfg"])
@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("optim.lr=${optim.base_lr}", ["optim.lr='${optim.base_lr}'", "no key 'optim.base_lr'"]),
        ("name=${oc.env:NORMIA_TEST_UNSET_VAR}", ["name=", "NORMIA_TEST_UNSET_VAR is not set", "oc.env:"]),
        ("name=${hydra:runtime.cwd}", ["name=", "${hydra:...} is not available"]),
        ("name=${nope:x}", ["name=", "no resolver named nope"]),
        ("optim.lr=${name}", ["optim.lr='${name}'", "wrong type"]),
    ],
)
def test_unresolvable_value_is_named(
    workdir: Path, capsys, flag: str, override: str, fragments: list[str]
) -> None:
    line = refused(capsys, workdir, QS, override, flag)
    for fragment in fragments:
        assert fragment in line, line


def test_unset_mandatory_value_is_named_before_running(workdir: Path, capsys) -> None:
    line = refused(capsys, workdir, "experiment=poc_co2_forecast", "data=series_csv", "--dry-run")
    assert "data.path has no value" in line and "data.path=" in line


def test_valid_interpolation_resolves() -> None:
    cfg = compose_job([QS, "optim.lr=${optim.weight_decay}"])
    assert cfg.optim.lr == cfg.optim.weight_decay


# --- A2/A3: a key given twice, an empty sweep -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-m", QS, "optim.lr=1e-3,3e-3", "optim.lr=1e-2"],  # the issue's: 2 jobs, both at 0.01
        [QS, "seed=1", "seed=2"],  # a single run: Hydra would keep the last silently
        ["-m", QS, "optim.lr=1e-3,3e-3", "+optim.lr=1e-2"],
    ],
)
def test_key_given_twice_is_refused(workdir: Path, capsys, args: list[str]) -> None:
    line = refused(capsys, workdir, *args, "--dry-run")
    key = "optim.lr" if "optim.lr=1e-2" in " ".join(args) else "seed"
    assert f"{key} is given twice" in line, line


def test_key_twice_suggests_one_list(workdir: Path, capsys) -> None:
    line = refused(capsys, workdir, "-m", QS, "optim.lr=1e-3,3e-3", "optim.lr=1e-2", "--dry-run")
    assert "optim.lr=1e-3,3e-3,1e-2" in line


@pytest.mark.parametrize("sweep", ["seed=range(0)", "seed=range(5,1)"])
def test_empty_sweep_is_refused(workdir: Path, capsys, sweep: str) -> None:
    line = refused(capsys, workdir, "-m", QS, sweep, "--dry-run")
    assert sweep in line and "no value" in line


# --- A4: a value Hydra cannot read unquoted; eval and train read a path alike ---------------------------------


@pytest.mark.parametrize(
    ("override", "quoted"),
    [
        ("name=qualité_air", "'name=\"qualité_air\"'"),
        ("resume=a/epoch=0-step=22.ckpt", "'resume=\"a/epoch=0-step=22.ckpt\"'"),
        ("tags.lieu=Orléans", "'tags.lieu=\"Orléans\"'"),
    ],
)
def test_unquoted_value_says_how_to_quote(workdir: Path, capsys, override: str, quoted: str) -> None:
    line = refused(capsys, workdir, QS, override, "--dry-run")
    assert "quote the value" in line and quoted in line, line


def test_quoted_value_is_accepted() -> None:
    assert compose_job([QS, 'name="qualité_air"']).name == "qualité_air"


@pytest.mark.parametrize(
    "text", ["ckpt='a/epoch=0-step=22.ckpt'", 'ckpt="a/epoch=0-step=22.ckpt"', "ckpt=a/last.ckpt"]
)
def test_eval_reads_the_path_as_train_does(text: str) -> None:
    from normia.config.overrides import parse_override
    from normia.training.cli import _eval_args

    ckpt, rest = _eval_args([text, "data.batch_size=8"])
    assert ckpt == parse_override(text.replace("ckpt=", "resume=", 1)).value()
    assert "'" not in ckpt and '"' not in ckpt and rest == ["data.batch_size=8"]


@pytest.mark.parametrize(
    "path",
    ["outputs/quickstart/2026-11-30_16-55-48", "outputs/qualité_air/x", "a/epoch=0-step=22.ckpt", "/t/a b"],
)
def test_printed_resume_hint_reads_back_as_the_path(path: str) -> None:
    """The 'Resume with ... resume=<folder>' line must paste into a shell and give the folder back."""
    import shlex

    from normia.config.overrides import as_override, parse_override

    (arg,) = shlex.split(as_override("resume", path))
    assert parse_override(arg).value() == path


def test_eval_refuses_an_unquoted_equal_sign_like_train(workdir: Path, capsys) -> None:
    code = main(["eval", "ckpt=a/epoch=0-step=22.ckpt"])
    err = capsys.readouterr().err
    assert code == 2 and "quote the value" in err and "'ckpt=\"a/epoch=0-step=22.ckpt\"'" in err


# --- A5: flags anywhere ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [QS, "--dry-run", "trainer.max_steps=3"],
        ["--dry-run", QS, "-m", "seed=1,2"],
        [QS, "--cfg", "seed=3"],
    ],
)
def test_flags_may_stand_anywhere(workdir: Path, capsys, args: list[str]) -> None:
    out = accepted(capsys, *args)
    assert "trainer.max_steps=3" in out or "seed=2" in out or "seed: 3" in out
    assert not (workdir / "outputs").exists()


# --- A6: a dict-valued override of a free-form dict, a new key in one ------------------------------------------


def test_dict_valued_launcher_override_is_merged(workdir: Path, capsys) -> None:
    out = accepted(
        capsys,
        QS,
        "launcher=slurm",
        "launcher.query_cluster=false",
        "launcher.sbatch_args={hold: true}",
        "--dry-run",
    )
    assert "#SBATCH --hold" in out


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [("tags.team=climat", "tags.team", "climat"), ("tags={team: climat}", "tags.team", "climat")],
)
def test_new_key_in_a_free_form_dict(override: str, key: str, value: str) -> None:
    assert OmegaConf.select(compose_job([QS, override]), key) == value


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([QS, "launcher.env.X=1"], "'launcher' has no 'env'"),  # launcher=local has no env
        ([QS, "traner.x=1"], "the config has no 'traner' (did you mean 'trainer'?)"),
        ([QS, "=3"], "'=3' has no key"),
    ],
)
def test_key_under_a_missing_parent_names_the_missing_part(
    workdir: Path, capsys, args: list[str], fragment: str
) -> None:
    assert fragment in refused(capsys, workdir, *args, "--dry-run")


def test_typo_in_a_dict_valued_override_still_suggests(workdir: Path, capsys) -> None:
    line = refused(capsys, workdir, QS, "launcher=slurm", "launcher.sbach_args={hold: true}", "--dry-run")
    assert "did you mean 'sbatch_args'" in line


# --- A7: overrides recorded and shown as typed -----------------------------------------------------------------


def test_overrides_are_recorded_as_typed() -> None:
    from normia.config.compose import resolve_job

    typed = [
        QS,
        "optim.lr=${optim.weight_decay}",
        "name=${oc.env:NORMIA_TEST_UNSET_VAR,mine}",
        "optim.eps=1e-7",
    ]
    cfg = compose_job(typed)
    assert list(cfg.overrides) == typed
    assert redact(cfg).overrides == typed  # the config.yaml and MLflow view (resolved)
    resolve_job(cfg)  # what run_job does before training
    assert list(cfg.overrides) == typed and redact(cfg).overrides == typed
    assert cfg.name == "mine" and cfg.optim.lr == cfg.optim.weight_decay
    again = compose_job(typed)
    again.overrides = typed  # plain text, as `normia reproduce` assigns the recorded ones
    resolve_job(again)
    assert redact(again).overrides == typed


def test_sweep_jobs_show_values_as_typed(workdir: Path, capsys) -> None:
    out = accepted(
        capsys, "-m", QS, "optim.lr=1e-3,3e-3", "name=${oc.env:NORMIA_TEST_UNSET_VAR,x}", "--dry-run"
    )
    shown = [line.split(" -> ")[0] for line in out.splitlines() if line.startswith("job ")]
    assert "optim.lr=1e-3 " in shown[0] and "optim.lr=3e-3 " in shown[1] and "0.001" not in " ".join(shown)
    assert out.count("name=${oc.env:NORMIA_TEST_UNSET_VAR,x}") == 2


# --- A8: keys that must agree ------------------------------------------------------------------------------------


def test_model_window_follows_the_data() -> None:
    cfg = compose_job(["experiment=poc_co2_forecast", "data.input_len=24", "data.horizon=6"])
    assert (cfg.model.input_len, cfg.model.horizon) == (24, 6)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("model.input_len=24", "model.input_len=24 but data.input_len=36"),
        ("model.horizon=6", "data.horizon=12"),
    ],
)
def test_model_window_set_apart_is_refused(workdir: Path, capsys, override: str, fragment: str) -> None:
    line = refused(capsys, workdir, "experiment=poc_co2_forecast", override, "--dry-run")
    assert fragment in line


def test_class_count_comes_from_the_image_folder(workdir: Path, capsys, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (workdir / "imgs" / name).mkdir(parents=True)
    base = ["model=resnet_small", "data=image_folder", "data.root=imgs"]
    line = refused(capsys, workdir, *base, "model.in_channels=3", "--dry-run")
    assert "model.num_classes=10 does not match the data" in line and "3 classes (a, b, c)" in line
    line = refused(capsys, workdir, *base, "model.num_classes=3", "--dry-run")
    assert "model.in_channels=1" in line and "set model.in_channels=3" in line
    cfg = compose_job([*base, "model.num_classes=3", "model.in_channels=3"])
    assert cfg.model.num_classes == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["experiment=poc_shakespeare_bytes", "data.seq_len=128"],
            "model.max_seq_len=64 is less than data.seq_len",
        ),
        (["experiment=poc_shakespeare_bytes", "model.vocab_size=100"], "byte-level text has 256 token ids"),
        (["model=llama_tiny", "data=synthetic_lm", "data.vocab_size=1000"], "set model.vocab_size=1000"),
    ],
)
def test_language_model_context_and_vocabulary_checked(
    workdir: Path, capsys, args: list[str], fragment: str
) -> None:
    """A window longer than the model's context, or token ids past its vocabulary, would fail at the first step."""
    assert fragment in refused(capsys, workdir, *args, "--dry-run")
    assert compose_job(["experiment=poc_shakespeare_bytes", "model.vocab_size=300"]).model.vocab_size == 300


def test_digits_class_count_checked(workdir: Path, capsys) -> None:
    line = refused(capsys, workdir, QS, "model.num_classes=12", "--dry-run")
    assert "the digits have 10 classes" in line


# --- B: sweep identity -------------------------------------------------------------------------------------------


def _sweep_folders(capsys, *args: str) -> dict[str, str]:
    out = accepted(capsys, "-m", QS, *args, "--dry-run")
    lines = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("job ")]
    return {" ".join(sorted(line.split(" -> ")[0].split())): line.split(" -> ")[1] for line in lines}


def test_job_folder_follows_its_overrides_not_its_place(workdir: Path, capsys) -> None:
    first = _sweep_folders(capsys, "optim.lr=1e-3,3e-3", "seed=1,2")
    again = _sweep_folders(capsys, "seed=2,1", "optim.lr=0.003,0.001")
    assert len(set(first.values())) == 4
    spelled = {"optim.lr=1e-3": "optim.lr=0.001", "optim.lr=3e-3": "optim.lr=0.003"}
    canon = {" ".join(sorted(spelled.get(w, w) for w in k.split())): v for k, v in first.items()}
    assert canon == again


def test_a_swept_secret_never_names_a_folder(workdir: Path, capsys) -> None:
    out = accepted(capsys, "-m", QS, "tags.api_token=s3cr3t-a,s3cr3t-b", "seed=1", "--dry-run")
    folders = [line.split(" -> ")[1] for line in out.splitlines() if line.startswith("job ")]
    assert len(set(folders)) == 2 and "s3cr3t" not in out


def test_two_sweep_jobs_in_one_folder_are_refused(workdir: Path, capsys) -> None:
    line = refused(capsys, workdir, "-m", QS, "paths.output_dir=outputs/fixed", "seed=1,2", "--dry-run")
    assert "two jobs of the sweep would write to outputs/fixed" in line


def test_folder_of_another_job_is_not_resumed(workdir: Path, capsys) -> None:
    folders = _sweep_folders(capsys, "seed=1,2")
    folder = workdir / next(iter(folders.values()))
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml({"overrides": [QS, "seed=7", "optim.lr=9"]}))
    (folder / "done.json").write_text(json.dumps({"result": 0.5}))
    code = main(["train", "-m", QS, "seed=1,2", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "holds a job with other settings" in err and "seed=7" in err


def test_reordered_sweep_reports_each_job_its_own_result(workdir: Path, capsys) -> None:
    """The issue's example: the same sweep with its arguments in another order says 'already done' for the same
    configurations, each with its own result. An interpolated override is recorded, and recognised, as typed."""
    assert main(["train", "-m", QS, *FAST, "tags.who=${name}", "optim.lr=1e-3,3e-2", "seed=1,2"]) == 0
    first = capsys.readouterr().out
    done = {}  # the job's overrides (sorted) -> its result, read from its own folder
    for saved in (workdir / "outputs" / "quickstart" / "multirun").glob("*/*/config.yaml"):
        result = json.loads((saved.parent / "done.json").read_text())["result"]
        done[tuple(sorted(yaml.safe_load(saved.read_text())["overrides"]))] = result
    assert len(done) == 4 and "== job 4/4" in first
    assert all("tags.who=${name}" in overrides for overrides in done)
    assert main(["train", "-m", QS, *FAST, "seed=1,2", "optim.lr=1e-3,3e-2", "tags.who=${name}"]) == 0
    again = capsys.readouterr().out
    assert again.count("already done") == 4 and "== job" not in again.split("== sweep")[0]
    for line in (line for line in again.splitlines() if line.startswith("  ") and "seed=" in line):
        result, *overrides = line.split()
        assert result == f"{done[tuple(sorted(overrides))]:.4f}", (line, done)
