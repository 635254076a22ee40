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

# Keys of the flat trial config (trainables.config.CONFIG_KEYS), spelled once here for the rules
# below; a test checks they exist.
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
ADAPTIVE_OPTIMIZERS = ("adam", "adamw", "rmsprop")
# Above this an SGD lr (momentum ~0.9, so ~10x that per step in steady state) is high for these
# CNNs: the built-in space stops at 0.3, and review saw lr 3 blow a net up in its first epoch and
# leave it at chance level, which reads as underfitting.
SGD_LR_HIGH = 0.5
# AdamW's decay is decoupled from the gradient, at 1e-2 by convention (Loshchilov & Hutter), a
# scale at which coupled L2 (sgd, adam) would already hold a net back.
ADAMW_WEIGHT_DECAY = 1e-2
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


def effective_config(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The config a trial ran with: ``recorded`` over the trainable's defaults. A sweep records only
    its space's entries (params.json, MLflow params) and the trainable fills in the rest from
    ``TrialConfig``'s defaults, which are levers too (a default cutout of 0, warmup of 0). A value
    missing for this trial (NaN: a conditional key, such as momentum for adam) is the default's."""
    from trainables.config import TrialConfig  # dependency-free, like trainables.metrics

    present = {k: v for k, v in recorded.items() if not (v is None or isinstance(v, float) and math.isnan(v))}
    return {**TrialConfig().to_dict(), **present}


def _optimizer(config: Mapping[str, Any]) -> str:
    return str(config.get(OPTIMIZER, "")).lower()


def _overfitting(config: Mapping[str, Any], facts: Mapping[str, float]) -> list[str]:
    tips = []
    best, last = facts.get("best_val_acc_epoch"), facts.get("last_epoch")
    # Where val_acc peaked, not where val_loss did: val_acc is what the sweep ranks trials and keeps
    # checkpoints by, and review saw a val_loss dip at epoch 2 where val_acc was 9 points below its
    # peak at epoch 8 (and epoch 2's checkpoint long gone).
    if best is not None and last is not None and best < last:
        tip = (f"val_acc peaked at epoch {int(best)} of {int(last)} ({facts['best_val_acc']:.3g}) -> stop there: "
               "its best checkpoint, by val_acc, is that epoch's")
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
    decoupled = _optimizer(config) == "adamw"
    usual, usual_text = (ADAMW_WEIGHT_DECAY, "1e-2 (AdamW's decoupled decay)") if decoupled else (5e-4, "5e-4")
    if wd is not None and wd < usual:
        tips.append(f"{WEIGHT_DECAY} {wd:g} -> try {usual_text}.")
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
    optimizer = _optimizer(config)
    adaptive = optimizer in ADAPTIVE_OPTIMIZERS
    low, high = (1e-4, ADAPTIVE_LR_HIGH) if adaptive else (1e-2, SGD_LR_HIGH)
    lr_off = lr is not None and not low <= lr <= high
    if lr is not None and lr < low:
        tips.append(f"{LEARNING_RATE} {lr:g} is low for {config.get(OPTIMIZER, 'this optimizer')} -> try {lr * 10:.2g} "
                    f"(x10).")
    elif lr is not None and adaptive and lr > ADAPTIVE_LR_HIGH:
        # Adam-type steps are ~lr per weight whatever the gradient's size: far above ~1e-3 they
        # thrash without diverging, which reads as underfitting. Raising it would make that worse.
        tips.append(f"{LEARNING_RATE} {lr:g} is high for {optimizer}, which trains CNNs best around 1e-4-3e-3 -> try "
                    f"{lr / 10:.2g} (/10).")
    elif lr is not None and lr > SGD_LR_HIGH:
        # Stuck near chance at such an lr is a net its first steps blew up (dead units), not a slow one.
        tips.append(f"{LEARNING_RATE} {lr:g} is high for {optimizer or 'sgd'} (momentum makes each step ~10x that; "
                    f"CNNs train around 0.01-0.1) -> try {lr / 10:.2g} (/10).")
    elif lr is not None:
        tips.append(f"{LEARNING_RATE} {lr:g} -> try {lr * 3:.2g} (x3).")
    # A larger net only where the lr is plausible: with an lr far off, the same net may fit fine
    # (review saw this net reach train_acc 1.0 at another lr in the same sweep).
    for key, small, target in ((FILTERS, 32, "32-64"), (NUM_BLOCKS, 3, "3"), (HEAD_UNITS, 64, "128")):
        value = _num(config, key)
        if value is not None and value < small and not lr_off:
            tips.append(f"{key} {int(value)} -> try {target} (a larger net).")
    for key in DROPOUT_KEYS:
        value = _num(config, key)
        if value is not None and value > 0.3:
            tips.append(f"{key} {value:g} -> try <= 0.3 (less regularisation).")
    wd = _num(config, WEIGHT_DECAY)
    decoupled = optimizer == "adamw"  # see ADAMW_WEIGHT_DECAY
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
        elif end_state in m.NOT_ENDED:
            pass  # it trains on: advise() says so, and more epochs are no advice
        elif end_state == m.STOPPED_EARLY:
            tips.append(f"It was stopped early at epoch {int(facts['last_epoch'])} while train_loss still fell; "
                        "if the changes above are not it, give it more epochs before judging.")
        else:
            planned = f" of {int(epochs)}" if epochs else ""
            fall, recent = facts.get("recent_train_loss_fall"), int(facts.get("recent_epochs", 0))
            if facts.get("recent_train_loss_flat"):  # flat, though below the plateau rule's loss
                moved = f"{'fell' if fall >= 0 else 'rose'} {abs(fall):.1%}"
                tips.append(f"train_loss {moved} over the last {recent} epochs to epoch {int(facts['last_epoch'])}"
                            f"{planned}: more epochs alone will not help; change the config.")
            else:
                falling = f" ({fall:.0%} over the last {recent} epochs)" if fall is not None else ""
                tips.append(f"train_loss still falling at epoch {int(facts['last_epoch'])}{planned}{falling} -> "
                            "train longer.")
    return tips


def _diverged(config: Mapping[str, Any]) -> list[str]:
    tips = []
    lr = _num(config, LEARNING_RATE)
    optimizer = _optimizer(config)
    if lr is not None and optimizer in ADAPTIVE_OPTIMIZERS and lr / 10 > ADAPTIVE_LR_HIGH:
        # /3-/10 of an lr far outside Adam's range would still be far outside it.
        tips.append(f"{LEARNING_RATE} {lr:g} is far above {optimizer}'s usual 1e-4-3e-3 for CNNs -> try 1e-3.")
    elif lr is not None:
        tips.append(f"{LEARNING_RATE} {lr:g} -> try {lr / 3:.2g}-{lr / 10:.2g} (/3-/10).")
    else:
        tips.append("Lower the learning rate 3-10x.")
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


def not_ended_tip(end_state: str, *, config: Mapping[str, Any], facts: Mapping[str, float]) -> str:
    """What a trial that had not ended (``NOT_ENDED``) still needs before its verdict is final."""
    last = int(facts.get("last_epoch") or facts.get("n_epochs") or 0)
    epochs = _num(config, EPOCHS)
    where = f" at epoch {last}{f' of {int(epochs)}' if epochs else ''}, so this reads its curves so far" if last \
        else " before its first epoch"
    if end_state == m.INTERRUPTED:
        return (f"An interrupt cut it off{where}: python -m sweeps.cifar --resume on its sweep runs it on; report "
                "again after.")
    return (f"It had not ended{where} (still running or pending, or its sweep stopped without recording an end): "
            "report again once the sweep has ended.")


def advise(verdict: str, *, config: Mapping[str, Any], facts: Mapping[str, float], end_state: str,
           signals: tuple[str, ...] = ()) -> list[str]:
    """Advice lines for a verdict; ``config`` is the flat trial config (keys without prefix). An
    errored trial's advice ends with what to do about the error, one that had not ended with what
    it still needs; with too few epochs to judge, that is all of it."""
    if end_state == m.ERRORED or end_state in m.NOT_ENDED:
        curves = [] if verdict == m.INCONCLUSIVE else _advice(verdict, config=config, facts=facts,
                                                               end_state=end_state, signals=signals)
        last = ERRORED_TIP if end_state == m.ERRORED else not_ended_tip(end_state, config=config, facts=facts)
        return [*curves, last]
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
        # Validation loss still at its lowest in the last epochs: the run ended before the curve turned
        # (one that had not ended trains on anyway).
        if end_state in m.NOT_ENDED:
            return ["No change needed so far."]
        if lowest is not None and last is not None and lowest >= last - 1:
            return [f"Fits well; val_loss was still at its minimum at epoch {int(lowest)} of {int(last)} -> more "
                    "epochs (or a longer schedule) may still help."]
        return [f"No change needed; keep the checkpoint of epoch {int(best)}." if best is not None
                else "No change needed."]
    raise ValueError(f"The verdict {verdict!r} is not one of {m.VERDICTS}.")
