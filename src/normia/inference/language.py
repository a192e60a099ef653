"""Language models: a table of prompts -> continuations and scores, with the run's tokenisation.

Input: a table with a `prompt` column (text); its other columns are kept as identifiers. Output, per input row: the
input's columns, then `continuation` (the generated text), `mean_logprob` (the mean log-probability of the prompt's
bytes under the model, nats per byte; every byte but the first is scored) and `bits_per_byte` (= -mean_logprob / ln 2,
the unit of the run's val/bits_per_token for a byte-level model; empty for a one-byte prompt, which has nothing to
score).

Tokenisation: a byte-level run (data.path or data.corpus) encodes a prompt as its UTF-8 bytes, ids 0..255, and decodes
the continuation's bytes as UTF-8; a byte sequence that is not valid UTF-8 (the model may cut a character in two, or
stop in the middle of one) is decoded with U+FFFD in its place. Runs trained on token shards are refused: their
tokenizer is not recorded.

Context: the model sees at most `context` = min(model.max_seq_len, data.seq_len) bytes, the windows it trained on.
A longer prompt is not refused: it is scored whole, in consecutive windows of `context` predicted bytes as validation
scores the held-out text (so scoring the validation text gives val/bits_per_token), and its continuation is generated
from its last `context` bytes (a note on stderr says how many prompts were cut so).

Generation: `temperature=0` (the default) is greedy, deterministic; `temperature>0` samples from softmax(logits / T)
with a torch.Generator seeded by `seed`, row after row, so the same table and seed give the same continuations.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from normia.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import Tensor, nn

    from normia.inference.loading import LoadedRun

PROMPT_COLUMN = "prompt"
OUTPUT_COLUMNS = ("continuation", "mean_logprob", "bits_per_byte")
DEFAULTS: dict[str, int | float] = {"max_new_tokens": 100, "temperature": 0.0, "seed": 0}
MAX_NEW_TOKENS = 100_000  # no KV cache: each new token runs the model over the context once


# ---------------------------------------------------------------------------------------------------------- options
def generation_options(options: Mapping[str, Any] | None) -> dict[str, int | float]:
    """max_new_tokens (int, 0..100000), temperature (float >= 0) and seed (int), defaults filled in; values may be
    text (command-line arguments). Raises UserError for an unknown option or a value out of range."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise UserError(
            f"unknown generation option {unknown[0]}=: use {', '.join(k + '=' for k in DEFAULTS)}"
        )
    result = dict(DEFAULTS)
    for key, value in given.items():
        if value is None:
            continue
        kind = float if key == "temperature" else int
        try:
            number = kind(str(value).strip()) if isinstance(value, str) else kind(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}={value} is not {'a number' if kind is float else 'an integer'}") from None
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise UserError(f"{key}={value} is not an integer")
        result[key] = number
    if not 0 <= int(result["max_new_tokens"]) <= MAX_NEW_TOKENS:
        raise UserError(f"max_new_tokens={result['max_new_tokens']} must lie in 0..{MAX_NEW_TOKENS}")
    if not (math.isfinite(float(result["temperature"])) and float(result["temperature"]) >= 0):
        raise UserError(f"temperature={result['temperature']} must be >= 0 (0: greedy)")
    return result


