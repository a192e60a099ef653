"""Date columns as French and US exports write them, read without depending on the system's locale.

pandas reads month names in English only, and French exports write '01 janv. 2022' or '1er janvier 2022': month
words (French or English, any case, with or without accents and a trailing dot) are mapped to English before pandas
parses them, so data.date_format='%d %b %Y' reads them, and so does the automatic detection. A column that does not
read is refused in one line naming the first cell that failed and a format that reads it, found by trying a short list
of common formats on the column's first cells: never the format that just failed, and never pandas' advice about its
own options (normia has no `format='mixed'`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from normia.errors import UserError
from normia.text_limits import short_error, shown, shown_bare

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FULL = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Month words without accents, in lower case -> month number: English (so that an English column using %b keeps
# reading, its abbreviating dot dropped like a French one) and French, full and abbreviated as French exports write.
_FRENCH = {
    "janvier": 1, "janv": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "avril": 4, "avr": 4, "mai": 5,
    "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "sept": 9, "octobre": 10, "novembre": 11,
    "decembre": 12,
}  # fmt: skip
MONTHS = {**{w.lower(): i % 12 + 1 for i, w in enumerate(FULL + ABBR)}, "sept": 9, **_FRENCH}
WORD = re.compile(r"([^\W\d_]+)\.?")  # a word of letters, with the dot that abbreviates it
FIRST_DAY = re.compile(r"\b1er\b", re.IGNORECASE)  # '1er janvier': French writes the first day as an ordinal
BLANK = ("", "nan", "NaN", "NaT", "None", "<NA>")  # what a missing cell reads as once made text

_DAYS = (
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%Y-%m-%d",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%Y%m%d",
    "%d/%m/%y",
    "%m/%d/%y",
)
_NAMED = ("%d %b %Y", "%d-%b-%Y", "%b %d %Y", "%b %d, %Y", "%b %Y")
CANDIDATES = (
    *(f + t for f in _DAYS + _NAMED[:4] for t in ("", " %H:%M", " %H:%M:%S")),
    "%Y-%m-%dT%H:%M:%S",
    _NAMED[4],
)
# How the automatic detection's formats are named in a message.
DETECTED = {
    "%d/%m/%Y": "dd/mm/yyyy (detected from the first row)",
    "mixed": "dd/mm/yyyy hh:mm (detected from the first row)",
    "ISO8601": "yyyy-mm-dd (ISO 8601, detected from the first row)",
}
EXAMPLES = (
    "e.g. '%d/%m/%Y' reads '31/12/2022', '%m/%d/%Y' reads '12/31/2022', '%d %b %Y' reads '01 janv. 2022'"
)


def _plain(word: str) -> str:
    """The word without accents, in lower case: 'Févr' and 'fevr' name the same month."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def english_months(value: str, full: bool = False) -> str:
    """value with every month word (French or English) in English, its abbreviating dot dropped, and '1er' as '1'.

    full: January rather than Jan, for a format using %B. Other words are left as they are."""
    names = FULL if full else ABBR

    def english(found: re.Match[str]) -> str:
        month = MONTHS.get(_plain(found.group(1)))
        return names[month - 1] if month else found.group(0)

    return WORD.sub(english, FIRST_DAY.sub("1", value))


def has_month_word(value: str) -> bool:
    """Whether the cell names a month in words (so the automatic detection must not assume digits)."""
    return any(_plain(w) in MONTHS for w in WORD.findall(value))


def _in_english(text: pd.Series, full: bool) -> pd.Series:
    """english_months over a column, once per distinct cell (date columns repeat, and a regex per cell is slow)."""
    mapping = {v: english_months(v, full) for v in text.unique()}
    return text.map(mapping)


def _blank(text: pd.Series) -> pd.Series:
    return text.isin(BLANK)


def _parses(values: list[str], fmt: str) -> bool:
    """Every value reads with fmt, exactly (pandas' own parser, as read_dates uses it)."""
    import pandas as pd

    try:
        return bool(pd.to_datetime(pd.Series(values), format=fmt, errors="coerce").notna().all())
    except (ValueError, TypeError):
        return False


def reading_format(text: pd.Series, date_format: str | None) -> tuple[str, pd.Series]:
    """The format pandas is given and the cells it reads (month words in English).

    Without data.date_format: dd/mm/yyyy when the first cell looks so (with a time: per cell), a format with month
    names when the first cell has one, else ISO 8601, as normia always did."""
    if date_format is not None:
        if "%b" not in date_format and "%B" not in date_format:
            return date_format, text
        fmt = date_format.replace("%b.", "%b").replace("%B.", "%B")  # the dot goes with the month word
        return fmt, _in_english(text, full="%B" in fmt)
    sample = text.iloc[0] if len(text) else ""
    if has_month_word(sample):
        english = _in_english(text, full=False)
        head = [v for v in english.iloc[:100] if v not in BLANK]
        named = [f for f in CANDIDATES if "%b" in f and _parses(head, f)]
        if named:
            return named[0], english
    fmt = "%d/%m/%Y" if len(sample) >= 10 and sample[2] == "/" and sample[5] == "/" else "ISO8601"
    if fmt == "%d/%m/%Y" and len(sample) > 10:
        fmt = "mixed"
    return fmt, text


