"""trainables.data: reading the shared CIFAR-10 subset, corrupt copies, the download path, the split."""
from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import CIFAR10

from trainables import data
from trainables.data import (BASE_FOLDER, META_FILE, TEST_BATCH, TRAIN_BATCHES, CifarArrays, default_data_dir,
                             load_cifar10, stratified_split)


@pytest.fixture(scope="module")
def subset(cifar_dir: Path) -> CifarArrays:
    return load_cifar10(cifar_dir)


def _raw(path: Path) -> dict:
    with path.open("rb") as f:
        return pickle.load(f, encoding="bytes")


def test_loads_shared_subset(cifar_dir: Path, subset: CifarArrays) -> None:
    per_batch = len(_raw(cifar_dir / "data_batch_1")[b"labels"])
    assert subset.train_images.shape == (5 * per_batch, 3, 32, 32)
    assert subset.train_images.dtype == np.uint8
    assert subset.train_labels.shape == (5 * per_batch,) and subset.train_labels.dtype == np.int64
    assert subset.test_images.shape[1:] == (3, 32, 32) and len(subset.test_images) == len(subset.test_labels)
    assert subset.classes[:3] == ("airplane", "automobile", "bird") and subset.num_classes == 10
    assert set(np.unique(subset.train_labels)) == set(range(10))


def test_rows_are_red_green_blue_planes(cifar_dir: Path, subset: CifarArrays) -> None:
    raw = _raw(cifar_dir / "data_batch_1")
    row = raw[b"data"][7]
    for channel in range(3):
        np.testing.assert_array_equal(subset.train_images[7, channel], row[channel * 1024:(channel + 1) * 1024]
                                      .reshape(32, 32))
    assert subset.train_labels[7] == raw[b"labels"][7]


def test_parent_folder_reads_the_same(cifar_dir: Path, subset: CifarArrays) -> None:
    from_parent = load_cifar10(cifar_dir.parent)
    np.testing.assert_array_equal(from_parent.train_images, subset.train_images)
    np.testing.assert_array_equal(from_parent.test_labels, subset.test_labels)


def _copy_with(cifar_dir: Path, tmp_path: Path, name: str, content: bytes | None) -> Path:
    """A cifar-10-batches-py folder linking the shared files, except ``name`` (replaced or left out)."""
    folder = tmp_path / BASE_FOLDER
    folder.mkdir()
    for other in (*TRAIN_BATCHES, TEST_BATCH, META_FILE):
        if other != name:
            (folder / other).symlink_to(cifar_dir / other)
    if content is not None:
        (folder / name).write_bytes(content)
    return folder


def _batch_bytes(cifar_dir: Path, **changes: object) -> bytes:
    entry = _raw(cifar_dir / "data_batch_2")
    entry.update({k.encode(): v for k, v in changes.items()})
    return pickle.dumps(entry)


