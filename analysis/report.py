"""``python -m analysis.report <sweep>``: diagnose every trial, plot, write a self-contained report.

<sweep> is a Ray Tune experiment folder (one folder per trial with result.json), a
``sweeps.compare`` output folder (anytime.csv / summary.csv), or, with --tracking-uri, an MLflow
experiment name or parent run id. The report folder gets ``report.html`` (plots embedded as
base64 PNG), the PNGs, ``diagnoses.csv`` and, for a comparison, ``strategies.csv``. With a
tracking URI the verdicts are written as tags on the trials' child runs and the report is
logged to the parent run (both overwrite on a re-run).
"""
from __future__ import annotations

import argparse
import base64
import html
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from analysis.diagnosis import ADVICE, DIAGNOSIS_EPOCH, EVIDENCE, N_EPOCHS, VERDICT, diagnose
from analysis.errors import trial_errors
from analysis.frames import (END_STATE, load_comparison_errors, load_comparison_trials, load_ray_results,
                             not_ended_trials, searched_columns, trial_folders)
from analysis.strategies import (SEED, STRATEGY, format_strategy_table, is_comparison_folder, load_comparison,
                                 strategy_table)
from analysis.thresholds import DiagnosisThresholds, thresholds_from_json, thresholds_from_mapping
from trainables import metrics as m
from trainables.paths import folder_problem

MAX_CURVE_TRIALS = 8  # best + flagged trials drawn in the curves figure; more is unreadable
MAX_TABLE_HYPERPARAMETERS = 10  # searched hyperparameters shown in the HTML table; all are in diagnoses.csv
FLAGGED = (m.OVERFITTING, m.UNDERFITTING, m.DIVERGED_VERDICT)
DIAGNOSES_CSV = "diagnoses.csv"
STRATEGIES_CSV = "strategies.csv"
REPORT_HTML = "report.html"


@dataclass
class Report:
    """What build_report wrote: the folder, its files, the diagnoses and a short summary."""

    out_dir: Path
    html: Path
    diagnoses: pd.DataFrame | None
    images: dict[str, Path] = field(default_factory=dict)
    strategies: pd.DataFrame | None = None
    summary: str = ""


def curve_trials(diagnoses: pd.DataFrame, *, limit: int = MAX_CURVE_TRIALS) -> list[str]:
    """The best trial (highest best val_acc) first, then flagged trials, at most ``limit``."""
    ranked = diagnoses.sort_values("best_val_acc", ascending=False, na_position="last") \
        if "best_val_acc" in diagnoses else diagnoses
    chosen = [str(ranked[m.TRIAL_ID].iloc[0])] if len(ranked) else []
    for verdict in FLAGGED:
        for trial_id in ranked.loc[ranked[VERDICT] == verdict, m.TRIAL_ID].astype(str):
            if trial_id not in chosen:
                chosen.append(trial_id)
    return chosen[:limit]


def verdicts_by_strategy(diagnoses: pd.DataFrame) -> pd.DataFrame:
    """Trials per verdict for each strategy of a comparison (counts over all its seeds), with n."""
    table = pd.crosstab(diagnoses[STRATEGY], diagnoses[VERDICT]).reindex(
        columns=[v for v in m.VERDICTS if v in set(diagnoses[VERDICT])], fill_value=0)
    table["n trials"] = table.sum(axis=1)
    return table


def _trials(n: int) -> str:
    return f"{n} trial{'' if n == 1 else 's'}"


