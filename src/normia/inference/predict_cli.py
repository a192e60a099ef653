"""`normia predict ckpt=PATH|run=MLFLOW_RUN_ID data.path=NEW_FILE [output=preds.csv]`: predictions as a table.

A byte-level language model reads a CSV with a `prompt` column and takes `max_new_tokens=N` (default 100),
`temperature=T` (default 0: greedy) and `seed=S` (default 0, for T > 0); other models refuse these options.
Without output= the table goes to stdout (CSV). Bad input is one line on stderr, exit code 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys

from normia.errors import UserError

GENERATION_KEYS = ("max_new_tokens", "temperature", "seed")
KEYS = ("ckpt", "run", "data.path", "output", *GENERATION_KEYS)


def parse_pairs(texts: list[str], allowed: tuple[str, ...], command: str) -> dict[str, str]:
    """`key=value` arguments -> {key: value}; quotes around a value are removed. Raises UserError for an unknown
    or repeated key, or an argument without '='."""
    from normia.errors import did_you_mean

    pairs: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep:
            raise UserError(
                f"'{text}' is not key=value: {command} takes {', '.join(k + '=...' for k in allowed)}"
            )
        if key not in allowed:
            raise UserError(f"unknown argument '{key}' for {command}{did_you_mean(key, allowed)}")
        if key in pairs:
            raise UserError(f"{key}= is given twice")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs[key] = value
    return pairs


def run_source(pairs: dict[str, str], command: str) -> str:
    """The checkpoint path or run id named by exactly one of ckpt= and run=."""
    if ("ckpt" in pairs) == ("run" in pairs):
        raise UserError(f"{command} needs exactly one of ckpt=PATH (a .ckpt file) and run=MLFLOW_RUN_ID")
    if "run" in pairs:
        from normia.inference.loading import RUN_ID

        if not RUN_ID.fullmatch(pairs["run"]):
            raise UserError(f"run={pairs['run']} is not an MLflow run id (32 hex digits)")
        return pairs["run"]
    return pairs["ckpt"]


def main(argv: list[str]) -> int:
    """Entry point of `normia predict`; returns the exit code (UserError is turned into exit 2 by normia.cli)."""
    parser = argparse.ArgumentParser(
        prog="normia predict",
        description="Predictions of a trained run on new data, as a table in the input's conventions (forecasts in "
        "the data's units with their dates; classes with per-class probabilities; a language model's continuation "
        "and score of each prompt).",
    )
    parser.add_argument(
        "args",
        nargs="+",
        help="ckpt=PATH or run=MLFLOW_RUN_ID, data.path=FILE, [output=FILE]; language models: "
        "[max_new_tokens=N] [temperature=T] [seed=S]",
    )
    parser.add_argument("--config-dir", metavar="DIR", help="the project whose code the run's config names")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="load the run's config even if it names code outside the allowed targets or calls resolvers "
        "(only for a run folder you or someone you trust wrote)",
    )
    args = parser.parse_args(argv)
    pairs = parse_pairs(args.args, KEYS, "normia predict")
    source = run_source(pairs, "normia predict")
    if "data.path" not in pairs:
        raise UserError("normia predict needs data.path=FILE: the new data to predict on")
    from normia.api import predict_to

    options = {key: pairs[key] for key in GENERATION_KEYS if key in pairs}
    rows = predict_to(source, pairs["data.path"], pairs.get("output"), args.config_dir, args.trust, options)
    if pairs.get("output"):
        print(f"wrote {rows} prediction row(s) to {pairs['output']}", file=sys.stderr)
    return 0
