"""Nothing is lost when a node, the driver or a trial process dies mid-sweep.

Each test runs a real sweep (real Ray, real training on the CIFAR subset, a real MLflow store),
kills something once the sweep is demonstrably mid-way (a trial has reported epoch >= 2 with a
checkpoint), and then checks Ray's own records (result.json: one JSON line per reported epoch
with the reporting process's pid) and MLflow's. A trial "resumed from its checkpoint" shows as a
pid change in result.json whose first epoch in the new process is > 1; "never restarted from
scratch" as epoch 1 reported exactly once. Each test prints a `KILL ...` line: RELIABILITY.md
records those from real runs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from sweeps.config import SweepConfig
from sweeps.tracking import for_sweep
from sweeps.tracking_config import TrackingConfig
from sweeps.tuner import execute, prepare
from trainables import metrics

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
# A 4-filter, one-block CNN: an epoch on a few hundred images takes well under a second, yet it
# checkpoints and resumes exactly as a big one does.
TINY_MODEL = "batch_size: 32\nnum_blocks: 1\nconvs_per_block: 1\nfilters: 4\nhead_layers: 0\naugment: false\n"
# Epochs of TINY_MODEL take a fraction of a second on an idle machine, faster than Ray removes a
# node: the node-loss test needs epochs of a second or more so its trial is still running when
# the node goes, on an idle CI machine as on a loaded one.
SLOW_MODEL = "batch_size: 32\nnum_blocks: 2\nconvs_per_block: 2\nfilters: 32\nhead_layers: 0\naugment: true\n"


def write_space(path: Path, lr_entry: str, *, model: str = TINY_MODEL) -> Path:
    path.write_text(f"lr: {lr_entry}\n{model}")
    return path


def epochs_by_trial(experiment: Path) -> dict[str, list[dict[str, Any]]]:
    """Each trial folder's result.json lines (the folder name ends with the trial id)."""
    found = {}
    for result_file in experiment.glob("*/result.json"):
        lines = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        found[result_file.parent.name] = lines
    return found


def processes(rows: list[dict[str, Any]]) -> list[tuple[int, list[int]]]:
    """(pid, epochs reported by that process) in order: one entry per process the trial ran in."""
    runs: list[tuple[int, list[int]]] = []
    for row in rows:
        if not runs or runs[-1][0] != row["pid"]:
            runs.append((row["pid"], []))
        runs[-1][1].append(int(row[metrics.EPOCH]))
    return runs


def assert_resumed_from_checkpoint(rows: list[dict[str, Any]], *, max_epochs: int) -> list[tuple[int, list[int]]]:
    runs = processes(rows)
    assert len(runs) >= 2, f"the trial never moved to a new process: {runs}"
    assert runs[1][1][0] > 1, f"restarted from epoch {runs[1][1][0]}, not from its checkpoint: {runs}"
    assert runs[-1][1] == list(range(runs[-1][1][0], max_epochs + 1)), runs
    epochs = [e for _, es in runs for e in es]
    # Not "every epoch once": when Tune restarts a trial its JSON logger re-reads result.json from
    # the storage copy, which can lag the driver's by the row reported just before the kill. MLflow,
    # fed from the driver's results, is the complete record; the tests check its steps.
    assert epochs.count(1) == 1, runs
    return runs


def trial_runs(tracking_uri: str) -> list[Any]:
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_TRIAL}'")


def parent_runs(tracking_uri: str) -> list[Any]:
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_PARENT}'")


def steps_logged(tracking_uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(tracking_uri).get_metric_history(run_id, metrics.VAL_ACC))


