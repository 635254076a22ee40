"""Real short trainings on the shared CIFAR-10 subset, made to overfit and to underfit, are
diagnosed as such. The two trials form one small "sweep" so the relative rule (train_acc versus
the sweep's best at the same epoch) is exercised on real curves too."""
from __future__ import annotations

import time

import pytest

from analysis import diagnose, tidy
from trainables import metrics as m
from trainables.cifar import train_trial
from trainables.data import CifarArrays, load_cifar10
from trainables.reporting import MemoryReporter

TRAIN_IMAGES = 600  # a few hundred images: a biggish net memorises them within a few epochs
EPOCHS = 10

# Biggish for 600 images (a flatten head: ~1M weights), nothing that regularises: no augmentation,
# dropout, weight decay or batch norm (with it, Adam kept val_loss flat while train_acc hit 1.0, which
# shows only the gap form), and a constant learning rate (a decaying one flattens the val_loss rise).
OVERFIT = dict(filters=32, num_blocks=2, convs_per_block=1, head_pooling="flatten", head_layers=1, head_units=256, batch_norm=False, augment=False,
               weight_decay=0.0, head_dropout=0.0, optimizer="adam", lr=1e-3, schedule="constant",
               batch_size=32, epochs=EPOCHS, val_fraction=0.3, seed=0)
# Tiny net, tiny learning rate: it cannot leave chance level in ten epochs.
UNDERFIT = dict(filters=4, num_blocks=1, convs_per_block=1, head_layers=0, augment=False, optimizer="sgd",
                lr=1e-5, momentum=0.0, nesterov=False, schedule="constant", batch_size=32, epochs=EPOCHS,
                val_fraction=0.3, seed=0)


@pytest.fixture(scope="module")
def small_data(cifar_dir) -> CifarArrays:
    full = load_cifar10(cifar_dir)
    return CifarArrays(full.train_images[:TRAIN_IMAGES], full.train_labels[:TRAIN_IMAGES],
                       full.test_images[:100], full.test_labels[:100], full.classes)


def _history(config: dict, data: CifarArrays, trial_id: str) -> list[dict]:
    reporter = MemoryReporter()
    train_trial(config, data=data, reporter=reporter, device="cpu", num_threads=1)
    flat = {f"{m.CONFIG_PREFIX}{k}": v for k, v in config.items()}
    return [{**row, m.TRIAL_ID: trial_id, **flat} for row in reporter.history]


@pytest.mark.slow
def test_real_overfitting_and_underfitting_are_diagnosed(small_data):
    start = time.monotonic()
    records = _history(OVERFIT, small_data, "overfit") + _history(UNDERFIT, small_data, "underfit")
    elapsed = time.monotonic() - start
    frame = tidy(records)
    diagnoses = diagnose(frame).set_index(m.TRIAL_ID)
    curves = frame.pivot_table(index=m.EPOCH, columns=m.TRIAL_ID, values=[m.TRAIN_ACC, m.VAL_LOSS]).round(3)
    context = f"\n{curves}\n{diagnoses[['diagnosis', 'evidence']].to_string()}\n({elapsed:.0f} s)"
    assert diagnoses.loc["overfit", m.TAG_DIAGNOSIS] == m.OVERFITTING, context
    assert diagnoses.loc["underfit", m.TAG_DIAGNOSIS] == m.UNDERFITTING, context
    over = diagnoses.loc["overfit"]
    # The verdict's epoch is where validation loss bottomed out (its running median, so within an
    # epoch of the raw minimum), the advice stops where val_acc peaked and names the config.
    assert abs(over["diagnosis_epoch"] - over["min_val_loss_epoch"]) <= 1, context
    peaked_before_the_end = over["best_val_acc_epoch"] < EPOCHS  # else there is no earlier epoch to stop at
    assert (f"val_acc peaked at epoch {int(over['best_val_acc_epoch'])} of {EPOCHS}" in over["advice"]) == \
        peaked_before_the_end, context
    assert "head_dropout is 0 -> try 0.2-0.5" in over["advice"]
    assert "weight_decay 0 -> try 5e-4" in over["advice"]
    assert "augment is off" in over["advice"]
    assert "lr 1e-05 is low" in diagnoses.loc["underfit", "advice"]
