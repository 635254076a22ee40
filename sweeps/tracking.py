"""MLflow tracking of sweeps: one parent run per sweep, one nested child run per trial.

Why not Ray's ``ray.air.integrations.mlflow.MLflowLoggerCallback``: it creates one flat run per
trial with no parent run, logs every result synchronously on the driver's scheduling loop (a
slow server stalls the sweep), keeps its trial->run map only in memory (so ``--resume`` or a
restored driver starts duplicate runs), has no retry, no end-state tag and no way to write
back what a server outage lost. Here the callback only buffers; ``TrackingWriter`` sends
batched requests from a background thread; child runs are found again by Ray's trial id and
already-logged steps are skipped, so resuming, retrying and ``python -m sweeps.backfill`` are
all idempotent.

Everything is logged from the driver, so trials on worker nodes never talk to MLflow. The
default store is ``sqlite:///mlflow.db`` in the working directory (MLflow 3's own default)
(``mlflow ui`` started in the same directory shows it, no server needed); a cluster shares a
tracking server through ``--mlflow-tracking-uri`` or ``MLFLOW_TRACKING_URI``.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from analysis.mlflow_store import HTTP_SCHEMES, configure_http_client, failure_reason, uri_problem
from analysis.ray_state import ERROR
from analysis.redact import redact_text, redact_uri, secret_values
from sweeps import storage
from sweeps.config import is_uri
from sweeps.tracking_config import (ENV_TRACKING_URI, LOCAL_STORE, TrackingConfig, TrackingError, export_note,
                                     usable_uri)
from sweeps.summary import BEST_CONFIG_JSON, SUMMARY_CSV, end_state
from sweeps.tracking_runs import (FINISHED, KILLED, RUNNING, ROLE_COMPARISON, TAG_BEST_CHECKPOINT, TAG_BEST_TRIAL,
                                  TAG_PACKAGE_VERSION, TAG_SWEEP_FOLDER, RunStore, param_values, trial_max_epochs)
from sweeps.tracking_writer import TrackingWriter, Unlogged
from sweeps.trial_ends import TrialEnds
from trainables.metrics import ROLE_PARENT, TAG_ROLE, TAG_SCHEDULER, TAG_SEARCH, TAG_SWEEP_NAME

if TYPE_CHECKING:
    from sweeps.config import SweepConfig
    from sweeps.summary import SweepSummary

logger = logging.getLogger(__name__)
T = TypeVar("T")

PACKAGE = "cnn-sweeps"
_CHECKPOINT_ARTIFACT = "best_checkpoint"


def check_tracking(config: TrackingConfig) -> str:
    """Resolve the tracking URI and prove it works (creating the experiment), before compute.

    Raises ``TrackingError`` naming the (redacted) URI, what failed and how to fix it.
    """
    uri = config.resolved_uri()
    shown = redact_uri(uri)
    fix = ("Fix: start the server (mlflow server --host 0.0.0.0 --port 5000) or correct --mlflow-tracking-uri / "
           f"${ENV_TRACKING_URI}; leave both unset to log to the local store {LOCAL_STORE}; or pass "
           "--no-mlflow to sweep without tracking.")
    problem = uri_problem(uri)
    if problem:
        raise TrackingError(f"MLflow tracking URI {shown!r} {problem} {fix}")
    configure_http_client()
    try:
        RunStore.connect(uri, config.experiment)
    except Exception as exc:  # unsupported scheme, refused connection, auth, bad database path
        raise TrackingError(f"MLflow tracking URI {shown!r} is unreachable or invalid ({failure_reason(exc)}). "
                            f"{fix}") from None
    return uri


def git_commit(directory: str | Path | None = None) -> str | None:
    """The checkout's commit (MLflow's ``mlflow.source.git.commit``), or None outside git."""
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def package_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def parent_tags(*, sweep_name: str, folder: str, search: str, scheduler: str) -> dict[str, str]:
    tags = {TAG_ROLE: ROLE_PARENT, TAG_SWEEP_NAME: sweep_name, TAG_SWEEP_FOLDER: redact_uri(folder),
            TAG_SEARCH: search, TAG_SCHEDULER: scheduler, TAG_PACKAGE_VERSION: package_version()}
    commit = git_commit()
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


def safe_params(settings: Mapping[str, Any]) -> dict[str, str]:
    """Sweep settings as params, with any URI or secret in them masked."""
    secrets = secret_values(os.environ)
    return {k: redact_text(v, secrets=secrets) for k, v in param_values(settings).items()}


def retry(fn: Callable[[], T], *, what: str, uri: str, attempts: int = 3, first_backoff_s: float = 1.0,
          fix: str = "") -> T | None:
    """Run ``fn`` with bounded retries; on final failure, one warning line and None. ``fix``: the
    command that catches up later (default: backfill in general terms)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts - 1:
                logger.warning("MLflow at %s: could not %s (%s). Run `%s` once it is reachable.", redact_uri(uri),
                               what, failure_reason(exc),
                               fix or "python -m sweeps.backfill <experiment folder>")
            else:
                time.sleep(first_backoff_s * 2 ** attempt)
    return None


