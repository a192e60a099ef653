"""What `<output_dir>/hf_model/` holds and what a run records about its pretrained model (issue 25 D):

- the folder holds the BEST checkpoint's weights (those normia predict and export use), and says so;
- its README.md is normia's model card (base model and digest, task, LoRA settings, weights, data, MLflow run, a
  loading snippet that works), not peft's empty template;
- config.json carries the pad token id the batches were padded with (eos when the tokenizer has none), and a LLaMA
  saved from normia's kernels keeps its source's bos/eos ids;
- the model folder is a recorded input with a digest, so `normia reproduce` sees a changed base model;
- model=hf_llama refuses LoRA in one line that points to model=hf_causal_lm.

One real `normia train` run (LoRA, 3 epochs, shared by the module's end-to-end assertions); the rest is in-process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from normia.errors import UserError
from normia.tracking.data_inputs import describe_inputs, folder_digest
from tests.conftest import run_normia

LORA = {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}
TEXTS = ["Accueil très aimable, merci", "Bus en retard, inadmissible", "La mairie ouvre le lundi"]


def save_hf_folder(*args, **kwargs) -> Path:
    """normia.models.hf.callbacks.save_hf_folder, imported per test so that each test fails on its own."""
    from normia.models.hf.callbacks import save_hf_folder as save

    return save(*args, **kwargs)


def _snippet(card: str) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    return code


# --- the model card (LoRA) --------------------------------------------------------------------------------------


def test_a_lora_folder_gets_normias_model_card_whose_snippet_loads_it(bert_dir: Path, tmp_path: Path) -> None:
    from normia.models.hf.callbacks import RunFacts, Weights
    from normia.models.hf.classifiers import HFSequenceClassifier

    model = HFSequenceClassifier(str(bert_dir), num_labels=3, finetune="lora", lora=LORA, save_hf=False)
    facts = RunFacts(
        Weights(step=30, checkpoint=Path("best-30.ckpt"), monitor="val/loss", score=0.81234),
        run_id="0123456789abcdef0123456789abcdef",
        tracking_uri="sqlite:///mlflow.db",
        data=["data.corpus: normia corpus avis_fr (sha256 0a1b2c3d4e5f, 4001 bytes, 50 rows)"],
    )
    folder = save_hf_folder(model, tmp_path, classes=["neutre", "négatif", "positif"], facts=facts)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert (
        "Model Card for Model ID" not in card and "[More Information Needed]" not in card
    )  # peft's template
    assert f"base_model: {bert_dir}" in card and "library_name: peft" in card
    assert f"{bert_dir} (sha256 {folder_digest(bert_dir).sha256[:12]}" in card
    assert "sequence classification" in card and "0 neutre, 1 négatif, 2 positif" in card
    assert "LoRA (peft): r=4, alpha=8, dropout=0.0, target modules [query, value]" in card
    assert "weights of the best checkpoint, step 30, val/loss = 0.8123 (best-30.ckpt" in card
    assert "data.corpus: normia corpus avis_fr" in card
    assert "0123456789abcdef0123456789abcdef in sqlite:///mlflow.db" in card
    assert "pad token id | 0 |" in card

    scope: dict = {}
    exec(_snippet(card), scope)  # the card's own loading lines, as a user would paste them
    batch = scope["tokenizer"](TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            scope["model"].eval()(**batch).logits, model.eval()(**batch), rtol=0, atol=1e-5
        )
    assert scope["model"].config.id2label == {0: "neutre", 1: "négatif", 2: "positif"}


def test_a_card_without_a_run_says_what_it_does_not_know(bert_dir: Path, tmp_path: Path) -> None:
    from normia.models.hf.classifiers import HFSequenceClassifier

    model = HFSequenceClassifier(str(bert_dir), num_labels=3, save_hf=False)
    card = (save_hf_folder(model, tmp_path) / "README.md").read_text(encoding="utf-8")
    assert "weights of the last step" in card and "none (no MLflow logger)" in card
    assert "training data | not recorded" in card and "full (every weight trained)" in card
    assert "PeftModel" not in _snippet(card)


# --- pad and special token ids in config.json ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_eos_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaMA whose tokenizer has an eos token and no pad token, and whose config has bos/eos ids that are
    not LlamaConfig's defaults (as LLaMA 3's 128000/128001 are not)."""
    import tiny_models
    from transformers import AutoTokenizer

    folder = tiny_models.llama_folder(tmp_path_factory.mktemp("llama_eos"))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer.pad_token = None
    tokenizer.bos_token, tokenizer.eos_token = "[CLS]", "[SEP]"
    tokenizer.save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _saved_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_a_llama_saved_from_normias_kernels_keeps_its_token_ids_and_pads_with_eos(
    llama_eos_only: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from normia.models.hf.llama import PretrainedLlama

    source = AutoTokenizer.from_pretrained(str(llama_eos_only), local_files_only=True)
    bos, eos = source.bos_token_id, source.eos_token_id
    folder = save_hf_folder(PretrainedLlama(str(llama_eos_only), save_hf=False), tmp_path)
    config = _saved_config(folder)
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (bos, eos, eos)
    reloaded = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert reloaded.pad_token_id == eos  # the saved tokenizer pads as the batches were padded
    assert "pad token id | " + str(eos) in (folder / "README.md").read_text(encoding="utf-8")


def test_a_transformers_decoder_saves_the_pad_id_it_was_padded_with(
    llama_eos_only: Path, tmp_path: Path
) -> None:
    from normia.models.hf.classifiers import HFCausalLM

    model = HFCausalLM(str(llama_eos_only), save_hf=False)
    config = _saved_config(save_hf_folder(model, tmp_path))
    assert config["pad_token_id"] == config["eos_token_id"] is not None


# --- the model folder as a recorded input -----------------------------------------------------------------------


def test_the_model_folder_is_an_input_with_its_digest(bert_dir: Path, tmp_path: Path) -> None:
    from normia.reproduce import data_differences

    data = {
        "_target_": "normia.data.text_csv.TextCSVDataModule",
        "tokenizer": str(bert_dir),
        "corpus": "avis_fr",
    }
    model = {"_target_": "normia.models.hf.classifiers.HFSequenceClassifier", "path": str(bert_dir)}
    digest = folder_digest(bert_dir)

    only_data = {r.key: r for r in describe_inputs(data, cwd=tmp_path)}  # what the tracker passes today
    assert (
        only_data["data.tokenizer"].kind == "folder" and only_data["data.tokenizer"].sha256 == digest.sha256
    )

    both = {r.key: r for r in describe_inputs(data, cwd=tmp_path, model=model)}
    assert both["model.path"].sha256 == digest.sha256 and both["model.path"].files == digest.files
    assert "data.tokenizer" not in both  # the same folder, recorded once as the model's
    assert len(both["data.corpus"].sha256) == 64 and both["data.corpus"].rows == 50  # the bundled table

    hub = {r.key for r in describe_inputs({**data, "tokenizer": "camembert-base"}, cwd=tmp_path)}
    assert "data.tokenizer" not in hub  # a hub name is not a local input

    changed = tmp_path / "bert"
    changed.mkdir()
    for item in bert_dir.iterdir():
        (changed / item.name).write_bytes(item.read_bytes())
    weights = next(changed.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    now = describe_inputs(data, cwd=tmp_path, model={**model, "path": str(changed)})
    found, _ = data_differences(both, now)
    assert any("model.path" in d.text and digest.sha256[:12] in d.text for d in found), [
        d.text for d in found
    ]


# --- model=hf_llama and LoRA ------------------------------------------------------------------------------------


def test_hf_llama_refuses_lora_pointing_to_hf_causal_lm(llama_dir: Path, tmp_path: Path) -> None:
    from normia.models.hf.llama import PretrainedLlama

    with pytest.raises(
        UserError, match=rf"use model=hf_causal_lm model.path={llama_dir} model.finetune=lora"
    ):
        PretrainedLlama(str(llama_dir), finetune="lora")
    result = run_normia(
        "train", "model=hf_llama", "data=hf_text", f"model.path={llama_dir}", "model.finetune=lora",
        "model.lora.target_modules=[q_proj,v_proj]", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model=hf_causal_lm" in lines[0] and "model.finetune=lora" in lines[0], lines
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


# --- one real run: hf_model/ holds the best checkpoint, and says so ---------------------------------------------


@pytest.fixture(scope="module")
def lora_run(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """A LoRA classifier trained 3 epochs whose best checkpoint is the FIRST validation (monitor_mode=max on a
    falling val/loss): the best and the last weights differ. Returns (workdir, done.json, stdout)."""
    workdir = tmp_path_factory.mktemp("lora_run")
    result = run_normia(
        "train", "experiment=hf_text_classifier", f"model.path={bert_dir}", "model.finetune=lora",
        "model.lora.target_modules=[query,value]", "model.lora.r=4", "optim.lr=1e-2", "optim.warmup_steps=0",
        "data.batch_size=8", "trainer.max_epochs=3", "monitor=val/loss", "monitor_mode=max", "logger.system_metrics=false",
        "trainer.enable_progress_bar=false", cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (done,) = workdir.glob("outputs/*/*/done.json")
    return workdir, json.loads(done.read_text()), result.stdout


def _wrapper_from(ckpt: Path, bert_dir: Path):
    from normia.models.hf.classifiers import HFSequenceClassifier
    from normia.training.checkpoint import load_checkpoint_file

    lora = {"r": 4, "alpha": 16, "target_modules": ["query", "value"]}  # as the run trained (hf yaml's alpha)
    wrapper = HFSequenceClassifier(str(bert_dir), num_labels=3, finetune="lora", lora=lora, save_hf=False)
    state = load_checkpoint_file(ckpt)["state_dict"]
    wrapper.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return wrapper.eval()


@pytest.mark.slow
def test_hf_model_holds_the_best_checkpoint_and_says_so(
    lora_run: tuple[Path, dict, str], bert_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    workdir, summary, stdout = lora_run
    best, output = workdir / summary["best_checkpoint"], workdir / summary["output_dir"]
    step = int(re.search(r"best-(\d+)", best.name).group(1))
    assert step < summary["global_step"]  # the premise: the last weights are not the best ones
    folder = output / "hf_model"
    assert re.search(rf"hugging face model: {re.escape(summary['output_dir'])}/hf_model \(weights of the best checkpoint, step {step}, "
                     r"val/loss = \d+\.\d{4}\)", stdout), stdout  # fmt: skip
    base = AutoModelForSequenceClassification.from_pretrained(
        str(bert_dir), num_labels=3, local_files_only=True
    )
    reloaded = PeftModel.from_pretrained(base, str(folder)).eval()
    batch = dict(AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        logits = reloaded(**batch).logits
        torch.testing.assert_close(logits, _wrapper_from(best, bert_dir)(**batch), rtol=0, atol=1e-5)
        last = _wrapper_from(output / "checkpoints" / "last.ckpt", bert_dir)(**batch)
    assert (logits - last).abs().max() > 1e-4  # ... which the folder does not hold
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert f"weights of the best checkpoint, step {step}, val/loss = " in card and best.name in card


@pytest.mark.slow
def test_the_run_records_its_base_model_and_the_card_names_run_data_and_digest(
    lora_run: tuple[Path, dict, str], bert_dir: Path
) -> None:
    from mlflow import MlflowClient

    from normia.tracking.data_inputs import recorded_inputs

    workdir, summary, _ = lora_run
    tags = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(summary["mlflow_run_id"]).data.tags
    recorded = recorded_inputs(tags)
    model_keys = [k for k in recorded if k in ("model.path", "data.tokenizer")]
    assert model_keys, sorted(recorded)
    digest = folder_digest(bert_dir).sha256
    assert recorded[model_keys[0]].sha256 == digest and recorded[model_keys[0]].kind == "folder"
    card = (workdir / summary["output_dir"] / "hf_model" / "README.md").read_text(encoding="utf-8")
    assert summary["mlflow_run_id"] in card and f"sha256 {digest[:12]}" in card
    data_row = card.split("| training data |", 1)[1].split("\n", 1)[0]
    assert re.search(r"data.corpus: \S+avis_fr.csv \(sha256 [0-9a-f]{12}, normia", data_row), data_row
