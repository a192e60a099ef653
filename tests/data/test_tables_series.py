"""CSV/Parquet tables and series: French open-data CSVs load as exported; every bad input is a one-line UserError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from normia.data.series import SeriesDataModule
from normia.data.table import TableDataModule
from normia.data.table_reader import read_table
from normia.errors import UserError


def french_csv(
    path: Path, rows: list[str], header: str = "Date;Température moyenne;Consommation (MWh)"
) -> Path:
    """As data.gouv.fr / Météo-France portals export: UTF-8 with BOM, `;` separator, decimal comma."""
    path.write_bytes(("\ufeff" + "\n".join([header, *rows]) + "\n").encode("utf-8"))
    return path


def daily_rows(n: int, start: str = "2023-01-01", skip: int | None = None) -> list[str]:
    days = pd.date_range(start, periods=n, freq="D")
    rng = np.random.default_rng(0)
    rows = []
    for i, day in enumerate(days):
        if i == skip:
            continue
        temp = 10 + 8 * np.sin(2 * np.pi * i / 7) + rng.normal()
        rows.append(f"{day:%d/%m/%Y};{temp:.2f}".replace(".", ",") + f";{1000 + 3 * i},5")
    return rows


def test_french_open_data_csv_loads_without_edits(tmp_path: Path) -> None:
    path = french_csv(tmp_path / "conso.csv", daily_rows(5))
    frame = read_table(path)
    assert list(frame.columns) == ["Date", "Température moyenne", "Consommation (MWh)"]  # BOM stripped
    assert frame["Consommation (MWh)"].tolist() == [1000.5, 1003.5, 1006.5, 1009.5, 1012.5]  # decimal comma
    dm = SeriesDataModule(
        path=str(path), columns=["Température moyenne"], date_column="Date", input_len=2, horizon=1
    )
    assert dm.dates[0] == pd.Timestamp("2023-01-01") and dm.dates[1] == pd.Timestamp(
        "2023-01-02"
    )  # dd/mm/yyyy
    assert dm.num_channels == 1


def test_parquet_and_multivariate_windows(tmp_path: Path) -> None:
    n = 120
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2020-01-01", periods=n, freq="D"),
            "a": np.arange(n, dtype=float),
            "b": np.ones(n),
        }
    )
    frame.to_parquet(tmp_path / "s.parquet")
    dm = SeriesDataModule(
        path=str(tmp_path / "s.parquet"), input_len=10, horizon=5, val_fraction=0.25, batch_size=4
    )
    x, y = dm.train_set[0]
    assert x.shape == (10, 2) and y.shape == (5, 2)
    # windows are consecutive steps of the standardised series, and the targets follow the inputs
    raw_x = dm.scaler.inverse(x.numpy())
    raw_y = dm.scaler.inverse(y.numpy())
    np.testing.assert_allclose(raw_x[:, 0], np.arange(10), atol=1e-4)
    np.testing.assert_allclose(raw_y[:, 0], np.arange(10, 15), atol=1e-4)
    # every validation target lies after the training period
    n_train = dm.n_train
    first_val_start = int(dm.val_set.starts[0])
    assert first_val_start + 10 == n_train
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape == (4, 10, 2)


def test_normalisation_uses_the_training_split_only(tmp_path: Path) -> None:
    n = 100
    frame = pd.DataFrame(
        {"date": pd.date_range("2020-01-01", periods=n, freq="D"), "v": np.arange(n, dtype=float)}
    )
    frame.to_csv(tmp_path / "trend.csv", index=False)
    dm = SeriesDataModule(path=str(tmp_path / "trend.csv"), input_len=5, horizon=2, val_fraction=0.2)
    assert dm.n_train == 80
    assert float(dm.scaler.mean.ravel()[0]) == pytest.approx(np.arange(80).mean())
    assert float(dm.scaler.std.ravel()[0]) == pytest.approx(np.arange(80).std(), rel=1e-5)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["Temperature moyenne"], "column 'Temperature moyenne' (data.columns) is not in"),
        (["Conso"], "columns present: Date, Température moyenne, Consommation (MWh)"),
    ],
)
def test_missing_or_misspelt_column_names_it_and_lists_present(
    tmp_path: Path, columns: list[str], expected: str
) -> None:
    path = french_csv(tmp_path / "c.csv", daily_rows(30))
    with pytest.raises(UserError) as err:
        SeriesDataModule(path=str(path), columns=columns, date_column="Date", input_len=3, horizon=1)
    assert expected in str(err.value)
    if columns == ["Temperature moyenne"]:
        assert "did you mean 'Température moyenne'" in str(err.value)


def test_non_numeric_value_names_column_row_and_value(tmp_path: Path) -> None:
    rows = daily_rows(30)
    rows[4] = rows[4].split(";")[0] + ";douze;1000,5"
    path = french_csv(tmp_path / "c.csv", rows)
    with pytest.raises(
        UserError, match=r"non-numeric value 'douze' in column 'Température moyenne' .* data row 5"
    ):
        SeriesDataModule(
            path=str(path), columns=["Température moyenne"], date_column="Date", input_len=3, horizon=1
        )


def test_gap_in_dates_is_named(tmp_path: Path) -> None:
    path = french_csv(tmp_path / "c.csv", daily_rows(30, skip=10))
    with pytest.raises(
        UserError, match=r"gaps in the dates of column 'Date'.*1 missing step.*first 2023-01-11"
    ):
        SeriesDataModule(path=str(path), date_column="Date", input_len=3, horizon=1)
    # the fix the message suggests works
    dm = SeriesDataModule(
        path=str(path), date_column="Date", input_len=3, horizon=1, resample="D", fill="interpolate"
    )
    assert len(dm.dates) == 30


def test_missing_values_are_refused_unless_filled(tmp_path: Path) -> None:
    rows = daily_rows(30)
    rows[3] = rows[3].split(";")[0] + ";;1000,5"
    path = french_csv(tmp_path / "c.csv", rows)
    with pytest.raises(UserError, match=r"1 missing value\(s\) in column 'Température moyenne'.*2023-01-04"):
        SeriesDataModule(path=str(path), date_column="Date", input_len=3, horizon=1)
    SeriesDataModule(path=str(path), date_column="Date", input_len=3, horizon=1, fill="ffill")


def test_series_shorter_than_one_window(tmp_path: Path) -> None:
    path = french_csv(tmp_path / "c.csv", daily_rows(10))
    with pytest.raises(
        UserError, match=r"has 10 steps, shorter than one window \(data.input_len \+ data.horizon = 19\)"
    ):
        SeriesDataModule(path=str(path), date_column="Date", input_len=12, horizon=7)
    with pytest.raises(UserError, match=r"training part .* needs >= 9 steps"):
        SeriesDataModule(path=str(path), date_column="Date", input_len=6, horizon=3, val_fraction=0.5)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"path": "/nonexistent/file.csv"}, "data file not found: /nonexistent/file.csv"),
        ({"dataset": "co3"}, "unknown data.dataset 'co3' (did you mean 'co2'?)"),
        ({"dataset": "co2", "fill": "linear"}, "unknown data.fill 'linear'"),
        ({"dataset": "co2", "val_fraction": 1.5}, "data.val_fraction=1.5 is outside (0, 1)"),
    ],
)
def test_bad_series_settings(kwargs: dict, expected: str) -> None:
    with pytest.raises(UserError) as err:
        SeriesDataModule(**kwargs)
    assert expected in str(err.value)


def test_non_utf8_csv_suggests_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("date;température\n01/01/2023;1,5\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"not utf-8-sig .*set data.encoding=latin-1"):
        read_table(path)
    assert list(read_table(path, encoding="latin-1").columns) == ["date", "température"]


def test_statsmodels_co2_is_regularised_by_config() -> None:
    with pytest.raises(UserError, match="missing value"):
        SeriesDataModule(dataset="co2", input_len=36, horizon=12)  # weekly with empty weeks
    dm = SeriesDataModule(dataset="co2", resample="MS", fill="interpolate", input_len=36, horizon=12)
    assert len(dm.dates) == 526 and dm.num_channels == 1


def test_table_rows_for_regression_and_classification(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 50
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["y"] = 2 * frame.x1 - frame.x2
    frame["label"] = np.where(frame.x1 > 0, "haut", "bas")
    frame.to_csv(tmp_path / "t.csv", sep=";", decimal=",", index=False)
    reg = TableDataModule(path=str(tmp_path / "t.csv"), target="y", features=["x1", "x2"], val_fraction=0.2)
    x, y = reg.train_set[:]
    assert x.shape == (40, 2) and y.shape == (40, 1)
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=1e-5)  # standardised with train statistics
    cls = TableDataModule(
        path=str(tmp_path / "t.csv"), target="label", features=["x1", "x2"], task="classification"
    )
    assert cls.classes == ["bas", "haut"] and cls.train_set[0][1].dtype == torch.int64
    with pytest.raises(UserError, match=r"column 'lable' \(data.target\) is not in .*did you mean 'label'"):
        TableDataModule(path=str(tmp_path / "t.csv"), target="lable")
    with pytest.raises(UserError, match=r"unknown data\.task 'regresion'"):
        TableDataModule(path=str(tmp_path / "t.csv"), target="y", task="regresion")
