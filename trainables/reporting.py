"""The small hook through which a training run reports, so ``trainables`` never imports Ray.

The training loop calls ``reporter.report(metrics, checkpoint_dir=...)`` once per epoch with a
directory holding that epoch's checkpoint (the directory is deleted after the call returns, so
a reporter that wants to keep it copies it), and asks ``reporter.restore_dir()`` once at the
start for a checkpoint to resume from. ``sweeps`` supplies the Ray Tune implementation
(``tune.report`` / ``tune.get_checkpoint``); the two here serve runs without Ray.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Mapping, Protocol


class Reporter(Protocol):
    def report(self, metrics: Mapping[str, Any], *, checkpoint_dir: str | None = None) -> None:
        """Receive one epoch's metrics and (optionally) the directory of its checkpoint."""

    def restore_dir(self) -> str | None:
        """A checkpoint directory to resume from, or None to start from scratch."""


CHECKPOINT_DIR = "checkpoint"  # MemoryReporter keeps the latest checkpoint under this name
CHECKPOINT_TMP = "checkpoint.tmp"  # the next one, while it is copied
CHECKPOINT_OLD = "checkpoint.old"  # the previous one, during the swap


def recover_checkpoint(root: str | Path) -> bool:
    """Put back the previous checkpoint when a crash mid-swap left none under ``checkpoint``.
    Returns whether it did. The old one, not ``checkpoint.tmp``: a reporter writes an epoch's
    metrics after its checkpoint is in place, so the old one matches the metrics on disk."""
    root = Path(root)
    target, old = root / CHECKPOINT_DIR, root / CHECKPOINT_OLD
    if target.exists() or not old.is_dir():
        return False
    old.rename(target)
    return True


class MemoryReporter:
    """Keeps every report in ``history`` and the latest checkpoint in a folder (tests, benchmarks)."""

    def __init__(self, checkpoint_root: str | Path | None = None, *, resume_from: str | Path | None = None):
        self.history: list[dict[str, Any]] = []
        self._root = Path(checkpoint_root) if checkpoint_root is not None else None
        self._resume_from = str(resume_from) if resume_from is not None else None
        self.latest_checkpoint: str | None = None

    def report(self, metrics: Mapping[str, Any], *, checkpoint_dir: str | None = None) -> None:
        self.history.append(dict(metrics))
        if checkpoint_dir is not None and self._root is not None:
            target, tmp, old = (self._root / name for name in (CHECKPOINT_DIR, CHECKPOINT_TMP, CHECKPOINT_OLD))
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(checkpoint_dir, tmp)
            # Swap in the new checkpoint only once it is complete, and move the previous one aside
            # rather than deleting it first: a crash at any point leaves one whole checkpoint under
            # `checkpoint` or `checkpoint.old` (recover_checkpoint puts the latter back).
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
            self.latest_checkpoint = str(target)

    def restore_dir(self) -> str | None:
        return self._resume_from


class JsonLinesReporter(MemoryReporter):
    """Also appends each report as one JSON line to ``path`` (``python -m trainables.cifar``)."""

    def __init__(self, path: str | Path, checkpoint_root: str | Path | None = None, *,
                 resume_from: str | Path | None = None):
        super().__init__(checkpoint_root, resume_from=resume_from)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def report(self, metrics: Mapping[str, Any], *, checkpoint_dir: str | None = None) -> None:
        super().report(metrics, checkpoint_dir=checkpoint_dir)
        # JSON has no NaN/inf: write them as null so every line stays parseable.
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
