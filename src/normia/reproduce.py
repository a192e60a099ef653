"""`normia reproduce <run_id>`: re-run a recorded MLflow run and compare its final metrics with the original's.

The recorded `config.yaml` artifact is what ran, so it is the base of the new job (the configs in the repo may have
changed since; the keys where today's composition of the recorded overrides differs are listed, and the recorded
values win). Values masked as *** (secrets are never logged) are taken from today's composition. The new run goes to
the same MLflow store, in a fresh output folder, tagged `normia.reproduced_from=<run_id>`. A warning is printed when
the code's git commit differs from the recorded one or either tree was dirty: then identical metrics are not expected.

A run recorded from a researcher's project (`project.*` tags, tracking/project_state.py) is re-run inside that same
project only (its configs and code are what ran); the project's commit and dirty flag are checked as normia's are.

Provenance (issue 11). Before running, what the run recorded is compared with what this re-run will use: the content
digest of each data input (tracking/data_inputs.py), normia's and the project's commits, package versions, world
size and device kind; each difference is one `warning:` line, or "same data, code and environment as recorded".
After the run the verdict is `identical`, or `differs` with those differences as the likely causes. The only
overrides taken are data locations (`data.path=/my/copy.csv`, `data.root=...`): a partner's copy of the data at
another place, which the digest then proves to be the same data; a recorded path that is not here is looked for at
the same place relative to this project's root (or working folder) first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from normia.errors import UserError
from normia.reproduce_tolerance import default_rtol

if TYPE_CHECKING:
    from normia.project import Project
    from normia.tracking.data_inputs import InputRecord

REPRODUCED_FROM = "normia.reproduced_from"
CHANGES_TAG = "normia.resume_changes"  # train/resume_check.py (not imported: it pulls in the training stack)
RESUME_DATA_TAG = (
    "normia.resume_data_changes"  # tracking/mlflow_logger.py (not imported: it pulls in Lightning)
)
CONFIG_ARTIFACT = "config.yaml"
OVERRIDES_ARTIFACT = "overrides.yaml"
# Metrics that measure the machine, not the model: never compared.
NOT_COMPARED = (
    "system/",
    "summary/",
    "speed/",
    "checkpoint/",
    "lr-",
    "time/",
    "epoch",
)  # timings, not results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normia reproduce",
        description="Re-run a recorded MLflow run from its logged config and overrides; compare the final metrics.",
    )
    parser.add_argument(
        "run_id", help="the MLflow run id (see the summary of normia train, or the MLflow UI)"
    )
    parser.add_argument(
        "locations",
        nargs="*",
        metavar="data.KEY=PLACE",
        help="where your copy of the run's data is, when not where it was recorded (data.path=..., data.root=...): "
        "location keys only; the data's digest proves it is the same data",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="relative tolerance under which a metric counts as reproduced (default: 0 for a run made with "
        "trainer.deterministic=true, else 1e-4, or 1e-2 in 16-bit precision: the rounding drift of "
        "nondeterministic reductions; the verdict says which was used)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with code 1 when a metric differs beyond --rtol (default: off)",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="run the recorded config even if it names code outside the allowed targets or calls resolvers "
        "(only for a store whose writers you trust)",
    )
    from normia.training.cli import add_config_dir_argument

    add_config_dir_argument(parser)
    return parser


def fetch_run(client: Any, run_id: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(
            f"unknown MLflow run id '{run_id}' in {uri}: copy the id from the run's summary or the MLflow UI, "
            "or point --tracking-uri at the store that holds it"
        ) from None


def recorded_job(
    client: Any, run: Any, trust: bool = False, relocated: Path | None = None
) -> tuple[Any, list[str]]:
    """(the recorded config, the recorded command-line overrides) from the run's artifacts.

    Both came from the store, which anyone who can write to it controls: before anything is imported, the config's
    `_target_`s must name allowed code and neither may call a resolver (config/trust.py); a recorded
    `trusted_targets` is ignored. trust=True (--trust) skips that. Raises UserError for a refused or missing config.
    `relocated`: the run's artifact folder when it is not where the store recorded it (check_artifacts).
    """
    from mlflow.exceptions import MlflowException
    from omegaconf import OmegaConf

    from normia.config.record_yaml import load_recorded_yaml
    from normia.config.trust import load_untrusted_yaml, untrusted_overrides

    run_id = run.info.run_id
    origin = f"run {run_id} {CONFIG_ARTIFACT}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config_path = _artifact(client, run_id, CONFIG_ARTIFACT, tmp, relocated)
        except (MlflowException, OSError) as err:
            try:
                client.list_artifacts(run_id)
            except (MlflowException, OSError):
                raise UserError(
                    f"the artifacts of run {run_id} are not reachable at {run.info.artifact_uri} "
                    f"({str(err).splitlines()[0][:200]}): start the artifact server or fix its address "
                    "(--tracking-uri), then run normia reproduce again"
                ) from None
            raise UserError(
                f"run {run_id} has no {CONFIG_ARTIFACT} artifact: it was not recorded by normia train"
            ) from None
        config = load_untrusted_yaml(Path(config_path).read_text(), origin, trust=trust)
        try:
            path = _artifact(client, run_id, OVERRIDES_ARTIFACT, tmp, relocated)
            text = Path(path).read_text()
            loaded = load_recorded_yaml(text, f"run {run_id} {OVERRIDES_ARTIFACT}")
            overrides = list(OmegaConf.to_container(loaded, resolve=False) or [])
        except (MlflowException, OSError):
            node = config.get("overrides") if "overrides" in config else None
            overrides = [node._get_node(i)._value() for i in range(len(node))] if node is not None else []
    if not trust and "trusted_targets" in config:
        config.trusted_targets = []
    texts = [str(o).replace("\\${", "${") for o in overrides]
    return config, untrusted_overrides(texts, f"run {run_id} {OVERRIDES_ARTIFACT}", trust=trust)


def _artifact(client: Any, run_id: str, name: str, tmp: str, relocated: Path | None) -> str:
    """The local path of one artifact: in the relocated folder when there is one, else downloaded through MLflow."""
    if relocated is None:
        return str(client.download_artifacts(run_id, name, tmp))
    path = relocated / name
    if not path.is_file():
        raise FileNotFoundError(str(path))
    return str(path)


def build_job(
    recorded: Any, overrides: list[str], run_id: str, uri: str, trust: bool = False
) -> tuple[Any, list[str]]:
    """The config of the re-run, and the keys where today's composition differs from the recorded config.

    A `***` (a masked secret) is filled from today's composition only at a secret key and with a plain value
    (config/unmask.py). The final config, as it will run, is checked as a whole (targets by text and by object,
    resolvers) before anything is built; trust=True (--trust) skips that. Raises UserError for a refused config."""
    from omegaconf import OmegaConf

    from normia.config.compose import compose_job
    from normia.config.secrets import redact
    from normia.config.unmask import fill_masked, leaves
    from normia.config.validate import validate
    from normia.training.outputs import assign_output_dir

    today = compose_job(overrides)
    today_leaves = leaves(OmegaConf.to_container(redact(today), resolve=True))
    recorded_container = OmegaConf.to_container(recorded, resolve=True)
    ignored = ("paths.output_dir", "overrides", "resume")
    changed = sorted(
        key
        for key, value in leaves(recorded_container).items()
        if not key.startswith(ignored) and key in today_leaves and today_leaves[key] != value
    )
    cfg = OmegaConf.create(recorded_container)
    today_container = OmegaConf.to_container(today, resolve=True)
    fill_masked(cfg, recorded_container, today_container, f"run {run_id} {CONFIG_ARTIFACT}")  # type: ignore[arg-type]
    cfg.paths.output_dir = None
    cfg.resume = False
    cfg.logger.tracking_uri = uri
    cfg.logger.run_name = f"reproduce-{run_id[:8]}"
    cfg.tags = {**own_tags(cfg.get("tags")), REPRODUCED_FROM: run_id}
    if not trust:
        check_final(cfg, run_id)
    cfg = validate(cfg)
    cfg.overrides = overrides
    assign_output_dir(cfg)
    return cfg, changed


# Tags that place a run inside something else: MLflow's own (mlflow.parentRunId nests it under a search's parent
# run) and a search trial's (search.trial_number, search.params.*). A reproduction is its own run, linked to the
# original by REPRODUCED_FROM only: inheriting them showed two "trial 1" children in the search (issue 25).
PLACEMENT_TAG_PREFIXES = ("mlflow.", "search.")


def own_tags(recorded: Any) -> dict[str, Any]:
    """The recorded run's `tags` config without the tags that place it in a search or under a parent run."""
    from omegaconf import OmegaConf

    tags = OmegaConf.to_container(recorded) if recorded else {}
    return {k: v for k, v in (tags or {}).items() if not str(k).startswith(PLACEMENT_TAG_PREFIXES)}  # type: ignore[union-attr]


