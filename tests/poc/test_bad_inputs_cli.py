"""Bad data given to `normia train`: a one-line error naming the problem and the fix, exit code 2, nothing written.

Run in-process through normia.cli.main (the same code path as the console script; one import of torch/Lightning
for all cases instead of one per subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest

from normia.cli import main

SERIES = [
    "experiment=poc_co2_forecast",
    "data=series_csv",
    "data.date_column=date",
    "trainer.enable_progress_bar=false",
]
TEXT = ["experiment=poc_shakespeare_bytes", "data.corpus=null", "trainer.enable_progress_bar=false"]


def daily_csv(path: Path, rows: int = 80, skip: int | None = None, bad_cell: int | None = None) -> str:
    import pandas as pd

    days = [d for i, d in enumerate(pd.date_range("2021-03-01", periods=rows + 1, freq="D")) if i != skip][
        :rows
    ]
    lines = ["\ufeffdate;temperature;conso"]
    for i, day in enumerate(days):
        temp = "chaud" if i == bad_cell else f"{10 + i % 7},5"
        lines.append(f"{day:%d/%m/%Y};{temp};{100 + i},25")
    path.write_bytes("\n".join(lines).encode("utf-8"))
    return str(path)


def write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def empty_dir(path: Path) -> str:
    path.mkdir()
    return str(path)


def run(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    code = main(["train", *args])
    return code, capsys.readouterr().err.strip()


def assert_no_mlflow_run(workdir: Path) -> None:
    db = workdir / "mlflow.db"
    if db.exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        experiments = client.search_experiments()
        assert not client.search_runs([e.experiment_id for e in experiments])


CASES = {
    "misspelt column": (
        lambda d: [*SERIES, f"data.path={daily_csv(d / 'a.csv')}", "data.columns=[temprature]"],
        "column 'temprature' (data.columns) is not in",
        "columns present: date, temperature, conso",
    ),
    "missing column": (
        lambda d: [*SERIES, f"data.path={daily_csv(d / 'a.csv')}", "data.columns=[rain]"],
        "column 'rain' (data.columns) is not in",
        "columns present: date, temperature, conso",
    ),
    "non-numeric value": (
        lambda d: [*SERIES, f"data.path={daily_csv(d / 'a.csv', bad_cell=7)}", "data.columns=[temperature]"],
        "non-numeric value 'chaud' in column 'temperature'",
        "at data row 8",
    ),
    "gap in dates": (
        lambda d: [*SERIES, f"data.path={daily_csv(d / 'a.csv', skip=20)}", "data.columns=[temperature]"],
        "gaps in the dates of column 'date'",
        "first 2021-03-21",
    ),
    "series shorter than one window": (
        lambda d: [*SERIES, f"data.path={daily_csv(d / 'a.csv', rows=30)}", "data.columns=[temperature]"],
        "has 30 steps, shorter than one window",
        "data.input_len + data.horizon = 48",
    ),
    "empty text file": (
        lambda d: [*TEXT, f"data.path={write(d / 'e.txt', b'')}"],
        "is empty",
        "e.txt",
    ),
    "non-UTF-8 text file": (
        lambda d: [*TEXT, f"data.path={write(d / 'l.txt', 'é'.encode('latin-1') * 900)}"],
        "is not UTF-8 (invalid byte 0xe9 at offset 0)",
        "iconv",
    ),
    "image folder with no classes": (
        lambda d: ["experiment=poc_digits_resnet", "data=image_folder", f"data.root={empty_dir(d / 'imgs')}"],
        "has no class sub-folders",
        "<class name>",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_one_line_error_with_exit_code_2(case: str, workdir: Path, capsys) -> None:
    make_args, problem, detail = CASES[case]
    code, err = run(capsys, make_args(workdir))
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    assert problem in err and detail in err, err
    assert "Traceback" not in err
    assert_no_mlflow_run(workdir)
    assert not (workdir / "outputs").exists(), "a refused job writes nothing"
