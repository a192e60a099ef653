"""The ops read nothing back from the device per call: target checks are deferred, and no op syncs the host.

A GPU sync is made of `aten._local_scalar_dense` (`.item()`, `int(t)`), `aten.is_nonzero` (`bool(t)`) and
`aten.nonzero` (a data-dependent shape); a TorchDispatchMode sees every such call from Python or C++. The CPU runs
the same Python as a GPU would, so NORMIA_CHECK_TARGETS=deferred (defer on CPU too) tests the GPU behaviour here.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import normia.ops as ops

HOST_READS = {"aten._local_scalar_dense", "aten.is_nonzero", "aten.nonzero", "aten.item"}


class HostReads(TorchDispatchMode):
    """Collects the names of the host-reading aten ops dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in HOST_READS:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def _reference_backend():
    ops.set_backend("torch")
    ops.clear_deferred_errors()
    yield
    ops.set_backend(None)
    ops.clear_deferred_errors()


def _ce_forward_backward():
    logits = torch.randn(6, 11, requires_grad=True)
    target = torch.tensor([1, 2, -100, 4, 10, 0])
    ops.cross_entropy(logits, target).backward()
    hidden = torch.randn(6, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    ops.fused_linear_cross_entropy(hidden, weight, target).backward()
    ops.fused_linear_cross_entropy(hidden, weight, target, reduction="none").sum().backward()


def _every_op_forward_backward():
    x = torch.randn(2, 3, 16, requires_grad=True)
    w = torch.randn(16, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    ops.rms_norm(x, w).sum().backward()
    y, s = ops.add_rms_norm(x, torch.randn(2, 3, 16, requires_grad=True), w)
    (y.sum() + s.sum()).backward()
    ops.layer_norm(x, w, b).sum().backward()
    ops.swiglu(x, torch.randn(2, 3, 16, requires_grad=True)).sum().backward()
    q = torch.randn(1, 2, 3, 16, requires_grad=True)
    ops.apply_rope(q, torch.randn(3, 16), torch.randn(3, 16)).sum().backward()
    _ce_forward_backward()


def test_deferred_mode_reads_nothing_back_and_sync_mode_does(monkeypatch):
    monkeypatch.setenv("NORMIA_CHECK_TARGETS", "deferred")
    with HostReads() as mode:
        _every_op_forward_backward()
    assert mode.seen == [], f"host reads during the ops' forward+backward: {sorted(set(mode.seen))}"
    monkeypatch.setenv("NORMIA_CHECK_TARGETS", "sync")  # the old per-call check: the probe must see it
    with HostReads() as mode:
        _ce_forward_backward()
    assert mode.seen, "sync mode made no host read: the probe cannot see syncs"
    ops.raise_deferred_errors()  # good targets: nothing was recorded


def test_bad_target_deferred_raises_later_with_the_clear_message(monkeypatch):
    monkeypatch.setenv("NORMIA_CHECK_TARGETS", "deferred")
    logits = torch.randn(4, 7, requires_grad=True)
    target = torch.tensor([1, 9, 2, -3])
    loss = ops.cross_entropy(logits, target)  # no error at the call
    loss.backward()
    assert torch.isfinite(loss)
    # the bad rows were computed as ignored: loss and gradient equal those with ignore_index in their place
    ref = torch.nn.functional.cross_entropy(logits.detach(), torch.tensor([1, -100, 2, -100]))
    torch.testing.assert_close(loss.detach(), ref)
    assert logits.grad[1].abs().max() == 0 and logits.grad[3].abs().max() == 0
    ops.fused_linear_cross_entropy(torch.randn(4, 3), torch.randn(7, 3), target)  # a second bad call
    with pytest.raises(ValueError) as err:
        ops.raise_deferred_errors()
    text = str(err.value)
    assert text.startswith("cross_entropy: target holds 9 at flat index 1; classes must be in [0, 7)"), text
    assert "ignore_index=-100" in text and "2 call(s)" in text and "NORMIA_CHECK_TARGETS=sync" in text
    ops.raise_deferred_errors()  # reported once, then cleared


def test_sync_mode_raises_at_the_call(monkeypatch):
    monkeypatch.setenv("NORMIA_CHECK_TARGETS", "sync")
    with pytest.raises(
        ValueError, match=r"cross_entropy: target holds 9 at flat index 1; classes must be in \[0, 7\)"
    ):
        ops.cross_entropy(torch.randn(2, 7), torch.tensor([0, 9]))


def test_auto_mode_checks_cpu_tensors_at_the_call(monkeypatch):
    monkeypatch.delenv("NORMIA_CHECK_TARGETS", raising=False)
    with pytest.raises(ValueError, match="fused_linear_cross_entropy: target holds -5 at flat index 0"):
        ops.fused_linear_cross_entropy(torch.randn(2, 3), torch.randn(7, 3), torch.tensor([-5, 1]))
    ops.raise_deferred_errors()


def test_bad_mode_is_one_line_naming_the_choices(monkeypatch):
    monkeypatch.setenv("NORMIA_CHECK_TARGETS", "later")
    with pytest.raises(
        ValueError,
        match=r"NORMIA_CHECK_TARGETS='later' is not a target check mode; use one of auto, sync, deferred",
    ):
        ops.cross_entropy(torch.randn(2, 7), torch.tensor([0, 1]))
