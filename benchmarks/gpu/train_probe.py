"""`normia train <overrides>` in this process, plus what its done.json does not hold, for benchmarks/gpu/run_all.sh:

- the training loss of every step (kept as detached tensors, read once at the end: no sync per step),
- the step reached so far, in a small progress file (the Ctrl-C/resume check sends SIGINT after N steps),
- the peak GPU memory of the run (torch.cuda.max_memory_allocated; None on a CPU),
- host-device syncs per step in normia's own loop: torch.cuda.set_sync_debug_mode("warn") over a window of steady
  steps (PROBE_SYNC_WINDOW="first:count", e.g. "10:10"); every implicit sync warns once.

    PROBE_OUT=run.json python benchmarks/gpu/train_probe.py experiment=gpu_llama_125m kernels=triton ...

It adds one Lightning callback to the Trainer normia builds (by wrapping Trainer.__init__) and changes nothing else;
the exit code is normia's (0, 130 after Ctrl-C, 2 for a refused config). Only a train run of one process (devices=1)
is seen: local ranks run in their own processes.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

SYNC_WARNING = "synchronizing CUDA operation"
record: dict[str, Any] = {
    "argv": sys.argv[1:],
    "steps": [],  # global step after each training batch
    "losses": [],  # the loss of that batch (float, filled at exit)
    "step_end_s": [],  # host clock at each batch end (no sync: the GPU may lag behind)
    "peak_mem_gb": None,
    "syncs_per_step": None,
    "syncs_note": None,
    "exit_code": None,
}
_pending: list[Any] = []


def _install(progress: Path | None, window: tuple[int, int] | None) -> None:
    import lightning.pytorch as pl
    import torch

    sync_state = {"count": 0, "on": False}
    previous_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if sync_state["on"] and SYNC_WARNING in str(message):
            sync_state["count"] += 1
            return
        previous_show(message, category, filename, lineno, file, line)

    warnings.showwarning = show

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
            if window is None or not torch.cuda.is_available():
                return
            first, count = window
            if trainer.global_step == first:
                warnings.filterwarnings("always", message=f".*{SYNC_WARNING}.*")
                sync_state.update(count=0, on=True)
                torch.cuda.set_sync_debug_mode("warn")
            elif trainer.global_step == first + count and sync_state["on"]:
                torch.cuda.set_sync_debug_mode("default")
                sync_state["on"] = False
                record["syncs_per_step"] = sync_state["count"] / count
                record["syncs_note"] = f"steps {first}..{first + count - 1}, set_sync_debug_mode('warn')"

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None:
                _pending.append(loss.detach())
                record["steps"].append(int(trainer.global_step))
                record["step_end_s"].append(time.perf_counter())
            if progress is not None:
                progress.write_text(f"{trainer.global_step}\n")

    original = pl.Trainer.__init__

    def init(self, *args: Any, callbacks: Any = None, **kwargs: Any) -> None:
        extra = (
            list(callbacks) if isinstance(callbacks, (list, tuple)) else ([callbacks] if callbacks else [])
        )
        original(self, *args, callbacks=[*extra, Probe()], **kwargs)

    pl.Trainer.__init__ = init  # type: ignore[method-assign]
    if window is None:
        record["syncs_note"] = "not counted (no PROBE_SYNC_WINDOW)"
    elif not torch.cuda.is_available():
        record["syncs_note"] = "not measured: set_sync_debug_mode needs CUDA"


def _finish(out: Path | None) -> None:
    try:
        import torch

        record["losses"] = (
            [float(v) for v in torch.stack(_pending).float().cpu().tolist()] if _pending else []
        )
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            record["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
    except Exception as err:  # the record must still be written
        record["finish_error"] = f"{type(err).__name__}: {err}"
    text = json.dumps(record, indent=1)
    if out is None:  # no PROBE_OUT: say it, leave no file behind
        print(f"probe: {text}", file=sys.stderr)
    else:
        out.write_text(text)


def main() -> int:
    out = Path(os.environ["PROBE_OUT"]) if os.environ.get("PROBE_OUT") else None
    progress = Path(os.environ["PROBE_PROGRESS"]) if os.environ.get("PROBE_PROGRESS") else None
    window_text = os.environ.get("PROBE_SYNC_WINDOW")
    window = tuple(int(v) for v in window_text.split(":")) if window_text else None
    _install(progress, window)  # type: ignore[arg-type]
    atexit.register(_finish, out)
    from normia.cli import main as normia_main

    try:
        code = normia_main(["train", *sys.argv[1:]])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    record["exit_code"] = code
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
