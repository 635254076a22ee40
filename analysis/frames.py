"""The tidy frame every analysis function reads: one row per trial-epoch.

Columns: ``trial_id``, ``epoch``, the ``CURVE_METRICS``, the other per-epoch metrics the
trainable reported (when present), one ``config/<key>`` column per hyperparameter and
``end_state`` (one of ``END_STATES``) per trial. This module builds it from a Ray Tune result
folder and holds the small helpers shared by the loaders (the MLflow loader is in
``analysis.mlflow_io``).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from analysis.errors import ERROR_FILE, folder_trial_id, trial_errors
from analysis.ray_state import STATE_GLOB, ended, saved_trials
from trainables import metrics as m

END_STATE = m.END_STATE_TAG  # the frame's end-state column carries the tag's name
# Per-epoch metrics kept in the frame, in column order; Ray's own bookkeeping (timestamps,
# hostnames, pids) is dropped so a frame from Ray and one from MLflow hold the same columns.
EPOCH_METRICS = (*m.CURVE_METRICS, m.EPOCH_TIME_S, m.TRAIN_TIME_S, m.IMAGES_PER_S, m.NUM_PARAMS,
                 m.DIVERGED, m.EARLY_STOPPED, m.BEST_VAL_ACC, m.BEST_EPOCH)
# Ray writes these into a trial folder when the trainable raised.
_ERROR_FILES = (ERROR_FILE, "error.pkl")


def flatten_config(config: Mapping[str, Any], *, prefix: str = m.CONFIG_PREFIX) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"config/a/b": 1}``, the way Ray flattens configs in progress.csv."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(m.CONFIG_PREFIX)]


def searched_columns(frame: pd.DataFrame) -> list[str]:
    """The config columns whose value differs between trials: what the sweep searched. Missing
    values do not count: a diagnosis row of a trial without an epoch has no config."""
    return [c for c in config_columns(frame) if frame[c].dropna().astype(str).nunique() > 1]


def infer_end_state(rows: pd.DataFrame, *, errored: bool, max_epochs: float) -> str:
    """How a trial ended, from its curves when nothing recorded it.

    Precedence: an error file wins; then divergence (the trainable's flag or a non-finite
    loss); then stopping before ``max_epochs`` (the trial's configured epochs, or the most any
    trial of the sweep ran), whether a scheduler or the trainable's patience stopped it.
    """
    if errored:
        return m.ERRORED
    if m.DIVERGED in rows and (pd.to_numeric(rows[m.DIVERGED], errors="coerce").fillna(0) >= 1).any():
        return m.DIVERGED_STATE
    losses = rows[[c for c in (m.TRAIN_LOSS, m.VAL_LOSS) if c in rows]].to_numpy(dtype=float)
    if losses.size and not np.isfinite(losses).all():
        return m.DIVERGED_STATE
    if m.EARLY_STOPPED in rows and (pd.to_numeric(rows[m.EARLY_STOPPED], errors="coerce").fillna(0) >= 1).any():
        return m.STOPPED_EARLY
    return m.STOPPED_EARLY if rows[m.EPOCH].max() < max_epochs else m.COMPLETED


def tidy(records: Iterable[Mapping[str, Any]], *, end_states: Mapping[str, str] | None = None,
         errored: Iterable[str] = ()) -> pd.DataFrame:
    """Build the tidy frame from flat per-epoch records (metrics + trial_id + config/<key>).

    ``end_states`` maps trial ids to a recorded end state, or to one of ``NOT_ENDED`` for a trial
    that had not ended; trials without one get ``infer_end_state``. Metrics become float64
    (missing -> NaN), ``epoch`` int64.
    """
    frame = pd.DataFrame.from_records(list(records))
    if frame.empty:
        raise ValueError("No trial reported any epoch, so there are no learning curves to analyse. "
                         "Check that the sweep ran and that its trials called tune.report.")
    if m.EPOCH not in frame:
        frame[m.EPOCH] = frame[m.TRAINING_ITERATION]
    metric_cols = [c for c in EPOCH_METRICS if c in frame]
    for col in metric_cols:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame[m.EPOCH] = frame[m.EPOCH].astype("int64")
    frame[m.TRIAL_ID] = frame[m.TRIAL_ID].astype(str)
    cfg_cols = sorted(config_columns(frame))
    frame = frame[[m.TRIAL_ID, m.EPOCH, *metric_cols, *cfg_cols]]
    frame = frame.sort_values([m.TRIAL_ID, m.EPOCH], kind="mergesort")
    # One row per trial-epoch: a trial retried from an older checkpoint reports some epochs again
    # (Ray's result.json keeps both); the rerun's report is the one its later epochs build on.
    frame = frame.drop_duplicates([m.TRIAL_ID, m.EPOCH], keep="last").reset_index(drop=True)
    frame[END_STATE] = _end_states(frame, recorded=end_states or {}, errored=set(errored))
    return frame


def _end_states(frame: pd.DataFrame, *, recorded: Mapping[str, str], errored: set[str]) -> pd.Series:
    epochs_col = f"{m.CONFIG_PREFIX}epochs"
    sweep_max = float(frame[m.EPOCH].max())
    states: dict[str, str] = {}
    for trial_id, rows in frame.groupby(m.TRIAL_ID, sort=False):
        if recorded.get(trial_id) in (*m.END_STATES, *m.NOT_ENDED):
            states[trial_id] = recorded[trial_id]
            continue
        configured = pd.to_numeric(rows[epochs_col], errors="coerce").iloc[0] if epochs_col in rows else math.nan
        max_epochs = float(configured) if math.isfinite(configured) else sweep_max
        states[trial_id] = infer_end_state(rows, errored=trial_id in errored, max_epochs=max_epochs)
    return frame[m.TRIAL_ID].map(states).astype(str)


def _read_result_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for index, line in enumerate(lines):
        try:
            rows.append(json.loads(line))  # Python's json reads Ray's NaN / Infinity tokens
        except json.JSONDecodeError:
            # A trial killed mid-write leaves a truncated last line; everything before it is valid.
            if index == len(lines) - 1:
                break
            raise
    return rows


SWEEP_SUMMARY_CSV = "summary.csv"  # sweeps.summary.SUMMARY_CSV (analysis never imports sweeps; a test checks)


def trial_folders(experiment_dir: str | Path) -> list[Path]:
    """The trial folders (each holding Ray's result.json) of one Ray Tune experiment folder."""
    root = Path(experiment_dir)
    if not root.is_dir():
        raise ValueError(f"The sweep folder {str(root)!r} does not exist. Pass a Ray Tune experiment "
                         "folder (storage path / experiment name), e.g. ./ray_results/cifar.")
    folders = sorted(p.parent for p in root.glob("*/result.json"))
    if not folders:
        nested = sorted({p.parent.parent.name for p in root.glob("*/*/result.json")})
        if not nested and any(root.glob(STATE_GLOB)):  # a sweep just started, or stopped before any epoch
            raise ValueError(f"No trial of the sweep in {str(root)!r} has reported an epoch yet (Tune saved its state, "
                             "but no trial folder holds a result.json). Report on it once a trial has run an epoch.")
        hint = (f" It holds experiment folders ({', '.join(nested)}); pass one of them." if nested
                else " Pass the experiment folder that holds one folder per trial.")
        raise ValueError(f"No trial folder with result.json under {str(root)!r}.{hint}")
    return folders


def recorded_end_states(experiment_dir: str | Path) -> dict[str, str]:
    """Trial id -> end state from the sweep's summary.csv (sweeps.cifar writes it as the sweep
    ends); {} without one. Ray's error file cannot say this: it stays after a retry succeeds."""
    path = Path(experiment_dir) / SWEEP_SUMMARY_CSV
    try:
        table = pd.read_csv(path, dtype=str) if path.is_file() else None
    except (ValueError, OSError):
        return {}
    if table is None or not {m.TRIAL_ID, m.END_STATE_TAG} <= set(table.columns):
        return {}
    return dict(zip(table[m.TRIAL_ID], table[m.END_STATE_TAG]))


def not_ended_trials(experiment_dir: str | Path) -> dict[str, str]:
    """Trial id -> ``INTERRUPTED`` or ``UNFINISHED`` for each trial of the folder that had not ended.

    Without this, a trial cut off at epoch 3 of 10 reads as stopped early (its curves alone look
    so). Tune's saved state says which trials had ended; the sweep's summary.csv (written at an
    interrupt) says which of the others an interrupt cut off. A trial Tune still lists as running
    with no such label is unfinished: its sweep is running, or its driver died first. So is one
    that started after Tune's last snapshot (in neither file) unless the summary gave it an end.
    Without Tune's state (a folder copied without it) the summary's labels are all there is.
    """
    root = Path(experiment_dir).resolve()
    recorded = recorded_end_states(root)
    trials = saved_trials(str(root))
    saved = {t.trial_id: t.status for t in trials}
    labelled = {t for t, state in recorded.items() if state == m.INTERRUPTED}
    # Trial folders Tune's state does not name: Ray writes params.json as a trial starts.
    known = {t.folder for t in trials}
    started = {folder_trial_id(p.parent) for name in ("params.json", "result.json") for p in root.glob(f"*/{name}")
               if p.parent.name not in known}
    out = {}
    for trial_id in sorted(saved.keys() | labelled | (started if saved else set())):
        status = saved.get(trial_id)
        if status is not None and ended(status, recorded.get(trial_id)):
            continue
        if status is None and recorded.get(trial_id) in m.END_STATES:
            continue
        out[trial_id] = m.INTERRUPTED if trial_id in labelled else m.UNFINISHED
    return out


def load_ray_results(experiment_dir: str | Path) -> pd.DataFrame:
    """The tidy frame of a Ray Tune experiment folder, read from each trial's result.json; end
    states as the sweep's summary recorded them (``not_ended_trials`` for trials that had not
    ended), else inferred."""
    records: list[dict[str, Any]] = []
    errored: list[str] = []
    for folder in trial_folders(experiment_dir):
        lines = _read_result_lines(folder / "result.json")
        for line in lines:
            record = {k: v for k, v in line.items() if k != "config"}
            record.update(flatten_config(line.get("config") or {}))
            records.append(record)
        if lines and any((folder / name).exists() for name in _ERROR_FILES):
            errored.append(str(lines[0][m.TRIAL_ID]))
    not_ended = not_ended_trials(experiment_dir)
    if not records:
        errors = trial_errors(experiment_dir)
        if not_ended:
            interrupted = sum(state == m.INTERRUPTED for state in not_ended.values())
            how = [f"{interrupted} cut off by an interrupt (python -m sweeps.cifar --resume continues them)"
                   if interrupted else "", f"{len(not_ended) - interrupted} still running or pending"
                   if len(not_ended) > interrupted else "", f"{len(errors)} errored" if errors else ""]
            raise ValueError(f"No trial has reported an epoch yet: {', '.join(h for h in how if h)}. Report on the "
                             "sweep once a trial has run an epoch.")
        if errors:
            first = next(iter(errors.values()))
            raise ValueError(f"No trial reported any epoch: {len(errors)} of the {len(trial_folders(experiment_dir))} "
                             f"trials errored before their first, e.g. {first!r} (tracebacks: error.txt in each trial "
                             f"folder under {str(experiment_dir)!r}). Fix that and run the sweep again.")
    final = {t: state for t, state in recorded_end_states(experiment_dir).items() if state in m.END_STATES}
    return tidy(records, end_states={**final, **not_ended}, errored=errored)


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its last epoch (the frame is sorted by trial and epoch)."""
    return frame.groupby(m.TRIAL_ID, sort=False).tail(1).reset_index(drop=True)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs the column(s) {missing}, which the frame lacks "
                         f"(it has {list(frame.columns)}). Build it with load_ray_results or load_mlflow.")


# sweeps.compare names each run's Ray experiment "compare-<strategy>-seed<seed>[-<stamp>]", with the
# strategy's "+" written as "-" (random+asha -> random-asha), and saves its settings beside its tables.
_COMPARE_EXPERIMENT = re.compile(r"^compare-(?P<strategy>.+)-seed(?P<seed>\d+)(?:-.*)?$")
COMPARE_CONFIG_FILE = "compare_config.json"


def comparison_results_dirs(folder: str | Path) -> list[Path]:
    """Folders holding a sweeps.compare folder's Ray experiments, likeliest first: the --storage-path
    it saved (as given: relative to where it ran, or else to the folder), then ``<folder>/ray_results``."""
    folder = Path(folder)
    candidates = [folder / "ray_results"]
    config = folder / COMPARE_CONFIG_FILE
    if config.is_file():
        storage = str(json.loads(config.read_text()).get("sweep", {}).get("storage_path") or "")
        if storage and "://" not in storage.removeprefix("file://"):
            path = Path(storage.removeprefix("file://")).expanduser()
            candidates = [path, folder / path] + candidates if not path.is_absolute() else [path] + candidates
    return [c for c in dict.fromkeys(candidates) if c.is_dir() and any(c.glob("compare-*"))]


def _saved_settings(folder: Path) -> dict[str, Any]:
    config = folder / COMPARE_CONFIG_FILE
    return json.loads(config.read_text()) if config.is_file() else {}


def _strategy_names(folder: Path) -> dict[str, str]:
    """Folder spelling -> the strategy's own name, from the saved settings."""
    return {s.replace("+", "-"): s for s in _saved_settings(folder).get("strategies", [])}


def _finished_sweeps(folder: Path, *, strategy_col: str, seed_col: str) -> set[tuple[str, int]] | None:
    """(strategy, seed) of the sweeps the comparison finished (its summary rows); None if unknown.
    A sweep a Ctrl-C cut short is left out of the results, so out of the diagnosis too."""
    summary = folder / "summary.csv"
    if not summary.is_file():
        return None
    rows = pd.read_csv(summary)
    if strategy_col not in rows or seed_col not in rows:
        return None
    return {(str(a), int(b)) for a, b in zip(rows[strategy_col], rows[seed_col])}


def _comparison_experiments(folder: Path, *, strategy_col: str, seed_col: str) -> list[tuple[Path, str, int]]:
    """(Ray experiment folder, strategy, seed) of each sweep the comparison finished, where it stored them."""
    names = _strategy_names(folder)
    stamp = str(_saved_settings(folder).get("stamp") or "")
    finished = _finished_sweeps(folder, strategy_col=strategy_col, seed_col=seed_col)
    found = []
    for results in comparison_results_dirs(folder)[:1]:
        for experiment in sorted(results.glob(f"compare-*{stamp}")):
            match = _COMPARE_EXPERIMENT.match(experiment.name)
            if match is None or not experiment.is_dir():
                continue
            strategy, seed = names.get(match["strategy"], match["strategy"]), int(match["seed"])
            if finished is None or (strategy, seed) in finished:
                found.append((experiment, strategy, seed))
    return found


def load_comparison_trials(folder: str | Path, *, strategy_col: str, seed_col: str) -> pd.DataFrame | None:
    """All trials of a sweeps.compare folder's Ray experiments, with strategy and seed columns.

    Looks where the comparison stored them (``comparison_results_dirs``); None when no experiment
    of the comparison is there. Trial ids are prefixed with the experiment name, as two experiments
    may reuse one.
    """
    frames = []
    for experiment, strategy, seed in _comparison_experiments(Path(folder), strategy_col=strategy_col,
                                                              seed_col=seed_col):
        # A sweep whose every trial failed before its first epoch has no rows (its errors do:
        # load_comparison_errors); load_ray_results would refuse it.
        if not any(p.stat().st_size for p in experiment.glob("*/result.json")):
            continue
        frame = load_ray_results(experiment)
        frame[m.TRIAL_ID] = experiment.name + "/" + frame[m.TRIAL_ID]
        frame.insert(1, strategy_col, strategy)
        frame.insert(2, seed_col, seed)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def load_comparison_errors(folder: str | Path, *, strategy_col: str,
                           seed_col: str) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The errors of a sweeps.compare folder's trials, ids prefixed as ``load_comparison_trials``
    does: (trial id -> error line, trial id -> its strategy and seed). The second is what a trial
    that failed before its first epoch has no row to carry."""
    errors: dict[str, str] = {}
    origins: dict[str, dict[str, Any]] = {}
    for experiment, strategy, seed in _comparison_experiments(Path(folder), strategy_col=strategy_col,
                                                              seed_col=seed_col):
        for trial_id, error in trial_errors(experiment).items():
            key = f"{experiment.name}/{trial_id}"
            errors[key] = error
            origins[key] = {strategy_col: strategy, seed_col: seed}
    return errors, origins
