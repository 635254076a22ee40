"""Figures of a sweep: learning curves, generalisation gap, anytime performance, hyperparameters.

Each function returns a ``matplotlib.figure.Figure`` drawn on its own Agg canvas. We never
touch pyplot: it keeps a global figure registry and a process-wide backend, and switching
that backend at import (or in a notebook) would break the caller's own plotting.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd

from analysis.diagnosis import DIAGNOSIS_EPOCH, VERDICT
from analysis.frames import END_STATE, config_columns, final_rows, searched_columns
from analysis.strategies import SEED, STRATEGY, TRIAL_EPOCHS, spread_over_seeds
from trainables import metrics as m

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VERDICT_COLORS = {m.OVERFITTING: "tab:red", m.UNDERFITTING: "tab:blue", m.DIVERGED_VERDICT: "black",
                  m.GOOD_FIT: "tab:green", m.INCONCLUSIVE: "tab:gray"}
# Hyperparameters searched on a log scale in practice; others get log x when they span >= 2 decades.
LOG_SCALE_KEYS = ("lr", "weight_decay", "l1")
MAX_TITLE_HYPERPARAMETERS = 5  # searched values in a curve's title; more do not fit its width
TITLE_FIRST = ("lr", "optimizer")  # what most decides a curve's shape comes first, the rest by name


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def curve_title(trial_id: str, rows: pd.DataFrame, *, verdict: str, searched: list[str]) -> str:
    """"ab12c_00003: overfitting (interrupted) | lr=0.05 batch_size=128": the id alone says nothing
    of which config the curves belong to; an end state other than completed says why they stop."""
    state = str(rows[END_STATE].iloc[-1]) if END_STATE in rows else m.COMPLETED
    head = f"{trial_id}: {verdict}{'' if state == m.COMPLETED else f' ({state})'}"
    first = [f"{m.CONFIG_PREFIX}{k}" for k in TITLE_FIRST]
    ordered = sorted(searched, key=lambda c: first.index(c) if c in first else len(first))
    values = " ".join(f"{c.removeprefix(m.CONFIG_PREFIX)}={_value(rows[c].iloc[0])}"
                      for c in ordered[:MAX_TITLE_HYPERPARAMETERS])
    return f"{head} | {values}" if values else head


def new_figure(*, width: float, height: float) -> "Figure":
    """A figure on the Agg (PNG) canvas, independent of pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _verdicts(diagnoses: pd.DataFrame | None) -> dict[str, str]:
    if diagnoses is None or diagnoses.empty:
        return {}
    return dict(zip(diagnoses[m.TRIAL_ID].astype(str), diagnoses[VERDICT]))


def plot_curves(frame: pd.DataFrame, trial_ids: Iterable[str], *,
                diagnoses: pd.DataFrame | None = None) -> "Figure":
    """Train vs validation loss and accuracy, one row per trial, the verdict's epoch marked."""
    ids = [str(t) for t in trial_ids]
    if not ids:
        raise ValueError("plot_curves needs at least one trial id; pass e.g. the best and the flagged trials.")
    verdicts = _verdicts(diagnoses)
    epochs_at = {} if diagnoses is None else dict(zip(diagnoses[m.TRIAL_ID].astype(str), diagnoses[DIAGNOSIS_EPOCH]))
    searched = searched_columns(frame)
    fig = new_figure(width=10, height=2.6 * len(ids))
    axes = fig.subplots(len(ids), 2, squeeze=False)
    for row, trial_id in zip(axes, ids):
        rows = frame[frame[m.TRIAL_ID] == trial_id]
        if rows.empty:
            raise ValueError(f"Trial {trial_id!r} is not in the frame (trials: {sorted(frame[m.TRIAL_ID].unique())}).")
        for ax, (train, val, label) in zip(row, ((m.TRAIN_LOSS, m.VAL_LOSS, "loss"), (m.TRAIN_ACC, m.VAL_ACC, "accuracy"))):
            ax.plot(rows[m.EPOCH], rows[train], marker=".", label=train)
            ax.plot(rows[m.EPOCH], rows[val], marker=".", label=val)
            if trial_id in epochs_at:
                ax.axvline(epochs_at[trial_id], color=VERDICT_COLORS.get(verdicts.get(trial_id), "gray"),
                           linestyle="--", linewidth=1)
            ax.set_xlabel(m.EPOCH)
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
        row[0].set_title(curve_title(trial_id, rows, verdict=verdicts.get(trial_id, ""), searched=searched),
                         fontsize=9, loc="left")
    return fig


