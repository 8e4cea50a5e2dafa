"""Tests of lucidnet/glassbox/verdict.py: metrics from bootstrap weights equal lucidnet.metrics,
the intervals against a plain loop bootstrap, paired margins, the baselines (trivial, linear,
trees on raw columns with categories and missing values) and the honesty of the sentence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lucidnet import metrics
from lucidnet.glassbox import verdict as v


def _labels(n=400, k=3, right=0.8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < right, y, rng.integers(0, k, n))
    return y, pred


def test_point_metrics_equal_lucidnet_metrics():
    y, p = _labels()
    got = v.point_metrics("classification", y, p)
    assert got["accuracy"] == pytest.approx(metrics.accuracy(y, p))
    assert got["f1_macro"] == pytest.approx(metrics.f1(y, p))
    # a class in neither the labels nor the predictions is not averaged (as metrics.f1)
    y2, p2 = np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2])
    assert v.point_metrics("classification", y2, p2, n_classes=4)["f1_macro"] == pytest.approx(
        metrics.f1(y2, p2)
    )
    rng = np.random.default_rng(1)
    t = rng.normal(size=300)
    q = t + rng.normal(scale=0.4, size=300)
    got = v.point_metrics("regression", t, q)
    assert got["r2"] == pytest.approx(metrics.r2(t, q))
    assert got["mae"] == pytest.approx(metrics.mae(t, q))
    assert got["rmse"] == pytest.approx(metrics.rmse(t, q))


def test_bootstrap_matches_a_plain_loop():
    """The vectorised weights give, draw by draw, what indexing the rows gives."""
    y, p = _labels(n=120)
    draws = v.bootstrap_metrics("classification", y, {"m": p}, resamples=50, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 120, size=(50, 120))
    want_acc = [metrics.accuracy(y[i], p[i]) for i in idx]
    want_f1 = [metrics.f1(y[i], p[i]) for i in idx]
    np.testing.assert_allclose(draws["m"]["accuracy"], want_acc)
    np.testing.assert_allclose(draws["m"]["f1_macro"], want_f1)
    t = np.random.default_rng(0).normal(size=120)
    q = t + 0.5
    reg = v.bootstrap_metrics("regression", t, {"m": q}, resamples=50, seed=3)
    np.testing.assert_allclose(reg["m"]["r2"], [metrics.r2(t[i], q[i]) for i in idx])
    np.testing.assert_allclose(reg["m"]["mae"], 0.5)


def test_bootstrap_chunks_give_the_same_draws(monkeypatch):
    y, p = _labels(n=200)
    whole = v.bootstrap_metrics("classification", y, {"m": p}, resamples=30, seed=1)
    monkeypatch.setattr(v, "_CHUNK", 450)  # two draws per chunk
    chunked = v.bootstrap_metrics("classification", y, {"m": p}, resamples=30, seed=1)
    # the draws differ (drawn in other shapes) but both are valid bootstraps of the same data
    assert len(chunked["m"]["accuracy"]) == 30
    assert abs(whole["m"]["accuracy"].mean() - chunked["m"]["accuracy"].mean()) < 0.03


def test_interval_covers_and_shrinks_with_rows():
    small = v.intervals("classification", *_labels(n=200, seed=1))
    large = v.intervals("classification", *_labels(n=5000, seed=1))
    for r in (small, large):
        lo, hi = r["network"]["accuracy"]["ci95"]
        assert lo < r["network"]["accuracy"]["value"] < hi
        assert 0.8 < hi and lo < 0.9  # the true accuracy is 0.8 + 0.2/3
    width = lambda r: np.diff(r["network"]["accuracy"]["ci95"])[0]  # noqa: E731
    assert width(large) < width(small) / 3


def test_paired_margin_is_narrower_than_unpaired():
    """Two models that err on mostly the same rows: the paired interval of the difference is
    narrow although each model's own interval is wide."""
    y, net = _labels(n=800, right=0.7, seed=2)
    base = net.copy()
    flip = np.flatnonzero(net == y)[:16]  # the baseline is wrong on 16 more rows (2 points)
    base[flip] = (y[flip] + 1) % 3
    r = v.compare("classification", y, net, [v.Baseline("copy", "linear", base, 0.0)])
    b = r["baselines"][0]
    assert b["margin"]["value"] == pytest.approx(16 / 800)
    lo, hi = b["margin"]["ci95"]
    assert 0 < lo < 0.02 < hi
    own = r["network"]["accuracy"]["ci95"]
    assert hi - lo < (own[1] - own[0]) / 2
    assert "beats the copy baseline by 2.0 accuracy points" in r["sentence"]


def test_sentence_is_honest_when_the_interval_crosses_zero():
    y, net = _labels(n=300, seed=4)
    other = net.copy()
    other[:3] = (y[:3] + 1) % 3  # 1 point at most: not a clear difference on 300 rows
    r = v.compare(
        "classification", y, net, [v.Baseline("gradient-boosted trees", "trees", other, 0)]
    )
    assert "not a clear difference" in r["sentence"]
    lo, hi = r["baselines"][0]["margin"]["ci95"]
    assert lo <= 0 <= hi


def test_sentence_says_when_the_baseline_wins():
    y, base = _labels(n=1000, right=0.9, seed=5)
    rng = np.random.default_rng(6)
    net = np.where(rng.random(1000) < 0.8, base, (base + 1) % 3)  # ~16 points worse
    r = v.compare(
        "classification", y, net, [v.Baseline("gradient-boosted trees", "trees", base, 0)]
    )
    assert "Gradient-boosted trees are" in r["sentence"]
    assert "better on these test rows" in r["sentence"]
    assert r["baselines"][0]["margin"]["ci95"][1] < 0


