"""Learning-curve diagnosis: overfitting, underfitting, diverged, good fit or inconclusive.

Every verdict is a pure function of one trial's curves (plus, for "low relative to the sweep's
best", the best training accuracy any trial had at the same epoch), with the numbers behind it
and the epoch where it shows. Curves are smoothed with a centred rolling median before any
trend is read, so one noisy epoch neither makes nor breaks a verdict. The thresholds and why
they have their values are in ``analysis.thresholds``.

Order of precedence: diverged > inconclusive (too few epochs) > underfitting at chance level >
overfitting > underfitting > good fit. Training that never left chance level is underfitting
even if the validation loss wobbles upward, because there is nothing for it to overfit yet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis.advice import advise, effective_config
from analysis.frames import END_STATE, config_columns, require_columns
from analysis.strategies import SEED, STRATEGY
from analysis.thresholds import DiagnosisThresholds
from trainables import metrics as m

# Columns of the diagnosis table (one row per trial); the verdict column carries the tag's name.
VERDICT = m.TAG_DIAGNOSIS
DIAGNOSIS_EPOCH = "diagnosis_epoch"
EVIDENCE = "evidence"
ADVICE = "advice"
N_EPOCHS = "n_epochs"
SIGNALS = "signals"


@dataclass(frozen=True)
class Diagnosis:
    """One trial's verdict, the epoch where it shows, the evidence and the advice."""

    trial_id: str
    verdict: str  # one of metrics.VERDICTS
    epoch: int  # where the verdict shows (e.g. the val_loss minimum for overfitting)
    evidence: str  # the numbers behind the verdict, human-readable
    advice: str  # what to change, specific to the trial's config
    facts: Mapping[str, float] = field(default_factory=dict)  # the numbers, machine-readable
    signals: tuple[str, ...] = ()  # which rules fired, e.g. ("val_loss_turn", "gap")


def smooth(values: np.ndarray, *, window: int) -> np.ndarray:
    """Centred rolling median (edges use the epochs available), robust to single-epoch spikes."""
    return pd.Series(values, dtype="float64").rolling(window, center=True, min_periods=1).median().to_numpy()


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def num_classes_of(rows: pd.DataFrame, *, default: int) -> int:
    col = f"{m.CONFIG_PREFIX}num_classes"
    if col in rows and pd.notna(rows[col].iloc[0]):
        return int(rows[col].iloc[0])
    return default


def find_divergence(rows: pd.DataFrame, *, th: DiagnosisThresholds, num_classes: int) -> tuple[int, str] | None:
    """(epoch, evidence) of the first sign of divergence, or None."""
    epochs = rows[m.EPOCH].to_numpy()
    train = rows[m.TRAIN_LOSS].to_numpy(dtype=float)
    if m.DIVERGED in rows:
        flagged = np.flatnonzero(rows[m.DIVERGED].fillna(0).to_numpy() >= 1)
        if flagged.size:
            i = flagged[0]
            return int(epochs[i]), (f"the trainable flagged `{m.DIVERGED}` at epoch {epochs[i]} (train_loss "
                                    f"{_fmt(train[i])})")
    for col in (m.TRAIN_LOSS, m.VAL_LOSS):
        values = rows[col].to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return int(epochs[bad[0]]), f"{col} is {values[bad[0]]} at epoch {epochs[bad[0]]}"
    chance_loss = math.log(num_classes)
    chance = 1.0 / num_classes
    # A loss far above guessing's with accuracy at guessing's: the weights blew up (typically in the
    # first steps, with an lr far too high), even where the epoch's mean loss has no earlier, lower
    # value to jump from and the net then sits at chance level, which alone would read as
    # underfitting. Accuracy at chance is what tells it from overfitting, whose validation loss can
    # also grow large (confident mistakes) while its accuracy stays well above chance; and it must
    # still be there at the last epoch: an early spike a trial recovered from (batch-norm statistics
    # in a first epoch at a high lr) is no divergence.
    for loss_col, acc_col in ((m.TRAIN_LOSS, m.TRAIN_ACC), (m.VAL_LOSS, m.VAL_ACC)):
        loss, acc = rows[loss_col].to_numpy(dtype=float), rows[acc_col].to_numpy(dtype=float)
        at_chance = acc < chance + th.acc_over_chance
        blown = np.flatnonzero((loss > th.explode_ratio * chance_loss) & at_chance)
        if blown.size and at_chance[-1]:
            i = blown[0]
            return int(epochs[i]), (f"{loss_col} {_fmt(loss[i])} at epoch {epochs[i]} is "
                                    f"{_fmt(loss[i] / chance_loss)}x chance-level loss ln {num_classes} = "
                                    f"{_fmt(chance_loss)} (> {th.explode_ratio}x) with {acc_col} {_fmt(acc[i])} at "
                                    f"chance level ({_fmt(chance)})")
    running_min = np.minimum.accumulate(train)
    exploding = np.flatnonzero((train > th.explode_ratio * running_min) & (train > chance_loss))
    if exploding.size:
        i = exploding[0]
        return int(epochs[i]), (f"train_loss jumped to {_fmt(train[i])} at epoch {epochs[i]}, "
                                f"{_fmt(train[i] / running_min[i])}x its best {_fmt(running_min[i])} "
                                f"(> {th.explode_ratio}x and above chance-level {_fmt(chance_loss)})")
    if rows[END_STATE].iloc[-1] == m.DIVERGED_STATE:
        return int(epochs[-1]), f"the sweep recorded end state `{m.DIVERGED_STATE}`"
    return None


