"""One trial's configuration: a frozen, validated dataclass per concern.

A sampled Ray Tune config is a flat dict (flat spaces are what Hyperopt handles best).
``TrialConfig.from_dict`` splits it into ``ModelConfig`` (the architecture) and
``TrainConfig`` (optimisation, regularisation, data), so a misspelled key fails at once with
a message naming it and the closest valid key. Every rule raises ``ValueError``/``TypeError``
naming the value, the rule and the fix, before any compute starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "selu", "silu")
POOLS = ("max", "avg", "none")
HEAD_POOLINGS = ("flatten", "global_avg")
INITS = ("kaiming", "xavier", "normal", "default")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle", "cyclic")
DEVICES = ("auto", "cpu", "cuda", "mps")
# A number in scientific notation without a dot (1e-4, 5E+3): YAML 1.1, which PyYAML follows, reads
# it as a string, where every user (and YAML 1.2, and JSON) means a number.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def yaml11_numbers(value: Any) -> Any:
    """``value`` (parsed YAML, nested lists and mappings) with 1e-4-style strings read as floats."""
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, Mapping):
        return {k: yaml11_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [yaml11_numbers(v) for v in value]
    return value


def _fail(name: str, value: Any, rule: str, fix: str) -> None:
    raise ValueError(f"The value of `{name}` is {value!r}, but {rule}. {fix}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(name, value, f"must be one of {', '.join(choices)}", f"Set `{name}` to one of those.")


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"The value of `{name}` is {value!r} ({type(value).__name__}), but must be an int.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        _fail(name, value, f"must be `{name}` {bound}", f"Choose `{name}` {bound}.")


def _check_float(name: str, value: Any, *, low: float, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"The value of `{name}` is {value!r} ({type(value).__name__}), but must be a number.")
    if not math.isfinite(value):
        _fail(name, value, "must be finite", f"Give `{name}` a finite number.")
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = f"{'(' if low_open else '['}{low}"
        hi = f"{high if high is not None else 'inf'}{')' if high_open or high is None else ']'}"
        _fail(name, value, f"must be in {lo}, {hi}", f"Choose `{name}` in that range.")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"The value of `{name}` is {value!r} ({type(value).__name__}), but must be true or false.")


@dataclass(frozen=True)
class ModelConfig:
    """The CNN's architecture. Feature-map sizes are checked when the model is planned."""

    num_blocks: int = 3  # conv blocks; each may end in pooling
    convs_per_block: int = 2  # conv layers per block
    filters: int = 32  # output channels of the first block's convs
    filter_growth: float = 2.0  # channel multiplier from one block to the next
    kernel_size: int = 3  # square kernel side F, pixels
    stride: int = 1  # stride S of each block's first conv (later convs use 1), pixels
    padding: int = 1  # zero padding P of every conv, pixels
    pool: str = "max"  # pooling after a block: max, avg or none
    pool_every: int = 1  # pool after every n-th block (1 = after each block)
    pool_size: int = 2  # pooling window and stride, pixels
    reduce_ratio: float = 1.0  # <1 adds a 1x1 conv shrinking channels to this ratio before blocks 2..n
    batch_norm: bool = True  # BatchNorm2d after each conv (and BatchNorm1d in the head)
    activation: str = "relu"
    input_dropout: float = 0.0  # dropout on input pixels, probability
    spatial_dropout: float = 0.0  # Dropout2d at the end of each block, probability
    head_pooling: str = "global_avg"  # how conv features become a vector: flatten or global_avg
    head_layers: int = 1  # hidden dense layers before the classifier
    head_units: int = 128  # units per hidden dense layer
    head_dropout: float = 0.0  # dropout before each dense layer, probability
    init: str = "kaiming"  # weight init: kaiming, xavier, normal (std 0.02) or default (torch's)
    max_norm: float = 0.0  # max L2 norm of each unit's incoming weights after every step; 0 = off
    in_channels: int = 3  # image channels (CIFAR-10: 3)
    image_size: int = 32  # image side, pixels (CIFAR-10: 32)
    num_classes: int = 10

    def __post_init__(self) -> None:
        _check_int("num_blocks", self.num_blocks, low=1, high=8)
        _check_int("convs_per_block", self.convs_per_block, low=1, high=6)
        _check_int("filters", self.filters, low=1, high=2048)
        _check_float("filter_growth", self.filter_growth, low=0.25, high=4.0)
        _check_int("kernel_size", self.kernel_size, low=1, high=11)
        _check_int("stride", self.stride, low=1, high=4)
        _check_int("padding", self.padding, low=0, high=5)
        if self.padding >= self.kernel_size:
            _fail("padding", self.padding, f"must be `padding < kernel_size` ({self.kernel_size})",
                  "Use padding = kernel_size // 2 for 'same' convolutions.")
        _check_choice("pool", self.pool, POOLS)
        _check_int("pool_every", self.pool_every, low=1)
        if self.pool != "none" and self.pool_every > self.num_blocks:  # else pool="max" builds the net of pool="none"
            _fail("pool_every", self.pool_every, f"must be `pool_every <= num_blocks` ({self.num_blocks}) with "
                  f"pool={self.pool!r}, or the net has no pooling layer", "Lower pool_every, or set pool=none.")
        _check_int("pool_size", self.pool_size, low=2, high=4)
        _check_float("reduce_ratio", self.reduce_ratio, low=0.0, high=1.0, low_open=True)
        _check_bool("batch_norm", self.batch_norm)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_float("input_dropout", self.input_dropout, low=0.0, high=1.0, high_open=True)
        _check_float("spatial_dropout", self.spatial_dropout, low=0.0, high=1.0, high_open=True)
        _check_choice("head_pooling", self.head_pooling, HEAD_POOLINGS)
        _check_int("head_layers", self.head_layers, low=0, high=4)
        _check_int("head_units", self.head_units, low=1, high=8192)
        _check_float("head_dropout", self.head_dropout, low=0.0, high=1.0, high_open=True)
        _check_choice("init", self.init, INITS)
        _check_float("max_norm", self.max_norm, low=0.0)
        _check_int("in_channels", self.in_channels, low=1)
        _check_int("image_size", self.image_size, low=1)
        _check_int("num_classes", self.num_classes, low=2)


