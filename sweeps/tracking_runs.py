"""Idempotent MLflow run operations shared by the live callback and ``sweeps.backfill``.

A sweep is one parent run; each Ray trial is one child run, found again by its trial id, so
every operation here can be repeated (after a resume, a retried trial, a backfill) without
creating a second run or a second copy of a metric step. Decisions are pure functions at the
top; ``RunStore`` does the I/O through ``MlflowClient`` and is used from one thread at a time.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import (MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH,
                                     MAX_TAG_VAL_LENGTH)

from trainables.metrics import (END_STATE_TAG, EPOCH, ERRORED, ROLE_PARENT, ROLE_TRIAL, TAG_ERROR, TAG_ROLE,
                                TAG_SWEEP_NAME, TAG_TRIAL_ID, TRAINING_ITERATION, TRIAL_ID)

# Tags only the tracking code reads (the shared ones live in trainables.metrics).
TAG_SWEEP_FOLDER = "sweep.folder"  # the Ray experiment folder: tells apart sweeps of the same name
TAG_PACKAGE_VERSION = "sweep.package_version"
TAG_BEST_TRIAL = "sweep.best_trial_id"  # on the parent, once the sweep has ended
TAG_BEST_CHECKPOINT = "sweep.best_checkpoint"  # the Ray checkpoint folder the parent's copy came from
ROLE_COMPARISON = "comparison"  # TAG_ROLE of a strategy comparison's run

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"

# Ray's bookkeeping in every result: not training metrics (the epoch is the step already).
_RAY_KEYS = frozenset({
    "timestamp", "pid", "done", "time_since_restore", "iterations_since_restore", TRAINING_ITERATION,
    "should_checkpoint", "time_this_iter_s", "checkpoint_dir_name", "date", "hostname", "node_ip",
    "experiment_tag", TRIAL_ID, "config",
})
# Hyperparameters that name a child run, in this order, with their short labels.
_NAME_KEYS = (("optimizer", ""), ("lr", "lr="), ("batch_size", "bs="))


def trial_run_name(trial_id: str, config: Mapping[str, Any]) -> str:
    """A readable child-run name, e.g. ``trial 00003 · sgd lr=0.012 bs=128``.

    Ray's trial ids end in the trial's index (``a1b2c3d4_00003``), the number people quote.
    """
    index = trial_id.rsplit("_", 1)[-1]
    parts = []
    for key, label in _NAME_KEYS:
        if key in config:
            value = config[key]
            parts.append(f"{label}{value:.2g}" if isinstance(value, float) else f"{label}{value}")
    return f"trial {index}" + (" · " + " ".join(parts) if parts else "")


def epoch_step(result: Mapping[str, Any]) -> int | None:
    """The MLflow step of one Ray result: the trainable's epoch, else Ray's iteration count."""
    value = result.get(EPOCH, result.get(TRAINING_ITERATION))
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numeric training metrics of one Ray result (NaN kept: a diverged epoch is data)."""
    out = {}
    for key, value in result.items():
        if key in _RAY_KEYS or not isinstance(value, (int, float)):
            continue
        out[key] = float(value)
    return out


def trial_max_epochs(config: Mapping[str, Any], *, sweep_max_epochs: int | None) -> int | None:
    """A trial's epoch budget: its own ``epochs`` capped by the sweep's (as sweeps.summary does)."""
    own = config.get("epochs")
    own = int(own) if isinstance(own, (int, float)) else None
    if own is None or sweep_max_epochs is None:
        return own if own is not None else sweep_max_epochs
    return min(own, sweep_max_epochs)


def run_status(state: str) -> str:
    """MLflow's run status for an end state: errors are FAILED, every other ending FINISHED."""
    return FAILED if state == ERRORED else FINISHED


