"""The end-of-run report a researcher reads first: metrics, throughput, wall time, where everything went."""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import DictConfig

from normia.config.masking import mask_uri
from normia.energy.accounting import summary_lines
from normia.training.build import world_size
from normia.training.checkpoint_writer import WRITER


def print_summary(summary: dict[str, Any]) -> None:
    lines = [
        f"== normia run '{summary['name']}' "
        + ("stopped (resumable)" if summary["stopped_early"] else "done")
    ]
    units = summary.get("units")
    for key, value in sorted(summary["metrics"].items()):
        if key.startswith("lr-"):
            continue
        unit = f" {units}" if units and key.endswith("_orig") else ""  # `val/mae_orig 3.4612 µg/m3`
        lines.append(f"  {key:<24} {value:.4f}{unit}")
    result = summary["result"]
    lines.append(f"  {'result (' + summary['monitor'] + ')':<24} {result:.4f}" if result is not None else "")
    lines.append(
        f"  steps {summary['global_step']}  epochs {summary['epochs']}  world size {summary['world_size']}"
    )
    rates = summary["throughput"]
    if rates:
        parts = [f"{rates['samples_per_s']:.1f} samples/s"]
        if "tokens_per_s" in rates:
            parts.append(f"{rates['tokens_per_s']:.0f} tokens/s")
        parts.append(f"{rates['steps_per_s']:.2f} steps/s")
        lines.append("  throughput " + ", ".join(parts))
    speed = summary.get("speed") or {}
    if "mfu" in speed:
        lines.append(
            f"  MFU       {100 * speed['mfu']:.1f}% ({speed['tflops_per_device']:.1f} TFLOP/s per device, bf16 peak; "
            f"FLOPs: {speed['flops_counted']})"
        )
    elif speed.get("mfu_not_measured"):
        lines.append(f"  MFU       not measured: {speed['mfu_not_measured']}")
    if speed.get("own_step_s_by_host"):
        hosts = ", ".join(f"{h} {1e3 * s:.1f} ms" for h, s in speed["own_step_s_by_host"].items())
        lines.append(f"  between steps per node (loading the batch, host work): {hosts}")
    params = summary.get("parameters")
    if params:
        share = 100.0 * params["trainable"] / max(params["total"], 1)
        lines.append(f"  parameters {params['trainable']:,} trainable of {params['total']:,} ({share:.2f}%)")
    saves = summary.get("checkpoints") or {}
    if saves.get("saves"):
        lines.append(
            f"  checkpoints {saves['saves']} saved, training blocked {saves['blocked_s']:.2f} s in total "
            f"(background writes {saves['background_write_s']:.2f} s)"
        )
    if summary.get("skipped_steps"):
        lines.append(f"  skipped   {summary['skipped_steps']} step(s) with a non-finite loss")
    if summary.get("energy"):
        lines += summary_lines(summary["energy"])
    lines.append(f"  wall time {summary['wall_time_s']:.1f} s")
    lines.append(f"  output    {summary['output_dir']}")
    if summary["mlflow_run_id"]:
        lines.append(f"  mlflow    run {summary['mlflow_run_id']} in {summary['tracking_uri']}")
        uri = str(summary["tracking_uri"])
        served = uri.startswith(("http://", "https://"))
        lines.append(
            f"            view: {'open ' + uri if served else 'mlflow ui --backend-store-uri ' + uri}"
        )
        lines.append(
            "            (in the UI, pick 'Model training' at the top left: it opens on GenAI traces)"
        )
    print("\n".join(line for line in lines if line), flush=True)


def run_summary(
    cfg: DictConfig,
    trainer: L.Trainer,
    roles: dict[str, Any],
    tracker: Any,
    result: float | None,
    wall_s: float,
) -> dict[str, Any]:
    """What done.json and the final report hold."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return {
        "name": cfg.name,
        "monitor": cfg.monitor,
        "result": result,
        "metrics": metrics,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "world_size": world_size(cfg),
        "wall_time_s": wall_s,
        "throughput": roles["throughput"].rates(),
        "speed": roles["throughput"].speed(),
        "mlflow_run_id": tracker._run_id if tracker is not None else None,
        "tracking_uri": mask_uri(tracker.tracking_uri) if tracker is not None else None,  # no userinfo
        "output_dir": str(cfg.paths.output_dir),
        "best_checkpoint": roles["best"].best_model_path or None,
        "stopped_early": roles["stop"].stopped,
        "skipped_steps": roles["nonfinite"].skipped,
        "checkpoints": {  # this process's saves (rank 0's in done.json): how long they held training
            "saves": WRITER.saves,
            "blocked_s": WRITER.blocked_s,
            "background_write_s": WRITER.write_s,
        },
        "energy": roles["energy"].report if "energy" in roles else None,
        "parameters": parameter_counts(trainer.lightning_module),
        "units": _data_units(cfg),
    }


def _data_units(cfg: DictConfig) -> str | None:
    """The data's units (`data.units`: ppm, µg/m3), shown beside the metrics in those units (*_orig)."""
    data = cfg.get("data")
    units = data.get("units") if isinstance(data, DictConfig) else None
    return str(units) if units else None


def parameter_counts(module: Any) -> dict[str, int] | None:
    """{trainable, total} parameters of the trained model (a shared tensor counts once; FSDP2 shards count with
    their global size); None without a model."""
    if module is None:
        return None
    params = list(module.parameters())
    return {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
    }
