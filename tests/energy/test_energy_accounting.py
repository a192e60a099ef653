"""The accounting against test doubles of the counter APIs: per-rank windows, once-per-node CPU, the sum over ranks,
requeue accumulation, unit conversions, wrap-around, missing counters and labelled estimates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fakes import FakeCounter, add_joules, fake_powercap

from normia.energy.accounting import (
    EnergyWindows,
    accumulate,
    combine,
    gco2e,
    kind_label,
    kwh,
    report,
    summary_lines,
)
from normia.energy.counters import CounterSet, delta_j, open_counters, power_estimate

CPU = torch.device("cpu")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_unit_conversions_and_carbon() -> None:
    assert kwh(3.6e6) == pytest.approx(1.0)
    assert kwh(3600.0) == pytest.approx(1e-3)
    assert gco2e(2.0, pue=1.5, carbon_intensity_g_per_kwh=21.7) == pytest.approx(2.0 * 1.5 * 21.7)


def test_windows_split_training_from_validation_and_report_the_figures() -> None:
    gpu, clock = FakeCounter(5_000.0), Clock()
    windows = EnergyWindows(CounterSet([gpu.counter()]), clock)
    windows.begin("train")
    gpu.joules += 7_200.0
    clock.t += 10.0
    windows.add_units(samples=64, tokens=64 * 128)
    windows.begin("val")  # closes the training window
    gpu.joules += 360.0
    clock.t += 1.0
    windows.begin("train")
    gpu.joules += 3_600.0
    clock.t += 5.0
    windows.add_units(samples=32, tokens=32 * 128)
    windows.end()
    gpu.joules += 1e6  # after the end: not counted
    rec = windows.snapshot()
    assert rec["joules"]["train"] == {"gpu": pytest.approx(10_800.0)}
    assert rec["joules"]["val"] == {"gpu": pytest.approx(360.0)}
    assert rec["seconds"] == {"train": pytest.approx(15.0), "val": pytest.approx(1.0)}

    rep = report(rec, pue=1.2, carbon_intensity_g_per_kwh=21.7)
    m = rep["metrics"]
    assert m["energy/train_kwh"] == pytest.approx(10_800 / 3.6e6)
    assert m["energy/train_gpu_kwh"] == pytest.approx(10_800 / 3.6e6)
    assert m["energy/val_kwh"] == pytest.approx(360 / 3.6e6)
    assert m["energy/kwh"] == pytest.approx(11_160 / 3.6e6)
    assert m["energy/train_mean_power_w"] == pytest.approx(10_800 / 15.0)
    assert m["energy/train_j_per_sample"] == pytest.approx(10_800 / 96)
    assert m["energy/train_j_per_token"] == pytest.approx(10_800 / (96 * 128))
    assert m["energy/train_tokens_per_kwh"] == pytest.approx(96 * 128 / (10_800 / 3.6e6))
    assert m["energy/gco2e"] == pytest.approx(11_160 / 3.6e6 * 1.2 * 21.7)
    assert rep["tags"]["normia.energy.gpu"] == "measured: fake total energy (1 counter)"
    assert rep["tags"]["normia.energy.total"] == "measured: gpu"
    assert "PUE 1.2 x 21.7 gCO2e/kWh" in rep["tags"]["normia.energy.gco2e"]
    assert not any(k.endswith("_estimate") for k in m)


def test_snapshot_mid_window_counts_nothing_twice() -> None:
    gpu = FakeCounter()
    windows = EnergyWindows(CounterSet([gpu.counter()]))
    windows.begin("train")
    gpu.joules += 10.0
    assert windows.snapshot()["joules"]["train"]["gpu"] == pytest.approx(10.0)  # a checkpoint mid-training
    gpu.joules += 5.0
    windows.end()
    assert windows.snapshot()["joules"]["train"]["gpu"] == pytest.approx(15.0)


def test_counter_wraparound_and_a_counter_that_went_back() -> None:
    assert delta_j(9.0, 1.0, wrap_j=10.0) == pytest.approx(2.0)  # RAPL wraps at max_energy_range_uj
    assert delta_j(9.0, 1.0, wrap_j=None) == 0.0  # NVML reset by a driver reload: nothing invented
    rapl = FakeCounter(joules=262_000.0, wrap_j=262_143.32885)
    windows = EnergyWindows(CounterSet([rapl.counter("cpu", "rapl cpu energy of intel-rapl:0")]))
    windows.begin("train")
    rapl.joules += 500.0  # wraps past the range once
    windows.end()
    assert windows.snapshot()["joules"]["train"]["cpu"] == pytest.approx(500.0)


def test_ranks_sum_and_the_cpu_is_counted_once_per_node(tmp_path: Path) -> None:
    """2 nodes x 2 ranks: every rank reads its own GPU; only local rank 0 reads its node's RAPL."""
    nodes = [fake_powercap(tmp_path / f"node{n}") for n in range(2)]
    ranks = []
    for node, root in enumerate(nodes):
        for local in range(2):
            counters = open_counters(CPU, node_leader=local == 0, rapl_root=root)
            gpu = FakeCounter()
            counters.counters.append(gpu.counter(source=f"fake total energy of GPU-{node}{local}"))
            ranks.append((root, local, gpu, EnergyWindows(counters)))
    assert [sorted({c.kind for c in w.counters.counters}) for *_, w in ranks] == [
        ["cpu", "dram", "gpu"], ["gpu"], ["cpu", "dram", "gpu"], ["gpu"],
    ]  # fmt: skip
    for *_, w in ranks:
        w.begin("train")
    for root in nodes:  # each node's package spends 100 J and its DRAM 10 J, whichever rank made it work
        add_joules(root / "intel-rapl:0", 100.0)
        add_joules(root / "intel-rapl:0:1", 10.0)
        add_joules(root / "intel-rapl:0:0", 55.0)  # the core sub-domain: inside the package, never added
    for i, (*_, gpu, w) in enumerate(ranks):
        gpu.joules += 1_000.0 * (i + 1)
        w.add_units(8, 0)
    for *_, w in ranks:
        w.end()
    total = combine(w.snapshot() for *_, w in ranks)
    assert total["joules"]["train"] == {
        "gpu": pytest.approx(10_000.0),
        "cpu": pytest.approx(200.0),  # 2 nodes x 100 J, not 4 ranks x 100 J
        "dram": pytest.approx(20.0),
    }
    assert total["samples"] == 32
    assert kind_label(total["kinds"]["gpu"]) == "measured: fake total energy (4 counters)"
    assert kind_label(total["kinds"]["cpu"]) == "measured: rapl cpu energy (2 counters)"


