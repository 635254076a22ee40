"""Spaces turned into Ray's and Hyperopt's samplers, and samples back into trial configs. No Ray started."""
from __future__ import annotations

import numpy as np

from sweeps.space import Dim
from sweeps.space_builtin import default_space
from sweeps.space_convert import (BRANCH_SUFFIX, ConditionalSampler, flatten_sample, to_hyperopt_points, to_ray,
                                  to_ray_param_space, trial_dict)
from trainables.config import TrialConfig


def test_momentum_is_conditional_on_sgd_for_random_search():
    space = default_space()
    sampler = ConditionalSampler(space["momentum"], seed=0)
    assert sampler({"optimizer": "adamw"}) is None
    values = [sampler({"optimizer": "sgd"}) for _ in range(20)]
    assert all(0.8 <= v <= 0.98 for v in values) and len(set(values)) == 20
    again = ConditionalSampler(space["momentum"], seed=0)
    assert [again({"optimizer": "sgd"}) for _ in range(20)] == values
    assert "momentum" in to_ray_param_space(space, seed=0)


def test_flatten_nested_hyperopt_sample_and_drop_inactive():
    sample = {"lr": np.float64(0.1), "filters": 32.0, "optimizer" + BRANCH_SUFFIX: {"optimizer": "adamw"}}
    flat = flatten_sample(sample, space=default_space())
    assert flat["optimizer"] == "adamw" and flat["filters"] == 32 and isinstance(flat["filters"], int)
    assert flat["momentum"] is None
    assert "momentum" not in trial_dict(flat)
    TrialConfig.from_dict(trial_dict(flat))


def test_starting_points_convert_to_hyperopt_labels():
    points = to_hyperopt_points(default_space())
    assert points[0]["optimizer"] == 0 and points[0]["momentum|optimizer=sgd"] == 0.9
    assert points[1]["optimizer"] == 1 and not any(k.startswith("momentum") for k in points[1])


def test_integer_quantised_ranges_reach_their_high_bound_for_every_q():
    # Ray's qrandint/qlograndint leave the high bound out when q is 1, unlike hyperopt's quniform
    # and the space's own checks.
    for kind in ("quniform", "qloguniform"):
        for args, expected in (((2, 4, 1), {2, 3, 4}), ((16, 64, 16), {16, 32, 48, 64})):
            drawn = set(to_ray(Dim("num_blocks" if args[2] == 1 else "filters", kind, args), seed=0).sample(size=3000))
            assert drawn == expected, (kind, args, drawn)
