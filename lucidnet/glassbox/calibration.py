"""Calibration of a classifier: expected calibration error, reliability bins, temperature scaling.

A classifier is *calibrated* when, of the rows it predicts with confidence 0.8, about 80% are
right. Networks trained to a low loss are often over-confident.

**Expected calibration error** (ECE, top-label, Guo et al. 2017): each row's confidence is its
largest predicted probability; the interval [0, 1] is cut into ``n_bins`` equal-width bins
(bin ``i`` holds the confidences in ``(i/B, (i+1)/B]``, the first bin also 0); per bin, the
mean confidence is compared with the accuracy of its rows, and

    ECE = sum over bins of (rows in bin / rows) * |accuracy(bin) - confidence(bin)|

0 is perfect; 0.05 means the stated confidence is off by about 5 points on average. The bins
are the *reliability diagram* (accuracy against confidence per bin).

**Temperature scaling** (Guo et al. 2017) divides the logits by one number ``T > 0`` fitted on
the *validation* rows to minimise the negative log-likelihood (NLL). Dividing all logits of a
row by the same positive number keeps their order, so the predicted class never changes; only
the confidence does (T > 1 softens an over-confident model). The NLL as a function of
``beta = 1 / T``,

    f(beta) = mean_i [ logsumexp(beta * z_i) - beta * z_i[y_i] ],
    f'(beta) = mean_i [ E_p[z_i] - z_i[y_i] ],   f''(beta) = mean_i Var_p[z_i] >= 0,

(``p = softmax(beta * z_i)``) is convex, so a safeguarded Newton iteration on ``beta`` (Newton
steps inside a bracket that bisection keeps) finds the one minimum in float64.
dNLL/dT = f'(beta) * (-1 / T^2) (:func:`temperature_nll_grad`, checked against finite
differences in the tests).

The fitted T is *folded into the output layer* (``Layer.fold_output_scaling(1/T, 0)``: W and b
divided by T), as the regression target scaling is, so ``predict``, ``evaluate``, a saved file
and an ONNX export all give the calibrated probabilities with no change of file format. A
binary model with one sigmoid output is handled as the two logits ``[0, z]``: softmax of
``[0, z] / T`` is ``[1 - sigmoid(z/T), sigmoid(z/T)]``.

Schema of :func:`calibration_report` (``lucidnet train`` writes it under ``"calibration"`` in
the metrics file and the model file)::

    {"ece_before": float, "ece_after": float | None, "temperature": float | None,
     "bins": [{"lo", "hi", "count", "confidence", "accuracy"}, ...],
     "bins_after": [...] | None, "n_rows": int, "rows": "validation" | "test", "n_bins": int,
     "fitted_on": int | None}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import check_positive_int, describe
from ..activations import softmax

__all__ = [
    "DEFAULT_BINS",
    "apply_temperature",
    "calibration_report",
    "expected_calibration_error",
    "format_calibration",
    "fit_temperature",
    "probabilities",
    "reliability_bins",
    "temperature_nll",
    "temperature_nll_grad",
    "two_class_logits",
]

DEFAULT_BINS = 15
#: the temperatures :func:`fit_temperature` may return (beyond them the fit says so)
T_MIN, T_MAX = 0.01, 100.0


def _check_proba(proba: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=np.float64)
    t = np.asarray(y)
    if p.ndim != 2 or p.shape[1] < 2 or len(p) == 0:
        raise ValueError(f"proba must be a non-empty (n, classes >= 2) array, got shape {p.shape}")
    if t.shape != (len(p),):
        raise ValueError(f"y must have one label per row of proba ({len(p)}), got shape {t.shape}")
    return p, t.astype(np.int64)


def reliability_bins(proba: Any, y: Any, n_bins: int = DEFAULT_BINS) -> list[dict[str, Any]]:
    """The reliability diagram's bins of top-label confidence (equal width on [0, 1]).

    Args:
        proba: (n, k) predicted class probabilities.
        y: (n,) true class indices.
        n_bins: number of equal-width bins.

    Returns:
        One dict per bin: ``lo``, ``hi`` (its edges), ``count`` (rows in it), ``confidence``
        (their mean top probability) and ``accuracy`` (the share predicted right); the last
        two are None for an empty bin.
    """
    check_positive_int(n_bins, "n_bins")
    p, t = _check_proba(proba, y)
    conf = p.max(axis=1)
    right = (p.argmax(axis=1) == t).astype(np.float64)
    # (i/B, (i+1)/B]: ceil(conf * B) - 1, with 0 in the first bin
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    right_sum = np.bincount(idx, weights=right, minlength=n_bins)
    bins = []
    for i in range(n_bins):
        c = int(counts[i])
        bins.append(
            {
                "lo": i / n_bins,
                "hi": (i + 1) / n_bins,
                "count": c,
                "confidence": float(conf_sum[i] / c) if c else None,
                "accuracy": float(right_sum[i] / c) if c else None,
            }
        )
    return bins


def expected_calibration_error(proba: Any, y: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label expected calibration error over equal-width bins (module docstring).

    Args:
        proba: (n, k) predicted class probabilities.
        y: (n,) true class indices.
        n_bins: number of bins (15, as Guo et al.).

    Returns:
        The ECE in [0, 1].
    """
    bins = reliability_bins(proba, y, n_bins)
    n = sum(b["count"] for b in bins)
    return float(
        sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    )


