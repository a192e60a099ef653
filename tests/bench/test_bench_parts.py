"""The shared parts of normia bench: timing summary, peak memory on CPU, RAPL energy reading, device names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from normia.bench.device import describe, resolve_device
from normia.bench.energy import (
    _rapl_meter,
    j_per_unit,
    nvml_energy_meter,
    open_meter,
    tokens_per_kwh,
    wh_per_million,
)
from normia.bench.memory import peak_bytes
from normia.bench.timing import Timing, time_fn
from normia.errors import UserError


def test_timing_summary_is_median_and_20_80_percentiles() -> None:
    t = Timing.from_samples([5.0, 1.0, 3.0, 2.0, 4.0], "test")
    assert (t.p20_ms, t.median_ms, t.p80_ms) == pytest.approx((1.8, 3.0, 4.2))
    with pytest.raises(ValueError):
        Timing.from_samples([], "test")


def test_cpu_timing_measures_real_work() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # OpenMP threads on a shared, loaded machine make a tiny matmul take milliseconds
    try:
        _check_cpu_timing()
    finally:
        torch.set_num_threads(threads)


def _check_cpu_timing() -> None:
    a = torch.randn(64, 64)
    small = time_fn(lambda: a @ a, torch.device("cpu"), min_time_s=0.02)
    b = torch.randn(512, 512)
    big = time_fn(lambda: b @ b, torch.device("cpu"), min_time_s=0.02)
    assert len(small.samples_ms) >= 5 and small.median_ms > 0
    assert big.median_ms > 4 * small.median_ms  # 512x the FLOPs; a loose bound for a shared machine


def test_cpu_peak_memory_counts_live_allocations_not_freed_ones() -> None:
    mb = 2**20

    def two_live() -> object:
        a = torch.empty(mb, dtype=torch.uint8)
        b = torch.empty(2 * mb, dtype=torch.uint8)
        return a, b

    def one_at_a_time() -> None:
        for _ in range(3):
            x = torch.empty(mb, dtype=torch.uint8)
            del x

    assert peak_bytes(two_live, torch.device("cpu")) == 3 * mb
    assert peak_bytes(one_at_a_time, torch.device("cpu")) == mb


def test_rapl_counters_summed_over_packages_with_wraparound(tmp_path: Path) -> None:
    for pkg, energy in (("intel-rapl:0", 1_000_000), ("intel-rapl:1", 2_000_000)):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "energy_uj").write_text(str(energy))
        (tmp_path / pkg / "max_energy_range_uj").write_text("10000000")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-domain (core), already inside its package: not added
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("999999999")
    meter, note = _rapl_meter(tmp_path)
    assert meter is not None and "2 package" in note
    start = meter.read()
    assert start == pytest.approx([1.0, 2.0])
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("500000")  # wrapped past 10 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("2500000")
    assert meter.joules_since(start) == pytest.approx(9.5 + 0.5)


def test_missing_energy_counter_says_why(tmp_path: Path) -> None:
    meter, note = _rapl_meter(tmp_path / "absent")
    assert meter is None and "does not exist" in note
    meter, note = open_meter(torch.device("cpu"))
    if meter is None:  # this VM: no readable RAPL
        assert note.startswith("not measured: cpu")
    else:
        assert note.startswith("measured: rapl")


def test_energy_unit_conversions() -> None:
    assert wh_per_million(3600.0, 1e6) == pytest.approx(1.0)  # 1 Wh over a million tokens
    assert j_per_unit(7.2, 1_000) == pytest.approx(7.2e-3)
    assert tokens_per_kwh(3.6e6, 5e8) == pytest.approx(5e8)  # 1 kWh for 5e8 tokens
    assert j_per_unit(36.0, 1e4) * tokens_per_kwh(36.0, 1e4) == pytest.approx(3.6e6)


def test_device_names_and_bad_devices() -> None:
    info = describe(torch.device("cpu"))
    assert info.name.startswith("cpu: ") and info.slug == "cpu"
    with pytest.raises(UserError, match="auto, cpu or cuda"):
        resolve_device("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_nvml_meter_reads_millijoules_as_one_counter() -> None:
    """A test double for NVML's counter (no test machine has a GPU energy counter); the real one runs in
    benchmarks/gpu/run_all.sh. The first GPU run crashed here: the reader returned a float, not a list."""

    class FakeNvml:
        millijoules = 5_000_000

        def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
            return self.millijoules

    nvml = FakeNvml()
    meter = nvml_energy_meter(nvml, handle=object())
    start = meter.read()
    nvml.millijoules += 7_500
    assert meter.joules_since(start) == pytest.approx(7.5)


@pytest.mark.parametrize("interrupted_at", [0, 1, 2])
def test_an_interrupt_between_the_json_and_the_csv_of_a_row_leaves_them_agreeing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted_at: int
) -> None:
    """SIGTERM is raised as KeyboardInterrupt wherever the run is; after the JSON of row N is written and before its
    CSV line is, the finished files must still hold the same rows (the CI failure of stop 33)."""
    import csv

    from normia.bench import results

    writer = results.ResultsWriter(tmp_path, "kernels", {"device": "cpu"}, ["kernel", "ms"])
    real_cell = results._csv_cell
    calls = {"n": 0}

    def cell_interrupted_once(value: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2 * interrupted_at + 1:  # the first cell of row `interrupted_at`
            raise KeyboardInterrupt
        return real_cell(value)

    monkeypatch.setattr(results, "_csv_cell", cell_interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        for i in range(3):
            writer.add({"kernel": f"k{i}", "ms": 0.5 * (i + 1)})
    monkeypatch.setattr(results, "_csv_cell", real_cell)
    writer.finish("interrupted")
    with writer.csv_path.open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["kernel", "ms"]
    assert (
        [r[0] for r in table[1:]]
        == [r["kernel"] for r in writer.rows]
        == [f"k{i}" for i in range(interrupted_at + 1)]
    )
    assert not list(tmp_path.glob("*.tmp"))
