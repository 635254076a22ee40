"""Verdicts on synthetic curves of known shape, the edge cases, thresholds and advice."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from analysis import DiagnosisThresholds, diagnose, diagnose_trial, thresholds_from_json, tidy
from analysis.advice import CONFIG_KEYS_USED
from trainables import metrics as m

E = np.arange(1, 21, dtype=float)


def records(trial_id, tl, ta, vl, va, **config):
    return [{m.TRIAL_ID: trial_id, m.EPOCH: i + 1, m.TRAIN_LOSS: tl[i], m.TRAIN_ACC: ta[i], m.VAL_LOSS: vl[i],
             m.VAL_ACC: va[i], m.LR: 0.05, **{f"{m.CONFIG_PREFIX}{k}": v for k, v in config.items()}}
            for i in range(len(tl))]


def overfit(trial_id="over", **config):
    tl = 2.0 * np.exp(-E / 4) + 0.02
    vl = 1.2 + 0.01 * (E - 6) ** 2
    return records(trial_id, tl, 1 - 0.9 * np.exp(-E / 4), vl, np.minimum(0.55, 0.2 + 0.06 * E), **config)


def good(trial_id="good", noise=0.0, seed=0, **config):
    rng = np.random.default_rng(seed)
    tl = 1.8 * np.exp(-E / 6) + 0.6
    ta = 0.8 - 0.7 * np.exp(-E / 6)
    jitter = lambda: 1 + noise * rng.standard_normal(len(E))  # noqa: E731
    return records(trial_id, tl * jitter(), ta, (tl + 0.05) * jitter(), (ta - 0.03) * jitter(), **config)


def underfit(trial_id="under", **config):
    tl = 2.3 - 0.002 * E
    return records(trial_id, tl, 0.1 + 0.002 * E, tl, 0.1 + 0.002 * E, **config)


def verdicts(recs, **kw):
    d = diagnose(tidy(recs), **kw)
    return dict(zip(d[m.TRIAL_ID], d[m.TAG_DIAGNOSIS])), d.set_index(m.TRIAL_ID)


def test_each_verdict_on_curves_of_known_shape():
    diverged = records("div", [2.0, 1.5, 1.2, math.nan], [0.3, 0.4, 0.5, math.nan], [2.0, 1.5, 1.2, math.nan],
                       [0.3, 0.4, 0.5, math.nan], lr=1.0)
    got, table = verdicts(overfit() + good() + underfit() + diverged)
    assert got == {"over": m.OVERFITTING, "good": m.GOOD_FIT, "under": m.UNDERFITTING, "div": m.DIVERGED_VERDICT}
    assert table.loc["over", "diagnosis_epoch"] == 6  # the raw val_loss minimum: where to stop
    assert table.loc["over", "signals"] == "val_loss_turn gap"
    assert set(table.loc["under", "signals"].split()) == {"near_chance", "behind_best", "high_loss", "plateau"}
    assert "rose" in table.loc["over", "evidence"] and "epoch 6" in table.loc["over", "evidence"]
    assert table.loc["div", "diagnosis_epoch"] == 4 and "nan" in table.loc["div", "evidence"]


def test_a_slow_learner_still_far_from_fitting_is_underfitting_not_a_good_fit():
    # lr far too low: train_loss still falls but ends well above 0.6 x ln 10 (no plateau, not near chance).
    tl = 2.25 - 0.024 * E
    ta = 0.2 + 0.0075 * E
    got, table = verdicts(good() + records("slow", tl, ta, tl + 0.02, ta - 0.01, lr=1e-4))
    signals = set(table.loc["slow", "signals"].split())
    assert got["slow"] == m.UNDERFITTING and "high_loss" in signals and not signals & {"plateau", "near_chance"}
    alone = verdicts(records("slow", tl, ta, tl + 0.02, ta - 0.01, lr=1e-4))  # no other trial to be behind
    assert alone[0]["slow"] == m.UNDERFITTING and alone[1].loc["slow", "signals"] == "high_loss"
    assert "are still above 1.38" in table.loc["slow", "evidence"] and "lr 0.0001" in table.loc["slow", "advice"]


def test_the_best_validating_trial_is_not_behind_a_memorising_one():
    # A heavily regularised trial trains at 0.48 (dropout on, augmented batches) but validates best;
    # another memorises the training set (train_acc 0.99) and validates worse.
    reg_ta, reg_va = 0.3 + 0.009 * E, 0.35 + 0.0135 * E
    mem_ta, mem_va = np.minimum(0.99, 0.4 + 0.03 * E), np.full_like(E, 0.5)
    # Its train_loss (dropout on, augmented batches) stays above 0.6 x ln 10, as 0.48 accuracy implies;
    # on the clean validation images its loss is far lower.
    reg_loss = 1.9 - 0.02 * E
    got, table = verdicts(records("reg", reg_loss, reg_ta, 1.5 - 0.02 * E, reg_va, head_dropout=0.5)
                          + records("mem", 2.0 * np.exp(-E / 5), mem_ta, 1.5 + 0.02 * E, mem_va))
    assert not {"behind_best", "high_loss"} & set(table.loc["reg", "signals"].split()) and got["reg"] != m.UNDERFITTING
    assert got["mem"] == m.OVERFITTING


def test_accuracy_gap_alone_is_overfitting():
    ta = np.minimum(1.0, 0.3 + 0.05 * E)
    va = np.full_like(E, 0.4)
    loss = 2.0 * np.exp(-E / 5)
    got, table = verdicts(records("gap", loss, ta, loss + 0.1, va))
    assert got["gap"] == m.OVERFITTING
    assert "gap" in table.loc["gap", "evidence"]


def test_exploding_loss_and_the_trainables_flag_are_diverged():
    tl = np.r_[2.0, 1.0, 0.8, 0.7, 6.5, 7.0]
    got, table = verdicts(records("boom", tl, [0.3] * 6, tl, [0.3] * 6))
    assert got["boom"] == m.DIVERGED_VERDICT and table.loc["boom", "diagnosis_epoch"] == 5
    flagged = records("flag", [2.0] * 6, [0.3] * 6, [2.0] * 6, [0.3] * 6)
    flagged[-1][m.DIVERGED] = 1.0
    assert verdicts(flagged)[0]["flag"] == m.DIVERGED_VERDICT


def test_one_epoch_and_early_stopped_trials_are_inconclusive_not_underfitting():
    one = records("one", [2.3], [0.1], [2.3], [0.1], epochs=20)
    asha = records("asha", [2.3, 2.2], [0.12, 0.15], [2.3, 2.25], [0.12, 0.14], epochs=20)
    got, table = verdicts(one + asha + good())
    assert got["one"] == m.INCONCLUSIVE and got["asha"] == m.INCONCLUSIVE
    assert table.loc["asha", m.END_STATE_TAG] == m.STOPPED_EARLY
    assert "2 epoch" in table.loc["asha", "evidence"]


def test_early_stopped_trial_is_compared_with_the_best_at_the_same_epoch():
    # Stopped at epoch 6 but as good as the best trial was at epoch 6: not underfitting.
    best = good("best", epochs=20)
    stopped = [r for r in good("stopped", epochs=20) if r[m.EPOCH] <= 6]
    got, table = verdicts(best + stopped)
    assert table.loc["stopped", m.END_STATE_TAG] == m.STOPPED_EARLY
    assert got["stopped"] == m.GOOD_FIT


def test_flat_curves():
    flat_chance = records("chance", [2.303] * 8, [0.1] * 8, [2.303] * 8, [0.1] * 8)
    flat_good = records("flat_good", [0.5] * 8, [0.82] * 8, [0.55] * 8, [0.8] * 8)
    got, table = verdicts(flat_chance + flat_good)
    assert got == {"chance": m.UNDERFITTING, "flat_good": m.GOOD_FIT}
    assert "plateau" in table.loc["chance", "evidence"] and "chance" in table.loc["chance", "evidence"]


@pytest.mark.parametrize("seed", range(5))
def test_noisy_good_fit_is_not_misjudged(seed):
    assert verdicts(good(noise=0.04, seed=seed))[0]["good"] == m.GOOD_FIT


def test_single_spike_in_val_loss_is_smoothed_away():
    recs = good()
    recs[-3][m.VAL_LOSS] *= 1.5  # one bad epoch near the end
    assert verdicts(recs)[0]["good"] == m.GOOD_FIT


def test_advice_is_specific_to_the_config():
    config = dict(head_dropout=0.0, spatial_dropout=0.1, weight_decay=0.0, max_norm=0.0, augment=False,
                  filters=128, early_stopping_patience=0, epochs=20)
    advice = verdicts(overfit(**config))[1].loc["over", "advice"]
    for expected in ("val_acc peaked at epoch 6 of 20 (0.55) -> stop there", "early_stopping_patience is 0 -> try 3-5",
                     "head_dropout is 0 -> try 0.2-0.5", "spatial_dropout is 0.1 -> try 0.2-0.5",
                     "weight_decay 0 -> try 5e-4", "max_norm is off (0) -> try 3-4", "augment is off",
                     "filters 128 -> try 64"):
        assert expected in advice
    under = verdicts(underfit(lr=1e-5, optimizer="sgd", filters=4, head_dropout=0.6))[1].loc["under", "advice"]
    for expected in ("lr 1e-05 is low for sgd -> try 0.0001", "head_dropout 0.6 -> try <= 0.3"):
        assert expected in under
    # A larger net only once the lr is plausible: with one far off, the same net may fit fine.
    assert "filters" not in under
    assert "filters 4 -> try 32-64" in verdicts(underfit(lr=0.05, filters=4))[1].loc["under", "advice"]


def test_advice_config_keys_exist_in_the_trial_config():
    from trainables.config import CONFIG_KEYS

    assert set(CONFIG_KEYS_USED) <= set(CONFIG_KEYS)


def test_thresholds_change_the_verdict():
    recs = overfit()
    assert verdicts(recs)[0]["over"] == m.OVERFITTING
    lenient = DiagnosisThresholds(val_loss_rise=2.0, gap_large=0.9)
    assert verdicts(recs, thresholds=lenient)[0]["over"] == m.GOOD_FIT
    assert verdicts(recs, thresholds=DiagnosisThresholds(min_epochs=25))[0]["over"] == m.INCONCLUSIVE


@pytest.mark.parametrize("changes, error, words", [
    ({"min_epochs": 1}, ValueError, "min_epochs >= 2"),
    ({"min_epochs": 3.5}, TypeError, "must be an int"),
    ({"val_loss_rise": 0.0}, ValueError, "must be > 0"),
    ({"gap_large": 1.5}, ValueError, "must be in (0, 1)"),
    ({"gap_large": float("nan")}, ValueError, "must be finite"),
    ({"explode_ratio": 1.0}, ValueError, "must be > 1"),
    ({"smoothing_window": 9, "min_epochs": 5}, ValueError, "smoothing_window"),
    ({"fraction_of_best": True}, TypeError, "must be a number"),
])
def test_thresholds_are_validated(changes, error, words):
    with pytest.raises(error, match=re.escape(words)):
        DiagnosisThresholds(**changes)


def test_thresholds_from_json(tmp_path):
    assert thresholds_from_json('{"min_epochs": 6}').min_epochs == 6
    path = tmp_path / "t.json"
    path.write_text('{"gap_large": 0.3}')
    assert thresholds_from_json(path).gap_large == 0.3
    with pytest.raises(ValueError, match="Unknown threshold"):
        thresholds_from_json('{"min_epoch": 6}')
    with pytest.raises(ValueError, match="neither a JSON object nor an existing file"):
        thresholds_from_json(tmp_path / "missing.json")


def test_diagnose_trial_needs_the_curves():
    frame = tidy(good()).drop(columns=[m.VAL_LOSS])
    with pytest.raises(ValueError, match="val_loss"):
        diagnose_trial(frame)


def test_advice_for_good_fit_diverged_and_inconclusive():
    table = verdicts(good(epochs=20) + records("div", [2.0, math.inf], [0.2, 0.1], [2.0, 2.0], [0.2, 0.1], lr=0.3,
                                              warmup_epochs=0.0, batch_norm=False)
                     + records("one", [2.3], [0.1], [2.3], [0.1]))[1]
    assert "val_loss was still at its minimum at epoch 20 of 20 -> more epochs" in table.loc["good", "advice"]
    for expected in ("lr 0.3 -> try 0.1-0.03", "warmup_epochs is 0 -> try 1-2", "batch_norm is off -> turn it on"):
        assert expected in table.loc["div", "advice"]
    assert "Too few epochs" in table.loc["one", "advice"]
    cyclic = verdicts(records("cyc", [2.0, math.inf], [0.2, 0.1], [2.0, 2.0], [0.2, 0.1], lr=0.3,
                              warmup_epochs=0.0, schedule="cyclic"))[1]
    # cyclic ignores warmup_epochs (its first half cycle is its ramp): no tip that would change nothing.
    assert "lr 0.3 -> try" in cyclic.loc["cyc", "advice"] and "warmup" not in cyclic.loc["cyc", "advice"]
    turned = overfit()  # val_loss turned at epoch 6: a good fit would say where to stop, not "more epochs"
    assert "val_acc peaked at epoch 6 of 20" in verdicts(turned)[1].loc["over", "advice"]


def test_advice_reads_the_trials_optimizer_schedule_and_patience():
    from analysis.advice import advise

    facts = {"last_epoch": 8.0}
    # An Adam-type lr far above ~1e-3 thrashes: lower it, never raise it; AdamW's usual decay is no excess.
    adamw = " ".join(advise(m.UNDERFITTING, config={"optimizer": "adamw", "lr": 0.3, "weight_decay": 0.01},
                            facts=facts, end_state=m.COMPLETED))
    assert "lr 0.3 is high for adamw" in adamw and "try 0.03 (/10)" in adamw and "x3" not in adamw
    assert "weight_decay" not in adamw
    assert "weight_decay 0.01 -> try 5e-4" in " ".join(advise(
        m.UNDERFITTING, config={"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.01}, facts=facts, end_state=m.COMPLETED))
    # onecycle's warmup_epochs 0 is its own 30% ramp: 1-2 epochs would shorten it.
    for schedule, tipped in (("onecycle", False), ("cyclic", False), ("cosine", True)):
        tips = advise(m.DIVERGED_VERDICT, config={"lr": 0.4, "schedule": schedule, "warmup_epochs": 0.0}, facts=facts,
                      end_state=m.DIVERGED_STATE)
        assert any("warmup_epochs is 0" in t for t in tips) == tipped, schedule
    # Stopped by its own patience rule: more epochs will not come by themselves.
    patience = " ".join(advise(m.UNDERFITTING, config={"lr": 0.05, "early_stopping_patience": 3, "epochs": 20},
                               facts={**facts, "patience_stopped": 1.0}, end_state=m.STOPPED_EARLY))
    assert "Its own patience rule stopped it at epoch 8 (early_stopping_patience 3)" in patience
    # Too short to judge: the scheduler's grace period is the lever only where a scheduler stopped it.
    assert "grace_period" in advise(m.INCONCLUSIVE, config={}, facts=facts, end_state=m.STOPPED_EARLY)[0]
    assert "grace_period" not in advise(m.INCONCLUSIVE, config={}, facts=facts, end_state=m.COMPLETED)[0]
    short = advise(m.INCONCLUSIVE, config={"early_stopping_patience": 2}, facts={**facts, "patience_stopped": 1.0},
                   end_state=m.STOPPED_EARLY)[0]
    assert "its own patience rule stopped it (early_stopping_patience 2)" in short and "grace_period" not in short


def test_one_noisy_last_epoch_or_a_constant_gap_is_no_overfitting():
    e = np.arange(1, 13, dtype=float)
    tl = 2.0 * np.exp(-e / 4) + 0.3
    ta = 0.8 - 0.7 * np.exp(-e / 4)
    vl = np.maximum(1.0, 2.2 - 0.3 * e)
    spiked = vl.copy()
    spiked[-1] = 1.45  # one noisy epoch at the end; the same spike mid-run is ignored by the median
    got, table = verdicts(records("spike", tl, ta, spiked, ta - 0.05))
    assert got["spike"] == m.GOOD_FIT, table.loc["spike", "evidence"]
    # A real turn (rising over the last epochs) still is one.
    turned = vl.copy()
    turned[-3:] = [1.06, 1.12, 1.2]
    assert verdicts(records("turn", tl, ta, turned, ta - 0.05))[0]["turn"] == m.OVERFITTING
    # A large gap that is constant from epoch 2 on (epoch 1's train_acc is a running mean from random
    # weights), with val_loss falling to its last epoch: a property of the split, not a trend.
    const_ta = np.full_like(e, 0.6)
    const_ta[0] = 0.3
    gap_got, gap_table = verdicts(records("gap", tl, const_ta, 2.2 - 0.1 * e, np.full_like(e, 0.43)))
    assert "gap" not in gap_table.loc["gap", "signals"].split(), gap_table.loc["gap", "evidence"]


def test_errored_trials_say_why_and_one_without_epochs_still_gets_a_row():
    frame = tidy(overfit() + records("short", [2.3, 2.2], [0.1, 0.12], [2.3, 2.25], [0.1, 0.11]) + good(),
                 end_states={"over": m.ERRORED, "short": m.ERRORED, "good": m.COMPLETED})
    errors = {"over": "ValueError: late", "short": "RuntimeError: CUDA out of memory",
              "good": "ValueError: an error a retry got past", "none": "torch.OutOfMemoryError: CUDA out of memory"}
    table = diagnose(frame, errors=errors).set_index(m.TRIAL_ID)
    # An errored trial with curves keeps its verdict and curve advice, then the error and what to do about it.
    assert table.loc["over", "diagnosis"] == m.OVERFITTING and table.loc["over", "evidence"].endswith(
        "; errored: ValueError: late")
    assert "--resume" in table.loc["over", "advice"] and "val_acc peaked" in table.loc["over", "advice"]
    # Too few epochs because it errored: the advice is about the error, not "more epochs".
    assert table.loc["short", "advice"].startswith("It ended with an error") and "more epochs" not in table.loc[
        "short", "advice"]
    # A trial a retry brought to the end keeps the error file but not the blame.
    assert "errored" not in table.loc["good", "evidence"]
    # No epoch at all: a row of its own, inconclusive, with the error as its evidence.
    none = table.loc["none"]
    assert (none["diagnosis"], none["diagnosis_epoch"], none[m.END_STATE_TAG], none["n_epochs"]) == (
        m.INCONCLUSIVE, 0, m.ERRORED, 0)
    assert none["evidence"] == "errored before its first epoch: torch.OutOfMemoryError: CUDA out of memory"
    assert list(table.index) == ["good", "over", "short", "none"]


def test_the_gap_is_read_from_its_minimum_on_and_says_it_is_smoothed():
    # A gap that wobbled over the threshold at epoch 2, fell back, then grew: the overfitting shows
    # where it grew (epoch 8), not at the wobble before its minimum (found by review).
    gap = np.array([0.0, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5])
    n = len(gap)
    loss = np.linspace(1.5, 1.0, n)
    recs = records("wobble", loss, 0.4 + gap, loss + 0.05, np.full(n, 0.4))
    evidence = verdicts(recs)[1].loc["wobble", "evidence"]
    assert "running medians over 3 epochs" in evidence and "first >= 0.15 at epoch 8" in evidence


def test_an_lr_that_blew_the_net_up_to_chance_level_is_diverged_not_underfitting():
    # Found by review on a real sweep: SGD at lr 3 blew up in its first epoch (val_loss 10.5, 4.5x the
    # chance-level loss), then sat at chance for 13 epochs; it was called underfitting, "try lr 9".
    n = 14
    tl = np.r_[3.30, np.full(n - 1, 2.33)]
    vl = np.r_[10.5, np.full(n - 1, 2.31)]
    acc = np.full(n, 0.10)
    got, table = verdicts(records("blown", tl, acc, vl, acc, optimizer="sgd", lr=3.0, epochs=n) + good(epochs=20))
    assert got["blown"] == m.DIVERGED_VERDICT and table.loc["blown", "diagnosis_epoch"] == 1
    assert "val_loss 10.5 at epoch 1 is 4.56x chance-level loss" in table.loc["blown", "evidence"]
    assert "lr 3 -> try 1-0.3 (/3-/10)" in table.loc["blown", "advice"]
    # An early spike the trial recovered from is no divergence; nor is overfitting's large val_loss
    # with val_acc well above chance.
    recovered = [dict(r) for r in good("recovered", epochs=20)]
    recovered[0].update({m.VAL_LOSS: 9.0, m.VAL_ACC: 0.1})
    assert verdicts(recovered)[0]["recovered"] == m.GOOD_FIT
    # The validation loss exploding while val_acc falls to chance and stays there (review's
    # "val_explode"): not overfitting, whatever train_loss does.
    e = np.arange(1, 13, dtype=float)
    val_acc = np.r_[np.linspace(0.3, 0.5, 6), np.full(6, 0.1)]
    val_loss = np.r_[np.linspace(1.8, 1.5, 6), np.geomspace(10, 300, 6)]
    got, table = verdicts(records("val_explode", 2.0 * np.exp(-e / 4) + 0.1, np.linspace(0.3, 0.9, 12), val_loss,
                                  val_acc))
    assert got["val_explode"] == m.DIVERGED_VERDICT and table.loc["val_explode", "diagnosis_epoch"] == 7


def test_a_one_epoch_val_loss_dip_does_not_set_where_to_stop():
    # Found by review: val_loss 1.68, 1.37, 1.68 at epochs 1-3 (a dip), val_acc peaking at epoch 8.
    # Overfitting shows at the smoothed minimum, and the advice stops at val_acc's peak, the epoch whose
    # checkpoint a sweep keeps (it ranks them by val_acc), not at the dip.
    vl = np.array([1.68, 1.37, 1.68, 1.45, 1.35, 1.25, 1.2, 1.22, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8])
    va = np.array([0.4, 0.509, 0.45, 0.5, 0.53, 0.56, 0.58, 0.599, 0.59, 0.585, 0.58, 0.575, 0.57, 0.565])
    e = np.arange(1, 15, dtype=float)
    got, table = verdicts(records("dip", 2.0 * np.exp(-e / 3) + 0.05, np.minimum(1.0, 0.4 + 0.06 * e), vl, va,
                                  epochs=14))
    row = table.loc["dip"]
    assert got["dip"] == m.OVERFITTING and row["diagnosis_epoch"] == 7
    assert "val_loss (running median over 3 epochs) reached its minimum 1.22 at epoch 7" in row["evidence"]
    assert "val_acc peaked at epoch 8 of 14 (0.599) -> stop there" in row["advice"]


def test_advice_sees_the_defaults_the_trial_ran_with_and_its_optimizer():
    from analysis.advice import advise, effective_config

    # A sweep records only its space's entries; cutout, label smoothing and warmup were the trainable's
    # defaults (0), and are levers all the same.
    over = verdicts(overfit(lr=0.05))[1].loc["over", "advice"]
    assert "cutout is 0 -> try 8-16 px" in over and "label_smoothing is 0 -> try 0.1" in over
    facts = {"last_epoch": 3.0}
    adam = " ".join(advise(m.DIVERGED_VERDICT, config=effective_config({"optimizer": "adam", "lr": 10.0}),
                           facts=facts, end_state=m.DIVERGED_STATE))
    assert "lr 10 is far above adam's usual 1e-4-3e-3 for CNNs -> try 1e-3" in adam and "warmup_epochs is 0" in adam
    adamw = " ".join(advise(m.OVERFITTING, config=effective_config({"optimizer": "adamw", "weight_decay": 1e-4}),
                            facts=facts, end_state=m.COMPLETED))
    assert "weight_decay 0.0001 -> try 1e-2 (AdamW's decoupled decay)" in adamw
    # A conditional key missing for this trial (NaN in the frame) is the default's, not NaN.
    assert effective_config({"momentum": math.nan, "lr": 0.1})["momentum"] == 0.9


def test_underfitting_advice_reads_the_lr_and_the_slope_it_claims():
    # Stuck at chance with an SGD lr far above the usual: a blown-up net, so lower it, never x3.
    n = 10
    stuck = records("stuck", np.full(n, 2.303), np.full(n, 0.1), np.full(n, 2.303), np.full(n, 0.1), lr=0.8,
                    optimizer="sgd", num_blocks=2)
    advice = verdicts(stuck)[1].loc["stuck", "advice"]
    assert "lr 0.8 is high for sgd" in advice and "try 0.08 (/10)" in advice and "x3" not in advice
    assert "num_blocks" not in advice  # not a larger net while the lr is off
    # Flat (below the plateau rule's loss, so no plateau signal) and behind the best: no "still falling".
    e = np.arange(1, 9, dtype=float)
    flat_loss = np.r_[2.0, 1.7, 1.5, 1.3, 1.3, 1.3, 1.3, 1.3]
    best = records("best", 1.8 * np.exp(-e / 3), 1 - 0.9 * np.exp(-e / 3), 1.8 * np.exp(-e / 3) + 0.1,
                   0.95 - 0.9 * np.exp(-e / 3))
    flat = records("flat", flat_loss, np.full(8, 0.35), flat_loss + 0.1, np.full(8, 0.3), lr=0.05, epochs=8)
    got, table = verdicts(best + flat)
    assert got["flat"] == m.UNDERFITTING and "still falling" not in table.loc["flat", "advice"]
    assert "train_loss fell 0.0% over the last 3 epochs to epoch 8 of 8: more epochs alone will not help" in \
        table.loc["flat", "advice"]


def test_a_short_or_rung_stopped_trial_says_where_it_stood_when_it_ended():
    trials = []
    for i, acc in enumerate((0.45, 0.40, 0.31, 0.2)):
        trials += records(f"t{i}", [2.0, 1.8, 1.6], [acc] * 3, [2.0, 1.8, 1.6], [acc] * 3, epochs=20)
    got, table = verdicts(trials + good("long", epochs=20))
    assert got["t2"] == m.INCONCLUSIVE
    assert table.loc["t2", "evidence"].endswith("; val_acc 0.31 at epoch 3: 4th of 5 trials that reached epoch 3 "
                                                "(best 0.45)")


def test_a_trial_that_had_not_ended_is_judged_so_far_and_told_what_it_still_needs():
    # Cut off at epoch 12 of 20 (an interrupt) or still running at 10 of 20: no "train longer", no
    # "more epochs may still help", no "stopped early"; each says how its verdict becomes final.
    slow = records("slow", 2.25 - 0.024 * E[:12], 0.2 + 0.0075 * E[:12], 2.27 - 0.024 * E[:12],
                   0.19 + 0.0075 * E[:12], lr=1e-4, epochs=20)
    running = [r for r in good(epochs=20) if r[m.EPOCH] <= 10]
    short = records("short", [2.3, 2.2], [0.1, 0.12], [2.3, 2.25], [0.1, 0.11], epochs=20)
    frame = tidy(slow + running + short + good("done", epochs=20),
                 end_states={"slow": m.INTERRUPTED, "good": m.UNFINISHED, "short": m.INTERRUPTED})
    table = diagnose(frame, not_ended={"slow": m.INTERRUPTED, "good": m.UNFINISHED, "never": m.INTERRUPTED,
                                       "queued": m.UNFINISHED}).set_index(m.TRIAL_ID)
    assert table.loc["slow", "diagnosis"] == m.UNDERFITTING and table.loc["slow", m.END_STATE_TAG] == m.INTERRUPTED
    assert "lr 0.0001" in table.loc["slow", "advice"]  # the config's advice stands
    for trial_id in ("slow", "good", "short"):
        advice = table.loc[trial_id, "advice"]
        assert not re.search(r"train longer|more epochs|stopped early", advice), advice
    assert table.loc["slow", "advice"].endswith(
        "An interrupt cut it off at epoch 12 of 20, so this reads its curves so far: python -m sweeps.cifar "
        "--resume on its sweep runs it on; report again after.")
    assert table.loc["good", "advice"].startswith("No change needed so far. It had not ended at epoch 10 of 20")
    assert table.loc["short", "diagnosis"] == m.INCONCLUSIVE and table.loc["short", "advice"].startswith(
        "An interrupt cut it off at epoch 2 of 20")
    # Where it stood when it was cut off, as for a trial a scheduler stopped.
    assert "at epoch 12: 2nd of 2 trials that reached epoch 12" in table.loc["slow", "evidence"]
    # No epoch yet: a row each, inconclusive, saying why there is nothing to read.
    assert table.loc["never", "evidence"] == "an interrupt cut it off before its first epoch"
    assert table.loc["never", "advice"].startswith("An interrupt cut it off before its first epoch: ")
    assert table.loc["queued", "evidence"].startswith("no epoch reported yet")
    assert (table.loc["queued", "diagnosis"], table.loc["queued", m.END_STATE_TAG], table.loc["queued", "n_epochs"]) \
        == (m.INCONCLUSIVE, m.UNFINISHED, 0)
