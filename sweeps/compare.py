"""``python -m sweeps.compare``: search strategies side by side on an equal compute budget.

Runs each strategy (grid, random, hyperopt, random+asha, hyperopt+asha, hyperopt+hyperband, or
a subset) once per seed, through the same ``prepare``/``execute`` path as ``python -m
sweeps.cifar``, and writes into the output folder:

- ``anytime.csv``: best-so-far val_acc after each trial-epoch of compute (strategy, seed,
  trial_epochs, trial_seconds, best_val_acc);
- ``summary.csv``: per strategy and seed the best val_acc within the budget, the compute spent,
  and the trial-epochs needed to reach ``--target`` (NaN when never reached);
- ``anytime.png``: best-so-far against trial-epochs, median over seeds with an IQR band;
- ``compare_config.json``: the settings, to reproduce the run.

Equal budget. Compute is counted in trial-epochs, since one epoch of a given model costs the
same whoever schedules it. Every strategy and seed gets the same budget B and it is enforced
while the sweep runs: a Tune stopper ends the whole experiment once B epochs have been reported,
and the anytime curve is then cut at exactly B (trials already in flight when the stop fires may
report an epoch or two more). We do not give every strategy the same number of trials instead:
early stopping's whole point is to spend the same compute on more configurations, so fixing the
trial count would compare ASHA/Hyperband at a fraction of FIFO's compute. The one exception is
grid search: its points are fixed, and repeating them would retrain identical configurations
(the space fixes the seed), so a grid that is smaller than B stops early and says so.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import ray
from ray import tune
from ray.tune.stopper import Stopper

from analysis.frames import COMPARE_CONFIG_FILE
from analysis.plots import plot_anytime
from analysis.strategies import ANYTIME_FILE, SUMMARY_FILE, format_strategy_table, strategy_table
from sweeps import anytime as at
from sweeps.config import SMOKE_GRACE_PERIOD, SMOKE_MAX_EPOCHS, SMOKE_SUBSET, SweepConfig, SweepInputError
from sweeps.space import grid_size
from sweeps.space_builtin import resolve_space
from sweeps.strategies import hyperopt_startup_trials
from sweeps.tracking import check_tracking, for_sweep, log_comparison
from sweeps.tracking_config import TrackingConfig, add_tracking_args, tracking_from_args
from sweeps.tracking_runs import FINISHED, KILLED
from sweeps.tuner import check_resources, connect, execute, load_data, prepare
from trainables import metrics
from trainables.paths import folder_problem

# Strategy name -> (search, scheduler), both as SweepConfig spells them.
STRATEGIES: dict[str, tuple[str, str]] = {
    "grid": ("grid", "fifo"),
    "random": ("random", "fifo"),
    "hyperopt": ("hyperopt", "fifo"),
    "random+asha": ("random", "asha"),
    "hyperopt+asha": ("hyperopt", "asha"),
    "hyperopt+hyperband": ("hyperopt", "hyperband"),
}
# Default budget: as many full-length trials as the built-in grid has points (6), so the grid
# baseline fills the budget exactly: B = 6 x max_epochs.
DEFAULT_BUDGET_TRIALS = 6
DEFAULT_TARGET = 0.45  # val_acc; a small CNN reaches it in a few CPU epochs on the 5k-image subset
SMOKE_TARGET = 0.2  # smoke trials train a few epochs of a 5k-parameter CNN: twice chance (0.1) is a fair bar
SMOKE_BUDGET_TRIALS = 2  # the smoke grid's 2 points
PLOT_FILE = "anytime.png"
CONFIG_FILE = COMPARE_CONFIG_FILE  # the analysis reads it back to find the sweeps' Ray results
TRIALS = "trials"  # extra summary.csv column: trials that reported within the budget
BUDGET = "budget"  # extra summary.csv column: the enforced budget B, trial-epochs
# What a comparison writes into its folder. A second run into the same folder would overwrite them
# all, and the budget-cut anytime curves are recorded nowhere else (not in Ray's results, not in MLflow).
RESULT_FILES = (CONFIG_FILE, ANYTIME_FILE, SUMMARY_FILE, PLOT_FILE)


def _fail(name: str, value: Any, rule: str, fix: str) -> None:
    raise ValueError(f"The value of `{name}` is {value!r}, but {rule}. {fix}")


@dataclass(frozen=True)
class CompareConfig:
    """One comparison: which strategies, which seeds, the budget, and the shared sweep settings."""

    strategies: tuple[str, ...] = tuple(STRATEGIES)  # keys of STRATEGIES, run in this order
    seeds: tuple[int, ...] = (0, 1, 2)  # each strategy runs once per seed (searcher and trial seeds)
    budget: int = 0  # trial-epochs per strategy and seed; 0 = DEFAULT_BUDGET_TRIALS x max_epochs
    target: float = DEFAULT_TARGET  # val_acc whose compute-to-reach is reported
    output_dir: str = "compare_results"  # anytime.csv, summary.csv, anytime.png, Ray results
    grid_space: str | None = None  # space file for grid search; None = the built-in grid
    sweep: SweepConfig = field(default_factory=lambda: SweepConfig(verbose=0))  # shared settings

    def __post_init__(self) -> None:
        if not self.strategies:
            _fail("strategies", self.strategies, "must name at least one strategy",
                  f"Pass --strategies with some of: {', '.join(STRATEGIES)}.")
        for name in self.strategies:
            if name not in STRATEGIES:
                _fail("strategies", name, f"must be one of {', '.join(STRATEGIES)}", "Fix the name in --strategies.")
        if len(set(self.strategies)) != len(self.strategies):
            _fail("strategies", list(self.strategies), "must not repeat a strategy", "List each strategy once.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            _fail("seeds", list(self.seeds), "must be one or more distinct seeds", "Pass e.g. --seeds 0 1 2.")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                _fail("seeds", seed, "must hold ints >= 0", "Pass e.g. --seeds 0 1 2.")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 0:
            _fail("budget", self.budget, "must be an int >= 0 (trial-epochs; 0 = default)", "Pass e.g. --budget 96.")
        if self.budget and self.budget < self.sweep.max_epochs:
            _fail("budget", self.budget, f"must be >= max_epochs ({self.sweep.max_epochs}) so at least one trial "
                  "can train to the end", f"Raise --budget to at least {self.sweep.max_epochs} or lower --max-epochs.")
        if isinstance(self.target, bool) or not isinstance(self.target, (int, float)) or not 0 <= self.target <= 1:
            _fail("target", self.target, "must be a validation accuracy in [0, 1]", "Pass e.g. --target 0.45.")
        if self.grid_space is not None and not Path(self.grid_space).is_file():
            _fail("grid_space", self.grid_space, "must be an existing YAML/JSON file", "Check --grid-space.")
        if self.sweep.resume:
            _fail("resume", True, "is not supported by sweeps.compare", "Rerun the comparison without --resume.")

    @property
    def trial_epoch_budget(self) -> int:
        return self.budget or DEFAULT_BUDGET_TRIALS * self.sweep.max_epochs

    def sweep_config(self, strategy: str, *, seed: int) -> SweepConfig:
        """The SweepConfig of one strategy and seed. Non-grid strategies may sample up to B trials
        (every trial costs at least one trial-epoch), so the budget, not num_samples, ends them."""
        search, scheduler = STRATEGIES[strategy]
        return self.sweep.replace(
            search=search, scheduler=scheduler, seed=seed,
            # Hyperband runs without a concurrency limit, or its brackets never fill (strategies.make_scheduler);
            # the budget is in trial-epochs, so this leaves the comparison equal.
            max_concurrent=0 if scheduler == "hyperband" else self.sweep.max_concurrent,
            num_samples=1 if search == "grid" else self.trial_epoch_budget,
            # num_samples is the budget in trial-epochs, an upper bound on trials; TPE's random start-up
            # is sized as for a sweep of the full-length trials the budget buys, else it would stay
            # random for most of the budget (a quarter of B = 72 is 18 trials, of 6 full ones).
            startup_trials=(hyperopt_startup_trials(self.trial_epoch_budget // self.sweep.max_epochs)
                            if search == "hyperopt" else 0),
            space=self.grid_space if search == "grid" else self.sweep.space,
            name=f"compare-{strategy.replace('+', '-')}-seed{seed}",
            evaluate_best=False,  # the comparison reads validation accuracy only
        )


def epoch_record(result: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """What the comparison keeps of one reported epoch (plus the driver clock it arrived at)."""
    return {
        metrics.TRIAL_ID: result.get(metrics.TRIAL_ID),
        metrics.TRAINING_ITERATION: result.get(metrics.TRAINING_ITERATION),
        metrics.VAL_ACC: result.get(metrics.VAL_ACC, math.nan),
        metrics.EPOCH_TIME_S: result.get(metrics.EPOCH_TIME_S, math.nan),
        metrics.TRAIN_TIME_S: result.get(metrics.TRAIN_TIME_S, math.nan),
        at.COMPLETED_AT: now,
    }


class TrialEpochBudget(Stopper):
    """Ends the whole experiment once ``budget`` trial-epochs have been reported.

    Ray's built-in stoppers stop one trial on its own metrics, or the experiment on wall time or
    a plateau; none counts compute summed over trials, hence this one.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.seen: set[tuple[str, Any]] = set()
        self.fired = False  # read by sweeps.trial_ends: the trials it ended finished, not cut off

    def __call__(self, trial_id: str, result: dict) -> bool:
        # Tune calls stoppers once more with a finished trial's last result (its "duplicate"
        # result): count each (trial, epoch) once, or every completed trial would cost an extra epoch.
        self.seen.add((trial_id, result.get(metrics.TRAINING_ITERATION)))
        return False

    def stop_all(self) -> bool:
        self.fired = self.fired or len(self.seen) >= self.budget
        return self.fired