def read_dates(text: pd.Series, column: str, source: object, date_format: str | None) -> pd.Series:
    """A text column as dates, with data.date_format or the automatic detection; a one-line UserError otherwise."""
    import pandas as pd

    fmt, readable = reading_format(text, date_format)
    try:
        dates = pd.to_datetime(readable, format=fmt, dayfirst=True)
    except (ValueError, TypeError) as err:
        raise UserError(unread_message(text, readable, fmt, date_format, column, source, err)) from None
    if fmt == "mixed":  # pandas reads '12/31/2022 10:30' month first, silently, even with dayfirst=True
        _check_day_first(text, column, source)
    return dates


def _where(column: str, source: object) -> str:
    return f"cannot read the dates in column '{shown_bare(column)}' of {source}"


def _check_day_first(text: pd.Series, column: str, source: object) -> None:
    """A dd/mm/yyyy hh:mm column read per cell must not hold a cell whose month (second number) is over 12."""
    second = text.str.extract(r"^(\d{1,2})/(\d{1,2})/")[1].astype(float)
    late = (second > 12).to_numpy()
    if late.any():
        row = int(late.nonzero()[0][0])
        raise UserError(
            f"{_where(column, source)}: {shown(text.iloc[row])} at data row {row + 1} does not match "
            f"{DETECTED['mixed']}: {int(second.iloc[row])} is not a month; {suggestion(text, late, row, set())}"
        )


def unread_message(
    text: pd.Series,
    readable: pd.Series,
    fmt: str,
    date_format: str | None,
    column: str,
    source: object,
    err: Exception,
) -> str:
    """The first cell that failed, the format it failed, and a format that reads it (tried on the column's first
    cells), on one line."""
    import pandas as pd

    where = _where(column, source)
    try:
        parsed = pd.to_datetime(readable, format=fmt, dayfirst=True, errors="coerce")
    except (ValueError, TypeError) as bad:  # not a format at all: '%Q', '%d/%m/%'
        return (
            f"{where}: data.date_format={date_format!r} is not a date format ({short_error(bad)}); {EXAMPLES}"
        )
    failed = (parsed.isna() & ~_blank(readable)).to_numpy()
    if not failed.any():  # not a cell's fault: say what pandas said, without its advice
        reason = short_error(str(err).split(". You might want to try")[0])
        return f"{where}: {reason}; set data.date_format ({EXAMPLES})"
    row = int(failed.nonzero()[0][0])
    tried = f"data.date_format={date_format!r}" if date_format is not None else DETECTED.get(fmt, repr(fmt))
    fix = suggestion(text, failed, row, {fmt, date_format or ""})
    return f"{where}: {shown(text.iloc[row])} at data row {row + 1} does not match {tried}; {fix}"


def suggestion(text: pd.Series, failed: np.ndarray, row: int, exclude: set[str]) -> str:
    """'set data.date_format=X (it reads V as D)' for the first common format that reads the column's first cells
    and its first failed ones; when one reads the failed cell only, the cell it does not read (the column mixes
    formats); examples when none reads it."""
    english = [str(v) for v in _in_english(text, full=False)]
    head = [i for i in range(min(len(english), 100)) if english[i] not in BLANK]
    sample = [english[i] for i in head] + [english[i] for i in failed.nonzero()[0][:20]]
    options = [f for f in CANDIDATES if f not in exclude]
    fits = [f for f in options if _parses(sample, f)]
    value = shown(text.iloc[row])
    if fits:
        also = ""
        if len(fits) > 1 and _same_shape(fits[0], fits[1]):
            also = f"; {fits[1]!r} reads them too, as {_day(english[row], fits[1])}: choose by the column's order"
        return f"set data.date_format={fits[0]!r} (it reads {value} as {_day(english[row], fits[0])}{also})"
    partial = [f for f in options if _parses([english[row]], f)]
    if not partial and row > 0:  # the cells above it read: this one is wrong, not the format
        return "fix the cell (the rows above it read with that format)"
    if not partial:
        return f"set data.date_format to the column's format ({EXAMPLES})"
    other = next(i for i in head if not _parses([english[i]], partial[0]))
    return (
        f"{partial[0]!r} reads it but not {shown(text.iloc[other])} at data row {other + 1}: the column mixes date "
        "formats, write its cells in one"
    )


def _day(value: str, fmt: str) -> str:
    """value read with fmt, as yyyy-mm-dd (with the time when it has one)."""
    import pandas as pd

    date = pd.to_datetime(pd.Series([value]), format=fmt).iloc[0]
    return date.strftime("%Y-%m-%d %H:%M:%S" if date != date.normalize() else "%Y-%m-%d")


def _same_shape(a: str, b: str) -> bool:
    """Two formats that differ only by the order of their fields (dd/mm vs mm/dd): the sample cannot tell them."""
    fields = re.compile(r"%\w")
    return sorted(fields.findall(a)) == sorted(fields.findall(b)) and fields.sub("", a) == fields.sub("", b)
