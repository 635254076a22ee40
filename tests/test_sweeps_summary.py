"""end_state: how a trial ended, decided from its last result alone (synthetic results)."""
from __future__ import annotations

import pytest

from sweeps.summary import end_state
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
