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


class Stopped(KeyboardInterrupt):
    """A run stopped on request after saving its checkpoint: exit 130 for Ctrl-C (SIGINT), 143 for SIGTERM (128 +
    the signal's number, the shell's convention). A KeyboardInterrupt, so every caller that handles Ctrl-C handles it."""

    def __init__(self, exit_code: int = 130) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def stop_exit_code(err: BaseException) -> int:
    """The exit code of a stopped run: Stopped's own, 130 for any other KeyboardInterrupt."""
    return int(getattr(err, "exit_code", 130))
