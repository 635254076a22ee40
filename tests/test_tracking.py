"""Decisions of the MLflow tracking (pure functions, config rules), the start-up check and the
writer's behaviour with no server: real MLflow clients and stores, no Ray."""
from __future__ import annotations

import math
import pickle
import socket
import time

import pytest
from mlflow import MlflowClient

from analysis.redact import MASK, redact_text, redact_uri, secret_values
from sweeps.tracking import (MlflowTrackingCallback, check_tracking, for_sweep, log_comparison, safe_params,
                             where_text)
from sweeps.tracking_config import TrackingConfig, TrackingError, tracking_from_args
from sweeps.tracking_runs import RunStore, epoch_metrics, epoch_step, param_values, trial_max_epochs, trial_run_name
from sweeps.tracking_writer import TrackingWriter
from trainables import metrics


@pytest.mark.parametrize("uri, expected", [
    ("https://user:pa55word@mlflow.example.com:5000/path", f"https://{MASK}@mlflow.example.com:5000/path"),
    ("postgresql://admin:hunter22@db:5432/mlflow", f"postgresql://{MASK}@db:5432/mlflow"),
    ("http://host:5000/?token=abcd1234&x=1", f"http://host:5000/?token={MASK}&x=1"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("not a uri", "not a uri"),
])
def test_redact_uri(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected


def test_redact_text_masks_uris_and_env_secrets() -> None:
    env = {"MLFLOW_TRACKING_TOKEN": "tok-9f8e7d", "AWS_SECRET_ACCESS_KEY": "AKIAxyz123", "HOME": "/root", "X_KEY": "1"}
    assert set(secret_values(env)) == {"tok-9f8e7d", "AKIAxyz123"}  # "1" is too short to mask safely
    text = "failed: https://bob:pw1234@h/api token tok-9f8e7d and AKIAxyz123 at /root"
    out = redact_text(text, secrets=secret_values(env))
    assert "pw1234" not in out and "tok-9f8e7d" not in out and "AKIAxyz123" not in out
    assert "/root" in out and f"https://{MASK}@h/api" in out


def test_safe_params_never_carry_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cr3t-pw")
    params = safe_params({"storage_path": "s3://k:s3cr3t-pw@bucket/x", "note": "uses s3cr3t-pw", "n": 3})
    assert all("s3cr3t-pw" not in v for v in params.values())
    assert params["n"] == "3"


def test_where_text_points_to_the_ui_and_the_diagnosis() -> None:
    local = where_text("sqlite:///mlflow.db", experiment="cnn-sweeps", parent_run_id="abc123", folder="/r/sweep-1")
    assert "experiment 'cnn-sweeps', parent run abc123" in local
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in local
    assert "python -m analysis.report /r/sweep-1 --tracking-uri sqlite:///mlflow.db" in local
    server = where_text("http://10.0.0.5:5000", experiment="e", parent_run_id="p", folder="s3://b/sweep-1")
    assert "open http://10.0.0.5:5000 in a browser" in server and "mlflow ui" not in server
    secret = where_text("https://user:pa55word@mlflow.example.com", experiment="e", parent_run_id="p", folder="f")
    assert "pa55word" not in secret and MASK in secret
    assert '--tracking-uri "$MLFLOW_TRACKING_URI"' in secret  # a command that works without printing the secret
    database = where_text("postgresql://admin:hunter22@db:5432/mlflow", experiment="e", parent_run_id="p",
                          folder="f")
    assert "hunter22" not in database and 'mlflow ui --backend-store-uri "$MLFLOW_TRACKING_URI"' in database


def test_trial_run_name_is_readable() -> None:
    config = {"optimizer": "sgd", "lr": 0.01234, "batch_size": 128, "filters": 32}
    assert trial_run_name("a1b2c3d4_00003", config) == "trial 00003 · sgd lr=0.012 bs=128"
    assert trial_run_name("a1b2c3d4_00007", {}) == "trial 00007"


def test_epoch_step_and_metrics() -> None:
    result = {metrics.EPOCH: 3, metrics.TRAINING_ITERATION: 3, metrics.VAL_ACC: 0.5, metrics.TRAIN_LOSS: math.nan,
              metrics.DIVERGED: True, "timestamp": 1, "pid": 7, "hostname": "h", "config": {"lr": 0.1}}
    assert epoch_step(result) == 3
    assert epoch_step({metrics.TRAINING_ITERATION: 2}) == 2
    assert epoch_step({}) is None
    out = epoch_metrics(result)
    assert set(out) == {metrics.EPOCH, metrics.VAL_ACC, metrics.TRAIN_LOSS, metrics.DIVERGED}
    assert math.isnan(out[metrics.TRAIN_LOSS]) and out[metrics.DIVERGED] == 1.0  # a diverged epoch is data


def test_trial_max_epochs_caps_by_the_sweep() -> None:
    assert trial_max_epochs({"epochs": 5}, sweep_max_epochs=3) == 3
    assert trial_max_epochs({"epochs": 2}, sweep_max_epochs=3) == 2
    assert trial_max_epochs({}, sweep_max_epochs=4) == 4
    assert trial_max_epochs({}, sweep_max_epochs=None) is None


def test_param_values_are_bounded_strings() -> None:
    out = param_values({"a": 1.5, "b": [1, 2], "c": "x" * 7000, "d": None})
    assert out["a"] == "1.5" and out["b"] == "[1, 2]" and out["d"] == "None"
    assert len(out["c"]) == 6000  # MLflow's limit on a param value


@pytest.mark.parametrize("changes, match", [
    ({"tracking_uri": "  "}, "mlflow_tracking_uri"),
    ({"experiment": ""}, "mlflow_experiment"),
    ({"flush_timeout_s": 0}, "flush_timeout_s"),
    ({"max_backoff_s": math.nan}, "max_backoff_s"),
])
def test_tracking_config_rules(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrackingConfig(**changes)


def test_tracking_config_repr_hides_credentials() -> None:
    cfg = TrackingConfig(tracking_uri="https://u:topsecret@host")
    assert "topsecret" not in repr(cfg) and "topsecret" not in str(cfg)


def test_resolved_uri_order(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert TrackingConfig(tracking_uri="http://a:1").resolved_uri({"MLFLOW_TRACKING_URI": "http://b:2"}) == "http://a:1"
    assert TrackingConfig().resolved_uri({"MLFLOW_TRACKING_URI": "http://b:2"}) == "http://b:2"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # MLflow 3's default local store, in the working directory (what `mlflow ui` there reads).
    assert TrackingConfig().resolved_uri({}) == f"sqlite:///{tmp_path}/mlflow.db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_tracking_unreachable_names_redacted_uri_and_fix() -> None:
    uri = f"http://alice:hunter22@127.0.0.1:{_free_port()}"
    with pytest.raises(TrackingError) as info:
        check_tracking(TrackingConfig(tracking_uri=uri))
    message = str(info.value)
    assert "hunter22" not in message and f"http://{MASK}@127.0.0.1" in message
    assert "--no-mlflow" in message and "mlflow server" in message


@pytest.mark.parametrize("uri", ["http://", "htp:/nowhere", "sqlite:///{tmp}/a-file/mlflow.db"])
def test_check_tracking_malformed(uri: str, tmp_path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(TrackingError, match="MLflow tracking URI"):
        check_tracking(TrackingConfig(tracking_uri=uri.format(tmp=tmp_path)))


def test_check_tracking_a_server_address_without_scheme_suggests_http() -> None:
    with pytest.raises(TrackingError, match=r"'127.0.0.1:5000' has no scheme. Did you mean http://127.0.0.1:5000\?"):
        check_tracking(TrackingConfig(tracking_uri="127.0.0.1:5000"))


def test_check_tracking_local_store_creates_experiment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow 2 roots a sqlite store's artifacts at ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert check_tracking(TrackingConfig(tracking_uri=uri, experiment="e1")) == uri
    from mlflow import MlflowClient

    assert MlflowClient(uri).get_experiment_by_name("e1") is not None


def test_cli_flags_build_tracking_config() -> None:
    from sweeps.cifar import build_parser, parse_args

    ns = build_parser().parse_args(["--smoke", "--mlflow-tracking-uri", "http://h:1", "--mlflow-experiment", "x"])
    assert tracking_from_args(ns) == TrackingConfig(tracking_uri="http://h:1", experiment="x")
    assert not tracking_from_args(build_parser().parse_args(["--no-mlflow"])).enabled
    assert parse_args(["--smoke", "--no-mlflow"]).smoke  # the flags stay out of SweepConfig


def test_cli_exits_2_on_unreachable_tracking_server(capsys: pytest.CaptureFixture) -> None:
    from sweeps.cifar import main

    uri = f"http://bob:pw-secret-9@127.0.0.1:{_free_port()}"
    assert main(["--smoke", "--mlflow-tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "pw-secret-9" not in err and "127.0.0.1" in err and "--no-mlflow" in err


def test_callback_pickles_without_credentials_or_threads() -> None:
    from sweeps.config import SweepConfig

    cfg = SweepConfig(name="s", smoke=True)
    cb = for_sweep(cfg, TrackingConfig(tracking_uri="https://u:pickled-secret@h"))
    assert isinstance(cb, MlflowTrackingCallback)
    blob = pickle.dumps(cb)
    assert b"pickled-secret" not in blob
    restored = pickle.loads(blob)
    assert restored.sweep_name == "s" and restored.parent_run_id is None
    assert for_sweep(cfg, TrackingConfig(enabled=False)) is None
    with pytest.raises(ValueError, match="name"):
        for_sweep(SweepConfig(smoke=True), TrackingConfig())


def test_writer_never_blocks_the_sweep_when_the_server_is_down() -> None:
    """Nothing listens on the port: buffering stays in memory and fast, close() waits at most
    about its timeout, and what is left is counted for the one warning line."""
    uri = f"http://127.0.0.1:{_free_port()}"
    writer = TrackingWriter(RunStore(MlflowClient(uri), "0"), parent_id="p", sweep_name="s", uri_for_messages=uri,
                            max_backoff_s=0.5)
    writer.start()
    start = time.perf_counter()
    for epoch in range(1, 501):
        writer.trial_results("t_00000", {"lr": 0.1}, [{metrics.EPOCH: epoch, metrics.VAL_ACC: 0.5}])
    assert time.perf_counter() - start < 0.5  # 500 results buffered: no network on this path
    writer.trial_ended("t_00000", {"lr": 0.1}, state=metrics.COMPLETED)
    start = time.perf_counter()
    unlogged = writer.close(1.0)
    assert time.perf_counter() - start < 15  # bounded (a request in flight may finish first)
    assert (unlogged.epochs, unlogged.trials) == (500, 1)


def test_log_comparison_attaches_tables_and_plot(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a local sqlite store puts its artifacts in ./mlruns of the working directory
    out = tmp_path / "compare"
    out.mkdir()
    (out / "anytime.csv").write_text("strategy,seed,trial_epochs,trial_seconds,best_val_acc\nrandom,0,1,2.0,0.1\n")
    (out / "summary.csv").write_text("strategy,seed,best_val_acc\nrandom,0,0.1\n")
    (out / "anytime.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (out / "notes.txt").write_text("not an artifact")
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="cmp")
    run_id = log_comparison(out, tracking=tracking, name="compare-1", params={"strategies": ["random", "hyperopt"]})
    assert run_id is not None
    client = MlflowClient(tracking.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "compare-1"
    assert run.data.tags[metrics.TAG_ROLE] == "comparison"
    assert run.data.params["strategies"] == '["random", "hyperopt"]'
    assert {a.path for a in client.list_artifacts(run_id)} == {"anytime.csv", "summary.csv", "anytime.png"}
    assert log_comparison(out, tracking=TrackingConfig(enabled=False)) is None


def test_the_resume_hint_repeats_the_mlflow_store_without_its_secret(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The MLflow store is not saved with the sweep (a URI may hold credentials): a resume without
    # the flag would log to another store, so the hint repeats it, a secret one through the environment.
    from sweeps.cifar import resume_command
    from sweeps.config import SweepConfig

    cfg = SweepConfig(name="s1", storage_path="/tmp/rr")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    hint = resume_command(cfg, TrackingConfig(tracking_uri="http://bob:pw-secret-9@10.0.0.5:5000", experiment="team"))
    assert hint.startswith("python -m sweeps.cifar --resume --name s1 --storage-path /tmp/rr")
    assert '--mlflow-tracking-uri "$MLFLOW_TRACKING_URI" --mlflow-experiment team' in hint
    assert "export MLFLOW_TRACKING_URI=" in hint and "pw-secret-9" not in hint
    monkeypatch.chdir(tmp_path)  # the default store is the working directory's: named, so a resume elsewhere finds it
    assert resume_command(cfg, TrackingConfig()).endswith(f"--storage-path /tmp/rr --mlflow-tracking-uri "
                                                          f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.5:5000")  # the environment still holds it
    assert resume_command(cfg, TrackingConfig()).endswith("--storage-path /tmp/rr")
    assert resume_command(cfg, TrackingConfig(enabled=False)).endswith("--no-mlflow")
