"""sweeps.tuner.connect: the local Ray a sweep starts for itself."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
