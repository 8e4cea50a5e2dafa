"""Training callbacks and the ``History`` the training loop returns.

A callback is a class of no-op hooks; the loop calls them in a fixed order with a flat ``logs``
dict (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``, ...). ``self.model`` is the
model being trained; setting ``self.model.stop_training = True`` ends training after the current
batch.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import numpy as np

from ._validation import check_float, check_one_of, check_positive_int, json_kind
from .optimizers import Optimizer, Parametrised

if TYPE_CHECKING:  # tqdm is imported only when a progress bar is shown
    from tqdm import tqdm


_MAX_METRICS = ("acc", "f1", "precision", "recall", "r2")


class CallbackModel(Parametrised, Protocol):
    """What the callbacks here need of the model they watch (``Sequential`` has it). A
    protocol, so that this module, below the model, never imports it."""

    stop_training: bool
    optimizer: Optimizer | None

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def save(self, path: str, overwrite: bool = False) -> None: ...


class Callback:
    """Base class with no-op hooks."""

    def __init__(self) -> None:
        # None until fit calls set_model, which it does before the first hook: hooks may use
        # self.model as a model without a None check
        self.model: CallbackModel = None  # type: ignore[assignment]
        self.params: dict[str, Any] = {}

    def set_model(self, model: CallbackModel, params: dict[str, Any]) -> None:
        self.model = model
        self.params = params

    def set_training_data(self, X: np.ndarray) -> None:
        """``fit`` hands every callback its training inputs before training (a no-op unless a
        callback needs them, as ``NaNGuard`` does to explain a non-finite loss)."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None: ...

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None: ...


def _overrides(cb: Callback, hook: str) -> bool:
    """Whether ``cb`` implements ``hook`` (so the loop can skip no-op per-batch calls)."""
    return getattr(type(cb), hook) is not getattr(Callback, hook)


#: the largest epoch index a history read from a file may hold (a corrupt one is refused)
_MAX_EPOCH = 2**31 - 1


def _is_epoch(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_EPOCH


def _epoch_list(values: Any, where: str) -> list[int]:
    if not isinstance(values, list) or not all(_is_epoch(v) for v in values):
        raise ValueError(
            f"{where} must be a list of epoch indices (integers >= 0), got {json_kind(values)}"
        )
    return list(values)


def _number_list(values: Any, where: str) -> list[float]:
    """``values`` as floats if it is a list of JSON numbers (not bools) that fit a float."""
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"{where} must be a list of numbers, got {json_kind(values)}")
    try:
        return [float(v) for v in values]
    except OverflowError:  # an integer beyond the float range
        raise ValueError(f"{where} holds a number too large for a float") from None


