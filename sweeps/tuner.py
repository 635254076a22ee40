"""Build and run the Tune sweep: checks first, then data once, Ray, the Tuner, the summary.

``prepare`` does everything that can fail on bad input (space, address, dataset, resources)
and raises ``SweepInputError`` within seconds, before any trial starts; ``execute`` runs the
Tuner (fresh or ``--resume``) and summarises. ``run_sweep`` is the two together.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from analysis.ray_state import has_state, saved_trials, trial_folders
from sweeps.capacity import Autoscaling, fitting_types, read_autoscaling, scaled_slots, trials_per_node, unknown_types
from sweeps.config import CONFIG_FILE, SweepConfig, SweepInputError, check_address, is_uri
from sweeps.resume_plan import resume_progress
from sweeps.scheduler_state import SchedulerState
from sweeps.space import Space, check_fits_data, grid_size, sampled_keys
from sweeps.space_builtin import resolve_space
from sweeps.space_convert import to_ray_param_space
from sweeps.strategies import make_scheduler, make_search, startup_trials
from sweeps.summary import SweepSummary, format_summary, read_text, summarize, write_summary, write_text
from sweeps.trial import cifar_trial
from sweeps.trial_ends import TrialEnds
from trainables import metrics
from trainables.data import CifarArrays, default_data_dir, fingerprint, load_cifar10, stratified_split

# For the Ray a sweep starts itself. Ray prestarts one idle worker per CPU at ray.init, for tasks;
# Tune never uses them: it creates every trial's actor with a runtime_env (env_vars, set in
# ray/tune/execution/class_cache.py), and an idle worker takes only work whose runtime_env matches.
# So the raylet starts the trials' processes anyway, while the prestarted ones compete with them
# for CPU. What that costs a smoke sweep is about as large as run-to-run noise: median efficiency 1.31
# without the prestart against 1.23 with it (8 trials, n=5), and 0.74 against 0.685 for the earlier
# 4-trial smoke (n=10) (bench/orchestration_overhead.py, BENCHMARKS.md).
LOCAL_SYSTEM_CONFIG = {"prestart_worker_first_driver": False, "enable_worker_prestart": False}


@dataclass(frozen=True)
class PreparedSweep:
    cfg: SweepConfig  # with the experiment name resolved
    space: Space | None  # None on --resume: the restored searcher carries the space
    keys: list[str]  # sampled hyperparameters, shown in the summary
    data: CifarArrays
    owns_ray: bool  # this sweep started Ray, so it shuts it down
    plan: str  # what the sweep will do, printed before it starts
    expected_trials: int = 0  # num_samples x grid points: fewer results at the end means interrupted


@dataclass(frozen=True)
class SweepOutcome:
    grid: Any  # ray.tune.ResultGrid
    summary: SweepSummary
    cfg: SweepConfig
    interrupted: bool = False  # stopped by Ctrl-C/SIGINT before every trial finished: --resume it
    cut_off: int = 0  # trials Tune ended without finishing them (an interrupt); a stop condition ends none

    @property
    def ok(self) -> bool:
        return not self.summary.failed and not self.interrupted


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Ray's default repeats the whole config in the name)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def default_name(cfg: SweepConfig) -> str:
    return f"sweep-{cfg.search}-{cfg.scheduler}-{time.strftime('%Y%m%d-%H%M%S')}"


def subsample(data: CifarArrays, *, size: int, seed: int) -> CifarArrays:
    """Stratified subsample of the training images (class balance kept); the test split is untouched."""
    if size == 0 or size >= len(data.train_labels):
        return data
    _, keep = stratified_split(data.train_labels, val_fraction=size / len(data.train_labels), seed=seed)
    return CifarArrays(train_images=data.train_images[keep], train_labels=data.train_labels[keep],
                       test_images=data.test_images, test_labels=data.test_labels, classes=data.classes)


def load_data(cfg: SweepConfig) -> CifarArrays:
    """Read (or download) CIFAR-10 once, in the driver; trials get it from Ray's object store."""
    data_dir = cfg.data_dir if cfg.data_dir is not None else default_data_dir()
    return subsample(load_cifar10(data_dir, download=cfg.download), size=cfg.subset, seed=cfg.seed)


