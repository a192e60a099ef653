"""trainer.precision=float8 (issue 15): refused in one line, exit 2, nothing written, wherever float8 GEMMs are
missing (CPU, compute capability < 8.9, ROCm without float8, a Slurm partition of such GPUs, no torchao); and the
conversion itself (which nn.Linear layers torchao's Float8Linear replaces) on a tiny model, emulated on the CPU."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from normia.training.float8 import (
    GPU_MODELS,
    capability_reason,
    float8_filter,
    float8_unsupported_reason,
    lightning_precision,
    partition_reason,
    rocm_reason,
    torchao_missing_reason,
)

CPU_LINE = (
    "float8 training needs an NVIDIA GPU of compute capability 8.9 or newer (H100/H200/L40S); "
    "this run is on CPU: use trainer.precision=bf16-mixed"
)
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
# The Austral preset's GPU models (configs/launcher/austral.yaml), as the launcher reads them.
AUSTRAL_GPUS = {
    "gpu": "a100",
    "gpu_all": None,
    "gpu_h200": "h200",
    "hpda_mig": "a100",
    "ar_a100": "a100",
    "ar_h200": "h200",
    "ar_mig": None,
    "ar_mi210": "mi210",
    "court": None,
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """outputs/ and mlflow.db would land here: a refusal must leave the folder empty."""
    monkeypatch.chdir(tmp_path)


def train(*argv: str) -> tuple[int, str]:
    """`normia train argv` through the CLI's entry point in this process; (exit code, stdout+stderr)."""
    from normia.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(["train", *argv])
    return code, buffer.getvalue()


def assert_refused(code: int, text: str, message: str) -> None:
    """Exit 2, one `error:` line holding message, nothing written (no outputs/, no mlflow.db, no mlruns/)."""
    assert code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert message in lines[0], text
    assert list(Path.cwd().iterdir()) == [], "a refused run wrote files"


@pytest.mark.parametrize(
    ("capability", "allowed"),
    [
        *(((7, 0), False), ((7, 5), False), ((8, 0), False), ((8, 6), False), ((8, 7), False)),
        *(((8, 9), True), ((9, 0), True), ((10, 0), True), ((12, 0), True)),
    ],
)
def test_compute_capability_rule(capability: tuple[int, int], allowed: bool) -> None:
    reason = capability_reason("NVIDIA A100-SXM4-80GB", capability)
    if allowed:
        assert reason is None
    else:
        major, minor = capability
        assert reason == (
            "float8 training needs an NVIDIA GPU of compute capability 8.9 or newer (H100/H200/L40S); this run's "
            f"GPU is NVIDIA A100-SXM4-80GB (compute capability {major}.{minor}): use trainer.precision=bf16-mixed"
        )


def test_rocm_rule_allows_mi300_and_mi350_only() -> None:
    assert rocm_reason("AMD Instinct MI300X", "gfx942:sramecc+:xnack-") is None
    assert rocm_reason("AMD Instinct MI355X", "gfx950") is None
    reason = rocm_reason("AMD Instinct MI210", "gfx90a:sramecc+:xnack-")
    assert reason is not None and "AMD Instinct MI210 (gfx90a, no float8)" in reason
    assert reason.endswith("use trainer.precision=bf16-mixed") and "\n" not in reason


def test_devices_without_a_cuda_gpu() -> None:
    assert float8_unsupported_reason("cpu") == CPU_LINE
    assert "this run is on an Apple GPU (mps)" in str(float8_unsupported_reason("mps"))
    if not torch.cuda.is_available():  # the current device of a machine without GPUs is its CPU
        assert float8_unsupported_reason() == CPU_LINE
        assert "this machine has no CUDA GPU" in str(float8_unsupported_reason("cuda:0"))


