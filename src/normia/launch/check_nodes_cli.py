"""`normia check-nodes launcher=austral launcher.partition=gpu_h200 launcher.nodes=4 launcher.gpus_per_node=4`:
submit just the pre-flight check (normia.launch.node_check) on the nodes such a job would get, wait, and print the
table: each rank's device, the all-reduce bus bandwidth per size, each rank's pair bandwidth, and the nodes that fail.

Same overrides and refusals as `normia train ... launcher=...` (it composes the same config); no data or model is
loaded, and nothing is logged to MLflow. Exit 0 when every node passed, PREFLIGHT_EXIT_CODE (75) when one failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from normia.errors import UserError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="normia check-nodes",
        description="Submit the pre-flight device and network check alone and print its table.",
    )
    parser.add_argument("overrides", nargs="*", help="launcher=slurm|austral and launcher.* overrides")
    parser.add_argument("--dry-run", action="store_true", help="print the job, submit nothing")
    args = parser.parse_args(argv)
    launcher = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("launcher=")), None)
    if launcher not in ("slurm", "austral"):
        raise UserError(
            "normia check-nodes submits a Slurm job: give launcher=slurm or launcher=austral "
            "(and launcher.nodes, launcher.partition, ... as for normia train)"
        )
    from normia.launch.preflight_run import PREFLIGHT_EXIT_CODE, PREFLIGHT_FILE
    from normia.launch.slurm import submit
    from normia.training.cli import compose_jobs

    forced = [
        "logger=none",
        "launcher.wait=true",
        "launcher.preflight=true",
        "launcher.exclude_failed_nodes=false",
    ]
    keys = {f.split("=", 1)[0] for f in forced}
    given = [o for o in args.overrides if o.split("=", 1)[0] in keys]
    if given:
        raise UserError(f"normia check-nodes sets {', '.join(sorted(keys))} itself: drop {' '.join(given)}")
    if not any(o.startswith("name=") for o in args.overrides):
        forced.append("name=check-nodes")  # its folder: <output_root>/check-nodes/<time>
    jobs, _ = compose_jobs([*args.overrides, *forced], multirun=False)
    from normia.launch.spec import parse_launcher

    gpus = parse_launcher(
        jobs[0].launcher
    ).gpus_per_node  # a wrong value: one line, before anything is submitted
    if gpus > 0 and not any(o.startswith("trainer=") for o in args.overrides):
        # GPU nodes are checked with NCCL on the GPUs: no need to name a GPU trainer for a check that trains nothing
        jobs, _ = compose_jobs([*args.overrides, *forced, "trainer=gpu"], multirun=False)
    cfg = jobs[0]
    code = submit(jobs, args.overrides, args.dry_run, check_only=True)
    if args.dry_run:
        return code
    table = Path(cfg.paths.output_dir) / PREFLIGHT_FILE
    if not table.is_file():
        print(
            f"no pre-flight table in {cfg.paths.output_dir}: the job ended before the check (see its log above)"
        )
        return code or 1
    from normia.launch.node_check import Verdict

    verdict = Verdict.from_json(table.read_text())
    print("\n".join(verdict.lines()))
    print(f"table: {table}")
    return PREFLIGHT_EXIT_CODE if verdict.failed else code
