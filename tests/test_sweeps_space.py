"""Search spaces: the schema, files, and one test per validation rule. No Ray, no training."""
from __future__ import annotations

import json
import math

import pytest

from sweeps.space import Dim, Space, grid_size, load_space, parse_dim, validate_space
from sweeps.space_builtin import resolve_space


def _space(**entries) -> Space:
    return Space(tuple(parse_dim(k, v) for k, v in entries.items()), source="test")


def _check(space: Space, search: str = "random", max_epochs: int = 5) -> None:
    validate_space(space, search=search, max_epochs=max_epochs)


def test_unknown_key_names_the_nearest():
    with pytest.raises(ValueError, match="`learning_rate`.*Did you mean `lr`"):
        _space(learning_rate={"uniform": [0.1, 0.2]})
    with pytest.raises(ValueError, match="`weight_decy`.*Did you mean `weight_decay`"):
        _space(weight_decy=1e-4)


def test_empty_range_rejected():
    with pytest.raises(ValueError, match="`lr`.*range is empty.*low < high"):
        _check(_space(lr={"uniform": [0.1, 0.1]}))


def test_low_above_high_rejected():
    with pytest.raises(ValueError, match="`head_dropout`.*low 0.5 >= high 0.1"):
        _check(_space(head_dropout={"uniform": [0.5, 0.1]}))


@pytest.mark.parametrize("low", [0.0, -1e-3])
def test_log_range_through_zero_rejected(low):
    with pytest.raises(ValueError, match="`weight_decay`.*log range needs low > 0.*uniform"):
        _check(_space(weight_decay={"loguniform": [low, 1e-2]}))


def test_nan_bound_rejected():
    with pytest.raises(ValueError, match="`lr`.*finite"):
        _check(_space(lr={"uniform": [math.nan, 0.1]}))


def test_grid_with_hyperopt_rejected():
    with pytest.raises(ValueError, match="`lr`.*`grid` entries only work with --search grid.*choice"):
        _check(_space(lr={"grid": [0.01, 0.1]}), search="hyperopt")


def test_empty_choice_rejected():
    with pytest.raises(ValueError, match="`batch_size`.*at least one value"):
        _check(_space(batch_size={"choice": []}))


def test_value_trialconfig_rejects_is_named():
    with pytest.raises(ValueError, match=r"`head_dropout`.*can produce 1\.0.*head_dropout"):
        _check(_space(head_dropout={"uniform": [0.0, 1.0]}))
    with pytest.raises(ValueError, match="`optimizer`.*can produce 'lion'"):
        _check(_space(optimizer={"choice": ["sgd", "lion"]}))


def test_float_distribution_on_integer_key_rejected():
    with pytest.raises(ValueError, match="`filters` is an integer.*randint"):
        _check(_space(filters={"uniform": [16, 64]}))


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="`lr`.*exactly one of"):
        _space(lr={"gaussian": [0.1, 0.01]})


def test_epochs_above_max_epochs_rejected():
    with pytest.raises(ValueError, match="`epochs`.*--max-epochs \\(5\\)"):
        _check(_space(epochs=8), max_epochs=5)


def test_hyperopt_needs_a_sampled_entry():
    with pytest.raises(ValueError, match="no sampled entries.*--search random"):
        _check(_space(lr=0.1), search="hyperopt")


def test_condition_parent_must_be_a_choice_in_the_space():
    with pytest.raises(ValueError, match="`momentum`.*parent `optimizer` is not in the space"):
        _check(_space(momentum={"uniform": [0.8, 0.9], "when": {"optimizer": "sgd"}}))
    with pytest.raises(ValueError, match=r"`momentum`.*\['lion'\] are not among"):
        _check(_space(optimizer={"choice": ["sgd", "adam"]},
                      momentum={"uniform": [0.8, 0.9], "when": {"optimizer": "lion"}}))


