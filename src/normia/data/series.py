"""Multivariate time series from a CSV/Parquet file (or a series that ships with statsmodels) as forecasting windows.

Each sample is (past `input_len` steps, next `horizon` steps) of every target column. The validation split is the
last `val_fraction` of the time axis (forecasting the future, never interpolating); its windows may read inputs from
the end of the training period but every target lies in it. Values are standardised with the mean and std of the
training period only. Dates must be regular: a gap is an error unless `resample` (and `fill`) say how to regularise.
A long-format file (one row per date and per station) needs `series_column`; each series is then its own channel
(see long_format.py): rows sharing a date are never averaged together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from normia.data.datamodule import ResumableDataModule
from normia.data.facts import RecordsPredictState, plain, share_with_model, with_predict_state
from normia.data.long_format import (
    check_unique_pairs,
    selected_series,
    series_labels,
    suggest_series_column,
    to_channels,
)
from normia.data.splits import Standardizer, check_fraction
from normia.data.table_reader import numeric_columns, parse_dates, read_table, require_columns
from normia.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

FILLS = ("ffill", "interpolate")


def statsmodels_series(name: str) -> pd.DataFrame:
    """Climate series that statsmodels ships (no download): 'co2' (Mauna Loa, weekly) and 'elnino' (monthly SST)."""
    import pandas as pd
    from statsmodels import datasets

    if name == "co2":
        data = datasets.co2.load_pandas().data
        return data.rename_axis("date").reset_index()
    if name == "elnino":
        wide = datasets.elnino.load_pandas().data
        long = wide.melt(id_vars="YEAR", var_name="month", value_name="sst")
        months = {m: i + 1 for i, m in enumerate(wide.columns[1:])}
        long["date"] = pd.to_datetime(
            {"year": long["YEAR"].astype(int), "month": long["month"].map(months), "day": 1}
        )
        return long[["date", "sst"]].sort_values("date").reset_index(drop=True)
    raise UserError(f"unknown data.dataset '{name}'{did_you_mean(name, ('co2', 'elnino'))}")


def check_regular_dates(dates: pd.Series, column: str, source: str) -> None:
    """Refuse duplicated dates and gaps (a missing step in an otherwise regular series), naming the first one."""
    import pandas as pd

    index = pd.DatetimeIndex(dates)
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise UserError(
            f"date {dup.date()} appears twice in column '{column}' of {source}: remove the duplicate"
        )
    if len(index) < 3 or pd.infer_freq(index) is not None:
        return
    freq = None
    for k in range(3, min(len(index), 50) + 1):
        freq = pd.infer_freq(index[:k]) or freq
        if freq is None:
            break
    if freq is None:
        raise UserError(
            f"the dates in column '{column}' of {source} have no regular step: "
            "set data.resample (e.g. D, W, MS) to put them on a regular grid"
        )
    expected = pd.date_range(index[0], index[-1], freq=freq)
    missing = expected.difference(index)
    if len(missing):
        raise UserError(
            f"gaps in the dates of column '{column}' of {source}: {len(missing)} missing step(s) of '{freq}', "
            f"first {missing[0].date()}; add the rows or set data.resample={freq} data.fill=interpolate"
        )
    raise UserError(
        f"the dates in column '{column}' of {source} are not on a regular '{freq}' grid: set data.resample"
    )


class SeriesWindows(Dataset):
    """(input_len x C, horizon x C) float32 windows starting at the given positions of a (T, C) array."""

    def __init__(self, values: np.ndarray, input_len: int, horizon: int, starts: np.ndarray) -> None:
        self.values = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        self.input_len, self.horizon = input_len, horizon
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[index])
        cut = s + self.input_len
        return self.values[s:cut], self.values[cut : cut + self.horizon]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch in one gather (the DataLoader then skips per-sample collation: see datamodule.py)."""
        starts = torch.as_tensor(self.starts[np.asarray(indices)])
        windows = self.values[starts[:, None] + torch.arange(self.input_len + self.horizon)]
        return windows[:, : self.input_len].contiguous(), windows[:, self.input_len :].contiguous()


