"""Text tables (a text column, a label column) tokenised with the tokenizer of a pretrained model's folder.

The CSV conventions are those of normia's other tables (table_reader.py): French open-data exports with `;`
separators, a UTF-8 byte-order mark and decimal commas are read as they come; the separator is detected unless
`data.sep` names it. Two tasks:

- `classification`: one label per row (any strings or numbers; numbered in sorted order, kept in `classes`);
  batches (input_ids (B, T) int64, attention_mask (B, T) int64, labels (B,) int64).
- `tokens`: the text column holds words separated by spaces and the label column one tag per word
  (`O B-LOC I-LOC`); a word's tag goes to its first sub-word token, the others get -100 (not scored);
  batches (input_ids (B, T), attention_mask (B, T), labels (B, T) int64).

Each batch is padded to its longest row (at most `max_length` tokens), with the tokenizer's pad token, else its eos
token as Transformers recommends (a tokenizer with neither is refused for batches of more than one row). The split
is a seeded shuffle of rows (data.seed). The tokenizer is read from a local folder only (offline), normally the
model's: `tokenizer: ${model.path}`.

Every checkpoint holds the prediction state `normia predict` needs (data/facts.py): the class names in index order,
the text column, max_length and the tokenizer folder as recorded; the run logs it as `normia/predict_state.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from normia.data.datamodule import ResumableDataModule
from normia.data.facts import RecordsPredictState, with_predict_state
from normia.data.splits import check_fraction, shuffled_split
from normia.data.table_reader import read_table, require_columns
from normia.errors import UserError, did_you_mean
from normia.text_limits import shown, shown_list

TASKS = ("classification", "tokens")
IGNORE_INDEX = -100
CORPORA_PACKAGE = "normia.data.corpora"


def bundled_tables() -> dict[str, Path]:
    """CSV tables shipped inside the package (name -> file), usable as data.corpus=<name>."""
    folder = resources.files(CORPORA_PACKAGE)
    return {p.name.removesuffix(".csv"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".csv")}


def check_table_source(path: str | None, corpus: str | None, default_corpus: str | None = None) -> str | None:
    """The bundled table to read (None: read data.path). A path wins over an experiment's default_corpus; a path
    with an explicitly set corpus, or neither with no default, is refused (UserError). Called by validation too, so
    that the refusal comes before the model is loaded."""
    if path and corpus:
        raise UserError(
            f"data.path={path} and data.corpus={corpus} are both set: drop data.corpus (or set data.corpus=null) to "
            "train on your CSV, or drop data.path to train on the bundled table"
        )
    if path:
        return None
    if corpus or default_corpus:
        return corpus or default_corpus
    raise UserError("set data.path (your CSV), or data.corpus for a table bundled with normia (avis_fr)")


class PaddedRows(Dataset):
    """Token rows of different lengths; `__getitems__` returns one batch padded to its longest row.

    labels: one int per row (sequence task) or one list per row, as long as its tokens (token task).
    """

    def __init__(self, ids: list[list[int]], labels: list[Any], pad_id: int) -> None:
        self.ids, self.labels, self.pad_id = ids, labels, int(pad_id)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.__getitems__([index])  # a batch of one; normia's loaders always read whole batches

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        rows = [self.ids[i] for i in indices]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(rows), width), dtype=torch.int64)
        per_token = isinstance(self.labels[indices[0]], list)
        labels = (
            torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.int64)
            if per_token
            else torch.tensor([self.labels[i] for i in indices], dtype=torch.int64)
        )
        for row, (i, tokens) in enumerate(zip(indices, rows)):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
            mask[row, : len(tokens)] = 1
            if per_token:
                labels[row, : len(tokens)] = torch.tensor(self.labels[i], dtype=torch.int64)
        return ids, mask, labels


class TextCSVDataModule(RecordsPredictState, ResumableDataModule):
    """A text column and a label column of a CSV/Parquet table, tokenised with `tokenizer` (a local model folder).

    Raises UserError (at construction, before any run is recorded) for a missing file or column, an empty text
    cell, a class that occurs only in the validation rows, a tag count that differs from the word count, or a
    folder without a tokenizer.
    """

    def __init__(
        self,
        tokenizer: str,
        path: str | None = None,
        corpus: str | None = None,
        text: str = "text",
        label: str = "label",
        task: str = "classification",
        classes: Sequence[str] | None = None,
        max_length: int = 128,
        val_fraction: float = 0.2,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        sep: str | None = None,
        encoding: str = "utf-8-sig",
        default_corpus: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if task not in TASKS:
            raise UserError(f"unknown data.task '{task}'{did_you_mean(task, TASKS)}")
        corpus = check_table_source(path, corpus, default_corpus)
        if max_length < 2:
            raise UserError(f"data.max_length={max_length} must be >= 2")
        if corpus:
            tables = bundled_tables()
            if corpus not in tables:
                raise UserError(f"unknown data.corpus '{corpus}'{did_you_mean(corpus, tables)}")
            path = str(tables[corpus])
        self.path, self.tokenizer_path, self.task = str(path), tokenizer, task
        self.text, self.label = text, label
        self.given_classes = [str(c) for c in classes] if classes else None
        self.max_length = int(max_length)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.read_options = {"sep": sep, "encoding": encoding}
        self.classes: list[str] = []
        self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    @property
    def num_labels(self) -> int:
        return len(self.classes)

    def predict_state(self) -> dict[str, object] | None:
        """What normia predict needs: the class names in index order, the text column (and the label column, left
        out of the output), max_length, the tokenizer folder as recorded, the task. None before setup."""
        if not self.classes:
            return None
        return {
            "kind": "classify",
            "input": "text_table",
            "task": self.task,
            "text": self.text,
            "label": self.label,
            "classes": list(self.classes),
            "max_length": self.max_length,
            "tokenizer": str(self.tokenizer_path),
        }

    def state_dict(self) -> dict[str, object]:
        """The loader position (resume) and the prediction state, both saved in every checkpoint by Lightning."""
        return with_predict_state(super().state_dict(), self.predict_state())

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from normia.models.hf.loading import checked_padding_id, load_tokenizer

        texts, labels = read_text_table(self.path, self.text, self.label, **self.read_options)
        train_idx, val_idx = shuffled_split(len(texts), self.val_fraction, self.seed, what="rows")
        tokenizer = load_tokenizer(self.tokenizer_path)
        if self.task == "classification":
            self.classes = self.given_classes or sorted(set(labels[train_idx]))
            lookup = self._lookup(labels, train_idx, val_idx, [[v] for v in labels])
            ids = tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
            targets: list[Any] = [lookup[v] for v in labels]
        else:
            words = [str(t).split() for t in texts]
            tags = [str(t).split() for t in labels]
            for row, (w, t) in enumerate(zip(words, tags)):
                if len(w) != len(t):
                    raise UserError(
                        f"data row {row + 1} of {self.path} has {len(w)} words in column '{self.text}' but {len(t)} "
                        f"tags in column '{self.label}': give one tag per word"
                    )
            flat = np.array([tag for row in tags for tag in row], dtype=object)
            seen_train = {tag for i in train_idx for tag in tags[i]}
            self.classes = self.given_classes or sorted(seen_train)
            lookup = self._lookup(flat, None, None, tags, seen_train)
            encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
            ids = encoded["input_ids"]
            targets = [
                _word_labels(encoded.word_ids(r), [lookup[t] for t in tags[r]]) for r in range(len(ids))
            ]
        pad = checked_padding_id(tokenizer, str(self.tokenizer_path), self.batch_size)
        self.train_set = PaddedRows([ids[i] for i in train_idx], [targets[i] for i in train_idx], pad)
        self.val_set = PaddedRows([ids[i] for i in val_idx], [targets[i] for i in val_idx], pad)

    def _lookup(
        self,
        labels: np.ndarray,
        train_idx: np.ndarray | None,
        val_idx: np.ndarray | None,
        per_row: list[list[str]],
        seen_train: set[str] | None = None,
    ) -> dict[str, int]:
        """Class name -> id; refuses labels outside data.classes, and classes seen only in validation rows."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        if self.given_classes:
            for row, values in enumerate(per_row):
                unknown = [v for v in values if v not in lookup]
                if unknown:
                    raise UserError(
                        f"label {shown(unknown[0])} in column '{self.label}' of {self.path} at data row {row + 1} is not "
                        f"in data.classes ({shown_list(self.classes, count=20)}): add it or fix the cell"
                    )
            return lookup
        if seen_train is None and train_idx is not None and val_idx is not None:
            seen_train = set(labels[train_idx])
            unseen = sorted(set(labels[val_idx]) - seen_train)
        else:
            unseen = sorted({v for row in per_row for v in row} - (seen_train or set()))
        if unseen:
            raise UserError(
                f"label(s) {shown_list(unseen)} of column '{self.label}' occur only in the validation rows: add examples, "
                "change data.seed, or list every label in data.classes"
            )
        return lookup


