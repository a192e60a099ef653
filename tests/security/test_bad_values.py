"""Issue 26 F: bad input that costs time or memory, or reaches the job script. A message quotes a short prefix of a
value only (a 30 MB CSV field was echoed whole); every value written into a Slurm job script is on one line and
launcher.python is a plain command; a Hugging Face folder holding a PEFT adapter is named and refused; a checkpoint
pickle that cannot be read safely is one line, not a traceback. Each refusal: exit 2, one `error:` line."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from normia.errors import UserError

HUGE = 30_000_000  # the size of the field in the report


def cli(*argv: str) -> tuple[int, str, str]:
    from normia.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_line(code: int, err: str, *words: str, longest: int = 1000) -> str:
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert len(lines[0]) < longest, f"{len(lines[0])} characters: {lines[0][:300]}"
    for word in words:
        assert word in lines[0], lines[0][:2000]
    return lines[0]


# --- a short prefix of any value in a message ------------------------------------------------------------------------

SERIES = [
    "experiment=poc_co2_forecast",
    "data=series_csv",
    "data.date_column=date",
    "data.columns=[temperature]",
]


def series_csv(path: Path, cell: str) -> Path:
    rows = ["date;temperature"] + [f"{day:02d}/03/2021;{10 + day},5" for day in range(1, 29)]
    rows[8] = f"08/03/2021;{cell}"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_30_mb_csv_field_is_quoted_by_a_short_prefix(workdir: Path) -> None:
    path = series_csv(workdir.parent / "huge.csv", "x" * HUGE)
    code, _, err = cli("train", *SERIES, f"data.path={path}", "trainer.enable_progress_bar=false")
    line = one_line(
        code, err, "non-numeric value 'xxxx", f"({HUGE} characters)", "column 'temperature'", "row 8"
    )
    assert not (workdir / "outputs").exists()
    assert line.count("x") < 200


@pytest.mark.parametrize(
    ("cells", "words"),
    [
        (["1,5", "2,5", "1" * 100_000 + ".5"], ["uses '.' as decimal mark", "(100002 characters)"]),
        (["1.5", "z" * 100_000], ["non-numeric value 'zzz", "(100000 characters)"]),
    ],
)
def test_every_cell_message_quotes_a_short_prefix(cells: list[str], words: list[str]) -> None:
    import pandas as pd

    from normia.data.table_reader import parse_numbers

    with pytest.raises(UserError) as info:
        parse_numbers(pd.Series(cells), "c", "t.csv")
    message = str(info.value)
    assert len(message) < 1000 and "\n" not in message, message[:300]
    for word in words:
        assert word in message, message[:500]


def test_a_huge_column_name_is_quoted_by_a_short_prefix() -> None:
    import pandas as pd

    from normia.data.table_reader import require_columns

    frame = pd.DataFrame({"date": [1], "h" * 1_000_000: [2]})
    with pytest.raises(UserError) as info:
        require_columns(frame, ["temp"], "t.csv", "columns")
    assert len(str(info.value)) < 1000 and "(1000000 characters)" in str(info.value)


def test_a_value_beyond_the_header_is_quoted_by_a_short_prefix(tmp_path: Path) -> None:
    from normia.data.table_reader import read_table

    path = tmp_path / "t.csv"
    path.write_text("a;b\n1;2\n3;4;" + "w" * 1_000_000 + "\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_table(path, sep=";")
    assert len(str(info.value)) < 1000 and "(1000000 characters)" in str(info.value)


def test_a_label_outside_data_classes_is_quoted_by_a_short_prefix() -> None:
    from normia.data.text_csv import TextCSVDataModule

    module = object.__new__(TextCSVDataModule)  # only what _lookup reads: no tokenizer needed
    module.classes, module.given_classes, module.label, module.path = ["pos", "neg"], True, "label", "t.csv"
    with pytest.raises(UserError) as info:
        module._lookup(None, None, None, [["pos"], ["n" * 1_000_000]])
    assert len(str(info.value)) < 1000 and "(1000000 characters)" in str(info.value)


# --- every value that reaches the Slurm job script -------------------------------------------------------------------

SLURM = ["train", "experiment=quickstart", "launcher=slurm", "launcher.query_cluster=false", "--dry-run"]


def test_a_line_break_in_output_root_never_reaches_an_sbatch_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line refuses a line break in an override; the environment (or a shared YAML file) does not."""
    monkeypatch.setenv("NORMIA_OUTPUT_ROOT", f"{workdir}/out\ntouch {workdir}/pwned #")
    code, out, err = cli(*SLURM)
    one_line(code, err, "the job folder", "holds a line break", "paths.output_root")
    assert "#SBATCH" not in out
    assert not (workdir / "pwned").exists() and not (workdir / "out").exists()


