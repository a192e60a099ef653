"""The benchmark figures a person reads: units on every axis, series named in words, no empty panels, categorical
shapes not joined by lines (issue 15)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from matplotlib.lines import Line2D

from normia.bench.plots import figure
from normia.bench.train import train_figure


def _train_row(model: str, compiled: bool, tokens: float) -> dict:
    # as on a CPU: no MFU (no bf16 peak for CPUs), no energy counter
    return {"model": model, "compile": compiled, "status": "ok", "dtype": "float32", "tokens_per_s": tokens,
            "step_ms": 1e5 / tokens, "pct_of_matmul": 10.0, "mfu": None, "peak_mem_gb": 0.1, "wh_per_mtok": None}  # fmt: skip


def _legend_words(fig) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_train_figure_draws_only_measured_panels_with_units_and_words() -> None:
    rows = [_train_row(m, c, t) for m, c, t in (("tiny", False, 7000.0), ("tiny", True, 7500.0),
                                                ("small", False, 1100.0), ("small", True, 1400.0))]  # fmt: skip
    fig = train_figure([*rows, {"model": "1b", "compile": False, "status": "skipped"}])
    axes = fig.axes
    assert len(axes) == 4  # tokens/s, step time, % of matmul, memory: MFU and energy had no value
    for ax in axes:
        assert ax.has_data(), ax.get_ylabel()
        assert "(" in ax.get_ylabel() and ")" in ax.get_ylabel()  # a unit
        assert [t.get_text() for t in ax.get_xticklabels()] == ["tiny", "small"]
    assert sorted(_legend_words(fig)) == ["eager", "torch.compile"]
    assert "MFU" in " ".join(t.get_text() for t in fig.texts)  # the footnote says what was not drawn


def test_categorical_shapes_are_never_joined_by_lines() -> None:
    rows = [{"shape": s, "provider": p, "pass": "fwd", "median_ms": ms, "pct_of_limit": pct}
            for s, p, ms, pct in (("64x128", "triton", 0.1, 40.0), ("4096x4096", "triton", 1.0, 80.0),
                                  ("64x128", "eager", 0.2, 20.0), ("4096x4096", "eager", 2.0, 40.0))]  # fmt: skip
    fig = figure(rows, x="shape", panels=[("median_ms", "time (ms)"), ("pct_of_limit", "% of limit (%)")],
                 line="provider", facet="pass", title="t", log_y=("median_ms",),
                 series_label={"triton": "normia Triton", "eager": "PyTorch eager"}.get)  # fmt: skip
    for ax in fig.axes:
        for line in ax.get_lines():
            assert isinstance(line, Line2D) and line.get_linestyle() in ("None", "none", ""), "a joined line"
    assert fig.axes[1].patches  # % of limit: bars
    assert sorted(_legend_words(fig)) == ["PyTorch eager", "normia Triton"]


def test_numeric_x_keeps_lines() -> None:
    rows = [{"ranks": n, "backend": "gloo", "tokens_per_s": 100.0 * n} for n in (1, 2, 4)]
    fig = figure(
        rows, x="ranks", panels=[("tokens_per_s", "tokens/s (all ranks)")], line="backend", title="t"
    )
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1, 2, 4]
