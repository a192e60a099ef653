"""The run's report gives metrics computed in the data's units with those units (issue 11: "MAE 3.46 µg/m3")."""

from __future__ import annotations

from omegaconf import OmegaConf

from normia.training.summary import _data_units, print_summary


def _summary(units: str | None) -> dict:
    return {
        "name": "pm10", "stopped_early": False, "monitor": "val/mae", "result": 0.475,
        "metrics": {"val/mae": 0.475, "val/mae_orig": 3.4612}, "global_step": 10, "epochs": 1, "world_size": 1,
        "throughput": {}, "wall_time_s": 1.0, "units": units, "output_dir": "outputs/pm10", "mlflow_run_id": None,
    }  # fmt: skip


def test_metrics_in_the_datas_units_show_them(capsys) -> None:
    print_summary(_summary("µg/m3"))
    out = capsys.readouterr().out
    assert "val/mae_orig             3.4612 µg/m3" in out
    assert "val/mae                  0.4750\n" in out  # standardised: no unit


def test_units_come_from_the_data_config() -> None:
    assert _data_units(OmegaConf.create({"data": {"units": "ppm"}})) == "ppm"
    assert _data_units(OmegaConf.create({"data": {"units": None}})) is None
    assert _data_units(OmegaConf.create({"data": {"batch_size": 3}})) is None
