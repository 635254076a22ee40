"""Bad input to `python -m sweeps.cifar` fails fast: exit code 2 within seconds, a message that
says what to fix, and no trial started (no trial folder under the storage path)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Seconds from process start to exit. Most of it is importing torch and Ray (about 5 s on an idle
# 2-core machine); the checks themselves take well under a second, the address probe at most 5 s.
FAIL_FAST_S = 45.0
EXIT_BAD_INPUT = 2
TINY = "lr: {choice: [0.05, 0.1]}\nnum_blocks: 1\nconvs_per_block: 1\nfilters: 4\nhead_layers: 0\n"


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sweeps.cifar", "--search", "random", "--scheduler", "fifo",
                           "--num-samples", "2", "--max-epochs", "2", "--subset", "200", "--verbose", "0",
                           "--storage-path", str(tmp_path / "results"), "--name", "bad",
                           "--mlflow-tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *args],
                          capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - started


def assert_fails_fast(proc: subprocess.CompletedProcess[str], elapsed: float, tmp_path: Path, *,
                      mentions: tuple[str, ...]) -> None:
    assert proc.returncode == EXIT_BAD_INPUT, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f}s"
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for word in mentions:
        assert word in message, f"{word!r} not in {message!r}"
    experiment = tmp_path / "results" / "bad"
    assert not experiment.exists() or not any(p.is_dir() for p in experiment.iterdir()), "a trial started"
    print(f"{elapsed:.1f}s: {message[:160]}")


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(TINY)
    return path


def test_missing_dataset(tmp_path: Path, space: Path) -> None:
    missing = tmp_path / "no-such-cifar"
    proc, elapsed = run_cli(tmp_path, "--space", str(space), "--data-dir", str(missing))
    assert_fails_fast(proc, elapsed, tmp_path, mentions=(str(missing),))


def test_corrupt_dataset(tmp_path: Path, space: Path, cifar_dir: Path) -> None:
    corrupt = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, corrupt)
    (corrupt / "data_batch_1").write_bytes(b"\x80\x04 this is not a pickle" * 10)
    proc, elapsed = run_cli(tmp_path, "--space", str(space), "--data-dir", str(corrupt))
    assert_fails_fast(proc, elapsed, tmp_path, mentions=("data_batch_1",))


def test_invalid_space(tmp_path: Path, cifar_dir: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: {loguniform: [0.1, 0.001]}\n")
    proc, elapsed = run_cli(tmp_path, "--space", str(bad), "--data-dir", str(cifar_dir))
    assert_fails_fast(proc, elapsed, tmp_path, mentions=("lr",))


def test_a_config_that_can_never_train_never_starts_a_trial(tmp_path: Path, cifar_dir: Path) -> None:
    # Seven 2x2 poolings shrink 32x32 below 1x1: every trial with it would fail the same way, and
    # Tune would retry each one --max-failures times (FailureConfig cannot mark an error permanent),
    # so the space is rejected before Ray starts.
    never = tmp_path / "never.yaml"
    never.write_text("lr: {choice: [0.05, 0.1]}\nnum_blocks: 7\nfilters: 4\n")
    proc, elapsed = run_cli(tmp_path, "--space", str(never), "--data-dir", str(cifar_dir))
    assert_fails_fast(proc, elapsed, tmp_path, mentions=("1×1",))


def test_unreachable_cluster_address(tmp_path: Path, space: Path, cifar_dir: Path) -> None:
    # 203.0.113.0/24 is TEST-NET-3 (RFC 5737): never routed, so the probe must time out, not hang.
    proc, elapsed = run_cli(tmp_path, "--space", str(space), "--data-dir", str(cifar_dir),
                            "--address", "203.0.113.1:6379")
    assert_fails_fast(proc, elapsed, tmp_path, mentions=("203.0.113.1:6379", "unreachable"))
