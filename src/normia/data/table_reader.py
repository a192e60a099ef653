"""Read a CSV or Parquet table as a checked pandas DataFrame, including CSVs as French open-data portals export them.

Those files use `;` between fields, a decimal comma, a UTF-8 byte-order mark, dd/mm/yyyy dates and spaces (plain,
no-break or narrow no-break) between thousands. The separator is detected from the structure of the header and body
(refused when two separators fit equally well); the decimal mark is detected per column, so a `;` file may hold both
`11,1` and a coordinate `49.4400`. A number is never rescaled: a column mixing both marks, or a cell whose reading is
ambiguous, is refused naming the file, the cell and the option. Every problem that would otherwise surface later as a
NaN or a cryptic pandas error is a UserError naming the file, the column and the fix.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from normia.errors import UserError, did_you_mean
from normia.text_limits import short_error, shown, shown_bare, shown_list

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
SEPARATORS = (";", ",", "\t", "|")
DECIMALS = (".", ",")
SNIFF_RECORDS = 200
SNIFF_BYTES = 65536
# Thousands separators read: plain, no-break and narrow no-break space (what French exports use); no '.' or ','.
THOUSANDS = " \u00a0\u202f"
NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")
GROUPED = re.compile(rf"[+-]?\d{{1,3}}(?:[{THOUSANDS}]\d{{3}})+(?:[.,]\d+)?")
COMMA_GROUPED = re.compile(r"[+-]?\d{1,3},\d{3}")  # 1,234: thousands in English exports, 1.234 in French ones
DATE = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


def _typed(cell: str) -> bool:
    """A cell that reads as a number or a date: what a correct split of a data row mostly produces."""
    cell = cell.strip()
    return bool(NUMBER.fullmatch(cell) or GROUPED.fullmatch(cell) or DATE.fullmatch(cell))


def _records(sample: str, sep: str, complete: bool) -> list[list[str]]:
    """The first records of the sample split with `sep` (quotes respected); a record cut by the sample is dropped."""
    try:
        rows = [r for r in csv.reader(io.StringIO(sample), delimiter=sep, skipinitialspace=True) if r]
    except csv.Error:  # e.g. a quote left open: this separator does not describe the file
        return []
    if not complete and len(rows) > 1:
        rows = rows[:-1]
    return rows[: SNIFF_RECORDS + 1]


def _fits(rows: list[list[str]]) -> bool:
    """Every row has the header's number (>= 2) of fields, or one more that is empty (a trailing separator)."""
    if not rows or len(rows[0]) < 2:
        return False
    width = len(rows[0])
    return all(len(r) == width or (len(r) == width + 1 and not r[-1].strip()) for r in rows[1:])


def _score(rows: list[list[str]], others: str) -> float:
    """How well a split reads: +1 per body cell that is a number or a date, -1 per cell still holding another
    candidate separator (`01/01/2023;11` when splitting on ','), per cell."""
    body = [cell for row in rows[1:] for cell in row]
    typed = sum(map(_typed, body))
    leftover = sum(1 for cell in body if not _typed(cell) and any(s in cell for s in others))
    return (typed - leftover) / max(len(body), 1)