def connect(cfg: SweepConfig) -> bool:
    """Join the running Ray (tests, notebooks), the cluster at --address, or start a local Ray.
    Returns whether this call started it."""
    if ray.is_initialized():
        return False
    check_address(cfg.address)
    try:
        if cfg.address is None:
            # address="local": always a fresh local Ray on the CPUs this process may use. Without it
            # ray.init joins whatever cluster /tmp/ray/ray_current_cluster names (one another process
            # started with `ray start` or ray.cluster_utils), and then rejects num_cpus.
            ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)), _system_config=LOCAL_SYSTEM_CONFIG)
        else:
            ray.init(address=cfg.address)
    except ConnectionError as exc:
        raise SweepInputError(f"Could not connect to Ray at --address {cfg.address}: {exc}. Start the cluster "
                              "or drop --address to run locally.") from exc
    return True


@dataclass(frozen=True)
class Capacity:
    """What the sweep can use: the resources up now, and how many trials fit at once at full size."""

    total: Mapping[str, float]  # ray.cluster_resources() now
    slots: int  # trials at once: on the nodes up now, or on all the autoscaler may add, whichever is more
    scaling: Autoscaling | None = None  # the autoscaler's worker types, on a `ray up` cluster

    def describe(self) -> str:
        now = f"cluster {self.total.get('CPU', 0):g} CPUs, {self.total.get('GPU', 0):g} GPUs"
        if self.scaling is None or not self.scaling.types:
            return now
        return f"{now} now, the autoscaler may add up to {self.scaling.max_workers} workers"


def check_resources(cfg: SweepConfig) -> Capacity:
    """A trial must fit on some node, up now or one the autoscaler may add (on a cluster, from the
    config `ray up` left on this head); else Tune would wait forever."""
    scaling = read_autoscaling() if cfg.address is not None else None  # a local Ray never scales
    total = ray.cluster_resources()
    cpus, gpus = cfg.cpus_per_trial, cfg.gpus_per_trial
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    fits_now = any(trials_per_node(n, cpus=cpus, gpus=gpus) >= 1 for n in nodes)
    can_add = fitting_types(scaling, cpus=cpus, gpus=gpus) if scaling else []
    unknown = unknown_types(scaling) if scaling else []
    if not fits_now and not can_add and not unknown:
        # "No GPU" only where no node, up or addable, has that many GPUs; else the trial is too big.
        gpu_nodes = [*nodes, *(t.resources for t in (scaling.types if scaling else ()))]
        if gpus > 0 and not any(n.get("GPU", 0) >= gpus for n in gpu_nodes):
            names = ", ".join(t.name for t in scaling.types) if scaling else ""
            where = (f", and no worker type its autoscaler may add ({names or 'none'}) holds {gpus:g} GPU + {cpus:g} "
                     "CPU" if scaling else "")
            now = ("the Ray cluster has no GPU" if not any(n.get("GPU", 0) for n in nodes)
                   else f"no node of the Ray cluster has {gpus:g} GPUs")
            raise SweepInputError(f"The value of `gpus_per_trial` is {gpus:g}, but {now}{where}. "
                                  "Pass --gpus-per-trial 0, or add GPU nodes to the cluster (with `ray up`, GPU worker "
                                  "types in its config; else wait until a GPU node has joined: `ray status`).")
        # Without the autoscaler's config (a cluster started by hand, KubeRay) more nodes may still join.
        if cfg.address is None or scaling is not None:
            largest = ", ".join(f"{n.get('CPU', 0):g} CPU + {n.get('GPU', 0):g} GPU" for n in nodes) or "none"
            added = " or may be added" if scaling else ""
            raise SweepInputError(f"The values of `cpus_per_trial` and `gpus_per_trial` are {cpus:g} and {gpus:g}, but "
                                  f"no node that is up{added} holds that much (nodes up: {largest}). Lower "
                                  "--cpus-per-trial or --gpus-per-trial.")
    scaled = scaled_slots(scaling, cpus=cpus, gpus=gpus) if scaling else 0
    return Capacity(total=total, slots=max(1, trials_per_node(total, cpus=cpus, gpus=gpus), scaled), scaling=scaling)


