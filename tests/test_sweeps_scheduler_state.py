"""The scheduler's state across --resume (sweeps/scheduler_state.py), on Ray's real schedulers and
trials without a cluster; the interrupted-and-resumed Hyperband sweep is in test_sweeps_resume.py."""
from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from sweeps.scheduler_state import ResumableHyperBand, SchedulerState, restore, snapshot
from trainables import metrics


def _trial(trial_id: str, status: str = Trial.PENDING) -> Trial:
    trial = Trial("cifar_trial", config={}, trial_id=trial_id, stub=True)
    trial.set_status(status)
    return trial


def _hyperband() -> ResumableHyperBand:
    return ResumableHyperBand(time_attr=metrics.TRAINING_ITERATION, max_t=9, reduction_factor=3,
                              metric=metrics.VAL_ACC, mode="max")


def test_hyperband_brackets_come_back_bound_to_the_restored_trials():
    before = _hyperband()
    old = [_trial(f"t{i}") for i in range(4)]
    for trial in old:
        before.on_trial_add(None, trial)
    before.on_trial_result(None, old[0], {metrics.TRAINING_ITERATION: 1, metrics.VAL_ACC: 0.3})
    saved = SchedulerState(before).get_state()

    after = _hyperband()  # as Tuner.restore rebuilds it: empty brackets
    SchedulerState(after).set_state(saved)
    new = [_trial(f"t{i}") for i in range(4)] + [_trial("t4")]  # t4: created after the snapshot
    for trial in new:
        after.on_trial_add(None, trial)
    brackets = [b for band in after._hyperbands for b in band if b is not None]
    held = [t for b in brackets for t in b._all_trials]
    assert sorted(t.trial_id for t in held) == ["t0", "t1", "t2", "t3", "t4"]
    assert all(isinstance(t, Trial) for t in held) and all(any(t is n for n in new) for t in held)
    assert {t.trial_id for t in after._trial_info} == {"t0", "t1", "t2", "t3", "t4"}
    first = next(b for b in brackets if any(t.trial_id == "t0" for t in b._all_trials))
    assert first._live_trials[new[0]][metrics.VAL_ACC] == 0.3  # the result it had reported


def test_a_trial_that_left_its_bracket_before_the_snapshot_is_not_dealt_again():
    before = _hyperband()
    done = _trial("t0")
    before.on_trial_add(None, done)
    before.on_trial_remove(None, done)
    saved = SchedulerState(before).get_state()
    after = _hyperband()
    SchedulerState(after).set_state(saved)
    after.on_trial_add(None, _trial("t0", Trial.TERMINATED))
    brackets = [b for band in after._hyperbands for b in band if b is not None]
    assert len(brackets) == 1 and len(brackets[0]._all_trials) == 1  # not dealt into a bracket again
    assert not brackets[0]._live_trials  # and not live in its old one
    after.on_trial_remove(None, _trial("t0", Trial.TERMINATED))  # no KeyError for a trial it does not hold


def test_asha_rung_scores_survive_and_a_foreign_state_is_ignored():
    asha = ASHAScheduler(time_attr=metrics.TRAINING_ITERATION, max_t=9, grace_period=1, reduction_factor=3,
                         metric=metrics.VAL_ACC, mode="max")
    trial = _trial("t0")
    asha.on_trial_add(None, trial)
    asha.on_trial_result(None, trial, {metrics.TRAINING_ITERATION: 1, metrics.VAL_ACC: 0.5})
    fresh = ASHAScheduler(time_attr=metrics.TRAINING_ITERATION, max_t=9, grace_period=1, reduction_factor=3,
                          metric=metrics.VAL_ACC, mode="max")
    restore(fresh, snapshot(asha))
    rungs = fresh._brackets[0]._rungs  # (milestone, {trial id: score}) per rung
    assert rungs == asha._brackets[0]._rungs and any(recorded for _, recorded in rungs)
    untouched = _hyperband()
    SchedulerState(untouched).set_state({"parent_run_id": "abc"})  # the MLflow callback's, from an older sweep
    assert untouched._awaited is None
