"""Names that become folder names, Slurm job names and #SBATCH lines: a safe set of characters, the rest refused.

`name=../../x` would write outside paths.output_root, and a newline in a name or in an #SBATCH value ends that line
and starts a shell command in the job script. So a job name is letters (any script), digits, '.', '_', '-' (not starting
with '.' or '-'), and a value written into an #SBATCH line holds no line break.
"""

from __future__ import annotations

import re
from typing import Any

from normia.errors import UserError

SAFE_NAME = re.compile(r"\w[\w.\-]{0,99}")  # \w: letters (é too), digits, _
SBATCH_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_name(value: Any, key: str = "name") -> str:
    """value if it is a safe name; else UserError naming the key and what a name may hold."""
    text = str(value)
    if not SAFE_NAME.fullmatch(text) or ".." in text:
        raise UserError(
            f"{key}={text!r} is not a safe name: use letters, digits, '.', '_' and '-' (at most 100, no '..', "
            f"not starting with '.' or '-'), e.g. {key}=my_run"
        )
    return text


def check_one_line(value: Any, key: str) -> None:
    """A value written into one line of a script: no line break (it would start a new shell command)."""
    if value is not None and any(c in str(value) for c in "\n\r\x00"):
        raise UserError(f"{key} holds a line break: give it on one line (it is written into the job script)")


def check_sbatch_key(key: Any) -> None:
    if not SBATCH_KEY.fullmatch(str(key)):
        raise UserError(
            f"launcher.sbatch_args key {str(key)!r} is not an sbatch option name: use letters, digits and '-' "
            "(e.g. mail-type)"
        )


def check_env_name(key: Any) -> None:
    if not ENV_NAME.fullmatch(str(key)):
        raise UserError(
            f"launcher.env key {str(key)!r} is not an environment variable name: use letters, digits and '_' "
            "(e.g. HF_HOME)"
        )
