"""scikit-learn estimators: ``NeuralNetworkClassifier`` and ``NeuralNetworkRegressor``.

Both wrap a lucidnet :class:`~lucidnet.model.Sequential` multi-layer perceptron (``model_``) and
train it with the lucidnet training loop, so everything lucidnet offers (optimizers, schedules,
dropout, batch normalisation, the safe model file) is available behind the estimator API that
``Pipeline``, ``GridSearchCV`` and ``cross_val_score`` expect. Hyper-parameters are named as in
scikit-learn's ``MLPClassifier`` where the concept is the same.

Semantics worth knowing (they change numbers):

* ``max_iter`` counts epochs. Without early stopping, training ends when the training loss has
  not improved by ``tol`` for more than ``n_iter_no_change`` consecutive epochs (scikit-learn's
  rule); otherwise a ``ConvergenceWarning`` is raised after ``max_iter`` epochs.
* ``early_stopping=True`` holds out ``validation_fraction`` of the training data (stratified for
  single-label classification), monitors the **validation loss** (recorded in
  ``validation_loss_curve_``, unweighted) with the same ``tol`` / ``n_iter_no_change`` rule and
  restores the weights of the best epoch at the end.
* ``partial_fit`` runs one epoch over the data it is given. With ``early_stopping=True`` every call
  holds out ``validation_fraction`` of *its own* data (nothing is kept between calls, so chunks of
  a stream that does not fit in memory work), appends the held-out loss to
  ``validation_loss_curve_`` and remembers the best weights; once the held-out loss has not
  improved by ``tol`` for more than ``n_iter_no_change`` consecutive calls the best weights are
  restored, ``early_stopped_`` becomes true and further ``partial_fit`` calls are ignored (with a
  warning) until ``fit`` is called. (scikit-learn's MLP refuses this combination.)
* ``NeuralNetworkRegressor`` trains on standardised targets (mean 0, standard deviation 1 per
  output, fixed at the first training call) and folds the scaling into its output layer, so
  ``predict`` returns the target's units; its loss curves are on the standardised target.
* ``sample_weight`` (and ``class_weight``) are rescaled to mean 1 over the training samples, so the
  loss is ``sum(w_i l_i) / sum(w_i)``: an integer weight acts like repeating the sample.
* ``predict_proba`` / regression predictions are float64 whatever ``dtype`` the network uses.
* ``threads="auto"`` (default) lets lucidnet choose the threads of the matrix products
  (:mod:`lucidnet.threads`), except inside a joblib worker (``GridSearchCV(n_jobs=2)``,
  ``cross_val_score(n_jobs=-1)``): there it uses one thread per worker, since the workers
  already share the cores. An integer fixes the count for ``fit``, ``partial_fit`` and the
  predictions.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import activations as _activations
from .. import losses as _losses
from .. import optimizers as _optimizers
from .. import schedules as _schedules
from .. import threads as _threads
from .._validation import check_dtype, check_float, check_one_of, check_positive_int, describe
from ..callbacks import Callback, History
from ..layers import BatchNorm, Dense, Dropout
from ..model import Sequential
from ..splitting import split_indices
from ..training import TargetScaling, label_strata
from ..training import fit as _train

__all__ = ["NeuralNetworkClassifier", "NeuralNetworkRegressor", "load_estimator"]

_OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "adagrad")
_SCHEDULES = ("constant", "cosine", "step", "exponential")
_RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu")
_META_KEY = "sklearn_estimator"
_META_FORMAT = "lucidnet-sklearn-estimator"
# Fitted attributes that save() stores as JSON and load() restores, besides the network itself
# and the subclass's own (_fitted_to_json / _fitted_from_json).
_FITTED_ATTRIBUTES = (
    "n_features_in_ loss_curve_ validation_loss_curve_ n_iter_ best_loss_ early_stopped_ "
    "_no_improvement_count _partial_stopped"
).split()


class _StoppingRule(Callback):
    """scikit-learn's rule: count epochs whose monitored loss is not ``tol`` below the best so
    far; stop once the count exceeds ``n_iter_no_change``. State lives on the estimator so that
    it carries over between ``partial_fit`` calls."""

    def __init__(self, estimator: _BaseNeuralNetwork, monitor: str, keep_best: bool, stop: bool):
        super().__init__()
        self.est, self.monitor, self.keep_best, self.stop = estimator, monitor, keep_best, stop

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        est, value = self.est, float(logs[self.monitor])
        if value > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if value < est.best_loss_:
            est.best_loss_ = value
            if self.keep_best:
                est._best_weights = self.model.get_weights()
        if self.stop and est._no_improvement_count > est.n_iter_no_change:
            self.model.stop_training = True


class _BaseNeuralNetwork(BaseEstimator):
    """Shared implementation; see :class:`NeuralNetworkClassifier` for the parameters."""

    _losses: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        optimizer: str = "adam",
        learning_rate_init: float = 1e-3,
        batch_size: int | str = "auto",
        max_iter: int = 200,
        loss: str = "mse",
        dropout: float = 0.0,
        batch_norm: bool = False,
        l1: float = 0.0,
        l2: float = 0.0,
        lr_schedule: str | _schedules.Schedule | None = None,
        clip_norm: float | None = None,
        shuffle: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: Any = None,
        verbose: int = 0,
        dtype: str = "float32",
        threads: int | str = "auto",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.loss = loss
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.l1 = l1
        self.l2 = l2
        self.lr_schedule = lr_schedule
        self.clip_norm = clip_norm
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.threads = threads

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # both estimators accept (n, k) targets
        return tags

    # -- parameter checks (in fit, never in __init__, as scikit-learn requires) -------------------
    def _check_params(self) -> dict[str, Any]:
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, Integral) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
            raise TypeError(
                f"hidden_layer_sizes must be an int or a tuple of ints, got {describe(hidden)}"
            )
        hidden = tuple(check_positive_int(h, "hidden_layer_sizes[i]") for h in hidden)
        if not isinstance(self.activation, str):
            raise TypeError(f"activation must be a name (str), got {describe(self.activation)}")
        if self.activation.lower() == "softmax":
            raise ValueError("activation='softmax' is not a hidden-layer activation")
        _activations.ACTIVATIONS.lookup(self.activation)  # ValueError listing the valid names
        batch_size = self.batch_size
        if batch_size != "auto":
            batch_size = check_positive_int(batch_size, "batch_size")
        schedule = self.lr_schedule
        if schedule is not None and not isinstance(schedule, _schedules.Schedule):
            check_one_of(schedule, "lr_schedule", (None, *_SCHEDULES))
        loss = check_one_of(self.loss, "loss", self._losses)
        for flag in ("batch_norm", "early_stopping", "shuffle"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(
                    f"{flag} must be True or False, got {describe(getattr(self, flag))}"
                )
        if not isinstance(self.verbose, Integral):
            raise TypeError(f"verbose must be an integer >= 0, got {describe(self.verbose)}")
        return {
            "hidden": hidden,
            "activation": self.activation.lower(),
            "optimizer": check_one_of(self.optimizer, "optimizer", _OPTIMIZERS),
            "lr": check_float(
                self.learning_rate_init, "learning_rate_init", low=0.0, low_inclusive=False
            ),
            "batch_size": batch_size,
            "max_iter": check_positive_int(self.max_iter, "max_iter"),
            "loss": loss,
            "dropout": check_float(
                self.dropout, "dropout", low=0.0, high=1.0, high_inclusive=False
            ),
            "l1": check_float(self.l1, "l1", low=0.0),
            "l2": check_float(self.l2, "l2", low=0.0),
            "schedule": schedule,
            "clip_norm": None
            if self.clip_norm is None
            else check_float(self.clip_norm, "clip_norm", low=0.0, low_inclusive=False),
            "validation_fraction": check_float(
                self.validation_fraction,
                "validation_fraction",
                low=0.0,
                high=1.0,
                low_inclusive=False,
                high_inclusive=False,
            ),
            "n_iter_no_change": check_positive_int(self.n_iter_no_change, "n_iter_no_change"),
            "tol": check_float(self.tol, "tol", low=0.0),
            "dtype": check_dtype(self.dtype),
            "threads": _threads.check_threads(self.threads),
        }

    # -- construction -----------------------------------------------------------------------------
    def _build(self, cfg: dict[str, Any], n_features: int, n_outputs: int, rng) -> Sequential:
        """The MLP: [Dense -> (BatchNorm) -> activation -> (Dropout)] * hidden, then Dense(out)."""
        layers: list = []
        act, reg = cfg["activation"], {"l1": cfg["l1"], "l2": cfg["l2"]}
        for units in cfg["hidden"]:
            if self.batch_norm:
                # BatchNorm's beta replaces the Dense bias; the activation follows the normalisation
                init = "he_normal" if act in _RELU_FAMILY else "glorot_uniform"
                layers += [
                    Dense(units, use_bias=False, kernel_initializer=init, **reg),
                    BatchNorm(),
                ]
                layers.append(_activations.get(act))
            else:
                layers.append(Dense(units, activation=act, **reg))
            if cfg["dropout"]:
                layers.append(Dropout(cfg["dropout"]))
        layers.append(Dense(n_outputs, **reg))
        model = Sequential(layers, dtype=cfg["dtype"])
        model.build((n_features,), seed=rng)
        return model

    def _make_optimizer(self, cfg: dict[str, Any], steps_per_epoch: int) -> _optimizers.Optimizer:
        lr: Any = cfg["lr"]
        schedule, epochs = cfg["schedule"], cfg["max_iter"]
        if isinstance(schedule, _schedules.Schedule):
            lr = _schedules.from_config({"class": type(schedule).__name__, **schedule.get_config()})
        elif schedule == "cosine":  # to ~0 over max_iter epochs
            lr = _schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps_per_epoch))
        elif schedule == "step":  # divide by 10 after each third of max_iter
            lr = _schedules.StepDecay(lr, step_size=max(1, epochs // 3), gamma=0.1, unit="epoch")
        elif schedule == "exponential":  # to 1% of the initial rate after max_iter epochs
            lr = _schedules.ExponentialDecay(lr, decay_rate=0.01, decay_steps=epochs, unit="epoch")
        return _optimizers.get(cfg["optimizer"], lr=lr, clip_norm=cfg["clip_norm"])

    # -- the targets (subclasses) -----------------------------------------------------------------
    def _encode_y(self, y: Any, first: bool, partial: bool, classes: Any) -> tuple[np.ndarray, str]:
        """Targets as the loss wants them, and the loss name; sets target attributes on the
        first call and checks later calls against them."""
        raise NotImplementedError

    def _class_weights(self, y_enc: np.ndarray, partial: bool) -> np.ndarray | None:
        """Per-sample weights from ``class_weight`` (classifier), or ``None``."""
        return None

    def _new_target_scaling(self, y_enc: np.ndarray, w: np.ndarray) -> TargetScaling | None:
        """The standardisation of the targets to train on (regressor), or ``None``."""
        return None

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, X: Any, y: Any, sample_weight: Any, partial: bool, classes: Any = None):
        """``fit`` (``partial=False``) and ``partial_fit`` (one epoch from the current state)."""
        cfg = self._check_params()
        first = not partial or not hasattr(self, "model_")
        if not first and self.early_stopping and self._partial_stopped:
            warnings.warn(
                f"partial_fit ignored: early stopping ended training after {self.n_iter_} calls "
                f"(the held-out loss did not improve by tol={self.tol} for more than "
                f"{self.n_iter_no_change} calls); call fit to start again",
                UserWarning,
                stacklevel=3,
            )
            return self
        X, y_enc, loss, w = self._training_data(X, y, sample_weight, cfg, first, partial, classes)
        if first:
            self._rng = _generator(self.random_state)
        X, y_enc, w, val = self._hold_out(X, y_enc, w, cfg["validation_fraction"], loss)
        n_train = X.shape[0]
        bs = min(200, n_train) if cfg["batch_size"] == "auto" else min(cfg["batch_size"], n_train)
        if first:
            self._start(cfg, X.shape[1], y_enc, loss, math.ceil(n_train / bs))
            self._target_scaling = self._new_target_scaling(y_enc, w)
        if self.early_stopping and self.validation_loss_curve_ is None:
            self.validation_loss_curve_ = []  # early_stopping switched on between partial_fit calls
        history = self._train_in_target_scale(cfg, X, y_enc, w, val, bs, partial, first)
        self._after_training(cfg, history, partial)
        return self

    def _training_data(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        cfg: dict,
        first: bool,
        partial: bool,
        classes: Any,
    ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
        """Checked inputs, encoded targets, the loss name and the per-sample weights (sample
        weights times class weights)."""
        X, y = validate_data(
            self,
            X,
            y,
            reset=first,
            dtype=cfg["dtype"].type,
            multi_output=True,
            y_numeric=isinstance(self, RegressorMixin),
        )
        y_enc, loss = self._encode_y(y, first, partial, classes)
        w = _sample_weight(sample_weight, X.shape[0])
        cw = self._class_weights(y_enc, partial)
        return X, y_enc, loss, w if cw is None else w * cw

    def _hold_out(
        self, X: np.ndarray, y_enc: np.ndarray, w: np.ndarray, fraction: float, loss: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """With ``early_stopping``, hold out ``fraction`` of the rows (stratified by class when
        the targets have single labels) as the validation data; the training weights rescaled
        to mean 1 (the loss is ``sum(w l) / sum(w)``)."""
        val = None
        if self.early_stopping:
            n = X.shape[0]
            if n < 2:
                raise ValueError(f"early_stopping needs at least 2 samples to hold out, got {n}")
            strata = label_strata(_losses.get(loss), y_enc)
            tr, va = split_indices(n, fraction, self._rng, strata)
            if va.size == 0 or tr.size == 0:  # tiny classes: fall back to a plain random split
                tr, va = split_indices(n, fraction, self._rng)
            val = (X[va], y_enc[va])
            X, y_enc, w = X[tr], y_enc[tr], w[tr]
        if not w.sum() > 0:
            raise ValueError(
                "sample_weight is zero for every training sample; at least one weight must be > 0"
            )
        return X, y_enc, w * (w.shape[0] / w.sum()), val

    def _start(
        self, cfg: dict[str, Any], n_features: int, y_enc: np.ndarray, loss: str, steps: int
    ) -> None:
        """A new network and optimizer, and fresh training records (``fit`` / first call)."""
        n_out = y_enc.shape[1] if y_enc.ndim == 2 else len(self.classes_)
        self.model_ = self._build(cfg, n_features, n_out, self._rng)
        self.model_.compile(loss, self._make_optimizer(cfg, steps))
        self.loss_curve_: list[float] = []
        self.validation_loss_curve_: list[float] | None = [] if self.early_stopping else None
        self.n_iter_ = 0
        self.best_loss_ = math.inf
        self.early_stopped_ = False
        self._no_improvement_count = 0
        self._best_weights = None
        self._partial_stopped = False

    def _train_in_target_scale(
        self,
        cfg: dict[str, Any],
        X: np.ndarray,
        y_enc: np.ndarray,
        w: np.ndarray,
        val: tuple[np.ndarray, np.ndarray] | None,
        batch_size: int,
        partial: bool,
        fresh: bool,
    ) -> History:
        """Train with the stopping rule.

        A regressor trains on targets standardised with the statistics of its first call
        (``fit``'s ``target_scaling``, done here so that they stay fixed over ``partial_fit``
        calls): a fresh network is taken as predicting standardised values (as ``fit`` does), a
        trained one has the scaling folded into its output layer first; it is folded out again
        at the end. The best weights are kept and restored inside that standardised frame, so
        they stay valid across ``partial_fit`` calls.
        """
        # None for a classifier (and a regressor pickled before target scaling existed)
        scaling = getattr(self, "_target_scaling", None)
        if scaling is not None:
            if not fresh:
                scaling.into_model(self.model_)
            y_enc = scaling.scale(y_enc)
            val = None if val is None else (val[0], scaling.scale(val[1]))
        try:
            history = _train(
                self.model_,
                X,
                y_enc,
                epochs=1 if partial else cfg["max_iter"],
                batch_size=batch_size,
                validation_data=val,
                shuffle=bool(self.shuffle),
                callbacks=[
                    _StoppingRule(
                        self, "val_loss" if val else "loss", keep_best=bool(val), stop=not partial
                    )
                ],
                seed=int(self._rng.integers(2**31)),
                verbose=2 if self.verbose else 0,
                sample_weight=w,
                target_scaling=False,  # done here, with statistics fixed at the first call
                threads=_inner_threads(cfg["threads"]),
            )
            self.loss_curve_ += history.history.get("loss", [])
            if val is not None:
                self.validation_loss_curve_ += history.history.get("val_loss", [])
            self._stop_and_restore(cfg, partial)
        finally:
            if scaling is not None:
                scaling.out_of_model(self.model_)
        return history

    def _stop_and_restore(self, cfg: dict[str, Any], partial: bool) -> None:
        """Whether the stopping rule ended training; with early stopping, the best weights."""
        stopped = self._no_improvement_count > cfg["n_iter_no_change"]
        if partial:  # partial_fit only stops (and restores) with early stopping
            stopped = stopped and bool(self.early_stopping)
            self._partial_stopped = stopped
        if self.early_stopping and (stopped or not partial) and self._best_weights is not None:
            self.model_.set_weights(self._best_weights)
        if not partial:
            self._best_weights = None
        self.early_stopped_ = stopped

    def _after_training(self, cfg: dict[str, Any], history: History, partial: bool) -> None:
        """Count the epochs; warn when ``fit`` ran out of epochs before converging."""
        epochs_run = len(history.epoch)
        self.n_iter_ += epochs_run
        if (
            not partial
            and not self.early_stopped_
            and history.stop_reason is None
            and epochs_run == cfg["max_iter"]
        ):
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({cfg['max_iter']}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def fit(self, X: Any, y: Any, sample_weight: Any = None):
        """Train a new network on ``(X, y)`` for up to ``max_iter`` epochs.

        Args:
            X: (n_samples, n_features) array-like or DataFrame.
            y: targets (see the class docstring).
            sample_weight: optional (n_samples,) non-negative weights.

        Returns:
            self
        """
        return self._fit(X, y, sample_weight, partial=False)

    # -- inference --------------------------------------------------------------------------------
    def _logits(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=self.model_.dtype.type)
        setting = _inner_threads(_threads.check_threads(self.threads))
        with _threads.limited(setting, min(X.shape[0], 4096) * self.model_.multiply_adds):
            return self.model_.predict_logits(X).astype(np.float64)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Save the fitted estimator as a lucidnet model file (safetensors, no pickle).

        The network is stored as usual (``lucidnet.load(path)`` returns it); the estimator's
        parameters and fitted attributes go to ``model.metadata["sklearn_estimator"]`` as JSON.
        A ``random_state`` that is a generator object is stored as ``None``.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false.
            TypeError: a parameter cannot be represented in JSON.
        """
        check_is_fitted(self, "model_")
        fitted = {k: _param_to_json(k, getattr(self, k)) for k in _FITTED_ATTRIBUTES}
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(f) for f in self.feature_names_in_]
        fitted.update(self._fitted_to_json())
        params = {k: _param_to_json(k, v) for k, v in self.get_params(deep=False).items()}
        meta = {"format": _META_FORMAT, "version": 1, "class": type(self).__name__}
        self.model_.metadata[_META_KEY] = {**meta, "params": params, "fitted": fitted}
        self.model_.save(path, overwrite=overwrite)

    def _fitted_to_json(self) -> dict[str, Any]:
        return {}

    def _fitted_from_json(self, fitted: dict[str, Any]) -> None:
        return None

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Load an estimator saved by :meth:`save`.

        Every field of ``model.metadata["sklearn_estimator"]`` is checked before it is used:
        the parameters as ``fit`` checks them, the fitted attributes by type and range, and
        against the network (one input per feature, one output unit per class or target, the
        loss of the estimator's kind). The loss curves only describe training: a malformed
        one is dropped with a ``lucidnet.io.ModelFileWarning``.

        Raises:
            FileNotFoundError: no such file.
            lucidnet.ModelFileError: corrupt file, or not saved by ``cls.save``, or a
                malformed estimator field (the message names it).
        """
        from ..io import ModelFileError, load

        model = load(path)
        meta = model.metadata.get(_META_KEY)
        if not isinstance(meta, dict) or meta.get("format") != _META_FORMAT:
            raise ModelFileError(
                f"{os.fspath(path)!r} holds a lucidnet model but no scikit-learn estimator; "
                "load it with lucidnet.load"
            )
        name = meta.get("class")
        if not isinstance(name, str) or name not in _ESTIMATORS:
            raise ModelFileError(
                f"{os.fspath(path)!r}: unknown estimator class {describe(name)}; expected one "
                f"of {', '.join(_ESTIMATORS)}"
            )
        if cls is not _BaseNeuralNetwork and name != cls.__name__:
            raise ModelFileError(
                f"{os.fspath(path)!r} holds a {name}, not a {cls.__name__}; "
                "use lucidnet.estimators.load_estimator"
            )
        try:
            est = _ESTIMATORS[name]._from_metadata(meta, model, os.fspath(path))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelFileError(
                f"{os.fspath(path)!r}: corrupt estimator metadata ({detail})"
            ) from None
        est.model_ = model
        return est

    @classmethod
    def _from_metadata(cls, meta: dict[str, Any], model: Sequential, path: str):
        """The estimator ``meta`` describes, each field checked (errors: ValueError and kin)."""
        if meta.get("version") != 1 or isinstance(meta.get("version"), bool):
            raise ValueError(f"unsupported version {describe(meta.get('version'))}")
        params, fitted = meta["params"], meta["fitted"]
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise ValueError("'params' and 'fitted' must be objects")
        unknown = sorted(set(params) - set(cls._get_param_names()))
        if unknown:
            raise ValueError(f"unknown parameters {unknown[:5]} for {cls.__name__}")
        est = cls(**{k: _param_from_json(k, v) for k, v in params.items()})
        est._check_params()  # as fit would: a parameter fit would refuse is refused here
        est._rng = _generator(est.random_state)
        est._best_weights = None
        shape = tuple(model.input_shape or ())
        n = _fitted_count(fitted["n_features_in_"], "n_features_in_", minimum=1)
        if shape != (n,):
            raise ValueError(f"n_features_in_ is {n} but the network's input shape is {shape}")
        est.n_features_in_ = n
        names = fitted.get("feature_names_in_")
        if names is not None:
            if not isinstance(names, list) or len(names) != n:
                raise ValueError(f"feature_names_in_ must be a list of {n} strings")
            if not all(isinstance(f, str) for f in names) or len(set(names)) != n:
                raise ValueError(f"feature_names_in_ must be {n} distinct strings")
            est.feature_names_in_ = np.asarray(names, dtype=object)
        est.n_iter_ = _fitted_count(fitted["n_iter_"], "n_iter_")
        est._no_improvement_count = _fitted_count(
            fitted["_no_improvement_count"], "_no_improvement_count"
        )
        for key in ("early_stopped_", "_partial_stopped"):
            if not isinstance(fitted[key], bool):
                raise ValueError(f"{key} must be true or false, got {describe(fitted[key])}")
            setattr(est, key, fitted[key])
        est.best_loss_ = _fitted_number(fitted["best_loss_"], "best_loss_")
        est._curves_from_json(fitted, path)
        est._fitted_from_json(fitted)
        est._check_network(model)
        return est

    def _curves_from_json(self, fitted: dict[str, Any], path: str) -> None:
        """``loss_curve_`` / ``validation_loss_curve_`` (descriptive: dropped with a warning)."""
        from ..io import ModelFileWarning

        for key, empty in (
            ("loss_curve_", []),
            ("validation_loss_curve_", [] if self.early_stopping else None),
        ):
            value = fitted.get(key)
            if value is None and key == "validation_loss_curve_":
                setattr(self, key, None)
                continue
            try:
                if not isinstance(value, list):
                    raise ValueError(f"expected a list of numbers, got {describe(value)}")
                setattr(self, key, [_fitted_number(v, key, allow_nan=True) for v in value])
            except ValueError as exc:
                warnings.warn(
                    f"{path!r}: the estimator's {key} is malformed and was dropped ({exc})",
                    ModelFileWarning,
                    stacklevel=4,
                )
                setattr(self, key, empty)

    def _check_network(self, model: Sequential) -> None:
        """The network's output and loss fit the fitted attributes (subclasses)."""
        raise NotImplementedError


def in_joblib_worker() -> bool:
    """Whether this code runs inside a joblib worker (scikit-learn's ``n_jobs`` > 1).

    joblib runs each task under a nested backend whose ``nesting_level`` is 1 or more (its
    ``BatchedCalls`` enters ``parallel_config`` with ``backend.get_nested_backend()``); with
    ``n_jobs=1`` the tasks run in the caller at level 0. This holds for process workers (loky,
    which also set ``OPENBLAS_NUM_THREADS`` and kin to ``cpu_count() // n_jobs`` in the worker's
    environment, ``_parallel_backends._prepare_worker_env``) and for the threading backend,
    which limits nothing by itself.

    joblib's Dask backend (``parallel_config(backend="dask")``) runs tasks at nesting level 0 on
    a ``dask.distributed`` worker, whose threads share the cores like joblib's: code running
    inside a Dask worker (``distributed.get_worker()`` succeeds) counts as inside one too."""
    try:
        from joblib.parallel import get_active_backend

        if int(getattr(get_active_backend()[0], "nesting_level", 0) or 0) > 0:
            return True
    except Exception:  # joblib's internals moved: behave as outside a worker
        pass
    distributed = sys.modules.get("distributed")  # loaded by whoever started a Dask cluster
    try:
        return distributed is not None and distributed.get_worker() is not None
    except Exception:  # ValueError: not in a worker (or distributed's API moved)
        return False


def _inner_threads(setting: int | str) -> int | str:
    """The estimator's ``threads``: ``"auto"`` inside a joblib worker means one thread (the
    workers share the cores already); otherwise the setting as given."""
    if setting == _threads.AUTO and in_joblib_worker():
        return 1
    return setting


def _fitted_count(value: Any, name: str, minimum: int = 0) -> int:
    """A fitted count (an int, not a bool, in [minimum, 2**53])."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 2**53:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {describe(value)}")
    return value


def _fitted_number(value: Any, name: str, allow_nan: bool = False) -> float:
    """A fitted number as a float (infinities allowed: best_loss_ starts at inf; NaN where
    ``allow_nan``: a diverging run's loss curve holds it)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (value != value and not allow_nan)
    ):
        raise ValueError(f"{name} must be a number, got {describe(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} holds an integer beyond the float range") from None


def _output_units(model: Sequential) -> int | None:
    """The number of output units of a network with (n, k) outputs, else None."""
    shape = tuple(model.input_shape or ())
    for layer in model.layers:
        shape = tuple(layer.output_shape(shape))
    return shape[0] if len(shape) == 1 else None


def _merged_signature(init: Any, base_init: Any, *, after: str) -> inspect.Signature:
    """``base_init``'s signature with ``init``'s explicit parameters merged in: a parameter of the
    same name replaces the base's, a new one is inserted after ``after``; ``**params`` is dropped.
    """
    own = inspect.signature(init).parameters.values()
    own = {p.name: p for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD}
    base = inspect.signature(base_init)
    params = [own.pop(p.name, p) for p in base.parameters.values()]
    i = [p.name for p in params].index(after) + 1
    return base.replace(parameters=params[:i] + list(own.values()) + params[i:])


class NeuralNetworkClassifier(ClassifierMixin, _BaseNeuralNetwork):
    """Multi-layer perceptron classifier on lucidnet (binary, multi-class and multi-label).

    Args:
        hidden_layer_sizes: units of each hidden layer, e.g. ``(100,)`` or ``(64, 32)``.
        activation: hidden activation: ``"relu"``, ``"tanh"``, ``"logistic"`` / ``"sigmoid"``,
            ``"identity"``, ``"leaky_relu"``, ``"elu"`` or ``"gelu"``.
        optimizer: ``"sgd"``, ``"momentum"`` (SGD, momentum 0.9), ``"nesterov"``, ``"rmsprop"``,
            ``"adam"``, ``"adamw"`` (weight decay 0.01) or ``"adagrad"``.
        learning_rate_init: initial learning rate.
        batch_size: samples per update, or ``"auto"``: ``min(200, n_samples)``.
        max_iter: maximum number of epochs.
        loss: ``"cross_entropy"`` (softmax; per-label sigmoid for multi-label targets) or
            ``"binary_cross_entropy"`` (one sigmoid unit; binary or multi-label targets only).
        dropout: dropout rate after each hidden layer.
        batch_norm: batch normalisation between each hidden Dense layer and its activation.
        l1, l2: weight penalties ``l1 sum|W| + l2 sum W^2`` of every Dense layer.
        class_weight: ``None``, ``"balanced"`` or ``{class label: weight}``; multiplies
            ``sample_weight`` (single-label targets only; ``"balanced"`` not in ``partial_fit``).
        lr_schedule: ``None`` / ``"constant"``, ``"cosine"`` (to 0 over ``max_iter`` epochs),
            ``"step"`` (x0.1 after each third of ``max_iter``), ``"exponential"`` (to 1% after
            ``max_iter`` epochs) or a :class:`lucidnet.schedules.Schedule` (whose own ``lr``
            replaces ``learning_rate_init``).
        clip_norm: maximum global gradient norm (``None``: no clipping).
        shuffle: reshuffle the samples every epoch.
        early_stopping, validation_fraction, n_iter_no_change, tol: see the module docstring.
        random_state: int, ``None``, ``np.random.Generator`` or ``RandomState``: initial weights,
            shuffling, dropout masks and the validation split.
        verbose: print one line per epoch when > 0.
        dtype: ``"float32"`` (fast) or ``"float64"``.
        threads: ``"auto"`` (default: lucidnet chooses, one thread inside a joblib worker) or
            the number of threads of the matrix products (see the module docstring).

    Attributes:
        classes_: class labels (``arange(k)`` for multi-label targets).
        n_features_in_, feature_names_in_: as in scikit-learn.
        model_: the trained :class:`lucidnet.Sequential` (outputs logits).
        loss_curve_: training loss of each epoch; validation_loss_curve_: validation loss of each
            epoch with ``early_stopping`` (else ``None``).
        n_iter_: epochs run; best_loss_: best monitored loss; early_stopped_: whether the
            stopping rule ended the last training call; out_activation_: ``"softmax"`` or
            ``"logistic"``.
    """

    _losses = ("cross_entropy", "binary_cross_entropy")

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        loss: str = "cross_entropy",
        class_weight: Any = None,
        **params: Any,
    ) -> None:
        # The other parameters are the base class's, listed once there. scikit-learn reads the
        # parameter names from the signature (get_params, clone, repr) and ignores **params, so
        # __signature__ below lists them all, like help() shows them.
        super().__init__(hidden_layer_sizes, activation, loss=loss, **params)
        self.class_weight = class_weight

    __init__.__signature__ = _merged_signature(  # type: ignore[attr-defined]
        __init__, _BaseNeuralNetwork.__init__, after="l2"
    )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _encode_y(self, y: Any, first: bool, partial: bool, classes: Any) -> tuple[np.ndarray, str]:
        if sp.issparse(y):
            y = y.toarray()
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        check_classification_targets(y)
        kind = type_of_target(y)
        multilabel = kind == "multilabel-indicator"
        if not multilabel and kind not in ("binary", "multiclass"):
            raise ValueError(
                f"y must be class labels (n,) or a binary indicator matrix (n, k), got targets of "
                f"type {kind!r}; wrap the estimator in sklearn.multioutput.MultiOutputClassifier"
            )
        dt = self.model_.dtype if not first else check_dtype(self.dtype)
        if first:
            self._set_classes(y, multilabel, partial, classes)
        else:
            self._check_like_first_call(multilabel, kind, classes)
        if multilabel:
            if y.shape[1] != len(self.classes_):
                raise ValueError(f"y must have {len(self.classes_)} columns, got {y.shape[1]}")
            return y.astype(dt), "binary_cross_entropy"
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels not in classes {self.classes_.tolist()}: "
                f"{np.unique(y[unknown]).tolist()[:5]}"
            )
        if self.out_activation_ == "logistic":
            return idx.astype(dt).reshape(-1, 1), "binary_cross_entropy"
        return idx.astype(np.int64), "cross_entropy"

    def _set_classes(self, y: np.ndarray, multilabel: bool, partial: bool, classes: Any) -> None:
        """``classes_``, ``_multilabel`` and ``out_activation_`` from the first call's targets."""
        if multilabel:
            self.classes_ = np.arange(y.shape[1])
        else:
            if classes is None and partial:
                raise ValueError("classes must be passed on the first call to partial_fit")
            found = np.unique(y if classes is None else np.asarray(classes))
            if found.size < 2:
                raise ValueError(
                    f"y has only 1 class ({found[0]!r}); a classifier needs at least 2 classes "
                    "(pass classes=... to partial_fit when a chunk holds one class)"
                )
            self.classes_ = found
        self._multilabel = multilabel
        bce = multilabel or self.loss == "binary_cross_entropy"
        if self.loss == "binary_cross_entropy" and not multilabel and len(self.classes_) > 2:
            raise ValueError(
                f"loss='binary_cross_entropy' needs binary or multi-label targets, got "
                f"{len(self.classes_)} classes; use loss='cross_entropy'"
            )
        self.out_activation_ = "logistic" if bce else "softmax"

    def _check_like_first_call(self, multilabel: bool, kind: str, classes: Any) -> None:
        """A later ``partial_fit`` call's targets must be of the first call's kind."""
        if multilabel != self._multilabel:
            expected = "a binary indicator matrix" if self._multilabel else "class labels"
            raise ValueError(f"y must be {expected} like in the first call, got {kind!r}")
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.asarray(classes).tolist()} differs from the classes of the "
                f"first call {self.classes_.tolist()}"
            )

    def _class_weights(self, y_enc: np.ndarray, partial: bool) -> np.ndarray | None:
        cw = self.class_weight
        if cw is None:
            return None
        if self._multilabel:
            raise ValueError("class_weight is not supported for multi-label targets")
        if not (isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {describe(cw)}")
        if partial and isinstance(cw, str):
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit (a chunk's class counts "
                "are not the data's); pass a dict, e.g. from sklearn's compute_class_weight"
            )
        labels = y_enc.astype(np.int64).ravel()
        if isinstance(cw, dict):
            cw = self._class_weight_by_index(cw)
            if not cw:  # {}: every class weighs 1, as in scikit-learn
                return None
        # "balanced" is over the classes present (fit always sees every class)
        weights = _losses.resolve_class_weight(cw, labels, len(self.classes_))
        assert weights is not None
        return weights[labels]

    def _class_weight_by_index(self, cw: dict[Any, Any]) -> dict[int, Any]:
        """``{class label: weight}`` as ``{index into classes_: weight}``. As in scikit-learn,
        labels that are not classes are an error only while some class has no weight."""
        classes = self.classes_.tolist()
        by_index = {i: cw[c] for i, c in enumerate(classes) if c in cw}
        if len(by_index) < len(classes) and len(by_index) != len(cw):
            unknown = [k for k in cw if k not in classes]
            raise ValueError(
                f"class_weight has labels that are not classes of y: {unknown} (classes: "
                f"{classes}; unlisted classes weigh 1)"
            )
        return by_index

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None):
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer state.

        Args:
            X, y, sample_weight: as in :meth:`fit`.
            classes: every class label; required on the first call for single-label targets
                (a chunk may miss some classes).

        Returns:
            self
        """
        return self._fit(X, y, sample_weight, partial=True, classes=classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), float64; rows sum to 1 unless multi-label."""
        z = self._logits(X)
        if self.out_activation_ == "softmax":
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            return p / p.sum(axis=1, keepdims=True)
        p = _activations.sigmoid(z)
        return p if self._multilabel else np.hstack([1.0 - p, p])

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (n_samples,), or an indicator matrix (n_samples, k) for multi-label."""
        z = self._logits(X)
        if self._multilabel:
            return (z > 0).astype(np.int64)
        idx = (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)
        return self.classes_[idx]

    def _fitted_to_json(self) -> dict[str, Any]:
        classes = self.classes_
        if classes.dtype == object:
            if not all(isinstance(c, str) for c in classes):
                raise TypeError("classes_ of mixed Python types cannot be saved; use str labels")
            dtype = "object"
        else:
            dtype = classes.dtype.str
        return {
            "classes_": classes.tolist(),
            "classes_dtype": dtype,
            "out_activation_": self.out_activation_,
            "_multilabel": bool(self._multilabel),
        }

    def _fitted_from_json(self, fitted: dict[str, Any]) -> None:
        self.classes_ = _classes_from_json(fitted["classes_"], fitted["classes_dtype"])
        act, multilabel = fitted["out_activation_"], fitted["_multilabel"]
        if act not in ("softmax", "logistic") or not isinstance(multilabel, bool):
            raise ValueError(
                "out_activation_ must be 'softmax' or 'logistic' and _multilabel true or false"
            )
        self.out_activation_, self._multilabel = act, multilabel

    def _check_network(self, model: Sequential) -> None:
        k, units = len(self.classes_), _output_units(model)
        if self.out_activation_ == "softmax":
            expected, loss, why = k, _losses.CrossEntropy, f"one per class ({k})"
        elif self._multilabel:
            expected, loss, why = k, _losses.BinaryCrossEntropy, f"one per label ({k})"
        else:
            expected, loss, why = 1, _losses.BinaryCrossEntropy, "1 for a binary classifier"
        if k < 2 and not self._multilabel:
            raise ValueError(f"classes_ must hold 2 or more classes, got {k}")
        if self._multilabel and self.out_activation_ != "logistic":
            raise ValueError("a multi-label classifier has out_activation_ 'logistic'")
        if units != expected or not isinstance(model.loss, loss):
            raise ValueError(
                f"the network must have {expected} output units ({why}) and a "
                f"{loss.__name__} loss, got {units} units and loss {type(model.loss).__name__}"
            )


class NeuralNetworkRegressor(RegressorMixin, _BaseNeuralNetwork):
    """Multi-layer perceptron regressor on lucidnet, single- or multi-output.

    Parameters as :class:`NeuralNetworkClassifier` (no ``class_weight``), except
    ``loss``: ``"mse"`` (alias ``"squared_error"``), ``"mae"`` (``"absolute_error"``) or
    ``"huber"`` (delta 1). Targets are standardised for training (per output, with the weighted
    mean and standard deviation of the training targets of ``fit`` or of the first
    ``partial_fit`` call, :class:`lucidnet.training.TargetScaling`) and the scaling is folded
    into the output layer, so predictions are in the target's units whatever its scale;
    ``loss_curve_``, ``validation_loss_curve_`` and ``tol`` are on the standardised target.
    ``predict`` returns (n_samples,) for a single output, else (n_samples, n_outputs), float64.

    Attributes: as the classifier (no ``classes_``), plus ``n_outputs_``.
    """

    _losses = ("mse", "squared_error", "mae", "absolute_error", "huber")

    def _encode_y(self, y: Any, first: bool, partial: bool, classes: Any) -> tuple[np.ndarray, str]:
        y = np.asarray(y)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        if first:
            self.n_outputs_ = y.shape[1]
        elif y.shape[1] != self.n_outputs_:
            raise ValueError(f"y must have {self.n_outputs_} outputs like before, got {y.shape[1]}")
        dt = self.model_.dtype if not first else check_dtype(self.dtype)
        key = {"squared_error": "mse", "absolute_error": "mae"}.get(self.loss, self.loss)
        return y.astype(dt), key

    def _new_target_scaling(self, y_enc: np.ndarray, w: np.ndarray) -> TargetScaling | None:
        return TargetScaling.of(y_enc, w)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None):
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer state."""
        return self._fit(X, y, sample_weight, partial=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions, (n_samples,) or (n_samples, n_outputs), float64."""
        z = self._logits(X)
        return z.ravel() if z.shape[1] == 1 else z

    def _fitted_to_json(self) -> dict[str, Any]:
        scaling = getattr(self, "_target_scaling", None)
        return {
            "n_outputs_": int(self.n_outputs_),
            "target_scaling": None if scaling is None else scaling.to_dict(),
        }

    def _fitted_from_json(self, fitted: dict[str, Any]) -> None:
        self.n_outputs_ = _fitted_count(fitted["n_outputs_"], "n_outputs_", minimum=1)
        scaling = fitted.get("target_scaling")  # absent from files saved before it existed
        self._target_scaling = None
        if scaling is not None:
            if not isinstance(scaling, dict) or set(scaling) != {"mean", "std"}:
                raise ValueError("target_scaling must be null or {'mean': [...], 'std': [...]}")
            arrays = {}
            for key, values in scaling.items():
                if not isinstance(values, list) or len(values) != self.n_outputs_:
                    raise ValueError(f"target_scaling.{key} must hold {self.n_outputs_} numbers")
                arrays[key] = np.array([_fitted_number(v, key) for v in values])
            if not (np.all(np.isfinite(arrays["mean"])) and np.all(arrays["std"] > 0)):
                raise ValueError("target_scaling must have finite means and positive stds")
            if not np.all(np.isfinite(arrays["std"])):
                raise ValueError("target_scaling must have finite stds")
            self._target_scaling = TargetScaling(mean=arrays["mean"], std=arrays["std"])

    def _check_network(self, model: Sequential) -> None:
        units = _output_units(model)
        if units != self.n_outputs_ or model.loss is None or model.loss.task != "regression":
            raise ValueError(
                f"the network must have n_outputs_ ({self.n_outputs_}) output units and a "
                f"regression loss, got {units} units and loss {type(model.loss).__name__}"
            )


_ESTIMATORS = {
    "NeuralNetworkClassifier": NeuralNetworkClassifier,
    "NeuralNetworkRegressor": NeuralNetworkRegressor,
}


def load_estimator(path: str | os.PathLike) -> NeuralNetworkClassifier | NeuralNetworkRegressor:
    """Load whichever estimator :meth:`~NeuralNetworkClassifier.save` stored in ``path``."""
    return _BaseNeuralNetwork.load(path)


# -- helpers -------------------------------------------------------------------------------------
def _generator(random_state: Any) -> np.random.Generator:
    """A Generator from scikit-learn's ``random_state`` conventions (None: fresh entropy, never
    the global NumPy state)."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"random_state must be None, an int, a np.random.Generator or a RandomState, got "
        f"{describe(random_state)}"
    )


