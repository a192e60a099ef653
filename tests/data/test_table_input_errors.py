"""Issue 25 B: a file in another encoding than the run's, and dates pandas cannot read, are one-line UserErrors
naming the problem and a fix that works; French month names are read."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from normia.data.series import SeriesDataModule
from normia.data.table_reader import parse_dates, read_table, require_columns
from normia.errors import UserError
from normia.inference.loading import LoadedRun
from normia.inference.predictors import read_input


def csv(path: Path, lines: list[str], encoding: str = "utf-8", bom: bool = False) -> Path:
    path.write_bytes((("\ufeff" if bom else "") + "\n".join(lines) + "\n").encode(encoding))
    return path


def one_line(err: pytest.ExceptionInfo[UserError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def missing(path: Path, encoding: str, names: list[str]) -> str:
    """The message require_columns gives for `names` in the file read with data.encoding=`encoding`."""
    frame = read_table(path, encoding=encoding)
    with pytest.raises(UserError) as err:
        require_columns(frame, names, path.name, "features")
    return one_line(err)


# --- B5: encodings ------------------------------------------------------------------------------------------------
def test_utf8_file_predicted_with_a_cp1252_run_names_both_encodings(tmp_path: Path) -> None:
    """Issue: "did you mean 'tempÃ©rature'?", no word about the encoding. Read through normia predict's own path."""
    path = csv(tmp_path / "new.csv", ["date;température;vent", "01/01/2023;1,5;3", "02/01/2023;2,5;4"])
    run = LoadedRun(
        model=None,  # type: ignore[arg-type]
        cfg=OmegaConf.create({"data": {"encoding": "cp1252"}}),
        state={"kind": "regress", "features": ["température", "vent"]},
        checkpoint=tmp_path / "last.ckpt",
        run_id=None,
        run_dir=tmp_path,
    )
    frame = read_input(run, path)
    with pytest.raises(UserError) as err:
        require_columns(frame, ["température", "vent"], str(path), "features")
    text = one_line(err)
    assert "the file is UTF-8 but data.encoding=cp1252 reads 'température' as 'tempÃ©rature'" in text
    assert "save it as cp1252" in text and "data.encoding=utf-8-sig" in text
    assert "did you mean" not in text


def test_cp1252_file_predicted_with_a_run_that_read_utf8_as_cp1252(tmp_path: Path) -> None:
    """The other direction: the run's own name is garbled (a UTF-8 training file read as cp1252) and the new file is
    a correct cp1252 one: saving it as UTF-8 makes it read as the run's did."""
    path = csv(tmp_path / "new.csv", ["date;température", "01/01/2023;1,5"], encoding="cp1252")
    text = missing(path, "cp1252", ["tempÃ©rature"])
    assert "that name is 'température' garbled (the run read a UTF-8 file as data.encoding=cp1252)" in text
    assert "this file is cp1252; save it as UTF-8" in text and "did you mean" not in text
    garbled = csv(tmp_path / "saved.csv", ["date;température", "01/01/2023;1,5"])  # the fix, applied
    require_columns(read_table(garbled, encoding="cp1252"), ["tempÃ©rature"], "saved.csv", "features")


@pytest.mark.parametrize("name", ["Température (°C)", "Précipitations", "Façade", "Rivière", "Vitesse (m/s)"])
def test_latin1_run_and_utf8_header_with_accents_and_degrees(tmp_path: Path, name: str) -> None:
    header = "Température (°C);Précipitations;Façade;Rivière;Vitesse (m/s);garbled"
    path = csv(tmp_path / "new.csv", [header, "1;2;3;4;5;6"])
    if name.isascii():  # a name the encoding does not change is found
        require_columns(read_table(path, encoding="latin-1"), [name], path.name, "features")
        return
    text = missing(path, "latin-1", [name])
    wrong = name.encode("utf-8").decode("latin-1")
    assert (
        f"the file is UTF-8 but data.encoding=latin-1 reads '{name}' as '{wrong}'; save it as latin-1" in text
    )
    reverse = csv(tmp_path / "l1.csv", [header, "1;2;3;4;5;6"], encoding="latin-1")
    assert f"that name is '{name}' garbled" in missing(reverse, "latin-1", [wrong])


