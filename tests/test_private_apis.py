"""Every private attribute, module path or checkpoint key of another library that normia relies on (issue 21).

An upgrade that moves one must fail HERE, naming it, the normia file that uses it and why, never silently in a run
(e.g. `getattr(trainer, "_logger_connector", None)` would just stop flushing the last step's metrics). The list is
this file's PRIVATE_APIS; add an entry whenever normia starts using another library's private name.
The versions that pass are those locked in .ci/constraints-py*.txt; pyproject.toml caps each of these libraries below
its next major release."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest


class Moved(Exception):
    """A private name is gone or has another shape."""


@dataclass(frozen=True)
class PrivateApi:
    name: str  # what normia touches, as written there
    used_in: str  # the normia file
    why: str  # one line: what normia needs it for
    probe: Callable[[], None]  # raises Moved (or AttributeError/ImportError) when it is not as normia expects


def resolve(path: str) -> Any:
    """The object at a dotted path: the longest importable module prefix, then attributes.
    Raises ImportError/AttributeError when any part is missing."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            if cut == 1:
                raise
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)  # pragma: no cover


def callable_with(path: str, *params: str) -> Callable[[], None]:
    """Probe: `path` is callable and accepts the keyword parameters normia passes."""

    def probe() -> None:
        obj = resolve(path)
        if not callable(obj):
            raise Moved(f"{path} is a {type(obj).__name__}, not callable")
        accepted = inspect.signature(obj).parameters
        missing = [p for p in params if p not in accepted]
        if missing:
            raise Moved(f"{path}{inspect.signature(obj)} lacks parameter(s) {missing}")

    return probe


def has_attrs(path: str, *attrs: str) -> Callable[[], None]:
    """Probe: the object at `path` (a class or module) exists and has each attribute."""

    def probe() -> None:
        obj = resolve(path)
        missing = [a for a in attrs if not hasattr(obj, a)]
        if missing:
            raise Moved(f"{path} has no {missing}")

    return probe


def is_a(path: str, kind: type) -> Callable[[], None]:
    def probe() -> None:
        obj = resolve(path)
        if not isinstance(obj, kind):
            raise Moved(f"{path} is a {type(obj).__name__}, expected a {kind.__name__}")

    return probe


def module_exists(path: str) -> Callable[[], None]:
    def probe() -> None:
        if importlib.util.find_spec(path) is None:
            raise Moved(f"no module {path}")

    return probe


@cache
def _trainer() -> Any:
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def trainer_attr(chain: str, *methods: str, kind: type | None = None) -> Callable[[], None]:
    """Probe: a freshly built Lightning Trainer has `chain` (dotted, from the trainer) with these methods."""

    def probe() -> None:
        obj: Any = _trainer()
        for attr in chain.split("."):
            obj = getattr(obj, attr)
        missing = [m for m in methods if not callable(getattr(obj, m, None))]
        if missing:
            raise Moved(f"trainer.{chain} ({type(obj).__name__}) has no method {missing}")
        if kind is not None and not isinstance(obj, kind):
            raise Moved(f"trainer.{chain} is a {type(obj).__name__}, expected {kind.__name__}")

    return probe


def fit_loop_checkpoint_keys() -> None:
    """The keys normia rewrites in checkpoint['loops']['fit_loop'] (Lightning writes fit_loop.state_dict())."""
    state = _trainer().fit_loop.state_dict()
    needed = {
        "epoch_progress": ("current",),
        "epoch_loop.batch_progress": ("current", "is_last_batch"),
        "epoch_loop.scheduler_progress": ("current",),
        "epoch_loop.automatic_optimization.optim_progress": ("optimizer",),
    }
    for key, inner in needed.items():
        if key not in state:
            raise Moved(f"checkpoint['loops']['fit_loop'] has no {key!r} (keys: {sorted(state)})")
        missing = [k for k in inner if k not in state[key]]
        if missing:
            raise Moved(f"checkpoint['loops']['fit_loop'][{key!r}] has no {missing}")


def _meta_file_name() -> None:
    name = resolve("lightning.fabric.utilities.load._METADATA_FILENAME")
    if name != "meta.pt":
        raise Moved(f"Lightning's sharded checkpoint metadata file is now {name!r}, not 'meta.pt'")


