"""Hyperband's brackets as Ray's ``HyperBandScheduler`` builds them (shown in a sweep's plan).

Synchronous Hyperband pauses each trial of a bracket at the bracket's rung until every trial of
that bracket has reached it, then keeps the best 1/reduction_factor. Ray's scheduler (hyperband.py)
assigns each new trial to the current bracket while fewer than the bracket's size of its trials are
*live* (running or paused), and counts a finished trial out. A searcher concurrency limit counts
paused trials as live, so under one the brackets never fill: with 2 live on 2 CPUs every trial
landed in the first bracket, whose only rung is max_t, and Hyperband stopped nothing
(ray-project/ray#12536). So a Hyperband sweep gets no concurrency limit: Tune creates the trials
ahead, they fill the brackets in order, and Ray's resources (paused trials hold none) decide how
many run at once. ``SweepConfig`` rejects --max-concurrent with hyperband for the same reason.

Pure functions (no Ray import).
"""
from __future__ import annotations

import math


def hyperband_bracket_sizes(max_epochs: int, reduction_factor: int) -> tuple[int, ...]:
    """Trials per bracket, in the order Ray fills them (its first bracket runs every trial to max_t).

    Ray's formula (``HyperBandScheduler.__init__``): s_max + 1 = round(log(max_t) / log(eta)) + 1
    brackets; bracket s holds ceil((s_max + 1) / (s + 1) * eta**s) trials, which start with
    int(max_t * eta**-s) epochs; brackets whose start would be 0 epochs are not made. Re-derived
    here because Ray keeps it in private lambdas; tests check the two agree.
    """
    s_max_1 = int(round(math.log(max_epochs) / math.log(reduction_factor))) + 1
    return tuple(math.ceil(s_max_1 / (s + 1) * reduction_factor ** s) for s in range(s_max_1)
                 if int(max_epochs * reduction_factor ** (-s)) > 0)
