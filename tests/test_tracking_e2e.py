"""Sweeps logged to MLflow end to end: real Ray, the real trainable on the shared subset, a real
``mlflow server`` (started and killed by a fixture) and MLflow's default local store.

The truth is Ray's own record (each trial's result.json and params.json, summary.csv); MLflow
must hold one parent per sweep, one child per trial, each epoch once, and no run left RUNNING.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import ray
from mlflow import MlflowClient
from ray import tune
from ray.tune import ExperimentAnalysis
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

from analysis import load_ray_results, mlflow_io
from sweeps.backfill import backfill
from sweeps.config import SweepConfig
from sweeps.summary import BEST_CONFIG_JSON, SUMMARY_CSV, format_summary, summarize
from sweeps.tracking import MlflowTrackingCallback, check_tracking, for_sweep
from sweeps.tracking_config import DEFAULT_EXPERIMENT, TrackingConfig
from sweeps.tracking_runs import TAG_BEST_CHECKPOINT, TAG_SWEEP_FOLDER
from sweeps.tuner import execute, prepare, run_sweep, subsample
from trainables import metrics
from trainables.data import load_cifar10

pytestmark = pytest.mark.slow
SUBSET = 200  # training images (train + val)
EPOCHS = 2
TRIALS = 2
COMPARED = (metrics.VAL_ACC, metrics.TRAIN_LOSS, metrics.LR)  # metric histories checked value by value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` on a free port over a sqlite file, restartable on the same store."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root}/db",
               "--artifacts-destination", str(self.root / "art")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # its own group: stop() takes its workers too
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server on port {self.port} did not become healthy in {timeout_s}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a crash, not a graceful shutdown
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def data(cifar_dir):
    return subsample(load_cifar10(cifar_dir), size=SUBSET, seed=0)


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _ray_trials(folder: Path) -> dict[str, dict]:
    """Ray's record per trial id: config (params.json) and epochs (result.json: every report of each
    epoch, in order; an epoch is reported twice when a resumed trial runs it again)."""
    trials = {}
    for result_file in folder.glob("*/result.json"):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        epochs: dict[int, list[dict]] = {}
        for row in rows:
            epochs.setdefault(int(row[metrics.EPOCH]), []).append(row)
        config = json.loads((result_file.parent / "params.json").read_text())
        trials[rows[0][metrics.TRIAL_ID]] = {"config": config, "epochs": epochs}
    return trials


def _parents(client: MlflowClient, experiment_id: str, folder: Path) -> list:
    return client.search_runs([experiment_id], f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_PARENT}' and "
                                               f"tags.`{TAG_SWEEP_FOLDER}` = '{folder}'")


def _logged_steps(client: MlflowClient) -> dict[str, set[int]]:
    """Per trial id, the epochs MLflow holds so far."""
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_TRIAL}'")
    return {r.data.tags[metrics.TAG_TRIAL_ID]: {m.step for m in client.get_metric_history(r.info.run_id, metrics.VAL_ACC)}
            for r in runs}


def assert_mlflow_matches_ray(client: MlflowClient, folder: Path, *, experiment: str = DEFAULT_EXPERIMENT,
                              rerun: dict[str, set[int]] | None = None) -> None:
    """``rerun``: per trial, epochs that ran twice (logged before a driver was killed, then run again
    from an older checkpoint); they must be logged once, but either run's value is true. Epochs Ray
    reported twice are told from result.json itself: MLflow is written from a queue, so a killed
    driver can leave an epoch in result.json that never reached MLflow, and MLflow then holds the
    rerun's value, not the first report's."""
    rerun = rerun or {}
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    parents = _parents(client, experiment_id, folder)
    assert len(parents) == 1, f"one parent run per sweep, found {len(parents)}"
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    settings = json.loads((folder / "sweep_config.json").read_text())["sweep"]
    assert tags[metrics.TAG_SWEEP_NAME] == folder.name
    assert tags[metrics.TAG_SEARCH] == settings["search"] and tags[metrics.TAG_SCHEDULER] == settings["scheduler"]
    assert len(tags[MLFLOW_GIT_COMMIT]) == 40
    assert parent.data.params["max_epochs"] == str(settings["max_epochs"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {SUMMARY_CSV, BEST_CONFIG_JSON, "best_checkpoint"} <= artifacts
    assert {"checkpoint.pt", "config.json"} <= {Path(a.path).name for a in
                                               client.list_artifacts(parent.info.run_id, "best_checkpoint")}

    children = client.search_runs([experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'")
    truth = _ray_trials(folder)
    by_trial = {}
    for child in children:
        trial_id = child.data.tags[metrics.TAG_TRIAL_ID]
        assert trial_id not in by_trial, f"two runs for trial {trial_id}"
        by_trial[trial_id] = child
    assert set(by_trial) == set(truth)
    end_states = pd.read_csv(folder / SUMMARY_CSV).set_index(metrics.TRIAL_ID)[metrics.END_STATE_TAG]
    for trial_id, child in by_trial.items():
        record = truth[trial_id]
        assert child.info.status in ("FINISHED", "FAILED"), f"{trial_id} left {child.info.status}"
        assert child.data.tags[metrics.TAG_ROLE] == metrics.ROLE_TRIAL
        assert child.data.tags[metrics.END_STATE_TAG] == end_states[trial_id]
        assert child.info.run_name.startswith(f"trial {trial_id.rsplit('_', 1)[1]}")
        assert child.data.params == {k: str(v) for k, v in record["config"].items()}
        for key in COMPARED:
            history = client.get_metric_history(child.info.run_id, key)
            steps = [m.step for m in history]
            assert len(steps) == len(set(steps)), f"{trial_id} {key}: duplicate steps {steps}"
            assert sorted(steps) == sorted(record["epochs"])
            for m in history:
                if m.step not in rerun.get(trial_id, set()):
                    reported = [row[key] for row in record["epochs"][m.step]]
                    assert any(m.value == pytest.approx(value, nan_ok=True) for value in reported), \
                        f"{trial_id} {key} epoch {m.step}: MLflow {m.value}, Ray reported {reported}"


def _sweep_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    # RAY_ADDRESS=local: a Ray of its own, even if some `ray start` cluster runs on this machine.
    return {**env, "RAY_ADDRESS": "local", "RAY_DEDUP_LOGS": "0",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _cli(tmp_path: Path, cifar_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.cifar", "--smoke", "--search", "random", "--scheduler", "fifo",
            "--num-samples", str(TRIALS), "--max-epochs", str(EPOCHS), "--subset", str(SUBSET),
            "--max-concurrent", str(TRIALS), "--verbose", "0", "--storage-path", "ray", "--name", "killed",
            "--data-dir", str(cifar_dir), *extra]


def _wait_for(predicate, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _logged_epochs(client: MlflowClient) -> int:
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    if experiment is None:
        return 0
    runs = client.search_runs([experiment.experiment_id], f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_TRIAL}'")
    return sum(1 for r in runs if metrics.VAL_ACC in r.data.metrics)


def _resume_like_the_cli(name: str, tmp_path: Path, data, tracking: TrackingConfig):
    """What ``--resume --name NAME`` does after parsing: the saved config, then its MLflow callback."""
    prepared = prepare(SweepConfig(name=name, storage_path=str(tmp_path / "ray"), resume=True, evaluate_best=False,
                                   verbose=0), data=data)
    callback = for_sweep(prepared.cfg, tracking)
    outcome = execute(prepared, callbacks=[callback])
    callback.log_summary(outcome.summary)
    return outcome, prepared.plan


def test_killed_driver_resumes_into_the_same_runs_in_the_default_local_store(ray_session, tmp_path, cifar_dir,
                                                                             monkeypatch):
    """SIGKILL the CLI driver mid-sweep, then resume: one run per trial, none RUNNING, no step twice.
    No tracking flag: MLflow's default store, ./mlflow.db in the working directory."""
    folder = tmp_path / "ray" / "killed"
    # Longer trials than the other tests' (later flags win): on an idle machine a 2-epoch sweep of
    # 200 images ends before its first epoch reaches MLflow, and there would be nothing to kill.
    longer = ("--max-epochs", "10", "--subset", "1000")
    driver = subprocess.Popen(_cli(tmp_path, cifar_dir, *longer), cwd=tmp_path, env=_sweep_env(),
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
        _wait_for(lambda: (tmp_path / "mlflow.db").exists() and list(folder.glob("experiment_state-*.json"))
                  and _logged_epochs(client) >= 1 and any(p.stat().st_size for p in folder.glob("*/result.json")),
                  timeout_s=240, what="a first epoch logged in MLflow and in Ray's folder")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        driver.wait(timeout=60)
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    assert _parents(client, experiment_id, folder)[0].info.status == "RUNNING"  # what a SIGKILL leaves
    # Its trials had not ended; the report must not read them as stopped early (or completed), from
    # MLflow (runs left RUNNING) or from Ray's folder (no summary; Tune's state still RUNNING/PENDING).
    killed = mlflow_io.read_sweep(DEFAULT_EXPERIMENT, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert set(killed.frame[metrics.END_STATE_TAG]) == {metrics.UNFINISHED}
    assert set(load_ray_results(folder)[metrics.END_STATE_TAG]) == {metrics.UNFINISHED}
    # A resumed trial restarts from the checkpoint in Tune's last state snapshot, which can be older
    # than what the killed driver had logged (or none: epoch 1 again); those epochs run twice.
    logged_before_kill = _logged_steps(client)

    # The resume runs in this process (what `--resume` does after parsing), into the same default store.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # data=None: read as the CLI reads it (the saved folder, --subset 1000), not the module's 200
    # images, which the resume now refuses as other data than the sweep started with.
    outcome, _ = _resume_like_the_cli("killed", tmp_path, None, TrackingConfig())
    assert outcome.ok
    assert_mlflow_matches_ray(client, folder, rerun=logged_before_kill)
    assert not client.search_runs([experiment_id], "attributes.status = 'RUNNING'")


class CtrlCAfterFirstTrial(tune.Callback):
    """Ctrl+C (SIGINT to this process, which Tune turns into an orderly stop) once a trial ends."""

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        os.kill(os.getpid(), signal.SIGINT)


def test_resume_with_tracking_logs_the_trials_that_finished_before_it(ray_session, data, tmp_path, monkeypatch):
    """A sweep interrupted while MLflow was off, resumed with it on: the trials that finished
    before the resume (Tune brings them back ended and runs no hook for them) get their runs from
    Ray's result files, all epochs and an end state; the parent ends FINISHED. Resumed again once
    finished, it stays finished (it was reported interrupted, exit 130, with the parent KILLED)."""
    trials = 3
    first = SweepConfig(smoke=True, search="random", scheduler="fifo", num_samples=trials, max_epochs=EPOCHS,
                        subset=SUBSET, verbose=0, max_concurrent=1, storage_path=str(tmp_path / "ray"),
                        name="late", evaluate_best=False)
    interrupted = run_sweep(first, data=data, callbacks=[CtrlCAfterFirstTrial()])
    assert interrupted.interrupted
    folder = Path(interrupted.summary.experiment_path)
    finished_before = {tid for tid, record in _ray_trials(folder).items() if len(record["epochs"]) == EPOCHS}
    assert finished_before, "the first trial ended before the interrupt"

    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps its artifacts in ./mlruns
    saved = {t.trial_id: t.status for t in ExperimentAnalysis(str(folder)).trials}  # Ray's own reader
    outcome, plan = _resume_like_the_cli("late", tmp_path, data, tracking)
    # The plan says what the resume keeps and what it runs, as Ray saved it.
    done = sum(status == "TERMINATED" for status in saved.values())
    assert f"progress:  {done} of {trials} trials had finished (kept as they are)" in plan, plan
    assert "nothing left to run" not in plan
    assert outcome.ok and not outcome.interrupted and outcome.summary.num_trials == trials
    client = MlflowClient(tracking.tracking_uri)
    assert_mlflow_matches_ray(client, folder)
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    assert not client.search_runs([experiment_id], "attributes.status != 'FINISHED'")

    # Resuming it once more: Tune runs no step when every trial has finished; that is no interrupt.
    again, plan = _resume_like_the_cli("late", tmp_path, data, tracking)
    assert f"progress:  all {trials} trials had finished: nothing left to run" in plan, plan
    assert again.ok and not again.interrupted and again.summary.num_trials == trials
    assert_mlflow_matches_ray(client, folder)
    assert not client.search_runs([experiment_id], "attributes.status != 'FINISHED'")


class StopServerAfterFirstLoggedEpoch(tune.Callback):
    """Stops the server once the first epoch is on it, from inside Tune's driver loop.

    A thread that polled the server and then stopped it raced the sweep: as soon as trials started
    faster, all four epochs of this tiny sweep were logged before the stop, leaving the backfill
    nothing to do. Blocking the loop on the first result (this callback runs after the MLflow one)
    holds every later result back until the server is down, so the outage always comes mid-sweep.
    """

    def __init__(self, server: "MlflowServer", client: MlflowClient):
        self.server, self.client, self.stopped = server, client, False

    def __getstate__(self) -> dict:
        return {"stopped": self.stopped}  # Ray pickles callbacks into tuner.pkl; a live server cannot go

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not self.stopped:
            _wait_for(lambda: _logged_epochs(self.client) >= 1, timeout_s=120, what="a first epoch on the server")
            self.server.stop()
            self.stopped = True


def test_server_killed_mid_sweep_then_backfill(ray_session, data, mlflow_server, tmp_path, caplog):
    """The server dies after the first logged epoch: the sweep still completes, the outage is one
    warning line, and once the server is back the backfill makes MLflow match Ray, idempotently."""
    cfg = SweepConfig(smoke=True, search="random", scheduler="fifo", num_samples=TRIALS, max_epochs=EPOCHS,
                      subset=SUBSET, verbose=0, max_concurrent=TRIALS, storage_path=str(tmp_path / "ray"),
                      name="outage", evaluate_best=False)
    tracking = TrackingConfig(tracking_uri=mlflow_server.uri, flush_timeout_s=3.0, max_backoff_s=1.0)
    callback = for_sweep(cfg, tracking)
    client = MlflowClient(mlflow_server.uri)
    killer = StopServerAfterFirstLoggedEpoch(mlflow_server, client)
    with caplog.at_level(logging.WARNING, logger="sweeps"):
        outcome = run_sweep(cfg, data=data, callbacks=[callback, killer])
        callback.log_summary(outcome.summary)
    assert killer.stopped and outcome.summary.num_trials == TRIALS and outcome.ok
    outage_lines = [r for r in caplog.records if "cannot log" in r.getMessage()]
    assert len(outage_lines) == 1, [r.getMessage() for r in caplog.records]
    # The printed fix names this store and experiment: run anywhere, it writes where the sweep logged.
    command = (f"python -m sweeps.backfill {outcome.summary.experiment_path} --mlflow-tracking-uri "
               f"{tracking.tracking_uri} --mlflow-experiment")
    assert any(command in r.getMessage() and "not logged" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]

    mlflow_server.start()
    folder = Path(outcome.summary.experiment_path)
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    assert _parents(client, experiment_id, folder)[0].info.status == "RUNNING"  # the end never arrived
    first = backfill(folder, tracking=tracking)
    assert first.epochs_logged + first.runs_created > 0
    assert_mlflow_matches_ray(client, folder)
    second = backfill(folder, tracking=tracking)
    assert (second.runs_created, second.epochs_logged, second.runs_finished) == (0, 0, 0)
    assert_mlflow_matches_ray(client, folder)


def slow_trainable(config: dict) -> None:
    for epoch in range(1, 60):
        time.sleep(0.5)
        tune.report({metrics.EPOCH: epoch, metrics.VAL_ACC: 0.1})


def test_a_resume_replaces_the_interrupted_sweeps_summary_and_best_checkpoint(ray_session, data, tmp_path,
                                                                                monkeypatch):
    """The parent's summary.csv and best checkpoint are the resumed sweep's, not those the
    interrupted run logged (which covered fewer trials, and maybe another best one)."""
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps its artifacts in ./mlruns
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    check_tracking(tracking)
    first = SweepConfig(smoke=True, search="random", scheduler="fifo", num_samples=3, max_epochs=EPOCHS,
                        subset=SUBSET, verbose=0, max_concurrent=1, storage_path=str(tmp_path / "ray"),
                        name="stale", evaluate_best=False)
    prepared = prepare(first, data=data)
    callback = for_sweep(prepared.cfg, tracking)
    interrupted = execute(prepared, callbacks=[callback, CtrlCAfterFirstTrial()])
    callback.log_summary(interrupted.summary)  # what the CLI does, interrupted or not
    assert interrupted.interrupted and interrupted.summary.num_trials < 3
    outcome, _ = _resume_like_the_cli("stale", tmp_path, data, tracking)
    assert outcome.ok and outcome.summary.num_trials == 3
    client = MlflowClient(tracking.tracking_uri)
    folder = Path(outcome.summary.experiment_path)
    (parent,) = _parents(client, client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id, folder)
    logged = pd.read_csv(client.download_artifacts(parent.info.run_id, SUMMARY_CSV, str(tmp_path)))
    pd.testing.assert_frame_equal(logged, pd.read_csv(folder / SUMMARY_CSV))
    assert parent.data.tags[TAG_BEST_CHECKPOINT] == outcome.summary.best_checkpoint


def test_credentials_in_the_tracking_uri_are_never_printed(ray_session, data, mlflow_server, tmp_path, capfd,
                                                           monkeypatch):
    # MLflow itself prints "View run ... at: <URI>" for each run it ends on an HTTP store.
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    tracking = TrackingConfig(tracking_uri=mlflow_server.uri.replace("http://", "http://alice:hunter2pw@"),
                              experiment="secrets")
    check_tracking(tracking)
    cfg = SweepConfig(smoke=True, search="random", scheduler="fifo", num_samples=1, max_epochs=1, subset=SUBSET,
                      verbose=0, storage_path=str(tmp_path / "ray"), name="secret", evaluate_best=False)
    prepared = prepare(cfg, data=data)
    callback = for_sweep(prepared.cfg, tracking)
    callback.log_summary(execute(prepared, callbacks=[callback]).summary)
    printed = capfd.readouterr()
    assert "hunter2pw" not in printed.out + printed.err
    runs = MlflowClient(mlflow_server.uri).search_runs(
        [MlflowClient(mlflow_server.uri).get_experiment_by_name("secrets").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}  # the parent and its one trial


def test_ctrl_c_marks_the_runs_killed(ray_session, tmp_path):
    """Ctrl+C (SIGINT, which Ray Tune turns into an orderly stop) leaves no run RUNNING: the
    parent and the unfinished trials are KILLED, without an end state (a resume continues them).
    A tiny trainable keeps this one cheap; the real sweep's resume is tested above."""
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    check_tracking(tracking)
    callback = MlflowTrackingCallback(tracking, sweep_name="ctrl-c", folder=str(tmp_path / "ctrl-c"),
                                      settings={"num_samples": 2}, search="random", scheduler="fifo", max_epochs=59)
    client = MlflowClient(tracking.tracking_uri)

    def interrupt() -> None:
        _wait_for(lambda: _logged_epochs(client) >= 1, timeout_s=120, what="a first epoch logged")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    tune.Tuner(slow_trainable, param_space={"i": tune.grid_search([0, 1])},
               run_config=tune.RunConfig(name="ctrl-c", storage_path=str(tmp_path), callbacks=[callback],
                                         verbose=0)).fit()
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    runs = client.search_runs([experiment_id])
    # The parent and the trials that started (a trial still pending when Ctrl+C came has no run yet).
    assert len(runs) in (2, 3) and {r.info.status for r in runs} == {"KILLED"}
    assert not any(metrics.END_STATE_TAG in r.data.tags for r in runs)
    # The report reads them as cut off by the interrupt, not as stopped early or completed.
    read = mlflow_io.read_sweep(DEFAULT_EXPERIMENT, tracking_uri=tracking.tracking_uri)
    assert read.not_ended == {r.data.tags[metrics.TAG_TRIAL_ID]: metrics.INTERRUPTED for r in runs
                              if metrics.TAG_TRIAL_ID in r.data.tags} and read.not_ended
    assert set(read.frame[metrics.END_STATE_TAG]) == {metrics.INTERRUPTED}


OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def flaky_trainable(config: dict) -> None:
    """``before``: fails before its first epoch until the marker file exists; ``after``: fails after
    its first epoch; ``none``: two clean epochs. The real trainable has no switch to fail on."""
    if config["fail"] == "before" and not Path(config["marker"]).exists():
        raise RuntimeError(OOM.split(": ", 1)[1])
    for epoch in (1, 2):
        tune.report({metrics.EPOCH: epoch, metrics.TRAIN_LOSS: 2.0 / epoch, metrics.TRAIN_ACC: 0.2 * epoch,
                     metrics.VAL_LOSS: 2.1 / epoch, metrics.VAL_ACC: 0.2 * epoch, metrics.LR: 0.1,
                     metrics.DIVERGED: 0})
        if config["fail"] == "after":
            raise ValueError("shapes (128, 10) and (64, 10) differ")


def test_why_a_trial_errored_reaches_mlflow_and_the_report_and_a_retry_clears_it(ray_session, tmp_path,
                                                                                 monkeypatch, capsys):
    """A reviewer filtering MLflow or reading the report learns why each failed trial failed,
    including one that failed before any epoch (it used to have no diagnosis at all); a resume
    that retries it to success leaves no stale error behind."""
    from analysis.report import main as report

    monkeypatch.chdir(tmp_path)  # the sqlite store's ./mlruns
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    check_tracking(tracking)
    marker = tmp_path / "fixed"
    callback = MlflowTrackingCallback(tracking, sweep_name="errs", folder=str(tmp_path / "errs"), settings={},
                                      search="grid", scheduler="fifo", max_epochs=2)
    grid = tune.Tuner(flaky_trainable, param_space={"fail": tune.grid_search(["before", "after", "none"]),
                                                    "marker": str(marker)},
                      run_config=tune.RunConfig(name="errs", storage_path=str(tmp_path), callbacks=[callback],
                                                verbose=0, failure_config=tune.FailureConfig(max_failures=0))).fit()
    # The sweep's own end-of-run text says why, too.
    text = format_summary(summarize(grid, max_epochs=2, keys=["fail"], experiment_path=str(tmp_path / "errs")),
                          top_k=3, storage_path=str(tmp_path))
    assert "Errors (2 trials" in text and "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB  [" in text
    client = MlflowClient(tracking.tracking_uri)
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id

    def children() -> dict[str, object]:
        runs = client.search_runs([experiment_id], f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_TRIAL}'")
        return {r.data.params["fail"]: r for r in runs}

    runs = children()
    assert runs["before"].info.status == "FAILED" and runs["before"].data.tags[metrics.END_STATE_TAG] == metrics.ERRORED
    assert runs["before"].data.tags[metrics.TAG_ERROR] == "RuntimeError: " + OOM.split(": ", 1)[1]
    assert runs["after"].data.tags[metrics.TAG_ERROR] == "ValueError: shapes (128, 10) and (64, 10) differ"
    assert metrics.TAG_ERROR not in runs["none"].data.tags

    # The report on the Ray folder: every trial diagnosed, the errors in the evidence, tags written.
    assert report([str(tmp_path / "errs"), "--tracking-uri", tracking.tracking_uri, "--out", "r1"]) == 0
    assert "2 trials errored (1 before their first epoch)" in capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "r1" / "diagnoses.csv")
    ids = {runs[k].data.tags[metrics.TAG_TRIAL_ID]: k for k in runs}
    by_fail = {ids[t]: row for t, row in zip(rows[metrics.TRIAL_ID], rows.to_dict("records"))}
    assert set(by_fail) == {"before", "after", "none"}
    before = by_fail["before"]
    assert (before["n_epochs"], before[metrics.END_STATE_TAG], before["diagnosis"]) == (0, metrics.ERRORED,
                                                                                        metrics.INCONCLUSIVE)
    assert "errored before its first epoch: RuntimeError: CUDA out of memory" in before["evidence"]
    assert "--resume" in before["advice"] and "more epochs" not in before["advice"]
    assert by_fail["after"]["evidence"].endswith("errored: ValueError: shapes (128, 10) and (64, 10) differ")
    assert "errored" not in by_fail["none"]["evidence"]
    tagged = children()["before"].data.tags
    assert tagged[metrics.TAG_DIAGNOSIS] == metrics.INCONCLUSIVE and "CUDA out of memory" in tagged[
        metrics.TAG_DIAGNOSIS_EVIDENCE]
    # Read from MLflow instead, the same trial is there with the same error.
    assert report([DEFAULT_EXPERIMENT, "--tracking-uri", tracking.tracking_uri, "--out", "r2", "--no-mlflow"]) == 0
    from_mlflow = pd.read_csv(tmp_path / "r2" / "diagnoses.csv").set_index(metrics.TRIAL_ID)
    assert from_mlflow.loc[runs["before"].data.tags[metrics.TAG_TRIAL_ID], "evidence"] == before["evidence"]

    # The cause fixed, a resume retries the errored trials: the OOM one completes and loses its error.
    marker.touch()
    tuner = tune.Tuner.restore(str(tmp_path / "errs"), trainable=flaky_trainable, resume_errored=True)
    tuner._local_tuner.get_run_config().callbacks = [MlflowTrackingCallback(
        tracking, sweep_name="errs", folder=str(tmp_path / "errs"), settings={}, search="grid", scheduler="fifo",
        max_epochs=2)]  # as sweeps.tuner.build_tuner does on --resume
    tuner.fit()
    runs = children()
    assert runs["before"].info.status == "FINISHED" and runs["before"].data.tags[metrics.END_STATE_TAG] == metrics.COMPLETED
    assert metrics.TAG_ERROR not in runs["before"].data.tags
    assert runs["after"].data.tags[metrics.TAG_ERROR].startswith("ValueError")  # failed again, same error
