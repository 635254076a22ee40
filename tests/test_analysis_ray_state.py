"""Ray's saved experiment state read without Ray, and whether a trial had ended.

The files here follow the layout Tune 2.x writes (``trial_data``: [trial JSON, runtime metadata]);
reading the files of real Tune runs is covered by test_backfill.py (an errored trial) and the
resume tests in test_sweeps_resume.py and test_tracking_e2e.py, which compare with Ray's own reader.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.ray_state import PAUSED, SavedTrial, ended, saved_trials
from trainables import metrics as m


def write_state(folder: Path, stamp: str, statuses: dict[str, str], *, trial_folder: str = "cifar_trial_{}") -> None:
    """An experiment state file as Tune writes it; ``trial_folder``: each trial's folder name."""
    trial_data = [[json.dumps({"trial_id": tid, "status": status, "relative_logdir": trial_folder.format(tid)}), "{}"]
                  for tid, status in statuses.items()]
    (folder / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": trial_data, "runner_data": {}}))


def test_reads_the_newest_state_file(tmp_path: Path) -> None:
    write_state(tmp_path, "2026-11-23_01-00-00", {"a": "RUNNING", "b": "PENDING"})
    write_state(tmp_path, "2026-11-23_02-00-00", {"a": "TERMINATED", "b": "ERROR"})
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


@pytest.mark.parametrize("status", ["TERMINATED", "ERROR"])
def test_a_trial_ray_ended_has_ended(status: str) -> None:
    assert ended(status, None) and ended(status, m.INTERRUPTED)


@pytest.mark.parametrize("status", ["RUNNING", "PENDING", ""])
def test_a_running_or_pending_trial_has_not_ended_whatever_a_summary_says(status: str) -> None:
    # An errored trial a resumed sweep retries: summary.csv still says errored, Tune says RUNNING.
    assert not ended(status, None) and not ended(status, m.ERRORED)


def test_a_paused_trial_has_ended_only_where_the_summary_gave_it_an_end_state() -> None:
    assert ended(PAUSED, m.STOPPED_EARLY)  # Hyperband's, stopped as its sweep finished
    assert not ended(PAUSED, m.INTERRUPTED) and not ended(PAUSED, None)  # an interrupted sweep's
