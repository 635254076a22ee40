"""Shared fixtures. The real CIFAR-10 subset lives in ../shared/data next to the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CIFAR_DIR = REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The shared CIFAR-10 subset (override with CIFAR10_DIR)."""
    path = Path(os.environ.get("CIFAR10_DIR", DEFAULT_CIFAR_DIR))
    if not (path / "data_batch_1").exists():
        pytest.fail(f"The CIFAR-10 subset is missing at {path}; set CIFAR10_DIR to a cifar-10-batches-py folder.")
    return path


# What the product writes into its working directory by default (README): the local MLflow store
# (and, for any local sqlite store, MLflow's artifact root ./mlruns beside the working directory),
# Ray results and reports. Tests must write these under tmp_path, never into the checkout, where
# they would mix with a developer's own sweeps.
PRODUCT_OUTPUTS = ("mlflow.db", "mlruns", "mlartifacts", "ray_results", "runs", "reports")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, mtime) and folder (MLflow leaves empty artifact folders) of the outputs."""
    out = {}
    for name in PRODUCT_OUTPUTS:
        top = root / name
        for path in [top, *top.rglob("*")] if top.is_dir() else [top] if top.exists() else []:
            stat = path.stat()
            out[str(path.relative_to(root))] = (0, 0) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.fixture(scope="session", autouse=True)
def checkout_left_as_found():
    """Fails the session if any test wrote the product's outputs into the checkout."""
    before = _snapshot(REPO_ROOT)
    yield
    after = _snapshot(REPO_ROOT)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, (f"tests wrote {len(changed)} path(s) into the checkout {REPO_ROOT}, e.g. {changed[:5]}: "
                         "run the code under test in tmp_path (monkeypatch.chdir, or cwd= for a subprocess)")
