"""``python -m sweeps.backfill <experiment folder>``: make MLflow match a sweep's Ray results.

For a sweep whose tracking server was down or slow (or whose driver died), this writes from
Ray's own records (each trial's ``result.json`` and ``params.json``, the trial statuses in the
newest ``experiment_state-*.json``) whatever MLflow lacks: the parent run, child runs, params,
epochs not yet logged, end states, final statuses and the summary artifacts. It finds the
existing runs by the sweep's folder and Ray's trial ids and skips logged steps, so running it
twice changes nothing and a partial run is completed, not duplicated. Run it after the sweep
has ended (a live sweep's driver logs its own runs).

Exit codes: 0 done, 2 bad input (not an experiment folder, unusable tracking URI).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


from analysis.errors import ERROR_FILE, folder_error
from analysis.frames import recorded_end_states
from analysis.ray_state import ERROR, STATE_GLOB, TERMINATED, ended, saved_trials
from analysis.redact import redact_uri
from sweeps.config import CONFIG_FILE, is_uri
from sweeps.storage import mirror_records
from sweeps.summary import BEST_CONFIG_JSON, SUMMARY_CSV
from sweeps.tracking_config import TrackingConfig, TrackingError, add_tracking_args, tracking_from_args
from sweeps.tracking_runs import (FINISHED, KILLED, RUNNING, TAG_SWEEP_FOLDER, RunStore, read_results, run_status,
                                  trial_max_epochs)
from trainables.metrics import END_STATE_TAG, ERRORED, TRIAL_ID

EXIT_OK, EXIT_BAD_INPUT = 0, 2


@dataclass(frozen=True)
class RayTrial:
    """One trial as Ray recorded it."""

    trial_id: str
    config: dict[str, Any]
    results: list[dict[str, Any]]
    status: str  # Ray's: TERMINATED, ERROR, or PENDING/RUNNING/PAUSED for an interrupted sweep
    summary_state: str | None = None  # the end state summary.csv gives it, if any
    error: str = ""  # why it failed, from Ray's error file (analysis.errors.error_line)

    @property
    def ended(self) -> bool:
        return ended(self.status, self.summary_state)


@dataclass
class BackfillReport:
    runs_created: int = 0
    epochs_logged: int = 0
    runs_finished: int = 0
    checkpoints_uploaded: int = 0  # the best checkpoint, when the parent lacked it or held another
    target: str = ""  # where it wrote: the experiment and the (redacted) tracking URI
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = f" ({self.target})" if self.target else ""
        if not (self.runs_created or self.epochs_logged or self.runs_finished or self.checkpoints_uploaded):
            lines = [f"MLflow{where} already matches the Ray results: nothing to backfill."]
        else:
            checkpoint = ", the best checkpoint uploaded" if self.checkpoints_uploaded else ""
            lines = [f"Backfilled into MLflow{where}: {self.runs_created} run(s) created, {self.epochs_logged} "
                     f"epoch record(s) logged, {self.runs_finished} run status(es) set{checkpoint}."]
        return "\n".join([*self.notes, *lines])


def trial_statuses(folder: Path) -> dict[str, tuple[str, str]]:
    """Trial folder name -> (trial id, Ray status), from the newest experiment state file."""
    return {t.folder: (t.trial_id, t.status) for t in saved_trials(str(folder))}


def read_trials(folder: Path) -> list[RayTrial]:
    """Every trial folder Ray wrote under ``folder`` (config, epochs and status)."""
    statuses = trial_statuses(folder)
    summary = recorded_end_states(folder)  # summary.csv's, as the report reads them
    trials = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        params = sub / "params.json"
        results = read_results(sub / "result.json")
        if not params.is_file() and not results:
            continue  # not a trial folder (e.g. driver artifacts)
        trial_id, status = statuses.get(sub.name, ("", ""))
        trial_id = trial_id or next((r[TRIAL_ID] for r in results if r.get(TRIAL_ID)), "")
        if not trial_id:
            continue  # neither the state file nor a result names it: nothing to attach it to
        if not status:  # no state file: judge by Ray's error file and the results
            status = ERROR if (sub / ERROR_FILE).exists() else TERMINATED if results else "PENDING"
        config = json.loads(params.read_text()) if params.is_file() else dict(results[-1].get("config", {}))
        trials.append(RayTrial(trial_id, config, [{k: v for k, v in r.items() if k != "config"} for r in results],
                               status, summary.get(trial_id), folder_error(sub) or ""))
    return trials


def _sweep_settings(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    return json.loads(path.read_text()).get("sweep", {}) if path.is_file() else {}


def _parent(store: RunStore, folder: str, name: str, settings: dict[str, Any], trial_ids: list[str],
            report: BackfillReport) -> str:
    from sweeps.tracking import parent_tags, safe_params

    parent = store.find_parent(sweep_name=name, folder=redact_uri(folder))
    if parent is None:  # logged from another folder: the results were copied or moved since
        parent = store.find_parent_of_trials(sweep_name=name, trial_ids=trial_ids)
        if parent is not None:
            report.notes.append(f"The sweep's runs were logged from {parent.data.tags.get(TAG_SWEEP_FOLDER)}; "
                                "they are brought up to date, not duplicated.")
    if parent is not None:
        return parent.info.run_id
    report.runs_created += 1
    tags = parent_tags(sweep_name=name, folder=folder, search=str(settings.get("search", "unknown")),
                       scheduler=str(settings.get("scheduler", "unknown")))
    return store.create_parent(sweep_name=name, params=safe_params(settings), tags=tags)


def sync_trial(store: RunStore, parent_id: str, trial: RayTrial, *, sweep_name: str, existing: Any,
               sweep_max_epochs: int | None, report: BackfillReport) -> None:
    """Bring one child run up to Ray's record of the trial."""
    from sweeps.summary import end_state

    if existing is None:
        state = store.create_child(parent_id, trial_id=trial.trial_id, sweep_name=sweep_name, config=trial.config)
        report.runs_created += 1
    else:
        state = store.child_state(existing)
        store.ensure_params(state, trial.config)
    report.epochs_logged += store.log_epochs(state, trial.results)
    if trial.ended:
        budget = trial_max_epochs(trial.config, sweep_max_epochs=sweep_max_epochs)
        ended = (end_state(trial.results[-1] if trial.results else None, max_epochs=budget or 0,
                           errored=trial.status == ERROR) if trial.status in (TERMINATED, ERROR)
                 else str(trial.summary_state))
        done = existing is not None and existing.data.tags.get(END_STATE_TAG) == ended
        if not done or state.status != run_status(ended):
            store.finish_child(state, state_name=ended, error=trial.error if ended == ERRORED else None)
            report.runs_finished += 1
    elif state.status == RUNNING:
        store.set_status(state.run_id, KILLED)  # interrupted; a --resume reopens it
        report.runs_finished += 1


