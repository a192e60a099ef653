"""The per-run energy measurement as a Lightning callback: windows over training and validation on every rank, the
sum over ranks at the end, the partial sum in each checkpoint (a requeued run goes on counting into the same
MLflow run), and the figures in the loggers (metrics) and the MLflow run (a tag per figure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch.distributed as dist

from normia.energy.accounting import EnergyWindows, accumulate, combine, report
from normia.energy.counters import CounterSet, open_counters
from normia.energy.settings import FRENCH_GRID_G_PER_KWH

# The French grid's carbon intensity: 21.7 gCO2e/kWh, the annual average of electricity produced in France in 2024
# (RTE, Bilan électrique 2024, chapter "Émissions": https://analysesetdonnees.rte-france.com/bilan-electrique-2024/
# emissions). Direct emissions of production; a life-cycle figure (e.g. ADEME's Base Empreinte) is higher.


def _count_units(batch: Any) -> tuple[int, int]:
    from normia.training.module import count_units

    return count_units(batch)


class EnergyCallback(L.Callback):
    """Measures the energy of the devices this job uses, over training and (as a separate figure) validation.

    `open_counters(device, node_leader)` gives a rank's counters (default: counters.open_counters with `estimate`
    and `cpu_tdp_w`); tests pass a double of the counter API. After fit, `report` holds the run's figures
    (see accounting.report) on every rank."""

    def __init__(
        self,
        pue: float = 1.0,
        carbon_intensity_g_per_kwh: float = FRENCH_GRID_G_PER_KWH,
        estimate: bool = False,
        cpu_tdp_w: float | None = None,
        open_counters: Callable[[Any, bool], CounterSet] | None = None,
        tracker: Any = None,
    ) -> None:
        self.pue = float(pue)
        self.carbon_intensity_g_per_kwh = float(carbon_intensity_g_per_kwh)
        self.estimate = estimate
        self.cpu_tdp_w = cpu_tdp_w
        self._open = open_counters
        self.tracker = tracker
        self.windows: EnergyWindows | None = None
        # the partial sum of earlier attempts of this run (from the checkpoint it resumes)
        self.previous: dict[str, Any] | None = None
        self.report: dict[str, Any] | None = None

    # --- windows ------------------------------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.windows is not None:
            return
        device = trainer.strategy.root_device
        leader = trainer.local_rank == 0  # the node's CPU and DRAM are read by one rank per node
        counters = (
            self._open(device, leader)
            if self._open is not None
            else open_counters(device, leader, estimate=self.estimate, cpu_tdp_w=self.cpu_tdp_w)
        )
        self.windows = EnergyWindows(counters)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """All ranks open their windows together: otherwise a rank waiting for rank 0 (which creates the MLflow run
        here) would count seconds that the node's CPU window, read on local rank 0, does not cover."""
        trainer.strategy.barrier("normia-energy-start")
        if self.windows is not None:
            self.windows.begin("train")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.windows is not None and not trainer.sanity_checking and self.windows.phase == "train":
            self.windows.begin("val")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.windows is not None and self.windows.phase == "val":
            self.windows.begin("train")

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int
    ) -> None:
        """Counted at the start: a checkpoint written at this batch's end (by any callback, in any order) then
        holds its samples beside its energy."""
        if self.windows is not None:
            self.windows.add_units(*_count_units(batch))

    # --- the run's total: summed over ranks, carried in checkpoints -----------------------------------------------

    def run_total(self) -> dict[str, Any]:
        """Every rank's record so far, summed (a collective: all ranks call it at the same point), plus earlier
        attempts."""
        local = self.windows.snapshot() if self.windows is not None else combine([])
        records = [local]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            records = [None] * dist.get_world_size()
            dist.all_gather_object(records, local)
        return accumulate(self.previous, combine(records))

    def state_dict(self) -> dict[str, Any]:
        """Called on every rank when a checkpoint is made (as NormiaState's): the run's total so far."""
        if self.windows is None:
            return {"total": self.previous} if self.previous else {}
        return {"total": self.run_total()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous = state.get("total") or None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Close the windows, sum over ranks and log, while the tracker's run is still open."""
        self.finish(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A stop that every rank agreed on (Ctrl-C, preemption: GracefulStop's StopRequested) reports the energy so
        far; any other exception may have left ranks apart, where a collective would hang: nothing then."""
        if type(exception).__name__ == "StopRequested" and self.report is None:
            self.finish(trainer)

    def finish(self, trainer: L.Trainer) -> dict[str, Any]:
        trainer.strategy.barrier("normia-energy-end")  # and close them together
        if self.windows is not None:
            self.windows.end()
        self.report = report(self.run_total(), self.pue, self.carbon_intensity_g_per_kwh)
        if trainer.is_global_zero:
            self._log(trainer)
        return self.report

    def _log(self, trainer: L.Trainer) -> None:
        assert self.report is not None
        for logger in trainer.loggers:
            if self.report["metrics"]:
                logger.log_metrics(self.report["metrics"], trainer.global_step)
            set_tags(logger, self.report["tags"])
        if self.tracker is not None and self.tracker not in trainer.loggers:
            set_tags(self.tracker, self.report["tags"])


def set_tags(logger: Any, tags: dict[str, str]) -> None:
    """Tags on an MLflow run: normia's tracker (`set_tags`), or any logger whose `experiment` is an MlflowClient and
    whose run id is `run_id`/`version` (Lightning's MLFlowLogger). Other loggers have no tags: nothing."""
    if hasattr(logger, "set_tags"):
        logger.set_tags(tags)
        return
    client = getattr(logger, "experiment", None)
    run_id = getattr(logger, "run_id", None) or getattr(logger, "version", None)
    if client is None or run_id is None or not hasattr(client, "set_tag"):
        return
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def from_config(energy: Any, tracker: Any = None) -> EnergyCallback | None:
    """The callback for a run's `energy` config node (mode, pue, carbon_intensity_g_per_kwh, estimate, cpu_tdp_w);
    None for `energy=off`. A missing node measures with the defaults (on by default). Refuses values that cannot
    be right: a PUE below 1 (a facility cannot use less than its IT load) or a negative carbon intensity."""
    from normia.energy.settings import check_energy

    if energy is None:
        return EnergyCallback(tracker=tracker)
    if str(energy.get("mode", "auto")) == "off":
        return None
    check_energy(energy)
    pue = float(energy.get("pue", 1.0))
    intensity = float(energy.get("carbon_intensity_g_per_kwh", FRENCH_GRID_G_PER_KWH))
    tdp = energy.get("cpu_tdp_w")
    return EnergyCallback(
        pue=pue,
        carbon_intensity_g_per_kwh=intensity,
        estimate=bool(energy.get("estimate", False)),
        cpu_tdp_w=None if tdp is None else float(tdp),
        tracker=tracker,
    )