def detect_separator(sample: str, source: str | Path, complete: bool = True) -> str:
    """The separator that splits the header and every row into the same number (>= 2) of fields.

    When several do (`date;Température (°C, moyenne)` splits in two on ',' as well as on ';'), the one whose body
    cells read as numbers and dates, and hold no other separator, wins; a tie is refused rather than guessed.
    """
    splits = {sep: _records(sample, sep, complete) for sep in SEPARATORS}
    fitting = {sep: rows for sep, rows in splits.items() if _fits(rows)}
    if not fitting:  # ragged rows (the reader then names the bad one) or a single column
        header = {sep: len(rows[0]) if rows else 0 for sep, rows in splits.items()}
        best = max(SEPARATORS, key=header.__getitem__)
        if header[best] >= 2:
            return best
        unused = [s for s in SEPARATORS if s not in sample]
        return unused[0] if unused else ","
    fits = {sep: _score(rows, "".join(s for s in fitting if s != sep)) for sep, rows in fitting.items()}
    ranked = sorted(fits.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < 1e-9:
        names = " and ".join(repr(s) for s, _ in ranked if ranked[0][1] - fits[s] < 1e-9)
        raise UserError(
            f"cannot tell the separator of {source}: {names} each split every line into the same number of "
            f"fields; set data.sep (e.g. data.sep={ranked[0][0]!r})"
        )
    return ranked[0][0]


def _check_options(sep: str | None, decimal: str | None) -> None:
    """data.decimal is '.' or ','; it cannot be the separator."""
    if decimal is not None and decimal not in DECIMALS:
        raise UserError(
            f"data.decimal='{decimal}' is not a decimal mark: use '.', ',' or null (detected per column)"
        )
    if sep is not None and decimal is not None and sep == decimal:
        raise UserError(f"data.sep and data.decimal are both '{sep}': set one of them to null (detected)")


def read_table(
    path: str | Path,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str = "utf-8-sig",
) -> pd.DataFrame:
    """Load a CSV (separator detected unless given, numbers read per column) or a Parquet file.

    A CSV column whose every cell is a number is returned as numbers; any other column stays text, and
    numeric_columns names its first bad cell if it is asked for as numbers.
    """
    import pandas as pd

    _check_options(sep, decimal)
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"data file not found: {p} (fix data.path)")
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(p)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise UserError(f"cannot read the Parquet file {p}: {err}") from None
        frame.attrs.update(decimal=decimal, sep=None, encoding=None)
        return frame
    raw = p.read_bytes()
    if not raw.strip():
        raise UserError(f"the data file {p} is empty")
    sample = _decode_head(raw, p, encoding)
    explicit_sep = sep is not None
    sep = sep or detect_separator(sample, p, complete=len(raw) <= SNIFF_BYTES)
    try:
        frame = _read_csv(p, sep, encoding)
    except UnicodeDecodeError:
        raise UserError(
            _utf8_read_as(raw, p, encoding)
            or f"the data file {p} is not {encoding}: set data.encoding=latin-1 or re-encode it"
        ) from None
    except pd.errors.ParserError as err:
        raise UserError(_parser_error_message(str(err), p, sep)) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if explicit_sep:
        _check_split(frame, sep, p)
    frame = _drop_trailing_empty_columns(frame)
    frame.attrs.update(decimal=decimal, sep=sep, encoding=encoding)  # require_columns names a wrong encoding
    for name in frame.columns:
        if _is_boolean(frame[name]):  # True/False, as pandas reads them
            frame[name] = frame[name].str.strip().str.lower().map({"true": True, "false": False})
            continue
        with contextlib.suppress(UserError):  # stays text: numeric_columns names the bad cell if it is used
            frame[name] = parse_numbers(frame[name], name, p, decimal, sep)
    return frame


def _drop_trailing_empty_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A separator at the end of the header adds a column with no name and no value: drop it."""
    while (
        len(frame.columns) > 1
        and str(frame.columns[-1]).startswith("Unnamed: ")
        and frame.iloc[:, -1].isna().all()
    ):
        frame = frame.iloc[:, :-1]
    return frame


def _is_boolean(cells: pd.Series) -> bool:
    """A column of True/False cells (any case), with no missing cell."""
    if not len(cells) or cells.isna().any() or str(cells.iloc[0]).strip().lower() not in ("true", "false"):
        return False
    return set(cells.str.strip().str.lower().unique()) <= {"true", "false"}


def _parser_error_message(error: str, path: Path, sep: str) -> str:
    """pandas' tokenizer error as one line naming the line, the field counts and the fix."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", error)
    if found:
        expected, line, seen = found.groups()
        return (
            f"line {line} of {path} has {seen} fields with separator {sep!r} but the lines before have {expected}: "
            "fix the row (quote a cell holding the separator), or set data.sep"
        )
    return f"cannot parse the CSV {path} with separator {sep!r}: {short_error(error)}; set data.sep"


