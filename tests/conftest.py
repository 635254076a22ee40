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
