"""A sweep's settings: one frozen dataclass, validated when built, before Ray starts.

``sweeps.cifar.parse_args`` fills it from the command line; tests and ``sweeps.compare`` build
it directly. Every rule raises ``ValueError``/``TypeError`` naming the value, the rule and the fix.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlsplit

from analysis.redact import redact_uri
from trainables.paths import folder_problem

SEARCHES = ("hyperopt", "random", "grid")
SCHEDULERS = ("asha", "hyperband", "fifo")

# --smoke: a whole sweep in about half a minute on 2 CPU cores, inside the two minutes a smoke run
# may take (tiny space, 8 trials of up to 4 epochs, 5000 images). Sized so that the smoke exercises
# what a real sweep does: after Hyperopt's 3 start-up trials (the starting point included) TPE
# proposes the other 5, ASHA's rung at epoch 3 keeps some trials and stops others, and the best trial
# learns well above chance. The earlier 4 trials x 2 epochs x 1000 images (~20 s) left TPE one trial,
# validated on 100 images, and spent close to half of its slot-seconds in Ray's ~5 s start-up
# (BENCHMARKS.md, orchestration overhead).
SMOKE_NUM_SAMPLES = 8
SMOKE_MAX_EPOCHS = 4
SMOKE_SUBSET = 5000
SMOKE_GRACE_PERIOD = 1

DEFAULT_NUM_SAMPLES = 24  # hyperopt/random trials; a grid runs each point num_samples times (default 1)
DEFAULT_MAX_EPOCHS = 12
ADDRESS_TIMEOUT_S = 5.0  # how long to wait for a cluster's port before calling it unreachable
CONFIG_FILE = "sweep_config.json"  # the resolved SweepConfig, saved in the experiment folder for --resume


class SweepInputError(ValueError):
    """Bad user input found before any trial started (the CLI exits with code 2)."""


def _fail(name: str, value: Any, rule: str, fix: str) -> None:
    raise ValueError(f"The value of `{name}` is {value!r}, but {rule}. {fix}")


# Hyperopt seeds numpy's RandomState, which takes seeds below 2**32 (the trainable's rule too).
MAX_SEED = 2**32 - 1


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"The value of `{name}` is {value!r} ({type(value).__name__}), but must be an int.")
    if value < low:
        _fail(name, value, f"must be `{name} >= {low}`", f"Pass {name.replace('_', '-')} >= {low}.")
    if high is not None and value > high:
        _fail(name, value, f"must be `{name} <= {high}`", f"Pass --{name.replace('_', '-')} <= {high}.")


def _check_number(name: str, value: Any, *, low: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"The value of `{name}` is {value!r} ({type(value).__name__}), but must be a number.")
    if not math.isfinite(value) or (value <= low if low_open else value < low):
        rule = f"`{name} {'>' if low_open else '>='} {low}`"
        _fail(name, value, f"must be finite and {rule}", f"Pass a finite {name.replace('_', '-')} with {rule}.")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(name, value, f"must be one of {', '.join(choices)}", f"Pass --{name} with one of those.")


_ONE_SLASH_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")  # s3:/bucket: a URI missing a slash


def _check_storage_path(path: str) -> None:
    """A URI as Ray will read it, or a local folder this process can create or write to. Ray finds
    out only when the sweep first writes, after the data is loaded and Ray has started."""
    typo = _ONE_SLASH_URI.match(path)
    if typo and typo.group(1) != "file":
        _fail("storage_path", path, "looks like a URI with one slash after the scheme, which would be read as a "
              "local folder", f"Write {typo.group(1)}://{path[typo.end():]}.")
    if is_uri(path):
        query = urlsplit(path).query
        if query:
            # The sweep's folders are <storage>/<name>/<trial>: joined onto a URI's path, a query
            # (s3://b/p?endpoint_override=…) would end up inside them. pyarrow, which Ray and these
            # sweeps read storage with, takes the same options from the environment instead.
            names = ", ".join(dict.fromkeys(k for k, _ in parse_qsl(query, keep_blank_values=True))) or query
            # Named, not shown: a query can hold credentials (secret_key=…); redact_uri masks them.
            _fail("storage_path", redact_uri(path), f"has query options ({names}), which the sweep cannot carry "
                  "into the folders it makes under it",
                  "Drop the '?…' part and set the options in the environment of every node instead, e.g. "
                  "AWS_ENDPOINT_URL=http://minio:9000 and AWS_DEFAULT_REGION for an S3-compatible store.")
        return
    problem = folder_problem(Path(os.path.expanduser(path.removeprefix("file://"))))
    if problem:
        _fail("storage_path", path, problem, "Pass a folder you can write to (made if missing).")


def is_uri(path: str) -> bool:
    """True for storage Ray reaches through pyarrow (s3://, gs://, ...), not a local folder."""
    return "://" in path and not path.startswith("file://")


@dataclass(frozen=True)
class SweepConfig:
    """Everything one ``python -m sweeps.cifar`` run does. Fields mirror the CLI flags."""

    # What to search and how.
    search: str = "hyperopt"  # hyperopt (TPE), random or grid
    scheduler: str = "asha"  # asha, hyperband or fifo (no early stopping)
    space: str | None = None  # YAML/JSON space file; None = the built-in space for `search`
    num_samples: int = DEFAULT_NUM_SAMPLES  # trials to sample; for grid, repeats of the whole grid
    max_epochs: int = DEFAULT_MAX_EPOCHS  # epochs per trial at most (the scheduler's max_t)
    grace_period: int = 1  # epochs every trial runs before ASHA may stop it
    reduction_factor: int = 3  # ASHA/Hyperband keep 1/reduction_factor of trials per rung
    # Trials running at once; 0 = as many as the cluster's CPUs fit. Hyperband takes only 0: a limit would
    # count its paused trials and keep its brackets from filling (strategies.make_scheduler).
    max_concurrent: int = 0
    seed: int = 0  # seeds the searcher and every trial's weights/split/shuffling
    # Hyperopt: trials before TPE models the results (starting points count); 0 = a quarter of
    # num_samples, within 3-20 (strategies.hyperopt_startup_trials).
    startup_trials: int = 0
    smoke: bool = False  # tiny space, few epochs and trials, data subset: under a minute on 2 cores
    # Resources per trial.
    cpus_per_trial: float = 1.0  # CPUs reserved per trial (= its torch threads, at least 1)
    gpus_per_trial: float = 0.0  # GPUs per trial, fractional allowed (0.25 = four trials per GPU)
    # Cluster.
    address: str | None = None  # Ray cluster address (host:port, ray://host:port or auto); None = local Ray
    # Data.
    data_dir: str | None = None  # CIFAR-10 folder (cifar-10-batches-py or its parent); None = default
    download: bool = True  # download CIFAR-10 with torchvision when no local copy is found
    subset: int = 0  # stratified subsample of the training images; 0 = all
    # Results.
    storage_path: str = "ray_results"  # local folder (absolute-ised) or any URI Ray accepts (s3://...)
    name: str | None = None  # experiment name; None = sweep-<search>-<scheduler>-<timestamp>
    resume: bool = False  # continue the interrupted sweep storage_path/name
    keep_checkpoints: int = 2  # checkpoints kept per trial, best by val_acc (the latest is always kept)
    max_failures: int = 2  # retries of a failed trial, each from its last checkpoint
    reuse_actors: bool = True  # reuse trial processes between trials (saves process start-up)
    top_k: int = 5  # trials listed in the end-of-sweep summary
    evaluate_best: bool = True  # test-set accuracy of the best checkpoint at the end
    verbose: int = 1  # Ray Tune verbosity: 0 silent, 1 status table, 2 every result

    def __post_init__(self) -> None:
        _check_choice("search", self.search, SEARCHES)
        _check_choice("scheduler", self.scheduler, SCHEDULERS)
        for name in ("num_samples", "max_epochs", "grace_period", "keep_checkpoints", "top_k"):
            _check_int(name, getattr(self, name), low=1)
        for name in ("max_concurrent", "subset", "max_failures", "verbose", "startup_trials"):
            _check_int(name, getattr(self, name), low=0)
        _check_int("seed", self.seed, low=0, high=MAX_SEED)
        if self.startup_trials and self.search != "hyperopt":
            _fail("startup_trials", self.startup_trials, f"applies to --search hyperopt only (TPE's random start-up), "
                  f"and the search is {self.search}", "Drop --startup-trials, or pass --search hyperopt.")
        if self.startup_trials and self.search == "hyperopt" and self.startup_trials >= self.num_samples:
            _fail("startup_trials", self.startup_trials, f"must be below --num-samples ({self.num_samples}), or TPE "
                  "never models a result and the sweep is a random search", "Lower --startup-trials (0 sizes it "
                  "automatically), or pass --search random for a random search.")
        _check_int("reduction_factor", self.reduction_factor, low=2)
        if self.scheduler == "hyperband" and self.max_concurrent:
            _fail("max_concurrent", self.max_concurrent,
                  "must be 0 with --scheduler hyperband: Hyperband pauses a bracket's trials at each rung until "
                  "all of them get there, a limit counts the paused ones as running, and under it the brackets "
                  "never fill and Hyperband stops few or no trials (ray-project/ray#12536)",
                  "Pass --max-concurrent 0 (as many trials run as --cpus-per-trial/--gpus-per-trial fit; paused "
                  "ones hold no resources), or use --scheduler asha.")
        if self.grace_period > self.max_epochs:
            _fail("grace_period", self.grace_period, f"must be <= max_epochs ({self.max_epochs})",
                  "Lower --grace-period or raise --max-epochs.")
        _check_number("cpus_per_trial", self.cpus_per_trial, low=0.0, low_open=True)
        _check_number("gpus_per_trial", self.gpus_per_trial, low=0.0)
        if self.gpus_per_trial > 1:  # the trainable trains on one device: no data parallelism
            _fail("gpus_per_trial", self.gpus_per_trial, "must be at most 1: a trial trains on one GPU, so "
                  "the others it reserved would sit idle", "Use 1, or a fraction (e.g. 0.25) to share a GPU.")
        if self.subset and self.subset < 100:
            _fail("subset", self.subset, "must be 0 (all images) or at least 100",
                  "A stratified split needs some images per class; pass --subset 1000 for a quick run.")
        if self.space is not None and not Path(self.space).is_file():
            _fail("space", self.space, "must be an existing YAML/JSON file", "Check the path passed to --space.")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            _fail("name", self.name, "must be a plain folder name (no '/', not starting with '.')",
                  "Pass --name like my-sweep-1.")
        if self.resume and self.name is None:
            _fail("name", None, "is required with --resume (the experiment to continue)",
                  "Pass --name of the interrupted sweep, as printed when it started.")
        _check_storage_path(self.storage_path)
        if self.address is not None and not self.address.strip():
            _fail("address", self.address, "must not be empty", "Pass host:port, ray://host:port or auto.")

    @property
    def storage_uri(self) -> str:
        """Where Ray stores results: local folders made absolute (Ray requires that), URIs as given."""
        if is_uri(self.storage_path):
            return self.storage_path
        return os.path.abspath(os.path.expanduser(self.storage_path.removeprefix("file://")))

    @property
    def experiment_path(self) -> str:
        assert self.name is not None, "the experiment name is resolved before a sweep starts"
        return f"{self.storage_uri.rstrip('/')}/{self.name}"

    @property
    def threads_per_trial(self) -> int:
        """Torch intra-op threads in a trial: its reserved CPUs, so trials never oversubscribe a node."""
        return max(1, int(self.cpus_per_trial))

    def replace(self, **changes: Any) -> "SweepConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SweepConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown sweep setting(s) {unknown}: not fields of SweepConfig. "
                             f"Valid: {', '.join(sorted(known))}.")
        return cls(**values)


def check_address(address: str | None, *, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail in seconds on an unreachable host:port (ray.init would retry for a long while)."""
    if address is None or address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SweepInputError(f"The value of `address` is {address!r}, but must be host:port, ray://host:port "
                              "or auto. Pass the address `ray start --head` or `ray up` printed.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SweepInputError(f"The Ray cluster at --address {address} is unreachable ({exc}). Start it "
                              "(`ray up cluster.yaml` / `ray start --head`), check host and port, or drop "
                              "--address to run locally.") from exc
