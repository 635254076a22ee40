"""Reaching an MLflow store: bounded HTTP retries, URI shape checks and one-line failure reasons.

Shared by the sweeps (``sweeps.tracking.check_tracking``, the background writer) and the report
(``analysis.mlflow_io.check_store``), so both refuse the same URIs with the same words. Here
rather than in ``sweeps`` because analysis never imports sweeps (sweeps imports analysis).
"""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from analysis.redact import redact_text, redact_uri, secret_values

# MLflow's HTTP client retries 7 times with backoff factor 2 and a 120 s timeout by default:
# minutes per request against a dead server. Callers retry on their own where it matters (the
# sweep's writer, with backoff bounded by its flush timeout), so each request gives up quickly.
# setdefault: a user's explicit MLFLOW_HTTP_* settings still win.
# MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT: MLflow prints "View run ... at: <tracking URI>" for every
# run it ends on an HTTP store, with the URI's user:password unredacted; our own lines name the run.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
HTTP_SCHEMES = ("http", "https")  # a tracking server, which serves its own UI
_HOST_PORT = re.compile(r"[\w.-]+:\d+/?")  # host:port, as typed for a server, without its http://
# An OS error inside MLflow's wrapping of urllib3's wrapping ("[Errno 111] Connection refused") is
# the part of a connection failure a user can act on.
_OS_ERROR = re.compile(r"\[Errno -?\d+\] [^'\"()]+")


def configure_http_client() -> None:
    """Short per-request retries for MLflow's HTTP client in this process; see HTTP_DEFAULTS."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def uri_problem(uri: str) -> str | None:
    """What is wrong with the shape of a tracking URI that MLflow would misread (None if nothing):
    ``http://`` without a host, or a bare ``host:port`` (MLflow takes it for a folder)."""
    parts = urlsplit(uri)
    if parts.scheme in HTTP_SCHEMES and not parts.hostname:
        return "is malformed: it has no host"
    if _HOST_PORT.fullmatch(uri):
        return f"has no scheme. Did you mean http://{redact_uri(uri)}?"
    return None


def failure_reason(exc: BaseException) -> str:
    """``Type: first line`` of an exception, secrets and URIs in it redacted, at most ~300 chars;
    for a connection failure, the OS error inside it."""
    text = str(exc).strip()
    first = redact_text(text.splitlines()[0], secrets=secret_values(os.environ)) if text else ""
    os_error = _OS_ERROR.search(first)
    detail = os_error.group(0).strip() if os_error else first[:300]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
