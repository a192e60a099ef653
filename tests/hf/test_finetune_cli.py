"""Fine-tuning tiny pretrained folders through the real CLI (CPU, offline): a sequence classifier on the bundled
French opinions (full, frozen, LoRA), a token classifier, DDP with LoRA, continued pre-training of a LLaMA folder on
normia's kernels. The loss falls; the saved Hugging Face model or adapter reloads with Transformers and gives the
outputs of the trained model; the parameter counts reach the summary and MLflow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

CLASSIFIER = [
    "experiment=hf_text_classifier",
    "data.batch_size=8",
    "trainer.log_every_n_steps=1",
    "optim.warmup_steps=0",
]
LORA = ["model.finetune=lora", "model.lora.target_modules=[query,value]", "model.lora.r=4"]
LR = {"full": "optim.lr=3e-3", "frozen": "optim.lr=3e-2", "lora": "optim.lr=1e-2"}


def done(workdir: Path) -> dict:
    (found,) = workdir.glob("outputs/*/*/done.json")
    return json.loads(found.read_text())


def mlflow_client(workdir: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def history(workdir: Path, run_id: str, key: str) -> list[float]:
    return [
        m.value for m in sorted(mlflow_client(workdir).get_metric_history(run_id, key), key=lambda m: m.step)
    ]


def trained_wrapper(summary: dict, **options):
    """The model as normia trained it: a fresh wrapper with the weights of last.ckpt."""
    from normia.models.hf.classifiers import HFSequenceClassifier, HFTokenClassifier

    kind = options.pop("kind", "sequence")
    wrapper = (HFSequenceClassifier if kind == "sequence" else HFTokenClassifier)(**options)
    ckpt = torch.load(summary["best_checkpoint"], weights_only=True)  # hf_model/ holds the best weights
    wrapper.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    return wrapper.eval()


def sample_batch(folder: Path, texts: list[str]) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


TEXTS = ["Accueil très aimable, merci", "Bus en retard, inadmissible", "La mairie ouvre le lundi"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "frozen", "lora"])
def test_sequence_classifier_fine_tunes_and_reloads_with_transformers(
    mode: str, bert_dir: Path, workdir: Path, normia_cli, fast_overrides: list[str]
) -> None:
    from transformers import AutoModelForSequenceClassification

    extra = [*(LORA if mode == "lora" else [f"model.finetune={mode}"]), LR[mode]]
    result = normia_cli(
        "train",
        *CLASSIFIER,
        "trainer.max_epochs=12",
        f"model.path={bert_dir}",
        *extra,
        *fast_overrides,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = done(workdir)
    losses = history(workdir, summary["mlflow_run_id"], "train/loss")  # 50 rows: too few to judge val/loss on
    assert len(losses) == 60 and _mean(losses[-10:]) < _mean(losses[:10]) - 0.05, losses
    trainable, total = summary["parameters"]["trainable"], summary["parameters"]["total"]
    assert f"parameters {trainable:,} trainable of {total:,}" in result.stdout
    metrics = mlflow_client(workdir).get_run(summary["mlflow_run_id"]).data.metrics
    assert metrics["model/trainable_params"] == trainable
    if mode == "full":
        assert trainable == total
    elif mode == "frozen":
        assert trainable == 32 * 3 + 3  # the classifier head only (the pooler belongs to the frozen body)
    else:
        assert 0 < trainable < total / 5
    saved = Path(summary["output_dir"]) / "hf_model"
    artifacts = {a.path for a in mlflow_client(workdir).list_artifacts(summary["mlflow_run_id"], "hf_model")}
    assert "hf_model/tokenizer.json" in artifacts

    options = {"path": str(bert_dir), "num_labels": 3, "finetune": mode}
    if mode == "lora":
        from peft import PeftModel

        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in saved.iterdir()}
        assert "hf_model/adapter_model.safetensors" in artifacts
        base = AutoModelForSequenceClassification.from_pretrained(
            str(bert_dir), num_labels=3, local_files_only=True
        )
        reloaded = PeftModel.from_pretrained(base, str(saved)).eval()
        options["lora"] = {"r": 4, "target_modules": ["query", "value"]}
    else:
        reloaded = AutoModelForSequenceClassification.from_pretrained(
            str(saved), local_files_only=True
        ).eval()
        assert reloaded.config.id2label == {0: "neutre", 1: "négatif", 2: "positif"}
    batch = sample_batch(saved, TEXTS)
    ours = trained_wrapper(summary, **options)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, ours(**batch), rtol=0, atol=1e-5)


TAGGED = [
    ("Rouen accueille le marché de Caen", "B-LIEU O O O O B-LIEU"),
    ("le musée de Bayeux ferme le lundi", "O O O B-LIEU O O O"),
    ("Dieppe et Fécamp ont une plage", "B-LIEU O B-LIEU O O O"),
    ("la mairie de Granville répond vite", "O O O B-LIEU O O"),
]


@pytest.mark.slow
def test_token_classifier_learns_tags_and_reloads(
    bert_dir: Path, workdir: Path, normia_cli, fast_overrides: list[str]
) -> None:
    from transformers import AutoModelForTokenClassification

    rows = [f"{words};{tags}" for words, tags in TAGGED * 6]
    (workdir / "lieux.csv").write_text("mots;etiquettes\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = normia_cli(
        "train", "model=hf_token_classifier", "data=text_csv", f"model.path={bert_dir}", "model.num_labels=2",
        "data.path=lieux.csv", "data.text=mots", "data.label=etiquettes", "data.task=tokens", "data.batch_size=8",
        "trainer.max_epochs=10", "optim.lr=3e-3", "name=lieux", *fast_overrides, cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = done(workdir)
    losses = history(workdir, summary["mlflow_run_id"], "val/loss")
    assert losses[-1] < losses[0] - 0.1, losses
    saved = Path(summary["output_dir"]) / "hf_model"
    reloaded = AutoModelForTokenClassification.from_pretrained(str(saved), local_files_only=True).eval()
    assert reloaded.config.id2label == {0: "B-LIEU", 1: "O"}
    batch = sample_batch(saved, [w for w, _ in TAGGED])
    ours = trained_wrapper(summary, kind="token", path=str(bert_dir), num_labels=2)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, ours(**batch), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_lora_under_ddp_saves_one_adapter(bert_dir: Path, workdir: Path, normia_cli, fast_overrides) -> None:
    result = normia_cli(
        "train", *CLASSIFIER, "trainer.max_epochs=6", f"model.path={bert_dir}", *LORA, LR["lora"], "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", *fast_overrides, cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = done(workdir)
    assert summary["world_size"] == 2
    assert result.stdout.count("hugging face model:") == 1
    saved = Path(summary["output_dir"]) / "hf_model"
    assert (saved / "adapter_model.safetensors").is_file() and (saved / "tokenizer.json").is_file()


@pytest.mark.slow
def test_fsdp2_bf16_checkpointed_run_saves_the_gathered_weights(
    bert_dir: Path, workdir: Path, normia_cli, fast_overrides: list[str]
) -> None:
    """FSDP2 shards the model over 2 processes: the saved folder must hold every full tensor, as trained."""
    from safetensors.torch import load_file

    result = normia_cli(
        "train", *CLASSIFIER, f"model.path={bert_dir}", LR["full"], "trainer=fsdp", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.precision=bf16-mixed", "model.gradient_checkpointing=true",
        "trainer.max_epochs=2", *fast_overrides, cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = done(workdir)
    from normia.training.checkpoint import load_checkpoint_file

    saved = load_file(str(Path(summary["output_dir"]) / "hf_model" / "model.safetensors"))
    # FSDP writes a sharded folder (issue 22): read it whole the way evaluate/predict/export do
    ckpt = load_checkpoint_file(Path(summary["best_checkpoint"]))  # hf_model/: the best weights
    trained = {k.removeprefix("model.net."): v for k, v in ckpt["state_dict"].items()}
    assert set(saved) <= set(trained) and len(saved) >= len(trained) - 1  # position_ids: a buffer
    for name, tensor in saved.items():
        assert torch.equal(tensor, trained[name]), name
    assert summary["parameters"]["trainable"] == summary["parameters"]["total"] > 40_000


@pytest.mark.slow
def test_llama_folder_continues_pre_training_on_normia_kernels(
    llama_dir: Path, workdir: Path, normia_cli, fast_overrides: list[str]
) -> None:
    from transformers import LlamaForCausalLM

    from normia.models.hf.llama import PretrainedLlama

    result = normia_cli(
        "train", "model=hf_llama", "data=hf_text", f"model.path={llama_dir}", "data.seq_len=64", "data.batch_size=8",
        "trainer.max_steps=30", "trainer.max_epochs=null", "trainer.val_check_interval=15",
        "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=1", "optim.lr=1e-2", "name=cpt", *fast_overrides, cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = done(workdir)
    losses = history(workdir, summary["mlflow_run_id"], "train/loss")
    assert (
        len(losses) == 30 and abs(losses[0] - math.log(600)) < 0.3
    )  # a random start: uniform over the vocabulary
    assert max(losses[-5:]) < losses[0] - 0.5, losses
    assert summary["metrics"]["val/loss"] < losses[0] - 0.5
    saved = Path(summary["output_dir"]) / "hf_model"
    reloaded = LlamaForCausalLM.from_pretrained(str(saved), local_files_only=True).eval()
    ours = PretrainedLlama(str(llama_dir), save_hf=False)
    ckpt = torch.load(summary["best_checkpoint"], weights_only=True)  # hf_model/: the best weights
    ours.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    tokens = torch.randint(0, ours.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, ours.eval().logits(tokens), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_two_rank_llama_run_started_in_the_repository_root(
    llama_dir: Path, tmp_path: Path, normia_cli, fast_overrides: list[str]
) -> None:
    """Issue 21: the README's place to run from is the checkout. With Hugging Face's `kernels` distribution
    installed (transformers >= 5.25 imports it), every rank must import that one, not normia's top-level folder
    (each rank was failing with "cannot import name 'CUDAProperties' from 'kernels'")."""
    root = Path(__file__).resolve().parents[2]
    before = sorted(p.name for p in root.iterdir())
    result = normia_cli(
        "train", "model=hf_llama", "data=hf_text", f"model.path={llama_dir}", "data.seq_len=32", "data.batch_size=4",
        "trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=4", "trainer.max_epochs=null",
        "logger=none", f"paths.output_root={tmp_path / 'outputs'}", *fast_overrides, cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stdout
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written into the checkout
