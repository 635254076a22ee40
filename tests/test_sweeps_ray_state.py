"""Ray's saved experiment state read without Ray, and the --resume progress line.

The files here follow the layout Tune 2.x writes (``trial_data``: [trial JSON, runtime metadata]);
reading the files of real Tune runs is covered by test_backfill.py (an errored trial) and the
resume tests in test_sweeps_resume.py and test_tracking_e2e.py, which compare with Ray's own reader.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeps.ray_state import SavedTrial, resume_progress, saved_trials


def _write_state(folder: Path, stamp: str, statuses: dict[str, str]) -> None:
    trial_data = [[json.dumps({"trial_id": tid, "status": status, "relative_logdir": f"cifar_trial_{tid}"}), "{}"]
                  for tid, status in statuses.items()]
    (folder / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": trial_data, "runner_data": {}}))


def test_reads_the_newest_state_file(tmp_path: Path) -> None:
    _write_state(tmp_path, "2026-11-23_01-00-00", {"a": "RUNNING", "b": "PENDING"})
    _write_state(tmp_path, "2026-11-23_02-00-00", {"a": "TERMINATED", "b": "ERROR"})
    (tmp_path / "cifar_trial_a").mkdir()  # trial folders and other files are not state files
    (tmp_path / "sweep_config.json").write_text("{}")
    assert saved_trials(str(tmp_path)) == [SavedTrial("a", "TERMINATED", "cifar_trial_a"),
                                           SavedTrial("b", "ERROR", "cifar_trial_b")]


def test_no_state_is_no_trials(tmp_path: Path) -> None:
    assert saved_trials(str(tmp_path)) == []
    assert saved_trials(str(tmp_path / "missing")) == []


def test_a_damaged_state_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / "experiment_state-2026-11-23_02-00-00.json").write_text('{"trial_data": [')
    with pytest.raises(ValueError, match=r"experiment_state-2026-11-23_02-00-00\.json is not valid JSON"):
        saved_trials(str(tmp_path))


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
