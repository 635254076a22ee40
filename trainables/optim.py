"""Optimisers and learning-rate schedules of one trial, built from its ``TrainConfig``.

Every schedule is a ``torch.optim.lr_scheduler`` object stepped once per *batch*, so a warmup
or a one-cycle ramp is smooth instead of a staircase of per-epoch jumps. Epoch-denominated
settings (``step_size``, ``warmup_epochs``) are converted to steps here, in one place.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch.optim import lr_scheduler

from trainables.config import TrainConfig

WARMUP_START_FACTOR = 0.1  # warmup rises linearly from lr/10 (config: "linear warmup from lr/10")
CYCLIC_BASE_FACTOR = 0.1  # cyclic's floor is lr/10, the same floor the warmup starts from


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimiser; ``weight_decay`` is its L2 term (decoupled for adamw)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise AssertionError(f"TrainConfig let through unknown optimizer {cfg.optimizer!r}")


ONECYCLE_PCT_START = 0.3  # torch's (and Smith & Topin's) default share of steps spent rising


def warmup_steps(cfg: TrainConfig, *, steps_per_epoch: int) -> int:
    """Steps of the separate linear warmup (0 = none). One-cycle and cyclic rise linearly from a
    low lr by construction, so a warmup in front would only repeat that rise: one-cycle uses
    ``warmup_epochs`` as the length of its own rising phase instead, cyclic ignores it."""
    if cfg.schedule in ("onecycle", "cyclic"):
        return 0
    return round(cfg.warmup_epochs * steps_per_epoch)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, *,
                    steps_per_epoch: int) -> lr_scheduler.LRScheduler:
    """The configured schedule over ``cfg.epochs * steps_per_epoch`` steps, with optional warmup."""
    total = cfg.epochs * steps_per_epoch
    warm = warmup_steps(cfg, steps_per_epoch=steps_per_epoch)
    main = _main_schedule(optimizer, cfg, steps_per_epoch=steps_per_epoch, steps=total - warm)
    if warm == 0:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warm)
    return lr_scheduler.SequentialLR(optimizer, schedulers=[ramp, main], milestones=[warm])


def _main_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, *, steps_per_epoch: int,
                   steps: int) -> lr_scheduler.LRScheduler:
    """The schedule after warmup, ``steps`` optimiser steps long."""
    if cfg.schedule == "constant":
        return lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if cfg.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    if cfg.schedule == "exponential":
        # Per-step factor chosen so that one epoch multiplies lr by gamma ** (1 / step_size),
        # i.e. lr falls by gamma every step_size epochs, smoothly instead of in a staircase.
        per_step = cfg.gamma ** (1.0 / (cfg.step_size * steps_per_epoch))
        return lr_scheduler.ExponentialLR(optimizer, gamma=per_step)
    if cfg.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1), eta_min=0.0)
    if cfg.schedule == "onecycle":
        # cycle_momentum=False: torch's default would overwrite the sampled `momentum` (and
        # Adam's beta1) with its own 0.85..0.95 cycle, so the sweep's momentum would mean nothing.
        pct_start = cfg.warmup_epochs / cfg.epochs if cfg.warmup_epochs > 0 else ONECYCLE_PCT_START
        return lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(steps, 2), pct_start=pct_start,
                                       cycle_momentum=False)
    if cfg.schedule == "cyclic":
        # Triangular policy (Smith 2017); step_size is epochs per half cycle. cycle_momentum=False
        # for the same reason as one-cycle (and because Adam-family optimisers have no momentum key).
        return lr_scheduler.CyclicLR(optimizer, base_lr=cfg.lr * CYCLIC_BASE_FACTOR, max_lr=cfg.lr,
                                     step_size_up=cfg.step_size * steps_per_epoch, mode="triangular",
                                     cycle_momentum=False)
    raise AssertionError(f"TrainConfig let through unknown schedule {cfg.schedule!r}")


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Optimiser steps in one epoch: full batches only (see ``trainables.cifar.batch_starts``)."""
    return max(1, num_images // batch_size)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the first parameter group (all groups share one schedule here)."""
    lr = optimizer.param_groups[0]["lr"]
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)
