"""The one line a ``--resume`` plan prints: what is kept, what runs again, what is still to sample."""
from __future__ import annotations

from typing import Iterable

from analysis.ray_state import ERROR, TERMINATED


def resume_progress(statuses: Iterable[str], *, expected: int) -> str:
    """One line for the plan of a --resume: what is kept, what runs again, what is still to sample."""
    statuses = list(statuses)
    done = sum(s == TERMINATED for s in statuses)
    errored = sum(s == ERROR for s in statuses)
    unfinished = len(statuses) - done - errored
    unsampled = max(0, expected - len(statuses))
    total = max(expected, len(statuses))
    if not errored and not unfinished and not unsampled:
        return (f"all {total} trials had finished: nothing left to run; the summary below is rebuilt from the "
                "saved results")
    parts = [f"{done} of {total} trials had finished (kept as they are)"]
    if unfinished:
        # PENDING says nothing of whether a trial ever ran (Hyperband requeues unpaused ones as PENDING).
        parts.append(f"{unfinished} unfinished continue (from their last checkpoint; those that never ran, from "
                     "the start)")
    if errored:
        parts.append(f"{errored} errored run again from their last checkpoint")
    if unsampled:
        parts.append(f"{unsampled} not started yet")
    return "; ".join(parts)
