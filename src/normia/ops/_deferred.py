"""Target checks without a host-device sync per call: record the first bad target on the device, raise later.

Why: checking `bool(bad.any())` on every cross-entropy call makes the host wait for the GPU once per training step.
In deferred mode each call instead folds "is there a bad target, which one, what value" into a small int64 tensor
on the target's device with device-side ops only, and `raise_deferred_errors()` reads it (one sync per device) where
the host waits anyway: the training loop calls it at each logging step and at the end of fit.

Mode (env NORMIA_CHECK_TARGETS): `auto` (default) checks CPU tensors at the call and defers on other devices;
`sync` checks at every call on every device (debugging: the error comes from the guilty call); `deferred` defers on
every device, CPU included (what the tests use). Under torch.compile targets are always deferred (a host read would
break the graph).
"""

from __future__ import annotations

import os

import torch

ENV_VAR = "NORMIA_CHECK_TARGETS"
MODES = ("auto", "sync", "deferred")

# record slots: [any bad seen, flat index of the first bad target, its value, call site id, calls with bad targets]
_FLAG, _INDEX, _VALUE, _SITE, _COUNT = range(5)
_records: dict[torch.device, torch.Tensor] = {}
_sites: list[tuple[str, int, int]] = []  # site id -> (op name, vocab, ignore_index), known on the host
_site_ids: dict[tuple[str, int, int], int] = {}


def mode() -> str:
    """The target check mode from NORMIA_CHECK_TARGETS; ValueError naming the valid values on anything else."""
    value = (os.environ.get(ENV_VAR, "auto") or "auto").strip().lower()
    if value not in MODES:
        raise ValueError(f"{ENV_VAR}={value!r} is not a target check mode; use one of {', '.join(MODES)}")
    return value


def defers(device: torch.device) -> bool:
    """True when a target on `device` is recorded for later instead of checked at the call."""
    current = mode()
    return current == "deferred" or (current == "auto" and device.type != "cpu")


def message(fn: str, value: int, index: int, vocab: int, ignore_index: int) -> str:
    """The one error text of a bad target, at the call or deferred."""
    return (
        f"{fn}: target holds {value} at flat index {index}; classes must be in [0, {vocab}) "
        f"or equal ignore_index={ignore_index}"
    )


def _site(fn: str, vocab: int, ignore_index: int) -> int:
    key = (fn, int(vocab), int(ignore_index))
    if key not in _site_ids:
        _site_ids[key] = len(_sites)
        _sites.append(key)
    return _site_ids[key]


def record(fn: str, target: torch.Tensor, bad: torch.Tensor, vocab: int, ignore_index: int) -> None:
    """Fold this call's first bad target (if any) into its device's record, with device-side ops only.

    target and bad (bool, target's shape) are on the same device and non-empty. The first bad call since the last
    `raise_deferred_errors()` is kept; later ones only raise the count.
    """
    rec = _records.get(target.device)
    if rec is None:
        rec = _records[target.device] = torch.zeros(5, dtype=torch.int64, device=target.device)
    flat_bad = bad.reshape(-1)
    index = flat_bad.to(torch.uint8).argmax().reshape(1)  # the first bad element (0 when there is none)
    hit = flat_bad.gather(0, index)  # (1,) bool: is there a bad element at all
    value = target.reshape(-1).gather(0, index).to(torch.int64)
    first = hit & (rec[_FLAG : _FLAG + 1] == 0)
    site = torch.full_like(index, _site(fn, vocab, ignore_index))
    new = torch.cat((torch.ones_like(index), index, value, site))
    rec[:_COUNT].copy_(torch.where(first, new, rec[:_COUNT]))
    rec[_COUNT:].add_(hit)


def raise_deferred_errors() -> None:
    """Raise the first bad target recorded since the last call, if any (ValueError); one host sync per device.

    Call it where the host waits for the device anyway (a logging step, the end of training). The message names the
    op, the bad value, its flat index in that call's target, the allowed range and how many calls had bad targets.
    The records are cleared, so each bad call is reported once. Recorded rows were computed as ignored rows (loss 0,
    gradient 0), so no kernel read outside the logits. Nothing is recorded in `sync` mode or for CPU tensors in
    `auto` mode: those raise at the call.
    """
    for device, rec in list(_records.items()):
        flag, index, value, site, count = rec.tolist()  # the one host read of this device's record
        if not flag:
            continue
        rec.zero_()
        fn, vocab, ignore_index = _sites[site]
        raise ValueError(
            message(fn, value, index, vocab, ignore_index)
            + f" (found on {device} after the call: {count} call(s) had bad targets since the last check; "
            f"those rows were treated as ignored; {ENV_VAR}=sync raises at the call, outside torch.compile)"
        )


def clear_deferred_errors() -> None:
    """Forget every record without reading it (no sync): e.g. after a handled error, or between tests."""
    for rec in _records.values():
        rec.zero_()
