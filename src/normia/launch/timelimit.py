"""Slurm time limits: parse the formats sbatch accepts, so a typo fails before submission, not in the queue."""

from __future__ import annotations

import re

from normia.errors import UserError

# sbatch --time: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S" (Slurm's parse_time, minus the rarely used forms).
_FORMATS = (
    (re.compile(r"^(\d+)$"), ("m",)),
    (re.compile(r"^(\d+):(\d{1,2})$"), ("m", "s")),
    (re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})$"), ("h", "m", "s")),
    (re.compile(r"^(\d+)-(\d+)$"), ("d", "h")),
    (re.compile(r"^(\d+)-(\d+):(\d{1,2})$"), ("d", "h", "m")),
    (re.compile(r"^(\d+)-(\d+):(\d{1,2}):(\d{1,2})$"), ("d", "h", "m", "s")),
)
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
UNLIMITED = ("UNLIMITED", "INFINITE")


def time_limit_seconds(value: object, key: str = "launcher.time") -> int:
    """Seconds of a Slurm time limit given as minutes (int) or a Slurm time string; UserError if malformed."""
    text = str(value).strip()
    if text.upper() in (*UNLIMITED, "-1"):
        _refuse_no_limit(value, key)
    for pattern, units in _FORMATS:
        match = pattern.match(text)
        if match:
            seconds = sum(int(v) * _SECONDS[u] for v, u in zip(match.groups(), units))
            if seconds <= 0:
                _refuse_no_limit(value, key)
            return seconds
    raise UserError(
        f"{key}='{value}' is not a Slurm time limit; write minutes (90), HH:MM:SS (01:30:00) "
        "or D-HH:MM:SS (1-12:00:00)"
    )


def _refuse_no_limit(value: object, key: str) -> None:
    """0 and UNLIMITED mean "no limit" to Slurm; say why normia needs one instead of calling them malformed."""
    if key == "launcher.time":
        why = (
            "it means no time limit, and the requeue signal (launcher.signal, sent launcher.signal_delay_s "
            "before the limit) needs a finite one; give the longest run you expect, e.g. 04:00:00 "
            "(the job checkpoints and requeues itself at the limit)"
        )
    else:
        why = "it means no limit; leave the key out (null) for an unlimited partition"
    raise UserError(f"{key}='{value}' is not a usable Slurm time limit: {why}")


def sinfo_limit_seconds(text: str) -> int | None:
    """A partition's limit as sinfo prints it (%l); None when unlimited or unreadable."""
    text = text.strip()
    if not text or text.upper() in UNLIMITED or text == "n/a":
        return None
    try:
        return time_limit_seconds(text)
    except UserError:
        return None


def format_seconds(seconds: int) -> str:
    """Slurm's D-HH:MM:SS (HH:MM:SS under a day)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock
