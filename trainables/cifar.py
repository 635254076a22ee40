"""Train one CNN on CIFAR-10: the function trainable every sweep runs, and its CLI.

The whole dataset is moved to the device once as uint8; each epoch shuffles it with a seeded
``randperm`` and augments batches on the device (``trainables.augment``), in the style of
KellerJordan/cifar10-airbench, instead of a DataLoader with per-image PIL transforms (see
``bench/train_throughput.py`` for the measured difference). The loop never syncs with the
device per step: losses and hits accumulate in device tensors and are read once per epoch
(plus a cheap divergence check every ``DIVERGENCE_CHECK_EVERY`` steps).

``train_trial`` reports once per epoch (so Ray's ``training_iteration`` is the epoch) with a
checkpoint from which a trial resumes bit-for-bit; ``evaluate_checkpoint`` is the only code
that reads the test split. Run one trial without Ray with ``python -m trainables.cifar``.
"""
from __future__ import annotations

import contextlib
import math
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from trainables import augment, checkpoint, metrics
from trainables.config import DEVICES, ModelConfig, TrainConfig, TrialConfig
from trainables.data import CifarArrays, stratified_split
from trainables.model import apply_max_norm, build_model, count_parameters, plan_layers
from trainables.optim import build_optimizer, build_scheduler, current_lr, steps_per_epoch
from trainables.reporting import Reporter

# Reading a device scalar stalls the GPU's queue, so the loss is checked for divergence every
# this many steps rather than every step: a diverged trial wastes at most this many steps,
# and the stall costs well under 1% of an epoch on a GPU (on a CPU it costs nothing).
DIVERGENCE_CHECK_EVERY = 25


@dataclass(frozen=True)
class DeviceSplit:
    """Images (uint8 N×3×32×32) and labels (int64 N) already on the training device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class EpochSettings:
    """Everything one training epoch needs besides the model, optimiser and schedule."""

    batch_size: int  # images per optimiser step
    loss_fn: nn.Module  # the training criterion (cross-entropy, maybe label-smoothed)
    augment: bool = True  # random crop + flip on the device
    crop_padding: int = 4  # pixels
    cutout: int = 0  # pixels; 0 = off (independent of augment)
    l1: float = 0.0  # L1 coefficient on conv/dense weights, added to the loss
    max_norm: float = 0.0  # per-unit max weight norm after each step; 0 = off
    divergence_limit: float = math.inf  # a batch loss above this (or non-finite) ends the trial
    mixed_precision: bool = False  # bf16 autocast (CUDA only)
    channels_last: bool = False  # NHWC memory layout (fast convs on CUDA)


@dataclass(frozen=True)
class EpochStats:
    """One training epoch's outcome; ``loss`` and ``acc`` are means over its training batches."""

    loss: float
    acc: float
    images: int
    seconds: float  # wall time inside training steps
    lr: float  # learning rate of the epoch's last step
    diverged: bool


@dataclass(frozen=True)
class Progress:
    """Best-so-far and patience state, carried from epoch to epoch (and in checkpoints)."""

    best_val_loss: float = math.inf
    best_val_acc: float = 0.0
    best_epoch: int = 0  # epoch of the lowest val_loss; 0 = none yet
    epochs_since_best: int = 0


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; a named device must be available."""
    if name not in DEVICES:
        raise ValueError(f"The value of `device` is {name!r}, but must be one of {', '.join(DEVICES)}. "
                         "Use `auto` to pick the best available.")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ValueError(f"The value of `device` is {name!r}, but this machine has no {name} device. "
                         "Use `auto` or `cpu`.")
    return torch.device(name)


def is_diverged(loss: float, *, limit: float) -> bool:
    """True for a NaN/inf loss or one above ``limit`` (NaN fails every comparison, hence ``not <=``)."""
    return not loss <= limit


def divergence_limit(cfg: TrialConfig) -> float:
    """``divergence_factor`` × ln(num_classes): a multiple of the loss of uniform guessing."""
    return cfg.train.divergence_factor * math.log(cfg.model.num_classes)


def update_progress(progress: Progress, *, epoch: int, val_loss: float, val_acc: float) -> Progress:
    """Fold one epoch's validation result into the best-so-far and patience state."""
    best_acc = max(progress.best_val_acc, val_acc) if math.isfinite(val_acc) else progress.best_val_acc
    if val_loss < progress.best_val_loss:  # False for NaN: a NaN epoch never counts as improvement
        return Progress(best_val_loss=val_loss, best_val_acc=best_acc, best_epoch=epoch, epochs_since_best=0)
    return replace(progress, best_val_acc=best_acc, epochs_since_best=progress.epochs_since_best + 1)


