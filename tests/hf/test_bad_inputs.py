"""Refusals before anything runs: a path that does not exist, a folder without weights, an architecture that does
not fit the model option, LoRA target_modules that match nothing, a label count that differs from the data's,
checkpoint code (trust_remote_code): exit 2, one line, nothing written (no outputs/, no MLflow store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_models import refused_by_compose, vit_folder

CLASSIFY = ["experiment=hf_text_classifier"]


def refused(result, workdir: Path, *words: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (workdir / "outputs").exists() and not (workdir / "mlflow.db").exists()


def test_a_path_that_does_not_exist(workdir: Path, normia_cli) -> None:
    result = normia_cli("train", *CLASSIFY, "model.path=camembert-base", cwd=workdir)
    refused(result, workdir, "model.path=camembert-base: no such folder", "never the network", "hf download")


def test_a_folder_without_weights(workdir: Path, normia_cli, bert_dir: Path) -> None:
    folder = workdir.parent / "no_weights"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(bert_dir / name, folder / name)
    result = normia_cli("train", *CLASSIFY, f"model.path={folder}", cwd=workdir)
    refused(result, workdir, "holds no weights", "download is incomplete")


def test_an_architecture_without_a_text_head(workdir: Path, normia_cli) -> None:
    folder = vit_folder(workdir.parent / "vit")
    result = normia_cli("train", *CLASSIFY, f"model.path={folder}", cwd=workdir)
    refused(
        result, workdir, "a 'vit' model has no sequence classification head", "model=hf_sequence_classifier"
    )


@pytest.mark.parametrize("targets", ["[query_proj,nope]", "[q_proj,v_proj]"])
def test_lora_target_modules_that_match_nothing(
    workdir: Path, normia_cli, bert_dir: Path, targets: str
) -> None:
    result = normia_cli(
        "train", *CLASSIFY, f"model.path={bert_dir}", "model.finetune=lora",
        f"model.lora.target_modules={targets}", cwd=workdir,
    )  # fmt: skip
    refused(result, workdir, f"target_modules={targets} matches no module", "query", "value")


# The same checks through normia.compose (the CLI's composition and validation, in this process: faster).


def test_a_folder_without_config(tmp_path: Path) -> None:
    refused_by_compose([*CLASSIFY, f"model.path={tmp_path}"], "has no config.json")


def test_a_file_instead_of_a_folder(tmp_path: Path, bert_dir: Path) -> None:
    refused_by_compose([*CLASSIFY, f"model.path={bert_dir / 'config.json'}"], "is a file, not a folder")


def test_a_bert_folder_is_not_a_llama(bert_dir: Path) -> None:
    refused_by_compose(
        ["model=hf_llama", "data=hf_text", f"model.path={bert_dir}"], "model_type 'bert' is not 'llama'"
    )


def test_checkpoint_code_is_never_run(tmp_path: Path, bert_dir: Path) -> None:
    folder = tmp_path / "remote"
    shutil.copytree(bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="my_secret_arch", auto_map={"AutoModel": "modeling_mine.MyModel"})
    (folder / "config.json").write_text(json.dumps(config))
    refused_by_compose(
        [*CLASSIFY, f"model.path={folder}"],
        "'my_secret_arch' is unknown to transformers",
        "trust_remote_code",
    )
    refused_by_compose(
        [*CLASSIFY, f"model.path={bert_dir}", "+model.trust_remote_code=true"],
        "no argument 'trust_remote_code'",
    )


def test_a_label_count_that_differs_from_the_data(bert_dir: Path) -> None:
    refused_by_compose(
        [*CLASSIFY, f"model.path={bert_dir}", "model.num_labels=2"],
        "model.num_labels=2",
        "holds 3",
        "num_labels=3",
    )


def test_a_tag_count_that_differs_from_the_data(tmp_path: Path, bert_dir: Path) -> None:
    (tmp_path / "t.csv").write_text("mots;tags\nRouen est loin;B O O\nCaen aussi;B O\n", encoding="utf-8")
    overrides = [
        "model=hf_token_classifier",
        "data=text_csv",
        f"model.path={bert_dir}",
        f"data.path={tmp_path / 't.csv'}",
    ]
    refused_by_compose(
        [*overrides, "data.text=mots", "data.label=tags", "data.task=tokens"], "holds 2", "num_labels=2"
    )
    refused_by_compose([*overrides, "model.num_labels=2"], "set data.task=tokens")


def test_a_llama_shorter_than_the_windows(llama_dir: Path) -> None:
    refused_by_compose(
        ["model=hf_llama", "data=hf_text", f"model.path={llama_dir}", "data.seq_len=512"], "data.seq_len=512"
    )


def test_model_path_must_be_given() -> None:
    refused_by_compose(CLASSIFY, "model.path has no value", "set it")
