"""`normia search`: hyperparameter search with Optuna, K workers (local processes or one Slurm job array) pulling
trials from one study in a shared storage, with pruning, resume and the standard outputs.

One job per module: space (the search space file), storage (where the study lives), claim (taking the next trial
exactly once), pruning (the Lightning callback), trial (one trial as a normia run), worker (the loop), slurm_array
(the array submission), outputs (table, CSV, plots), parent_run (the MLflow parent), cli (the command).

Optuna rather than our own code: its samplers (TPE), pruners (median, ASHA) and journal storage are maintained,
tested and known to researchers; a well-kept library beats a home-grown search loop.
"""
