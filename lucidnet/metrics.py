"""Evaluation metrics on NumPy arrays.

Classification metrics take integer labels (``y_true``, ``y_pred``); macro averages weight every
class equally and count a class that is never predicted as precision 0 (scikit-learn's
``zero_division=0``). They are implemented here in a few lines of NumPy (and tested against
scikit-learn) because the training loop calls them every epoch and importing scikit-learn would
make ``import lucidnet`` slow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .registry import Registry

METRICS = Registry("metric")


def _labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {t.shape} and {p.shape}"
        )
    if t.size == 0:
        raise ValueError("y_true must not be empty")
    return t, p


@METRICS.register("accuracy", "acc")
def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples whose predicted label equals the true label."""
    t, p = _labels(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """Counts C[i, j] of samples of true class i predicted as class j (integer labels)."""
    t, p = _labels(y_true, y_pred)
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    k = int(max(t.max(), p.max()) + 1) if n_classes is None else int(n_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def precision_recall_f1(
    y_true: Any, y_pred: Any, n_classes: int | None = None
) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support (zero division gives 0)."""
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _present(y_true: Any, y_pred: Any) -> np.ndarray:
    # classes that occur in either array, as scikit-learn's macro average does
    t, p = _labels(y_true, y_pred)
    return np.union1d(t, p).astype(np.int64)


@METRICS.register("precision", "precision_macro")
def precision(y_true: Any, y_pred: Any) -> float:
    """Macro-averaged precision over the classes present in y_true or y_pred."""
    return float(precision_recall_f1(y_true, y_pred)["precision"][_present(y_true, y_pred)].mean())


@METRICS.register("recall", "recall_macro")
def recall(y_true: Any, y_pred: Any) -> float:
    """Macro-averaged recall over the classes present in y_true or y_pred."""
    return float(precision_recall_f1(y_true, y_pred)["recall"][_present(y_true, y_pred)].mean())


@METRICS.register("f1", "f1_macro")
def f1(y_true: Any, y_pred: Any) -> float:
    """Macro-averaged F1 over the classes present in y_true or y_pred."""
    return float(precision_recall_f1(y_true, y_pred)["f1"][_present(y_true, y_pred)].mean())


def _values(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        if t.size == p.size:
            t, p = t.reshape(p.shape), p
        else:
            raise ValueError(
                f"y_true and y_pred must have the same shape, got {t.shape} and {p.shape}"
            )
    if t.size == 0:
        raise ValueError("y_true must not be empty")
    return t, p


@METRICS.register("mse")
def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error."""
    t, p = _values(y_true, y_pred)
    return float(np.mean((t - p) ** 2))


@METRICS.register("rmse")
def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


@METRICS.register("mae")
def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error."""
    t, p = _values(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


@METRICS.register("r2", "r2_score")
def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot, averaged over outputs (uniform)."""
    t, p = _values(y_true, y_pred)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None]
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    # constant targets: 1 for a perfect prediction, else 0 (scikit-learn's force_finite)
    fallback = np.where(ss_res == 0, 1.0, 0.0)
    scores = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), fallback)
    return float(scores.mean())


#: metrics that compare labels (computed on argmax / thresholded predictions).
LABEL_METRICS = {"accuracy", "precision", "recall", "f1"}


def get(name: str) -> Callable[..., float | np.ndarray]:
    """The metric function called ``name``."""
    return METRICS.lookup(name)


def canonical_name(name: str) -> str:
    """The canonical registry name of a metric (``"acc"`` -> ``"accuracy"``)."""
    fn = METRICS.lookup(name)
    return fn.__name__
