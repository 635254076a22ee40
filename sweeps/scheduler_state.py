"""The early-stopping scheduler's state, saved with each experiment snapshot so --resume keeps it.

Ray Tune saves the trials and the searcher with an experiment, but not the scheduler: on
``Tuner.restore`` it is rebuilt from ``tuner.pkl`` as it was when the sweep started. For ASHA
that loses every score recorded at the rungs (a resumed sweep prunes against nothing). For
Hyperband it is worse: the restored trials are dealt into new brackets whose rungs lie behind
the epochs they already ran, a bracket then waits for trials it will never unpause, and the
resumed sweep hangs with trials PAUSED forever. So a callback, whose state Tune does save with
each snapshot (and restores before it re-adds the trials), carries the scheduler's.

The scheduler holds Ray's ``Trial`` objects, which a restore replaces with new ones: they are
pickled as their trial ids and bound to the new objects as Tune adds them back.
"""
from __future__ import annotations

import io
import logging
import pickle
from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

logger = logging.getLogger(__name__)


class TrialRef:
    """Stands for a trial, by id, until the restored sweep adds the trial back."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id

    # Finished, for any scheduler code that meets one the restore never re-added (none should).
    status = Trial.TERMINATED

    def __hash__(self) -> int:
        return hash(self.trial_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrialRef) and other.trial_id == self.trial_id

    def __repr__(self) -> str:
        return f"TrialRef({self.trial_id})"


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> str | None:
        return obj.trial_id if isinstance(obj, (Trial, TrialRef)) else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.refs: dict[str, TrialRef] = {}

    def persistent_load(self, pid: Any) -> TrialRef:
        return self.refs.setdefault(str(pid), TrialRef(str(pid)))


def snapshot(scheduler: TrialScheduler) -> bytes:
    """The scheduler's attributes, trials pickled as their ids. Functions are left out: they are
    settings the restored scheduler has from its own construction (Hyperband keeps lambdas)."""
    state = {k: v for k, v in vars(scheduler).items() if k != "_awaited" and not callable(v)}
    buffer = io.BytesIO()
    _Pickler(buffer).dump(state)
    return buffer.getvalue()


def restore(scheduler: TrialScheduler, data: bytes) -> dict[str, TrialRef]:
    """Put a snapshot's attributes back on ``scheduler``; returns the stand-ins by trial id."""
    unpickler = _Unpickler(data)
    vars(scheduler).update(unpickler.load())
    return unpickler.refs


class SchedulerState(tune.Callback):
    """Saves ``scheduler``'s state with every experiment snapshot and restores it on --resume.
    It must sit at the same place in the callback list in both runs: Tune matches the saved
    states to callbacks by position."""

    def __init__(self, scheduler: TrialScheduler):
        self.scheduler = scheduler
        self._warned = False

    def get_state(self) -> dict[str, Any] | None:
        try:
            return {"scheduler": snapshot(self.scheduler)}
        except Exception as exc:  # noqa: BLE001 - Tune fails the whole sweep on a callback's error here
            if not self._warned:
                logger.warning("The %s scheduler's state could not be saved (%s: %s); a --resume of this sweep "
                               "starts it afresh.", type(self.scheduler).__name__, type(exc).__name__, exc)
                self._warned = True
            return None

    def set_state(self, state: dict[str, Any]) -> None:
        if "scheduler" not in state:  # a sweep saved before this callback existed kept another one here
            return
        refs = restore(self.scheduler, state["scheduler"])
        if isinstance(self.scheduler, ResumableHyperBand):
            self.scheduler.await_trials(refs)


class ResumableHyperBand(HyperBandScheduler):
    """Ray's HyperBandScheduler that takes its restored brackets back (``SchedulerState``): a
    trial the snapshot knows returns to its own bracket instead of a new one.

    A trial that was PAUSED at its rung is requeued by Tune as PENDING, so it trains one epoch
    past the rung before Hyperband pauses it again; its bracket then goes on as before.
    """

    _awaited: dict[str, TrialRef] | None = None

    def await_trials(self, refs: dict[str, TrialRef]) -> None:
        self._awaited = dict(refs)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if self._awaited is None:
            return super().on_trial_add(tune_controller, trial)
        ref = self._awaited.pop(trial.trial_id, None)
        if ref is not None:
            self._rebind(ref, trial)
        elif trial.status not in (Trial.TERMINATED, Trial.ERROR):
            super().on_trial_add(tune_controller, trial)  # created after the snapshot
        # else: it had left its bracket before the snapshot; nothing to do

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        if trial in self._trial_info:  # one that ended before the snapshot is in no bracket
            super().on_trial_remove(tune_controller, trial)

    def _rebind(self, ref: TrialRef, trial: Trial) -> None:
        def swap(item: Any) -> Any:
            return trial if item is ref else item

        self._trial_info = {swap(k): v for k, v in self._trial_info.items()}
        for band in self._hyperbands:
            for bracket in band:
                if bracket is None:
                    continue
                bracket._live_trials = {swap(k): v for k, v in bracket._live_trials.items()}
                bracket._all_trials = [swap(t) for t in bracket._all_trials]
                bracket.trials_to_unpause = {swap(t) for t in bracket.trials_to_unpause}
