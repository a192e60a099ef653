"""normia.load_run and normia.predict are public names that keep `import normia` light."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "lightning", "mlflow", "hydra", "omegaconf", "pandas")


def test_load_run_and_predict_are_lazy_public_names() -> None:
    code = (
        "import sys, normia\n"
        "assert callable(normia.load_run) and callable(normia.predict)\n"
        "assert {'load_run', 'predict'} <= set(normia.__all__) and 'predict' in dir(normia)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