def two_class_logits(logits: np.ndarray) -> np.ndarray:
    """(n, k) logits as given for k >= 2; one sigmoid logit per row as ``[0, z]`` (n, 2)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[1] < 1:
        raise ValueError(f"logits must be (n, k) or (n,), got shape {z.shape}")
    return np.column_stack([np.zeros(len(z)), z[:, 0]]) if z.shape[1] == 1 else z


def probabilities(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` in float64 (one sigmoid logit: two columns)."""
    return softmax(two_class_logits(logits) / temperature, axis=1)


def _nll_terms(z: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float, float]:
    """f(beta), f'(beta), f''(beta) of the module docstring, in float64."""
    m = z.max(axis=1, keepdims=True)
    s = beta * (z - m)  # beta > 0: the row maximum of beta*z is beta*m
    e = np.exp(s)
    total = e.sum(axis=1)
    p = e / total[:, None]
    zy = z[np.arange(len(z)), y]
    mean_z = (p * z).sum(axis=1)
    f = float(np.mean(beta * m[:, 0] + np.log(total) - beta * zy))
    d1 = float(np.mean(mean_z - zy))
    d2 = float(np.mean((p * z * z).sum(axis=1) - mean_z * mean_z))
    return f, d1, d2


def _check_logits(logits: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    z = two_class_logits(logits)
    t = np.asarray(y).astype(np.int64).reshape(-1)
    if t.shape != (len(z),) or len(z) == 0:
        raise ValueError(f"y must have one label per row of logits ({len(z)}), got {t.shape}")
    if t.min() < 0 or t.max() >= z.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {z.shape[1] - 1}]")
    return z, t


