"""Checks shared by the bench smoke tests: the result files' schema and that every figure is finite and positive."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

PROVENANCE = ("device", "driver", "torch", "triton", "normia", "normia_commit", "date", "cpu_threads")


def load_run(out: Path, name: str) -> dict:
    """Read `<name>.json/.csv/.md` and check they agree; return the JSON document."""
    doc = json.loads((out / f"{name}.json").read_text())
    assert doc["schema"] == 1 and doc["benchmark"] == name
    for key in PROVENANCE:
        assert key in doc, key
    assert doc["device"] and doc["torch"] and doc["date"]
    with (out / f"{name}.csv").open() as f:
        table = list(csv.reader(f))
    assert len(table) == 1 + len(doc["rows"]), "the CSV has one line per JSON row"
    md = (out / f"{name}.md").read_text()
    assert md.count("\n| ") >= 1 + len(doc["rows"])
    return doc


def assert_positive(row: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = row[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value, row)


def assert_timing(row: dict, median: str, p20: str, p80: str) -> None:
    assert_positive(row, (median, p20, p80))
    assert row[p20] <= row[median] <= row[p80]
    assert row["samples_ms"] and all(math.isfinite(s) and s > 0 for s in row["samples_ms"])
