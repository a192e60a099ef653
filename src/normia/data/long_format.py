"""Long-format tables (one row per date and per station/sensor, the usual open-data layout) as one channel per series.

A column names the series (data.series_column); data.series picks which of them to model (default: all of them, one
channel each). Series are never averaged together: two rows with the same date are an error unless a column tells
them apart, and then they become separate channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from normia.errors import UserError, did_you_mean
from normia.text_limits import shown, shown_bare, shown_list

if TYPE_CHECKING:
    import pandas as pd


def series_labels(frame: pd.DataFrame, column: str, source: str | Path) -> pd.Series:
    """The series name of every row as text (a station code read as a number keeps its digits: 7, not 7.0)."""
    import pandas as pd

    raw = frame[column]
    missing = raw.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise UserError(
            f"empty cell in column '{column}' (data.series_column) of {source} at data row {row + 1}: "
            "name the series of every row"
        )
    if pd.api.types.is_float_dtype(raw) and bool((raw == raw.round()).all()):
        raw = raw.astype("int64")
    return raw.astype(str).str.strip().astype(object)


def selected_series(
    labels: pd.Series, wanted: str | Sequence[str] | None, column: str, source: str | Path
) -> list:
    """The series to model, in the order asked (default: all, in order of first appearance); unknown names refused."""
    present = list(dict.fromkeys(labels.tolist()))
    if wanted is None:
        return present
    asked = [wanted] if isinstance(wanted, (str, int, float)) else wanted
    names = list(dict.fromkeys(str(w).strip() for w in asked))  # a name given twice is still one channel
    if not names:
        raise UserError(
            "data.series is empty: name at least one series, or set data.series=null for all of them"
        )
    for name in names:
        if name not in present:
            raise UserError(
                f"series {shown(name)} (data.series) is not in column '{shown_bare(column)}' of {source}"
                f"{_close_match(name, present)}; series present: {shown_list(present, count=20)}"
            )
    return names


def _close_match(name: str, present: list[str]) -> str:
    """' (did you mean X?)' when a series name is close, else nothing (the names present are listed anyway)."""
    if len(name) > 200:
        return ""
    hint = did_you_mean(name, [p for p in present if len(p) <= 200])  # difflib on huge names costs minutes
    return hint if "did you mean" in hint else ""


def check_unique_pairs(dates: pd.Series, labels: pd.Series, date_column: str, source: str | Path) -> None:
    """One row per (date, series): a repeated pair would have to be averaged, which is never done silently."""
    import pandas as pd

    pairs = pd.DataFrame({"date": dates.to_numpy(), "series": labels.to_numpy()})
    repeated = pairs.duplicated().to_numpy()
    if repeated.any():
        pos = int(np.flatnonzero(repeated)[0])
        day, name = pairs.iloc[pos]
        row = int(dates.index[pos]) + 1  # the frame's own row number: rows of other series were left out
        raise UserError(
            f"date {pd.Timestamp(day).date()} appears twice for series {shown(name)} in column '{date_column}' of "
            f"{source} (data row {row}): remove the duplicate"
        )


def to_channels(values: pd.DataFrame, dates: pd.Series, labels: pd.Series, names: list) -> pd.DataFrame:
    """(date x series*column) table: channel '<series>' for one value column, '<series>/<column>' for several."""
    keep = labels.isin(names).to_numpy()
    frame = values[keep].copy()
    frame.index = [dates.to_numpy()[keep], labels.to_numpy()[keep]]
    wide = frame.unstack(level=1)  # columns: (value column, series); dates missing for one series become NaN
    ordered = [(column, name) for name in names for column in values.columns]
    wide = wide[ordered]
    several = len(values.columns) > 1
    wide.columns = [f"{name}/{column}" if several else str(name) for column, name in ordered]
    wide.index.name = None
    return wide.sort_index()


def suggest_series_column(frame: pd.DataFrame, dates: pd.Series, skip: Sequence[str]) -> str | None:
    """A column that tells apart the rows sharing a date (a station or sensor name), for the error's hint.

    Text columns are tried first, then integer ones (station codes), fewest distinct values first; a float column
    holds values, not names."""
    import pandas as pd

    names = [n for n in frame.columns if n not in skip and not pd.api.types.is_float_dtype(frame[n])]
    names.sort(key=lambda n: (pd.api.types.is_numeric_dtype(frame[n]), frame[n].nunique()))  # names repeat
    for name in names:
        pairs = pd.DataFrame({"d": dates.to_numpy(), "s": frame[name].to_numpy()})
        if frame[name].nunique() > 1 and not pairs.duplicated().any():
            return str(name)
    return None
