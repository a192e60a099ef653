"""normia predict / normia.predict / normia export on the byte-level language-model PoC: a CSV of prompts becomes
continuations (greedy by default, sampled with a seed) and scores (mean log-probability, bits per byte) with the
run's own tokenisation; the exported MLflow model generates the same text. Bad input: one line, exit 2, nothing
written. A real tiny run (the PoC's config, a few steps), a real MLflow store, no mocks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from test_export import served_predictions

import normia
from normia.cli import main
from normia.data.text import resolve_corpus

pytestmark = (
    pytest.mark.slow
)  # one tiny LM trained for the module (~15 s on 2 cores), then predictions and an export

QUIET = ["logger.system_metrics=false", "trainer.enable_progress_bar=false"]
STEPS = ["trainer.max_steps=12", "trainer.val_check_interval=12"]  # one validation, then the checkpoint
CONTEXT = 64  # the PoC's data.seq_len and model.max_seq_len


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("predict_lm")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("NORMIA_OUTPUT_ROOT", raising=False)
        summary = normia.train(["experiment=poc_shakespeare_bytes", *STEPS, *QUIET])
        prompts = folder / "prompts.csv"
        prompts.write_text(
            'id;prompt\nm1;"MENENIUS:\n"\nc1;"First Citizen; hear me"\nc2;"Before we proceed any further, hear me"\n',
            encoding="utf-8",
        )
        yield {"folder": folder, "summary": summary, "prompts": prompts}


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def greedy_by_llama(model: torch.nn.Module, prompt: str, n: int) -> str:
    """The model's own sampler (Llama.generate, temperature 0) on the prompt's UTF-8 bytes: an independent check."""
    ids = torch.tensor([list(prompt.encode("utf-8"))])
    out = model.generate(ids, max_new_tokens=n, temperature=0.0)[0, ids.shape[1] :]
    return bytes(out.tolist()).decode("utf-8", errors="replace")


def test_cli_writes_greedy_continuations_and_scores_in_the_input_conventions(
    lm: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    summary, prompts, folder = lm["summary"], lm["prompts"], lm["folder"]
    out = folder / "continued.csv"
    args = ["predict", f"run={summary.run_id}", f"data.path={prompts}", "max_new_tokens=30"]
    code, _, err = cli([*args, f"output={out}"], capsys)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "id;prompt;continuation;mean_logprob;bits_per_byte"  # the input's ';'
    written = pd.read_csv(out, sep=";", decimal=",", keep_default_na=False)
    assert written["id"].tolist() == ["m1", "c1", "c2"]
    assert written["prompt"].tolist() == [
        "MENENIUS:\n",
        "First Citizen; hear me",
        "Before we proceed any further, hear me",
    ]

    frame = normia.predict(summary.checkpoint, prompts, max_new_tokens=30)
    assert list(frame.columns) == ["id", "prompt", "continuation", "mean_logprob", "bits_per_byte"]
    assert frame["continuation"].tolist() == written["continuation"].tolist()  # greedy: deterministic
    model, _ = normia.load_run(summary.checkpoint)
    for prompt, continuation in zip(frame["prompt"], frame["continuation"], strict=True):
        assert continuation == greedy_by_llama(model, prompt, 30)
    assert (frame["bits_per_byte"] > 0).all() and (frame["mean_logprob"] < 0).all()
    assert frame["bits_per_byte"].to_numpy() == pytest.approx(-frame["mean_logprob"].to_numpy() / math.log(2))
    again = normia.predict(summary.run_id, pd.DataFrame({"prompt": ["MENENIUS:\n"]}), max_new_tokens=30)
    assert again["continuation"].iloc[0] == frame["continuation"].iloc[0]


def test_scoring_the_held_out_text_gives_the_runs_val_bits_per_byte(lm: dict[str, object]) -> None:
    """The validation windows (64 predicted bytes each, non-overlapping) of the last 10% of the corpus, given as
    one prompt: its bits per byte are the run's val/bits_per_token."""
    summary = lm["summary"]
    corpus = resolve_corpus("coriolanus").read_bytes()
    split = len(corpus) - int(len(corpus) * 0.1)
    windows = (len(corpus) - split - 1) // CONTEXT
    held_out = corpus[split : split + windows * CONTEXT + 1].decode("ascii")
    frame = normia.predict(summary.checkpoint, pd.DataFrame({"prompt": [held_out]}), max_new_tokens=0)
    assert frame["continuation"].iloc[0] == ""
    assert frame["bits_per_byte"].iloc[0] == pytest.approx(summary.metrics["val/bits_per_token"], rel=1e-4)


