"""PNG plots of benchmark rows: one panel per metric that has data, x = shape (or model size, or ranks), one series
per provider (or mode), each series named in words.

Shapes and model sizes are categories, not numbers: they are drawn as grouped bars, never joined by lines. Only a
numeric x (ranks) gets lines. A panel whose metric no row has (e.g. MFU on a CPU) is not drawn at all; the figure
says why in its footnote. Every axis label carries its unit.

matplotlib is imported lazily and is optional: a machine without it gets every result file except the plots.

    python -m normia.bench.plots benchmarks/results/<device>-<date>   # redraw every PNG of a folder from its JSON
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _matplotlib():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _value(row: dict, key: str) -> float | None:
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def line_plot(rows: Sequence[dict], path: Path, **kwargs: object) -> Path | None:
    """Draw `figure(rows, **kwargs)` into the PNG `path`; returns it, or None without matplotlib or data."""
    return save(figure(rows, **kwargs), path)  # type: ignore[arg-type]


def save(fig: object | None, path: Path) -> Path | None:
    """Write a Figure from `figure` to `path` (PNG) and free it; None when there is no figure."""
    if fig is None:
        return None
    plt = _matplotlib()
    fig.savefig(path, dpi=90)  # type: ignore[attr-defined]
    plt.close(fig)
    return path


def figure(
    rows: Sequence[dict],
    *,
    x: str,
    panels: Sequence[tuple[str, str]],
    line: str,
    title: str,
    facet: str | None = None,
    log_y: Sequence[str] = (),
    x_label: str | None = None,
    series_label: Callable[[object], str] | None = None,
    legend_title: str | None = None,
    facet_order: Sequence[object] = (),
) -> object | None:
    """A matplotlib Figure: each of `panels` [(row key, axis label with unit)] against `x`, one series per distinct
    value of `line` (named by `series_label(value)`, e.g. True -> "torch.compile"), one subplot column per value of `facet`.

    x keeps the order in which its values first appear (shapes are not numbers). A categorical x (any non-number)
    is drawn as grouped bars (markers on a log axis, never joined); a numeric x as lines with markers. Panels
    without any value are left out. None without matplotlib or without any value to draw.
    """
    plt = _matplotlib()
    if plt is None or not rows:
        return None
    name_of = series_label or str
    xs = _distinct(r.get(x) for r in rows)
    numeric_x = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs)
    series = _distinct(r.get(line) for r in rows)
    facets = _distinct(r.get(facet) for r in rows) if facet else [None]
    if facet_order:
        facets.sort(key=lambda v: facet_order.index(v) if v in facet_order else len(facet_order))
    drawn = [(k, lab) for k, lab in panels if any(_value(r, k) is not None for r in rows)]
    missing = [lab for k, lab in panels if (k, lab) not in drawn]
    if not drawn:
        return None
    width_per_x = 0.35 + 0.22 * len(series)
    panel_w = max(4.5, width_per_x * len(xs) + 2.0)
    if facet is not None:  # one row per metric, one column per facet value
        n_rows, n_cols = len(drawn), len(facets)
        cells = [(p_i, f_i, p_i, f_i) for p_i in range(len(drawn)) for f_i in range(len(facets))]
    else:  # no facet: the metrics in a grid of (at most) two columns
        n_cols = 1 if len(drawn) == 1 else 2
        n_rows = math.ceil(len(drawn) / n_cols)
        cells = [(p_i, 0, p_i // n_cols, p_i % n_cols) for p_i in range(len(drawn))]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(min(16.0, panel_w * n_cols), 2.8 * n_rows + 1.0),
                             squeeze=False)  # fmt: skip
    for r_i in range(n_rows):
        for c_i in range(n_cols):
            if not any(r == r_i and c == c_i for _, _, r, c in cells):
                fig.delaxes(axes[r_i, c_i])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p_i, f_i, r_i, c_i in cells:
        key, label = drawn[p_i]
        facet_value = facets[f_i]
        subset = [r for r in rows if facet is None or r.get(facet) == facet_value]
        ax = axes[r_i, c_i]
        for s_i, s in enumerate(series):
            pts = {
                r.get(x): _value(r, key) for r in subset if r.get(line) == s and _value(r, key) is not None
            }
            if not pts:
                continue
            color = colors[s_i % len(colors)]
            if numeric_x:
                xv = [v for v in xs if v in pts]
                ax.plot(xv, [pts[v] for v in xv], marker="o", color=color, label=name_of(s))
            else:
                bar_w = 0.8 / len(series)
                pos = [i - 0.4 + bar_w * (s_i + 0.5) for i, v in enumerate(xs) if v in pts]
                vals = [pts[v] for v in xs if v in pts]
                if key in log_y:  # a bar on a log axis has no true base: markers, not joined
                    ax.plot(pos, vals, marker="o", linestyle="none", color=color, label=name_of(s))
                else:
                    ax.bar(pos, vals, width=bar_w, color=color, label=name_of(s))
        ax.set_ylabel(label, fontsize=8)
        if key in log_y:
            ax.set_yscale("log")
        if numeric_x:
            ax.set_xticks(xs)
        else:
            ax.set_xticks(range(len(xs)))
            ax.set_xlim(-0.5, len(xs) - 0.5)
            ax.set_xticklabels([str(v) for v in xs], rotation=20 if len(xs) > 3 else 0, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        if facet is not None and p_i == 0:
            ax.set_title(str(facet_value), fontsize=9)
        if r_i == n_rows - 1 or (facet is None and p_i + n_cols >= len(drawn)):
            ax.set_xlabel(x_label or x, fontsize=8)
    handles: dict[str, object] = {}  # one legend for the figure: every series, even one missing from a panel
    for ax in fig.axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), fontsize=7, title=legend_title, title_fontsize=7,
                   loc="upper right", ncol=min(len(handles), 4))  # fmt: skip
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    if missing:
        fig.text(0.01, 0.005, "not drawn, no value measured:\n" + "; ".join(missing), fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.06 if missing else 0, 1, 0.93))
    return fig


def _distinct(values) -> list:  # type: ignore[no-untyped-def]
    seen: list = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def replot(folder: Path) -> list[Path]:
    """Redraw the PNGs of every kernels*/train*/scaling* JSON in `folder` with today's plot code; returns them."""
    import json

    from normia.bench import kernels, scaling, train

    drawers = {"kernels": kernels.plot, "train": train.plot, "scaling": scaling.plot}
    written: list[Path] = []
    for path in sorted(Path(folder).glob("*.json")):
        doc = json.loads(path.read_text())
        draw = drawers.get(str(doc.get("benchmark", "")).split("_")[0]) if isinstance(doc, dict) else None
        if draw is None or path.stem == "train_overhead" or "rows" not in doc:
            continue
        for old in doc.get("plots") or []:
            (path.parent / old).unlink(missing_ok=True)
        written += draw(doc["rows"], path.parent, prefix=path.stem)
    return written


if __name__ == "__main__":
    for p in replot(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(p)
