"""Anytime performance of a sweep: best validation accuracy against compute spent.

Pure functions over pandas frames, so the decisions behind ``python -m sweeps.compare`` and
the sweep benchmarks are tested on synthetic results with known answers, without Ray.

Compute is counted in trial-epochs: every epoch any trial reports costs one, whether the
trial later completes, is stopped by a scheduler or diverges. Epochs are ordered by when the
driver received them, so concurrent trials interleave exactly as the sweep spent its compute.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

# The comparison's output contract (anytime.csv, summary.csv) is spelled once, in analysis, which
# reads it and may not import sweeps; sweeps.compare writes it with the same names.
from analysis.strategies import (BEST_VAL_ACC, EPOCHS_TO_TARGET, SEED, STRATEGY, TARGET, TRIAL_EPOCHS,
                                 TRIAL_SECONDS)
from trainables.metrics import EPOCH_TIME_S, VAL_ACC

COMPLETED_AT = "completed_at"  # driver clock when an epoch's result arrived, seconds
ANYTIME_COLUMNS = (STRATEGY, SEED, TRIAL_EPOCHS, TRIAL_SECONDS, BEST_VAL_ACC)
SUMMARY_COLUMNS = (STRATEGY, SEED, BEST_VAL_ACC, TRIAL_EPOCHS, TRIAL_SECONDS, EPOCHS_TO_TARGET, TARGET)


def anytime_curve(results: pd.DataFrame, *, budget: int | None = None) -> pd.DataFrame:
    """Best-so-far ``val_acc`` after each trial-epoch, in the order the epochs completed.

    ``results`` holds one row per reported epoch with ``val_acc`` and optionally
    ``epoch_time_s`` and ``completed_at``. Rows are sorted stably by ``completed_at`` when it is
    present (ties keep their input order), else taken in the given order. A non-finite
    ``val_acc`` (a diverged epoch) still costs its trial-epoch but never counts as best.
    ``budget`` truncates the curve to its first ``budget`` trial-epochs, which drops the epochs
    in-flight trials reported after an experiment-level budget stop fired.
    """
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise ValueError(f"The value of `budget` is {budget!r}, but must be an int >= 1 (trial-epochs). "
                         "Pass a positive number of trial-epochs or None for no truncation.")
    if VAL_ACC not in results.columns:
        raise ValueError(f"The results have no `{VAL_ACC}` column (columns: {list(results.columns)}); "
                         "pass one row per reported epoch with the trainable's metrics.")
    ordered = results.sort_values(COMPLETED_AT, kind="mergesort") if COMPLETED_AT in results else results
    if budget is not None:
        ordered = ordered.iloc[:budget]
    acc = pd.to_numeric(ordered[VAL_ACC], errors="coerce").to_numpy(dtype=float)
    acc = np.where(np.isfinite(acc), acc, np.nan)
    # cummax leaves NaN where the input is NaN; the forward fill carries the best across them.
    best = pd.Series(acc).cummax().ffill().to_numpy()
    if EPOCH_TIME_S in ordered:
        seconds = pd.to_numeric(ordered[EPOCH_TIME_S], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    else:
        seconds = np.zeros(len(ordered))
    return pd.DataFrame({
        TRIAL_EPOCHS: np.arange(1, len(ordered) + 1, dtype=np.int64),
        TRIAL_SECONDS: np.cumsum(seconds),
        BEST_VAL_ACC: best,
    })


def epochs_to_target(curve: pd.DataFrame, *, target: float) -> float:
    """Trial-epochs spent when the best-so-far first reached ``target``; NaN if it never did."""
    if not math.isfinite(target):
        raise ValueError(f"The value of `target` is {target!r}, but must be a finite accuracy in [0, 1].")
    reached = curve[curve[BEST_VAL_ACC] >= target]
    return float(reached[TRIAL_EPOCHS].iloc[0]) if len(reached) else math.nan


def best_at(curve: pd.DataFrame, *, trial_epochs: int) -> float:
    """Best-so-far accuracy after ``trial_epochs`` of compute (the last value if the curve is shorter)."""
    upto = curve[curve[TRIAL_EPOCHS] <= trial_epochs]
    return float(upto[BEST_VAL_ACC].iloc[-1]) if len(upto) else math.nan


def summarise(curve: pd.DataFrame, *, target: float) -> dict[str, float]:
    """One summary row (without strategy and seed): final best, compute spent, compute to target."""
    last = curve.iloc[-1] if len(curve) else None
    return {
        BEST_VAL_ACC: float(last[BEST_VAL_ACC]) if last is not None else math.nan,
        TRIAL_EPOCHS: int(last[TRIAL_EPOCHS]) if last is not None else 0,
        TRIAL_SECONDS: float(last[TRIAL_SECONDS]) if last is not None else 0.0,
        EPOCHS_TO_TARGET: epochs_to_target(curve, target=target),
        TARGET: float(target),
    }
