"""The search's results: the best trial, a table of trials (printed and trials.csv) and Optuna's standard plots
(optimization history, parallel coordinates, parameter importances) as PNG files in the search folder."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from normia.search.claim import REASON_ATTR


def best_trial(study: Any) -> dict[str, Any] | None:
    """{number, value, params, run_id} of the best COMPLETE trial (run_id: its MLflow run, None without one), or None
    when no trial completed."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    return {
        "number": best.number,
        "value": best.value,
        "params": dict(best.params),
        "run_id": best.user_attrs.get("search.run_id"),
    }


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, each parameter, seconds, validations seen, run id, reason."""
    keys = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "value": t.value}
        if t.value is None and t.intermediate_values:  # a pruned trial: its last reported value
            row["value"] = t.intermediate_values[max(t.intermediate_values)]
        row.update({k: t.params.get(k) for k in keys})
        row["validations"] = len(t.intermediate_values)
        row["seconds"] = t.user_attrs.get("search.seconds")
        row["retry_of"] = t.user_attrs.get("search.retry_of")
        row["mlflow_run"] = t.user_attrs.get("search.run_id")
        row["reason"] = t.user_attrs.get(REASON_ATTR)
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    columns = list(rows[0]) if rows else ["number", "state", "value"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_table(rows: list[dict[str, Any]], monitor: str) -> str:
    """A fixed-width table for the terminal (the reason of a failed trial at the end of its line)."""
    params = [k for k in (rows[0] if rows else {}) if k not in _FIXED]
    header = ["#", "state", monitor, *params, "val", "s"]
    lines = [header]
    for row in rows:
        lines.append(
            [
                str(row["number"]),
                row["state"],
                _number(row["value"]),
                *(_number(row[k]) for k in params),
                str(row["validations"]),
                _number(row["seconds"], 1),
            ]
            + ([str(row["reason"])] if row["reason"] else [])
        )
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(header))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(line, [*widths, 0])).rstrip() for line in lines
    )


_FIXED = ("number", "state", "value", "validations", "seconds", "retry_of", "mlflow_run", "reason")


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def write_plots(study: Any, folder: Path) -> tuple[list[Path], list[str]]:
    """Optuna's matplotlib plots as PNG; (files written, 'plot: why skipped' notes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    files, skipped = [], []
    wanted = {
        "optimization_history": (plots.plot_optimization_history, 1),
        "parallel_coordinate": (plots.plot_parallel_coordinate, 1),
        "param_importances": (plots.plot_param_importances, 2),
    }
    import warnings

    for name, (plot, needed) in wanted.items():
        if len(complete) < needed:
            skipped.append(f"{name}: needs {needed} completed trial(s), the study has {len(complete)}")
            continue
        if name == "param_importances" and not _varies(complete):
            skipped.append(f"{name}: the completed trials' parameters or values do not vary")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.tight_layout()
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            files.append(path)
        except Exception as err:  # a plot Optuna cannot draw for this study: say why, keep the others
            skipped.append(f"{name}: {' '.join(str(err).split())[:200]}")
    return files, skipped


def _varies(trials: list[Any]) -> bool:
    values = {t.value for t in trials}
    params = {tuple(sorted(t.params.items())) for t in trials}
    return len(values) > 1 and len(params) > 1
