"""A failed trial's error in one line, as the sweep summary, MLflow and the report all show it.

Ray writes every failure of a trial to its folder's ``error.txt`` ("Failure # N (occurred at …)"
and then the traceback, coloured). What tells a user why the trial failed is the exception that
ended the last failure, e.g. "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate
2.00 GiB", so that line is what the summary table, the MLflow ``error`` tag and the diagnosis
report carry; the traceback stays in ``error.txt``. Here, not in ``sweeps``, because analysis
never imports sweeps, and the sweep and the report must say the same thing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from trainables import metrics as m

ERROR_FILE = "error.txt"  # Ray's name for it (ray.tune.experiment.trial.EXPR_ERROR_FILE)
MAX_CHARS = 500  # a tag or table cell; the full text is in the error file
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the actor name in its tracebacks
_FAILURE_HEADER = re.compile(r"^Failure # \d+ \(occurred at [^)]*\)\s*$")
# "RuntimeError: …", "torch.OutOfMemoryError: …", "ray.exceptions.RayTaskError(ValueError): …",
# a bare "KeyboardInterrupt": how Python's traceback ends, at the start of a line.
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failure)(\([\w.]*\))?(:|$)")
# Ray's trial ids ("ab12c_00003"): the sweep names trial folders "<trainable>_<trial id>", Ray's
# default names put the id after the trainable's name too.
_TRIAL_ID = re.compile(r"(?:^|_)([0-9a-f]{5}_\d{5})(?=_|$)")


def error_line(text: str) -> str:
    """The line that says why a trial failed: the last exception line of its last failure, else
    that failure's first line and its first unindented line after (Ray's own messages, such as a
    lost actor's, are not exceptions)."""
    lines = [_ANSI.sub("", line).rstrip() for line in str(text).splitlines()]
    starts = [i for i, line in enumerate(lines) if _FAILURE_HEADER.match(line)]
    block = [line for line in lines[starts[-1] + 1 if starts else 0:] if line.strip()]
    if not block:
        return ""
    exceptions = [line for line in block if _EXCEPTION.match(line)]
    if exceptions:
        line = exceptions[-1].strip()
    else:  # e.g. a lost actor: "The actor died unexpectedly…", indented fields, then the cause
        cause = next((b for b in block[1:] if not b[:1].isspace()), "")
        line = f"{block[0].strip()} {cause.strip()}".strip()
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 3] + "..."


def folder_trial_id(folder: Path) -> str:
    """The trial id of a Ray trial folder: its first result's, else the one in its name, else the name."""
    result = folder / "result.json"
    first = ""
    if result.is_file():
        with result.open() as lines:  # the first line only: result.json grows by a line an epoch
            first = lines.readline().strip()
    if first:
        try:
            return str(json.loads(first)[m.TRIAL_ID])
        except (ValueError, KeyError, TypeError):
            pass
    match = _TRIAL_ID.search(folder.name)
    return match.group(1) if match else folder.name


def folder_error(folder: Path) -> str | None:
    """The error line of a Ray trial folder; None when it holds no (readable) error file."""
    try:
        text = (folder / ERROR_FILE).read_text(errors="replace")
    except OSError:
        return None
    return error_line(text) or f"(empty {ERROR_FILE})"


def trial_errors(experiment_dir: str | Path) -> dict[str, str]:
    """Trial id -> the error line of every trial folder under ``experiment_dir`` that holds an
    error file. A trial Ray retried to success keeps its file, so read these with its end state."""
    found = {}
    for error_file in sorted(Path(experiment_dir).glob(f"*/{ERROR_FILE}")):
        error = folder_error(error_file.parent)
        if error is not None:
            found[folder_trial_id(error_file.parent)] = error
    return found