def test_trivial_only_named_when_not_beaten():
    y, net = _labels(n=500)
    trivial = v.trivial_baseline("classification", y, len(y))
    r = v.compare("classification", y, net, [trivial])
    assert "majority class" in r["sentence"]  # the only baseline: named
    r2 = v.compare("classification", y, net, [trivial, v.Baseline("lin", "linear", net, 0.0)])
    assert "majority class" not in r2["sentence"]


def test_schema_is_json_and_complete():
    y, net = _labels()
    r = v.compare("classification", y, net, [v.trivial_baseline("classification", y, len(y))])
    json.dumps(r, allow_nan=False)
    assert set(r) >= {"metric", "n_test", "resamples", "seed", "seconds", "network", "baselines",
                      "sentence"}  # fmt: skip
    b = r["baselines"][0]
    assert set(b) >= {"name", "kind", "seconds", "metrics", "margin"}
    assert set(b["margin"]) == {"value", "ci95"} and len(b["margin"]["ci95"]) == 2
    assert "majority class" in v.format_verdict(r)


def test_trivial_baselines():
    y = np.array([0, 2, 2, 1, 2])
    assert v.trivial_baseline("classification", y, 3).predictions.tolist() == [2, 2, 2]
    t = np.array([1.0, 2.0, 10.0])
    assert v.trivial_baseline("regression", t, 2).predictions.tolist() == [13 / 3] * 2
    med = v.trivial_baseline("regression", t, 2, loss="mae")
    assert med.name == "training median" and med.predictions.tolist() == [2.0, 2.0]


def _table(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    city = rng.choice(["a", "b", "c"], n).astype(object)
    y = ((x + (city == "a") * 1.5 + rng.normal(scale=0.3, size=n)) > 0.5).astype(np.int64)
    x[::10] = np.nan
    city[::7] = None
    return pd.DataFrame({"x": x, "city": city}), y


def test_trees_on_raw_columns_with_categories_and_missing_values():
    df, y = _table()
    train, test = df.iloc[:450], df.iloc[450:]
    b = v.trees_baseline("classification", train, y[:450], test, left_out=["review"])
    assert b.kind == "trees" and b.predictions.shape == (150,)
    assert metrics.accuracy(y[450:], b.predictions) > 0.8
    assert "'review'" in b.note
    reg = v.trees_baseline("regression", train, y[:450].astype(float), test, loss="poisson")
    assert reg.predictions.min() >= 0


def test_trees_cap_the_categories():
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"c": [f"k{i}" for i in rng.integers(0, 400, n)], "x": rng.normal(size=n)})
    y = (df["x"] > 0).to_numpy().astype(np.int64)
    b = v.trees_baseline("classification", df.iloc[:1500], y[:1500], df.iloc[1500:])
    assert "most frequent categories" in b.note


def test_trees_refuse_too_many_classes():
    df = pd.DataFrame({"x": np.arange(120.0)})
    y = np.arange(120) % (v.MAX_TREE_CLASSES + 1)
    with pytest.raises(ValueError, match="trees per boosting round"):
        v.trees_baseline("classification", df, y, df)


def test_linear_baseline_sparse_and_dense():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    b = v.linear_baseline("classification", X[:200], y[:200], X[200:])
    assert b.name == "logistic regression" and metrics.accuracy(y[200:], b.predictions) > 0.9
    sparse = np.zeros((300, 200), np.float32)
    sparse[np.arange(300), rng.integers(0, 200, 300)] = 1.0
    sparse[:, 0] = X[:, 0]
    t = 3 * X[:, 0] + 1
    r = v.linear_baseline("regression", sparse[:200], t[:200], sparse[200:])
    assert r.name == "ridge regression" and metrics.r2(t[200:], r.predictions) > 0.9
    counts = rng.poisson(np.exp(0.5 * X[:, 0]))
    pois = v.linear_baseline("regression", X[:200], counts[:200], X[200:], loss="poisson")
    assert pois.name == "Poisson regression" and pois.predictions.min() > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="task must be"):
        v.point_metrics("ranking", [0], [0])
    with pytest.raises(ValueError, match="one value per test row"):
        v.compare("classification", [0, 1], [0, 1], [v.Baseline("b", "trivial", np.zeros(3), 0)])
    with pytest.raises(ValueError, match="resamples"):
        v.bootstrap_metrics("classification", [0, 1], {"m": [0, 1]}, resamples=0)


def test_sparse_columns_for_many_classes_give_the_same_draws(monkeypatch):
    y, p = _labels(n=300, k=5, right=0.6, seed=7)
    dense = v.bootstrap_metrics("classification", y, {"m": p}, resamples=40, seed=2)
    monkeypatch.setattr(v, "DENSE_CLASSES", 0)
    sparse = v.bootstrap_metrics("classification", y, {"m": p}, resamples=40, seed=2)
    for metric in ("accuracy", "f1_macro"):
        np.testing.assert_allclose(sparse["m"][metric], dense["m"][metric])
    assert v.point_metrics("classification", y, p)["f1_macro"] == pytest.approx(metrics.f1(y, p))


def test_resamples_for_large_test_sets():
    assert v.resamples_for(2929) == 1000
    assert v.resamples_for(400_000) == 250
    assert v.resamples_for(10**8) == 200
    assert v.resamples_for(50, wanted=100) == 100
