"""Child process of a local multi-process run: reads its resolved job config from the environment and runs it.
Started by normia.train.spawn with torch.distributed's env vars (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*)."""

from __future__ import annotations

import os
import sys

from omegaconf import OmegaConf

from normia.errors import UserError

CONFIG_ENV = "NORMIA_JOB_CONFIG"


def main() -> int:
    cfg = OmegaConf.create(os.environ[CONFIG_ENV])
    from normia.train.run import run_training

    try:
        run_training(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
