"""The training loop. It lives here, in one function, and reads top to bottom:

1. validate the arguments and the data;          2. build the model (seeded);
3. split off a validation set (random, stratified for classification);
4. for each epoch: reshuffle -> for each mini-batch: forward -> loss -> zero_grad -> backward ->
   optimizer step -> callbacks; then validation, logs, callbacks (early stopping ...);
5. return the ``History``.

``batch_size=1`` is stochastic gradient descent, ``batch_size=None`` full-batch gradient descent,
anything else mini-batch gradient descent.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from ._validation import (
    check_array,
    check_float,
    check_positive_int,
    check_same_length,
    describe,
)
from .callbacks import Callback, History, NaNGuard, ProgressBar, _overrides
from .losses import labels_from_logits

if TYPE_CHECKING:  # the model calls this loop (Sequential.fit); the loop never imports it
    from .model import Sequential

_EVAL_BATCH = 4096


def resolve_metrics(loss: _losses.Loss, metrics: Any) -> list[str]:
    """Canonical metric names: accuracy is always tracked for classification losses."""
    names = ["accuracy"] if loss.task == "classification" else []
    for m in metrics or []:
        if not isinstance(m, str):
            raise TypeError(f"metrics must be a list of metric names, got {describe(m)}")
        name = _metrics.canonical_name(m)
        if name in _metrics.LABEL_METRICS and loss.task != "classification":
            raise ValueError(f"metric {m!r} needs a classification loss, got loss {loss.key!r}")
        if name not in names:
            names.append(name)
    return names


def prepare_targets(model: Sequential, loss: _losses.Loss, y: Any, name: str = "y") -> np.ndarray:
    """Validate ``y`` against the loss and the model's output shape; return it ready for the
    loss (integer labels, or float arrays shaped like the output). 1-D targets for a model with
    one output unit are reshaped to (n, 1) explicitly here, never broadcast silently."""
    out_shape = _output_shape(model)
    if isinstance(loss, _losses.CrossEntropy):
        arr = np.asarray(y)
        if arr.ndim == 1:
            labels = check_array(arr, name, integer=True)
            k = out_shape[0] if out_shape else None
            if k is not None and (labels.min() < 0 or labels.max() >= k):
                bad = labels[(labels < 0) | (labels >= k)][0]
                raise ValueError(
                    f"{name} contains label {bad} outside the known classes [0, {k}) (the model "
                    f"has {k} output units); encode labels as 0..{k - 1}"
                )
            return labels
        arr = check_array(arr, name, dtype=model.dtype, min_ndim=2, max_ndim=2)
        if out_shape is not None and arr.shape[1:] != tuple(out_shape):
            raise ValueError(
                f"{name} must be labels (n,) or targets of shape (n, {out_shape[0]}), "
                f"got {arr.shape}"
            )
        return arr
    arr = check_array(y, name, dtype=model.dtype, min_ndim=1)
    if arr.ndim == 1 and out_shape is not None and tuple(out_shape) == (1,):
        arr = arr.reshape(-1, 1)
    if out_shape is not None and arr.shape[1:] != tuple(out_shape):
        raise ValueError(
            f"{name} must have per-sample shape {tuple(out_shape)} to match the model's output, "
            f"got {arr.shape[1:]} (full shape {arr.shape})"
        )
    if isinstance(loss, _losses.BinaryCrossEntropy) and np.any((arr < 0) | (arr > 1)):
        raise ValueError(f"{name} must contain 0/1 labels for binary_cross_entropy")
    return arr


def _output_shape(model: Sequential) -> tuple[int, ...] | None:
    if not model.built:
        return None
    shape = model.input_shape
    for layer in model.layers:
        shape = layer.output_shape(shape)
    return shape


def _strata(loss: _losses.Loss, y: np.ndarray) -> np.ndarray | None:
    if loss.task != "classification":
        return None
    if y.ndim == 1:
        return y.astype(np.int64)
    if y.shape[1] == 1:
        return (y[:, 0] > 0.5).astype(np.int64)
    if isinstance(loss, _losses.CrossEntropy):
        return y.argmax(axis=1)
    return None  # multi-label: no single stratum


def split_indices(
    n: int, fraction: float, rng: np.random.Generator, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Random (stratified when ``strata`` is given) train / validation index split.

    Each class contributes ``round(fraction * class_count)`` samples to validation (at least one
    when it has two or more), so class proportions are kept; the rest is random.
    """
    if strata is None:
        perm = rng.permutation(n)
        n_val = max(1, int(round(fraction * n)))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    val_parts = []
    for cls in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == cls))
        k = int(round(fraction * members.size))
        if k == 0 and members.size >= 2:
            k = 1
        val_parts.append(members[:k])
    val = np.sort(np.concatenate(val_parts))
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)
    return train, val


