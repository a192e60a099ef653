"""One search worker: pull trials from the study until it has its N trials, running each in this process.

Local workers are `python -m normia.search.worker <search.json> --index I` processes started by `normia search`;
on Slurm each task of the job array calls work() (normia.search.slurm_array). Exit code 0, or 130 after Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from normia.errors import UserError
from normia.search.plan import SearchPlan, read_plan


def work(plan: SearchPlan, index: int) -> int:
    """Claim and run trials until none is left to claim; returns 0, or 130 when interrupted."""
    import optuna

    from normia.search.claim import claim_next
    from normia.search.engine import make_pruner, make_sampler
    from normia.search.storage import open_storage
    from normia.search.trial import run_trial

    if plan.config_dir:
        from normia.training.cli import use_config_dir

        use_config_dir(plan.config_dir)
    else:
        from normia.project import activate, current_project

        activate(current_project())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.storage)
    # The sampler's seed: the config's seed and this worker's index, moved on by the trials the study already has,
    # so that a resumed search does not draw its first points again (a fresh study: seed + index).
    existing = len(optuna.load_study(study_name=plan.study_name, storage=storage).get_trials(deepcopy=False))
    study = optuna.load_study(
        study_name=plan.study_name,
        storage=storage,
        sampler=make_sampler(plan.sampler, plan.seed + index + 1000 * existing),
        pruner=make_pruner(plan.pruner),
    )
    ran = 0
    while True:
        trial = claim_next(study, plan.search_dir, plan.n_trials, plan.max_failures, plan.tracking_uri)
        if trial is None:
            break
        ran += 1
        if run_trial(study, trial, plan) == "INTERRUPTED":
            return 130
    print(f"worker {index} ({os.getpid()}): no trial left to run after {ran} trial(s)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m normia.search.worker", description=__doc__)
    parser.add_argument("plan", help="the search.json written by normia search")
    parser.add_argument("--index", type=int, default=0, help="this worker's number (seeds its sampler)")
    parser.add_argument("--sha256", help="the plan's digest: a plan that differs is refused")
    args = parser.parse_args(argv)
    try:
        return work(read_plan(Path(args.plan), args.sha256), args.index)
    except KeyboardInterrupt:
        return 130
    except UserError as err:  # a damaged journal, a changed plan: one line in its log
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
