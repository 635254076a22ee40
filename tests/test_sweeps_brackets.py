"""Hyperband's bracket sizes, re-derived in sweeps.brackets, against Ray's own scheduler."""
from __future__ import annotations

import pytest
from ray.tune.schedulers import HyperBandScheduler

from sweeps.brackets import hyperband_bracket_sizes


@pytest.mark.parametrize("max_epochs, reduction_factor, sizes", [
    (1, 3, (1,)),
    (2, 3, (2,)),  # the second bracket would start at 0 epochs: Ray makes none, so nothing is ever stopped
    (4, 3, (2, 3)),  # --smoke
    (9, 3, (3, 5, 9)),
    (12, 3, (3, 5, 9)),  # the default sweep
    (27, 3, (4, 6, 12, 27)),
    (16, 2, (5, 5, 7, 10, 16)),
])
def test_known_bracket_sizes(max_epochs, reduction_factor, sizes):
    assert hyperband_bracket_sizes(max_epochs, reduction_factor) == sizes


def test_sizes_match_rays_scheduler():
    # Ray keeps its formula in private lambdas (`_get_n0`, `_get_r0`); this pins our copy to it, so a
    # Ray release that changes the brackets fails here instead of silently mis-sizing the limit.
    for reduction_factor in (2, 3, 4, 5):
        for max_epochs in range(1, 130):
            hb = HyperBandScheduler(max_t=max_epochs, reduction_factor=reduction_factor)
            ray_sizes = tuple(hb._get_n0(s) for s in range(hb._s_max_1) if hb._get_r0(s) > 0)
            assert hyperband_bracket_sizes(max_epochs, reduction_factor) == ray_sizes, (max_epochs, reduction_factor)
