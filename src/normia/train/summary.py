"""The end-of-run report a researcher reads first: metrics, throughput, wall time, where everything went."""

from __future__ import annotations

from typing import Any


def print_summary(summary: dict[str, Any]) -> None:
    lines = [
        f"== normia run '{summary['name']}' "
        + ("stopped (resumable)" if summary["stopped_early"] else "done")
    ]
    for key, value in sorted(summary["metrics"].items()):
        if key.startswith("lr-"):
            continue
        lines.append(f"  {key:<24} {value:.4f}")
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
    lines.append(f"  wall time {summary['wall_time_s']:.1f} s")
    lines.append(f"  output    {summary['output_dir']}")
    if summary["mlflow_run_id"]:
        lines.append(f"  mlflow    run {summary['mlflow_run_id']} in {summary['tracking_uri']}")
        lines.append(f"            view: mlflow ui --backend-store-uri {summary['tracking_uri']}")
    print("\n".join(line for line in lines if line), flush=True)
