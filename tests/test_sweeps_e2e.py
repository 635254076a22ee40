"""End-to-end sweeps: real Ray (one instance for the module), the real trainable, the shared subset."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
import ray
from ray import tune

import sweeps.tuner
from sweeps.config import CONFIG_FILE, SweepConfig, SweepInputError
from sweeps.summary import BEST_CONFIG_JSON, SUMMARY_CSV
from sweeps.tuner import prepare, report_text, run_sweep, subsample
from trainables import metrics
from trainables.data import load_cifar10

pytestmark = pytest.mark.slow
SUBSET = 500  # training images (train + val); about a second per epoch of the smoke model


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(cifar_dir):
    return subsample(load_cifar10(cifar_dir), size=SUBSET, seed=0)


def _cfg(tmp_path: Path, **changes) -> SweepConfig:
    base = dict(smoke=True, max_epochs=2, grace_period=1, num_samples=2, subset=SUBSET, verbose=0,
                storage_path=str(tmp_path), name="sweep", keep_checkpoints=1, max_concurrent=2)
    return SweepConfig(**{**base, **changes})


def _space_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def _check_outputs(outcome, *, trials: int) -> pd.DataFrame:
    summary = outcome.summary
    assert summary.num_trials == trials == len(outcome.grid)
    assert set(summary.table[metrics.END_STATE_TAG]) <= set(metrics.END_STATES)
    experiment = Path(summary.experiment_path)
    table = pd.read_csv(experiment / SUMMARY_CSV)
    assert len(table) == trials and table["epochs"].sum() == summary.trial_epochs > 0
    best = json.loads((experiment / BEST_CONFIG_JSON).read_text())
    assert best["config"] == summary.best_config and best[metrics.TRIAL_ID] == summary.best_trial_id
    return table


def test_hyperopt_asha_sweep_starts_from_known_points_and_tests_the_best(ray_session, data, tmp_path):
    outcome = run_sweep(_cfg(tmp_path, search="hyperopt", scheduler="asha", num_samples=3), data=data)
    table = _check_outputs(outcome, trials=3)
    assert outcome.ok and (table["epochs"] <= 2).all()
    assert 0.05 in set(table["config/lr"])  # the smoke space's starting point
    assert 0.0 <= outcome.summary.test[metrics.TEST_ACC] <= 1.0  # best checkpoint on the test split


def test_grid_size_is_exact_and_a_diverging_trial_does_not_stop_the_sweep(ray_session, data, tmp_path):
    # lr 9 without batch norm at momentum 0.99 explodes within the first epoch; lr 0.05 trains. The
    # seed is sampled so that the grid's two repeats are two different trials (check_repeats).
    space = _space_file(tmp_path, "lr: {grid: [9.0, 0.05]}\nbatch_size: {grid: [32, 64]}\nbatch_norm: false\n"
                                  "seed: {randint: [0, 1000]}\n"
                                  "momentum: 0.99\nnum_blocks: 2\nconvs_per_block: 1\nfilters: 16\nhead_layers: 0\n")
    outcome = run_sweep(_cfg(tmp_path, search="grid", scheduler="fifo", space=space, num_samples=2, max_epochs=1,
                             max_failures=0, evaluate_best=False), data=data)
    table = _check_outputs(outcome, trials=2 * 2 * 2)
    combos = table.groupby(["config/lr", "config/batch_size"]).size()
    assert len(combos) == 4 and (combos == 2).all()
    states = table.groupby("config/lr")[metrics.END_STATE_TAG].agg(set)
    assert states[9.0] == {metrics.DIVERGED_STATE} and states[0.05] == {metrics.COMPLETED}
    assert outcome.ok and outcome.summary.best_config["lr"] == 0.05
    # --resume does not rebuild the space, so its plan takes the grid's size from the saved config.
    resumed = prepare(SweepConfig(resume=True, name="sweep", storage_path=str(tmp_path), verbose=0), data=data)
    assert "budget:    8 trials x at most 1 epochs" in resumed.plan, resumed.plan
    assert "all 8 trials had finished: nothing left to run" in resumed.plan, resumed.plan


class _MoveDataAway(tune.Callback):
    """Runs in the driver once the Tuner starts, after the data was loaded: any trial that tried
    to read the data folder would now fail."""

    def __init__(self, folder: Path):
        self.folder = folder

    def setup(self, **info):
        self.folder.rename(self.folder.with_name("moved-away"))


def test_random_hyperband_loads_data_once_in_the_driver(ray_session, cifar_dir, tmp_path, monkeypatch):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, folder)
    calls = []

    def counting_load(*args, **kwargs):
        calls.append(args)
        return load_cifar10(*args, **kwargs)

    monkeypatch.setattr(sweeps.tuner, "load_cifar10", counting_load)
    outcome = run_sweep(_cfg(tmp_path, search="random", scheduler="hyperband", num_samples=3, data_dir=str(folder),
                             max_concurrent=0, max_failures=0, evaluate_best=False), callbacks=[_MoveDataAway(folder)])
    table = _check_outputs(outcome, trials=3)
    assert len(calls) == 1 and not folder.exists()  # trials ran on the object-store copy only
    assert outcome.ok and outcome.summary.num_errored == 0 and (table["epochs"] <= 2).all()


def test_hyperband_on_two_cpus_pauses_resumes_and_stops_trials(ray_session, data, tmp_path):
    # 4 epochs, factor 2: brackets of 3 trials (straight to epoch 4), 3 (rung at epoch 2, keeps 2)
    # and 4 (rung at epoch 1, keeps 2; rung at epoch 2, keeps 1). Two CPUs run 2 trials at once; a
    # bracket is processed only once all its trials reach the rung, so the others wait paused. With
    # the searcher limited to the 2 CPUs, the paused trials counted against the limit, every trial
    # landed in the first bracket and all ran 4 epochs. When a bracket reaches its rung only the trial
    # reporting last is still running, so of the 2 the last bracket keeps, one at least was paused
    # and must resume from its checkpoint.
    outcome = run_sweep(_cfg(tmp_path, search="random", scheduler="hyperband", num_samples=10, max_epochs=4,
                             reduction_factor=2, max_concurrent=0, evaluate_best=False), data=data)
    table = _check_outputs(outcome, trials=10)
    assert outcome.ok and outcome.summary.num_errored == 0
    frames = [outcome.grid[i].metrics_dataframe for i in range(len(outcome.grid))]
    resumed = [f for f in frames if (f["iterations_since_restore"] == 1).sum() > 1]  # restarted from a checkpoint
    assert resumed, "no trial was paused at a rung and resumed"
    # Resumed from its checkpoint, not restarted: its epochs go on from where it paused.
    assert all(list(f[metrics.EPOCH]) == list(range(1, len(f) + 1)) for f in resumed)
    assert sorted(table["epochs"]) == [1, 1, 2, 2] + [4] * 6  # what the three brackets' rungs stop


def test_a_hyperband_sweep_saved_with_a_concurrency_limit_still_resumes(ray_session, data, tmp_path):
    # Sweeps started before Hyperband took only --max-concurrent 0 saved the limit in their config.
    outcome = run_sweep(_cfg(tmp_path, search="random", scheduler="hyperband", num_samples=1, max_epochs=1,
                             max_concurrent=0, evaluate_best=False), data=data)
    saved = Path(outcome.cfg.experiment_path) / CONFIG_FILE
    body = json.loads(saved.read_text())
    body["sweep"]["max_concurrent"] = 2
    saved.write_text(json.dumps(body))
    prepared = prepare(SweepConfig(resume=True, name="sweep", storage_path=str(tmp_path), verbose=0), data=data)
    assert (prepared.cfg.scheduler, prepared.cfg.max_concurrent, prepared.cfg.resume) == ("hyperband", 0, True)


def test_a_resume_keeps_the_data_folder_it_started_with_unless_told_otherwise(ray_session, data, cifar_dir, tmp_path,
                                                                             monkeypatch):
    # A resume without --data-dir must not switch dataset: the finished trials' val_acc would no
    # longer compare with the resumed ones'. The same holds for --address (a local Ray instead).
    monkeypatch.chdir(tmp_path)
    outcome = run_sweep(_cfg(tmp_path, search="random", scheduler="fifo", num_samples=1, max_epochs=1,
                             evaluate_best=False, data_dir=os.path.relpath(cifar_dir)), data=data)  # relative to here
    saved = json.loads((Path(outcome.cfg.experiment_path) / CONFIG_FILE).read_text())["sweep"]["data_dir"]
    assert saved == os.path.abspath(cifar_dir)  # absolute: a resume from another directory reads the same images
    given = {"resume": True, "name": "sweep", "storage_path": str(tmp_path)}
    resumed = prepare(SweepConfig(resume=True, name="sweep", storage_path=str(tmp_path)), data=data, given=given)
    assert resumed.cfg.data_dir == saved and resumed.cfg.verbose == 0  # both as saved
    elsewhere = str(tmp_path / "copy-of-the-data")
    moved = prepare(SweepConfig(resume=True, name="sweep", storage_path=str(tmp_path), data_dir=elsewhere), data=data,
                    given={**given, "data_dir": elsewhere})
    assert moved.cfg.data_dir == elsewhere  # a --data-dir given on the command line wins
    # A new sweep under the same name would mix its trials into this one's folder: refused, before Ray.
    with pytest.raises(SweepInputError, match="already holds a sweep. Continue that one with --resume"):
        prepare(_cfg(tmp_path, search="random", scheduler="fifo"), data=data)
    # From Python, without `given`: the values set away from the defaults count as given.
    api = prepare(SweepConfig(resume=True, name="sweep", storage_path=str(tmp_path), data_dir=elsewhere), data=data)
    assert api.cfg.data_dir == elsewhere


class _InterruptWhenTrialStarts(tune.Callback):
    """Ctrl-C, as the n-th trial's actor comes up: every trial exists, the last one is live."""

    def __init__(self, n: int):
        self.n, self.started = n, 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started += 1
        if self.started == self.n:
            os.kill(os.getpid(), signal.SIGINT)  # Tune's own handler takes it (fit runs in the main thread)


def test_a_sweep_interrupted_in_its_last_trial_is_reported_interrupted(ray_session, data, tmp_path):
    # Tune ends the live trial in memory as TERMINATED after saving it as RUNNING; only the saved
    # state shows that it never finished, so --resume must be offered (exit code 130).
    outcome = run_sweep(_cfg(tmp_path, search="random", scheduler="fifo", num_samples=2, max_concurrent=1,
                             evaluate_best=False), data=data, callbacks=[_InterruptWhenTrialStarts(2)])
    assert len(outcome.grid) == 2 and outcome.interrupted and not outcome.ok
    # The live trial is labelled as cut off, not by its last result (stopped_early or completed).
    states = outcome.summary.table[metrics.END_STATE_TAG].tolist()
    assert outcome.cut_off == 1 and sorted(states) == [metrics.COMPLETED, metrics.INTERRUPTED], states
    text = report_text(outcome)
    assert "1 cut off: " in text and f"(listed as {metrics.INTERRUPTED}; --resume continues them)" in text, text


def test_forced_state_snapshots_do_not_flood_the_output(ray_session, data, tmp_path, monkeypatch, caplog):
    # keep_checkpoints=1: every epoch's checkpoint forces a Tune state snapshot, the case in which
    # Tune warns each time; epochs of ~a second put several within its 5 s window.
    monkeypatch.delenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", raising=False)
    tune_state_logger = logging.getLogger("ray.tune.execution.experiment_state")  # Ray's loggers do not propagate
    tune_state_logger.addHandler(caplog.handler)
    try:
        outcome = run_sweep(_cfg(tmp_path, search="random", scheduler="fifo", num_samples=2, max_epochs=3,
                                 max_concurrent=1, keep_checkpoints=1, evaluate_best=False), data=data)
    finally:
        tune_state_logger.removeHandler(caplog.handler)
    assert outcome.ok
    assert not [r for r in caplog.records if "Experiment state snapshotting" in r.getMessage()]


def test_a_gpu_sweep_on_a_fresh_ray_up_cluster_is_sized_for_the_workers_its_autoscaler_adds(
        ray_session, data, tmp_path, monkeypatch):
    # Right after `ray up cluster.yaml` only the CPU head is up (GPU workers have min_workers 0):
    # here that head is this 2-CPU, no-GPU Ray, and ~/ray_bootstrap_config.yaml is what `ray up`
    # writes on it (Ray's own prepare_config of cluster.yaml).
    import yaml
    from ray.autoscaler._private.util import prepare_config

    cfg = _cfg(tmp_path, address="auto", gpus_per_trial=0.25, cpus_per_trial=1, max_concurrent=0, search="random")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match=r"`gpus_per_trial` is 0.25, but the Ray cluster has no GPU"):
        prepare(cfg, data=data)  # no autoscaler config: no GPU will ever come

    repo = Path(__file__).resolve().parents[1]
    bootstrap = prepare_config(yaml.safe_load((repo / "cluster.yaml").read_text()))
    (tmp_path / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(bootstrap))
    prepared = prepare(cfg, data=data)
    # Sized for 8 g5 workers x 4 trials, so Tune asks for them and the autoscaler adds them.
    assert prepared.cfg.max_concurrent == 32
    assert "0 GPUs now, the autoscaler may add up to 8 workers; up to 32 trials at once" in prepared.plan
    assert not prepared.owns_ray

    # Short of CPUs, not of GPUs: a g5 worker has 4 CPUs.
    with pytest.raises(ValueError, match=r"`cpus_per_trial` and `gpus_per_trial` are 8 and 0.25, but no node that "
                                         r"is up or may be added holds that much"):
        prepare(cfg.replace(cpus_per_trial=8), data=data)


def test_a_trial_bigger_than_every_local_node_is_refused_before_any_trial(ray_session, data, tmp_path):
    with pytest.raises(ValueError, match=r"are 4 and 0, but no node that is up holds that much "
                                         r"\(nodes up: 2 CPU \+ 0 GPU\)\. Lower --cpus-per-trial"):
        prepare(_cfg(tmp_path, cpus_per_trial=4, max_concurrent=0), data=data)
    assert not (tmp_path / "sweep").exists()
