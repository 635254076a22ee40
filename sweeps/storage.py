"""Sweep results where Ray Tune put them: a local folder, or remote storage (``s3://…``, ``gs://…``).

MLflow uploads from local files, and backfill reads Ray's per-trial records from files. On a
cluster the results live in the bucket ``--storage-path`` names, so these helpers copy what is
needed to a local folder first. They go through pyarrow's filesystems, the layer Ray Tune itself
writes with, so every storage Ray accepts is readable here with the same credentials.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Iterable

import pyarrow.fs

from analysis.ray_state import STATE_GLOB
from sweeps.config import is_uri

# The files backfill reads; checkpoints are left where they are (they can be large).
RECORD_FILES = ("result.json", "params.json", "error.txt")


def local_dir(path: str | None) -> Path | None:
    """``path`` as an existing local folder (plain or file://); None for remote storage or nothing."""
    if not path or is_uri(path):
        return None
    local = Path(path.removeprefix("file://"))
    return local if local.exists() else None


def fetch_files(folder: str, names: Iterable[str], *, into: Path) -> list[Path]:
    """The files ``names`` of ``folder`` that exist, as local paths: the folder's own where it is
    local, else copies in ``into``."""
    local = local_dir(folder)
    if local is not None:
        return [local / n for n in names if (local / n).is_file()]
    if not is_uri(folder):
        return []
    fs, base = pyarrow.fs.FileSystem.from_uri(folder)
    into.mkdir(parents=True, exist_ok=True)
    fetched = []
    for name in names:
        if fs.get_file_info(f"{base}/{name}").type == pyarrow.fs.FileType.File:
            pyarrow.fs.copy_files(f"{base}/{name}", str(into / name), source_filesystem=fs)
            fetched.append(into / name)
    return fetched


def fetch_dir(folder: str | None, *, into: Path) -> Path | None:
    """``folder`` as a local folder: itself where it is local, else a copy at ``into``."""
    if not folder:
        return None
    local = local_dir(folder)
    if local is not None or not is_uri(folder):
        return local
    fs, base = pyarrow.fs.FileSystem.from_uri(folder)
    if fs.get_file_info(base).type != pyarrow.fs.FileType.Directory:
        return None
    into.mkdir(parents=True, exist_ok=True)  # copy_files makes no local folder itself
    pyarrow.fs.copy_files(base, str(into), source_filesystem=fs)
    return into


def mirror_records(experiment: str, *, into: Path, top_level: Iterable[str]) -> Path:
    """A local folder with the remote ``experiment``'s ``top_level`` files and each trial folder's
    ``RECORD_FILES``, in the same layout (checkpoints are not copied)."""
    fs, base = pyarrow.fs.FileSystem.from_uri(experiment)
    if fs.get_file_info(base).type != pyarrow.fs.FileType.Directory:
        raise ValueError(f"The value of `folder` is {experiment!r}, but no such folder exists in that storage. "
                         "Pass --storage-path/<name> of the sweep, as it printed when it started.")
    wanted = set(top_level)
    for info in fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True)):
        if info.type != pyarrow.fs.FileType.File:
            continue
        relative = info.path[len(base.rstrip("/")) + 1:]
        parts = relative.split("/")
        top = len(parts) == 1 and (parts[0] in wanted or fnmatch.fnmatch(parts[0], STATE_GLOB))
        record = len(parts) == 2 and parts[1] in RECORD_FILES
        if top or record:
            (into / relative).parent.mkdir(parents=True, exist_ok=True)
            pyarrow.fs.copy_files(info.path, str(into / relative), source_filesystem=fs)
    return into


def trial_results(trial: Any) -> list[dict[str, Any]]:
    """A Tune trial's ``result.json`` records: from the driver's copy where there is one (local
    storage), else from the sweep's storage through the trial's own filesystem (Ray keeps the
    trial's path there relative to that filesystem, without a scheme). [] when unreadable."""
    from sweeps.tracking_runs import parse_results, read_results

    local = local_dir(getattr(trial, "local_path", None))
    if local is not None and (local / "result.json").is_file():
        return read_results(local / "result.json")
    context = getattr(trial, "storage", None)
    fs, path = getattr(context, "storage_filesystem", None), getattr(context, "trial_fs_path", None)
    if fs is None or not path:
        return []
    try:
        with fs.open_input_stream(f"{path}/result.json") as stream:
            return parse_results(stream.read().decode())
    except OSError:
        return []


def trial_error(trial: Any) -> str:
    """The line saying why a Tune trial failed (``analysis.errors.error_line``), '' when it has none.
    Ray writes the error file in the driver's copy of the trial folder before any callback hears
    of the failure; a trial restored from remote storage has only the sweep's copy."""
    from analysis.errors import error_line

    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text(errors="replace") if path and Path(path).is_file() else trial.get_error()
    except Exception:  # noqa: BLE001 - an unreadable error file must not fail the sweep's bookkeeping
        return ""
    return error_line(text or "")

