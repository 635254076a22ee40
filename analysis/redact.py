"""Keep credentials out of MLflow params, tags and log lines.

Tracking URIs may carry credentials (``https://user:pass@host``,
``postgresql://user:pw@db/mlflow``, ``?token=...``) and the environment holds tokens
(``MLFLOW_TRACKING_TOKEN``, ``AWS_SECRET_ACCESS_KEY``). Every message and param that names a
URI goes through ``redact_uri``/``redact_text`` first, and the environment is never logged.
Here rather than in ``sweeps`` because the report needs it too and analysis never imports
sweeps (sweeps imports analysis, not the other way round).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters and environment variables whose values are secrets.
_SECRET_NAME = re.compile(r"(token|passw|secret|key|credential|signature|sig$|auth)", re.IGNORECASE)
_URI = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>]+")
_MIN_SECRET_LEN = 4  # shorter env values ("1", "yes") would mask ordinary words


def redact_uri(uri: str) -> str:
    """``uri`` with its user info and secret query values masked; other strings unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return MASK  # unparseable (e.g. a bad IPv6 literal): show nothing rather than a secret
    if not parts.scheme or not parts.netloc and not parts.query:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_NAME.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """Values of environment variables named like secrets (tokens, passwords, keys)."""
    return tuple(v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN)


def redact_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URI in it redacted and every value in ``secrets`` masked."""
    text = _URI.sub(lambda m: redact_uri(m.group(0)), text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, MASK)
    return text
