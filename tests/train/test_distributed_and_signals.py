"""Multi-process training on CPU (gloo) and Ctrl-C: DDP with 2 ranks matches 1 process with the same global batch;
a stopped run leaves a consistent checkpoint and resumes into the same MLflow run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from normia.cli import main
from normia.training.checkpoint import load_checkpoint_file

COMMON = [
    "experiment=quickstart",
    "model.dropout=0.0",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=-1",
    "trainer.max_steps=30",
]


def _final_weights(workdir: Path, run: str) -> dict[str, torch.Tensor]:
    [ckpt] = (workdir / "outputs" / run).rglob("last.ckpt")
    return load_checkpoint_file(ckpt)["state_dict"]  # a file, or FSDP's sharded folder


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process(workdir: Path, strategy: str) -> None:
    """Same global batch (2 x 32 vs 64), same data order: the final weights agree to float tolerance."""
    assert main(["train", *COMMON, "name=single", "data.batch_size=64"]) == 0
    two = [
        "name=ddp",
        f"trainer={strategy}",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "data.batch_size=32",
    ]
    assert main(["train", *COMMON, *two]) == 0
    single, ddp = _final_weights(workdir, "single"), _final_weights(workdir, "ddp")
    assert single.keys() == ddp.keys()
    start = load_checkpoint_file(next((workdir / "outputs" / "single").rglob("last.ckpt")))["global_step"]
    assert start == 30
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")
    summary = json.loads(next((workdir / "outputs" / "ddp").rglob("done.json")).read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 30


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_continues_the_run(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "normia.cli",
        "train",
        "experiment=quickstart",
        "logger.system_metrics=false",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=-1",
        "trainer.max_steps=100000",
        "checkpoint.every_n_steps=25",
    ]
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    while not list((workdir / "outputs").rglob("last.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "stop requested" in out and "resume=" in out
    [ckpt] = (workdir / "outputs").rglob("last.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    stopped_at = saved["global_step"]
    assert stopped_at > 25, "the stop must save the step it stopped at, not only the periodic checkpoint"
    run_id = saved["normia"]["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "KILLED"
    assert not list((workdir / "outputs").rglob("done.json"))

    code = main(
        [
            "train",
            "experiment=quickstart",
            "logger.system_metrics=false",
            "trainer.enable_progress_bar=false",
            "trainer.max_epochs=-1",
            "checkpoint.every_n_steps=25",
            f"trainer.max_steps={stopped_at + 10}",
            "resume=true",
        ]
    )
    assert code == 0
    summary = json.loads(next((workdir / "outputs").rglob("done.json")).read_text())
    assert summary["mlflow_run_id"] == run_id and summary["global_step"] == stopped_at + 10
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_ddp_sweep_makes_one_sweep_dir_and_runs_each_job_once(workdir: Path, capsys) -> None:
    args = [
        "train",
        "-m",
        *[o for o in COMMON if not o.startswith("trainer.max_steps=")],  # a key given twice is refused
        "trainer.max_steps=6",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "optim.lr=1e-3,3e-3",
    ]
    assert main(args) == 0
    sweeps = list((workdir / "outputs" / "quickstart" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps
    jobs = sorted(p.name for p in sweeps[0].iterdir())
    assert len(jobs) == 2, jobs  # one folder per job (named by index or by its overrides)
    for job in jobs:
        summary = json.loads((sweeps[0] / job / "done.json").read_text())
        assert summary["world_size"] == 2 and summary["global_step"] == 6
    assert capsys.readouterr().out.count("== job ") == 2


HERE = Path(__file__).resolve().parent


def _cli(workdir: Path, *overrides: str, session: bool = False) -> subprocess.Popen:
    """`normia train` in a subprocess that imports the test probes; in its own session if asked, so that only the
    signals a test sends reach it."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "normia.cli", "train", *overrides]
    return subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=session,
    )


def _kill_pids(folder: Path, pattern: str) -> None:
    """Clean-up after a failed test: SIGKILL the processes whose pids the probes wrote."""
    for path in folder.glob(pattern):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(path.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie that no init has reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.is_file() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_until_both_ranks_started(proc: subprocess.Popen, probe: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while len(list(probe.glob("started-rank*"))) < 2:
        if proc.poll() is not None:
            pytest.fail(f"normia exited ({proc.returncode}) before training:\n{proc.stdout.read()[-5000:]}")
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)


DDP_CPU = [
    "experiment=quickstart",
    "model.dropout=0.0",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=-1",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
]


def test_a_second_ctrl_c_aborts_at_once(workdir: Path) -> None:
    """Two Ctrl-C in a row during a step that then stalls for 120 s: the second must abort at once, without the
    stop's checkpoint. Were the second Ctrl-C treated like the first, the run would sit out the stall (timeout
    here) and then save last.ckpt at the step where it stopped."""
    proc = _cli(
        workdir,
        "experiment=quickstart",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=-1",
        "trainer.max_steps=50",
        "+callbacks.twice._target_=probes.DoubleCtrlC",
        "+callbacks.twice.step=3",
        session=True,
    )
    started = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out  # an interrupt, said as one (was Lightning's silent exit 1)
    assert out.count("stop requested") == 1, out
    assert not list((workdir / "outputs").rglob("*.ckpt")), (
        "an aborted run must not write the stop's checkpoint"
    )
    assert time.monotonic() - started < 90


@pytest.mark.slow
def test_ctrl_c_sent_to_the_parent_alone_stops_every_rank(workdir: Path) -> None:
    """`kill -INT` of the normia process alone (its ranks are not signalled): each of the 2 DDP ranks must hear
    it exactly once, agree on the step, save and exit 130. Without forwarding the ranks never hear it and train
    on (timeout here); were they also in the terminal's process group, they would hear a terminal's Ctrl-C twice
    and abort instead of saving."""
    probe = workdir / "probe"
    proc = _cli(
        workdir,
        *DDP_CPU,
        "trainer.max_steps=100000",
        "+callbacks.started._target_=probes.ReportStarted",
        f"+callbacks.started.out_dir={probe}",
        session=True,
    )
    try:
        _wait_until_both_ranks_started(proc, probe)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_pids(probe, "started-rank*")
    assert proc.returncode == 130, out
    assert out.count("stop requested") == 2, out  # once per rank
    [ckpt] = (workdir / "outputs").rglob("last.ckpt")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] > 2
    for path in probe.glob("started-rank*"):
        assert not _alive(int(path.read_text()))


