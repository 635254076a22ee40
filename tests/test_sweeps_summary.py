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
