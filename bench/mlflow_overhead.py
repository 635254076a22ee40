"""Wall-time overhead of MLflow tracking on a sweep: the same sweep with and without the callback.

    overhead = wall(with MLflow) / wall(without) - 1        target: <= 5%

Wall time runs from building the Tuner to ``fit`` returning, so it includes the callback's
start (experiment lookup, parent run), every hook on Ray's scheduling loop and the bounded
flush at the sweep's end. Ray is started once, before either clock, then warmed by one
unmeasured sweep, and the data is read once; arms alternate (off, on, off, on, ...) so drift
in the machine's load hits both alike. The store is MLflow's default kind, a fresh sqlite file
per sweep (created by the start-up check, outside the clock), or --mlflow-tracking-uri (a server).

The sweep is ``python -m sweeps.cifar --smoke``'s by default (Hyperopt + ASHA over the smoke space,
8 trials of up to 4 epochs, 5,000 training images); --num-samples, --max-epochs and --subset change it.

    python bench/mlflow_overhead.py --repeats 3      # n = 3 sweeps per arm
    python bench/mlflow_overhead.py --quick          # a sanity run, numbers meaningless
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from sweeps.config import SMOKE_GRACE_PERIOD, SweepConfig
from analysis.redact import redact_uri
from sweeps.tracking import check_tracking, for_sweep
from sweeps.tracking_config import TrackingConfig
from sweeps.tuner import build_tuner, load_data, prepare
import machine  # bench/machine.py: run as `python bench/<name>.py`, so bench/ is on sys.path
from smoke_args import add_smoke_sweep_args

TARGET_OVERHEAD = 0.05
QUICK_SUBSET = 300


def sweep_wall_s(cfg: SweepConfig, *, data: object, tracking: TrackingConfig | None) -> float:
    """One sweep into Ray already started; seconds from building the Tuner to fit returning (the
    tracking check that ``sweeps.cifar`` runs before any compute stays outside the clock)."""
    prepared = prepare(cfg, data=data)
    callback = None
    if tracking is not None:
        check_tracking(tracking)  # before compute, as sweeps.cifar does: creates the store and experiment
        callback = for_sweep(prepared.cfg, tracking)
    start = time.perf_counter()
    build_tuner(prepared, callbacks=[callback] if callback is not None else []).fit()
    return time.perf_counter() - start


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_smoke_sweep_args(p, repeats=1, repeats_help="sweeps per arm, n")
    p.add_argument("--mlflow-tracking-uri", help="a tracking server to measure against (default: a fresh sqlite "
                   "file per sweep, MLflow's default local store)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SUBSET} images, 2 trials x 1 epoch: checks the "
                   "script runs")
    return p.parse_args()


def main() -> None:
    import ray

    args = parse_args()
    subset, samples, epochs = ((QUICK_SUBSET, 2, 1) if args.quick else (args.subset, args.num_samples, args.max_epochs))
    walls: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="mlflow-overhead-") as tmp:
        base = SweepConfig(smoke=True, num_samples=samples, max_epochs=epochs,
                           grace_period=min(SMOKE_GRACE_PERIOD, epochs), subset=subset, data_dir=args.data_dir,
                           storage_path=tmp, evaluate_best=False, verbose=0)
        data = load_data(base)  # read once, outside every clock
        print(f"machine: {machine.describe()}")
        store = redact_uri(args.mlflow_tracking_uri) if args.mlflow_tracking_uri else "a fresh sqlite file per sweep"
        print(f"sweep: {base.search} + {base.scheduler}, smoke space, {samples} trials x up to {epochs} epochs, "
              f"{len(data.train_labels)} training images, {args.cpus} CPUs; MLflow store: {store}"
              + (" [--quick: numbers meaningless]" if args.quick else ""))
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            # Unmeasured: the first sweep in a fresh Ray pays for starting worker processes.
            sweep_wall_s(base.replace(name="overhead-warmup"), data=data, tracking=None)
            for i in range(args.repeats):
                for tracked in (False, True):
                    uri = args.mlflow_tracking_uri or f"sqlite:///{Path(tmp) / f'mlflow-{i}.db'}"
                    tracking = TrackingConfig(tracking_uri=uri) if tracked else None
                    cfg = base.replace(name=f"overhead-{i}-{'on' if tracked else 'off'}")
                    walls[tracked].append(sweep_wall_s(cfg, data=data, tracking=tracking))
                    print(f"  repeat {i + 1}: MLflow {'on ' if tracked else 'off'} {walls[tracked][-1]:7.2f} s",
                          flush=True)
        finally:
            ray.shutdown()
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    overhead = on / off - 1
    verdict = "meets" if overhead <= TARGET_OVERHEAD else "misses"
    print(f"without MLflow: median {off:.2f} s; with MLflow: median {on:.2f} s (n = {args.repeats} sweeps per arm)")
    print(f"ratio {on / off:.3f}: overhead {overhead:+.1%}; {verdict} the <= {TARGET_OVERHEAD:.0%} target")
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
