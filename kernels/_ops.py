"""The Triton launchers as torch.library custom ops, namespace `normia` (torch.ops.normia.<name>).

Why: torch.compile cannot trace a Python launcher that allocates, picks block sizes and calls a JIT kernel, so a
model using them broke the graph (fullgraph=True failed). Registered as ops with a fake implementation (output
shapes, dtypes and strides from the inputs, no data) and an autograd formula, they are single nodes to the
compiler. With a CUDA/ROCm build of torch they are `torch.library.triton_op`s whose kernels go through
`wrap_triton`, so inductor can also see the kernels inside. On CPU builds (see traceable()), under Triton's
interpreter (TRITON_INTERPRET=1, the CPU tests: its kernels are not traceable) and without triton, the same bodies,
fakes and autograd formulas are registered as opaque `torch.library.custom_op`s.

Registering again (a module imported a second time) keeps the existing op and refreshes its fake and autograd.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._triton import HAS_TRITON, interpreting

NAMESPACE = "normia"


def _existing(qualname: str) -> Any:
    try:
        from torch._library.custom_ops import OPDEFS
    except ImportError:  # pragma: no cover - older torch
        return None
    return OPDEFS.get(qualname)


def traceable() -> bool:
    """True when the ops are triton_ops: a CUDA or ROCm build of torch >= 2.6 with triton, interpreter off.

    Elsewhere (CPU builds, where compiled kernels cannot launch anyway; the interpreter) they are opaque custom_ops:
    registering a triton_op imports torch._inductor and torch._dynamo (~1 s; a Lightning run imports them anyway),
    which `import normia.ops` on a CPU machine must not pay. Read from the build, without touching a device.
    """
    gpu_build = bool(torch.version.cuda or getattr(torch.version, "hip", None))
    return gpu_build and HAS_TRITON and not interpreting() and hasattr(torch.library, "triton_op")


def op(name: str, *, fake: Callable, mutates_args: Iterable[str] = ()) -> Callable[[Callable], Any]:
    """Decorator: register the function as torch.ops.normia.<name> with `fake` as its fake implementation.

    The function's type hints give the schema. Returns the op (a CustomOpDef): call it like the function, and
    register its autograd with `.register_autograd(backward, setup_context=...)`.
    """

    def register(fn: Callable) -> Any:
        qualname = f"{NAMESPACE}::{name}"
        opdef = _existing(qualname)
        if opdef is None:
            make = torch.library.triton_op if traceable() else torch.library.custom_op
            opdef = make(qualname, fn, mutates_args=tuple(mutates_args))
        opdef.register_fake(fake)
        return opdef

    return register


def launch(kernel: Any) -> Any:
    """The kernel to index with a grid inside an op: wrapped by wrap_triton so compile can trace it (GPUs)."""
    return torch.library.wrap_triton(kernel) if traceable() else kernel


def on_device(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the *current* CUDA device: make it the tensor's (cuda:1 tensors from a cuda:0 context)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def rows_of(t: torch.Tensor) -> int:
    """Rows of t viewed as (rows, last dim); the last dim is non-empty (checked by normia.ops)."""
    return t.numel() // t.shape[-1]


def registered() -> list[str]:
    """Names of the ops registered so far under torch.ops.normia."""
    try:
        from torch._library.custom_ops import OPDEFS
    except ImportError:  # pragma: no cover - older torch
        return []
    return sorted(q.split("::", 1)[1] for q in OPDEFS if q.startswith(NAMESPACE + "::"))