@dataclass(frozen=True)
class _Curves:
    epochs: np.ndarray
    train_loss: np.ndarray  # smoothed
    train_acc: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    raw_val_loss: np.ndarray

    def val_loss_min(self) -> int:
        """Index of the smoothed val_loss minimum. A median flattens a minimum into a run of equal
        values; of those, the epoch with the lowest raw val_loss."""
        return int(np.lexsort((self.raw_val_loss, self.val_loss))[0])

    @classmethod
    def of(cls, rows: pd.DataFrame, *, window: int) -> "_Curves":
        smoothed = (smooth(rows[c].to_numpy(dtype=float), window=window)
                    for c in (m.TRAIN_LOSS, m.TRAIN_ACC, m.VAL_LOSS, m.VAL_ACC))
        return cls(rows[m.EPOCH].to_numpy(), *smoothed, rows[m.VAL_LOSS].to_numpy(dtype=float))


def overfitting_signals(c: _Curves, *, th: DiagnosisThresholds) -> dict[str, tuple[int, str]]:
    """Named (epoch, evidence) for the loss form and the accuracy-gap form of overfitting."""
    found: dict[str, tuple[int, str]] = {}
    i_min = c.val_loss_min()
    last = len(c.epochs) - 1
    end = c.val_loss[last]
    rise = end / c.val_loss[i_min] - 1.0
    # At the right edge the centred median has only the last two epochs to go on, so one noisy last
    # epoch carries half the weight: the rise must already be under way the epoch before (half the
    # threshold, raw), as it is in a real turn.
    before = c.raw_val_loss[last - 1] / c.val_loss[i_min] - 1.0 if last else rise
    fall = 1.0 - c.train_loss[last] / c.train_loss[i_min]
    if (last - i_min >= th.epochs_after_min and rise >= th.val_loss_rise and before >= th.val_loss_rise / 2
            and fall >= th.train_loss_fall):
        # The smoothed minimum, not the raw one: a one-epoch dip is noise (review found a raw
        # minimum two epochs in, with the smoothed turn and the best val_acc much later).
        found["val_loss_turn"] = (int(c.epochs[i_min]), (
            f"val_loss (running median over {th.smoothing_window} epochs) reached its minimum "
            f"{_fmt(c.val_loss[i_min])} at epoch {c.epochs[i_min]} and rose {rise:.0%} to {_fmt(end)} by epoch "
            f"{c.epochs[last]} while train_loss fell {fall:.0%} ({_fmt(c.train_loss[i_min])} -> "
            f"{_fmt(c.train_loss[last])})"))
    gap = c.train_acc - c.val_acc
    # Epoch 1's train_acc is a running mean from random weights, so its gap reads small (often
    # negative) for every trial: growth is measured from epoch 2 on where there is one.
    first = 1 if last > 1 else 0
    i_small = first + int(np.argmin(gap[first:last])) if last else 0
    growth = gap[last] - gap[i_small]
    if gap[last] >= th.gap_large and growth >= th.gap_growth:
        # Where the gap became large on its way up from its minimum (an early wobble above the
        # threshold, before the minimum, is not where the overfitting shows).
        i_large = i_small + int(np.flatnonzero(gap[i_small:] >= th.gap_large)[0])
        found["gap"] = (int(c.epochs[i_large]), (
            f"train-val accuracy gap {_fmt(gap[last])} at epoch {c.epochs[last]} (train_acc "
            f"{_fmt(c.train_acc[last])}, val_acc {_fmt(c.val_acc[last])}; running medians over "
            f"{th.smoothing_window} epochs), up from {_fmt(gap[i_small])} at epoch {c.epochs[i_small]}; first "
            f">= {th.gap_large} at epoch {c.epochs[i_large]}"))
    return found