def describe_plan(cfg: SweepConfig, *, space: Space | None, data: CifarArrays, capacity: Capacity,
                  running: int, trials: int, progress: str = "") -> str:
    """What the sweep will do, printed before it starts. ``trials``: num_samples x grid points (on
    --resume the saved count: the space is not rebuilt then); ``progress``: the --resume line."""
    points = len(space.points) if space is not None and cfg.search == "hyperopt" else 0
    starting = f", {points} starting point{'s' if points > 1 else ''}" if points else ""
    early = {"asha": f"ASHA (grace {cfg.grace_period} epochs, reduction {cfg.reduction_factor})",
             "hyperband": f"Hyperband (reduction {cfg.reduction_factor}; pauses trials at each rung and resumes them "
                          "from checkpoints)",
             "fifo": "none (FIFO: every trial runs all epochs)"}[cfg.scheduler]
    return "\n".join([
        f"{'Resuming' if cfg.resume else 'Starting'} sweep `{cfg.name}`",
        *([f"  progress:  {progress}"] if progress else []),
        f"  search:    {cfg.search} (seed {cfg.seed}{starting}"
        f"{f', TPE after {startup_trials(cfg.startup_trials, num_samples=cfg.num_samples)} trials' if cfg.search == 'hyperopt' else ''}), "
        f"early stopping: {early}",
        f"  budget:    {trials} trials x at most {cfg.max_epochs} epochs = at most {trials * cfg.max_epochs} "
        f"trial-epochs (objective {metrics.OBJECTIVE}, {metrics.OBJECTIVE_MODE})",
        f"  resources: {cfg.cpus_per_trial:g} CPU ({cfg.threads_per_trial} torch threads) + {cfg.gpus_per_trial:g} GPU "
        f"per trial; {capacity.describe()}; up to {running} "
        f"trials at once" + (", more waiting paused at a rung" if cfg.scheduler == "hyperband" else ""),
        f"  data:      {len(data.train_labels)} training images (train+val), {len(data.test_labels)} test images "
        f"(test used only for the best checkpoint)",
        f"  storage:   {cfg.experiment_path} (keep {cfg.keep_checkpoints} checkpoints/trial by "
        f"{metrics.OBJECTIVE}; retry failed trials {cfg.max_failures}x from their last checkpoint)",
    ])


DATA_FINGERPRINT = "data_fingerprint"  # sweep_config.json's key: what check_same_data compares on --resume

# What a --resume takes from its own command line: where Ray, the data and the results are, and
# how much it prints. Everything else is the sweep's own, restored with its searcher and scheduler.
RESUME_OVERRIDES = ("address", "data_dir", "download", "verbose", "storage_path", "name", "resume", "evaluate_best",
                    "top_k")