def wait_until(condition: Callable[[], Any], *, timeout_s: float, what: str, poll_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def mid_trial(experiment: Path, *, max_epochs: int, min_epoch: int = 2) -> tuple[str, dict[str, Any]] | None:
    """A running trial past `min_epoch` (so it has a checkpoint to resume from) and its last row."""
    for trial, rows in epochs_by_trial(experiment).items():
        if rows and min_epoch <= rows[-1][metrics.EPOCH] < max_epochs and not rows[-1].get(metrics.DIVERGED):
            return trial, rows[-1]
    return None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def ancestor_pids(pid: int) -> set[int]:
    """A process's ancestors from /proc: a trial's worker process descends from its node's raylet."""
    found = set()
    while pid > 1:
        # Field 4 of /proc/<pid>/stat is the parent pid; split after the ")" that ends the name.
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        found.add(pid)
    return found


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.cifar", "--search", "random", "--scheduler", "fifo", "--verbose", "0", *args]


def cli_env() -> dict[str, str]:
    # The drivers run in tmp_path (cwd=), where a local sqlite store puts its artifacts (./mlruns).
    return {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}


def test_node_loss_mid_sweep_loses_nothing(tmp_path: Path, cifar_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a local sqlite store puts its artifacts in ./mlruns of the working directory
    # Removing a node takes a moment; the epochs left after epoch 2 must outlast it, or the trial
    # would already be done when its node goes.
    max_epochs = 8
    # Head without CPUs, like cluster.yaml's: trials run only on the two 1-CPU worker nodes.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = SweepConfig(search="random", scheduler="fifo", space=str(write_space(tmp_path / "s.yaml", "{grid: [0.05, 0.1]}", model=SLOW_MODEL)),
                      num_samples=1, max_epochs=max_epochs, subset=1500, data_dir=str(cifar_dir),
                      storage_path=str(tmp_path / "results"), name="node-loss", max_failures=3,
                      reuse_actors=False, evaluate_best=False, verbose=0)
    experiment = tmp_path / "results" / "node-loss"
    killed: dict[str, Any] = {}

    def kill_the_node_of_a_mid_trial() -> None:
        found = wait_until(lambda: mid_trial(experiment, max_epochs=max_epochs), timeout_s=240,
                           what="a trial past epoch 2")
        trial, row = found
        ancestors = ancestor_pids(row["pid"])
        node = next(n for n in workers if n.all_processes["raylet"][0].process.pid in ancestors)
        killed.update(trial=trial, epoch=row[metrics.EPOCH], t=time.monotonic())
        cluster.remove_node(node, allow_graceful=False)

    try:
        prepared = prepare(cfg)
        killer = threading.Thread(target=kill_the_node_of_a_mid_trial, daemon=True)
        started = time.monotonic()
        killer.start()
        outcome = execute(prepared, callbacks=[for_sweep(prepared.cfg, tracking)])
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed, "the worker node was never killed"
    print(f"KILL node-loss: removed the worker node running {killed['trial']} after its epoch {killed['epoch']} "
          f"({killed['t'] - started:.1f}s into the sweep); sweep took {time.monotonic() - started:.1f}s")

    assert outcome.ok and len(outcome.grid) == 2
    assert all(r.error is None for r in outcome.grid)
    trials = epochs_by_trial(experiment)
    assert len(trials) == 2
    runs = assert_resumed_from_checkpoint(trials[killed["trial"]], max_epochs=max_epochs)
    print(f"  resumed {killed['trial']}: epochs by process {[es for _, es in runs]}")
    (survivor,) = [rows for t, rows in trials.items() if t != killed["trial"]]
    assert len(processes(survivor)) == 1 and [r[metrics.EPOCH] for r in survivor] == list(range(1, max_epochs + 1))
    runs_logged = trial_runs(tracking.tracking_uri)
    assert len(runs_logged) == 2 and len({r.data.tags[metrics.TAG_TRIAL_ID] for r in runs_logged}) == 2
    for run in runs_logged:
        assert run.info.status == "FINISHED" and run.data.tags[metrics.END_STATE_TAG] == metrics.COMPLETED
        assert set(steps_logged(tracking.tracking_uri, run.info.run_id)) == set(range(1, max_epochs + 1))


def test_driver_killed_and_resumed_redoes_and_loses_nothing(tmp_path: Path, cifar_dir: Path) -> None:
    max_epochs, num_trials = 3, 3
    storage, name = tmp_path / "results", "driver-loss"
    experiment = storage / name
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--storage-path", str(storage), "--name", name, "--data-dir", str(cifar_dir), "--mlflow-tracking-uri", uri]
    # One trial at a time, so at the kill one trial is finished and the next is mid-way.
    first = subprocess.Popen(cli("--space", str(write_space(tmp_path / "s.yaml", "{loguniform: [0.02, 0.2]}")),
                                 "--num-samples", str(num_trials), "--max-epochs", str(max_epochs),
                                 "--max-concurrent", "1", "--subset", "300", *common),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
                             cwd=tmp_path, start_new_session=True)
    started = time.monotonic()
    try:
        def one_done_one_running() -> dict[str, list[dict[str, Any]]] | None:
            trials = epochs_by_trial(experiment)
            done = [t for t, rows in trials.items() if rows and rows[-1][metrics.EPOCH] == max_epochs]
            return trials if done and mid_trial(experiment, max_epochs=max_epochs, min_epoch=1) else None

        before = wait_until(one_done_one_running, timeout_s=300, what="one finished trial and one mid-way")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        _kill_group(first.pid)  # Ray processes the killed driver started, should its reaper miss any
    t_kill = time.monotonic() - started
    finished = {t: (experiment / t / "result.json").read_bytes() for t, rows in before.items()
                if rows[-1][metrics.EPOCH] == max_epochs}
    interrupted = {t: rows[-1][metrics.EPOCH] for t, rows in before.items() if rows[-1][metrics.EPOCH] < max_epochs}
    print(f"KILL driver-loss: SIGKILL to the driver {t_kill:.1f}s into the sweep; finished {sorted(finished)}, "
          f"interrupted {interrupted}")
    # The MLflow runs of the killed driver are left open; the resume must close them.
    resumed = subprocess.run(cli("--resume", *common), capture_output=True, text=True, env=cli_env(), cwd=tmp_path,
                             timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    print(f"  resumed to completion in {time.monotonic() - started - t_kill:.1f}s")

    trials = epochs_by_trial(experiment)
    assert len(trials) == num_trials
    for trial, content in finished.items():
        assert (experiment / trial / "result.json").read_bytes() == content, f"finished trial {trial} was redone"
    for trial, rows in trials.items():
        epochs = [r[metrics.EPOCH] for r in rows]
        assert epochs.count(1) == 1 and max(epochs) == max_epochs, (trial, epochs)
    for trial, epoch in interrupted.items():
        # Resumed from a checkpoint: at the latest the one of its last recorded epoch, at the earliest
        # the one in the experiment state Tune last snapshotted; never from scratch.
        runs = processes(trials[trial])
        assert len(runs) == 2 and 1 < runs[1][1][0] <= epoch + 1, runs
        print(f"  resumed {trial}: epochs by process {[es for _, es in runs]}")
    runs_logged = trial_runs(uri)
    assert len(runs_logged) == num_trials
    assert {r.data.tags[metrics.TAG_TRIAL_ID] for r in runs_logged} == {rows[0][metrics.TRIAL_ID] for rows in trials.values()}
    assert {r.info.status for r in runs_logged} == {"FINISHED"}
    for run in runs_logged:
        assert set(steps_logged(uri, run.info.run_id)) == set(range(1, max_epochs + 1))
    parents = parent_runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


def test_killed_trial_process_retries_from_checkpoint_and_divergence_is_not_retried(tmp_path: Path,
                                                                                     cifar_dir: Path) -> None:
    max_epochs = 4
    storage, name = tmp_path / "results", "trial-faults"
    experiment = storage / name
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # lr 10 without batch norm explodes within the first epoch: the trainable flags it, no exception.
    space = write_space(tmp_path / "s.yaml", "{grid: [0.05, 10.0, 0.1]}\nbatch_norm: false", model=SLOW_MODEL)
    sweep = subprocess.Popen(cli("--space", str(space), "--num-samples", "1", "--max-epochs", str(max_epochs),
                                 "--subset", "600", "--max-failures", "2", "--no-reuse-actors",
                                 "--storage-path", str(storage), "--name", name, "--data-dir", str(cifar_dir),
                                 "--mlflow-tracking-uri", uri),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
                             cwd=tmp_path, start_new_session=True)
    started = time.monotonic()
    try:
        trial, row = wait_until(lambda: mid_trial(experiment, max_epochs=max_epochs), timeout_s=300,
                                what="a trial past epoch 2")
        # As the kernel's OOM killer would: SIGKILL to the trial's worker process, mid-epoch.
        os.kill(row["pid"], signal.SIGKILL)
        t_kill = time.monotonic() - started
        out, _ = sweep.communicate(timeout=400)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    print(f"KILL trial-fault: SIGKILL to pid {row['pid']} of {trial} after its epoch {row[metrics.EPOCH]} "
          f"({t_kill:.1f}s into the sweep); sweep took {time.monotonic() - started:.1f}s")
    assert sweep.returncode == 0, out[-4000:]

    trials = epochs_by_trial(experiment)
    assert len(trials) == 3
    runs = assert_resumed_from_checkpoint(trials[trial], max_epochs=max_epochs)
    print(f"  retried {trial}: epochs by process {[es for _, es in runs]}")
    diverged = [t for t, rows in trials.items() if rows[-1].get(metrics.DIVERGED)]
    assert len(diverged) == 1
    assert len(processes(trials[diverged[0]])) == 1, "a diverged trial was retried"
    others = [t for t in trials if t not in (trial, diverged[0])]
    for other in others:  # the others went on: one process, every epoch once
        assert len(processes(trials[other])) == 1
        assert [r[metrics.EPOCH] for r in trials[other]] == list(range(1, max_epochs + 1))
    logged = trial_runs(uri)
    states = {r.data.tags[metrics.TAG_TRIAL_ID]: r.data.tags[metrics.END_STATE_TAG] for r in logged}
    assert len(logged) == len(states) == 3
    killed_id = trials[trial][0][metrics.TRIAL_ID]
    (killed_run,) = [r for r in logged if r.data.tags[metrics.TAG_TRIAL_ID] == killed_id]
    assert set(steps_logged(uri, killed_run.info.run_id)) == set(range(1, max_epochs + 1))
    assert {r.info.status for r in logged} == {"FINISHED"}
    assert sorted(states.values()) == sorted([metrics.COMPLETED, metrics.COMPLETED, metrics.DIVERGED_STATE])
