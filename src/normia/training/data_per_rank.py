"""The job's data, built once in the launching process and checked against its world size (data/world_size.py says
why): before a Slurm submission and before local ranks start."""

from __future__ import annotations

from omegaconf import DictConfig

from normia.data.world_size import DataPerRank, measure
from normia.errors import UserError
from normia.training.build import instantiate_node


def check_data_per_rank(cfg: DictConfig, ranks: str) -> DataPerRank:
    """Build the job's data module here and refuse (UserError, one line) a split too small for its world size
    (trainer.devices x trainer.num_nodes); `ranks` describes it for the message. Raises UserError too when the data
    cannot be read."""
    world = int(cfg.trainer.devices) * int(cfg.trainer.num_nodes)
    sizes = measure(instantiate_node(cfg.data, "data"), world)
    problem = sizes.problem(ranks)
    if problem is not None:
        raise UserError(problem)
    return sizes