def test_sampling_is_seeded_and_long_prompts_continue_from_their_last_context_bytes(
    lm: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = lm["summary"].checkpoint
    prompts = pd.DataFrame({"prompt": ["First Citizen:\n", "MENENIUS:\n"]})
    first = normia.predict(ckpt, prompts, max_new_tokens=40, temperature=1.0, seed=1)
    second = normia.predict(ckpt, prompts, max_new_tokens=40, temperature=1.0, seed=1)
    other = normia.predict(ckpt, prompts, max_new_tokens=40, temperature=1.0, seed=2)
    assert first["continuation"].tolist() == second["continuation"].tolist()
    assert first["continuation"].tolist() != other["continuation"].tolist()
    capsys.readouterr()

    long = "Before we proceed any further, hear me speak. " * 4  # 184 bytes > 64
    result = normia.predict(ckpt, pd.DataFrame({"prompt": [long, long[-CONTEXT:]]}), max_new_tokens=20)
    assert result["continuation"].iloc[0] == result["continuation"].iloc[1]
    assert result["bits_per_byte"].iloc[0] != result["bits_per_byte"].iloc[1]  # the long one is scored whole
    err = capsys.readouterr().err
    assert "note: 1 prompt(s) of the input are longer than the model's context of 64 tokens" in err


def test_a_checkpoint_without_prediction_state_takes_the_tokenisation_from_its_config(
    lm: dict[str, object],
) -> None:
    """Checkpoints written before TextDataModule saved its prediction state still predict (bytes, data.seq_len)."""
    summary = lm["summary"]
    content = torch.load(summary.checkpoint, map_location="cpu", weights_only=True)
    assert content["TextDataModule"]["predict"]["tokenizer"] == "bytes"
    del content["TextDataModule"]
    old = Path(summary.checkpoint).parent / "old.ckpt"
    torch.save(content, old)
    prompts = pd.DataFrame({"prompt": ["MENENIUS:\n"]})
    assert normia.predict(old, prompts, max_new_tokens=10).equals(
        normia.predict(summary.checkpoint, prompts, max_new_tokens=10)
    )


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        ("id;text\n1;hello\n", [], "has no 'prompt' column (columns: id, text)"),
        ("id;prompt\n", [], "has no prompts: add rows under the 'prompt' column"),
        ("id;prompt\n1;hello\n2;\n", [], "empty prompt in"),
        ("prompt\nhello\n", ["temperature=-1"], "temperature=-1.0 must be >= 0"),
        ("prompt\nhello\n", ["max_new_tokens=ten"], "max_new_tokens=ten is not an integer"),
    ],
)
def test_bad_prompts_are_one_line_exit_2_and_nothing_written(
    lm: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: str,
    options: list[str],
    expected: str,
) -> None:
    data = tmp_path / "in.csv"
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "out.csv"
    ckpt = lm["summary"].checkpoint
    code, stdout, err = cli(
        ["predict", f"ckpt={ckpt}", f"data.path={data}", f"output={out}", *options], capsys
    )
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not out.exists() and stdout == ""


def test_exported_language_model_generates_what_normia_predict_does(
    lm: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    summary, folder = lm["summary"], lm["folder"]
    code, out, err = cli(["export", f"run={summary.run_id}", "registered_name=bard"], capsys)
    assert code == 0, err
    assert "registered models:/bard/1" in out
    code, _, err = cli(["export", f"run={summary.run_id}", "format=export"], capsys)
    assert code == 2 and "a language model's generation loop is not one" in err

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model("models:/bard/1")
    finally:
        mlflow.set_tracking_uri(None)
    params = {p.name: p.default for p in model.metadata.signature.params.params}
    assert params == {"max_new_tokens": 100, "temperature": 0.0, "seed": 0}
    prompts = pd.DataFrame({"prompt": ["MENENIUS:\n", "First Citizen"]})
    local = normia.predict(summary.checkpoint, prompts)  # the defaults: 100 greedy bytes
    remote = model.predict(prompts)
    assert remote["continuation"].tolist() == local["continuation"].tolist()
    pd.testing.assert_series_equal(remote["bits_per_byte"], local["bits_per_byte"], rtol=1e-6)
    served = served_predictions("models:/bard/1", prompts, folder)  # mlflow models serve, REST, the defaults
    assert served["continuation"].tolist() == local["continuation"].tolist()
    options = {"max_new_tokens": 25, "temperature": 0.9, "seed": 7}
    sampled = model.predict(prompts, params=options)
    assert (
        sampled["continuation"].tolist()
        == normia.predict(summary.run_id, prompts, **options)["continuation"].tolist()
    )
