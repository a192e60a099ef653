"""float8 training (`trainer.precision=float8`) through torchao, and the checks that refuse it where it cannot run.

Why a library: float8 training needs per-tensor scaling, casts and `torch._scaled_mm` in the forward and backward of
every linear layer, and their composition with torch.compile and FSDP2 (float8 all-gather); torchao's
`convert_to_float8_training` is PyTorch's own maintained implementation of exactly that (torchtitan uses it).

What `float8` means here (the recipe torchao's docs and torchtitan use):
- Lightning runs `bf16-mixed` (LIGHTNING_PRECISION): master weights and optimizer state stay fp32, autocast gives the
  non-converted ops bf16, and each converted nn.Linear casts its input, weight and output gradient to float8 with
  dynamic tensorwise scales (torchao's default recipe). `bf16-true` would keep the weights and Adam's moments in bf16,
  which torchao does not need and which loses the small updates of a long run.
- Converted: the plain nn.Linear layers whose in and out features are multiples of 16 (the float8 GEMM's
  requirement), except the output projection (`lm_head`, `output`, `head`), which torchao's example and torchtitan
  keep in high precision. normia's own LM head (ops.LMHeadLoss) is not an nn.Linear and is never converted.
- Order: convert the network right after it is built, before FSDP2's `fully_shard` and before torch.compile
  (torchtitan converts, then compiles and shards; torchao's docs convert, then compile).
- Hardware: float8 GEMMs need NVIDIA compute capability 8.9+ (L4/L40S Ada, H100/H200 Hopper, Blackwell) or an AMD
  MI300/MI350 (torchao's float8 dtypes there); A100 (8.0) and MI210 (gfx90a) have none.

torch and torchao are imported inside the functions: `normia train` reads this module for its checks at start-up.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from normia.errors import UserError

if TYPE_CHECKING:
    from torch import nn

MIN_CAPABILITY = (8, 9)
LIGHTNING_PRECISION = "bf16-mixed"
TORCHAO_MIN_VERSION = (0, 18)  # the version whose API was read and run here (torchao 0.18.0, torch 2.13)
INSTALL_HINT = "pip install 'normia[float8]'"
# Output projections kept in high precision (matched against the last part of a module's name).
HEAD_NAMES = ("lm_head", "output", "head")
# AMD GPUs with float8 in torchao: MI300 (gfx940-942, the fnuz variants) and MI350 (gfx950).
ROCM_FLOAT8_ARCHS = ("gfx940", "gfx941", "gfx942", "gfx950")
NEEDS = "float8 training needs an NVIDIA GPU of compute capability 8.9 or newer (H100/H200/L40S)"
FIX = "use trainer.precision=bf16-mixed"

# GPU models normia knows by name (a Slurm partition's `gpu`): NVIDIA compute capability, or the AMD architecture.
GPU_MODELS: dict[str, tuple[str, tuple[int, int] | str]] = {
    "v100": ("V100", (7, 0)),
    "t4": ("T4", (7, 5)),
    "a100": ("A100", (8, 0)),
    "a30": ("A30", (8, 0)),
    "a10": ("A10", (8, 6)),
    "a40": ("A40", (8, 6)),
    "l4": ("L4", (8, 9)),
    "l40": ("L40", (8, 9)),
    "l40s": ("L40S", (8, 9)),
    "h100": ("H100", (9, 0)),
    "h200": ("H200", (9, 0)),
    "gh200": ("GH200", (9, 0)),
    "b200": ("B200", (10, 0)),
    "gb200": ("GB200", (10, 0)),
    "mi210": ("MI210", "gfx90a"),
    "mi250": ("MI250", "gfx90a"),
    "mi250x": ("MI250X", "gfx90a"),
    "mi300a": ("MI300A", "gfx942"),
    "mi300x": ("MI300X", "gfx942"),
    "mi325x": ("MI325X", "gfx942"),
    "mi350x": ("MI350X", "gfx950"),
}


def capability_reason(name: str, capability: tuple[int, int]) -> str | None:
    """Why an NVIDIA GPU `name` of compute capability (major, minor) cannot train in float8; None when it can."""
    if tuple(capability) >= MIN_CAPABILITY:
        return None
    major, minor = capability
    return f"{NEEDS}; this run's GPU is {name} (compute capability {major}.{minor}): {FIX}"


def rocm_reason(name: str, arch: str) -> str | None:
    """Why an AMD GPU `name` of architecture `arch` (gcnArchName, e.g. 'gfx90a:sramecc+:xnack-') cannot train in
    float8; None for MI300/MI350."""
    if arch.split(":")[0] in ROCM_FLOAT8_ARCHS:
        return None
    return f"{NEEDS} or an AMD MI300/MI350; this run's GPU is {name} ({arch.split(':')[0]}, no float8): {FIX}"


def float8_unsupported_reason(device: Any = None) -> str | None:
    """Why float8 training cannot run on `device` (a torch.device, 'cuda:1', an index, 'cpu'; None: the current
    CUDA device, else the CPU); None when it can. Never raises, never initialises CUDA on a CPU-only host."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    if dev.type == "cpu":
        return f"{NEEDS}; this run is on CPU: {FIX}"
    if dev.type == "mps":
        return f"{NEEDS}; this run is on an Apple GPU (mps): {FIX}"
    if dev.type != "cuda":
        return f"{NEEDS}; this run is on '{dev.type}': {FIX}"
    if not torch.cuda.is_available():
        return f"{NEEDS}; this machine has no CUDA GPU: {FIX}"
    props = torch.cuda.get_device_properties(
        dev.index if dev.index is not None else torch.cuda.current_device()
    )
    if torch.version.hip:
        return rocm_reason(props.name, str(getattr(props, "gcnArchName", "unknown")))
    return capability_reason(props.name, (props.major, props.minor))


