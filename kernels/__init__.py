"""normia's Triton kernels for the LLM hot path, shipped inside the package as `normia.kernels`.

One file per kernel, each holding the @triton.jit code, its launchers registered as torch.library ops
(torch.ops.normia.*, with fake impls and a Triton backward as autograd formula; see _ops.py) and the plain
PyTorch reference it must equal:

    rms_norm.py                     rms_norm_reference, ops rms_norm_fwd / rms_norm_bwd (shared with add_rms_norm)
    add_rms_norm.py                 add_rms_norm_reference, op add_rms_norm_fwd
    layer_norm.py                   layer_norm_reference, ops layer_norm_fwd / layer_norm_bwd
    swiglu.py                       swiglu_reference, ops swiglu_fwd / swiglu_bwd
    rope.py                         apply_rope_reference, op rope (forward and, transposed, backward)
    cross_entropy.py                cross_entropy_reference, ops cross_entropy_fwd / cross_entropy_bwd
    fused_linear_cross_entropy.py   fused_linear_cross_entropy_reference (unfused), the chunked Function, whose
                                    per-chunk kernel is op fused_linear_cross_entropy_chunk

Call them through `normia.ops`, which validates inputs and picks Triton or the reference. Every file imports
with torch alone (see _triton.py) and none touches CUDA at import time.
"""
