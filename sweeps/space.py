"""Search spaces: a small declarative schema, its parsing from YAML/JSON files, and every check a
space must pass before Ray starts. The built-in spaces are in ``sweeps.space_builtin``, the
conversion to Ray's and Hyperopt's samplers in ``sweeps.space_convert``.

A space maps each hyperparameter (a key of ``trainables.config.CONFIG_KEYS``) to one entry::

    lr: {loguniform: [1.0e-4, 1.0e-1]}          # log-uniform in [low, high]
    head_dropout: {uniform: [0.0, 0.5]}          # uniform in [low, high]
    filters: {quniform: [16, 64, 16]}            # uniform rounded to a multiple of q
    head_units: {qloguniform: [64, 512, 64]}     # log-uniform rounded to a multiple of q
    num_blocks: {randint: [2, 5]}                # integer in [low, high) (high excluded)
    batch_size: {choice: [64, 128, 256]}         # one of the values, sampled
    weight_decay: {grid: [1.0e-4, 5.0e-4]}       # every value (random/grid search only)
    epochs: 5                                    # a constant
    momentum: {uniform: [0.8, 0.99], when: {optimizer: sgd}}   # only sampled when optimizer is sgd
    lr: {loguniform: [1.0e-3, 0.3], reason: "why this range"} # optional one-line reason
    points_to_evaluate:                          # optional: known-good starting points (Hyperopt only)
      - {lr: 0.05, momentum: 0.9}                # one value for every sampled key active in the point

Keys left out keep ``TrialConfig``'s defaults. ``epochs`` defaults to ``--max-epochs`` and
``seed`` to ``--seed``. A conditional entry (``when``) depends on one ``choice`` entry and is
None in trials where its condition does not hold (the trainable then uses the default).
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from trainables.config import CONFIG_KEYS, TrialConfig
from trainables.config_file import parse_file
from trainables.model import plan_layers

RANGE_KINDS = ("uniform", "loguniform", "quniform", "qloguniform", "randint")
LIST_KINDS = ("choice", "grid")
KINDS = RANGE_KINDS + LIST_KINDS + ("const",)
DEFAULTS = TrialConfig().to_dict()
# The one top-level key of a space file that is not a hyperparameter: Hyperopt's first trials, in
# Ray's own name for them (``HyperOptSearch(points_to_evaluate=...)``). Random and grid search are
# the unguided baselines and ignore them, as they do the built-in spaces' starting points.
POINTS_KEY = "points_to_evaluate"
# Names other tools use for our keys, which string similarity alone would not find.
_ALIASES = {"learning_rate": "lr", "learning-rate": "lr", "wd": "weight_decay", "dropout": "head_dropout",
            "bs": "batch_size", "optim": "optimizer", "n_filters": "filters", "num_filters": "filters"}


@dataclass(frozen=True)
class Dim:
    """One hyperparameter's distribution. ``args``: [low, high(, q)] for ranges, the values otherwise."""

    key: str
    kind: str
    args: tuple[Any, ...]
    reason: str = ""
    when: tuple[str, tuple[Any, ...]] | None = None  # (parent key, parent values that activate it)

    @property
    def sampled(self) -> bool:
        return self.kind != "const"

    def describe(self) -> str:
        if self.kind == "const":
            text = repr(self.args[0])
        elif self.kind in LIST_KINDS:
            text = f"{self.kind}{list(self.args)}"
        else:
            text = f"{self.kind}({', '.join(repr(a) for a in self.args)})"
        if self.when is not None:
            text += f" when {self.when[0]} in {list(self.when[1])}"
        return text


@dataclass(frozen=True)
class Space:
    """An ordered set of dimensions plus known-good starting points (flat dicts) for Hyperopt."""

    dims: tuple[Dim, ...]
    points: tuple[Mapping[str, Any], ...] = ()
    source: str = "built-in"

    def __getitem__(self, key: str) -> Dim:
        return next(d for d in self.dims if d.key == key)

    def keys(self) -> list[str]:
        return [d.key for d in self.dims]

    def with_const(self, key: str, value: Any, reason: str) -> "Space":
        """Add a constant unless the space already sets ``key``."""
        if key in self.keys():
            return self
        return dataclasses.replace(self, dims=self.dims + (Dim(key, "const", (value,), reason),))


def _bad(key: str, value: Any, rule: str, fix: str) -> ValueError:
    return ValueError(f"Search space entry `{key}` is {value!r}, but {rule}. {fix}")


def is_int_key(key: str) -> bool:
    default = DEFAULTS[key]
    return isinstance(default, int) and not isinstance(default, bool)


