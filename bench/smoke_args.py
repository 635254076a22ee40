"""The flags of the benchmarks that time a smoke-sized sweep (orchestration and MLflow overhead)."""
from __future__ import annotations

import argparse
import os

from sweeps.config import SMOKE_MAX_EPOCHS, SMOKE_NUM_SAMPLES, SMOKE_SUBSET


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1; pass 1 or more")
    return value


def add_smoke_sweep_args(p: argparse.ArgumentParser, *, repeats: int, repeats_help: str) -> None:
    """Defaults: ``python -m sweeps.cifar --smoke``'s sweep, so the plain command measures exactly that."""
    p.add_argument("--data-dir", help="CIFAR-10 folder (default: as sweeps.cifar)")
    p.add_argument("--subset", type=int, default=SMOKE_SUBSET, help="training images; 0 = all (default: %(default)s)")
    p.add_argument("--num-samples", type=positive_int, default=SMOKE_NUM_SAMPLES, help="trials (default: %(default)s)")
    p.add_argument("--max-epochs", type=positive_int, default=SMOKE_MAX_EPOCHS,
                   help="epochs per trial (default: %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=repeats, help=f"{repeats_help} (default: %(default)s)")
    p.add_argument("--cpus", type=positive_int, default=len(os.sched_getaffinity(0)),
                   help="CPUs given to Ray, one per trial (default: this process's usable cores, %(default)s)")
