"""``python -m sweeps.backfill``: MLflow made to match a real Ray Tune experiment folder, idempotently.

The folder comes from a real ``ray.tune.Tuner`` run of a tiny function trainable (seconds, no
CIFAR), one of whose trials errors; the store is a local sqlite file. The full sweep path
with a server outage is in test_tracking_e2e.py.
"""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient
from ray import tune

from sweeps.backfill import backfill, main, read_trials
from sweeps.tracking import parent_tags
from sweeps.tracking_config import DEFAULT_EXPERIMENT, TrackingConfig
from sweeps.tracking_runs import RunStore
from trainables import metrics

pytestmark = pytest.mark.slow  # starts a real Ray
EPOCHS = 3


def tiny_trainable(config: dict) -> None:
    for epoch in range(1, EPOCHS + 1):
        if epoch == config["fail_at"]:
            raise RuntimeError("this trial errors on purpose")
        tune.report({metrics.EPOCH: epoch, metrics.VAL_ACC: config["lr"] * epoch, metrics.TRAIN_LOSS: 1.0 / epoch,
                     metrics.DIVERGED: 0})


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """A finished Ray experiment: lr in {0.1, 0.2} complete, a third trial errors at epoch 2."""
    root = tmp_path_factory.mktemp("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tiny_trainable,
            param_space={"epochs": EPOCHS, "lr": tune.grid_search([0.1, 0.2, 0.3]),
                         "fail_at": tune.sample_from(lambda spec: 2 if spec.config.lr == 0.3 else 0)},
            run_config=tune.RunConfig(name="bf", storage_path=str(root), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        tuner.fit()
    finally:
        ray.shutdown()
    return root / "bf"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch) -> None:
    # A local sqlite store roots artifacts at ./mlruns of the working directory (MLflow 2 creates
    # the folder as soon as it opens the store): never the checkout's.
    monkeypatch.chdir(tmp_path)


def _children(client: MlflowClient) -> list:
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    return client.search_runs([experiment_id], f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_TRIAL}'")


def _snapshot(client: MlflowClient) -> dict:
    """Everything backfill writes, per child run: status, tags, params, val_acc history."""
    return {r.info.run_id: (r.info.status, r.data.tags.get(metrics.END_STATE_TAG), dict(r.data.params),
                            [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, metrics.VAL_ACC)])
            for r in _children(client)}


def test_reads_ray_trials(experiment: Path) -> None:
    trials = {t.config["lr"]: t for t in read_trials(experiment)}
    assert set(trials) == {0.1, 0.2, 0.3}
    assert trials[0.3].status == "ERROR" and len(trials[0.3].results) == 1
    assert trials[0.1].status == "TERMINATED" and [r[metrics.EPOCH] for r in trials[0.1].results] == [1, 2, 3]


def test_backfill_matches_ray_and_twice_changes_nothing(experiment: Path, tmp_path: Path) -> None:
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    report = backfill(experiment, tracking=tracking)
    assert report.runs_created == 4 and report.epochs_logged == 3 + 3 + 1  # parent + 3 children
    client = MlflowClient(tracking.tracking_uri)
    runs = _snapshot(client)
    by_lr = {params["lr"]: (status, state, history) for status, state, params, history in runs.values()}
    assert by_lr["0.1"] == ("FINISHED", metrics.COMPLETED, [(1, 0.1), (2, 0.2), (3, pytest.approx(0.3))])
    assert by_lr["0.3"][:2] == ("FAILED", metrics.ERRORED) and by_lr["0.3"][2] == [(1, 0.3)]
    errored = next(r for r in _children(client) if r.data.params["lr"] == "0.3")
    assert errored.data.tags[metrics.TAG_ERROR] == "RuntimeError: this trial errors on purpose"  # from error.txt
    parent_id = {r.data.tags["mlflow.parentRunId"] for r in _children(client)}
    assert len(parent_id) == 1
    assert client.get_run(parent_id.pop()).info.status == "FINISHED"

    again = backfill(experiment, tracking=tracking)
    assert (again.runs_created, again.epochs_logged, again.runs_finished) == (0, 0, 0)
    assert "nothing to backfill" in str(again)
    assert _snapshot(client) == runs


