"""normia.ops: the LLM hot-path kernels (Triton on GPUs, PyTorch references elsewhere) behind one API.

Importing this package needs only torch (and triton if installed) and never touches CUDA. The backend is
chosen per call: `auto` (Triton for CUDA tensors), or forced by `set_backend()` /
NORMIA_KERNELS=auto|triton|torch. nn.Module wrappers live in `normia.ops.modules`.

Cross-entropy targets are range-checked without a host sync on GPUs: a bad target is recorded on the device and
`raise_deferred_errors()` raises it where the host waits anyway (NORMIA_CHECK_TARGETS=auto|sync|deferred, _deferred.py).
"""

from ._backend import BACKENDS, get_backend, set_backend
from ._deferred import clear_deferred_errors, raise_deferred_errors
from .functional import (
    add_rms_norm,
    apply_rope,
    cross_entropy,
    fused_linear_cross_entropy,
    layer_norm,
    rms_norm,
    swiglu,
)

__all__ = [
    "BACKENDS",
    "add_rms_norm",
    "apply_rope",
    "clear_deferred_errors",
    "cross_entropy",
    "fused_linear_cross_entropy",
    "get_backend",
    "layer_norm",
    "raise_deferred_errors",
    "rms_norm",
    "set_backend",
    "swiglu",
]
