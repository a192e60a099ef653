"""Every value that reaches a Slurm job script, checked in one place just before the script is rendered or
submitted: an #SBATCH line, a setup line or the srun line that holds a line break would let the rest of the value run
as a shell command of the job (the job folder comes from paths.output_root, the working folder from the project's
place, ...), and launcher.python, written unquoted as the command's first words, must be a plain command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from normia.errors import UserError
from normia.text_limits import shown

LINE_BREAKS = "\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# One word of launcher.python: a path or name, an option, or a $VARIABLE / ${VARIABLE}; no shell syntax.
PYTHON_WORD = re.compile(r"(?:[A-Za-z0-9_./+=:,@%~-]|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\})+")
WHERE = {
    "job_name": "name (the job name)",
    "chdir": "the job's working folder (the project's root or launcher.sbatch_args.chdir)",
    "setup": "a setup line of the job script (launcher.setup, launcher.env's file or the project's folders)",
}


def check_python(python: str | None) -> None:
    """launcher.python: None, or words of letters, digits and ._/+=:,@%~- (or $VARIABLE). Raises UserError."""
    if python is None:
        return
    words = python.split(" ")
    if not python.strip() or not all(PYTHON_WORD.fullmatch(word) for word in words if word):
        raise UserError(
            f"launcher.python={shown(python)} is not a plain command (it is written unquoted into the srun line): "
            "give the Python's path or name, with options if any (letters, digits and ._/+=:,@%~-); "
            "put shell lines in launcher.setup"
        )


def check_script(params: dict[str, Any], folder: Path | str, python: str) -> None:
    """Raise UserError naming the first value of the job script (executor parameters, the job folder, the python
    command) that holds a line break, or a python command that is not plain (check_python)."""
    _one_line(str(folder), "the job folder (paths.output_root, paths.output_dir or launcher.folder)")
    check_python(python)
    for key, value in params.items():
        if key == "additional_parameters":
            for name, extra in value.items():
                _one_line(extra, WHERE.get(name, f"launcher.sbatch_args.{name}"))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                _one_line(item, f"{WHERE.get(key, f'launcher.{key}')} [{i}]")
        else:
            _one_line(value, WHERE.get(key, f"launcher.{key}"))


def _one_line(value: Any, where: str) -> None:
    text = str(value)
    if any(c in text for c in LINE_BREAKS):
        raise UserError(
            f"{where} holds a line break ({shown(text)}): it would start a shell command in the job script; "
            "give it on one line"
        )