def test_utf8_bom_read_as_cp1252_is_named_even_for_an_ascii_column(tmp_path: Path) -> None:
    """A French portal's UTF-8 file (with BOM) read as cp1252: the first column reads 'ï»¿date'."""
    path = csv(tmp_path / "new.csv", ["date;pm10", "01/01/2023;12"], bom=True)
    text = missing(path, "cp1252", ["date"])
    assert "the file is UTF-8 but data.encoding=cp1252 reads 'date' as 'ï»¿date'; save it as cp1252" in text


def test_utf8_file_cp1252_cannot_decode_says_it_is_utf8(tmp_path: Path) -> None:
    """'Ý' is C3 9D in UTF-8, and 9D has no cp1252 character: the old advice (re-encode to UTF-8) changed nothing."""
    path = csv(tmp_path / "new.csv", ["date;Ýonne", "01/01/2023;12"])
    with pytest.raises(UserError) as err:
        read_table(path, encoding="cp1252")
    assert "is UTF-8, not cp1252 (data.encoding): save it as cp1252" in one_line(err)


def test_garbled_names_in_a_frame_without_encoding(tmp_path: Path) -> None:
    frame = pd.DataFrame({"tempÃ©rature": [1.0]})
    with pytest.raises(UserError) as err:
        require_columns(frame, ["température"], "x.parquet", "columns")
    assert "'tempÃ©rature' is 'température' as UTF-8 text read as cp1252" in one_line(err)


def test_a_misspelt_name_still_gets_did_you_mean(tmp_path: Path) -> None:
    path = csv(tmp_path / "new.csv", ["date;Temperature", "01/01/2023;12"])
    text = missing(path, "cp1252", ["température"])
    assert "did you mean 'Temperature'" in text and "encoding" not in text


# --- B6: dates ----------------------------------------------------------------------------------------------------
def dates_error(values: list[str], date_format: str | None = None) -> str:
    with pytest.raises(UserError) as err:
        parse_dates(pd.DataFrame({"date": values}), "date", "f.csv", date_format)
    text = one_line(err)
    assert "You might want" not in text and "mixed" not in text and "ISO8601'" not in text, text
    return text


def suggested(text: str) -> str:
    found = re.search(r"set data\.date_format='([^']+)'", text)
    assert found, text
    return found.group(1)


@pytest.mark.parametrize("date_format", [None, "%d/%m/%Y"])
def test_us_date_suggests_month_first_not_the_format_that_failed(date_format: str | None) -> None:
    text = dates_error(["12/31/2022", "01/01/2023"], date_format)
    assert "column 'date' of f.csv: '12/31/2022' at data row 1 does not match" in text
    assert suggested(text) == "%m/%d/%Y" and "as 2022-12-31" in text


@pytest.mark.parametrize(
    ("values", "date_format"),
    [
        (["31.12.2022", "01.01.2023"], None),
        (["2022-12-31", "2023-01-01"], "%d/%m/%Y"),
        (["20221231", "20230101"], "%d/%m/%Y"),
        (["12/31/2022 10:30", "01/01/2023 11:00"], "%d/%m/%Y %H:%M"),
        (["31-12-2022", "01-01-2023"], "%Y-%m-%d"),
        (["01 janv. 2022", "02 févr. 2022"], "%d/%m/%Y"),
        (["Dec 31, 2022", "Jan 1, 2023"], "%d %b %Y"),
    ],
)
def test_the_suggested_format_reads_the_column(values: list[str], date_format: str | None) -> None:
    fix = suggested(dates_error(values, date_format))
    assert fix != date_format
    assert parse_dates(pd.DataFrame({"date": values}), "date", "f.csv", fix).notna().all()


def test_us_dates_with_times_are_not_read_month_first_silently() -> None:
    """With a time, the detection read cell by cell: '01/02/2022 10:30' as 1 February, '12/31/2022 10:30' as
    31 December in the same column."""
    text = dates_error(["01/02/2022 10:30", "12/31/2022 10:30"])
    assert "'12/31/2022 10:30' at data row 2 does not match dd/mm/yyyy hh:mm" in text
    assert suggested(text) == "%m/%d/%Y %H:%M"