def omegaconf_nodes() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": [1, "${b}"], "b": 2})
    node = cfg._get_node("a")
    if node._get_node(1)._value() != "${b}":
        raise Moved("ListConfig._get_node(i)._value() no longer gives the raw (unresolved) value")


def optuna_trial_id() -> None:
    import optuna

    study = optuna.create_study()
    study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    if not isinstance(getattr(frozen, "_trial_id", None), int):
        raise Moved("optuna FrozenTrial has no int _trial_id")


def _flight_recorder_records_collectives() -> None:
    """One gloo rank with TORCH_FR_BUFFER_SIZE set: an all-reduce shows up in _dump_fr_trace's pickle."""
    import os
    import pickle
    import tempfile

    import torch
    import torch.distributed as dist
    from torch._C._distributed_c10d import _dump_fr_trace

    before = os.environ.get("TORCH_FR_BUFFER_SIZE")
    os.environ["TORCH_FR_BUFFER_SIZE"] = "10"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
            try:
                dist.all_reduce(torch.ones(2))
                entries = pickle.loads(_dump_fr_trace())["entries"]
            finally:
                dist.destroy_process_group()
    finally:
        if before is None:
            os.environ.pop("TORCH_FR_BUFFER_SIZE")
        else:
            os.environ["TORCH_FR_BUFFER_SIZE"] = before
    if not any("all_reduce" in str(e.get("profiling_name", "")) for e in entries):
        raise Moved(f"no all_reduce among the flight recorder's entries: {entries}")


def _fused_step_skips_on_found_inf() -> None:
    import torch

    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=0.1, fused=True)
    if not getattr(optimizer, "_step_supports_amp_scaling", False):
        raise Moved("fused AdamW no longer declares _step_supports_amp_scaling")
    param.grad = torch.ones(3)
    optimizer.grad_scale, optimizer.found_inf = None, torch.ones(())
    optimizer.step()
    if not torch.equal(param.detach(), torch.ones(3)):
        raise Moved("fused AdamW applied a step although found_inf was set")


def _bf16_has_no_scaler_and_plain_clipping() -> None:
    from lightning.pytorch.plugins.precision.amp import MixedPrecision

    if MixedPrecision("bf16-mixed", "cpu").scaler is not None:
        raise Moved("MixedPrecision('bf16-mixed').scaler is not None")
    callable_with(
        "lightning.pytorch.plugins.precision.precision.Precision.clip_gradients",
        "optimizer", "clip_val", "gradient_clip_algorithm",
    )()  # fmt: skip


