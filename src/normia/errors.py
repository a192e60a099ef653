"""User-facing errors: one line, the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input (config, data, CLI). The CLI prints `error: <message>` and exits 2."""

    exit_code = EXIT_USER_ERROR


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest valid name, or a list of the valid names when none is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if options and len(options) <= 12:
        return f" (valid: {', '.join(options)})"
    return ""
