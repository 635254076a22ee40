"""Orchestration overhead of a sweep: how much of its wall time is spent inside training steps.

    efficiency = sum of train_time_s over every reported epoch of every trial
                 / sweep wall time, from before ``ray.init`` to after ``Tuner.fit`` returns

``train_time_s`` is the trainable's own clock around its training steps (validation, data
shuffling, checkpointing, actor start-up, Ray start-up and scheduling all count as overhead).
Concurrent trials add up, so on C cores the ceiling is C; ``per slot`` divides by the trials
that ran at once. Measured as ``sweeps.cifar`` runs it (``reuse_actors`` on, Ray's worker
prestart off) and with each of the two changed (a fresh trial process per trial; Ray's default of
prestarting one idle worker per CPU at ``ray.init``), --repeats times each, the arms alternating
so that drift in the machine's load hits all alike; the median is the figure. The data is read
once, before any clock starts, as ``sweeps.cifar`` does.

Where the rest goes. Each sweep's slot-seconds (wall time x trials at once) are split into:
training steps; validation and the epoch's bookkeeping (epoch_time_s - train_time_s); set-up inside
the trial before its first epoch (its first report's time_this_iter_s - epoch_time_s: model,
optimizer, data; in a fresh trial process the optimizer's first use also imports torch._dynamo);
the start before the first trial runs (ray.init, Tune's set-up, the trial process's start and
imports; Tune's on_trial_start fires once the trial's actor is up), counted for every slot; and
the rest (slots idle while ASHA has nothing to run, the start of later trial processes when actors
are not reused, checkpoints, scheduling).

The sweep is ``python -m sweeps.cifar --smoke``'s by default (Hyperopt + ASHA over the smoke space,
8 trials of up to 4 epochs, 5,000 training images); --num-samples, --max-epochs and --subset change
it. The smoke of earlier stops, 4 trials x 2 epochs, was measured on all 5,085 images:
``--num-samples 4 --max-epochs 2 --subset 0``.

    python bench/orchestration_overhead.py               # target: median efficiency >= 0.8
    python bench/orchestration_overhead.py --quick       # a sanity run, numbers meaningless
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ray import tune

from sweeps.config import SMOKE_GRACE_PERIOD, SweepConfig
from sweeps.tuner import LOCAL_SYSTEM_CONFIG, build_tuner, load_data, prepare
from trainables import metrics
import machine  # bench/machine.py: run as `python bench/<name>.py`, so bench/ is on sys.path
from smoke_args import add_smoke_sweep_args

TARGET_EFFICIENCY = 0.8
QUICK_SUBSET = 300
# (reuse_actors, prestart): the product's settings (sweeps.tuner.LOCAL_SYSTEM_CONFIG turns Ray's
# worker prestart off), then each of the two changed.
SETTINGS = ((True, False), (True, True), (False, False))


def label(reuse: bool, prestart: bool) -> str:
    return f"reuse_actors={str(reuse):5} prestart={str(prestart):5}"


@dataclass(frozen=True)
class Measurement:
    reuse_actors: bool
    prestart: bool  # Ray's worker prestart left on (its default)
    wall_s: float  # before ray.init -> after fit returns
    init_s: float  # ray.init alone
    train_s: float  # sum of train_time_s over all reported epochs
    epoch_s: float  # sum of epoch_time_s (training + validation) over all reported epochs
    epochs: int  # trial-epochs reported
    trials: int
    concurrency: int
    first_start_s: float  # before ray.init -> the first trial's actor is up
    setup_s: float  # summed over trials: set-up inside the trial before its first epoch

    @property
    def efficiency(self) -> float:
        return self.train_s / self.wall_s

    def slot_seconds(self) -> dict[str, float]:
        """The sweep's capacity (wall x trials at once) split by what it went to; sums to the capacity."""
        parts = {"training": self.train_s, "validation": self.epoch_s - self.train_s,
                 "trial set-up": self.setup_s, "start-up": self.concurrency * self.first_start_s}
        return {**parts, "rest": self.concurrency * self.wall_s - sum(parts.values())}


class Timeline(tune.Callback):
    """When the first trial's actor came up, and each trial's set-up before its first epoch.

    Tune calls ``on_trial_start`` once the trial's actor exists (started, or reused). A function
    trainable's first ``time_this_iter_s`` runs from the start of the function to its first report.
    """

    def __init__(self, clock_start: float) -> None:
        self.clock_start = clock_start
        self.first_start: float | None = None
        self.trial_setup: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.first_start is None:
            self.first_start = time.perf_counter() - self.clock_start

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if trial.trial_id not in self.trial_setup and metrics.EPOCH_TIME_S in result:
            self.trial_setup[trial.trial_id] = max(0.0, result["time_this_iter_s"] - result[metrics.EPOCH_TIME_S])