def backfill(folder: str | Path, *, tracking: TrackingConfig) -> BackfillReport:
    """Make the MLflow store of ``tracking`` match the Ray results in ``folder`` (a local folder or
    remote storage such as ``s3://…``); idempotent."""
    text = str(folder).rstrip("/")
    if is_uri(text):  # read through a local copy of Ray's records (not the checkpoints)
        with tempfile.TemporaryDirectory(prefix="backfill-") as tmp:
            local = mirror_records(text, into=Path(tmp), top_level=(CONFIG_FILE, BEST_CONFIG_JSON, SUMMARY_CSV))
            return _backfill(local, ident=text, tracking=tracking)
    local = Path(os.path.abspath(text.removeprefix("file://")))
    return _backfill(local, ident=str(local), tracking=tracking)


def _backfill(folder: Path, *, ident: str, tracking: TrackingConfig) -> BackfillReport:
    """``backfill`` of Ray's records in the local ``folder``, for the sweep stored at ``ident``."""
    from sweeps.tracking import check_tracking, log_sweep_artifacts

    if not folder.is_dir() or not (any(folder.glob(STATE_GLOB)) or (folder / CONFIG_FILE).is_file()):
        raise ValueError(f"The value of `folder` is {ident!r}, but it must be a Ray experiment folder "
                         f"(with {STATE_GLOB} or {CONFIG_FILE}). Pass --storage-path/<name> of the sweep.")
    uri = check_tracking(tracking)
    store = RunStore.connect(uri, tracking.experiment)
    report = BackfillReport(target=f"experiment '{tracking.experiment}' at {redact_uri(uri)}")
    settings = _sweep_settings(folder)
    trials = read_trials(folder)
    name = ident.rsplit("/", 1)[-1]  # the sweep's name: its folder's (``backfill`` strips a trailing /)
    parent_id = _parent(store, ident, name, settings, [t.trial_id for t in trials], report)
    children = store.children(parent_id)
    max_epochs = settings.get("max_epochs")
    for trial in trials:
        sync_trial(store, parent_id, trial, sweep_name=name, existing=children.get(trial.trial_id),
                   sweep_max_epochs=max_epochs, report=report)
    finished = bool(trials) and all(t.ended for t in trials)
    parent_status = FINISHED if finished else KILLED
    if store.client.get_run(parent_id).info.status != parent_status:
        store.set_status(parent_id, parent_status)
        report.runs_finished += 1
    best = _best(folder)
    if log_sweep_artifacts(store, parent_id, folder=ident, best_trial_id=best.get(TRIAL_ID),
                           best_checkpoint=best.get("checkpoint"), uri=uri):
        report.checkpoints_uploaded += 1
    return report


def _best(folder: Path) -> dict[str, Any]:
    path = folder / BEST_CONFIG_JSON
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeps.backfill", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("folder", help="the sweep's experiment folder: <storage path>/<name>")
    add_tracking_args(parser)
    ns = parser.parse_args(argv)
    try:
        tracking = tracking_from_args(ns)
        if not tracking.enabled:
            raise ValueError("--no-mlflow makes backfill a no-op: there is nothing to write to. Drop the flag.")
        report = backfill(ns.folder, tracking=tracking)
    except (ValueError, TypeError, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
