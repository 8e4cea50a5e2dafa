"""Tests of lucidnet/glassbox/calibration.py: ECE and reliability bins by hand, the temperature's
NLL gradient against finite differences, the fit (argmax unchanged, validation NLL not higher),
folding into the output layer (softmax and sigmoid), the saved file and the ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.glassbox import calibration as cal


def _logits(n: int = 600, k: int = 3, sharp: float = 4.0, seed: int = 0):
    """Over-confident logits: the true class is favoured, but the scale is too large."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.0
    return sharp * z, y


def _trained(loss: str = "cross_entropy", k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.8, size=400)
    if loss == "binary_cross_entropy":
        y = (score > 0).astype(np.int64)
        out = 1
    else:
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, k + 1)[1:-1]))
        out = k
    model = ln.Sequential([ln.Dense(16, activation="relu"), ln.Dense(out)])
    model.fit(X, y, loss=loss, epochs=60, batch_size=32, seed=seed, verbose=0)
    return model, X, y


# ---- ECE and bins ------------------------------------------------------------------------------


def test_ece_and_bins_by_hand():
    # confidences 0.9, 0.9 (one right), 0.6 (right), 0.35 (wrong: 3 classes) in 10 bins
    proba = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.6, 0.3, 0.1], [0.35, 0.33, 0.32]])
    y = np.array([0, 0, 0, 1])
    bins = cal.reliability_bins(proba, y, n_bins=10)
    assert [b["count"] for b in bins] == [0, 0, 0, 1, 0, 1, 0, 0, 2, 0]
    assert bins[8]["confidence"] == pytest.approx(0.9) and bins[8]["accuracy"] == 0.5
    assert bins[5]["accuracy"] == 1.0 and bins[3]["accuracy"] == 0.0
    assert bins[0]["confidence"] is None and bins[0]["lo"] == 0.0 and bins[9]["hi"] == 1.0
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.6) + 1 / 4 * abs(0 - 0.35)
    assert cal.expected_calibration_error(proba, y, n_bins=10) == pytest.approx(expected)


def test_ece_edges_and_perfect_calibration():
    # a confidence exactly on an edge (0.5) goes to the bin it closes: (0.4, 0.5]
    proba = np.array([[0.5, 0.5], [1.0, 0.0]])
    bins = cal.reliability_bins(proba, np.array([0, 0]), n_bins=10)
    assert bins[4]["count"] == 1 and bins[9]["count"] == 1
    # rows with confidence 0.75 of which exactly 3 in 4 are right: ECE 0
    p = np.tile([[0.75, 0.25]], (8, 1))
    assert cal.expected_calibration_error(p, np.array([0, 0, 0, 1] * 2)) == pytest.approx(0.0)


def test_ece_rejects_bad_shapes():
    with pytest.raises(ValueError, match="proba must be"):
        cal.expected_calibration_error(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="one label per row"):
        cal.expected_calibration_error(np.full((3, 2), 0.5), np.zeros(2))


# ---- the temperature ------------------------------------------------------------------------


@pytest.mark.parametrize("T", [0.3, 1.0, 2.7])
def test_nll_gradient_matches_finite_differences(T):
    z, y = _logits()
    h = 1e-6 * T
    numeric = (cal.temperature_nll(z, y, T + h) - cal.temperature_nll(z, y, T - h)) / (2 * h)
    assert cal.temperature_nll_grad(z, y, T) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_nll_is_the_softmax_cross_entropy():
    z, y = _logits(n=50)
    p = cal.probabilities(z, 2.0)
    assert cal.temperature_nll(z, y, 2.0) == pytest.approx(-np.mean(np.log(p[np.arange(50), y])))


def test_fit_finds_the_minimum_and_softens_overconfidence():
    z, y = _logits()
    T = cal.fit_temperature(z, y)
    assert T > 1.5  # the logits were 4x too sharp
    assert abs(cal.temperature_nll_grad(z, y, T)) < 1e-7
    nll = cal.temperature_nll(z, y, T)
    for other in (T * 0.9, T * 1.1, 1.0):
        assert nll <= cal.temperature_nll(z, y, other)
    # and against a generic scalar minimiser
    from scipy.optimize import minimize_scalar

    ref = minimize_scalar(
        lambda t: cal.temperature_nll(z, y, t), bounds=(0.05, 50), method="bounded"
    )
    assert T == pytest.approx(ref.x, rel=1e-3)
    assert cal.probabilities(z, T).argmax(1).tolist() == z.argmax(1).tolist()