def parse_dim(key: Any, spec: Any) -> Dim:
    """One entry of a user space (after YAML/JSON parsing) -> Dim, checking its own shape."""
    if not isinstance(key, str) or key not in CONFIG_KEYS:
        known = [*CONFIG_KEYS, POINTS_KEY]
        close = [_ALIASES[key]] if key in _ALIASES else difflib.get_close_matches(str(key), known, n=1)
        hint = f"Did you mean `{close[0]}`?" if close else ""
        hint += f" Valid keys: {', '.join(sorted(CONFIG_KEYS))}; and `{POINTS_KEY}` for starting points."
        raise ValueError(f"Search space key `{key}` is not a hyperparameter of the trainable. {hint}")
    if not isinstance(spec, Mapping):
        return Dim(key, "const", (spec,))
    spec = dict(spec)
    reason = str(spec.pop("reason", ""))
    when = _parse_when(key, spec.pop("when", None))
    kinds = [k for k in spec if k in KINDS]
    if len(spec) != 1 or len(kinds) != 1:
        raise _bad(key, spec, f"must have exactly one of {', '.join(KINDS)} (plus optional reason/when)",
                   "Write e.g. `lr: {loguniform: [1.0e-4, 1.0e-1]}` or a plain value for a constant.")
    kind = kinds[0]
    args = spec[kind]
    if kind == "const":
        args = [args]
    if not isinstance(args, (list, tuple)):
        raise _bad(key, spec, f"`{kind}` needs a list", f"Write `{key}: {{{kind}: [...]}}`.")
    return Dim(key, kind, tuple(args), reason, when)


def _parse_when(key: str, when: Any) -> tuple[str, tuple[Any, ...]] | None:
    if when is None:
        return None
    if not isinstance(when, Mapping) or len(when) != 1:
        raise _bad(key, when, "`when` must map exactly one parent key to its value(s)",
                   "Write `when: {optimizer: sgd}` or `when: {optimizer: [sgd, rmsprop]}`.")
    parent, values = next(iter(when.items()))
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    return str(parent), values


def _check_range(dim: Dim) -> None:
    key, kind, args = dim.key, dim.kind, dim.args
    need = 3 if kind.startswith("q") else 2
    shape = "[low, high, q]" if need == 3 else "[low, high]"
    if len(args) != need or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise _bad(key, {kind: list(args)}, f"`{kind}` takes {shape} numbers", f"Write `{key}: {{{kind}: {shape}}}`.")
    low, high = args[0], args[1]
    if not all(math.isfinite(a) for a in args):
        raise _bad(key, {kind: list(args)}, "bounds must be finite", "Use finite numbers.")
    if low >= high:
        raise _bad(key, {kind: list(args)}, f"the range is empty (low {low} >= high {high})",
                   "Give low < high, or use a constant for a fixed value.")
    if "log" in kind and low <= 0:
        raise _bad(key, {kind: list(args)}, f"a log range needs low > 0 (low is {low})",
                   "Start the range above 0 (e.g. 1e-5), or use `uniform` if 0 must be included.")
    if need == 3 and args[2] <= 0:
        raise _bad(key, {kind: list(args)}, f"q must be > 0 (q is {args[2]})", "Use e.g. q = 1 or 16.")
    if kind == "randint" and not (float(low).is_integer() and float(high).is_integer()):
        raise _bad(key, {kind: list(args)}, "randint bounds must be integers", "Write e.g. `randint: [2, 5]`.")
    if is_int_key(key) and kind in ("uniform", "loguniform"):
        raise _bad(key, {kind: list(args)}, f"`{key}` is an integer hyperparameter and `{kind}` samples floats",
                   "Use randint, quniform/qloguniform with an integer q, or choice.")
    if need == 3 and not is_int_key(key) and not all(_multiple(a, args[2]) for a in (low, high)):
        # Ray's quniform/qloguniform (random and grid search) refuse such bounds when the sweep
        # starts, and hyperopt's do not; refused for every search, since sweeps.compare runs one
        # space under both.
        q = args[2]
        fixed = [_round_to(math.ceil(low / q - 1e-9) * q, q), _round_to(math.floor(high / q + 1e-9) * q, q), q]
        raise _bad(key, {kind: list(args)}, f"its bounds must be multiples of q ({q})",
                   f"Write e.g. `{key}: {{{kind}: {fixed}}}`.")
    if is_int_key(key) and need == 3 and not float(args[2]).is_integer():
        raise _bad(key, {kind: list(args)}, f"`{key}` is an integer, so q must be a whole number",
                   "Use an integer q such as 1, 8 or 16.")


