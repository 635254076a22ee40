"""Ray Tune's saved experiment state, read without Ray: which trials a sweep has and their statuses.

Tune writes ``experiment_state-<start time>.json`` into the experiment folder at every snapshot,
one file per driver run (a resumed sweep adds one), and restores from the greatest name
(``ray.tune.execution.experiment_state._find_newest_experiment_checkpoint``, private, so mirrored
here); its ``trial_data`` holds each trial's JSON state (id, status, folder). ``--resume``
reads it to say what is left before Ray starts, ``sweeps.backfill`` to give runs their end status,
and the report to tell a trial that had not ended from one a scheduler stopped. Here, not in
``sweeps``, because analysis never imports sweeps. Ray has no public reader for it short of
``ExperimentAnalysis``, which also loads every trial's results: more than any of these needs,
and slow on remote storage.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Iterable

import pyarrow.fs

from trainables import metrics as m

STATE_GLOB = "experiment_state-*.json"
TERMINATED, ERROR = "TERMINATED", "ERROR"  # Ray's final trial statuses
PAUSED = "PAUSED"  # Hyperband's paused trials; also those it stopped as a finished sweep ended (trial_ends.py)


@dataclass(frozen=True)
class SavedTrial:
    trial_id: str
    status: str  # TERMINATED, ERROR, or PENDING/RUNNING/PAUSED: left unfinished
    folder: str  # the trial's folder name under the experiment folder


def _top_level(experiment_uri: str) -> tuple[pyarrow.fs.FileSystem, list[pyarrow.fs.FileInfo]]:
    fs, path = pyarrow.fs.FileSystem.from_uri(experiment_uri)
    try:
        return fs, fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=False))
    except (FileNotFoundError, NotADirectoryError):
        return fs, []


def _state_files(infos: Iterable[pyarrow.fs.FileInfo]) -> list[str]:
    # The greatest name last, as Tune picks it: the timestamp in the name sorts in time order.
    return sorted(i.path for i in infos if i.is_file and fnmatch.fnmatch(i.base_name, STATE_GLOB))


def has_state(experiment_uri: str) -> bool:
    """Whether Tune saved any experiment state here: without one there is nothing to restore, even
    where tuner.pkl (written when the Tuner is made, before any trial) says otherwise."""
    return bool(_state_files(_top_level(experiment_uri)[1]))


def trial_folders(experiment_uri: str) -> list[str]:
    """Names of the folders under the experiment that hold a trial (Ray writes params.json into each
    as the trial starts); other folders, such as an analysis report's, are not trials."""
    fs, infos = _top_level(experiment_uri)
    folders = [i for i in infos if i.type == pyarrow.fs.FileType.Directory]
    return [i.base_name for i in folders
            if any(fs.get_file_info(f"{i.path}/{name}").is_file for name in ("params.json", "result.json"))]


def saved_trials(experiment_uri: str) -> list[SavedTrial]:
    """The trials in the newest experiment state file under a local path or URI; [] if there is none."""
    fs, infos = _top_level(experiment_uri)
    states = _state_files(infos)
    if not states:
        return []
    with fs.open_input_stream(states[-1]) as stream:
        text = stream.read().decode()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"Ray's experiment state {states[-1]} is not valid JSON ({exc}): the sweep's saved state is "
                         "damaged (a copy cut short?). Copy the folder again from where the sweep ran.") from exc
    trials = []
    for entry in data.get("trial_data", []):
        trial = json.loads(entry[0]) if isinstance(entry, list) else entry
        trials.append(SavedTrial(trial_id=trial["trial_id"], status=trial.get("status", ""),
                                 folder=trial.get("relative_logdir", "")))
    return trials


def ended(status: str, summary_state: str | None) -> bool:
    """Whether a trial had ended: Ray ended it; or Hyperband paused it as its sweep finished. Tune
    saves such trials PAUSED (sweeps/trial_ends.py), and only the driver's summary.csv tells them
    from a paused trial of an interrupted sweep (which it labels interrupted)."""
    return status in (TERMINATED, ERROR) or (status == PAUSED and summary_state in m.END_STATES)
