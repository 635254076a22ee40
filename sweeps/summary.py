"""End of a sweep: how each trial ended, the best config's test accuracy, compute spent.

``end_state`` is a pure decision on a trial's last result; ``summarize`` turns Tune's ResultGrid
into a table (one row per trial) and, when asked, evaluates the best checkpoint on the test
split (the only place a sweep reads it); ``write_summary`` puts ``summary.csv`` and
``best_config.json`` in the experiment folder.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

import pandas as pd
import pyarrow.fs

from analysis.errors import error_line
from sweeps.space_convert import trial_dict
from trainables import metrics

SUMMARY_CSV = "summary.csv"
BEST_CONFIG_JSON = "best_config.json"
TRIAL_SECONDS = "trial_seconds"
EPOCHS_RUN = "epochs"
ERROR = "error"  # the exception that ended an errored trial, one line (analysis.errors.error_line)
MAX_ERROR_GROUPS = 5  # distinct errors the end-of-sweep text lists; summary.csv has every trial's
_TIME_TOTAL = "time_total_s"  # Ray Tune's cumulative trial time, in every result


def end_state(last_result: Mapping[str, Any] | None, *, max_epochs: int, errored: bool = False) -> str:
    """How a trial ended, from its last reported result.

    errored: Ray gave up on it (after --max-failures retries); diverged: the trainable flagged
    a non-finite/exploding loss; completed: it ran all ``max_epochs``; stopped_early: the
    scheduler (ASHA/Hyperband), an experiment-level stopper (sweeps.compare's budget) or the
    trainable's patience rule ended it before that, possibly before its first report.
    """
    if errored:
        return metrics.ERRORED
    if not last_result:
        return metrics.STOPPED_EARLY
    if last_result.get(metrics.DIVERGED):
        return metrics.DIVERGED_STATE
    epochs = last_result.get(metrics.EPOCH, last_result.get(metrics.TRAINING_ITERATION, 0)) or 0
    return metrics.COMPLETED if epochs >= max_epochs else metrics.STOPPED_EARLY


def _finite(x: Any) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _best_val_acc(result: Any) -> float:
    frame = result.metrics_dataframe
    if frame is not None and metrics.VAL_ACC in frame:
        values = pd.to_numeric(frame[metrics.VAL_ACC], errors="coerce")
        if values.notna().any():
            return float(values.max())
    return _finite((result.metrics or {}).get(metrics.VAL_ACC))


def trial_row(result: Any, *, max_epochs: int, keys: list[str], cut_off: frozenset[str] = frozenset()
              ) -> dict[str, Any]:
    """One summary row for a ray.tune.Result; ``cut_off``: ids of trials an interrupt cut short."""
    last = result.metrics or {}
    config = (last.get("config") or getattr(result, "config", None) or {})
    epochs_cap = min(max_epochs, config.get("epochs") or max_epochs)  # the trial's own length
    trial_id = last.get(metrics.TRIAL_ID) or result.path.rstrip("/").rsplit("/", 1)[-1]
    state = end_state(last, max_epochs=epochs_cap, errored=result.error is not None)
    if trial_id in cut_off and state != metrics.ERRORED:
        # Tune ends a trial running at Ctrl+C as if it had finished (sweeps/trial_ends.py); by its
        # last result alone it would read stopped_early or even completed.
        state = metrics.INTERRUPTED
    return {
        metrics.TRIAL_ID: trial_id,
        metrics.END_STATE_TAG: state,
        metrics.BEST_VAL_ACC: _best_val_acc(result),
        metrics.VAL_ACC: _finite(last.get(metrics.VAL_ACC)),
        EPOCHS_RUN: int(last.get(metrics.TRAINING_ITERATION, 0) or 0),
        TRIAL_SECONDS: _finite(last.get(_TIME_TOTAL)) if last else 0.0,
        **{metrics.CONFIG_PREFIX + k: config.get(k) for k in keys},
        ERROR: error_line(str(result.error)) or type(result.error).__name__ if result.error is not None else "",
    }


@dataclass(frozen=True)
class SweepSummary:
    table: pd.DataFrame  # one row per trial, best first
    experiment_path: str
    best_trial_id: str | None = None
    best_config: dict[str, Any] = field(default_factory=dict)  # flat TrialConfig dict of the best trial
    best_val_acc: float = math.nan
    test: dict[str, float] = field(default_factory=dict)  # {test_loss, test_acc} of the best checkpoint
    best_checkpoint: str | None = None

    @property
    def num_trials(self) -> int:
        return len(self.table)

    @property
    def num_errored(self) -> int:
        return int((self.table[metrics.END_STATE_TAG] == metrics.ERRORED).sum()) if len(self.table) else 0

    @property
    def trial_epochs(self) -> int:
        """Compute spent: epochs run, summed over trials."""
        return int(self.table[EPOCHS_RUN].sum()) if len(self.table) else 0

    @property
    def trial_seconds(self) -> float:
        return float(self.table[TRIAL_SECONDS].fillna(0).sum()) if len(self.table) else 0.0

    @property
    def failed(self) -> bool:
        """True when no trial produced a result worth keeping (all errored, or none ran)."""
        return self.num_trials == 0 or self.num_errored == self.num_trials


def summarize(grid: Any, *, max_epochs: int, keys: list[str], data: Any = None, device: str = "cpu",
              experiment_path: str, cut_off: Iterable[str] = ()) -> SweepSummary:
    """Summary of a finished ResultGrid; with ``data``, the best checkpoint's test metrics too.
    ``cut_off``: ids of trials an interrupt cut short (labelled interrupted)."""
    results = [grid[i] for i in range(len(grid))]
    cut = frozenset(cut_off)
    rows = [trial_row(r, max_epochs=max_epochs, keys=keys, cut_off=cut) for r in results]
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(metrics.BEST_VAL_ACC, ascending=False, na_position="last").reset_index(drop=True)
    if table.empty or table[metrics.BEST_VAL_ACC].isna().all():
        return SweepSummary(table=table, experiment_path=experiment_path)
    best = grid.get_best_result(metric=metrics.OBJECTIVE, mode=metrics.OBJECTIVE_MODE, scope="all")
    # get_best_checkpoint raises when a trial has none registered (e.g. one stopped right after its
    # first report, before Tune recorded that report's checkpoint).
    ranked = best.get_best_checkpoint(metrics.OBJECTIVE, metrics.OBJECTIVE_MODE) if best.best_checkpoints else None
    checkpoint = ranked or best.checkpoint
    test: dict[str, float] = {}
    if data is not None and checkpoint is not None:
        from trainables.cifar import evaluate_checkpoint  # torch is only needed for this step

        with checkpoint.as_directory() as directory:
            test = evaluate_checkpoint(directory, data=data, device=device)
    return SweepSummary(
        table=table, experiment_path=experiment_path,
        best_trial_id=(best.metrics or {}).get(metrics.TRIAL_ID),
        best_config=trial_dict(best.config or {}),
        best_val_acc=_best_val_acc(best),
        test={k: float(v) for k, v in test.items()},
        best_checkpoint=checkpoint_uri(checkpoint, experiment_path=experiment_path) if checkpoint is not None else None,
    )


def checkpoint_uri(checkpoint: Any, *, experiment_path: str) -> str:
    """Where a Ray ``Checkpoint`` lives, openable by any reader: its path on local storage, a URI
    elsewhere. Ray keeps remote paths relative to their filesystem (bucket/path, no scheme), so the
    URI is the experiment's own with the checkpoint's place under it."""
    fs = getattr(checkpoint, "filesystem", None)
    scheme = getattr(fs, "type_name", "local")
    if scheme == "local" or "://" in checkpoint.path:
        return checkpoint.path
    parts = urlsplit(experiment_path)
    base = f"{parts.netloc}{parts.path}".rstrip("/")
    if "://" in experiment_path and checkpoint.path.startswith(base + "/"):
        return experiment_path.rstrip("/") + checkpoint.path[len(base):]
    return f"{'gs' if scheme == 'gcs' else scheme}://{checkpoint.path}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def error_lines(table: pd.DataFrame, *, limit: int = MAX_ERROR_GROUPS) -> list[str]:
    """Why trials errored, one line per distinct error (most frequent first) with the trials it hit:
    a sweep where one config crashed reads differently from one where every trial ran out of memory."""
    if ERROR not in table or not len(table):
        return []
    errored = table[(table[metrics.END_STATE_TAG] == metrics.ERRORED) & (table[ERROR].astype(str) != "")]
    if errored.empty:
        return []
    groups = errored.groupby(ERROR, sort=False)[metrics.TRIAL_ID].apply(list)
    groups = groups.loc[groups.map(len).sort_values(ascending=False, kind="mergesort").index]
    lines = [f"Errors ({len(errored)} trials; the tracebacks are in error.txt in each trial's folder):"]
    for error, ids in groups.head(limit).items():
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        lines.append(f"  {error}  [{shown}]")
    if len(groups) > limit:
        lines.append(f"  ... {len(groups) - limit} more distinct errors: see the {ERROR} column of {SUMMARY_CSV}.")
    return lines


def format_summary(summary: SweepSummary, *, top_k: int, storage_path: str, interrupted: bool = False,
                   cut_off: int = 0) -> str:
    """The end-of-sweep text; ``cut_off``: trials an interrupt cut short (--resume runs them on)."""
    cut = ""
    if cut_off:
        labelled = summary.table[summary.table[metrics.END_STATE_TAG] == metrics.INTERRUPTED] if len(summary.table) \
            else summary.table
        waiting = int((labelled[EPOCHS_RUN] == 0).sum()) if EPOCHS_RUN in labelled else 0
        parts = [f"{cut_off - waiting} after some epochs (mid-training or paused at a rung)" if cut_off > waiting
                 else "", f"{waiting} with no epoch yet" if waiting else ""]
        cut = (f", {cut_off} cut off: {' and '.join(p for p in parts if p)} (listed as {metrics.INTERRUPTED}; "
               "--resume continues them)")
    head = (f"Sweep interrupted: {summary.num_trials} trials so far{cut}, {summary.num_errored} errored."
            if interrupted else f"Sweep finished: {summary.num_trials} trials, {summary.num_errored} errored.")
    lines = [head]
    if len(summary.table):
        counts = summary.table[metrics.END_STATE_TAG].value_counts()
        states = [*metrics.END_STATES, *([metrics.INTERRUPTED] if metrics.INTERRUPTED in counts else [])]
        lines.append("End states: " + ", ".join(f"{s}={int(counts.get(s, 0))}" for s in states))
        ran = summary.table[summary.table[EPOCHS_RUN] > 0] if EPOCHS_RUN in summary.table else summary.table
        top = ran.head(top_k).drop(columns=[ERROR])  # a trial with no epoch has nothing to rank
        top.columns = [c.removeprefix(metrics.CONFIG_PREFIX) for c in top.columns]
        if len(top):
            lines.append(f"Top {len(top)} trials by {metrics.BEST_VAL_ACC}:")
            lines.append(top.to_string(index=False, formatters={c: _fmt for c in top.columns}))
        else:
            lines.append("No trial has run an epoch yet: nothing to rank.")
        lines += error_lines(summary.table)
    if summary.best_trial_id is not None:
        lines.append(f"Best trial {summary.best_trial_id}: {metrics.VAL_ACC}={summary.best_val_acc:.4f}"
                     + (f", {metrics.TEST_ACC}={summary.test[metrics.TEST_ACC]:.4f} "
                        f"(test split, best checkpoint)" if metrics.TEST_ACC in summary.test else ""))
        lines.append(f"Best config: {json.dumps(summary.best_config, sort_keys=True)}")
    lines.append(f"Compute: {summary.trial_epochs} trial-epochs, {summary.trial_seconds:.0f} trial-seconds "
                 f"(summed over {summary.num_trials} trials).")
    lines.append(f"Results: storage {storage_path}, experiment {summary.experiment_path}")
    return "\n".join(lines)


def write_text(uri: str, text: str) -> None:
    """Write a file to a local path or any URI pyarrow reaches (the storage Ray Tune uses)."""
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(text.encode())


def read_text(uri: str) -> str:
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode()


def write_summary(summary: SweepSummary) -> None:
    base = summary.experiment_path.rstrip("/")
    write_text(f"{base}/{SUMMARY_CSV}", summary.table.to_csv(index=False))
    best = {
        metrics.TRIAL_ID: summary.best_trial_id,
        "config": summary.best_config,
        metrics.VAL_ACC: None if math.isnan(summary.best_val_acc) else summary.best_val_acc,
        **summary.test,
        "checkpoint": summary.best_checkpoint,
    }
    write_text(f"{base}/{BEST_CONFIG_JSON}", json.dumps(best, indent=2, sort_keys=True, default=str))