def _multiple(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q))  # Ray's own test (ray.tune.search.sample.Float.quantized)


def _round_to(value: float, q: float) -> float:
    """``value`` without the float noise of k * q (0.30000000000000004 -> 0.3)."""
    digits = max(0, -math.floor(math.log10(q))) + 6
    return round(value, digits)


def representative_values(dim: Dim) -> list[Any]:
    """Values a dim can produce that TrialConfig must accept: range ends, or every listed value."""
    if dim.kind in LIST_KINDS or dim.kind == "const":
        return list(dim.args)
    low, high = dim.args[0], dim.args[1]
    if dim.kind == "randint":
        return [int(low), int(high) - 1]
    if dim.kind.startswith("q"):
        q = dim.args[2]
        return [round(low / q) * q, round(high / q) * q]
    return [low, high]


def validate_space(space: Space, *, search: str, max_epochs: int) -> None:
    """Every rule a space must satisfy before Ray starts; raises ValueError naming key, rule and fix."""
    keys = space.keys()
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ValueError(f"Search space sets {sorted(dupes)} more than once. Keep one entry per key.")
    for dim in space.dims:
        if dim.kind not in KINDS:
            raise _bad(dim.key, dim.kind, f"the kind must be one of {', '.join(KINDS)}", "Fix the entry's kind.")
        if dim.kind in RANGE_KINDS:
            _check_range(dim)
        elif dim.kind in LIST_KINDS and not dim.args:
            raise _bad(dim.key, {dim.kind: []}, f"`{dim.kind}` needs at least one value", "List the values to try.")
        if dim.kind == "grid" and search == "hyperopt":
            raise _bad(dim.key, {"grid": list(dim.args)}, "`grid` entries only work with --search grid or random",
                       "Use `choice` for Hyperopt, or pass --search grid.")
        _check_condition(space, dim)
    _check_values(space)
    epochs = [v for v in representative_values(space["epochs"])] if "epochs" in keys else []
    if any(isinstance(v, (int, float)) and v > max_epochs for v in epochs):
        raise _bad("epochs", space["epochs"].describe(), f"must not exceed --max-epochs ({max_epochs})",
                   "Lower `epochs` in the space or raise --max-epochs.")
    if search == "grid" and not any(d.kind == "grid" for d in space.dims):
        raise ValueError(f"--search grid was given, but the search space ({space.source}) has no `grid` entry, so "
                         "there would be no grid: only --num-samples random draws. Give the values to try as "
                         "`key: {grid: [...]}`, or pass --search random.")
    if search == "hyperopt" and not any(d.sampled for d in space.dims):
        raise ValueError("The search space has no sampled entries, and Hyperopt needs at least one. "
                         "Add a range or choice, or pass --search random/grid.")
    for point in space.points:
        check_point(space, point)


def check_repeats(space: Space, *, search: str, num_samples: int) -> None:
    """Grid and random search (Ray's BasicVariantGenerator) run every grid point ``num_samples``
    times; where nothing else is sampled, each repeat is the same seeded trial again: compute spent
    for an identical result."""
    if search not in ("grid", "random") or num_samples <= 1:
        return
    if all(d.kind in ("grid", "const") for d in space.dims):
        raise ValueError(f"--num-samples {num_samples} with --search {search} runs every grid point {num_samples} times, "
                         "but the space samples nothing besides its `grid` entries and every trial shares one seed, "
                         "so each repeat would train the identical trial again. Pass --num-samples 1, or let the "
                         "repeats differ: e.g. `seed: {randint: [0, 10000]}` in the space.")


def _check_condition(space: Space, dim: Dim) -> None:
    if dim.when is None:
        return
    parent_key, values = dim.when
    if parent_key not in space.keys():
        raise _bad(dim.key, {"when": {parent_key: list(values)}}, f"its parent `{parent_key}` is not in the space",
                   f"Add `{parent_key}: {{choice: [...]}}` to the space or drop `when`.")
    parent = space[parent_key]
    if parent.kind != "choice" or parent.when is not None:
        raise _bad(dim.key, {"when": {parent_key: list(values)}},
                   f"its parent `{parent_key}` must be an unconditional `choice` (it is {parent.describe()})",
                   f"Make `{parent_key}` a choice, or drop `when`.")
    if dim.kind == "grid":
        raise _bad(dim.key, {"grid": list(dim.args)}, "a `grid` entry cannot be conditional",
                   "Use `choice` for a conditional entry.")
    missing = [v for v in values if v not in parent.args]
    if missing:
        raise _bad(dim.key, {"when": {parent_key: list(values)}},
                   f"{missing} are not among `{parent_key}`'s values {list(parent.args)}", "Fix the `when` values.")


