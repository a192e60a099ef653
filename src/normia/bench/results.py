"""Results of one benchmark run, written as they are measured: a JSON file (provenance, limits, every row with its
raw timings), a CSV and a markdown table of the scalar columns, and PNG plots at the end.

Each row is flushed to disk as soon as it is measured (JSON rewritten atomically, CSV appended), so an interrupted
run keeps every row it finished; its JSON says `"status": "interrupted"` (or "running" if the process was killed).
The end of a run (complete or interrupted) rewrites the CSV from the rows, so a SIGTERM that lands between the JSON
write and the CSV append of one row cannot leave the two files disagreeing.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class ResultsWriter:
    """Collects rows of one benchmark (kernels, train or scaling) on one device into `out_dir/<name>.*`."""

    def __init__(self, out_dir: Path, name: str, meta: dict, columns: Sequence[str]) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.columns = list(columns)
        self.doc: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "benchmark": name,
            "status": "running",
            **meta,
            "limits": {},
            "rows": [],
        }
        self.json_path = self.out_dir / f"{name}.json"
        self.csv_path = self.out_dir / f"{name}.csv"
        self.md_path = self.out_dir / f"{name}.md"
        self._write_csv()
        self._write_json()

    @property
    def rows(self) -> list[dict]:
        return self.doc["rows"]

    def set_limits(self, limits: dict) -> None:
        self.doc["limits"] = limits
        self._write_json()

    def add(self, row: dict) -> None:
        """Record one measured (or skipped) row and flush it to disk now."""
        self.rows.append(row)
        self._write_json()
        with self.csv_path.open("a", newline="") as f:
            csv.writer(f).writerow([_csv_cell(row.get(c)) for c in self.columns])

    def finish(self, status: str, plot: Callable[[list[dict], Path], list[Path]] | None = None) -> list[Path]:
        """Mark the run complete or interrupted, write the markdown table and the plots; return the files written."""
        self.doc["status"] = status
        paths: list[Path] = []
        if plot is not None:
            paths = plot(self.rows, self.out_dir)
            self.doc["plots"] = [p.name for p in paths]
        self._write_json()
        self._write_csv()
        self.md_path.write_text(self.markdown())
        return [self.json_path, self.csv_path, self.md_path, *paths]

    def markdown(self) -> str:
        d = self.doc
        lines = [
            f"## {self.name} on {d.get('device')} ({d.get('date', '')[:10]})",
            "",
            f"torch {d.get('torch')}, triton {d.get('triton')}, driver {d.get('driver')}, "
            f"normia {d.get('normia_commit') or d.get('normia')}; status: {d.get('status')}",
            "",
        ]
        for key, value in (d.get("limits") or {}).items():
            if _scalar(value) and value is not None:
                lines.append(f"- {key}: {_fmt(value)}")
        lines += ["", "| " + " | ".join(self.columns) + " |", "|" + " --- |" * len(self.columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(row.get(c)) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"

    def _write_csv(self) -> None:
        """The header and every row, atomically (the per-row appends of `add` are only a crash's partial copy)."""
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            writer.writerows([_csv_cell(row.get(c)) for c in self.columns] for row in self.rows)
        os.replace(tmp, self.csv_path)

    def _write_json(self) -> None:
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, default=str, allow_nan=False))
        os.replace(tmp, self.json_path)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isfinite(value) and (abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3)):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value).replace("|", "/")


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())
