"""Read a CSV or Parquet table as a checked pandas DataFrame, including CSVs as French open-data portals export them.

Those files use `;` between fields, a decimal comma, a UTF-8 byte-order mark and dd/mm/yyyy dates; each is detected
here (or set explicitly) so the file loads without hand edits. Every problem that would otherwise surface later as a
NaN or a cryptic pandas error is a UserError naming the file, the column and the fix.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from normia.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def _sniff_csv(head: str) -> tuple[str, str]:
    """(separator, decimal) guessed from the first lines: `;` means the European convention with a decimal comma."""
    try:
        sep = csv.Sniffer().sniff(head, delimiters=";,\t|").delimiter
    except csv.Error:
        counts = {s: head.count(s) for s in (";", ",", "\t")}
        sep = max(counts, key=counts.__getitem__) if any(counts.values()) else ","
    return sep, ("," if sep in (";", "\t") else ".")


def read_table(
    path: str | Path,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str = "utf-8-sig",
) -> pd.DataFrame:
    """Load a CSV (separator and decimal mark detected unless given) or a Parquet file."""
    import pandas as pd

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"data file not found: {p} (fix data.path)")
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(p)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise UserError(f"cannot read the Parquet file {p}: {err}") from None
    raw = p.read_bytes()
    if not raw.strip():
        raise UserError(f"the data file {p} is empty")
    try:
        text_head = raw[:65536].decode(encoding)
    except UnicodeDecodeError as err:
        raise UserError(
            f"the data file {p} is not {encoding} (invalid byte at offset {err.start}): "
            "set data.encoding=latin-1 (or cp1252) or re-encode the file to UTF-8"
        ) from None
    except LookupError:
        raise UserError(f"unknown data.encoding '{encoding}': use e.g. utf-8-sig, latin-1, cp1252") from None
    guessed_sep, guessed_decimal = _sniff_csv("\n".join(text_head.splitlines()[:20]))
    sep = sep or guessed_sep
    decimal = decimal or (guessed_decimal if sep == guessed_sep else ".")
    try:
        frame = pd.read_csv(p, sep=sep, decimal=decimal, encoding=encoding, skipinitialspace=True)
    except UnicodeDecodeError:
        raise UserError(
            f"the data file {p} is not {encoding}: set data.encoding=latin-1 or re-encode it"
        ) from None
    except pd.errors.ParserError as err:
        raise UserError(f"cannot parse the CSV {p} with separator '{sep}': {err}; set data.sep") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.attrs["decimal"] = decimal  # numeric_columns re-reads text cells of a column pandas left as strings
    return frame


def require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str | Path, key: str) -> None:
    """Every named column must exist; otherwise name the missing one, the closest match and the columns present."""
    present = [str(c) for c in frame.columns]
    for name in columns:
        if name not in present:
            hint = did_you_mean(name, present)
            raise UserError(
                f"column '{name}' (data.{key}) is not in {source}{hint if 'did you mean' in hint else ''}; "
                f"columns present: {', '.join(present)}"
            )


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str], source: str | Path) -> pd.DataFrame:
    """The named columns as float64; a non-numeric cell is reported with its row (1-based, header excluded)."""
    import pandas as pd

    out = {}
    for name in columns:
        values = frame[name]
        if not pd.api.types.is_numeric_dtype(
            values
        ):  # pandas keeps a column as text when one cell is not a number
            values = (
                values.astype(str)
                .str.strip()
                .str.replace("\u00a0", "")
                .replace({"": None, "nan": None, "NaN": None})
            )
            if frame.attrs.get("decimal") == ",":
                values = values.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        converted = pd.to_numeric(values, errors="coerce")
        bad = converted.isna() & values.notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(
                f"non-numeric value {values.iloc[row]!r} in column '{name}' of {source} at data row {row + 1}: "
                "fix the cell, or set data.decimal/data.sep if the number format was misread"
            )
        out[name] = converted.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def parse_dates(frame: pd.DataFrame, column: str, source: str | Path, date_format: str | None) -> pd.Series:
    """Parse a date column: ISO (yyyy-mm-dd) or day-first (dd/mm/yyyy) unless data.date_format says otherwise."""
    import pandas as pd

    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw
    text = raw.astype(str).str.strip()
    fmt = date_format
    if fmt is None:
        sample = text.iloc[0] if len(text) else ""
        fmt = "%d/%m/%Y" if len(sample) >= 10 and sample[2] == "/" and sample[5] == "/" else "ISO8601"
        if fmt == "%d/%m/%Y" and len(sample) > 10:
            fmt = "mixed"
    try:
        dates = pd.to_datetime(text, format=fmt, dayfirst=True)
    except (ValueError, TypeError) as err:
        raise UserError(
            f"cannot read the dates in column '{column}' of {source}: {err}; set data.date_format (e.g. %d/%m/%Y)"
        ) from None
    return dates
