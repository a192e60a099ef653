"""FSDP2 with sharded checkpoints: each rank writes its own shards through torch.distributed.checkpoint (DCP), so no
rank ever holds the whole model and optimizer state (Lightning's ModelParallelStrategy with
save_distributed_checkpoint=False gathers all of it on rank 0: ~96 GB at 8B parameters, at every save).

A checkpoint is a folder written under a hidden temporary name (`.NAME.partial`) and renamed by rank 0 once every
rank has written its part: a crash in the middle of a save leaves the previous checkpoint as the newest complete
one, and no half-folder is ever picked (its name is never one a reader looks for). With asynchronous=True the step
loop is barely blocked: DCP stages the shards to host memory (pinned on GPUs) in a thread while the next step's
forward and backward run (they read the weights, never write them), and the next optimizer step waits for the
staging to end before it updates them; the write and the rename run in the background (training/checkpoint_writer.py), on a gloo process group of their own so that they never interleave
with the training's collectives. Design taken from torchtitan's components/checkpointer/dcp.py (async and
async-with-pinned-memory modes, a separate gloo group)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import ModelParallelStrategy

from normia.training.checkpoint_writer import WRITER
from normia.training.sharded_read import DCP_INDEX, META, check_index


def partial_path(path: Path) -> Path:
    """Where the checkpoint `path` is written before it is complete (hidden: never matched by a reader)."""
    return path.with_name(f".{path.name}.partial")


def publish(partial: Path, path: Path) -> None:
    """Make a complete folder visible under its name, replacing an older checkpoint of the same name (the same
    step saved twice) only after the new one is complete."""
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    if path.exists() or path.is_symlink():
        path.rename(old)
    partial.rename(path)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


class ShardedCheckpointStrategy(ModelParallelStrategy):
    """Lightning's ModelParallelStrategy (FSDP2) whose saves are sharded DCP folders, atomic, optionally
    asynchronous. Loads a sharded folder written with any number of ranks (DCP reshards) or a one-file
    checkpoint (Lightning gathers it from rank 0)."""

    def __init__(self, *args: Any, asynchronous: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, save_distributed_checkpoint=True, **kwargs)
        self.asynchronous = asynchronous
        self._checkpoint_group: Any = None
        self._staging: Any = None  # the last async save's staging future, until the next optimizer step

    def _group(self) -> Any:
        """A gloo group for checkpoint collectives (created on first use; every rank saves at the same step, so
        every rank creates it at the same point)."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        if self._checkpoint_group is None:
            self._checkpoint_group = dist.new_group(backend="gloo")
        return self._checkpoint_group

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None
    ) -> None:
        import torch.distributed.checkpoint as dcp

        if storage_options is not None:
            raise TypeError("storage_options are not supported by sharded checkpoints")
        path = Path(self.broadcast(str(filepath)))
        self.finish_staging()
        WRITER.wait()  # the previous write ends first (on every rank): one write in flight at a time
        partial = partial_path(path)
        if self.is_global_zero and partial.exists():
            shutil.rmtree(partial)  # left by a save that was killed
        self.barrier("normia-sharded-save-start")
        partial.mkdir(parents=True, exist_ok=True, mode=0o700)  # like the one-file checkpoints (0600)
        shards = {"state_dict": checkpoint.pop("state_dict")}
        shards.update({f"optimizer_{i}": s for i, s in enumerate(checkpoint.pop("optimizer_states", []))})
        if self.is_global_zero:
            torch.save(checkpoint, partial / META)
        group = self._group()
        if self.asynchronous:
            from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

            pinned = self.root_device.type == "cuda"
            # (pinned memory, shared memory, staging in a thread, non-blocking copies on a side stream: CUDA only)
            stager = DefaultStager(StagingOptions(pinned, False, True, pinned))
            response = dcp.async_save(shards, checkpoint_id=partial, process_group=group, async_stager=stager)
            self._staging, written = response.staging_completion, response.upload_completion
            rank_zero = self.is_global_zero

            def finish() -> None:
                try:
                    written.result()  # rank 0's write ends after every rank's (DCP gathers their results)
                finally:
                    stager.close()
                if rank_zero:
                    publish(partial, path)

            WRITER.submit(finish)
            return
        dcp.save(shards, checkpoint_id=partial, process_group=group)
        self.barrier("normia-sharded-save-written")
        if self.is_global_zero:
            publish(partial, path)
        self.barrier("normia-sharded-save-published")

    def optimizer_step(self, optimizer: Any, closure: Any, model: Any = None, **kwargs: Any) -> Any:
        """Lightning's step, whose closure (forward and backward) is followed by the wait for a pending staging
        copy: the weights and optimizer state change only after the closure, so the copy overlaps the compute."""
        if self._staging is None:
            return super().optimizer_step(optimizer, closure, model, **kwargs)

        def closure_then_staged() -> Any:
            result = closure()
            self.finish_staging()
            return result

        return super().optimizer_step(optimizer, closure_then_staged, model, **kwargs)

    def finish_staging(self) -> None:
        """Wait for the last async save's copy to host memory (counted as time the save blocked training)."""
        staging, self._staging = self._staging, None
        if staging is not None:
            started = time.perf_counter()
            staging.result()
            WRITER.blocked_s += time.perf_counter() - started

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Lightning's load, after checking that DCP's index names only DCP's own classes (DCP unpickles it with
        plain pickle, which would run any code a crafted checkpoint names)."""
        if (Path(checkpoint_path) / DCP_INDEX).is_file():
            import pickle

            from normia.errors import UserError

            try:
                check_index(checkpoint_path)
            except pickle.UnpicklingError as err:
                raise UserError(f"refusing to load {checkpoint_path}: {err}") from None
        return super().load_checkpoint(checkpoint_path, weights_only=True)

    def teardown(self) -> None:
        self.finish_staging()
        WRITER.wait()
        super().teardown()
