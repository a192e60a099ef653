"""Preemption signals only set a flag here; the training loop acts on it at the next step boundary.

Why: saving a checkpoint is collective (every rank takes part). Doing it inside a signal handler, which runs at an
arbitrary point and maybe on one rank only, deadlocks (seen with submitit's checkpoint() on rank 0). So the handler
records what arrived, and SlurmPreemption makes all ranks agree and save together. Installed by the job at start
(before Lightning is even imported), so a signal that comes while the job is still loading is not lost.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

# Slurm sends the --signal=USR1@s (or USR2, submitit's default and what job._interrupt() sends) before a time limit;
# SIGTERM comes with preemption and scancel.
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
STOP_SIGNALS = (signal.SIGTERM,)

NONE, STOP, REQUEUE = 0, 1, 2  # ordered: when ranks disagree, the largest wins


@dataclass
class PreemptState:
    action: int = NONE
    signal_name: str = ""
    received_at: float = 0.0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        action = REQUEUE if signum in REQUEUE_SIGNALS else STOP
        if action > self.action:
            self.action = action
            self.signal_name = signal.Signals(signum).name
            self.received_at = time.time()


STATE = PreemptState()


def ignore_until_exit() -> bool:
    """Once the job's work is over, ignore the preemption signals until the process has exited.

    Why: while the interpreter shuts down it resets every Python-level handler to the default, and the default action
    of USR1/USR2/TERM is to kill the process. A time-limit signal that lands in that window (after "Job completed
    successfully", during module teardown, NCCL/CUDA clean-up) made Slurm record a finished job as FAILED 10:0 next
    to a FINISHED MLflow run. SIG_IGN survives the shutdown; a stuck process still gets SIGKILL from Slurm.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in (*REQUEUE_SIGNALS, *STOP_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    return True


def install() -> bool:
    """Point the preemption signals at STATE.handle (replacing submitit's and Lightning's handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in (*REQUEUE_SIGNALS, *STOP_SIGNALS):
        signal.signal(sig, STATE.handle)
    return True