def check_final(cfg: Any, run_id: str) -> None:
    """The re-run's whole config, as it will run, against the caller's own allowed targets (the recorded
    trusted_targets is emptied first): every `_target_` by its text and by the object it resolves to, and no
    resolver call. Raises UserError for the first refused key."""
    from normia.config.resolved_targets import check_resolved
    from normia.config.trust import check_no_resolvers, check_targets, targets, trusted_prefixes

    origin = f"run {run_id}: the config to re-run"
    if "trusted_targets" in cfg:
        cfg.trusted_targets = []
    prefixes = trusted_prefixes()
    check_no_resolvers(cfg, origin)
    check_targets(cfg, origin, prefixes, recorded=True)
    for path, target in targets(cfg):
        check_resolved(target, f"{origin}: {path}", prefixes)


def recorded_project(run: Any) -> Project | None:
    """This process's project, when the run was recorded from one (None when it was not); made importable here and
    in the ranks the re-run starts (project.activate).

    Raises UserError when this is not the same project (by name, else by root, else by config folders): the
    recorded config names the project's model and data classes and was composed over its configs, which
    normia alone cannot find."""
    from normia.tracking.project_state import PREFIX

    tags = run.data.tags
    if not any(key.startswith(PREFIX) for key in tags):
        return None
    from normia.project import activate, current_project

    project = current_project()
    name, root = tags.get(f"{PREFIX}name"), tags.get(f"{PREFIX}root")
    dirs = tags.get(f"{PREFIX}config_dirs", "")
    if name:
        same = project is not None and project.name == name
    elif root:
        same = project is not None and str(project.root) == root
    else:
        same = project is not None and os.pathsep.join(map(str, project.config_dirs)) == dirs
    if not same:
        label = f"'{name}'" if name else "a project"
        here = f"this is {project.describe()}" if project is not None else "this folder is in no project"
        raise UserError(
            f"run {run.info.run_id} was recorded in project {label} ({root or dirs}) and {here}: cd into that "
            f"project, or pass --config-dir {dirs.split(os.pathsep)[0]} (its config folder), to reproduce it"
        )
    activate(project)
    return project


