"""Which counter each rank reads: only this job's GPU (CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES / its UUID or PCI
address), RAPL's package and DRAM domains; and the real RAPL path where /sys/class/powercap is readable."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fakes import FakeAmdsmi, FakeNvml, add_joules, fake_powercap

from normia.energy.counters import (
    RAPL_ROOT,
    CounterSet,
    amdsmi_gpu_counter,
    nvml_gpu_counter,
    open_counters,
    rapl_counters,
)

UUIDS = [f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd" for i in range(4)]


def test_nvml_reads_the_ranks_gpu_by_uuid_not_every_gpu_of_the_node() -> None:
    nvml = FakeNvml(UUIDS)
    counter, why = nvml_gpu_counter(0, uuid=UUIDS[2].removeprefix("GPU-"), pynvml=nvml)
    assert why == "" and counter is not None and counter.source.endswith(UUIDS[2])
    start = counter.read_j()
    nvml.millijoules[2] += 12_500  # NVML counts millijoules
    nvml.millijoules[0] += 99_000_000  # another job's GPU on the same node: not ours
    assert counter.read_j() - start == pytest.approx(12.5)


def test_nvml_without_uuid_maps_through_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(UUIDS)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    counter, _ = nvml_gpu_counter(1, pynvml=nvml)  # this process's cuda:1 is the node's GPU 3
    assert counter is not None and counter.source.endswith("GPU 3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUIDS[1]},{UUIDS[0]}")
    counter, _ = nvml_gpu_counter(0, pynvml=nvml)
    assert counter is not None and counter.source.endswith(UUIDS[1])


def test_nvml_refuses_a_mig_slice_and_says_why_when_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-5c0d1e2f-0000-1111-2222-333344445555")
    counter, why = nvml_gpu_counter(0, pynvml=FakeNvml(UUIDS))
    assert counter is None and "MIG" in why and "shared with other jobs" in why
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    counter, why = nvml_gpu_counter(7, pynvml=FakeNvml(UUIDS))
    assert counter is None and why.startswith("NVML energy counter not readable")


def test_amdsmi_reads_the_accumulator_times_its_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    for old_key in (False, True):
        smi = FakeAmdsmi(["0000:c1:00.0", "0000:c2:00.0"], old_key=old_key)
        counter, why = amdsmi_gpu_counter(0, bdf="0000:C2:00.0", amdsmi=smi)
        assert why == "" and counter is not None and "0000:C2:00.0" in counter.source
        start = counter.read_j()
        smi.ticks[1] += 1_000_000
        assert counter.read_j() - start == pytest.approx(15.3)  # 1e6 ticks x 15.3 uJ
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    counter, _ = amdsmi_gpu_counter(0, amdsmi=FakeAmdsmi(["0000:c1:00.0", "0000:c2:00.0"]))
    assert counter is not None and counter.source.endswith("AMD GPU 1")


def test_rapl_package_and_dram_domains_of_a_fake_powercap_tree(tmp_path: Path) -> None:
    root = fake_powercap(tmp_path, packages=2, dram=True)
    psys = root / "intel-rapl:2"  # the platform domain spans the packages: never added
    psys.mkdir()
    (psys / "name").write_text("psys\n")
    (psys / "energy_uj").write_text("5\n")
    counters, why = rapl_counters(root)
    assert why == ""
    assert [(c.kind, c.source) for c in counters] == [
        ("cpu", "rapl cpu energy of intel-rapl:0"),
        ("dram", "rapl dram energy of intel-rapl:0:1"),
        ("cpu", "rapl cpu energy of intel-rapl:1"),
        ("dram", "rapl dram energy of intel-rapl:1:1"),
    ]
    found = CounterSet(counters)
    start = found.read()
    add_joules(root / "intel-rapl:1", 3.0)
    add_joules(root / "intel-rapl:0:1", 0.5)
    assert found.joules_by_kind(start, found.read()) == {
        "cpu": pytest.approx(3.0),
        "dram": pytest.approx(0.5),
    }


def test_amd_cpus_have_no_dram_domain_and_say_so(tmp_path: Path) -> None:
    counters = open_counters("cpu", node_leader=True, rapl_root=fake_powercap(tmp_path, dram=False))
    assert [c.kind for c in counters.counters] == ["cpu"]
    assert "no RAPL dram domain" in counters.missing["dram"]


def _rapl_readable() -> tuple[bool, str]:
    counters, why = rapl_counters(RAPL_ROOT)
    return bool(counters), why


@pytest.mark.skipif(not _rapl_readable()[0], reason=f"no readable RAPL here: {_rapl_readable()[1]}")
def test_real_rapl_counts_the_energy_of_real_work() -> None:
    found = open_counters("cpu", node_leader=True)
    start = found.read()
    t0 = time.perf_counter()
    x = 0
    while time.perf_counter() - t0 < 0.5:
        x += sum(range(10_000))
    joules = found.joules_by_kind(start, found.read())
    assert joules["cpu"] > 0  # half a second of a busy core: some energy, however idle the rest
    assert joules["cpu"] / 0.5 < 5_000  # and less than any CPU package draws


def test_this_machine_gives_a_figure_or_a_reason() -> None:
    found = open_counters("cpu", node_leader=True)
    assert found.counters or found.missing["cpu"], "neither a counter nor the reason for its absence"
    if not os.access(RAPL_ROOT, os.R_OK):
        assert found.missing["cpu"]


def test_nvml_falls_back_to_the_visible_devices_when_the_uuid_is_spelt_differently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    counter, why = nvml_gpu_counter(0, uuid="not-a-uuid-nvml-knows", pynvml=FakeNvml(UUIDS))
    assert why == "" and counter is not None and counter.source.endswith("GPU 3")
