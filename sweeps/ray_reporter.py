"""The trainable's ``Reporter`` inside Ray Tune: ``tune.report`` and ``tune.get_checkpoint``.

``trainables`` never imports Ray; this adapter is all that connects the two.
"""
from __future__ import annotations

import tempfile
from typing import Any, Mapping

from ray import tune


class RayReporter:
    """Reports each epoch to Tune with its checkpoint; resumes from Tune's latest checkpoint.

    ``tune.report`` persists the checkpoint folder to the run's storage before it returns,
    which is what the Reporter contract needs (the trainable deletes the folder afterwards).
    """

    def report(self, metrics: Mapping[str, Any], *, checkpoint_dir: str | None = None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir is not None else None
        tune.report(dict(metrics), checkpoint=checkpoint)

    def restore_dir(self) -> str | None:
        """A local copy of the checkpoint Tune restores this trial from (after a failure, a
        Hyperband pause or --resume), or None for a fresh trial. Copied because storage may be
        remote (s3://) and a restored trial must not write into its stored checkpoint."""
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        return checkpoint.to_directory(tempfile.mkdtemp(prefix="cifar-restore-"))
