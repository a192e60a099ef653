"""The sha256 of each file of an exported model: computed by normia export, recorded as one model-version tag, and
compared with the files before normia loads the model (pure file work: no MLflow, no torch).

The tag lives in the tracking store; the files live in the artifact store. Whoever can rewrite the artifacts but not
the version's tags (a shared bucket, an experiment-level permission under MLflow auth) is caught; whoever can write
both is not, and the trust model says so.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from normia.errors import UserError

TAG = "normia.sha256"  # model-version tag: JSON {relative path: sha256 hex} of every file of the model
# Written by MLflow beside a models:/NAME/VERSION download, on the reader's side (or into a local store's folder):
# never part of what export wrote.
LOCAL_ONLY = frozenset({"registered_model_meta"})
HEX = re.compile(r"[0-9a-f]{64}")


def file_digests(folder: Path) -> dict[str, str]:
    """{path relative to `folder` (with '/'): sha256 hex} for every file under `folder`, MLflow's LOCAL_ONLY files
    left out."""
    digests: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in LOCAL_ONLY:
            with path.open("rb") as handle:
                digests[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return digests


def encode(digests: dict[str, str]) -> str:
    """The tag's value: compact JSON, sorted by path."""
    return json.dumps(digests, sort_keys=True, separators=(",", ":"))


def decode(value: str, origin: str) -> dict[str, str]:
    """The tag's value as {path: sha256 hex}. Raises UserError when it is not that (an edited or foreign tag)."""
    try:
        digests = json.loads(value)
    except ValueError:
        digests = None
    if (
        not isinstance(digests, dict)
        or not digests
        or not all(isinstance(k, str) and isinstance(v, str) and HEX.fullmatch(v) for k, v in digests.items())
    ):
        raise UserError(
            f"{origin}: its tag {TAG} is not a JSON map of file -> sha256: refused (re-export the run)"
        )
    return digests


def check_digests(folder: Path, expected: dict[str, str], origin: str) -> None:
    """Compare the files under `folder` with the digests recorded at export.

    Raises UserError (one line, naming the first file) for a file whose sha256 differs, a recorded file that is
    missing, or a file that was not there at export."""
    actual = file_digests(folder)
    fix = "the registry's copy was changed after export: re-export the run, or restore the file"
    for name in sorted(expected):
        if name not in actual:
            raise UserError(f"{origin}: {name} is missing (recorded in tag {TAG} at export); {fix}")
        if actual[name] != expected[name]:
            raise UserError(
                f"{origin}: the sha256 of {name} differs from the one recorded at export (tag {TAG}: "
                f"{expected[name][:12]}.., now {actual[name][:12]}..); {fix}"
            )
    added = sorted(set(actual) - set(expected))
    if added:
        raise UserError(f"{origin}: {added[0]} was not there at export (not in tag {TAG}); {fix}")
