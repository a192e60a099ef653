"""A worker that died mid-write leaves a torn last line in the Optuna journal (issue 25, A3). The next write cuts it
(one line on stderr: the bytes dropped) instead of appending to it; a damaged line before the end cannot be a torn
write and is refused in one line naming the file, the line and the fix; a line being written by a live worker (it
holds Optuna's journal lock) is never cut. And a search that stops on an exception never leaves its MLflow parent
RUNNING: a reopened finished parent keeps its status, a new one ends FAILED.

Real Optuna journals written by hand in tmp_path, and `normia search` in this process with its workers' launcher
made to crash (no worker process, no training)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from pathlib import Path

import pytest

STUDY = "damaged"
TORN = b'{"op_code":6,"worker_id":"dead-worker","trial_id":1,"state":1,"val'


def _journal_with_trials(path: Path, values: list[float]) -> None:
    """A real study in a journal file with one COMPLETE trial per value."""
    import optuna

    from normia.search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY, storage=open_storage(str(path)), direction="maximize")
    for value in values:
        study.tell(study.ask(), value)


def _plain_trials(path: Path) -> list:
    """The study as plain Optuna reads it (its own backend and lock: what any later reader does)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


def test_a_torn_last_line_is_cut_before_the_next_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import optuna

    from normia.search.storage import open_storage

    journal = tmp_path / "study.journal"
    _journal_with_trials(journal, [0.5])
    whole = journal.read_bytes()
    with open(journal, "ab") as handle:  # a worker killed in the middle of its write
        handle.write(TORN)
    capsys.readouterr()

    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(journal)))
    assert journal.read_bytes() == whole + TORN  # opening and reading write nothing
    study.tell(study.ask(), 0.7)  # the next search's first write

    dropped = [line for line in capsys.readouterr().err.splitlines() if "dropped" in line]
    assert len(dropped) == 1, dropped
    assert f"dropped its last {len(TORN)} bytes" in dropped[0] and str(journal) in dropped[0]
    assert "died mid-write" in dropped[0] and "run again" in dropped[0]
    assert journal.read_bytes().startswith(whole) and journal.read_bytes().endswith(b"\n")
    # every later reader, plain Optuna included, reads the study: before the fix this raised JSONDecodeError
    assert [(t.state.name, t.value) for t in _plain_trials(journal)] == [("COMPLETE", 0.5), ("COMPLETE", 0.7)]
    optuna.load_study(study_name=STUDY, storage=open_storage(str(journal)))  # and normia opens it again


def test_a_line_being_written_under_the_lock_is_never_cut(tmp_path: Path) -> None:
    """A live worker on another node is mid-write while it holds Optuna's journal lock: the next writer waits for
    the lock, and the line, finished meanwhile, is kept whole."""
    import optuna
    from optuna.storages.journal import JournalFileSymlinkLock

    from normia.search.storage import open_storage

    journal = tmp_path / "study.journal"
    _journal_with_trials(journal, [0.5])
    record = json.dumps(
        {"op_code": 2, "worker_id": "live-worker", "study_id": 0, "user_attr": {"from": "live"}},
        separators=(",", ":"),
    ).encode()
    live = JournalFileSymlinkLock(str(journal))
    live.acquire()
    try:
        with open(journal, "ab") as handle:
            handle.write(record[:20])  # the live worker's write, half done
        study = optuna.load_study(study_name=STUDY, storage=open_storage(str(journal)))
        writer = threading.Thread(target=study.set_user_attr, args=("from", "next"))
        writer.start()
        writer.join(1.0)
        assert writer.is_alive(), "the next write did not wait for the journal's lock"
        assert journal.read_bytes().endswith(record[:20]), "a line being written was cut"
        with open(journal, "ab") as handle:
            handle.write(record[20:] + b"\n")
    finally:
        live.release()
    writer.join(30)
    assert not writer.is_alive()
    lines = journal.read_bytes().splitlines()
    assert lines[-2] == record  # kept whole, then the next write after it
    assert json.loads(lines[-1])["user_attr"] == {"from": "next"}


