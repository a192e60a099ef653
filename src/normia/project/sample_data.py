"""The small data sets `normia init` writes into a new project's data/ folder, so that the project trains, and its
tests pass, offline and in seconds on a CPU. Standard library only: `normia init` imports no numpy, PIL or torch.

Each writer takes the project folder and is deterministic (a fixed seed), so two projects made alike hold the
same data.
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import zlib
from importlib import resources
from pathlib import Path

STRIPE_CLASSES = ("horizontal", "vertical", "diagonal")
IMAGE_SIZE = 16
IMAGES_PER_CLASS = 30
SERIES_YEARS = 25


def png_bytes(rows: list[list[tuple[int, int, int]]]) -> bytes:
    """An 8-bit RGB PNG of rows of (r, g, b) pixels (the format's minimum: one IHDR, one IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(value for pixel in row for value in pixel) for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _stripes(kind: str, rng: random.Random) -> list[list[tuple[int, int, int]]]:
    """Stripes of a random period, phase and pair of colours, with pixel noise: only the orientation is the class."""
    period, phase = rng.randint(4, 6), rng.randint(0, 5)
    light = tuple(rng.randint(150, 255) for _ in range(3))
    dark = tuple(rng.randint(0, 100) for _ in range(3))
    rows = []
    for y in range(IMAGE_SIZE):
        row = []
        for x in range(IMAGE_SIZE):
            along = {"horizontal": y, "vertical": x, "diagonal": x + y}[kind]
            base = light if ((along + phase) % period) < period / 2 else dark
            row.append(tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in base))
        rows.append(row)
    return rows


def write_stripes(project: Path) -> None:
    """data/images/<class>/NNN.png: 30 colour images of 16x16 pixels for each of three stripe orientations."""
    rng = random.Random(0)
    for kind in STRIPE_CLASSES:
        folder = project / "data" / "images" / kind
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(IMAGES_PER_CLASS):
            (folder / f"{index:03d}.png").write_bytes(png_bytes(_stripes(kind, rng)))


def write_monthly_series(project: Path) -> None:
    """data/temperature.csv: a made-up monthly mean temperature (yearly cycle, slow warming, noise), 2000-2024."""
    rng = random.Random(0)
    lines = ["date,temperature"]
    for month in range(12 * SERIES_YEARS):
        year, month_of_year = 2000 + month // 12, month % 12 + 1
        value = 11.0 + 0.03 * month / 12 - 7.5 * math.cos(2 * math.pi * (month_of_year - 1.5) / 12)
        lines.append(f"{year}-{month_of_year:02d}-01,{value + rng.gauss(0, 0.8):.2f}")
    folder = project / "data"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temperature.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_text(project: Path) -> None:
    """data/text.txt: the public-domain Shakespeare text normia ships (Coriolanus, Act I, 32 KB)."""
    folder = project / "data"
    folder.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("normia.data.corpora") / "coriolanus.txt") as source:
        shutil.copyfile(source, folder / "text.txt")
