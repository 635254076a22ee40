"""MLflow in and out: load a sweep's tidy frame from its runs, write diagnoses back as tags.

A sweep is one parent run (tag ``TAG_ROLE = ROLE_PARENT``) with one child run per trial
(MLflow's ``mlflow.parentRunId`` tag, ``TAG_TRIAL_ID``, ``END_STATE_TAG``; params = the flat
trial config; metrics = the per-epoch metrics with step = epoch). Tags are written with
``set_tag`` semantics (a re-run overwrites) and the report goes to a fixed artifact path, so
re-running the analysis updates a sweep's runs and never duplicates anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import urlsplit

import pandas as pd

from analysis.frames import EPOCH_METRICS, tidy
from analysis.mlflow_store import configure_http_client, failure_reason, uri_problem
from analysis.redact import redact_uri
from trainables import metrics as m

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

REPORT_ARTIFACT_PATH = "analysis_report"  # fixed, so a re-run replaces the files it wrote
# MLflow rejects longer tag values (its limit is 8000 characters in 3.x; older servers 5000).
_MAX_TAG_CHARS = 5000
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_PARENT_FILTER = f"tags.`{m.TAG_ROLE}` = '{m.ROLE_PARENT}'"


class TrackingStoreError(ValueError):
    """The tracking URI is malformed or its store does not answer; the message names the fix."""


def check_store(tracking_uri: str, *, fix: str) -> None:
    """Prove the store at ``tracking_uri`` answers one cheap request (retries bounded as the sweeps
    bound them), before any work. Raises TrackingStoreError naming the redacted URI, the problem
    and ``fix``."""
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

    shown = redact_uri(tracking_uri)
    problem = uri_problem(tracking_uri)
    if problem:
        raise TrackingStoreError(f"MLflow tracking URI {shown!r} {problem} {fix}")
    configure_http_client()
    try:
        client_for(tracking_uri).search_experiments(max_results=1)
    except UnsupportedModelRegistryStoreURIException:
        parts = urlsplit(shown)
        typo = f" Did you mean http://{parts.netloc}{parts.path}?" if parts.netloc else ""
        raise TrackingStoreError(f"MLflow tracking URI {shown!r} has a scheme MLflow does not know "
                                 f"({parts.scheme!r}).{typo} {fix}") from None
    except Exception as exc:  # refused connection, timeout, auth, a bad database path
        raise TrackingStoreError(f"MLflow tracking URI {shown!r} is unreachable or invalid ({failure_reason(exc)}). "
                                 f"{fix}") from None


def client_for(tracking_uri: str | None) -> "MlflowClient":
    from mlflow import MlflowClient  # imported here: mlflow is slow to import and optional for frames

    configure_http_client()  # bounded retries; and no "View run ... at: <URI>" with its password
    return MlflowClient(tracking_uri=tracking_uri)


def _search_all(client: "MlflowClient", experiment_ids: list[str], filter_string: str,
                order_by: list[str] | None = None) -> list["Run"]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def resolve_parent(client: "MlflowClient", ref: str) -> "Run":
    """The parent run named by ``ref``: a run id, or an experiment name (its latest sweep)."""
    if _RUN_ID.match(ref):
        return _get_run(client, ref)
    experiment = client.get_experiment_by_name(ref)
    if experiment is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(f"{ref!r} is neither a run id nor an MLflow experiment name at "
                         f"{redact_uri(client.tracking_uri)!r} (experiments: {names}). Pass one of those or a "
                         "parent run id.")
    parents = _search_all(client, [experiment.experiment_id], _PARENT_FILTER, ["attributes.start_time DESC"])
    if not parents:
        raise ValueError(f"The experiment {ref!r} has no sweep parent run (tag {m.TAG_ROLE}={m.ROLE_PARENT}). "
                         "Run the sweep with MLflow tracking on, or pass a parent run id.")
    return parents[0]


def _get_run(client: "MlflowClient", run_id: str) -> "Run":
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    raise ValueError(f"No MLflow run with id {run_id!r} at {redact_uri(client.tracking_uri)!r}. Pass the sweep's "
                     f"parent run id (the run tagged {m.TAG_ROLE}={m.ROLE_PARENT}) or its experiment name.")


def parent_for_sweep(client: "MlflowClient", sweep_name: str, trial_ids: Iterable[str] = ()) -> "Run | None":
    """The parent run of this sweep (Ray experiment) name, in any experiment. With ``trial_ids``,
    the one whose child runs hold most of those trials, None if none holds any: two sweeps may
    share a name (another storage path, a copied folder), and tagging the other's runs would file
    these diagnoses under trials they are not about. Without, the latest."""
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = _search_all(client, ids, f"{_PARENT_FILTER} and tags.`{m.TAG_SWEEP_NAME}` = '{sweep_name}'",
                       ["attributes.start_time DESC"]) if ids else []
    wanted = set(trial_ids)
    if not wanted or not runs:
        return runs[0] if runs else None
    shared = [len(wanted & set(trial_run_ids(client, run))) for run in runs]
    best = max(range(len(runs)), key=lambda i: (shared[i], -i))  # ties: the latest
    return runs[best] if shared[best] else None


def child_runs(client: "MlflowClient", parent: "Run") -> list["Run"]:
    return _search_all(client, [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")


def trial_run_ids(client: "MlflowClient", parent: "Run") -> dict[str, str]:
    """Ray trial id -> MLflow run id of its child run."""
    return {run.data.tags[m.TAG_TRIAL_ID]: run.info.run_id for run in child_runs(client, parent)
            if m.TAG_TRIAL_ID in run.data.tags}


def parse_param(text: str) -> Any:
    """MLflow stores params as strings; give back the bool/int/float/None the config held."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _run_records(client: "MlflowClient", run: "Run") -> list[dict[str, Any]]:
    trial_id = run.data.tags.get(m.TAG_TRIAL_ID, run.info.run_name)
    by_step: dict[int, dict[str, Any]] = {}
    for key in sorted(set(run.data.metrics) & set(EPOCH_METRICS)):
        # Sorted by timestamp so a value re-logged for a step (a resumed trial) wins.
        for point in sorted(client.get_metric_history(run.info.run_id, key), key=lambda p: p.timestamp):
            by_step.setdefault(point.step, {})[key] = point.value
    config = {f"{m.CONFIG_PREFIX}{k}": parse_param(v) for k, v in run.data.params.items()}
    return [{m.TRIAL_ID: trial_id, m.EPOCH: step, **values, **config} for step, values in sorted(by_step.items())]


