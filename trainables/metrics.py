"""Metric names, their optimisation modes and trial end states: the one place they are spelled.

Imported by trainables, sweeps, analysis and tests alike. This module imports nothing, so
``analysis`` can use it without pulling in torch (analysis never imports the rest of
``trainables``).
"""
from __future__ import annotations

# Reported once per epoch by the trainable (so Ray's training_iteration == epoch).
EPOCH = "epoch"
# train_*: means over the epoch's training steps, as trained: augmented images, dropout on, the
# weights moving between steps (so they lag the end-of-epoch model a little). train_loss is plain
# cross-entropy (never label-smoothed, never with the L1 term), on val_loss's scale.
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
# val_*: the end-of-epoch model in eval mode on the held-out split, plain cross-entropy.
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"
LR = "lr"
EPOCH_TIME_S = "epoch_time_s"  # wall seconds of the whole epoch (train + validation)
TRAIN_TIME_S = "train_time_s"  # wall seconds inside training steps only, this epoch
IMAGES_PER_S = "images_per_s"  # training images per second over the epoch's training steps
NUM_PARAMS = "num_params"  # trainable parameter count (constant over a trial)
DIVERGED = "diverged"  # 1 when a non-finite or exploding loss ended the trial
EARLY_STOPPED = "early_stopped"  # 1 when the trainable's own patience rule ended the trial
BEST_VAL_ACC = "best_val_acc"  # best val_acc so far in this trial
BEST_EPOCH = "best_epoch"  # epoch of the lowest validation loss so far

# Final evaluation of a chosen config; the test split is read only for these.
TEST_LOSS = "test_loss"
TEST_ACC = "test_acc"

# Names Ray Tune adds to every result.
TRIAL_ID = "trial_id"
TRAINING_ITERATION = "training_iteration"
CONFIG_PREFIX = "config/"  # Ray flattens a trial's config into "config/<key>" columns

# What a sweep optimises, and in which direction.
OBJECTIVE = VAL_ACC
OBJECTIVE_MODE = "max"
MODES = {
    TRAIN_LOSS: "min",
    VAL_LOSS: "min",
    TRAIN_ACC: "max",
    VAL_ACC: "max",
    TEST_ACC: "max",
    TEST_LOSS: "min",
}

# How a trial ended (MLflow tag END_STATE_TAG and the sweep summary use these).
END_STATE_TAG = "end_state"
COMPLETED = "completed"
STOPPED_EARLY = "stopped_early"  # stopped by the scheduler (ASHA/Hyperband) or by patience
DIVERGED_STATE = "diverged"
ERRORED = "errored"
END_STATES = (COMPLETED, STOPPED_EARLY, DIVERGED_STATE, ERRORED)
# A sweep summary's label for a trial an interrupt (Ctrl+C) cut off mid-training: --resume runs it on.
# Not an end state: MLflow marks such a run KILLED without an end_state tag, and a resume ends it.
INTERRUPTED = "interrupted"
# The report's label for a trial with no recorded end whose sweep still lists it as running, pending
# or paused: the sweep is still going, or its driver died before it could record an interrupt.
UNFINISHED = "unfinished"
NOT_ENDED = (INTERRUPTED, UNFINISHED)  # such a trial's curves are a part of what it will run

# Per-epoch curves the analysis reads (one row per trial-epoch).
CURVE_METRICS = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, LR)

# MLflow conventions shared by sweeps (which writes runs) and analysis (which reads them).
TAG_ROLE = "sweep.role"  # "parent" on a sweep's run, "trial" on each trial's child run
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
TAG_TRIAL_ID = "ray.trial_id"  # Ray Tune's trial id, on each child run
TAG_SWEEP_NAME = "sweep.name"  # the Ray experiment name, on parent and children
TAG_ERROR = "error"  # on an errored trial's child run: the exception that ended it, one line
TAG_SEARCH = "sweep.search"
TAG_SCHEDULER = "sweep.scheduler"
TAG_DIAGNOSIS = "diagnosis"  # written back by analysis: overfitting, underfitting, ...
TAG_DIAGNOSIS_EVIDENCE = "diagnosis.evidence"  # the numbers behind the verdict, one line
TAG_DIAGNOSIS_EPOCH = "diagnosis.epoch"  # the epoch where the verdict shows
TAG_DIAGNOSIS_ADVICE = "diagnosis.advice"  # what to change, specific to the trial's config

# Values of TAG_DIAGNOSIS (filter in the MLflow UI with `tags.diagnosis = "overfitting"`).
OVERFITTING = "overfitting"
UNDERFITTING = "underfitting"
DIVERGED_VERDICT = "diverged"
GOOD_FIT = "good_fit"
INCONCLUSIVE = "inconclusive"
VERDICTS = (OVERFITTING, UNDERFITTING, DIVERGED_VERDICT, GOOD_FIT, INCONCLUSIVE)