def test_backfill_completes_a_partial_run(experiment: Path, tmp_path: Path) -> None:
    """What a driver that died after epoch 1 leaves: the parent and one RUNNING child with one epoch."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store = RunStore.connect(uri, DEFAULT_EXPERIMENT)
    parent_id = store.create_parent(sweep_name=experiment.name, params={"search": "grid"},
                                    tags=parent_tags(sweep_name=experiment.name, folder=str(experiment),
                                                     search="grid", scheduler="fifo"))
    trial = next(t for t in read_trials(experiment) if t.config["lr"] == 0.2)
    state = store.create_child(parent_id, trial_id=trial.trial_id, sweep_name=experiment.name, config=trial.config)
    store.log_epochs(state, trial.results[:1])

    report = backfill(experiment, tracking=TrackingConfig(tracking_uri=uri))
    assert report.runs_created == 2 and report.epochs_logged == 2 + 3 + 1  # the partial run got epochs 2-3 only
    client = MlflowClient(uri)
    run = client.get_run(state.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[metrics.END_STATE_TAG] == metrics.COMPLETED
    assert [m.step for m in client.get_metric_history(state.run_id, metrics.VAL_ACC)] == [1, 2, 3]
    assert len(_children(client)) == 3


def test_cli_rejects_a_folder_that_is_no_experiment(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path), "--mlflow-tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
    assert "Ray experiment folder" in capsys.readouterr().err


def test_cli_reports_unreachable_server_with_exit_2(experiment: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main([str(experiment), "--mlflow-tracking-uri", f"http://u:pw-123456@127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "pw-123456" not in err and f"127.0.0.1:{port}" in err


def test_backfill_of_a_copied_folder_updates_the_sweeps_runs_instead_of_making_new_ones(experiment: Path,
                                                                                        tmp_path: Path) -> None:
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    backfill(experiment, tracking=tracking)
    copy = tmp_path / "copied" / experiment.name  # e.g. results copied off a cluster's bucket
    shutil.copytree(experiment, copy)
    report = backfill(copy, tracking=tracking)
    assert report.runs_created == 0 and f"The sweep's runs were logged from {experiment}" in str(report)
    assert f"experiment '{DEFAULT_EXPERIMENT}' at sqlite:///" in str(report)  # it says where it wrote
    client = MlflowClient(tracking.tracking_uri)
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    assert len(client.search_runs([experiment_id], f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_PARENT}'")) == 1
    assert len(_children(client)) == 3


def _paused_copy(experiment: Path, into: Path, *, summary_state: str) -> tuple[Path, str]:
    """The experiment as Tune saves a Hyperband sweep: one finished trial PAUSED in the newest state
    file (Hyperband stopped it as the sweep ended), with the driver's summary.csv beside it."""
    import json

    import pandas as pd

    folder = into / experiment.name
    shutil.copytree(experiment, folder)
    trial = next(t for t in read_trials(folder) if t.config["lr"] == 0.2)
    state_file = sorted(folder.glob("experiment_state-*.json"))[-1]
    state = json.loads(state_file.read_text())
    for entry in state["trial_data"]:
        data = json.loads(entry[0])
        if data["trial_id"] == trial.trial_id:
            data["status"] = "PAUSED"
            entry[0] = json.dumps(data)
    state_file.write_text(json.dumps(state))
    rows = [{metrics.TRIAL_ID: t.trial_id, metrics.END_STATE_TAG: summary_state if t.trial_id == trial.trial_id else
             metrics.ERRORED if t.status == "ERROR" else metrics.COMPLETED} for t in read_trials(folder)]
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    return folder, trial.trial_id


@pytest.mark.parametrize("summary_state, run_status, parent_status", [
    (metrics.COMPLETED, "FINISHED", "FINISHED"),  # the sweep finished: its summary gives the end state
    (metrics.INTERRUPTED, "KILLED", "KILLED"),  # a Ctrl-C left it paused: --resume continues it
])
def test_a_trial_saved_paused_takes_its_end_state_from_the_summary(experiment: Path, tmp_path: Path,
                                                                    summary_state, run_status, parent_status) -> None:
    folder, trial_id = _paused_copy(experiment, tmp_path, summary_state=summary_state)
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    backfill(folder, tracking=tracking)
    client = MlflowClient(tracking.tracking_uri)
    run = next(r for r in _children(client) if r.data.tags[metrics.TAG_TRIAL_ID] == trial_id)
    assert run.info.status == run_status
    assert run.data.tags.get(metrics.END_STATE_TAG) == (summary_state if run_status == "FINISHED" else None)
    assert client.get_run(run.data.tags["mlflow.parentRunId"]).info.status == parent_status
