"""--resume: a sweep interrupted mid-way (SIGINT to the CLI) finishes every trial, without
redoing the ones that had finished. Runs the real CLI in subprocesses (each starts its own Ray)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import diagnose, load_ray_results
from analysis.frames import not_ended_trials
from sweeps.summary import SUMMARY_CSV
from trainables import metrics

pytestmark = pytest.mark.slow
TRIALS, EPOCHS = 3, 2


def _epochs_by_trial(experiment: Path) -> dict[str, int]:
    """Distinct epochs reported per trial folder. An epoch can appear twice in result.json: one
    reported just before the interrupt, whose checkpoint Tune had not yet recorded, runs again."""
    return {p.parent.name: len({json.loads(line)[metrics.EPOCH] for line in p.read_text().splitlines() if line.strip()})
            for p in experiment.glob("*/result.json")}


def _lines_by_trial(experiment: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in experiment.glob("*/result.json")}


def _finished_trials(experiment: Path) -> set[str]:
    """Trial folders Tune's saved experiment state marks finished (TERMINATED)."""
    from ray.tune import ExperimentAnalysis

    done = {t.trial_id for t in ExperimentAnalysis(str(experiment)).trials if t.status == "TERMINATED"}
    return {p.parent.name for p in experiment.glob("*/result.json") if any(p.parent.name.endswith(t) for t in done)}


def _interrupt_when(cli: list[str], *, env: dict, cwd: Path, experiment: Path, ready) -> tuple[int, str]:
    """Run the CLI and send it SIGINT (what Ctrl-C does: Tune saves its state and stops) once
    ``ready`` holds for the epochs run per trial; its exit code and output."""
    proc = subprocess.Popen(cli, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not ready(list(_epochs_by_trial(experiment).values())):
        time.sleep(0.2)
    assert proc.poll() is None, f"the sweep ended before it could be interrupted:\n{proc.communicate()[0][-3000:]}"
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=180)[0]
    return proc.returncode, output


def test_resume_finishes_an_interrupted_sweep_without_redoing_finished_trials(cifar_dir, tmp_path):
    cli = [sys.executable, "-m", "sweeps.cifar", "--smoke", "--search", "random", "--scheduler", "fifo",
           "--num-samples", str(TRIALS), "--max-epochs", str(EPOCHS), "--max-concurrent", "1", "--subset", "500",
           "--data-dir", str(cifar_dir), "--storage-path", str(tmp_path), "--name", "interrupted", "--verbose", "0"]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    experiment = tmp_path / "interrupted"
    # cwd=tmp_path: the CLI's default MLflow store is ./mlflow.db, which must not be the checkout's.
    returncode, output = _interrupt_when(cli, env=env, cwd=tmp_path, experiment=experiment,
                                         ready=lambda done: sum(n == EPOCHS for n in done) >= 1)
    assert returncode == 130 and "--resume --name interrupted" in output, output[-3000:]
    assert "Sweep interrupted: " in output and "Sweep finished" not in output, output[-3000:]
    before = _lines_by_trial(experiment)
    finished = _finished_trials(experiment)
    assert finished and len(finished) < TRIALS, output[-3000:]
    # The report gives every trial the sweep listed a row (one cut off before its first epoch too),
    # with the summary's label: an interrupted one is not read as stopped early (FIFO stops none).
    listed = pd.read_csv(experiment / SUMMARY_CSV, dtype=str).set_index(metrics.TRIAL_ID)[metrics.END_STATE_TAG]
    diagnoses = diagnose(load_ray_results(experiment), not_ended=not_ended_trials(experiment))
    assert diagnoses.set_index(metrics.TRIAL_ID)[metrics.END_STATE_TAG].sort_index().to_dict() == \
        listed.sort_index().to_dict(), output[-3000:]

    resumed = subprocess.run([*cli, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # Before Ray starts, the plan says what the resume keeps and what is left.
    assert f"progress:  {len(finished)} of {TRIALS} trials had finished (kept as they are)" in resumed.stdout
    # The end of the report says where the runs are (the default store, ./mlflow.db here) and what to run next.
    assert "mlflow ui --backend-store-uri sqlite:///" in resumed.stdout, resumed.stdout[-3000:]
    assert f"python -m analysis.report {experiment}" in resumed.stdout, resumed.stdout[-3000:]
    after = _epochs_by_trial(experiment)
    assert len(after) == TRIALS and all(n == EPOCHS for n in after.values())
    assert all(_lines_by_trial(experiment)[t] == before[t] for t in finished)  # not a single epoch redone
    table = pd.read_csv(experiment / SUMMARY_CSV)
    assert len(table) == TRIALS and (table[metrics.END_STATE_TAG] == metrics.COMPLETED).all()
    assert json.loads((experiment / "sweep_config.json").read_text())["sweep"]["num_samples"] == TRIALS

    # The same command with --resume (above) resumes; one that would change the sweep is refused, before Ray starts.
    changed = subprocess.run([*cli, "--resume", "--num-samples", str(TRIALS + 1)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert changed.returncode == 2 and f"--num-samples {TRIALS + 1} (saved: --num-samples {TRIALS})" in changed.stderr, changed.stderr
    assert "Started a local Ray" not in changed.stdout + changed.stderr


def test_a_hyperband_sweep_interrupted_with_trials_paused_at_rungs_resumes_to_the_end(cifar_dir, tmp_path):
    """Tune restores no scheduler state: a resumed Hyperband used to deal its trials into new
    brackets behind their epochs and wait forever on trials it never unpaused (found by review:
    the resume hung with trials PAUSED at epoch 9). sweeps.scheduler_state carries the brackets."""
    trials, epochs = 6, 9
    cli = [sys.executable, "-m", "sweeps.cifar", "--smoke", "--search", "random", "--scheduler", "hyperband",
           "--num-samples", str(trials), "--max-epochs", str(epochs), "--subset", "2000", "--no-mlflow",
           "--data-dir", str(cifar_dir), "--storage-path", str(tmp_path), "--name", "hb", "--verbose", "0"]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    experiment = tmp_path / "hb"
    # Interrupted with one trial through its bracket's last rung while others wait, paused, at theirs.
    returncode, output = _interrupt_when(
        cli, env=env, cwd=tmp_path, experiment=experiment,
        ready=lambda done: max(done, default=0) >= epochs and sum(1 <= n < epochs for n in done) >= 2)
    assert returncode == 130, output[-3000:]

    resumed = subprocess.run([*cli, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"Sweep finished: {trials} trials, 0 errored." in resumed.stdout, resumed.stdout[-3000:]
    table = pd.read_csv(experiment / SUMMARY_CSV)
    assert set(table[metrics.END_STATE_TAG]) <= {metrics.COMPLETED, metrics.STOPPED_EARLY}
    assert (table[metrics.END_STATE_TAG] == metrics.STOPPED_EARLY).any()  # its brackets still halved


def test_ctrl_c_while_the_sweep_starts_says_so_without_a_traceback(cifar_dir, tmp_path):
    # Found by review: a Ctrl-C during the imports or Ray's start printed a KeyboardInterrupt traceback.
    cli = [sys.executable, "-m", "sweeps.cifar", "--smoke", "--no-mlflow", "--data-dir", str(cifar_dir),
           "--storage-path", str(tmp_path), "--name", "early"]
    proc = subprocess.Popen(cli, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # importing torch and Ray alone takes longer than this
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Interrupted before the sweep started: no trial ran." in err and "Traceback" not in err, err
