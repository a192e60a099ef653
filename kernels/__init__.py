"""normia's Triton kernels for the LLM hot path, shipped inside the package as `normia.kernels`.

One file per kernel, each holding the @triton.jit code, its torch.autograd.Function (Triton forward and
Triton backward) and the plain PyTorch reference it must equal:

    rms_norm.py                     rms_norm_reference, RMSNormFunction (kernels shared with add_rms_norm)
    add_rms_norm.py                 add_rms_norm_reference, AddRMSNormFunction
    layer_norm.py                   layer_norm_reference, LayerNormFunction
    swiglu.py                       swiglu_reference, SwiGLUFunction
    rope.py                         apply_rope_reference, RoPEFunction
    cross_entropy.py                cross_entropy_reference, CrossEntropyFunction
    fused_linear_cross_entropy.py   fused_linear_cross_entropy_reference (unfused), the chunked Function

Call them through `normia.ops`, which validates inputs and picks Triton or the reference. Every file imports
with torch alone (see _triton.py) and none touches CUDA at import time.
"""
