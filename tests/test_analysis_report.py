"""Loading a Ray result folder, the strategy table, the rendered report and its CLI."""
from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from analysis import load_ray_results, strategy_table
from analysis.report import _default_tracking_uri, _parser, main
from analysis.frames import not_ended_trials
from analysis.strategies import spread_over_seeds
from trainables import metrics as m
from tests.test_analysis_diagnosis import good, overfit, underfit
from tests.test_analysis_ray_state import write_state


RAY_FOLDER = "train_{}_0"  # write_ray_folder's trial folder names


def write_ray_folder(root, trials: dict[str, list[dict]], *, errored=()):
    """Trial folders the way Ray Tune writes them: result.json lines with the config nested."""
    for trial_id, rows in trials.items():
        folder = root / RAY_FOLDER.format(trial_id)
        folder.mkdir(parents=True)
        lines = []
        for row in rows:
            config = {k[len(m.CONFIG_PREFIX):]: v for k, v in row.items() if k.startswith(m.CONFIG_PREFIX)}
            metrics = {k: v for k, v in row.items() if not k.startswith(m.CONFIG_PREFIX)}
            lines.append(json.dumps({**metrics, m.TRIAL_ID: trial_id, m.TRAINING_ITERATION: row[m.EPOCH],
                                     "timestamp": 1, "hostname": "h", "config": config}))
        (folder / "result.json").write_text("\n".join(lines) + "\n")
        if trial_id in errored:
            (folder / "error.txt").write_text("boom")
    return root


@pytest.fixture
def ray_folder(tmp_path):
    cfg = dict(epochs=20, head_dropout=0.0, weight_decay=0.0, optimizer="sgd")
    diverged = [{m.EPOCH: i, m.TRAIN_LOSS: v, m.TRAIN_ACC: 0.2, m.VAL_LOSS: v, m.VAL_ACC: 0.2, m.LR: 1.0,
                 m.DIVERGED: float(i == 3), "config/lr": 1.0, "config/epochs": 20, "config/optimizer": "adam"}
                for i, v in ((1, 2.0), (2, 1.8), (3, math.nan))]
    trials = {"over": overfit(lr=0.1, **cfg), "good": good(lr=0.05, **cfg), "under": underfit(lr=1e-5, **cfg),
              "div": diverged, "short": [r for r in good("short", lr=0.01, **cfg) if r[m.EPOCH] <= 2]}
    for rows in trials.values():
        for r in rows:
            r.pop(m.TRIAL_ID, None)
    return write_ray_folder(tmp_path / "sweep", trials)



MLFLOW_HTTP_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT")


