"""The `energy` config node's values, checked where every job is validated (before a Slurm submission too).

Kept apart from callback.py (which imports Lightning) so that validation stays light.
"""

from __future__ import annotations

from typing import Any

from normia.errors import UserError

# gCO2e per kWh: the default of configs/energy/auto.yaml (RTE, Bilan électrique 2024: France's 2024 production average).
FRENCH_GRID_G_PER_KWH = 21.7


def check_energy(energy: Any) -> None:
    """Refuse values that cannot be right. Raises UserError naming the key: a PUE below 1 (a facility cannot use less
    than its IT load, ISO/IEC 30134-2), a negative carbon intensity, a CPU TDP of 0 W or less."""
    if energy is None or str(energy.get("mode", "auto")) == "off":
        return
    pue = float(energy.get("pue", 1.0))
    intensity = float(energy.get("carbon_intensity_g_per_kwh", FRENCH_GRID_G_PER_KWH))
    tdp = energy.get("cpu_tdp_w")
    if pue < 1.0:
        raise UserError(f"energy.pue={pue:g}: a PUE is facility energy over IT energy, so 1 or more")
    if intensity < 0:
        raise UserError(f"energy.carbon_intensity_g_per_kwh={intensity:g}: must be 0 or more (gCO2e/kWh)")
    if tdp is not None and float(tdp) <= 0:
        raise UserError(f"energy.cpu_tdp_w={tdp}: a CPU's TDP in W is more than 0")
