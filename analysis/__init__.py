"""Learning-curve analysis of sweeps: diagnosis, plots, strategy comparison, MLflow tags.

Pure functions over tidy pandas frames (one row per trial-epoch). Names are resolved lazily,
so ``import analysis`` pulls in neither matplotlib nor mlflow (and never torch or ray).

In a notebook::

    import analysis
    frame = analysis.load_ray_results("ray_results/my-sweep")   # or load_mlflow(name, tracking_uri=...)
    table = analysis.diagnose(frame)                            # verdict, epoch, evidence, advice
    table[table.diagnosis == "overfitting"][["trial_id", "evidence", "advice"]]
    analysis.plot_curves(frame, table.trial_id[:3], diagnoses=table)

From the shell: ``python -m analysis.report ray_results/my-sweep [--tracking-uri URI]``.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DiagnosisThresholds": "analysis.thresholds",
    "thresholds_from_json": "analysis.thresholds",
    "thresholds_from_mapping": "analysis.thresholds",
    "load_ray_results": "analysis.frames",
    "final_rows": "analysis.frames",
    "tidy": "analysis.frames",
    "load_comparison_trials": "analysis.frames",
    "load_comparison_errors": "analysis.frames",
    "not_ended_trials": "analysis.frames",
    "load_mlflow": "analysis.mlflow_io",
    "write_diagnosis_tags": "analysis.mlflow_io",
    "log_report": "analysis.mlflow_io",
    "Diagnosis": "analysis.diagnosis",
    "diagnose": "analysis.diagnosis",
    "diagnose_trial": "analysis.diagnosis",
    "advise": "analysis.advice",
    "plot_curves": "analysis.plots",
    "plot_gap": "analysis.plots",
    "plot_anytime": "analysis.plots",
    "plot_hyperparameters": "analysis.plots",
    "load_comparison": "analysis.strategies",
    "strategy_table": "analysis.strategies",
    "spread_over_seeds": "analysis.strategies",
    "build_report": "analysis.report",
    "publish": "analysis.report",
    "verdicts_by_strategy": "analysis.report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