@pytest.fixture(autouse=True)
def no_tracking_store(monkeypatch, tmp_path):
    """The CLI defaults to $MLFLOW_TRACKING_URI or ./mlflow.db: run each test where neither exists,
    so no test depends on, or writes into, a store of the developer's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    # The CLI bounds MLflow's HTTP retries with os.environ.setdefault: start each test without them
    # and undo what it set (setenv first, so the undo also removes a key that was never set).
    for key in MLFLOW_HTTP_ENV:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


def test_load_ray_results_gives_the_tidy_frame(ray_folder):
    frame = load_ray_results(ray_folder)
    assert list(frame.columns[:2]) == [m.TRIAL_ID, m.EPOCH]
    assert {"config/lr", "config/optimizer", m.END_STATE_TAG} <= set(frame.columns)
    assert not {"timestamp", "hostname", "config"} & set(frame.columns)
    assert len(frame) == 20 * 3 + 3 + 2
    states = frame.groupby(m.TRIAL_ID)[m.END_STATE_TAG].first().to_dict()
    assert states == {"over": m.COMPLETED, "good": m.COMPLETED, "under": m.COMPLETED,
                      "div": m.DIVERGED_STATE, "short": m.STOPPED_EARLY}
    assert math.isnan(frame.loc[(frame[m.TRIAL_ID] == "div") & (frame[m.EPOCH] == 3), m.TRAIN_LOSS].item())


def test_load_ray_results_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_ray_results(tmp_path / "nope")
    (tmp_path / "storage" / "exp" / "t1").mkdir(parents=True)
    (tmp_path / "storage" / "exp" / "t1" / "result.json").write_text("{}\n")
    with pytest.raises(ValueError, match="pass one of them"):
        load_ray_results(tmp_path / "storage")
    started = tmp_path / "started"  # Tune saved its state; no trial has written a result yet
    (started / "train_a_0").mkdir(parents=True)
    write_state(started, "2026-11-23_01-00-00", {"a": "RUNNING"}, trial_folder=RAY_FOLDER)
    with pytest.raises(ValueError, match="has reported an epoch yet"):
        load_ray_results(started)


def test_errored_trial_is_marked(tmp_path):
    folder = write_ray_folder(tmp_path / "s", {"a": [{k: v for k, v in r.items() if k != m.TRIAL_ID}
                                                     for r in good()[:3]]}, errored=("a",))
    assert set(load_ray_results(folder)[m.END_STATE_TAG]) == {m.ERRORED}
    # Ray keeps error.txt after a retry from a checkpoint succeeds; the sweep's summary knows better.
    pd.DataFrame({m.TRIAL_ID: ["a"], m.END_STATE_TAG: [m.COMPLETED]}).to_csv(folder / "summary.csv", index=False)
    assert set(load_ray_results(folder)[m.END_STATE_TAG]) == {m.COMPLETED}
    # Cut off by a Ctrl-C (mid-retry): --resume runs it again, so its error file is history.
    pd.DataFrame({m.TRIAL_ID: ["a"], m.END_STATE_TAG: [m.INTERRUPTED]}).to_csv(folder / "summary.csv", index=False)
    assert set(load_ray_results(folder)[m.END_STATE_TAG]) == {m.INTERRUPTED}


def _rows(rows):
    return [{k: v for k, v in r.items() if k != m.TRIAL_ID} for r in rows]


def test_trials_an_interrupt_cut_off_are_interrupted_not_stopped_early_and_each_gets_a_row(tmp_path, capsys):
    # What a Ctrl-C leaves: Tune's state (the cut-off trial RUNNING, one never run PENDING) and the
    # sweep's summary.csv labelling both interrupted. Found by review: the report called the first
    # stopped early ("give it more epochs") and left the second out.
    folder = write_ray_folder(tmp_path / "sweep", {"done": _rows(good(epochs=20)),
                                                   "cut": _rows(underfit(epochs=20)[:5]), "never": []})
    write_state(folder, "2026-11-23_01-00-00", {"done": "TERMINATED", "cut": "RUNNING", "never": "PENDING"},
                trial_folder=RAY_FOLDER)
    pd.DataFrame({m.TRIAL_ID: ["done", "cut", "never"],
                  m.END_STATE_TAG: [m.COMPLETED, m.INTERRUPTED, m.INTERRUPTED]}).to_csv(folder / "summary.csv",
                                                                                        index=False)
    assert not_ended_trials(folder) == {"cut": m.INTERRUPTED, "never": m.INTERRUPTED}
    states = load_ray_results(folder).groupby(m.TRIAL_ID)[m.END_STATE_TAG].first().to_dict()
    assert states == {"done": m.COMPLETED, "cut": m.INTERRUPTED}

    assert main([str(folder), "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 trials: ") and "2 trials cut off by an interrupt (interrupted)" in out
    table = pd.read_csv(folder / "report" / "diagnoses.csv").set_index(m.TRIAL_ID)
    assert "stopped early" not in table.loc["cut", "advice"] and "--resume" in table.loc["cut", "advice"]
    assert (table.loc["never", "diagnosis"], table.loc["never", m.END_STATE_TAG]) == (m.INCONCLUSIVE, m.INTERRUPTED)
    # Its row has no config: the HTML table must not take that for a searched value (both ran 20 epochs).
    assert "<th>epochs</th>" not in (folder / "report" / "report.html").read_text()


def test_a_running_sweeps_trials_are_unfinished_and_a_finished_ones_are_not(tmp_path):
    # No summary.csv yet: the sweep is running (or its driver died). "late" started after Tune's last
    # snapshot. Hyperband's trials paused as a finished sweep ended are stopped early (its summary says).
    folder = write_ray_folder(tmp_path / "sweep", {"done": _rows(good(epochs=20)), "run": _rows(good(epochs=20)[:4]),
                                                   "late": _rows(good(epochs=20)[:1])})
    write_state(folder, "2026-11-23_01-00-00", {"done": "TERMINATED", "run": "RUNNING"}, trial_folder=RAY_FOLDER)
    assert not_ended_trials(folder) == {"run": m.UNFINISHED, "late": m.UNFINISHED}
    states = load_ray_results(folder).groupby(m.TRIAL_ID)[m.END_STATE_TAG].first().to_dict()
    assert states == {"done": m.COMPLETED, "run": m.UNFINISHED, "late": m.UNFINISHED}
    write_state(folder, "2026-11-23_02-00-00", {"done": "TERMINATED", "run": "PAUSED", "late": "TERMINATED"},
                trial_folder=RAY_FOLDER)
    pd.DataFrame({m.TRIAL_ID: ["done", "run", "late"], m.END_STATE_TAG: [m.COMPLETED, m.STOPPED_EARLY,
                                                                         m.STOPPED_EARLY]}).to_csv(
        folder / "summary.csv", index=False)
    assert not_ended_trials(folder) == {}
    # No Tune state at all (a folder copied without it): nothing to tell, the curves decide as before.
    for state in folder.glob("experiment_state-*.json"):
        state.unlink()
    (folder / "summary.csv").unlink()
    assert not_ended_trials(folder) == {}
    assert load_ray_results(folder).groupby(m.TRIAL_ID)[m.END_STATE_TAG].first().to_dict()["run"] == m.STOPPED_EARLY


def test_a_sweep_interrupted_before_any_epoch_says_so(tmp_path):
    folder = write_ray_folder(tmp_path / "sweep", {"a": [], "b": []})
    write_state(folder, "2026-11-23_01-00-00", {"a": "RUNNING", "b": "PENDING"}, trial_folder=RAY_FOLDER)
    with pytest.raises(ValueError, match=r"No trial has reported an epoch yet: 2 still running or pending\. "):
        load_ray_results(folder)
    pd.DataFrame({m.TRIAL_ID: ["a", "b"], m.END_STATE_TAG: [m.INTERRUPTED] * 2}).to_csv(folder / "summary.csv",
                                                                                       index=False)
    with pytest.raises(ValueError, match=r"2 cut off by an interrupt \(python -m sweeps.cifar --resume"):
        load_ray_results(folder)


def comparison_folder(root):
    root.mkdir(parents=True, exist_ok=True)
    rows, summary = [], []
    for strategy, speed in (("random", 0.02), ("hyperopt", 0.04)):
        for seed in range(3):
            best = np.minimum(0.3 + speed * np.arange(1, 21) + 0.01 * seed, 0.8)
            rows += [dict(strategy=strategy, seed=seed, trial_epochs=i + 1, trial_seconds=2.0 * (i + 1),
                          best_val_acc=b) for i, b in enumerate(best)]
            reached = np.flatnonzero(best >= 0.6)
            summary.append(dict(strategy=strategy, seed=seed, best_val_acc=best.max(), trial_epochs=20,
                                trial_seconds=40.0, epochs_to_target=float(reached[0] + 1) if reached.size else math.nan,
                                target=0.6))
    pd.DataFrame(rows).to_csv(root / "anytime.csv", index=False)
    pd.DataFrame(summary).to_csv(root / "summary.csv", index=False)
    return root


def test_strategy_table_has_median_spread_and_n(tmp_path):
    summary = pd.read_csv(comparison_folder(tmp_path / "cmp") / "summary.csv")
    table = strategy_table(summary).set_index("strategy")
    assert table.loc["hyperopt", "n"] == 3 and table.loc["hyperopt", "reached"] == "3/3"
    assert table.loc["random", "best_val_acc_median"] == pytest.approx(0.71)
    assert table.loc["random", "best_val_acc_min"] == pytest.approx(0.70)
    assert table.loc["hyperopt", "epochs_to_target_median"] == 8  # 0.3 + 0.04 * 8 + 0.01 >= 0.6
    assert table.index[0] == "hyperopt"  # best first


def test_spread_over_seeds_carries_each_seed_forward():
    anytime = pd.DataFrame(dict(strategy="s", seed=[0, 0, 1], trial_epochs=[1, 3, 2], best_val_acc=[0.1, 0.5, 0.3]))
    spread = spread_over_seeds(anytime).set_index("trial_epochs")
    assert spread.loc[2, "median"] == pytest.approx(0.2)  # seed 0 still at 0.1, seed 1 at 0.3
    assert spread.loc[3, "max"] == 0.5 and spread.loc[3, "n"] == 2


def test_report_cli_renders_html_pngs_and_csv(ray_folder, tmp_path, capsys):
    cmp = comparison_folder(tmp_path / "cmp")
    out = tmp_path / "report"
    assert main([str(ray_folder), "--out", str(out), "--compare", str(cmp), "--min-epochs", "4"]) == 0
    printed = capsys.readouterr().out
    assert "5 trials: 1 overfitting, 1 underfitting, 1 diverged, 1 good_fit, 1 inconclusive." in printed
    html = (out / "report.html").read_text()
    for name in ("curves", "gap", "hyperparameters", "anytime"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert html.count('<img alt="') == 4 and html.count("data:image/png;base64,") == 4
    assert "<table" in html and "Strategy comparison" in html and "hyperopt" in html
    diagnoses = pd.read_csv(out / "diagnoses.csv").set_index(m.TRIAL_ID)
    assert diagnoses.loc["over", m.TAG_DIAGNOSIS] == m.OVERFITTING
    assert (out / "strategies.csv").is_file()


def test_report_cli_default_out_and_thresholds(ray_folder, tmp_path, capsys):
    (tmp_path / "t.json").write_text(json.dumps({"min_epochs": 25}))
    assert main([str(ray_folder), "--thresholds", str(tmp_path / "t.json")]) == 0
    diagnoses = pd.read_csv(ray_folder / "report" / "diagnoses.csv")
    assert set(diagnoses[m.TAG_DIAGNOSIS]) == {m.INCONCLUSIVE, m.DIVERGED_VERDICT}
    with pytest.raises(SystemExit):
        main([str(ray_folder), "--min-epochs", "1"])
    assert "min_epochs >= 2" in capsys.readouterr().err


def test_comparison_folder_alone(tmp_path):
    cmp = comparison_folder(tmp_path / "cmp")
    assert main([str(cmp)]) == 0
    assert (cmp / "report" / "anytime.png").is_file() and (cmp / "report" / "strategies.csv").is_file()


def _exit_2(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_not_a_folder_without_tracking_uri(capsys):
    assert "together with --tracking-uri" in _exit_2(["no-such-experiment"], capsys)


def test_a_mistyped_folder_is_named_even_where_an_mlflow_store_is(tmp_path, capsys):
    (tmp_path / "mlflow.db").touch()  # after a sweep: the default store makes any name an MLflow reference
    err = _exit_2(["ray_results/nope"], capsys)
    assert "'ray_results/nope' is not a folder (no such directory)" in err and "nor in MLflow" in err
    # A name with "/" may be an MLflow experiment (Databricks names are paths): MLflow is asked first.
    assert "'team/cnn' is not a folder" in _exit_2(["team/cnn"], capsys)


def test_an_empty_tracking_uri_is_refused_not_skipped(ray_folder, capsys):
    err = _exit_2([str(ray_folder), "--tracking-uri", ""], capsys)  # what an unset "$MLFLOW_TRACKING_URI" gives
    assert "--tracking-uri is empty (an unset $MLFLOW_TRACKING_URI?)" in err


def test_a_retried_epoch_counts_once_with_the_reruns_values(tmp_path):
    rows = [{m.EPOCH: e, m.TRAIN_LOSS: 2.0 - e / 10, m.TRAIN_ACC: 0.3, m.VAL_LOSS: v, m.VAL_ACC: 0.3}
            for e, v in ((1, 2.0), (2, 1.9), (3, 1.8), (3, 1.7), (4, 1.6))]  # node lost after 3, rerun from 2
    frame = load_ray_results(write_ray_folder(tmp_path / "sweep", {"t": rows}))
    assert list(frame[m.EPOCH]) == [1, 2, 3, 4] and frame[m.VAL_LOSS].tolist()[2] == 1.7


def test_default_tracking_uri_is_the_sweeps_local_store(monkeypatch, tmp_path):
    assert _default_tracking_uri() is None
    (tmp_path / "mlflow.db").touch()
    assert _default_tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert _default_tracking_uri() == "http://127.0.0.1:5000"


def test_comparison_columns_match_sweeps():
    from analysis import strategies
    from sweeps import anytime

    for name in ("STRATEGY", "SEED", "TRIAL_EPOCHS", "TRIAL_SECONDS", "BEST_VAL_ACC", "EPOCHS_TO_TARGET", "TARGET"):
        assert getattr(strategies, name) == getattr(anytime, name)


def test_the_sweeps_files_and_store_names_match_sweeps():
    from analysis import frames, report
    from sweeps import summary, tracking_config

    assert frames.SWEEP_SUMMARY_CSV == summary.SUMMARY_CSV
    for name in ("ENV_TRACKING_URI", "LOCAL_STORE_FILE", "LOCAL_STORE"):
        assert getattr(report, name) == getattr(tracking_config, name)


def test_importing_analysis_pulls_in_neither_torch_nor_ray():
    code = ("import sys, analysis, analysis.report, analysis.diagnosis, analysis.frames, analysis.strategies; "
            "analysis.diagnose; heavy = [n for n in ('torch', 'ray', 'matplotlib', 'mlflow') if n in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_comparison_folder_diagnoses_each_strategys_trials(tmp_path, capsys):
    cmp = comparison_folder(tmp_path / "cmp")
    # The third is a sweep a Ctrl-C cut short: the comparison left it out of summary.csv (seeds 0-2).
    for strategy, seed, trials in (("random", 0, {"a": overfit()}), ("hyperopt", 1, {"a": good()}),
                                   ("random", 7, {"a": good()})):
        rows = {t: [{k: v for k, v in r.items() if k != m.TRIAL_ID} for r in recs] for t, recs in trials.items()}
        write_ray_folder(cmp / "ray_results" / f"compare-{strategy}-seed{seed}-20260101", rows)
    assert main([str(cmp), "--out", str(tmp_path / "out")]) == 0
    diagnoses = pd.read_csv(tmp_path / "out" / "diagnoses.csv").set_index(m.TRIAL_ID)
    assert diagnoses.loc["compare-random-seed0-20260101/a", m.TAG_DIAGNOSIS] == m.OVERFITTING
    assert diagnoses.loc["compare-hyperopt-seed1-20260101/a", "strategy"] == "hyperopt"
    assert len(diagnoses) == 2  # not the cut-short sweep
    assert "  random (1 trials): 1 overfitting\n" in capsys.readouterr().out
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Diagnoses by strategy" in html and html.count('<img alt="') == 4


def test_a_comparison_stored_elsewhere_is_found_with_its_strategies_names(tmp_path, capsys):
    cmp = comparison_folder(tmp_path / "cmp")
    summary = pd.read_csv(cmp / "summary.csv")
    summary.loc[summary["strategy"] == "hyperopt", "strategy"] = "hyperopt+asha"
    summary.to_csv(cmp / "summary.csv", index=False)
    (cmp / "compare_config.json").write_text(json.dumps({"strategies": ["random", "hyperopt+asha"], "stamp": "20260101",
                                                         "sweep": {"storage_path": str(tmp_path / "elsewhere")}}))
    rows = {"a": [{k: v for k, v in r.items() if k != m.TRIAL_ID} for r in good()]}
    write_ray_folder(tmp_path / "elsewhere" / "compare-hyperopt-asha-seed1-20260101", rows)
    write_ray_folder(tmp_path / "elsewhere" / "compare-random-seed1-20251231", rows)  # an earlier run's sweep
    assert main([str(cmp), "--out", str(tmp_path / "out")]) == 0
    diagnoses = pd.read_csv(tmp_path / "out" / "diagnoses.csv").set_index(m.TRIAL_ID)
    assert diagnoses.loc["compare-hyperopt-asha-seed1-20260101/a", "strategy"] == "hyperopt+asha"
    assert len(diagnoses) == 1  # only this run's sweeps
    for experiment in (tmp_path / "elsewhere").iterdir():
        experiment.rename(tmp_path / experiment.name)
    assert main([str(cmp), "--out", str(tmp_path / "out2")]) == 0
    assert "No Ray results of the comparison's sweeps found" in capsys.readouterr().out


@pytest.mark.parametrize("key, values, expected", [
    ("lr", [1e-4, 1e-2, 0.1], "log"),
    ("weight_decay", [0.0, 5e-4, 1e-3], "symlog"),
    ("filters", [16, 32, 64], "linear"),
    ("head_units", [8, 4096], "log"),
    ("momentum", [-0.1, 0.9], "linear"),
])
def test_x_scale(key, values, expected):
    from analysis.plots import x_scale

    assert x_scale(key, np.array(values, dtype=float))[0] == expected


def test_public_api_resolves():
    import analysis

    for name in analysis.__all__:
        assert callable(getattr(analysis, name)), name
    with pytest.raises(AttributeError):
        analysis.no_such_function


def test_the_tracking_uri_flag_takes_the_sweeps_spelling_too():
    # sweeps.cifar, sweeps.compare and sweeps.backfill spell it --mlflow-tracking-uri.
    for flag in ("--tracking-uri", "--mlflow-tracking-uri"):
        assert _parser().parse_args(["folder", flag, "http://127.0.0.1:5000"]).tracking_uri == "http://127.0.0.1:5000"


def test_a_diverged_trial_does_not_flatten_the_loss_gap_plot():
    from analysis import diagnose, tidy
    from analysis.plots import plot_gap

    exploded = [{**r, m.TRAIN_LOSS: 4.1e8 if r[m.EPOCH] == 3 else r[m.TRAIN_LOSS], m.TRIAL_ID: "boom"}
                for r in good()[:3]]
    frame = tidy(good() + exploded)
    diagnoses = diagnose(frame)
    assert dict(zip(diagnoses[m.TRIAL_ID], diagnoses[m.TAG_DIAGNOSIS]))["boom"] == m.DIVERGED_VERDICT
    acc_ax, loss_ax = plot_gap(frame, diagnoses=diagnoses).axes
    low, high = loss_ax.get_ylim()
    assert high - low < 10 and loss_ax.get_title() == "diverged trials left out"
    assert len(acc_ax.lines) == 3  # both trials' accuracy gaps and the zero line


def test_a_curves_title_names_the_config_and_an_end_other_than_completed():
    from analysis import diagnose, tidy
    from analysis.plots import plot_curves

    frame = tidy(overfit(lr=0.1, batch_size=128, epochs=20, dropout=0.1)
                 + good(lr=0.05, batch_size=128, epochs=20, dropout=0.2), end_states={"over": m.INTERRUPTED})
    fig = plot_curves(frame, ["good", "over"], diagnoses=diagnose(frame))
    titles = [ax.get_title(loc="left") for ax in fig.axes[::2]]
    # Only what the sweep searched, the lr first; not what all trials share (batch_size, epochs).
    assert titles == ["good: good_fit | lr=0.05 dropout=0.2", "over: overfitting (interrupted) | lr=0.1 dropout=0.1"]


def test_a_sweep_whose_trials_all_errored_before_an_epoch_says_why(tmp_path, capsys):
    for i in range(2):
        folder = tmp_path / "s" / f"train_cifar_ab12c_0000{i}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("")  # what Ray leaves when a trial fails before its first report
        (folder / "error.txt").write_text("Failure # 1 (occurred at x)\n  File ...\nRuntimeError: no CUDA GPUs\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "s"), "--no-mlflow"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "2 of the 2 trials errored before their first" in err and "'RuntimeError: no CUDA GPUs'" in err


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("from_env", [False, True])
def test_an_unreachable_tracking_server_fails_fast_before_any_work(ray_folder, capsys, monkeypatch, from_env):
    uri = f"http://alice:hunter22@127.0.0.1:{_free_port()}"
    argv = [str(ray_folder)]
    if from_env:  # a server that was up when the sweep ran and is down now
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    else:
        argv += ["--tracking-uri", uri]
    start = time.monotonic()
    err = _exit_2(argv, capsys)
    assert time.monotonic() - start < 30  # MLflow's own retries alone would take minutes
    assert "hunter22" not in err and "'http://***@127.0.0.1:" in err and "unreachable" in err
    assert "mlflow server" in err and "--no-mlflow" in err
    assert not (ray_folder / "report").exists()  # checked before anything was diagnosed or written
    assert main([str(ray_folder), "--no-mlflow"]) == 0  # the fix the message names


def test_reading_from_an_unreachable_server_names_it(capsys):
    err = _exit_2(["my-experiment", "--tracking-uri", f"http://127.0.0.1:{_free_port()}"], capsys)
    assert "unreachable" in err and "mlflow server" in err and "Ray experiment folder" in err


@pytest.mark.parametrize("uri, expected", [
    ("htp://localhost:5000", "Did you mean http://localhost:5000?"),
    ("localhost:5000", "Did you mean http://localhost:5000?"),
    ("http://", "it has no host"),
])
def test_a_malformed_tracking_uri_is_named_with_the_fix(ray_folder, tmp_path, capsys, uri, expected):
    err = _exit_2([str(ray_folder), "--tracking-uri", uri], capsys)
    assert f"MLflow tracking URI {uri!r}" in err and expected in err and "--no-mlflow" in err
    assert not (ray_folder / "report").exists() and not list(tmp_path.glob("localhost*"))


def test_an_unknown_parent_run_id_is_named(tmp_path, capsys):
    run_id = "0123456789abcdef0123456789abcdef"
    err = _exit_2([run_id, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], capsys)
    assert f"No MLflow run with id {run_id!r}" in err


@pytest.mark.parametrize("out", ["taken.html", "taken.html/report"])
def test_an_out_path_that_is_a_file_is_refused_before_any_work(ray_folder, tmp_path, capsys, out):
    (tmp_path / "taken.html").write_text("someone's file")
    err = _exit_2([str(ray_folder), "--out", str(tmp_path / out)], capsys)
    assert "taken.html" in err and "is a file" in err and "--out" in err
    assert (tmp_path / "taken.html").read_text() == "someone's file"


def test_mlflow_failing_midway_keeps_the_report_and_says_how_to_publish_it(ray_folder, tmp_path, capsys):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    # The store answers (tags get written) but its artifact folder cannot be made: a file is in the way.
    (tmp_path / "blocker").write_text("not a folder")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "blocker" / "artifacts").as_uri())
    parent = client.create_run(experiment, tags={m.TAG_ROLE: m.ROLE_PARENT, m.TAG_SWEEP_NAME: ray_folder.name})
    for trial_id in ("over", "good"):
        client.create_run(experiment, tags={"mlflow.parentRunId": parent.info.run_id, m.TAG_TRIAL_ID: trial_id})
    out = tmp_path / "out"
    capsys.readouterr()  # MLflow's own lines from creating the store above
    assert main([str(ray_folder), "--tracking-uri", uri, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"The report is at {out / 'report.html'}" in err and "run the same command again" in err
    assert (out / "report.html").is_file() and (out / "diagnoses.csv").is_file()


def test_a_comparisons_errored_trials_get_their_error_and_strategy_even_before_an_epoch(tmp_path, capsys):
    cmp = comparison_folder(tmp_path / "cmp")
    results = cmp / "ray_results"
    rows = {t: [{k: v for k, v in r.items() if k != m.TRIAL_ID} for r in good()] for t in ("a", "b")}
    write_ray_folder(results / "compare-random-seed0-20260101", rows, errored=("b",))
    failed = results / "compare-random-seed0-20260101" / "train_ab12c_00002_2"  # failed before its first report
    failed.mkdir()
    (failed / "result.json").write_text("")
    (failed / "error.txt").write_text("Failure # 1 (occurred at x)\nRuntimeError: no CUDA GPUs\n")
    # A sweep of the comparison whose only trial failed before its first epoch.
    only = results / "compare-hyperopt-seed1-20260101" / "train_ab12c_00000_0"
    only.mkdir(parents=True)
    (only / "result.json").write_text("")
    (only / "error.txt").write_text("Failure # 1 (occurred at x)\nValueError: the space is bad\n")
    assert main([str(cmp), "--out", str(tmp_path / "out")]) == 0
    diagnoses = pd.read_csv(tmp_path / "out" / "diagnoses.csv").set_index(m.TRIAL_ID)
    assert len(diagnoses) == 4
    assert diagnoses.loc["compare-random-seed0-20260101/b", "evidence"].endswith("; errored: boom")
    before = diagnoses.loc["compare-random-seed0-20260101/ab12c_00002"]
    assert (before["strategy"], before["seed"], before[m.TAG_DIAGNOSIS]) == ("random", 0, m.INCONCLUSIVE)
    assert "RuntimeError: no CUDA GPUs" in before["evidence"]
    only_row = diagnoses.loc["compare-hyperopt-seed1-20260101/ab12c_00000"]
    assert (only_row["strategy"], only_row["seed"]) == ("hyperopt", 1)
    assert "ValueError: the space is bad" in only_row["evidence"]
    out = capsys.readouterr().out
    assert "  hyperopt (1 trials): 1 inconclusive\n" in out and "3 trials errored (2 before their first epoch)" in out


def test_a_comparison_whose_every_trial_failed_before_an_epoch_is_still_diagnosed(tmp_path, capsys):
    cmp = comparison_folder(tmp_path / "cmp")
    only = cmp / "ray_results" / "compare-random-seed2-20260101" / "train_ab12c_00000_0"
    only.mkdir(parents=True)
    (only / "result.json").write_text("")
    (only / "error.txt").write_text("Failure # 1 (occurred at x)\nRuntimeError: no CUDA GPUs\n")
    assert main([str(cmp), "--out", str(tmp_path / "out")]) == 0
    diagnoses = pd.read_csv(tmp_path / "out" / "diagnoses.csv")
    assert list(diagnoses["strategy"]) == ["random"] and "no CUDA GPUs" in diagnoses["evidence"][0]
    assert "No Ray results" not in capsys.readouterr().out


def test_mlflow_failing_while_the_sweep_is_read_names_it_without_a_traceback(tmp_path, capsys):
    import sqlite3

    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.create_experiment("e")
    parent = client.create_run(experiment, tags={m.TAG_ROLE: m.ROLE_PARENT})
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent.info.run_id, m.TAG_TRIAL_ID: "a"})
    client.log_metric(child.info.run_id, m.VAL_ACC, 0.5, step=1)
    # The store answers the up-front check, then fails on the metric history: a real store error
    # after the check, as a server that goes down mid-read gives.
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE metrics")
    capsys.readouterr()
    assert main([parent.info.run_id, "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "out")]) == 1
    # MLflow's SQL store logs the database error with its traceback itself; ours is one line, last.
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "failed while the sweep was read" in err and "no such table: metrics" in err
    assert "Ray experiment folder" in err and "run the same command again" in err
    assert not (tmp_path / "out").exists()
