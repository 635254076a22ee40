"""``python -m trainables.cifar``: train one trial without Ray, from a config file and/or flags.

The output folder holds ``metrics.jsonl`` (or ``metrics.csv``), the latest ``checkpoint/`` and,
with ``--evaluate-test``, ``test_metrics.json``; ``--resume`` continues from that checkpoint.
Every user error (bad file, unknown key, out-of-range value, missing data) exits with status 2
and a message naming the value, the rule and the fix, before any training starts.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from trainables import metrics
from trainables.checkpoint import CHECKPOINT_FILE, check_same_config, read_checkpoint, read_config
from trainables.cifar import check_fits_data, evaluate_checkpoint, resolve_device, train_trial
from trainables.config import CONFIG_KEYS, DEVICES, TrialConfig
from trainables.config_file import parse_file
from trainables.data import default_data_dir, load_cifar10
from trainables.model import plan_layers
from trainables.paths import folder_problem
from trainables.reporting import CHECKPOINT_DIR, JsonLinesReporter, MemoryReporter, recover_checkpoint

METRICS_FORMATS = {"jsonl": "metrics.jsonl", "csv": "metrics.csv"}
TEST_METRICS_FILE = "test_metrics.json"


class UsageError(ValueError):
    """A user mistake on the command line; reported with exit status 2."""


class CsvReporter(MemoryReporter):
    """Appends each report as a CSV row (header written once, with the first row)."""

    def __init__(self, path: str | Path, checkpoint_root: str | Path | None = None, *,
                 resume_from: str | Path | None = None):
        super().__init__(checkpoint_root, resume_from=resume_from)
        self.path = Path(path)

    def report(self, result: Mapping[str, Any], *, checkpoint_dir: str | None = None) -> None:
        super().report(result, checkpoint_dir=checkpoint_dir)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(result))
            if new:
                writer.writeheader()
            writer.writerow(dict(result))


class PrintingReporter:
    """Prints one line per epoch, then hands the report on."""

    def __init__(self, inner: MemoryReporter):
        self.inner = inner

    def report(self, result: Mapping[str, Any], *, checkpoint_dir: str | None = None) -> None:
        print(format_epoch(result), flush=True)
        self.inner.report(result, checkpoint_dir=checkpoint_dir)

    def restore_dir(self) -> str | None:
        return self.inner.restore_dir()


def format_epoch(r: Mapping[str, Any]) -> str:
    flags = "".join(f" [{name}]" for name in (metrics.DIVERGED, metrics.EARLY_STOPPED) if r.get(name))
    return (f"epoch {r[metrics.EPOCH]:>3}  train_loss {r[metrics.TRAIN_LOSS]:.4f}  train_acc {r[metrics.TRAIN_ACC]:.4f}"
            f"  val_loss {r[metrics.VAL_LOSS]:.4f}  val_acc {r[metrics.VAL_ACC]:.4f}  lr {r[metrics.LR]:.3g}"
            f"  {r[metrics.IMAGES_PER_S]:.0f} img/s  {r[metrics.EPOCH_TIME_S]:.1f}s{flags}")


def parse_value(text: str) -> Any:
    """A --set value: JSON first (so 1e-3 is a float), then YAML (True, yes), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"The value of `--set` is {pair!r}, but must look like key=value. "
                             "Write e.g. --set lr=0.01.")
        out[key.strip()] = parse_value(value.strip())
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A flat mapping of config keys from JSON or YAML; ``model:``/``train:`` sections are flattened."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"The value of `--config` is {str(path)!r}, but no such file exists. "
                         "Give a JSON or YAML file.")
    try:
        loaded = parse_file(path)
    except ValueError as exc:
        raise UsageError(f"Config file {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"Config file {path} holds a {type(loaded).__name__}, but must hold a mapping of config "
                         "keys to values, e.g. `lr: 0.01`.")
    flat: dict[str, Any] = {}
    where: dict[str, str] = {}
    for section, value in loaded.items():
        items = value.items() if section in ("model", "train") and isinstance(value, dict) else [(section, value)]
        for key, item in items:
            place = f"`{section}:`" if section in ("model", "train") and isinstance(value, dict) else "the top level"
            home = CONFIG_KEYS.get(key)
            if place != "the top level" and home is not None and home != section:
                raise UsageError(f"Config file {path} puts `{key}` under `{section}:`, but it is a {home} key. "
                                 f"Move it under `{home}:` (or to the top level).")
            if key in flat:
                raise UsageError(f"Config file {path} sets `{key}` twice (under {where[key]} and under {place}), "
                                 "and only one would take effect. Keep one of them.")
            flat[key], where[key] = item, place
    return flat


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainables.cifar",
        description="Train one CIFAR-10 trial without Ray, from a config file and/or flags.",
        epilog="The output folder gets metrics.jsonl (or metrics.csv), the latest checkpoint/ and, with "
               "--evaluate-test, test_metrics.json. Bad input exits with status 2 before training.",
        allow_abbrev=False)  # an abbreviated flag must not silently mean whichever flag it prefixes
    p.add_argument("--config", help="JSON or YAML file with flat config keys (see trainables/config.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable), e.g. --set lr=0.01")
    p.add_argument("--epochs", type=int, help="shorthand for --set epochs=N")
    p.add_argument("--data-dir", help="cifar-10-batches-py folder or its parent (default: $CIFAR10_DIR, "
                                      "./data/cifar-10-batches-py or ../shared/data/cifar-10-batches-py)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download CIFAR-10 with torchvision when the data folder is missing; "
                        "--no-download fails instead (default: yes)")
    p.add_argument("--device", choices=DEVICES, help="auto: cuda, else mps, else cpu (default: auto; on --resume "
                   "the device the run started on)")
    p.add_argument("--num-threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--output", default="runs/cifar", help="folder for metrics and the checkpoint (default: runs/cifar)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    p.add_argument("--metrics-format", choices=sorted(METRICS_FORMATS),
                   help="JSON lines or CSV (default: jsonl; on --resume the run's own)")
    p.add_argument("--evaluate-test", action="store_true",
                   help="after training, report test loss/accuracy of the final checkpoint")
    return p


