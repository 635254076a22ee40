"""Checkpoint files and RNG state (trainables/checkpoint.py)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from trainables.checkpoint import (CHECKPOINT_FILE, CONFIG_FILE, capture_rng, check_same_config, read_checkpoint,
                                   read_config, restore_rng, write_checkpoint)
from trainables.config import TrialConfig


def test_round_trip_loads_with_weights_only(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    config = TrialConfig().to_dict()
    write_checkpoint(tmp_path, {"model": model.state_dict(), "epoch": 4, "progress": {"best_val_loss": math.inf}},
                     config=config)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    assert json.loads((tmp_path / CONFIG_FILE).read_text()) == config
    state = read_checkpoint(tmp_path)  # torch.load(weights_only=True) inside
    assert state["config"] == config == read_config(tmp_path)
    assert state["epoch"] == 4 and state["progress"]["best_val_loss"] == math.inf
    assert torch.equal(state["model"]["weight"], model.weight.detach())


def test_restored_rng_repeats_the_same_draws() -> None:
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(5)
    saved = capture_rng(gen)
    first = (torch.rand(4), torch.randperm(10, generator=gen))
    torch.manual_seed(99)
    gen.manual_seed(99)
    restore_rng(saved, gen)
    again = (torch.rand(4), torch.randperm(10, generator=gen))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_missing_checkpoint_names_the_path_and_fix(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"No checkpoint at .*checkpoint\.pt.*trainables\.cifar"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "no config"])
def test_a_damaged_checkpoint_is_a_clear_error_not_a_traceback(tmp_path, damage: str) -> None:
    write_checkpoint(tmp_path, {"epoch": 1}, config=TrialConfig().to_dict())
    if damage == "garbage":
        (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a torch file")
    else:
        torch.save({"epoch": 1}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match=r"checkpoint\.pt cannot be read .*damaged.*start a fresh run"):
        read_checkpoint(tmp_path)


def test_resume_with_a_different_config_names_the_key() -> None:
    saved = TrialConfig().to_dict()
    check_same_config(saved, dict(saved), where="x")
    with pytest.raises(ValueError, match=r"lr=0\.05 in the checkpoint vs 0\.1 now"):
        check_same_config(saved, {**saved, "lr": 0.1}, where="x")


def test_a_checkpoint_resumes_only_on_the_kind_of_device_it_trained_on() -> None:
    gen = torch.Generator().manual_seed(3)
    saved = capture_rng(gen)
    assert saved["generator_device"] == "cpu"
    # A CUDA generator's state has another format: without this check set_state fails opaquely.
    with pytest.raises(ValueError, match="trained on cuda, but this run uses cpu.*--device cuda"):
        restore_rng({**saved, "generator_device": "cuda"}, gen)
    older = {k: v for k, v in saved.items() if k != "generator_device"}  # checkpoints before the key
    restore_rng(older, gen)
