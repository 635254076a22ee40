"""``python -m sweeps.cifar``: a hyperparameter sweep of the CIFAR-10 CNN on Ray Tune.

Locally by default (starts Ray on this machine's CPUs) or on a running cluster (--address).
With no flags: Hyperopt (TPE) + ASHA over the built-in space. ``--smoke``: the whole path in
under a minute on 2 CPU cores. ``--print-space``: show the space (with the reason for each
range) and exit.

Exit codes: 0 success, 1 the sweep failed (every trial errored, or Ray failed), 2 bad input
(space, flags, address, dataset), reported before any trial starts, 130 interrupted (--resume it).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import threading
from typing import Any, Callable, Sequence

from sweeps.config import (CONFIG_FILE, DEFAULT_MAX_EPOCHS, DEFAULT_NUM_SAMPLES, SCHEDULERS, SEARCHES, SMOKE_GRACE_PERIOD,
                           SMOKE_MAX_EPOCHS, SMOKE_NUM_SAMPLES, SMOKE_SUBSET, SweepConfig, check_address)
from sweeps.tracking_config import (DEFAULT_EXPERIMENT, ENV_TRACKING_URI, TRACKING_ARGS, TrackingConfig,
                                     add_tracking_args, export_note, tracking_from_args, usable_uri)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130  # 130: the shell's code for Ctrl-C

# In the epilog, not in --space's help: argparse keeps line breaks only in the description and the
# epilog (RawDescriptionHelpFormatter), and reflowed into one paragraph this schema cannot be read.
SPACE_HELP = textwrap.dedent("""\
    space file (--space FILE, YAML or JSON), one entry per hyperparameter of trainables.config:
      lr: {loguniform: [1.0e-4, 1.0e-1]}     head_dropout: {uniform: [0.0, 0.5]}
      filters: {quniform: [16, 64, 16]}      num_blocks: {randint: [2, 5]}  (high excluded)
      batch_size: {choice: [64, 128]}        weight_decay: {grid: [1.0e-4, 5.0e-4]}  (not with hyperopt)
      epochs: 5  (a constant)                momentum: {uniform: [0.8, 0.99], when: {optimizer: sgd}}
    optional per entry: reason: "why this range". Optional starting points for hyperopt (random and
    grid ignore them): points_to_evaluate: [{lr: 0.05, batch_size: 64}]. Default: the built-in space.""")

EPILOG = SPACE_HELP + "\n\n" + textwrap.dedent("""\
    examples:
      python -m sweeps.cifar --smoke                      # under a minute on 2 cores
      python -m sweeps.cifar --print-space                # the default space, with reasons
      python -m sweeps.cifar --search grid --scheduler fifo
      python -m sweeps.cifar --address auto --cpus-per-trial 4 --gpus-per-trial 0.25
      python -m sweeps.cifar --resume --name sweep-hyperopt-asha-20250101-120000
    exit codes: 0 ok, 1 sweep failed (all trials errored / Ray error), 2 bad input,
      130 interrupted (Ctrl-C; continue with --resume).""")


def build_parser() -> argparse.ArgumentParser:
    d = SweepConfig()
    # allow_abbrev=False: an abbreviation like --print would otherwise pass for --print-space to argparse
    # (and start a sweep), and every later flag that shares a prefix would change what old ones mean.
    p = argparse.ArgumentParser(prog="python -m sweeps.cifar", description=__doc__.split("\n\n")[1],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    s = p.add_argument_group("search")
    s.add_argument("--search", choices=SEARCHES, default=d.search,
                   help="hyperopt: seeded TPE with known-good starting points; random: random sampling; "
                        "grid: every grid value (default: %(default)s)")
    s.add_argument("--scheduler", choices=SCHEDULERS, default=d.scheduler,
                   help="early stopping: asha (async successive halving), hyperband (pauses/resumes trials "
                        "from checkpoints), fifo (none) (default: %(default)s)")
    s.add_argument("--space", metavar="FILE", help="search space file, YAML or JSON (format below; default: the "
                   "built-in space)")
    s.add_argument("--print-space", action="store_true", help="print the space the sweep would use, with the "
                   "reason for each range, and exit")
    s.add_argument("--num-samples", type=int, metavar="N", help=f"trials to sample; with grid, repeats of the "
                   f"whole grid (default: {DEFAULT_NUM_SAMPLES}; grid 1; smoke {SMOKE_NUM_SAMPLES})")
    s.add_argument("--max-epochs", type=int, metavar="E", help=f"epochs per trial at most, the schedulers' max_t "
                   f"(default: {DEFAULT_MAX_EPOCHS}; smoke {SMOKE_MAX_EPOCHS})")
    s.add_argument("--grace-period", type=int, metavar="E", help=f"epochs before ASHA may stop a trial "
                   f"(default: {d.grace_period}; smoke {SMOKE_GRACE_PERIOD})")
    s.add_argument("--reduction-factor", type=int, default=d.reduction_factor, metavar="R",
                   help="ASHA/Hyperband keep 1/R of trials at each rung (default: %(default)s)")
    s.add_argument("--max-concurrent", type=int, default=d.max_concurrent, metavar="N",
                   help="trials running at once; 0 = as many as the cluster's CPUs/GPUs fit (on a `ray up` cluster: at "
                   "full size, with every worker its autoscaler may add); hyperband takes only 0 "
                   "(default: %(default)s)")
    s.add_argument("--seed", type=int, default=d.seed, help="seeds the searcher and every trial (default: %(default)s)")
    s.add_argument("--startup-trials", type=int, default=d.startup_trials, metavar="N",
                   help="hyperopt: trials before TPE models the results, starting points included; 0 = a quarter "
                   "of --num-samples, within 3-20 (default: %(default)s)")
    s.add_argument("--smoke", action="store_true", help=f"tiny space, {SMOKE_NUM_SAMPLES} trials of up to "
                   f"{SMOKE_MAX_EPOCHS} epochs, {SMOKE_SUBSET} training images: under a minute on 2 cores")
    r = p.add_argument_group("resources and cluster")
    r.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial, metavar="C",
                   help="CPUs reserved per trial; also its torch threads (default: %(default)s)")
    r.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial, metavar="G",
                   help="GPUs per trial, fractions share a GPU (0.25 = 4 trials/GPU) (default: %(default)s)")
    r.add_argument("--address", help="Ray cluster to join: host:port, ray://host:port or auto (one started by "
                   "`ray up`/`ray start`); default: start Ray locally on this machine's CPUs")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="CIFAR-10 folder (cifar-10-batches-py or its parent); default: $CIFAR10_DIR, "
                   "./data/cifar-10-batches-py or ../shared/data/cifar-10-batches-py, else ./data")
    g.add_argument("--download", action=argparse.BooleanOptionalAction, default=d.download,
                   help="download CIFAR-10 with torchvision into --data-dir when no local copy is found; "
                        "--no-download fails instead (default: yes)")
    g.add_argument("--subset", type=int, metavar="N", help=f"stratified subsample of N training images; 0 = all "
                   f"(default: 0; smoke {SMOKE_SUBSET})")
    o = p.add_argument_group("results")
    o.add_argument("--storage-path", default=d.storage_path, help="results folder (made absolute) or a URI Ray "
                   "accepts, e.g. s3://bucket/sweeps (default: ./%(default)s)")
    o.add_argument("--name", help="experiment name, a folder under --storage-path; a new sweep needs a name not "
                   "used there yet (default: sweep-<search>-<scheduler>-<timestamp>)")
    o.add_argument("--resume", action="store_true", help="continue the interrupted sweep --name with the settings "
                   "it was started with (a flag that would change one is refused): finished trials are kept, "
                   "unfinished and errored ones resume from their last checkpoint")
    o.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="K",
                   help="checkpoints kept per trial, best by val_acc, plus the latest (default: %(default)s)")
    o.add_argument("--max-failures", type=int, default=d.max_failures, metavar="N",
                   help="retries of a failed trial from its last checkpoint (default: %(default)s)")
    o.add_argument("--reuse-actors", action=argparse.BooleanOptionalAction, default=d.reuse_actors,
                   help="reuse trial processes between trials, saving process start-up (default: yes)")
    o.add_argument("--top-k", type=int, default=d.top_k, help="trials listed in the summary (default: %(default)s)")
    o.add_argument("--verbose", type=int, choices=(0, 1, 2), default=d.verbose,
                   help="Ray Tune's progress output: 0 none (Ray's own start-up and checkpoint notices remain), "
                        "1 status table, 2 every result (default: %(default)s)")
    add_tracking_args(p)
    return p


def _resolve(ns: argparse.Namespace) -> dict[str, Any]:
    """Flags left unset take smoke or grid defaults where those differ from the plain ones."""
    values = {k: v for k, v in vars(ns).items() if k != "print_space" and k not in TRACKING_ARGS}
    if values["num_samples"] is None:
        values["num_samples"] = (SMOKE_NUM_SAMPLES if ns.smoke and ns.search != "grid"
                                 else 1 if ns.search == "grid" else DEFAULT_NUM_SAMPLES)
    smoke = {"max_epochs": SMOKE_MAX_EPOCHS, "grace_period": SMOKE_GRACE_PERIOD, "subset": SMOKE_SUBSET}
    plain = {"max_epochs": DEFAULT_MAX_EPOCHS, "grace_period": SweepConfig().grace_period, "subset": 0}
    for key in smoke:
        if values[key] is None:
            values[key] = smoke[key] if ns.smoke else plain[key]
    return values


def given_settings(argv: Sequence[str]) -> dict[str, Any]:
    """The SweepConfig fields the command line sets explicitly, defaults left out: a --resume refuses
    to change the sweep's saved settings, while a default must not count as a change."""
    parser = build_parser()
    unset = object()
    # argparse fills in a default only for attributes the namespace lacks, so a pre-filled marker
    # survives exactly where no flag was given.
    marked = argparse.Namespace(**{dest: unset for dest in vars(parser.parse_args([]))})
    parsed = vars(parser.parse_args(argv, namespace=marked))
    fields = set(SweepConfig().to_dict())
    return {k: v for k, v in parsed.items() if v is not unset and k in fields}