def resolve_run_settings(args: argparse.Namespace) -> None:
    """--metrics-format and --device: on --resume, the run's own where not given (it must keep
    writing the file it started, on the kind of device its RNG state belongs to); refused where
    given otherwise. Elsewhere the defaults, jsonl and auto."""
    out = Path(args.output)
    if args.resume:
        recover_checkpoint(out)  # a crash mid-swap leaves the checkpoint aside: read the run's own
    present = [fmt for fmt, name in METRICS_FORMATS.items() if (out / name).is_file()]
    if args.resume and present:
        if len(present) > 1:
            raise UsageError(f"{str(out)!r} holds both {' and '.join(METRICS_FORMATS[f] for f in present)}: two runs' "
                             "metrics. Keep the file of the run to resume and move the other away.")
        if args.metrics_format not in (None, present[0]):
            raise UsageError(f"The value of `--metrics-format` is {args.metrics_format!r}, but the run in {str(out)!r} "
                             f"writes {METRICS_FORMATS[present[0]]}. Drop --metrics-format to continue it.")
        args.metrics_format = present[0]
    args.metrics_format = args.metrics_format or "jsonl"
    ckpt = out / CHECKPOINT_DIR
    if args.resume and (ckpt / CHECKPOINT_FILE).is_file():
        started_on = read_checkpoint(ckpt)["rng"].get("generator_device")
        if started_on is not None and args.device is None:
            try:
                resolve_device(started_on)
            except ValueError:
                raise UsageError(f"The run in {str(out)!r} started on {started_on}, and this machine has none; a run "
                                 f"resumes on the kind of device it started on (its shuffling and augmentation draw "
                                 f"from that device's RNG). Resume it on a machine with {started_on}, or start a "
                                 "fresh run with another --output.") from None
            args.device = started_on
        elif started_on is not None and resolve_device(args.device).type != started_on:
            raise UsageError(f"The value of `--device` is {args.device!r}, but the run in {str(out)!r} started on "
                             f"{started_on}, and a run resumes on the kind of device it started on (its shuffling "
                             f"and augmentation draw from that device's RNG). Pass --device {started_on}, or start "
                             "a fresh run with another --output.")
    args.device = args.device or "auto"