def test_partition_rule_from_gpu_models() -> None:
    reason = partition_reason("gpu", "austral", AUSTRAL_GPUS)
    assert reason == (
        "float8 training needs an NVIDIA GPU of compute capability 8.9 or newer (H100/H200/L40S); partition 'gpu' "
        "of launcher=austral has A100 GPUs (compute capability 8.0): use a partition with float8 GPUs (ar_h200, "
        "gpu_h200), or trainer.precision=bf16-mixed"
    )
    assert "MI210 GPUs (gfx90a, no float8)" in str(partition_reason("ar_mi210", "austral", AUSTRAL_GPUS))
    for fine in ("gpu_h200", "ar_h200", "gpu_all", "court", "not_in_the_preset"):  # H200, or a model unknown
        assert partition_reason(fine, "austral", AUSTRAL_GPUS) is None
    assert partition_reason("x", "slurm", {"x": "V100"}) is not None  # any case
    assert {"a100", "h100", "h200", "l40s", "mi210", "mi300x"} <= set(GPU_MODELS)


def test_torchao_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    if HAS_TORCHAO:  # block it the way Python does for a module it must not import
        monkeypatch.setitem(sys.modules, "torchao", None)
    assert torchao_missing_reason() == (
        "trainer.precision=float8 needs torchao, which is not installed: pip install 'normia[float8]'"
    )


def test_lightning_runs_float8_as_bf16_mixed() -> None:
    assert lightning_precision("float8") == "bf16-mixed"
    assert lightning_precision("16-mixed") == "16-mixed"


def test_cli_refuses_float8_on_cpu_before_writing_anything() -> None:
    code, text = train("experiment=quickstart", "trainer.precision=float8")
    assert_refused(code, text, CPU_LINE)
    code, text = train("experiment=quickstart", "trainer.precision=float8", "trainer.accelerator=mps")
    assert_refused(code, text, "this run is on an Apple GPU (mps): use trainer.precision=bf16-mixed")


@pytest.mark.skipif(torch.cuda.is_available(), reason="accelerator=auto picks this machine's GPU")
def test_cli_refuses_float8_with_accelerator_auto_on_a_machine_without_gpu() -> None:
    code, text = train("experiment=quickstart", "trainer.precision=float8", "trainer.accelerator=auto")
    assert_refused(code, text, CPU_LINE)


def test_cli_schema_still_refuses_an_unknown_precision() -> None:
    code, text = train("experiment=quickstart", "trainer.precision=float9")
    assert_refused(code, text, "trainer.precision='float9' is not valid (did you mean 'float8'?)")


AUSTRAL = ["experiment=quickstart", "launcher=austral", "launcher.query_cluster=false", "trainer=gpu"]


def test_austral_dry_run_refuses_float8_on_a100_and_mi210_partitions() -> None:
    code, text = train(*AUSTRAL, "trainer.precision=float8", "launcher.python=python", "--dry-run")
    assert_refused(code, text, "partition 'gpu' of launcher=austral has A100 GPUs (compute capability 8.0)")
    assert "use a partition with float8 GPUs (ar_h200, gpu_h200), or trainer.precision=bf16-mixed" in text
    code, text = train(
        *AUSTRAL,
        "trainer.precision=float8",
        "launcher.partition=ar_mi210",
        "launcher.python=python",
        "--dry-run",
    )
    assert_refused(code, text, "partition 'ar_mi210' of launcher=austral has MI210 GPUs (gfx90a, no float8)")


def test_austral_dry_run_accepts_float8_on_the_h200_partition() -> None:
    code, text = train(
        *AUSTRAL,
        "trainer.precision=float8",
        "launcher.partition=gpu_h200",
        "launcher.python=python",
        "--dry-run",
    )
    assert code == 0, text
    assert "#SBATCH --partition=gpu_h200" in text and "precision=float8" in text
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.skipif(HAS_TORCHAO, reason="torchao is installed in this environment")
def test_austral_dry_run_refuses_float8_when_the_ranks_python_lacks_torchao() -> None:
    code, text = train(*AUSTRAL, "trainer.precision=float8", "launcher.partition=gpu_h200", "--dry-run")
    assert_refused(
        code,
        text,
        f"needs torchao, which is not installed in {sys.executable}, the Python the ranks run: "
        "pip install 'normia[float8]'",
    )