def underfitting_signals(c: _Curves, *, th: DiagnosisThresholds, num_classes: int, best_train_acc: float,
                         best_val_acc: float = math.nan) -> dict[str, tuple[int, str]]:
    """Named (epoch, evidence) for near-chance, behind-the-best, high-loss and plateau underfitting."""
    found: dict[str, tuple[int, str]] = {}
    last = len(c.epochs) - 1
    chance = 1.0 / num_classes
    final_acc = c.train_acc[last]
    if final_acc < chance + th.acc_over_chance:
        found["near_chance"] = (int(c.epochs[last]), (
            f"train_acc {_fmt(final_acc)} at epoch {c.epochs[last]} is within {th.acc_over_chance} of "
            f"chance ({_fmt(chance)})"))
    # Behind in both: train_acc is measured on augmented batches with dropout on, so a strongly
    # regularised trial trains "behind" a memorising one while validating as well or better.
    val_behind = not math.isfinite(best_val_acc) or c.val_acc[last] < th.fraction_of_best * best_val_acc
    if math.isfinite(best_train_acc) and final_acc < th.fraction_of_best * best_train_acc and val_behind:
        found["behind_best"] = (int(c.epochs[last]), (
            f"train_acc {_fmt(final_acc)} at epoch {c.epochs[last]} is {final_acc / best_train_acc:.0%} of the "
            f"sweep's best at that epoch ({_fmt(best_train_acc)}; threshold {th.fraction_of_best:.0%})"
            + (f", and val_acc {_fmt(c.val_acc[last])} {c.val_acc[last] / best_val_acc:.0%} of the best "
               f"({_fmt(best_val_acc)})" if math.isfinite(best_val_acc) else "")))
    high = th.high_loss_fraction * math.log(num_classes)
    if c.train_loss[last] > high and c.val_loss[last] > high:
        # Still falling or not: at its last epoch the model fits the data poorly. val_loss too, since
        # train_loss is measured with dropout and augmentation on: a strongly regularised trial has
        # a high train_loss while it predicts the clean validation images well.
        found["high_loss"] = (int(c.epochs[last]), (
            f"train_loss {_fmt(c.train_loss[last])} and val_loss {_fmt(c.val_loss[last])} at epoch "
            f"{c.epochs[last]} are still above {_fmt(high)} ({th.high_loss_fraction} x ln {num_classes}, about "
            "50% accuracy)"))
    if last >= th.plateau_epochs:
        before = c.train_loss[last - th.plateau_epochs]
        change = 1.0 - c.train_loss[last] / before
        if change < th.plateau_change and c.train_loss[last] > high:
            # The plateau shows from the first epoch already within plateau_change of the end.
            near = np.abs(c.train_loss / c.train_loss[last] - 1.0) <= th.plateau_change
            i_start = int(np.flatnonzero(near)[0])
            found["plateau"] = (int(c.epochs[i_start]), (
                f"train_loss plateaued at {_fmt(c.train_loss[last])} from epoch {c.epochs[i_start]} (changed "
                f"{change:.1%} over the last {th.plateau_epochs} epochs) while above {_fmt(high)} "
                f"({th.high_loss_fraction} x ln {num_classes})"))
    return found