class SeriesDataModule(RecordsPredictState, ResumableDataModule):
    """Forecasting windows over the target columns of a dated table; see the module docstring for the rules.

    After setup: `scaler` (per-channel mean and std of the training period, original units), `column_names` (one per
    channel), `dates`, `freq` (the pandas frequency of the dates, e.g. 'MS', or None without a date column).
    """

    _defer_setup = False  # for_prediction: the options only, no training data read

    def __init__(
        self,
        path: str | None = None,
        dataset: str | None = None,
        columns: Sequence[str] | None = None,
        date_column: str | None = "date",
        input_len: int = 36,
        horizon: int = 12,
        val_fraction: float = 0.2,
        resample: str | None = None,
        fill: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        sep: str | None = None,
        decimal: str | None = None,
        encoding: str = "utf-8-sig",
        date_format: str | None = None,
        series_column: str | None = None,
        series: str | Sequence[str] | None = None,
        units: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if bool(path) == bool(dataset):
            raise UserError(
                "set exactly one of data.path (a CSV/Parquet file) and data.dataset (co2, elnino)"
            )
        if input_len < 1 or horizon < 1:
            raise UserError(f"data.input_len={input_len} and data.horizon={horizon} must both be >= 1")
        if fill is not None and fill not in FILLS:
            raise UserError(f"unknown data.fill '{fill}'{did_you_mean(fill, FILLS)}")
        if series is not None and series_column is None:
            raise UserError(
                "data.series needs data.series_column: the column that names the series of each row"
            )
        if series_column is not None and date_column is None:
            raise UserError("data.series_column needs data.date_column: long-format rows are matched by date")
        self.path, self.dataset = path, dataset
        self.columns = list(columns) if columns else None
        self.date_column = date_column
        self.input_len, self.horizon = int(input_len), int(horizon)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.resample, self.fill = resample, fill
        self.read_options = {"sep": sep, "decimal": decimal, "encoding": encoding}
        self.date_format = date_format
        self.series_column = series_column
        self.series = list(series) if isinstance(series, Sequence) and not isinstance(series, str) else series
        self.units = units  # the values' units (ppm, µg/m3): recorded with the run beside the *_orig metrics
        self.scaler: Standardizer | None = None
        self.dates: pd.DatetimeIndex | None = None
        self.raw: np.ndarray | None = None
        self.n_train = 0
        self.freq: str | None = None
        self.column_names: list[str] = []
        if not self._defer_setup:
            self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    @classmethod
    def for_prediction(cls, **options: object) -> SeriesDataModule:
        """The reading rules of a trained run's data config (separator, dates, columns, resampling, filling) without
        reading its training data: `load_frame(frame)` then reads new history the same way. Raises UserError for
        options the constructor refuses."""
        module = cls.__new__(cls)
        module._defer_setup = True
        module.__init__(**options)  # type: ignore[misc]
        return module

    @property
    def source(self) -> str:
        return str(self.path) if self.path else f"statsmodels dataset '{self.dataset}'"

    def load_frame(self, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """The target columns, indexed by date when there is a date column, checked and regularised.

        frame: a table already read (normia predict's new history); None reads data.path or data.dataset."""
        if frame is None:
            frame = (
                read_table(self.path, **self.read_options)
                if self.path
                else statsmodels_series(self.dataset or "")
            )
        present = [str(c) for c in frame.columns]
        if self.date_column is not None:
            require_columns(frame, [self.date_column], self.source, "date_column")
        if self.series_column is not None:
            require_columns(frame, [self.series_column], self.source, "series_column")
        targets = self.columns or [c for c in present if c not in (self.date_column, self.series_column)]
        require_columns(frame, targets, self.source, "columns")
        dates = None
        if self.date_column is not None:
            dates = parse_dates(frame, self.date_column, self.source, self.date_format)
            if self.series_column is None:  # checked first: a long-format file gets the hint, not a text cell
                self.check_one_row_per_date(frame, dates)
        values = self.value_columns(frame, targets)
        if dates is not None:
            if self.series_column is not None:
                values = self.series_channels(frame, values, dates)
            else:
                values.index = dates
            values = values.sort_index()
            if self.resample:
                try:
                    values = values.resample(self.resample).mean()
                except ValueError as err:
                    raise UserError(f"invalid data.resample '{self.resample}': {err}") from None
            check_regular_dates(values.index.to_series(), self.date_column, self.source)
        if self.fill == "ffill":
            values = values.ffill().bfill()
        elif self.fill == "interpolate":
            values = values.interpolate(limit_direction="both")
        missing = values.isna()
        if missing.to_numpy().any():
            column = str(missing.any()[missing.any()].index[0])
            where = values.index[missing[column].to_numpy()][0]
            at = where.date() if hasattr(where, "date") else where
            kind = "series" if self.series_column is not None else "column"
            raise UserError(
                f"{int(missing.to_numpy().sum())} missing value(s) in {kind} '{column}' of {self.source}, "
                f"first at {at}: fill them or set data.fill=interpolate (or ffill)"
            )
        return values

    def value_columns(self, frame: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
        """The target columns as numbers; when they were not listed, the error says how to leave a column out."""
        try:
            return numeric_columns(frame, targets, self.source)
        except UserError as err:
            if self.columns:
                raise
            raise UserError(f"{err}; or list the value columns in data.columns") from None

    def check_one_row_per_date(self, frame: pd.DataFrame, dates: pd.Series) -> None:
        """A repeated date is refused before any resampling, which would average the rows silently."""
        repeated = dates.duplicated().to_numpy()
        if not repeated.any():
            return
        row = int(np.flatnonzero(repeated)[0])
        guess = suggest_series_column(frame, dates, [self.date_column or "", *(self.columns or [])])
        raise UserError(
            f"date {dates.iloc[row].date()} appears twice in column '{self.date_column}' of {self.source} "
            f"(data row {row + 1}): remove the duplicate, or, if the file holds several series (one row per date "
            f"and per station), set data.series_column={guess or '<the column naming them>'}"
        )

    def series_channels(self, frame: pd.DataFrame, values: pd.DataFrame, dates: pd.Series) -> pd.DataFrame:
        """Long format: one channel per selected series (and value column), indexed by date."""
        column = self.series_column or ""
        labels = series_labels(frame, column, self.source)
        names = selected_series(labels, self.series, column, self.source)
        keep = labels.isin(names)
        check_unique_pairs(dates[keep], labels[keep], self.date_column or "", self.source)
        return to_channels(values, dates, labels, names)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._load()
        if self.scaler is not None:  # the model logs its errors in the data's units (mae_orig, rmse_orig)
            share_with_model(self, target_std=plain(self.scaler.std))

    def _load(self) -> None:
        import pandas as pd

        frame = self.load_frame()
        values = frame.to_numpy(dtype=np.float64)
        n, window = len(values), self.input_len + self.horizon
        if n < window:
            raise UserError(
                f"the series from {self.source} has {n} steps, shorter than one window "
                f"(data.input_len + data.horizon = {window}): use a longer series or shorter windows"
            )
        n_val = round(n * self.val_fraction)
        n_train = n - n_val
        if n_train < window or n_val < self.horizon:
            raise UserError(
                f"the series from {self.source} has {n} steps: with data.val_fraction={self.val_fraction} the "
                f"training part ({n_train}) needs >= {window} steps and the validation part ({n_val}) >= "
                f"{self.horizon}; use a longer series, shorter windows or another val_fraction"
            )
        self.scaler = Standardizer.fit(values[:n_train])
        scaled = self.scaler.transform(values)
        self.raw, self.n_train = values, n_train
        self.dates = frame.index if self.date_column is not None else None
        self.column_names = [str(c) for c in frame.columns]
        if self.dates is not None:
            self.freq = self.resample or pd.infer_freq(pd.DatetimeIndex(self.dates))
        train_starts = np.arange(0, n_train - window + 1)
        val_starts = np.arange(n_train - self.input_len, n - window + 1)
        self.train_set = SeriesWindows(scaled, self.input_len, self.horizon, train_starts)
        self.val_set = SeriesWindows(scaled, self.input_len, self.horizon, val_starts)

    @property
    def num_channels(self) -> int:
        self.setup()
        return len(self.column_names)

    def predict_state(self) -> dict[str, object] | None:
        """What normia predict needs from training: channel names, per-channel mean and std of the training period
        (original units), the date frequency and the window sizes. None before setup."""
        if self.scaler is None:
            return None
        return {
            "kind": "forecast",
            "columns": list(self.column_names),
            "mean": plain(self.scaler.mean),
            "std": plain(self.scaler.std),
            "freq": self.freq,
            "date_column": self.date_column,
            "input_len": self.input_len,
            "horizon": self.horizon,
            "units": self.units,
        }

    def state_dict(self) -> dict[str, object]:
        """The loader position (resume) and the prediction state, both saved in every checkpoint by Lightning."""
        return with_predict_state(super().state_dict(), self.predict_state())