def _word_labels(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """A word's tag on its first token; -100 on its other tokens and on special tokens."""
    out, previous = [], None
    for word in word_ids:
        out.append(IGNORE_INDEX if word is None or word == previous else tags[word])
        previous = word
    return out


def read_text_table(
    path: str, text: str, label: str, sep: str | None = None, encoding: str = "utf-8-sig"
) -> tuple[np.ndarray, np.ndarray]:
    """(texts, labels) as arrays of stripped strings; an empty cell in either column is refused (UserError)."""
    frame = read_table(path, sep=sep, encoding=encoding)
    require_columns(frame, [text], path, "text")
    require_columns(frame, [label], path, "label")
    if len(frame) < 2:
        raise UserError(
            f"{path} has {len(frame)} data row(s): a text table needs rows to train and validate on"
        )
    columns = []
    for name in (text, label):
        cells = frame[name]
        empty = cells.isna() | (cells.astype(str).str.strip() == "")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise UserError(
                f"empty cell in column '{name}' of {path} at data row {row + 1}: fill it or drop the row"
            )
        columns.append(cells.map(_as_text).to_numpy(dtype=object))
    return columns[0], columns[1]


def _as_text(value: Any) -> str:
    """A cell as text: a whole number read as 1.0 by the numeric parser reads '1' again."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def label_count(
    path: str, label: str, task: str = "classification", sep: str | None = None, encoding: str = "utf-8-sig"
) -> int | None:
    """How many distinct labels (or tags) a table holds, or None when it cannot be read (the data module then
    names the problem). Used by validation to compare with model.num_labels without tokenising anything."""
    try:
        frame = read_table(path, sep=sep, encoding=encoding)
    except UserError:
        return None
    if label not in frame.columns:
        return None
    cells = frame[label].dropna().map(_as_text)
    if task == "tokens":
        return len({tag for cell in cells for tag in cell.split()})
    return len(set(cells))
