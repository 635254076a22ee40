"""trainables.config: one rejected value per rule, plus the flat-dict round trip."""
from __future__ import annotations

import numpy as np
import pytest

from trainables.config import CONFIG_KEYS, ModelConfig, TrainConfig, TrialConfig

MODEL_RULES = [
    ("num_blocks", 0, ValueError, r"`num_blocks` is 0, but must be `num_blocks` in \[1, 8\]"),
    ("num_blocks", 9, ValueError, r"`num_blocks` is 9"),
    ("num_blocks", 2.5, TypeError, r"`num_blocks` is 2.5 \(float\), but must be an int"),
    ("num_blocks", True, TypeError, r"`num_blocks` is True \(bool\)"),
    ("convs_per_block", 0, ValueError, r"`convs_per_block` is 0"),
    ("convs_per_block", 7, ValueError, r"`convs_per_block` is 7"),
    ("filters", 0, ValueError, r"`filters` is 0"),
    ("filters", 4096, ValueError, r"`filters` is 4096"),
    ("filter_growth", 0.1, ValueError, r"`filter_growth` is 0.1, but must be in \[0.25, 4.0\]"),
    ("filter_growth", 5.0, ValueError, r"`filter_growth` is 5.0"),
    ("filter_growth", float("nan"), ValueError, r"`filter_growth` is nan, but must be finite"),
    ("filter_growth", "2", TypeError, r"`filter_growth` is '2' \(str\), but must be a number"),
    ("kernel_size", 0, ValueError, r"`kernel_size` is 0"),
    ("kernel_size", 13, ValueError, r"`kernel_size` is 13"),
    ("stride", 0, ValueError, r"`stride` is 0"),
    ("stride", 5, ValueError, r"`stride` is 5"),
    ("padding", -1, ValueError, r"`padding` is -1"),
    ("padding", 6, ValueError, r"`padding` is 6"),
    ("pool", "min", ValueError, r"`pool` is 'min', but must be one of max, avg, none"),
    ("pool_every", 0, ValueError, r"`pool_every` is 0"),
    ("pool_every", 9, ValueError, r"`pool_every` is 9, but must be `pool_every <= num_blocks` \(3\) with pool='max'"),
    ("pool_size", 1, ValueError, r"`pool_size` is 1"),
    ("pool_size", 5, ValueError, r"`pool_size` is 5"),
    ("reduce_ratio", 0.0, ValueError, r"`reduce_ratio` is 0.0, but must be in \(0.0, 1.0\]"),
    ("reduce_ratio", 1.5, ValueError, r"`reduce_ratio` is 1.5"),
    ("batch_norm", 1, TypeError, r"`batch_norm` is 1 \(int\), but must be true or false"),
    ("activation", "tanh", ValueError, r"`activation` is 'tanh', but must be one of relu, leaky_relu"),
    ("input_dropout", 1.0, ValueError, r"`input_dropout` is 1.0, but must be in \[0.0, 1.0\)"),
    ("input_dropout", -0.1, ValueError, r"`input_dropout` is -0.1"),
    ("spatial_dropout", 1.0, ValueError, r"`spatial_dropout` is 1.0"),
    ("head_pooling", "max", ValueError, r"`head_pooling` is 'max', but must be one of flatten, global_avg"),
    ("head_layers", -1, ValueError, r"`head_layers` is -1"),
    ("head_layers", 5, ValueError, r"`head_layers` is 5"),
    ("head_units", 0, ValueError, r"`head_units` is 0"),
    ("head_dropout", 1.0, ValueError, r"`head_dropout` is 1.0"),
    ("init", "orthogonal", ValueError, r"`init` is 'orthogonal', but must be one of kaiming, xavier"),
    ("max_norm", -1.0, ValueError, r"`max_norm` is -1.0"),
    ("max_norm", float("inf"), ValueError, r"`max_norm` is inf, but must be finite"),
    ("in_channels", 0, ValueError, r"`in_channels` is 0"),
    ("image_size", 0, ValueError, r"`image_size` is 0"),
    ("num_classes", 1, ValueError, r"`num_classes` is 1"),
]

