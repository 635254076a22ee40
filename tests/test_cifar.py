"""The training loop (trainables/cifar.py): real training on slices of the shared CIFAR-10 subset, CPU."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables import augment, metrics
from trainables.checkpoint import read_checkpoint
from trainables.cifar import (DIVERGENCE_CHECK_EVERY, Progress, _epoch_inputs, batch_starts, epoch_settings, evaluate,
                              evaluate_checkpoint, is_diverged, l1_weights, resolve_device, should_stop_early,
                              to_device, train_epoch, train_trial, update_progress, with_l1)
from trainables.config import OPTIMIZERS, SCHEDULES, TrialConfig
from trainables.model import build_model
from trainables.data import CifarArrays, load_cifar10
from trainables.reporting import MemoryReporter

# A model small enough for dozens of CPU epochs in a test run: 2 blocks of one 8-filter conv.
TINY = {"num_blocks": 2, "convs_per_block": 1, "filters": 8, "head_layers": 0, "batch_size": 32,
        "epochs": 2, "lr": 0.05, "schedule": "constant", "seed": 1}
PER_EPOCH = (metrics.EPOCH, metrics.TRAIN_LOSS, metrics.TRAIN_ACC, metrics.VAL_LOSS, metrics.VAL_ACC, metrics.LR,
             metrics.EPOCH_TIME_S, metrics.TRAIN_TIME_S, metrics.IMAGES_PER_S, metrics.NUM_PARAMS,
             metrics.DIVERGED, metrics.EARLY_STOPPED, metrics.BEST_VAL_ACC, metrics.BEST_EPOCH)
TIMINGS = (metrics.EPOCH_TIME_S, metrics.TRAIN_TIME_S, metrics.IMAGES_PER_S)


@pytest.fixture(scope="session")
def cifar(cifar_dir: Path) -> CifarArrays:
    return load_cifar10(cifar_dir)


@pytest.fixture(scope="session")
def small(cifar: CifarArrays) -> CifarArrays:
    """400 training and 200 test images: 360 train / 40 val after the split, 11 steps per epoch."""
    return replace(cifar, train_images=cifar.train_images[:400], train_labels=cifar.train_labels[:400],
                   test_images=cifar.test_images[:200], test_labels=cifar.test_labels[:200])


def _train(data: CifarArrays, tmp_path: Path | None = None, **overrides) -> tuple[dict, MemoryReporter]:
    reporter = MemoryReporter(tmp_path)
    last = train_trial({**TINY, **overrides}, data=data, reporter=reporter, device="cpu")
    return last, reporter


def test_reports_every_metric_once_per_epoch_with_a_checkpoint(small: CifarArrays, tmp_path: Path) -> None:
    last, reporter = _train(small, tmp_path)
    assert [r[metrics.EPOCH] for r in reporter.history] == [1, 2]
    for r in reporter.history:
        assert set(r) == set(PER_EPOCH)
        assert all(math.isfinite(r[k]) for k in PER_EPOCH)
        assert r[metrics.DIVERGED] == 0 and r[metrics.EARLY_STOPPED] == 0
    assert last == reporter.history[-1]
    assert last[metrics.NUM_PARAMS] > 0
    state = read_checkpoint(reporter.latest_checkpoint)
    assert state["epoch"] == 2 and state["config"]["filters"] == 8
    assert {"model", "optimizer", "scheduler", "rng", "progress", "metrics"} <= set(state)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains(small: CifarArrays, optimizer: str) -> None:
    lr = 0.05 if optimizer == "sgd" else 0.003
    last, reporter = _train(small, optimizer=optimizer, lr=lr, epochs=1)
    assert last[metrics.DIVERGED] == 0 and math.isfinite(last[metrics.TRAIN_LOSS])
    assert last[metrics.LR] == pytest.approx(lr)


def _lrs(data: CifarArrays, schedule: str, **overrides) -> list[float]:
    _, reporter = _train(data, schedule=schedule, **overrides)
    return [r[metrics.LR] for r in reporter.history]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_runs_and_lr_follows_it(small: CifarArrays, schedule: str) -> None:
    lrs = _lrs(small, schedule, epochs=3, step_size=1, gamma=0.5, lr=0.05)
    if schedule == "constant":
        assert lrs == pytest.approx([0.05] * 3)
    elif schedule == "step":
        assert lrs == pytest.approx([0.05, 0.025, 0.0125])
    elif schedule == "exponential":
        assert lrs[1] / lrs[0] == pytest.approx(0.5) and lrs[2] / lrs[1] == pytest.approx(0.5)
    elif schedule == "cosine":
        assert lrs[0] > lrs[1] > lrs[2] and lrs[2] < 0.05 * 0.05  # the last step's lr is near 0
    elif schedule == "onecycle":
        assert lrs[0] > 0.04 and lrs[2] < 1e-3  # past the peak after epoch 1 (pct 0.3), annealed by the end
    else:  # triangular, one epoch per half cycle; reported lr is each epoch's last step's
        assert lrs[0] > 0.04 and lrs[1] < 0.01 and lrs[2] > 0.04


def test_warmup_rises_to_lr(small: CifarArrays) -> None:
    lrs = _lrs(small, "constant", epochs=3, warmup_epochs=2.5)  # 11 steps an epoch: 28 warmup steps
    assert lrs[0] < lrs[1] < 0.05
    assert lrs[0] < 0.05 * 0.8


def test_resume_equals_uninterrupted(small: CifarArrays, tmp_path: Path) -> None:
    # Augmentation, cutout and dropout all draw random numbers, so this fails unless the
    # shuffle/augmentation generator and the global RNG are restored rather than re-seeded.
    cfg = {**TINY, "epochs": 3, "schedule": "cosine", "warmup_epochs": 1.0, "cutout": 8,
           "spatial_dropout": 0.1, "early_stopping_patience": 5}
    straight = MemoryReporter()
    train_trial(cfg, data=small, reporter=straight, device="cpu")

    first = MemoryReporter(tmp_path / "a")
    with pytest.raises(_Interrupted):
        train_trial(cfg, data=small, reporter=_StopAfter(first, epochs=2), device="cpu")
    assert len(first.history) == 2
    resumed = MemoryReporter(tmp_path / "b", resume_from=first.latest_checkpoint)
    train_trial(cfg, data=small, reporter=resumed, device="cpu")

    assert [r[metrics.EPOCH] for r in resumed.history] == [3]
    combined = first.history + resumed.history
    for a, b in zip(straight.history, combined, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMINGS} == {k: v for k, v in b.items() if k not in TIMINGS}


class _StopAfter:
    """Interrupts a trial after ``epochs`` reports, the way a killed worker would."""

    def __init__(self, inner: MemoryReporter, *, epochs: int):
        self.inner, self.epochs = inner, epochs

    def report(self, result, *, checkpoint_dir=None) -> None:
        self.inner.report(result, checkpoint_dir=checkpoint_dir)
        if len(self.inner.history) == self.epochs:
            raise _Interrupted

    def restore_dir(self):
        return None


class _Interrupted(Exception):
    pass


def test_resume_of_a_finished_trial_reports_nothing(small: CifarArrays, tmp_path: Path) -> None:
    last, reporter = _train(small, tmp_path, epochs=1)
    again = MemoryReporter(resume_from=reporter.latest_checkpoint)
    assert train_trial({**TINY, "epochs": 1}, data=small, reporter=again, device="cpu") == last
    assert again.history == []


def test_resume_with_another_config_is_refused(small: CifarArrays, tmp_path: Path) -> None:
    _, reporter = _train(small, tmp_path, epochs=1)
    other = MemoryReporter(resume_from=reporter.latest_checkpoint)
    with pytest.raises(ValueError, match="lr=0.05 in the checkpoint vs 0.1 now"):
        train_trial({**TINY, "epochs": 1, "lr": 0.1}, data=small, reporter=other, device="cpu")


def test_exploding_loss_ends_the_trial_with_diverged(small: CifarArrays, tmp_path: Path) -> None:
    # Without batch norm, plain SGD at lr 10 blows up within a few steps: a real divergence.
    last, reporter = _train(small, tmp_path, batch_norm=False, lr=10.0, momentum=0.9, epochs=5)
    assert last[metrics.DIVERGED] == 1
    assert len(reporter.history) == 1 and reporter.history[0][metrics.DIVERGED] == 1
    assert reporter.latest_checkpoint is None  # the diverged epoch reports no checkpoint
    assert not is_diverged(1.0, limit=2.0)
    assert all(is_diverged(x, limit=2.0) for x in (math.nan, math.inf, 2.5))


def test_divergence_is_caught_within_the_check_interval(cifar: CifarArrays) -> None:
    # 2000 images at batch 16 is ~110 steps an epoch: the trial must stop inside epoch 1, after
    # far fewer images than the epoch holds.
    data = replace(cifar, train_images=cifar.train_images[:2000], train_labels=cifar.train_labels[:2000])
    last, _ = _train(data, batch_norm=False, lr=10.0, batch_size=16, epochs=2)
    assert last[metrics.DIVERGED] == 1
    trained = last[metrics.IMAGES_PER_S] * last[metrics.TRAIN_TIME_S]
    assert trained <= 16 * 2 * DIVERGENCE_CHECK_EVERY + 1


def test_patience_rule() -> None:
    p = Progress()
    p = update_progress(p, epoch=1, val_loss=1.0, val_acc=0.3)
    p = update_progress(p, epoch=2, val_loss=1.1, val_acc=0.4)
    assert (p.best_epoch, p.best_val_acc, p.epochs_since_best) == (1, 0.4, 1)
    assert should_stop_early(p, patience=1) and not should_stop_early(p, patience=2)
    assert not should_stop_early(p, patience=0)
    p = update_progress(p, epoch=3, val_loss=math.nan, val_acc=math.nan)
    assert (p.best_epoch, p.best_val_acc, p.epochs_since_best) == (1, 0.4, 2)


def test_early_stopping_triggers(small: CifarArrays) -> None:
    # Adam at lr 0.05 on 360 images without batch norm overfits and wobbles: val_loss stops
    # improving within a few epochs, so patience 1 must end the trial well before epoch 12.
    last, reporter = _train(small, optimizer="adam", lr=0.05, batch_norm=False, epochs=12,
                            early_stopping_patience=1)
    assert last[metrics.EARLY_STOPPED] == 1
    assert len(reporter.history) < 12
    assert last[metrics.EPOCH] == last[metrics.BEST_EPOCH] + 1
    assert all(r[metrics.EARLY_STOPPED] == 0 for r in reporter.history[:-1])
    # The same trial given exactly as many epochs ran them all: patience stopped nothing.
    stopped_at = len(reporter.history)
    full, _ = _train(small, optimizer="adam", lr=0.05, batch_norm=False, epochs=stopped_at, early_stopping_patience=1)
    assert full[metrics.EPOCH] == stopped_at and full[metrics.EARLY_STOPPED] == 0


def test_l1_adds_to_the_loss_and_shrinks_weights(small: CifarArrays, tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 30 * 30, 10))
    weights = l1_weights(model)
    assert [w.shape for w in weights] == [model[0].weight.shape, model[3].weight.shape]  # not biases, not BN
    loss = torch.tensor(1.5)
    total = sum(w.abs().sum() for w in weights)
    assert with_l1(loss, weights, l1=0.01).item() == pytest.approx(1.5 + 0.01 * total.item(), rel=1e-6)
    assert with_l1(loss, weights, l1=0.0) is loss

    _, plain = _train(small, tmp_path / "plain", l1=0.0, weight_decay=0.0)
    _, shrunk = _train(small, tmp_path / "l1", l1=0.01, weight_decay=0.0)

    def total_abs(reporter: MemoryReporter) -> float:
        state = read_checkpoint(reporter.latest_checkpoint)["model"]
        return sum(v.abs().sum().item() for k, v in state.items() if k.endswith("weight") and v.dim() > 1)

    assert total_abs(shrunk) < 0.8 * total_abs(plain)


def test_max_norm_holds_after_training(small: CifarArrays, tmp_path: Path) -> None:
    _, reporter = _train(small, tmp_path, max_norm=0.5, lr=0.2)
    state = read_checkpoint(reporter.latest_checkpoint)["model"]
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() > 1]
    assert weights
    for w in weights:
        assert w.flatten(1).norm(dim=1).max().item() <= 0.5 + 1e-5


def test_evaluate_checkpoint_reads_the_test_split(small: CifarArrays, tmp_path: Path) -> None:
    _, reporter = _train(small, tmp_path)
    result = evaluate_checkpoint(reporter.latest_checkpoint, data=small, device="cpu")
    assert set(result) == {metrics.TEST_LOSS, metrics.TEST_ACC}
    assert 0.0 <= result[metrics.TEST_ACC] <= 1.0 and math.isfinite(result[metrics.TEST_LOSS])
    # Accuracy is a multiple of 1/200: it was measured on the 200 test images.
    assert result[metrics.TEST_ACC] * 200 == pytest.approx(round(result[metrics.TEST_ACC] * 200))
    shifted = replace(small, test_labels=(small.test_labels + 1) % 10)
    assert evaluate_checkpoint(reporter.latest_checkpoint, data=shifted, device="cpu") != result


def test_bad_config_fails_before_compute(small: CifarArrays) -> None:
    reporter = MemoryReporter()
    with pytest.raises(ValueError, match="Did you mean `lr`"):
        train_trial({"lrr": 0.1}, data=small, reporter=reporter, device="cpu")
    with pytest.raises(ValueError, match="block 6 pool"):
        train_trial({**TINY, "num_blocks": 6}, data=small, reporter=reporter, device="cpu")
    with pytest.raises(ValueError, match="`num_threads` is 0"):
        train_trial(TINY, data=small, reporter=reporter, device="cpu", num_threads=0)
    assert reporter.history == []


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
    with pytest.raises(ValueError, match="`device` is 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no cuda device"):
            resolve_device("cuda")


def test_batches_are_full_and_equal() -> None:
    assert list(batch_starts(100, 32)) == [0, 32, 64]
    assert list(batch_starts(10, 32)) == [0]


@pytest.mark.slow
def test_real_training_beats_chance(cifar: CifarArrays) -> None:
    # The whole shared subset (~4580 train / ~510 val images), 3 epochs of a 6.4k-parameter CNN.
    cfg = {"num_blocks": 3, "convs_per_block": 1, "filters": 8, "head_layers": 0, "batch_size": 64,
           "epochs": 3, "lr": 0.05, "schedule": "onecycle", "seed": 0}
    last, reporter = _train(cifar, **cfg)
    assert last[metrics.DIVERGED] == 0 and len(reporter.history) == 3
    # Chance is 0.10 on 10 balanced classes (measured: 0.37 on the ~510 validation images).
    assert last[metrics.VAL_ACC] > 0.25, reporter.history
    assert np.isfinite([r[metrics.VAL_LOSS] for r in reporter.history]).all()


def test_train_loss_is_plain_cross_entropy_on_val_losss_scale_under_label_smoothing(small: CifarArrays) -> None:
    cfg = TrialConfig.from_dict({**TINY, "batch_norm": False, "label_smoothing": 0.3, "augment": False,
                                 "batch_size": 40})
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        model.classifier.linear.weight.mul_(30)  # confident predictions: smoothed and plain CE differ a lot
    split = to_device(small.train_images[:360], small.train_labels[:360], device=torch.device("cpu"))
    settings = replace(epoch_settings(cfg, device=torch.device("cpu")), augment=False)
    # lr 0: the weights stay put, so the epoch's mean batch loss is the loss of this one model.
    stats = train_epoch(model, split, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), scheduler=None,
                        settings=settings, generator=torch.Generator().manual_seed(0))
    plain, _ = evaluate(model, split, settings=settings)  # no dropout or batch norm: same as train mode
    with torch.no_grad():
        logits = model(augment.normalize(split.images))
    smoothed = torch.nn.functional.cross_entropy(logits, split.labels, label_smoothing=0.3).item()
    assert abs(smoothed - plain) > 0.5
    assert stats.loss == pytest.approx(plain, rel=1e-4)


def test_cutout_applies_with_augment_off_and_without_crop_or_flip(small: CifarArrays) -> None:
    split = to_device(small.train_images[:64], small.train_labels[:64], device=torch.device("cpu"))
    cfg = TrialConfig.from_dict({**TINY, "augment": False, "cutout": 8})
    settings = replace(epoch_settings(cfg, device=torch.device("cpu")), channels_last=False)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    images, labels = _epoch_inputs(split, settings=settings, generator=torch.Generator().manual_seed(0))
    original = augment.normalize(augment.take_rows(split.images, order))
    assert torch.equal(labels, split.labels[order])
    changed = (images != original).any(dim=1)  # pixels cut out, per image
    assert changed.any(dim=(1, 2)).float().mean() > 0.9  # nearly every image has its square
    assert changed.sum(dim=(1, 2)).max() <= 8 * 8  # and nothing else moved: no crop, no flip


@pytest.mark.parametrize("key, value", [("image_size", 28), ("in_channels", 1), ("num_classes", 5)])
def test_a_model_that_does_not_fit_the_data_fails_before_compute(small: CifarArrays, key: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"`{key}` is {value}, but the data has .*Set {key}="):
        train_trial({**TINY, key: value, "head_pooling": "flatten"}, data=small, reporter=MemoryReporter(),
                    device="cpu")