def parse_args(argv: Sequence[str] | None = None) -> SweepConfig:
    """Command line -> validated SweepConfig. Raises ValueError/TypeError on an invalid combination."""
    return SweepConfig(**_resolve(build_parser().parse_args(argv)))


def resume_command(cfg: SweepConfig, tracking: TrackingConfig) -> str:
    """The command that continues this sweep. Its data folder and Ray address are saved with it;
    the MLflow store is not (a URI may carry credentials), so one not in $MLFLOW_TRACKING_URI is
    repeated (the default store by its absolute path), or the resumed runs would go to another store."""
    parts = ["python -m sweeps.cifar --resume", f"--name {cfg.name}", f"--storage-path {cfg.storage_uri}"]
    if not tracking.enabled:
        return " ".join([*parts, "--no-mlflow"])
    uri = tracking.resolved_uri()
    if tracking.tracking_uri or not os.environ.get(ENV_TRACKING_URI):
        parts.append(f"--mlflow-tracking-uri {usable_uri(uri)}")  # credentials: read from the environment
    if tracking.experiment != DEFAULT_EXPERIMENT:
        parts.append(f"--mlflow-experiment {tracking.experiment}")
    return " ".join(parts) + export_note(uri)


class StartInterrupted(BaseException):
    """Ctrl-C before the sweep started (imports, Ray's start, the data): no trial ran.

    Raised instead of KeyboardInterrupt while starting: a KeyboardInterrupt that passes through
    code a C extension ran with PyRun_* (torch's import does) marks it unhandled for good, and
    CPython then kills itself with SIGINT at exit even after it was caught (exit -2, not 130).
    BaseException, so libraries' `except Exception` around their imports cannot swallow it."""


