"""`normia search`: hyperparameter search with Optuna, K workers (local processes or one Slurm job array) pulling
trials from one study in a shared storage, with pruning, resume and the standard outputs.

One job per module: args (the command's own arguments), space (the search space file), prepare (every check,
the plan), plan (what workers read), storage (where the study lives), engine (pruner, sampler), claim (taking the
next trial exactly once), pruning (the Lightning callback), trial (one trial as a normia run), worker (the loop),
local_workers / slurm_array (how workers start), report and outputs (table, CSV, plots), parent_run (MLflow),
cli (the command).

Optuna rather than our own code: its samplers (TPE), pruners (median, ASHA) and journal storage are maintained,
tested and known to researchers; a well-kept library beats a home-grown search loop.
"""
