"""CIFAR-10 as in-memory uint8 arrays, read straight from the ``cifar-10-batches-py`` pickles.

We read the pickles ourselves instead of going through ``torchvision.datasets.CIFAR10``:
torchvision checks every batch against the full dataset's MD5 sums, so it refuses any subset
(our shared 1017-images-per-batch copy included), and its dataset yields one PIL image at a
time, which the batched on-device pipeline (``trainables.augment``) does not want. Downloading
is left to torchvision's own machinery (URL, checksum, extraction).

Splits: the training batches are split (``stratified_split``) into a training part and a
validation part; the validation split is what every trial is tuned on. The test batch is
read only for the final evaluation of a chosen configuration.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BASE_FOLDER = "cifar-10-batches-py"  # the folder torchvision's archive extracts to
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)  # channels, height, width
NUM_CLASSES = 10
ENV_VAR = "CIFAR10_DIR"
_POINT_AT_COPY = (f"point at a local copy of the `{BASE_FOLDER}` folder (or its parent) with --data-dir "
                  f"or the {ENV_VAR} environment variable")


@dataclass(frozen=True)
class CifarArrays:
    """The whole dataset in memory: images uint8 N×3×32×32 (channels first), labels int64 N."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            _check_images(images, where=f"CifarArrays.{split}_images")
            _check_labels(labels, n=len(images), num_classes=len(self.classes),
                          where=f"CifarArrays.{split}_labels")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def fingerprint(data: CifarArrays) -> str:
    """A SHA-256 of every image, label and class name, in order: equal exactly when two loads hold the
    same dataset (the same subsample of it included). About 0.3 s for the full CIFAR-10."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update("\n".join(data.classes).encode())
    return digest.hexdigest()


def _check_images(images: Any, *, where: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        desc = f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
        raise ValueError(f"{where} is {desc}, but must be a uint8 array of shape N×3×32×32. "
                         "Build it with load_cifar10 or reshape the rows to (N, 3, 32, 32).")


def _check_labels(labels: Any, *, n: int, num_classes: int, where: str) -> None:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.shape != (n,):
        desc = f"{type(labels).__name__} {getattr(labels, 'dtype', '')} {getattr(labels, 'shape', '')}"
        raise ValueError(f"{where} is {desc}, but must be an int64 array of shape ({n},), one label per image.")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where} holds labels in [{labels.min()}, {labels.max()}], but must be in "
                         f"[0, {num_classes - 1}].")


def default_data_dir() -> Path:
    """$CIFAR10_DIR, else an existing ./data/cifar-10-batches-py or ../shared/data/cifar-10-batches-py,
    else ./data (where ``load_cifar10(..., download=True)`` puts the download)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    for candidate in (Path("data") / BASE_FOLDER, Path("..") / "shared" / "data" / BASE_FOLDER):
        if candidate.is_dir():
            return candidate
    return Path("data")


def batches_dir(data_dir: str | Path) -> Path:
    """The ``cifar-10-batches-py`` folder, given either that folder or its parent (torchvision's root)."""
    path = Path(data_dir).expanduser()
    if path.name == BASE_FOLDER or (path / META_FILE).exists() or (path / TEST_BATCH).exists():
        return path
    return path / BASE_FOLDER


def load_cifar10(data_dir: str | Path, *, download: bool = False) -> CifarArrays:
    """Read the five training batches, the test batch and the class names.

    ``data_dir`` is the ``cifar-10-batches-py`` folder or its parent. When the folder is missing
    and ``download`` is true, torchvision downloads and extracts the archive into the parent.
    Batches may hold any number of images (the full dataset has 10000 per batch).
    """
    folder = batches_dir(data_dir)
    if not folder.is_dir():
        if not download:
            raise FileNotFoundError(f"CIFAR-10 folder {folder} does not exist. Fix: {_POINT_AT_COPY}, "
                                    "or allow the download (download=True / --download).")
        download_cifar10(folder.parent)
    classes = _read_classes(folder / META_FILE)
    train = [_read_batch(folder / name, num_classes=len(classes)) for name in TRAIN_BATCHES]
    test_images, test_labels = _read_batch(folder / TEST_BATCH, num_classes=len(classes))
    return CifarArrays(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
    )