class EpochRecorder(tune.Callback):
    """Keeps every reported epoch in the order the driver received it.

    Ray's results carry only whole-second timestamps, too coarse to order concurrent trials'
    epochs; the driver's own clock at ``on_trial_result`` is exact.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.records.append(epoch_record(result, now=time.monotonic()))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=list(epoch_record({}, now=0.0)))


def summary_row(records: pd.DataFrame, *, strategy: str, seed: int, budget: int,
                target: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(anytime rows, summary row) of one sweep's recorded epochs, cut at the budget."""
    curve = at.anytime_curve(records, budget=budget)
    spent = records.sort_values(at.COMPLETED_AT, kind="mergesort").iloc[:budget] if len(records) else records
    trials = int(spent[metrics.TRIAL_ID].nunique()) if len(spent) else 0
    anytime = curve.assign(**{at.STRATEGY: strategy, at.SEED: seed})[list(at.ANYTIME_COLUMNS)]
    row = {at.STRATEGY: strategy, at.SEED: seed, **at.summarise(curve, target=target), TRIALS: trials,
           BUDGET: budget}
    return anytime, row


@dataclass(frozen=True)
class Comparison:
    anytime: pd.DataFrame  # the anytime.csv rows
    summary: pd.DataFrame  # the summary.csv rows
    output_dir: Path
    run_id: str | None = None  # the MLflow comparison run, when tracking is on
    interrupted: str = ""  # the strategy and seed a Ctrl-C cut short (left out of the results), if any