def _sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """Validated (n,) float64 weights (a new array: the caller's is never modified)."""
    if sample_weight is None:
        return np.ones(n)
    if isinstance(sample_weight, Real) and not isinstance(sample_weight, bool):
        return np.full(n, float(sample_weight))
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},) (one per sample), got {w.shape}")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative, got negative values")
    return w.copy()


def _param_to_json(name: str, value: Any) -> Any:
    """JSON form of a constructor parameter or fitted attribute (tuples, numpy scalars, dicts
    with any keys, schedules); raises TypeError naming the parameter otherwise."""
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        return None
    if isinstance(value, _schedules.Schedule):
        return {"__schedule__": {"class": type(value).__name__, **value.get_config()}}
    if isinstance(value, dict):
        return {
            "__items__": [
                [_param_to_json(name, k), _param_to_json(name, v)] for k, v in value.items()
            ]
        }
    if isinstance(value, (tuple, list)):
        return [_param_to_json(name, v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    if isinstance(value, np.dtype):
        return value.name
    if value is None or isinstance(value, (bool, str, Integral, Real)):
        return value
    raise TypeError(f"parameter {name}={describe(value)} cannot be saved in a lucidnet file (JSON)")


def _param_from_json(name: str, value: Any) -> Any:
    if isinstance(value, dict) and "__schedule__" in value:
        return _schedules.from_config(value["__schedule__"])
    if isinstance(value, dict) and "__items__" in value:
        return {_hashable(k): v for k, v in value["__items__"]}
    if name == "hidden_layer_sizes" and isinstance(value, list):
        return tuple(value)
    return value


def _classes_from_json(classes: Any, dtype: Any) -> np.ndarray:
    """``classes_`` from JSON: distinct, sorted labels (``np.unique``'s order, which ``fit``
    gives and ``partial_fit`` relies on) of a plain dtype: strings (``"object"`` or ``<U..``,
    whose declared width is not trusted), integers, floats or bools of at most 8 bytes."""
    if not isinstance(classes, list) or not isinstance(dtype, str):
        raise ValueError("classes_ must be a list and classes_dtype a dtype name")
    if dtype == "object" or dtype.lstrip("<>|=").startswith("U"):
        if not all(isinstance(c, str) for c in classes):
            raise ValueError(f"classes_ of dtype {dtype[:20]!r} must be strings")
        arr = np.asarray(classes, dtype=object if dtype == "object" else str)
    else:
        try:
            np_dtype = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"classes_dtype {dtype[:20]!r} is not a dtype") from None
        if np_dtype.kind not in "biuf" or np_dtype.itemsize > 8:
            raise ValueError(f"classes_dtype must be a plain number type, got {dtype[:20]!r}")
        kinds = {"b": bool, "i": int, "u": int, "f": (int, float)}[np_dtype.kind]
        if not all(
            isinstance(c, kinds) and (np_dtype.kind == "b") == (c is True or c is False)
            for c in classes
        ):
            raise ValueError(f"classes_ of dtype {dtype[:20]!r} must be {np_dtype.kind} values")
        arr = np.asarray(classes, dtype=np_dtype)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError("classes_ must be finite numbers")
    if arr.ndim != 1 or len(np.unique(arr)) != len(arr) or not np.array_equal(np.unique(arr), arr):
        raise ValueError("classes_ must be distinct labels in sorted order")
    return arr


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