def download_cifar10(root: str | Path) -> Path:
    """Download and extract the CIFAR-10 archive into ``root`` with torchvision (URL and MD5 are
    torchvision's). Raises ``RuntimeError`` saying how to use a local copy when that fails."""
    from torchvision.datasets import CIFAR10  # deferred: torchvision is heavy and only needed here
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root).expanduser()
    try:
        download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise RuntimeError(f"Could not download CIFAR-10 from {CIFAR10.url} into {root} "
                           f"({type(exc).__name__}: {exc}). Offline? Then {_POINT_AT_COPY}.") from exc
    folder = root / BASE_FOLDER
    if not folder.is_dir():
        raise RuntimeError(f"The downloaded archive {root / CIFAR10.filename} holds no `{BASE_FOLDER}` "
                           f"folder. Delete it and retry, or {_POINT_AT_COPY}.")
    return folder


def _read_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 file {path} is missing; a complete `{BASE_FOLDER}` folder holds "
                                f"{', '.join((*TRAIN_BATCHES, TEST_BATCH, META_FILE))}. "
                                f"Re-extract the archive, or {_POINT_AT_COPY}.")
    try:
        with path.open("rb") as f:
            # latin1 is how numpy arrays pickled by Python 2 (the official archive) load in Python 3.
            obj = pickle.load(f, encoding="latin1")
    # Unpickling damaged bytes can fail with nearly any exception type (EOFError,
    # UnpicklingError, KeyError, ImportError, ...), so catch them all and say what to do.
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"CIFAR-10 file {path} is not a readable pickle ({type(exc).__name__}: {exc}); it is "
                         "truncated or corrupt. Re-download or re-extract the dataset.") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR-10 file {path} holds a {type(obj).__name__}, but a CIFAR-10 batch is a dict. "
                         f"It is not a CIFAR-10 file; {_POINT_AT_COPY}.")
    # Python-3 re-pickled copies keep bytes keys; the official archive gives str keys under latin1.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _require(entry: dict[str, Any], key: str, path: Path) -> Any:
    if key not in entry:
        raise ValueError(f"CIFAR-10 file {path} has no `{key}` entry (keys: {sorted(map(str, entry))}); it is "
                         f"not a CIFAR-10 python batch. Fix: {_POINT_AT_COPY}.")
    return entry[key]


def _read_classes(path: Path) -> tuple[str, ...]:
    names = _require(_read_pickle(path), "label_names", path)
    classes = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
    if len(classes) != NUM_CLASSES:
        raise ValueError(f"CIFAR-10 file {path} lists {len(classes)} class names, but CIFAR-10 has "
                         f"{NUM_CLASSES}. Is this CIFAR-100? Fix: {_POINT_AT_COPY}.")
    return classes


def _read_batch(path: Path, *, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_pickle(path)
    data = np.asarray(_require(entry, "data", path))
    labels = np.asarray(_require(entry, "labels", path))
    row = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row or len(data) == 0:
        raise ValueError(f"CIFAR-10 file {path} has `data` of dtype {data.dtype} and shape {data.shape}, but "
                         f"must be uint8 N×{row} with N >= 1 (1024 red, 1024 green, 1024 blue values per row). "
                         "The file is corrupt or not CIFAR-10; re-download the dataset.")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"CIFAR-10 file {path} has {labels.shape} `labels` of dtype {labels.dtype} for "
                         f"{len(data)} images, but needs one integer label per image. The file is corrupt; "
                         "re-download the dataset.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"CIFAR-10 file {path} has labels in [{labels.min()}, {labels.max()}], but they must "
                         f"be in [0, {num_classes - 1}]. The file is corrupt or not CIFAR-10; re-download it.")
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


def stratified_split(labels: np.ndarray, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of training indices into (train_idx, val_idx), both sorted int64.

    The validation split is what trials are tuned on (val_acc is the sweep objective); the
    test split is never part of this: it is read only for the final evaluation of a chosen
    config. Each class keeps ``round(n_c * val_fraction)`` of its images for validation, at
    least one and at most ``n_c - 1`` when it has two or more, so class balance matches.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` has shape {labels.shape} and dtype {labels.dtype}, but must be a 1-D "
                         "integer array. Pass CifarArrays.train_labels.")
    if isinstance(val_fraction, bool) or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"The value of `val_fraction` is {val_fraction!r}, but must be in (0, 1). "
                         "Use e.g. 0.1 to hold out 10% of each class.")
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_val = int(np.floor(len(idx) * val_fraction + 0.5))
        n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) > 1 else 0
        val_parts.append(rng.permutation(idx)[:n_val])
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask).astype(np.int64), val_idx
