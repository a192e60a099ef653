"""New data -> predictions, as a pandas DataFrame, with the training run's statistics and reading rules.

One entry point, `predict_frame(run, frame)`, takes the same table whatever the caller (`normia predict` after reading
a file, `normia.predict`, the exported MLflow model over REST):

- forecast: the history in the training file's layout (date column and target columns, or the long format with its
  series column). The last `input_len` steps are standardised with the training statistics; the result has one row
  per forecast date: the date column and every target column, in the data's original units.
- classify (tables): the feature columns; the result keeps the input's other columns (identifiers), then `class`
  (the class name) and `p_<class>` per class (probabilities summing to 1).
- regress (tables): the feature columns; the result is the target column in its original units.
- images: a `file` column (or the label table's file column) and an `image` column holding each file's bytes,
  base64-encoded (how an image travels in a table and over REST); the result is the file name, `class`, `p_<class>`.
- digits (sklearn's 8x8): 64 numeric pixel columns in sklearn's 0..16 scale, or images as above (8x8, grey).
- text_table (Hugging Face sequence classifiers, data=text_csv): the training text column; the result keeps the
  input's other columns (identifiers; the label column, if present, is left out), then `class` and `p_<class>`.
  The texts are tokenised with the run's tokenizer folder (its model.path) and max_length.
- text (byte-level language models): a `prompt` column; the result keeps the input's columns and adds
  `continuation`, `mean_logprob`, `bits_per_byte` (see language.py, which also takes the generation options).

Input that does not match what the model was trained on (a missing column, another frequency, too short a history,
another image size, a cell that is not a number) raises UserError with one line naming it and the fix.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from normia.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from normia.inference.loading import LoadedRun

IMAGE_COLUMN = "image"  # base64 of an image file's bytes
DDMMYYYY = re.compile(r"\s*\d{1,2}/\d{1,2}/\d{4}\s*")


def input_kind(run: LoadedRun) -> str:
    """'series', 'table', 'images', 'digits', 'text_table' or 'text': the layout of the table predict_frame takes for
    this run."""
    if run.kind == "forecast":
        return "series"
    return str(run.state.get("input", "table"))


def file_column(run: LoadedRun) -> str:
    """The name of the column that names image files: the label table's (e.g. 'fichier'), else 'file'."""
    return str(run.state.get("file_column") or "file")


# ---------------------------------------------------------------------------------------------------------- reading
def read_input(run: LoadedRun, path: str | os.PathLike[str]) -> pd.DataFrame:
    """The table predict_frame takes, read from a file or folder the way the training data was read.

    series/table: a CSV (separator and decimal mark detected, or the run's data.sep/decimal) or Parquet file.
    images: a folder of image files (sub-folders included), a label table naming files beside it, or one image.
    digits: a table of 64 pixel columns, or images as above. Raises UserError for a missing or unreadable input.
    """
    from normia.data.table_reader import read_table

    p = Path(path).expanduser()
    kind = input_kind(run)
    if not p.exists():
        raise UserError(f"input not found: {p} (fix data.path)")
    if kind == "text":
        from normia.inference.language import read_prompts

        return read_prompts(run, p)
    options = _read_options(run)
    if kind in ("images", "digits") and (p.is_dir() or _is_image(p)):
        return image_frame(_image_files(p), file_column(run), root=p if p.is_dir() else p.parent)
    if kind == "images":
        table = read_table(p, **options)
        column = file_column(run) if file_column(run) in table.columns else "file"
        if column not in table.columns:
            raise UserError(
                f"{p} has no column '{file_column(run)}' naming image files: give a folder of images or a table "
                f"with that column"
            )
        names = [str(v).strip() for v in table[column]]
        frame = image_frame([p.parent / name for name in names], file_column(run), root=p.parent)
        frame.attrs.update(table.attrs)
        return frame
    if p.is_dir():
        raise UserError(
            f"{p} is a folder: normia predict needs a CSV or Parquet file for this model (data.path)"
        )
    return read_table(p, **options)


def _read_options(run: LoadedRun) -> dict[str, Any]:
    data = run.cfg.data
    return {
        "sep": data.get("sep"),
        "decimal": data.get("decimal"),
        "encoding": data.get("encoding") or "utf-8-sig",
    }


def _is_image(path: Path) -> bool:
    from normia.data.images import IMAGE_SUFFIXES

    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _image_files(path: Path) -> list[Path]:
    from normia.data.images import IMAGE_SUFFIXES

    if path.is_file():
        return [path]
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}: fix data.path")
    return files


