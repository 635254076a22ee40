"""Bad input to `python -m sweeps.cifar` fails fast: exit code 2 within seconds, a message that
says what to fix, and no trial started (no trial folder under the storage path).

The five bad runs start at once (a module fixture) because nearly all of each run's time is
importing torch and Ray, about 5 s of CPU; the checks themselves take well under a second and the
address probe at most 5 s. Each run's own start-to-exit time is asserted and printed.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

# Bounds per run. CPU time is what the run itself spent (imports ~5 s; no training can hide in
# 15 s); wall time, start to exit, is loose because all five share two cores, often busy ones
# (on an idle 2-core machine each exits in ~10-20 s; under 6 parallel test suites, up to ~130 s).
# RELIABILITY.md has the measured times.
FAIL_FAST_CPU_S = 15.0
FAIL_FAST_WALL_S = 150.0
EXIT_BAD_INPUT = 2
TINY = "lr: {choice: [0.05, 0.1]}\nnum_blocks: 1\nconvs_per_block: 1\nfilters: 4\nhead_layers: 0\n"


def _cases(root: Path, cifar_dir: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """name -> (extra CLI arguments, strings the error message must contain)."""
    space = root / "space.yaml"
    space.write_text(TINY)
    corrupt = root / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, corrupt)
    (corrupt / "data_batch_1").write_bytes(b"\x80\x04 this is not a pickle" * 10)
    inverted = root / "inverted.yaml"
    inverted.write_text("lr: {loguniform: [0.1, 0.001]}\n")
    # Seven 2x2 poolings shrink 32x32 below 1x1: every trial would fail the same way and Tune would
    # retry each --max-failures times (FailureConfig cannot mark an error permanent), so the space
    # is rejected before Ray starts.
    never = root / "never.yaml"
    never.write_text("lr: {choice: [0.05, 0.1]}\nnum_blocks: 7\nfilters: 4\n")
    missing = root / "no-such-cifar"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = ["--data-dir", str(cifar_dir)]
    return {
        # --no-download: with a network the default would fetch CIFAR-10 into the missing folder.
        "missing_dataset": (["--space", str(space), "--data-dir", str(missing), "--no-download"], (str(missing),)),
        "corrupt_dataset": (["--space", str(space), "--data-dir", str(corrupt)], ("data_batch_1", "corrupt")),
        "invalid_space": (["--space", str(inverted), *data], ("lr",)),
        "config_that_never_trains": (["--space", str(never), *data], ("1×1",)),
        # No cluster listens there (the port was free a moment ago): the CLI's socket probe must
        # say so at once instead of letting ray.init retry. A routed-nowhere address is not used on
        # purpose: sandboxes with a transparent proxy accept every TCP connection.
        "unreachable_address": (["--space", str(space), *data, "--address", f"127.0.0.1:{port}"],
                                (f"127.0.0.1:{port}", "unreachable")),
    }


CASES = ("missing_dataset", "corrupt_dataset", "invalid_space", "config_that_never_trains", "unreachable_address")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> Iterator[dict[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("bad-input")
    by_pid: dict[int, dict[str, Any]] = {}
    for name, (args, mentions) in _cases(root, cifar_dir).items():
        storage = root / name
        command = [sys.executable, "-m", "sweeps.cifar", "--search", "random", "--scheduler", "fifo",
                   "--num-samples", "2", "--max-epochs", "2", "--subset", "200", "--verbose", "0",
                   "--storage-path", str(storage), "--name", "bad", "--no-mlflow", *args]
        with open(root / f"{name}.out", "w") as out, open(root / f"{name}.err", "w") as err:
            proc = subprocess.Popen(command, stdout=out, stderr=err)
        by_pid[proc.pid] = dict(name=name, proc=proc, started=time.monotonic(), storage=storage, mentions=mentions)
    deadline = time.monotonic() + 300
    try:
        # os.wait4 in exit order: each run's own wall time, and its CPU time (immune to other load).
        while any("returncode" not in r for r in by_pid.values()) and time.monotonic() < deadline:
            pid, status, usage = os.wait4(-1, 0)
            if pid in by_pid:
                run = by_pid[pid]
                run.update(returncode=os.waitstatus_to_exitcode(status), wall_s=time.monotonic() - run["started"],
                           cpu_s=usage.ru_utime + usage.ru_stime)
                run["proc"].returncode = run["returncode"]
    finally:
        for run in by_pid.values():
            if run["proc"].poll() is None:
                run["proc"].kill()
    for run in by_pid.values():
        run["stdout"] = (root / f"{run['name']}.out").read_text()
        run["stderr"] = (root / f"{run['name']}.err").read_text()
    yield {run["name"]: run for run in by_pid.values()}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_fast_before_any_trial(runs: dict[str, dict[str, Any]], case: str) -> None:
    run = runs[case]
    err = run["stderr"]
    assert run["returncode"] == EXIT_BAD_INPUT, f"exit {run['returncode']}\n{run['stdout'][-2000:]}\n{err[-3000:]}"
    assert run["cpu_s"] < FAIL_FAST_CPU_S and run["wall_s"] < FAIL_FAST_WALL_S, (run["cpu_s"], run["wall_s"])
    message = err.strip().splitlines()[-1]
    assert message.startswith("error: ") and "Traceback" not in err, err[-3000:]
    for word in run["mentions"]:
        assert word in message, f"{word!r} not in {message!r}"
    experiment = run["storage"] / "bad"
    assert not experiment.exists() or not any(p.is_dir() for p in experiment.iterdir()), "a trial started"
    print(f"{case}: exit {run['returncode']} after {run['wall_s']:.1f}s wall, {run['cpu_s']:.1f}s CPU: {message[:200]}")
