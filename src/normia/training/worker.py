"""Child process of a local multi-process run: reads its resolved job config from a file only the
user can read (deleted once read) and runs it.
Started by normia.training.spawn with torch.distributed's env vars (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from omegaconf import OmegaConf

from normia.errors import UserError, stop_exit_code

CONFIG_FILE_ENV = "NORMIA_JOB_CONFIG_FILE"  # a 0600 file in a 0700 folder, deleted once read
PARENT_ENV = "NORMIA_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: be killed when the process that started this rank dies, even by SIGKILL or the OOM killer (which it
    cannot pass on): a rank left alone would hold its GPU and train on with no one to report to."""
    parent = int(os.environ.get(PARENT_ENV) or 0)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def keep_terminal_output() -> None:
    """A rank runs in a background process group of the terminal (see spawn.py): under `stty tostop` its first
    write would stop it (SIGTTOU) and the run would hang. Ignoring SIGTTOU lets its output through."""
    if hasattr(signal, "SIGTTOU"):
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)


def main() -> int:
    keep_terminal_output()
    die_with_parent()
    path = os.environ.pop(CONFIG_FILE_ENV)  # processes this rank starts get neither the path nor the config
    with open(path) as handle:
        cfg = OmegaConf.create(handle.read())
    os.unlink(path)
    from normia.training.process_group import close_process_group
    from normia.training.run import run_training

    try:
        run_training(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        return stop_exit_code(err)
    finally:
        close_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
