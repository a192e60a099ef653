"""`normia checkpoint consolidate PATH [--to hf] [--output OUT]`: a sharded checkpoint (a folder written by FSDP
ranks) as ONE file in the format DDP and one-process runs write (resumable by DDP, FSDP or one process, readable by
eval/predict/export), or as a Hugging Face LlamaForCausalLM folder for model=hf_llama / llama runs. Runs in one
process without a process group; needs host memory for the whole model and optimizer state once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from normia.errors import UserError


def consolidate(path: Path, output: Path) -> Path:
    """Write the checkpoint at `path` (sharded folder or one file) as one file at `output` (atomic: a temporary
    beside it, then a rename). Raises UserError for a path that is not a checkpoint or a refused one."""
    import torch

    from normia.training.atomic_text import write_atomic
    from normia.training.checkpoint import is_checkpoint, load_checkpoint_file

    if not is_checkpoint(path):
        raise UserError(
            f"{path} is not a checkpoint (a .ckpt file, or a sharded folder with .metadata and meta.pt)"
        )
    content = load_checkpoint_file(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, lambda handle: torch.save(content, handle), binary=True)
    return output


def consolidated_for_resume(path: Path, output_dir: Path, rank_zero: bool) -> Path:
    """A one-file copy of the sharded checkpoint `path`, for a job that resumes it without FSDP (DDP or one
    process). Each rank writes its own (no process group exists yet here); they are removed at the next resume."""
    folder = Path(output_dir) / "checkpoints"
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    target = folder / f".resume-{path.resolve().name}.rank{rank}"
    for stale in folder.glob(".resume-*.rank*"):
        if stale != target:
            stale.unlink(missing_ok=True)
    if rank_zero:
        print(f"resuming a sharded checkpoint without FSDP: consolidating {path} into one file", flush=True)
    return consolidate(path, target)


def to_hugging_face(path: Path, output: Path, trust: bool = False) -> Path:
    """The weights of a llama / hf_llama run's checkpoint as a LlamaForCausalLM folder (config.json and
    model.safetensors). The model is rebuilt from the run's recorded config, checked as `normia eval` checks it.
    Raises UserError for a run whose model is not normia's Llama."""
    from normia.config.trust import load_untrusted_yaml, trusted_prefixes
    from normia.models.hf.llama import save_llama_as_hf
    from normia.models.llama import Llama
    from normia.training.build import instantiate_node
    from normia.training.checkpoint import load_checkpoint_file

    content = load_checkpoint_file(path)
    text = (content.get("normia") or {}).get("config")
    if not text:
        raise UserError(
            f"{path} holds no recorded config (not written by normia train): --to hf cannot rebuild it"
        )
    cfg = load_untrusted_yaml(
        str(text), f"the config inside {path}", trust=trust, prefixes=trusted_prefixes()
    )
    model = instantiate_node(cfg.model, "model", trust=trust)
    if not isinstance(model, Llama):
        raise UserError(
            f"--to hf writes LlamaForCausalLM folders; the model of {path} is {type(model).__name__} "
            "(leave --to out to get one file)"
        )
    weights = {
        k.removeprefix("model."): v for k, v in content["state_dict"].items() if k.startswith("model.")
    }
    model.load_state_dict(weights)
    return save_llama_as_hf(model, output)


def main(argv: list[str]) -> int:
    """Entry point of `normia checkpoint`."""
    parser = argparse.ArgumentParser(prog="normia checkpoint", description="Work on checkpoints.")
    sub = parser.add_subparsers(dest="action", required=True)
    cons = sub.add_parser("consolidate", help="a sharded checkpoint as one file (or a Hugging Face folder)")
    cons.add_argument("path", help="a checkpoint: step-N.ckpt / last.ckpt folder or file")
    cons.add_argument("--to", choices=("file", "hf"), default="file", help="one .ckpt file (default) or hf")
    cons.add_argument("--output", "-o", help="where to write (default: PATH.consolidated.ckpt, or PATH.hf/)")
    cons.add_argument(
        "--trust", action="store_true", help="--to hf: rebuild the model without the trust checks"
    )
    args = parser.parse_args(argv)
    path = Path(args.path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    base = path.resolve()
    if args.to == "hf":
        output = Path(args.output) if args.output else base.with_name(base.name.removesuffix(".ckpt") + ".hf")
        if output.exists() and any(output.iterdir()):
            raise UserError(f"{output} exists and is not empty: give --output NEW_FOLDER")
        print(f"wrote {to_hugging_face(path, output, trust=args.trust)}")
        return 0
    output = (
        Path(args.output)
        if args.output
        else base.with_name(base.name.removesuffix(".ckpt") + ".consolidated.ckpt")
    )
    if output.exists():
        raise UserError(f"{output} exists: give --output NEW_FILE")
    print(f"wrote {consolidate(path, output)}")
    return 0
