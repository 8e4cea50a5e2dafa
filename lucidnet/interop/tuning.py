"""Hyper-parameter search on Optuna: a search space, an objective, pruning, :func:`tune`.

Optuna (``pip install "lucidnet[tune]"``) is imported when a search runs, not with this module.
The pieces, each usable alone in a user's own Optuna study:

* the **search space** (:data:`DEFAULT_SPACE`, :func:`parse_space`): per hyper-parameter a
  :class:`Range` (``{low, high, log}`` in TOML), a :class:`Choice` (a list) or a fixed value;
* :func:`suggest` turns a trial into one training configuration (hidden sizes, learning rate,
  batch size, dropout, L2, optimizer, activation, batch normalisation);
* :class:`PruningCallback`, a lucidnet callback that reports the validation loss of every epoch
  to the trial (``trial.report``) and stops training when the pruner says the trial is poor;
* :class:`Objective`: train one configuration with early stopping, return its best validation
  loss (the value the study minimises); pruned and diverged trials raise ``TrialPruned``;
* :func:`run_study`: run an objective until the study (shared by every worker that uses the same
  storage and study name) holds ``n_trials`` finished trials, no more;
* :func:`tune`: all of it on arrays, returning the study and the best model.

Distributed search is Optuna's own: workers that open the same study in the same storage (an
SQLite file on one machine, a PostgreSQL / MySQL URL across machines) share its trials; each
worker asks the sampler for new parameters (TPE with ``constant_liar``, so parallel workers do
not propose the same point) and writes its results back.

Built on the public core only (no data preparation, no command line): the caller brings
prepared float arrays.
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import activations as _activations
from .. import losses as _losses
from .. import optimizers as _optimizers
from .._validation import check_positive_int, describe
from ..callbacks import Callback, EarlyStopping, History
from ..model import Sequential, mlp
from ..splitting import split_indices
from ..training import fit, label_strata

__all__ = [
    "DEFAULT_SPACE",
    "Choice",
    "Objective",
    "PruningCallback",
    "ValidationCurve",
    "default_params",
    "make_study",
    "open_storage",
    "Range",
    "TuningResult",
    "hidden_sizes",
    "parse_space",
    "run_study",
    "suggest",
    "tune",
]

#: what ``--optimizer`` / ``optimizer=`` accept: the registered optimizers plus SGD with momentum
_OPTIMIZER_NAMES = (*_optimizers.OPTIMIZERS.names(), "momentum", "nesterov")


@dataclass(frozen=True)
class Range:
    """A numeric interval ``[low, high]`` to sample from (integers when ``integer``; on a log
    scale when ``log``: learning rates, penalties, layer widths)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class Choice:
    """One of a few values (categorical: no order is assumed)."""

    values: tuple[Any, ...]


#: The default search space. ``layers`` hidden layers, the first ``units`` wide and each next
#: one half as wide (64, 32 is ``train``'s default); ``hidden`` (a :class:`Choice` of size
#: tuples) replaces both. Parameters absent from a space keep the defaults given to
#: :func:`suggest` (``train``'s options in the command).
DEFAULT_SPACE: dict[str, Any] = {
    "layers": Range(1, 3, integer=True),
    "units": Range(16, 256, log=True, integer=True),
    "lr": Range(1e-4, 3e-2, log=True),
    "batch_size": Choice((16, 32, 64, 128)),
    "dropout": Range(0.0, 0.5),
    "l2": Range(1e-7, 1e-2, log=True),
    "optimizer": Choice(("adam", "rmsprop", "momentum")),
}

#: the training configuration :func:`suggest` returns, with its defaults (``train``'s)
DEFAULTS: dict[str, Any] = {
    "hidden": (64, 32),
    "lr": 1e-3,
    "batch_size": 32,
    "dropout": 0.0,
    "l2": 0.0,
    "optimizer": "adam",
    "activation": "relu",
    "batch_norm": False,
}

_INTEGER = ("layers", "units", "batch_size")
_NUMERIC = ("layers", "units", "batch_size", "lr", "dropout", "l2")


# ------------------------------------------------------------------------------------------------
# The search space
# ------------------------------------------------------------------------------------------------