def _read_csv(path: Path, sep: str, encoding: str) -> pd.DataFrame:
    """Every cell as text. A row longer than the header (a trailing separator) is not shifted onto the row index
    (pandas' default) and loses nothing: its extra fields must be empty."""
    import pandas as pd

    options = {"sep": sep, "encoding": encoding, "skipinitialspace": True, "dtype": str, "index_col": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(path, **options)
        except pd.errors.ParserError as err:  # a longer row after rows of the header's width
            width = len(pd.read_csv(path, nrows=0, **options).columns)
            if not re.search(rf"Expected {width} fields in line \d+, saw {width + 1}\b", str(err)):
                raise
            frame = pd.read_csv(path, usecols=range(width), **options)
            caught.append(warnings.WarningMessage("", pd.errors.ParserWarning, "", 0))
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        _check_extra_fields(path, sep, encoding, len(frame.columns))
    return frame


def _check_extra_fields(path: Path, sep: str, encoding: str, width: int) -> None:
    """Refuse the first row holding a value beyond the header's last column: it has no column to go to."""
    limit = csv.field_size_limit(
        2**31 - 1
    )  # pandas read the file, fields of any size: csv's 128 KiB limit raised
    with path.open(encoding=encoding, newline="") as handle, _restored_field_limit(limit):
        rows = (r for r in csv.reader(handle, delimiter=sep, skipinitialspace=True) if r)
        next(rows, None)
        for number, row in enumerate(rows, start=1):
            extra = [cell for cell in row[width:] if cell.strip()]
            if extra:
                raise UserError(
                    f"data row {number} of {path} has {len(row)} fields but the header has {width} (value "
                    f"{shown(extra[0])} has no column): fix the header or the row, or set data.sep if '{sep}' is wrong"
                )


@contextlib.contextmanager
def _restored_field_limit(limit: int) -> Iterator[None]:
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def _decode_head(raw: bytes, path: Path, encoding: str) -> str:
    """The first bytes as text (a character cut at the end is dropped), or the fix for a wrong encoding."""
    head = raw[:SNIFF_BYTES]
    try:
        return head.decode(encoding)
    except UnicodeDecodeError as err:
        if (
            len(raw) > SNIFF_BYTES and err.start >= len(head) - 4
        ):  # a character cut by the sample, not a bad byte
            return head[: err.start].decode(encoding, errors="replace")
        raise UserError(
            _utf8_read_as(raw, path, encoding)
            or f"the data file {path} is not {encoding} (invalid byte at offset {err.start}): "
            "set data.encoding=latin-1 (or cp1252) or re-encode the file to UTF-8"
        ) from None
    except LookupError:
        raise UserError(f"unknown data.encoding '{encoding}': use e.g. utf-8-sig, latin-1, cp1252") from None


def _utf8_read_as(raw: bytes, path: Path, encoding: str) -> str | None:
    """For a UTF-8 file that data.encoding (cp1252, ...) cannot read, the message naming both and the fix: re-encoding
    it to UTF-8, the usual advice, would change nothing."""
    with contextlib.suppress(LookupError):
        if _codec(encoding) == "utf-8":
            return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return (
        f"the data file {path} is UTF-8, not {encoding} (data.encoding): save it as {encoding} (normia predict "
        "reads new files as the run's data.encoding), or train with data.encoding=utf-8-sig on UTF-8 files"
    )


def _check_split(frame: pd.DataFrame, sep: str, path: Path) -> None:
    """A one-column result whose header holds another separator means data.sep does not match the file."""
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    other = [s for s in SEPARATORS if s != sep and s in header]
    if other:
        raise UserError(
            f"data.sep='{sep}' does not split the header of {path} ({shown(header)}); it seems to use '{other[0]}': "
            f"set data.sep='{other[0]}' or data.sep=null (detected)"
        )


def _cell(source: str | Path, name: str, row: int, value: str) -> str:
    """How a message names a cell: the value, its column and its data row (1-based, header excluded)."""
    return f"value {shown(value)} in column '{shown_bare(name)}' of {source} at data row {row + 1}"


def _bad_cell_message(source: str | Path, name: str, row: int, value: str) -> str:
    """Why a cell is not a number, with the fix; thousands separators other than spaces are named as such."""
    digits_and_marks = re.fullmatch(rf"[+-]?[\d.,{THOUSANDS}]*\d[\d.,{THOUSANDS}]*", value)
    if digits_and_marks and (value.count(".") + value.count(",") > 1):
        return (
            f"{_cell(source, name, row, value)} has more than one '.' or ',': only a space (plain, no-break or "
            "narrow no-break) is read as a thousands separator; remove the other marks from the column"
        )
    if digits_and_marks:
        return (
            f"{_cell(source, name, row, value)} has a space that does not separate groups of three digits: "
            "fix the cell"
        )
    return (
        f"non-numeric value {shown(value)} in column '{shown_bare(name)}' of {source} at data row {row + 1}: "
        "fix the cell, or set data.decimal/data.sep if the number format was misread"
    )


def parse_numbers(
    cells: pd.Series, name: str, source: str | Path, decimal: str | None = None, sep: str | None = None
) -> pd.Series:
    """A text column as numbers read with ONE decimal mark: data.decimal, or the mark its cells use.

    Empty cells stay missing. Spaces between groups of three digits are thousands separators. A column mixing '.'
    and ',' as decimal marks, a cell using the other mark than data.decimal, and (in a ',' separated file) a cell
    such as "1,234" that may be 1.234 or 1234 are refused, naming the cell: a value is never rescaled silently.
    """
    import pandas as pd

    text = cells.astype(
        "string[pyarrow]"
    ).str.strip()  # Arrow kernels: a million cells in well under a second
    present = _mask(text.notna() & (text != ""))
    grouped = _mask(text.str.fullmatch(GROUPED.pattern))
    clean = text.str.replace(f"[{THOUSANDS}]", "", regex=True).where(grouped, text) if grouped.any() else text
    bad = np.flatnonzero(present & ~_mask(clean.str.fullmatch(NUMBER.pattern)))
    if len(bad):
        raise UserError(_bad_cell_message(source, name, int(bad[0]), str(text.iloc[bad[0]])))
    dot = _mask(clean.str.contains(".", regex=False)) & present
    comma = _mask(clean.str.contains(",", regex=False)) & present
    _check_decimal_marks(text, dot, comma, name, source, decimal, sep)
    readable = clean[present].str.replace(",", ".", regex=False) if comma.any() else clean[present]
    numbers = pd.to_numeric(readable.astype(object)) if present.any() else pd.Series([], dtype="float64")
    if present.all():
        return pd.Series(numbers.to_numpy(), index=cells.index, name=cells.name)
    out = np.full(len(cells), np.nan)
    out[present] = numbers.to_numpy(dtype="float64")
    return pd.Series(out, index=cells.index, name=cells.name)


def _mask(flags: pd.Series) -> np.ndarray:
    """A pandas boolean result (missing counts as False) as a numpy mask."""
    return flags.to_numpy(dtype=bool, na_value=False)


def _check_decimal_marks(
    text: pd.Series,
    dot: np.ndarray,
    comma: np.ndarray,
    name: str,
    source: str | Path,
    decimal: str | None,
    sep: str | None,
) -> None:
    """One decimal mark per column, the one data.decimal names if set; an ambiguous '1,234' needs data.decimal."""
    first = {m: int(np.flatnonzero(v)[0]) for m, v in ((".", dot), (",", comma)) if v.any()}
    if decimal is not None:
        other = "," if decimal == "." else "."
        if other in first:
            row = first[other]
            raise UserError(
                f"{_cell(source, name, row, str(text.iloc[row]))} uses '{other}' as decimal mark but "
                f"data.decimal='{decimal}': set data.decimal=null (detected per column) or fix the cell"
            )
        return
    if len(first) == 2:
        (m1, r1), (m2, r2) = sorted(first.items(), key=lambda kv: kv[1])
        raise UserError(
            f"{_cell(source, name, r2, str(text.iloc[r2]))} uses '{m2}' as decimal mark but data row {r1 + 1} "
            f"({shown(text.iloc[r1])}) uses '{m1}': fix the cell so that the column uses one decimal mark "
            "(data.decimal sets one mark for every column)"
        )
    if sep == "," and "," in first:
        commas = [str(v) for v in text[comma]]
        if all(COMMA_GROUPED.fullmatch(v) for v in commas):
            row = first[","]
            raise UserError(
                f"{_cell(source, name, row, str(text.iloc[row]))} may be {shown_bare(commas[0].replace(',', '.'))} (decimal "
                f"comma) or {shown_bare(commas[0].replace(',', ''))} (thousands separator): set data.decimal=',' if ',' is "
                "the decimal mark, or remove the thousands separators"
            )


def require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str | Path, key: str) -> None:
    """Every named column must exist; otherwise name the missing one, the closest match and the columns present.

    A name that is another present only through a wrong encoding ('température' read as 'tempÃ©rature') names the
    two encodings and the fix instead: a 'did you mean' would ask to type the garbled name."""
    present = [str(c) for c in frame.columns]
    for name in columns:
        if name not in present:
            mixup = _encoding_mixup(name, present, frame.attrs.get("encoding"), source, key)
            if mixup:
                raise UserError(mixup)
            hint = did_you_mean(name, [p for p in present if len(p) <= 200]) if len(name) <= 200 else ""
            raise UserError(
                f"column '{shown_bare(name)}' (data.{key}) is not in {source}"
                f"{hint if 'did you mean' in hint else ''}; columns present: {shown_list(present, count=20)}"
            )


