"""What runs inside a trial's process: the Tune function trainable.

Tune sends the trainable to each trial process by reference, so that process imports the module
that defines it. Defined in ``sweeps.tuner``, it made every trial process import the driver's
modules too: Hyperopt with SciPy, and the search and summary code, about 1.3 s of a trial
process's start on a 2-core machine, spent before its first epoch (bench/orchestration_overhead.py).
This module imports only what a trial needs: the trainable and its Tune reporter.
"""
from __future__ import annotations

from typing import Any, Mapping

from sweeps.ray_reporter import RayReporter
from sweeps.space_convert import trial_dict
from trainables.cifar import train_trial
from trainables.data import CifarArrays


def cifar_trial(config: Mapping[str, Any], *, data: CifarArrays, num_threads: int, device: str) -> None:
    """The Tune function trainable: one TrialConfig, trained with per-epoch reports."""
    train_trial(trial_dict(config), data=data, reporter=RayReporter(), device=device, num_threads=num_threads)
