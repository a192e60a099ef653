"""normia.ops: the LLM hot-path kernels (Triton on GPUs, PyTorch references elsewhere) behind one API.

Importing this package needs only torch (and triton if installed) and never touches CUDA. The backend is
chosen per call: `auto` (Triton for CUDA tensors), or forced by `set_backend()` /
NORMIA_KERNELS=auto|triton|torch. nn.Module wrappers live in `normia.ops.modules`.
"""

from ._backend import BACKENDS, get_backend, set_backend
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
    "cross_entropy",
    "fused_linear_cross_entropy",
    "get_backend",
    "layer_norm",
    "rms_norm",
    "set_backend",
    "swiglu",
]
