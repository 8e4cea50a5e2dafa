"""Tests for lucidnet.losses: gradients against central finite differences (float64), values
against reference formulas and scikit-learn, stability on extreme logits, and target checks."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from _gradcheck_util import away_from_zero, numerical_gradient, rel_error

import lucidnet as ln
from lucidnet import losses

N, K = 6, 4


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _case(name: str, rng: np.random.Generator):
    """(loss, y_pred, y_true) with targets chosen away from the loss's kinks."""
    z = rng.standard_normal((N, K)) * 2
    labels = rng.integers(0, K, size=N)
    if name == "mse":
        return ln.MSE(), z, rng.standard_normal((N, K))
    if name == "mse_1_unit":
        return ln.MSE(), z[:, :1], rng.standard_normal((N, 1))
    if name == "mae":  # |p - t| >= 0.1: away from the kink at p = t
        return ln.MAE(), z, z - away_from_zero(rng, (N, K))
    if name == "huber":  # |r| in [0.1, 0.8] or [1.2, 3]: away from 0 and from delta = 1
        small = away_from_zero(rng, (N, K), 0.1, 0.8)
        large = away_from_zero(rng, (N, K), 1.2, 3.0)
        r = np.where(rng.random((N, K)) < 0.5, small, large)
        return ln.Huber(delta=1.0), z, z - r
    if name == "huber_delta_0.5":
        r = away_from_zero(rng, (N, K), 0.6, 2.0)
        r[::2] = away_from_zero(rng, (N // 2, K), 0.05, 0.4)
        return ln.Huber(delta=0.5), z, z - r
    if name == "poisson":
        return losses.Poisson(), z, rng.poisson(3.0, size=(N, K)).astype(float)
    if name == "poisson_1_unit":
        return losses.Poisson(), z[:, :1], rng.poisson(0.5, size=(N, 1)).astype(float)
    if name == "bce":
        return ln.BinaryCrossEntropy(), z, rng.integers(0, 2, size=(N, K)).astype(float)
    if name == "bce_soft_targets":
        return ln.BinaryCrossEntropy(), z, rng.random((N, K))
    if name == "bce_class_weight":
        return ln.BinaryCrossEntropy(class_weight=[0.3, 2.0]), z[:, :1], labels[:, None] % 2
    if name == "ce_int_labels":
        return ln.CrossEntropy(), z, labels
    if name == "ce_onehot":
        return ln.CrossEntropy(), z, np.eye(K)[labels]
    if name == "ce_soft_targets":
        return ln.CrossEntropy(), z, _softmax(rng.standard_normal((N, K)))
    if name == "ce_label_smoothing":
        return ln.CrossEntropy(label_smoothing=0.2), z, labels
    if name == "ce_class_weight":
        return ln.CrossEntropy(class_weight=[1.0, 2.0, 0.5, 3.0]), z, labels
    if name == "ce_class_weight_dict_smoothing_soft":
        loss = ln.CrossEntropy(label_smoothing=0.1, class_weight={0: 2.0, 3: 0.25})
        return loss, z, _softmax(rng.standard_normal((N, K)))
    raise KeyError(name)


CASES = [
    "mse",
    "mse_1_unit",
    "mae",
    "huber",
    "huber_delta_0.5",
    "poisson",
    "poisson_1_unit",
    "bce",
    "bce_soft_targets",
    "bce_class_weight",
    "ce_int_labels",
    "ce_onehot",
    "ce_soft_targets",
    "ce_label_smoothing",
    "ce_class_weight",
    "ce_class_weight_dict_smoothing_soft",
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("name", CASES)
def test_loss_gradient_matches_finite_differences(name, weighted):
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # stable across processes
    loss, z, t = _case(name, rng)
    w = rng.uniform(0.2, 3.0, size=N) if weighted else None
    z_before = z.copy()
    value, grad = loss(z, t, w)
    np.testing.assert_array_equal(z, z_before)  # y_pred is never modified in place
    assert isinstance(value, float) and grad.shape == z.shape and grad.dtype == np.float64
    zc = z.copy()
    numeric = numerical_gradient(lambda: loss(zc, t, w)[0], zc)
    assert np.any(numeric != 0)
    assert rel_error(grad, numeric) < 1e-6


# -- values -----------------------------------------------------------------------------------
def test_regression_loss_values():
    rng = np.random.default_rng(0)
    p, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    r = p - t
    assert ln.MSE()(p, t)[0] == pytest.approx(np.mean(r**2), rel=1e-12)
    assert ln.MAE()(p, t)[0] == pytest.approx(np.mean(np.abs(r)), rel=1e-12)
    d = 0.7
    huber = np.where(np.abs(r) <= d, 0.5 * r**2, d * (np.abs(r) - 0.5 * d))
    assert ln.Huber(delta=d)(p, t)[0] == pytest.approx(np.mean(huber), rel=1e-12)


def test_regression_losses_against_scikit_learn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(1)
    p, t = rng.standard_normal((20, 2)), rng.standard_normal((20, 2))
    assert ln.MSE()(p, t)[0] == pytest.approx(mean_squared_error(t, p), rel=1e-12)
    assert ln.MAE()(p, t)[0] == pytest.approx(mean_absolute_error(t, p), rel=1e-12)


def test_cross_entropy_value_matches_scikit_learn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(2)
    z = rng.standard_normal((30, 4)) * 2
    y = rng.integers(0, 4, size=30)
    value, _ = ln.CrossEntropy()(z, y)
    assert value == pytest.approx(log_loss(y, _softmax(z), labels=range(4)), rel=1e-10)
    # one-hot targets give the same value and gradient as integer labels
    v2, g2 = ln.CrossEntropy()(z, np.eye(4)[y])
    assert v2 == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(g2, ln.CrossEntropy()(z, y)[1], rtol=1e-12)


def test_binary_cross_entropy_matches_scikit_learn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(3)
    z = rng.standard_normal((40, 1)) * 3
    y = rng.integers(0, 2, size=(40, 1)).astype(float)
    value, grad = ln.BinaryCrossEntropy()(z, y)
    s = 1 / (1 + np.exp(-z))
    assert value == pytest.approx(log_loss(y.ravel(), s.ravel()), rel=1e-10)
    np.testing.assert_allclose(grad, (s - y) / 40, rtol=1e-10)


def test_label_smoothing_and_class_weight_values():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 3))
    y = np.array([0, 1, 2, 1, 0])
    log_p = np.log(_softmax(z))
    t = np.eye(3)[y] * (1 - 0.3) + 0.3 / 3
    assert ln.CrossEntropy(label_smoothing=0.3)(z, y)[0] == pytest.approx(
        -(t * log_p).sum(axis=1).mean(), rel=1e-12
    )
    w = np.array([2.0, 1.0, 0.5])
    # Keras convention: weighted sum divided by n, not by the sum of the weights
    expected = -(w[y] * log_p[np.arange(5), y]).sum() / 5
    assert ln.CrossEntropy(class_weight=w)(z, y)[0] == pytest.approx(expected, rel=1e-12)
    assert ln.CrossEntropy(class_weight={0: 2.0, 2: 0.5})(z, y)[0] == pytest.approx(expected)


def test_sample_weight_convention():
    rng = np.random.default_rng(5)
    p, t = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    w = np.array([1.0, 0.0, 2.0, 0.5])
    per_sample = ((p - t) ** 2).mean(axis=1)
    assert ln.MSE()(p, t, w)[0] == pytest.approx(np.dot(per_sample, w) / 4, rel=1e-12)
    # weights of one reproduce the unweighted loss exactly
    v1, g1 = ln.MSE()(p, t, np.ones(4))
    v0, g0 = ln.MSE()(p, t)
    assert v1 == pytest.approx(v0, rel=1e-15)
    np.testing.assert_allclose(g1, g0, rtol=1e-15)
    # a zero weight removes the sample's gradient
    assert not ln.MSE()(p, t, w)[1][1].any()


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    rng = np.random.default_rng(6)
    z = rng.standard_normal((5, 3))
    y = rng.integers(0, 3, size=5)
    _, grad = ln.CrossEntropy()(z, y)
    np.testing.assert_allclose(grad, (_softmax(z) - np.eye(3)[y]) / 5, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_cross_entropy_shortcut_agrees_with_the_textbook_formula(dtype, scale):
    """Integer labels without weights take a shortcut with fewer NumPy calls (``fit`` uses it
    every step); it must give the textbook per-sample formula's mean and gradient."""
    rng = np.random.default_rng(int(scale))
    z = (rng.standard_normal((33, 7)) * scale).astype(dtype)
    y = rng.integers(0, 7, size=33)
    loss = ln.CrossEntropy()
    assert loss._fast_mean_and_grad(z, y) is not None  # the shortcut is taken
    value, grad = loss.fast(z, y)
    per_sample, g = loss.per_sample(z, y)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert value == pytest.approx(float(per_sample.sum()) / 33, rel=tol, abs=tol)
    np.testing.assert_allclose(grad, g / 33, rtol=tol, atol=tol / 33)
    assert grad.dtype == dtype
    # the shortcut does not apply with smoothing, class weights or soft targets
    assert ln.CrossEntropy(label_smoothing=0.1)._fast_mean_and_grad(z, y) is None
    assert ln.CrossEntropy(class_weight=[1.0] * 7)._fast_mean_and_grad(z, y) is None
    assert loss._fast_mean_and_grad(z, np.eye(7, dtype=dtype)[y]) is None


# -- numerical stability ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_classification_losses_are_stable_on_extreme_logits(dtype):
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        right, g_right = ln.CrossEntropy()(z, np.array([0, 1]))
        wrong, g_wrong = ln.CrossEntropy()(z, np.array([1, 2]))
        b_right, gb = ln.BinaryCrossEntropy()(z, (z > 0).astype(dtype))
        b_wrong, _ = ln.BinaryCrossEntropy()(z, (z < 0).astype(dtype))
    assert right == pytest.approx(0.0, abs=1e-6)
    assert wrong == pytest.approx((2000 + 1000) / 2, rel=1e-6)  # -log p = 2000 and 1000
    assert b_right == pytest.approx(np.log(2) / 3, rel=1e-5)  # the 0 logits cost log 2 each
    # each row: 1000 + 1000 for the two confidently wrong units, log 2 for the 0 logit
    assert b_wrong == pytest.approx((2000 + np.log(2)) / 3, rel=1e-5)
    for g in (g_right, g_wrong, gb):
        assert np.all(np.isfinite(g))
        assert g.dtype == dtype


# -- target checks ----------------------------------------------------------------------------
def test_no_silent_broadcasting():
    p = np.zeros((5, 3))
    for loss in (ln.MSE(), ln.MAE(), ln.Huber(), ln.BinaryCrossEntropy()):
        with pytest.raises(ValueError, match="same shape"):
            loss(p, np.zeros(5))
        with pytest.raises(ValueError, match="same shape"):
            loss(p[:, :1], np.zeros(5))  # (n, 1) vs (n,) must not broadcast to (n, n)
        with pytest.raises(ValueError, match="same shape"):
            loss(p, np.zeros((5, 1)))


def test_cross_entropy_target_checks():
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*label 3"):
        ln.CrossEntropy()(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ln.CrossEntropy()(z, np.array([0, -1, 2, 1]))
    with pytest.raises(ValueError, match="fractions"):
        ln.CrossEntropy()(z, np.array([0, 1.5, 2, 1]))
    with pytest.raises(ValueError, match="4 labels"):
        ln.CrossEntropy()(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="same shape"):
        ln.CrossEntropy()(z, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(n, classes\)"):
        ln.CrossEntropy()(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="class_weight has 2 entries for 3 classes"):
        ln.CrossEntropy(class_weight=[1.0, 2.0])(z, np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        ln.CrossEntropy(label_smoothing=1.0)
    with pytest.raises(ValueError, match="class_weight"):
        ln.CrossEntropy(class_weight=[1.0, -2.0])


def test_binary_cross_entropy_target_checks():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ln.BinaryCrossEntropy()(np.zeros((3, 1)), np.array([[0.0], [2.0], [1.0]]))
    with pytest.raises(ValueError, match="2 entries"):
        ln.BinaryCrossEntropy(class_weight=[1.0, 2.0, 3.0])


def test_sample_weight_shape_is_checked():
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(3,\)"):
        ln.MSE()(np.zeros((3, 1)), np.zeros((3, 1)), np.ones(4))
    with pytest.raises(ValueError, match="sample_weight"):
        ln.MSE()(np.zeros((3, 1)), np.zeros((3, 1)), np.ones((3, 1)))


def test_huber_delta_validation():
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="delta"):
            ln.Huber(delta=bad)


# -- registry and helpers ---------------------------------------------------------------------
def test_get_resolves_names_and_lists_valid_ones():
    assert isinstance(losses.get("mse"), ln.MSE)
    assert isinstance(losses.get("sparse_categorical_crossentropy"), ln.CrossEntropy)
    assert isinstance(losses.get("BCE"), ln.BinaryCrossEntropy)
    assert losses.get("huber", delta=2.0).delta == 2.0
    inst = ln.CrossEntropy(label_smoothing=0.1)
    assert losses.get(inst) is inst
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*mse.*cross_entropy"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="loss"):
        losses.get(lambda p, t: 0.0)


@pytest.mark.parametrize(
    "loss",
    [
        ln.MSE(),
        ln.MAE(),
        ln.Huber(0.3),
        ln.CrossEntropy(0.1, [1.0, 2.0]),
        ln.BinaryCrossEntropy([1, 3]),
        losses.Poisson(),
    ],
)
def test_loss_config_round_trip(loss):
    clone = type(loss).from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert repr(clone) == repr(loss)


def test_output_transform():
    z = np.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(losses.output_transform(ln.CrossEntropy(), z), [[0.25, 0.75]])
    np.testing.assert_allclose(losses.output_transform(ln.BinaryCrossEntropy(), z), [[0.5, 0.75]])
    np.testing.assert_array_equal(losses.output_transform(ln.MSE(), z), z)
    np.testing.assert_array_equal(losses.output_transform(None, z), z)
    np.testing.assert_allclose(losses.output_transform(losses.Poisson(), z), [[1.0, 3.0]])
    # the Poisson rate never overflows: z is clipped at MAX_LOG_RATE before exp
    big = np.array([[1e4, -1e4]], dtype=np.float32)
    with np.errstate(over="raise"):
        rate = losses.output_transform(losses.Poisson(), big)
    assert rate[0, 0] == np.float32(np.exp(losses.MAX_LOG_RATE)) and rate[0, 1] == 0.0
