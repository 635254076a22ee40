"""sweeps.tuner: the local Ray a sweep starts for itself, and what a --resume may change."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sweeps.config import SweepConfig
from sweeps.tuner import changed_on_resume

# A fresh interpreter, so connect() starts its own local Ray whatever other tests have running.
# It counts the Ray worker processes that exist before any work is submitted.
IDLE_WORKERS_PROBE = r"""
import json, os, sys, time
import ray
from sweeps.config import SweepConfig
from sweeps.tuner import connect
if sys.argv[1] == "ray-default":
    ray.init(address="local", num_cpus=2)
else:
    assert connect(SweepConfig())
time.sleep(4)  # Ray's prestarted workers appear within ~1 s of ray.init
def descendants(root):
    parent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent[int(pid)] = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass  # exited meanwhile
    found, todo = [], [root]
    while todo:
        current = todo.pop()
        kids = [pid for pid, ppid in parent.items() if ppid == current]
        found += kids
        todo += kids
    return found
def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    except OSError:
        return ""
WORKER = os.path.join(os.path.dirname(ray.__file__), "_private", "workers", "default_worker.py")
names = [cmdline(pid) for pid in descendants(os.getpid())]
# A worker renames itself ray::IDLE once started; one still starting runs default_worker.py (the
# raylet's own command line names that script too, so only the script position counts).
print(json.dumps(len([n for n in names if n.startswith("ray::IDLE") or n.split(" ")[1:2] == [WORKER]])))
ray.shutdown()
"""


def idle_workers(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", IDLE_WORKERS_PROBE, mode], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1], timeout=120).stdout
    return json.loads(out.splitlines()[-1])


def test_the_local_ray_prestarts_no_workers_tune_would_not_use():
    # Ray's default prestarts one idle worker per CPU (the control: the probe does see them);
    # Tune's trial actors cannot use them, so the sweep's own Ray starts none.
    assert idle_workers("ray-default") >= 1
    assert idle_workers("sweep") == 0


SAVED = SweepConfig(search="random", seed=3, max_concurrent=2, name="s", top_k=5).to_dict()


def test_a_resume_may_repeat_the_sweeps_own_flags():
    assert changed_on_resume(SAVED, {"search": "random", "seed": 3, "max_concurrent": 2}) == {}


def test_a_resume_refuses_flags_that_would_change_the_sweep():
    given = {"search": "hyperopt", "seed": 4, "max_epochs": SAVED["max_epochs"] + 1}
    assert changed_on_resume(SAVED, given) == {"search": ("hyperopt", "random"), "seed": (4, 3),
                                               "max_epochs": (SAVED["max_epochs"] + 1, SAVED["max_epochs"])}


def test_a_resume_takes_its_own_connection_data_and_output_flags():
    given = {"address": "auto", "data_dir": "/data", "verbose": 0, "top_k": 10, "storage_path": "s3://b/x",
             "evaluate_best": False, "download": False, "name": "s", "resume": True}
    assert changed_on_resume(SAVED, given) == {}


def test_max_concurrent_0_means_as_many_as_fit_and_matches_what_the_sweep_resolved():
    assert changed_on_resume(SAVED, {"max_concurrent": 0}) == {}
    assert changed_on_resume(SAVED, {"max_concurrent": 1}) == {"max_concurrent": (1, 2)}


def _sweep_folder(root: Path, *, state: bool, trial: bool, fingerprint: str | None = None) -> SweepConfig:
    """The files a sweep leaves at each point of its start: tuner.pkl (made with the Tuner; Tune's
    can_restore looks only for it), sweep_config.json, then Tune's state and trial folders."""
    cfg = SweepConfig(name="s", storage_path=str(root), num_samples=2)
    folder = root / "s"
    folder.mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(b"made before any trial")
    body = {"sweep": cfg.to_dict(), "sampled_keys": ["lr"], "expected_trials": 2}
    if fingerprint is not None:
        body["data_fingerprint"] = fingerprint
    (folder / "sweep_config.json").write_text(json.dumps(body))
    if state:
        (folder / "experiment_state-2026-11-23_10-00-00.json").write_text(json.dumps({"trial_data": []}))
    if trial:
        (folder / "cifar_trial_ab12c_00000").mkdir()
        (folder / "cifar_trial_ab12c_00000" / "params.json").write_text("{}")
    return cfg


def test_a_sweep_interrupted_before_tune_saved_state_can_be_started_again_not_resumed(tmp_path):
    import pytest

    from sweeps.config import SweepInputError
    from sweeps.tuner import _resumed_config, check_new_experiment

    # Found by review: a Ctrl-C just after the plan left tuner.pkl and sweep_config.json only; --resume then
    # ran one trial of an empty config and called every later resume interrupted, and a new start was refused.
    cfg = _sweep_folder(tmp_path, state=False, trial=False)
    check_new_experiment(cfg)  # nothing ran: a new start may replace the start files
    with pytest.raises(SweepInputError, match="interrupted before Tune saved any state.*without --resume"):
        _resumed_config(cfg.replace(resume=True), {})
    # Trials ran but Tune never saved its state: neither resumable nor to be overwritten.
    cfg = _sweep_folder(tmp_path / "b", state=False, trial=True)
    for call in (lambda: check_new_experiment(cfg), lambda: _resumed_config(cfg.replace(resume=True), {})):
        with pytest.raises(SweepInputError, match="holds trial folders but no saved Tune state.*another --name"):
            call()
    # With Tune's state, as before: a new start is refused, a resume reads the saved settings.
    cfg = _sweep_folder(tmp_path / "c", state=True, trial=True)
    with pytest.raises(SweepInputError, match="already holds a sweep"):
        check_new_experiment(cfg)
    assert _resumed_config(cfg.replace(resume=True), {})[2] == 2


def test_a_resume_on_other_images_is_refused_before_ray_starts(tmp_path):
    import numpy as np
    import pytest
    import ray

    from sweeps.config import SweepInputError
    from sweeps.tuner import prepare
    from trainables.data import CifarArrays, fingerprint

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(20) % 10
    classes = tuple(str(i) for i in range(10))
    data = CifarArrays(images, labels, images[:10], labels[:10], classes)
    other = CifarArrays(images, labels, images[10:], labels[10:], classes)  # another test split
    assert fingerprint(data) == fingerprint(CifarArrays(images.copy(), labels.copy(), images[:10], labels[:10],
                                                         classes))
    cfg = _sweep_folder(tmp_path, state=True, trial=True, fingerprint=fingerprint(data))
    with pytest.raises(SweepInputError, match=f"is not the data `s` started with \\(fingerprint "
                                              f"{fingerprint(data)[:12]}\\).*--data-dir"):
        prepare(cfg.replace(resume=True), data=other, given={})
    assert not ray.is_initialized()