def image_frame(files: list[Path], name_column: str = "file", root: Path | None = None) -> pd.DataFrame:
    """A table of images: `name_column` (the path relative to root) and `image` (the file's bytes, base64).

    Raises UserError for a file that does not exist."""
    import pandas as pd

    names, blobs = [], []
    for f in files:
        if not f.is_file():
            raise UserError(f"image {f} not found: fix the file name or data.path")
        names.append(f.relative_to(root).as_posix() if root and f.is_relative_to(root) else f.name)
        blobs.append(base64.b64encode(f.read_bytes()).decode("ascii"))
    return pd.DataFrame({name_column: names, IMAGE_COLUMN: blobs})


# ------------------------------------------------------------------------------------------------------- predicting
def predict_frame(
    run: LoadedRun,
    frame: pd.DataFrame,
    source: str = "the input",
    options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Predictions for `frame` (see the module docstring for its layout per task). source: how errors name it.
    options: a language model's generation options (max_new_tokens, temperature, seed; see language.py).

    Returns a new DataFrame; raises UserError for input that does not match the trained model, and for options
    given to a model that is not a language model."""
    import torch

    kind = input_kind(run)
    if kind == "text":
        from normia.inference.language import predict_text

        return predict_text(run, frame, source, options)
    given = sorted(k for k, v in (options or {}).items() if v is not None)
    if given:
        raise UserError(
            f"{given[0]}= applies to language models only; this run is a {run.kind} model: drop it"
        )
    with torch.no_grad():
        if kind == "series":
            return _forecast(run, frame, source)
        if kind == "images" or (kind == "digits" and IMAGE_COLUMN in frame.columns):
            return _images(run, frame, source)
        if kind == "digits":
            return _digits_table(run, frame, source)
        if kind == "table":
            return _table(run, frame, source)
        if kind == "text_table":
            return _text_table(run, frame, source)
    raise UserError(f"normia predict does not handle this run's input layout '{kind}'")


def _forecast(run: LoadedRun, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    import pandas as pd
    import torch

    from normia.data.series import SeriesDataModule

    state = run.state
    options = {k: v for k, v in _data_options(run).items() if k != "path"}
    options.update(path=source, dataset=None)
    if not options.get("series_column"):  # the trained columns, by name: extra columns are left out
        options["columns"] = list(state["columns"])
    reader = SeriesDataModule.for_prediction(**options)
    reader.path = source  # errors name the input, not the training file
    values = reader.load_frame(frame.copy())
    columns = [str(c) for c in values.columns]
    if columns != list(state["columns"]):
        missing = [c for c in state["columns"] if c not in columns]
        what = f"lacks {missing}" if missing else f"has the channels {columns}"
        raise UserError(
            f"{source} {what}; the model was trained on {list(state['columns'])}: give those columns (series)"
        )
    input_len, horizon = int(state["input_len"]), int(state["horizon"])
    if len(values) < input_len:
        raise UserError(
            f"{source} holds {len(values)} steps of history; the model needs at least {input_len} "
            f"(data.input_len): give a longer history"
        )
    freq = state.get("freq")
    dates = pd.DatetimeIndex(values.index) if state.get("date_column") else None
    if dates is not None and freq:
        _check_frequency(dates, str(freq), source)
    history = values.to_numpy(dtype=np.float64)[-input_len:]
    mean, std = np.asarray(state["mean"]), np.asarray(state["std"])
    scaled = ((history - mean) / std).astype(np.float32)
    out = (
        run.model(torch.from_numpy(scaled)[None]).numpy()[0].astype(np.float64)
    )  # (horizon, C), standardised
    forecast = out * std + mean
    result = pd.DataFrame(forecast, columns=list(state["columns"]))
    if dates is not None and freq:
        future = pd.date_range(dates[-1], periods=horizon + 1, freq=freq)[1:]
        result.insert(0, str(state["date_column"]), future)
    else:
        result.insert(0, "step", np.arange(1, horizon + 1))
    return result


def _check_frequency(dates: pd.DatetimeIndex, freq: str, source: str) -> None:
    import pandas as pd
    from pandas.tseries.frequencies import to_offset

    found = pd.infer_freq(dates[-min(len(dates), 50) :]) if len(dates) >= 3 else None
    if found is None or to_offset(found) != to_offset(freq):
        raise UserError(
            f"the dates of {source} step by '{found or 'irregular'}'; the model was trained on '{freq}' steps: "
            f"give a series at that frequency (or set data.resample={freq} when training)"
        )


def _data_options(run: LoadedRun) -> dict[str, Any]:
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(run.cfg.data, resolve=False)
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items() if not str(k).startswith("_")}


def _features(frame: pd.DataFrame, names: list[str], source: str) -> np.ndarray:
    from normia.data.table_reader import numeric_columns, require_columns

    require_columns(frame, names, source, "features")
    x = numeric_columns(frame, names, source).to_numpy(dtype=np.float64)
    if np.isnan(x).any():
        row, col = map(int, np.argwhere(np.isnan(x))[0])
        raise UserError(f"empty cell in column '{names[col]}' of {source} at data row {row + 1}: fill it")
    return x


def _table(run: LoadedRun, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    import torch

    state = run.state
    names = [str(c) for c in state["features"]]
    x = _features(frame, names, source)
    if len(x) == 0:
        raise UserError(f"{source} has no rows to predict")
    scaled = (x - np.asarray(state["mean"])) / np.asarray(state["std"])
    out = run.model(torch.from_numpy(scaled.astype(np.float32))).numpy().astype(np.float64)
    kept = frame[[c for c in frame.columns if str(c) not in names and str(c) != state["target"]]].copy()
    kept = kept.reset_index(drop=True)
    if run.kind == "regress":
        values = out.reshape(len(x), -1)[:, 0] * state["target_std"][0] + state["target_mean"][0]
        kept[str(state["target"])] = values
        return kept
    return _with_classes(kept, out, list(state["classes"]))


TEXT_BATCH = 32  # texts per forward pass


def _text_table(run: LoadedRun, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """A sequence classifier's classes for the text column of `frame` (tokenised as in training, batches padded)."""
    import torch

    from normia.data.table_reader import require_columns
    from normia.models.hf.loading import load_tokenizer

    state = run.state
    text, label = str(state["text"]), str(state.get("label") or "")
    require_columns(frame, [text], source, "text")
    if len(frame) == 0:
        raise UserError(f"{source} has no rows to predict")
    cells = frame[text]
    empty = cells.isna() | (cells.astype(str).str.strip() == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise UserError(
            f"empty cell in column '{text}' of {source} at data row {row + 1}: fill it or drop the row"
        )
    if "tokenizer" not in run.extra:
        tokenizer = load_tokenizer(str(state["tokenizer"]))
        tokenizer.padding_side = "right"  # as TextCSVDataModule pads
        if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # what TextCSVDataModule pads with then
        run.extra["tokenizer"] = tokenizer
    tokenizer = run.extra["tokenizer"]
    texts = [str(v).strip() for v in cells]
    logits = []
    for start in range(0, len(texts), TEXT_BATCH):
        batch = tokenizer(
            texts[start : start + TEXT_BATCH],
            truncation=True,
            max_length=int(state["max_length"]),
            padding=True,
            return_tensors="pt",
        )
        ids = batch["input_ids"].to(torch.int64)
        mask = batch["attention_mask"].to(torch.int64)
        logits.append(run.model(ids, mask).float().numpy().astype(np.float64))
    kept = frame[[c for c in frame.columns if str(c) not in (text, label)]].reset_index(drop=True)
    return _with_classes(kept, np.concatenate(logits), list(state["classes"]))


def _with_classes(result: pd.DataFrame, logits: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Append `class` and `p_<class>` columns computed from logits (N, K)."""
    import pandas as pd

    if logits.shape[1] != len(classes):
        raise UserError(
            f"the model has {logits.shape[1]} outputs but its run recorded {len(classes)} classes: retrain it"
        )
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    columns = {"class": [classes[i] for i in probs.argmax(axis=1)]}
    columns.update({f"p_{name}": probs[:, k] for k, name in enumerate(classes)})
    return pd.concat([result.reset_index(drop=True), pd.DataFrame(columns)], axis=1)


def _digits_table(run: LoadedRun, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    import torch

    from normia.data.table_reader import numeric_columns

    numeric = pixel_columns(frame)
    if numeric is None:
        raise UserError(
            f"{source} has no 64 pixel columns (pixel_0..pixel_63, or exactly 64 numeric columns); this digits "
            "model takes 8x8 images as 64 pixel values 0..16 (sklearn's load_digits().data) or a folder of images"
        )
    x = numeric_columns(frame, numeric, source).to_numpy(dtype=np.float32) / float(run.state["pixel_max"])
    if np.isnan(x).any():
        row = int(np.argwhere(np.isnan(x))[0][0])
        raise UserError(f"empty pixel cell in {source} at data row {row + 1}: fill it")
    inputs = x if run.state.get("flatten", True) else x.reshape(-1, 1, 8, 8)
    logits = run.model(torch.from_numpy(np.ascontiguousarray(inputs))).numpy()
    kept = frame[[c for c in frame.columns if str(c) not in numeric]]
    return _with_classes(kept, logits, list(run.state["classes"]))


def pixel_columns(frame: pd.DataFrame, count: int = 64) -> list[str] | None:
    """The pixel columns of a digits table, in pixel order: `<prefix>0` .. `<prefix>63` for one prefix (pixel_0,
    p0, ...), else the numeric columns when there are exactly `count`; None when neither."""
    groups: dict[str, dict[int, str]] = {}
    for column in map(str, frame.columns):
        match = re.fullmatch(r"(.*?)(\d+)", column)
        if match:
            groups.setdefault(match.group(1), {})[int(match.group(2))] = column
    for found in groups.values():
        if sorted(found) == list(range(count)):
            return [found[i] for i in range(count)]
    numeric = [str(c) for c in frame.columns if np.issubdtype(frame[c].dtype, np.number)]
    return numeric if len(numeric) == count else None


def _images(run: LoadedRun, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    import torch

    from normia.data.images import read_image

    state = run.state
    name_column = file_column(run) if file_column(run) in frame.columns else "file"
    for column in (name_column, IMAGE_COLUMN):
        if column not in frame.columns:
            raise UserError(
                f"{source} has no '{column}' column: images come as a '{name_column}' column (the file name) and "
                f"an '{IMAGE_COLUMN}' column (the file's bytes, base64)"
            )
    digits = input_kind(run) == "digits"
    grayscale = True if digits else bool(state.get("grayscale"))
    size = None if digits else state.get("image_size")
    expected = tuple(int(v) for v in state["image_shape"])
    arrays = []
    for name, blob in zip(frame[name_column].astype(str), frame[IMAGE_COLUMN], strict=True):
        try:
            raw = base64.b64decode(str(blob), validate=True)
        except ValueError:
            raise UserError(f"the '{IMAGE_COLUMN}' cell of {name} in {source} is not base64") from None
        try:
            array = read_image(io.BytesIO(raw), size, grayscale)
        except UserError:
            raise UserError(f"cannot read the image {name} of {source}: not an image file") from None
        if array.shape != expected:
            raise UserError(
                f"image {name} is {array.shape[2]}x{array.shape[1]} with {array.shape[0]} channel(s); the model was "
                f"trained on {expected[2]}x{expected[1]} images with {expected[0]}: resize it (or train with "
                "data.image_size set)"
            )
        arrays.append(array)
    if not arrays:
        raise UserError(f"{source} holds no images")
    x = np.stack(arrays)
    if digits:
        inputs = x.reshape(len(x), -1) if state.get("flatten", True) else x
    else:
        shape = (1, -1, 1, 1)
        inputs = (x - np.asarray(state["mean"]).reshape(shape)) / np.asarray(state["std"]).reshape(shape)
    logits = run.model(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))).numpy()
    names = frame[[name_column]].reset_index(drop=True)
    return _with_classes(names, logits, list(state["classes"]))


# ---------------------------------------------------------------------------------------------------------- writing
def conventions(frame: pd.DataFrame) -> dict[str, str]:
    """How the input file wrote its table: {'sep', 'decimal', 'date_format'}; a `;` file writes decimal commas
    (the French open-data convention), a dd/mm/yyyy date column writes its dates back the same way."""
    sep = frame.attrs.get("sep") or ","
    decimal = frame.attrs.get("decimal") or ("," if sep == ";" else ".")
    date_format = "%Y-%m-%d"
    for column in frame.columns:
        cells = frame[column]
        if len(cells) and isinstance(cells.iloc[0], str) and DDMMYYYY.fullmatch(cells.iloc[0]):
            date_format = "%d/%m/%Y"
            break
    return {"sep": sep, "decimal": decimal, "date_format": date_format}


def write_table(result: pd.DataFrame, path: str | os.PathLike[str], style: dict[str, str]) -> None:
    """Write `result` as CSV in the input's conventions, atomically (nothing half-written, nothing on error).

    Raises UserError for an output folder that does not exist."""
    from normia.training.atomic_text import write_atomic

    target = Path(path)
    if not target.parent.is_dir():
        raise UserError(f"cannot write {target}: the folder {target.parent} does not exist (fix output=)")
    text = to_csv_text(result, style)
    write_atomic(target, lambda handle: handle.write(text))


def to_csv_text(result: pd.DataFrame, style: dict[str, str]) -> str:
    """The CSV text of `result` in `style` (see conventions); floats keep 6 significant digits."""
    buffer = io.StringIO()
    result.to_csv(
        buffer,
        sep=style["sep"],
        decimal=style["decimal"],
        date_format=style["date_format"],
        float_format="%.6g",
        index=False,
    )
    return buffer.getvalue()
