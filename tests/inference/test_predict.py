"""normia predict / normia.predict / normia.load_run on the three PoCs' kinds of model and on partners' files:
forecasts in the data's units with their dates, class names with probabilities, bad input refused in one line with
exit code 2 and nothing written. Real tiny runs (one epoch), real MLflow store, no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from inference_data import CLASSES, french_series, species_table, write_label_table
from mlflow import MlflowClient
from PIL import Image

import normia
from normia.cli import main
from normia.errors import UserError

pytestmark = pytest.mark.slow  # four tiny runs trained once for the module: ~40 s on 2 cores

QUIET = ["logger.system_metrics=false", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Tiny runs trained once for the module, in their own working folder (mlflow.db, outputs/)."""
    folder = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("NORMIA_OUTPUT_ROOT", raising=False)
        pm10 = french_series(folder / "pm10.csv", n=120)
        table = write_label_table(folder / "partenaire")
        species = species_table(folder / "species.csv")
        found: dict[str, object] = {"folder": folder, "pm10": pm10, "table": table, "species": species}
        found["series"] = normia.train(
            [
                "experiment=poc_co2_forecast",
                "data=series_csv",
                f"data.path={pm10}",
                "data.date_column=Date",
                "data.input_len=14",
                "data.horizon=7",
                "model.patch_len=7",
                "model.season_length=7",
                "data.units='µg/m3'",
                *QUIET,
            ]
        )
        found["quickstart"] = normia.train(["experiment=quickstart", *QUIET])
        found["images"] = normia.train(
            [
                "experiment=poc_digits_resnet",
                "data=image_table",
                f"data.path={table}",
                "data.batch_size=8",
                "model.in_channels=3",
                "model.num_classes=3",
                *QUIET,
            ]
        )
        found["species"] = normia.train(
            [
                "experiment=quickstart",
                "data=table_csv",
                f"data.path={species}",
                "data.target=species",
                "data.task=classification",
                "data.batch_size=8",
                "model.in_features=2",
                "model.num_classes=3",
                *QUIET,
            ]
        )
        yield found


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """normia.cli.main in-process (the console script's code path): (exit code, stdout, stderr)."""
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_forecaster_writes_dated_forecasts_in_the_data_units_and_conventions(
    runs: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    summary, pm10, folder = runs["series"], runs["pm10"], runs["folder"]
    assert summary.metrics["val/mae_orig"] > summary.metrics["val/mae"]  # µg/m3 vs standardised units
    assert "val/mae_snaive_orig" in summary.metrics and "val/rmse_orig" in summary.metrics
    assert summary.mlflow_run().data.tags["normia.data.units"] == "µg/m3"  # MAE ... µg/m3
    out = folder / "preds.csv"
    code, _, err = cli(["predict", f"run={summary.run_id}", f"data.path={pm10}", f"output={out}"], capsys)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "Date;PM10 (µg/m3)"  # the input's separator and column names
    assert len(lines) == 1 + 7
    assert lines[1].startswith("01/05/2023;")  # the day after the last input date, dd/mm/yyyy as in the input
    values = [float(line.split(";")[1].replace(",", ".")) for line in lines[1:]]
    assert all(5 < v < 40 for v in values), values  # µg/m3 (the series lies in ~12..28), not standardised
    frame = normia.predict(summary.checkpoint, pm10)
    assert list(frame.columns) == ["Date", "PM10 (µg/m3)"]
    assert frame["Date"].iloc[0] == pd.Timestamp("2023-05-01")
    np.testing.assert_allclose(frame["PM10 (µg/m3)"].to_numpy(), values, rtol=1e-5)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("short", "holds 10 steps of history; the model needs at least 14"),
        ("weekly", "step by 'W-SUN'; the model was trained on 'D' steps"),
        ("column", "column 'PM10 (µg/m3)' (data.columns) is not in"),
    ],
)
def test_forecaster_refuses_mismatched_history_in_one_line(
    runs: dict[str, object], capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, expected: str
) -> None:
    if case == "short":
        data = french_series(tmp_path / "in.csv", n=10)
    elif case == "weekly":
        data = french_series(tmp_path / "in.csv", n=40, freq="W")
    else:
        data = tmp_path / "in.csv"
        data.write_text("Date;NO2\n01/01/2023;3,5\n", encoding="utf-8")
    out = tmp_path / "preds.csv"
    code, stdout, err = cli(
        ["predict", f"ckpt={runs['series'].checkpoint}", f"data.path={data}", f"output={out}"], capsys
    )
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not out.exists() and stdout == ""