def changed_on_resume(saved: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings a --resume command line sets to other values than the sweep was started with:
    {field: (given, saved)}. A --resume cannot apply them (Tune restores the searcher, scheduler and
    trials as saved), so they are refused rather than silently dropped."""
    # --max-concurrent 0 means "as many as fit", which the sweep resolved to a number when it started.
    auto = {"max_concurrent": 0}
    return {k: (v, saved[k]) for k, v in given.items()
            if k not in RESUME_OVERRIDES and k in saved and v != saved[k] and not (k in auto and v == auto[k])}


def _as_flag(field: str, value: Any) -> str:
    """A setting as typed on the command line: --seed 3, --smoke, --no-reuse-actors."""
    flag = field.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def _resumed_config(cfg: SweepConfig, given: Mapping[str, Any] | None) -> tuple[SweepConfig, list[str], int]:
    """The interrupted sweep's own settings, with this run's connection/data/output flags where it
    sets them; its sampled hyperparameters and how many trials it was to run. ``given``: the settings
    this command line sets explicitly (None: those of ``cfg`` that differ from the defaults); one
    that differs from the saved sweep's is an error."""
    if given is None:
        defaults = SweepConfig().to_dict()
        given = {k: v for k, v in cfg.to_dict().items() if v != defaults.get(k)}
    if not tune.Tuner.can_restore(cfg.experiment_path):
        raise SweepInputError(f"--resume: no restorable sweep at {cfg.experiment_path}. Check --name and "
                              "--storage-path (as printed when the sweep started).")
    if not has_state(cfg.experiment_path):
        # Interrupted between making the Tuner (tuner.pkl) and Tune's first snapshot: Tuner.restore
        # would run one trial of an empty config and call every later resume interrupted (review).
        if trial_folders(cfg.experiment_path):
            raise SweepInputError(_NO_STATE_WITH_TRIALS.format(name=cfg.name, path=cfg.experiment_path))
        raise SweepInputError(f"--resume: `{cfg.name}` was interrupted before Tune saved any state, so no trial ran "
                              f"and there is nothing to continue. Run the same command without --resume to start it "
                              f"(its folder {cfg.experiment_path} holds only the sweep's start files, which a new "
                              "start replaces).")
    try:
        saved = json.loads(read_text(f"{cfg.experiment_path}/{CONFIG_FILE}"))
    except (OSError, ValueError) as exc:
        raise SweepInputError(f"--resume: {cfg.experiment_path}/{CONFIG_FILE} is missing or unreadable ({exc}); "
                              "this folder was not written by sweeps.cifar.") from exc
    changed = changed_on_resume(saved["sweep"], given)
    if changed:
        flags = ", ".join(f"{_as_flag(k, new)} (saved: {_as_flag(k, old)})" for k, (new, old) in changed.items())
        raise SweepInputError(f"--resume continues `{cfg.name}` with the settings it was started with, and "
                              f"these flags would change them: {flags}. Drop them to resume, or start a new sweep "
                              "(another --name, without --resume) to use them.")
    # An override left off keeps the sweep's saved value: a resume without --data-dir or --address
    # must not switch to another dataset (the finished trials' val_acc would no longer compare) or
    # to a local Ray. Name and storage found the sweep, so they are the saved ones anyway.
    kept = {k for k in RESUME_OVERRIDES if k in given} | {"name", "storage_path", "resume"}
    merged = {**saved["sweep"], **{k: getattr(cfg, k) for k in kept}, "space": None}
    if merged.get("scheduler") == "hyperband":
        # Saved before Hyperband took only max_concurrent 0 (strategies.make_scheduler): still resumable. The
        # restored searcher keeps the limit it was saved with.
        merged["max_concurrent"] = 0
    return (SweepConfig.from_dict(merged), list(saved["sampled_keys"]), int(saved.get("expected_trials", 0)),
            saved.get(DATA_FINGERPRINT))


_NO_STATE_WITH_TRIALS = (
    "--name {name}: {path} holds trial folders but no saved Tune state (the sweep was stopped before its first "
    "snapshot), so it cannot be resumed. Its trials' results stay there (python -m analysis.report reads them); "
    "start the sweep again under another --name, or delete the folder first.")


def check_new_experiment(cfg: SweepConfig) -> None:
    """A new sweep needs a folder of its own: Tune would add its trials to the old sweep's, and
    overwrite the files a --resume of that one needs. A folder holding only a sweep's start files
    (tuner.pkl, sweep_config.json: interrupted before Tune saved anything) holds nothing to lose, and
    a new start may replace them: neither a --resume nor any other start could use the folder otherwise."""
    if has_state(cfg.experiment_path):
        raise SweepInputError(f"--name {cfg.name}: {cfg.experiment_path} already holds a sweep. Continue that one "
                              "with --resume, or start a new one under another --name (left out, the name is "
                              "made from the search, the scheduler and the time).")
    if trial_folders(cfg.experiment_path):
        raise SweepInputError(_NO_STATE_WITH_TRIALS.format(name=cfg.name, path=cfg.experiment_path))


def check_same_data(data: CifarArrays, saved: str | None, *, cfg: SweepConfig) -> None:
    """A --resume must train on the images the sweep started with: --data-dir may point at another
    copy of them, but other images would make the resumed trials' val_acc incomparable with the
    finished ones', and the best checkpoint's test accuracy would be measured on other data."""
    here = fingerprint(data)
    if saved is not None and here != saved:
        raise SweepInputError(
            f"--resume: the data at {cfg.data_dir or default_data_dir()} ({len(data.train_labels)} training, "
            f"{len(data.test_labels)} test images, fingerprint {here[:12]}) is not the data `{cfg.name}` started "
            f"with (fingerprint {saved[:12]}). Pass --data-dir with a copy of that CIFAR-10 (or leave --data-dir "
            f"out to use the folder the sweep saved).")


def prepare(cfg: SweepConfig, *, data: CifarArrays | None = None,
            given: Mapping[str, Any] | None = None) -> PreparedSweep:
    """All input checks, the data (loaded once) and Ray; raises SweepInputError on bad input.
    ``given``: on --resume, the settings the command line set explicitly (checked against the saved ones)."""
    try:
        cfg = cfg if cfg.name is not None else cfg.replace(name=default_name(cfg))
        if cfg.resume:
            cfg, keys, expected, saved_data = _resumed_config(cfg, given)
            expected = expected or cfg.num_samples  # saved before the count was: a grid's points are unknown
            space = None
            progress = resume_progress((t.status for t in saved_trials(cfg.experiment_path)), expected=expected)
        else:
            check_new_experiment(cfg)
            space = resolve_space(search=cfg.search, smoke=cfg.smoke, path=cfg.space,
                                  max_epochs=cfg.max_epochs, seed=cfg.seed, num_samples=cfg.num_samples)
            keys = sampled_keys(space)
            expected = cfg.num_samples * grid_size(space)
            progress, saved_data = "", None
        check_address(cfg.address)
        data = data if data is not None else load_data(cfg)
        check_same_data(data, saved_data, cfg=cfg)
        if space is not None:
            check_fits_data(space, channels=data.train_images.shape[1], image_size=data.train_images.shape[2],
                            num_classes=data.num_classes)
        owns_ray = connect(cfg)
    except SweepInputError:
        raise
    except (ValueError, TypeError, OSError, RuntimeError) as exc:  # OSError: missing/corrupt dataset files
        raise SweepInputError(str(exc)) from exc
    try:
        capacity = check_resources(cfg)
    except SweepInputError:
        if owns_ray:
            ray.shutdown()
        raise
    # --max-concurrent 0 sizes the sweep for the cluster at full size, not for the nodes up now: a
    # searcher limited to what fits now would never ask for more, and the autoscaler would never add it.
    slots = capacity.slots
    # Hyperband runs without a searcher limit (0): its paused trials would count against one and its
    # brackets would never fill (strategies.make_scheduler); Ray's resources cap what runs at once.
    if cfg.scheduler != "hyperband":
        cfg = cfg.replace(max_concurrent=cfg.max_concurrent or slots)
    plan = describe_plan(cfg, space=space, data=data, capacity=capacity, running=min(cfg.max_concurrent or slots, slots),
                         trials=expected, progress=progress)
    return PreparedSweep(cfg=cfg, space=space, keys=keys, data=data, owns_ray=owns_ray, plan=plan,
                         expected_trials=expected)


def build_trainable(cfg: SweepConfig, data: CifarArrays) -> Any:
    """The trainable with the dataset in Ray's object store (tune.with_parameters puts it there
    once; each trial maps it read-only) and its CPU/GPU reservation."""
    device = "cuda" if cfg.gpus_per_trial > 0 else "cpu"
    trainable = tune.with_parameters(cifar_trial, data=data, num_threads=cfg.threads_per_trial, device=device)
    return tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})


