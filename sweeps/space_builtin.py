"""The built-in search spaces (default, smoke, grid), each range with its reason, and
``resolve_space``: the space a sweep will use, from a file or built in, validated."""
from __future__ import annotations

import dataclasses

from sweeps.space import Dim, Space, check_repeats, load_space, validate_space


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


def resolve_space(*, search: str, smoke: bool, path: str | None, max_epochs: int, seed: int,
                  num_samples: int = 1) -> Space:
    """The space a sweep will use, validated: a user file or the built-in one, plus epochs/seed."""
    space = load_space(path) if path is not None else builtin_space(search=search, smoke=smoke)
    if search != "hyperopt":  # random and grid search are the unguided baselines: no starting points
        space = dataclasses.replace(space, points=())
    space = space.with_const("epochs", max_epochs, "--max-epochs: the schedule spans the longest a trial may run")
    space = space.with_const("seed", seed, "--seed: every trial shares it, so trials differ only in hyperparameters")
    validate_space(space, search=search, max_epochs=max_epochs)
    check_repeats(space, search=search, num_samples=num_samples)
    return space
