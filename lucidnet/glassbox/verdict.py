"""An honest verdict on a trained network: baselines on the same test rows, bootstrap intervals.

A test score alone does not say whether the network was worth training. This module fits three
reference models on the *same* training rows and scores them on the *same* test rows:

- a **trivial** one: the majority class (classification), the training mean (regression), or
  the training median for a network trained on absolute errors;
- a **linear** one on the same prepared features: logistic regression, ridge regression, or
  Poisson regression for a count target;
- **gradient-boosted trees** (scikit-learn's ``HistGradientBoosting``) on the *raw* columns,
  with their native support for categories and missing values (text columns are left out).

and it measures the uncertainty of every number with the **bootstrap**: the test rows are drawn
with replacement ``resamples`` times (seeded), every metric is recomputed on each draw and the
2.5th and 97.5th percentiles give a 95% interval. The margins network-minus-baseline use a
*paired* bootstrap: both models are scored on the same drawn rows, so the interval of the
difference is much narrower than the two intervals side by side suggest when the models err on
the same rows.

The bootstrap is vectorised: a chunk of draws is a matrix ``W`` (draws x rows) of how often each
row was drawn, and every metric is a function of a few weighted sums ``W @ columns`` (correct
predictions, per-class counts, residuals), so 1,000 draws of 3,000 rows take milliseconds.

Schema of :func:`compare`'s result (JSON-serialisable; ``lucidnet train`` writes it under
``"verdict"`` in the metrics file and the HTML report renders it)::

    {"metric": "accuracy" | "r2", "n_test": int, "resamples": int, "seed": int, "seconds": float,
     "network": {"<metric>": {"value": float, "ci95": [lo, hi]}, ...},
     "baselines": [{"name": str, "kind": "trivial" | "linear" | "trees", "seconds": float,
                    "note": str,
                    "metrics": {"<metric>": {"value": float, "ci95": [lo, hi]}, ...},
                    "margin": {"value": float, "ci95": [lo, hi]}}, ...],
     "sentence": str}

Metrics: ``accuracy`` and ``f1_macro`` (macro F1 over the classes present in the true or the
predicted labels of the draw, as :func:`lucidnet.metrics.f1`) for classification; ``r2``,
``mae`` and ``rmse`` for regression. ``margin`` is network minus baseline on the primary metric
(``metric``) in the metric's own units (accuracy as a fraction; the sentence says points).

scikit-learn, SciPy and pandas are imported inside the functions that need them. The baselines
are fitted on one thread (``threadpoolctl``, which scikit-learn installs): measured on a 2-core
machine shared with other jobs, OpenMP's and OpenBLAS's threads made the trees 7-10x slower
(diamonds, 38,000 rows: 11-13 s against 1.1-1.7 s) and Poisson regression 25x (6.5 against
0.27 s); one thread keeps a baseline's cost predictable.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_positive_int, describe

__all__ = [
    "PRIMARY",
    "Baseline",
    "bootstrap_metrics",
    "compare",
    "format_verdict",
    "intervals",
    "linear_baseline",
    "point_metrics",
    "resamples_for",
    "subsample_rows",
    "trees_baseline",
    "trivial_baseline",
    "verdict_sentence",
]

#: the metric the margins and the sentence are about
PRIMARY = {"classification": "accuracy", "regression": "r2"}
METRICS = {"classification": ("accuracy", "f1_macro"), "regression": ("r2", "mae", "rmse")}
LABELS = {"accuracy": "accuracy", "f1_macro": "macro F1", "r2": "R^2", "mae": "MAE", "rmse": "RMSE"}
#: most elements of one chunk of the draws-by-rows weight matrix (8 MB of float64)
_CHUNK = 1_000_000
#: the most training rows a baseline is fitted on (a random subset above it, said in its note)
MAX_BASELINE_ROWS = 200_000
#: categories kept per column for the trees (HistGradientBoosting takes at most 255 per feature)
MAX_TREE_CATEGORIES = 250
#: the most classes the trees baseline takes on (boosting fits one tree per class per round)
MAX_TREE_CLASSES = 50


# ------------------------------------------------------------------------------------------------
# metrics from bootstrap weights
# ------------------------------------------------------------------------------------------------


def _check_task(task: str) -> str:
    if task not in METRICS:
        raise ValueError(f"task must be 'classification' or 'regression', got {describe(task)}")
    return task


#: up to this many classes the bootstrap's columns are dense (BLAS); above, sparse
DENSE_CLASSES = 32


def _columns(task: str, y: np.ndarray, pred: np.ndarray, k: int) -> Any:
    """Per-row columns whose weighted sums give every metric (n, c).

    Classification: ``[onehot(true) * correct, onehot(true) + onehot(pred)]`` (2k columns:
    the true positives and true + predicted counts per class are all that accuracy and macro
    F1 need). Up to ``DENSE_CLASSES`` classes a dense float32 array (its weighted sums are
    integers, exact in float32 below 2**24 rows); above, a SciPy sparse matrix with at most 3
    non-zeros a row (1,000 classes of 100,000 test rows would be 800 MB dense). Regression:
    the dense float64 ``[y, y^2, residual^2, |residual|]``."""
    if task == "classification":
        n = len(y)
        right = np.flatnonzero(pred == y)
        if k <= DENSE_CLASSES and n < 2**24:
            out = np.zeros((n, 2 * k), np.float32)
            out[right, y[right]] = 1.0
            np.add.at(out, (np.arange(n), k + y), 1.0)
            np.add.at(out, (np.arange(n), k + pred), 1.0)
            return out
        from scipy import sparse

        rows = np.concatenate([right, np.arange(n), np.arange(n)])
        cols = np.concatenate([y[right], k + y, k + pred])  # duplicates are summed
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, 2 * k))
    t = y.astype(np.float64)
    r = t - pred.astype(np.float64)
    return np.column_stack([t, t * t, r * r, np.abs(r)])


def _from_sums(task: str, s: np.ndarray, n: float, k: int) -> dict[str, np.ndarray]:
    """The metrics of each draw from its weighted column sums ``s`` (draws, c)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if task == "classification":
            s = s.astype(np.float64)
            tp, both = s[:, :k], s[:, k:]
            present = both > 0
            f1 = np.where(present, 2 * tp / np.where(present, both, 1), 0.0)
            return {"accuracy": tp.sum(1) / n, "f1_macro": f1.sum(1) / present.sum(1)}
        sy, sy2, sse, sae = s.T
        sst = sy2 - sy * sy / n
        # a constant target in a draw has no R^2 (NaN), as the percentiles then skip it
        r2 = np.where(sst > 0, 1 - sse / np.where(sst > 0, sst, 1), np.nan)
        return {"r2": r2, "mae": sae / n, "rmse": np.sqrt(sse / n)}


