"""A validated ``Space`` turned into what the searchers sample from, and samples back into configs.

Random and grid search use Ray's ``BasicVariantGenerator`` over a Tune ``param_space``
(``to_ray_param_space``). Ray's automatic conversion of a Tune space to Hyperopt cannot express
conditional entries, so for Hyperopt we build the native space ourselves: a nested ``hp.choice``
whose branches hold the conditional entries (``to_hyperopt``); ``flatten_sample`` turns a sample
back into the flat dict ``TrialConfig.from_dict`` takes.
"""
from __future__ import annotations

import math
import zlib
from typing import Any, Mapping

import numpy as np

from sweeps.space import DEFAULTS, Dim, Space, is_int_key

BRANCH_SUFFIX = "?"  # native hyperopt key of a conditional branch: "optimizer?" (never a config key)


# --- Conversion for Ray's BasicVariantGenerator (random and grid search). ---

class ConditionalSampler:
    """``tune.sample_from`` body: samples ``dim`` when its condition holds, else None.

    Ray passes no random state to sample_from functions, so this keeps its own generator,
    seeded from the sweep seed and the key: the driver resolves trials in order, so the
    sequence is reproducible (and it is pickled with the searcher's state on --resume).
    """

    def __init__(self, dim: Dim, *, seed: int):
        self.dim = dim
        self.rng = np.random.default_rng([seed, zlib.crc32(dim.key.encode())])

    def __call__(self, config: Mapping[str, Any]) -> Any:
        assert self.dim.when is not None
        parent, values = self.dim.when
        if config[parent] not in values:
            return None
        return sample_dim(self.dim, self.rng)


def sample_dim(dim: Dim, rng: np.random.Generator) -> Any:
    kind, args = dim.kind, dim.args
    if kind == "choice":
        return args[int(rng.integers(len(args)))]
    if kind == "randint":
        return int(rng.integers(int(args[0]), int(args[1])))
    low, high = args[0], args[1]
    x = math.exp(rng.uniform(math.log(low), math.log(high))) if "log" in kind else rng.uniform(low, high)
    if kind.startswith("q"):
        x = round(x / args[2]) * args[2]
        return int(x) if is_int_key(dim.key) else float(x)
    return float(x)


def to_ray(dim: Dim, *, seed: int) -> Any:
    from ray import tune

    if dim.when is not None:
        return tune.sample_from(ConditionalSampler(dim, seed=seed))
    kind, args = dim.kind, dim.args
    ints = is_int_key(dim.key)
    if kind == "const":
        return args[0]
    if kind == "choice":
        return tune.choice(list(args))
    if kind == "grid":
        return tune.grid_search(list(args))
    if kind == "randint":
        return tune.randint(int(args[0]), int(args[1]))
    if kind == "uniform":
        return tune.uniform(*args)
    if kind == "loguniform":
        return tune.loguniform(*args)
    if ints:
        # Ray's qrandint/qlograndint include the upper bound except when q is 1 (their docstrings);
        # hyperopt's quniform and our range checks include it for every q.
        low, high, q = int(args[0]), int(args[1]), int(args[2])
        high += 1 if q == 1 else 0
        return tune.qrandint(low, high, q) if kind == "quniform" else tune.qlograndint(low, high, q)
    return tune.quniform(*args) if kind == "quniform" else tune.qloguniform(*args)


def to_ray_param_space(space: Space, *, seed: int, sampled: bool = True) -> dict[str, Any]:
    """Tune ``param_space``: constants always; sampled entries too unless Hyperopt samples them."""
    return {d.key: to_ray(d, seed=seed) for d in space.dims if sampled or not d.sampled}


# --- Conversion for Hyperopt (native space, so conditional entries work). ---

def _hp(dim: Dim, label: str) -> Any:
    from hyperopt import hp

    kind, args = dim.kind, dim.args
    if kind == "choice":
        return hp.choice(label, list(args))
    if kind == "randint":
        return hp.randint(label, int(args[0]), int(args[1]))
    if kind == "uniform":
        return hp.uniform(label, *args)
    if kind == "loguniform":
        return hp.loguniform(label, math.log(args[0]), math.log(args[1]))
    if kind == "quniform":
        return hp.quniform(label, *args)
    assert kind == "qloguniform", kind
    return hp.qloguniform(label, math.log(args[0]), math.log(args[1]), args[2])


def _child_label(dim: Dim, parent_value: Any) -> str:
    assert dim.when is not None
    return f"{dim.key}|{dim.when[0]}={parent_value}"


def to_hyperopt(space: Space) -> dict[str, Any]:
    """Native Hyperopt space of the sampled entries; each parent of conditional entries becomes
    ``{"<parent>?": hp.choice(parent, [{parent: value, child: ...}, ...])}``."""
    children: dict[str, list[Dim]] = {}
    for dim in space.dims:
        if dim.when is not None:
            children.setdefault(dim.when[0], []).append(dim)
    native: dict[str, Any] = {}
    for dim in space.dims:
        if not dim.sampled or dim.when is not None:
            continue
        if dim.key not in children:
            native[dim.key] = _hp(dim, dim.key)
            continue
        from hyperopt import hp

        branches = [{dim.key: value, **{c.key: _hp(c, _child_label(c, value))
                                        for c in children[dim.key] if value in c.when[1]}}
                    for value in dim.args]
        native[dim.key + BRANCH_SUFFIX] = hp.choice(dim.key, branches)
    return native


def to_hyperopt_points(space: Space) -> list[dict[str, Any]]:
    """Starting points in Hyperopt's label form. Plain choices keep their value (Ray turns it into
    an index); a branching parent needs the index itself, and its children their branch labels."""
    out = []
    for point in space.points:
        hp_point: dict[str, Any] = {}
        for dim in space.dims:
            if not dim.sampled or dim.key not in point or point[dim.key] is None:
                continue
            if dim.when is not None:
                hp_point[_child_label(dim, point[dim.when[0]])] = point[dim.key]
            elif any(d.when is not None and d.when[0] == dim.key for d in space.dims):
                hp_point[dim.key] = list(dim.args).index(point[dim.key])
            else:
                hp_point[dim.key] = point[dim.key]
        out.append(hp_point)
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def flatten_sample(sample: Mapping[str, Any], *, space: Space | None = None) -> dict[str, Any]:
    """A sampled config (possibly with nested Hyperopt branches) -> flat {config key: value}.

    Integer hyperparameters come back from Hyperopt's q-distributions as floats (32.0): they are
    turned into ints here so the results show 32. Conditional keys of ``space`` missing from a
    branch are set to None, so every trial has the same columns.
    """
    flat: dict[str, Any] = {}
    for key, value in sample.items():
        if key.endswith(BRANCH_SUFFIX) and isinstance(value, Mapping):
            flat.update(flatten_sample(value))
            continue
        value = _plain(value)
        if key in DEFAULTS and is_int_key(key) and isinstance(value, float) and value.is_integer():
            value = int(value)
        flat[key] = value
    for dim in space.dims if space is not None else ():
        flat.setdefault(dim.key, None)
    return flat


def trial_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the trainable gets: the flat sample without inactive (None) conditional keys."""
    return {k: v for k, v in flatten_sample(config).items() if v is not None}
