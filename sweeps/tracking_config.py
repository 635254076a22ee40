"""A sweep's MLflow settings and flags, without importing MLflow or Ray (the CLI parses them
before deciding whether to sweep at all)."""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from typing import Mapping

from analysis.redact import redact_uri

DEFAULT_EXPERIMENT = "cnn-sweeps"  # the MLflow experiment that holds every sweep's parent run
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
LOCAL_STORE_FILE = "mlflow.db"  # the local store, in the working directory
LOCAL_STORE = f"sqlite:///{LOCAL_STORE_FILE}"  # what `mlflow ui --backend-store-uri` takes there


class TrackingError(ValueError):
    """The tracking store cannot be used; raised before any compute starts."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where and how a sweep is logged to MLflow."""

    enabled: bool = True  # False (--no-mlflow): no MLflow at all
    tracking_uri: str | None = field(default=None, repr=False)  # None: $MLFLOW_TRACKING_URI, else LOCAL_STORE
    experiment: str = DEFAULT_EXPERIMENT  # MLflow experiment holding the sweeps' parent runs
    flush_timeout_s: float = 30.0  # at the sweep's end, longest wait for records still queued, seconds
    max_backoff_s: float = 30.0  # longest pause between retries while the server is down, seconds

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError(f"The value of `enabled` is {self.enabled!r}, but must be true or false.")
        if self.tracking_uri is not None and (not isinstance(self.tracking_uri, str) or not self.tracking_uri.strip()):
            raise ValueError(f"The value of `mlflow_tracking_uri` is {redact_uri(str(self.tracking_uri))!r}, but must "
                             "be a non-empty URI. Pass e.g. --mlflow-tracking-uri http://host:5000, or leave it out "
                             f"to use the local store {LOCAL_STORE}.")
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise ValueError(f"The value of `mlflow_experiment` is {self.experiment!r}, but must be a non-empty name. "
                             f"Pass --mlflow-experiment {DEFAULT_EXPERIMENT}.")
        for name in ("flush_timeout_s", "max_backoff_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"The value of `{name}` is {value!r}, but must be a finite number > 0. "
                                 "Pass a positive number of seconds.")

    def __repr__(self) -> str:
        uri = redact_uri(self.tracking_uri) if self.tracking_uri else None
        return (f"TrackingConfig(enabled={self.enabled}, tracking_uri={uri!r}, experiment={self.experiment!r}, "
                f"flush_timeout_s={self.flush_timeout_s}, max_backoff_s={self.max_backoff_s})")

    def resolved_uri(self, env: Mapping[str, str] | None = None) -> str:
        """The flag, else $MLFLOW_TRACKING_URI, else the local store ./mlflow.db (absolute path)."""
        env = os.environ if env is None else env
        if self.tracking_uri:
            return self.tracking_uri
        if env.get(ENV_TRACKING_URI):
            return env[ENV_TRACKING_URI]
        # Ours, not mlflow.get_tracking_uri(): that is sqlite:///mlflow.db only from MLflow 3 on
        # (./mlruns before), and the README, the end-of-sweep hints and analysis.report all name
        # this store.
        return f"sqlite:///{os.path.abspath(LOCAL_STORE_FILE)}"


def usable_uri(uri: str) -> str:
    """The tracking URI as a printed command may carry it: a URI with credentials is read from the
    environment instead, so nothing printed (and kept in terminal logs) holds a secret."""
    return f'"${ENV_TRACKING_URI}"' if redact_uri(uri) != uri else uri


def export_note(uri: str) -> str:
    """Where a printed command reads the URI from an environment variable this shell lacks."""
    if usable_uri(uri) == uri or os.environ.get(ENV_TRACKING_URI) == uri:
        return ""
    return f"\n(first `export {ENV_TRACKING_URI}=<the tracking URI with its credentials>`: it came from the flag)"


TRACKING_ARGS = ("no_mlflow", "mlflow_tracking_uri", "mlflow_experiment")  # argparse dests added below


def add_tracking_args(parser: argparse.ArgumentParser) -> None:
    """The MLflow flags. They stay out of SweepConfig on purpose: that is saved to the experiment
    folder (sweep_config.json, tuner.pkl) and a tracking URI may carry credentials."""
    g = parser.add_argument_group("MLflow tracking")
    g.add_argument("--mlflow-tracking-uri", metavar="URI", help=f"tracking server or store, e.g. http://host:5000 "
                   f"(default: ${ENV_TRACKING_URI}, else the local store {LOCAL_STORE}: run `mlflow ui` here)")
    g.add_argument("--mlflow-experiment", default=DEFAULT_EXPERIMENT, metavar="NAME",
                   help="MLflow experiment holding the sweep's parent run (default: %(default)s)")
    g.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def tracking_from_args(ns: argparse.Namespace) -> TrackingConfig:
    return TrackingConfig(enabled=not ns.no_mlflow, tracking_uri=ns.mlflow_tracking_uri,
                          experiment=ns.mlflow_experiment)
