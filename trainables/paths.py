"""Whether a path can be a folder this process writes in, judged before any work.

Every command writes results into a folder it makes (``--output``, ``--storage-path``,
``--output-dir``, ``--out``); a file in the way, or a folder it may not write to, would
otherwise fail at ``mkdir`` after the data has loaded or the compute has run. One rule for all
four, here in the package every other one imports.
"""
from __future__ import annotations

import os
from pathlib import Path


def folder_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a folder this process writes in, as a clause ("it is a file, not a
    folder"); None when it can. Judged without creating anything: the nearest existing path must
    be a writable folder. A dangling link counts
    as existing: mkdir cannot replace it either."""
    path = Path(path).expanduser().absolute()
    nearest = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())
    if not nearest.is_dir():
        return "it is a file, not a folder" if nearest == path else f"it is under {str(nearest)!r}, which is a file"
    if not os.access(nearest, os.W_OK | os.X_OK):
        return f"{str(nearest)!r} is not writable by this user"
    return None