def _damage(journal: Path, kind: str) -> tuple[int, bytes]:
    """Put a damaged line 3 into the journal; returns (its line number, the bytes the fix removes)."""
    lines = journal.read_bytes().splitlines(keepends=True)
    if kind == "fused":  # a torn record with the next record appended to it (what Optuna's append did)
        lines[2] = TORN + lines[2]
        removed = TORN
    else:  # an edit by hand, a copy cut short and glued
        lines.insert(2, b"not a record\n")
        removed = lines[2]
    journal.write_bytes(b"".join(lines))
    return 3, removed


@pytest.mark.parametrize("kind", ["fused", "garbage"])
def test_a_damaged_line_before_the_end_is_refused_in_one_line(tmp_path: Path, kind: str) -> None:
    from normia.errors import UserError
    from normia.search.storage import open_storage

    journal = tmp_path / "study.journal"
    _journal_with_trials(journal, [0.5, 0.6, 0.7])
    number, removed = _damage(journal, kind)
    damaged = journal.read_bytes()

    with pytest.raises(UserError) as refused:
        open_storage(str(journal))
    message = str(refused.value)
    assert "\n" not in message
    assert f"{journal} line {number} " in message and "restore the file from a copy" in message
    if kind == "fused":
        assert f"delete that line's first {len(TORN)} bytes" in message
    else:
        assert f"delete line {number}" in message
    assert journal.read_bytes() == damaged  # refused: nothing written

    # the fix the message gives works: every trial is there again
    journal.write_bytes(damaged.replace(removed, b"", 1))
    assert [t.value for t in _plain_trials(journal)] == [0.5, 0.6, 0.7]


def _search(*argv: str) -> tuple[int, str]:
    """`normia search` in this process: (exit code, stderr)."""
    from normia.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["search", *argv])
    return code, err.getvalue()


SPACE = "params:\n  optim.lr: {type: log-float, low: 1.0e-3, high: 3.0e-2}\npruner: none\nsampler: random\n"
ARGS = ["experiment=quickstart", "search=parent", "n_trials=1", "trainer.max_epochs=1"]


def test_a_damaged_journal_stops_normia_search_with_exit_2(workdir: Path, space_dir: Path) -> None:
    (space_dir / "search" / "parent.yaml").write_text(SPACE)
    folder = workdir / "outputs" / "search" / "quickstart-parent"
    folder.mkdir(parents=True, mode=0o700)
    journal = folder / "study.journal"
    created = b'{"op_code":0,"worker_id":"w","study_name":"x","directions":[1]}\n'
    journal.write_bytes(created + TORN + b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"a":1}}\n')

    code, err = _search(*ARGS)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"{journal} line 2 is damaged" in lines[0]
    assert not (workdir / "mlflow.db").exists() or _parent_runs(workdir) == []


def _parent_runs(workdir: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "tags.`search.study` = 'quickstart-parent'") if experiments else []


def _crash(*args: object, **kwargs: object) -> int:
    raise RuntimeError("the workers' launcher crashed")


def test_a_search_that_crashes_never_leaves_its_parent_running(
    workdir: Path, space_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished search continued by the same command, which then crashes: its parent is FINISHED again, with its
    end time; a new search that crashes ends its parent FAILED. Before: both stayed RUNNING for ever."""
    from mlflow import MlflowClient

    from normia.search import local_workers

    (space_dir / "search" / "parent.yaml").write_text(SPACE)
    monkeypatch.setattr(local_workers, "run_local", lambda *args, **kwargs: 0)  # a search that runs no trial
    _search(*ARGS)
    [parent] = _parent_runs(workdir)
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    client.set_terminated(parent.info.run_id, status="FINISHED")  # as a search that reached its N trials
    finished = client.get_run(parent.info.run_id).info

    monkeypatch.setattr(local_workers, "run_local", _crash)
    with pytest.raises(RuntimeError, match="launcher crashed"):
        _search(*ARGS)  # continued, then crashed
    info = client.get_run(parent.info.run_id).info
    assert (info.status, info.end_time) == ("FINISHED", finished.end_time)

    with pytest.raises(RuntimeError, match="launcher crashed"):
        _search(*ARGS, "study_name=fresh")
    [fresh] = client.search_runs([parent.info.experiment_id], "tags.`search.study` = 'fresh'")
    assert fresh.info.status == "FAILED"