def test_load_yaml_and_json(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "lr: {loguniform: [1.0e-3, 1.0e-1], reason: log scale}\nbatch_size: {choice: [64, 128]}\nepochs: 3\n"
        "optimizer: {choice: [sgd, adam]}\nmomentum: {uniform: [0.8, 0.95], when: {optimizer: sgd}}\n")
    space = load_space(tmp_path / "s.yaml")
    _check(space, search="hyperopt")
    assert space["lr"] == Dim("lr", "loguniform", (1e-3, 0.1), "log scale")
    assert space["epochs"].kind == "const" and space["momentum"].when == ("optimizer", ("sgd",))
    # YAML 1.1 (PyYAML) reads 1e-4 without a dot as a string; a space file means a number.
    (tmp_path / "e.yaml").write_text("lr: {loguniform: [1e-4, 1E-1]}\nweight_decay: 5e-4\ninit: kaiming\n")
    exponents = load_space(tmp_path / "e.yaml")
    assert exponents["lr"].args == (1e-4, 0.1) and exponents["weight_decay"].args == (5e-4,)
    assert exponents["init"].args == ("kaiming",)
    (tmp_path / "s.json").write_text(json.dumps({"lr": {"grid": [0.01, 0.1]}, "batch_size": {"grid": [64, 128, 256]}}))
    assert grid_size(load_space(tmp_path / "s.json")) == 6


FILE_WITH_POINTS = ("lr: {loguniform: [1.0e-3, 1.0]}\nbatch_size: {choice: [64, 128]}\nfilters: 16\n"
                    "points_to_evaluate:\n  - {lr: 0.05, batch_size: 128}\n")


@pytest.mark.parametrize("points, message", [
    ("{lr: 0.05}", "`points_to_evaluate` is {'lr': 0.05}, but it must be a non-empty list"),
    ("[]", "must be a non-empty list"),
    ("[{lr: 0.05, batch_size: 128, filters: 16}]", "its key `filters` is not a sampled entry.*Drop `filters`"),
    ("[{lr: 0.05, batch_size: 128, learning_rate: 1}]", "`learning_rate` is not a hyperparameter"),
    ("[{lr: 5.0, batch_size: 128}]", "`lr` is 5.0, but the starting point .* lies outside loguniform"),
    ("[{lr: 0.05}]", "`points_to_evaluate` is {.lr.: 0.05}, but it gives no value for `batch_size`, which the space samples"),
])
def test_bad_starting_points_in_a_file_are_rejected_naming_the_fix(tmp_path, points, message):
    (tmp_path / "s.yaml").write_text(FILE_WITH_POINTS.split("points_to_evaluate")[0] + f"points_to_evaluate: {points}\n")
    with pytest.raises(ValueError, match=message):
        resolve_space(search="hyperopt", smoke=False, path=str(tmp_path / "s.yaml"), max_epochs=3, seed=0)


def test_misspelt_points_key_names_it():
    with pytest.raises(ValueError, match="Did you mean `points_to_evaluate`"):
        _space(points_to_evalute=[{"lr": 0.1}])


def test_unparseable_file_rejected(tmp_path):
    (tmp_path / "bad.yaml").write_text("lr: {loguniform: [1e-3,\n")
    with pytest.raises(ValueError, match="(?s)bad.yaml is not valid YAML.*Fix its syntax"):
        load_space(tmp_path / "bad.yaml")


def test_a_key_given_twice_in_a_space_file_is_refused_not_overwritten(tmp_path):
    # Both parsers keep the later of two equal keys silently: the first range would never be searched.
    (tmp_path / "dup.yaml").write_text("lr: {loguniform: [1.0e-4, 1.0e-1]}\nbatch_size: 128\nlr: {choice: [0.5]}\n")
    with pytest.raises(ValueError, match=r"dup.yaml: the key `lr` appears twice in one mapping \(lines 1 and 3\)"):
        load_space(tmp_path / "dup.yaml")
    (tmp_path / "dup.json").write_text('{"lr": {"loguniform": [1e-4, 0.1]}, "lr": {"choice": [0.5]}}')
    with pytest.raises(ValueError, match="dup.json: the key `lr` appears twice"):
        load_space(tmp_path / "dup.json")
    (tmp_path / "ok.yaml").write_text("lr: {loguniform: [1e-4, 1e-1]}\nmomentum: {uniform: [0.5, 0.9]}\n")
    assert load_space(tmp_path / "ok.yaml")["lr"].args == (1e-4, 1e-1)  # 1e-4 still read as a number


def test_starting_point_outside_the_space_rejected():
    space = _space(lr={"loguniform": [1e-3, 1e-2]})
    bad = Space(space.dims, points=({"lr": 0.5},))
    with pytest.raises(ValueError, match="`lr`.*starting point"):
        _check(bad, search="hyperopt")


