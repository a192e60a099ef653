"""Config composition (Hydra) and validation (dataclass schema + target signatures), before anything runs."""
