"""The trial process's module: it must stay free of the driver's heavy imports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sweeps import tuner

# What the driver needs and a trial does not: each costs a trial process start-up time.
DRIVER_ONLY = ("hyperopt", "scipy", "mlflow", "sweeps.tuner", "sweeps.strategies", "sweeps.summary",
               "sweeps.tracking")


def test_tune_gets_the_trainable_from_the_light_module():
    # Tune pickles the function by reference: the module named here is what each trial process imports.
    assert tuner.cifar_trial.__module__ == "sweeps.trial"


def test_importing_the_trial_module_leaves_the_driver_modules_out():
    code = "import json, sys, sweeps.trial; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert "trainables.cifar" in loaded and "ray.tune" in loaded
    assert not [m for m in DRIVER_ONLY if m in loaded]
