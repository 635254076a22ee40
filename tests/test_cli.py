"""``python -m trainables.cifar`` (trainables/cli.py): end to end in a subprocess, errors in process."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainables import metrics
from trainables.cli import build_parser, parse_value, resolve_config
from trainables.cifar import main, train_trial
from trainables.data import load_cifar10
from trainables.reporting import JsonLinesReporter, recover_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SETS = ["--set", "num_blocks=2", "--set", "convs_per_block=1", "--set", "filters=4", "--set", "head_layers=0",
             "--set", "batch_size=128", "--set", "val_fraction=0.05", "--set", "schedule=constant"]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainables.cifar", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _epochs(path: Path) -> list[int]:
    return [json.loads(line)[metrics.EPOCH] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_cli_trains_writes_metrics_and_resumes_after_a_kill(cifar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["-m", "trainables.cifar", *TINY_SETS, "--epochs", "3", "--data-dir", str(cifar_dir), "--output", str(out),
            "--device", "cpu", "--num-threads", "1"]
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics_file = out / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics_file.exists() and metrics_file.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # an interruption mid-trial, like a preempted node
    proc.wait()
    done_before = _epochs(metrics_file)
    assert 1 <= len(done_before) < 3

    resumed = _cli(*TINY_SETS, "--epochs", "3", "--data-dir", str(cifar_dir), "--output", str(out), "--device", "cpu",
                   "--num-threads", "1", "--resume", "--evaluate-test")
    assert resumed.returncode == 0, resumed.stderr
    lines = [line for line in resumed.stdout.splitlines() if line.startswith("epoch")]
    assert lines and not lines[0].startswith("epoch   1 ")  # continued, not restarted
    assert "completed after epoch 3" in resumed.stdout
    epochs = _epochs(metrics_file)
    assert epochs[-1] == 3 and epochs == sorted(set(epochs))  # each epoch once, in order
    test = json.loads((out / "test_metrics.json").read_text())
    assert 0.0 <= test[metrics.TEST_ACC] <= 1.0


def test_cli_csv_metrics_and_yaml_config(cifar_dir: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "trial.yaml"
    config.write_text("model:\n  num_blocks: 2\n  convs_per_block: 1\n  filters: 4\n  head_layers: 0\n"
                      "train:\n  batch_size: 128\n  lr: 1e-2\n  schedule: constant\n")
    code = main(["--config", str(config), "--set", "val_fraction=0.05", "--epochs", "1", "--metrics-format", "csv",
                 "--data-dir", str(cifar_dir), "--output", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r[metrics.EPOCH]) for r in rows] == [1]
    assert float(rows[0][metrics.LR]) == pytest.approx(0.01)
    assert json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())["lr"] == 0.01
    assert "completed after epoch 1" in capsys.readouterr().out
    # --resume keeps writing the run's own format, and says where the run is left
    same = ["--config", str(config), "--set", "val_fraction=0.05", "--epochs", "1", "--data-dir", str(cifar_dir),
            "--output", str(tmp_path / "run"), "--resume"]
    assert main(same) == 0
    assert "Nothing to train" in capsys.readouterr().out and not (tmp_path / "run" / "metrics.jsonl").exists()
    assert len(list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))) == 1
    assert "writes metrics.csv. Drop --metrics-format" in _error([*same, "--metrics-format", "jsonl"], capsys)
    # A crash mid-swap leaves the checkpoint aside: the first --resume finds it (its config included).
    (tmp_path / "run" / "checkpoint").rename(tmp_path / "run" / "checkpoint.old")
    assert main(["--output", str(tmp_path / "run"), "--resume", "--data-dir", str(cifar_dir)]) == 0


def _error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr=-1"], r"The value of `lr` is -1.0, but must be in (0.0, 10.0]"),
    (["--set", "lrr=0.1"], "Did you mean `lr`?"),
    (["--set", "lr"], "must look like key=value"),
    (["--set", "optimizer=lion"], "must be one of sgd, adam, adamw, rmsprop"),
    (["--set", "num_blocks=7", "--set", "pool_every=1"], "block 6 pool"),
    (["--epochs", "0"], "The value of `epochs` is 0"),
    (["--set", "seed=99999999999999999999999"], "`seed` is 99999999999999999999999, but must be `seed` in [0, 4294967295]"),
    (["--config", "no/such/file.yaml"], "no such file exists"),
    (["--resume"], "does not exist. Drop --resume"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--data-dir", "/no/such/cifar"], "--data-dir"),
])
def test_bad_input_exits_2_naming_value_rule_and_fix(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    err = _error([*argv, "--output", str(tmp_path / "run")], capsys)
    assert message in err
    assert not (tmp_path / "run").exists()  # nothing written: rejected before compute


@pytest.mark.parametrize("text, message", [
    ("lr: 1.0e-3\nepochs: 2\nlr: 0.5\n", "the key `lr` appears twice in one mapping (lines 1 and 3)"),
    ("lr: 0.5\ntrain: {lr: 0.01}\n", "sets `lr` twice (under the top level and under `train:`)"),
    ("model: {lr: 0.01}\n", "puts `lr` under `model:`, but it is a train key"),
])
def test_a_config_file_that_says_one_thing_twice_or_in_the_wrong_place_exits_2(text: str, message: str,
                                                                              tmp_path: Path, capsys) -> None:
    # Both parsers keep the later value silently: the run would train with a value the user overrode by mistake.
    (tmp_path / "c.yaml").write_text(text)
    assert message in _error(["--config", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "run")], capsys)
    assert not (tmp_path / "run").exists()


def test_an_output_that_is_a_file_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("x")
    assert "but it is a file, not a folder" in _error(["--output", str(tmp_path / "afile")], capsys)


def test_existing_run_needs_resume(cifar_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    assert "Pass --resume to continue it" in _error(["--output", str(tmp_path / "run")], capsys)


def test_bad_input_exit_code_in_a_subprocess(tmp_path: Path) -> None:
    done = _cli("--set", "momentum=1.5", "--output", str(tmp_path / "run"), timeout=120)
    assert done.returncode == 2
    assert "The value of `momentum` is 1.5" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("text, value", [("1e-3", 0.001), ("3", 3), ("true", True), ("True", True),
                                         ("sgd", "sgd"), ("0.5", 0.5), ("null", None)])
def test_set_values_parse_like_json_then_yaml(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_a_model_that_does_not_fit_the_data_exits_2_before_training(cifar_dir: Path, tmp_path: Path, capsys) -> None:
    err = _error(["--set", "image_size=28", "--set", "head_pooling=flatten", "--data-dir", str(cifar_dir),
                  "--output", str(tmp_path / "run")], capsys)
    assert "The value of `image_size` is 28, but the data has 32 (3×32×32 images, 10 classes). Set image_size=32" in err
    assert not (tmp_path / "run").exists()


DIVERGING = [*TINY_SETS, "--set", "batch_norm=false", "--set", "lr=10", "--epochs", "3", "--device", "cpu"]


def test_a_run_that_diverged_is_neither_resumed_nor_overwritten(cifar_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main([*DIVERGING, "--data-dir", str(cifar_dir), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "diverged after epoch 1" in printed and "checkpoint: none (the first epoch diverged)" in printed
    assert "diverged at epoch 1; there is nothing to resume" in _error(
        [*DIVERGING, "--data-dir", str(cifar_dir), "--output", str(out), "--resume"], capsys)
    assert "it holds a run that diverged at epoch 1. Choose another --output" in _error(
        [*DIVERGING, "--data-dir", str(cifar_dir), "--output", str(out)], capsys)


class _KilledAfter(JsonLinesReporter):
    """Dies like a killed process once ``n`` epochs are on disk."""

    def __init__(self, n: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.n = n

    def report(self, metrics_row, *, checkpoint_dir=None) -> None:
        super().report(metrics_row, checkpoint_dir=checkpoint_dir)
        if len(self.history) == self.n:
            raise KeyboardInterrupt


def test_resume_repairs_a_metrics_file_cut_between_checkpoint_and_row(cifar_dir: Path, tmp_path: Path,
                                                                      capsys) -> None:
    out, sets = tmp_path / "run", [*TINY_SETS, "--epochs", "3", "--data-dir", str(cifar_dir), "--device", "cpu"]
    cfg = resolve_config(build_parser().parse_args([*sets, "--output", str(out)]))
    with pytest.raises(KeyboardInterrupt):
        train_trial(cfg, data=load_cifar10(cifar_dir), reporter=_KilledAfter(2, out / "metrics.jsonl", out),
                    device="cpu")
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2
    # Killed after epoch 2's checkpoint was in place, while its row was being written: row 2 is cut short.
    (out / "metrics.jsonl").write_text(rows[0] + "\n" + rows[1][:25])
    assert main([*sets, "--output", str(out), "--resume"]) == 0
    assert "it now does" in capsys.readouterr().out
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert _epochs(out / "metrics.jsonl") == [1, 2, 3] and lines[1] == rows[1]  # restored from the checkpoint


def test_resume_from_a_damaged_checkpoint_exits_2(tmp_path: Path, capsys) -> None:
    from trainables.checkpoint import write_checkpoint
    from trainables.config import TrialConfig

    out = tmp_path / "run"
    write_checkpoint(out / "checkpoint", {"epoch": 1}, config=TrialConfig().to_dict())
    (out / "checkpoint" / "checkpoint.pt").write_bytes(b"garbage")
    (out / "metrics.jsonl").write_text("")
    assert "cannot be read" in _error(["--output", str(out), "--resume"], capsys)


def test_resume_recovers_the_checkpoint_moved_aside_mid_swap(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "checkpoint.pt").write_text("x")
    assert recover_checkpoint(tmp_path) and (tmp_path / "checkpoint" / "checkpoint.pt").is_file()
    assert not recover_checkpoint(tmp_path)  # a checkpoint in place is left alone


@pytest.mark.slow
def test_ctrl_c_says_where_the_run_stopped_and_how_to_continue(cifar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "trainables.cifar", *TINY_SETS, "--epochs", "50", "--data-dir",
                             str(cifar_dir), "--output", str(out), "--device", "cpu", "--num-threads", "1"],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert (f"Continue it with: python -m trainables.cifar --output {out} --data-dir {cifar_dir} --num-threads 1 "
            "--resume") in stderr


def test_resume_takes_the_device_from_the_checkpoint_also_when_moved_aside(cifar_dir: Path, tmp_path: Path,
                                                                         capsys) -> None:
    import torch

    out = tmp_path / "run"
    assert main([*TINY_SETS, "--epochs", "1", "--data-dir", str(cifar_dir), "--output", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    path = out / "checkpoint" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["rng"]["generator_device"] = "cuda"  # a run started on a GPU machine
    torch.save(state, path)
    (out / "checkpoint").rename(out / "checkpoint.old")  # and killed mid-swap
    argv = ["--output", str(out), "--resume", "--data-dir", str(cifar_dir)]
    if torch.cuda.is_available():
        assert "Pass --device cuda" in _error([*argv, "--device", "cpu"], capsys)
    else:
        assert ("started on cuda, and this machine has none; a run resumes on the kind of device it started on"
                in _error(argv, capsys))
