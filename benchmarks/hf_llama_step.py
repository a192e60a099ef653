"""Fine-tuning step time of a LLaMA checkpoint on its two training paths (issue 12, "Measure"): Transformers'
`LlamaForCausalLM` (model=hf_causal_lm) against normia's own `Llama` holding the same weights (model=hf_llama,
normia.ops kernels: Triton on a GPU, the PyTorch reference on a CPU). Target: normia's path not slower (ratio <= 1).

Both run the loss of their normia wrapper (HFCausalLM.loss and Llama.loss: mean next-token cross-entropy),
backward and an AdamW step, on the same random token batches, in one process, alternating blocks of steps so that a
busy machine slows both alike. The two models start from the same weights (a random LlamaForCausalLM saved with
save_pretrained and read back by normia's loader); their first losses are compared as a check.

    python benchmarks/hf_llama_step.py                      # CPU: a small LLaMA, fp32
    python benchmarks/hf_llama_step.py --device cuda        # GPU: a 1B-class shape cut to 4 layers, bf16 autocast
    [--dim 256 --layers 4 --heads 8 --kv-heads 4 --vocab 8192 --seq 256 --batch 8 --blocks 5 --steps 4
     --threads N --out benchmarks/results/<device>-<date>]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = {
    "cpu": {"dim": 256, "layers": 4, "heads": 8, "kv_heads": 4, "vocab": 8192, "seq": 256, "batch": 8},
    "cuda": {"dim": 2048, "layers": 4, "heads": 16, "kv_heads": 8, "vocab": 32000, "seq": 2048, "batch": 8},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    for key in DEFAULTS["cpu"]:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks per path (alternating)")
    parser.add_argument("--steps", type=int, default=4, help="steps per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per path first")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument(
        "--out", default=None, help="results folder (default benchmarks/results/<device>-<date>)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from normia.bench.device import describe, provenance, resolve_device
    from normia.bench.results import ResultsWriter

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = {k: getattr(args, k) or v for k, v in DEFAULTS[device.type].items()}
    info = describe(device)
    date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    out = Path(args.out or REPO / "benchmarks" / "results" / f"{info.slug}-{date}")
    kernels = "triton" if device.type == "cuda" else "torch"
    os.environ["NORMIA_KERNELS"] = kernels
    hf_model, ours = build_pair(shape, device)
    meta = {
        **provenance(info),
        "shape": shape,
        "kernels": kernels,
        "precision": "bf16-mixed" if device.type == "cuda" else "fp32",
        "threads": torch.get_num_threads(),
        "parameters": ours.num_params(),
    }
    writer = ResultsWriter(
        out, "hf_llama_step", meta, ("path", "block", "step_s", "tokens_per_s", "first_loss")
    )
    status = "failed"
    try:
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, shape["vocab"], (shape["batch"], shape["seq"] + 1), generator=gen).to(
            device
        )
        batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
        paths = {"transformers": Stepper(hf_model, batch, device), "normia": Stepper(ours, batch, device)}
        first = {name: stepper.step() for name, stepper in paths.items()}  # same weights: same first loss
        for stepper in paths.values():
            for _ in range(args.warmup):
                stepper.step()
        times: dict[str, list[float]] = {name: [] for name in paths}
        n_tokens = shape["batch"] * shape["seq"]
        for block in range(args.blocks):
            for name, stepper in paths.items():
                step_s = stepper.timed(args.steps)
                times[name].append(step_s)
                writer.add(
                    {"path": name, "block": block, "step_s": step_s, "tokens_per_s": n_tokens / step_s,
                     "first_loss": first[name]}
                )  # fmt: skip
        medians = {name: statistics.median(t) for name, t in times.items()}
        ratio = medians["normia"] / medians["transformers"]
        writer.set_limits(
            {
                "median_step_s: transformers": medians["transformers"],
                "median_step_s: normia": medians["normia"],
                "ratio normia/transformers": ratio,
                "target": "<= 1.0 (normia's path not slower)",
                "first_loss_difference": abs(first["normia"] - first["transformers"]),
            }
        )
        status = "complete"
    finally:
        writer.finish(status)
    print(writer.markdown())
    return 0


def build_pair(shape: dict[str, int], device):
    """A random LlamaForCausalLM (seed 0) wrapped as model=hf_causal_lm would, and normia's Llama loaded from its
    saved folder as model=hf_llama would: the same weights on the two paths."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from normia.models.hf.classifiers import HFCausalLM
    from normia.models.hf.llama import PretrainedLlama

    config = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["dim"],
        intermediate_size=_ffn(shape["dim"]),
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=shape["seq"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="hf-llama-bench-"))
    LlamaForCausalLM(config).save_pretrained(str(folder))
    (folder / "generation_config.json").unlink(missing_ok=True)
    hf_model = HFCausalLM(str(folder), save_hf=False).to(device)
    ours = PretrainedLlama(str(folder), save_hf=False).to(device)
    return hf_model.train(), ours.train()


def _ffn(dim: int) -> int:
    from normia.models.llama import default_ffn_hidden

    return default_ffn_hidden(dim)


class Stepper:
    """One training path: model.loss(batch), backward, AdamW step (bf16 autocast on a GPU)."""

    def __init__(self, model, batch, device) -> None:
        import torch

        self.model, self.batch, self.device = model, batch, device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)

    def step(self) -> float:
        import torch

        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss, _ = self.model.loss(self.batch)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def timed(self, steps: int) -> float:
        """Mean seconds per step over `steps` steps (synchronised on a GPU)."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return (time.perf_counter() - start) / steps


if __name__ == "__main__":
    sys.exit(main())
