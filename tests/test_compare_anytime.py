"""Anytime curves and compute-to-target on synthetic results with known answers (no Ray)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from sweeps import anytime as at
from trainables.metrics import EPOCH_TIME_S, TRIAL_ID, VAL_ACC


def _results(rows: list[tuple[str, float, float]], *, times: list[float] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[TRIAL_ID, VAL_ACC, EPOCH_TIME_S])
    if times is not None:
        frame[at.COMPLETED_AT] = times
    return frame


def test_curve_orders_by_completion_time_and_keeps_best_so_far():
    # Two concurrent trials; rows arrive grouped by trial but completed interleaved.
    results = _results([("a", 0.2, 1.0), ("a", 0.5, 1.0), ("b", 0.3, 2.0), ("b", 0.4, 2.0)],
                       times=[1.0, 3.0, 2.0, 4.0])
    curve = at.anytime_curve(results)
    assert list(curve[at.TRIAL_EPOCHS]) == [1, 2, 3, 4]
    # Completion order: a0.2, b0.3, a0.5, b0.4.
    assert list(curve[at.BEST_VAL_ACC]) == [0.2, 0.3, 0.5, 0.5]
    assert list(curve[at.TRIAL_SECONDS]) == [1.0, 3.0, 4.0, 6.0]


def test_curve_ties_in_completion_time_keep_input_order():
    results = _results([("a", 0.1, 1.0), ("b", 0.9, 1.0), ("c", 0.5, 1.0)], times=[5.0, 5.0, 5.0])
    curve = at.anytime_curve(results)
    assert list(curve[at.BEST_VAL_ACC]) == [0.1, 0.9, 0.9]
    assert at.epochs_to_target(curve, target=0.9) == 2.0


def test_nan_epochs_cost_compute_but_never_count_as_best():
    results = _results([("a", math.nan, 1.0), ("a", 0.4, 1.0), ("b", math.nan, 1.0), ("b", math.inf, 1.0),
                        ("c", 0.3, math.nan)])
    curve = at.anytime_curve(results)
    best = curve[at.BEST_VAL_ACC].to_numpy()
    assert math.isnan(best[0])
    assert list(best[1:]) == [0.4, 0.4, 0.4, 0.4]
    assert list(curve[at.TRIAL_EPOCHS]) == [1, 2, 3, 4, 5]
    # An epoch with no timing contributes no seconds.
    assert curve[at.TRIAL_SECONDS].iloc[-1] == 4.0


def test_budget_truncates_to_the_first_trial_epochs():
    results = _results([("a", 0.1, 1.0), ("a", 0.2, 1.0), ("b", 0.9, 1.0)])
    curve = at.anytime_curve(results, budget=2)
    assert len(curve) == 2
    assert curve[at.BEST_VAL_ACC].iloc[-1] == 0.2
    assert math.isnan(at.epochs_to_target(curve, target=0.9))


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_budget_must_be_a_positive_int(budget):
    with pytest.raises(ValueError, match="budget"):
        at.anytime_curve(_results([("a", 0.1, 1.0)]), budget=budget)


def test_missing_val_acc_is_named():
    with pytest.raises(ValueError, match=VAL_ACC):
        at.anytime_curve(pd.DataFrame({TRIAL_ID: ["a"]}))


def test_epochs_to_target_first_reaching_epoch_inclusive():
    curve = at.anytime_curve(_results([("a", 0.1, 1.0), ("a", 0.5, 1.0), ("a", 0.5, 1.0), ("a", 0.7, 1.0)]))
    assert at.epochs_to_target(curve, target=0.5) == 2.0  # reaching exactly the target counts
    assert at.epochs_to_target(curve, target=0.6) == 4.0
    assert at.epochs_to_target(curve, target=0.0) == 1.0
    assert math.isnan(at.epochs_to_target(curve, target=0.71))


def test_epochs_to_target_never_reached_when_all_nan():
    curve = at.anytime_curve(_results([("a", math.nan, 1.0), ("b", math.nan, 1.0)]))
    assert math.isnan(at.epochs_to_target(curve, target=0.1))
    with pytest.raises(ValueError, match="target"):
        at.epochs_to_target(curve, target=math.nan)


def test_best_at_and_summary():
    curve = at.anytime_curve(_results([("a", 0.1, 2.0), ("a", 0.3, 2.0), ("b", 0.2, 1.0)]))
    assert at.best_at(curve, trial_epochs=1) == 0.1
    assert at.best_at(curve, trial_epochs=10) == 0.3
    assert math.isnan(at.best_at(curve, trial_epochs=0))
    row = at.summarise(curve, target=0.25)
    assert row == {at.BEST_VAL_ACC: 0.3, at.TRIAL_EPOCHS: 3, at.TRIAL_SECONDS: 5.0,
                   at.EPOCHS_TO_TARGET: 2.0, at.TARGET: 0.25}
    empty = at.summarise(at.anytime_curve(_results([])), target=0.25)
    assert empty[at.TRIAL_EPOCHS] == 0 and math.isnan(empty[at.BEST_VAL_ACC])
