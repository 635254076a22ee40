"""end_state: how a trial ended, decided from its last result alone (synthetic results); the
end-of-sweep lines on why trials errored. A real sweep's summary is tested in test_sweeps_e2e.py
and, with errored trials, in test_tracking_e2e.py."""
from __future__ import annotations

import pandas as pd
import pytest

from sweeps.summary import ERROR, end_state, error_lines
from trainables import metrics


@pytest.mark.parametrize("last, errored, expected", [
    ({metrics.EPOCH: 10, metrics.DIVERGED: 0}, False, metrics.COMPLETED),
    ({metrics.EPOCH: 3, metrics.DIVERGED: 0}, False, metrics.STOPPED_EARLY),  # scheduler stopped it
    ({metrics.EPOCH: 4, metrics.DIVERGED: 0, metrics.EARLY_STOPPED: 1}, False, metrics.STOPPED_EARLY),
    ({metrics.EPOCH: 2, metrics.DIVERGED: 1, metrics.VAL_ACC: float("nan")}, False, metrics.DIVERGED_STATE),
    ({metrics.EPOCH: 10, metrics.DIVERGED: 1}, False, metrics.DIVERGED_STATE),
    ({metrics.EPOCH: 5}, True, metrics.ERRORED),
    (None, False, metrics.STOPPED_EARLY),  # stopped before its first report, without an error
    (None, True, metrics.ERRORED),  # failed before its first report
    ({metrics.TRAINING_ITERATION: 10}, False, metrics.COMPLETED),  # Ray's counter when epoch is missing
])
def test_end_state(last, errored, expected):
    assert end_state(last, max_epochs=10, errored=errored) == expected
    assert expected in metrics.END_STATES


def test_error_lines_group_trials_by_error_most_frequent_first():
    table = pd.DataFrame({
        metrics.TRIAL_ID: [f"t{i}" for i in range(7)],
        metrics.END_STATE_TAG: [metrics.ERRORED] * 6 + [metrics.COMPLETED],
        ERROR: ["ValueError: a", "OOM", "OOM", "OOM", "OOM", "KeyError: k", "ValueError: stale, retried to success"],
    })
    lines = error_lines(table, limit=2)
    assert lines[0].startswith("Errors (6 trials;")
    assert lines[1] == "  OOM  [t1, t2, t3 and 1 more]"
    assert lines[2] == "  ValueError: a  [t0]"
    assert "1 more distinct errors" in lines[3] and len(lines) == 4
    assert error_lines(table[table[metrics.END_STATE_TAG] == metrics.COMPLETED]) == []


def test_an_interrupt_says_which_trials_had_run_and_ranks_only_those():
    from sweeps.summary import EPOCHS_RUN, SweepSummary, format_summary

    table = pd.DataFrame({metrics.TRIAL_ID: ["a", "b", "c", "d"],
                          metrics.END_STATE_TAG: [metrics.INTERRUPTED, metrics.INTERRUPTED, metrics.INTERRUPTED,
                                                  metrics.STOPPED_EARLY],
                          metrics.BEST_VAL_ACC: [0.4, 0.3, float("nan"), 0.2], EPOCHS_RUN: [9, 3, 0, 1],
                          "trial_seconds": [9.0, 3.0, 0.0, 1.0], ERROR: ["", "", "", ""]})
    text = format_summary(SweepSummary(table=table, experiment_path="/x"), top_k=5, storage_path="/s",
                          interrupted=True, cut_off=3)
    assert ("3 cut off: 2 after some epochs (mid-training or paused at a rung) and 1 with no epoch yet "
            f"(listed as {metrics.INTERRUPTED}; --resume continues them)") in text
    top = text.split("Top ")[1]
    assert "Top 3 trials" in text and " c " not in top.split("Compute")[0]
    # Interrupted before any epoch: a sentence, not pandas' "Empty DataFrame" (found by review).
    none_ran = table.assign(**{EPOCHS_RUN: 0})
    text = format_summary(SweepSummary(table=none_ran, experiment_path="/x"), top_k=5, storage_path="/s",
                          interrupted=True, cut_off=4)
    assert "No trial has run an epoch yet: nothing to rank." in text and "Empty DataFrame" not in text