def test_requeue_accumulates_into_the_same_totals() -> None:
    def attempt(joules: float, seconds: float, samples: int) -> dict:
        gpu, clock = FakeCounter(), Clock()
        w = EnergyWindows(CounterSet([gpu.counter()]), clock)
        w.begin("train")
        gpu.joules += joules
        clock.t += seconds
        w.add_units(samples, 0)
        w.end()
        return w.snapshot()

    first = accumulate(None, attempt(100.0, 10.0, 4))
    both = accumulate(first, attempt(50.0, 5.0, 2))
    assert both["joules"]["train"]["gpu"] == pytest.approx(150.0)
    assert both["seconds"]["train"] == pytest.approx(15.0)  # attempts follow each other: their times add
    assert both["samples"] == 6
    assert both["kinds"]["gpu"]["sources"] == ["fake total energy of GPU-0"]  # same GPU, not two


def test_seconds_of_ranks_running_side_by_side_do_not_add_up() -> None:
    recs = []
    for seconds in (10.0, 12.0):
        gpu, clock = FakeCounter(), Clock()
        w = EnergyWindows(CounterSet([gpu.counter()]), clock)
        w.begin("train")
        gpu.joules, clock.t = 600.0, clock.t + seconds
        w.end()
        recs.append(w.snapshot())
    total = combine(recs)
    assert total["seconds"]["train"] == pytest.approx(12.0)
    assert report(total, 1.0, 21.7)["metrics"]["energy/train_mean_power_w"] == pytest.approx(1200.0 / 12.0)


def test_a_missing_counter_gives_no_figure_but_the_reason(tmp_path: Path) -> None:
    counters = open_counters(CPU, node_leader=True, rapl_root=tmp_path / "absent")
    assert counters.counters == []
    assert "does not exist" in counters.missing["cpu"]
    w = EnergyWindows(counters)
    w.begin("train")
    w.end()
    rep = report(w.snapshot(), 1.0, 21.7)
    assert rep["metrics"] == {}
    assert rep["tags"]["normia.energy.cpu"].startswith("not measured: ")
    assert rep["tags"]["normia.energy.total"].startswith("not measured: ")
    assert rep["tags"]["normia.energy.gco2e"].startswith("not measured: ")
    assert any("cpu, dram: not measured: " in line for line in summary_lines(rep))


def test_an_estimate_is_made_only_when_asked_and_labelled_everywhere(tmp_path: Path) -> None:
    root = tmp_path / "absent"
    assert open_counters(CPU, True, estimate=False, cpu_tdp_w=200.0, rapl_root=root).counters == []
    no_tdp = open_counters(CPU, True, estimate=True, rapl_root=root)
    assert no_tdp.counters == [] and "energy.cpu_tdp_w is not set" in no_tdp.missing["cpu"]

    clock = Clock()
    tdp = power_estimate("cpu", 200.0, "energy.cpu_tdp_w", clock=clock)
    gpu = FakeCounter()
    counters = CounterSet([gpu.counter(), tdp], {"cpu": "no RAPL here"})
    w = EnergyWindows(counters, clock)
    w.begin("train")
    gpu.joules += 3_600.0
    clock.t += 18.0  # 200 W x 18 s = 3600 J estimated
    w.end()
    rep = report(w.snapshot(), 1.0, 21.7)
    m = rep["metrics"]
    assert m["energy/train_cpu_kwh_estimate"] == pytest.approx(1e-3)
    assert m["energy/train_gpu_kwh"] == pytest.approx(1e-3)  # the measured part keeps its plain name
    assert m["energy/train_kwh_estimate"] == pytest.approx(2e-3)  # a total with an estimated part is one
    assert "energy/train_kwh" not in m and "energy/gco2e" not in m and "energy/gco2e_estimate" in m
    assert rep["tags"]["normia.energy.cpu"].startswith("estimate: energy.cpu_tdp_w 200 W x time")
    assert "not measured: no RAPL here" in rep["tags"]["normia.energy.cpu"]
    assert rep["tags"]["normia.energy.total"].startswith("estimate: ")
    assert rep["tags"]["normia.energy.gco2e"].startswith("estimate: ")
    assert "ESTIMATE" in summary_lines(rep)[0]


def test_a_rank_without_its_counter_makes_the_figure_partial() -> None:
    measured = EnergyWindows(CounterSet([FakeCounter().counter()]))
    missing = EnergyWindows(CounterSet([], {"gpu": "NVML energy counter not readable: Not Supported"}))
    total = combine([measured.snapshot(), missing.snapshot()])
    label = kind_label(total["kinds"]["gpu"])
    assert label.startswith("partial: measured: fake total energy (1 counter)") and "Not Supported" in label
