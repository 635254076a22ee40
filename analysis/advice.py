"""What to change after a verdict, from standard tuning practice, made specific to the config.

Sources: dropout 0.2-0.5 and max-norm 3-4 (Srivastava et al. 2014, "Dropout", JMLR);
weight decay 5e-4 for CIFAR CNNs (e.g. He et al. 2016's ResNet recipe); cutout 8-16 px on
CIFAR-10 (DeVries & Taylor 2017); label smoothing 0.1 (Szegedy et al. 2016); early stopping
at the minimum of the validation loss (Goodfellow et al. 2016, sec. 7.8); a learning rate
changed in steps of 3-10x and warmup for unstable starts (Goyal et al. 2017).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from trainables import metrics as m

# Keys of the flat trial config (trainables.config.CONFIG_KEYS). Spelled here because analysis
# never imports trainables beyond its dependency-free metrics module; a test checks they exist.
DROPOUT_KEYS = ("head_dropout", "spatial_dropout", "input_dropout")
WEIGHT_DECAY = "weight_decay"
MAX_NORM = "max_norm"
AUGMENT = "augment"
CUTOUT = "cutout"
LABEL_SMOOTHING = "label_smoothing"
L1 = "l1"
FILTERS = "filters"
NUM_BLOCKS = "num_blocks"
HEAD_UNITS = "head_units"
LEARNING_RATE = "lr"
OPTIMIZER = "optimizer"
WARMUP_EPOCHS = "warmup_epochs"
SCHEDULE = "schedule"
BATCH_NORM = "batch_norm"
EPOCHS = "epochs"
PATIENCE = "early_stopping_patience"
ADAPTIVE_LR_HIGH = 3e-3  # above this an adam/adamw/rmsprop lr is high for a CNN (see _underfitting)
CONFIG_KEYS_USED = (*DROPOUT_KEYS, WEIGHT_DECAY, MAX_NORM, AUGMENT, CUTOUT, LABEL_SMOOTHING, L1, FILTERS,
                    NUM_BLOCKS, HEAD_UNITS, LEARNING_RATE, OPTIMIZER, WARMUP_EPOCHS, SCHEDULE, BATCH_NORM, EPOCHS, PATIENCE)


def _num(config: Mapping[str, Any], key: str) -> float | None:
    value = config.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _flag(config: Mapping[str, Any], key: str) -> bool | None:
    value = config.get(key)
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.lower())
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else bool(value)


def _overfitting(config: Mapping[str, Any], facts: Mapping[str, float]) -> list[str]:
    tips = []
    best, last = facts.get("min_val_loss_epoch"), facts.get("last_epoch")
    if best is not None and last is not None and best < last:
        tip = f"min val_loss at epoch {int(best)} of {int(last)} -> stop there (keep that checkpoint)"
        if _num(config, PATIENCE) == 0:
            tip += f"; {PATIENCE} is 0 -> try 3-5"
        tips.append(tip + ".")
    dropouts = {k: _num(config, k) for k in DROPOUT_KEYS if _num(config, k) is not None}
    low = {k: v for k, v in dropouts.items() if k != "input_dropout" and v < 0.2}
    if low:
        tips.extend(f"{k} is {v:g} -> try 0.2-0.5." for k, v in low.items())
    elif not dropouts:
        tips.append("Add dropout 0.2-0.5 before the dense layers.")
    wd = _num(config, WEIGHT_DECAY)
    if wd is not None and wd < 5e-4:
        tips.append(f"{WEIGHT_DECAY} {wd:g} -> try 5e-4.")
    elif wd is not None:
        tips.append(f"{WEIGHT_DECAY} {wd:g} -> try {wd * 3:.1g}.")
    if _num(config, MAX_NORM) == 0:
        tips.append(f"{MAX_NORM} is off (0) -> try 3-4.")
    augment = _flag(config, AUGMENT)
    if augment is False:
        tips.append(f"{AUGMENT} is off -> turn on random crop + flip.")
    elif augment and _num(config, CUTOUT) == 0:
        tips.append(f"{CUTOUT} is 0 -> try 8-16 px.")
    if _num(config, LABEL_SMOOTHING) == 0:
        tips.append(f"{LABEL_SMOOTHING} is 0 -> try 0.1.")
    filters = _num(config, FILTERS)
    if filters is not None and filters >= 64:
        tips.append(f"Or a smaller net: {FILTERS} {int(filters)} -> try {int(filters) // 2}.")
    return tips


def _underfitting(config: Mapping[str, Any], facts: Mapping[str, float], *, end_state: str,
                  signals: tuple[str, ...]) -> list[str]:
    tips = []
    lr = _num(config, LEARNING_RATE)
    optimizer = str(config.get(OPTIMIZER, "")).lower()
    adaptive = optimizer in ("adam", "adamw", "rmsprop")
    if lr is not None and lr < (1e-4 if adaptive else 1e-2):
        tips.append(f"{LEARNING_RATE} {lr:g} is low for {config.get(OPTIMIZER, 'this optimizer')} -> try {lr * 10:.2g} "
                    f"(x10).")
    elif lr is not None and adaptive and lr > ADAPTIVE_LR_HIGH:
        # Adam-type steps are ~lr per weight whatever the gradient's size: far above ~1e-3 they
        # thrash without diverging, which reads as underfitting. Raising it would make that worse.
        tips.append(f"{LEARNING_RATE} {lr:g} is high for {optimizer}, which trains CNNs best around 1e-4-3e-3 -> try "
                    f"{lr / 10:.2g} (/10).")
    elif lr is not None:
        tips.append(f"{LEARNING_RATE} {lr:g} -> try {lr * 3:.2g} (x3).")
    for key, small, target in ((FILTERS, 32, "32-64"), (NUM_BLOCKS, 3, "3"), (HEAD_UNITS, 64, "128")):
        value = _num(config, key)
        if value is not None and value < small:
            tips.append(f"{key} {int(value)} -> try {target} (a larger net).")
    for key in DROPOUT_KEYS:
        value = _num(config, key)
        if value is not None and value > 0.3:
            tips.append(f"{key} {value:g} -> try <= 0.3 (less regularisation).")
    wd = _num(config, WEIGHT_DECAY)
    # AdamW's decay is decoupled from the gradient, at 1e-2 by convention (Loshchilov & Hutter), a
    # scale at which coupled L2 (sgd, adam) would already hold a net back.
    decoupled = optimizer == "adamw"
    if wd is not None and wd > (0.05 if decoupled else 1e-3):
        tips.append(f"{WEIGHT_DECAY} {wd:g} -> try {'1e-2' if decoupled else '5e-4'} (less regularisation).")
    if (_num(config, L1) or 0) > 0:
        tips.append(f"{L1} {_num(config, L1):g} -> try 0.")
    if "plateau" not in signals:
        epochs = _num(config, EPOCHS)
        if facts.get("patience_stopped") and _num(config, PATIENCE):
            tips.append(f"Its own patience rule stopped it at epoch {int(facts['last_epoch'])} ({PATIENCE} "
                        f"{int(_num(config, PATIENCE) or 0)}); if the changes above are not it, raise {PATIENCE} or "
                        "set it to 0 (off) before judging.")
        elif end_state == m.STOPPED_EARLY:
            tips.append(f"It was stopped early at epoch {int(facts['last_epoch'])} while train_loss still fell; "
                        "if the changes above are not it, give it more epochs before judging.")
        else:
            planned = f" of {int(epochs)}" if epochs else ""
            tips.append(f"train_loss still falling at epoch {int(facts['last_epoch'])}{planned} -> train longer.")
    return tips


def _diverged(config: Mapping[str, Any]) -> list[str]:
    tips = []
    lr = _num(config, LEARNING_RATE)
    tips.append(f"{LEARNING_RATE} {lr:g} -> try {lr / 3:.2g}-{lr / 10:.2g} (/3-/10)." if lr is not None
                else "Lower the learning rate 3-10x.")
    # cyclic ignores warmup_epochs (its first half cycle is its ramp), and onecycle's 0 means its own
    # 30% ramp, which 1-2 epochs would shorten: the tip would do nothing or the opposite there.
    if _num(config, WARMUP_EPOCHS) == 0 and config.get(SCHEDULE) not in ("cyclic", "onecycle"):
        tips.append(f"{WARMUP_EPOCHS} is 0 -> try 1-2.")
    if _flag(config, BATCH_NORM) is False:
        tips.append(f"{BATCH_NORM} is off -> turn it on.")
    return tips


# A trial that failed: the curves (if any) say little about the config, the error says what to do.
ERRORED_TIP = ("It ended with an error (see the evidence; the traceback is in its trial folder's error.txt): "
               "fix the cause, or where it was passing (a lost node, memory other trials held) `--resume` "
               "retries errored trials; keep a config that cannot run out of the space.")


def advise(verdict: str, *, config: Mapping[str, Any], facts: Mapping[str, float], end_state: str,
           signals: tuple[str, ...] = ()) -> list[str]:
    """Advice lines for a verdict; ``config`` is the flat trial config (keys without prefix). An
    errored trial's advice ends with what to do about the error; with too few epochs to judge, that
    is all of it."""
    if end_state == m.ERRORED:
        curves = [] if verdict == m.INCONCLUSIVE else _advice(verdict, config=config, facts=facts,
                                                               end_state=end_state, signals=signals)
        return [*curves, ERRORED_TIP]
    return _advice(verdict, config=config, facts=facts, end_state=end_state, signals=signals)


def _advice(verdict: str, *, config: Mapping[str, Any], facts: Mapping[str, float], end_state: str,
            signals: tuple[str, ...]) -> list[str]:
    if verdict == m.OVERFITTING:
        return _overfitting(config, facts)
    if verdict == m.UNDERFITTING:
        return _underfitting(config, facts, end_state=end_state, signals=signals)
    if verdict == m.DIVERGED_VERDICT:
        return _diverged(config)
    if verdict == m.INCONCLUSIVE:
        if facts.get("patience_stopped") and _num(config, PATIENCE):
            return [f"Too few epochs to judge: its own patience rule stopped it ({PATIENCE} "
                    f"{int(_num(config, PATIENCE) or 0)}); rerun this config with a larger {PATIENCE} or 0 (off)."]
        if end_state == m.STOPPED_EARLY:
            return [f"Too few epochs to judge (end state {end_state}); rerun this config for more epochs or raise "
                    "the scheduler's grace_period if such trials matter."]
        return [f"Too few epochs to judge (end state {end_state}); rerun this config with more epochs."]
    if verdict == m.GOOD_FIT:
        best, last = facts.get("best_val_acc_epoch"), facts.get("last_epoch")
        lowest = facts.get("min_val_loss_epoch")
        # Validation loss still at its lowest in the last epochs: the run ended before the curve turned.
        if lowest is not None and last is not None and lowest >= last - 1:
            return [f"Fits well; val_loss was still at its minimum at epoch {int(lowest)} of {int(last)} -> more "
                    "epochs (or a longer schedule) may still help."]
        return [f"No change needed; keep the checkpoint of epoch {int(best)}." if best is not None
                else "No change needed."]
    raise ValueError(f"The verdict {verdict!r} is not one of {m.VERDICTS}.")
