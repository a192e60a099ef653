"""Issue 25 D6: `normia bench kernels` on a CPU pins its threads and says why, flags rows whose timings spread or
exceed the measured limit, says what was skipped (also in the plots) and gives each provider's speed against eager.

Timings here are faked where a flag must appear (a real tiny timing is noisy or not by chance)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from schema import load_run

from normia.bench import kernels
from normia.bench.cli import main
from normia.bench.limits import MeasuredLimits
from normia.bench.quality import SPREAD_LIMIT, row_flags, spread, summary_lines
from normia.bench.threads import cgroup_cpu_quota, choose_cpu_threads, physical_cores
from normia.bench.timing import Timing
from normia.errors import UserError

ARGS = ["kernels", "--kernels", "swiglu", "--providers", "triton", "reference", "eager", "--shapes", "16x32"]


@pytest.fixture
def keep_threads():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# --- threads ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("physical", "quota", "load", "threads"),
    [(2, None, 6.1, 1), (2, None, 0.1, 2), (16, None, 3.4, 13), (16, 4.0, 0.0, 4), (8, 2.5, 0.0, 3)],
)
def test_cpu_threads_are_the_allowed_physical_cores_nobody_else_uses(
    physical: int, quota: float | None, load: float, threads: int
) -> None:
    chosen, why = choose_cpu_threads(physical, quota, load)
    assert chosen == threads
    assert f"{physical} physical core" in why and f"load average {load:.1f}" in why


def test_hyperthreads_count_once_and_the_cgroup_quota_is_read(tmp_path: Path) -> None:
    for cpu, core in enumerate((0, 1, 0, 1)):  # 4 logical CPUs on 2 cores
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores({0, 1, 2, 3}, tmp_path / "missing") == 4
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cpu.max") == 2.0
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cpu.max") is None


def test_default_cpu_run_pins_threads_prints_and_records_them(
    tmp_path: Path, keep_threads: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("normia.bench.threads.physical_cores", lambda cpus: 3)
    monkeypatch.setattr("normia.bench.threads.cgroup_cpu_quota", lambda: None)
    monkeypatch.setattr("normia.bench.threads.load_average", lambda: 1.2)
    torch.set_num_threads(3)  # torch's own default would be every core
    argv = [*ARGS, "--providers", "eager", "--passes", "fwd", "--min-time", "0.01", "--no-plots"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    doc = load_run(tmp_path, "kernels")
    assert torch.get_num_threads() == 2 and doc["cpu_threads"] == 2
    assert "3 physical core" in doc["cpu_threads_reason"] and "load average 1.2" in doc["cpu_threads_reason"]
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("normia bench kernels on cpu") and "threads 2 (3 physical core" in header


def test_cpu_min_time_default_is_shorter_and_gpu_default_unchanged() -> None:
    from normia.bench.cli import CPU_MIN_TIME_S, GPU_MIN_TIME_S, _parser

    assert _parser().parse_args(["kernels"]).min_time is None  # chosen per device in _kernels
    assert GPU_MIN_TIME_S == 0.2 and CPU_MIN_TIME_S < GPU_MIN_TIME_S
    with pytest.raises(UserError, match="--min-time must be > 0"):
        main(["kernels", "--min-time", "0", "--out", "unused"])


# --- flags, ratios, skipped ------------------------------------------------------------------------------------


def test_row_flags() -> None:
    assert row_flags({"spread": 1.2, "pct_of_limit": 60.0}) == ""
    assert row_flags({"spread": SPREAD_LIMIT + 0.1, "pct_of_limit": 60.0}) == "noisy"
    assert row_flags({"spread": 1.0, "pct_of_limit": 1950.0}) == "over limit"
    assert row_flags({"spread": 40.0, "pct_of_limit": 101.0}) == "noisy; over limit"
    assert spread(0.5, 1.0) == 2.0 and spread(0.0, 1.0) is None  # None, not inf: the JSON has no infinity


def _fake_limits(*args: object, **kwargs: object) -> MeasuredLimits:
    """A copy bandwidth of 1 kB/s: every kernel shows far over 100% of it, as a disturbed limit measurement would."""
    quiet = Timing.from_samples([1.0] * 5, "fake")
    return MeasuredLimits(1e3, quiet, 1, 1e3, quiet, 1, "float32")


_PROVIDER: dict[str, str] = {}  # the provider being measured, for _fake_time_fn


def _fake_time_fn(fn, device, *, min_time_s):  # type: ignore[no-untyped-def]
    """The reference provider spreads 6x (p80/p20), eager does not; eager takes 2 ms, the reference 1 ms (p50)."""
    fn()
    if _PROVIDER["now"] == "reference":
        return Timing.from_samples([0.1, 0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0], "fake")
    return Timing.from_samples([2.0] * 5, "fake")


@pytest.fixture
def flagged_run(tmp_path: Path, keep_threads: None, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple:  # type: ignore[no-untyped-def]
    measure = kernels._measure

    def measure_noting_provider(*args):  # type: ignore[no-untyped-def]
        _PROVIDER["now"] = args[-1]
        return measure(*args)

    monkeypatch.setattr(kernels, "measure_limits", _fake_limits)
    monkeypatch.setattr(kernels, "time_fn", _fake_time_fn)
    monkeypatch.setattr(kernels, "_measure", measure_noting_provider)
    assert main([*ARGS, "--min-time", "0.01", "--threads", "1", "--no-plots", "--out", str(tmp_path)]) == 0
    return tmp_path, load_run(tmp_path, "kernels"), capsys.readouterr().out


def test_noisy_and_over_limit_rows_are_flagged_in_json_csv_and_markdown(flagged_run: tuple) -> None:
    out, doc, _stdout = flagged_run
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    assert ok and all(r["pct_of_limit"] > 100 and "over limit" in r["flag"] for r in ok)
    for row in ok:
        assert row["spread"] == pytest.approx(row["p80_ms"] / row["p20_ms"])
        assert ("noisy" in row["flag"]) == (row["provider"] == "reference")
    with (out / "kernels.csv").open() as f:
        table = list(csv.DictReader(f))
    assert {"spread", "flag", "x_eager"} <= set(table[0])
    assert all("over limit" in r["flag"] for r in table if r["status"] == "ok")
    md_rows = [line for line in (out / "kernels.md").read_text().splitlines() if "| ok |" in line]
    assert md_rows and all("over limit" in line for line in md_rows)  # no figure over 100% without its flag


def test_end_of_run_warns_once_per_kind_and_says_what_was_skipped(flagged_run: tuple) -> None:
    _out, doc, stdout = flagged_run
    end = stdout[stdout.index("results: ") :].splitlines()[1:]
    n_ok = sum(r["status"] == "ok" for r in doc["rows"])
    assert [line for line in end if "noisy" in line] == [
        f"warning: 3 of {n_ok} rows are noisy (p80/p20 > 1.5): their medians are uncertain; rerun on a quiet "
        "machine or with a longer --min-time"  # it ran with one thread: no advice to use fewer
    ]
    assert sum("more than 100% of the measured limit" in line for line in end) == 1
    assert [line for line in end if line.startswith("skipped: ")] == [
        "skipped: triton (skipped, 1 rows: swiglu): normia's Triton kernels need a CUDA GPU"
    ]
    assert doc["skipped"] == [{"provider": "triton", "status": "skipped", "rows": 1, "kernels": ["swiglu"],
                               "reason": "normia's Triton kernels need a CUDA GPU"}]  # fmt: skip


def test_speed_against_eager_per_kernel_shape_and_pass(flagged_run: tuple) -> None:
    out, doc, _stdout = flagged_run
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    assert {r["pass"] for r in ok} == {"fwd", "bwd", "fwd+bwd"}
    for row in ok:  # eager 2 ms, reference 1 ms: twice as fast as eager
        assert row["x_eager"] == pytest.approx(1.0 if row["provider"] == "eager" else 2.0)
    md = (out / "kernels.md").read_text()
    assert (
        "x_eager"
        in md.splitlines()[next(i for i, s in enumerate(md.splitlines()) if s.startswith("| kernel"))]
    )


def test_plot_titles_say_what_was_skipped_and_draw_the_eager_ratio(
    flagged_run: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, doc, _stdout = flagged_run
    drawn: list[dict] = []
    monkeypatch.setattr(kernels, "line_plot", lambda rows, path, **kw: drawn.append({"rows": rows, **kw}))
    for row in doc["rows"]:
        row.pop("x_eager", None)  # as in a JSON file written before the ratios: the plot computes them
    kernels.plot(doc["rows"], out)
    (fig,) = drawn
    assert "triton: skipped (no GPU)" in fig["title"]
    assert "flagged rows (see the JSON's 'flag'): 6 over limit, 3 noisy" in fig["title"]
    assert "x_eager" in [key for key, _label in fig["panels"]]
    assert all(r.get("x_eager") for r in fig["rows"])


def test_warnings_for_a_noisy_limit() -> None:
    doc = {"rows": [], "limit_spread": {"copy": 3.0, "matmul": 1.1}}
    assert summary_lines(doc) == [
        "warning: the copy limit itself was noisy (p80/p20 3): every '% of limit' is uncertain"
    ]