def _check_value(name: str, value: Any) -> Any:
    """One value of hyper-parameter ``name``, checked (and converted: hidden sizes to a tuple);
    ``ValueError`` names the parameter, what it expects and what it got."""
    if name == "hidden":
        return _hidden_value(value)
    if name in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"search space {name!r}: expected a number, got {describe(value)}")
        low_ok = {"layers": 0, "units": 1, "batch_size": 1, "dropout": 0, "l2": 0}
        bad = not math.isfinite(value) or (name == "lr" and value <= 0)
        bad |= name in low_ok and value < low_ok[name]
        bad |= name == "dropout" and value >= 1
        bad |= name in _INTEGER and value != int(value)
        if bad:
            raise ValueError(f"search space {name!r}: {value!r} is out of range ({_RULES[name]})")
        return int(value) if name in _INTEGER else float(value)
    valid = {
        "optimizer": _OPTIMIZER_NAMES,
        "activation": tuple(_activations.ACTIVATIONS.names()),
        "batch_norm": (True, False),
    }.get(name)
    if valid is None:
        raise ValueError(
            f"search space: unknown parameter {name!r}; valid: {', '.join(sorted(_RULES))}"
        )
    if value not in valid or isinstance(value, bool) != (name == "batch_norm"):
        raise ValueError(
            f"search space {name!r}: expected one of {', '.join(map(str, valid))}, got {value!r}"
        )
    return value


_RULES = {
    "layers": "an integer >= 0",
    "units": "an integer >= 1",
    "batch_size": "an integer >= 1",
    "lr": "a number > 0",
    "dropout": "a number in [0, 1)",
    "l2": "a number >= 0",
    "hidden": "layer sizes like '64,32' or [64, 32]",
    "optimizer": "an optimizer name",
    "activation": "an activation name",
    "batch_norm": "true or false",
}