def gpu_model_reason(gpu: str, where: str) -> str | None:
    """Why GPUs of model `gpu` (a key of GPU_MODELS, any case) cannot train in float8, `where` naming them (e.g.
    "partition 'gpu' of launcher=austral has"); None when they can or the model is unknown."""
    known = GPU_MODELS.get(gpu.strip().lower())
    if known is None:
        return None
    name, kind = known
    if isinstance(kind, str):  # AMD: the architecture decides
        if kind in ROCM_FLOAT8_ARCHS:
            return None
        return f"{NEEDS} or an AMD MI300/MI350; {where} {name} GPUs ({kind}, no float8)"
    if kind >= MIN_CAPABILITY:
        return None
    return f"{NEEDS}; {where} {name} GPUs (compute capability {kind[0]}.{kind[1]})"


def partition_reason(partition: str, launcher: str, gpus: dict[str, str | None]) -> str | None:
    """Why a Slurm `partition` cannot train in float8, from a preset's GPU model per partition (`gpus`: name ->
    model or None when unknown); None when it can or its model is unknown. The fix names the preset's partitions
    whose GPUs can."""
    gpu = gpus.get(partition)
    reason = gpu_model_reason(gpu, f"partition '{partition}' of launcher={launcher} has") if gpu else None
    if reason is None:
        return None
    able = sorted(
        name
        for name, model in gpus.items()
        if model and model.strip().lower() in GPU_MODELS and gpu_model_reason(model, "") is None
    )
    where = f"a partition with float8 GPUs ({', '.join(able)}), or " if able else ""
    return f"{reason}: use {where}trainer.precision=bf16-mixed"


def torchao_missing_reason(where: str = "") -> str | None:
    """Why torchao cannot be used here (not installed, or older than TORCHAO_MIN_VERSION); None when it can.
    `where` is said after "not installed" (e.g. " in /path/python, the Python the ranks run"). Looks at the
    installed package without importing it (an import costs ~1.5 s and loads its CUDA extensions)."""
    if importlib.util.find_spec("torchao") is None:
        return f"trainer.precision=float8 needs torchao, which is not installed{where}: {INSTALL_HINT}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("torchao")
    except PackageNotFoundError:  # importable without metadata (a source checkout): trust it
        return None
    parts = []
    for piece in installed.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) if piece else ""
        parts.append(int(digits) if digits else 0)
    if tuple(parts) < TORCHAO_MIN_VERSION:
        wanted = ".".join(str(p) for p in TORCHAO_MIN_VERSION)
        return f"trainer.precision=float8 needs torchao >= {wanted}, found {installed}{where}: {INSTALL_HINT}"
    return None


def float8_filter(module: nn.Module, fqn: str) -> bool:
    """torchao's module_filter_fn: True for a plain nn.Linear (not a subclass, whose own forward would be lost)
    with in and out features divisible by 16, unless it is an output projection (HEAD_NAMES)."""
    from torch import nn

    if type(module) is not nn.Linear:
        return False
    if fqn.rsplit(".", 1)[-1] in HEAD_NAMES:
        return False
    return module.in_features % 16 == 0 and module.out_features % 16 == 0


def convert_to_float8(
    module: nn.Module, *, emulate: bool = False, fsdp_float8_all_gather: bool = False
) -> int:
    """Swap, in place, the nn.Linear layers of `module` that float8_filter accepts for torchao's Float8Linear;
    returns how many were converted. Call it before fully_shard and torch.compile. `emulate`: float8 casts with
    fp32 matmuls (any device, for tests); `fsdp_float8_all_gather`: FSDP2 all-gathers weights in float8 (then call
    torchao.float8.precompute_float8_dynamic_scale_for_fsdp after each optimizer step for speed).
    Raises ModuleNotFoundError without torchao, ValueError when `module` itself is an nn.Linear (it cannot be
    replaced in place)."""
    from torch import nn
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    if isinstance(module, nn.Linear):
        raise ValueError("convert_to_float8 swaps the layers inside a module; wrap a lone nn.Linear first")
    converted: list[str] = []

    def accept(child: nn.Module, fqn: str) -> bool:
        keep = float8_filter(child, fqn)
        if keep:
            converted.append(fqn)
        return keep

    config = Float8LinearConfig(emulate=emulate, enable_fsdp_float8_all_gather=fsdp_float8_all_gather)
    convert_to_float8_training(module, module_filter_fn=accept, config=config)
    return len(converted)


def prepare_float8(module: nn.Module, device: Any = None) -> int:
    """What a float8 run does to its network once built: refuse (UserError, one line) when `device` (None: this
    process's CUDA device) or the install cannot train in float8, else convert_to_float8; returns the count."""
    reason = float8_unsupported_reason(device) or torchao_missing_reason()
    if reason:
        raise UserError(reason)
    count = convert_to_float8(module)
    if count == 0:
        raise UserError(
            "trainer.precision=float8, but the model has no nn.Linear layer whose in/out features are multiples "
            f"of 16 (output heads excepted), so nothing would run in float8: {FIX}"
        )
    return count


def lightning_precision(precision: str) -> str:
    """Lightning's precision for normia's trainer.precision: float8 runs under bf16-mixed; others unchanged."""
    return LIGHTNING_PRECISION if precision == "float8" else precision