def _balanced_class_weight(labels: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=k).astype(float)
    present = counts > 0
    weights = np.ones(k)
    weights[present] = labels.size / (present.sum() * counts[present])
    return weights


def _sample_weights(
    loss: _losses.Loss, y: np.ndarray, sample_weight: Any, class_weight: Any, n_classes: int
) -> np.ndarray | None:
    """Per-sample weights combining ``sample_weight`` and ``class_weight`` (integer labels)."""
    w = None
    if sample_weight is not None:
        w = check_array(sample_weight, "sample_weight", dtype=np.float64, min_ndim=1, max_ndim=1)
        if w.shape[0] != y.shape[0]:
            raise ValueError(
                f"sample_weight must have one weight per sample ({y.shape[0]}), got {w.shape[0]}"
            )
        if np.any(w < 0):
            raise ValueError("sample_weight must be non-negative")
    if class_weight is not None:
        if loss.task != "classification":
            raise ValueError(f"class_weight needs a classification loss, got {loss.key!r}")
        labels = _strata(loss, y)
        if labels is None:
            raise ValueError("class_weight needs single-label targets (labels or one-hot)")
        k = max(n_classes, int(labels.max()) + 1)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ValueError(f"class_weight must be 'balanced' or a dict, got {class_weight!r}")
            cw = _balanced_class_weight(labels, k)
        elif isinstance(class_weight, dict):
            cw = np.ones(k)
            for c, v in class_weight.items():
                if not 0 <= int(c) < k:
                    raise ValueError(f"class_weight has class {c!r} outside [0, {k})")
                cw[int(c)] = check_float(v, f"class_weight[{c!r}]", low=0.0)
        else:
            raise TypeError(
                f"class_weight must be 'balanced' or a dict, got {describe(class_weight)}"
            )
        cwv = cw[labels]
        w = cwv if w is None else w * cwv
    return w


def _log_metrics(names: list[str], loss: _losses.Loss, logits: np.ndarray, y: np.ndarray) -> dict:
    out = {}
    if not names:
        return out
    if loss.task == "classification":
        pred = labels_from_logits(loss, logits)
        true = _strata(loss, y) if y.ndim > 1 else y
        if true is None:  # multi-label: element-wise
            true, pred = (y > 0.5).astype(np.int64), (logits > 0).astype(np.int64)
    else:
        pred, true = logits, y
    for name in names:
        out[name] = _metrics.get(name)(true, pred)
    return out


def evaluate(
    model: Sequential,
    X: Any,
    y: Any,
    batch_size: int | None = None,
    sample_weight: Any = None,
    prefix: str = "",
) -> dict[str, float]:
    """Loss (plus regularisation penalty) and metrics of ``model`` on ``(X, y)``, inference mode."""
    if model.loss is None:
        raise ValueError("evaluate needs a loss: call fit or compile(loss=...) first")
    X = model._check_X(X)
    y = prepare_targets(model, model.loss, y)
    check_same_length(X, y)
    w = None
    if sample_weight is not None:
        w = check_array(sample_weight, "sample_weight", dtype=model.dtype, min_ndim=1, max_ndim=1)
        check_same_length(X, w, "X", "sample_weight")
    logits = model.predict_logits(X, batch_size or _EVAL_BATCH)
    value, _ = model.loss(logits, y, w)
    logs = {f"{prefix}loss": value + model.penalty()}
    metrics = model.metrics or resolve_metrics(model.loss, None)
    for k, v in _log_metrics(metrics, model.loss, logits, y).items():
        logs[f"{prefix}{k}"] = v
    return logs