class _LinearSubclass(nn.Linear):
    """A library's own linear layer (LoRA, quantized): its forward must not be replaced."""


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.odd = nn.Linear(32, 24)  # 24 is not a multiple of 16
        self.custom = _LinearSubclass(32, 32)
        self.lm_head = nn.Linear(32, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)
        return self.lm_head(h).sum() + self.odd(h).sum() + self.custom(h).sum()


def test_filter_takes_plain_linears_with_dims_multiple_of_16_except_heads() -> None:
    model = _Tiny()
    taken = [name for name, module in model.named_modules() if float8_filter(module, name)]
    assert taken == ["blocks.0", "blocks.2"]


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed (pip install 'normia[float8]')")
def test_conversion_swaps_the_filtered_layers_and_trains_emulated_on_cpu() -> None:
    from torchao.float8.float8_linear import Float8Linear

    from normia.training.float8 import convert_to_float8

    torch.manual_seed(0)
    model = _Tiny()
    keys = set(model.state_dict())
    assert convert_to_float8(model, emulate=True) == 2
    swapped = sorted(name for name, module in model.named_modules() if isinstance(module, Float8Linear))
    assert swapped == ["blocks.0", "blocks.2"]
    assert type(model.odd) is nn.Linear and type(model.custom) is _LinearSubclass
    assert type(model.lm_head) is nn.Linear
    assert set(model.state_dict()) == keys  # checkpoints keep their keys and plain tensors
    loss = model(torch.randn(16, 32))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(model.blocks[0].weight.grad).all()
    assert model.blocks[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"wrap a lone nn\.Linear"):
        convert_to_float8(nn.Linear(16, 16), emulate=True)


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed (pip install 'normia[float8]')")
def test_conversion_of_normia_llama_keeps_its_lm_head() -> None:
    """normia's Llama: every projection of every block (dim 64, kv 32, ffn 192) runs in float8; the tied LM head
    (ops.LMHeadLoss, not an nn.Linear) and the embedding stay as they are."""
    from normia.models.llama import Llama
    from normia.training.float8 import convert_to_float8

    model = Llama(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
    assert convert_to_float8(model, emulate=True) == 2 * 7  # q, k, v, o, gate, up, down per block
    assert model.head.weight is model.embed.weight
    tokens = torch.randint(0, 256, (2, 16))
    loss, _ = model.loss((tokens[:, :-1], tokens[:, 1:]))
    loss.backward()
    assert torch.isfinite(loss)


FLOAT8_GPU = torch.cuda.is_available() and float8_unsupported_reason() is None and HAS_TORCHAO
needs_float8_gpu = pytest.mark.skipif(
    not FLOAT8_GPU, reason="needs a GPU with float8 (compute capability 8.9+) and torchao"
)


@pytest.mark.gpu
@needs_float8_gpu
def test_float8_step_on_the_gpu_compiled_under_bf16_autocast() -> None:
    """The recipe as the trainer runs it: convert, then torch.compile, under bf16 autocast (Lightning's bf16-mixed)."""
    from torchao.float8.float8_linear import Float8Linear

    from normia.models.llama import Llama
    from normia.training.float8 import prepare_float8

    torch.manual_seed(0)
    model = Llama(vocab_size=256, dim=256, n_layers=2, n_heads=4, max_seq_len=128).cuda()
    assert prepare_float8(model) == 2 * 7
    assert sum(isinstance(m, Float8Linear) for m in model.modules()) == 14
    model.compile()
    tokens = torch.randint(0, 256, (4, 129), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _ = model.loss((tokens[:, :-1], tokens[:, 1:]))
    loss.backward()
    assert torch.isfinite(loss) and 4.0 < float(loss) < 7.0  # ~ln(256) = 5.5 at initialisation


@pytest.mark.gpu
@needs_float8_gpu
def test_normia_train_runs_float8_on_the_gpu() -> None:
    code, text = train(
        "experiment=poc_shakespeare_bytes",
        "trainer=gpu",
        "trainer.precision=float8",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        "logger=none",
        "trainer.enable_progress_bar=false",
    )
    assert code == 0, text
    assert "steps 20" in text