def test_a_starting_point_at_a_randints_excluded_high_is_rejected():
    # randint's high is excluded: hyperopt's index for it would be out of range mid-sweep.
    space = _space(num_blocks={"randint": [2, 4]})
    _check(Space(space.dims, points=({"num_blocks": 3},)), search="hyperopt")
    for value in (4, 2.5):
        with pytest.raises(ValueError, match="`num_blocks`.*starting point"):
            _check(Space(space.dims, points=({"num_blocks": value},)), search="hyperopt")


def test_a_starting_point_may_not_set_an_entry_its_condition_turns_off():
    space = _space(optimizer={"choice": ["sgd", "adamw"]},
                   momentum={"uniform": [0.5, 0.99], "when": {"optimizer": "sgd"}})
    _check(Space(space.dims, points=({"optimizer": "adamw"},)), search="hyperopt")
    with pytest.raises(ValueError, match="`momentum` only when optimizer is one of \\['sgd'\\].*Drop `momentum`"):
        _check(Space(space.dims, points=({"optimizer": "adamw", "momentum": 0.9},)), search="hyperopt")


def test_a_space_whose_shallowest_net_would_pool_less_than_its_pool_every_is_refused():
    # pool_every <= num_blocks is a rule on two keys: num_blocks 1 with pool_every 2 would reach a trial.
    with pytest.raises(ValueError, match=r"`num_blocks` and `pool_every` can combine into .*'num_blocks': 1, "
                                         r"'pool_every': 2.*Narrow one of these entries"):
        _check(_space(num_blocks={"grid": [1, 3]}, pool_every={"grid": [1, 2]}), search="grid")
    _check(_space(num_blocks={"grid": [2, 3]}, pool_every={"grid": [1, 2]}), search="grid")
    _check(_space(num_blocks={"grid": [1, 3]}, pool_every={"grid": [1, 2]}, pool="none"), search="grid")


@pytest.mark.parametrize("entries, words", [
    # Found by review: each one passed the checks and failed inside a trial (or crashed the sweep).
    (dict(num_blocks={"grid": [3, 5]}, pool_size={"grid": [2, 3]}, filters=4, convs_per_block=1, head_layers=0),
     r"`num_blocks` and `pool_size` can combine into \{'num_blocks': 5, 'pool_size': 3\}.*shrink"),
    (dict(kernel_size={"choice": [2, 3]}, padding={"choice": [1, 2]}),
     r"`kernel_size` and `padding` can combine into \{'kernel_size': 2, 'padding': 2\}.*padding < kernel_size"),
    (dict(optimizer={"choice": ["sgd", "adam"]}, nesterov={"choice": [True, False]},
          momentum={"uniform": [0.0, 0.9], "when": {"optimizer": "sgd"}}), r"`momentum`.*nesterov"),
    (dict(warmup_epochs={"uniform": [0.0, 3.0]}, epochs={"randint": [2, 6]}), r"`warmup_epochs` and `epochs`"),
    (dict(batch_norm={"choice": [True, False]}, batch_size={"choice": [1, 64]}), r"`batch_size`.*two images"),
])
def test_entries_valid_alone_but_not_together_are_refused_before_ray(entries, words):
    with pytest.raises(ValueError, match=words):
        _check(_space(**entries), search="grid" if any("grid" in str(v) for v in entries.values()) else "random")


def test_a_conditional_entry_is_combined_only_where_its_parent_turns_it_on():
    # momentum 0 is fine for adam (nesterov is sgd-only), and the entry is off for adam anyway.
    _check(_space(optimizer={"choice": ["sgd", "adam"]}, nesterov=False,
                  momentum={"uniform": [0.0, 0.9], "when": {"optimizer": "sgd"}}))
    # A geometry group whose every combination builds a net is accepted.
    _check(_space(num_blocks={"choice": [1, 2]}, kernel_size={"choice": [3, 5]}, padding={"choice": [1, 2]},
                  pool={"choice": ["max", "none"]}, pool_size={"randint": [2, 4]}))


def test_float_q_bounds_must_be_multiples_of_q_for_rays_samplers():
    with pytest.raises(ValueError, match=r"`head_dropout`.*multiples of q \(0.1\).*\[0.1, 0.4, 0.1\]"):
        _check(_space(head_dropout={"quniform": [0.05, 0.45, 0.1]}), search="hyperopt")
    _check(_space(head_dropout={"quniform": [0.0, 0.5, 0.1]}))
    _check(_space(lr={"qloguniform": [1e-3, 1e-1, 1e-3]}))
    _check(_space(filters={"quniform": [20, 100, 16]}))  # integers: Ray's qrandint takes any bounds