def project_warnings(run: Any, project: Project) -> list[str]:
    """code_warnings' checks for the project's code: its version, git commit and dirty flag against the recorded."""
    from normia.tracking.project_state import DIFF_ARTIFACT, DIFF_STAT_ARTIFACT, PREFIX, capture

    tags = run.data.tags
    recorded_commit = tags.get(f"{PREFIX}git_commit", "unknown")
    recorded_version = tags.get(f"{PREFIX}version")
    state = capture(project, with_diff=False)
    where = project.root or ", ".join(map(str, project.config_dirs))
    warnings = []
    if recorded_version and project.version and recorded_version != project.version:
        warnings.append(
            f"the project's version differs: the run was recorded with {project.name or 'the project'} "
            f"{recorded_version}, this is {project.version}"
        )
    if state.commit is None or recorded_commit == "unknown":
        warnings.append(
            "the git commit of the recorded project or of this project is unknown: the project's code may differ"
        )
    elif state.commit != recorded_commit:
        warnings.append(
            f"the project's code differs: the run was recorded at its commit {recorded_commit[:12]}, this is "
            f"{state.commit[:12]} (git checkout {recorded_commit[:12]} in {where} to reproduce exactly)"
        )
    if tags.get(f"{PREFIX}git_dirty") == "true":
        warnings.append(
            "the recorded run came from a project tree with uncommitted changes: the run's artifact "
            f"{DIFF_STAT_ARTIFACT} lists the files, and {DIFF_ARTIFACT} holds the patch when the run was made with "
            f"NORMIA_RECORD_DIFF=1 (git apply it over commit {recorded_commit[:12]})"
        )
    if state.dirty:
        warnings.append(f"the project tree has uncommitted changes ({where})")
    return warnings


