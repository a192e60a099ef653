"""Small data sets written by the inference tests: a label table beside a flat image folder, a French series CSV,
a classification table. Deterministic (seeded), a few kilobytes each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CLASSES = ("classe_huit", "classe_trois", "classe_zero")


def write_label_table(folder: Path, per_class: int = 12, size: int = 8) -> Path:
    """folder/etiquettes.csv (`fichier;etiquette`) and folder/img_NNN.png: three classes of 8x8 grey images that a
    small model can tell apart (bright top, bright left, dark), returned as the table's path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["fichier;etiquette"]
    for i in range(per_class * len(CLASSES)):
        label = CLASSES[i % len(CLASSES)]
        pixels = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
        if label == "classe_huit":
            pixels[: size // 2] += 180
        elif label == "classe_trois":
            pixels[:, : size // 2] += 180
        name = f"img_{i:03d}.png"
        Image.fromarray(pixels, mode="L").convert("RGB").save(folder / name)
        rows.append(f"{name};{label}")
    table = folder / "etiquettes.csv"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return table


def french_series(path: Path, n: int = 120, start: str = "2023-01-01", freq: str = "D") -> Path:
    """A daily PM10 series as a French portal exports it: BOM, `;`, dd/mm/yyyy, decimal comma."""
    days = pd.date_range(start, periods=n, freq=freq)
    rng = np.random.default_rng(1)
    lines = ["Date;PM10 (µg/m3)"]
    for i, day in enumerate(days):
        value = 20 + 6 * np.sin(2 * np.pi * i / 7) + rng.normal()
        lines.append(f"{day:%d/%m/%Y};{value:.2f}".replace(".", ","))
    path.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))
    return path


def species_table(path: Path, n: int = 90) -> Path:
    """A comma-separated classification table: two numeric features and a text class."""
    rng = np.random.default_rng(2)
    names = np.array(["setosa", "versicolor", "virginica"])
    label = np.arange(n) % 3
    frame = pd.DataFrame(
        {
            "petal_length": label * 2.0 + rng.normal(0, 0.3, n),
            "petal_width": label * 0.8 + rng.normal(0, 0.2, n),
            "species": names[label],
        }
    )
    frame.to_csv(path, index=False)
    return path
