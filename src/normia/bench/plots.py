"""PNG plots of benchmark rows: one panel per metric, x = shape (or size, or ranks), one line per provider.

matplotlib is imported lazily and is optional: a machine without it gets every result file except the plots.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def line_plot(
    rows: Sequence[dict],
    path: Path,
    *,
    x: str,
    panels: Sequence[tuple[str, str]],
    line: str,
    title: str,
    facet: str | None = None,
    log_y: Sequence[str] = (),
) -> Path | None:
    """Plot each of `panels` [(row key, axis label)] (one subplot row each) against `x`, one line per distinct
    value of `line`, one subplot column per distinct value of `facet` (e.g. the pass: fwd, bwd, fwd+bwd).

    The x axis keeps the order in which x values first appear in `rows` (shapes are not numbers). Rows without a
    value for a panel's key (skipped rows) leave a gap. Returns the file written, or None without matplotlib.
    """
    plt = _matplotlib()
    if plt is None or not rows:
        return None
    xs = _distinct(r.get(x) for r in rows)
    lines = _distinct(str(r.get(line)) for r in rows)
    facets = _distinct(r.get(facet) for r in rows) if facet else [None]
    fig, axes = plt.subplots(
        len(panels), len(facets), figsize=(max(5.0, 0.7 * len(xs) + 3) * len(facets), 3.0 * len(panels)),
        squeeze=False,
    )  # fmt: skip
    for col, facet_value in enumerate(facets):
        subset = [r for r in rows if facet is None or r.get(facet) == facet_value]
        for row_i, (key, label) in enumerate(panels):
            ax = axes[row_i, col]
            for name in lines:
                pts = {
                    r.get(x): r.get(key)
                    for r in subset
                    if str(r.get(line)) == name and r.get(key) is not None
                }
                ys = [pts.get(v) for v in xs]
                if any(y is not None for y in ys):
                    ax.plot(
                        range(len(xs)), [float("nan") if y is None else y for y in ys], marker="o", label=name
                    )
            ax.set_ylabel(label)
            if key in log_y:
                ax.set_yscale("log")
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels([str(v) for v in xs], rotation=30, ha="right", fontsize=7)
            ax.grid(True, alpha=0.3)
            if facet is not None and row_i == 0:
                ax.set_title(str(facet_value), fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        axes[-1, col].set_xlabel(x)
    fig.suptitle(title, fontsize=10)
    # Fixed margins: tight_layout took seconds per figure.
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.9, hspace=0.45, wspace=0.25)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _distinct(values) -> list:  # type: ignore[no-untyped-def]
    seen: list = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