class MlflowTrackingCallback(TrialEnds):
    """Logs a sweep to MLflow from the driver. Build it with ``for_sweep`` (None when disabled)."""

    def __init__(self, tracking: TrackingConfig, *, sweep_name: str, folder: str, settings: Mapping[str, Any],
                 search: str, scheduler: str, max_epochs: int | None = None, resume: bool = False):
        self.tracking = tracking
        self.sweep_name = sweep_name
        self.folder = folder
        self.settings = dict(settings)
        self.search = search
        self.scheduler = scheduler
        self.max_epochs = max_epochs
        self.resume = resume
        self.parent_run_id: str | None = None
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._uri: str | None = None
        self._store: RunStore | None = None
        self._writer: TrackingWriter | None = None
        self._ended = False
        self._outage = False  # the writer ended with records it could not log
        self._init_ends()
        self._previous_sigterm: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks into the experiment folder (tuner.pkl): never a live thread or
        # client, and never a URI with credentials in it (the resume passes the flag again).
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        uri = self.tracking.tracking_uri
        if uri and redact_uri(uri) != uri:
            state["tracking"] = dataclasses.replace(self.tracking, tracking_uri=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def get_state(self) -> dict[str, Any] | None:
        """Saved by Ray with the experiment state; restoring it means this is a resumed sweep."""
        return {"parent_run_id": self.parent_run_id}

    def set_state(self, state: dict[str, Any]) -> None:
        if "parent_run_id" not in state:  # another callback's, saved at this position by an older version
            return
        self.resume = True
        self.parent_run_id = state.get("parent_run_id")

    # --- start ------------------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        configure_http_client()
        self._uri = self.tracking.resolved_uri()
        self._store = store = RunStore.connect(self._uri, self.tracking.experiment)
        parent = self._find_parent(store) if self.resume else None
        known = {}
        if parent is None:
            tags = parent_tags(sweep_name=self.sweep_name, folder=self.folder, search=self.search,
                               scheduler=self.scheduler)
            self.parent_run_id = store.create_parent(sweep_name=self.sweep_name, params=safe_params(self.settings),
                                                     tags=tags)
        else:
            self.parent_run_id = parent.info.run_id
            if parent.info.status != RUNNING:
                store.set_status(self.parent_run_id, RUNNING)
            known = store.children(self.parent_run_id)
        self._writer = TrackingWriter(store, parent_id=self.parent_run_id, sweep_name=self.sweep_name,
                                      uri_for_messages=redact_uri(self._uri), known_runs=known,
                                      max_backoff_s=self.tracking.max_backoff_s)
        self._writer.start()
        atexit.register(self._at_exit)
        self._catch_sigterm()
        logger.info("MLflow: sweep %s logged to %s, experiment %r, parent run %s", self.sweep_name,
                    redact_uri(self._uri), self.tracking.experiment, self.parent_run_id)

    def _find_parent(self, store: RunStore) -> Any:
        if self.parent_run_id:
            try:
                run = store.client.get_run(self.parent_run_id)
                if run.info.experiment_id == store.experiment_id and run.info.lifecycle_stage == "active":
                    return run
            except Exception:  # not in this store (e.g. the resume logs elsewhere): look it up by tags
                pass
        return store.find_parent(sweep_name=self.sweep_name, folder=redact_uri(self.folder))

    def _catch_sigterm(self) -> None:
        # Ray Tune handles SIGINT itself (and then calls on_experiment_end); a SIGTERM would end
        # the driver with no cleanup at all, leaving runs RUNNING. Turn it into SystemExit so the
        # atexit hook marks them KILLED. Only the main thread may set handlers.
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            self._previous_sigterm = signal.SIG_DFL
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    # --- trials -------------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self._writer is not None:
            self._writer.trial_started(trial.trial_id, trial.config)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self._writer is not None:
            self._writer.trial_results(trial.trial_id, trial.config,
                                       [{k: v for k, v in result.items() if k != "config"}])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        super().on_trial_complete(iteration, trials, trial, **info)
        self._trial_ended(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        super().on_trial_error(iteration, trials, trial, **info)
        self._trial_ended(trial, errored=True)

    def _trial_ended(self, trial: Any, *, errored: bool) -> None:
        if self._writer is None:
            return
        budget = trial_max_epochs(trial.config, sweep_max_epochs=self.max_epochs)
        state = end_state(trial.last_result, max_epochs=budget or 0, errored=errored)
        self._writer.trial_ended(trial.trial_id, trial.config, state=state,
                                 error=storage.trial_error(trial) if errored else None)

    # --- end ------------------------------------------------------------------------------------------
    def on_experiment_end(self, trials: list, **info: Any) -> None:
        super().on_experiment_end(trials, **info)
        if self._writer is None or self._ended:
            return
        cut_off = self.cut_off_ids()  # after Ctrl+C; see sweeps/trial_ends.py for why not by status
        stopped = self.stopped_ids()  # ended by the experiment's stop condition (sweeps.compare's budget)
        for trial in trials:
            trial_id = trial.trial_id
            known = self._writer.handled(trial_id) or self._writer.knows(trial_id)
            if self.ended_before(trial_id) and not self._writer.handled(trial_id):
                self._reconcile(trial, errored=trial.status == ERROR)
            elif trial_id in cut_off and known:
                self._writer.trial_ended(trial_id, trial.config, state=None)  # KILLED; a resume continues it
            elif trial_id in stopped and known:
                self._trial_ended(trial, errored=False)  # its end state from its last result
        parent_id = self.parent_run_id
        self._writer.call("finish the parent run",
                          lambda store: store.set_status(parent_id, KILLED if cut_off else FINISHED))
        self._close()

    def _reconcile(self, trial: Any, *, errored: bool) -> None:
        """A trial that ended before this driver started (a resumed sweep): bring its run up to date
        from Ray's result file (all epochs, in case the old driver died before logging them)."""
        results = storage.trial_results(trial)
        if not results and trial.last_result:
            results = [dict(trial.last_result)]
        assert self._writer is not None
        self._writer.trial_results(trial.trial_id, trial.config, [{k: v for k, v in r.items() if k != "config"}
                                                                  for r in results])
        self._trial_ended(trial, errored=errored)

    def _close(self) -> None:
        assert self._writer is not None
        self._ended = True
        atexit.unregister(self._at_exit)
        unlogged = self._writer.close(self.tracking.flush_timeout_s)
        self._restore_sigterm()
        self._outage = bool(unlogged)
        if unlogged:
            self._warn_unlogged(unlogged)

    def _warn_unlogged(self, unlogged: Unlogged) -> None:
        calls = f", and could not {'; '.join(unlogged.calls)}" if unlogged.calls else ""
        logger.warning("MLflow at %s: %d epoch record(s) of %d trial(s) were not logged%s. Write them later with "
                       "`%s`.%s", redact_uri(self._uri or ""), unlogged.epochs, unlogged.trials, calls,
                       backfill_command(self.folder, uri=self._uri or "", experiment=self.tracking.experiment),
                       export_note(self._uri or ""))

    def _at_exit(self) -> None:
        # The driver exits without on_experiment_end (an exception in Tune, SystemExit from
        # SIGTERM): the open runs are marked KILLED so nothing stays RUNNING.
        if self._writer is None or self._ended:
            return
        for trial_id in self._writer.open_trials():
            self._writer.trial_ended(trial_id, {}, state=None)
        parent_id = self.parent_run_id
        self._writer.call("mark the parent run KILLED", lambda store: store.set_status(parent_id, KILLED))
        self._close()

    # --- after the sweep ---------------------------------------------------------------------------
    def where(self) -> str | None:
        """Where the sweep's runs are and how to review them (None if MLflow never started)."""
        if self._uri is None or self.parent_run_id is None:
            return None
        return where_text(self._uri, experiment=self.tracking.experiment, parent_run_id=self.parent_run_id,
                          folder=self.folder)

    def mark_interrupted(self) -> None:
        """A Ctrl-C after the trials ended, while the summary was being made: the parent run becomes
        KILLED rather than staying FINISHED without its summary; a --resume (nothing left to run)
        writes the summary and finishes it. While Tune still runs, _at_exit does this instead."""
        if self._store is None or self.parent_run_id is None or not self._ended:
            return
        try:
            self._store.set_status(self.parent_run_id, KILLED)
        except Exception as exc:  # noqa: BLE001 - the interrupt is what the user must hear about
            logger.warning("MLflow at %s: could not mark the parent run KILLED (%s).", redact_uri(self._uri or ""),
                           failure_reason(exc))

    def log_summary(self, summary: "SweepSummary") -> None:
        """Attach the sweep's summary table, best config and best checkpoint to the parent run,
        with the best trial's id as a tag. Bounded retries; a failure is one warning line. After an
        outage the writer could not get past, one attempt only: a hung server would otherwise hold
        the sweep's exit for every retry's timeouts."""
        if self._store is None or self.parent_run_id is None:
            return
        log_sweep_artifacts(self._store, self.parent_run_id, folder=summary.experiment_path,
                            best_trial_id=summary.best_trial_id, best_checkpoint=summary.best_checkpoint,
                            uri=self._uri or "", attempts=1 if self._outage else 3)


def where_text(uri: str, *, experiment: str, parent_run_id: str, folder: str) -> str:
    """The end-of-sweep pointer to MLflow: the UI to open and the diagnosis to run next.

    A URI with credentials is shown redacted, and the commands then read it from the environment
    instead, so nothing printed (and kept in terminal logs) carries a secret.
    """
    shown = redact_uri(uri)
    usable = usable_uri(uri)
    if urlsplit(uri).scheme in HTTP_SCHEMES:
        view = f"open {shown} in a browser"
    else:  # a local file or sqlite store, or a database: MLflow's UI serves it
        view = f"mlflow ui --backend-store-uri {usable}"
    # The report reads local folders; a sweep on remote storage (s3://…) it reads from MLflow instead.
    source = parent_run_id if is_uri(folder) else folder
    return (f"MLflow: experiment '{experiment}', parent run {parent_run_id} in {shown}; view: {view}\n"
            f"Diagnose every trial (tags the runs in MLflow): python -m analysis.report {source} --tracking-uri {usable}"
            + export_note(uri))


def backfill_command(folder: str, *, uri: str, experiment: str) -> str:
    """The command that writes what MLflow lacks of this sweep, into this very store and experiment."""
    return (f"python -m sweeps.backfill {shlex.quote(redact_uri(folder))} --mlflow-tracking-uri {usable_uri(uri)} "
            f"--mlflow-experiment {shlex.quote(experiment)}")


def log_sweep_artifacts(store: RunStore, parent_id: str, *, folder: str, best_trial_id: str | None,
                        best_checkpoint: str | None, uri: str, attempts: int = 3) -> bool:
    """Bring the parent's copy of the sweep's artifacts up to date (idempotent: backfill calls it too).

    The summary and best config are small and uploaded every time: after a --resume they replace
    the interrupted sweep's. The best checkpoint is uploaded when it is another than the one there.
    """
    uploaded: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="sweep-artifacts-") as tmp:
        try:  # on remote storage (s3://… on a cluster) through a local copy
            files = storage.fetch_files(folder, (SUMMARY_CSV, BEST_CONFIG_JSON), into=Path(tmp))
            # A checkpoint already there is not downloaded again (from a bucket it is the big part).
            checkpoint = (None if _has_checkpoint(store, parent_id, best_checkpoint)
                          else storage.fetch_dir(best_checkpoint, into=Path(tmp) / _CHECKPOINT_ARTIFACT))
        except OSError as exc:  # pyarrow's errors (no access, no such bucket) are OSErrors
            logger.warning("Could not read the sweep's summary and best checkpoint from %s (%s); the MLflow parent "
                           "run gets them once `%s` can.", redact_uri(folder), failure_reason(exc),
                           backfill_command(folder, uri=uri, experiment=store.experiment))
            files, checkpoint = [], None

        def upload() -> None:
            for path in files:
                store.client.log_artifact(parent_id, str(path))  # same path: replaces the older copy
            if checkpoint is not None and best_checkpoint:
                uploaded.append(store.sync_dir(parent_id, checkpoint, artifact_path=_CHECKPOINT_ARTIFACT,
                                               source_tag=TAG_BEST_CHECKPOINT, source=best_checkpoint))
            if best_trial_id:
                store.set_tags(parent_id, {TAG_BEST_TRIAL: best_trial_id})

        retry(upload, what="log the sweep's summary and best checkpoint", uri=uri, attempts=attempts,
              fix=backfill_command(folder, uri=uri, experiment=store.experiment))
    return any(uploaded)


def _has_checkpoint(store: RunStore, parent_id: str, best_checkpoint: str | None) -> bool:
    """Whether the parent holds this very checkpoint; False also when MLflow cannot say (the
    upload that follows then retries, and warns once if it fails)."""
    if not best_checkpoint:
        return False
    try:
        return store.has_synced(parent_id, artifact_path=_CHECKPOINT_ARTIFACT, source_tag=TAG_BEST_CHECKPOINT,
                                source=best_checkpoint)
    except Exception:
        return False


def for_sweep(config: "SweepConfig", tracking: TrackingConfig) -> MlflowTrackingCallback | None:
    """The callback for one sweep (None with --no-mlflow). ``config.name`` must be resolved."""
    if not tracking.enabled:
        return None
    if config.name is None:
        raise ValueError("The value of `name` is None, but the MLflow callback needs the sweep's experiment name. "
                         "Resolve it first: config.replace(name=sweeps.tuner.default_name(config)).")
    return MlflowTrackingCallback(tracking, sweep_name=str(config.name), folder=config.experiment_path,
                                  settings=config.to_dict(), search=config.search, scheduler=config.scheduler,
                                  max_epochs=config.max_epochs, resume=config.resume)


def log_comparison(folder: str | Path, *, tracking: TrackingConfig, run_id: str | None = None,
                   name: str | None = None, params: Mapping[str, Any] | None = None,
                   status: str = FINISHED) -> str | None:
    """Log a strategy comparison's tables and plots (``sweeps.compare``'s output folder).

    Into ``run_id`` when given, else into a new run tagged ``sweep.role=comparison`` named
    ``name`` (default: the folder's name). Returns the run id, or None (with one warning line)
    when MLflow could not be reached or tracking is disabled.
    """
    if not tracking.enabled:
        return None
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".csv", ".png", ".svg", ".json"))
    configure_http_client()
    uri = tracking.resolved_uri()

    created: list[str] = []  # a retry after a failed upload reuses the run made by the first try

    def upload() -> str:
        store = RunStore.connect(uri, tracking.experiment)
        rid = run_id or (created[0] if created else None)
        if rid is None:
            run = store.client.create_run(store.experiment_id, run_name=name or folder.name,
                                          tags={TAG_ROLE: ROLE_COMPARISON})
            rid = run.info.run_id
            created.append(rid)
        if run_id is None and params:
            store.log_params(rid, safe_params(params))  # same values again on a retry: a no-op
        for path in files:
            store.log_file_once(rid, path)
        if run_id is None:
            store.set_status(rid, status)
        return rid

    return retry(upload, what=f"log the comparison in {folder}", uri=uri)