def param_values(values: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params are strings of bounded length; containers become JSON."""
    out = {}
    for key, value in values.items():
        text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list, tuple)) else str(value)
        out[str(key)] = text[:MAX_PARAM_VAL_LENGTH]
    return out


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@dataclass
class ChildState:
    """What the store knows of one child run, cached so each epoch costs one request."""

    run_id: str
    status: str
    steps: set[int] = field(default_factory=set)
    params_logged: bool = True


class RunStore:
    """One MLflow experiment's sweep runs. Not thread-safe: the callback uses it from one thread."""

    def __init__(self, client: MlflowClient, experiment_id: str, experiment: str = ""):
        self.client = client
        self.experiment_id = experiment_id
        self.experiment = experiment  # its name, for the commands printed to fix things later

    @classmethod
    def connect(cls, tracking_uri: str, experiment: str) -> "RunStore":
        client = MlflowClient(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            try:
                return cls(client, client.create_experiment(experiment), experiment)
            except Exception:  # another driver created it between the two calls
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
        return cls(client, found.experiment_id, experiment)

    def _search(self, filter_string: str) -> list[Run]:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, ViewType.ACTIVE_ONLY,
                                           max_results=1000, order_by=["attributes.start_time DESC"],
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def find_parent(self, *, sweep_name: str, folder: str) -> Run | None:
        """The newest parent run of this sweep (same name and experiment folder)."""
        runs = self._search(f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}' and tags.`{TAG_SWEEP_NAME}` = '{_quote(sweep_name)}'"
                            f" and tags.`{TAG_SWEEP_FOLDER}` = '{_quote(folder)}'")
        return runs[0] if runs else None

    def find_parent_of_trials(self, *, sweep_name: str, trial_ids: Iterable[str]) -> Run | None:
        """The newest parent of this sweep name with a child for one of ``trial_ids``: the same sweep
        logged from another folder (a copy, a move). Ray's trial ids carry a random per-experiment
        prefix, so a shared one means the same experiment."""
        ids = set(trial_ids)
        for run in self._search(f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}' and "
                                f"tags.`{TAG_SWEEP_NAME}` = '{_quote(sweep_name)}'"):
            if ids & set(self.children(run.info.run_id)):
                return run
        return None

    def create_parent(self, *, sweep_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=sweep_name, tags=dict(tags))
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def children(self, parent_id: str) -> dict[str, Run]:
        """Child runs of a parent by trial id (the oldest wins if a crash ever left two)."""
        by_trial: dict[str, Run] = {}
        for run in self._search(f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'"):
            trial_id = run.data.tags.get(TAG_TRIAL_ID)
            if trial_id:
                by_trial[trial_id] = run  # newest first, so the last assignment keeps the oldest
        return by_trial

    def find_child(self, parent_id: str, trial_id: str) -> Run | None:
        runs = self._search(f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}' and "
                            f"tags.`{TAG_TRIAL_ID}` = '{_quote(trial_id)}'")
        return runs[-1] if runs else None  # newest first: the oldest is the one to keep

    def child_state(self, run: Run) -> ChildState:
        """Cache entry of an existing child run: which steps it already holds."""
        steps: set[int] = set()
        for key in run.data.metrics:
            steps.update(m.step for m in self.client.get_metric_history(run.info.run_id, key))
        return ChildState(run.info.run_id, run.info.status, steps, params_logged=bool(run.data.params))

    def create_child(self, parent_id: str, *, trial_id: str, sweep_name: str, config: Mapping[str, Any]) -> ChildState:
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, TAG_ROLE: ROLE_TRIAL, TAG_TRIAL_ID: trial_id,
                TAG_SWEEP_NAME: sweep_name}
        run = self.client.create_run(self.experiment_id, run_name=trial_run_name(trial_id, config), tags=tags)
        state = ChildState(run.info.run_id, RUNNING, params_logged=False)
        self.log_params(state.run_id, config)
        state.params_logged = True
        return state

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, v) for k, v in param_values(params).items()]
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i:i + MAX_PARAMS_TAGS_PER_BATCH], synchronous=True)

    def ensure_params(self, state: ChildState, config: Mapping[str, Any]) -> None:
        if not state.params_logged:
            self.log_params(state.run_id, config)
            state.params_logged = True

    def log_epochs(self, state: ChildState, results: Iterable[Mapping[str, Any]], *,
                   timestamps_ms: Sequence[int] | None = None) -> int:
        """Log the epochs not yet in the run, whole epochs per request; returns how many were new."""
        batch: list[Metric] = []
        batch_steps: list[int] = []
        new = 0
        for i, result in enumerate(results):
            step = epoch_step(result)
            if step is None or step in state.steps or step in batch_steps:
                continue
            ts = timestamps_ms[i] if timestamps_ms is not None else _timestamp_ms(result)
            metrics = [Metric(k, v, ts, step) for k, v in epoch_metrics(result).items()]
            if batch and len(batch) + len(metrics) > MAX_METRICS_PER_BATCH:
                self._flush(state, batch, batch_steps)
                batch, batch_steps = [], []
            batch.extend(metrics)
            batch_steps.append(step)
            new += 1
        if batch:
            self._flush(state, batch, batch_steps)
        return new

    def _flush(self, state: ChildState, batch: list[Metric], steps: list[int]) -> None:
        # One request per group of whole epochs: an epoch is either fully logged or not at all,
        # which is what lets a resume trust the steps it finds.
        self.client.log_batch(state.run_id, metrics=batch, synchronous=True)
        state.steps.update(steps)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        items = [RunTag(k, str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()]
        if items:
            self.client.log_batch(run_id, tags=items, synchronous=True)

    def set_status(self, run_id: str, status: str) -> None:
        if status == RUNNING:
            self.client.update_run(run_id, status=RUNNING)
        else:
            self.client.set_terminated(run_id, status=status)

    def reopen_child(self, state: ChildState) -> None:
        """RUNNING again (a resumed or retried trial); a run that had failed loses its old error."""
        if state.status == FAILED:
            try:
                self.client.delete_tag(state.run_id, TAG_ERROR)
            except MlflowException:  # a run logged before the sweep wrote errors has none
                pass
        self.set_status(state.run_id, RUNNING)
        state.status = RUNNING

    def finish_child(self, state: ChildState, *, state_name: str, error: str | None = None) -> None:
        """End state tag (and, for an errored trial, its error line), then the run's status."""
        self.set_tags(state.run_id, {END_STATE_TAG: state_name, **({TAG_ERROR: error} if error else {})})
        status = run_status(state_name)
        if state.status != status:
            self.set_status(state.run_id, status)
            state.status = status

    def has_artifact(self, run_id: str, artifact_path: str) -> bool:
        parent, _, name = artifact_path.rpartition("/")
        return any(Path(f.path).name == name for f in self.client.list_artifacts(run_id, parent or None))

    def has_synced(self, run_id: str, *, artifact_path: str, source_tag: str, source: str) -> bool:
        """Whether the run holds ``artifact_path`` copied from ``source`` (see ``sync_dir``)."""
        tags = self.client.get_run(run_id).data.tags
        return tags.get(source_tag) == source and self.has_artifact(run_id, artifact_path)

    def sync_dir(self, run_id: str, local_dir: str | Path, *, artifact_path: str, source_tag: str,
                 source: str) -> bool:
        """Upload ``local_dir`` (a copy of ``source``) unless the run's ``source_tag`` says ``source`` is
        there already; True when something was uploaded. Another source replaces the old one's files
        (a resumed sweep's best checkpoint may be another trial's than the interrupted sweep's)."""
        if self.has_synced(run_id, artifact_path=artifact_path, source_tag=source_tag, source=source):
            return False
        self.client.log_artifacts(run_id, str(local_dir), artifact_path)
        self.set_tags(run_id, {source_tag: source})
        return True

    def log_file_once(self, run_id: str, local_file: str | Path, *, artifact_dir: str | None = None) -> bool:
        name = Path(local_file).name
        if self.has_artifact(run_id, f"{artifact_dir}/{name}" if artifact_dir else name):
            return False
        self.client.log_artifact(run_id, str(local_file), artifact_dir)
        return True


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Ray's ``result.json`` (one JSON object per reported epoch); a line cut short by a killed
    driver is skipped, a missing file is no results."""
    path = Path(path)
    return parse_results(path.read_text()) if path.is_file() else []


def parse_results(text: str) -> list[dict[str, Any]]:
    """The records of a ``result.json``'s text (see ``read_results``)."""
    results = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            results.append(row)
    return results


def _timestamp_ms(result: Mapping[str, Any]) -> int:
    ts = result.get("timestamp")  # Ray's wall clock for the result, seconds
    return int(ts * 1000) if isinstance(ts, (int, float)) else int(time.time() * 1000)
