"""Helpers shared by the data modules: contiguous or shuffled splits, and normalisation fitted on the train split only.

Statistics computed on the whole dataset leak the validation set into training; every data module here fits them on
its train split and applies them unchanged to the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normia.errors import UserError


def check_fraction(name: str, value: float, allow_zero: bool = False) -> float:
    """A split fraction must lie in (0, 1) (or [0, 1) when allow_zero)."""
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (low_ok and value < 1.0):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise UserError(f"data.{name}={value} is outside {interval}: set a fraction such as data.{name}=0.2")
    return float(value)


def split_sizes(n: int, val_fraction: float, what: str = "samples") -> tuple[int, int]:
    """(n_train, n_val) for n items; both at least 1, or a UserError saying there is too little data."""
    n_val = round(n * val_fraction)
    n_val = max(1, n_val)
    n_train = n - n_val
    if n_train < 1:
        raise UserError(f"only {n} {what}: too few to hold out data.val_fraction={val_fraction}; add data")
    return n_train, n_val


def shuffled_split(
    n: int, val_fraction: float, seed: int, what: str = "samples"
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices) of a seeded permutation: the split depends on data.seed only, not the run seed."""
    n_train, _ = split_sizes(n, val_fraction, what)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean and std fitted on the train split; std of a constant feature is taken as 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray, axis: int | tuple[int, ...] = 0) -> Standardizer:
        train = np.asarray(train, dtype=np.float64)
        mean = train.mean(axis=axis, keepdims=True)
        std = train.std(axis=axis, keepdims=True)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) * self.std + self.mean).astype(np.float32)