PRIVATE_APIS: list[PrivateApi] = [
    # Lightning
    PrivateApi("Trainer._logger_connector.on_batch_end/update_train_step_metrics", "src/normia/training/callbacks.py",
               "a stop (Ctrl-C, preemption) raises inside on_train_batch_end: send the interrupted step's metrics first",
               trainer_attr("_logger_connector", "on_batch_end", "update_train_step_metrics")),
    PrivateApi("Trainer.fit_loop._combined_loader", "src/normia/training/loop_state.py",
               "replay the DataLoader iterator's seed draw at an epoch-boundary resume (exact RNG stream)",
               trainer_attr("fit_loop._combined_loader")),
    PrivateApi("CombinedLoader.flattened", "src/normia/training/loop_state.py",
               "the DataLoaders behind the fit loop's combined loader",
               has_attrs("lightning.pytorch.utilities.combined_loader.CombinedLoader", "flattened")),
    PrivateApi("Trainer.fit_loop.epoch_loop._batches_that_stepped", "src/normia/training/module.py",
               "know, without a host sync, whether this step is a logging step",
               trainer_attr("fit_loop.epoch_loop._batches_that_stepped", kind=int)),
    PrivateApi("checkpoint['loops']['fit_loop'] progress keys", "src/normia/training/loop_state.py",
               "reset a finished epoch's counters so a resume at an epoch boundary equals one run",
               fit_loop_checkpoint_keys),
    # Hydra / OmegaConf
    PrivateApi("hydra._internal.hydra.Hydra.create_main_hydra2", "src/normia/config/hydra_layers.py",
               "compose with a project's config folders layered over normia's (no public API for a search path)",
               callable_with("hydra._internal.hydra.Hydra.create_main_hydra2", "task_name", "config_search_path")),
    PrivateApi("hydra._internal.utils.create_config_search_path", "src/normia/config/hydra_layers.py",
               "the search path that hydra.initialize would build for normia's own tree",
               callable_with("hydra._internal.utils.create_config_search_path", "search_path_dir")),
    PrivateApi("hydra.initialize.get_gh_backup/restore_gh_from_backup", "src/normia/config/hydra_layers.py",
               "leave Hydra's global state as it was after composing",
               has_attrs("hydra.initialize", "get_gh_backup", "restore_gh_from_backup")),
    PrivateApi("omegaconf Node._get_node(...)._value()", "src/normia/config/ (compose, trust, validate), reproduce.py, search/space.py",
               "read a value without resolving its interpolation (a resolver must never run on untrusted configs)",
               omegaconf_nodes),
    # MLflow
    PrivateApi("mlflow.store.db.utils._initialize_tables", "src/normia/tracking/sqlite_seed.py",
               "build the sqlite store template once instead of 2 s of migrations per new store",
               callable_with("mlflow.store.db.utils._initialize_tables", "engine")),
    PrivateApi("mlflow.store.db.utils.create_sqlalchemy_engine_with_retry", "src/normia/tracking/sqlite_seed.py",
               "the engine MLflow itself uses to create a store", callable_with(
                   "mlflow.store.db.utils.create_sqlalchemy_engine_with_retry", "db_uri")),
    PrivateApi("mlflow.utils.validation._validate_tag_name", "src/normia/tracking/tags.py",
               "refuse a bad user tag before any run exists, with MLflow's own rule",
               callable_with("mlflow.utils.validation._validate_tag_name", "name")),
    PrivateApi("mlflow.data.dataset.Dataset._to_mlflow_entity", "src/normia/tracking/data_inputs.py",
               "log every dataset input of a run in one log_inputs call",
               has_attrs("mlflow.data.dataset.Dataset", "_to_mlflow_entity")),
    # Optuna
    PrivateApi("optuna FrozenTrial._trial_id", "src/normia/search/claim.py",
               "mark a dead worker's RUNNING trial (Trial(study, trial_id)) before failing it", optuna_trial_id),
    # submitit
    PrivateApi("submitit.slurm.slurm._make_sbatch_string", "src/normia/launch/sbatch.py",
               "show and check the exact script submitit will submit (--dry-run, value checks)",
               callable_with("submitit.slurm.slurm._make_sbatch_string", "command", "folder", "map_count")),
    PrivateApi("submitit.core._submit (module)", "src/normia/launch/sbatch.py",
               "the command line of a submitit job script", module_exists("submitit.core._submit")),
    # torch
    PrivateApi("torch._library.custom_ops.OPDEFS", "kernels/_ops.py",
               "register each kernel op once and list torch.ops.normia.*", is_a("torch._library.custom_ops.OPDEFS", Mapping)),
    PrivateApi("torch.utils._python_dispatch.TorchDispatchMode", "src/normia/bench/memory.py",
               "count the bytes each kernel reads and writes", is_a("torch.utils._python_dispatch.TorchDispatchMode", type)),
    PrivateApi("torch.utils._pytree.tree_flatten", "src/normia/bench/memory.py",
               "walk the tensors of an op's arguments", callable_with("torch.utils._pytree.tree_flatten")),
    PrivateApi("torch.distributed.checkpoint.state_dict_loader._load_state_dict", "src/normia/training/sharded_read.py",
               "read a sharded checkpoint in one process (as format_utils.dcp_to_torch_save does)",
               callable_with("torch.distributed.checkpoint.state_dict_loader._load_state_dict",
                             "state_dict", "storage_reader", "planner", "no_dist")),
    PrivateApi("torch.distributed.checkpoint.default_planner._EmptyStateDictLoadPlanner",
               "src/normia/training/sharded_read.py", "rebuild the saved structure without a template",
               is_a("torch.distributed.checkpoint.default_planner._EmptyStateDictLoadPlanner", type)),
    PrivateApi("torch.distributed.checkpoint.FileSystemReader.read_metadata (plain pickle)",
               "src/normia/training/sharded_read.py",
               "replaced by an allow-list unpickler; the .metadata file name must stay",
               has_attrs("torch.distributed.checkpoint.filesystem", "_metadata_fn")),
    # Lightning, checkpoints
    PrivateApi("lightning.pytorch.callbacks.ModelCheckpoint._save_checkpoint", "src/normia/training/checkpoint.py",
               "count the time best-checkpoint saves hold the step loop",
               callable_with("lightning.pytorch.callbacks.ModelCheckpoint._save_checkpoint", "trainer", "filepath")),
    PrivateApi("lightning.fabric.utilities.load._METADATA_FILENAME == 'meta.pt'", "src/normia/training/sharded_read.py",
               "the non-tensor part of a sharded checkpoint, read without Lightning", _meta_file_name),
    # torch and Lightning, the device-side non-finite guard (issue 23)
    PrivateApi("optimizer.found_inf / grad_scale / _step_supports_amp_scaling (GradScaler's protocol)",
               "src/normia/training/health.py", "skip a non-finite step on the device in a fused optimizer",
               _fused_step_skips_on_found_inf),
    PrivateApi("torch._C._distributed_c10d._dump_fr_trace (flight recorder, TORCH_FR_BUFFER_SIZE)",
               "src/normia/training/watchdog.py", "dump each rank's recent collectives when the run hangs",
               _flight_recorder_records_collectives),
    PrivateApi("MixedPrecision.scaler, Precision.clip_gradients", "src/normia/training/module.py",
               "clip under bf16 with a fused optimizer (Lightning refuses it under any mixed precision)",
               _bf16_has_no_scaler_and_plain_clipping),
]  # fmt: skip


