"""Which failures are the machine's (issue 23): a GPU's own errors blame its node, NCCL network errors name no node,
errors of the code are neither; outside Slurm nothing is requeued. The requeue itself runs against the tests' Slurm
cluster in test_slurm_launch.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from normia.launch import events
from normia.launch.node_failure import hardware_fault, requeue_after_fault
from normia.tracking.node_metrics import serves_many_writers
from normia.training.watchdog import blamed_nodes


@pytest.mark.parametrize(
    "message",
    [
        "CUDA error: uncorrectable ECC error encountered",
        "NVRM: Xid (PCI:0000:41:00): 79, pid=1234, GPU has fallen off the bus.",
        "RuntimeError: CUDA error: CUDA-capable device(s) is/are busy or unavailable",
        "hipErrorECCNotCorrectable",
    ],
)
def test_a_gpus_own_errors_blame_its_node(message: str) -> None:
    fault = hardware_fault(RuntimeError(message))
    assert fault is not None and fault.kind == "device"


@pytest.mark.parametrize(
    "message",
    [
        "NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:317, unhandled system error, NCCL version 2.21.5",
        "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely.",
        "ncclInternalError: Internal check failed.",
    ],
)
def test_nccl_network_errors_are_the_machines_but_name_no_node(message: str) -> None:
    fault = hardware_fault(RuntimeError(message))
    assert fault is not None and fault.kind == "network"


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 6x2)"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: device-side assert triggered"),
        RuntimeError("CUDA error: unspecified launch failure"),  # often a kernel's own bug
        RuntimeError("NCCL error: invalid usage (ncclInvalidUsage), NCCL version 2.21.5"),
        RuntimeError("ncclUnhandledCudaError: Call to CUDA function failed. 'out of memory'"),
        ValueError("column 'Xid' not found; did you mean 'xid'?"),
        KeyError("val/acc"),
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
        fault = hardware_fault(outer)
    assert fault is not None and fault.kind == "network"
    assert fault.line == "ncclSystemError: System call (e.g. socket, malloc) or external library call failed"


def test_a_hang_on_every_node_blames_none() -> None:
    """The same local rank stuck on every node is the code's, not a node's; one node of a one-node job is blamed."""
    culprits = [{"rank": 1, "host": "a"}, {"rank": 3, "host": "b"}]
    assert blamed_nodes(culprits, 4, ["a", "a", "b", "b"]) == []
    assert blamed_nodes(culprits[:1], 4, ["a", "a", "b", "b"]) == ["a"]
    assert blamed_nodes([{"rank": 1, "host": "a"}], 2, ["a", "a"]) == ["a"]


def test_outside_slurm_nothing_is_requeued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert requeue_after_fault(["node2"], "hang", tmp_path, max_requeues=3) is None
    assert events.read(tmp_path) == []


def test_restarts_used_up_are_not_requeued_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    assert requeue_after_fault(["node2"], "hang", tmp_path, max_requeues=3) is None
    out = capsys.readouterr().out
    assert "not requeued away from node2: already restarted 3 times (launcher.max_requeues=3)" in out
    [event] = events.read(tmp_path)
    assert event["event"] == "not_requeued" and event["nodes"] == ["node2"]


@pytest.mark.parametrize(
    ("uri", "many"),
    [("http://mlflow:5000", True), ("https://x", True), ("postgresql+psycopg2://u@h/db", True),
     ("sqlite:////shared/mlflow.db", False), ("file:///shared/mlruns", False), ("/shared/mlruns", False)],
)  # fmt: skip
def test_only_a_server_store_takes_every_nodes_system_metrics(uri: str, many: bool) -> None:
    assert serves_many_writers(uri) is many
