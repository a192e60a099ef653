"""The pre-flight check's network part over real gloo process groups (issue 23): every pair measured once, a rank
made slow in the pair exchange is flagged with its figure, a healthy group passes, and the floor is not judged on
gloo. Runs without the Slurm cluster; the job-side path runs on it in test_slurm_launch.py."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from itertools import combinations
from pathlib import Path

import pytest
import torch.distributed as dist

from normia.launch.node_check import (
    RankReport,
    Verdict,
    check_nodes,
    device_report,
    exchange,
    group_problems,
    judge,
    round_robin,
)


@pytest.mark.parametrize("world", [2, 3, 4, 5, 8])
def test_round_robin_meets_every_pair_once_in_disjoint_rounds(world: int) -> None:
    rounds = round_robin(world)
    assert len(rounds) == (world - 1 if world % 2 == 0 else world)
    met = [tuple(sorted(pair)) for pairs in rounds for pair in pairs]
    assert sorted(met) == sorted(combinations(range(world), 2))
    for pairs in rounds:
        ranks = [r for pair in pairs for r in pair]
        assert len(ranks) == len(set(ranks))


def report(rank: int, gbps: float, problems: list[str] | None = None) -> RankReport:
    return RankReport(rank, f"node{rank}", "cpu", problems or [], [], {99: gbps})


def test_judge_names_the_slow_rank_and_device_problems() -> None:
    ranks = [report(0, 4.0), report(1, 0.5), report(2, 4.2), report(3, 3.9, ["uncorrected ECC errors: 2"])]
    failed = judge(ranks, slow_factor=3.0)
    assert sorted(failed) == ["node1", "node3"]
    assert "pair bandwidth 0.50 GB/s" in failed["node1"][0] and "median" in failed["node1"][0]
    assert failed["node3"] == ["rank 3: uncorrected ECC errors: 2"]
    # two ranks share their only pair: nobody is singled out
    assert judge([report(0, 4.0), report(1, 0.1)], 3.0) == {}


def test_the_floor_is_a_figure_of_the_group_judged_with_nccl_only() -> None:
    slow = [{"bytes": 32.0 * 2**20, "seconds": 1.0, "busbw_gbps": 1.0}]
    [problem] = group_problems(4, slow, floor_gbps=100.0, judge_floor=True)
    assert "1.0 GB/s at 32 MiB is under the partition's floor 100 GB/s" in problem
    assert group_problems(4, slow, floor_gbps=100.0, judge_floor=False) == []  # gloo: measured, not judged
    assert group_problems(1, slow, floor_gbps=100.0, judge_floor=True) == []  # one rank moves no bytes
    assert group_problems(4, slow, floor_gbps=None, judge_floor=True) == []


def test_a_gpu_that_fails_to_answer_is_a_problem_of_its_node(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def broken() -> bool:
        raise RuntimeError("CUDA error: uncorrectable ECC error encountered")

    monkeypatch.setattr(torch.cuda, "is_available", broken)  # what a broken GPU does to the first CUDA call
    report_ = device_report(3, "node7")
    assert report_.problems == ["the GPU failed to answer: CUDA error: uncorrectable ECC error encountered"]
    assert judge([report_], 3.0) == {"node7": ["rank 3: the GPU failed to answer: CUDA error: uncorrectable ECC "
                                              "error encountered"]}  # fmt: skip


def _rank(rank: int, world: int, store: str, slow_rank: int, delay_s: float, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)

    def slow_link(partner: int, send, receive) -> None:
        if rank == slow_rank:
            time.sleep(delay_s)
        exchange(partner, send, receive)

    verdict = check_nodes(f"host{rank}", floor_gbps=1000.0, slow_factor=3.0, do_exchange=slow_link)
    Path(out, f"rank{rank}.json").write_text(verdict.to_json())
    dist.destroy_process_group()


def run_group(tmp_path: Path, world: int, slow_rank: int = -1, delay_s: float = 0.0) -> list[Verdict]:
    context = mp.get_context("spawn")
    procs = [
        context.Process(
            target=_rank, args=(r, world, str(tmp_path / "store"), slow_rank, delay_s, str(tmp_path))
        )
        for r in range(world)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    return [Verdict.from_json((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.mark.slow
def test_a_rank_made_slow_in_the_pair_exchange_fails_and_is_named(tmp_path: Path) -> None:
    verdicts = run_group(tmp_path, world=4, slow_rank=2, delay_s=0.2)
    assert all(v.failed == verdicts[0].failed for v in verdicts), "every rank must reach the same verdict"
    assert list(verdicts[0].failed) == ["host2"], verdicts[0].lines()
    assert "rank 2: pair bandwidth" in verdicts[0].failed["host2"][0]
    assert (
        "not judged on this backend" in verdicts[0].lines()[0]
    )  # the 1000 GB/s floor is measured, not judged


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_a_healthy_group_passes_and_reports_its_figures(tmp_path: Path, world: int) -> None:
    verdict = run_group(tmp_path, world=world)[0]
    assert verdict.failed == {} and verdict.world_size == world and verdict.backend == "gloo"
    assert [row["bytes"] for row in verdict.allreduce] == [2**20, 8 * 2**20, 32 * 2**20]
    assert all(row["busbw_gbps"] > 0 for row in verdict.allreduce)
    assert all(len(r.pair_gbps) == world - 1 for r in verdict.ranks)
    print(
        f"\nMEASURED pre-flight, {world} gloo ranks on one machine:", json.dumps({"seconds": verdict.seconds})
    )


def _one_gpu_rank(store: str, out: str) -> None:
    import torch

    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"file://{store}", rank=0, world_size=1)
    verdict = check_nodes("gpu-node")
    Path(out).write_text(verdict.to_json())
    dist.destroy_process_group()


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (NCCL, NVML)")
def test_on_a_gpu_the_device_is_read_through_nvml_and_nccl_is_timed(tmp_path: Path) -> None:
    """The GPU path of the pre-flight check (the GPU script's gpu-tests step): NCCL all-reduce figures, the device's
    name, NVML's counters read (nvidia-ml-py is in the bench extra), and a healthy GPU passes."""
    context = mp.get_context("spawn")
    proc = context.Process(target=_one_gpu_rank, args=(str(tmp_path / "store"), str(tmp_path / "v.json")))
    proc.start()
    proc.join(300)
    assert proc.exitcode == 0
    verdict = Verdict.from_json((tmp_path / "v.json").read_text())
    print(
        "\nMEASURED pre-flight on one GPU:",
        verdict.summary(),
        verdict.ranks[0].device,
        verdict.ranks[0].notes,
    )
    assert verdict.backend == "nccl" and verdict.ranks[0].device.startswith("cuda:0 ")
    assert not any("NVML" in note for note in verdict.ranks[0].notes), verdict.ranks[0].notes
    assert verdict.failed == {}, verdict.lines()
