"""The tolerance a reproduction is judged by when --rtol is not given: what the way the run was made allows.

A run with trainer.deterministic=true, re-run on the same kind of device and world size, repeats every operation in
the same order: its final metrics are bitwise equal, so any difference is real. A run with deterministic=false
(the CPU preset's default, for speed) lets reductions run in any order, and float addition is not associative: the
metrics drift by rounding (3e-8 relative seen on CPU after one epoch, issue 25), more in 16-bit formats (bf16 keeps 8
bits of mantissa, a relative step of 2^-8 ~ 4e-3). Calling that "differs" sends the user after a cause that is not
there; a tolerance a few orders above the rounding and far below any real change is the honest judge.
"""

from __future__ import annotations

from typing import Any

FLOAT32_RTOL = 1e-4  # rounding drift of fp32 after a short run is ~1e-8..1e-6 relative
HALF_RTOL = 1e-2  # bf16 / fp16 compute: one rounding step is 4e-3 (bf16) relative


def default_rtol(cfg: Any) -> tuple[float, str]:
    """(rtol, why) for the re-run config `cfg` (the recorded one): 0 for a deterministic run, else by precision."""
    trainer = cfg.get("trainer") or {}
    deterministic = trainer.get("deterministic")
    precision = str(trainer.get("precision", "32-true"))
    if deterministic is True:
        return 0.0, "the run was made with trainer.deterministic=true: a re-run repeats it bit for bit"
    half = any(tag in precision for tag in ("16", "bf16", "float8"))
    rtol = HALF_RTOL if half else FLOAT32_RTOL
    return rtol, (
        f"the run was made with trainer.deterministic={str(deterministic).lower()} and precision {precision}: reductions may "
        f"round differently from run to run; --rtol to judge otherwise"
    )
