"""The CNN a ``ModelConfig`` describes, planned layer by layer before anything is built.

``plan_layers`` computes every layer's output size with W2 = floor((W1 - F + 2P) / S) + 1
(pooling: P = 0, S = F) and every layer's parameter count from its formula, so a config whose
feature map would shrink below 1×1 is rejected with the layer's name before any tensor
exists, and tests can check ``count_parameters(build_model(cfg)) == planned_parameters(plan)``.

Layout (block b = 1..num_blocks):
  input dropout -> [1×1 reduce conv (b >= 2, reduce_ratio < 1)] -> convs_per_block ×
  (conv -> batch norm -> activation) -> pooling (every pool_every-th block) -> Dropout2d
  -> flatten or global average pooling -> head_layers × (dropout -> linear -> batch norm ->
  activation) -> dropout -> linear classifier.
Convs and hidden linears drop their bias when batch norm follows (its shift replaces it).
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from trainables.config import ModelConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
}
_LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative slope; kaiming init needs it too


@dataclass(frozen=True)
class LayerShape:
    """One planned layer: its name, kind, channels, square feature-map sides and parameter count."""

    name: str  # e.g. "block 2 conv 1", "block 2 pool", "block 3 reduce", "head dense 1", "classifier"
    kind: str  # conv, reduce, pool, head_pool, dense, classifier
    in_channels: int  # channels (or features, for dense layers) in
    out_channels: int  # channels (or features) out
    in_size: int  # feature-map side in, pixels (1 for dense layers)
    out_size: int  # feature-map side out, pixels
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    params: int = 0  # trainable parameters, batch-norm affine included
    block: int = 0  # conv block (1..num_blocks) the layer belongs to; 0 for the head

    @property
    def module_name(self) -> str:
        """The child name in the built model: "block 2 conv 1" -> "block2_conv1"."""
        return re.sub(r" (\d+)", r"\1", self.name).replace(" ", "_")


def block_channels(cfg: ModelConfig) -> list[int]:
    """Conv output channels per block: filters * filter_growth ** (b - 1), rounded half up, >= 1."""
    return [max(1, math.floor(cfg.filters * cfg.filter_growth ** b + 0.5)) for b in range(cfg.num_blocks)]


def conv_output_size(size: int, *, kernel: int, stride: int, padding: int) -> int:
    """W2 = floor((W1 - F + 2P) / S) + 1 (CS231n); may be <= 0, which the caller rejects."""
    return (size - kernel + 2 * padding) // stride + 1


def _shrink_error(name: str, *, in_size: int, kernel: int, stride: int, padding: int, out: int) -> ValueError:
    return ValueError(
        f"{name}: the feature map would shrink to {out}×{out} (input {in_size}×{in_size}, kernel {kernel}, "
        f"stride {stride}, padding {padding}: ({in_size} - {kernel} + 2*{padding}) // {stride} + 1 = {out}), "
        "but must stay at least 1×1. Fix: fewer blocks, pool less often (pool_every) or not at all, "
        "stride 1, or 'same' padding (padding = kernel_size // 2).")


def _conv_params(cin: int, cout: int, kernel: int, *, batch_norm: bool) -> int:
    # weights + (bias, or batch norm's weight and bias)
    return cin * cout * kernel * kernel + (2 * cout if batch_norm else cout)


def plan_layers(cfg: ModelConfig) -> list[LayerShape]:
    """Every layer's shape and parameter count; raises ValueError naming the first layer whose
    output would be smaller than 1×1."""
    plan: list[LayerShape] = []
    channels, size = cfg.in_channels, cfg.image_size
    for b, width in enumerate(block_channels(cfg), start=1):
        if b > 1 and cfg.reduce_ratio < 1.0:
            reduced = max(1, math.floor(channels * cfg.reduce_ratio + 0.5))
            plan.append(LayerShape(f"block {b} reduce", "reduce", channels, reduced, size, size,
                                   params=_conv_params(channels, reduced, 1, batch_norm=cfg.batch_norm), block=b))
            channels = reduced
        for c in range(1, cfg.convs_per_block + 1):
            stride = cfg.stride if c == 1 else 1
            out = conv_output_size(size, kernel=cfg.kernel_size, stride=stride, padding=cfg.padding)
            if out < 1:
                raise _shrink_error(f"block {b} conv {c}", in_size=size, kernel=cfg.kernel_size,
                                    stride=stride, padding=cfg.padding, out=out)
            params = _conv_params(channels, width, cfg.kernel_size, batch_norm=cfg.batch_norm)
            plan.append(LayerShape(f"block {b} conv {c}", "conv", channels, width, size, out,
                                   kernel=cfg.kernel_size, stride=stride, padding=cfg.padding,
                                   params=params, block=b))
            channels, size = width, out
        if cfg.pool != "none" and b % cfg.pool_every == 0:
            out = conv_output_size(size, kernel=cfg.pool_size, stride=cfg.pool_size, padding=0)
            if out < 1:
                raise _shrink_error(f"block {b} pool", in_size=size, kernel=cfg.pool_size,
                                    stride=cfg.pool_size, padding=0, out=out)
            plan.append(LayerShape(f"block {b} pool", "pool", channels, channels, size, out,
                                   kernel=cfg.pool_size, stride=cfg.pool_size, block=b))
            size = out
    features = channels * size * size if cfg.head_pooling == "flatten" else channels
    plan.append(LayerShape(f"head {cfg.head_pooling}", "head_pool", channels, features, size, 1))
    for i in range(1, cfg.head_layers + 1):
        params = features * cfg.head_units + (2 * cfg.head_units if cfg.batch_norm else cfg.head_units)
        plan.append(LayerShape(f"head dense {i}", "dense", features, cfg.head_units, 1, 1, params=params))
        features = cfg.head_units
    plan.append(LayerShape("classifier", "classifier", features, cfg.num_classes, 1, 1,
                           params=features * cfg.num_classes + cfg.num_classes))
    return plan


def planned_parameters(plan: list[LayerShape]) -> int:
    """Total trainable parameters of a plan, from the per-layer formulas (no model built)."""
    return sum(layer.params for layer in plan)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a built model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _activation(cfg: ModelConfig) -> nn.Module:
    if cfg.activation == "leaky_relu":
        return nn.LeakyReLU(_LEAKY_SLOPE)
    return _ACTIVATIONS[cfg.activation]()


def _conv_unit(layer: LayerShape, cfg: ModelConfig) -> nn.Sequential:
    parts: list[tuple[str, nn.Module]] = [("conv", nn.Conv2d(
        layer.in_channels, layer.out_channels, layer.kernel, stride=layer.stride, padding=layer.padding,
        bias=not cfg.batch_norm))]
    if cfg.batch_norm:
        parts.append(("bn", nn.BatchNorm2d(layer.out_channels)))
    parts.append(("act", _activation(cfg)))
    return nn.Sequential(OrderedDict(parts))


def _dense_unit(layer: LayerShape, cfg: ModelConfig) -> nn.Sequential:
    """dropout -> linear (-> batch norm -> activation, for hidden layers; the classifier ends at linear)."""
    hidden = layer.kind == "dense"
    parts: list[tuple[str, nn.Module]] = []
    if cfg.head_dropout > 0:
        parts.append(("dropout", nn.Dropout(cfg.head_dropout)))
    parts.append(("linear", nn.Linear(layer.in_channels, layer.out_channels,
                                      bias=not (hidden and cfg.batch_norm))))
    if hidden and cfg.batch_norm:
        parts.append(("bn", nn.BatchNorm1d(layer.out_channels)))
    if hidden:
        parts.append(("act", _activation(cfg)))
    return nn.Sequential(OrderedDict(parts))


def _layer_module(layer: LayerShape, cfg: ModelConfig) -> nn.Module:
    if layer.kind in ("conv", "reduce"):
        return _conv_unit(layer, cfg)
    if layer.kind == "pool":
        pool = nn.MaxPool2d if cfg.pool == "max" else nn.AvgPool2d
        return pool(layer.kernel, stride=layer.stride)
    if layer.kind == "head_pool":
        if cfg.head_pooling == "flatten":
            return nn.Flatten()
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return _dense_unit(layer, cfg)


def build_model(cfg: ModelConfig) -> nn.Sequential:
    """The planned CNN, initialised per ``cfg.init``; deterministic under ``torch.manual_seed``.

    Children are named after the plan ("block1_conv1", "block1_pool", "head_dense1",
    "classifier", ...) so a printed model reads like the plan.
    """
    plan = plan_layers(cfg)
    modules: list[tuple[str, nn.Module]] = []
    if cfg.input_dropout > 0:
        modules.append(("input_dropout", nn.Dropout(cfg.input_dropout)))
    for i, layer in enumerate(plan):
        modules.append((layer.module_name, _layer_module(layer, cfg)))
        block_ends = layer.block > 0 and plan[i + 1].block != layer.block  # the head always follows
        if block_ends and cfg.spatial_dropout > 0:
            modules.append((f"block{layer.block}_dropout", nn.Dropout2d(cfg.spatial_dropout)))
    model = nn.Sequential(OrderedDict(modules))
    init_weights(model, cfg)
    return model


def init_weights(model: nn.Module, cfg: ModelConfig) -> None:
    """Initialise conv and linear weights per ``cfg.init``; biases start at zero (except "default").

    kaiming: He et al. 2015, fan_in, with the activation's gain (relu's gain stands in for elu,
    gelu and silu, which have none of their own in torch; selu uses the linear gain, i.e. LeCun
    normal, as Klambauer et al. 2017 prescribe). The classifier always gets the linear gain.
    """
    if cfg.init == "default":
        return
    nonlinearity = {"relu": "relu", "leaky_relu": "leaky_relu", "selu": "linear"}.get(cfg.activation, "relu")
    linears = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in linears:
        is_classifier = m is linears[-1]
        if cfg.init == "kaiming":
            nn.init.kaiming_normal_(m.weight, a=_LEAKY_SLOPE, mode="fan_in",  # `a` counts for leaky_relu only
                                    nonlinearity="linear" if is_classifier else nonlinearity)
        elif cfg.init == "xavier":
            nn.init.xavier_uniform_(m.weight)
        else:
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale each output unit's incoming weights (a conv filter, a linear row) to L2 norm <= max_norm.

    The max-norm constraint of Srivastava et al. 2014 (Dropout), applied to every conv and linear
    layer; call it after every optimizer step. 0 turns it off. ``Tensor.renorm_`` does exactly
    this per slice along dim 0, in place.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm >= 0:
        raise ValueError(f"The value of `max_norm` is {max_norm!r}, but must be a number >= 0 (0 = off). "
                         "Use e.g. 3.0 or 4.0.")
    if max_norm == 0:
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.renorm_(p=2, dim=0, maxnorm=max_norm)
