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