def _base_config(space: Space) -> dict[str, Any]:
    return {**DEFAULTS, **{d.key: d.args[0] for d in space.dims if d.kind == "const"}}


def _check_values(space: Space) -> None:
    """Each value a dim can produce must pass TrialConfig's own rules (others at their base values)."""
    base = _base_config(space)
    combined = {k for group in _interacting_groups(space) for k in group}
    for dim in space.dims:
        if dim.key in combined:
            continue  # tried with the entries it interacts with, below, not with their defaults
        extra = {dim.when[0]: dim.when[1][0]} if dim.when else {}
        for value in representative_values(dim):
            try:
                # The architecture too: Tune retries a failed trial (FailureConfig has no way to mark an
                # error permanent), so a config that can never build a model must not reach a trial.
                plan_layers(TrialConfig.from_dict({**base, **extra, dim.key: value}).model)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"Search space entry `{dim.key}` ({dim.describe()}) can produce {value!r}, "
                                 f"which the trainable rejects: {exc}") from exc
    _check_combinations(space, base)


# Keys that TrialConfig's rules or the model's layer plan read together; a rule never spans two of
# these groups, so each group's combinations are tried on their own (the rest at base values).
_INTERACTING = (
    ("num_blocks", "convs_per_block", "kernel_size", "stride", "padding", "pool", "pool_every", "pool_size",
     "head_pooling", "image_size"),  # feature-map sizes, padding < kernel_size, pool_every <= num_blocks
    ("optimizer", "momentum", "nesterov"),  # nesterov needs momentum > 0 with sgd
    ("warmup_epochs", "epochs"),  # warmup_epochs < epochs
    ("batch_norm", "batch_size"),  # BatchNorm needs two images per step
)


def _extremes(dim: Dim) -> list[Any]:
    """The values of ``dim`` a combination check must try. Every rule on a group is monotone in each
    numeric key (a map shrinks with more blocks, a larger kernel or stride, less padding), so a
    numeric entry's smallest and largest values stand for all of it; other values are all tried."""
    values = representative_values(dim)
    numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sorted({min(numeric), max(numeric)}) if numeric and len(numeric) == len(values) else values


def _interacting_groups(space: Space) -> list[list[str]]:
    """Per group of ``_INTERACTING``, its sampled keys (and the parents they are conditional on),
    where there are two or more: those are checked together."""
    sampled = {d.key: d for d in space.dims if d.sampled}
    groups = []
    for group in _INTERACTING:
        keys = [k for k in group if k in sampled]
        keys += [sampled[k].when[0] for k in keys if sampled[k].when and sampled[k].when[0] not in keys]
        if len(keys) >= 2:
            groups.append(list(dict.fromkeys(keys)))
    return groups


def _check_combinations(space: Space, base: Mapping[str, Any]) -> None:
    """Rules on two or more keys, which the one-key-at-a-time check above cannot see: each group of
    interacting sampled keys is tried at every combination of their extremes. A conditional entry
    takes its values only where its parent's value turns it on."""
    sampled = {d.key: d for d in space.dims if d.sampled}
    for keys in _interacting_groups(space):
        for combo in itertools.product(*(_extremes(sampled[k]) for k in keys)):
            values = dict(zip(keys, combo))
            for key in keys:
                when = sampled[key].when
                if when is not None and values[when[0]] not in when[1]:
                    values[key] = base[key]  # off in this combination: the trial gets the default
            try:
                plan_layers(TrialConfig.from_dict({**base, **values}).model)
            except (ValueError, TypeError) as exc:
                named = {k: v for k, v in values.items() if v != base[k]} or values
                entries = " and ".join(f"`{k}`" for k in named)
                raise ValueError(f"Search space entries {entries} can combine into {named}, which the trainable "
                                 f"rejects: {exc} Narrow one of these entries so that every combination of their "
                                 "smallest and largest values is valid.") from exc


# ModelConfig keys that describe the data rather than a choice: a trial whose value differs from
# the data's fails in its first step (trainables.cifar.check_fits_data), and Tune retries it.
DATA_SHAPE_KEYS = ("in_channels", "image_size", "num_classes")


