"""The `normia` command. Thin on purpose: each subcommand's module is imported only when that subcommand runs,
so `normia --help` and `normia info` stay fast (no lightning, no mlflow)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from normia import __version__
from normia.errors import UserError

# subcommand -> (module, function, one-line help). Each function takes the remaining argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "train": (
        "normia.training.cli",
        "main",
        "train from Hydra configs: normia train experiment=quickstart [overrides]",
    ),
    "eval": (
        "normia.training.cli",
        "eval_main",
        "evaluate a checkpoint on the validation data: normia eval ckpt=PATH",
    ),
    "predict": (
        "normia.inference.predict_cli",
        "main",
        "predictions on new data as a table: normia predict ckpt=PATH|run=ID data.path=FILE [output=preds.csv]",
    ),
    "export": (
        "normia.inference.export_cli",
        "main",
        "log a trained model to MLflow (pyfunc, signature) and register it: normia export run=ID [registered_name=N]",
    ),
    "checkpoint": (
        "normia.training.consolidate",
        "main",
        "sharded checkpoint to one file or a Hugging Face folder: normia checkpoint consolidate PATH [--to hf]",
    ),
    "search": (
        "normia.search.cli",
        "main",
        "hyperparameter search with Optuna: normia search experiment=quickstart search=quickstart n_trials=12",
    ),
    "check-nodes": (
        "normia.launch.check_nodes_cli",
        "main",
        "pre-flight device and network check of Slurm nodes: normia check-nodes launcher=austral launcher.nodes=2",
    ),
    "info": ("normia.info", "main", "versions, devices and SLURM environment"),
    "bench": ("normia.bench.cli", "main", "benchmarks: normia bench kernels|train|scaling"),
    "reproduce": ("normia.reproduce", "main", "re-run a recorded MLflow run and compare its metrics"),
    "init": (
        "normia.project.init",
        "main",
        "start a project of your own (configs + code) that uses normia: normia init PATH --template table",
    ),
}


# Commands that run with any installed versions: `info` reports them, `init` writes files.
UNCHECKED_VERSIONS = {"info", "init"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normia",
        description="Config-driven training, Triton kernels and benchmarks, from a laptop CPU to a Slurm cluster.",
        epilog="Run 'normia <command> --help' for a command's options. Set NORMIA_DEBUG=1 for full tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"normia {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _resolve(name: str) -> Callable[[list[str]], int]:
    module_name, func_name, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: dispatch to a subcommand; turn UserError into a one-line message and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args or args[0] not in SUBCOMMANDS:
        parser.parse_args(args)  # prints help/version or an 'invalid choice' error (exit 2)
        parser.print_help()
        return 2
    debug = os.environ.get("NORMIA_DEBUG", "") not in ("", "0")
    try:
        if args[0] not in UNCHECKED_VERSIONS and not {"-h", "--help"} & set(args[1:]):
            from normia.versions import check_supported_versions

            check_supported_versions()
        return int(_resolve(args[0])(args[1:]) or 0)
    except UserError as err:
        if debug:
            raise
        from normia.config.masking import mask_text

        print(f"error: {mask_text(str(err))}", file=sys.stderr)  # a message may quote a value or a URI
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `normia train --cfg | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
