"""Searcher and scheduler factories. Seeded Hyperopt is checked through suggest() alone: no training."""
from __future__ import annotations

import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

from sweeps.space_builtin import default_space, resolve_space
from sweeps.space_convert import trial_dict
from sweeps.strategies import FlatHyperOptSearch, hyperopt_startup_trials, make_scheduler, make_search
from trainables import metrics
from trainables.config import TrialConfig


def _suggestions(seed: int, n: int = 14) -> list[dict]:
    """n configs from a fresh searcher, telling it a made-up score after each (so TPE kicks in)."""
    searcher = FlatHyperOptSearch(resolve_space(search="hyperopt", smoke=False, path=None, max_epochs=3, seed=0),
                                  seed=seed, n_initial_points=8)
    configs = []
    for i in range(n):
        config = searcher.suggest(str(i))
        configs.append(config)
        searcher.on_trial_complete(str(i), {metrics.OBJECTIVE: (config["lr"] * 7) % 1.0})
    return configs


def test_seeded_hyperopt_repeats_its_configs_and_seeds_differ():
    first, second, other = _suggestions(seed=3), _suggestions(seed=3), _suggestions(seed=4)
    assert first == second
    assert first[2:] != other[2:]


def test_hyperopt_starts_from_the_known_good_points_then_samples_flat_valid_configs():
    configs = _suggestions(seed=0)
    points = default_space().points
    for config, point in zip(configs, points):
        assert {k: config[k] for k in point} == dict(point)
    for config in configs:  # flat, every key a TrialConfig key, momentum only with sgd
        assert not any(isinstance(v, dict) for v in config.values())
        assert (config["momentum"] is None) == (config["optimizer"] != "sgd")
        TrialConfig.from_dict(trial_dict(config))
    assert {c["optimizer"] for c in configs} == {"sgd", "adamw"}


def test_a_space_files_starting_point_is_hyperopts_first_trial(tmp_path):
    (tmp_path / "s.json").write_text('{"lr": {"loguniform": [1e-4, 1.0]}, "batch_size": {"choice": [64, 256]}, '
                                     '"points_to_evaluate": [{"lr": 0.05, "batch_size": 256}]}')
    space = resolve_space(search="hyperopt", smoke=False, path=str(tmp_path / "s.json"), max_epochs=3, seed=0)
    searcher = make_search("hyperopt", space, seed=0, max_concurrent=0, num_samples=8)
    first, second = searcher.suggest("0"), searcher.suggest("1")
    assert (first["lr"], first["batch_size"]) == (0.05, 256)
    assert second["lr"] != 0.05


def test_make_search_kinds():
    space = resolve_space(search="hyperopt", smoke=True, path=None, max_epochs=2, seed=0)
    assert isinstance(make_search("hyperopt", space, seed=0, max_concurrent=2, num_samples=4), ConcurrencyLimiter)
    assert isinstance(make_search("hyperopt", space, seed=0, max_concurrent=0, num_samples=4), FlatHyperOptSearch)
    assert isinstance(make_search("random", space, seed=0, max_concurrent=2, num_samples=4), BasicVariantGenerator)


@pytest.mark.parametrize("num_samples, startup", [(1, 3), (4, 3), (13, 4), (16, 4), (24, 6), (80, 20), (500, 20)])
def test_tpe_starts_modelling_after_a_quarter_of_the_sweep(num_samples, startup):
    assert hyperopt_startup_trials(num_samples) == startup


def test_make_search_gives_hyperopt_the_startup_count_of_its_sweep():
    space = resolve_space(search="hyperopt", smoke=True, path=None, max_epochs=2, seed=0)
    searcher = make_search("hyperopt", space, seed=0, max_concurrent=2, num_samples=24).searcher
    # The partial Ray builds around hyperopt's tpe.suggest is what decides when TPE takes over.
    assert searcher.algo.keywords["n_startup_jobs"] == 6
    given = make_search("hyperopt", space, seed=0, max_concurrent=2, num_samples=24, startup=9).searcher
    assert given.algo.keywords["n_startup_jobs"] == 9  # --startup-trials wins over the quarter


@pytest.mark.parametrize("name, cls", [("asha", ASHAScheduler), ("hyperband", HyperBandScheduler),
                                       ("fifo", FIFOScheduler)])
def test_make_scheduler_counts_epochs(name, cls):
    scheduler = make_scheduler(name, max_epochs=9, grace_period=2, reduction_factor=3)
    assert isinstance(scheduler, cls)
    if name != "fifo":
        assert scheduler._time_attr == metrics.TRAINING_ITERATION
