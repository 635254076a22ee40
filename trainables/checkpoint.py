"""One trial's checkpoint on disk: ``checkpoint.pt`` (state) and ``config.json`` (the flat config).

``checkpoint.pt`` holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs when a checkpoint is read):

- ``model``, ``optimizer``, ``scheduler``: their ``state_dict()``s;
- ``rng``: ``torch_cpu`` (and ``torch_cuda``, one tensor per GPU, or ``torch_mps``) global RNG
  states (weight init and dropout draw from these), and
  ``generator``, the trial's own generator that drives shuffling and augmentation, with
  ``generator_device``, the kind of device it draws on. These are
  restored, not re-seeded, so a resumed trial draws exactly the batches it would have drawn;
- ``epoch``: epochs completed; ``finished``: True once patience stopped the trial; ``progress``:
  the best-so-far and patience state; ``metrics``: the last report; ``config``: the flat
  TrialConfig as a JSON string.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state a training epoch draws from, as CPU tensors."""
    states: dict[str, Any] = {"torch_cpu": torch.get_rng_state(), "generator": generator.get_state(),
                              "generator_device": generator.device.type}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        states["torch_mps"] = torch.mps.get_rng_state()
    return states


def restore_rng(states: Mapping[str, Any], generator: torch.Generator) -> None:
    saved = states.get("generator_device", generator.device.type)  # absent in older checkpoints
    if saved != generator.device.type:
        # A CUDA generator's state (seed, offset) has another format than a CPU one's: set_state
        # would fail with an opaque error, and another device would draw other batches anyway.
        raise ValueError(f"The checkpoint was trained on {saved}, but this run uses {generator.device.type}: "
                         f"a trial resumes on the kind of device it started on, so its shuffling and "
                         f"augmentation continue exactly. Resume with --device {saved} (or, in a sweep, "
                         "the same --gpus-per-trial), or start a fresh run.")
    torch.set_rng_state(states["torch_cpu"])
    generator.set_state(states["generator"])
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])
    if "torch_mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["torch_mps"])


def write_checkpoint(directory: str | Path, state: Mapping[str, Any], *, config: Mapping[str, Any]) -> None:
    """Write ``state`` plus the flat ``config`` (as JSON, both inside and beside the .pt file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(dict(config), sort_keys=True)
    torch.save({**state, "config": config_json}, directory / CHECKPOINT_FILE)
    (directory / CONFIG_FILE).write_text(config_json + "\n")


def read_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Load ``checkpoint.pt`` onto the CPU; ``config`` comes back as a flat dict."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise ValueError(f"No checkpoint at {path}: the directory must hold {CHECKPOINT_FILE}. "
                         "Pass a directory written by trainables.cifar (a trial's checkpoint folder).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["config"] = json.loads(state["config"])
    except Exception as exc:  # torch raises pickle's, zipfile's or its own errors for a damaged file
        # Only the error's type: torch's own text for a damaged file suggests weights_only=False, which
        # would unpickle arbitrary code and not mend the file.
        raise ValueError(f"The checkpoint {path} cannot be read ({type(exc).__name__}): it is damaged or "
                         "was not written by trainables.cifar. Restore it from a copy, or start a fresh run in "
                         "another --output.") from exc
    return state


def read_config(directory: str | Path) -> dict[str, Any]:
    """The flat config saved beside a checkpoint (no torch needed to inspect a trial)."""
    return json.loads((Path(directory) / CONFIG_FILE).read_text())


def check_same_config(saved: Mapping[str, Any], current: Mapping[str, Any], *, where: str) -> None:
    """A resumed trial must run the config it started with: the split, the schedule's length
    and the RNG streams all depend on it. Raises ValueError naming every differing key."""
    changed = sorted(k for k in {*saved, *current} if saved.get(k) != current.get(k))
    if changed:
        diffs = ", ".join(f"{k}={saved.get(k)!r} in the checkpoint vs {current.get(k)!r} now" for k in changed)
        raise ValueError(f"Cannot resume from {where}: its config differs ({diffs}). Resume with the "
                         f"checkpoint's {CONFIG_FILE}, or start a fresh run.")
