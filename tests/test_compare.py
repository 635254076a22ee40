"""sweeps.compare: input rules, the budget stopper, and one real tiny comparison end to end."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from analysis.strategies import ANYTIME_FILE, SUMMARY_FILE, load_comparison
from sweeps import anytime as at
from sweeps import compare
from sweeps.compare import CompareConfig
from sweeps.config import SweepConfig
from sweeps.tracking_config import TrackingConfig
from trainables import metrics


@pytest.mark.parametrize("changes, name", [
    ({"strategies": ()}, "strategies"),
    ({"strategies": ("random", "bogus")}, "strategies"),
    ({"strategies": ("random", "random")}, "strategies"),
    ({"seeds": ()}, "seeds"),
    ({"seeds": (0, 0)}, "seeds"),
    ({"seeds": (-1,)}, "seeds"),
    ({"budget": -4}, "budget"),
    ({"budget": 3}, "budget"),  # below max_epochs (12): no trial could finish
    ({"target": 1.5}, "target"),
    ({"target": math.nan}, "target"),
    ({"grid_space": "/nonexistent/space.yaml"}, "grid_space"),
    ({"sweep": SweepConfig(resume=True, name="x")}, "resume"),
])
def test_config_rejects_bad_input_naming_it(changes, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        CompareConfig(**changes)


def test_sweep_config_per_strategy():
    cfg = CompareConfig(budget=40, sweep=SweepConfig(max_epochs=4))
    grid = cfg.sweep_config("grid", seed=2)
    assert (grid.search, grid.scheduler, grid.num_samples, grid.seed) == ("grid", "fifo", 1, 2)
    hb = cfg.sweep_config("hyperopt+hyperband", seed=1)
    # Enough trials that the trial-epoch budget, not num_samples, ends the sweep.
    assert (hb.search, hb.scheduler, hb.num_samples) == ("hyperopt", "hyperband", 40)
    assert CompareConfig(sweep=SweepConfig(max_epochs=5)).trial_epoch_budget == compare.DEFAULT_BUDGET_TRIALS * 5


def test_a_grid_larger_than_the_budget_is_announced_before_any_sweep(tmp_path, capsys):
    grid = tmp_path / "grid3.yaml"
    grid.write_text("lr: {grid: [0.01, 0.05, 0.3]}\n")
    small = CompareConfig(strategies=("grid",), budget=8, grid_space=str(grid), sweep=SweepConfig(max_epochs=4))
    compare.check_inputs(small)
    assert ("the grid has 3 points x 4 epochs = 12 trial-epochs, more than the budget of 8: its row covers the "
            "points the budget reaches. Pass --budget 12") in capsys.readouterr().err
    compare.check_inputs(CompareConfig(strategies=("grid",), budget=12, grid_space=str(grid),
                                       sweep=SweepConfig(max_epochs=4)))
    assert "the grid has" not in capsys.readouterr().err


def test_the_table_header_counts_the_seeds_each_strategy_finished():
    full = pd.DataFrame({at.STRATEGY: ["a", "a", "b", "b"], at.SEED: [0, 1, 0, 1]})
    assert compare.seeds_per_strategy(full) == "2"
    assert compare.seeds_per_strategy(full.iloc[:3]) == "1-2"  # b's second seed was cut short


def test_tpe_starts_up_as_for_the_full_length_trials_the_budget_buys():
    # num_samples is B, an upper bound; a quarter of it would keep TPE random for most of the budget.
    assert CompareConfig(budget=40, sweep=SweepConfig(max_epochs=4)).sweep_config("hyperopt", seed=0).startup_trials == 3
    big = CompareConfig(budget=400, sweep=SweepConfig(max_epochs=4))  # 100 full trials: a quarter, capped at 20
    assert big.sweep_config("hyperopt+asha", seed=0).startup_trials == 20
    assert big.sweep_config("random", seed=0).startup_trials == 0


def test_a_concurrency_limit_applies_to_every_strategy_but_hyperband():
    # Hyperband's paused trials would count against the limit and its brackets would never fill.
    cfg = CompareConfig(sweep=SweepConfig(max_epochs=4, max_concurrent=2))
    assert cfg.sweep_config("hyperopt+hyperband", seed=0).max_concurrent == 0
    assert {cfg.sweep_config(s, seed=0).max_concurrent for s in compare.STRATEGIES if "hyperband" not in s} == {2}


def test_parse_args_smoke_defaults():
    cfg, tracking = compare.parse_args(["--smoke", "--strategies", "random", "grid", "--no-mlflow"])
    assert cfg.seeds == (0,) and cfg.strategies == ("random", "grid")
    assert cfg.sweep.smoke and cfg.trial_epoch_budget == compare.SMOKE_BUDGET_TRIALS * cfg.sweep.max_epochs
    assert cfg.target == compare.SMOKE_TARGET
    full, _ = compare.parse_args(["--target", "0.6", "--budget", "60", "--seeds", "3", "4"])
    assert (full.target, full.trial_epoch_budget, full.seeds, full.sweep.smoke) == (0.6, 60, (3, 4), False)
    assert not tracking.enabled


@pytest.mark.parametrize("argv", [["--strategies", "bogus"], ["--budget", "1", "--max-epochs", "2"],
                                  ["--smoke", "--target", "2"]])
def test_cli_bad_input_exits_2_before_compute(argv, capsys):
    assert compare.main([*argv, "--no-mlflow"]) == 2
    assert "error:" in capsys.readouterr().err


def test_budget_stopper_counts_each_trial_epoch_once():
    stopper = compare.TrialEpochBudget(3)
    stopper("a", {metrics.TRAINING_ITERATION: 1})
    stopper("a", {metrics.TRAINING_ITERATION: 1})  # Tune's duplicate final result
    stopper("b", {metrics.TRAINING_ITERATION: 1})
    assert not stopper.stop_all()
    stopper("a", {metrics.TRAINING_ITERATION: 2})
    assert stopper.stop_all()


def test_summary_row_cuts_at_budget_and_counts_trials():
    records = pd.DataFrame([compare.epoch_record({metrics.TRIAL_ID: t, metrics.VAL_ACC: acc, metrics.EPOCH_TIME_S: 1.0},
                                                 now=now)
                            for t, acc, now in [("a", 0.2, 0.0), ("b", 0.3, 1.0), ("c", 0.9, 3.0), ("a", 0.4, 2.0)]])
    anytime, row = compare.summary_row(records, strategy="random", seed=1, budget=3, target=0.35)
    assert list(anytime.columns) == list(at.ANYTIME_COLUMNS)
    assert list(anytime[at.BEST_VAL_ACC]) == [0.2, 0.3, 0.4]  # c's epoch came after the budget
    assert row[compare.TRIALS] == 2 and row[at.TRIAL_EPOCHS] == 3 and row[at.EPOCHS_TO_TARGET] == 3.0


@pytest.fixture
def ray_2cpu():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _ray_results(storage: Path, experiment_glob: str) -> list[dict]:
    """Every result Ray wrote (one JSON line per reported epoch) for the matching experiment."""
    return [json.loads(line) for path in storage.glob(f"{experiment_glob}/*/result.json")
            for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_tiny_comparison_end_to_end(ray_2cpu, cifar_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a local sqlite store puts its artifacts in ./mlruns of the working directory
    budget = 4
    cfg = CompareConfig(
        strategies=("random", "random+asha"), seeds=(0,), budget=budget, target=0.1, output_dir=str(tmp_path / "cmp"),
        sweep=SweepConfig(smoke=True, max_epochs=2, grace_period=1, subset=500, data_dir=str(cifar_dir),
                          storage_path=str(tmp_path / "ray_results"), verbose=0))
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="compare-test")
    result = compare.run_comparison(cfg, tracking=tracking)

    anytime, summary = load_comparison(tmp_path / "cmp")
    assert list(anytime.columns) == list(at.ANYTIME_COLUMNS)
    assert list(summary.columns)[:len(at.SUMMARY_COLUMNS)] == list(at.SUMMARY_COLUMNS)
    assert (tmp_path / "cmp" / compare.PLOT_FILE).stat().st_size > 0
    # Equal budgets: both strategies spent exactly B trial-epochs, the curve has one row per epoch.
    assert list(summary[at.TRIAL_EPOCHS]) == [budget, budget]
    for _, curve in anytime.groupby(at.STRATEGY):
        assert list(curve[at.TRIAL_EPOCHS]) == list(range(1, budget + 1))
        assert curve[at.BEST_VAL_ACC].is_monotonic_increasing
        assert (curve[at.TRIAL_SECONDS].diff().dropna() > 0).all()
        strategy = curve[at.STRATEGY].iloc[0]
        row = summary[summary[at.STRATEGY] == strategy].iloc[0]
        hits = curve.loc[curve[at.BEST_VAL_ACC] >= cfg.target, at.TRIAL_EPOCHS]
        assert (math.isnan(row[at.EPOCHS_TO_TARGET]) if hits.empty else row[at.EPOCHS_TO_TARGET] == hits.iloc[0])
        # The recorder saw Ray's real results: the best within budget is one of the reported val_acc values.
        ray_results = _ray_results(tmp_path / "ray_results", f"compare-{strategy.replace('+', '-')}-seed0-*")
        assert len(ray_results) >= budget
        assert row[at.BEST_VAL_ACC] in {r[metrics.VAL_ACC] for r in ray_results}

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking.tracking_uri)
    run = client.get_run(result.run_id)
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {ANYTIME_FILE, SUMMARY_FILE, compare.PLOT_FILE} <= logged
    # Reaching the budget is how a comparison's sweep finishes: the trials it ended are stopped,
    # not interrupted, in the summary and in MLflow (Tune ends them without a hook, as on Ctrl-C).
    runs = client.search_runs([run.info.experiment_id])
    sweeps_ = [r for r in runs if r.data.tags.get(metrics.TAG_ROLE) == metrics.ROLE_PARENT]
    trials = [r for r in runs if r.data.tags.get(metrics.TAG_ROLE) == metrics.ROLE_TRIAL]
    assert len(sweeps_) == 2 and {r.info.status for r in sweeps_} == {"FINISHED"}
    assert trials and {r.info.status for r in trials} == {"FINISHED"}
    assert {r.data.tags.get(metrics.END_STATE_TAG) for r in trials} <= {metrics.COMPLETED, metrics.STOPPED_EARLY}
    for folder in (tmp_path / "ray_results").glob("compare-*"):
        states = set(pd.read_csv(folder / "summary.csv")[metrics.END_STATE_TAG])
        assert states <= {metrics.COMPLETED, metrics.STOPPED_EARLY}, (folder.name, states)


@pytest.mark.slow
def test_a_trial_that_fits_no_node_exits_2_before_any_sweep_or_file(cifar_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = compare.main(["--smoke", "--strategies", "random", "--gpus-per-trial", "0.25", "--no-mlflow",
                         "--data-dir", str(cifar_dir), "--output-dir", str(out)])
    assert code == 2 and "`gpus_per_trial` is 0.25, but the Ray cluster has no GPU" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_a_ctrl_c_leaves_the_cut_sweep_out_and_exits_130(cifar_dir, tmp_path):
    out = tmp_path / "cmp"
    cli = [sys.executable, "-m", "sweeps.compare", "--smoke", "--strategies", "random", "random+asha", "--seeds", "0",
           "--subset", "500", "--no-mlflow", "--data-dir", str(cifar_dir), "--output-dir", str(out)]
    proc = subprocess.Popen(cli, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not _ray_results(out / "ray_results", "compare-*"):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)  # mid-way through the first strategy's sweep
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted during random seed 0: its partial sweep is left out" in stderr
    assert "[compare] random seed 0: best" not in stdout  # never reported as a finished result
    assert not (out / SUMMARY_FILE).exists()


def _cli_with_missing_data(out: Path, tmp_path: Path) -> list[str]:
    """CLI flags whose dataset is missing: an output-dir error shown instead proves it came before the data load."""
    return ["--smoke", "--strategies", "random", "--no-mlflow", "--no-download",
            "--data-dir", str(tmp_path / "no-cifar"), "--output-dir", str(out)]


def test_an_earlier_comparisons_folder_is_refused_before_data_or_ray(tmp_path, capsys):
    import ray

    out = tmp_path / "cmp"
    out.mkdir()
    earlier = {name: f"earlier {name}" for name in (ANYTIME_FILE, SUMMARY_FILE, compare.CONFIG_FILE)}
    for name, text in earlier.items():
        (out / name).write_text(text)
    assert compare.main(_cli_with_missing_data(out, tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"`output_dir` is {str(out)!r}" in err and "CIFAR" not in err and "Traceback" not in err
    assert all(name in err for name in earlier) and "another --output-dir" in err and "move or delete" in err
    assert {name: (out / name).read_text() for name in earlier} == earlier  # nothing overwritten
    assert not ray.is_initialized()


def test_run_comparison_refuses_an_earlier_comparisons_folder_without_starting_ray(tmp_path):
    import ray

    out = tmp_path / "cmp"
    out.mkdir()
    (out / compare.PLOT_FILE).write_bytes(b"earlier plot")
    cfg = CompareConfig(strategies=("random",), seeds=(0,), output_dir=str(out),
                        sweep=SweepConfig(max_epochs=2, data_dir=str(tmp_path / "no-cifar"), download=False))
    with pytest.raises(ValueError, match=r"`output_dir`.*anytime\.png"):
        compare.run_comparison(cfg)
    assert not ray.is_initialized() and (out / compare.PLOT_FILE).read_bytes() == b"earlier plot"


@pytest.mark.parametrize("make_out", [
    lambda tmp: tmp / "a-file.txt",  # the folder is a file
    lambda tmp: tmp / "a-file.txt" / "cmp",  # its parent is a file: it cannot be created
])
def test_an_output_dir_that_cannot_be_a_folder_exits_2_before_data_or_ray(make_out, tmp_path, capsys):
    import ray

    (tmp_path / "a-file.txt").write_text("not a folder")
    out = make_out(tmp_path)
    assert compare.main(_cli_with_missing_data(out, tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"`output_dir` is {str(out)!r}" in err and "a-file.txt" in err and "--output-dir" in err
    assert "CIFAR" not in err and "Traceback" not in err
    assert (tmp_path / "a-file.txt").read_text() == "not a folder" and not ray.is_initialized()


def test_an_empty_or_unrelated_existing_folder_is_accepted(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    compare.check_output_dir(str(out))  # empty
    (out / "notes.txt").write_text("mine")
    compare.check_output_dir(str(out))  # holds no comparison's results: nothing would be overwritten
    compare.check_output_dir(str(tmp_path / "new" / "cmp"))  # created later, parents too
    # The CLI then goes on to the next check, the dataset.
    assert compare.main(_cli_with_missing_data(out, tmp_path)) == 2
    assert "output_dir" not in capsys.readouterr().err
