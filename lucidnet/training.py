"""The training loop: ``train_step`` (one step of gradient descent on one mini-batch) and
``fit`` (epochs of steps), each reading top to bottom.

``fit`` runs in a fixed order:

1. check the arguments; prepare the data (cast, build the model seeded, targets, weights);
2. hold out validation rows (random, stratified by class for classification) unless given;
3. standardise regression targets (``target_scaling``);
4. for each epoch: reshuffle -> for each mini-batch: ``train_step`` (forward, loss, backward,
   optimizer update) -> batch callbacks; then validation, the flat logs dict, epoch callbacks
   (early stopping ...); all of it under the run's thread settings (``threads``,
   :class:`lucidnet.threads.ThreadControl`: chosen, tuned on timed blocks of steps, restored);
5. fold the target scaling back into the output layer, and return the ``History``.

``batch_size=1`` is stochastic gradient descent, ``batch_size=None`` full-batch gradient descent,
anything else mini-batch gradient descent.

``train_step`` takes the fast path (``fast_forward`` / ``Loss.fast`` / ``fast_backward`` /
``Optimizer.step``) or, with ``fast=False``, the textbook one (``forward`` / ``loss(...)`` /
``backward`` / ``Optimizer.textbook_step``), which ``explain`` shows; the two give the same numbers
(tests/test_fast_layers.py, test_fast_losses.py, test_fast_optimizers.py, test_train_step.py).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import fused as _fused
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from . import threads as _threads
from ._validation import (
    check_array,
    check_float,
    check_positive_int,
    check_same_length,
    describe,
)
from .base import Layer
from .callbacks import Callback, CallbackModel, History, NaNGuard, ProgressBar, _overrides
from .losses import labels_from_logits
from .sources import ArraySource, Batch, BatchSource, CheckedSource, as_source, is_source
from .splitting import split_indices

__all__ = ["train_step", "fit", "evaluate", "prepare_targets", "resolve_metrics", "TargetScaling"]

_EVAL_BATCH = 4096


class TrainableModel(CallbackModel, Protocol):
    """What the loop needs of a model (``Sequential`` has it). A protocol: the model calls this
    loop (``Sequential.fit``) and the loop never imports the model."""

    layers: list[Layer]
    loss: _losses.Loss | None
    metrics: list[str]
    history: History | None
    fit_target_scaling: TargetScaling | None
    input_shape: tuple[int, ...] | None
    dtype: np.dtype[Any]

    @property
    def multiply_adds(self) -> int: ...

    def penalty(self) -> float: ...
    def zero_grad(self) -> None: ...
    def release_workspaces(self) -> None: ...
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray: ...
    def backward(self, dy: np.ndarray) -> np.ndarray: ...
    def fast_forward(self, x: np.ndarray) -> np.ndarray: ...
    def fast_backward(self, dy: np.ndarray) -> None: ...
    def predict_logits(self, X: Any, batch_size: int | None = None) -> np.ndarray: ...
    def _check_X(self, X: Any, name: str = "X") -> np.ndarray: ...
    def _ensure_built(self, x: np.ndarray, seed: Any = None) -> None: ...


def train_step(
    model: TrainableModel,
    xb: np.ndarray,
    yb: np.ndarray,
    loss: _losses.Loss,
    optimizer: _optimizers.Optimizer,
    sample_weight: np.ndarray | None = None,
    *,
    fast: bool = True,
) -> tuple[float, np.ndarray]:
    """One step of gradient descent on the mini-batch ``(xb, yb)``.

    forward pass -> loss and dL/d(output) -> backward pass (every layer's ``grads``) ->
    optimizer update of every parameter.

    Args:
        model: a built ``Sequential``.
        xb: inputs (m, ...) in the model's dtype (or token ids).
        yb: targets prepared for ``loss`` (``prepare_targets``).
        loss, optimizer: the loss and the optimizer (its state advances by one step).
        sample_weight: optional (m,) per-sample loss weights.
        fast: the fast path (``fit``'s); ``False`` takes the textbook path, which gives the same
            numbers and leaves each layer's textbook cache (inputs, pre-activations) readable.

    Returns:
        ``(loss value including the layers' penalties, output of the forward pass (m, outputs))``;
        on the fast path the output is a workspace the next step overwrites.
    """
    if fast:
        out = model.fast_forward(xb)
        value, d_out = loss.fast(out, yb, sample_weight)
        value += model.penalty()  # before the update changes the weights
        model.fast_backward(d_out)  # overwrites the gradients: no zero_grad needed
        optimizer.step(model)
    else:
        out = model.forward(xb, training=True)
        value, d_out = loss(out, yb, sample_weight, validate=False)
        value += model.penalty()
        model.zero_grad()
        model.backward(d_out)
        optimizer.textbook_step(model)
    return value, out


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


def prepare_targets(
    model: TrainableModel, loss: _losses.Loss, y: Any, name: str = "y"
) -> np.ndarray:
    """Validate ``y`` against the loss and the model's output shape; return it ready for the
    loss (``Loss.prepare_targets``: integer labels, or float arrays shaped like the output, in
    the model's dtype; 1-D targets for one output unit reshaped to (n, 1), never broadcast)."""
    return loss.prepare_targets(y, _output_shape(model), model.dtype, name)


def _built_output_shape(model: TrainableModel) -> tuple[int, ...]:
    """The built model's per-sample output shape."""
    shape = _output_shape(model)
    if shape is None:
        raise ValueError("the model is not built yet: call build(input_shape) or fit first")
    return shape


def _output_shape(model: TrainableModel) -> tuple[int, ...] | None:
    if model.input_shape is None:  # not built
        return None
    shape = model.input_shape
    for layer in model.layers:
        shape = layer.output_shape(shape)
    return shape


def label_strata(loss: _losses.Loss, y: np.ndarray) -> np.ndarray | None:
    """One class label per row for stratified splits and class weights, or ``None`` when the
    targets have none (regression, multi-label): labels as given, argmax of one-hot rows, or
    ``y > 0.5`` for one binary output."""
    if loss.task != "classification":
        return None
    if y.ndim == 1:
        return y.astype(np.int64)
    if y.shape[1] == 1:
        return (y[:, 0] > 0.5).astype(np.int64)
    if loss.output_activation == "softmax":
        return y.argmax(axis=1)
    return None  # multi-label: no single stratum


def sample_weights(
    loss: _losses.Loss, y: np.ndarray, sample_weight: Any, class_weight: Any, n_classes: int
) -> np.ndarray | None:
    """Per-sample weights combining ``sample_weight`` (n,) and ``class_weight`` (resolved by
    :func:`lucidnet.losses.resolve_class_weight` on the labels), or ``None`` for neither."""
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
        if not isinstance(class_weight, (str, dict)):
            raise TypeError(
                f"class_weight must be 'balanced' or a dict, got {describe(class_weight)}"
            )
        labels = label_strata(loss, y)
        if labels is None:
            raise ValueError("class_weight needs single-label targets (labels or one-hot)")
        k = max(n_classes, int(labels.max()) + 1)
        cw = _losses.resolve_class_weight(class_weight, labels, k)
        assert cw is not None
        w = cw[labels] if w is None else w * cw[labels]
    return w


@dataclass
class TargetScaling:
    """Regression targets standardised for training: ``(y - mean) / std`` per output.

    A scale-free target makes the learning rate and the initial weights suit any unit (a price
    in dollars or in cents). ``fit`` trains on the standardised target and then folds the scaling
    into the output layer (``Layer.fold_output_scaling``), so the model predicts in the target's
    own units; during ``fit`` the losses (history, validation) are on the standardised target.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, y: np.ndarray, weights: np.ndarray | None = None) -> TargetScaling:
        """The scaling of (n, outputs) targets, weighted by the sample weights (so a weight of
        2 is the same as the row twice); a constant output keeps std 1."""
        y64 = y.astype(np.float64)
        if weights is not None and not np.any(weights > 0):
            weights = None
        mean = np.average(y64, axis=0, weights=weights)
        std = np.sqrt(np.average((y64 - mean) ** 2, axis=0, weights=weights))
        return cls(mean=mean, std=np.where(std > 0, std, 1.0))

    def scale(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.mean) / self.std).astype(y.dtype)

    def into_model(self, model: TrainableModel) -> bool:
        """Change the output layer to predict standardised targets; ``False`` if it cannot."""
        return model.layers[-1].fold_output_scaling(1.0 / self.std, -self.mean / self.std)

    def out_of_model(self, model: TrainableModel) -> None:
        """Change the output layer back to predict in the target's units."""
        model.layers[-1].fold_output_scaling(self.std, self.mean)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def _log_metrics(
    names: list[str], loss: _losses.Loss, logits: np.ndarray, y: np.ndarray
) -> dict[str, float]:
    out: dict[str, float] = {}
    if not names:
        return out
    if loss.task == "classification":
        pred = labels_from_logits(loss, logits)
        true = label_strata(loss, y) if y.ndim > 1 else y
        if true is None:  # multi-label: element-wise
            true, pred = (y > 0.5).astype(np.int64), (logits > 0).astype(np.int64)
    else:
        pred, true = _losses.output_transform(loss, logits), y  # Poisson: on the rate e^z
    for name in names:
        out[name] = float(_metrics.get(name)(true, pred))
    return out


def evaluate(
    model: TrainableModel,
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
    value, _ = model.loss.fast(logits, y, w)  # targets and weights checked above
    logs = {f"{prefix}loss": value + model.penalty()}
    metrics = model.metrics or resolve_metrics(model.loss, None)
    for k, v in _log_metrics(metrics, model.loss, logits, y).items():
        logs[f"{prefix}{k}"] = v
    return logs


def fit(
    model: TrainableModel,
    X: Any,
    y: Any = None,
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
    target_scaling: bool | str = "auto",
    threads: int | str = "auto",
) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batch gradient descent.

    Args:
        X: inputs, (n, features) float array (or (n, seq_len) token ids for an ``Embedding``
            first layer). Cast to the model's dtype; NaN / inf are rejected. Or a source of
            mini-batches, with ``y=None`` (:mod:`lucidnet.sources`): an object with
            ``batches(epoch, rng)``, a list of ``(X, y)`` / ``(X, y, sample_weight)`` tuples, a
            function returning an iterator of them, or an iterator (one epoch only); each batch
            is checked like arrays are. With a source, ``validation_split``, ``sample_weight``
            and ``class_weight`` are not available (give ``validation_data``; yield weights in
            the batches), ``shuffle`` is the source's business, and metrics other than
            accuracy are computed on the validation data only.
        y: targets: integer class labels (n,) or one-hot / soft targets (n, k) for
            ``cross_entropy``; 0/1 labels for ``binary_cross_entropy``; (n,) or (n, outputs)
            floats for regression losses. ``None`` when ``X`` is a source.
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
        target_scaling: for regression losses, train on standardised targets and fold the
            scaling into the output layer afterwards (see :class:`TargetScaling`): ``"auto"``
            (default) when the output layer is a linear ``Dense``, ``True`` (an error if it is
            not), ``False`` never. History losses are then on the standardised target.
        threads: threads of the matrix products (BLAS) and compiled kernels during this fit:
            ``"auto"`` (default) chooses from the size of the products (small ones: one
            thread), the free cores (load average) and, while training, the measured speed
            of blocks of steps: it drops to fewer threads when steps slow down (another
            process took a core) and tries more again now and then (:mod:`lucidnet.threads`);
            an integer fixes the count. The previous settings are restored afterwards; the
            count of every epoch and each change are in ``history.params["threads"]``.

    Returns:
        A :class:`~lucidnet.callbacks.History` (also stored as ``model.history``).
    """
    run = _Run(epochs=check_positive_int(epochs, "epochs"), shuffle=bool(shuffle))
    run.threads = _threads.check_threads(threads)
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    verbose, callbacks = _check_options(verbose, seed, callbacks)
    run.loss, run.optimizer = _compile(model, loss, optimizer, metrics)
    run.rng = np.random.default_rng(seed)
    if is_source(X):  # a source of mini-batches (sources.py)
        _source_data(model, run, X, y, (sample_weight, class_weight, validation_split))
    else:
        run.X, run.y = _training_data(model, run.loss, X, y, run.rng)
        n_out = _built_output_shape(model)[0]
        run.weights = sample_weights(run.loss, run.y, sample_weight, class_weight, n_out)
    _hold_out(model, run, validation_split, validation_data)
    run.scaling = _target_scaling(model, run, target_scaling)
    _batches(model, run, batch_size)
    _callbacks(model, run, callbacks, verbose, seed)
    work = run.batch_size * model.multiply_adds  # per step
    try:
        with _threads.ThreadControl(run.threads, work, owner=model) as run.control:
            run.history.params["threads"] = run.control.record
            _epochs(model, run)
    finally:
        if run.scaling is not None:
            run.scaling.out_of_model(model)
            model.fit_target_scaling = None
    return run.history


@dataclass
class _Run:
    """What ``fit`` prepares before the first step and the loop reads."""

    epochs: int
    shuffle: bool
    loss: _losses.Loss = field(default_factory=_losses.MSE)
    optimizer: _optimizers.Optimizer = field(default_factory=_optimizers.Adam)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    X: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    weights: np.ndarray | None = None
    source: BatchSource | None = None  # where the epochs' batches come from
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    scaling: TargetScaling | None = None
    batch_size: int = 1
    steps: int = 0
    callbacks: list[Callback] = field(default_factory=list)
    batch_hooks: list[Callback] = field(default_factory=list)
    history: History = field(default_factory=History)
    threads: int | str = "auto"
    control: _threads.ThreadControl | None = None


def _epochs(model: TrainableModel, run: _Run) -> None:
    """The loop: epochs of mini-batch steps, validation and callbacks, in a fixed order."""
    loss_fn, opt, history, track = run.loss, run.optimizer, run.history, model.metrics
    threads, source = run.control, run.source
    assert source is not None  # _batches made one of the arrays, or _source_data checks the user's
    fused = _fused.prepare(model, run)  # compiled calls of blocks of steps, or None: the step loop
    for cb in run.callbacks:
        cb.on_train_begin()
    try:
        for epoch in range(run.epochs):
            for cb in run.callbacks:
                cb.on_epoch_begin(epoch)
            if threads is not None:
                threads.epoch_begin(epoch)
            lr_epoch = opt.current_lr
            loss_sum, correct, seen = 0.0, 0.0, 0
            # arrays are a source too (ArraySource: the permutation from run.rng, X[idx])
            batches = source.batches(epoch, run.rng)  # a generator: draws nothing until read
            if fused is not None and fused.ready(run.epochs - epoch):
                loss_sum, correct, seen = _fused_epoch(model, run, fused)
                batches = iter(())  # all done by the kernel
            for step, (xb, yb, wb) in enumerate(batches):
                value, out = train_step(model, xb, yb, loss_fn, opt, wb)
                if threads is not None:  # times blocks of steps; may change the thread count
                    threads.step_done()
                history.iteration_loss.append(value)
                m = xb.shape[0]
                loss_sum, seen = loss_sum + value * m, seen + m
                if "accuracy" in track:
                    correct += _batch_correct(loss_fn, out, yb)
                if run.batch_hooks:
                    opt.settle()  # the update's gradient norm, before a hook changes the grads
                    _batch_end(run, step, value, m, loss_sum / seen, correct / seen, track)
                if model.stop_training:
                    break
            opt.settle()  # the last update's gradient norm, while its gradients are there
            if not seen or not math.isfinite(loss_sum):
                _record_nan(history, run.callbacks)
                break
            if epoch == 0 and isinstance(source, CheckedSource):
                _source_length(run, step + 1, seen)  # now known, if the source did not say
            if threads is not None:
                threads.epoch_end()
            logs = _epoch_logs(model, run, loss_sum / seen, correct / seen, lr_epoch)
            history.record(epoch, logs)
            for cb in run.callbacks:
                cb.on_epoch_end(epoch, logs)
            if model.stop_training:
                history.stop_reason = history.stop_reason or "early_stopping"
                history.stopped_epoch = epoch
                break
    except KeyboardInterrupt:
        _record_interrupt(history)
    finally:
        model.release_workspaces()
    for cb in run.callbacks:
        cb.on_train_end()
    for cb in run.callbacks:
        best = getattr(cb, "best_epoch", None)  # EarlyStopping's, or a user callback's
        if best is not None:
            history.best_epoch = best


def _fused_epoch(model: TrainableModel, run: _Run, fused: _fused.Fused) -> tuple[float, float, int]:
    """The epoch's steps in one compiled call (lucidnet.fused), with the step loop's records:
    the steps' losses, and the NaN guard called for the step where the loss sum turned
    non-finite (the kernel stopped after it, as the loop would)."""
    warm = fused.compiled()  # nothing to compile: the thread tuner may time the first block
    control = run.control  # the threads are timed per block, as the steps'
    done = None if control is None else (lambda steps: control.step_done(steps, warm))
    losses, loss_sum, correct, seen = fused.epoch(fused.source.order(run.rng), done, control)
    run.history.iteration_loss.extend(losses)
    if not math.isfinite(loss_sum) and run.batch_hooks:
        m = fused.sizes[len(losses) - 1]
        _batch_end(
            run, len(losses) - 1, losses[-1], m, loss_sum / seen, correct / seen, model.metrics
        )
    return loss_sum, correct, seen


def _batch_end(
    run: _Run, step: int, value: float, m: int, loss: float, accuracy: float, track: list[str]
) -> None:
    logs = {"loss": loss, "batch_size": m}
    if "accuracy" in track:
        logs["accuracy"] = accuracy
    logs["loss_batch"] = value
    for cb in run.batch_hooks:
        cb.on_batch_end(step, logs)


def _epoch_logs(
    model: TrainableModel, run: _Run, loss: float, accuracy: float, lr: float
) -> dict[str, float]:
    """The flat logs dict of an epoch: training loss and metrics, validation ones, the lr."""
    logs: dict[str, float] = {"loss": loss}
    if "accuracy" in model.metrics:
        logs["accuracy"] = accuracy
    others = [m for m in model.metrics if m != "accuracy"]
    if others and not isinstance(run.source, CheckedSource):
        # metrics other than accuracy are computed on the whole training set (in memory only)
        logs.update(_log_metrics(others, run.loss, model.predict_logits(run.X), run.y))
    if run.X_val is not None:
        logs.update(evaluate(model, run.X_val, run.y_val, prefix="val_"))
    logs["lr"] = lr
    return logs


def _check_options(verbose: Any, seed: Any, callbacks: Any) -> tuple[int, list[Callback]]:
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
    return int(verbose), callbacks


def _compile(
    model: TrainableModel, loss: Any, optimizer: Any, metrics: Any
) -> tuple[_losses.Loss, _optimizers.Optimizer]:
    """The model's loss, optimizer (default Adam) and metric names for this run."""
    if loss is not None:
        model.loss = _losses.get(loss)
    if model.loss is None:
        raise ValueError("fit needs a loss, e.g. loss='cross_entropy' or loss='mse'")
    if optimizer is not None:
        model.optimizer = _optimizers.get(optimizer)
    elif model.optimizer is None:
        model.optimizer = _optimizers.Adam()
    model.metrics = resolve_metrics(model.loss, metrics)
    return model.loss, model.optimizer


def _training_data(
    model: TrainableModel, loss: _losses.Loss, X: Any, y: Any, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Checked inputs and targets; the model is built (seeded) and its layers reseeded."""
    X = model._check_X(X)
    model._ensure_built(X, rng)
    y = prepare_targets(model, loss, y)
    check_same_length(X, y)
    for layer in model.layers:  # dropout masks follow the run's seed
        layer.reseed(rng)
    return X, y


def _source_data(
    model: TrainableModel, run: _Run, X: Any, y: Any, array_only: tuple[Any, Any, Any]
) -> None:
    """``run.source``: the user's batch source, each batch checked; the model built (seeded)
    from the first batch, which also stands in for ``run.X, run.y`` (the callbacks' sample)."""
    if y is not None:
        raise ValueError(
            "y must be None when X is a batch source (its batches carry the targets), got "
            f"{describe(y)}"
        )
    source = as_source(X)
    for name, value in zip(("sample_weight", "class_weight"), array_only[:2], strict=True):
        if value is not None:
            raise ValueError(f"{name} cannot be used with a batch source: yield (X, y, "
                             "sample_weight) batches instead")  # fmt: skip
    if array_only[2]:
        raise ValueError("validation_split needs arrays; with a batch source give "
                         "validation_data=(X_val, y_val)")  # fmt: skip
    one_shot = getattr(source, "one_shot", False)
    if one_shot and run.epochs > 1:
        raise ValueError(
            f"epochs={run.epochs} needs a source that can be read again: X is a one-shot "
            "iterator; pass a list of batches, a function returning a fresh iterator, or an "
            "object with a batches(epoch, rng) method"
        )
    # the first batch builds the model; a throwaway generator leaves run.rng as the array
    # path leaves it (the same seed gives the same initial weights on both paths)
    first = next(iter(source.batches(0, np.random.default_rng(0))), None)
    if first is None:
        raise ValueError("the batch source gave no batches: nothing to train on")
    checked = CheckedSource(source, lambda raw, where: raw, first=first if one_shot else None)
    xb, yb, _ = _check_batch(model, run.loss, first, "batch 0 of epoch 0", build=run.rng)
    run.X, run.y = xb, yb
    for layer in model.layers:  # dropout masks follow the run's seed
        layer.reseed(run.rng)
    checked.check = lambda raw, where: _scaled(run, _check_batch(model, run.loss, raw, where))
    checked.min_batch = max(layer.min_batch_size for layer in model.layers)
    run.source = checked


def _check_batch(
    model: TrainableModel,
    loss: _losses.Loss,
    raw: Any,
    where: str,
    build: np.random.Generator | None = None,
) -> Batch:
    """One batch of a source as checked ``(X, y, sample_weight)`` arrays (``build``: first
    build the model from it with this generator)."""
    if not isinstance(raw, (tuple, list)) or len(raw) not in (2, 3):
        raise TypeError(
            f"{where}: a batch source must yield (X, y) or (X, y, sample_weight) tuples, got "
            f"{describe(raw)}"
        )
    xb = model._check_X(raw[0], f"X of {where}")
    if build is not None:
        model._ensure_built(xb, build)
    yb = prepare_targets(model, loss, raw[1], f"y of {where}")
    check_same_length(xb, yb, f"X of {where}", f"y of {where}")
    wb = None
    if len(raw) == 3 and raw[2] is not None:
        wb = check_array(raw[2], f"sample_weight of {where}", dtype=model.dtype, max_ndim=1)
        check_same_length(xb, wb, f"X of {where}", f"sample_weight of {where}")
        if np.any(wb < 0):
            raise ValueError(f"sample_weight of {where} must be non-negative")
    return xb, yb, wb


def _scaled(run: _Run, batch: Batch) -> Batch:
    """A source's batch with the regression target standardised as ``fit`` does for arrays."""
    if run.scaling is None:
        return batch
    return batch[0], run.scaling.scale(batch[1]), batch[2]


def _source_scaling(source: CheckedSource, outputs: int) -> TargetScaling:
    """The target scaling of a source: its ``target_moments()``, else one pass over its
    batches (weighted like :meth:`TargetScaling.of`; Chan's merge of per-batch moments)."""
    moments = getattr(source.source, "target_moments", None)
    if moments is not None:
        mean, std = (np.asarray(v, dtype=np.float64).reshape(outputs) for v in moments())
        return TargetScaling(mean=mean, std=np.where(std > 0, std, 1.0))
    total, mean, m2 = 0.0, np.zeros(outputs), np.zeros(outputs)
    for _, yb, wb in source.batches(0, np.random.default_rng(0)):
        w = np.ones(len(yb)) if wb is None else wb.astype(np.float64)
        n_b = w.sum()
        if n_b <= 0:
            continue
        y64 = yb.astype(np.float64)
        mean_b = np.average(y64, axis=0, weights=w)
        m2_b = (w[:, None] * (y64 - mean_b) ** 2).sum(axis=0)
        delta, total_new = mean_b - mean, total + n_b
        mean = mean + delta * (n_b / total_new)
        m2 = m2 + m2_b + delta**2 * (total * n_b / total_new)
        total = total_new
    std = np.sqrt(m2 / total) if total > 0 else np.ones(outputs)
    return TargetScaling(mean=mean, std=np.where(std > 0, std, 1.0))


def _source_length(run: _Run, steps: int, rows: int) -> None:
    """After a source's first epoch: its steps and rows where it did not give them."""
    if run.steps == 0:
        run.steps = run.optimizer.steps_per_epoch = steps
        run.history.params["steps"] = steps
    if not run.history.params["samples"]:
        run.history.params["samples"] = rows


def _samples(run: _Run) -> int:
    """Training rows per epoch (a source of unknown length: 0 until its first epoch ends)."""
    if isinstance(run.source, CheckedSource):
        return run.source.n_rows or 0
    return int(run.X.shape[0])


def _hold_out(model: TrainableModel, run: _Run, split: Any, data: Any) -> None:
    """``run.X_val, run.y_val`` from ``validation_data``, or rows held out of the training
    data by ``validation_split``."""
    split = check_float(split, "validation_split", low=0.0, high=1.0, high_inclusive=False)
    if data is not None:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(
                f"validation_data must be a tuple (X_val, y_val), got {describe(data)}"
            )
        run.X_val = model._check_X(data[0], "validation_data[0]")
        run.y_val = prepare_targets(model, run.loss, data[1], "validation_data[1]")
        check_same_length(run.X_val, run.y_val, "validation_data[0]", "validation_data[1]")
    elif split > 0:
        n = run.X.shape[0]
        if n < 2:
            raise ValueError(f"validation_split needs at least 2 samples, got {n}")
        tr, va = split_indices(n, split, run.rng, label_strata(run.loss, run.y))
        if tr.size == 0 or va.size == 0:
            raise ValueError(
                f"validation_split={split} leaves {tr.size} training and {va.size} "
                f"validation samples out of {n}; both parts need at least one"
            )
        run.X, run.X_val, run.y, run.y_val = run.X[tr], run.X[va], run.y[tr], run.y[va]
        run.weights = None if run.weights is None else run.weights[tr]


def _target_scaling(model: TrainableModel, run: _Run, option: Any) -> TargetScaling | None:
    """Standardise regression targets (training and validation) and the output layer with
    them, per ``fit``'s ``target_scaling`` option; ``None`` when not done."""
    if option not in (True, False, "auto"):
        raise ValueError(f"target_scaling must be True, False or 'auto', got {describe(option)}")
    if option is False or run.loss.task != "regression" or run.y.ndim != 2:
        if option is True and run.loss.task != "regression":
            raise ValueError(f"target_scaling needs a regression loss, got {run.loss.key!r}")
        return None
    if not run.loss.scale_targets:  # a link that needs the targets' own units (Poisson)
        if option is True:
            raise ValueError(f"target_scaling=True cannot be used with loss {run.loss.key!r}")
        _start_at_best_constant(model, run)
        return None
    # folding the identity changes nothing and tells whether the output layer can fold
    if not model.layers[-1].fold_output_scaling(np.ones(1), np.zeros(1)):
        if option is True:
            raise ValueError(
                "target_scaling=True needs a linear Dense output layer to fold the scaling "
                f"into, got {model.layers[-1]!r}"
            )
        return None
    if isinstance(run.source, CheckedSource) and getattr(run.source.source, "one_shot", False):
        scaling = TargetScaling.of(run.y)  # a one-shot iterator: from its first batch only
    elif isinstance(run.source, CheckedSource):
        scaling = _source_scaling(run.source, run.y.shape[1])
    else:
        scaling = TargetScaling.of(run.y, run.weights)
    # A trained model (one with a history) predicts in target units: its output layer is
    # converted to the standardised target to continue from there. A fresh initialisation is
    # scale-free already and is taken as predicting standardised values.
    if model.history is not None:
        scaling.into_model(model)
    run.y = scaling.scale(run.y)
    if run.y_val is not None:
        run.y_val = scaling.scale(run.y_val)
    model.fit_target_scaling = scaling
    return scaling


def _start_at_best_constant(model: TrainableModel, run: _Run) -> None:
    """A fresh model whose loss does not standardise its targets (Poisson's log link) starts
    with its output bias at the loss's best constant prediction (log of the mean count), so that
    training does not spend its first epochs climbing from a rate of e^0 = 1."""
    start = run.loss.initial_output(run.y, run.weights)
    if model.history is None and start is not None:
        model.layers[-1].fold_output_scaling(np.ones_like(start), start)


def _batches(model: TrainableModel, run: _Run, batch_size: int | None) -> None:
    """Batch size and steps per epoch; a last batch smaller than a layer's minimum batch size
    (BatchNorm: 2) joins the one before it. The arrays become the run's source."""
    if isinstance(run.source, CheckedSource):  # a source decides its batches
        run.batch_size = run.source.batch_size or run.X.shape[0]  # X: the first batch
        run.steps = run.source.n_batches or 0  # 0: unknown until the first epoch ends
        run.optimizer.steps_per_epoch = max(run.steps, 1)
        return
    n = run.X.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    run.batch_size, run.steps = bs, math.ceil(n / bs)
    min_batch = max(layer.min_batch_size for layer in model.layers)
    fold_last = n > bs and 0 < n % bs < min_batch  # the short last batch joins the one before
    if fold_last:
        run.steps -= 1
    run.optimizer.steps_per_epoch = run.steps
    run.source = ArraySource(run.X, run.y, run.weights, bs, run.shuffle, fold_last)


def _callbacks(
    model: TrainableModel, run: _Run, callbacks: list[Callback], verbose: int, seed: Any
) -> None:
    """The run's callbacks (progress display and NaN guard first, unless the user brought
    their own) and its ``History``."""
    if verbose and not any(isinstance(cb, ProgressBar) for cb in callbacks):
        callbacks.append(ProgressBar(mode="bar" if verbose == 1 else "line"))
    if not any(isinstance(cb, NaNGuard) for cb in callbacks):
        callbacks.insert(0, NaNGuard())
    run.history.params = {
        "epochs": run.epochs,
        "batch_size": run.batch_size,
        "samples": _samples(run),
        "validation_samples": 0 if run.X_val is None else int(run.X_val.shape[0]),
        "steps": run.steps,
        "seed": seed,
        "loss": run.loss.key,
        "optimizer": type(run.optimizer).__name__,
    }
    if run.scaling is not None:
        run.history.params["target_scaling"] = run.scaling.to_dict()
    for cb in callbacks:
        cb.set_training_data(run.X)
        cb.set_model(model, dict(run.history.params))
    run.callbacks = callbacks
    run.batch_hooks = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
    model.history = run.history
    model.stop_training = False


def _record_interrupt(history: History) -> None:
    history.stop_reason = "interrupted"
    history.warnings.append(
        f"training interrupted by the user after {len(history.epoch)} complete epoch(s); "
        "the model keeps the weights of the last completed step"
    )
    print(f"\n{history.warnings[-1]}", file=sys.stderr)


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
