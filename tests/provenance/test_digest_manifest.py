"""Data digests reused across processes (issue 22): a requeue or the next run on the same corpus does not re-read a
file whose path, size, mtime, inode and device are unchanged; any change makes it read again; the record says which
digests were reused; reused digests are re-read a budget at a time (least recently verified first) and a wrong one is
replaced. Each case runs in a new process, as a requeued job does (the in-process cache is not it)."""

from __future__ import annotations

import hashlib
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
                  "verified": sorted(k.split(chr(0))[0].rsplit("/", 1)[-1] for k in m._checked),
                  "note": data_inputs.reuse_note(records)}))
"""


def _digest(path: Path, cache: Path | str, verify_mb: float | None = None) -> dict:
    env = {**os.environ, "NORMIA_DIGEST_CACHE": str(cache)}
    env.pop("NORMIA_DIGEST_VERIFY_MB", None)
    if verify_mb is not None:
        env["NORMIA_DIGEST_VERIFY_MB"] = str(verify_mb)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, check=True
    )
    lines = out.stdout.strip().splitlines()
    return {**json.loads(lines[-1]), "warnings": [line for line in lines if line.startswith("warning:")]}


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
    shard.write_bytes(bytes(data))  # same size; a new mtime
    again = _digest(corpus, cache)
    assert again["sha256"] != first["sha256"] and again["read"] == 2
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


def _in_place_edit_keeping_the_mtime(path: Path) -> None:
    """What `rsync --inplace --times` or an edit followed by `touch -d` does: new bytes, same size, same inode, the
    old mtime put back. The stat identity the manifest trusts is unchanged."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[7] ^= 0xFF
    with open(path, "r+b") as handle:
        handle.write(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_ino, path.stat().st_mtime_ns, path.stat().st_size) == (
        stat.st_ino,
        stat.st_mtime_ns,
        stat.st_size,
    )


def test_a_digest_whose_stat_identity_lies_is_caught_by_the_lazy_check(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    cache = tmp_path / "digests.json"
    first = _digest(big, cache)
    _in_place_edit_keeping_the_mtime(big)
    second = _digest(big, cache)
    assert second["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest() != first["sha256"]
    assert not second["reused"] and second["read"] == 1
    assert (
        len(second["warnings"]) == 1
        and "big.bin" in second["warnings"][0]
        and "was wrong" in second["warnings"][0]
    )
    third = _digest(big, cache)  # the corrected digest was kept, and verified again (the budget allows it)
    assert third["sha256"] == second["sha256"] and third["reused"] and not third["warnings"]


def test_without_a_verification_budget_the_stat_identity_is_trusted(tmp_path: Path) -> None:
    """NORMIA_DIGEST_VERIFY_MB=0: nothing is re-read, so an edit that keeps size, mtime and inode goes unseen (the
    price of turning the check off, documented)."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    cache = tmp_path / "digests.json"
    first = _digest(big, cache, verify_mb=0)
    _in_place_edit_keeping_the_mtime(big)
    second = _digest(big, cache, verify_mb=0)
    assert second["sha256"] == first["sha256"] and second["verified"] == [] and second["reused"]


def test_each_process_verifies_the_least_recently_verified_within_its_budget(
    corpus: Path, tmp_path: Path
) -> None:
    """A budget of one 2 MiB shard per process: three requeues verify the three shards in turn, oldest first,
    instead of re-reading the corpus each time."""
    cache = tmp_path / "digests.json"
    _digest(corpus, cache, verify_mb=2.5)
    seen = [_digest(corpus, cache, verify_mb=2.5)["verified"] for _ in range(3)]
    assert all(len(v) == 1 for v in seen), seen
    assert sorted(v[0] for v in seen) == ["shard-0.bin", "shard-1.bin", "shard-2.bin"]