class History:
    """What happened during ``fit``.

    Attributes:
        epoch: epoch indices run (0-based).
        history: per-epoch lists keyed like the logs (``loss``, ``val_loss``, ``accuracy``,
            ``val_accuracy``, ``lr``, ...).
        iteration_loss: training loss of every optimizer step (mini-batch), in order.
        best_epoch: epoch with the best monitored value (set by ``EarlyStopping``), or ``None``.
        stopped_epoch: epoch at which training stopped early, or ``None``.
        stop_reason: why training ended before ``epochs`` ("early_stopping", "nan", "interrupted").
        warnings: plain-language warnings raised during training (NaN guard, diagnostics).
        params: the training configuration (epochs, batch size, samples, steps per epoch, ...).
    """

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.iteration_loss: list[float] = []
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.stop_reason: str | None = None
        self.warnings: list[str] = []
        self.params: dict[str, Any] = {}

    def record(self, epoch: int, logs: dict[str, Any]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        if key not in self.history:
            raise KeyError(f"no {key!r} in history; available: {', '.join(self.history)}")
        return self.history[key]

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def to_dict(self, include_iterations: bool = True) -> dict[str, Any]:
        """JSON-serialisable form (saved in model files)."""
        return {
            "epoch": list(self.epoch),
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "iteration_loss": [float(v) for v in self.iteration_loss] if include_iterations else [],
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
            "warnings": list(self.warnings),
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, data: Any) -> History:
        """Rebuild a History from :meth:`to_dict`'s form (as read back from a model file).

        Every entry is checked before it is used: ``epoch`` a list of epoch indices, ``history``
        a name -> list of numbers map with one value per epoch, ``iteration_loss`` a list of
        numbers (NaN and infinities allowed: a diverging run records them), ``best_epoch`` /
        ``stopped_epoch`` an epoch index or None, ``stop_reason`` a string or None,
        ``warnings`` a list of strings, ``params`` an object. Missing entries take their
        defaults (files written by older versions).

        Raises:
            ValueError: naming the first malformed entry (``lucidnet.load`` drops the history of
                such a file with a warning: the history only describes the training run).
        """
        if not isinstance(data, dict):
            raise ValueError(f"history must be an object, got {json_kind(data)}")
        h = cls()
        h.epoch = _epoch_list(data.get("epoch", []), "history.epoch")
        curves = data.get("history", {})
        if not isinstance(curves, dict):
            raise ValueError(f"history.history must be an object, got {json_kind(curves)}")
        for key, values in curves.items():
            h.history[key] = _number_list(values, f"history.history[{key!r:.40}]")
            if len(h.history[key]) != len(h.epoch):
                raise ValueError(
                    f"history.history[{key!r:.40}] has {len(h.history[key])} values for "
                    f"{len(h.epoch)} epochs"
                )
        h.iteration_loss = _number_list(data.get("iteration_loss", []), "history.iteration_loss")
        for attr in ("best_epoch", "stopped_epoch"):
            value = data.get(attr)
            if value is not None and not _is_epoch(value):
                raise ValueError(
                    f"history.{attr} must be an epoch index or null, got {json_kind(value)}"
                )
            setattr(h, attr, value)
        reason = data.get("stop_reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError(
                f"history.stop_reason must be a string or null, got {json_kind(reason)}"
            )
        h.stop_reason = reason
        notes = data.get("warnings", [])
        if not isinstance(notes, list) or not all(isinstance(w, str) for w in notes):
            raise ValueError(f"history.warnings must be a list of strings, got {json_kind(notes)}")
        h.warnings = list(notes)
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise ValueError(f"history.params must be an object, got {json_kind(params)}")
        h.params = dict(params)
        return h

    def __repr__(self) -> str:
        keys = ", ".join(self.history)
        return f"History(epochs={len(self.epoch)}, keys=[{keys}], stop_reason={self.stop_reason!r})"


class _Monitor(Callback):
    """Shared logic: track the best value of ``monitor``."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        super().__init__()
        self.monitor = monitor
        mode = check_one_of(mode, "mode", ("auto", "min", "max"))
        if mode == "auto":
            mode = "max" if any(m in monitor for m in _MAX_METRICS) else "min"
        self.mode = mode
        self.min_delta = check_float(min_delta, "min_delta", low=0.0)
        self.best = math.inf if mode == "min" else -math.inf

    def _value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            hint = (
                " (pass validation_split or validation_data to fit)"
                if self.monitor.startswith("val_")
                else ""
            )
            raise ValueError(
                f"{type(self).__name__}: monitor={self.monitor!r} is not in the logs{hint}; "
                f"available: {', '.join(sorted(logs))}"
            )
        return float(logs[self.monitor])

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: log key to watch (default ``"val_loss"``).
        patience: epochs without improvement before stopping.
        min_delta: smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like keys).
        restore_best_weights: at the end of training, put back the weights of the best epoch.
        start_from_epoch: epochs to wait before counting (warm-up).

    Attributes:
        best_epoch: the epoch with the best monitored value so far (0-based), or ``None``.
        stopped_epoch: the epoch at which it stopped training, or ``None``.
        restored_epoch: the epoch whose weights were put back at the end, or ``None``.

    What it does is also published in the run's ``History.params["early_stopping"]``
    (``monitor``, ``patience``, ``restore_best_weights``, ``best_epoch``, ``restored_epoch``),
    kept up to date during training, so that other callbacks (``Diagnostics``) and the saved
    history can say what was done without a reference to this object.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = check_positive_int(patience, "patience", minimum=0)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_positive_int(start_from_epoch, "start_from_epoch", minimum=0)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None
        self.stopped_epoch: int | None = None
        self.restored_epoch: int | None = None
        self._record: dict[str, Any] = {
            "monitor": self.monitor,
            "patience": self.patience,
            "restore_best_weights": self.restore_best_weights,
            "best_epoch": None,
            "restored_epoch": None,
        }
        history = getattr(self.model, "history", None)  # fit sets it before this hook
        if isinstance(history, History):
            history.params["early_stopping"] = self._record

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        value = self._value(logs)
        if epoch < self.start_from_epoch:
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self._record["best_epoch"] = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.restored_epoch = self.best_epoch
            self._record["restored_epoch"] = self.best_epoch


class ModelCheckpoint(_Monitor):
    """Save the model to ``path`` after each epoch (or only when ``monitor`` improves).

    An existing file at ``path`` is never replaced unless ``overwrite=True``: this is checked
    when training begins, before any time is spent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = True,
        mode: str = "auto",
        overwrite: bool = False,
    ) -> None:
        super().__init__(monitor, mode, 0.0)
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self.overwrite = bool(overwrite)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if os.path.exists(self.path) and not self.overwrite:
            raise FileExistsError(
                f"ModelCheckpoint: {self.path!r} already exists; pass overwrite=True to replace it"
            )
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved_epochs: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value):
                return
            self.best = value
        self.model.save(self.path, overwrite=True)
        self.saved_epochs.append(epoch)