def temperature_nll(logits: Any, y: Any, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` (float64).

    Args:
        logits: (n, k) logits, or (n,) / (n, 1) sigmoid logits.
        y: (n,) true class indices.
        temperature: T > 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {describe(temperature)}")
    z, t = _check_logits(logits, y)
    return _nll_terms(z, t, 1.0 / temperature)[0]


def temperature_nll_grad(logits: Any, y: Any, temperature: float) -> float:
    """dNLL/dT at ``temperature``: f'(1/T) * (-1/T^2) (module docstring)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {describe(temperature)}")
    z, t = _check_logits(logits, y)
    return _nll_terms(z, t, 1.0 / temperature)[1] * (-1.0 / temperature**2)


def fit_temperature(logits: Any, y: Any, *, tol: float = 1e-10, max_iter: int = 100) -> float:
    """The temperature T in [T_MIN, T_MAX] that minimises the NLL of ``softmax(logits / T)``.

    Safeguarded Newton on beta = 1/T (the NLL is convex in beta): the bracket
    [1/T_MAX, 1/T_MIN] shrinks by the sign of f' at every iterate; a Newton step that leaves
    it, or a flat second derivative, is replaced by bisection.

    Args:
        logits: (n, k) validation logits (or sigmoid logits (n,) / (n, 1)).
        y: (n,) true class indices.
        tol: stop when |f'(beta)| or the bracket (relative) is below it.
        max_iter: iteration limit.

    Returns:
        T as a float; ``T_MAX`` when the logits carry no information about the labels (f'
        >= 0 already at the bracket's low end), ``T_MIN`` when they separate the classes
        perfectly (the NLL keeps falling as T -> 0).
    """
    z, t = _check_logits(logits, y)
    lo, hi = 1.0 / T_MAX, 1.0 / T_MIN
    if _nll_terms(z, t, lo)[1] >= 0:
        return T_MAX
    if _nll_terms(z, t, hi)[1] <= 0:
        return T_MIN
    beta = 1.0 if lo < 1.0 < hi else math.sqrt(lo * hi)
    for _ in range(max_iter):
        _, d1, d2 = _nll_terms(z, t, beta)
        if abs(d1) < tol:
            break
        if d1 > 0:
            hi = beta
        else:
            lo = beta
        step = beta - d1 / d2 if d2 > 0 else math.nan
        beta = step if lo < step < hi else 0.5 * (lo + hi)
        if hi - lo < tol * beta:
            break
    return 1.0 / beta


def apply_temperature(model: Any, temperature: float) -> None:
    """Fold ``1 / temperature`` into the model's output layer (in place): afterwards its logits
    are the old ones divided by T, in ``predict``, saved files and ONNX exports alike.

    Raises:
        ValueError: T not a finite number > 0, or a last layer that cannot fold a scaling (not
            a linear ``Dense``).
    """
    if isinstance(temperature, bool) or not (
        isinstance(temperature, (int, float)) and 0 < temperature < math.inf
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {describe(temperature)}")
    last = model.layers[-1]
    units = int(last.params["W"].shape[1]) if "W" in last.params else 1
    scale = np.full(units, 1.0 / float(temperature))
    if not last.fold_output_scaling(scale, np.zeros(units)):
        raise ValueError(
            f"cannot apply a temperature: the last layer ({type(last).__name__}) cannot fold an "
            "output scaling (it must be a Dense layer without activation)"
        )


def _proba(model: Any, X: np.ndarray) -> np.ndarray:
    return probabilities(model.predict_logits(X))


def calibration_of_probabilities(
    proba: np.ndarray, y: Any, *, rows: str = "test", n_bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """:func:`calibration_report` without a temperature, from predicted probabilities
    (``(n, classes)``, or ``(n,)`` / ``(n, 1)`` of one sigmoid) gathered elsewhere, e.g. chunk by
    chunk from a file larger than memory."""
    if rows not in ("test", "validation"):
        raise ValueError(f"rows must be 'test' or 'validation', got {describe(rows)}")
    return {
        "ece_before": expected_calibration_error(proba, y, n_bins),
        "ece_after": None,
        "temperature": None,
        "bins": reliability_bins(proba, y, n_bins),
        "bins_after": None,
        "n_rows": len(proba),
        "rows": rows,
        "n_bins": n_bins,
        "fitted_on": None,
    }


def calibration_report(
    model: Any,
    X_eval: np.ndarray,
    y_eval: Any,
    *,
    rows: str = "test",
    X_fit: np.ndarray | None = None,
    y_fit: Any = None,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The ECE of ``model`` on the evaluation rows and, given ``X_fit`` / ``y_fit`` (validation
    rows), a temperature fitted on those and folded into the model (in place), with the ECE
    after it on the same evaluation rows.

    Args:
        model: a trained classifier whose logits feed a softmax (or one sigmoid).
        X_eval, y_eval: the rows the ECE is reported on (the test rows).
        rows: ``"test"`` or ``"validation"``: which rows ``X_eval`` are (for the reader).
        X_fit, y_fit: the validation rows to fit the temperature on; None: no fit.
        n_bins: reliability bins.

    Returns:
        The dict of the module docstring.
    """
    out = calibration_of_probabilities(_proba(model, X_eval), y_eval, rows=rows, n_bins=n_bins)
    if X_fit is None or len(X_fit) == 0:
        return out
    T = fit_temperature(model.predict_logits(X_fit), y_fit)
    apply_temperature(model, T)
    after = _proba(model, X_eval)
    out.update(
        temperature=T,
        ece_after=expected_calibration_error(after, y_eval, n_bins),
        bins_after=reliability_bins(after, y_eval, n_bins),
        fitted_on=len(X_fit),
    )
    return out


def format_calibration(report: dict[str, Any], where: str | None = None, hint: bool = True) -> str:
    """One line for the terminal: the ECE, and the temperature with the ECE before / after.

    Args:
        report: :func:`calibration_report`'s result.
        where: the rows in words (default: "the 2929 test rows").
        hint: say that ``--calibrate`` fits a temperature (``lucidnet train``'s option).
    """
    where = where or f"the {report['n_rows']} {report['rows']} rows"
    if report["temperature"] is None:
        more = "; --calibrate fits a temperature on the validation rows" if hint else ""
        return (
            f"Calibration: expected calibration error {report['ece_before']:.4f} on {where} "
            f"({report['n_bins']} bins{more})"
        )
    line = (
        f"Calibration: temperature {report['temperature']:.3f} fitted on the "
        f"{report['fitted_on']} validation rows (folded into the output layer); expected "
        f"calibration error on {where} {report['ece_before']:.4f} -> "
        f"{report['ece_after']:.4f}"
    )
    if report["ece_after"] > report["ece_before"]:
        # the temperature minimises the validation NLL, not the test ECE: say so when it
        # did not help here rather than let the number pass as an improvement
        line += " (not lower: the model was close to calibrated already)"
    return line