def measure(cfg: SweepConfig, *, data: object, cpus: int, prestart: bool) -> Measurement:
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             _system_config={} if prestart else LOCAL_SYSTEM_CONFIG)
    init = time.perf_counter() - start
    timeline = Timeline(start)
    try:
        prepared = prepare(cfg, data=data)  # joins the Ray started above
        grid = build_tuner(prepared, callbacks=[timeline]).fit()
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    frames = [grid[i].metrics_dataframe for i in range(len(grid))]
    frames = [f for f in frames if f is not None and metrics.TRAIN_TIME_S in f]
    train = float(sum(f[metrics.TRAIN_TIME_S].fillna(0).sum() for f in frames))
    epoch = float(sum(f[metrics.EPOCH_TIME_S].fillna(0).sum() for f in frames if metrics.EPOCH_TIME_S in f))
    return Measurement(reuse_actors=cfg.reuse_actors, prestart=prestart, wall_s=wall, init_s=init, train_s=train,
                       epoch_s=epoch, epochs=int(sum(len(f) for f in frames)), trials=len(grid),
                       concurrency=prepared.cfg.max_concurrent,
                       first_start_s=timeline.first_start if timeline.first_start is not None else wall,
                       setup_s=float(sum(timeline.trial_setup.values())))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_smoke_sweep_args(p, repeats=3, repeats_help="sweeps per setting, alternating")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SUBSET} images, 1 repeat: checks the script runs")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    subset = QUICK_SUBSET if args.quick else args.subset
    with tempfile.TemporaryDirectory(prefix="orchestration-") as storage:
        base = SweepConfig(smoke=True, num_samples=args.num_samples, max_epochs=args.max_epochs,
                           grace_period=min(SMOKE_GRACE_PERIOD, args.max_epochs), subset=subset,
                           data_dir=args.data_dir, storage_path=storage, evaluate_best=False, verbose=0)
        data = load_data(base)  # read once, outside both clocks
        print(f"machine: {machine.describe()}")
        print(f"sweep: {base.search} + {base.scheduler}, smoke space, {base.num_samples} trials x up to "
              f"{base.max_epochs} epochs, {len(data.train_labels)} training images (train+val), {args.cpus} CPUs, "
              f"1 CPU per trial" + (" [--quick: numbers meaningless]" if args.quick else ""))
        repeats = 1 if args.quick else args.repeats
        results = [measure(base.replace(reuse_actors=reuse, name=f"overhead-reuse-{reuse}-prestart-{prestart}-{i}"),
                           data=data, cpus=args.cpus, prestart=prestart)
                   for i in range(repeats) for reuse, prestart in SETTINGS]
    for m in results:
        print(f"{label(m.reuse_actors, m.prestart)}  n = {m.trials} trials, {m.epochs} trial-epochs  "
              f"train {m.train_s:6.1f} s / wall {m.wall_s:6.1f} s = efficiency {m.efficiency:.2f} "
              f"(per slot {m.efficiency / max(1, m.concurrency):.2f}, {m.concurrency} at once); "
              f"ray.init {m.init_s:.1f} s, first trial up at {m.first_start_s:.1f} s")
        parts = m.slot_seconds()
        print(f"    slot-seconds {m.concurrency * m.wall_s:.1f} = "
              + " + ".join(f"{name} {value:.1f}" for name, value in parts.items()))
    for reuse, prestart in SETTINGS:
        arm = [m for m in results if (m.reuse_actors, m.prestart) == (reuse, prestart)]
        median = statistics.median(m.efficiency for m in arm)
        verdict = "meets" if median >= TARGET_EFFICIENCY else "misses"
        print(f"{label(reuse, prestart)}: median efficiency {median:.2f} over n = {len(arm)} sweeps "
              f"(range {min(m.efficiency for m in arm):.2f}-{max(m.efficiency for m in arm):.2f}); {verdict} the "
              f">= {TARGET_EFFICIENCY} target. Wall time not in training steps: ray.init, validation, trial "
              "start-up, checkpointing and Tune's bookkeeping")
        fractions = [{name: v / (m.concurrency * m.wall_s) for name, v in m.slot_seconds().items()} for m in arm]
        shares = {name: statistics.median(f[name] for f in fractions) for name in fractions[0]}
        print("    median share of slot-seconds: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
              + f"; ray.init {statistics.median(m.init_s for m in arm):.1f} s, first trial up at "
              f"{statistics.median(m.first_start_s for m in arm):.1f} s, set-up inside trials "
              f"{statistics.median(m.setup_s for m in arm):.1f} trial-seconds (medians)")
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
