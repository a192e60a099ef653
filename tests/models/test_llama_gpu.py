"""On a GPU: the Llama model gives the same loss and gradients with normia's Triton kernels as with the PyTorch
reference path (kernels=triton vs kernels=torch), in fp32 and bf16. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from normia.models.llama import Llama
from normia.ops import get_backend, set_backend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton kernels)"),
]


def loss_and_grads(
    model: Llama, batch: tuple[torch.Tensor, torch.Tensor], backend: str
) -> tuple[float, dict]:
    previous = get_backend()
    set_backend(backend)
    try:
        model.zero_grad(set_to_none=True)
        loss, _ = model.loss(batch)
        loss.backward()
    finally:
        set_backend(previous)
    return loss.item(), {n: p.grad.float().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_triton_kernels_match_the_reference_in_the_model(dtype: torch.dtype, rtol: float) -> None:
    torch.manual_seed(0)
    model = (
        Llama(vocab_size=1000, dim=256, n_layers=2, n_heads=8, n_kv_heads=2, max_seq_len=256).cuda().to(dtype)
    )
    tokens = torch.randint(0, 1000, (4, 257), device="cuda")
    batch = (tokens[:, :-1], tokens[:, 1:])
    ref_loss, ref_grads = loss_and_grads(model, batch, "torch")
    tri_loss, tri_grads = loss_and_grads(model, batch, "triton")
    assert tri_loss == pytest.approx(ref_loss, rel=rtol)
    for name, grad in ref_grads.items():
        scale = grad.abs().max().clamp_min(1e-12)
        assert ((tri_grads[name] - grad).abs().max() / scale).item() < 10 * rtol, name


def test_bf16_autocast_with_fp32_weights_runs_the_triton_kernels_like_the_reference() -> None:
    """The benchmark's and Lightning's bf16-mixed: fp32 parameters, autocast. The residual stream stays fp32."""
    torch.manual_seed(0)
    model = Llama(vocab_size=1000, dim=256, n_layers=2, n_heads=8, n_kv_heads=2, max_seq_len=256).cuda()
    tokens = torch.randint(0, 1000, (4, 257), device="cuda")
    batch = (tokens[:, :-1], tokens[:, 1:])
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref_loss, ref_grads = loss_and_grads(model, batch, "torch")
        tri_loss, tri_grads = loss_and_grads(model, batch, "triton")
    assert tri_loss == pytest.approx(ref_loss, rel=3e-2)
    for name, grad in ref_grads.items():
        assert model.get_parameter(name).grad.dtype == torch.float32, name
        scale = grad.abs().max().clamp_min(1e-12)
        assert ((tri_grads[name] - grad).abs().max() / scale).item() < 0.3, name