def _weight_chunks(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap draws as count matrices (draws, n): row i of a chunk says how often each test
    row was drawn. Seeded, so the same (n, resamples, seed) gives the same draws."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, min(resamples, _CHUNK // max(n, 1)))
    done = 0
    while done < resamples:
        b = min(per_chunk, resamples - done)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def _prepare_labels(task: str, y: Any, preds: dict[str, Any], n_classes: int | None) -> tuple:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {y.shape}")
    out = {}
    for name, p in preds.items():
        p = np.asarray(p).reshape(-1)
        if p.shape != y.shape:
            raise ValueError(
                f"predictions of {name!r} must have one value per test row ({len(y)}), "
                f"got {p.shape[0]}"
            )
        out[name] = p
    k = 0
    if task == "classification":
        y = y.astype(np.int64)
        out = {name: p.astype(np.int64) for name, p in out.items()}
        k = int(max([y.max(), *(p.max() for p in out.values())]) + 1)
        k = max(k, n_classes or 0)
        if y.min() < 0 or any(p.min() < 0 for p in out.values()):
            raise ValueError("class labels must be integers >= 0")
    return y, out, k


def point_metrics(
    task: str, y_true: Any, y_pred: Any, n_classes: int | None = None
) -> dict[str, float]:
    """The metrics of one model on all test rows (the bootstrap's formulas with every row once).

    Args:
        task: ``"classification"`` (integer labels) or ``"regression"``.
        y_true: (n,) true labels or values.
        y_pred: (n,) predicted labels or values.
        n_classes: the number of classes (classification; inferred from the labels if None).

    Returns:
        ``{"accuracy", "f1_macro"}`` or ``{"r2", "mae", "rmse"}`` as floats.
    """
    task = _check_task(task)
    y, preds, k = _prepare_labels(task, y_true, {"model": y_pred}, n_classes)
    cols = _columns(task, y, preds["model"], k)
    s = np.asarray(cols.sum(axis=0, dtype=np.float64)).reshape(1, -1)
    return {m: float(v[0]) for m, v in _from_sums(task, s, len(y), k).items()}


def bootstrap_metrics(
    task: str,
    y_true: Any,
    predictions: dict[str, Any],
    *,
    resamples: int = 1000,
    seed: int = 0,
    n_classes: int | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Every metric of every model on the same bootstrap draws of the test rows.

    Args:
        task: ``"classification"`` or ``"regression"``.
        y_true: (n,) true labels (int) or values.
        predictions: model name -> (n,) predicted labels or values.
        resamples: number of draws (each of n rows with replacement).
        seed: seed of the ``np.random.Generator`` that draws the rows.
        n_classes: number of classes (classification; inferred if None).

    Returns:
        model name -> metric name -> (resamples,) values; draw ``b`` is the same rows for every
        model, so differences between models are paired.
    """
    task = _check_task(task)
    check_positive_int(resamples, "resamples")
    y, preds, k = _prepare_labels(task, y_true, predictions, n_classes)
    names = list(preds)
    cols = [_columns(task, y, preds[m], k) for m in names]
    width = cols[0].shape[1]
    if not isinstance(cols[0], np.ndarray):  # many classes: sparse columns
        from scipy import sparse

        # (columns, n) sparse @ (n, draws) dense: the cost follows the non-zeros
        stacked_t = sparse.hstack(cols, format="csr").T.tocsr()
        weighted_sums = lambda W: np.asarray(stacked_t @ W.T).T  # noqa: E731
    else:
        stacked = np.concatenate(cols, axis=1)
        weighted_sums = lambda W: W.astype(stacked.dtype, copy=False) @ stacked  # noqa: E731
    del cols
    parts: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in names}
    for W in _weight_chunks(len(y), resamples, seed):
        sums = weighted_sums(W)
        for j, m in enumerate(names):
            block = sums[:, j * width : (j + 1) * width]
            for metric, v in _from_sums(task, block, len(y), k).items():
                parts[m].setdefault(metric, []).append(v)
    return {m: {k_: np.concatenate(v) for k_, v in d.items()} for m, d in parts.items()}


#: bootstrap work (draws x rows) above which :func:`resamples_for` draws fewer than 1,000 times
MAX_DRAWN = 100_000_000


def resamples_for(n: int, wanted: int = 1000) -> int:
    """How many bootstrap draws to make of ``n`` rows: ``wanted``, but no more than
    ``MAX_DRAWN / n`` and no fewer than 200 (400,000 test rows: 250 draws; their intervals are
    then a few hundredths of a point wide, and 1,000 draws would cost minutes)."""
    return max(min(200, wanted), min(wanted, MAX_DRAWN // max(n, 1)))


def _ci(samples: np.ndarray) -> list[float]:
    """The percentile 95% interval of bootstrap values (draws where the metric is undefined
    skipped); [nan, nan] when none is defined."""
    ok = samples[np.isfinite(samples)]
    if ok.size == 0:
        return [math.nan, math.nan]
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return [float(lo), float(hi)]


def _summary(point: dict[str, float], draws: dict[str, np.ndarray]) -> dict[str, Any]:
    return {m: {"value": v, "ci95": _ci(draws[m])} for m, v in point.items()}


def intervals(
    task: str,
    y_true: Any,
    y_pred: Any,
    *,
    resamples: int = 1000,
    seed: int = 0,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """The network's test metrics with bootstrap 95% intervals, no baselines (``evaluate``).

    Returns:
        The schema of :func:`compare` with ``"baselines": []`` and a sentence on the intervals.
    """
    return compare(task, y_true, y_pred, [], resamples=resamples, seed=seed, n_classes=n_classes)


# ------------------------------------------------------------------------------------------------
# baselines
# ------------------------------------------------------------------------------------------------


@dataclass
class Baseline:
    """A reference model's predictions on the test rows.

    Attributes:
        name: in words ("majority class", "logistic regression", "gradient-boosted trees").
        kind: ``"trivial"``, ``"linear"`` or ``"trees"``.
        predictions: (n_test,) class labels (int) or values.
        seconds: time to fit it and predict the test rows.
        note: what the reader should know ("raw columns; text column 'text' left out"), or "".
    """

    name: str
    kind: str
    predictions: np.ndarray
    seconds: float
    note: str = ""


def trivial_baseline(task: str, y_train: Any, n_test: int, loss: str | None = None) -> Baseline:
    """The majority class, the training mean, or (for a network trained with ``loss="mae"``)
    the training median, predicted for every one of ``n_test`` test rows."""
    start = time.perf_counter()
    y = np.asarray(y_train)
    if _check_task(task) == "classification":
        name, value = "majority class", np.bincount(y.astype(np.int64)).argmax()
    elif loss == "mae":
        name, value = "training median", np.median(y.astype(np.float64))
    else:
        name, value = "training mean", y.astype(np.float64).mean()
    pred = np.full(n_test, value)
    return Baseline(name, "trivial", pred, time.perf_counter() - start)


def _one_thread() -> Any:
    """Run BLAS and OpenMP on one thread inside (see the module docstring)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def subsample_rows(n: int, seed: int) -> tuple[np.ndarray | None, str]:
    """The training rows a baseline is fitted on: None (all) up to ``MAX_BASELINE_ROWS``, else
    a seeded random sorted subset of that many; and a note saying so ("" for all)."""
    if n <= MAX_BASELINE_ROWS:
        return None, ""
    rows = np.sort(np.random.default_rng(seed).choice(n, MAX_BASELINE_ROWS, replace=False))
    return rows, f"fitted on a random {MAX_BASELINE_ROWS:,} of the {n:,} training rows"


def _maybe_sparse(X: np.ndarray) -> Any:
    """A mostly-zero matrix (TF-IDF, one-hot) as CSR: the solvers' cost follows the non-zeros."""
    if X.size and np.count_nonzero(X) < 0.2 * X.size:
        from scipy import sparse

        return sparse.csr_matrix(X)
    return X


def linear_baseline(
    task: str,
    X_train: np.ndarray,
    y_train: Any,
    X_test: np.ndarray,
    *,
    loss: str | None = None,
    class_weight: str | None = None,
    seed: int = 0,
) -> Baseline:
    """A linear model on the network's own prepared features (n, f) float arrays.

    Logistic regression (L-BFGS, at most 300 iterations) for classification; ridge regression
    (alpha 1) for regression, or Poisson regression (log link) for a network trained with the
    Poisson loss. Mostly-zero matrices (TF-IDF) are passed as sparse ones, which keeps 5,000+
    text features fast.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    start = time.perf_counter()
    rows, note = subsample_rows(len(X_train), seed)
    Xtr, ytr = X_train, np.asarray(y_train)
    if rows is not None:
        Xtr, ytr = Xtr[rows], ytr[rows]
    Xtr, Xte = _maybe_sparse(Xtr), _maybe_sparse(X_test)
    if _check_task(task) == "classification":
        from sklearn.linear_model import LogisticRegression

        model: Any = LogisticRegression(max_iter=300, class_weight=class_weight)
        name = "logistic regression"
    elif loss == "poisson":
        from sklearn.linear_model import PoissonRegressor

        model, name = PoissonRegressor(alpha=1e-4, max_iter=300), "Poisson regression"
    else:
        from sklearn.linear_model import Ridge

        model, name = Ridge(alpha=1.0), "ridge regression"
    with warnings.catch_warnings(record=True) as caught, _one_thread():
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(Xtr, ytr)
        pred = model.predict(Xte)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        note = "; ".join(filter(None, [note, "stopped at its iteration limit"]))
    return Baseline(name, "linear", np.asarray(pred), time.perf_counter() - start, note)


def _tree_frames(train: Any, test: Any) -> tuple[Any, Any, list[str]]:
    """The raw columns as HistGradientBoosting takes them: categories as pandas ``category``
    (the training rows' most frequent ``MAX_TREE_CATEGORIES``; rarer and unseen ones missing),
    everything else as float. Returns (train, test, notes)."""
    import pandas as pd

    notes = []
    a, b = pd.DataFrame(index=train.index), pd.DataFrame(index=test.index)
    for c in train.columns:
        col = train[c]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
            keys = col.astype("string")
            top = keys.value_counts().index[:MAX_TREE_CATEGORIES]
            if keys.nunique() > MAX_TREE_CATEGORIES:
                notes.append(f"'{c}': its {MAX_TREE_CATEGORIES} most frequent categories")
            kind = pd.CategoricalDtype(list(top))
            other = test[c].astype("string")
            a[c] = keys.where(keys.isin(top)).astype(object).astype(kind)
            b[c] = other.where(other.isin(top)).astype(object).astype(kind)
        else:
            a[c] = col.astype(np.float64)
            b[c] = pd.to_numeric(test[c], errors="coerce").astype(np.float64)
    return a, b, notes


def trees_baseline(
    task: str,
    train: Any,
    y_train: Any,
    test: Any,
    *,
    loss: str | None = None,
    class_weight: str | None = None,
    seed: int = 0,
    left_out: list[str] | None = None,
    rows_note: str = "",
) -> Baseline:
    """Gradient-boosted trees (scikit-learn's HistGradientBoosting, default settings, its own
    early stopping above 10,000 rows) on the raw columns of the same training and test rows.

    Args:
        task: ``"classification"`` or ``"regression"``.
        train, test: DataFrames of the raw feature columns (the same columns): numeric columns
            as numbers (missing values as NaN), categorical ones as ``category`` or strings.
        y_train: (n_train,) encoded target (class indices or values).
        loss: the network's loss: ``"poisson"`` fits the trees with the Poisson loss,
            ``"mae"`` with the absolute error.
        class_weight: ``"balanced"`` or None.
        seed: the trees' random state (early-stopping split, subsample).
        left_out: column names the trees do not see (text), for the note.
        rows_note: how the caller chose the training rows (a subsample), for the note.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    start = time.perf_counter()
    if train.shape[1] == 0:
        raise ValueError("no columns for the trees (every feature column is text)")
    y = np.asarray(y_train)
    k = len(np.unique(y)) if task == "classification" else 1
    if k > MAX_TREE_CLASSES:
        raise ValueError(
            f"{k} classes would need {k} trees per boosting round (the trees baseline stops "
            f"at {MAX_TREE_CLASSES})"
        )
    rows, note = subsample_rows(len(train), seed)
    note = "; ".join(filter(None, [note, rows_note]))
    if rows is not None:
        train, y = train.iloc[rows], y[rows]
    a, b, notes = _tree_frames(train, test)
    opts: dict[str, Any] = {"categorical_features": "from_dtype", "random_state": seed}
    if _check_task(task) == "classification":
        model: Any = HistGradientBoostingClassifier(class_weight=class_weight, **opts)
    else:
        kind = {"poisson": "poisson", "mae": "absolute_error"}.get(loss or "", "squared_error")
        model = HistGradientBoostingRegressor(loss=kind, **opts)
    with _one_thread():
        model.fit(a, y)
        pred = np.asarray(model.predict(b))
    words = ["raw columns"]
    if left_out:
        words.append(
            f"text column{'s' if len(left_out) > 1 else ''} "
            f"{', '.join(repr(c) for c in left_out)} left out"
        )
    words += notes + ([note] if note else [])
    return Baseline(
        "gradient-boosted trees", "trees", pred, time.perf_counter() - start, "; ".join(words)
    )


# ------------------------------------------------------------------------------------------------
# the verdict
# ------------------------------------------------------------------------------------------------


def compare(
    task: str,
    y_true: Any,
    network_pred: Any,
    baselines: list[Baseline],
    *,
    resamples: int = 1000,
    seed: int = 0,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """The network against its baselines on the same test rows, with paired bootstrap intervals.

    Args:
        task: ``"classification"`` or ``"regression"``.
        y_true: (n,) true class indices or values of the test rows.
        network_pred: (n,) the network's predicted classes or values.
        baselines: the reference models' predictions on the same rows.
        resamples: bootstrap draws.
        seed: seed of the draws.
        n_classes: number of classes (classification).

    Returns:
        The dict described in the module docstring (JSON-serialisable).
    """
    start = time.perf_counter()
    task = _check_task(task)
    names = [f"b{i}" for i in range(len(baselines))]
    preds = {"network": network_pred, **{n: b.predictions for n, b in zip(names, baselines)}}
    draws = bootstrap_metrics(
        task, y_true, preds, resamples=resamples, seed=seed, n_classes=n_classes
    )
    primary = PRIMARY[task]
    points = {m: point_metrics(task, y_true, p, n_classes) for m, p in preds.items()}
    result: dict[str, Any] = {
        "metric": primary,
        "n_test": len(np.asarray(y_true)),
        "resamples": resamples,
        "seed": seed,
        "network": _summary(points["network"], draws["network"]),
        "baselines": [],
    }
    for n, b in zip(names, baselines):
        diff = draws["network"][primary] - draws[n][primary]
        result["baselines"].append(
            {
                "name": b.name,
                "kind": b.kind,
                "seconds": round(b.seconds, 3),
                "note": b.note,
                "metrics": _summary(points[n], draws[n]),
                "margin": {
                    "value": points["network"][primary] - points[n][primary],
                    "ci95": _ci(diff),
                },
            }
        )
    result["sentence"] = verdict_sentence(result)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _amount(metric: str, x: float) -> str:
    return f"{abs(x) * 100:.1f} accuracy points" if metric == "accuracy" else f"{abs(x):.4f} in R^2"


def _level(metric: str, x: float) -> bool:
    """Whether a margin shows as zero at the sentence's precision."""
    return round(abs(x) * 100, 1) == 0 if metric == "accuracy" else round(abs(x), 4) == 0


def _interval(metric: str, lo: float, hi: float) -> str:
    if metric == "accuracy":
        return f"95% CI {lo * 100:.1f} to {hi * 100:.1f}"
    return f"95% CI {lo:.4f} to {hi:.4f}"


def _clause(metric: str, b: dict[str, Any]) -> str:
    """One baseline's part of the sentence, honest about an interval that crosses 0."""
    d, (lo, hi) = b["margin"]["value"], b["margin"]["ci95"]
    name = b["name"] if b["kind"] != "linear" else f"the {b['name']} baseline"
    if b["kind"] == "trivial":
        name = f"always predicting the {b['name']}"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"the network's margin over {name} is {d:+.3g} (no interval)"
    if lo > 0:
        return f"the network beats {name} by {_amount(metric, d)} ({_interval(metric, lo, hi)})"
    if hi < 0:  # said from the baseline's side, so its interval is flipped
        who = "gradient-boosted trees are" if b["kind"] == "trees" else f"{name} is"
        return (
            f"{who} {_amount(metric, d)} better on these test rows "
            f"({_interval(metric, -hi, -lo)}: the network loses)"
        )
    if _level(metric, d):
        return (
            f"the network and {name} are level ({_interval(metric, lo, hi)} for the difference: "
            "not a clear difference)"
        )
    side = "better" if d >= 0 else "worse"
    return (
        f"the network is {_amount(metric, d)} {side} than {name} "
        f"({_interval(metric, lo, hi)}: not a clear difference)"
    )


def verdict_sentence(result: dict[str, Any]) -> str:
    """The plain-words verdict of :func:`compare`'s result: one clause per informative baseline.

    The trivial baseline is named only when the network does not clearly beat it (a network
    that cannot beat the majority class is the news); a missing interval is said, never hidden.
    """
    metric = result["metric"]
    net = result["network"][metric]
    lo, hi = net["ci95"]
    head = f"test {LABELS[metric]} {net['value']:.4f} ({_interval(metric, lo, hi)})"
    if metric == "accuracy":
        head = f"test accuracy {net['value'] * 100:.1f}% ({_interval(metric, lo, hi)})"
    chosen = [
        b for b in result["baselines"] if b["kind"] != "trivial" or not b["margin"]["ci95"][0] > 0
    ]
    if not chosen and result["baselines"]:
        chosen = result["baselines"][:1]
    if not chosen:
        return f"The network's {head}; no baselines were run."
    clauses = "; ".join(_clause(metric, b) for b in chosen)
    return clauses[0].upper() + clauses[1:] + "."


def _fmt(metric: str, s: dict[str, Any]) -> str:
    """``value [lo, hi]`` with one number of decimals for all three: 4 for the metrics in
    [0, 1], else about 4 significant digits of the value (MAE 286.4 [277.9, 295.5])."""
    v, (lo, hi) = s["value"], s["ci95"]
    digits = 4
    if metric not in ("accuracy", "f1_macro", "r2") and math.isfinite(v) and v != 0:
        digits = min(6, max(0, 3 - math.floor(math.log10(abs(v)))))
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def format_verdict(result: dict[str, Any]) -> str:
    """The verdict as terminal text: a table of the network and its baselines (value and 95%
    interval per metric, the margin on the primary metric, the fitting time), then the sentence.
    """
    metric = result["metric"]
    names = list(result["network"])
    rows = [
        ["model", *(f"{LABELS[m]} [95% CI]" for m in names), f"margin ({LABELS[metric]})", "time"]
    ]
    rows.append(["network", *(_fmt(m, result["network"][m]) for m in names), "", ""])
    for b in result["baselines"]:
        d, (lo, hi) = b["margin"]["value"], b["margin"]["ci95"]
        rows.append(
            [
                b["name"],
                *(_fmt(m, b["metrics"][m]) for m in names),
                f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]",
                f"{b['seconds']:.2f} s",
            ]
        )
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    total = sum(b["seconds"] for b in result["baselines"])
    title = (
        f"Baselines on the same {result['n_test']} test rows (95% CIs: bootstrap, "
        f"{result['resamples']} resamples; margin = network minus baseline, paired):"
    )
    if not result["baselines"]:  # the network alone: no margin, no time
        title = (
            f"95% confidence intervals (bootstrap of the {result['n_test']} rows, "
            f"{result['resamples']} resamples):"
        )
        lines = [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r[:-2], widths[:-2])).rstrip()
            for r in rows[:2]
        ]
    notes = [f"  {b['name']}: {b['note']}" for b in result["baselines"] if b.get("note")]
    out = [title, *lines, *notes]
    if result["baselines"]:
        out.append(f"  (baselines fitted in {total:.1f} s)")
        out.append("Verdict: " + result["sentence"])
    return "\n".join(out)
