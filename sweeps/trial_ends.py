"""Which trials Tune ended itself, to tell a finished sweep from an interrupted one.

Tune's fit() returns normally after a SIGINT. It saves its state first, with the trials then
running still RUNNING (so --resume runs them again), and then ends every live trial in memory as
TERMINATED (``TuneController._cleanup_trials``) without calling any callback: by status, a trial
cut off in its first epoch looks finished. Every other way a trial ends goes through Tune's
``stop_trial`` or its failure handling, which call ``on_trial_complete`` / ``on_trial_error``:
finishing, a scheduler stopping it (paused ones included), the stop condition, an error. So a trial
that never reached one of these hooks was cut off. Tune's saved state is no substitute: it can hold
PAUSED for trials Hyperband stopped at the end of a sweep that finished.

A stop condition that ends the whole experiment (a ``Stopper`` whose ``stop_all`` is true, such
as sweeps.compare's trial-epoch budget) ends the live trials the same way, without a hook. Such a
sweep finished: its trials ended where the condition stopped them. A stopper that says so (a
``fired`` attribute) turns those trials from cut off into stopped (``stopped_ids``).
"""
from __future__ import annotations

from typing import Any

from ray import tune

from analysis.ray_state import ERROR, TERMINATED

ENDED_STATUSES = (TERMINATED, ERROR)


class TrialEnds(tune.Callback):
    """Records the trials Tune ended in this driver, and those a resume brought back already
    finished (Tune brings them back TERMINATED and runs no hook for them). The MLflow callback
    extends it, so a sweep's exit code and its MLflow runs tell an interrupt the same way."""

    def __init__(self) -> None:
        self._init_ends()

    def _init_ends(self) -> None:
        # Underscored: callbacks are pickled into tuner.pkl, and a subclass that pickles only its
        # public settings must leave these behind.
        self._ended_here: set[str] = set()
        self._ended_before: set[str] = set()
        self._seen: set[str] = set()  # every trial, once the experiment ends
        self._started = False
        self._stop: Any = None  # the experiment's stop condition, if any (see watch_stop)

    def watch_stop(self, stop: Any) -> None:
        """The experiment's stop condition: once its ``fired`` is true, the trials it ended
        without a hook are stopped, not cut off."""
        self._stop = stop

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._take_restored(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # No step at all: a resumed sweep whose trials had all finished (Tune runs no step when
        # nothing is left). No trial has started, so the statuses are still the restored ones.
        self._take_restored(trials)
        self._seen = {t.trial_id for t in trials}

    def _take_restored(self, trials: list) -> None:
        if not self._started:  # once, before any trial of this driver ran: what a resume brought back finished
            self._started = True
            self._ended_before = {t.trial_id for t in trials if t.status in ENDED_STATUSES}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended_here.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended_here.add(trial.trial_id)

    def ended_before(self, trial_id: str) -> bool:
        """Finished before this driver started: a resumed sweep's trial that will not run again."""
        return trial_id in self._ended_before

    def _unended(self) -> set[str]:
        return self._seen - self._ended_here - self._ended_before

    def stop_fired(self) -> bool:
        return bool(getattr(self._stop, "fired", False))

    def cut_off_ids(self) -> set[str]:
        """Trials Tune created but did not end: interrupted, --resume runs them again."""
        return set() if self.stop_fired() else self._unended()

    def stopped_ids(self) -> set[str]:
        """Trials the experiment's stop condition ended without a hook: finished where they stood."""
        return self._unended() if self.stop_fired() else set()

    def cut_off(self) -> int:
        return len(self.cut_off_ids())
