"""French open-data CSVs (issue 9, section G): separator, decimal mark, thousands, long format.

Each fault is one kind; each kind has the issue's example and cases of our own. A bad input is one UserError naming the
file, the cell (data row, column) and the option; a good one reads right. A value is never rescaled or merged silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from normia.data.series import SeriesDataModule
from normia.data.table import TableDataModule
from normia.data.table_reader import numeric_columns, read_table
from normia.errors import UserError


def write(path: Path, lines: list[str], bom: bool = False) -> Path:
    path.write_bytes((("\ufeff" if bom else "") + "\n".join(lines) + "\n").encode("utf-8"))
    return path


def numbers(path: Path, column: str, **options: str) -> list[float]:
    """A column read as numbers, the way the data modules read it."""
    return numeric_columns(read_table(path, **options), [column], path)[column].tolist()


# --- separator: detected from the header AND the rows, refused when unclear -------------------------------------


def test_header_cell_with_a_comma_keeps_the_semicolon_separator(tmp_path: Path) -> None:
    """Issue: `date;Température (°C, moyenne)` was split on ',' into ['date;Température (°C', 'moyenne)']."""
    rows = [f"{day:02d}/01/2023;11,1" for day in range(1, 31)]
    path = write(tmp_path / "temp.csv", ["date;Température (°C, moyenne)", *rows])
    frame = read_table(path)
    assert list(frame.columns) == ["date", "Température (°C, moyenne)"]
    assert numbers(path, "Température (°C, moyenne)") == [11.1] * 30
    dm = SeriesDataModule(path=str(path), input_len=3, horizon=1)
    assert dm.column_names == ["Température (°C, moyenne)"] and len(dm.dates) == 30
    same = write(tmp_path / "same.csv", ["date;Température (°C, moyenne)", *["01/01/2023;11,1"] * 30])
    assert list(read_table(same).columns) == [
        "date",
        "Température (°C, moyenne)",
    ]  # the row exactly as quoted
    assert numbers(same, "Température (°C, moyenne)") == [11.1] * 30


def test_tab_file_with_a_comma_in_a_header_cell(tmp_path: Path) -> None:
    rows = [f"FR0{k}\t{k},5" for k in range(1, 11)]
    path = write(tmp_path / "pm10.tsv", ["station\tPM10 (µg/m³, moyenne journalière)", *rows])
    assert list(read_table(path).columns) == ["station", "PM10 (µg/m³, moyenne journalière)"]
    assert numbers(path, "PM10 (µg/m³, moyenne journalière)")[:2] == [1.5, 2.5]


def test_quoted_header_cell_with_a_comma_in_a_comma_file(tmp_path: Path) -> None:
    """Non-regression: quotes are respected, so a ',' file with a quoted comma still splits on ','."""
    rows = [f"2023-01-{day:02d},{day}.5" for day in range(1, 11)]
    path = write(tmp_path / "temp.csv", ['date,"Temp (°C, moy)"', *rows])
    assert list(read_table(path).columns) == ["date", "Temp (°C, moy)"]
    assert numbers(path, "Temp (°C, moy)")[:2] == [1.5, 2.5]


def test_two_separators_that_fit_equally_are_refused_with_the_option(tmp_path: Path) -> None:
    path = write(tmp_path / "codes.csv", ["nom,prenom;ville", "Dupont,Jean;Lyon", "Martin,Paul;Caen"])
    with pytest.raises(
        UserError, match=r"cannot tell the separator of .*codes.csv: ';' and ',' .*set data.sep"
    ):
        read_table(path)
    assert list(read_table(path, sep=";").columns) == ["nom,prenom", "ville"]


def test_a_given_separator_that_does_not_split_the_header_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", ["date,valeur", "2023-01-01,1.5"])
    with pytest.raises(
        UserError, match=r"data.sep=';' does not split the header of .*a.csv.*set data.sep=','"
    ):
        read_table(path, sep=";")


def test_trailing_separator_keeps_values_in_their_columns(tmp_path: Path) -> None:
    """Rows ending with ';' (header without) were shifted by pandas onto the row index: a silently wrong table."""
    path = write(tmp_path / "t.csv", ["date;pm10", "01/01/2023;12,5;", "02/01/2023;13,5;"])
    frame = read_table(path)
    assert list(frame.columns) == ["date", "pm10"] and frame["date"].tolist() == ["01/01/2023", "02/01/2023"]
    assert numbers(path, "pm10") == [12.5, 13.5]
    path = write(tmp_path / "h.csv", ["date;pm10;", "01/01/2023;12,5;", "02/01/2023;13,5;"])
    assert list(read_table(path).columns) == ["date", "pm10"]  # the unnamed empty column is dropped


def test_a_value_beyond_the_header_is_refused_naming_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ["date;pm10", "01/01/2023;12,5", "02/01/2023;13,5;99"])
    with pytest.raises(
        UserError, match=r"data row 2 of .*t.csv has 3 fields but the header has 2 \(value '99'"
    ):
        read_table(path)


# --- decimal mark: one convention per column, or refused naming the cell ------------------------------------------


def test_dot_decimal_column_in_a_semicolon_file_is_not_rescaled(tmp_path: Path) -> None:
    """Issue: in a ';' file every '.' was deleted, so the latitude 49.4400 became 494400.0."""
    path = write(tmp_path / "communes.csv", ["commune;lat", "c0;49.4400"])
    assert numbers(path, "lat") == [49.44]


def test_each_column_keeps_its_own_decimal_mark(tmp_path: Path) -> None:
    lines = ["commune;lat;pm10"] + [f"c{i};{45 + i / 10:.4f};{10 + i},{i}" for i in range(30)]
    path = write(tmp_path / "communes.csv", lines)
    assert numbers(path, "lat")[:2] == [45.0, 45.1]
    assert numbers(path, "pm10")[:2] == [10.0, 11.1]
    dm = TableDataModule(path=str(path), target="pm10", features=["lat"])
    assert dm.target_scaler is not None and len(dm.train_set) == 24


def test_a_column_mixing_decimal_marks_is_refused_naming_the_cell(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv", ["date;mesure", "01/01/2023;11,1", "02/01/2023;12,4", "03/01/2023;49.4400"]
    )
    with pytest.raises(
        UserError,
        match=r"value '49.4400' in column 'mesure' of .*m.csv at data row 3 uses '.' as decimal mark "
        r"but data row 1 \('11,1'\) uses ','",
    ):
        numbers(path, "mesure")


def test_a_cell_against_the_given_decimal_is_refused_naming_the_option(tmp_path: Path) -> None:
    path = write(tmp_path / "communes.csv", ["commune;lat", "c0;49.4400"])
    with pytest.raises(
        UserError,
        match=r"value '49.4400' in column 'lat' .* at data row 1 uses '.' as decimal mark but data.decimal=',': "
        r"set data.decimal=null",
    ):
        numbers(path, "lat", decimal=",")


def test_comma_grouped_number_in_a_comma_file_is_ambiguous_unless_decimal_is_set(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", ["id,montant", '1,"1,234"', '2,"5,600"'])
    with pytest.raises(
        UserError, match=r"value '1,234' .* may be 1.234 \(decimal comma\) or 1234 .*data.decimal=','"
    ):
        numbers(path, "montant")
    assert numbers(path, "montant", decimal=",") == [1.234, 5.6]
    # one cell that cannot be a thousands group settles it: the column uses a decimal comma
    path = write(tmp_path / "b.csv", ["id,montant", '1,"1,234"', '2,"5,6"'])
    assert numbers(path, "montant") == [1.234, 5.6]


def test_bad_decimal_option_is_refused() -> None:
    with pytest.raises(UserError, match=r"data.decimal=';' is not a decimal mark"):
        read_table("unused.csv", decimal=";")


# --- data.sep=';' alone: the decimal comma is still read ----------------------------------------------------------


def test_semicolon_given_alone_still_reads_the_decimal_comma(tmp_path: Path) -> None:
    """Issue: data.sep=';' alone left the decimal mark '.' (when detection had guessed another separator)."""
    rows = [f"{day:02d}/01/2023;11,{day % 10}" for day in range(1, 31)]
    path = write(tmp_path / "t.csv", ["date;Température (°C, moyenne)", *rows], bom=True)
    assert numbers(path, "Température (°C, moyenne)", sep=";")[:3] == [11.1, 11.2, 11.3]
    dm = SeriesDataModule(path=str(path), sep=";", input_len=3, horizon=1)
    np.testing.assert_allclose(dm.raw[:3, 0], [11.1, 11.2, 11.3])


def test_tab_given_alone_reads_dot_decimals(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", ["a\tb", "1.5\t2,5", "3.25\t4,75"])
    assert numbers(path, "a", sep="\t") == [1.5, 3.25]
    assert numbers(path, "b", sep="\t") == [2.5, 4.75]


# --- thousands separators: the spaces French exports use, anything else refused clearly ---------------------------


@pytest.mark.parametrize("space", [" ", "\u00a0", "\u202f"], ids=["space", "no-break", "narrow-no-break"])
def test_space_thousands_separators_are_read(tmp_path: Path, space: str) -> None:
    rows = [f"c{i};1{space}234{space}567,5;12{space}000" for i in range(3)]
    path = write(tmp_path / "conso.csv", ["commune;conso;habitants", *rows])
    assert numbers(path, "conso") == [1234567.5] * 3
    assert numbers(path, "habitants") == [12000.0] * 3


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1.234,5", r"value '1.234,5' in column 'conso' .* data row 2 has more than one '.' or ','"),
        ("1,234,567", r"value '1,234,567' .* only a space .* is read as a thousands separator"),
        ("12 34", r"value '12 34' .* data row 2 has a space that does not separate groups of three digits"),
    ],
)
def test_other_thousands_forms_are_refused_naming_the_cell(tmp_path: Path, cell: str, expected: str) -> None:
    path = write(tmp_path / "conso.csv", ["commune;conso", "c0;1 000,5", f"c1;{cell}"])
    with pytest.raises(UserError, match=expected):
        numbers(path, "conso")


# --- long format: one row per date and per station -----------------------------------------------------------------

STATIONS = ("FR04143", "FR04002", "FR04055")


def pm10_long(path: Path, days: int = 40, drop: tuple[int, str] | None = None, codes=STATIONS) -> Path:
    """Three PM10 stations, one row per day and station, as the air-quality open data export them."""
    lines = ["date;code_station;pm10"]
    for i, day in enumerate(pd.date_range("2023-01-01", periods=days, freq="D")):
        for k, code in enumerate(codes):
            if drop != (i, code):
                lines.append(f"{day:%d/%m/%Y};{code};{10 * (k + 1) + i % 5},5")
    return write(path, lines)


def test_long_format_is_refused_with_the_hint_and_never_averaged(tmp_path: Path) -> None:
    """Issue: refused as a duplicated date, and with data.resample=D the stations were averaged into one series."""
    path = pm10_long(tmp_path / "pm10.csv")
    hint = (
        r"date 2023-01-01 appears twice in column 'date' of .*pm10.csv .*set data.series_column=code_station"
    )
    with pytest.raises(UserError, match=hint):
        SeriesDataModule(path=str(path), input_len=3, horizon=1)
    with pytest.raises(UserError, match=hint):
        SeriesDataModule(path=str(path), columns=["pm10"], resample="D", input_len=3, horizon=1)


def test_long_format_all_series_as_channels(tmp_path: Path) -> None:
    path = pm10_long(tmp_path / "pm10.csv")
    dm = SeriesDataModule(path=str(path), series_column="code_station", input_len=3, horizon=1)
    assert dm.column_names == list(STATIONS) and dm.num_channels == 3
    assert len(dm.dates) == 40
    np.testing.assert_allclose(
        dm.raw[:2], [[10.5, 20.5, 30.5], [11.5, 21.5, 31.5]]
    )  # one station per channel
    weekly = SeriesDataModule(
        path=str(path), series_column="code_station", resample="W", input_len=2, horizon=1, val_fraction=0.2
    )
    np.testing.assert_allclose(
        weekly.raw[1], np.array([10.5, 20.5, 30.5]) + 13 / 7
    )  # mean per week and station


def test_long_format_selected_series(tmp_path: Path) -> None:
    path = pm10_long(tmp_path / "pm10.csv")
    one = SeriesDataModule(
        path=str(path), series_column="code_station", series="FR04002", input_len=3, horizon=1
    )
    assert one.column_names == ["FR04002"]
    np.testing.assert_allclose(one.raw[:5, 0], [20.5, 21.5, 22.5, 23.5, 24.5])
    two = SeriesDataModule(
        path=str(path), series_column="code_station", series=["FR04055", "FR04143"], input_len=3, horizon=1
    )
    assert two.column_names == ["FR04055", "FR04143"]
    np.testing.assert_allclose(two.raw[0], [30.5, 10.5])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"series_column": "code_station", "series": "FR04142"},
            r"series 'FR04142' \(data.series\) is not in column 'code_station' of .*pm10.csv .*did you mean "
            r"'FR04143'.*series present: FR04143, FR04002, FR04055",
        ),
        ({"series": "FR04143"}, r"data.series needs data.series_column"),
        ({"series_column": "station"}, r"column 'station' \(data.series_column\) is not in .*did you mean"),
    ],
)
def test_long_format_bad_settings(tmp_path: Path, kwargs: dict, expected: str) -> None:
    path = pm10_long(tmp_path / "pm10.csv")
    with pytest.raises(UserError, match=expected):
        SeriesDataModule(path=str(path), input_len=3, horizon=1, **kwargs)


def test_long_format_repeated_pair_and_missing_day_are_named(tmp_path: Path) -> None:
    path = pm10_long(tmp_path / "pm10.csv", drop=(5, "FR04002"))
    with pytest.raises(UserError, match=r"1 missing value\(s\) in series 'FR04002' .* first at 2023-01-06"):
        SeriesDataModule(path=str(path), series_column="code_station", input_len=3, horizon=1)
    dm = SeriesDataModule(
        path=str(path), series_column="code_station", fill="interpolate", input_len=3, horizon=1
    )
    assert dm.raw[5, 1] == pytest.approx(23.0)  # between 24.5 and 21.5 of FR04002 only
    lines = path.read_text().splitlines()
    write(path, [*lines, lines[4]])  # 02/01/2023 of FR04143 once more
    with pytest.raises(
        UserError,
        match=r"date 2023-01-02 appears twice for series 'FR04143' in column 'date' .* \(data row \d+\): remove",
    ):
        SeriesDataModule(path=str(path), series_column="code_station", input_len=3, horizon=1)


def test_long_format_row_without_a_series_name_is_refused(tmp_path: Path) -> None:
    path = pm10_long(tmp_path / "pm10.csv")
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace("FR04002", "")
    write(path, lines)
    with pytest.raises(
        UserError, match=r"empty cell in column 'code_station' \(data.series_column\) .* data row 5"
    ):
        SeriesDataModule(path=str(path), series_column="code_station", input_len=3, horizon=1)


def test_long_format_hint_names_a_numeric_station_code_column(tmp_path: Path) -> None:
    lines = ["date;pm10;station"] + [f"2023-01-{d:02d};{d + k};{k}" for d in range(1, 21) for k in (101, 102)]
    path = write(tmp_path / "codes.csv", lines)
    with pytest.raises(UserError, match=r"appears twice .* set data.series_column=station$"):
        SeriesDataModule(path=str(path), input_len=3, horizon=1)


def test_long_format_numeric_codes_and_several_value_columns(tmp_path: Path) -> None:
    lines = ["date;capteur;pm10;no2"]
    for i, day in enumerate(pd.date_range("2023-01-01", periods=30, freq="D")):
        for code in (7, 12):
            lines.append(f"{day:%Y-%m-%d};{code};{code + i},5;{i}")
    path = write(tmp_path / "capteurs.csv", lines)
    dm = SeriesDataModule(path=str(path), series_column="capteur", series=12, input_len=3, horizon=1)
    assert dm.column_names == ["12/pm10", "12/no2"]
    np.testing.assert_allclose(dm.raw[1], [13.5, 1.0])


# --- through `normia train`: exit code 2, one line, nothing written --------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "appears twice in column 'date' of"),  # long format without data.series_column
        (
            ["data.series_column=code_station", "data.series=FR9"],
            "series 'FR9' (data.series) is not in column",
        ),
    ],
)
def test_cli_refuses_long_format_problems_before_writing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    extra: list[str],
    expected: str,
) -> None:
    from normia.cli import main

    path = pm10_long(tmp_path / "pm10.csv")
    monkeypatch.chdir(tmp_path)
    args = [
        "experiment=poc_co2_forecast",
        "data=series_csv",
        f"data.path={path}",
        "data.columns=[pm10]",
        *extra,
    ]
    code = main(["train", *args, "trainer.enable_progress_bar=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlruns").exists()
