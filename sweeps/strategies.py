"""Searcher and scheduler factories: which trials to try, and which to stop early.

One report per epoch, so every scheduler's time unit is ``training_iteration`` == epoch.
The objective and its direction come from ``trainables.metrics`` and are given to Tune once
(``TuneConfig(metric=..., mode=...)``), except for Hyperopt with a native space, which must be
told at construction (Ray does not pass them to a searcher that already has a space).
"""
from __future__ import annotations

import math
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm
from ray.tune.search.hyperopt import HyperOptSearch

from sweeps.scheduler_state import ResumableHyperBand
from sweeps.space import Space
from sweeps.space_convert import flatten_sample, to_hyperopt, to_hyperopt_points
from trainables import metrics

TIME_ATTR = metrics.TRAINING_ITERATION  # == epoch, since the trainable reports once per epoch
# Random trials before TPE models the results: a quarter of the sweep, within these bounds.
# Hyperopt's own default (20, after Bergstra et al.) assumes hundreds of trials; on a 16-trial sweep
# it would leave TPE nothing to guide, and a fixed 8 still spends half of it unguided. Three is the
# fewest from which TPE's good/bad split (gamma = 0.25) has a point on each side.
MIN_STARTUP_TRIALS, MAX_STARTUP_TRIALS = 3, 20


def hyperopt_startup_trials(num_samples: int) -> int:
    """Completed trials TPE waits for before it models them (known-good starting points count)."""
    return min(MAX_STARTUP_TRIALS, max(MIN_STARTUP_TRIALS, math.ceil(num_samples / 4)))


class FlatHyperOptSearch(HyperOptSearch):
    """HyperOptSearch over a native (conditional) space whose suggestions Tune sees flat.

    Two gaps in Ray's wrapper are filled here: (1) a nested ``hp.choice`` comes back as a nested
    dict, which would give results columns like ``config/optimizer?/momentum``; we flatten it
    so every trial's config is the flat dict ``TrialConfig.from_dict`` takes. (2) Hyperopt's
    ``generate_trials_to_calculate`` leaves labels of inactive branches out of a starting point's
    record, and TPE then fails with a KeyError; we add them as inactive (empty) entries.
    """

    def __init__(self, space: Space, *, seed: int, n_initial_points: int):
        self._sweep_space = space
        super().__init__(to_hyperopt(space), metric=metrics.OBJECTIVE, mode=metrics.OBJECTIVE_MODE,
                         points_to_evaluate=to_hyperopt_points(space) or None,
                         n_initial_points=n_initial_points, random_state_seed=seed)

    def _setup_hyperopt(self) -> None:
        super()._setup_hyperopt()
        for trial in self._hpopt_trials.trials:
            for label in self.domain.params:
                trial["misc"]["idxs"].setdefault(label, [])
                trial["misc"]["vals"].setdefault(label, [])
        self._hpopt_trials.refresh()

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if config is None:
            return None
        flat = flatten_sample(config)
        # Inactive conditional entries are None, as with random search, so all trials share columns.
        return {**{d.key: None for d in self._sweep_space.dims if d.when is not None}, **flat}


def startup_trials(configured: int, *, num_samples: int) -> int:
    """TPE's random start-up: ``--startup-trials`` where given (not 0), else a quarter of the sweep."""
    return configured or hyperopt_startup_trials(num_samples)


def make_search(search: str, space: Space, *, seed: int, max_concurrent: int, num_samples: int,
                startup: int = 0) -> SearchAlgorithm:
    """``hyperopt``: seeded TPE with the space's starting points, random for its first ``startup``
    trials (0: the first quarter of ``num_samples``); ``random``/``grid``: Ray's
    BasicVariantGenerator over the Tune param space (grid entries expand to every value)."""
    if search == "hyperopt":
        searcher = FlatHyperOptSearch(space, seed=seed,
                                      n_initial_points=startup_trials(startup, num_samples=num_samples))
        return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent) if max_concurrent else searcher
    if search in ("random", "grid"):
        # BasicVariantGenerator is a SearchAlgorithm, not a Searcher, so ConcurrencyLimiter cannot
        # wrap it; it limits concurrency itself.
        return BasicVariantGenerator(max_concurrent=max_concurrent, random_state=seed)
    raise ValueError(f"The value of `search` is {search!r}, but must be hyperopt, random or grid.")


def make_scheduler(scheduler: str, *, max_epochs: int, grace_period: int, reduction_factor: int) -> TrialScheduler:
    """``asha``: asynchronous successive halving (Li et al. 2020); ``hyperband``: synchronous
    Hyperband (Li et al. 2017), which pauses trials and resumes them from checkpoints;
    ``fifo``: every trial runs to its last epoch."""
    if scheduler == "asha":
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=max_epochs, grace_period=grace_period,
                             reduction_factor=reduction_factor)
    if scheduler == "hyperband":
        # Hyperband has no grace period: its brackets choose their own minimum budgets. It pauses a
        # bracket's trials at each rung until all of them get there, and Ray assigns a new trial to the
        # current bracket while fewer than the bracket's size of its trials are live (running or
        # paused). A searcher concurrency limit counts paused trials as live, so under one the brackets
        # never fill: with 2 live on 2 CPUs every trial landed in the first bracket, whose only rung is
        # max_t, and none was stopped (ray-project/ray#12536). So Hyperband sweeps run with no limit
        # (sweeps.tuner.prepare, SweepConfig's rule); Ray's resources cap what runs at once.
        # Resumable: its brackets survive --resume (sweeps.scheduler_state).
        return ResumableHyperBand(time_attr=TIME_ATTR, max_t=max_epochs, reduction_factor=reduction_factor)
    if scheduler == "fifo":
        return FIFOScheduler()
    raise ValueError(f"The value of `scheduler` is {scheduler!r}, but must be asha, hyperband or fifo.")
