"""Tests for lucidnet.metrics against scikit-learn's implementations on random data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from lucidnet import metrics

SEEDS = range(5)


def _labels(seed, k=4, n=200):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, size=n)
    # predictions agreeing ~60% of the time, so no score is trivially 0 or 1
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, size=n))
    return y_true, y_pred


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_scikit_learn(seed):
    t, p = _labels(seed)
    assert metrics.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p), abs=1e-15)
    for ours, theirs in [
        (metrics.precision, skm.precision_score),
        (metrics.recall, skm.recall_score),
        (metrics.f1, skm.f1_score),
    ]:
        assert ours(t, p) == pytest.approx(
            theirs(t, p, average="macro", zero_division=0), abs=1e-12
        )
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p), skm.confusion_matrix(t, p))
    per_class = metrics.precision_recall_f1(t, p)
    sk_p, sk_r, sk_f, sk_s = skm.precision_recall_fscore_support(t, p, zero_division=0)
    np.testing.assert_allclose(per_class["precision"], sk_p, atol=1e-12)
    np.testing.assert_allclose(per_class["recall"], sk_r, atol=1e-12)
    np.testing.assert_allclose(per_class["f1"], sk_f, atol=1e-12)
    np.testing.assert_array_equal(per_class["support"], sk_s)


def test_macro_average_with_a_class_never_predicted_or_absent():
    t = np.array([0, 0, 1, 1, 2, 2, 3])
    p = np.array([0, 1, 1, 1, 0, 0, 0])  # class 2 and 3 never predicted correctly
    for ours, theirs in [
        (metrics.precision, skm.precision_score),
        (metrics.recall, skm.recall_score),
        (metrics.f1, skm.f1_score),
    ]:
        assert ours(t, p) == pytest.approx(theirs(t, p, average="macro", zero_division=0))
    # label 5 occurs in neither array: only present classes are averaged (sklearn's default)
    t2, p2 = np.array([0, 1, 3, 3]), np.array([0, 1, 1, 3])
    assert metrics.f1(t2, p2) == pytest.approx(skm.f1_score(t2, p2, average="macro"))
    np.testing.assert_array_equal(
        metrics.confusion_matrix(t2, p2), skm.confusion_matrix(t2, p2, labels=range(4))
    )
    assert metrics.confusion_matrix(t2, p2, n_classes=6).shape == (6, 6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_match_scikit_learn(seed, outputs):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((100, outputs)) * 3 + 1
    p = t + rng.standard_normal((100, outputs))
    if outputs == 1:
        t, p = t.ravel(), p.ravel()
    assert metrics.mse(t, p) == pytest.approx(skm.mean_squared_error(t, p), rel=1e-12)
    assert metrics.rmse(t, p) == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)), rel=1e-12)
    assert metrics.mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-12)
    assert metrics.r2(t, p) == pytest.approx(skm.r2_score(t, p), rel=1e-12)


def test_r2_edge_cases_match_scikit_learn():
    const = np.full(5, 2.0)
    assert metrics.r2(const, const) == skm.r2_score(const, const) == 1.0  # perfect fit
    other = np.array([1.0, 2, 3, 2, 2])
    assert metrics.r2(const, other) == skm.r2_score(const, other) == 0.0
    t = np.array([1.0, 2.0, 3.0])
    assert metrics.r2(t, np.full(3, 2.0)) == pytest.approx(0.0)  # predicting the mean
    assert metrics.r2(t, t[::-1]) == pytest.approx(skm.r2_score(t, t[::-1]))  # negative


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same length"):
        metrics.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="same shape"):
        metrics.mse(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match="empty"):
        metrics.r2([], [])
    # (n,) against (n, 1) is the same data, not a broadcast to (n, n)
    assert metrics.mse(np.arange(4.0), np.arange(4.0)[:, None]) == 0.0


def test_registry_names():
    assert metrics.get("acc") is metrics.accuracy
    assert metrics.canonical_name("f1_macro") == "f1"
    assert metrics.canonical_name("r2_score") == "r2"
    with pytest.raises(ValueError, match="unknown metric 'auc'.*accuracy.*r2"):
        metrics.get("auc")