TRAIN_RULES = [
    ("optimizer", "lbfgs", ValueError, r"`optimizer` is 'lbfgs', but must be one of sgd, adam, adamw, rmsprop"),
    ("lr", 0.0, ValueError, r"`lr` is 0.0, but must be in \(0.0, 10.0\]"),
    ("lr", 11.0, ValueError, r"`lr` is 11.0"),
    ("lr", float("nan"), ValueError, r"`lr` is nan, but must be finite"),
    ("momentum", 1.0, ValueError, r"`momentum` is 1.0, but must be in \[0.0, 1.0\)"),
    ("nesterov", "yes", TypeError, r"`nesterov` is 'yes' \(str\), but must be true or false"),
    ("weight_decay", -1e-4, ValueError, r"`weight_decay` is -0.0001"),
    ("l1", 2.0, ValueError, r"`l1` is 2.0"),
    ("schedule", "linear", ValueError, r"`schedule` is 'linear', but must be one of constant, step"),
    ("step_size", 0, ValueError, r"`step_size` is 0"),
    ("gamma", 0.0, ValueError, r"`gamma` is 0.0, but must be in \(0.0, 1.0\]"),
    ("gamma", 1.5, ValueError, r"`gamma` is 1.5"),
    ("warmup_epochs", -1.0, ValueError, r"`warmup_epochs` is -1.0"),
    ("label_smoothing", 1.0, ValueError, r"`label_smoothing` is 1.0"),
    ("batch_size", 0, ValueError, r"`batch_size` is 0"),
    ("batch_size", 100000, ValueError, r"`batch_size` is 100000"),
    ("epochs", 0, ValueError, r"`epochs` is 0"),
    ("early_stopping_patience", -1, ValueError, r"`early_stopping_patience` is -1"),
    ("augment", 0, TypeError, r"`augment` is 0 \(int\)"),
    ("crop_padding", 17, ValueError, r"`crop_padding` is 17"),
    ("cutout", -1, ValueError, r"`cutout` is -1"),
    ("cutout", 33, ValueError, r"`cutout` is 33"),
    ("val_fraction", 0.0, ValueError, r"`val_fraction` is 0.0, but must be in \(0.0, 0.5\]"),
    ("val_fraction", 0.6, ValueError, r"`val_fraction` is 0.6"),
    ("seed", -1, ValueError, r"`seed` is -1"),
    ("divergence_factor", 1.0, ValueError, r"`divergence_factor` is 1.0, but must be in \(1.0, inf\)"),
]


@pytest.mark.parametrize("key,value,error,match", MODEL_RULES, ids=lambda v: str(v))
def test_model_config_rule(key: str, value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ModelConfig(**{key: value})


@pytest.mark.parametrize("key,value,error,match", TRAIN_RULES, ids=lambda v: str(v))
def test_train_config_rule(key: str, value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TrainConfig(**{key: value})


def test_padding_must_be_below_kernel_size() -> None:
    with pytest.raises(ValueError, match=r"`padding` is 3, but must be `padding < kernel_size` \(3\)"):
        ModelConfig(kernel_size=3, padding=3)


def test_nesterov_needs_momentum_with_sgd() -> None:
    with pytest.raises(ValueError, match=r"`nesterov` is True, but needs `momentum > 0` with sgd"):
        TrainConfig(optimizer="sgd", nesterov=True, momentum=0.0)
    TrainConfig(optimizer="adam", nesterov=True, momentum=0.0)  # nesterov only matters for sgd


def test_warmup_must_end_before_training_does() -> None:
    with pytest.raises(ValueError, match=r"`warmup_epochs` is 5.0, but must be below `epochs` \(5\)"):
        TrainConfig(epochs=5, warmup_epochs=5.0)


def test_defaults_are_valid_and_every_field_is_a_flat_key() -> None:
    cfg = TrialConfig()
    assert set(cfg.to_dict()) == set(CONFIG_KEYS)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"Unknown config key `fliters`.*Did you mean `filters`\?"):
        TrialConfig.from_dict({"fliters": 16})


def test_from_dict_coerces_search_space_types() -> None:
    # hyperopt's quniform gives floats, Ray samplers numpy scalars, JSON ints for floats.
    cfg = TrialConfig.from_dict({"num_blocks": 2.0, "lr": 1, "batch_norm": np.bool_(False), "filters": np.int64(16)})
    assert cfg.model.num_blocks == 2 and isinstance(cfg.model.num_blocks, int)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.batch_norm is False and cfg.model.filters == 16
    with pytest.raises(TypeError, match=r"`num_blocks` is 2.5 \(float\)"):
        TrialConfig.from_dict({"num_blocks": 2.5})


def test_replace_revalidates() -> None:
    cfg = TrialConfig().replace(epochs=3, filters=8)
    assert (cfg.train.epochs, cfg.model.filters) == (3, 8)
    with pytest.raises(ValueError, match=r"`epochs` is 0"):
        cfg.replace(epochs=0)


def test_batch_norm_needs_two_images_per_step() -> None:
    with pytest.raises(ValueError, match=r"`batch_size` is 1, but must be >= 2 when `batch_norm` is on.*batch_norm=false"):
        TrialConfig.from_dict({"batch_size": 1})
    assert TrialConfig.from_dict({"batch_size": 1, "batch_norm": False}).train.batch_size == 1