def should_stop_early(progress: Progress, *, patience: int) -> bool:
    """Patience rule on validation loss; ``patience == 0`` turns it off."""
    return patience > 0 and progress.epochs_since_best >= patience


def batch_starts(num_images: int, batch_size: int) -> range:
    """Start offsets of one epoch's batches: full batches only (one short batch if the split is
    smaller than a batch). Equal batches keep the loss scale per step constant and never hand
    BatchNorm a batch of one; a different remainder is left out every epoch by the shuffle."""
    return range(0, steps_per_epoch(num_images, batch_size) * batch_size, batch_size)


def _normalized(images: torch.Tensor, *, settings: EpochSettings) -> torch.Tensor:
    # Under bf16 autocast the first conv casts its input to bf16 anyway: normalising straight
    # to bf16 saves that cast and halves the epoch tensor.
    dtype = torch.bfloat16 if settings.mixed_precision else torch.float32
    return augment.normalize(images, channels_last=settings.channels_last, dtype=dtype)


def _epoch_inputs(split: DeviceSplit, *, settings: EpochSettings,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The epoch's shuffled, augmented and normalised images, and their labels, in batch order.

    Augmented in one call rather than per batch because ``augment_batch`` reads one count
    vector back from the device per call (a sync per step otherwise); normalised in one call so
    a step's input is a zero-copy slice and each step launches only the model's own kernels.
    The float copy costs 4× the uint8 epoch in memory (~0.6 GB for all 50k CIFAR-10 images).
    """
    order = torch.randperm(len(split), device=split.labels.device, generator=generator)
    # The shuffle rides on the copy the augmentation makes anyway (one pass over the epoch, not two).
    if settings.augment or settings.cutout > 0:
        # Cutout is its own setting: with augment off it still applies, without the crop and flip.
        images = augment.augment_batch(split.images, generator=generator,
                                       crop_padding=settings.crop_padding if settings.augment else 0,
                                       flip=settings.augment, cutout=settings.cutout, order=order)
    else:
        images = augment.take_rows(split.images, order)
    return _normalized(images, settings=settings), split.labels[order]


def _autocast(settings: EpochSettings, device: torch.device) -> contextlib.AbstractContextManager:
    if settings.mixed_precision:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def l1_weights(model: nn.Module) -> list[torch.Tensor]:
    """Conv and dense weights (not biases, not BatchNorm scales): what the L1 penalty shrinks."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def with_l1(loss: torch.Tensor, weights: list[torch.Tensor], *, l1: float) -> torch.Tensor:
    """The optimised objective: ``loss + l1 * sum |w|``. Reported train_loss stays the data loss,
    so it compares with val_loss (which has no penalty) on the same scale."""
    if l1 <= 0 or not weights:
        return loss
    return loss + l1 * torch.stack([w.abs().sum() for w in weights]).sum()


def train_epoch(model: nn.Module, split: DeviceSplit, *, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None, settings: EpochSettings,
                generator: torch.Generator) -> EpochStats:
    """One pass over ``split`` in a ``generator``-seeded order, stepping ``scheduler`` per batch.

    Works for any classifier ``model`` (the benchmark passes its own). Stops early, with
    ``diverged=True``, when a checked batch loss is non-finite or above the divergence limit.
    """
    device = split.labels.device
    model.train()
    penalised = l1_weights(model) if settings.l1 > 0 else []
    starts = batch_starts(len(split), settings.batch_size)
    size = min(settings.batch_size, len(split))
    # Per-step results go into preallocated buffers (one small kernel each, no host sync) and
    # are reduced once at the end of the epoch.
    losses = torch.empty(len(starts), device=device)
    # train_loss is reported as plain cross-entropy, like val_loss: a label-smoothed loss has a
    # floor above 0 and sits above val_loss even where the model fits the training data better.
    smoothed = getattr(settings.loss_fn, "label_smoothing", 0.0) > 0
    predictions = torch.empty(len(starts) * size, dtype=torch.long, device=device)
    steps, lr, diverged = 0, current_lr(optimizer), False
    start = time.perf_counter()
    inputs, labels = _epoch_inputs(split, settings=settings, generator=generator)
    for first in starts:
        y = labels[first:first + size]
        with _autocast(settings, device):
            logits = model(inputs[first:first + size])
            loss = settings.loss_fn(logits, y)
        objective = with_l1(loss, penalised, l1=settings.l1)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        lr = current_lr(optimizer)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if settings.max_norm > 0:
            apply_max_norm(model, settings.max_norm)
        losses[steps] = F.cross_entropy(logits.detach().float(), y) if smoothed else loss.detach()
        torch.argmax(logits.detach(), dim=1, out=predictions[first:first + size])
        steps += 1
        # max() keeps a NaN, so one read covers non-finite and exploding losses alike.
        if steps % DIVERGENCE_CHECK_EVERY == 0 and is_diverged(losses[:steps].max().item(),
                                                               limit=settings.divergence_limit):
            diverged = True
            break
    images = steps * size
    # These .item() calls are the epoch's one sync, so the clock stops once the device is done.
    mean_loss, worst = losses[:steps].mean().item(), losses[:steps].max().item()
    hits = (predictions[:images] == labels[:images]).sum().item()
    seconds = time.perf_counter() - start
    return EpochStats(loss=mean_loss, acc=hits / images, images=images, seconds=seconds, lr=lr,
                      diverged=diverged or is_diverged(worst, limit=settings.divergence_limit))


@torch.no_grad()
def evaluate(model: nn.Module, split: DeviceSplit, *, settings: EpochSettings,
             batch_size: int | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on ``split``: eval mode, no augmentation, no grad.

    The loss is plain cross-entropy (no label smoothing), so val_loss compares across trials
    whatever smoothing they trained with. Without grad only a layer's activations are alive at
    a time, so twice the training batch fits wherever training does.
    """
    batch_size = batch_size or 2 * settings.batch_size
    device = split.labels.device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device, dtype=torch.long)
    for first in range(0, len(split), batch_size):
        x = _normalized(split.images[first:first + batch_size], settings=settings)
        y = split.labels[first:first + batch_size]
        with _autocast(settings, device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        hits += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = max(len(split), 1)
    return loss_sum.item() / n, hits.item() / n


def epoch_settings(cfg: TrialConfig, *, device: torch.device) -> EpochSettings:
    t: TrainConfig = cfg.train
    cuda = device.type == "cuda"
    return EpochSettings(
        batch_size=t.batch_size, loss_fn=nn.CrossEntropyLoss(label_smoothing=t.label_smoothing),
        augment=t.augment, crop_padding=t.crop_padding, cutout=t.cutout, l1=t.l1,
        max_norm=cfg.model.max_norm, divergence_limit=divergence_limit(cfg),
        # bf16 autocast and channels_last pay off on CUDA tensor cores; on CPU they slow
        # convolutions down, so the CPU path stays fp32 NCHW.
        mixed_precision=cuda, channels_last=cuda,
    )


def to_device(images: Any, labels: Any, *, device: torch.device) -> DeviceSplit:
    """Move a numpy split to the device once (uint8 stays uint8: 4× less memory than float)."""
    return DeviceSplit(images=torch.from_numpy(images).to(device), labels=torch.from_numpy(labels).to(device))


@dataclass
class _Trial:
    """The mutable objects of one running trial."""

    cfg: TrialConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    settings: EpochSettings
    train: DeviceSplit
    val: DeviceSplit
    num_params: int
    epoch: int = 0
    progress: Progress = Progress()
    last_metrics: dict[str, Any] | None = None
    finished: bool = False  # early-stopped: nothing left to train on resume


def check_fits_data(model: ModelConfig, data: CifarArrays) -> None:
    """The model's input and output sizes must match the data's; else the first step fails deep
    inside torch with a shape error. Callers run this before any compute."""
    channels, size = data.train_images.shape[1], data.train_images.shape[2]
    for key, value, actual in (("in_channels", model.in_channels, channels), ("image_size", model.image_size, size),
                               ("num_classes", model.num_classes, data.num_classes)):
        if value != actual:
            raise ValueError(f"The value of `{key}` is {value}, but the data has {actual} "
                             f"({channels}×{size}×{size} images, {data.num_classes} classes). "
                             f"Set {key}={actual}, or drop the key to use that default.")


def _setup(cfg: TrialConfig, *, data: CifarArrays, device: torch.device) -> _Trial:
    check_fits_data(cfg.model, data)
    train_idx, val_idx = stratified_split(data.train_labels, val_fraction=cfg.train.val_fraction,
                                          seed=cfg.train.seed)
    if device.type == "cuda":
        # Every step has the same shapes, so cuDNN's one-off autotuning pays for itself at once.
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.train.seed)  # weight init and dropout draw from the global generator
    model = build_model(cfg.model).to(device)
    settings = epoch_settings(cfg, device=device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train = to_device(data.train_images[train_idx], data.train_labels[train_idx], device=device)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train,
                                steps_per_epoch=len(batch_starts(len(train), cfg.train.batch_size)))
    return _Trial(
        cfg=cfg, model=model, optimizer=optimizer, scheduler=scheduler,
        generator=augment.make_generator(cfg.train.seed, device),
        settings=settings, train=train,
        val=to_device(data.train_images[val_idx], data.train_labels[val_idx], device=device),
        num_params=count_parameters(model),
    )


def _state(trial: _Trial) -> dict[str, Any]:
    p = trial.progress
    return {
        "model": trial.model.state_dict(), "optimizer": trial.optimizer.state_dict(),
        "scheduler": trial.scheduler.state_dict(), "rng": checkpoint.capture_rng(trial.generator),
        "epoch": trial.epoch, "finished": trial.finished, "metrics": trial.last_metrics,
        "progress": {"best_val_loss": p.best_val_loss, "best_val_acc": p.best_val_acc,
                     "best_epoch": p.best_epoch, "epochs_since_best": p.epochs_since_best},
    }


def _restore(trial: _Trial, directory: str) -> None:
    state = checkpoint.read_checkpoint(directory)
    checkpoint.check_same_config(state["config"], trial.cfg.to_dict(), where=directory)
    trial.model.load_state_dict(state["model"])
    trial.optimizer.load_state_dict(state["optimizer"])
    trial.scheduler.load_state_dict(state["scheduler"])
    checkpoint.restore_rng(state["rng"], trial.generator)
    trial.epoch, trial.finished, trial.last_metrics = state["epoch"], state["finished"], state["metrics"]
    trial.progress = Progress(**state["progress"])


def _epoch_metrics(trial: _Trial, stats: EpochStats, *, val_loss: float, val_acc: float, epoch_time: float,
                   early_stopped: bool) -> dict[str, Any]:
    p = trial.progress
    return {
        metrics.EPOCH: trial.epoch, metrics.TRAIN_LOSS: stats.loss, metrics.TRAIN_ACC: stats.acc,
        metrics.VAL_LOSS: val_loss, metrics.VAL_ACC: val_acc, metrics.LR: stats.lr,
        metrics.EPOCH_TIME_S: epoch_time, metrics.TRAIN_TIME_S: stats.seconds,
        metrics.IMAGES_PER_S: stats.images / stats.seconds if stats.seconds > 0 else math.nan,
        metrics.NUM_PARAMS: trial.num_params, metrics.DIVERGED: int(stats.diverged),
        metrics.EARLY_STOPPED: int(early_stopped), metrics.BEST_VAL_ACC: p.best_val_acc,
        metrics.BEST_EPOCH: p.best_epoch,
    }


def _run_epoch(trial: _Trial) -> tuple[dict[str, Any], bool]:
    """Train and validate one epoch; returns its metrics and whether the trial must stop."""
    start = time.perf_counter()
    stats = train_epoch(trial.model, trial.train, optimizer=trial.optimizer, scheduler=trial.scheduler,
                        settings=trial.settings, generator=trial.generator)
    val_loss, val_acc = evaluate(trial.model, trial.val, settings=trial.settings)
    trial.epoch += 1
    trial.progress = update_progress(trial.progress, epoch=trial.epoch, val_loss=val_loss, val_acc=val_acc)
    patience = trial.cfg.train.early_stopping_patience
    # At the last epoch the trial ends anyway: patience stopped nothing, so it completed.
    stop_early = (not stats.diverged and trial.epoch < trial.cfg.train.epochs
                  and should_stop_early(trial.progress, patience=patience))
    result = _epoch_metrics(trial, stats, val_loss=val_loss, val_acc=val_acc,
                            epoch_time=time.perf_counter() - start, early_stopped=stop_early)
    return result, stats.diverged or stop_early


def train_trial(config: Mapping[str, Any] | TrialConfig, *, data: CifarArrays, reporter: Reporter,
                device: str = "auto", num_threads: int | None = None) -> dict[str, Any]:
    """Train one trial, reporting once per epoch with a checkpoint; returns the last metrics.

    Resumes from ``reporter.restore_dir()`` when it names a checkpoint. A diverging loss ends
    the trial with ``diverged=1`` in a final checkpoint-less report, not an exception, so a
    sweep carries on and does not retry it.
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    plan_layers(cfg.model)  # feature maps shrinking below 1×1 fail here, before any compute
    dev = resolve_device(device)
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"The value of `num_threads` is {num_threads!r}, but must be an int >= 1. "
                             "Pass the CPUs this trial may use, or None for torch's default.")
        torch.set_num_threads(num_threads)
    trial = _setup(cfg, data=data, device=dev)
    restore = reporter.restore_dir()
    if restore is not None:
        _restore(trial, restore)
    while trial.epoch < cfg.train.epochs and not trial.finished:
        result, stop = _run_epoch(trial)
        trial.last_metrics = result
        if result[metrics.DIVERGED]:
            reporter.report(result)  # no checkpoint: resuming a diverged trial would only diverge again
            return result
        trial.finished = stop
        with tempfile.TemporaryDirectory(prefix="cifar-ckpt-") as tmp:
            checkpoint.write_checkpoint(tmp, _state(trial), config=cfg.to_dict())
            reporter.report(result, checkpoint_dir=tmp)
    return dict(trial.last_metrics or {})


def evaluate_checkpoint(checkpoint_dir: str, *, data: CifarArrays, device: str = "auto") -> dict[str, float]:
    """Test loss and accuracy of a checkpoint's model, rebuilt from its saved config.

    The only reader of the test split: use it once, for the configuration a sweep chose.
    """
    dev = resolve_device(device)
    state = checkpoint.read_checkpoint(checkpoint_dir)
    cfg = TrialConfig.from_dict(state["config"])
    model = build_model(cfg.model).to(dev)
    model.load_state_dict(state["model"])
    settings = epoch_settings(cfg, device=dev)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    test = to_device(data.test_images, data.test_labels, device=dev)
    loss, acc = evaluate(model, test, settings=settings)
    return {metrics.TEST_LOSS: loss, metrics.TEST_ACC: acc}


def main(argv: list[str] | None = None) -> int:
    from trainables.cli import run_cli  # deferred: cli imports this module

    return run_cli(argv)


if __name__ == "__main__":
    raise SystemExit(main())