def test_bad_cell_and_bad_format_are_one_line() -> None:
    assert "'oops' at data row 2 does not match yyyy-mm-dd" in dates_error(["2022-01-01", "oops"])
    assert "fix the cell" in dates_error(["2022-01-01", "oops"])
    assert "data.date_format='%Q' is not a date format" in dates_error(["2022-01-01"], "%Q")


FRENCH = {
    "01 janv. 2022": "2022-01-01",
    "15 févr. 2022": "2022-02-15",
    "3 MARS 2022": "2022-03-03",
    "4 avr 2022": "2022-04-04",
    "1er mai 2022": "2022-05-01",
    "6 juin 2022": "2022-06-06",
    "7 Juil. 2022": "2022-07-07",
    "15 août 2022": "2022-08-15",
    "16 aout 2022": "2022-08-16",
    "1 sept. 2022": "2022-09-01",
    "2 oct. 2022": "2022-10-02",
    "3 nov 2022": "2022-11-03",
    "24 déc. 2022": "2022-12-24",
    "25 DEC 2022": "2022-12-25",
}
FRENCH_FULL = {
    "1er janvier 2022": "2022-01-01",
    "2 Février 2022": "2022-02-02",
    "3 fevrier 2022": "2022-02-03",
    "4 avril 2022": "2022-04-04",
    "5 juillet 2022": "2022-07-05",
    "6 septembre 2022": "2022-09-06",
    "7 octobre 2022": "2022-10-07",
    "8 novembre 2022": "2022-11-08",
    "9 DÉCEMBRE 2022": "2022-12-09",
}


@pytest.mark.parametrize(
    ("cells", "date_format"),
    [
        (FRENCH, "%d %b %Y"),
        (FRENCH, "%d %b. %Y"),
        (FRENCH_FULL, "%d %B %Y"),
        (FRENCH, None),
        (FRENCH_FULL, None),
    ],
)
def test_french_month_names_are_read(cells: dict[str, str], date_format: str | None) -> None:
    dates = parse_dates(pd.DataFrame({"date": list(cells)}), "date", "f.csv", date_format)
    assert [d.strftime("%Y-%m-%d") for d in dates] == list(cells.values())


def test_french_monthly_dates_and_times_are_read_automatically() -> None:
    frame = pd.DataFrame(
        {"m": ["janv. 2022", "févr. 2022"], "t": ["01 janv. 2022 10:30", "02 févr. 2022 11:00"]}
    )
    assert parse_dates(frame, "m", "f.csv", None).tolist() == [
        pd.Timestamp("2022-01-01"),
        pd.Timestamp("2022-02-01"),
    ]
    assert parse_dates(frame, "t", "f.csv", None).iloc[1] == pd.Timestamp("2022-02-02 11:00")


def test_series_file_with_french_month_names(tmp_path: Path) -> None:
    days = pd.date_range("2022-01-20", periods=30, freq="D")
    months = [
        "janv.",
        "févr.",
        "mars",
        "avr.",
        "mai",
        "juin",
        "juil.",
        "août",
        "sept.",
        "oct.",
        "nov.",
        "déc.",
    ]
    rows = [f"{d.day} {months[d.month - 1]} {d.year};{i},5" for i, d in enumerate(days)]
    path = csv(tmp_path / "pm10.csv", ["date;pm10", *rows], bom=True)
    dm = SeriesDataModule(
        path=str(path), columns=["pm10"], date_column="date", date_format="%d %b %Y", input_len=3, horizon=1
    )
    assert dm.dates[0] == days[0] and dm.dates[-1] == days[-1]
    us = csv(tmp_path / "us.csv", ["date;pm10", *[f"{d:%m/%d/%Y};1" for d in days]])
    with pytest.raises(UserError, match=r"'01/20/2022' at data row 1 .*set data.date_format='%m/%d/%Y'"):
        SeriesDataModule(path=str(us), columns=["pm10"], date_column="date", input_len=3, horizon=1)