def test_fit_at_the_bounds():
    y = np.array([0, 1, 0, 1])
    separated = np.array([[5.0, -5], [-5, 5], [3, -3], [-3, 3]])
    assert cal.fit_temperature(separated, y) == cal.T_MIN
    reversed_ = -separated  # logits that point at the wrong class: no temperature helps
    assert cal.fit_temperature(reversed_, y) == cal.T_MAX


def test_sigmoid_logits_are_two_classes():
    z = np.array([-2.0, 0.5, 3.0])
    p = cal.probabilities(z[:, None], 1.5)
    assert p[:, 1] == pytest.approx(1 / (1 + np.exp(-z / 1.5)))


# ---- folding it into a model -----------------------------------------------------------------


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_folding_equals_dividing_the_logits(loss, tmp_path):
    model, X, y = _trained(loss)
    Xv, yv = X[:150], y[:150]
    before_logits = model.predict_logits(X).astype(np.float64)
    before_nll = cal.temperature_nll(model.predict_logits(Xv), yv, 1.0)
    T = cal.fit_temperature(model.predict_logits(Xv), yv)
    cal.apply_temperature(model, T)
    after = model.predict_logits(X).astype(np.float64)
    np.testing.assert_allclose(after, before_logits / T, rtol=1e-5, atol=1e-5)
    want = cal.probabilities(before_logits, T)
    got = model.predict(X)
    got = np.column_stack([1 - got[:, 0], got[:, 0]]) if got.shape[1] == 1 else got
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (
        model.predict_classes(X).tolist()
        == ln.losses.labels_from_logits(model.loss, before_logits).tolist()
    )
    assert cal.temperature_nll(model.predict_logits(Xv), yv, 1.0) <= before_nll + 1e-6
    model.save(tmp_path / "m.lnet")
    np.testing.assert_allclose(ln.load(tmp_path / "m.lnet").predict(X), model.predict(X))


def test_calibration_report_schema_and_folding():
    model, X, y = _trained()
    report = cal.calibration_report(model, X[300:], y[300:], X_fit=X[:150], y_fit=y[:150])
    assert set(report) >= {"ece_before", "ece_after", "temperature", "bins", "bins_after",
                           "n_rows", "rows"}  # fmt: skip
    assert report["rows"] == "test" and report["n_rows"] == 100 and report["fitted_on"] == 150
    assert len(report["bins"]) == cal.DEFAULT_BINS == len(report["bins_after"])
    assert sum(b["count"] for b in report["bins_after"]) == 100
    # the model now predicts with the temperature: the ECE after is the model's own
    assert report["ece_after"] == pytest.approx(
        cal.expected_calibration_error(model.predict(X[300:]), y[300:])
    )
    plain = cal.calibration_report(model, X[300:], y[300:])
    assert plain["temperature"] is None and plain["ece_after"] is None
    assert "temperature" in cal.format_calibration(report)


def test_apply_temperature_refuses_bad_values_and_layers():
    model, _, _ = _trained()
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="temperature must be"):
            cal.apply_temperature(model, bad)
    soft = ln.Sequential([ln.Dense(3, activation="softmax")])
    soft.build((4,), seed=0)
    with pytest.raises(ValueError, match="cannot fold"):
        cal.apply_temperature(soft, 2.0)


def test_onnx_export_gives_the_calibrated_probabilities(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, X, y = _trained()
    T = cal.fit_temperature(model.predict_logits(X[:150]), y[:150])
    uncalibrated = model.predict(X)
    cal.apply_temperature(model, T)
    path = str(tmp_path / "m.onnx")
    model.export_onnx(path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(out, model.predict(X), atol=1e-5)
    assert not np.allclose(out, uncalibrated, atol=1e-3)
