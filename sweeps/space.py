"""Search spaces: a small declarative schema, the built-in spaces, validation, and conversion.

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

Ray's automatic conversion of a Tune space to Hyperopt cannot express conditional entries, so
for Hyperopt we build the native space ourselves: a nested ``hp.choice`` whose branches hold the
conditional entries (see ``to_hyperopt``); ``flatten_sample`` turns a sample back into the flat
dict ``TrialConfig.from_dict`` takes.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trainables.config import CONFIG_KEYS, TrialConfig
from trainables.model import plan_layers

RANGE_KINDS = ("uniform", "loguniform", "quniform", "qloguniform", "randint")
LIST_KINDS = ("choice", "grid")
KINDS = RANGE_KINDS + LIST_KINDS + ("const",)
BRANCH_SUFFIX = "?"  # native hyperopt key of a conditional branch: "optimizer?" (never a config key)
_DEFAULTS = TrialConfig().to_dict()
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


def _is_int_key(key: str) -> bool:
    default = _DEFAULTS[key]
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
    if _is_int_key(key) and kind in ("uniform", "loguniform"):
        raise _bad(key, {kind: list(args)}, f"`{key}` is an integer hyperparameter and `{kind}` samples floats",
                   "Use randint, quniform/qloguniform with an integer q, or choice.")
    if _is_int_key(key) and need == 3 and not float(args[2]).is_integer():
        raise _bad(key, {kind: list(args)}, f"`{key}` is an integer, so q must be a whole number",
                   "Use an integer q such as 1, 8 or 16.")


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
    if search == "hyperopt" and not any(d.sampled for d in space.dims):
        raise ValueError("The search space has no sampled entries, and Hyperopt needs at least one. "
                         "Add a range or choice, or pass --search random/grid.")
    for point in space.points:
        check_point(space, point)


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
    return {**_DEFAULTS, **{d.key: d.args[0] for d in space.dims if d.kind == "const"}}


def _check_values(space: Space) -> None:
    """Each value a dim can produce must pass TrialConfig's own rules (others at their base values)."""
    base = _base_config(space)
    for dim in space.dims:
        extra = {dim.when[0]: dim.when[1][0]} if dim.when else {}
        for value in representative_values(dim):
            try:
                # The architecture too: Tune retries a failed trial (FailureConfig has no way to mark an
                # error permanent), so a config that can never build a model must not reach a trial.
                plan_layers(TrialConfig.from_dict({**base, **extra, dim.key: value}).model)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"Search space entry `{dim.key}` ({dim.describe()}) can produce {value!r}, "
                                 f"which the trainable rejects: {exc}") from exc


def _in_dim(dim: Dim, value: Any) -> bool:
    if dim.kind in LIST_KINDS or dim.kind == "const":
        return value in dim.args
    return isinstance(value, (int, float)) and dim.args[0] <= value <= dim.args[1]


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
        if active and (dim.key not in point or not _in_dim(dim, point[dim.key])):
            raise _bad(dim.key, point.get(dim.key), f"the starting point {dict(point)} lies outside {dim.describe()}",
                       "Fix the point or the range.")
    TrialConfig.from_dict({**_base_config(space), **{k: v for k, v in point.items() if v is not None}})


def load_space(path: str | Path) -> Space:
    """Read a YAML or JSON space file (schema in this module's docstring)."""
    path = Path(path)
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml  # only needed for YAML spaces

            raw = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError is a ValueError, yaml.YAMLError is not
        raise ValueError(f"Search space file {path} could not be parsed: {exc}. Fix its syntax.") from exc
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
        return int(x) if _is_int_key(dim.key) else float(x)
    return float(x)


def to_ray(dim: Dim, *, seed: int) -> Any:
    from ray import tune

    if dim.when is not None:
        return tune.sample_from(ConditionalSampler(dim, seed=seed))
    kind, args = dim.kind, dim.args
    ints = _is_int_key(dim.key)
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
    if kind == "quniform":
        return tune.qrandint(int(args[0]), int(args[1]), int(args[2])) if ints else tune.quniform(*args)
    return tune.qlograndint(int(args[0]), int(args[1]), int(args[2])) if ints else tune.qloguniform(*args)


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
        if key in _DEFAULTS and _is_int_key(key) and isinstance(value, float) and value.is_integer():
            value = int(value)
        flat[key] = value
    for dim in space.dims if space is not None else ():
        flat.setdefault(dim.key, None)
    return flat


