"""SweepConfig rules, flag parsing, and the CLI failing fast (exit 2) on bad input. No Ray starts."""
from __future__ import annotations

import socket
import time

import pytest
import ray

from sweeps.cifar import EXIT_BAD_INPUT, EXIT_OK, given_settings, main, parse_args
from sweeps.config import SMOKE_MAX_EPOCHS, SMOKE_NUM_SAMPLES, SMOKE_SUBSET, SweepConfig


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """The CLI creates its default MLflow store, ./mlflow.db, before it checks the data: not in the checkout."""
    monkeypatch.chdir(tmp_path)


def test_defaults_are_a_valid_hyperopt_asha_sweep():
    cfg = parse_args([])
    assert (cfg.search, cfg.scheduler, cfg.subset) == ("hyperopt", "asha", 0)
    assert cfg == SweepConfig()


def test_smoke_and_grid_defaults_and_explicit_flags_win():
    cfg = parse_args(["--smoke"])
    assert (cfg.num_samples, cfg.max_epochs, cfg.subset) == (SMOKE_NUM_SAMPLES, SMOKE_MAX_EPOCHS, SMOKE_SUBSET)
    assert parse_args(["--search", "grid"]).num_samples == 1
    cfg = parse_args(["--smoke", "--max-epochs", "3", "--subset", "0", "--no-reuse-actors", "--gpus-per-trial", "0.25"])
    assert (cfg.max_epochs, cfg.subset, cfg.reuse_actors, cfg.gpus_per_trial) == (3, 0, False, 0.25)
    assert parse_args(["--startup-trials", "5"]).startup_trials == 5 and parse_args([]).startup_trials == 0