def _facts(rows: pd.DataFrame, c: _Curves | None, *, th: DiagnosisThresholds | None = None) -> dict[str, float]:
    va = rows[m.VAL_ACC].to_numpy(dtype=float)
    vl = rows[m.VAL_LOSS].to_numpy(dtype=float)
    epochs = rows[m.EPOCH].to_numpy()
    facts: dict[str, float] = {N_EPOCHS: float(len(rows)), "last_epoch": float(epochs[-1])}
    if np.isfinite(va).any():
        i = int(np.nanargmax(np.where(np.isfinite(va), va, np.nan)))
        facts.update(best_val_acc=float(va[i]), best_val_acc_epoch=float(epochs[i]))
    if np.isfinite(vl).any():
        i = int(np.nanargmin(np.where(np.isfinite(vl), vl, np.nan)))
        facts.update(min_val_loss=float(vl[i]), min_val_loss_epoch=float(epochs[i]))
    if m.EARLY_STOPPED in rows:  # the trainable's own patience rule ended it
        facts["patience_stopped"] = float(pd.to_numeric(rows[m.EARLY_STOPPED], errors="coerce").fillna(0).iloc[-1] >= 1)
    if c is not None:
        facts.update(final_train_loss=float(c.train_loss[-1]), final_train_acc=float(c.train_acc[-1]),
                     final_val_acc=float(c.val_acc[-1]), final_gap=float(c.train_acc[-1] - c.val_acc[-1]))
        th = th or DiagnosisThresholds()
        recent = th.plateau_epochs
        if len(c.train_loss) > recent:  # how much smoothed train_loss fell over the last `recent` epochs
            fall = float(1.0 - c.train_loss[-1] / c.train_loss[-1 - recent])
            # Flat by the plateau rule's own measure (whatever the loss): advice must not say "still falling".
            facts.update(recent_train_loss_fall=fall, recent_epochs=float(recent),
                         recent_train_loss_flat=float(fall < th.plateau_change))
    return facts


def diagnose_trial(rows: pd.DataFrame, *, thresholds: DiagnosisThresholds | None = None,
                   best_train_acc: float = math.nan, best_val_acc: float = math.nan) -> Diagnosis:
    """The verdict for one trial's rows (sorted by epoch).

    ``best_train_acc`` / ``best_val_acc`` are the best smoothed train_acc / val_acc any trial of the
    sweep had at this trial's last epoch (NaN when unknown); ``diagnose`` fills them in.
    """
    th = thresholds or DiagnosisThresholds()
    require_columns(rows, (m.TRIAL_ID, m.EPOCH, m.TRAIN_LOSS, m.TRAIN_ACC, m.VAL_LOSS, m.VAL_ACC, END_STATE),
                    what="diagnose_trial")
    rows = rows.sort_values(m.EPOCH)
    trial_id = str(rows[m.TRIAL_ID].iloc[0])
    classes = num_classes_of(rows, default=th.num_classes)
    config = effective_config({k[len(m.CONFIG_PREFIX):]: rows[k].iloc[0] for k in config_columns(rows)})
    end_state = str(rows[END_STATE].iloc[-1])

    def verdict(name: str, epoch: int, evidence: list[str], facts: dict[str, float],
                signals: tuple[str, ...] = ()) -> Diagnosis:
        advice = advise(name, config=config, facts=facts, end_state=end_state, signals=signals)
        return Diagnosis(trial_id, name, int(epoch), "; ".join(evidence), " ".join(advice), facts, signals)

    divergence = find_divergence(rows, th=th, num_classes=classes)
    if divergence is not None:
        return verdict(m.DIVERGED_VERDICT, divergence[0], [divergence[1]], _facts(rows, None))
    if len(rows) < th.min_epochs:
        last = int(rows[m.EPOCH].iloc[-1])
        return verdict(m.INCONCLUSIVE, last, [f"only {len(rows)} epoch(s) (end state {end_state}); at least "
                                              f"{th.min_epochs} are needed to read a trend"], _facts(rows, None))
    c = _Curves.of(rows, window=th.smoothing_window)
    facts = _facts(rows, c, th=th)
    over = overfitting_signals(c, th=th)
    under = underfitting_signals(c, th=th, num_classes=classes, best_train_acc=best_train_acc,
                                 best_val_acc=best_val_acc)
    if "near_chance" in under or (under and not over):
        first = min(e for e, _ in under.values())
        return verdict(m.UNDERFITTING, first, [t for _, t in under.values()], facts, tuple(under))
    if over:
        first = next(iter(over.values()))[0]  # the val_loss turn when present: where to stop
        return verdict(m.OVERFITTING, first, [t for _, t in over.values()], facts, tuple(over))
    i_min = c.val_loss_min()
    rise = c.val_loss[-1] / c.val_loss[i_min] - 1.0
    evidence = (f"best val_acc {_fmt(facts['best_val_acc'])} at epoch {int(facts['best_val_acc_epoch'])}; "
                f"smoothed val_loss ends {rise:.0%} above its minimum (epoch {c.epochs[i_min]}; overfitting needs "
                f">= {th.val_loss_rise:.0%} with train_loss still falling); final train-val accuracy gap "
                f"{_fmt(facts['final_gap'])} (large: >= {th.gap_large}); train_acc {_fmt(facts['final_train_acc'])}")
    return verdict(m.GOOD_FIT, int(facts["best_val_acc_epoch"]), [evidence], facts)


