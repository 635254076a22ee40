"""The named thresholds behind every learning-curve verdict: one frozen, validated dataclass.

Each default says why it has that value. Override them in Python with
``DiagnosisThresholds(val_loss_rise=0.2)``, from a JSON file or string with
``thresholds_from_json``, or from the report's CLI flags (one flag per field).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class DiagnosisThresholds:
    """How much evidence each verdict needs. Accuracies are fractions in [0, 1]."""

    # A trial with fewer epochs is inconclusive (unless it diverged): a 3-epoch smoothing window
    # plus one epoch of trend on either side of a turn is the least that shows a direction. ASHA's
    # usual grace periods (1-3 epochs) fall below it, so rung-stopped trials are not judged.
    min_epochs: int = 5
    # Centred rolling median over this many epochs before any trend is read: a median of 3
    # ignores one noisy epoch (a bad batch order, an lr restart) but still shows a turn.
    smoothing_window: int = 3
    # Overfitting, loss form: smoothed val_loss ends this fraction above its minimum. 10% is
    # well above the epoch-to-epoch jitter of a validation set of ~500 images (~2-4%). The raw
    # epoch before the last must already be half of it up, so one noisy last epoch is no turn.
    val_loss_rise: float = 0.10
    # ...and the minimum lies at least this many epochs before the end, so one late uptick
    # is not a trend.
    epochs_after_min: int = 2
    # ...while smoothed train_loss fell at least this fraction after the val_loss minimum
    # (the classic divergence of the two curves, Goodfellow et al. 2016, sec. 7.8).
    train_loss_fall: float = 0.05
    # Overfitting, accuracy form: smoothed train_acc - val_acc at the end is at least this...
    # 0.15 is about twice the gap of a well-regularised CIFAR-10 CNN (~0.05-0.08).
    gap_large: float = 0.15
    # ...and grew at least this much since its smallest value from epoch 2 on (epoch 1's train_acc
    # is a running mean from random weights; a large but constant gap is
    # a property of the data split, not a trend).
    gap_growth: float = 0.05
    # Underfitting: smoothed train_acc at the end below chance + this is "near chance";
    # for 10 classes that is < 0.25, which any working CIFAR-10 CNN passes within 2-3 epochs.
    acc_over_chance: float = 0.15
    # Underfitting: train_acc below this fraction of the best trial's train_acc at the same
    # epoch is low "relative to the sweep's best", when val_acc is below this fraction of the best
    # val_acc too (train_acc is measured with dropout and augmentation on, so a well-regularised
    # trial trains behind a memorising one while it validates better). Same epoch, so trials a
    # scheduler stopped early are compared with what the others had at that point, not at the end.
    fraction_of_best: float = 0.6
    # Underfitting, plateau form: smoothed train_loss falls less than `plateau_change`
    # (relative) over `plateau_epochs` epochs...
    plateau_epochs: int = 3
    plateau_change: float = 0.02
    # ...while still above this fraction of the chance-level loss ln(num_classes)
    # (0.6 x ln 10 = 1.38, i.e. roughly below 50% training accuracy). A train_loss and a val_loss
    # both still above it at the last epoch are underfitting on their own too (high_loss), falling or
    # not: a learning rate far too low learns steadily and never gets there.
    high_loss_fraction: float = 0.6
    # Diverged: train_loss above this multiple of its running minimum and above ln(num_classes)
    # (worse than guessing). 3x is far outside the noise of a converging run, and the trainable
    # itself stops at 10 x ln(num_classes).
    explode_ratio: float = 3.0
    # Classes, for chance accuracy and loss, when the frame has no config/num_classes column.
    num_classes: int = 10

    def __post_init__(self) -> None:
        _check_int("min_epochs", self.min_epochs, low=2)
        _check_int("smoothing_window", self.smoothing_window, low=1)
        if self.smoothing_window >= self.min_epochs + 1:
            raise ValueError(f"The value of `smoothing_window` is {self.smoothing_window}, but must be "
                             f"<= `min_epochs` ({self.min_epochs}). Shorten the window or raise min_epochs.")
        _check_int("epochs_after_min", self.epochs_after_min, low=1)
        _check_int("plateau_epochs", self.plateau_epochs, low=2)
        _check_int("num_classes", self.num_classes, low=2)
        _check_number("val_loss_rise", self.val_loss_rise)
        if self.val_loss_rise <= 0:
            raise ValueError(f"The value of `val_loss_rise` is {self.val_loss_rise!r}, but must be > 0 (a relative "
                             "rise, 0.1 = 10%). Use e.g. 0.1.")
        for name in ("train_loss_fall", "gap_large", "gap_growth", "acc_over_chance",
                     "fraction_of_best", "plateau_change", "high_loss_fraction"):
            _check_fraction(name, getattr(self, name))
        _check_number("explode_ratio", self.explode_ratio)
        if self.explode_ratio <= 1.0:
            raise ValueError(f"The value of `explode_ratio` is {self.explode_ratio!r}, but must be > 1 "
                             "(a multiple of the running minimum loss). Use e.g. 3.0.")

    def replace(self, **changes: Any) -> "DiagnosisThresholds":
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"Unknown threshold(s) {unknown}; valid names: "
                             f"{', '.join(f.name for f in fields(self))}.")
        return dataclasses.replace(self, **changes)


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"The value of `{name}` is {value!r} ({type(value).__name__}), but must be a number.")
    if not math.isfinite(value):
        raise ValueError(f"The value of `{name}` is {value!r}, but must be finite. Give a finite number.")


def _check_fraction(name: str, value: Any) -> None:
    _check_number(name, value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"The value of `{name}` is {value!r}, but must be in (0, 1) (a fraction). "
                         f"Choose `{name}` in that range.")


def _check_int(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"The value of `{name}` is {value!r} ({type(value).__name__}), but must be an int.")
    if value < low:
        raise ValueError(f"The value of `{name}` is {value}, but must be `{name} >= {low}`. "
                         f"Choose `{name}` >= {low}.")


def thresholds_from_mapping(values: Mapping[str, Any], *,
                            base: DiagnosisThresholds | None = None) -> DiagnosisThresholds:
    """``base`` (default: the defaults) with ``values`` overriding it; unknown names raise."""
    if not isinstance(values, Mapping):
        raise TypeError(f"Thresholds must be a JSON object / mapping of name -> value, got {type(values).__name__}.")
    return (base or DiagnosisThresholds()).replace(**dict(values))


def thresholds_from_json(text_or_path: str | Path, *,
                         base: DiagnosisThresholds | None = None) -> DiagnosisThresholds:
    """Thresholds from a JSON object given inline (``'{"min_epochs": 6}'``) or as a file path."""
    text = str(text_or_path)
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"--thresholds {text!r} is neither a JSON object nor an existing file. "
                             'Pass e.g. \'{"min_epochs": 6}\' or a path to such a file.')
        text = path.read_text()
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"The thresholds JSON does not parse ({err}). Pass an object like "
                         '{"val_loss_rise": 0.2}.') from None
    return thresholds_from_mapping(values, base=base)