def fit(
    model: Sequential,
    X: Any,
    y: Any,
    *,
    loss: str | _losses.Loss | None = None,
    optimizer: str | _optimizers.Optimizer | None = None,
    epochs: int = 10,
    batch_size: int | None = 32,
    validation_split: float = 0.0,
    validation_data: tuple[Any, Any] | None = None,
    shuffle: bool = True,
    callbacks: list[Callback] | None = None,
    seed: int | None = None,
    verbose: int | str = "auto",
    metrics: list[str] | None = None,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batch gradient descent.

    Args:
        X: inputs, (n, features) float array (or (n, seq_len) token ids for an ``Embedding``
            first layer). Cast to the model's dtype; NaN / inf are rejected.
        y: targets: integer class labels (n,) or one-hot / soft targets (n, k) for
            ``cross_entropy``; 0/1 labels for ``binary_cross_entropy``; (n,) or (n, outputs)
            floats for regression losses.
        loss: loss name or ``Loss`` (default: the model's compiled loss).
        optimizer: optimizer name or instance (default: the model's, else ``Adam()``). Passing
            the same instance again continues training with its state.
        epochs: passes over the training data.
        batch_size: samples per update; 1 = stochastic, ``None`` = full batch.
        validation_split: fraction of (X, y) held out for validation, chosen at random and
            stratified by class for classification (never "the last 10%").
        validation_data: explicit ``(X_val, y_val)``; takes precedence over the split.
        shuffle: reshuffle the training samples every epoch.
        callbacks: ``Callback`` objects (``EarlyStopping``, ``ModelCheckpoint``, ...).
        seed: makes the run bit-for-bit reproducible (initial weights, split, shuffling, dropout).
        verbose: 0 silent, 1 progress bar per epoch, 2 one line per epoch, ``"auto"``: 1 when
            standard error is a terminal, else 0.
        metrics: extra metric names (accuracy is always tracked for classification).
        sample_weight: per-sample loss weights (n,).
        class_weight: ``"balanced"`` or ``{class: weight}``, folded into the sample weights.

    Returns:
        A :class:`~lucidnet.callbacks.History` (also stored as ``model.history``).
    """
    # 1. arguments ------------------------------------------------------------------------------
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    validation_split = check_float(
        validation_split, "validation_split", low=0.0, high=1.0, high_inclusive=False
    )
    if verbose == "auto":
        verbose = 1 if sys.stderr.isatty() else 0
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {describe(verbose)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an integer or None, got {describe(seed)}")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback objects, got {describe(cb)}")
    if loss is None and model.loss is None:
        raise ValueError("fit needs a loss, e.g. loss='cross_entropy' or loss='mse'")
    model.loss = _losses.get(loss) if loss is not None else model.loss
    if optimizer is not None:
        model.optimizer = _optimizers.get(optimizer)
    elif model.optimizer is None:
        model.optimizer = _optimizers.Adam()
    loss_fn, opt = model.loss, model.optimizer
    model.metrics = resolve_metrics(loss_fn, metrics)

    # 2. data and model -------------------------------------------------------------------------
    rng = np.random.default_rng(seed)
    X = model._check_X(X)
    model._ensure_built(X, rng)
    y = prepare_targets(model, loss_fn, y)
    check_same_length(X, y)
    n_out = _output_shape(model)[0]
    weights = _sample_weights(loss_fn, y, sample_weight, class_weight, n_out)
    for layer in model.layers:  # dropout masks follow the run's seed
        if hasattr(layer, "rng"):
            layer.rng = np.random.default_rng(rng.integers(2**63))

    # 3. validation data ------------------------------------------------------------------------
    X_val = y_val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                f"validation_data must be a tuple (X_val, y_val), got {describe(validation_data)}"
            )
        X_val = model._check_X(validation_data[0], "validation_data[0]")
        y_val = prepare_targets(model, loss_fn, validation_data[1], "validation_data[1]")
        check_same_length(X_val, y_val, "validation_data[0]", "validation_data[1]")
    elif validation_split > 0:
        if X.shape[0] < 2:
            raise ValueError(f"validation_split needs at least 2 samples, got {X.shape[0]}")
        tr, va = split_indices(X.shape[0], validation_split, rng, _strata(loss_fn, y))
        if tr.size == 0 or va.size == 0:
            raise ValueError(
                f"validation_split={validation_split} leaves {tr.size} training and {va.size} "
                f"validation samples out of {X.shape[0]}; both parts need at least one"
            )
        X, X_val, y, y_val = X[tr], X[va], y[tr], y[va]
        weights = None if weights is None else weights[tr]

    n = X.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    steps = math.ceil(n / bs)
    # BatchNorm cannot normalise a final batch of one sample: fold it into the previous batch
    has_bn = any(type(layer).__name__ == "BatchNorm" for layer in model.layers)
    fold_last = has_bn and n > 1 and n % bs == 1
    if fold_last:
        steps -= 1
    opt.steps_per_epoch = steps

    # callbacks: progress display, NaN guard (unless the user brought one), then the user's
    if verbose and not any(isinstance(cb, ProgressBar) for cb in callbacks):
        callbacks.append(ProgressBar(mode="bar" if verbose == 1 else "line"))
    if not any(isinstance(cb, NaNGuard) for cb in callbacks):
        callbacks.insert(0, NaNGuard())
    history = History()
    history.params = {
        "epochs": epochs,
        "batch_size": bs,
        "samples": n,
        "validation_samples": 0 if X_val is None else int(X_val.shape[0]),
        "steps": steps,
        "seed": seed,
        "loss": loss_fn.key,
        "optimizer": type(opt).__name__,
    }
    params = dict(history.params)
    for cb in callbacks:
        if isinstance(cb, NaNGuard):
            cb.inputs = X  # for its explanation, should the loss become NaN
        cb.set_model(model, params)
    batch_hooks = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
    model.history = history
    model.stop_training = False
    penalised = any(getattr(layer, "l1", 0) or getattr(layer, "l2", 0) for layer in model.layers)
    track = model.metrics

    # 4. the loop -------------------------------------------------------------------------------
    for cb in callbacks:
        cb.on_train_begin()
    model._reuse_buffers(True)  # layers keep their per-step arrays until the end of fit
    try:
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            order = rng.permutation(n) if shuffle else np.arange(n)
            lr_epoch = opt.current_lr
            loss_sum, correct, seen = 0.0, 0.0, 0
            for step in range(steps):
                stop = n if (fold_last and step == steps - 1) else (step + 1) * bs
                idx = order[step * bs : stop]
                xb, yb = X[idx], y[idx]
                wb = None if weights is None else weights[idx]
                logits = model.forward(xb, training=True)  # forward pass
                value, dlogits = loss_fn(logits, yb, wb, validate=False)  # loss, dL/dlogits
                if penalised:
                    value += model.penalty()
                # backpropagation, last layer first; accumulate=False overwrites the gradients,
                # which is zero_grad() then backward() in fewer passes over them
                model.backward(dlogits, input_grad=False, accumulate=False)
                opt.step(model)  # gradient-descent update
                m = idx.size
                history.iteration_loss.append(value)
                loss_sum += value * m
                seen += m
                if "accuracy" in track:
                    correct += _batch_correct(loss_fn, logits, yb)
                if batch_hooks:
                    blogs = {"loss": loss_sum / seen, "batch_size": m}
                    if "accuracy" in track:
                        blogs["accuracy"] = correct / seen
                    blogs["loss_batch"] = value
                    for cb in batch_hooks:
                        cb.on_batch_end(step, blogs)
                if model.stop_training:
                    break
            if not seen or not math.isfinite(loss_sum):
                _record_nan(history, callbacks)
                break
            logs: dict[str, float] = {"loss": loss_sum / seen}
            if "accuracy" in track:
                logs["accuracy"] = correct / seen
            others = [m for m in track if m != "accuracy"]
            if others:  # metrics other than accuracy are computed on the whole training set
                logs.update(_log_metrics(others, loss_fn, model.predict_logits(X), y))
            if X_val is not None:
                logs.update(evaluate(model, X_val, y_val, prefix="val_"))
            logs["lr"] = lr_epoch
            history.record(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if model.stop_training:
                history.stop_reason = history.stop_reason or "early_stopping"
                history.stopped_epoch = epoch
                break
    except KeyboardInterrupt:
        history.stop_reason = "interrupted"
        history.warnings.append(
            f"training interrupted by the user after {len(history.epoch)} complete epoch(s); "
            "the model keeps the weights of the last completed step"
        )
        print(f"\n{history.warnings[-1]}", file=sys.stderr)
    finally:
        model._reuse_buffers(False)
    for cb in callbacks:
        cb.on_train_end()
    for cb in callbacks:
        if getattr(cb, "best_epoch", None) is not None:
            history.best_epoch = cb.best_epoch
    return history


def _batch_correct(loss: _losses.Loss, logits: np.ndarray, yb: np.ndarray) -> float:
    """Number of correctly classified samples in a batch (multi-label: mean over labels)."""
    pred = labels_from_logits(loss, logits)
    if yb.ndim == 1:
        return float(np.count_nonzero(pred == yb))
    if yb.shape[1] == 1:
        return float(np.count_nonzero(pred == (yb[:, 0] > 0.5)))
    if loss.output_activation == "sigmoid":
        return float(np.mean(pred == (yb > 0.5), axis=1).sum())
    return float(np.count_nonzero(pred == yb.argmax(axis=1)))


def _record_nan(history: History, callbacks: list[Callback]) -> None:
    history.stop_reason = "nan"
    for cb in callbacks:
        if isinstance(cb, NaNGuard) and getattr(cb, "message", None):
            history.warnings.append(cb.message)
            history.stopped_epoch = cb.epoch