def _hidden_value(value: Any) -> tuple[int, ...]:
    """``"64,32"`` / ``[64, 32]`` / ``"none"`` / ``[]`` -> (64, 32) / ()."""
    parts: Any = value
    if isinstance(value, str):
        text = value.replace(" ", "").lower()
        parts = [] if text in ("", "none", "0") else text.split(",")
    try:
        sizes = tuple(int(p) for p in parts)
        ok = all(s >= 1 and float(p) == s for s, p in zip(sizes, parts, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, (bool, int, float)):
        raise ValueError(
            f"search space 'hidden': expected layer sizes like '64,32' or [64, 32], got {value!r}"
        )
    return sizes


def _entry(name: str, spec: Any) -> Any:
    """One search-space entry from its TOML / Python form: a table ``{low, high, log}`` is a
    :class:`Range`, a list a :class:`Choice`, anything else a fixed value (for ``hidden``, a
    list of sizes ``[64, 32]`` is one value; a list of such lists or strings, choices)."""
    if isinstance(spec, Range):
        spec = {"low": spec.low, "high": spec.high, "log": spec.log}
    if isinstance(spec, Choice):
        spec = list(spec.values)
    if isinstance(spec, Mapping):
        return _range(name, spec)
    choices = isinstance(spec, (list, tuple))
    if name == "hidden":
        choices &= bool(spec) and all(isinstance(v, (list, tuple, str)) for v in spec)
    if not choices:
        return _check_value(name, spec)
    if not spec:
        raise ValueError(f"search space {name!r}: expected a non-empty list of choices, got []")
    return Choice(tuple(dict.fromkeys(_check_value(name, v) for v in spec)))


def _range(name: str, spec: Mapping[str, Any]) -> Range:
    """A ``{low, high, log}`` table as a :class:`Range` of a numeric parameter."""
    if name not in _NUMERIC:
        raise ValueError(
            f"search space {name!r}: a range needs a numeric parameter ({', '.join(_NUMERIC)}); "
            "give a list of choices or one value"
        )
    log = spec.get("log", False)
    if (
        set(spec) - {"low", "high", "log"}
        or not {"low", "high"} <= set(spec)
        or log
        not in (
            True,
            False,
        )
    ):
        raise ValueError(
            f"search space {name!r}: expected a table with low, high and optionally "
            f"log = true / false, got {dict(spec)!r}"
        )
    low, high = _check_value(name, spec["low"]), _check_value(name, spec["high"])
    if not low < high or (log and low <= 0):
        raise ValueError(
            f"search space {name!r}: expected low < high (and low > 0 on a log scale), got "
            f"low={low!r}, high={high!r}"
        )
    return Range(low, high, bool(log), integer=name in _INTEGER)


def parse_space(
    overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A search space: ``base`` (default :data:`DEFAULT_SPACE`) with ``overrides`` entry by entry.

    Entries: a range ``{"low": 1e-4, "high": 1e-1, "log": True}`` (TOML: ``lr = {low = 1e-4,
    high = 0.1, log = true}``), a list of choices (``batch_size = [32, 64]``, ``hidden =
    ["64,32", "128"]``), or one value, which takes the parameter out of the search
    (``dropout = 0.0``). Keys may be written with ``-`` (``batch-size``). Giving ``hidden``
    removes ``layers`` and ``units`` and the other way round.

    Raises:
        ValueError: an unknown key or a malformed entry, naming it, what was expected and what
            was given.
    """
    space = dict(DEFAULT_SPACE if base is None else base)
    for key, spec in (overrides or {}).items():
        name = str(key).replace("-", "_")
        space[name] = _entry(name, spec)
        if name == "hidden":
            space.pop("layers", None)
            space.pop("units", None)
        elif name in ("layers", "units"):
            space.pop("hidden", None)
            other = "layers" if name == "units" else "units"
            space.setdefault(other, DEFAULT_SPACE[other])
    return space


def describe_space(space: Mapping[str, Any]) -> str:
    """One line per parameter: ``lr  1e-04 .. 0.03 (log)``, ``optimizer  adam | rmsprop``."""
    lines = []
    for name, spec in space.items():
        if isinstance(spec, Range):
            what = f"{spec.low:g} .. {spec.high:g}{' (log)' if spec.log else ''}"
        elif isinstance(spec, Choice):
            what = " | ".join(_show(v) for v in spec.values)
        else:
            what = f"{_show(spec)} (fixed)"
        lines.append(f"  {name:<11} {what}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def hidden_sizes(layers: int, units: int) -> tuple[int, ...]:
    """``layers`` hidden sizes, the first ``units`` wide, each next one half the previous (at
    least 4): ``hidden_sizes(2, 64) == (64, 32)``."""
    return tuple(max(4, units >> i) for i in range(layers))


def suggest(
    trial: Any, space: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One training configuration drawn by an Optuna ``trial`` from ``space``.

    Args:
        trial: an ``optuna.Trial`` (or anything with its ``suggest_int`` / ``suggest_float`` /
            ``suggest_categorical``).
        space: from :func:`parse_space` (default :data:`DEFAULT_SPACE`).
        defaults: values of the parameters the space does not search (default :data:`DEFAULTS`).

    Returns:
        ``{"hidden": tuple, "lr", "batch_size", "dropout", "l2", "optimizer", "activation",
        "batch_norm"}``. A tuple of hidden sizes is stored in the trial as the text ``"64,32"``
        (Optuna's choices must be plain values).
    """
    space = DEFAULT_SPACE if space is None else space
    config = {**DEFAULTS, **(defaults or {})}
    drawn: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, Range) and spec.integer:
            drawn[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
        elif isinstance(spec, Range):
            drawn[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        elif isinstance(spec, Choice):
            values = [_show(v) if name == "hidden" else v for v in spec.values]
            drawn[name] = trial.suggest_categorical(name, values)
        else:
            drawn[name] = spec
    if "hidden" in drawn:
        drawn["hidden"] = _hidden_value(drawn["hidden"])
    elif "layers" in drawn or "units" in drawn:
        layers = drawn.pop("layers", len(config["hidden"]))
        units = drawn.pop("units", config["hidden"][0] if config["hidden"] else 64)
        drawn["hidden"] = hidden_sizes(layers, units)
    config.update(drawn)
    config["hidden"] = tuple(config["hidden"])
    return config


# ------------------------------------------------------------------------------------------------
# Pruning and the objective
# ------------------------------------------------------------------------------------------------


class ValidationCurve(Callback):
    """Record the validation loss of every epoch *without* the weight penalty (L2 / L1).

    ``fit``'s ``val_loss`` includes the penalty, which grows with the ``l2`` being searched:
    comparing trials on it would favour small penalties whatever they do to the predictions.
    The value recorded is ``val_loss - model.penalty()`` (the weights are the same at the end of
    the epoch as when the validation loss was computed).

    Attributes:
        values: one value per epoch run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if "val_loss" not in logs:
            raise ValueError(
                f"{type(self).__name__}: no 'val_loss' in the epoch's logs (keys: "
                f"{', '.join(logs)}); pass validation data to fit"
            )
        penalty = getattr(self.model, "penalty", None)
        self.values.append(float(logs["val_loss"]) - (float(penalty()) if penalty else 0.0))


class PruningCallback(ValidationCurve):
    """Report the validation loss of every epoch (:class:`ValidationCurve`'s, without the
    penalty) to an Optuna trial and stop training when the trial's pruner says to
    (``trial.should_prune()``).

    Training is stopped cleanly (``model.stop_training``), not by an exception inside ``fit``;
    the caller raises ``optuna.TrialPruned`` afterwards when :attr:`pruned_epoch` is set
    (:class:`Objective` does). A non-finite value is not reported (Optuna would refuse it).

    Attributes:
        pruned_epoch: the 0-based epoch after which the trial was pruned, or None.
    """

    def __init__(self, trial: Any) -> None:
        super().__init__()
        self.trial = trial
        self.pruned_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        super().on_epoch_end(epoch, logs)
        value = self.values[-1]
        if not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned_epoch = epoch
            self.model.stop_training = True


@dataclass
class Trained:
    """What one trial trained: the model (best epoch's weights), its history, the
    configuration, its value (validation loss without the penalty at the kept epoch), the
    seconds it took and the validation curve (a :class:`PruningCallback` when pruned)."""

    model: Sequential
    history: History
    config: dict[str, Any]
    value: float
    seconds: float
    best_epoch: int | None = None  # 0-based, the epoch whose weights were kept
    curve: ValidationCurve = field(default_factory=ValidationCurve)


class Objective:
    """Train one configuration per trial and return its best validation loss.

    Args:
        X, y: training rows (prepared float features) and targets, as ``fit`` takes them.
        X_val, y_val: validation rows: early stopping, pruning and the returned value use them.
        loss: loss name or instance (``"cross_entropy"``, ``"mse"``, ...).
        n_outputs: output units (classes for cross-entropy, targets for regression).
        space: the search space (:func:`parse_space`; default :data:`DEFAULT_SPACE`).
        defaults: the values of parameters not searched (:data:`DEFAULTS`).
        epochs: most epochs per trial; patience: early stopping's patience (epochs).
        seed: seeds each trial's initial weights, shuffling and dropout (the same for all
            trials, so two trials differ by their parameters only).
        threads: BLAS threads per trial (default 1: parallel workers each use one core).
        class_weight: passed to ``fit``.
        build: ``build(n_outputs, hidden, activation, dropout, batch_norm, l2) -> model``
            (default :func:`lucidnet.model.mlp`).
        on_best: called as ``on_best(trial, trained)`` when a trial beats every finished trial of
            the study (all workers'): e.g. to save the model.

    The value of a trial is the lowest validation loss of its epochs (early stopping restores
    that epoch's weights). A pruned trial, or one whose loss became NaN, raises
    ``optuna.TrialPruned``; Ctrl-C (which ``fit`` catches to stop cleanly) is raised again as
    ``KeyboardInterrupt``, so that Optuna marks the trial failed and stops.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        loss: str | _losses.Loss,
        n_outputs: int,
        space: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        epochs: int = 50,
        patience: int = 10,
        seed: int = 0,
        threads: int | str = 1,
        class_weight: Any = None,
        build: Callable[..., Any] | None = None,
        on_best: Callable[[Any, Trained], None] | None = None,
    ) -> None:
        if len(X_val) == 0:
            raise ValueError("Objective needs validation rows (X_val is empty)")
        self.X, self.y, self.X_val, self.y_val = X, y, X_val, y_val
        self.loss, self.n_outputs = loss, check_positive_int(n_outputs, "n_outputs")
        self.space = DEFAULT_SPACE if space is None else space
        self.defaults = dict(defaults or {})
        self.epochs = check_positive_int(epochs, "epochs")
        self.patience, self.seed, self.threads = patience, seed, threads
        self.class_weight = class_weight
        self.build = mlp if build is None else build
        self.on_best = on_best

    def train(self, config: Mapping[str, Any], trial: Any = None) -> Trained:
        """Train one configuration; with ``trial``, report to it and let it prune
        (:class:`PruningCallback`, then in ``callbacks``' place in the result). Without, as
        when the best trial's parameters are retrained because another worker found them."""
        c = {**DEFAULTS, **config}
        model = self.build(
            self.n_outputs,
            tuple(c["hidden"]),
            c["activation"],
            c["dropout"],
            c["batch_norm"],
            c["l2"],
        )
        stopper = EarlyStopping("val_loss", patience=self.patience, restore_best_weights=True)
        curve = ValidationCurve() if trial is None else PruningCallback(trial)
        start = time.perf_counter()
        # a diverging trial is normal in a search: the loss going to inf / NaN (NumPy's overflow
        # warnings, the NaN guard's) ends the trial as pruned ("diverged"; the guard's message
        # is in history.warnings) instead of printing a screenful of warnings per trial
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            history = fit(
                model,
                self.X,
                self.y,
                loss=self.loss,
                optimizer=_optimizers.get(c["optimizer"], lr=c["lr"]),
                epochs=self.epochs,
                batch_size=c["batch_size"],
                validation_data=(self.X_val, self.y_val),
                callbacks=[stopper, curve],
                seed=self.seed,
                verbose=0,
                class_weight=self.class_weight,
                threads=self.threads,
            )
        if history.stop_reason == "interrupted":
            raise KeyboardInterrupt
        # the value of the epoch whose weights early stopping restored (the model kept)
        best = stopper.best_epoch
        value = float("nan") if best is None else curve.values[best]
        seconds = time.perf_counter() - start
        return Trained(model, history, dict(c), value, seconds, best, curve)

    def __call__(self, trial: Any) -> float:
        import optuna

        config = suggest(trial, self.space, self.defaults)
        trained = self.train(config, trial)
        h, curve = trained.history, trained.curve
        trial.set_user_attr("epochs", len(h.epoch))
        trial.set_user_attr("seconds", round(trained.seconds, 3))
        trial.set_user_attr("hidden", _show(config["hidden"]))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        first = default_params(self.space, self.defaults) if trial.number == 0 else None
        if first and all(trial.params.get(k) == v for k, v in first.items()):
            trial.set_user_attr("settings", "defaults")  # the defaults' own trial
        pruned = curve.pruned_epoch if isinstance(curve, PruningCallback) else None
        if pruned is not None:
            raise optuna.TrialPruned(
                f"pruned after epoch {pruned + 1}: val_loss {curve.values[pruned]:.4g}"
            )
        if not math.isfinite(trained.value) or h.stop_reason == "nan":
            if h.warnings:
                trial.set_user_attr("warning", h.warnings[0][:500])
            raise optuna.TrialPruned("the loss became NaN or infinite (diverged)")
        trial.set_user_attr("best_epoch", (trained.best_epoch or 0) + 1)
        if self.on_best is not None and _beats_study(trial, trained.value):
            self.on_best(trial, trained)
        return trained.value


def _beats_study(trial: Any, value: float) -> bool:
    """Whether ``value`` is lower than every completed trial of the study (all workers')."""
    try:
        return value < trial.study.best_value
    except ValueError:  # no completed trial yet
        return True


# ------------------------------------------------------------------------------------------------
# Running a study
# ------------------------------------------------------------------------------------------------


class _Surplus(Exception):
    """A trial asked for after the study already held its ``n_trials`` (two workers asked at
    the same moment): it is not run, and Optuna records it as failed with this reason."""


def finished_states() -> tuple[Any, ...]:
    """The trial states that count towards ``n_trials``: completed and pruned."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def run_study(
    study: Any,
    objective: Callable[[Any], float],
    n_trials: int,
    *,
    timeout: float | None = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
) -> int:
    """Run ``objective`` in ``study`` until the study holds ``n_trials`` finished (completed or
    pruned) trials, counting every worker's, or ``timeout`` seconds pass.

    Several processes may call this on the same study at once: before training, a trial checks
    that fewer than ``n_trials`` trials were started before it (running or finished, by any
    worker); if not (another worker took the last one in the same instant), it is not trained
    and is recorded as failed with the user attribute ``surplus``. A resumed study (the same
    call again after Ctrl-C) continues until the total is reached.

    Returns:
        The number of trials this call ran (finished, not counting surplus ones).
    """
    from optuna.trial import TrialState

    n_trials = check_positive_int(n_trials, "n_trials")
    counted = (*finished_states(), TrialState.RUNNING, TrialState.WAITING)
    ran = 0

    def guarded(trial: Any) -> float:
        before = [
            t for t in study.get_trials(deepcopy=False, states=counted) if t.number < trial.number
        ]
        if len(before) >= n_trials:
            trial.set_user_attr("surplus", True)
            study.stop()
            raise _Surplus(f"the study already had {n_trials} trials when this one started")
        return objective(trial)

    def stop_when_full(study_: Any, frozen: Any) -> None:
        nonlocal ran
        ran += frozen.state in finished_states()
        if len(study_.get_trials(deepcopy=False, states=finished_states())) >= n_trials:
            study_.stop()

    if len(study.get_trials(deepcopy=False, states=finished_states())) >= n_trials:
        return 0
    try:
        study.optimize(
            guarded,
            timeout=timeout,
            catch=(_Surplus,),
            callbacks=[stop_when_full, *callbacks],
            gc_after_trial=False,
        )
    except KeyboardInterrupt:
        _fail_if_running(study, getattr(study.sampler, "started", [])[-1:])
        raise
    return ran


def _fail_if_running(study: Any, trial_ids: list[int]) -> None:
    """After Ctrl-C, the trial this worker was running (the last one its sampler saw start:
    :func:`_worker_sampler`) is marked failed. Optuna does so when the interrupt reaches the
    objective, but not when it lands in Optuna's own code (asking for the trial, a storage
    call): the trial would stay "running" and count towards ``n_trials`` until its heartbeat
    went stale."""
    from optuna.trial import TrialState

    for trial_id in trial_ids:
        try:
            if study._storage.get_trial(trial_id).state == TrialState.RUNNING:
                study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 (the heartbeat fails it later; Ctrl-C must go on)
            pass


@dataclass
class TuningResult:
    """What :func:`tune` found.

    Attributes:
        study: the ``optuna.Study`` (every worker's trials when its storage is shared).
        best_model: the best trial's network, trained with its parameters (in this process, or
            retrained here when another worker or an earlier run found it).
        best_config: the best trial's training configuration (:func:`suggest`'s form).
        best_value: its validation loss.
        trials_run: trials this call ran.
    """

    study: Any
    best_model: Sequential | None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_value: float = float("nan")
    trials_run: int = 0


#: seconds between a running trial's heartbeats in an SQL storage; a trial silent for
#: ``GRACE_SECONDS`` (its worker was killed) is marked failed by the next worker that asks
HEARTBEAT_SECONDS, GRACE_SECONDS = 10, 60


def open_storage(url: str, heartbeat: bool = True) -> Any:
    """An Optuna storage for an SQLAlchemy URL (``sqlite:///tune.db``,
    ``postgresql://user:pass@host/db``, ``mysql://...``), set up for several workers: SQLite in
    WAL mode waiting for locks (:func:`sqlite_engine`), ``postgresql://`` on psycopg2 where
    psycopg 3 is missing (:func:`with_driver`), and with ``heartbeat`` a running trial's
    heartbeat every ``HEARTBEAT_SECONDS``: the trial of a worker killed without a chance to
    say so is marked failed once silent for ``GRACE_SECONDS``, instead of counting as running
    for ever.

    Raises:
        ValueError / ImportError / sqlalchemy's ``ArgumentError``: a malformed URL or a missing
            database driver.
    """

    import optuna
    from optuna.exceptions import ExperimentalWarning

    kwargs = sqlite_engine(url) if url.startswith("sqlite") else {}
    beats: dict[str, Any] = {}
    if heartbeat:
        beats = {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": GRACE_SECONDS}
    with warnings.catch_warnings():  # (heartbeats are "experimental" in Optuna 5)
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.storages.RDBStorage(with_driver(url), engine_kwargs=kwargs, **beats)


def sqlite_engine(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for an SQLite storage: wait up to 2 minutes for another
    worker's lock, and write-ahead logging with ``synchronous=NORMAL``. Optuna commits every
    reported epoch; with SQLite's default (a full sync per commit, ~20 ms here) a trial of 50
    short epochs spent a second waiting for the disk. In WAL mode a commit survives the process
    (Ctrl-C, a killed worker), not a power cut, and readers do not block the writer."""
    import sqlite3

    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if not path or path == ":memory:":
        return {"connect_args": {"timeout": 120}}

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(path, timeout=120, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return {"creator": connect}


def with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as the psycopg (3) driver; where only psycopg2 is
    installed (``pip install psycopg2-binary``), use that one instead of failing."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
    return url


def default_params(space: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The trial parameters that reproduce ``defaults`` (a training configuration, e.g.
    ``train``'s options) within ``space``: only those the space can hold (an ``l2`` of 0 is
    taken as the space's lowest value; hidden sizes as ``layers`` / ``units`` when they halve
    layer by layer); the others are left to the sampler."""
    values = {**DEFAULTS, **defaults}
    hidden = tuple(values["hidden"])
    if hidden and hidden == hidden_sizes(len(hidden), hidden[0]):
        values.update(layers=len(hidden), units=hidden[0])
    values["hidden"] = _show(hidden)
    params: dict[str, Any] = {}
    for key, spec in space.items():
        value = values.get(key)
        if isinstance(spec, Range) and value is not None:
            value = spec.low if key == "l2" and value == 0 else value
            if spec.low <= value <= spec.high:
                params[key] = value
        elif isinstance(spec, Choice) and value is not None:
            if value in [_show(v) if key == "hidden" else v for v in spec.values]:
                params[key] = value
    return params


def _worker_sampler(base: Any, first: Mapping[str, Any] | None) -> Any:
    """``base`` wrapped for a worker: with ``first``, trial number 0 gets those parameters (as
    far as they go; trial numbers are unique in a storage, so of several workers that start a
    new study at once exactly one runs them, where ``study.enqueue_trial`` would let two
    workers on SQLite pop the same waiting trial); and the ids of the trials this process
    started are kept (``started``), so that Ctrl-C can fail the one it was running."""
    import optuna

    class WorkerSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.base, self.first = base, dict(first or {})
            self.started: list[int] = []

        def reseed_rng(self) -> None:
            self.base.reseed_rng()

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            if trial.number == 0 and self.first:
                return {}
            return self.base.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, space: dict[str, Any]) -> dict[str, Any]:
            return self.base.sample_relative(study, trial, space) if space else {}

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            if trial.number == 0 and name in self.first:
                value = self.first[name]
                if dist._contains(dist.to_internal_repr(value)):
                    return value
            return self.base.sample_independent(study, trial, name, dist)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.started.append(trial._trial_id)  # (called as soon as ask created the trial)
            self.base.before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.base.after_trial(study, trial, state, values)

    return WorkerSampler()


def make_study(
    storage: Any = None,
    study_name: str | None = None,
    *,
    sampler_seed: int | None = None,
    pruner: Any = None,
    first_params: Mapping[str, Any] | None = None,
) -> Any:
    """A minimising study (created, or loaded when ``study_name`` exists in ``storage``) with
    TPE (``constant_liar``: parallel workers spread out) and a median pruner that waits for 4
    finished trials and 5 epochs of a trial before pruning it. With ``first_params``
    (:func:`default_params`), trial number 0 runs them: a new study starts from the defaults,
    so its table shows what the search gained over them."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    sampler = _worker_sampler(sampler, first_params)
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=5)
    return optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def tune(
    X: Any,
    y: Any,
    *,
    loss: str | _losses.Loss,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.2,
    n_outputs: int | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    epochs: int = 50,
    patience: int = 10,
    space: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    study: Any = None,
    storage: Any = None,
    study_name: str | None = None,
    seed: int = 0,
    sampler_seed: int | None = None,
    threads: int | str = 1,
    class_weight: Any = None,
    build: Callable[..., Any] | None = None,
    on_best: Callable[[Any, Trained], None] | None = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    start_from_defaults: bool = True,
) -> TuningResult:
    """Search hyper-parameters with Optuna (TPE, median pruning) on prepared arrays.

    Args:
        X, y: prepared float features (n, features) and targets, as ``fit`` takes them.
        loss: the loss to train and validate with (``"cross_entropy"``, ``"mse"``, ...).
        validation_data: ``(X_val, y_val)``; otherwise ``validation_split`` of (X, y) is held out
            once (stratified for classification, seeded by ``seed``) and shared by all trials.
        n_outputs: output units (default: classes in ``y`` for cross-entropy, else y's columns).
        n_trials: finished trials the study should hold (with a shared storage: all workers'
            together; a loaded study continues to this total).
        timeout: stop starting trials after this many seconds.
        epochs, patience: per trial, with early stopping on the validation loss.
        space: search space (:func:`parse_space` or a dict of its entries); default
            :data:`DEFAULT_SPACE`. defaults: values of parameters not searched.
        study: an ``optuna.Study`` to use; else one is made (:func:`make_study`) in ``storage``
            (an Optuna storage, or a URL opened by :func:`open_storage`: ``"sqlite:///tune.db"``,
            ``"postgresql://..."``; None: in memory) under ``study_name``.
        seed: initial weights, shuffling and dropout of every trial, and the validation split.
        sampler_seed: seeds TPE (reproducible in one process; leave None for parallel workers,
            or they would propose the same first points).
        threads: BLAS threads per trial (1: parallel workers each use one core).
        class_weight, build, on_best: see :class:`Objective`.
        callbacks: Optuna callbacks ``f(study, frozen_trial)`` after each trial.
        start_from_defaults: a new study's trial 0 trains ``defaults`` (:func:`default_params`;
            only when the study is made here).

    Returns:
        A :class:`TuningResult`; ``best_model`` is None when no trial completed.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    loss_obj = _losses.get(loss)
    if validation_data is None:
        rng = np.random.default_rng(seed)
        keep, held = split_indices(len(X), validation_split, rng, label_strata(loss_obj, y))
        X, y, X_val, y_val = X[keep], y[keep], X[held], y[held]
    else:
        X_val, y_val = (np.asarray(a) for a in validation_data)
    if n_outputs is None:
        n_outputs = _outputs_of(loss_obj, y)
    best: dict[str, Any] = {}

    def keep_best(trial: Any, trained: Trained) -> None:
        best.update(number=trial.number, trained=trained)
        if on_best is not None:
            on_best(trial, trained)

    objective = Objective(
        X,
        y,
        X_val,
        y_val,
        loss=loss_obj,
        n_outputs=n_outputs,
        space=space,
        defaults=defaults,
        epochs=epochs,
        patience=patience,
        seed=seed,
        threads=threads,
        class_weight=class_weight,
        build=build,
        on_best=keep_best,
    )
    if isinstance(storage, str):
        storage = open_storage(storage)
    if study is None:
        first = default_params(objective.space, objective.defaults) if start_from_defaults else None
        study = make_study(storage, study_name, sampler_seed=sampler_seed, first_params=first)
    ran = run_study(study, objective, n_trials, timeout=timeout, callbacks=callbacks)
    return _result(study, objective, best, ran)


def _outputs_of(loss: _losses.Loss, y: np.ndarray) -> int:
    if loss.task == "classification" and y.ndim == 1 and loss.output_activation == "softmax":
        return int(y.max()) + 1
    return 1 if y.ndim == 1 else int(y.shape[1])


def best_config(trial: Any, objective: Objective) -> dict[str, Any]:
    """The training configuration of a finished trial (its parameters replayed through
    :func:`suggest`)."""
    import optuna

    fixed = optuna.trial.FixedTrial(dict(trial.params))
    return suggest(fixed, objective.space, objective.defaults)


def _result(study: Any, objective: Objective, best: dict[str, Any], ran: int) -> TuningResult:
    """The study's best trial and its model: the one trained here, or retrained from its
    parameters (same seed, so the same network) when another worker or run found it."""
    try:
        trial = study.best_trial
    except ValueError:  # no completed trial
        return TuningResult(study, None, trials_run=ran)
    if best.get("number") == trial.number:
        trained = best["trained"]
    else:
        trained = objective.train(best_config(trial, objective))
    return TuningResult(study, trained.model, trained.config, float(trial.value), ran)