def _raise_start_interrupted(signum: int, frame: Any) -> None:
    raise StartInterrupted


def _catch_start_interrupts() -> Callable[[], None]:
    """SIGINT raises StartInterrupted until the returned function restores the previous handler
    (before Tune, which installs its own: its first Ctrl-C saves the sweep and stops it)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return lambda: None
    previous = signal.signal(signal.SIGINT, _raise_start_interrupted)
    return lambda: signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    restore = _catch_start_interrupts()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), started=restore)
    except (StartInterrupted, KeyboardInterrupt):
        if "ray" in sys.modules:  # interrupted in or after ray.init: stop what it started, leave no orphans
            import ray

            ray.shutdown()
        print("Interrupted before the sweep started: no trial ran.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        restore()


def _main(argv: list[str], *, started: Callable[[], None]) -> int:
    try:
        ns = build_parser().parse_args(argv)
        cfg = SweepConfig(**_resolve(ns))
        if ns.print_space and cfg.resume:
            raise ValueError("--print-space shows the space a new sweep would use, but --resume continues a sweep "
                             "with the space it started with. Drop one of the two (the resumed sweep's settings "
                             f"are in its {CONFIG_FILE}).")
        from sweeps.space import format_space
        from sweeps.space_builtin import resolve_space

        # Space and address are checked before torch and Ray are imported (tens of seconds on a
        # busy machine), so those mistakes fail in about a second. A resumed sweep keeps its space.
        space = None if cfg.resume else resolve_space(search=cfg.search, smoke=cfg.smoke, path=cfg.space,
                                                      max_epochs=cfg.max_epochs, seed=cfg.seed,
                                                      num_samples=cfg.num_samples)
        if ns.print_space and space is not None:
            print(format_space(space))
            return EXIT_OK
        check_address(cfg.address)
        from sweeps.tracking import check_tracking, for_sweep
        from sweeps.tuner import execute, prepare, report_text  # Ray is imported only to sweep

        tracking = tracking_from_args(ns)
        if tracking.enabled:
            check_tracking(tracking)  # an unreachable/malformed MLflow URI: TrackingError, a ValueError
        # Every input check, before any trial: SweepInputError is a ValueError.
        prepared = prepare(cfg, given=given_settings(argv))
        callback = for_sweep(prepared.cfg, tracking)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(prepared.plan, flush=True)
    started()  # from here a Ctrl-C is Tune's: it saves the sweep's state for --resume
    try:
        outcome = execute(prepared, callbacks=[callback] if callback is not None else [])
        print(report_text(outcome), flush=True)
        if callback is not None:
            callback.log_summary(outcome.summary)
    except KeyboardInterrupt:
        # Tune handles the first Ctrl-C while trials run (it saves its state and returns); this is a
        # second one, or one while the best checkpoint was evaluated and the summary written.
        if callback is not None:
            callback.mark_interrupted()
        print(f"Sweep interrupted before its summary was complete; continue it with: "
              f"{resume_command(prepared.cfg, tracking)} (with no trial left to run, that writes the summary and "
              "the best trial's test accuracy).", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a Ray/Tune failure mid-sweep: finished trials stay on storage for --resume
        print(f"error: the sweep failed: {type(exc).__name__}: {exc}\nContinue it with: "
              f"{resume_command(prepared.cfg, tracking)}", file=sys.stderr)
        return EXIT_FAILED
    if callback is not None:
        where = callback.where()
        if where:
            print(where, flush=True)
    if outcome.interrupted:
        print(f"Sweep interrupted; continue it with: {resume_command(prepared.cfg, tracking)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not outcome.ok:
        print("error: every trial errored; see error.txt in the trial folders under "
              f"{outcome.summary.experiment_path}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