def summarize(diagnoses: pd.DataFrame | None, strategies: pd.DataFrame | None) -> str:
    lines = []
    if diagnoses is not None:
        counts = diagnoses[VERDICT].value_counts()
        parts = ", ".join(f"{counts[v]} {v}" for v in m.VERDICTS if v in counts)
        lines.append(f"{len(diagnoses)} trials: {parts}.")
        if STRATEGY in diagnoses:
            for strategy, row in verdicts_by_strategy(diagnoses).iterrows():
                counts_text = ", ".join(f"{n} {v}" for v, n in row.drop("n trials").items() if n)
                lines.append(f"  {strategy} ({row['n trials']} trials): {counts_text}")
        if "best_val_acc" in diagnoses and diagnoses["best_val_acc"].notna().any():
            best = diagnoses.loc[diagnoses["best_val_acc"].idxmax()]
            lines.append(f"Best trial {best[m.TRIAL_ID]}: val_acc {best['best_val_acc']:.4f} at epoch "
                         f"{int(best['best_val_acc_epoch'])} ({best[VERDICT]}).")
        for verdict in FLAGGED:
            for row in diagnoses[diagnoses[VERDICT] == verdict].head(3).to_dict("records"):
                lines.append(f"  {row[m.TRIAL_ID]} {verdict} @ epoch {row[DIAGNOSIS_EPOCH]}: {row[ADVICE]}")
        if END_STATE in diagnoses:
            errored = diagnoses[diagnoses[END_STATE] == m.ERRORED]
            if len(errored):
                before = int((errored[N_EPOCHS] == 0).sum()) if N_EPOCHS in errored else 0
                lines.append(f"{len(errored)} trials errored ({before} before their first epoch); the error is in "
                             "each one's evidence, the traceback in its trial folder's error.txt.")
            cut = diagnoses[diagnoses[END_STATE] == m.INTERRUPTED]
            unfinished = diagnoses[diagnoses[END_STATE] == m.UNFINISHED]
            if len(cut):
                lines.append(f"{_trials(len(cut))} cut off by an interrupt ({m.INTERRUPTED}): their verdicts read "
                             "the curves so far; python -m sweeps.cifar --resume runs them on, then report again.")
            if len(unfinished):
                lines.append(f"{_trials(len(unfinished))} had not ended ({m.UNFINISHED}: running or pending, or the "
                             "sweep stopped without recording an end): their verdicts read the curves so far; "
                             "report again once the sweep has ended.")
    if strategies is not None:
        for row in strategies.to_dict("records"):
            lines.append(f"Strategy {row['strategy']}: best_val_acc median {row['best_val_acc_median']:.4f} "
                         f"(IQR {row['best_val_acc_q25']:.4f}-{row['best_val_acc_q75']:.4f}, n={row['n']} seeds).")
    return "\n".join(lines)


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;"
        "vertical-align:top;text-align:left}img{max-width:100%}figcaption{font-size:12px;color:#555}")


def render_html(report: Report, *, title: str, captions: dict[str, str]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<pre>{html.escape(report.summary)}</pre>"]
    if report.diagnoses is not None:
        cols = [m.TRIAL_ID, VERDICT, DIAGNOSIS_EPOCH, END_STATE, "n_epochs", "best_val_acc",
                # The table reads against the hyperparameters without diagnoses.csv beside it.
                *searched_columns(report.diagnoses)[:MAX_TABLE_HYPERPARAMETERS], EVIDENCE, ADVICE]
        table = report.diagnoses[[c for c in cols if c in report.diagnoses]].rename(
            columns=lambda c: c.removeprefix(m.CONFIG_PREFIX))
        parts += ["<h2>Diagnosis per trial</h2>", table.to_html(index=False, float_format="{:.4g}".format)]
    if report.strategies is not None:
        parts += ["<h2>Strategy comparison</h2>",
                  format_strategy_table(report.strategies).to_html(index=False)]
    if report.diagnoses is not None and STRATEGY in report.diagnoses:
        parts += ["<h2>Diagnoses by strategy (trials, all seeds)</h2>",
                  verdicts_by_strategy(report.diagnoses).to_html()]
    parts.append("<h2>Figures</h2>")
    parts += [_img(path, captions.get(name, name)) for name, path in report.images.items()]
    parts.append("</body></html>")
    return "\n".join(parts)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=90)
    return path