@pytest.mark.slow
def test_a_failing_rank_stops_the_other_ranks(workdir: Path) -> None:
    """Rank 1 raises at step 3 while rank 0 stalls for 10 minutes (as a rank blocked in a collective would): the
    parent must stop rank 0 at once and report rank 1's failure. Without that it would wait for rank 0 (timeout
    here)."""
    probe = workdir / "probe"
    proc = _cli(
        workdir,
        *DDP_CPU,
        "trainer.max_steps=100",
        "+callbacks.fail._target_=probes.StallOrFail",
        "+callbacks.fail.step=3",
        "+callbacks.fail.fail_rank=1",
        f"+callbacks.fail.out_dir={probe}",
        session=True,
    )
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_pids(probe, "rank*.pid")
    assert proc.returncode == 2, out
    assert "rank 1 failed with exit code 1; the other ranks were stopped" in out, out
    assert "fails on purpose" in out
    assert not _alive(int((probe / "rank0.pid").read_text())), "rank 0 must not be left running"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_ranks_die_with_a_killed_parent(workdir: Path) -> None:
    """SIGKILL of the normia process (OOM killer, kill -9), which cannot pass anything on: its ranks must not train
    on alone. Without the parent-death signal both ranks would still be running 60 s later."""
    probe = workdir / "probe"
    proc = _cli(
        workdir,
        *DDP_CPU,
        "trainer.max_steps=100000",
        "+callbacks.started._target_=probes.ReportStarted",
        f"+callbacks.started.out_dir={probe}",
        session=True,
    )
    try:
        _wait_until_both_ranks_started(proc, probe)
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()  # the ranks share this pipe: do not wait for its end
        pids = [int(p.read_text()) for p in probe.glob("started-rank*")]
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in pids if _alive(pid)], "ranks left running after their parent was killed"
    finally:
        _kill_pids(probe, "started-rank*")


@pytest.mark.slow
def test_a_second_ctrl_c_to_the_parent_aborts_every_rank(workdir: Path) -> None:
    """Both DDP ranks inside a 120 s step; Ctrl-C twice to the parent: the ranks abort at once (no stop checkpoint)
    and normia exits 130, an interruption, not 'rank N failed'. Without the second Ctrl-C's abort the ranks would
    sit out the step (timeout here); without the parent counting Ctrl-Cs it would report the aborted ranks as
    failed (exit 2)."""
    probe = workdir / "probe"
    proc = _cli(
        workdir,
        *DDP_CPU,
        "trainer.max_steps=100",
        "+callbacks.started._target_=probes.ReportStarted",
        f"+callbacks.started.out_dir={probe}",
        "+callbacks.started.stall_s=120",
        session=True,
    )
    try:
        _wait_until_both_ranks_started(proc, probe)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_pids(probe, "started-rank*")
    assert proc.returncode == 130, out
    assert "failed with exit code" not in out and out.count("stop requested") == 2, out
    assert not list((workdir / "outputs").rglob("last.ckpt")), "an abort must not write the stop's checkpoint"


def _read_all(fd: int, chunks: list[bytes]) -> None:
    """Drains a pty master into chunks until the other side is closed (a full pty buffer would block writers)."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        chunks.append(data)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty job control as on Linux")
def test_ctrl_c_typed_in_a_terminal_with_tostop(workdir: Path) -> None:
    """normia as the foreground job of a real terminal (a pty with `stty tostop`), Ctrl-C typed there: each rank
    hears it once and the run stops with a checkpoint (130). The ranks run in background process groups, so with
    tostop their first write would stop them (SIGTTOU) if they did not ignore it: training would never start."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] |= termios.TOSTOP | termios.ISIG
    termios.tcsetattr(slave, termios.TCSANOW, attrs)

    def as_terminal_job() -> None:  # session leader with the pty as controlling terminal, in the foreground
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    probe = workdir / "probe"
    cmd = [sys.executable, "-m", "normia.cli", "train", *DDP_CPU, "trainer.max_steps=100000"]
    cmd += ["+callbacks.started._target_=probes.ReportStarted", f"+callbacks.started.out_dir={probe}"]
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=as_terminal_job
    )
    os.close(slave)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(master, chunks), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while len(list(probe.glob("started-rank*"))) < 2:
            out = b"".join(chunks).decode(errors="replace")
            assert proc.poll() is None, out[-5000:]
            assert time.monotonic() < deadline, f"training did not start:\n{out[-5000:]}"
            time.sleep(0.5)
        os.write(master, b"\x03")  # Ctrl-C typed in the terminal
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_pids(probe, "started-rank*")
        reader.join(timeout=10)
        os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 130, out[-5000:]
    assert out.count("stop requested") == 2, out[-5000:]  # once per rank: a second would have aborted
    [ckpt] = (workdir / "outputs").rglob("last.ckpt")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] > 2