def check_fits_data(space: Space, *, channels: int, image_size: int, num_classes: int) -> None:
    """Every value the space gives a data-shape key must be the data's own; checked once the data is loaded."""
    actual = {"in_channels": channels, "image_size": image_size, "num_classes": num_classes}
    for key in DATA_SHAPE_KEYS:
        if key in space.keys():
            wrong = [v for v in representative_values(space[key]) if v != actual[key]]
            if wrong:
                raise _bad(key, space[key].describe(), f"it can give {wrong[0]!r} and the data has {actual[key]} "
                           f"({channels}×{image_size}×{image_size} images, {num_classes} classes): it describes the "
                           "data, it is not a hyperparameter", f"Drop `{key}` from the space (it then matches the data).")


def _in_dim(dim: Dim, value: Any) -> bool:
    if dim.kind in LIST_KINDS or dim.kind == "const":
        return value in dim.args
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if dim.kind == "randint":  # [low, high): the high bound is never sampled
        return float(value).is_integer() and dim.args[0] <= value < dim.args[1]
    return dim.args[0] <= value <= dim.args[1]


def check_point(space: Space, point: Mapping[str, Any]) -> None:
    """A starting point must give every active sampled key a value inside its range, and nothing else."""
    sampled = {d.key for d in space.dims if d.sampled}
    for key in point:
        if key not in sampled:
            rule = ("is not a sampled entry of the space" if key in CONFIG_KEYS
                    else "is not a hyperparameter of the trainable")
            raise _bad(POINTS_KEY, dict(point), f"its key `{key}` {rule} (sampled: {', '.join(sorted(sampled))})",
                       f"Drop `{key}` from the point, or add a range or choice for it to the space.")
    for dim in space.dims:
        if not dim.sampled:
            continue
        active = dim.when is None or point.get(dim.when[0]) in dim.when[1]
        if not active and point.get(dim.key) is not None:
            raise _bad(dim.key, point[dim.key], f"the starting point {dict(point)} sets it, but the space uses "
                       f"`{dim.key}` only when {dim.when[0]} is one of {list(dim.when[1])}",
                       f"Drop `{dim.key}` from this point (it would be ignored).")
        if active and dim.key not in point:
            raise _bad(POINTS_KEY, dict(point), f"it gives no value for `{dim.key}`, which the space samples "
                       f"({dim.describe()}): Hyperopt needs a value for every sampled key",
                       f"Add `{dim.key}: <a value in its range>` to the point.")
        if active and not _in_dim(dim, point[dim.key]):
            raise _bad(dim.key, point.get(dim.key), f"the starting point {dict(point)} lies outside {dim.describe()}",
                       "Fix the point or the range.")
    TrialConfig.from_dict({**_base_config(space), **{k: v for k, v in point.items() if v is not None}})


def load_space(path: str | Path) -> Space:
    """Read a YAML or JSON space file (schema in this module's docstring)."""
    path = Path(path)
    try:
        raw = parse_file(path)
    except ValueError as exc:
        raise ValueError(f"Search space file {exc}") from exc
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"Search space file {path} must hold a non-empty mapping of key -> entry, "
                         f"got {type(raw).__name__}. See `python -m sweeps.cifar --help`.")
    raw = dict(raw)
    points = _parse_points(raw.pop(POINTS_KEY, None))
    return Space(tuple(parse_dim(k, v) for k, v in raw.items()), points, source=str(path))


def _parse_points(raw: Any) -> tuple[dict[str, Any], ...]:
    """The file's ``points_to_evaluate``: a list of {key: value} mappings (checked against the space
    later, in ``validate_space``, once every entry is known)."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(p, Mapping) for p in raw):
        raise _bad(POINTS_KEY, raw, "it must be a non-empty list of {key: value} mappings",
                   f"Write e.g. `{POINTS_KEY}: [{{lr: 0.05, batch_size: 128}}]`, or leave it out.")
    return tuple(dict(p) for p in raw)


def grid_size(space: Space) -> int:
    """Number of grid points (1 when the space has no grid entries)."""
    return math.prod(len(d.args) for d in space.dims if d.kind == "grid")


def format_space(space: Space) -> str:
    """The space as a table, one dimension a line, with the reason for each range."""
    width = max(len(d.key) for d in space.dims)
    dwidth = max(len(d.describe()) for d in space.dims)
    lines = [f"Search space ({space.source}):"]
    for dim in space.dims:
        lines.append(f"  {dim.key:<{width}}  {dim.describe():<{dwidth}}  {dim.reason}".rstrip())
    for point in space.points:
        lines.append(f"  starting point: {dict(point)}")
    return "\n".join(lines)


def sampled_keys(space: Space) -> list[str]:
    return [d.key for d in space.dims if d.sampled]
