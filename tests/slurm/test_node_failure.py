"""Which failures are a node's fault (issue 23): NCCL and GPU errors are, errors of the code are not; outside Slurm
nothing is requeued. The requeue itself runs against the tests' Slurm cluster in test_slurm_launch.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from normia.launch import events
from normia.launch.node_failure import hardware_fault, requeue_excluding


@pytest.mark.parametrize(
    "message",
    [
        "NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:317, unhandled system error, NCCL version 2.21.5",
        "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely.",
        "CUDA error: uncorrectable ECC error encountered",
        "CUDA error: unspecified launch failure",
        "RuntimeError: No CUDA GPUs are available\nCUDA-capable device(s) is/are busy or unavailable",
        "NVRM: Xid (PCI:0000:41:00): 79, GPU has fallen off the bus.",
    ],
)
def test_nccl_and_gpu_errors_are_faults_of_the_node(message: str) -> None:
    assert hardware_fault(RuntimeError(message))


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 6x2)"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: device-side assert triggered"),
        KeyError("val/acc"),
        ValueError("injected failure on rank 1 at step 2"),
    ],
)
def test_errors_of_the_code_are_not(error: BaseException) -> None:
    assert hardware_fault(error) is None


def test_a_fault_raised_from_another_error_is_found_through_its_cause() -> None:
    try:
        try:
            raise RuntimeError(
                "ncclSystemError: System call (e.g. socket, malloc) or external library call failed"
            )
        except RuntimeError as inner:
            raise RuntimeError("DDP: gradient all-reduce failed") from inner
    except RuntimeError as outer:
        assert hardware_fault(outer) == (
            "ncclSystemError: System call (e.g. socket, malloc) or external library call failed"
        )


def test_outside_slurm_nothing_is_requeued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert requeue_excluding(["node2"], "hang", tmp_path, max_requeues=3) is None
    assert events.read(tmp_path) == []


def test_restarts_used_up_are_not_requeued_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    assert requeue_excluding(["node2"], "hang", tmp_path, max_requeues=3) is None
    assert (
        "not requeued away from node2: already restarted 3 times (launcher.max_requeues=3)"
        in capsys.readouterr().out
    )
    [event] = events.read(tmp_path)
    assert event["event"] == "not_requeued" and event["nodes"] == ["node2"]