@pytest.mark.parametrize("changes, match", [
    ({"search": "bayes"}, "`search`.*hyperopt, random, grid"),
    ({"num_samples": 0}, "`num_samples`.*>= 1"),
    ({"reduction_factor": 1}, "`reduction_factor`.*>= 2"),
    ({"startup_trials": -1}, "`startup_trials`.*>= 0"),
    ({"grace_period": 5, "max_epochs": 3}, "`grace_period`.*<= max_epochs"),
    ({"cpus_per_trial": 0}, "`cpus_per_trial`.*> 0"),
    ({"gpus_per_trial": float("nan")}, "`gpus_per_trial`.*finite"),
    ({"gpus_per_trial": 1.5}, "`gpus_per_trial` is 1.5, but must be at most 1"),
    ({"gpus_per_trial": 2.0}, "`gpus_per_trial` is 2.0, but must be at most 1.*a fraction"),
    ({"subset": 10}, "`subset`.*at least 100"),
    ({"space": "/nonexistent/space.yaml"}, "`space`.*existing"),
    ({"resume": True}, "`name` .*required with --resume"),
    ({"name": "a/b"}, "`name`.*plain folder name"),
    ({"seed": 2**32}, r"`seed` is 4294967296, but must be `seed <= 4294967295`"),
    ({"startup_trials": 10, "num_samples": 10}, "`startup_trials` is 10, but must be below --num-samples"),
    ({"startup_trials": 3, "search": "random"}, "`startup_trials`.*hyperopt only"),
    ({"storage_path": "s3:/bucket/sweeps"}, r"`storage_path`.*one slash.*Write s3://bucket/sweeps"),
    ({"storage_path": "s3://b/sweeps?endpoint_override=minio:9000&secret_key=hunter2"},
     r"`storage_path` is 's3://b/sweeps\?endpoint_override=minio%3A9000&secret_key=\*\*\*', but has query options "
     r"\(endpoint_override, secret_key\).*AWS_ENDPOINT_URL"),
    # A limit counts Hyperband's paused trials, so its brackets would never fill and it would stop none.
    ({"scheduler": "hyperband", "max_concurrent": 2}, "`max_concurrent` is 2.*must be 0 with --scheduler hyperband.*"
                                                      "Pass --max-concurrent 0"),
])
def test_sweep_config_rules(changes, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig(**changes)


def test_a_storage_path_that_cannot_be_a_folder_is_refused_before_ray(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="`storage_path`.*but it is a file, not a folder"):
        SweepConfig(storage_path=str(tmp_path / "afile"))
    with pytest.raises(ValueError, match="`storage_path`.*but it is under .*afile., which is a file"):
        SweepConfig(storage_path=str(tmp_path / "afile" / "results"))
    SweepConfig(storage_path=str(tmp_path / "not-yet" / "made"))  # made by the sweep
    SweepConfig(storage_path="file:///" + str(tmp_path).lstrip("/"))


def test_int_fields_reject_floats():
    with pytest.raises(TypeError, match="`max_epochs`.*int"):
        SweepConfig(max_epochs=2.5)


def test_storage_path_is_made_absolute_but_uris_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert SweepConfig(name="x").experiment_path == f"{tmp_path}/ray_results/x"
    assert SweepConfig(storage_path="s3://bucket/sweeps", name="x").experiment_path == "s3://bucket/sweeps/x"


def _timed_main(argv, capsys):
    start = time.monotonic()
    code = main(argv)
    return code, time.monotonic() - start, capsys.readouterr().err


def test_cli_rejects_bad_flags_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--scheduler", "median"])
    assert exc.value.code == EXIT_BAD_INPUT
    code, _, err = _timed_main(["--max-epochs", "2", "--grace-period", "4"], capsys)
    assert code == EXIT_BAD_INPUT and "grace_period" in err and "--grace-period" in err


def test_cli_rejects_invalid_space_before_ray(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("lr: {loguniform: [0, 0.1]}\n")
    code, seconds, err = _timed_main(["--space", str(space), "--storage-path", str(tmp_path)], capsys)
    assert code == EXIT_BAD_INPUT and "`lr`" in err and "low > 0" in err
    assert seconds < 10 and not (tmp_path / "ray_results").exists()


def test_cli_rejects_a_space_that_does_not_fit_the_data_before_ray(tmp_path, cifar_dir, capsys):
    # image_size describes the data: every trial of this space would fail its first step, three times.
    space = tmp_path / "space.yaml"
    space.write_text("lr: {loguniform: [1.0e-3, 0.1]}\nimage_size: 64\n")
    code, _, err = _timed_main(["--space", str(space), "--search", "random", "--data-dir", str(cifar_dir),
                                "--storage-path", str(tmp_path), "--no-mlflow"], capsys)
    assert code == EXIT_BAD_INPUT and "`image_size`" in err and "the data has 32" in err
    assert "Drop `image_size` from the space" in err
    assert not ray.is_initialized() and not (tmp_path / "ray_results").exists()


def test_cli_rejects_unreachable_address_fast(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, seconds, err = _timed_main(["--smoke", "--address", f"127.0.0.1:{port}",
                                      "--storage-path", str(tmp_path)], capsys)
    assert code == EXIT_BAD_INPUT and "unreachable" in err and seconds < 10


def test_cli_rejects_missing_dataset(tmp_path, capsys):
    code, _, err = _timed_main(["--smoke", "--data-dir", str(tmp_path / "nowhere"),
                                "--storage-path", str(tmp_path)], capsys)
    assert code == EXIT_BAD_INPUT and "nowhere" in err


def test_cli_rejects_corrupt_dataset(tmp_path, cifar_dir, capsys):
    broken = tmp_path / "cifar-10-batches-py"
    broken.mkdir()
    for f in cifar_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:100] if f.name == "data_batch_2" else f.read_bytes())
    code, _, err = _timed_main(["--smoke", "--data-dir", str(broken), "--storage-path", str(tmp_path)], capsys)
    assert code == EXIT_BAD_INPUT and "data_batch_2" in err


def test_resume_of_unknown_sweep_fails_fast(tmp_path, capsys):
    code, _, err = _timed_main(["--resume", "--name", "nope", "--storage-path", str(tmp_path)], capsys)
    assert code == EXIT_BAD_INPUT and "no restorable sweep" in err


def test_given_settings_are_the_flags_typed_even_at_their_default_values():
    # --seed 0 is the default, typed: a resume of a sweep seeded 3 must see it as a change.
    argv = ["--smoke", "--seed", "0", "--no-reuse-actors", "--name", "x", "--no-mlflow", "--cpus-per-trial", "2"]
    assert given_settings(argv) == {"smoke": True, "seed": 0, "reuse_actors": False, "name": "x",
                                    "cpus_per_trial": 2.0}
    assert given_settings([]) == {}


def test_print_space_exits_0_with_reasons(capsys):
    assert main(["--print-space"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "momentum" in out and "when optimizer in ['sgd']" in out and "Srivastava" in out