# ---------------------------------------------------------------------------------------------------------- reading
def read_prompts(run: LoadedRun, path: str | os.PathLike[str]) -> pd.DataFrame:
    """A prompts table from a CSV (separator detected, every cell kept as text: no number parsing, no 'NA' -> NaN)
    or a Parquet file. The frame's attrs carry the separator for writing the result back in the same convention.

    Raises UserError for a missing, empty or unreadable file (what read_table refuses)."""
    import pandas as pd

    from normia.data.table_reader import SNIFF_BYTES, detect_separator

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"input not found: {p} (fix data.path: a CSV with a '{PROMPT_COLUMN}' column)")
    if p.suffix.lower() in (".parquet", ".pq"):
        from normia.data.table_reader import read_table

        return read_table(p)
    encoding = str(run.cfg.data.get("encoding") or "utf-8-sig")
    raw = p.read_bytes()
    if not raw.strip():
        raise UserError(f"the prompts file {p} is empty: give a CSV with a '{PROMPT_COLUMN}' column")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise UserError(
            f"the prompts file {p} is not {encoding} (invalid byte at offset {err.start}): re-encode it as UTF-8"
        ) from None
    sep = run.cfg.data.get("sep") or detect_separator(text[:SNIFF_BYTES], p, complete=len(raw) <= SNIFF_BYTES)
    try:
        frame = pd.read_csv(p, sep=sep, encoding=encoding, dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, ValueError) as err:
        raise UserError(
            f"cannot read the prompts file {p} with separator {sep!r}: {str(err).strip()}"
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.attrs.update(sep=sep, decimal=None)
    return frame


# ------------------------------------------------------------------------------------------------------- tokenising
def encode(state: Mapping[str, Any], text: str) -> list[int]:
    """The token ids of `text`: its UTF-8 bytes for a byte-level run. Raises UserError for another tokenizer."""
    _check_tokenizer(state)
    return list(text.encode(str(state.get("encoding") or "utf-8")))


def decode(state: Mapping[str, Any], ids: list[int]) -> str:
    """The text of token ids; bytes that are not valid UTF-8 become U+FFFD."""
    _check_tokenizer(state)
    return bytes(ids).decode(str(state.get("encoding") or "utf-8"), errors="replace")


def _check_tokenizer(state: Mapping[str, Any]) -> None:
    if state.get("tokenizer") != "bytes":
        raise UserError(
            f"normia predict handles byte-level language models; this run's tokenizer is "
            f"{state.get('tokenizer')!r}: retrain on text (data.path or data.corpus)"
        )


def context_length(run: LoadedRun) -> int:
    """How many tokens the model sees at once: min(model.max_seq_len, the training windows' data.seq_len)."""
    limits = [int(run.state["seq_len"])]
    if getattr(run.model, "max_seq_len", None):
        limits.append(int(run.model.max_seq_len))
    return max(1, min(limits))


# ------------------------------------------------------------------------------------------------------- predicting
def predict_text(
    run: LoadedRun, frame: pd.DataFrame, source: str = "the input", options: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Continuations and scores of the prompts of `frame` (see the module docstring); returns a new DataFrame of
    len(frame) rows: frame's columns, then continuation, mean_logprob, bits_per_byte.

    Raises UserError for a missing `prompt` column, no rows, an empty prompt cell, bad options, or a model without
    a `logits(tokens)` method."""
    import pandas as pd
    import torch

    settings = generation_options(options)
    model = run.model
    if not callable(getattr(model, "logits", None)):
        raise UserError(
            f"{type(model).__name__} has no logits(tokens) method: normia predict cannot generate with it"
        )
    if PROMPT_COLUMN not in frame.columns:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise UserError(
            f"{source} has no '{PROMPT_COLUMN}' column (columns: {columns}): give the texts to continue in a "
            f"column named {PROMPT_COLUMN}"
        )
    if len(frame) == 0:
        raise UserError(f"{source} has no prompts: add rows under the '{PROMPT_COLUMN}' column")
    prompts = []
    for row, cell in enumerate(frame[PROMPT_COLUMN]):
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or not str(cell):
            raise UserError(
                f"empty prompt in {source} at data row {row + 1}: give it some text, or remove the row"
            )
        prompts.append(str(cell))
    context = context_length(run)
    generator = torch.Generator().manual_seed(int(settings["seed"]))
    continuations, logprobs = [], []
    cut = 0
    with torch.no_grad():
        for prompt in prompts:
            ids = encode(run.state, prompt)
            cut += len(ids) > context
            total, count = score(model, ids, context)
            logprobs.append(total / count if count else float("nan"))
            new = generate(
                model,
                ids,
                context,
                int(settings["max_new_tokens"]),
                float(settings["temperature"]),
                generator,
            )
            continuations.append(decode(run.state, new))
    if cut:
        print(
            f"note: {cut} prompt(s) of {source} are longer than the model's context of {context} tokens: their "
            f"continuations see only their last {context} (their scores cover every token)",
            file=sys.stderr,
        )
    result = frame.reset_index(drop=True).copy()
    result[PROMPT_COLUMN] = prompts
    mean = np.asarray(logprobs, dtype=np.float64)
    extra = pd.DataFrame(
        {"continuation": continuations, "mean_logprob": mean, "bits_per_byte": -mean / math.log(2)}
    )
    return pd.concat([result.drop(columns=[c for c in OUTPUT_COLUMNS if c in result.columns]), extra], axis=1)


def score(model: nn.Module, ids: list[int], context: int) -> tuple[float, int]:
    """(sum of log p(token | preceding tokens) over ids[1:], in nats; how many tokens were scored = len(ids) - 1).

    The tokens are scored in consecutive windows of `context` predictions (inputs ids[s : s+context], targets shifted
    by one, s = 0, context, 2 context, ...), as validation scores the held-out text; full windows run as one batch."""
    import torch

    n = len(ids)
    if n < 2:
        return 0.0, 0
    tokens = torch.tensor(ids, dtype=torch.long)
    total = torch.zeros((), dtype=torch.float64)
    full = (n - 1) // context
    if full:
        windows = tokens[: full * context + 1]
        inputs = windows[:-1].reshape(full, context)
        targets = windows[1:].reshape(full, context)
        total += _target_logprob(model, inputs, targets)
    rest = (n - 1) - full * context
    if rest:
        start = full * context
        total += _target_logprob(model, tokens[start : start + rest][None], tokens[start + 1 :][None])
    return float(total), n - 1


def _target_logprob(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Sum of log-softmax(logits)[target] over (B, T) inputs and targets, in float64."""
    import torch

    logits = model.logits(inputs).float()  # (B, T, V)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])
    return logp.double().sum()


def generate(
    model: nn.Module,
    ids: list[int],
    context: int,
    max_new_tokens: int,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """`max_new_tokens` ids continuing `ids`: the model reads at most the last `context` tokens at each step (no KV
    cache); temperature 0 takes the most likely token (ties: the lowest id), else samples softmax(logits / T)."""
    import torch

    tokens = torch.tensor([ids], dtype=torch.long)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model.logits(tokens[:, -context:])[0, -1].float()  # (V,)
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        new.append(nxt)
        tokens = torch.cat([tokens, torch.tensor([[nxt]])], dim=1)
    return new


def example_prompts(run: LoadedRun) -> pd.DataFrame:
    """A two-row prompts table (the `prompt` column only, so that a request needs no other) for the exported model's signature and input example: the first lines of the run's
    training text when it is readable here (a bundled corpus always is), else two generic prompts."""
    import pandas as pd

    from normia.data.corpus_choice import chosen_corpus
    from normia.data.text import resolve_corpus, text_files

    data = run.cfg.data
    lines: list[str] = []
    try:
        corpus = chosen_corpus(data)
        files = [resolve_corpus(corpus)] if corpus else text_files(str(data.get("path") or ""))
        head = files[0].read_bytes()[:4096].decode("utf-8", errors="ignore")
        lines = [line.strip() for line in head.splitlines() if line.strip()][:2]
    except (UserError, OSError):
        pass
    if len(lines) < 2:
        lines = ["The ", "Once upon a time"]
    return pd.DataFrame({PROMPT_COLUMN: [line[:40] for line in lines]})
