"""Tests for lucidnet.activations: values against the reference formulas, derivatives against
finite differences, numerical stability at +/-1000, and name resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _gradcheck_util import away_from_zero, rel_error

import lucidnet as ln
from lucidnet import activations

# Raise on overflow / invalid / division by zero. Underflow (e.g. exp(-1000) -> 0) is the
# correct, exact-to-float-precision answer, so it is allowed.
STRICT = {"over": "raise", "invalid": "raise", "divide": "raise", "under": "ignore"}

X = np.linspace(-6, 6, 49)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


REFERENCE = {
    "linear": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": lambda x: (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x)),
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "gelu": _gelu_tanh,
}
CLASSES = {
    "linear": ln.Linear,
    "sigmoid": ln.Sigmoid,
    "tanh": ln.Tanh,
    "relu": ln.ReLU,
    "leaky_relu": ln.LeakyReLU,
    "elu": ln.ELU,
    "gelu": ln.GELU,
    "softmax": ln.Softmax,
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_values_match_reference_formulas(name):
    layer = activations.get(name)
    assert isinstance(layer, CLASSES[name]) and layer.key == name
    np.testing.assert_allclose(
        layer.forward(X[None, :]), REFERENCE[name](X)[None, :], rtol=1e-12, atol=1e-15
    )


def test_softmax_values_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4)) * 3
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    out = ln.Softmax().forward(z)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    # invariant to adding a constant to a row
    np.testing.assert_allclose(ln.Softmax().forward(z + 100.0), expected, rtol=1e-10)


def test_parametrised_activations_use_their_parameter():
    x = np.array([[-2.0, -0.5, 0.5, 2.0]])
    np.testing.assert_allclose(ln.LeakyReLU(alpha=0.3).forward(x), [[-0.6, -0.15, 0.5, 2.0]])
    np.testing.assert_allclose(
        ln.ELU(alpha=2.0).forward(x), [[2 * math.expm1(-2), 2 * math.expm1(-0.5), 0.5, 2.0]]
    )


def test_gelu_is_the_tanh_approximation_close_to_the_erf_form():
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in X])
    out = ln.GELU().forward(X[None, :])[0]
    np.testing.assert_allclose(out, _gelu_tanh(X), rtol=1e-14)
    assert np.max(np.abs(out - exact)) < 1e-3
    assert np.max(np.abs(out - exact)) > 1e-6  # it is the approximation, not erf


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_backward_matches_finite_differences(name):
    """Element-wise derivative (Jacobian-vector product for softmax) vs central differences."""
    rng = np.random.default_rng(1)
    x = away_from_zero(rng, (4, 6), 0.1, 3.0)
    dy = rng.standard_normal(x.shape)
    layer = CLASSES[name]()
    layer.forward(x, training=True)
    analytic = layer.backward(dy)
    eps = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        numeric[idx] = np.sum(dy * (CLASSES[name]().forward(xp) - CLASSES[name]().forward(xm)))
    numeric /= 2 * eps
    assert rel_error(analytic, numeric) < 1e-7


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_plus_minus_1000(name, dtype):
    x = np.array([[-1000.0, -30.0, -1.0, 0.5, 30.0, 1000.0]], dtype=dtype)
    layer = CLASSES[name]()
    with np.errstate(**STRICT):
        out = layer.forward(x, training=True)
        grad = layer.backward(np.ones_like(x))
    assert out.dtype == dtype and grad.dtype == dtype
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    lo, hi = out[0, 0], out[0, -1]
    expected_limits = {
        "linear": (-1000, 1000),
        "sigmoid": (0, 1),
        "tanh": (-1, 1),
        "relu": (0, 1000),
        "leaky_relu": (-10, 1000),
        "elu": (-1, 1000),
        "gelu": (0, 1000),
        "softmax": (0, 1),
    }[name]
    np.testing.assert_allclose([lo, hi], expected_limits, rtol=1e-6, atol=1e-30)


def test_softmax_of_extreme_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]])
    with np.errstate(**STRICT):
        out = ln.Softmax().forward(z)
    np.testing.assert_allclose(out, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-300)


def test_functional_sigmoid_and_softmax_keep_dtype_and_do_not_modify_input():
    z = np.array([[-800.0, 0.0, 800.0]], dtype=np.float32)
    before = z.copy()
    with np.errstate(**STRICT):
        s = activations.sigmoid(z)
        p = activations.softmax(z)
    assert s.dtype == np.float32 and p.dtype == np.float32
    np.testing.assert_array_equal(z, before)
    np.testing.assert_allclose(s, [[0, 0.5, 1]], atol=1e-30)


def test_get_resolves_names_aliases_instances_and_none():
    assert activations.get(None) is None
    assert isinstance(activations.get("logistic"), ln.Sigmoid)
    assert isinstance(activations.get("identity"), ln.Linear)
    assert isinstance(activations.get("Leaky-ReLU"), ln.LeakyReLU)  # case and dash tolerant
    inst = ln.ELU(alpha=0.5)
    assert activations.get(inst) is inst
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu.*gelu.*softmax"):
        activations.get("swish")
    with pytest.raises(TypeError, match="activation"):
        activations.get(3)
    with pytest.raises(ValueError, match="unknown activation"):
        ln.Dense(3, activation="swish")


def test_derivative_at_exactly_zero_takes_the_left_branch():
    """At z = 0 the kinked activations use the z <= 0 branch: ReLU passes no gradient (as in
    PyTorch), leaky ReLU and ELU pass alpha; their fast pairs agree (tests/test_fast_layers.py
    puts exact zeros into their inputs)."""
    z = np.array([[-0.5, 0.0, 0.5]], dtype=np.float32)
    dy = np.array([[2.0, 2.0, 2.0]], dtype=np.float32)
    for layer, slope_at_zero in ((ln.ReLU(), 0.0), (ln.LeakyReLU(0.1), 0.1), (ln.ELU(0.7), 0.7)):
        layer.forward(z, training=True)
        dx = layer.backward(dy)
        assert dx.dtype == np.float32
        assert dx[0, 1] == pytest.approx(2.0 * slope_at_zero, rel=1e-6), type(layer).__name__
        assert dx[0, 2] == 2.0