def trial_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the trainable gets: the flat sample without inactive (None) conditional keys."""
    return {k: v for k, v in flatten_sample(config).items() if v is not None}


def sampled_keys(space: Space) -> list[str]:
    return [d.key for d in space.dims if d.sampled]


# --- Built-in spaces. ---

def default_space() -> Space:
    """Hyperopt/random default: the hyperparameters that matter most for a small CIFAR CNN.

    Cost on CPU is kept down by fixing the depth (3 blocks of one conv) and capping the width.
    """
    dims = (
        Dim("optimizer", "choice", ("sgd", "adamw"),
            "SGD+Nesterov and AdamW are the two standard CNN optimisers; which wins depends on the rest"),
        Dim("lr", "loguniform", (3e-4, 0.3),
            "log scale: lr acts multiplicatively; spans AdamW's ~1e-3 and SGD's ~0.05 optima"),
        Dim("momentum", "uniform", (0.8, 0.98),
            "SGD only (AdamW has its own betas); 0.9 is standard, higher smooths small-batch noise",
            ("optimizer", ("sgd",))),
        Dim("weight_decay", "loguniform", (1e-5, 1e-2),
            "matters by order of magnitude; CIFAR's classic 5e-4 sits mid-range"),
        Dim("batch_size", "choice", (64, 128, 256),
            "powers of two; smaller batches add regularising gradient noise but take more steps"),
        Dim("filters", "choice", (16, 32, 64),
            "above the 3x3 kernel's 9 input cells per channel (fewer would bottleneck), <= 64 for CPU cost"),
        Dim("head_dropout", "uniform", (0.0, 0.5),
            "dropout 0-0.5 on dense layers (Srivastava et al. 2014); 0 = off"),
        Dim("input_dropout", "uniform", (0.0, 0.2),
            "input dropout above ~0.2 erases too much of a 32x32 image (Srivastava et al. used 0.2)"),
        Dim("max_norm", "choice", (0.0, 3.0, 4.0, 5.0),
            "max-norm 3-5 pairs well with dropout (Srivastava et al. 2014); 0 = off"),
        Dim("num_blocks", "const", (3,), "32 -> 16 -> 8 -> 4 pixels: enough depth for CIFAR at CPU cost"),
        Dim("convs_per_block", "const", (1,), "one conv per block keeps a CPU epoch cheap"),
    )
    points = (
        # The classic CIFAR SGD recipe (TrialConfig's defaults) and a standard AdamW setting.
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128,
         "filters": 32, "head_dropout": 0.0, "input_dropout": 0.0, "max_norm": 0.0},
        {"optimizer": "adamw", "lr": 1e-3, "momentum": None, "weight_decay": 1e-2, "batch_size": 128,
         "filters": 32, "head_dropout": 0.25, "input_dropout": 0.1, "max_norm": 4.0},
    )
    return Space(dims, points, source="built-in default")


def _smoke_model() -> tuple[Dim, ...]:
    reason = "smoke: smallest sensible model so the sweep finishes in under a minute on 2 cores"
    return (Dim("num_blocks", "const", (2,), reason), Dim("convs_per_block", "const", (1,), reason),
            Dim("filters", "const", (16,), reason), Dim("head_layers", "const", (0,), reason))


def smoke_space() -> Space:
    dims = (
        Dim("lr", "loguniform", (0.01, 0.2), "log scale around SGD's usual ~0.05"),
        Dim("batch_size", "choice", (128, 256), "powers of two; large batches keep smoke epochs short"),
    ) + _smoke_model()
    return Space(dims, ({"lr": 0.05, "batch_size": 128},), source="built-in smoke")


def grid_space(*, smoke: bool = False) -> Space:
    """Small grid baseline: learning rate x weight decay with SGD (the rest at defaults)."""
    if smoke:
        dims = (Dim("lr", "grid", (0.02, 0.1), "smoke: two learning rates a factor 5 apart"),
                Dim("batch_size", "const", (256,), "smoke: large batches keep epochs short")) + _smoke_model()
        return Space(dims, source="built-in smoke grid")
    dims = (
        Dim("lr", "grid", (0.01, 0.03, 0.1), "half-decade steps around SGD's usual ~0.05"),
        Dim("weight_decay", "grid", (1e-4, 5e-4), "around CIFAR's classic 5e-4"),
        Dim("optimizer", "const", ("sgd",), "the grid varies SGD's two key knobs only"),
        Dim("filters", "const", (32,), "mid-range width"),
        Dim("num_blocks", "const", (3,), "as in the default space"),
        Dim("convs_per_block", "const", (1,), "as in the default space"),
    )
    return Space(dims, source="built-in grid")


def builtin_space(*, search: str, smoke: bool) -> Space:
    if search == "grid":
        return grid_space(smoke=smoke)
    return smoke_space() if smoke else default_space()


def resolve_space(*, search: str, smoke: bool, path: str | None, max_epochs: int, seed: int) -> Space:
    """The space a sweep will use, validated: a user file or the built-in one, plus epochs/seed."""
    space = load_space(path) if path is not None else builtin_space(search=search, smoke=smoke)
    if search != "hyperopt":  # random and grid search are the unguided baselines: no starting points
        space = dataclasses.replace(space, points=())
    space = space.with_const("epochs", max_epochs, "--max-epochs: the schedule spans the longest a trial may run")
    space = space.with_const("seed", seed, "--seed: every trial shares it, so trials differ only in hyperparameters")
    validate_space(space, search=search, max_epochs=max_epochs)
    return space