def best_train_acc_by_epoch(frame: pd.DataFrame, *, window: int, metric: str = m.TRAIN_ACC) -> pd.Series:
    """The best smoothed ``metric`` (train_acc) over all trials at each epoch (index: epoch)."""
    smoothed = frame.groupby(m.TRIAL_ID, sort=False)[metric].transform(
        lambda s: pd.Series(smooth(s.to_numpy(dtype=float), window=window), index=s.index))
    return smoothed.groupby(frame[m.EPOCH]).max()


def standing_at_epoch(peers: pd.DataFrame, trial_id: str, epoch: float, *, same: Mapping[str, Any]) -> str:
    """"; val_acc 0.31 at epoch 3: 7th of 12 trials that reached epoch 3 (best 0.45)": where a trial
    stood among its sweep's trials (``same``: a comparison's strategy and seed) when it ended.
    ``peers``: the frame's rows of that epoch. For a trial too short to judge, or one a scheduler
    stopped, this is why it ended where it did: ASHA keeps the top 1/reduction_factor at each rung.
    '' when fewer than two trials reached the epoch."""
    for key, value in same.items():
        peers = peers[peers[key] == value]
    values = peers.groupby(m.TRIAL_ID)[m.VAL_ACC].last().dropna()
    if len(values) < 2 or trial_id not in values.index:
        return ""
    own = float(values[trial_id])
    rank = int((values > own).sum()) + 1
    suffix = "th" if 10 <= rank % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return (f"; val_acc {_fmt(own)} at epoch {int(epoch)}: {rank}{suffix} of {len(values)} trials that reached "
            f"epoch {int(epoch)} (best {_fmt(float(values.max()))})")


_NO_EPOCH = {m.ERRORED: "errored before its first epoch: {error}",
             m.INTERRUPTED: "an interrupt cut it off before its first epoch",
             m.UNFINISHED: "no epoch reported yet (it is running or pending, or its sweep stopped without recording "
                           "an end)"}


def before_first_epoch(trial_id: str, end_state: str, error: str = "") -> Diagnosis:
    """A trial with no epoch to read (``end_state`` ERRORED or one of NOT_ENDED): inconclusive, with
    why there is nothing to read as the evidence."""
    advice = advise(m.INCONCLUSIVE, config={}, facts={N_EPOCHS: 0.0}, end_state=end_state)
    return Diagnosis(trial_id, m.INCONCLUSIVE, 0, _NO_EPOCH[end_state].format(error=error), " ".join(advice),
                     {N_EPOCHS: 0.0})


