"""A Lightning logger for MLflow that creates its run lazily (no run for a job that fails validation or data
setup), resumes an existing run by id, and sends metrics in batches rather than one SQL/HTTP call per value."""

from __future__ import annotations

import os
import re
import time
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from normia.config.masking import mask_uri
from normia.tracking.data_inputs import (
    describe_inputs,
    input_tags,
    mlflow_datasets,
    recorded_inputs,
    reuse_note,
)
from normia.tracking.project_state import project_record
from normia.tracking.run_tags import device_kind
from normia.tracking.sqlite_seed import seed_sqlite_store
from normia.tracking.values import nonfinite_note

MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_CHARS = 6000
MAX_METRICS_PER_BATCH = 1000
CUT_MARKER = " ...[cut: full value in config.yaml]"
_REFUSED = re.compile(r"[^/\w.\- :]")  # mlflow.utils.validation: names hold only these characters
RESUME_DATA_TAG = "normia.resume_data_changes"
REUSED_TAG = (
    "normia.data.digests_reused"  # inputs whose digest came from the manifest (not re-read) this attempt
)
STATUS = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


class MlflowTracker(Logger):
    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        texts: dict[str, str] | None = None,
        flush_every_s: float = 5.0,
        system_metrics: bool = True,
        appended_tags: dict[str, str] | None = None,
        dataset: dict[str, Any] | None = None,
        model_input: dict[str, Any] | None = None,
    ):
        """dataset: the run's resolved `data` config node (tags.dataset_input), digested into MLflow dataset inputs
        when a new run is created (tracking/data_inputs.py); model_input: the resolved `model` node, whose pretrained
        folder (model.path) is recorded as an input with its digest too."""
        super().__init__()
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self._run_id = run_id
        self._tags = dict(tags or {})
        self._params = dict(params or {})
        self._texts = dict(texts or {})
        self._appended = dict(appended_tags or {})
        self._dataset = dataset
        self._model_input = model_input
        self.flush_every_s = flush_every_s
        self.system_metrics = system_metrics
        self._client: Any = None
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()
        self._monitor: Any = None
        self._may_start = False
        self.final_status: str | None = None
        self._noted: set[str] = set()
        # the node name prefixing rank 0's system metrics in a multi-node run (normia.tracking.node_metrics)
        self.node_id: str | None = None

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str | None:
        return self._run_id

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The MlflowClient once begin() was called; None before (Lightning touches this before data setup, and
        even constructing a client creates the sqlite store)."""
        if self._client is None and self._may_start:
            self._start()
        return self._client

    @rank_zero_only
    def begin(self) -> None:
        """Create (or reopen) the run: called when training really starts, after data and model setup succeeded."""
        self._may_start = True
        self.experiment  # noqa: B018

    def _start(self) -> None:
        from mlflow import MlflowClient

        if mask_uri(self.tracking_uri) != self.tracking_uri:
            # MLflow prints 'View run ... at: <tracking URI>' with the credentials in it; normia's summary
            # says where the run is, without them.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        # A new sqlite store starts as a copy of an empty migrated one: MLflow's migrations cost ~2 s per new store.
        seed_sqlite_store(self.tracking_uri)
        client = MlflowClient(tracking_uri=self.tracking_uri)
        # The researcher's project (name, version, git commit, dirty flag, the uncommitted changes as a patch),
        # read here, on rank zero only, when the run is created or reopened: one snapshot for tags and patch.
        project_tags, project_texts = project_record()
        self._tags.update(project_tags)
        if self._run_id is None:
            # What the run trained on and where (read here, before the first step, out of the timed steps).
            inputs = (
                describe_inputs(self._dataset, model=self._model_input)
                if (self._dataset or self._model_input)
                else []
            )
            self._tags.update(input_tags(inputs))
            if _say_reused(inputs):
                self._tags[REUSED_TAG] = ",".join(r.key for r in inputs if r.digest_reused)
            self._tags["normia.device"] = device_kind()
            experiment_id = _experiment_id(client, self.experiment_name)
            run = client.create_run(experiment_id, run_name=self.run_name, tags=self._tags)
            self._run_id = run.info.run_id
            with _failed_on_error(client, self._run_id):
                self._log_params(client)
                for artifact_file, text in {**self._texts, **project_texts}.items():
                    client.log_text(self._run_id, text, artifact_file)
                if inputs:
                    client.log_inputs(self._run_id, datasets=mlflow_datasets(inputs))
        else:
            previous = client.get_run(self._run_id).data.tags  # raises if the id is unknown to this store
            client.update_run(self._run_id, status="RUNNING")
            with _failed_on_error(client, self._run_id):
                for key, value in self._tags.items():
                    client.set_tag(self._run_id, key, value)
                # The tags now describe the code that continues the run, as normia.git_commit does; so does the
                # patch, when that code has uncommitted changes.
                for artifact_file, text in project_texts.items():
                    client.log_text(self._run_id, text, artifact_file)
                self._reopened_with_changes(client, previous)
                self._resumed_on_other_data(client, previous)
        self._client = client
        if self.system_metrics:
            self._start_system_metrics()

    def _reopened_with_changes(self, client: Any, previous: dict[str, str]) -> None:
        """A resume that changed the config: append the changes to their tag (params cannot change in MLflow) and
        replace config.yaml/overrides.yaml by what runs from now on."""
        if not self._appended:
            return
        for key, value in self._appended.items():
            client.set_tag(self._run_id, key, " | ".join(v for v in (previous.get(key), value) if v)[:8000])
        for artifact_file, text in self._texts.items():
            client.log_text(self._run_id, text, artifact_file)

    def _resumed_on_other_data(self, client: Any, previous: dict[str, str]) -> None:
        """A resume whose data no longer has the digests the run recorded: say so, and append the change to the
        tag RESUME_DATA_TAG (the run's `normia.input.*` tags keep what it started on; reproduce names the tag)."""
        if not self._dataset:
            return
        before = recorded_inputs(previous)
        if not before:
            return
        changes = []
        now = describe_inputs(self._dataset, model=self._model_input)
        if _say_reused(now):  # this attempt's (a requeue's) reuse, beside the first attempt's
            client.set_tag(self._run_id, REUSED_TAG, ",".join(r.key for r in now if r.digest_reused))
        for record in now:
            was = before.get(record.key)
            if was is not None and was.sha256 != record.sha256:
                changes.append(f"{record.key} {was.label()} -> {record.sha256[:12]}")
        if changes:
            text = "; ".join(changes)
            print(f"warning: the run resumes on other data than it started on: {text}")
            joined = " | ".join(v for v in (previous.get(RESUME_DATA_TAG), text) if v)
            client.set_tag(self._run_id, RESUME_DATA_TAG, joined[:8000])

    def _log_params(self, client: Any) -> None:
        from mlflow.entities import Param

        items = [Param(k, _cut(str(v))) for k, v in self._params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            client.log_batch(self._run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def _start_system_metrics(self) -> None:
        self._monitor = start_system_metrics(self._run_id, self.tracking_uri, self.node_id)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """The resolved config is logged at run creation (flattened, secrets masked); Lightning's hparams add nothing."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        if self.experiment is None:
            return
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if key == "epoch":
                continue
            name = metric_name(key)
            self._buffer.append(Metric(name, float(value), now, int(step or 0)))
            self._note_nonfinite(name, float(value), int(step or 0))
        if (
            time.monotonic() - self._last_flush >= self.flush_every_s
            or len(self._buffer) >= MAX_METRICS_PER_BATCH
        ):
            self.flush()

    def _note_nonfinite(self, key: str, value: float, step: int) -> None:
        """The first infinite value of a metric also goes to a tag: the store keeps inf as the largest float."""
        note = nonfinite_note(key, value, step)
        if note is not None and note[0] not in self._noted:
            self._noted.add(note[0])
            self._client.set_tag(self._run_id, *note)

    @rank_zero_only
    def flush(self) -> None:
        if self._client is None or not self._buffer:
            return
        for i in range(0, len(self._buffer), MAX_METRICS_PER_BATCH):
            self._client.log_batch(self._run_id, metrics=self._buffer[i : i + MAX_METRICS_PER_BATCH])
        self._buffer.clear()
        self._last_flush = time.monotonic()

    @rank_zero_only
    def save(self) -> None:
        """Lightning calls this after every logged step: send only when flush_every_s has passed (one sqlite write,
        ~6 ms, per logged step was a third of the quickstart's step time); flush() sends at once."""
        if self._buffer and time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End the run whatever happens: metrics MLflow refuses end it FAILED (then raise), never RUNNING."""
        if self._client is None:
            return
        final = self.final_status or STATUS.get(status, "FINISHED")
        try:
            self.flush()
        except BaseException:
            final = "FAILED"
            raise
        finally:
            self._buffer.clear()
            if self._monitor is not None:
                self._monitor.finish()
                self._monitor = None
            self._client.set_terminated(self._run_id, status=final)


def metric_name(key: str) -> str:
    """A name MLflow accepts: '@' reads '_at_' (acc@5 -> acc_at_5), other refused characters become '_'."""
    return _REFUSED.sub("_", key.replace("@", "_at_"))


def _cut(value: str) -> str:
    """A param value MLflow can store; a cut one ends with a marker saying where the full value is."""
    if len(value) <= MAX_PARAM_CHARS:
        return value
    return value[: MAX_PARAM_CHARS - len(CUT_MARKER)] + CUT_MARKER


@contextmanager
def _failed_on_error(client: Any, run_id: str) -> Iterator[None]:
    """Once a run exists, any failure while filling it ends it as FAILED (never left RUNNING), then re-raises."""
    try:
        yield
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by another job of the same sweep
        return client.get_experiment_by_name(name).experiment_id


def _say_reused(records: list) -> bool:
    """Print which inputs' digests came from the digest manifest; True if any did."""
    note = reuse_note(records)
    if note:
        print(note, flush=True)
    return note is not None


def start_system_metrics(run_id: str, tracking_uri: str, node_id: str | None = None) -> Any:
    """MLflow's system metrics monitor (CPU, memory, disk, network, GPU) for `run_id`, sampled every 10 s; with
    `node_id` its metrics are `system/<node_id>/...`, so several nodes can report into one run. None (with a
    warning) where it cannot run: psutil missing or an unsupported platform; tracking goes on without them."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=10, samples_before_logging=1, tracking_uri=tracking_uri, node_id=node_id
        )
        monitor.start()
        return monitor
    except Exception as err:
        print(f"warning: MLflow system metrics are off ({err})")
        return None
