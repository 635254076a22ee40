"""Sweeps on S3 storage, as on the README's cluster (--storage-path s3://…): a real sweep writes its
results to an S3 endpoint (moto's server, spoken to over the S3 protocol by pyarrow, Ray and
boto3 alike), MLflow's parent run gets the summary and best checkpoint from there, backfill
reads the sweep back from the bucket, and --resume reads Ray's saved state from it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

from analysis.ray_state import saved_trials
from sweeps.backfill import backfill
from sweeps.config import SweepConfig
from sweeps.storage import mirror_records
from sweeps.summary import BEST_CONFIG_JSON, SUMMARY_CSV
from sweeps.tracking import check_tracking, for_sweep
from sweeps.tracking_config import DEFAULT_EXPERIMENT, TrackingConfig
from sweeps.tracking_runs import TAG_BEST_CHECKPOINT
from sweeps.tuner import execute, prepare, subsample
from trainables import metrics
from trainables.data import load_cifar10

pytestmark = pytest.mark.slow
BUCKET = "cnn-sweeps-test"
STORAGE = f"s3://{BUCKET}/ray_results"
TRIALS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A local S3 endpoint with one bucket; the AWS_* variables point every client at it (Ray's
    workers too: they inherit the environment of the Ray started after this)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def ray_on_s3(s3):
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sweep(ray_on_s3, cifar_dir, tmp_path_factory):
    """A finished 2-trial sweep stored in the bucket, logged to a local MLflow store."""
    root = tmp_path_factory.mktemp("s3sweep")
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{root}/mlflow.db")
    data = subsample(load_cifar10(cifar_dir), size=200, seed=0)
    cfg = SweepConfig(smoke=True, search="random", scheduler="fifo", num_samples=TRIALS, max_epochs=1, subset=200,
                      verbose=0, storage_path=STORAGE, name="on-s3", max_concurrent=2)
    cwd = os.getcwd()
    os.chdir(root)  # a sqlite store keeps its artifacts in ./mlruns of where the experiment is created
    try:
        check_tracking(tracking)
        prepared = prepare(cfg, data=data)
        callback = for_sweep(prepared.cfg, tracking)
        outcome = execute(prepared, callbacks=[callback])
        callback.log_summary(outcome.summary)
        where = callback.where()
    finally:
        os.chdir(cwd)
    # The report reads local folders: for a sweep in a bucket, the printed command reads MLflow.
    assert f"python -m analysis.report {callback.parent_run_id} --tracking-uri sqlite:///" in where
    return outcome, tracking, data


def test_a_sweep_on_s3_logs_its_summary_and_best_checkpoint_to_mlflow(sweep):
    outcome, tracking, _ = sweep
    assert outcome.ok and outcome.summary.num_trials == TRIALS
    assert outcome.summary.experiment_path == f"{STORAGE}/on-s3"
    assert 0.0 <= outcome.summary.test[metrics.TEST_ACC] <= 1.0  # the best checkpoint, read back from S3
    assert {t.status for t in saved_trials(f"{STORAGE}/on-s3")} == {"TERMINATED"}
    client = MlflowClient(tracking.tracking_uri)
    (parent,) = client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id],
                                   f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_PARENT}'")
    assert {SUMMARY_CSV, BEST_CONFIG_JSON, "best_checkpoint"} <= {a.path for a in client.list_artifacts(
        parent.info.run_id)}
    assert "checkpoint.pt" in {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "best_checkpoint")}
    assert parent.data.tags[TAG_BEST_CHECKPOINT] == outcome.summary.best_checkpoint
    assert outcome.summary.best_checkpoint.startswith(f"{STORAGE}/on-s3/cifar_trial_")  # a URI any reader opens


def test_backfill_reads_the_sweep_from_s3(sweep, tmp_path):
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        report = backfill(f"{STORAGE}/on-s3", tracking=tracking)
        again = backfill(f"{STORAGE}/on-s3/", tracking=tracking)
    finally:
        os.chdir(cwd)
    assert report.runs_created == 1 + TRIALS and report.epochs_logged == TRIALS  # one epoch each
    assert report.checkpoints_uploaded == 1 and "the best checkpoint uploaded" in str(report)
    assert (again.runs_created, again.epochs_logged) == (0, 0) and "nothing to backfill" in str(again)
    client = MlflowClient(tracking.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id])
    assert len(runs) == 1 + TRIALS and {r.info.status for r in runs} == {"FINISHED"}
    parent = next(r for r in runs if r.data.tags.get(metrics.TAG_ROLE) == metrics.ROLE_PARENT)
    assert {SUMMARY_CSV, "best_checkpoint"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_mirror_copies_rays_records_and_no_checkpoint(sweep, tmp_path):
    local = mirror_records(f"{STORAGE}/on-s3", into=tmp_path, top_level=(SUMMARY_CSV,))
    assert (local / SUMMARY_CSV).is_file() and list(local.glob("experiment_state-*.json"))
    assert len(list(local.glob("*/result.json"))) == TRIALS and not list(local.glob("*/checkpoint_*"))
    with pytest.raises(ValueError, match="no such folder exists in that storage"):
        mirror_records(f"{STORAGE}/nope", into=tmp_path / "nope", top_level=())


def test_resume_reads_the_saved_state_from_s3(sweep):
    _, _, data = sweep
    resumed = prepare(SweepConfig(resume=True, name="on-s3", storage_path=STORAGE, verbose=0), data=data)
    assert f"all {TRIALS} trials had finished: nothing left to run" in resumed.plan
