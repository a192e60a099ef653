"""Every Triton kernel compiles for the GPUs we run on (sm_90 = H100/H200, sm_80 = A100, gfx90a = MI210), without a GPU.

The interpreter (interp_cases.py) checks the math, but it runs kernels as NumPy and so accepts code that the
real compiler refuses (loop-carried type changes, early returns, casts). triton.compile down to cubin needs no
driver, nor does triton.compile to an AMD hsaco, so each kernel variant that the launchers can request is compiled
here, with 64-bit strides and bf16 data as in training, and with the num_warps the launchers pick on that vendor
(at most 1024 threads a program: 16 wavefronts of 64 on AMD).
"""

from __future__ import annotations

import os

import pytest

triton = pytest.importorskip("triton", reason="compiling kernels needs triton")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from normia.kernels import cross_entropy, layer_norm, rms_norm, rope, swiglu  # noqa: E402

FP32_POINTERS = {"RSTD", "MEAN", "LOSS", "STATS", "SCALE", "DW_PART", "DB_PART"}
I32_SCALARS = {"n_cols", "n_rows", "n_heads", "seq_len", "half", "ignore_index"}
FP32_SCALARS = {"eps", "smoothing"}

# (kernel, constexprs, num_warps): the variants the launchers in kernels/ request.
VARIANTS = [
    (rms_norm._rms_norm_fwd_kernel, {"HAS_RESIDUAL": False, "BLOCK": 16384, "SINGLE_BLOCK": True}, 16),
    (rms_norm._rms_norm_fwd_kernel, {"HAS_RESIDUAL": False, "BLOCK": 4096, "SINGLE_BLOCK": True}, 8),
    (rms_norm._rms_norm_fwd_kernel, {"HAS_RESIDUAL": True, "BLOCK": 4096, "SINGLE_BLOCK": False}, 8),
    (rms_norm._rms_norm_bwd_kernel, {"HAS_DS": False, "BLOCK": 4096, "SINGLE_BLOCK": True}, 8),
    (rms_norm._rms_norm_bwd_kernel, {"HAS_DS": True, "BLOCK": 4096, "SINGLE_BLOCK": False}, 8),
    (layer_norm._layer_norm_fwd_kernel, {"HAS_BIAS": True, "BLOCK": 2048, "SINGLE_BLOCK": True}, 8),
    (layer_norm._layer_norm_fwd_kernel, {"HAS_BIAS": False, "BLOCK": 4096, "SINGLE_BLOCK": False}, 8),
    (layer_norm._layer_norm_bwd_kernel, {"HAS_BIAS": True, "BLOCK": 2048, "SINGLE_BLOCK": True}, 8),
    (layer_norm._layer_norm_bwd_kernel, {"HAS_BIAS": True, "BLOCK": 4096, "SINGLE_BLOCK": False}, 8),
    (swiglu._swiglu_fwd_kernel, {"BLOCK": 1024}, 4),
    (swiglu._swiglu_bwd_kernel, {"BLOCK": 1024}, 4),
    (rope._rope_kernel, {"BACKWARD": False, "BLOCK_T": 32, "BLOCK_D": 64}, 4),
    (rope._rope_kernel, {"BACKWARD": True, "BLOCK_T": 32, "BLOCK_D": 64}, 4),
]
_CE = {
    "HAS_STATS": False,
    "WRITE_LOSS": True,
    "WRITE_GRAD": False,
    "SCALE_PER_ROW": False,
    "HAS_SMOOTHING": True,
}
VARIANTS += [
    (cross_entropy._cross_entropy_kernel, {**_CE, "BLOCK": 8192}, 8),  # cross_entropy forward
    (cross_entropy._cross_entropy_kernel,  # cross_entropy backward, reduction="none"
     {**_CE, "HAS_STATS": True, "WRITE_LOSS": False, "WRITE_GRAD": True, "SCALE_PER_ROW": True, "BLOCK": 8192}, 8),
    (cross_entropy._cross_entropy_kernel,  # fused linear CE chunk: loss + in-place gradient
     {**_CE, "WRITE_GRAD": True, "HAS_SMOOTHING": False, "BLOCK": 8192}, 8),
]  # fmt: skip


def _signature(kernel, constexprs: dict) -> dict[str, str]:
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.isupper() or name in ("DW_PART", "DB_PART"):
            sig[name] = "*fp32" if name in FP32_POINTERS else "*i64" if name == "TARGET" else "*bf16"
        elif name in FP32_SCALARS:
            sig[name] = "fp32"
        elif name in I32_SCALARS:
            sig[name] = "i32"
        else:  # strides and element counts: 64-bit, as for tensors past 2^31 elements
            sig[name] = "i64"
    return sig


# (backend, arch, threads per warp, the binary triton.compile must produce)
TARGETS = [("cuda", 90, 32, "cubin"), ("cuda", 80, 32, "cubin"), ("hip", "gfx90a", 64, "hsaco")]


def test_launch_settings_stay_within_1024_threads_per_program():
    """row_settings' largest choice (a 16384-wide row) fits both vendors; the variants below are what they pick."""
    from normia.kernels._triton import row_settings

    for n_cols in (1, 1024, 4096, 16384, 16385, 10**6):
        assert row_settings(n_cols)[2] * 64 <= 1024, n_cols
    assert max(w for _, _, w in VARIANTS) * 64 <= 1024


@pytest.mark.slow
@pytest.mark.parametrize("backend, arch, warp_size, binary", TARGETS, ids=["sm90", "sm80", "gfx90a"])
def test_every_kernel_variant_compiles_for_each_gpu(backend, arch, warp_size, binary, tmp_path, monkeypatch):
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("the interpreter is on in this process; compilation is checked without it")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # compile for real, not from an old cache
    failures = []
    for kernel, constexprs, num_warps in VARIANTS:
        src = ASTSource(fn=kernel, signature=_signature(kernel, constexprs), constexprs=constexprs)
        try:
            compiled = triton.compile(
                src, target=GPUTarget(backend, arch, warp_size), options={"num_warps": num_warps}
            )
            assert compiled.asm[binary], f"empty {binary}"
            threads = compiled.metadata.num_warps * warp_size
            assert threads <= 1024, f"{threads} threads per program: more than the GPU launches"
        except Exception as exc:  # collect them all: one message lists every broken variant
            failures.append(f"{kernel.__name__} {constexprs}: {type(exc).__name__}: {str(exc)[:400]}")
    assert not failures, "\n".join(failures)