def resolve_config(args: argparse.Namespace) -> TrialConfig:
    """On --resume the checkpoint's config, then the file, then --set, then --epochs."""
    flat: dict[str, Any] = {}
    ckpt = Path(args.output) / CHECKPOINT_DIR  # recovered from a crash mid-swap by resolve_run_settings
    if args.resume and (ckpt / CHECKPOINT_FILE).is_file():
        flat.update(read_config(ckpt))  # so `--resume` alone continues; overrides must still match it
    if args.config:
        flat.update(read_config_file(args.config))
    flat.update(parse_sets(args.set))
    if args.epochs is not None:
        flat["epochs"] = args.epochs
    cfg = TrialConfig.from_dict(flat)
    plan_layers(cfg.model)
    return cfg


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The whole metrics rows a run wrote so far (CSV values stay strings), and how many lines were
    not whole rows (a line a kill cut short): those are left out."""
    if not path.is_file():
        return [], 0
    rows, broken = [], 0
    with path.open(newline="") as f:
        if path.suffix == ".csv":
            for row in csv.DictReader(f):
                if None not in row and None not in row.values() and row.get(metrics.EPOCH, "").strip():
                    rows.append(row)
                else:
                    broken += 1
            return rows, broken
        for line in f:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                broken += 1
    return rows, broken


def _epoch_of(row: Mapping[str, Any]) -> int:
    return int(float(row[metrics.EPOCH]))


def _diverged(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and float(rows[-1].get(metrics.DIVERGED) or 0) == 1


def check_output(args: argparse.Namespace, cfg: TrialConfig) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); refuses to mix two runs in one folder."""
    out = Path(args.output)
    ckpt = out / CHECKPOINT_DIR
    metrics_file = out / METRICS_FORMATS[args.metrics_format]
    if not args.resume:  # a fresh run refuses a folder holding either format's run
        metrics_file = next((out / n for n in METRICS_FORMATS.values() if (out / n).is_file()), metrics_file)
    rows, _ = read_rows(metrics_file)
    if args.resume:
        if _diverged(rows):
            # No checkpoint is written for the diverged epoch: resuming would run it again from the
            # epoch before, with the same batches, and diverge again.
            raise UsageError(f"The run in {str(out)!r} diverged at epoch {_epoch_of(rows[-1])}; there is nothing to "
                             "resume. Start a fresh run with another --output (e.g. with a lower lr).")
        if not (ckpt / CHECKPOINT_FILE).is_file():
            raise UsageError(f"`--resume` was given, but {ckpt / CHECKPOINT_FILE} does not exist. "
                             "Drop --resume to start fresh, or point --output at a run's folder.")
        check_same_config(read_config(ckpt), cfg.to_dict(), where=str(ckpt))
        return ckpt
    if metrics_file.exists() or ckpt.exists():
        if _diverged(rows):
            raise UsageError(f"The value of `--output` is {str(out)!r}, but it holds a run that diverged at epoch "
                             f"{_epoch_of(rows[-1])}. Choose another --output, or delete that folder to reuse it.")
        raise UsageError(f"The value of `--output` is {str(out)!r}, but it already holds a run. Pass --resume to "
                         "continue it, or choose another --output (or delete that folder to reuse it).")
    return None


