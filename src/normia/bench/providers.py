"""The implementations `normia bench kernels` compares side by side for each kernel.

triton: normia's Triton kernels (normia.ops forced to the triton backend; GPU only). reference: normia.ops forced
to its PyTorch reference. eager: the plain PyTorch people write (kernel_specs.py). compile: torch.compile of that
eager code. liger: Liger-Kernel's Triton kernels, when the package is installed.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from normia.bench.kernel_specs import KernelSpec

PROVIDERS = ("triton", "reference", "eager", "compile", "liger")


class Unavailable(Exception):
    """This provider cannot run this kernel here; the message is the reason recorded in the results."""


@dataclass(frozen=True)
class Provider:
    name: str
    fn: Callable[..., object]
    backend: str | None = None  # the normia.ops backend to force while it runs


def build(name: str, spec: KernelSpec, device: torch.device, compiled: dict) -> Provider:
    """The callable for provider `name` and kernel `spec`, or raise Unavailable with the reason."""
    if name in ("triton", "reference"):
        if name == "triton" and device.type != "cuda":
            raise Unavailable("normia's Triton kernels need a CUDA GPU")
        try:
            ops = importlib.import_module("normia.ops")
        except ImportError as err:
            raise Unavailable(f"normia.ops is not importable: {err}") from err
        if not hasattr(ops, spec.name):
            raise Unavailable(f"normia.ops has no {spec.name}")
        return Provider(name, getattr(ops, spec.name), backend="triton" if name == "triton" else "torch")
    if name == "eager":
        return Provider(name, spec.eager)
    if name == "compile":
        if spec.name not in compiled:  # one compiled function per kernel, so later shapes reuse its graphs
            compiled[spec.name] = torch.compile(spec.eager)
        return Provider(name, compiled[spec.name])
    if name == "liger":
        return Provider(name, _liger(spec.name))
    raise Unavailable(f"unknown provider {name}")


def _liger(kernel: str) -> Callable[..., object]:
    try:
        importlib.import_module("liger_kernel")
    except ImportError as err:
        raise Unavailable("Liger-Kernel is not installed (pip install liger-kernel)") from err

    def fn_from(module: str, cls: str) -> Callable[..., object]:
        try:
            return getattr(importlib.import_module(f"liger_kernel.ops.{module}"), cls).apply
        except (ImportError, AttributeError) as err:
            raise Unavailable(f"this Liger-Kernel version has no {module}.{cls}") from err

    def first(out: object) -> object:  # newer Liger losses return (loss, extras...)
        return out[0] if isinstance(out, tuple) else out

    if kernel == "rms_norm":
        f = fn_from("rms_norm", "LigerRMSNormFunction")
        return lambda x, weight: f(x, weight, 1e-6)
    if kernel == "add_rms_norm":
        f = fn_from("fused_add_rms_norm", "LigerFusedAddRMSNormFunction")
        return lambda x, residual, weight: f(x, residual, weight, 1e-6)
    if kernel == "layer_norm":
        f = fn_from("layer_norm", "LigerLayerNormFunction")
        return lambda x, weight, bias: f(x, weight, bias, 1e-5)
    if kernel == "swiglu":
        f = fn_from("swiglu", "LigerSiLUMulFunction")
        return lambda gate, up: f(gate, up)
    if kernel == "cross_entropy":
        f = fn_from("cross_entropy", "LigerCrossEntropyFunction")
        return lambda logits, target: first(f(logits, target))
    if kernel == "fused_linear_cross_entropy":
        f = fn_from("fused_linear_cross_entropy", "LigerFusedLinearCrossEntropyFunction")
        return lambda hidden, weight, target: first(f(hidden, weight, target))
    raise Unavailable(
        f"Liger-Kernel has no standalone {kernel} comparable to normia's (its RoPE rotates q and k)"
    )


@contextlib.contextmanager
def ops_backend(name: str | None) -> Iterator[None]:
    """Force normia.ops to `name` ('triton' or 'torch') for the duration; restore the previous choice after."""
    if name is None:
        yield
        return
    ops = importlib.import_module("normia.ops")
    previous = ops.get_backend() if hasattr(ops, "get_backend") else "auto"
    ops.set_backend(name)
    try:
        yield
    finally:
        ops.set_backend(previous)
