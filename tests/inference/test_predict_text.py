"""normia predict / normia.predict / the exported pyfunc model on a Hugging Face sequence classifier fine-tuned with
`model=hf_sequence_classifier data=text_csv`: class names and probabilities per text, in the input's CSV conventions,
the same numbers as the model's own forward; bad input and runs that cannot be served refused in one line (exit 2,
nothing written). A tiny BERT folder built offline (tests/hf/tiny_models.py), one epoch, no mocks."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
pytest.importorskip("transformers")
pytest.importorskip("peft")
sys.path.insert(0, str(Path(__file__).parents[1] / "hf"))  # tiny_models, as tests/hf/conftest.py does

import tiny_models

import normia
from normia.cli import main
from normia.errors import UserError
from normia.inference.loading import load_run

# one tiny fine-tuning run for the module: ~13 s on 2 busy cores, under the ~20 s of the slow mark

CLASSES = ["neutre", "négatif", "positif"]  # avis_fr's labels, sorted: the model's output order
QUIET = [
    "logger.system_metrics=false",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "data.batch_size=8",
    "optim.warmup_steps=0",
    "optim.lr=3e-3",
]
ROWS = [
    ("Rouen", "Accueil très aimable, merci", "4,5"),
    ("Caen", "Bus en retard, inadmissible", "1,5"),
    ("Dieppe", "La mairie ouvre le lundi", "3,0"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A tiny BERT folder and one fine-tuning run on the bundled opinions, in their own working folder."""
    folder = tmp_path_factory.mktemp("predict_text")
    bert = tiny_models.bert_folder(folder / "bert", pretrain_steps=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("NORMIA_OUTPUT_ROOT", raising=False)
        summary = normia.train(["experiment=hf_text_classifier", f"model.path={bert}", *QUIET])
        yield {"folder": folder, "bert": bert, "summary": summary}


def french_csv(path: Path, rows: list[tuple[str, str, str]] = ROWS) -> Path:
    """New opinions as a French open-data export: ';', a byte-order mark, decimal commas, no label column."""
    lines = ["commune;avis;note", *(";".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def forward_probs(model: torch.nn.Module, bert: Path, text: str) -> np.ndarray:
    """A model's own forward on one text, unpadded: softmax of its logits."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bert), local_files_only=True)
    batch = tokenizer([text], truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return torch.softmax(logits.double(), dim=-1).numpy()[0]


def test_predict_writes_class_names_and_probabilities_in_the_input_conventions(
    trained: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, bert = trained["summary"], trained["bert"]
    data, out = french_csv(tmp_path / "nouveaux.csv"), tmp_path / "preds.csv"
    code, _, err = cli(
        ["predict", f"ckpt={summary.checkpoint}", f"data.path={data}", f"output={out}"], capsys
    )
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "commune;note;class;p_neutre;p_négatif;p_positif"
    assert text.splitlines()[1].startswith("Rouen;4,5;")  # decimal commas kept, identifiers kept
    preds = pd.read_csv(io.StringIO(text), sep=";", decimal=",")
    assert len(preds) == 3 and set(preds["class"]) <= set(CLASSES)
    probs = preds[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    from transformers import AutoModelForSequenceClassification

    run = load_run(summary.checkpoint)
    # the Hugging Face model the run saved (one epoch: the best checkpoint is the last), reloaded by Transformers
    saved = AutoModelForSequenceClassification.from_pretrained(
        str(Path(summary.output_dir) / "hf_model"), local_files_only=True
    ).eval()
    for i, (_, avis, _) in enumerate(ROWS):
        expected = forward_probs(run.model, bert, avis)  # padded in a batch of 3 or alone: the same numbers
        np.testing.assert_allclose(probs[i], expected, atol=1e-5)
        np.testing.assert_allclose(probs[i], forward_probs(saved, bert, avis), atol=1e-5)
        assert preds["class"][i] == CLASSES[int(expected.argmax())]

    # normia.predict by MLflow run id on a DataFrame: the same table; the state was logged with the run
    frame = pd.DataFrame({"id": [7, 8, 9], "avis": [r[1] for r in ROWS]})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(trained["folder"])
        api = normia.predict(summary.run_id, frame)
        from mlflow import MlflowClient

        artifacts = {a.path for a in MlflowClient().list_artifacts(summary.run_id, "normia")}
    assert list(api.columns) == ["id", "class", *(f"p_{c}" for c in CLASSES)]
    np.testing.assert_allclose(api[[f"p_{c}" for c in CLASSES]].to_numpy(), probs, atol=1e-5)
    assert "normia/predict_state.json" in artifacts


def test_exported_pyfunc_model_predicts_the_same_table(trained: dict[str, object], tmp_path: Path) -> None:
    from normia.inference.predictors import predict_frame
    from normia.inference.pyfunc import (
        ARTIFACT,
        CHECKPOINT,
        NormiaPyfuncModel,
        build_program,
        example_input,
        slim_checkpoint,
    )

    run = load_run(trained["summary"].checkpoint)
    example = example_input(run)  # the bundled corpus's first rows (data.corpus=avis_fr)
    assert len(example) == 5 and list(example.columns) == ["commune", "avis", "note"]  # no label column
    folder = tmp_path / ARTIFACT
    slim_checkpoint(run, folder / CHECKPOINT)
    (folder / "config.yaml").write_text(
        (Path(trained["summary"].output_dir) / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    model = NormiaPyfuncModel()
    model.load_context(SimpleNamespace(artifacts={ARTIFACT: str(folder)}))
    served = model.predict(None, example)
    pd.testing.assert_frame_equal(served, predict_frame(run, example), atol=1e-6)
    assert list(served.columns[-4:]) == ["class", *(f"p_{c}" for c in CLASSES)]
    labelled = predict_frame(run, example.assign(sentiment="positif"))
    assert list(labelled.columns) == list(served.columns)  # a label column is no identifier: left out
    with pytest.raises(UserError, match="not available for a text classifier"):
        build_program(run, example, "export", tmp_path / "program")


def _copy_run(trained: dict[str, object], target: Path, config_edit=None, drop_state: bool = False) -> Path:
    """The run's checkpoint and config copied to `target` (run folder layout), edited."""
    summary = trained["summary"]
    (target / "checkpoints").mkdir(parents=True)
    config = (Path(summary.output_dir) / "config.yaml").read_text(encoding="utf-8")
    (target / "config.yaml").write_text(config_edit(config) if config_edit else config, encoding="utf-8")
    ckpt = target / "checkpoints" / "last.ckpt"
    content = torch.load(summary.checkpoint, weights_only=True)
    if drop_state:
        content["TextCSVDataModule"].pop("predict")
    torch.save(content, ckpt)
    return ckpt


def test_refusals_are_one_line_exit_2_and_write_nothing(
    trained: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, bert = trained["summary"].checkpoint, trained["bert"]
    out = tmp_path / "preds.csv"

    def refused(data: Path, match: str, checkpoint: object = ckpt) -> None:
        code, _, err = cli(["predict", f"ckpt={checkpoint}", f"data.path={data}", f"output={out}"], capsys)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()

    no_text = tmp_path / "sans_avis.csv"
    no_text.write_text("\ufeffcommune;commentaire\nRouen;Très bien\n", encoding="utf-8")
    refused(no_text, "column 'avis' (data.text) is not in")
    refused(no_text, "columns present: commune, commentaire")
    empty = tmp_path / "vide.csv"
    empty.write_text("commune;avis;note\n", encoding="utf-8")
    refused(empty, "has no rows to predict")
    data = french_csv(tmp_path / "nouveaux.csv")
    old = _copy_run(trained, tmp_path / "old", drop_state=True)
    refused(data, "retrain it", old)
    tokens = _copy_run(
        trained, tmp_path / "tokens", lambda c: c.replace("task: classification", "task: tokens")
    )
    refused(data, "does not handle token classifiers (data.task=tokens)", tokens)
    moved = bert.with_name("bert-moved")
    bert.rename(moved)
    try:
        refused(data, f"the pretrained model folder {bert} of this run")
        refused(data, "the run's model.path must exist here")
    finally:
        moved.rename(bert)
    with pytest.raises(UserError, match="empty cell in column 'avis'"):
        normia.predict(ckpt, pd.DataFrame({"avis": ["Très bien", " "]}))