def check_inputs(cfg: CompareConfig) -> None:
    """Resolve every strategy's space now, so a bad space fails before the first sweep starts; say
    up front when the grid is larger than the budget (its row then holds the points that fit)."""
    for strategy in cfg.strategies:
        for seed in cfg.seeds:
            sweep = cfg.sweep_config(strategy, seed=seed)
            space = resolve_space(search=sweep.search, smoke=sweep.smoke, path=sweep.space,
                                  max_epochs=sweep.max_epochs, seed=seed)
        if STRATEGIES[strategy][0] == "grid":
            whole = grid_size(space) * sweep.max_epochs
            if whole > cfg.trial_epoch_budget:
                print(f"[compare] note: the grid has {grid_size(space)} points x {sweep.max_epochs} epochs = {whole} "
                      f"trial-epochs, more than the budget of {cfg.trial_epoch_budget}: its row covers the points the "
                      f"budget reaches. Pass --budget {whole} to compare on the whole grid.", file=sys.stderr)


def earlier_results(names: Iterable[str]) -> list[str]:
    """The comparison result files among a folder's entries, in RESULT_FILES order."""
    present = set(names)
    return [name for name in RESULT_FILES if name in present]


def check_output_dir(output_dir: str) -> None:
    """Refuse an output folder that holds an earlier comparison's results or cannot be a folder.

    Checked without creating anything, before the data loads and Ray starts: otherwise the earlier
    results are overwritten, or mkdir fails once the compute has begun. An empty folder, or one
    holding only other files, is fine: nothing in it would be lost. sweeps.compare has no resume.
    """
    out = Path(output_dir)
    if out.is_dir():
        found = earlier_results(entry.name for entry in out.iterdir())
        if found:
            _fail("output_dir", output_dir, f"must not hold an earlier comparison's results (found {', '.join(found)}): "
                  "this run would overwrite them, and their anytime curves are kept nowhere else",
                  "Pass another --output-dir, or move or delete the old folder first.")
    problem = folder_problem(out)
    if problem:
        _fail("output_dir", output_dir, problem, "Pass another --output-dir, or move that file away or fix the "
              "folder's permissions.")


