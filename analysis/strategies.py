"""Strategy comparison: each search strategy's best accuracy and compute to target, over seeds.

Reads the output folder of ``python -m sweeps.compare``: ``anytime.csv`` (strategy, seed,
trial_epochs, trial_seconds, best_val_acc after each trial-epoch) and ``summary.csv``
(strategy, seed, best_val_acc, trial_epochs, trial_seconds, epochs_to_target, target). Every
aggregate states its n, and spreads are given as IQR and min-max because with a handful of
seeds a standard deviation says little.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

# Column names of the comparison contract (the team brief; sweeps.anytime writes them). Spelled
# here because analysis never imports sweeps; a test checks they match sweeps.anytime's.
STRATEGY = "strategy"
SEED = "seed"
TRIAL_EPOCHS = "trial_epochs"
TRIAL_SECONDS = "trial_seconds"
BEST_VAL_ACC = "best_val_acc"
EPOCHS_TO_TARGET = "epochs_to_target"
TARGET = "target"
ANYTIME_FILE = "anytime.csv"
SUMMARY_FILE = "summary.csv"


def is_comparison_folder(path: str | Path) -> bool:
    """True for a sweeps.compare folder. A single sweep's folder has a summary.csv too (one row
    per trial), so a summary counts only when it has the strategy column."""
    root = Path(path)
    if (root / ANYTIME_FILE).is_file():
        return True
    summary = root / SUMMARY_FILE
    return summary.is_file() and STRATEGY in pd.read_csv(summary, nrows=0).columns


def load_comparison(folder: str | Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(anytime, summary) frames of a sweeps.compare folder; None for a file that is absent."""
    root = Path(folder)
    if not is_comparison_folder(root):
        raise ValueError(f"{str(root)!r} holds neither {ANYTIME_FILE} nor {SUMMARY_FILE}. "
                         "Pass the output folder of `python -m sweeps.compare`.")
    anytime = pd.read_csv(root / ANYTIME_FILE) if (root / ANYTIME_FILE).is_file() else None
    summary = pd.read_csv(root / SUMMARY_FILE) if (root / SUMMARY_FILE).is_file() else None
    for name, frame, needed in ((ANYTIME_FILE, anytime, (STRATEGY, SEED, TRIAL_EPOCHS, BEST_VAL_ACC)),
                                (SUMMARY_FILE, summary, (STRATEGY, SEED, BEST_VAL_ACC))):
        if frame is not None and (missing := [c for c in needed if c not in frame]):
            raise ValueError(f"{root / name} lacks column(s) {missing}; it has {list(frame.columns)}.")
    return anytime, summary


def spread_over_seeds(anytime: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and trial-epoch: median, q25, q75, min, max of best-so-far over seeds, and n.

    Each seed's step curve is carried forward onto the strategy's common grid of trial-epochs
    (best-so-far never drops, so its last value holds once that seed's budget is spent).
    """
    out = []
    for strategy, rows in anytime.groupby(STRATEGY, sort=True):
        grid = np.sort(rows[TRIAL_EPOCHS].unique())
        wide = (rows.pivot_table(index=TRIAL_EPOCHS, columns=SEED, values=BEST_VAL_ACC, aggfunc="last")
                .reindex(grid).ffill())
        values = wide.to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (no finite val_acc yet) give NaN
            out.append(pd.DataFrame({
                STRATEGY: strategy, TRIAL_EPOCHS: grid,
                "median": np.nanmedian(values, axis=1), "q25": np.nanpercentile(values, 25, axis=1),
                "q75": np.nanpercentile(values, 75, axis=1), "min": np.nanmin(values, axis=1),
                "max": np.nanmax(values, axis=1), "n": np.isfinite(values).sum(axis=1)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _describe(values: pd.Series, name: str) -> dict[str, float]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return {f"{name}_median": np.nan, f"{name}_q25": np.nan, f"{name}_q75": np.nan,
                f"{name}_min": np.nan, f"{name}_max": np.nan}
    return {f"{name}_median": float(v.median()), f"{name}_q25": float(v.quantile(0.25)),
            f"{name}_q75": float(v.quantile(0.75)), f"{name}_min": float(v.min()), f"{name}_max": float(v.max())}


def strategy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy: n seeds, best val_acc and epochs to target (median, IQR, min-max).

    ``reached`` counts the seeds that hit the target at all; epochs_to_target statistics are over
    those seeds only, so read them together with ``reached``.
    """
    rows = []
    for strategy, group in summary.groupby(STRATEGY, sort=True):
        row = {STRATEGY: strategy, "n": int(group[SEED].nunique())}
        row.update(_describe(group[BEST_VAL_ACC], BEST_VAL_ACC))
        if EPOCHS_TO_TARGET in group:
            reached = pd.to_numeric(group[EPOCHS_TO_TARGET], errors="coerce").notna()
            row["reached"] = f"{int(reached.sum())}/{len(group)}"
            row.update(_describe(group[EPOCHS_TO_TARGET], EPOCHS_TO_TARGET))
        if TRIAL_SECONDS in group:
            row[f"{TRIAL_SECONDS}_median"] = float(pd.to_numeric(group[TRIAL_SECONDS], errors="coerce").median())
        if TARGET in group:
            row[TARGET] = float(pd.to_numeric(group[TARGET], errors="coerce").iloc[0])
        rows.append(row)
    return pd.DataFrame(rows).sort_values(f"{BEST_VAL_ACC}_median", ascending=False, ignore_index=True)


def format_strategy_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as short strings: "0.712 [0.70-0.72] (min-max 0.69-0.73), n=5"."""
    out = pd.DataFrame({STRATEGY: table[STRATEGY], "n seeds": table["n"]})
    for name, fmt in ((BEST_VAL_ACC, "{:.3f}"), (EPOCHS_TO_TARGET, "{:.0f}")):
        if f"{name}_median" not in table:
            continue
        cell = []
        for r in table.to_dict("records"):
            if not np.isfinite(r[f"{name}_median"]):
                cell.append("never")
                continue
            f = fmt.format
            cell.append(f"{f(r[f'{name}_median'])} IQR {f(r[f'{name}_q25'])}-{f(r[f'{name}_q75'])} "
                        f"(min-max {f(r[f'{name}_min'])}-{f(r[f'{name}_max'])})")
        out[f"{name} median"] = cell
    if "reached" in table:
        out["seeds reaching target"] = table["reached"]
    if TARGET in table:
        out[TARGET] = table[TARGET]
    return out
