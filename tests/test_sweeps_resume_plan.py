"""The one line a --resume plan prints, from Ray's saved trial statuses."""
from __future__ import annotations

from sweeps.resume_plan import resume_progress


def test_progress_of_a_finished_sweep_says_nothing_is_left() -> None:
    line = resume_progress(["TERMINATED"] * 4, expected=4)
    assert line.startswith("all 4 trials had finished: nothing left to run")


def test_progress_counts_what_is_kept_and_what_runs_again() -> None:
    line = resume_progress(["TERMINATED", "TERMINATED", "RUNNING", "PAUSED", "PENDING", "ERROR"], expected=8)
    assert line == ("2 of 8 trials had finished (kept as they are); 3 unfinished continue (from their last "
                    "checkpoint; those that never ran, from the start); 1 errored run again from their last "
                    "checkpoint; 2 not started yet")


def test_progress_before_any_trial_was_created() -> None:
    assert resume_progress([], expected=3) == "0 of 3 trials had finished (kept as they are); 3 not started yet"