def _run_one(cfg: CompareConfig, strategy: str, *, seed: int, data: Any, tracking: TrackingConfig,
             stamp: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """One strategy and seed on the budget; None when a Ctrl-C cut it short (its numbers would
    otherwise pass for a finished sweep's)."""
    budget = cfg.trial_epoch_budget
    sweep = cfg.sweep_config(strategy, seed=seed)
    # The stamp keeps a rerun into the same output folder from mixing with an earlier run's trials.
    prepared = prepare(sweep.replace(name=f"{sweep.name}-{stamp}"), data=data)
    recorder = EpochRecorder()
    tracker = for_sweep(prepared.cfg, tracking)
    callbacks = [recorder] + ([tracker] if tracker is not None else [])
    start = time.monotonic()
    outcome = execute(prepared, callbacks=callbacks, stop=TrialEpochBudget(budget))
    if tracker is not None:
        tracker.log_summary(outcome.summary)
    # Trials the budget ended count as stopped, not cut off (sweeps/trial_ends.py): a cut-off trial
    # means a Ctrl-C.
    if outcome.cut_off:
        return None
    frame = recorder.frame()
    anytime, row = summary_row(frame, strategy=strategy, seed=seed, budget=budget, target=cfg.target)
    note = "" if row[at.TRIAL_EPOCHS] == budget else f" (ran out of trials before the budget of {budget})"
    if sweep.search == "grid" and row[TRIALS] < prepared.expected_trials:
        note += f" (the budget cut the grid: {row[TRIALS]} of its {prepared.expected_trials} points ran)"
    print(f"[compare] {strategy} seed {seed}: best {metrics.VAL_ACC} {row[at.BEST_VAL_ACC]:.4f} in "
          f"{row[at.TRIAL_EPOCHS]} trial-epochs{note}, {row[TRIALS]} trials, epochs to {cfg.target:g}: "
          f"{row[at.EPOCHS_TO_TARGET]:g}, {time.monotonic() - start:.0f} s wall", flush=True)
    return anytime, row


def write_outputs(anytime: pd.DataFrame, summary: pd.DataFrame, *, out: Path, target: float, budget: int) -> None:
    """The two CSVs and the plot (median over seeds, IQR band, target and budget marked)."""
    out.mkdir(parents=True, exist_ok=True)
    anytime.to_csv(out / ANYTIME_FILE, index=False)
    summary.to_csv(out / SUMMARY_FILE, index=False)
    if anytime.empty:
        return
    fig = plot_anytime(anytime)
    ax = fig.axes[0]
    ax.axhline(target, color="gray", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.axvline(budget, color="gray", linestyle=":", linewidth=1, label=f"budget {budget} trial-epochs")
    ax.legend(fontsize=8)
    fig.savefig(out / PLOT_FILE, dpi=120)


def seeds_per_strategy(summary: pd.DataFrame) -> str:
    """How many seeds each strategy finished: one number, or a range after an interrupt."""
    counts = summary.groupby(at.STRATEGY)[at.SEED].nunique() if len(summary) else pd.Series([0])
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low}-{high}"


def format_table(summary: pd.DataFrame) -> str:
    table = format_strategy_table(strategy_table(summary))
    trials = summary.groupby(at.STRATEGY)[TRIALS].median()
    table.insert(2, "trials (median)", table[at.STRATEGY].map(trials).astype(int))
    return table.to_string(index=False)


def validate(cfg: CompareConfig, *, tracking: TrackingConfig, data: Any = None) -> Any:
    """Every check that can fail on bad input (output folder, MLflow, spaces, data), before any sweep
    starts. Returns the dataset: one for every strategy and seed, so differences come from the search."""
    check_output_dir(cfg.output_dir)
    if tracking.enabled:
        check_tracking(tracking)
    check_inputs(cfg)
    if data is not None:
        return data
    try:
        return load_data(cfg.sweep.replace(seed=0))
    except (OSError, RuntimeError) as exc:  # a missing/corrupt dataset, a failed download
        raise SweepInputError(str(exc)) from exc


def run_comparison(cfg: CompareConfig, *, data: Any = None, tracking: TrackingConfig | None = None) -> Comparison:
    """Every strategy x seed on budget B. The CSVs and plot are rewritten after each sweep, so an
    interrupted comparison leaves usable results."""
    tracking = tracking if tracking is not None else TrackingConfig(enabled=False)
    data = validate(cfg, tracking=tracking, data=data)
    owns_ray = connect(cfg.sweep)  # one Ray for all sweeps: each prepare() then joins it
    try:  # before anything is written: a trial that fits no node is bad input, like a bad flag
        check_resources(cfg.sweep)
    except SweepInputError:
        if owns_ray:
            ray.shutdown()
        raise
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    budget = cfg.trial_epoch_budget
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # The stamp ends every sweep's name: the report diagnoses this run's sweeps, not an earlier run's.
    (out / CONFIG_FILE).write_text(json.dumps({**asdict(cfg), "trial_epoch_budget": budget, "stamp": stamp},
                                              indent=2, sort_keys=True, default=str))
    print(f"[compare] {len(cfg.strategies)} strategies x {len(cfg.seeds)} seeds, budget {budget} trial-epochs each "
          f"(max {cfg.sweep.max_epochs} epochs/trial), target {metrics.VAL_ACC} >= {cfg.target:g}", flush=True)
    curves: list[pd.DataFrame] = []
    rows: list[dict[str, Any]] = []
    interrupted = ""
    try:
        # Seeds outermost: an interrupted run still covers every strategy.
        for seed, strategy in ((seed, strategy) for seed in cfg.seeds for strategy in cfg.strategies):
            interrupted = f"{strategy} seed {seed}"  # until it is done: a Ctrl-C outside Tune's fit() lands here
            done = _run_one(cfg, strategy, seed=seed, data=data, tracking=tracking, stamp=stamp)
            if done is None:
                break
            curves.append(done[0])
            rows.append(done[1])
            write_outputs(pd.concat(curves, ignore_index=True), pd.DataFrame(rows), out=out,
                          target=cfg.target, budget=budget)
            interrupted = ""
    except KeyboardInterrupt:  # between sweeps (Tune turns one inside a sweep into an orderly stop)
        pass
    finally:
        if owns_ray:
            ray.shutdown()
    anytime = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=list(at.ANYTIME_COLUMNS))
    summary = pd.DataFrame(rows)
    run_id = None
    if tracking.enabled:
        params = {"strategies": ",".join(cfg.strategies), "seeds": ",".join(map(str, cfg.seeds)),
                  "budget_trial_epochs": budget, "target": cfg.target, "max_epochs": cfg.sweep.max_epochs}
        # KILLED when interrupted: the tables hold only the sweeps that finished.
        run_id = log_comparison(out, tracking=tracking, name=f"compare-{stamp}", params=params,
                                status=KILLED if interrupted else FINISHED)
    return Comparison(anytime=anytime, summary=summary, output_dir=out, run_id=run_id, interrupted=interrupted)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweeps.compare", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), metavar="S",
                   help=f"strategies to run, of: {', '.join(STRATEGIES)} (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="seeds (default: 0 1 2; smoke: 0)")
    p.add_argument("--budget", type=int, default=0, metavar="TRIAL_EPOCHS",
                   help=f"compute per strategy and seed, trial-epochs (default: {DEFAULT_BUDGET_TRIALS} x max-epochs; "
                        f"smoke {SMOKE_BUDGET_TRIALS} x max-epochs)")
    p.add_argument("--target", type=float, help=f"{metrics.VAL_ACC} whose compute-to-reach is reported "
                   f"(default: {DEFAULT_TARGET}; smoke {SMOKE_TARGET})")
    p.add_argument("--output-dir", default="compare_results", help="output folder (default: %(default)s)")
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny run: smoke spaces, {SMOKE_MAX_EPOCHS} epochs, {SMOKE_SUBSET} images, one seed")
    p.add_argument("--max-epochs", type=int, help=f"epochs per trial at most (default: 12; smoke {SMOKE_MAX_EPOCHS})")
    p.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial (default: 1)")
    p.add_argument("--reduction-factor", type=int, default=3, help="ASHA/Hyperband reduction (default: 3)")
    p.add_argument("--space", help="space file for the random and hyperopt strategies (default: built-in)")
    p.add_argument("--grid-space", help="space file for grid search (default: the built-in grid)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once; 0 = one per CPU (default); "
                   "hyperopt+hyperband always runs without one (a limit keeps its brackets from filling)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default: 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default: 0)")
    p.add_argument("--address", help="Ray cluster address; default: start Ray locally")
    p.add_argument("--data-dir", help="CIFAR-10 folder (default: as sweeps.cifar)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download CIFAR-10 with torchvision when no local copy is found; --no-download fails "
                   "instead (default: yes)")
    p.add_argument("--subset", type=int,
                   help=f"stratified subsample of training images; 0 = all (smoke {SMOKE_SUBSET})")
    p.add_argument("--storage-path", help="Ray results folder or URI (default: <output-dir>/ray_results)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0, help="Ray Tune output (default: 0)")
    add_tracking_args(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[CompareConfig, TrackingConfig]:
    ns = build_parser().parse_args(argv)
    check_output_dir(ns.output_dir)  # first: the sweeps' default storage path lies inside it
    smoke = ns.smoke
    max_epochs = ns.max_epochs if ns.max_epochs is not None else SMOKE_MAX_EPOCHS if smoke else SweepConfig().max_epochs
    sweep = SweepConfig(
        smoke=smoke, max_epochs=max_epochs,
        grace_period=ns.grace_period if ns.grace_period is not None else SMOKE_GRACE_PERIOD if smoke else 1,
        reduction_factor=ns.reduction_factor, space=ns.space, max_concurrent=ns.max_concurrent,
        cpus_per_trial=ns.cpus_per_trial, gpus_per_trial=ns.gpus_per_trial, address=ns.address,
        data_dir=ns.data_dir, download=ns.download, subset=ns.subset if ns.subset is not None else SMOKE_SUBSET if smoke else 0,
        storage_path=ns.storage_path or str(Path(ns.output_dir) / "ray_results"), verbose=ns.verbose)
    budget = ns.budget or (SMOKE_BUDGET_TRIALS * max_epochs if smoke else 0)
    seeds = tuple(ns.seeds) if ns.seeds else (0,) if smoke else (0, 1, 2)
    target = ns.target if ns.target is not None else SMOKE_TARGET if smoke else DEFAULT_TARGET
    cfg = CompareConfig(strategies=tuple(ns.strategies), seeds=seeds, budget=budget, target=target,
                        output_dir=ns.output_dir, grid_space=ns.grid_space, sweep=sweep)
    return cfg, tracking_from_args(ns)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg, tracking = parse_args(argv)
        data = validate(cfg, tracking=tracking)
    except (ValueError, TypeError, OSError) as exc:  # bad flags, space, dataset or MLflow URI: before any sweep
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        comparison = run_comparison(cfg, data=data, tracking=tracking)
    except SweepInputError as exc:  # no node fits a trial: found once Ray is up, before any sweep
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if comparison.interrupted:
        print(f"\n[compare] interrupted during {comparison.interrupted}: its partial sweep is left out of the "
              "results below, which cover only the sweeps that finished.", file=sys.stderr)
        if comparison.summary.empty:
            return 130
    print(f"\nBest {metrics.VAL_ACC} within {cfg.trial_epoch_budget} trial-epochs, and trial-epochs to reach "
          f"{cfg.target:g} (n = {seeds_per_strategy(comparison.summary)} seeds per strategy):")
    print(format_table(comparison.summary))
    print(f"Wrote {comparison.output_dir / ANYTIME_FILE}, {comparison.output_dir / SUMMARY_FILE}, "
          f"{comparison.output_dir / PLOT_FILE}" + (f"; MLflow run {comparison.run_id}" if comparison.run_id else ""))
    return 130 if comparison.interrupted else 0  # 130: the shell's code for Ctrl-C, as sweeps.cifar


if __name__ == "__main__":
    sys.exit(main())
