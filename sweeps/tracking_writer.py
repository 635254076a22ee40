"""The background thread that writes a sweep's records to MLflow, off Ray's scheduling path.

Ray calls its callbacks on the driver's scheduling loop, so a slow or unreachable tracking
server there would stall every trial. The callback only appends to in-memory buffers; this
thread drains them with batched requests. Buffers describe what MLflow *should* hold (epochs
not yet confirmed, the end state, the status), so a failed drain loses nothing: it is retried
with exponential backoff, and once the server answers again everything pending goes out in a
few batched requests. What is still pending when the sweep ends (after a bounded wait) is
reported in one line, with the backfill command that writes it from Ray's result files.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mlflow.entities import Run

from analysis.redact import redact_text, secret_values
from sweeps.tracking_runs import KILLED, RUNNING, ChildState, RunStore

logger = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.5


@dataclass
class _TrialBuffer:
    config: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)  # epochs not yet confirmed logged
    reopen: bool = False  # the run must be RUNNING again (a resumed or retried trial)
    end_state: str | None = None  # END_STATE_TAG to write, once
    error: str | None = None  # TAG_ERROR to write with an errored end state
    kill: bool = False  # interrupted: mark the run KILLED (no end state; a resume continues it)
    open: bool = True  # started and not yet ended in this driver
    dirty: bool = True  # has work the writer thread has not picked up yet

    @property
    def unlogged(self) -> bool:
        """Work not confirmed logged: queued, or picked up by a request still in flight (which
        clears ``dirty`` when it starts, and an MLflow client may retry one for minutes)."""
        return self.dirty or bool(self.results) or self.end_state is not None or self.kill


@dataclass(frozen=True)
class Unlogged:
    """What the writer could not deliver before it was closed."""

    epochs: int
    trials: int
    calls: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.epochs or self.trials or self.calls)


class TrackingWriter:
    """Owns the ``RunStore`` (MLflow clients are used from this thread only)."""

    def __init__(self, store: RunStore, *, parent_id: str, sweep_name: str, uri_for_messages: str,
                 known_runs: Mapping[str, Run] | None = None, max_backoff_s: float = 30.0):
        self._store = store
        self._parent_id = parent_id
        self._sweep_name = sweep_name
        self._uri = uri_for_messages
        self._known_runs = dict(known_runs or {})  # children found at start, states fetched lazily
        self._known_ids = frozenset(self._known_runs)
        self._children: dict[str, ChildState] = {}
        self._buffers: dict[str, _TrialBuffer] = {}
        self._calls: list[tuple[str, Callable[[RunStore], None]]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._abandoned = False  # close() gave up waiting: stop retrying
        self._failing = False
        self._max_backoff_s = max_backoff_s
        self._thread = threading.Thread(target=self._loop, name="mlflow-writer", daemon=True)

    # --- called from Ray's scheduling loop: in-memory only, never blocks on I/O ---------------
    def start(self) -> None:
        self._thread.start()

    def _buffer(self, trial_id: str, config: Mapping[str, Any]) -> _TrialBuffer:
        buf = self._buffers.get(trial_id)
        if buf is None:
            buf = self._buffers[trial_id] = _TrialBuffer(dict(config))
        buf.dirty = True
        return buf

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        with self._cond:
            buf = self._buffer(trial_id, config)
            buf.reopen, buf.kill, buf.end_state, buf.open = True, False, None, True
            self._cond.notify()

    def trial_results(self, trial_id: str, config: Mapping[str, Any], results: list[dict[str, Any]]) -> None:
        with self._cond:
            self._buffer(trial_id, config).results.extend(results)
            self._cond.notify()

    def trial_ended(self, trial_id: str, config: Mapping[str, Any], *, state: str | None,
                    error: str | None = None) -> None:
        """``state`` None: interrupted (KILLED, to be continued by a resume). ``error``: why an
        errored trial failed, one line."""
        with self._cond:
            buf = self._buffer(trial_id, config)
            buf.reopen, buf.open = False, False
            buf.end_state, buf.kill, buf.error = state, state is None, error
            self._cond.notify()

    def call(self, what: str, fn: Callable[[RunStore], None]) -> None:
        """Queue a parent-level write (artifacts, final status), run after the trials' records."""
        with self._cond:
            self._calls.append((what, fn))
            self._cond.notify()

    def open_trials(self) -> list[str]:
        with self._cond:
            return [tid for tid, b in self._buffers.items() if b.open]

    def handled(self, trial_id: str) -> bool:
        """Whether this driver has seen the trial (started it, or logged for it)."""
        with self._cond:
            return trial_id in self._buffers

    def knows(self, trial_id: str) -> bool:
        """Whether the trial has a run already (found when a resumed sweep started)."""
        with self._cond:
            return trial_id in self._known_ids or trial_id in self._children

    # --- the writer thread ---------------------------------------------------------------------
    def _pending(self) -> bool:
        return bool(self._calls) or any(b.dirty for b in self._buffers.values())

    def _loop(self) -> None:
        backoff = _FIRST_BACKOFF_S
        while True:
            with self._cond:
                while not self._pending() and not self._closing:
                    self._cond.wait()
                if not self._pending() or self._abandoned:
                    return
            try:
                self._drain()
            except Exception as exc:  # any failure: keep the records, retry after a backoff
                self._report_failure(exc)
                self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            backoff = _FIRST_BACKOFF_S
            if self._failing:
                self._failing = False
                logger.warning("MLflow at %s answers again; the records held back meanwhile are now logged.", self._uri)

    def _sleep(self, seconds: float) -> None:
        """The backoff pause. New results do not cut it short (each would cost a request against a
        dead server); close() does, so the final flush tries at once."""
        deadline = time.monotonic() + seconds
        with self._cond:
            was_closing = self._closing
            while not self._abandoned and not (self._closing and not was_closing):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(timeout=left)

    def _report_failure(self, exc: BaseException) -> None:
        if self._failing:
            return  # one line per outage, not one per retry
        self._failing = True
        reason = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                             secrets=secret_values(os.environ))[:300]
        logger.warning("MLflow at %s: cannot log (%s: %s). The sweep goes on; logging is retried with backoff, and "
                       "`python -m sweeps.backfill <experiment folder>` writes anything still missing afterwards.",
                       self._uri, type(exc).__name__, reason)

    def _drain(self) -> None:
        with self._cond:
            dirty = [(tid, b) for tid, b in self._buffers.items() if b.dirty]
        for trial_id, buf in dirty:
            self._sync_trial(trial_id, buf)
        while True:
            with self._cond:
                if not self._calls:
                    return
                what, fn = self._calls[0]
            fn(self._store)
            with self._cond:
                self._calls.pop(0)

    def _child(self, trial_id: str, config: Mapping[str, Any]) -> ChildState:
        state = self._children.get(trial_id)
        if state is None:
            with self._cond:
                run = self._known_runs.pop(trial_id, None)
            if run is None:
                # A create whose response was lost (slow server, timeout) may still have made the
                # run: look before creating, so a retry never leaves a second run for a trial.
                run = self._store.find_child(self._parent_id, trial_id)
            if run is None:
                state = self._store.create_child(self._parent_id, trial_id=trial_id, sweep_name=self._sweep_name,
                                                 config=config)
            else:
                state = self._store.child_state(run)
                self._store.ensure_params(state, config)
            with self._cond:
                self._children[trial_id] = state
        return state

    def _sync_trial(self, trial_id: str, buf: _TrialBuffer) -> None:
        with self._cond:
            buf.dirty = False
            results = list(buf.results)
            reopen, end, kill, error = buf.reopen, buf.end_state, buf.kill, buf.error
        try:
            state = self._child(trial_id, buf.config)
            if reopen and state.status != RUNNING:
                self._store.reopen_child(state)
            self._store.log_epochs(state, results)
            with self._cond:
                del buf.results[:len(results)]
                buf.reopen = buf.reopen and not reopen
            if end is not None:
                self._store.finish_child(state, state_name=end, error=error)
            elif kill and state.status == RUNNING:
                self._store.set_status(state.run_id, KILLED)
                state.status = KILLED
        except Exception:
            with self._cond:
                buf.dirty = True
            raise
        with self._cond:
            if buf.end_state == end and buf.kill == kill and (end is not None or kill):
                buf.end_state, buf.kill = None, False

    def close(self, timeout_s: float) -> Unlogged:
        """Stop accepting work, wait up to ``timeout_s`` for the queue to drain, report the rest."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout_s)
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()
            pending = {tid: b for tid, b in self._buffers.items() if b.unlogged}
            return Unlogged(epochs=sum(len(b.results) for b in pending.values()), trials=len(pending),
                            calls=tuple(what for what, _ in self._calls))
