"""Reaching an MLflow store (analysis/mlflow_store.py): the sweeps and the report share these."""
from __future__ import annotations

import os

import pytest

from analysis.mlflow_store import HTTP_DEFAULTS, configure_http_client, failure_reason, uri_problem


def test_failure_reason_keeps_the_os_error_and_masks_credentials(monkeypatch):
    exc = RuntimeError("API request to http://bob:pw@h:1/api failed with exception HTTPConnectionPool(...): Failed "
                       "to establish a new connection: [Errno 111] Connection refused'))\nmore")
    assert failure_reason(exc) == "RuntimeError: [Errno 111] Connection refused"
    assert failure_reason(ValueError("at http://bob:pw@h:1\nmore")) == "ValueError: at http://***@h:1"
    # Only this secret in the environment: a machine's own (RAY_AUTH_MODE=token) would mask more words.
    monkeypatch.setattr(os, "environ", {"MLFLOW_TRACKING_TOKEN": "tok-12345"})
    assert failure_reason(PermissionError("bad token tok-12345")) == "PermissionError: bad token ***"
    assert failure_reason(OSError()) == "OSError"


@pytest.mark.parametrize("uri, problem", [
    ("http://", "is malformed: it has no host"),
    ("localhost:5000", "has no scheme. Did you mean http://localhost:5000?"),
    ("http://127.0.0.1:5000", None),
    ("sqlite:///mlflow.db", None),
    ("databricks", None),
])
def test_uri_problem(uri, problem):
    assert uri_problem(uri) == problem


def test_http_retries_are_bounded_unless_the_user_set_them(monkeypatch):
    for key in HTTP_DEFAULTS:
        monkeypatch.setenv(key, "")  # recorded first, so the undo restores whatever was there
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    configure_http_client()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