def diagnose(frame: pd.DataFrame | None, *, thresholds: DiagnosisThresholds | None = None,
             errors: Mapping[str, str] | None = None,
             origins: Mapping[str, Mapping[str, Any]] | None = None,
             not_ended: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per trial: verdict, epoch, evidence, advice, the facts, end_state and config.

    ``errors``: trial id -> its error line (``analysis.errors``). An errored trial's evidence ends
    with it, and a trial in ``errors`` without a row in ``frame`` (it failed before its first epoch)
    gets a row of its own, so every trial a sweep started has a diagnosis. ``not_ended``: trial id
    -> INTERRUPTED or UNFINISHED (``frames.not_ended_trials``); those without a row get one too.
    ``origins``: trial id -> the columns such a row cannot take from ``frame`` (a comparison's
    strategy and seed). ``frame`` may be None when no trial reported an epoch.
    """
    errors = dict(errors or {})
    th = thresholds or DiagnosisThresholds()
    if frame is None:
        if not errors and not not_ended:
            raise ValueError("diagnose needs a trial frame, or the trials that never reported an epoch.")
        frame = pd.DataFrame({m.TRIAL_ID: [], m.EPOCH: [], m.TRAIN_ACC: []})
    require_columns(frame, (m.TRIAL_ID, m.EPOCH, m.TRAIN_ACC), what="diagnose")
    best = best_train_acc_by_epoch(frame, window=th.smoothing_window)
    best_val = (best_train_acc_by_epoch(frame, window=th.smoothing_window, metric=m.VAL_ACC)
                if m.VAL_ACC in frame else pd.Series(dtype=float))
    out: list[dict[str, Any]] = []
    by_epoch = dict(tuple(frame.groupby(m.EPOCH)))  # once, not one scan of the frame per trial
    for trial_id, rows in frame.groupby(m.TRIAL_ID, sort=True):
        rows = rows.sort_values(m.EPOCH)
        last = rows[m.EPOCH].iloc[-1]
        d = diagnose_trial(rows, thresholds=th, best_train_acc=float(best.get(last, math.nan)),
                           best_val_acc=float(best_val.get(last, math.nan)))
        cfg = {k: rows[k].iloc[0] for k in config_columns(rows)}
        origin = {k: rows[k].iloc[0] for k in (STRATEGY, SEED) if k in rows}  # trials of a comparison
        end_state = rows[END_STATE].iloc[-1]
        # Only an errored end state: Ray keeps the error file of a trial a retry brought to an end.
        error = errors.pop(str(trial_id), None) if end_state == m.ERRORED else None
        evidence = d.evidence
        if d.verdict == m.INCONCLUSIVE or end_state in (m.STOPPED_EARLY, *m.NOT_ENDED):
            evidence += standing_at_epoch(by_epoch[last], str(trial_id), last, same=origin)
        evidence += f"; errored: {error}" if error else ""
        out.append({m.TRIAL_ID: d.trial_id, **origin, VERDICT: d.verdict, DIAGNOSIS_EPOCH: d.epoch,
                    END_STATE: end_state, SIGNALS: " ".join(d.signals), EVIDENCE: evidence,
                    ADVICE: d.advice,
                    **d.facts, **cfg})
    seen = set(frame[m.TRIAL_ID].astype(str))
    # A trial Tune runs again (a retried error) is not ended, whatever error it left behind.
    unread = {t: (m.ERRORED, e) for t, e in errors.items()} | {t: (s, "") for t, s in (not_ended or {}).items()}
    for trial_id, (end_state, error) in sorted(unread.items()):
        if trial_id not in seen:
            d = before_first_epoch(trial_id, end_state, error)
            out.append({m.TRIAL_ID: d.trial_id, **(origins or {}).get(trial_id, {}), VERDICT: d.verdict,
                        DIAGNOSIS_EPOCH: d.epoch, END_STATE: end_state,
                        SIGNALS: "", EVIDENCE: d.evidence, ADVICE: d.advice, **d.facts})
    return pd.DataFrame(out)
