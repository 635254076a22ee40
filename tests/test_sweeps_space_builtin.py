"""The built-in spaces and ``resolve_space``: what a sweep ends up sampling from. No Ray, no training."""
from __future__ import annotations

import pytest

from sweeps.space import format_space
from sweeps.space_builtin import default_space, resolve_space
from trainables.config import CONFIG_KEYS

FILE_WITH_POINTS = ("lr: {loguniform: [1.0e-3, 1.0]}\nbatch_size: {choice: [64, 128]}\nfilters: 16\n"
                    "points_to_evaluate:\n  - {lr: 0.05, batch_size: 128}\n")


def test_builtin_spaces_are_valid_and_every_default_dim_has_a_reason():
    for search in ("hyperopt", "random", "grid"):
        for smoke in (False, True):
            space = resolve_space(search=search, smoke=smoke, path=None, max_epochs=4, seed=1)
            assert space["epochs"].args == (4,) and space["seed"].args == (1,)
    space = default_space()
    assert set(space.keys()) <= set(CONFIG_KEYS)
    assert all(d.reason for d in space.dims)
    text = format_space(space)
    assert all(d.reason in text for d in space.dims)


def test_a_files_starting_points_reach_hyperopt_and_not_the_baselines(tmp_path):
    (tmp_path / "s.yaml").write_text(FILE_WITH_POINTS)
    path = str(tmp_path / "s.yaml")
    space = resolve_space(search="hyperopt", smoke=False, path=path, max_epochs=3, seed=0)
    assert space.points == ({"lr": 0.05, "batch_size": 128},) and "points_to_evaluate" not in space.keys()
    assert "starting point: {'lr': 0.05, 'batch_size': 128}" in format_space(space)
    assert resolve_space(search="random", smoke=False, path=path, max_epochs=3, seed=0).points == ()  # a baseline
    (tmp_path / "g.yaml").write_text(FILE_WITH_POINTS + "weight_decay: {grid: [1.0e-4, 5.0e-4]}\n")
    assert resolve_space(search="grid", smoke=False, path=str(tmp_path / "g.yaml"), max_epochs=3, seed=0).points == ()


def test_grid_search_needs_a_grid_and_repeats_that_differ(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("lr: {loguniform: [1.0e-3, 1.0e-1]}\nbatch_size: {choice: [64, 128]}\n")
    with pytest.raises(ValueError, match=r"--search grid was given, but the search space \(.*plain.yaml\) has no "
                                         r"`grid` entry.*or pass --search random"):
        resolve_space(search="grid", smoke=False, path=str(plain), max_epochs=3, seed=0)
    with pytest.raises(ValueError, match=r"--num-samples 3 with --search grid .* identical trial again. "
                                         r"Pass --num-samples 1"):
        resolve_space(search="grid", smoke=False, path=None, max_epochs=3, seed=0, num_samples=3)
    seeded = tmp_path / "seeded.yaml"
    seeded.write_text("lr: {grid: [0.01, 0.1]}\nseed: {randint: [0, 1000]}\n")
    assert resolve_space(search="grid", smoke=False, path=str(seeded), max_epochs=3, seed=0, num_samples=3)
    assert resolve_space(search="grid", smoke=False, path=None, max_epochs=3, seed=0, num_samples=1)
    # Random search runs grid entries as a grid too: a space of grid entries alone repeats identical trials.
    grid_only = tmp_path / "grid_only.yaml"
    grid_only.write_text("lr: {grid: [0.01, 0.1]}\nweight_decay: {grid: [0.0, 5.0e-4]}\n")
    with pytest.raises(ValueError, match=r"--num-samples 24 with --search random .* identical trial again"):
        resolve_space(search="random", smoke=False, path=str(grid_only), max_epochs=3, seed=0, num_samples=24)
    assert resolve_space(search="random", smoke=False, path=str(plain), max_epochs=3, seed=0, num_samples=24)