def test_digits_pixels_and_images_give_classes_with_probabilities(
    runs: dict[str, object], tmp_path: Path
) -> None:
    from sklearn.datasets import load_digits

    summary = runs["quickstart"]
    digits = load_digits()
    table = pd.DataFrame(digits.data[:6], columns=[f"pixel_{i}" for i in range(64)])
    table.insert(0, "id", [f"d{i}" for i in range(6)])
    path = tmp_path / "digits.csv"
    table.to_csv(path, index=False)
    result = normia.predict(summary.run_id, path)
    assert list(result.columns) == ["id", "class", *[f"p_{d}" for d in range(10)]]
    probs = result[[f"p_{d}" for d in range(10)]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    model, cfg = normia.load_run(summary.run_id)
    with torch.no_grad():
        direct = model(torch.tensor(digits.data[:6] / 16.0, dtype=torch.float32)).argmax(-1)
    assert result["class"].tolist() == [str(int(d)) for d in direct]
    assert cfg.name == "quickstart"
    assert summary.predict(path)["class"].tolist() == result["class"].tolist()  # RunSummary.predict
    # the same digits as 8x8 PNG files give the same classes
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(6):
        Image.fromarray((digits.images[i] * 255 / 16).round().astype(np.uint8), mode="L").save(
            folder / f"{i}.png"
        )
    from_images = normia.predict(summary.checkpoint, folder)
    assert from_images["file"].tolist() == [f"{i}.png" for i in range(6)]
    assert from_images["class"].tolist() == result["class"].tolist()


def test_label_table_classifier_names_its_classes_and_refuses_other_sizes(
    runs: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, table = runs["images"], runs["table"]
    client = MlflowClient(
        f"sqlite:///{runs['folder'] / 'mlflow.db'}"
    )  # the classes are recorded with the run
    recorded = client.download_artifacts(summary.run_id, "normia/predict_state.json", str(tmp_path))
    assert json.loads(Path(recorded).read_text())["classes"] == list(CLASSES)
    capsys.readouterr()  # MLflow's download progress bar
    assert summary.metrics["val/acc_majority"] < summary.metrics["val/acc"]
    result = normia.predict(summary.run_id, table.parent)
    assert list(result.columns) == ["fichier", "class", *[f"p_{c}" for c in CLASSES]]
    assert set(result["class"]) <= set(CLASSES) and len(result) == 36
    assert normia.predict(summary.run_id, table)["class"].tolist() == result["class"].tolist()
    big = tmp_path / "grand"
    big.mkdir()
    Image.new("RGB", (16, 16)).save(big / "x.png")
    out = tmp_path / "preds.csv"
    code, _, err = cli(["predict", f"run={summary.run_id}", f"data.path={big}", f"output={out}"], capsys)
    assert code == 2 and "image x.png is 16x16" in err and "trained on 8x8" in err and err.count("\n") == 1
    assert not out.exists()


def test_table_classifier_keeps_identifiers_and_the_partner_separator(
    runs: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = runs["species"]
    new = tmp_path / "nouvelles.csv"
    new.write_text("parcelle;petal_length;petal_width\nA1;0,1;0,05\nB2;4,2;1,7\n", encoding="utf-8")
    out = tmp_path / "preds.csv"
    code, _, err = cli(["predict", f"ckpt={summary.checkpoint}", f"data.path={new}", f"output={out}"], capsys)
    assert code == 0, err
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "parcelle;class;p_setosa;p_versicolor;p_virginica"
    assert lines[1].startswith("A1;") and "," in lines[1]  # decimal comma, as the input
    missing = tmp_path / "sans.csv"
    missing.write_text("petal_length\n1.0\n", encoding="utf-8")
    code, _, err = cli(
        ["predict", f"ckpt={summary.checkpoint}", f"data.path={missing}", f"output={out}.2"], capsys
    )
    assert code == 2 and "'petal_width'" in err and not Path(f"{out}.2").exists()


def test_bad_arguments_and_unknown_runs_are_one_line(
    runs: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["predict", "data.path=x.csv"], "exactly one of ckpt=PATH"),
        (["predict", "ckpt=nope.ckpt", "data.path=x.csv"], "checkpoint nope.ckpt does not exist"),
        (["predict", "run=abc", "data.path=x.csv"], "not an MLflow run id"),
        (["predict", f"ckpt={runs['quickstart'].checkpoint}"], "needs data.path=FILE"),
        (["predict", f"ckpt={runs['quickstart'].checkpoint}", "data.pth=x"], "unknown argument 'data.pth'"),
    ]
    for args, expected in cases:
        code, _, err = cli(args, capsys)
        assert code == 2 and expected in err and err.count("\n") == 1, (args, err)
    with pytest.raises(UserError, match=r"no MLflow run 0{32}"), pytest.MonkeyPatch.context() as mp:
        mp.chdir(runs["folder"])
        normia.load_run("0" * 32)


def test_generation_options_are_refused_for_other_models(runs: dict[str, object]) -> None:
    from sklearn.datasets import load_digits

    pixels = pd.DataFrame(load_digits().data[:2], columns=[f"pixel_{i}" for i in range(64)])
    with pytest.raises(
        UserError, match="temperature= applies to language models only; this run is a classify"
    ):
        normia.predict(runs["quickstart"].checkpoint, pixels, temperature=0.5)


def test_language_models_on_token_shards_are_refused_with_the_reason(workdir: Path) -> None:
    """Byte-level language models predict (test_predict_lm.py); a run on token shards cannot encode a prompt (the
    shards' tokenizer is not recorded) and says so in one line."""
    from normia.data.token_shards import write_token_shards

    shards = write_token_shards([np.arange(4000) % 256], workdir / "shards", vocab_size=256)
    (workdir / "prompts.csv").write_text("prompt\nhello\n", encoding="utf-8")
    summary = normia.train(
        [
            "experiment=poc_shakespeare_bytes",
            "data.corpus=null",
            f"data.shards={shards}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1",
            "logger=none",
            "trainer.enable_progress_bar=false",
        ]
    )
    with pytest.raises(UserError, match="cannot turn prompts into the token ids of the shards"):
        normia.predict(summary.checkpoint, workdir / "prompts.csv")


def test_console_script_predicts_to_stdout(runs: dict[str, object]) -> None:
    """The real command in a subprocess: the table on stdout, nothing else there."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "normia.cli",
            "predict",
            f"ckpt={runs['series'].checkpoint}",
            f"data.path={runs['pm10']}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=runs["folder"],
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Date;PM10 (µg/m3)" and len(out.stdout.splitlines()) == 8


def test_recorded_config_is_untrusted_and_old_checkpoints_still_predict(
    runs: dict[str, object], tmp_path: Path
) -> None:
    """A run folder's config.yaml is data: a target outside the allowed ones is refused before anything is imported.
    A checkpoint without the prediction state (written before it existed) is served from the training data."""
    import shutil

    summary = runs["quickstart"]
    copy = tmp_path / "run"
    shutil.copytree(summary.output_dir, copy)
    ckpt = copy / "checkpoints" / summary.checkpoint.name
    config = copy / "config.yaml"
    original = config.read_text(encoding="utf-8")
    config.write_text(original.replace("normia.models.mlp.MLPClassifier", "os.system"), encoding="utf-8")
    with pytest.raises(UserError, match=r"model._target_='os.system' names code outside the allowed targets"):
        normia.load_run(ckpt)
    config.write_text(original, encoding="utf-8")
    content = torch.load(ckpt, weights_only=True)
    content["DigitsDataModule"].pop("predict")
    torch.save(content, ckpt)
    from sklearn.datasets import load_digits

    pixels = pd.DataFrame(load_digits().data[:3], columns=[f"pixel_{i}" for i in range(64)])
    old = normia.predict(ckpt, pixels)
    assert old["class"].tolist() == normia.predict(summary.checkpoint, pixels)["class"].tolist()