def code_warnings(run: Any, project: Project | None = None) -> list[str]:
    """Why identical metrics may not be expected: normia's code (and, given `project`, the project's) is not the
    recorded one, or the run was resumed with config changes. One line each; each is also a likely cause."""
    from normia.tracking.run_tags import git_state

    tags = run.data.tags
    recorded_commit = tags.get("normia.git_commit", "unknown")
    recorded_dirty = tags.get("normia.git_dirty", "unknown")
    commit, dirty = git_state()
    warnings = []
    if commit is None or recorded_commit == "unknown":
        warnings.append("the git commit of the recorded run or of this code is unknown: the code may differ")
    elif commit != recorded_commit:
        warnings.append(
            f"the code differs: the run was recorded at commit {recorded_commit[:12]}, this is {commit[:12]} "
            f"(git checkout {recorded_commit[:12]} to reproduce exactly)"
        )
    if recorded_dirty == "true":
        warnings.append(
            "the recorded run came from a tree with uncommitted changes: they are not recoverable"
        )
    if dirty:
        warnings.append("this tree has uncommitted changes")
    if project is not None:
        warnings += project_warnings(run, project)
    resumed_data = tags.get(RESUME_DATA_TAG)
    if resumed_data:
        warnings.append(
            f"the run was resumed on other data than it started on ({resumed_data}): it trained part of the way on "
            "each, so one run on today's data is not expected to give identical metrics"
        )
    resumed = tags.get(CHANGES_TAG)
    if resumed:
        warnings.append(
            f"the run was resumed with config changes ({resumed}): it trained part of the way under the earlier "
            "values, so one run of the final config is not expected to give identical metrics"
        )
    return warnings


@dataclass(frozen=True)
class Difference:
    """One way this re-run differs from the recorded run: `text` is printed before the run (one line), `cause` after
    it when the metrics differ."""

    text: str
    cause: str


def check_artifacts(run: Any, uri: str) -> Path | None:
    """The folder the run's artifacts are read from when it is not where the store recorded it: the mlruns/ folder
    beside a copied sqlite store (said in one line); None when they are where recorded, or remote. Raises UserError
    when they are in a local folder found nowhere here."""
    from normia.config.masking import mask_uri
    from normia.tracking.copied_store import artifacts_here, local_artifact_path, store_folder

    recorded = local_artifact_path(run.info.artifact_uri or "")
    if recorded is None or recorded.is_dir():
        return None
    found, moved = artifacts_here(run.info.artifact_uri or "", uri)
    if found is not None and moved:
        print(f"note: the artifacts of run {run.info.run_id} are read from {found}, beside the copied store (it "
              f"recorded {recorded}, a path of the machine that made the run)")  # fmt: skip
        return found
    copied = ""
    folder = store_folder(uri)
    if folder is not None:
        copied = (
            f" nor in {folder / 'mlruns'} beside the store (a copy of {Path(uri[len('sqlite:///') :]).name} without "
            "the mlruns/ folder that was beside it?)"
        )
    raise UserError(
        f"the artifacts of run {run.info.run_id} are not reachable at {run.info.artifact_uri}{copied}: the store "
        f"{mask_uri(uri)} holds the run's record, not its files; copy that mlruns/ folder beside mlflow.db, or "
        f"point --tracking-uri at the MLflow server that holds the run"
    )


def location_overrides(texts: list[str]) -> list[tuple[str, Any, str]]:
    """(key, value, text) of each location override (`data.path=/my/copy.csv`): a plain `data.<...>` key whose last
    part names a place (path, root, dir, folder, file, files, shards, *_path, ...). Raises UserError (one line) for
    any other override, which would make the re-run another run than the recorded one, and for a key given twice."""
    from normia.config.overrides import parse_override
    from normia.tracking.data_inputs import is_location_key

    out: list[tuple[str, Any, str]] = []
    for text in texts:
        parsed = parse_override(text)
        key = parsed.key_or_group or ""
        plain = parsed.type.name == "CHANGE" and parsed.package is None and not parsed.is_sweep_override()
        if not (plain and key.startswith("data.") and is_location_key(key.rsplit(".", 1)[-1])):
            raise UserError(
                f"normia reproduce re-runs the recorded config and takes data locations only (data.path, data.root, "
                f"data.dir, data.folder, data.file, data.files, data.shards or data.*_path=...); '{text}' would "
                "make another run: use normia train for that"
            )
        if any(key == seen for seen, _, _ in out):
            raise UserError(f"'{key}' is given twice: give each data location once")
        out.append((key, parsed.value(), text))
    return out