def test_a_unicode_line_separator_in_the_job_folder_setting_is_refused_too(workdir: Path) -> None:
    code, _, err = cli(*SLURM, "launcher.folder='logs\u2028touch pwned'")
    one_line(code, err, "holds a line break")


@pytest.mark.parametrize(
    "python",
    ["'python; touch pwned'", "'python $(touch pwned)'", "'python `id`'", "'python && id'", "'py|sh'"],
)
def test_launcher_python_must_be_a_plain_command(workdir: Path, python: str) -> None:
    code, out, err = cli(*SLURM, f"launcher.python={python}")
    one_line(code, err, "launcher.python=", "is not a plain command", "launcher.setup")
    assert "srun" not in out


def test_a_plain_launcher_python_with_options_still_runs(workdir: Path) -> None:
    code, out, err = cli(*SLURM, "launcher.python='$HOME/envs/a-1.2/bin/python3 -X dev'")
    assert code == 0, err
    assert "$HOME/envs/a-1.2/bin/python3 -X dev -u -m submitit.core._submit" in out


def test_every_value_of_the_script_is_checked_on_one_line() -> None:
    from normia.launch.script_check import check_script

    good = {"job_name": "normia-x", "setup": ["module load a"], "additional_parameters": {"chdir": "/p"}}
    check_script(good, "/out/slurm/%j", "python")
    for params, where in [
        ({**good, "additional_parameters": {"chdir": "/p\nid"}}, "working folder"),
        ({**good, "setup": ["# the project x\nid"]}, "setup line"),
        ({**good, "job_name": "a\rb"}, "the job name"),
    ]:
        with pytest.raises(UserError, match=where):
            check_script(params, "/out/slurm/%j", "python")


# --- Hugging Face folders ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "hf"))
    import tiny_models

    return tiny_models.bert_folder(tmp_path_factory.mktemp("bert"), pretrain_steps=1)


def with_adapter(bert: Path, folder: Path) -> Path:
    import shutil

    shutil.copytree(bert, folder)
    (folder / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "base_model_name_or_path": "'
        + str(bert)
        + '", "r": 2, "target_modules": ["query"]}'
    )
    return folder


CLASSIFY = ["experiment=hf_text_classifier"]


@pytest.mark.parametrize("finetune", ["full", "frozen", "lora"])
def test_a_folder_holding_an_adapter_is_named_and_refused(bert: Path, tmp_path: Path, finetune: str) -> None:
    import normia

    folder = with_adapter(bert, tmp_path / "adapter")
    extra = ["model.lora.target_modules=[query]"] if finetune == "lora" else []
    with pytest.raises(UserError) as info:
        normia.compose([*CLASSIFY, f"model.path={folder}", f"model.finetune={finetune}", *extra])
    message = str(info.value)
    assert "adapter_config.json" in message and "PEFT adapter" in message and str(bert) in message, message
    assert "\n" not in message


def test_loading_a_folder_holding_an_adapter_is_refused(bert: Path, tmp_path: Path) -> None:
    from normia.models.hf.loading import load_pretrained

    folder = with_adapter(bert, tmp_path / "adapter")
    with pytest.raises(UserError, match=r"adapter_config\.json"):
        load_pretrained("sequence_classification", str(folder), num_labels=3)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/normia-pickle-ran",))


def test_a_pickle_checkpoint_that_runs_code_is_one_line(bert: Path, tmp_path: Path) -> None:
    import pickle
    import shutil

    from normia.models.hf.loading import load_pretrained

    folder = tmp_path / "pickled"
    shutil.copytree(bert, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"bert.embeddings.x": _Payload()}))
    with pytest.raises(UserError) as info:
        load_pretrained("sequence_classification", str(folder), num_labels=3)
    message = str(info.value)
    assert "\n" not in message and "holds objects other than tensors" in message and len(message) < 1000, (
        message
    )
    assert "weights_only" not in message  # torch's advice to load it unsafely is not passed on
    assert not Path("/tmp/normia-pickle-ran").exists()


def test_a_pickle_checkpoint_is_one_line_through_the_cli(bert: Path, workdir: Path, normia_cli) -> None:
    import pickle
    import shutil

    folder = workdir.parent / "pickled"
    shutil.copytree(bert, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"bert.embeddings.x": _Payload()}))
    result = normia_cli("train", *CLASSIFY, f"model.path={folder}", "trainer.max_epochs=1", cwd=workdir)
    one_line(result.returncode, result.stderr, "holds objects other than tensors", str(folder))
    assert list(workdir.iterdir()) == [] and not Path("/tmp/normia-pickle-ran").exists()
