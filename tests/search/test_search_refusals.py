"""Bad searches are refused before anything exists: exit 2, one line naming the problem and the fix, and no study
file, no MLflow store or run, no output folder. Run in this process (the refusals come before any worker)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

BASE = "trainer.max_epochs: 1\n"
SPACES = {
    "unknown_key": (
        "params:\n  optim.lrr: {type: log-float, low: 1.0e-4, high: 1.0e-2}\n",
        "unknown key 'optim.lrr': 'optim' has no 'lrr' (did you mean 'lr'?)",
    ),
    "unknown_group_key": (
        "params:\n  optimm.lr: {type: float, low: 0.1, high: 0.2}\n",
        "unknown key 'optimm.lr': the config has no 'optimm' (did you mean 'optim'?)",
    ),
    "low_high": (
        "params:\n  optim.lr: {type: float, low: 0.1, high: 0.01}\n",
        "optim.lr: low (0.1) must be below high (0.01)",
    ),
    "log_nonpositive": (
        "params:\n  optim.weight_decay: {type: log-float, low: 0.0, high: 0.1}\n",
        "optim.weight_decay: a log scale needs low > 0, got 0.0",
    ),
    "unknown_type": (
        "params:\n  optim.lr: {type: flaot, low: 0.1, high: 0.2}\n",
        "optim.lr: unknown type 'flaot' (did you mean 'float'?)",
    ),
    "empty_categorical": (
        "params:\n  data.batch_size: {type: categorical, choices: []}\n",
        "data.batch_size: categorical needs a non-empty list",
    ),
    "misspelt_entry": (
        "params:\n  optim.lr: {type: float, low: 0.1, hihg: 0.2}\n",
        "optim.lr: 'hihg' does not apply to type float (did you mean 'high'?)",
    ),
    "no_params": ("overrides: [trainer.max_epochs=1]\n", "'params:' must map at least one config key"),
}


@pytest.fixture
def spaces(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder outside the work folder with one bad space per case, layered over normia's."""
    folder = workdir.parent / f"{workdir.name}-configs"
    (folder / "search").mkdir(parents=True)
    for name, (text, _) in SPACES.items():
        (folder / "search" / f"{name}.yaml").write_text(text)
    (folder / "search" / "good.yaml").write_text(
        "params:\n  optim.lr: {type: log-float, low: 1.0e-4, high: 1.0e-2}\n"
    )
    monkeypatch.setenv("NORMIA_CONFIG_PATH", str(folder))
    return folder


def normia_search(*argv: str) -> tuple[int, str, str]:
    from normia.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["search", *argv])
    return code, out.getvalue(), err.getvalue()


def assert_refused(workdir: Path, code: int, err: str, expected: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert sorted(p.name for p in workdir.iterdir()) == [], "a refused search wrote something"


@pytest.mark.parametrize("case", sorted(SPACES))
def test_bad_space_is_refused_before_anything_is_written(workdir: Path, spaces: Path, case: str) -> None:
    code, _, err = normia_search("experiment=quickstart", f"search={case}", "n_trials=3", "workers=2")
    assert_refused(workdir, code, err, SPACES[case][1])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["search=quickstrt", "n_trials=3"], "unknown search 'quickstrt' (did you mean 'quickstart'?)"),
        (["search=good"], "normia search needs n_trials=N"),
        (["search=good", "n_trials=0"], "n_trials=0: give a whole number of 1 or more"),
        (
            ["search=good", "n_trials=2", "pruner=medain"],
            "pruner=medain is not known (did you mean 'median'?)",
        ),
        (["search=good", "n_trials=2", "sampler=tp"], "sampler=tp is not known"),
        (
            ["search=good", "n_trials=2", "optim.lr=0.1"],
            "optim.lr is searched and also set on the command line",
        ),
        (["search=good", "n_trials=2", "optim.lr=0.1,0.2"], "lists several values"),
        (["search=good", "n_trials=2", "trainer.max_stpes=3"], "(did you mean 'max_steps'?)"),
        (["search=good", "n_trials=2", "study_name=a/b"], "study_name='a/b' is not a safe name"),
        (["search=good", "n_trials=2", "storage=redis://x"], "unsupported scheme 'redis'"),
    ],
)
def test_bad_arguments_are_refused(workdir: Path, spaces: Path, argv: list[str], expected: str) -> None:
    code, _, err = normia_search("experiment=quickstart", *argv)
    assert_refused(workdir, code, err, expected)


def test_help_does_not_import_the_heavy_libraries() -> None:
    import subprocess
    import sys

    probe = (
        "import sys\nfrom normia.cli import main\ntry:\n    main(['search', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'optuna', 'lightning', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "search=SPACE n_trials=N" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_dry_run_shows_the_search_and_writes_nothing(workdir: Path, spaces: Path) -> None:
    code, out, err = normia_search(
        "--dry-run", "experiment=quickstart", "search=good", "n_trials=7", "workers=3", "trainer.max_epochs=2"
    )
    assert code == 0, err
    assert "would start study 'quickstart-good': 7 trials, 3 worker(s)" in out
    assert "search    optim.lr: log-float 0.0001..0.01" in out
    assert "each trial: experiment=quickstart trainer.max_epochs=2 + the sampled values" in out
    assert out.strip().endswith("dry run: nothing written, nothing run")
    assert sorted(p.name for p in workdir.iterdir()) == []