def _set_override(overrides: list[str], key: str, text: str) -> list[str]:
    """The overrides with `key`'s own replaced by text (or text appended): one value per key, as Hydra requires."""
    from normia.config.overrides import parse_override

    kept = []
    for override in overrides:
        try:
            same = parse_override(override).key_or_group == key
        except UserError:
            same = False
        if not same:
            kept.append(override)
    return [*kept, text]


def apply_locations(
    recorded: Any,
    overrides: list[str],
    locations: list[tuple[str, Any, str]],
    inputs: dict[str, InputRecord],
    run_id: str,
) -> tuple[list[str], list[str]]:
    """Put the user's data locations into the recorded config (and its overrides, so the new run records where its
    data was), then look for each recorded path that is not here at the same place relative to this project's root
    or working folder. Returns (overrides, notes). Raises UserError for a location key the recorded config lacks."""
    from omegaconf import OmegaConf

    from normia.config.overrides import as_override
    from normia.tracking.data_inputs import default_roots

    missing = object()
    notes = []
    for key, value, text in locations:
        if OmegaConf.select(recorded, key, default=missing) is missing:
            known = sorted(k for k in inputs if not k.endswith(("dataset", "corpus")) and k != "data")
            raise UserError(
                f"{key} is not in run {run_id}'s config (its data locations: {', '.join(known) or 'none'})"
            )
        OmegaConf.update(recorded, key, value, merge=False)
        overrides = _set_override(overrides, key, text)
    given = {key for key, _, _ in locations}
    for key, record in inputs.items():
        value = OmegaConf.select(recorded, key, default=None)
        if key in given or not isinstance(value, str) or not value or not record.rel_path:
            continue
        if Path(value).expanduser().exists():
            continue
        for label, root in default_roots():
            candidate = root / record.rel_path
            if candidate.exists():
                OmegaConf.update(recorded, key, str(candidate), merge=False)
                overrides = _set_override(overrides, key, as_override(key, str(candidate)))
                where = "this project's root" if label == "project" else "this working folder"
                notes.append(
                    f"{key}: {value} is not here; using {candidate} (the same place relative to {where}; "
                    "its digest is checked below)"
                )
                break
    return overrides, notes


def check_data_here(current: list[InputRecord], run_id: str) -> None:
    """Raises UserError (before anything is written) when an input of the re-run does not exist or cannot be read,
    with the override that points at the user's copy."""
    for record in current:
        if record.kind in ("missing", "unreadable"):
            shown = record.path if isinstance(record.path, str) else record.abs_path
            raise UserError(
                f"the data of run {run_id} is not here: {record.key}={shown} ({record.error}); give the place of "
                f"your copy: normia reproduce {run_id} {record.key}=/path/to/your/copy"
            )


def _changes(recorded: InputRecord, current: InputRecord) -> str:
    parts = []
    for name, unit in (("size", " bytes"), ("rows", " rows"), ("files", " files")):
        a, b = getattr(recorded, name), getattr(current, name)
        if a is not None and b is not None and a != b:
            parts.append(f"{a} -> {b}{unit}")
    return f", {', '.join(parts)}" if parts else ""


def _model_key(key: str) -> bool:
    """An input key of the pretrained model folder (recorded since issue 25), not of the data."""
    return key.startswith("model.") or key == "data.tokenizer"


