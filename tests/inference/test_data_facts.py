"""What the data modules hand to their models and to prediction: class names of a label table, the majority-class
baseline, errors in the data's units, and the prediction state saved in every checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from inference_data import CLASSES, french_series, write_label_table

from normia.data.digits import DigitsDataModule
from normia.data.images import ImageTableDataModule
from normia.data.series import SeriesDataModule
from normia.errors import UserError
from normia.models.forecaster import PatchForecaster
from normia.models.resnet import ResNetClassifier


def test_label_table_trains_without_conversion_and_names_its_classes(tmp_path: Path) -> None:
    table = write_label_table(tmp_path / "partenaire")
    dm = ImageTableDataModule(path=str(table), batch_size=4)
    assert dm.classes == list(CLASSES)  # sorted names; index = position
    x, y = dm.train_set[:]
    assert x.shape[1:] == (3, 8, 8) and set(y.tolist()) <= {0, 1, 2}
    state = dm.state_dict()["predict"]
    assert state["classes"] == list(CLASSES) and state["image_shape"] == [3, 8, 8]
    assert len(state["mean"]) == len(state["std"]) == 3


def test_label_table_bad_rows_are_one_line(tmp_path: Path) -> None:
    table = write_label_table(tmp_path / "p")
    table.write_text(table.read_text() + "absent.png;classe_zero\n")
    with pytest.raises(UserError, match=r"image 'absent.png' \(data row 37 of .*\) not found"):
        ImageTableDataModule(path=str(table))
    with pytest.raises(UserError, match="etiquette"):
        ImageTableDataModule(path=str(table), label_column="label")


def test_classifiers_log_the_majority_class_accuracy_when_evaluating() -> None:
    model = ResNetClassifier(num_classes=3, widths=[4])
    images, labels = torch.randn(6, 1, 8, 8), torch.tensor([2, 2, 2, 0, 1, 2])
    assert "acc_majority" not in model.eval().loss((images, labels))[1]  # not told yet
    model.set_data_facts(majority_class=2)
    assert model.eval().loss((images, labels))[1]["acc_majority"].item() == pytest.approx(4 / 6)
    assert "acc_majority" not in model.train().loss((images, labels))[1]
    assert "majority_class" not in model.state_dict()  # checkpoints keep their format


def test_digits_majority_class_is_that_of_the_training_split() -> None:
    dm = DigitsDataModule()
    dm.setup()
    train_labels = dm.train_set[:][1]
    assert dm.majority_class == int(torch.bincount(train_labels).argmax())
    assert dm.state_dict()["predict"]["classes"] == [str(d) for d in range(10)]


def test_forecaster_reports_errors_in_the_data_units(tmp_path: Path) -> None:
    dm = SeriesDataModule(
        path=str(french_series(tmp_path / "pm10.csv")), date_column="Date", input_len=12, horizon=3
    )
    state = dm.state_dict()["predict"]
    assert state["columns"] == ["PM10 (µg/m3)"] and state["freq"] == "D"
    model = PatchForecaster(
        input_len=12, horizon=3, patch_len=6, dim=8, n_layers=1, n_heads=2, season_length=7
    )
    batch = dm.val_set.__getitems__([0, 1, 2, 3])
    _, plain = model.loss(batch)
    assert "mae_orig" not in plain
    model.set_data_facts(target_std=state["std"])
    _, metrics = model.loss(batch)
    std = state["std"][0]
    assert metrics["mae_orig"].item() == pytest.approx(metrics["mae"].item() * std, rel=1e-5)
    assert metrics["mae_snaive_orig"].item() == pytest.approx(metrics["mae_snaive"].item() * std, rel=1e-5)
    assert metrics["rmse_orig"].item() >= metrics["mae_orig"].item()
