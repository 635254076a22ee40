"""A real tiny sweep (real Ray, real trainings, MLflow tracking into a sqlite store) read back
both ways: the Ray result folder and the MLflow runs give the same tidy frame; the report
CLI tags every child run with its diagnosis and logs the report to the parent, idempotently."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import load_mlflow, load_ray_results
from analysis import mlflow_io
from analysis.mlflow_io import REPORT_ARTIFACT_PATH
from analysis.report import main
from trainables import metrics as m

EXPERIMENT = "analysis-test"
SWEEP = "analysis-sweep"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cifar_dir):
    import ray
    from sweeps.config import SweepConfig
    from sweeps.tracking import TrackingConfig, for_sweep
    from sweeps.tuner import run_sweep

    root = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # Tiny on purpose: a 500-image subset and 3 epochs keep the whole sweep to Ray start-up plus seconds.
    cfg = SweepConfig(search="random", scheduler="fifo", smoke=True, num_samples=2, seed=0, data_dir=str(cifar_dir),
                      subset=500, max_epochs=3,
                      storage_path=str(root / "ray_results"), name=SWEEP, evaluate_best=False, verbose=0,
                      max_concurrent=2)
    ray.init(num_cpus=2, include_dashboard=False)
    # In root: a local sqlite store puts its artifacts in ./mlruns of the working directory.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        try:
            run_sweep(cfg, callbacks=[for_sweep(cfg, TrackingConfig(tracking_uri=uri, experiment=EXPERIMENT))])
        finally:
            ray.shutdown()
    return root / "ray_results" / SWEEP, uri


@pytest.mark.slow
def test_ray_folder_and_mlflow_give_the_same_frame(sweep):
    folder, uri = sweep
    from_ray = load_ray_results(folder)
    from_mlflow = load_mlflow(EXPERIMENT, tracking_uri=uri)
    assert from_ray[m.TRIAL_ID].nunique() == 2
    assert set(from_ray[m.END_STATE_TAG]) <= set(m.END_STATES)
    pd.testing.assert_frame_equal(from_ray, from_mlflow)


def _tags(uri: str) -> dict[str, dict[str, str]]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`{m.TAG_ROLE}` = '{m.ROLE_TRIAL}'")
    return {r.data.tags[m.TAG_TRIAL_ID]: r.data.tags for r in runs}


@pytest.mark.slow
def test_report_cli_tags_children_and_logs_report_idempotently(sweep, tmp_path, capsys):
    folder, uri = sweep
    from mlflow import MlflowClient

    for _ in range(2):  # a re-run must update, never duplicate
        assert main([EXPERIMENT, "--tracking-uri", uri, "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "2 trials" in out
    assert f"MLflow experiment '{EXPERIMENT}': its latest sweep, {SWEEP} (parent run " in out  # which one it read
    tags = _tags(uri)
    assert len(tags) == 2
    for trial_tags in tags.values():
        assert trial_tags[m.TAG_DIAGNOSIS] in m.VERDICTS
        assert trial_tags[m.TAG_DIAGNOSIS_EVIDENCE] and trial_tags[m.TAG_DIAGNOSIS_ADVICE]
        assert int(trial_tags[m.TAG_DIAGNOSIS_EPOCH]) >= 1
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    verdict = next(iter(tags.values()))[m.TAG_DIAGNOSIS]
    found = client.search_runs([exp.experiment_id], f"tags.{m.TAG_DIAGNOSIS} = '{verdict}'")
    assert found, "filtering on the diagnosis tag finds the tagged runs"
    parent = client.search_runs([exp.experiment_id], f"tags.`{m.TAG_ROLE}` = '{m.ROLE_PARENT}'")[0]
    names = sorted(Path(a.path).name for a in client.list_artifacts(parent.info.run_id, REPORT_ARTIFACT_PATH))
    assert "report.html" in names and "diagnoses.csv" in names
    assert len(names) == len(set(names))
    # The Ray folder path of the same sweep finds its parent by sweep name and writes the same tags.
    assert main([str(folder), "--tracking-uri", uri, "--out", str(tmp_path / "from_ray")]) == 0
    assert _tags(uri) == tags


@pytest.mark.slow
def test_a_report_on_a_folder_tags_its_own_sweep_not_a_newer_one_of_the_same_name(sweep, tmp_path, capsys,
                                                                                   monkeypatch):
    # Another sweep of the same name (another storage path), logged later into another experiment.
    folder, uri = sweep
    from mlflow import MlflowClient
    from sweeps.tracking import parent_tags
    from sweeps.tracking_runs import RunStore

    monkeypatch.chdir(tmp_path)  # the report artifacts of a local sqlite store go to ./mlruns
    store = RunStore.connect(uri, "other-team")
    other = store.create_parent(sweep_name=SWEEP, params={"search": "random"},
                                tags=parent_tags(sweep_name=SWEEP, folder="/elsewhere/" + SWEEP, search="random",
                                                 scheduler="fifo"))
    stranger = store.create_child(other, trial_id="f00d_00000", sweep_name=SWEEP, config={"lr": 0.1})
    assert main([str(folder), "--tracking-uri", uri, "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "MLflow: tagged 2 of 2 trial runs" in out and other not in out
    assert m.TAG_DIAGNOSIS not in MlflowClient(uri).get_run(stranger.run_id).data.tags
    assert not MlflowClient(uri).list_artifacts(other, REPORT_ARTIFACT_PATH)  # the report went to its own parent


def test_an_unknown_parent_run_id_is_a_value_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a local sqlite store roots its artifacts at ./mlruns
    client = mlflow_io.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ValueError, match=r"No MLflow run with id '0{32}' at 'sqlite:///.*'\. Pass the sweep's parent"):
        mlflow_io.resolve_parent(client, "0" * 32)