def data_differences(
    recorded: dict[str, InputRecord], current: list[InputRecord]
) -> tuple[list[Difference], list[str]]:
    """(differences, notes) between the recorded and current inputs, by config key: a changed digest (or package
    version), an input added or gone; notes for the same data at another place, and the limits of a partial
    digest."""
    now = {r.key: r for r in current}
    out, notes = [], []
    for key in sorted(set(recorded) | set(now)):
        was, cur = recorded.get(key), now.get(key)
        if cur is None:
            out.append(Difference(f"the data differs: the run read {was.describe()}, this config has no {key}", f"{key} is no longer an input"))  # type: ignore[union-attr]  # fmt: skip
            continue
        if was is None and _model_key(key) and not any(_model_key(k) for k in recorded):
            notes.append(
                f"{key} was not recorded by the run (made before normia recorded model folders): not compared"
            )
            continue
        if was is None:
            out.append(Difference(f"the data differs: {cur.describe()} was not an input of the run", f"{key} is a new input"))  # fmt: skip
            continue
        if was.sha256 != cur.sha256:
            if cur.kind == "package" or was.kind == "package":
                out.append(
                    Difference(
                        f"the data differs: {key} {cur.name} comes from {cur.package} {cur.version}, the run was "
                        f"recorded with {was.package} {was.version}",
                        f"{key}: {cur.name} from {was.package} {was.version} -> {cur.version}",
                    )
                )
                continue
            partial = (
                " (partial digests: size + first and last 64 MiB of files over 1 GiB)" if cur.partial else ""
            )
            out.append(
                Difference(
                    f"the data differs: {key} {cur.abs_path}: {cur.label()}, the run read {was.label()}"
                    f"{_changes(was, cur)}{partial}",
                    f"data digest of {key} changed ({was.label()}.. -> {cur.sha256[:12]}..{_changes(was, cur)})",
                )
            )
            continue
        if was.partial and cur.partial and was.mtime and cur.mtime and was.mtime != cur.mtime:
            out.append(
                Difference(
                    f"{key}: its partial digest (size + first and last 64 MiB of a file over 1 GiB) is as recorded "
                    "but it was modified since: a change in its middle would not show",
                    f"possibly {key} changed in its middle (partial digest as recorded, modification time differs)",
                )
            )
        elif was.abs_path and cur.abs_path and was.abs_path != cur.abs_path:
            notes.append(
                f"{key}: the same data at another place ({was.abs_path} -> {cur.abs_path}, {cur.label()})"
            )
    return out, notes


def environment_differences(run: Any, cfg: Any) -> list[Difference]:
    """Package versions, world size and device kind: recorded tags against this machine and the re-run's config."""
    from normia.tracking.run_tags import device_kind, versions

    tags = run.data.tags
    out = []
    now = versions()
    for name in sorted(now):
        was = tags.get(f"normia.version.{name}")
        if was is not None and was != now[name]:
            out.append(
                Difference(
                    f"{name} differs: the run was recorded with {name} {was}, this is {now[name]}",
                    f"{name} {was} -> {now[name]}",
                )
            )
    world = int(cfg.trainer.devices) * int(cfg.trainer.num_nodes)
    was_world = tags.get("normia.world_size")
    if was_world is not None and was_world != str(world):
        out.append(
            Difference(
                f"the world size differs: the run had {was_world} process(es), this re-run has {world}",
                f"world size {was_world} -> {world}",
            )
        )
    was_device = tags.get("normia.device")
    device = device_kind(str(cfg.trainer.accelerator))
    if was_device is not None and was_device != device:
        out.append(
            Difference(
                f"the device differs: the run computed on {was_device}, this re-run will on {device}",
                f"device {was_device} -> {device}",
            )
        )
    return out


def final_metrics(client: Any, run_id: str) -> dict[str, float]:
    from normia.tracking.values import from_mlflow

    metrics = client.get_run(run_id).data.metrics
    return {
        k: from_mlflow(float(v))
        for k, v in metrics.items()
        if not k.startswith(NOT_COMPARED) and "per_s" not in k
    }


def compare(original: dict[str, float], new: dict[str, float], rtol: float) -> tuple[list[str], bool]:
    """Lines of a table original / reproduced / difference, and whether every shared metric agrees within rtol."""
    lines = [f"  {'metric':<24} {'original':>14} {'reproduced':>14} {'difference':>12}"]
    same = True
    for key in sorted(set(original) | set(new)):
        a, b = original.get(key), new.get(key)
        if a is None or b is None:
            lines.append(
                f"  {key:<24} {a if a is not None else '-':>14} {b if b is not None else '-':>14} {'missing':>12}"
            )
            same = False
            continue
        diff = b - a if a != b else 0.0  # inf - inf is nan: equal infinities are identical
        ok = a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))
        same &= ok
        mark = "identical" if diff == 0 else f"{diff:+.3g}"
        lines.append(f"  {key:<24} {a:>14.6g} {b:>14.6g} {mark:>12}")
    return lines, same