def reconcile_metrics(path: Path, ckpt: Path) -> int:
    """Make the metrics file end at the checkpoint's epoch before a resume appends to it.

    A kill between an epoch's checkpoint and its metrics row (or the reverse) leaves the file one
    row short or ahead; the resumed run would then skip a row or write one twice. The checkpoint
    keeps its epoch's row, so a missing one is restored from it. Returns the rows changed.
    """
    state = read_checkpoint(ckpt)
    rows, broken = read_rows(path)
    kept = [r for r in rows if _epoch_of(r) <= state["epoch"]]
    if state["metrics"] and (not kept or _epoch_of(kept[-1]) < state["epoch"]):
        kept.append(dict(state["metrics"]))
    changed = abs(len(rows) - len(kept)) + broken
    if kept != rows or broken:
        path.unlink(missing_ok=True)
        sink = CsvReporter(path) if path.suffix == ".csv" else JsonLinesReporter(path)
        for row in kept:
            sink.report(row)
    return changed


def summary(history: list[Mapping[str, Any]], *, seconds: float) -> str:
    if not history:
        return "Nothing to train: the checkpoint had already finished."
    last = history[-1]
    state = (metrics.DIVERGED_STATE if last[metrics.DIVERGED] else
             metrics.STOPPED_EARLY if last[metrics.EARLY_STOPPED] else metrics.COMPLETED)
    return (f"{state} after epoch {last[metrics.EPOCH]} ({len(history)} epochs run, {seconds:.1f}s): "
            f"best_val_acc {last[metrics.BEST_VAL_ACC]:.4f}, lowest val_loss at epoch {last[metrics.BEST_EPOCH]}")


def run_cli(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.output)
    try:
        problem = folder_problem(out)
        if problem:
            raise UsageError(f"The value of `--output` is {str(out)!r}, but {problem}. Choose another --output.")
        resolve_run_settings(args)
        cfg = resolve_config(args)
        resume_from = check_output(args, cfg)
        resolve_device(args.device)
        if args.num_threads is not None and args.num_threads < 1:
            raise UsageError(f"The value of `--num-threads` is {args.num_threads}, but must be >= 1. "
                             "Omit it for torch's default.")
        data = load_cifar10(args.data_dir or default_data_dir(), download=args.download)
        check_fits_data(cfg.model, data)
        try:  # last: a run rejected above leaves no folder behind
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"The value of `--output` is {str(out)!r}, but it cannot be created "
                             f"({exc.strerror or exc}). Choose another --output.") from exc
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    metrics_path = out / METRICS_FORMATS[args.metrics_format]
    if resume_from is not None and reconcile_metrics(metrics_path, Path(resume_from)):
        print(f"{metrics_path} did not end at the checkpoint's epoch (the run was killed between the two); "
              "it now does.")
    sink_cls = JsonLinesReporter if args.metrics_format == "jsonl" else CsvReporter
    sink = sink_cls(metrics_path, out, resume_from=resume_from)
    start = time.perf_counter()
    try:
        train_trial(cfg, data=data, reporter=PrintingReporter(sink), device=args.device, num_threads=args.num_threads)
    except KeyboardInterrupt:
        done = sink.history[-1][metrics.EPOCH] if sink.history else "none this time"
        again = " ".join([f"--output {out}", *([f"--data-dir {args.data_dir}"] if args.data_dir else []),
                          *([f"--num-threads {args.num_threads}"] if args.num_threads else [])])
        print(f"\nInterrupted (last epoch finished: {done}). Continue it with: python -m trainables.cifar "
              f"{again} --resume", file=sys.stderr)
        return 130
    print(summary(sink.history, seconds=time.perf_counter() - start))
    ckpt = out / CHECKPOINT_DIR
    has_ckpt = (ckpt / CHECKPOINT_FILE).is_file()
    print(f"metrics: {metrics_path}  checkpoint: {ckpt if has_ckpt else 'none (the first epoch diverged)'}")
    if args.evaluate_test:
        if not has_ckpt:
            print("No checkpoint to evaluate on the test split (the first epoch diverged).", file=sys.stderr)
            return 1
        test = evaluate_checkpoint(str(ckpt), data=data, device=args.device)
        (out / TEST_METRICS_FILE).write_text(json.dumps(test) + "\n")
        print(f"test_loss {test[metrics.TEST_LOSS]:.4f}  test_acc {test[metrics.TEST_ACC]:.4f}  "
              f"(n={len(data.test_labels)} test images)")
    return 0