def plot_gap(frame: pd.DataFrame, *, diagnoses: pd.DataFrame | None = None) -> "Figure":
    """Generalisation gap over epochs per trial: train_acc - val_acc and val_loss - train_loss."""
    verdicts = _verdicts(diagnoses)
    fig = new_figure(width=10, height=3.6)
    acc_ax, loss_ax = fig.subplots(1, 2)
    seen: set[str] = set()
    for trial_id, rows in frame.groupby(m.TRIAL_ID, sort=True):
        verdict = verdicts.get(str(trial_id), "")
        label = verdict if verdict not in seen else None
        seen.add(verdict)
        style = dict(color=VERDICT_COLORS.get(verdict, "tab:purple"), alpha=0.7, linewidth=1)
        acc_ax.plot(rows[m.EPOCH], rows[m.TRAIN_ACC] - rows[m.VAL_ACC], label=label, **style)
        if verdict != m.DIVERGED_VERDICT:  # an exploding loss (1e8) would flatten every other curve to 0
            loss_ax.plot(rows[m.EPOCH], rows[m.VAL_LOSS] - rows[m.TRAIN_LOSS], **style)
    if m.DIVERGED_VERDICT in seen:
        loss_ax.set_title("diverged trials left out", fontsize=8)
    acc_ax.set_ylabel(f"{m.TRAIN_ACC} - {m.VAL_ACC}")
    loss_ax.set_ylabel(f"{m.VAL_LOSS} - {m.TRAIN_LOSS}")
    for ax in (acc_ax, loss_ax):
        ax.axhline(0, color="gray", linewidth=0.5)
        ax.set_xlabel(m.EPOCH)
    if seen - {""}:
        acc_ax.legend(fontsize=7, title="verdict", title_fontsize=7)
    fig.suptitle(f"Generalisation gap (n={frame[m.TRIAL_ID].nunique()} trials)", fontsize=10)
    return fig


def plot_anytime(anytime: pd.DataFrame) -> "Figure":
    """Best-so-far val_acc against compute (trial-epochs) per strategy: median over seeds, IQR band."""
    spread = spread_over_seeds(anytime)
    fig = new_figure(width=7, height=4)
    ax = fig.subplots()
    for strategy, rows in spread.groupby(STRATEGY, sort=True):
        n = int(anytime.loc[anytime[STRATEGY] == strategy, SEED].nunique())
        line, = ax.step(rows[TRIAL_EPOCHS], rows["median"], where="post", label=f"{strategy} (n={n} seeds)")
        ax.fill_between(rows[TRIAL_EPOCHS], rows["q25"], rows["q75"], step="post", alpha=0.2, color=line.get_color())
    ax.set_xlabel("compute (trial-epochs)")
    ax.set_ylabel(f"best-so-far {m.VAL_ACC}")
    ax.set_title("Anytime performance: median over seeds, band = IQR", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def varying_hyperparameters(frame: pd.DataFrame) -> list[str]:
    """The config columns that take more than one value across trials (the searched ones)."""
    finals = final_rows(frame)
    return [c for c in config_columns(finals) if finals[c].astype(str).nunique() > 1]


def x_scale(key: str, values: np.ndarray) -> tuple[str, dict[str, float]]:
    """("log", {}) for log-searched or >= 2-decade positive values; ("symlog", linthresh) when such a
    key also holds 0 (weight_decay 0 is a common grid point, and log scale would drop it)."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if not len(positive) or (finite < 0).any():
        return "linear", {}
    wide = key in LOG_SCALE_KEYS or positive.max() / positive.min() >= 100
    if not wide:
        return "linear", {}
    return ("log", {}) if len(positive) == len(finite) else ("symlog", {"linthresh": float(positive.min())})


def plot_hyperparameters(frame: pd.DataFrame, *, diagnoses: pd.DataFrame | None = None,
                         columns: list[str] | None = None) -> "Figure":
    """Final val_acc against each searched hyperparameter: scatter (numeric) or strip + box (categorical)."""
    finals = final_rows(frame)
    columns = varying_hyperparameters(frame) if columns is None else columns
    verdicts = _verdicts(diagnoses)
    n_cols = min(3, max(1, len(columns)))
    n_rows = max(1, math.ceil(len(columns) / n_cols))
    fig = new_figure(width=3.6 * n_cols, height=3.0 * n_rows)
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False).ravel())
    colors = [VERDICT_COLORS.get(verdicts.get(str(t), ""), "tab:purple") for t in finals[m.TRIAL_ID]]
    y = finals[m.VAL_ACC].to_numpy(dtype=float)
    for ax, col in zip(axes, columns):
        key = col[len(m.CONFIG_PREFIX):]
        values = finals[col]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric:
            x = values.to_numpy(dtype=float)
            ax.scatter(x, y, c=colors, s=18)
            scale, options = x_scale(key, x)
            ax.set_xscale(scale, **options)
        else:
            labels = sorted(values.astype(str).unique())
            groups = [y[(values.astype(str) == lab).to_numpy() & np.isfinite(y)] for lab in labels]
            ax.boxplot(groups, positions=range(len(labels)), widths=0.5, showfliers=False)
            jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(values))
            pos = np.array([labels.index(v) for v in values.astype(str)]) + jitter
            ax.scatter(pos, y, c=colors, s=18, zorder=3)
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel(key)
        ax.set_ylabel(f"final {m.VAL_ACC}")
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    if not columns:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no hyperparameter varies across trials", ha="center", va="center")
    fig.suptitle(f"Hyperparameters vs final {m.VAL_ACC} (n={len(finals)} trials; colour = verdict)", fontsize=10)
    return fig
