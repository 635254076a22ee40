"""trainables.model: the plan's shapes and parameter counts match the built model and the formulas."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.config import ModelConfig
from trainables.model import (LayerShape, apply_max_norm, block_channels, build_model, conv_output_size,
                              count_parameters, plan_layers, planned_parameters)

SMALL = dict(filters=4, head_units=8)  # keeps every parametrized model tiny and fast on CPU

CONFIGS = [
    {},
    {"stride": 2, "num_blocks": 2},
    {"stride": 2, "pool": "none", "num_blocks": 4},
    {"pool": "none", "num_blocks": 2, "head_pooling": "flatten"},
    {"pool": "avg", "pool_every": 2, "num_blocks": 4},
    {"pool_size": 3, "num_blocks": 2, "convs_per_block": 1},
    {"kernel_size": 5, "padding": 0, "num_blocks": 2},
    {"kernel_size": 5, "padding": 2, "stride": 3, "num_blocks": 2},
    {"kernel_size": 1, "padding": 0},
    {"reduce_ratio": 0.5, "filter_growth": 2.0},
    {"reduce_ratio": 0.3, "filter_growth": 0.5, "filters": 7},
    {"head_layers": 0},
    {"head_layers": 0, "head_pooling": "flatten"},
    {"head_layers": 3, "head_dropout": 0.2, "head_pooling": "flatten"},
    {"batch_norm": False, "reduce_ratio": 0.5},
    {"batch_norm": False, "head_layers": 2, "head_pooling": "flatten", "stride": 2, "num_blocks": 2},
    {"input_dropout": 0.1, "spatial_dropout": 0.2, "activation": "gelu"},
    {"filter_growth": 1.5, "convs_per_block": 3, "activation": "selu", "init": "xavier"},
    {"image_size": 28, "in_channels": 1, "num_classes": 5, "num_blocks": 2},
]


def _config(**changes: object) -> ModelConfig:
    return ModelConfig(**{**SMALL, **changes})


def _outputs_by_child(model: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Size]:
    shapes: dict[str, torch.Size] = {}
    for name, child in model.named_children():
        x = child(x)
        shapes[name] = x.shape
    return shapes


@pytest.mark.parametrize("changes", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_plan_matches_built_model(changes: dict) -> None:
    cfg = _config(**changes)
    plan = plan_layers(cfg)
    model = build_model(cfg).eval()
    assert count_parameters(model) == planned_parameters(plan)
    x = torch.zeros(2, cfg.in_channels, cfg.image_size, cfg.image_size)
    shapes = _outputs_by_child(model, x)
    for layer in plan:
        shape = shapes[layer.module_name]
        if layer.kind in ("conv", "reduce", "pool"):
            assert shape == (2, layer.out_channels, layer.out_size, layer.out_size), layer.name
        else:
            assert shape == (2, layer.out_channels), layer.name
        expected = conv_output_size(layer.in_size, kernel=layer.kernel, stride=layer.stride, padding=layer.padding)
        if layer.kind != "head_pool":
            assert layer.out_size == expected, layer.name
    assert model(x).shape == (2, cfg.num_classes)


def test_parameter_count_by_hand() -> None:
    # conv 3->4, 3×3 with bias: 3*4*9 + 4 = 112; classifier 4->10: 4*10 + 10 = 50.
    cfg = ModelConfig(num_blocks=1, convs_per_block=1, filters=4, batch_norm=False, pool="none", head_layers=0)
    assert planned_parameters(plan_layers(cfg)) == 162 == count_parameters(build_model(cfg))
    # With batch norm the conv drops its bias and BN adds weight + bias: 108 + 8; head dense 4->8
    # without bias plus BN1d: 32 + 16; classifier 8->10: 90.
    cfg = ModelConfig(num_blocks=1, convs_per_block=1, filters=4, pool="none", head_layers=1, head_units=8)
    assert planned_parameters(plan_layers(cfg)) == 116 + 48 + 90 == count_parameters(build_model(cfg))


def test_sizes_follow_the_output_size_formula() -> None:
    # W2 = floor((W1 - F + 2P) / S) + 1: (32 - 5 + 0) // 2 + 1 = 14, then pool 2: 7.
    cfg = ModelConfig(num_blocks=1, convs_per_block=1, kernel_size=5, padding=0, stride=2)
    conv, pool = plan_layers(cfg)[:2]
    assert (conv.name, conv.out_size, pool.name, pool.out_size) == ("block 1 conv 1", 14, "block 1 pool", 7)
    # Only each block's first conv is strided: 32 -> 16 -> 16.
    cfg = ModelConfig(num_blocks=1, convs_per_block=2, stride=2, pool="none")
    assert [layer.out_size for layer in plan_layers(cfg) if layer.kind == "conv"] == [16, 16]


def test_shrinking_below_one_pixel_names_the_conv() -> None:
    # 32 -conv-> 30 -pool-> 15 -conv-> 13 -pool-> 6 -conv-> 4 -pool-> 2 -conv-> 0.
    cfg = ModelConfig(num_blocks=4, convs_per_block=1, padding=0)
    with pytest.raises(ValueError, match=r"block 4 conv 1: .* shrink to 0×0 .*input 2×2.* Fix:"):
        plan_layers(cfg)
    with pytest.raises(ValueError, match=r"block 4 conv 1"):
        build_model(cfg)


def test_shrinking_below_one_pixel_names_the_pool() -> None:
    with pytest.raises(ValueError, match=r"block 6 pool: .* shrink to 0×0 .*input 1×1"):
        plan_layers(ModelConfig(num_blocks=6))


def test_block_channels_round_half_up_and_stay_positive() -> None:
    assert block_channels(ModelConfig(filters=5, filter_growth=0.5, num_blocks=3)) == [5, 3, 1]
    assert block_channels(ModelConfig(filters=3, filter_growth=0.25, num_blocks=3)) == [3, 1, 1]
    assert block_channels(ModelConfig(filters=16, filter_growth=1.5, num_blocks=3)) == [16, 24, 36]


def test_reduce_conv_only_before_blocks_two_on() -> None:
    plan = plan_layers(_config(reduce_ratio=0.5, num_blocks=3, filters=8, filter_growth=2.0))
    reduces = [layer for layer in plan if layer.kind == "reduce"]
    assert [(r.name, r.in_channels, r.out_channels, r.kernel) for r in reduces] == [
        ("block 2 reduce", 8, 4, 1), ("block 3 reduce", 16, 8, 1)]
    assert not any(layer.kind == "reduce" for layer in plan_layers(_config(reduce_ratio=1.0)))


def test_head_pooling_sets_classifier_inputs() -> None:
    gap = build_model(_config(num_blocks=2, head_layers=0, head_pooling="global_avg"))
    flat = build_model(_config(num_blocks=2, head_layers=0, head_pooling="flatten"))
    # 2 blocks of 4 -> 8 channels, 32 -> 16 -> 8 pixels.
    assert gap.classifier.linear.in_features == 8
    assert flat.classifier.linear.in_features == 8 * 8 * 8
    assert not any(name.startswith("head_dense") for name, _ in gap.named_children())


@pytest.mark.parametrize("activation,module", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU),
                                               ("gelu", nn.GELU), ("selu", nn.SELU), ("silu", nn.SiLU)])
def test_activation(activation: str, module: type[nn.Module]) -> None:
    cfg = _config(activation=activation, num_blocks=2, head_layers=1)
    model = build_model(cfg)
    found = [m for m in model.modules() if isinstance(m, module)]
    assert len(found) == cfg.num_blocks * cfg.convs_per_block + cfg.head_layers


def test_pool_kinds_and_batch_norm_and_dropouts() -> None:
    model = build_model(_config(pool="avg", num_blocks=2, input_dropout=0.1, spatial_dropout=0.2,
                                head_layers=2, head_dropout=0.3))
    children = dict(model.named_children())
    assert isinstance(children["input_dropout"], nn.Dropout) and children["input_dropout"].p == 0.1
    assert [type(m) for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))] == [nn.AvgPool2d] * 2
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout2d)] == [0.2, 0.2]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2
    assert [m.p for m in model.modules() if type(m) is nn.Dropout] == [0.1, 0.3, 0.3, 0.3]
    names = list(children)
    assert names.index("block1_pool") < names.index("block1_dropout") < names.index("block2_conv1")
    plain = build_model(_config(pool="none", batch_norm=False))
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d, nn.BatchNorm1d, nn.Dropout))
                   for m in plain.modules())


def test_pool_every() -> None:
    plan = plan_layers(_config(num_blocks=4, pool_every=2))
    assert [layer.name for layer in plan if layer.kind == "pool"] == ["block 2 pool", "block 4 pool"]


def test_build_is_deterministic_under_manual_seed() -> None:
    cfg = _config()
    torch.manual_seed(0)
    a = build_model(cfg).state_dict()
    torch.manual_seed(0)
    b = build_model(cfg).state_dict()
    torch.manual_seed(1)
    c = build_model(cfg).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["block1_conv1.conv.weight"], c["block1_conv1.conv.weight"])


def _conv_weights(init: str, **changes: object) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(init=init, filters=64, num_blocks=2, **changes))
    return model.block2_conv1.conv.weight  # 64 -> 128 channels, fan_in 64 * 9


def test_init_schemes() -> None:
    fan_in, fan_out = 64 * 9, 128 * 9
    assert _conv_weights("kaiming").std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    selu = _conv_weights("kaiming", activation="selu")
    assert selu.std().item() == pytest.approx(math.sqrt(1 / fan_in), rel=0.05)  # LeCun normal
    bound = math.sqrt(6 / (fan_in + fan_out))
    xavier = _conv_weights("xavier")
    assert xavier.abs().max().item() <= bound and xavier.abs().max().item() > 0.95 * bound
    assert _conv_weights("normal").std().item() == pytest.approx(0.02, rel=0.05)
    # torch's default (kaiming_uniform with a=sqrt(5)): std = 1 / sqrt(3 * fan_in)
    assert _conv_weights("default").std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)
    torch.manual_seed(0)
    biased = build_model(ModelConfig(init="kaiming", batch_norm=False, filters=4))
    assert all(not m.bias.any() for m in biased.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_max_norm_caps_each_unit() -> None:
    torch.manual_seed(0)
    model = build_model(_config(num_blocks=2, head_layers=1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(100)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    small = layers[0].weight[0].detach().clone() / layers[0].weight[0].norm() * 0.5
    with torch.no_grad():
        layers[0].weight[0] = small  # a unit already under the cap stays as it is
    apply_max_norm(model, 2.0)
    for layer in layers:
        norms = layer.weight.flatten(1).norm(dim=1)
        assert (norms <= 2.0 + 1e-4).all()
        assert (norms > 1.9).sum() >= len(norms) - 1
    torch.testing.assert_close(layers[0].weight[0], small)


def test_max_norm_off_and_bad_values() -> None:
    model = build_model(_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_max_norm(model, 0.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for bad in (-1.0, float("nan"), "3"):
        with pytest.raises(ValueError, match=r"`max_norm` .* must be a number >= 0"):
            apply_max_norm(model, bad)


def test_layer_shape_module_names() -> None:
    assert LayerShape("block 12 conv 3", "conv", 1, 1, 1, 1).module_name == "block12_conv3"
    assert LayerShape("head dense 2", "dense", 1, 1, 1, 1).module_name == "head_dense2"