def verify(api: PrivateApi) -> str | None:
    """None when `api` is as normia expects, else one line naming it, what moved, the file using it and why."""
    try:
        api.probe()
    except (Moved, ImportError, AttributeError, TypeError, ValueError) as exc:
        return f"{api.name} moved ({type(exc).__name__}: {exc}); used by {api.used_in} to {api.why}"
    return None


@pytest.mark.parametrize("api", PRIVATE_APIS, ids=[a.name for a in PRIVATE_APIS])
def test_private_api_is_still_there(api: PrivateApi) -> None:
    problem = verify(api)
    assert problem is None, problem


def test_a_renamed_module_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import hydra._internal.utils

    monkeypatch.delattr(hydra._internal.utils, "create_config_search_path")
    api = next(a for a in PRIVATE_APIS if a.name == "hydra._internal.utils.create_config_search_path")
    problem = verify(api)
    assert problem is not None
    assert problem.startswith("hydra._internal.utils.create_config_search_path moved (AttributeError")
    assert "src/normia/config/hydra_layers.py" in problem


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import submitit.slurm.slurm

    def stand_in(command: str, folder: str, array: int | None = None) -> str:  # map_count renamed
        return ""

    monkeypatch.setattr(submitit.slurm.slurm, "_make_sbatch_string", stand_in)
    api = next(a for a in PRIVATE_APIS if a.name == "submitit.slurm.slurm._make_sbatch_string")
    problem = verify(api)
    assert problem is not None and "lacks parameter(s) ['map_count']" in problem, problem


def test_a_moved_checkpoint_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer()
    real = trainer.fit_loop.state_dict

    def renamed() -> dict:
        state = dict(real())
        state["epoch_loop.batch_progress_v2"] = state.pop("epoch_loop.batch_progress")
        return state

    monkeypatch.setattr(trainer.fit_loop, "state_dict", renamed)
    api = next(a for a in PRIVATE_APIS if a.name.startswith("checkpoint['loops']"))
    problem = verify(api)
    assert problem is not None and "has no 'epoch_loop.batch_progress'" in problem, problem


def test_a_missing_instance_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer()
    monkeypatch.delattr(trainer, "_logger_connector")
    api = PRIVATE_APIS[0]
    problem = verify(api)
    assert problem is not None and "_logger_connector" in problem and "training/callbacks.py" in problem
