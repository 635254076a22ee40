"""Optimisers and per-batch learning-rate schedules (trainables/optim.py), without training."""
from __future__ import annotations

import io
import math

import pytest
import torch

from trainables.config import OPTIMIZERS, SCHEDULES, TrainConfig
from trainables.optim import build_optimizer, build_scheduler, current_lr, steps_per_epoch, warmup_steps

SPE = 10  # steps per epoch in these tests


def _lrs(cfg: TrainConfig, *, spe: int = SPE) -> list[float]:
    """The lr each of the trial's steps runs with."""
    opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=spe)
    out = []
    for _ in range(cfg.epochs * spe):
        out.append(current_lr(opt))
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop)])
def test_optimizer_type_and_hyperparameters(name: str, cls: type) -> None:
    cfg = TrainConfig(optimizer=name, lr=0.02, weight_decay=1e-3, momentum=0.8, nesterov=name == "sgd")
    opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), cfg)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 1e-3
    if name in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.8
    if name == "sgd":
        assert group["nesterov"] is True


def test_optimizers_cover_config_choices() -> None:
    for name in OPTIMIZERS:
        build_optimizer(torch.nn.Linear(2, 2).parameters(), TrainConfig(optimizer=name))


def test_constant_is_flat() -> None:
    assert set(_lrs(TrainConfig(schedule="constant", lr=0.1, epochs=3))) == {0.1}


def test_warmup_rises_linearly_from_a_tenth_to_lr() -> None:
    lrs = _lrs(TrainConfig(schedule="constant", lr=0.1, epochs=4, warmup_epochs=2))
    ramp = lrs[:2 * SPE]
    assert ramp[0] == pytest.approx(0.01)
    assert all(b > a for a, b in zip(ramp, ramp[1:]))
    assert all(x == pytest.approx(0.1) for x in lrs[2 * SPE:])


def test_step_drops_by_gamma_every_step_size_epochs() -> None:
    lrs = _lrs(TrainConfig(schedule="step", lr=0.1, gamma=0.5, step_size=2, epochs=6))
    per_epoch = [lrs[e * SPE] for e in range(6)]
    assert per_epoch == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_exponential_loses_gamma_per_step_size_epochs_smoothly() -> None:
    lrs = _lrs(TrainConfig(schedule="exponential", lr=0.1, gamma=0.5, step_size=2, epochs=4))
    assert lrs[2 * SPE] == pytest.approx(0.05)
    assert lrs[1] < lrs[0]  # decays every step, not in a staircase


def test_cosine_ends_low_after_warmup() -> None:
    lrs = _lrs(TrainConfig(schedule="cosine", lr=0.1, epochs=5, warmup_epochs=1))
    assert max(lrs) == pytest.approx(0.1)
    assert lrs.index(max(lrs)) == SPE  # peak right after the warmup
    assert lrs[-1] < 0.002
    after = lrs[SPE:]
    assert all(b <= a for a, b in zip(after, after[1:]))


def test_onecycle_rises_to_lr_then_anneals() -> None:
    lrs = _lrs(TrainConfig(schedule="onecycle", lr=0.1, epochs=10))
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.1)
    assert 0.2 * len(lrs) < peak < 0.4 * len(lrs)  # torch's pct_start 0.3
    assert lrs[0] < 0.01 and lrs[-1] < 1e-4


def test_onecycle_uses_warmup_epochs_as_its_rise() -> None:
    lrs = _lrs(TrainConfig(schedule="onecycle", lr=0.1, epochs=10, warmup_epochs=1))
    assert lrs.index(max(lrs)) == pytest.approx(SPE, abs=1)
    assert warmup_steps(TrainConfig(schedule="onecycle", epochs=10, warmup_epochs=1), steps_per_epoch=SPE) == 0


def test_cyclic_is_triangular_between_a_tenth_and_lr() -> None:
    lrs = _lrs(TrainConfig(schedule="cyclic", lr=0.1, step_size=1, epochs=4))
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[SPE] == pytest.approx(0.1)
    assert lrs[2 * SPE] == pytest.approx(0.01)
    assert lrs[3 * SPE] == pytest.approx(0.1)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_scheduler_state_survives_weights_only_round_trip(schedule: str) -> None:
    cfg = TrainConfig(schedule=schedule, lr=0.1, epochs=4, warmup_epochs=1 if schedule != "cyclic" else 0, step_size=1)
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model.parameters(), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=SPE)
    for _ in range(15):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = build_optimizer(model.parameters(), cfg)
    sched2 = build_scheduler(opt2, cfg, steps_per_epoch=SPE)
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    for _ in range(10):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert current_lr(opt2) == current_lr(opt)


@pytest.mark.parametrize("n, batch, steps", [(100, 32, 3), (96, 32, 3), (10, 32, 1), (0, 32, 1)])
def test_steps_per_epoch_counts_full_batches(n: int, batch: int, steps: int) -> None:
    assert steps_per_epoch(n, batch) == steps


def test_every_schedule_keeps_lr_finite_and_positive_until_the_end() -> None:
    for schedule in SCHEDULES:
        lrs = _lrs(TrainConfig(schedule=schedule, lr=0.1, epochs=3, step_size=1))
        assert all(math.isfinite(x) and x >= 0 for x in lrs), schedule