def build_report(frame: pd.DataFrame | None, *, out_dir: str | Path, thresholds: DiagnosisThresholds | None = None,
                 comparison_dir: str | Path | None = None, title: str = "Sweep report",
                 errors: Mapping[str, str] | None = None,
                 origins: Mapping[str, Mapping[str, object]] | None = None,
                 not_ended: Mapping[str, str] | None = None) -> Report:
    """Diagnose ``frame`` (may be None for a comparison only), plot, and write the report folder.
    ``errors``: trial id -> error line of the sweep's failed trials; ``origins``: trial id -> the
    strategy and seed of a comparison's trials that failed before an epoch; ``not_ended``: trial id
    -> INTERRUPTED or UNFINISHED (see ``diagnosis.diagnose``)."""
    from analysis import plots  # matplotlib only when a report is drawn

    if frame is None and comparison_dir is None and not errors and not not_ended:
        raise ValueError("build_report needs a trial frame, a comparison folder, or both.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out, html=out / REPORT_HTML, diagnoses=None)
    captions = {}
    if frame is not None or errors or not_ended:  # without a frame: no trial ran an epoch
        report.diagnoses = diagnose(frame, thresholds=thresholds, errors=errors, origins=origins, not_ended=not_ended)
        report.diagnoses.to_csv(out / DIAGNOSES_CSV, index=False)
    if frame is not None:
        chosen = curve_trials(report.diagnoses)
        figures = {"curves": plots.plot_curves(frame, chosen, diagnoses=report.diagnoses),
                   "gap": plots.plot_gap(frame, diagnoses=report.diagnoses),
                   "hyperparameters": plots.plot_hyperparameters(frame, diagnoses=report.diagnoses)}
        captions.update(curves=f"Train vs validation curves of the best and flagged trials ({', '.join(chosen)}); "
                               "dashed line = the epoch where the verdict shows.",
                        gap="Generalisation gap over epochs, coloured by verdict.",
                        hyperparameters="Final val_acc against each searched hyperparameter.")
        for name, fig in figures.items():
            report.images[name] = _save(fig, out / f"{name}.png")
    if comparison_dir is not None:
        anytime, summary = load_comparison(comparison_dir)
        if summary is not None:
            report.strategies = strategy_table(summary)
            report.strategies.to_csv(out / STRATEGIES_CSV, index=False)
        if anytime is not None:
            report.images["anytime"] = _save(plots.plot_anytime(anytime), out / "anytime.png")
            captions["anytime"] = "Best-so-far val_acc against compute (trial-epochs), median over seeds, IQR band."
    report.summary = summarize(report.diagnoses, report.strategies)
    report.html.write_text(render_html(report, title=title, captions=captions))
    return report


def publish(report: Report, *, tracking_uri: str | None, parent_ref: str | None = None,
            sweep_name: str | None = None) -> tuple[list[str], int]:
    """Tag each trial's child run with its diagnosis and log the report to the parent run(s).

    The parent is ``parent_ref`` (run id or experiment name) or, for a Ray folder, the parent of
    ``sweep_name`` that holds these trials. For a comparison's trials (ids "<experiment>/<trial>")
    each experiment's own parent is used. Returns the parent run ids written to and how many
    trial runs were tagged.
    """
    from analysis import mlflow_io

    client = mlflow_io.client_for(tracking_uri)
    trial_ids = [str(t) for t in report.diagnoses[m.TRIAL_ID]] if report.diagnoses is not None else []
    if parent_ref is not None:
        parents = {"": mlflow_io.resolve_parent(client, parent_ref)}
    elif sweep_name is not None:
        parents = {"": mlflow_io.parent_for_sweep(client, sweep_name, trial_ids)}
    else:
        names = sorted({t.split("/", 1)[0] for t in trial_ids})
        parents = {f"{name}/": mlflow_io.parent_for_sweep(
            client, name, [t.split("/", 1)[1] for t in trial_ids if t.startswith(f"{name}/")]) for name in names}
    written, tagged = [], 0
    for prefix, parent in parents.items():
        if parent is None:
            continue
        if report.diagnoses is not None:
            run_ids = {prefix + t: r for t, r in mlflow_io.trial_run_ids(client, parent).items()}
            tagged += mlflow_io.write_diagnosis_tags(client, report.diagnoses, run_ids=run_ids)
        mlflow_io.log_report(client, parent.info.run_id, report.out_dir)
        written.append(parent.info.run_id)
    return written, tagged




# Where the sweeps log by default (sweeps/tracking_config.py; kept here because analysis never
# imports sweeps; a test checks they match).
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
LOCAL_STORE_FILE = "mlflow.db"
LOCAL_STORE = f"sqlite:///{LOCAL_STORE_FILE}"


def _default_tracking_uri() -> str | None:
    """Where the sweep logged by default, so the report's tags land next to its runs."""
    return os.environ.get(ENV_TRACKING_URI) or (LOCAL_STORE if Path(LOCAL_STORE_FILE).exists() else None)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)  # each help names its own default
    p.add_argument("sweep", help="Ray experiment folder, sweeps.compare folder, or (with --tracking-uri) an "
                                 "MLflow experiment name / parent run id")
    # --mlflow-tracking-uri: the spelling sweeps.cifar, sweeps.compare and sweeps.backfill use.
    p.add_argument("--tracking-uri", "--mlflow-tracking-uri", dest="tracking_uri", default=_default_tracking_uri(),
                   help="MLflow tracking URI: read from it / write tags and the report to it (default: "
                        f"${ENV_TRACKING_URI}, else the sweeps' local store {LOCAL_STORE} when ./mlflow.db exists)")
    p.add_argument("--out", help="report folder (default <sweep>/report, or ./reports/<name> for MLflow)")
    p.add_argument("--compare", help="a sweeps.compare folder to add the strategy comparison from")
    p.add_argument("--no-mlflow", action="store_true", help="do not write tags or the report to MLflow")
    p.add_argument("--thresholds", help="JSON object or file overriding diagnosis thresholds")
    group = p.add_argument_group("diagnosis thresholds (see analysis/thresholds.py for why each default)")
    for f in fields(DiagnosisThresholds):
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"th_{f.name}", type=type(f.default),
                           default=None, metavar="N" if isinstance(f.default, int) else "X",
                           help=f"default {f.default}")
    return p