def build_run_config(cfg: SweepConfig, *, callbacks: Iterable[Any] = (), stop: Any = None) -> tune.RunConfig:
    """Where results go, how many checkpoints stay, retries, callbacks (e.g. MLflow tracking) and an
    optional Tune stop condition (sweeps.compare's equal trial-epoch budget)."""
    return tune.RunConfig(
        name=cfg.name,
        storage_path=cfg.storage_uri,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.keep_checkpoints,
                                                checkpoint_score_attribute=metrics.OBJECTIVE,
                                                checkpoint_score_order=metrics.OBJECTIVE_MODE),
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        callbacks=list(callbacks) or None,
        stop=stop,
        verbose=cfg.verbose,
    )


def build_tuner(prepared: PreparedSweep, *, callbacks: Iterable[Any] = (), stop: Any = None) -> tune.Tuner:
    cfg = prepared.cfg
    trainable = build_trainable(cfg, prepared.data)
    if cfg.resume:
        # The trainable must be supplied again: its with_parameters object refs died with the old driver.
        tuner = tune.Tuner.restore(cfg.experiment_path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
        # Tuner.restore brings back the callbacks pickled at the start and takes no new ones
        # (ray-project/ray#41364); this run's (e.g. the MLflow URI, never pickled with its
        # credentials) must win. They get their saved state back through set_state. The scheduler
        # is the one pickled at the start, without its state: SchedulerState brings that back.
        scheduler = tuner._local_tuner._tune_config.scheduler
        tuner._local_tuner.get_run_config().callbacks = [*_scheduler_state(scheduler), *callbacks]
        return tuner
    space = prepared.space
    assert space is not None
    scheduler = make_scheduler(cfg.scheduler, max_epochs=cfg.max_epochs, grace_period=cfg.grace_period,
                               reduction_factor=cfg.reduction_factor)
    return tune.Tuner(
        trainable,
        # Hyperopt samples from its own native space; Tune's param space then holds the constants.
        param_space=to_ray_param_space(space, seed=cfg.seed, sampled=cfg.search != "hyperopt"),
        tune_config=tune.TuneConfig(
            metric=metrics.OBJECTIVE, mode=metrics.OBJECTIVE_MODE,
            search_alg=make_search(cfg.search, space, seed=cfg.seed, max_concurrent=cfg.max_concurrent,
                                   num_samples=cfg.num_samples, startup=cfg.startup_trials),
            scheduler=scheduler,
            num_samples=cfg.num_samples,
            reuse_actors=cfg.reuse_actors,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=build_run_config(cfg, callbacks=[*_scheduler_state(scheduler), *callbacks], stop=stop),
    )


def _scheduler_state(scheduler: Any) -> list[SchedulerState]:
    """First in the callback list, in a new sweep and its resume alike: Tune restores callback
    states by position. FIFO has no state to keep."""
    # type(), not isinstance: Ray's Hyperband and ASHA schedulers subclass FIFOScheduler.
    return [] if scheduler is None or type(scheduler) is FIFOScheduler else [SchedulerState(scheduler)]


def _save_config(prepared: PreparedSweep) -> None:
    """Saved next to Ray's state so --resume and readers know how the sweep was run."""
    # The data folder as this run found it, absolute: a --resume from another directory (or with
    # another $CIFAR10_DIR) must read the same images, not whatever its own default finds.
    data_dir = os.path.abspath(prepared.cfg.data_dir or default_data_dir())
    body = {"sweep": prepared.cfg.replace(resume=False, data_dir=data_dir).to_dict(), "sampled_keys": prepared.keys,
            "expected_trials": prepared.expected_trials, DATA_FINGERPRINT: fingerprint(prepared.data)}
    if not is_uri(prepared.cfg.storage_uri):
        os.makedirs(prepared.cfg.experiment_path, exist_ok=True)
    write_text(f"{prepared.cfg.experiment_path}/{CONFIG_FILE}", json.dumps(body, indent=2, sort_keys=True))


_EXCESSIVE_SNAPSHOT_WARNING_ENV = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"


def execute(prepared: PreparedSweep, *, callbacks: Iterable[Any] = (), stop: Any = None) -> SweepOutcome:
    cfg = prepared.cfg
    # Every epoch checkpoints and Tune keeps --keep-checkpoints of them, so Tune forces a state
    # snapshot every few epochs by design (a resume then loses at most that many). Locally one
    # costs ~0.02 s, yet Tune warns about each burst, flooding the sweep's output; its separate
    # slow-snapshot warning (slow remote storage) stays on. A user's own setting wins.
    os.environ.setdefault(_EXCESSIVE_SNAPSHOT_WARNING_ENV, "0")
    try:
        ends = TrialEnds()
        for callback in [*callbacks, ends]:
            if isinstance(callback, TrialEnds):  # the MLflow callback is one too
                callback.watch_stop(stop)
        tuner = build_tuner(prepared, callbacks=[*callbacks, ends], stop=stop)
        if not cfg.resume:
            _save_config(prepared)
        grid = tuner.fit()
        # The best checkpoint is evaluated here, in the driver, which on a cluster runs on a CPU head
        # (cluster.yaml) while trials ran on GPU workers: so whatever device this machine has.
        summary = summarize(grid, max_epochs=cfg.max_epochs, keys=prepared.keys, device="auto",
                            data=prepared.data if cfg.evaluate_best else None,
                            # Ours, not grid.experiment_path: on remote storage Ray gives that without its
                            # scheme (bucket/path), which no reader of the path can open.
                            experiment_path=cfg.experiment_path, cut_off=ends.cut_off_ids())
        write_summary(summary)
        return SweepOutcome(grid=grid, summary=summary, cfg=cfg,
                            # Fewer trials than planned: an interrupt, unless a stop condition ended the sweep.
                            interrupted=ends.cut_off() > 0 or (len(grid) < prepared.expected_trials
                                                               and not ends.stop_fired()),
                            cut_off=ends.cut_off())
    finally:
        if prepared.owns_ray:
            ray.shutdown()


def run_sweep(cfg: SweepConfig, *, data: CifarArrays | None = None, callbacks: Iterable[Any] = ()) -> SweepOutcome:
    """Run (or with ``cfg.resume``, continue) a sweep and summarise it.

    ``data``: already-loaded arrays (benchmarks, tests) instead of reading ``cfg.data_dir``.
    ``callbacks``: ray.tune.Callback objects (e.g. MLflow tracking) added to the RunConfig.
    Raises SweepInputError (a ValueError) on bad input before any trial starts.
    """
    prepared = prepare(cfg, data=data)
    print(prepared.plan, flush=True)
    return execute(prepared, callbacks=callbacks)


def report_text(outcome: SweepOutcome) -> str:
    return format_summary(outcome.summary, top_k=outcome.cfg.top_k, storage_path=outcome.cfg.storage_uri,
                          interrupted=outcome.interrupted, cut_off=outcome.cut_off)