@dataclass(frozen=True)
class MlflowSweep:
    """A sweep read back from MLflow: its parent run, the tidy frame and its errored trials' errors."""

    parent: "Run"
    frame: pd.DataFrame
    errors: dict[str, str]  # trial id -> TAG_ERROR (a run logged before the sweep wrote it: a hint)
    not_ended: dict[str, str] = field(default_factory=dict)  # trial id -> INTERRUPTED / UNFINISHED


# A child run without an end state whose status says it had not ended: the sweep marks the runs an
# interrupt cut off KILLED, and those of a sweep still going (or whose driver died) stay RUNNING.
_NOT_ENDED_STATUS = {"KILLED": m.INTERRUPTED, "RUNNING": m.UNFINISHED, "SCHEDULED": m.UNFINISHED}


def not_ended_runs(children: list["Run"]) -> dict[str, str]:
    """Trial id -> INTERRUPTED or UNFINISHED for each child run that had not ended."""
    return {run.data.tags.get(m.TAG_TRIAL_ID, run.info.run_name): _NOT_ENDED_STATUS[run.info.status]
            for run in children if m.END_STATE_TAG not in run.data.tags and run.info.status in _NOT_ENDED_STATUS}


def read_sweep(ref: str, *, tracking_uri: str | None = None) -> MlflowSweep:
    """The sweep ``ref`` names (parent run id, or experiment name: its latest sweep), in one pass."""
    client = client_for(tracking_uri)
    parent = resolve_parent(client, ref)
    children = child_runs(client, parent)
    if not children:
        raise ValueError(f"The parent run {parent.info.run_id} has no child runs (tag mlflow.parentRunId); "
                         "nothing to analyse. Check that the sweep logged its trials.")
    records = [record for run in children for record in _run_records(client, run)]
    errors = {run.data.tags.get(m.TAG_TRIAL_ID, run.info.run_name):
              run.data.tags.get(m.TAG_ERROR) or "(no error text logged; see the trial folder's error.txt)"
              for run in children if run.data.tags.get(m.END_STATE_TAG) == m.ERRORED}
    not_ended = not_ended_runs(children)
    if not records and not_ended:
        raise ValueError(f"No trial of the parent run {parent.info.run_id} has logged an epoch yet: {len(not_ended)} "
                         f"of its {len(children)} trials had not ended (cut off by an interrupt, or still running)"
                         f"{f' and {len(errors)} errored' if errors else ''}. "
                         "Report on the sweep once a trial has run an epoch.")
    if not records and errors:
        raise ValueError(f"No trial of the parent run {parent.info.run_id} logged any epoch: {len(errors)} of its "
                         f"{len(children)} trials errored before their first, e.g. {next(iter(errors.values()))!r}. "
                         "Fix that and run the sweep again.")
    end_states = {run.data.tags.get(m.TAG_TRIAL_ID, run.info.run_name): run.data.tags[m.END_STATE_TAG]
                  for run in children if m.END_STATE_TAG in run.data.tags}
    return MlflowSweep(parent, tidy(records, end_states={**end_states, **not_ended}), errors, not_ended)


def load_mlflow(ref: str, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """The tidy frame of a sweep logged to MLflow (``ref``: parent run id or experiment name)."""
    return read_sweep(ref, tracking_uri=tracking_uri).frame


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TAG_CHARS else text[: _MAX_TAG_CHARS - 3] + "..."


def write_diagnosis_tags(client: "MlflowClient", diagnoses: pd.DataFrame, *,
                         run_ids: Mapping[str, str]) -> int:
    """Tag each trial's child run with its diagnosis; returns how many runs were tagged."""
    from mlflow.entities import RunTag

    from analysis.diagnosis import ADVICE, DIAGNOSIS_EPOCH, EVIDENCE, VERDICT

    tagged = 0
    for row in diagnoses.to_dict("records"):
        run_id = run_ids.get(str(row[m.TRIAL_ID]))
        if run_id is None:
            continue
        tags = {m.TAG_DIAGNOSIS: row[VERDICT], m.TAG_DIAGNOSIS_EPOCH: str(row[DIAGNOSIS_EPOCH]),
                m.TAG_DIAGNOSIS_EVIDENCE: row[EVIDENCE], m.TAG_DIAGNOSIS_ADVICE: row[ADVICE]}
        client.log_batch(run_id, tags=[RunTag(k, _clip(str(v))) for k, v in tags.items()])
        tagged += 1
    return tagged


def log_report(client: "MlflowClient", parent_run_id: str, report_dir: str | Path) -> None:
    """Log the report folder as the parent run's artifacts under REPORT_ARTIFACT_PATH."""
    client.log_artifacts(parent_run_id, str(report_dir), artifact_path=REPORT_ARTIFACT_PATH)