def test_missing_folder_says_how_to_point_at_a_copy(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*--data-dir.*CIFAR10_DIR"):
        load_cifar10(tmp_path / "nowhere")


def test_missing_batch_names_the_file(cifar_dir: Path, tmp_path: Path) -> None:
    folder = _copy_with(cifar_dir, tmp_path, "data_batch_5", None)
    with pytest.raises(FileNotFoundError, match=r"data_batch_5 is missing"):
        load_cifar10(folder)


def test_truncated_pickle(cifar_dir: Path, tmp_path: Path) -> None:
    whole = (cifar_dir / "data_batch_3").read_bytes()
    folder = _copy_with(cifar_dir, tmp_path, "data_batch_3", whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"data_batch_3 is not a readable pickle.*truncated or corrupt"):
        load_cifar10(folder)


def test_foreign_pickle_without_cifar_keys(cifar_dir: Path, tmp_path: Path) -> None:
    folder = _copy_with(cifar_dir, tmp_path, TEST_BATCH, pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ValueError, match=r"test_batch has no `data` entry"):
        load_cifar10(folder)


def test_foreign_pickle_not_a_dict(cifar_dir: Path, tmp_path: Path) -> None:
    folder = _copy_with(cifar_dir, tmp_path, "data_batch_1", pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=r"data_batch_1 holds a list"):
        load_cifar10(folder)


def test_data_not_n_by_3072(cifar_dir: Path, tmp_path: Path) -> None:
    entry = _raw(cifar_dir / "data_batch_2")
    bad = _batch_bytes(cifar_dir, data=entry[b"data"][:, :3000])
    folder = _copy_with(cifar_dir, tmp_path, "data_batch_2", bad)
    with pytest.raises(ValueError, match=r"data_batch_2 has `data` of dtype uint8 and shape \(\d+, 3000\)"):
        load_cifar10(folder)


def test_labels_length_mismatch(cifar_dir: Path, tmp_path: Path) -> None:
    labels = _raw(cifar_dir / "data_batch_2")[b"labels"]
    folder = _copy_with(cifar_dir, tmp_path, "data_batch_2", _batch_bytes(cifar_dir, labels=labels[:-1]))
    with pytest.raises(ValueError, match=r"data_batch_2 has .* `labels` .* one integer label per image"):
        load_cifar10(folder)


@pytest.mark.parametrize("bad_label", [10, -1])
def test_label_out_of_range(cifar_dir: Path, tmp_path: Path, bad_label: int) -> None:
    labels = list(_raw(cifar_dir / "data_batch_2")[b"labels"])
    labels[3] = bad_label
    folder = _copy_with(cifar_dir, tmp_path, "data_batch_2", _batch_bytes(cifar_dir, labels=labels))
    with pytest.raises(ValueError, match=r"data_batch_2 has labels in .* must be in \[0, 9\]"):
        load_cifar10(folder)


def test_meta_with_wrong_class_count(cifar_dir: Path, tmp_path: Path) -> None:
    folder = _copy_with(cifar_dir, tmp_path, META_FILE, pickle.dumps({b"label_names": [b"a", b"b"]}))
    with pytest.raises(ValueError, match=r"batches.meta lists 2 class names"):
        load_cifar10(folder)


def test_cifar_arrays_rejects_wrong_shapes(subset: CifarArrays) -> None:
    with pytest.raises(ValueError, match=r"train_images .* must be a uint8 array of shape N×3×32×32"):
        CifarArrays(subset.train_images.reshape(-1, 3, 1024), subset.train_labels, subset.test_images,
                    subset.test_labels, subset.classes)
    with pytest.raises(ValueError, match=r"test_labels .* must be an int64 array"):
        CifarArrays(subset.train_images, subset.train_labels, subset.test_images, subset.test_labels[:-1],
                    subset.classes)


# --- download: torchvision's real machinery against a local HTTP server (no internet) ---

@pytest.fixture(scope="module")
def archive(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cifar-10-python.tar.gz built from the shared subset."""
    path = tmp_path_factory.mktemp("served") / CIFAR10.filename
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(cifar_dir, arcname=BASE_FOLDER)
    return path


@pytest.fixture
def served_archive(archive: Path, monkeypatch: pytest.MonkeyPatch):
    """Serve ``archive`` on 127.0.0.1 and point torchvision's CIFAR10 URL (and MD5) at it."""
    root = archive.parent
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{server.server_address[1]}/{CIFAR10.filename}")
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    yield archive
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


def test_download_when_missing(served_archive: Path, subset: CifarArrays, tmp_path: Path) -> None:
    downloaded = load_cifar10(tmp_path / "root", download=True)
    assert (tmp_path / "root" / BASE_FOLDER / "data_batch_1").is_file()
    np.testing.assert_array_equal(downloaded.train_images, subset.train_images)
    np.testing.assert_array_equal(downloaded.test_labels, subset.test_labels)
    assert downloaded.classes == subset.classes


def test_download_with_wrong_checksum_fails_clearly(served_archive: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)
    with pytest.raises(RuntimeError, match=r"Could not download CIFAR-10.*CIFAR10_DIR"):
        load_cifar10(tmp_path / "root", download=True)


def test_network_failure_says_how_to_use_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{port}/{CIFAR10.filename}")
    with pytest.raises(RuntimeError, match=r"Could not download CIFAR-10.*Offline\? Then point at a local copy"
                                           r".*--data-dir.*CIFAR10_DIR"):
        load_cifar10(tmp_path / "root", download=True)


# --- default_data_dir ---

def test_default_data_dir_prefers_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"


def test_default_data_dir_finds_local_then_shared_then_falls_back(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    work = tmp_path / "main"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_data_dir() == Path("data")
    (tmp_path / "shared" / "data" / BASE_FOLDER).mkdir(parents=True)
    assert default_data_dir() == Path("..") / "shared" / "data" / BASE_FOLDER
    (work / "data" / BASE_FOLDER).mkdir(parents=True)
    assert default_data_dir() == Path("data") / BASE_FOLDER


# --- stratified_split ---

def test_split_is_stratified_disjoint_and_complete(subset: CifarArrays) -> None:
    labels = subset.train_labels
    train_idx, val_idx = stratified_split(labels, val_fraction=0.2, seed=3)
    assert train_idx.dtype == np.int64 and val_idx.dtype == np.int64
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(len(labels)))
    for cls in range(10):
        n_cls = int((labels == cls).sum())
        assert abs(int((labels[val_idx] == cls).sum()) - 0.2 * n_cls) <= 0.5 + 1e-9


def test_split_is_seeded(subset: CifarArrays) -> None:
    a = stratified_split(subset.train_labels, val_fraction=0.1, seed=0)
    b = stratified_split(subset.train_labels, val_fraction=0.1, seed=0)
    c = stratified_split(subset.train_labels, val_fraction=0.1, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_keeps_at_least_one_of_each_class_on_both_sides() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2], dtype=np.int64)
    train_idx, val_idx = stratified_split(labels, val_fraction=0.01, seed=0)
    assert set(labels[val_idx]) == {0, 1, 2} and set(labels[train_idx]) == {0, 1, 2}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, float("nan")])
def test_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"`val_fraction` .* must be in \(0, 1\)"):
        stratified_split(np.zeros(10, dtype=np.int64), val_fraction=fraction, seed=0)


def test_split_rejects_non_integer_labels() -> None:
    with pytest.raises(ValueError, match=r"must be a 1-D integer array"):
        stratified_split(np.zeros((4, 2)), val_fraction=0.5, seed=0)
