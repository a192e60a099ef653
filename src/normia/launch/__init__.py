"""Launch `normia train` jobs on Slurm: submission through submitit (single jobs and sweep arrays), validation
against the cluster before anything is queued, runs inside an existing allocation (launcher=srun), and the
preemption callback that checkpoints every rank at a step boundary and requeues the job (the only layer that
requeues). Import-light: only the code that runs on the compute node imports Lightning."""