# Codecs a CSV is written in -> (how a message names it, the data.encoding value that reads it).
ENCODINGS = {
    "utf-8": ("UTF-8", "utf-8-sig"),
    "cp1252": ("cp1252", "cp1252"),
    "iso8859-1": ("latin-1", "latin-1"),
}


def _codec(encoding: str) -> str:
    """The codec's canonical name, UTF-8 with or without a byte-order mark as one ('utf-8')."""
    name = codecs.lookup(encoding).name
    return "utf-8" if name.startswith("utf-8") else name


def _label(codec: str) -> str:
    return ENCODINGS.get(codec, (codec,))[0]


def _recoded(text: str, wrote: str, read: str) -> str | None:
    """text as it reads when its bytes in `wrote` are decoded as `read` (a BOM dropped), or None if they cannot be."""
    try:
        return text.encode(wrote).decode(read).lstrip("\ufeff").strip()
    except UnicodeError:
        return None


def _encoding_mixup(
    name: str, present: list[str], encoding: str | None, source: object, key: str
) -> str | None:
    """The message for a missing column that a present one is, written in one encoding and read in another.

    Either this file is X read as data.encoding (its header is garbled: save it in data.encoding, which normia
    predict reads new files with, or train with X's data.encoding), or the run's own name is garbled (its training
    file was X read as data.encoding, and this file is in data.encoding: saved as X, it reads the same way).
    Without a known data.encoding (Parquet, a frame) the column names themselves are garbled."""
    try:
        read = _codec(encoding) if encoding else None
    except LookupError:
        return None
    where = f"column '{shown_bare(name)}' (data.{key}) is not in {source}"
    columns = [c for c in present if len(c) <= 200] if len(name) <= 200 else []
    for wrote in ENCODINGS:
        for was_read in [read] if read else [c for c in ENCODINGS if c != "utf-8"]:
            if wrote == was_read:
                continue
            label, setting = ENCODINGS[wrote]
            for column in columns:
                if _recoded(column, was_read, wrote) == name:
                    if not read:
                        return (
                            f"{where}: its column '{shown_bare(column)}' is '{shown_bare(name)}' as {label} text read "
                            f"as {_label(was_read)}; fix the column names where the file was made"
                        )
                    return (
                        f"{where}: the file is {label} but data.encoding={encoding} reads '{shown_bare(name)}' as "
                        f"'{shown_bare(column)}'; save it as {_label(read)} (normia predict reads new files as the "
                        f"run's data.encoding), or train with data.encoding={setting} on {label} files"
                    )
                if read and _recoded(name, read, wrote) == column:
                    return (
                        f"{where}: that name is '{shown_bare(column)}' garbled (the run read a {label} file as "
                        f"data.encoding={encoding}) and this file is {_label(read)}; save it as {label} so that "
                        "it reads the same way"
                    )
    return None


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str], source: str | Path) -> pd.DataFrame:
    """The named columns as float64; a cell that is not a number is reported with its row and the fix."""
    import pandas as pd

    decimal, sep = frame.attrs.get("decimal"), frame.attrs.get("sep")
    out = {}
    for name in columns:
        values = frame[name]
        if not pd.api.types.is_numeric_dtype(values):
            values = parse_numbers(values, name, source, decimal, sep)
        out[name] = values.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def parse_dates(frame: pd.DataFrame, column: str, source: str | Path, date_format: str | None) -> pd.Series:
    """Parse a date column: ISO (yyyy-mm-dd), day-first (dd/mm/yyyy) or with month names (French or English)
    unless data.date_format says otherwise; see normia.data.dates for the one-line error and its suggested format."""
    import pandas as pd

    from normia.data.dates import read_dates

    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw
    return read_dates(raw.astype(str).str.strip(), column, source, date_format)