def verdict(same: bool, rtol: float, causes: list[Difference], basis: str = "") -> list[str]:
    """The lines after the metric table: identical, or differs with the likely causes (the pre-run differences).
    `basis`: why this tolerance (when it was chosen from the run, not given), said beside it."""
    why = f"; {basis}" if basis else ""
    if same:
        tolerance = "identical" if rtol == 0 else f"within rtol={rtol:g}{why}"
        return [f"result: identical (reproduced: every metric {tolerance})"]
    lines = [
        "result: differs (metrics differ" + (")" if rtol == 0 and not why else f" beyond rtol={rtol:g}{why})")
    ]
    lines += [f"  likely cause: {d.cause}" for d in causes]
    if not causes:
        lines.append(
            "  likely cause: none found: the data digests, code commits, package versions, world size and device "
            "are as recorded (a nondeterministic operation? trainer.deterministic=true rules most out on CPU)"
        )
    return lines


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    locations = location_overrides(list(args.locations))  # refused before anything is opened or written
    from mlflow.tracking import MlflowClient

    from normia.training.cli import use_config_dir

    use_config_dir(args.config_dir)

    from normia.tracking.uri import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_reachable(uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        # Opening a missing sqlite store would create an empty one: refuse before anything is written.
        raise UserError(
            f"no MLflow store at {uri}: run from the folder that holds mlflow.db, or set --tracking-uri"
        )
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=uri)
    run = fetch_run(client, args.run_id, uri)
    relocated = check_artifacts(run, uri)
    project = recorded_project(run)  # before the recorded config is read: it may name the project's code
    recorded, overrides = recorded_job(client, run, trust=args.trust, relocated=relocated)

    from omegaconf import OmegaConf

    from normia.tracking.data_inputs import describe_inputs, recorded_inputs

    was_inputs = recorded_inputs(run.data.tags)
    overrides, notes = apply_locations(recorded, overrides, locations, was_inputs, args.run_id)
    cfg, changed = build_job(recorded, overrides, args.run_id, uri, trust=args.trust)
    data = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    model = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") else None
    now_inputs = describe_inputs(data, model=model)  # type: ignore[arg-type]
    check_data_here(now_inputs, args.run_id)

    differences = [Difference(w, w) for w in code_warnings(run, project)]
    found, data_notes = data_differences(was_inputs, now_inputs) if was_inputs else ([], [])
    differences = found + differences + environment_differences(run, cfg)
    notes += data_notes
    if not was_inputs:
        notes.append(
            f"run {args.run_id} recorded no data digests (it predates them): its data cannot be compared"
        )
    for difference in differences:
        print(f"warning: {difference.text}")
    for note in notes:
        print(f"note: {note}")
    if changed:
        shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
        print(
            f"note: today's configs compose differently for {len(changed)} key(s) ({shown}); using the recorded values"
        )
    if was_inputs and not found:  # the digests that prove it, whatever else differs
        print("same data as recorded: " + ", ".join(f"{r.key} {r.label()}" for r in now_inputs))
    if not differences:
        compared = (
            "same data, code and environment as recorded" if was_inputs else "same code and environment"
        )
        print(f"{compared} (data digests, commits, package versions, world size, device)")
    print(f"reproducing run {args.run_id}: normia train {' '.join(overrides) or '(defaults)'}")
    print(f"  output {cfg.paths.output_dir}")

    from normia.config.resolved_targets import trusting_all_targets
    from normia.training.cli import run_job
    from normia.training.preflight import preflight_local

    preflight_local(cfg)
    if relocated is not None and cfg.logger.get("experiment_name"):  # the last step before the run: nothing
        from normia.tracking.copied_store import experiment_here  # earlier writes into the store

        cfg.logger.experiment_name = experiment_here(client, str(cfg.logger.experiment_name), uri)
        print(
            f"note: the re-run is logged to experiment '{cfg.logger.experiment_name}', its files beside this store"
        )
    with trusting_all_targets(args.trust):  # --trust: the run builds what the record names, unchecked
        code = run_job(cfg)
    if code != 0:
        return code
    done = Path(cfg.paths.output_dir) / "done.json"
    new_id = json.loads(done.read_text()).get("mlflow_run_id") if done.is_file() else None
    if not new_id:
        raise UserError(
            "the re-run recorded no MLflow run (logger=none in the recorded config?): nothing to compare"
        )
    original, reproduced = final_metrics(client, args.run_id), final_metrics(client, new_id)
    rtol, basis = (args.rtol, "") if args.rtol is not None else default_rtol(cfg)
    lines, same = compare(original, reproduced, rtol)
    if same and compare(original, reproduced, 0.0)[1]:
        rtol, basis = 0.0, ""  # every metric bitwise equal: say identical, whatever the tolerance
    print(f"== run {new_id} ({REPRODUCED_FROM}={args.run_id}) vs the original")
    print("\n".join(lines))
    print("\n".join(verdict(same, rtol, differences, basis)))
    return 1 if (args.check and not same) else 0
