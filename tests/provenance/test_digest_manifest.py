"""Data digests reused across processes (issue 22): a requeue or the next run on the same corpus does not re-read a
file whose path, size, mtime, inode and device are unchanged; any change makes it read again; the record says which
digests were reused. Each case runs in a new process, as a requeued job does (the in-process cache is not it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys
from normia.tracking import data_inputs
from normia.tracking.digest_manifest import manifest
records = data_inputs.describe_inputs({"_target_": "x.Y", "path": sys.argv[1]})
m = manifest()
print(json.dumps({"sha256": records[0].sha256, "reused": records[0].digest_reused, "read": m.computed,
                  "note": data_inputs.reuse_note(records)}))
"""


def _digest(path: Path, cache: Path | str) -> dict:
    env = {**os.environ, "NORMIA_DIGEST_CACHE": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        (folder / f"shard-{i}.bin").write_bytes(os.urandom(2 << 20))  # over MIN_BYTES: kept in the manifest
    (folder / "small.txt").write_text("a\nb\n")  # under: always read (as cheap as a lookup)
    return folder


def test_a_second_process_reuses_every_unchanged_digest(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "digests.json"
    first = _digest(corpus, cache)
    assert first["read"] == 4 and not first["reused"] and first["note"] is None
    second = _digest(corpus, cache)
    assert second["sha256"] == first["sha256"]
    assert second["read"] == 1  # the small file only
    assert json.loads(cache.read_text())["version"] == 1


def test_a_changed_file_is_read_again_and_its_digest_changes(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "digests.json"
    first = _digest(corpus, cache)
    shard = corpus / "shard-1.bin"
    data = bytearray(shard.read_bytes())
    data[5] ^= 0xFF
    stat = shard.stat()
    shard.write_bytes(bytes(data))  # same size; a new mtime
    again = _digest(corpus, cache)
    assert again["sha256"] != first["sha256"] and again["read"] == 2
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the old mtime back: the inode still names it
    assert _digest(corpus, cache)["read"] == 1  # the rewritten file's new digest was kept


def test_a_file_reused_whole_is_said_in_its_record(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    cache = tmp_path / "digests.json"
    _digest(big, cache)
    second = _digest(big, cache)
    assert second["reused"] and second["read"] == 0 and "data.path" in second["note"]


def test_off_reads_every_time_and_writes_nothing(corpus: Path, tmp_path: Path) -> None:
    assert _digest(corpus, "off")["read"] == 4
    assert _digest(corpus, "off")["read"] == 4
    assert not list(tmp_path.glob("**/digests.json"))


def test_a_damaged_manifest_is_rebuilt_not_trusted(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "digests.json"
    cache.write_text("{not json")
    assert _digest(corpus, cache)["read"] == 4
    assert _digest(corpus, cache)["read"] == 1