@dataclass(frozen=True)
class TrainConfig:
    """How one trial trains: optimiser, schedule, regularisation, data and stopping."""

    optimizer: str = "sgd"  # sgd, adam, adamw or rmsprop
    lr: float = 0.05  # peak learning rate (after warmup; onecycle's max_lr)
    momentum: float = 0.9  # sgd and rmsprop only
    nesterov: bool = True  # sgd only
    weight_decay: float = 5e-4  # L2 penalty (decoupled for adamw), per step
    l1: float = 0.0  # L1 penalty coefficient on conv and dense weights, added to the loss
    schedule: str = "cosine"  # constant, step, exponential, cosine, onecycle or cyclic
    step_size: int = 10  # step: epochs between decays; cyclic: epochs per half cycle
    gamma: float = 0.1  # step: decay factor; exponential: per-epoch factor is gamma ** (1/step_size)
    # Linear warmup from lr/10, epochs. onecycle and cyclic rise from a low lr by construction:
    # onecycle takes this as the length of its rising phase (default 30% of the steps), and
    # cyclic ignores it (its first half cycle, step_size epochs, is its warmup).
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    batch_size: int = 128  # training images per step
    epochs: int = 10  # maximum epochs for this trial
    early_stopping_patience: int = 0  # stop after this many epochs without a lower val_loss; 0 = off
    augment: bool = True  # random crop with padding and horizontal flip, on the device
    crop_padding: int = 4  # random-crop padding, pixels
    cutout: int = 0  # side of the random square filled per image, pixels; 0 = off (applies with augment off too)
    val_fraction: float = 0.1  # share of the training images held out (stratified) for validation
    seed: int = 0  # seeds weights, the split, shuffling and augmentation
    divergence_factor: float = 10.0  # loss above factor * ln(num_classes) counts as exploding

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_float("lr", self.lr, low=0.0, high=10.0, low_open=True)
        _check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _check_bool("nesterov", self.nesterov)
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            _fail("nesterov", True, "needs `momentum > 0` with sgd", "Set nesterov=false or momentum > 0.")
        _check_float("weight_decay", self.weight_decay, low=0.0, high=1.0)
        _check_float("l1", self.l1, low=0.0, high=1.0)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_int("step_size", self.step_size, low=1)
        _check_float("gamma", self.gamma, low=0.0, high=1.0, low_open=True)
        _check_float("warmup_epochs", self.warmup_epochs, low=0.0)
        _check_float("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        _check_int("batch_size", self.batch_size, low=1, high=65536)
        _check_int("epochs", self.epochs, low=1)
        if self.warmup_epochs >= self.epochs:
            _fail("warmup_epochs", self.warmup_epochs, f"must be below `epochs` ({self.epochs})",
                  "Shorten the warmup or train longer.")
        _check_int("early_stopping_patience", self.early_stopping_patience, low=0)
        _check_bool("augment", self.augment)
        _check_int("crop_padding", self.crop_padding, low=0, high=16)
        _check_int("cutout", self.cutout, low=0, high=32)
        _check_float("val_fraction", self.val_fraction, low=0.0, high=0.5, low_open=True)
        _check_int("seed", self.seed, low=0, high=2**32 - 1)  # numpy's RandomState (hyperopt) takes no more
        _check_float("divergence_factor", self.divergence_factor, low=1.0, low_open=True)


_SECTIONS = {"model": ModelConfig, "train": TrainConfig}
CONFIG_KEYS: dict[str, str] = {f.name: section for section, cls in _SECTIONS.items() for f in fields(cls)}


def _coerce(cls: type, key: str, value: Any) -> Any:
    """Undo what search spaces and JSON do to types: 3.0 -> 3 for ints, numpy scalars -> Python."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar from hyperopt / Ray samplers
    default = next(f.default for f in fields(cls) if f.name == key)
    if isinstance(default, bool):
        return value
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)  # hyperopt's quniform returns floats
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@dataclass(frozen=True)
class TrialConfig:
    """A whole trial: architecture plus training. Build it from a flat dict with ``from_dict``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, flat: Mapping[str, Any]) -> "TrialConfig":
        unknown = [k for k in flat if k not in CONFIG_KEYS]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), CONFIG_KEYS, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ValueError(f"Unknown config key `{key}`: it is not a field of ModelConfig or TrainConfig."
                             f"{hint} Valid keys: {', '.join(sorted(CONFIG_KEYS))}.")
        parts: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        for key, value in flat.items():
            section = CONFIG_KEYS[key]
            parts[section][key] = _coerce(_SECTIONS[section], key, value)
        return cls(model=ModelConfig(**parts["model"]), train=TrainConfig(**parts["train"]))

    def to_dict(self) -> dict[str, Any]:
        """The flat dict form (saved in every checkpoint and logged as params)."""
        return {**dataclasses.asdict(self.model), **dataclasses.asdict(self.train)}

    def __post_init__(self) -> None:
        # Rules that span both sections. A BatchNorm layer in training mode needs two values per
        # channel; with one image per step the head's BatchNorm1d has one, and torch fails mid-epoch.
        if self.model.batch_norm and self.train.batch_size < 2:
            _fail("batch_size", self.train.batch_size, "must be >= 2 when `batch_norm` is on (BatchNorm needs "
                  "two images per step to normalise)", "Set batch_size >= 2, or batch_norm=false.")

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})