class ReduceLROnPlateau(_Monitor):
    """Multiply the optimizer's learning rate by ``factor`` when ``monitor`` stalls for
    ``patience`` epochs (then wait ``cooldown`` epochs); never below ``min_lr``."""

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.factor = check_float(
            factor, "factor", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        self.patience = check_positive_int(patience, "patience", minimum=0)
        self.cooldown = check_positive_int(cooldown, "cooldown", minimum=0)
        self.min_lr = check_float(min_lr, "min_lr", low=0.0)

    def _optimizer(self) -> Optimizer:
        opt = self.model.optimizer
        if opt is None:  # fit always sets one before the callbacks run
            raise ValueError("ReduceLROnPlateau needs a model with an optimizer (inside fit)")
        return opt

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        opt = self._optimizer()
        if not isinstance(opt.lr, float):
            raise ValueError(
                "ReduceLROnPlateau needs an optimizer with a constant float lr, got a schedule "
                f"{opt.lr!r}; use one or the other"
            )
        self.wait = 0
        self.cooldown_left = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.reductions: list[tuple[int, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        value = self._value(logs)
        # an epoch in cooldown never counts towards patience (checking the counter after the
        # decrement, as Keras does, would make cooldown=1 a no-op)
        in_cooldown = self.cooldown_left > 0
        if in_cooldown:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
            return
        if in_cooldown:
            return
        self.wait += 1
        if self.wait >= self.patience:
            opt = self._optimizer()
            lr = opt.lr
            assert isinstance(lr, float)  # checked in on_train_begin: not a schedule
            new_lr = max(lr * self.factor, self.min_lr)
            if new_lr < lr:
                opt.lr = new_lr
                self.reductions.append((epoch, new_lr))
            self.wait = 0
            self.cooldown_left = self.cooldown


def _format_logs(logs: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    parts = []
    for key, value in logs.items():
        if key in skip:
            continue
        parts.append(f"{key}={value:.3g}" if key == "lr" else f"{key}={value:.4f}")
    return " ".join(parts)


class ProgressBar(Callback):
    """A progress bar per epoch (``tqdm``) showing the running loss and metrics, finished with
    the epoch's validation results; or, with ``mode="line"``, one line per epoch.

    Args:
        mode: ``"bar"`` or ``"line"``.
        file: stream to write to (default ``sys.stderr`` for bars, ``sys.stdout`` for lines).
        update_every: batches between refreshes of the bar's numbers (keeps the overhead low).
    """

    def __init__(
        self, mode: str = "bar", file: TextIO | None = None, update_every: int = 10
    ) -> None:
        super().__init__()
        self.mode = check_one_of(mode, "mode", ("bar", "line"))
        self.file = file
        self.update_every = check_positive_int(update_every, "update_every")
        self._bar: tqdm[Any] | None = None
        self._pending = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.mode != "bar":
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.params.get("steps", None),
            desc=f"epoch {epoch + 1}/{self.params.get('epochs', '?')}",
            unit="batch",
            leave=True,
            file=self.file or sys.stderr,
            dynamic_ncols=True,
            mininterval=0.2,
        )
        self._pending = 0

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        if self._bar is None:
            return
        self._pending += 1
        if self._pending >= self.update_every:
            self._bar.update(self._pending)
            self._pending = 0
            self._bar.set_postfix_str(_format_logs(logs, skip=("lr", "batch_size")), refresh=False)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.update(self._pending)
            self._bar.set_postfix_str(_format_logs(logs, skip=("lr",)), refresh=True)
            self._bar.close()
            self._bar = None
            return
        stream = self.file or sys.stdout
        epochs = self.params.get("epochs", "?")
        print(f"epoch {epoch + 1:>3}/{epochs}  {_format_logs(logs)}", file=stream, flush=True)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class NaNGuard(Callback):
    """Stop training when the loss becomes NaN or infinite, restore the weights of the start of
    that epoch (so the model stays usable), and explain the likely cause.

    ``fit`` hands every ``NaNGuard`` its training inputs as ``inputs``; max |X| is computed only
    if the loss does go non-finite (unscaled inputs are a likely cause), not on every ``fit``
    call: on 60,000 x 784 floats it costs ~25 ms, 3% of an epoch.
    """

    inputs: np.ndarray | None = None

    def set_training_data(self, X: np.ndarray) -> None:
        self.inputs = X

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self._snapshot = self.model.get_weights()

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        loss = logs.get("loss", 0.0)
        if math.isfinite(loss):
            return
        self.model.set_weights(self._snapshot)
        self.model.stop_training = True
        opt = getattr(self.model, "optimizer", None)
        lr = opt.current_lr if opt is not None else float("nan")
        x_max = _abs_max(self.inputs)
        causes = [f"the learning rate ({lr:.3g}) is probably too high: try 10x smaller"]
        if x_max is not None and x_max > 100:
            causes.append(f"the inputs are not scaled (max |X| = {x_max:.3g}): standardise them")
        self.message = (
            f"training stopped: the loss became {loss} at epoch {self.epoch + 1}, "
            f"batch {batch + 1}; "
            + "; ".join(causes)
            + f". Weights were restored to the start of epoch {self.epoch + 1}."
        )
        warnings.warn(self.message, RuntimeWarning, stacklevel=2)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.inputs = None  # a guard kept by the caller must not keep the training data alive


def _abs_max(X: np.ndarray | None) -> float | None:
    """max |X| of float inputs without the temporary np.abs(X) (as large as the data)."""
    if X is None or X.dtype.kind != "f" or X.size == 0:
        return None
    return float(max(X.max(), -X.min()))


def weights_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two ``get_weights()`` dicts hold identical arrays (used by tests and resumes)."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
