"""MLflow's sqlite/SQL stores keep NaN but store +-inf as +-1.7976931348623157e308 (the largest float): normia
records which metrics were infinite (a tag) and maps that value back to inf when it reads metrics."""

from __future__ import annotations

import math
import sys

CLAMPED = sys.float_info.max
NONFINITE_TAG = "normia.nonfinite."


def from_mlflow(value: float) -> float:
    """The value a metric had when it was logged: +-inf for MLflow's clamped +-largest float."""
    return math.copysign(math.inf, value) if abs(value) >= CLAMPED else value


def nonfinite_note(key: str, value: float, step: int) -> tuple[str, str] | None:
    """(tag name, tag value) recording the first infinite value of a metric, so the MLflow UI says so."""
    if not math.isinf(value):
        return None
    return NONFINITE_TAG + key, f"{value} at step {step} (MLflow shows {math.copysign(CLAMPED, value):.4g})"