def _thresholds(args: argparse.Namespace) -> DiagnosisThresholds:
    base = thresholds_from_json(args.thresholds) if args.thresholds else DiagnosisThresholds()
    flags = {f.name: getattr(args, f"th_{f.name}") for f in fields(DiagnosisThresholds)
             if getattr(args, f"th_{f.name}") is not None}
    return thresholds_from_mapping(flags, base=base)


def _has_trials(path: Path) -> bool:
    try:
        trial_folders(path)
    except ValueError:
        return False
    return True


def _out_dir(args: argparse.Namespace, source: Path) -> Path:
    if args.out:
        return Path(args.out)
    return source / "report" if source.is_dir() else Path("reports") / args.sweep


def _check_out_dir(out: Path) -> None:
    """The report folder must be a folder or makeable: refuse a file in the way before any work,
    not at mkdir after the diagnosis."""
    problem = folder_problem(out)
    if problem:
        raise ValueError(f"The report folder {str(out)!r} cannot be made: {problem}. Pass --out a new or existing folder (the "
                         "report is several files), or move the file.")


def _store_fix(*, reads_mlflow: bool) -> str:
    fix = ("Fix: start the server (mlflow server --host 127.0.0.1 --port 5000), or pass the right URI with "
           f"--tracking-uri / ${ENV_TRACKING_URI} (e.g. http://localhost:5000, or {LOCAL_STORE} in the folder the "
           "sweep ran in)")
    # --no-mlflow only helps where MLflow is written to; a sweep read from MLflow needs it.
    return fix + (", or pass the sweep's Ray experiment folder instead." if reads_mlflow else
                  ", or pass --no-mlflow to write the report only.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        thresholds = _thresholds(args)  # bad thresholds fail before anything is read
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    if args.tracking_uri == "":
        parser.error(f"--tracking-uri is empty (an unset ${ENV_TRACKING_URI}?). Export it, pass the URI, or pass "
                     "--no-mlflow to write the report only.")
    source = Path(args.sweep)
    missing = (f"{args.sweep!r} is not a folder (no such directory). Pass a Ray experiment folder (<storage "
               "path>/<sweep name>) or a sweeps.compare folder")
    path_like = not source.is_dir() and (os.sep in args.sweep or args.sweep.startswith("."))
    if path_like and not args.tracking_uri:
        parser.error(missing + ".")
    out = _out_dir(args, source)
    try:
        _check_out_dir(out)
    except ValueError as err:
        parser.error(str(err))
    reads_mlflow = not source.is_dir()
    if args.tracking_uri and (reads_mlflow or not args.no_mlflow):
        from analysis import mlflow_io

        try:  # before anything is read or diagnosed: a dead server fails in seconds, not after the work
            mlflow_io.check_store(args.tracking_uri, fix=_store_fix(reads_mlflow=reads_mlflow))
        except mlflow_io.TrackingStoreError as err:
            parser.error(f"{missing}, and MLflow could not be asked: {err}" if path_like else str(err))
    try:
        return _run(args, source=source, out=out, thresholds=thresholds)
    except ValueError as err:  # a folder without trials, an unknown MLflow run or experiment
        # A name with "/" may be an MLflow experiment (Databricks names are paths): MLflow was asked
        # first, and when it has no such run either, both readings are named.
        parser.error(f"{missing}, nor in MLflow: {err}" if path_like else str(err))


def _mlflow_failed(uri: str, exc: BaseException, *, while_: str, then: str) -> int:
    """One line on stderr for MLflow failing after the up-front check; the exit code 1."""
    from analysis.mlflow_store import failure_reason
    from analysis.redact import redact_uri

    print(f"MLflow at {redact_uri(uri)!r} failed while {while_} ({failure_reason(exc)}). {then}", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace, *, source: Path, out: Path, thresholds: DiagnosisThresholds) -> int:
    comparison = args.compare or (str(source) if source.is_dir() and is_comparison_folder(source) else None)
    frame, parent_ref, sweep_name, errors, origins, not_ended = None, None, None, {}, {}, {}
    if source.is_dir():
        if _has_trials(source) or comparison is None:
            frame = load_ray_results(source)  # raises with a hint when the folder holds no trials
            errors, not_ended = trial_errors(source), not_ended_trials(source)
            sweep_name = source.resolve().name
        else:  # a comparison folder: diagnose its sweeps' trials too, when their Ray results are there
            frame = load_comparison_trials(source, strategy_col=STRATEGY, seed_col=SEED)
            errors, origins = load_comparison_errors(source, strategy_col=STRATEGY, seed_col=SEED)
            if frame is None and not errors:
                print(f"No Ray results of the comparison's sweeps found (looked in its --storage-path and "
                      f"{source / 'ray_results'}): the report has the strategy table only, no per-trial "
                      "diagnosis and no MLflow tags.")
    elif args.tracking_uri:
        from analysis import mlflow_io

        try:
            sweep = mlflow_io.read_sweep(args.sweep, tracking_uri=args.tracking_uri)
        except ValueError:  # no such run or experiment, no epochs: main names the fix
            raise
        except Exception as exc:  # the server went down after the up-front check, a timeout, auth
            return _mlflow_failed(args.tracking_uri, exc, while_="the sweep was read", then=(
                "Nothing was written; run the same command again once MLflow works, or pass the sweep's Ray "
                "experiment folder instead."))
        frame, errors, parent_ref = sweep.frame, sweep.errors, sweep.parent.info.run_id
        not_ended = sweep.not_ended
        if parent_ref != args.sweep:  # an experiment name: say which of its sweeps this is
            print(f"MLflow experiment {args.sweep!r}: its latest sweep, "
                  f"{sweep.parent.data.tags.get(m.TAG_SWEEP_NAME, '?')} (parent run {parent_ref}); pass a parent "
                  "run id to report on another.")
    else:
        raise ValueError(f"{args.sweep!r} is not a folder. Pass a Ray experiment folder or a sweeps.compare "
                         "folder, or an MLflow experiment name / parent run id together with --tracking-uri.")
    report = build_report(frame, out_dir=out, thresholds=thresholds, comparison_dir=comparison,
                          title=f"Sweep report: {source.name or args.sweep}", errors=errors, origins=origins,
                          not_ended=not_ended)
    print(report.summary)
    print(f"Report: {report.html}")
    if args.tracking_uri and not args.no_mlflow and report.diagnoses is not None:
        try:
            parents, tagged = publish(report, tracking_uri=args.tracking_uri, parent_ref=parent_ref,
                                      sweep_name=sweep_name)
        except Exception as exc:  # the server went down after the check, a full or unwritable artifact store
            return _mlflow_failed(args.tracking_uri, exc, while_="publishing", then=(
                f"The report is at {report.html}; to log it to MLflow, run the same command again once MLflow "
                "works (it overwrites, never duplicates)."))
        total = 0 if report.diagnoses is None else len(report.diagnoses)
        print(f"MLflow: tagged {tagged} of {total} trial runs and logged the report to parent run(s) "
              f"{', '.join(parents)}" if parents else
              f"MLflow: no sweep parent run ({m.TAG_ROLE}={m.ROLE_PARENT}) holds these trials; nothing written. "
              "Backfill the sweep into MLflow first (python -m sweeps.backfill <folder>).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
