"""`normia bench train` on CPU at the tiny size, the FLOP formula against torch's FLOP counter, and MFU refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from schema import assert_positive, assert_timing, load_run
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from normia.bench.cli import main
from normia.bench.limits import BF16_DENSE_PEAK_TFLOPS, bf16_peak_flops, mfu
from normia.errors import UserError
from normia.models.llama import Llama


def test_train_tiny_writes_finite_positive_figures_and_no_mfu_on_cpu(tmp_path: Path) -> None:
    args = ["train", "--sizes", "tiny", "--steps", "3", "--warmup", "1", "--threads", "1", "--no-plots"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    doc = load_run(tmp_path, "train")
    assert doc["status"] == "complete"
    assert doc["limits"]["bf16_peak_tflops"] is None and "no MFU" in doc["limits"]["mfu_note"]
    (row,) = doc["rows"]
    assert row["status"] == "ok" and row["model"] == "tiny"
    assert_timing(row, "step_ms", "step_p20_ms", "step_p80_ms")
    assert_positive(
        row, ("params", "tokens_per_s", "model_tflops", "pct_of_matmul", "peak_mem_gb", "final_loss")
    )
    assert row["tokens_per_s"] == pytest.approx(row["batch"] * row["seq_len"] / (row["step_ms"] / 1e3))
    assert row["mfu"] is None, "a CPU is not in the bf16 peak table: no MFU rather than a wrong one"
    assert doc["limits"]["energy"].startswith(("measured: ", "not measured: "))
    if row["wh_per_mtok"] is not None:  # only where RAPL is readable
        assert_positive(row, ("wh_per_mtok", "j_per_token", "tokens_per_kwh"))
    else:
        assert row["j_per_token"] is None and row["tokens_per_kwh"] is None


def test_train_energy_figures_from_a_counter_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test machine has a GPU energy counter (the real NVML one runs in benchmarks/gpu/run_all.sh): a double
    drawing 150 W over the wall clock stands in, to check J/token, tokens per kWh and Wh per million tokens."""
    import time

    from normia.bench import train as bench_train
    from normia.energy.counters import Counter, CounterSet

    double = CounterSet([Counter("gpu", "test double 150 W x time", lambda: 150.0 * time.perf_counter())])
    monkeypatch.setattr(bench_train, "open_meter", lambda device: (double, "measured: test double"))
    args = ["train", "--sizes", "tiny", "--steps", "3", "--warmup", "1", "--threads", "1", "--no-plots"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    doc = load_run(tmp_path, "train")
    (row,) = doc["rows"]
    tokens = 3 * row["batch"] * row["seq_len"]
    assert row["energy_joules"] > 0
    assert row["j_per_token"] == pytest.approx(row["energy_joules"] / tokens)
    assert row["tokens_per_kwh"] == pytest.approx(tokens / (row["energy_joules"] / 3.6e6))
    assert row["wh_per_mtok"] == pytest.approx(row["energy_joules"] / 3600 / tokens * 1e6)
    # 150 W over the 3 timed steps: J/token is 150 W / (tokens per second of the whole window), about tokens/s
    assert row["j_per_token"] * row["tokens_per_s"] == pytest.approx(150.0, rel=0.5)
    header = (tmp_path / "train.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("tokens_per_s") + 1 : header.index("tokens_per_s") + 3] == [
        "j_per_token",
        "tokens_per_kwh",
    ]


def test_unknown_size_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        main(["train", "--sizes", "7b", "--out", str(tmp_path)])
    assert "'7b'" in str(err.value) and all(
        size in str(err.value) for size in ("tiny", "small", "125m", "1b")
    )


def test_mfu_refused_for_a_device_not_in_the_table() -> None:
    assert mfu(1e14, "cpu: Intel(R) Xeon(R)") is None
    assert mfu(1e14, "NVIDIA A100-SXM4-80GB MIG 3g.40gb") is None  # a MIG slice has a fraction of the peak
    assert bf16_peak_flops("NVIDIA H200 ") is None  # exact names only
    assert mfu(494.7e12, "NVIDIA H200") == pytest.approx(0.5)
    assert all(10 < v < 2000 for v in BF16_DENSE_PEAK_TFLOPS.values())


def _cpu_sdpa_mapping() -> dict:
    """torch's FLOP counter knows the GPU attention ops but not the CPU flash-attention ones; count them with its
    forward formula (grouped-query heads do the query heads' work). The backward is counted as twice the forward
    (dQ, dK, dV, dP): model FLOPs, which MFU uses, exclude the recomputation of QK^T that torch's backward formula
    adds (that is hardware FLOPs)."""

    def fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
        b, h, _t, d = query
        return flop_counter.sdpa_flop_count(query, (b, h, key[2], d), (b, h, value[2], value[3]))

    def bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
        return 2 * fwd(query, key, value)

    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: fwd,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd,
    }


@pytest.mark.parametrize("tie", [True, False])
def test_flops_per_token_matches_torch_flop_counter(tie: bool) -> None:
    """The model's FLOPs per token (used for MFU) against what FlopCounterMode counts in one training step.

    The loss is computed unfused (logits = hidden @ W^T) here: the counter does not see the in-place addmm_ of the
    chunked fused loss, whose matmuls are the same by construction."""
    torch.manual_seed(0)
    model = Llama(vocab_size=128, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=96, max_seq_len=32,
                  tie_embeddings=tie)  # fmt: skip
    batch, seq = 3, 32
    tokens = torch.randint(0, 128, (batch, seq + 1))
    counter = FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping())
    with counter:
        hidden = model(tokens[:, :-1])
        logits = hidden.flatten(0, 1) @ model.head.weight.t()
        F.cross_entropy(logits, tokens[:, 1:].flatten()).backward()
    counted = counter.get_total_flops() / (batch * seq)
    # The formula also counts the RMSNorm scales as matmul parameters (2 * n_layers + 1) * dim: < 0.5% here.
    assert model.flops_per_token(seq) == pytest.approx(counted, rel=0.01)


def test_train_float8_row_refused_on_cpu_with_one_line_and_syncs_not_measured(tmp_path: Path) -> None:
    """--float8 both on a CPU: the bf16 row is measured, the float8 row says why not (no float8 GEMMs here) and
    nothing runs for it; syncs per step exist only on CUDA (torch.cuda.set_sync_debug_mode), so None here."""
    args = ["train", "--sizes", "tiny", "--steps", "2", "--warmup", "1", "--threads", "1", "--no-plots"]
    assert main([*args, "--float8", "both", "--out", str(tmp_path)]) == 0
    doc = load_run(tmp_path, "train")
    bf16, f8 = doc["rows"]
    assert (bf16["float8"], bf16["status"], bf16["syncs_per_step"]) == (False, "ok", None)
    assert (f8["float8"], f8["status"]) == (True, "not measured")
    assert "compute capability 8.9" in f8["reason"] and "\n" not in f8["reason"]
    assert f8.get("step_ms") is None
