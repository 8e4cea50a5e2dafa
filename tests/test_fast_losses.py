"""The fast path of every loss (``Loss.fast``, what ``fit`` runs) against its textbook path
(``Loss.__call__``, the per-sample formula of the docstring, itself checked against finite
differences and reference values in test_losses.py): the same values and gradients, in float32
and float64, with and without sample weights, for every registered loss and each of its options
and target kinds, at logit scales 1, 30 and 1000. Each on both fast paths (the ``jit`` fixture,
tests/_jit.py): NumPy, and the compiled softmax / sigmoid cross-entropy kernels."""

from __future__ import annotations

import zlib

import _jit
import numpy as np
import pytest

import lucidnet as ln
from lucidnet.losses import LOSSES, Poisson

jit_fixture = _jit.JIT  # the jit and calls fixtures (tests/_jit.py)
calls_fixture = _jit.CALLS

N = 17  # odd: no batch-size coincidence
K = 5

#: for each registered loss class: (id, loss factory, target kinds it accepts).
CONFIGS: dict[type, list[tuple[str, object, tuple[str, ...]]]] = {
    ln.MSE: [("mse", ln.MSE, ("real", "real_1_unit"))],
    ln.MAE: [("mae", ln.MAE, ("real", "real_1_unit"))],
    ln.Huber: [
        ("huber", ln.Huber, ("real", "real_1_unit")),
        ("huber_delta_0.3", lambda: ln.Huber(delta=0.3), ("real",)),
    ],
    Poisson: [("poisson", Poisson, ("counts", "counts_1_unit"))],
    ln.CrossEntropy: [
        ("ce", ln.CrossEntropy, ("labels", "onehot", "soft")),
        (
            "ce_smoothing",
            lambda: ln.CrossEntropy(label_smoothing=0.1),
            ("labels", "onehot", "soft"),
        ),
        (
            "ce_class_weight",
            lambda: ln.CrossEntropy(class_weight=[1.0, 2.0, 0.5, 3.0, 0.0]),
            ("labels", "onehot", "soft"),
        ),
        (
            "ce_smoothing_class_weight",
            lambda: ln.CrossEntropy(label_smoothing=0.2, class_weight={0: 2.0, 4: 0.25}),
            ("labels", "soft"),
        ),
    ],
    ln.BinaryCrossEntropy: [
        ("bce", ln.BinaryCrossEntropy, ("binary", "binary_1_unit", "soft_binary")),
        (
            "bce_class_weight",
            lambda: ln.BinaryCrossEntropy(class_weight=[0.3, 2.0]),
            ("binary", "binary_1_unit", "soft_binary"),
        ),
    ],
}

CASES = [
    pytest.param(make, target, id=f"{name}-{target}")
    for configs in CONFIGS.values()
    for name, make, targets in configs
    for target in targets
]


def test_every_registered_loss_is_covered():
    registered = {LOSSES.lookup(name) for name in LOSSES.names()}
    assert registered == set(CONFIGS)


def make_batch(target: str, scale: float, rng: np.random.Generator):
    """(logits or predictions (N, units), raw targets as a user passes them)."""
    units = 1 if target.endswith("1_unit") else K
    z = rng.standard_normal((N, units)) * scale
    if target.startswith("real"):
        y = z + rng.standard_normal((N, units)) * scale * rng.choice([0.1, 1.0, 3.0], (N, units))
        y[0] = z[0]  # residual exactly 0 (MAE's and Huber's kink)
        return z, y[:, 0] if units == 1 else y  # one unit: 1-D targets, as users pass them
    if target.startswith("counts"):
        y = rng.poisson(rng.choice([0.5, 3.0, 40.0], (N, units))).astype(float)
        return z, y[:, 0] if units == 1 else y
    labels = rng.integers(0, K, size=N)
    if target == "labels":
        return z, labels
    if target == "onehot":
        return z, np.eye(K)[labels]
    if target == "soft":
        e = np.exp(rng.standard_normal((N, K)))
        return z, e / e.sum(axis=1, keepdims=True)
    if target.startswith("binary"):
        return z, rng.integers(0, 2, size=(N, units)).astype(float)
    if target == "soft_binary":
        return z, rng.random((N, units))
    raise KeyError(target)


def tolerance(dtype) -> float:
    return 2e-6 if dtype == np.float32 else 1e-13


def assert_same(fast, textbook, dtype, what=""):
    """Fast and textbook ``(value, grad)`` agree to the dtype's rounding."""
    (vf, gf), (vt, gt) = fast, textbook
    tol = tolerance(dtype)
    assert isinstance(vf, float) and isinstance(vt, float)
    assert abs(vf - vt) <= tol * max(1.0, abs(vt)), (what, vf, vt)
    assert gf.shape == gt.shape and gf.dtype == gt.dtype == dtype, what
    # a gradient entry is compared relative to the largest entry: a sum of rounded terms
    # carries the rounding of its largest one
    np.testing.assert_allclose(gf, gt, rtol=tol, atol=tol * np.abs(gt).max(), err_msg=what)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("make, target", CASES)
def test_fast_path_equals_textbook_path(make, target, dtype, weighted, scale, jit, calls):
    rng = np.random.default_rng(zlib.crc32(f"{target}-{scale}".encode()))
    loss = make()
    z, y = make_batch(target, scale, rng)
    z = z.astype(dtype)
    w = rng.uniform(0.0, 3.0, size=N).astype(dtype) if weighted else None
    if w is not None:
        w[1] = 0.0  # a sample weighted out
    # fit prepares the targets once (Loss.prepare_targets) and calls the fast path each step
    prepared = loss.prepare_targets(y, z.shape[1:], dtype, "y")
    z_before = z.copy()
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        textbook = loss(z, y.reshape(z.shape) if y.ndim == 1 and z.shape[1] == 1 else y, w)
        fast = loss.fast(z, prepared, w)
        fast_again = loss.fast(z, prepared, w)  # the per-shape constants, cached
    np.testing.assert_array_equal(z, z_before)  # y_pred is never modified in place
    assert np.all(np.isfinite(textbook[1])) and np.isfinite(textbook[0])
    assert_same(fast, textbook, dtype, "fast vs textbook")
    assert fast_again[0] == fast[0]
    np.testing.assert_array_equal(fast_again[1], fast[1])
    # the kernels ran where they apply: no sample weights, integer labels without smoothing or
    # class weights (softmax), no class weights (sigmoid)
    kernel = {
        ln.CrossEntropy: "softmax_cross_entropy",
        ln.BinaryCrossEntropy: "sigmoid_cross_entropy",
    }
    applies = (
        jit == "kernels" and not weighted and (make is ln.BinaryCrossEntropy or target == "labels")
    )
    assert calls == ([kernel[make]] * 2 if applies and make in kernel else [])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_integer_labels_onehot_and_soft_targets_agree_between_paths(dtype, jit):
    """Integer labels and their one-hot rows are the same target on both paths."""
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((N, K)) * 4).astype(dtype)
    labels = rng.integers(0, K, size=N)
    onehot = np.eye(K, dtype=dtype)[labels]
    w = rng.uniform(0.5, 2.0, size=N).astype(dtype)
    for loss in (ln.CrossEntropy(), ln.CrossEntropy(0.1, [1.0, 2.0, 0.5, 3.0, 1.0])):
        for sw in (None, w):
            reference = loss(z, labels, sw)
            for path in (loss.fast(z, labels, sw), loss.fast(z, onehot, sw), loss(z, onehot, sw)):
                assert_same(path, reference, dtype, repr(loss))


def test_textbook_cross_entropy_builds_the_target_distribution():
    """The textbook path really is the docstring's formula: -sum_c w_c t_ic log p_ic with
    the smoothed one-hot t built from the labels (here checked term by term)."""
    loss = ln.CrossEntropy(label_smoothing=0.3, class_weight=[2.0, 1.0, 0.5])
    labels = np.array([0, 2])
    t = loss.target_distribution(labels, 3, np.float64)
    np.testing.assert_allclose(t, [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    wt = t * [2.0, 1.0, 0.5]
    losses, grads = loss.per_sample(z, labels)
    np.testing.assert_allclose(losses, -(wt * log_p).sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(
        grads, np.exp(log_p) * wt.sum(axis=1, keepdims=True) - wt, rtol=1e-14, atol=1e-16
    )


@pytest.mark.parametrize("name", LOSSES.names())
def test_both_paths_check_the_sample_weight_shape(name):
    loss = LOSSES.lookup(name)()
    z = np.zeros((4, 2))
    y = np.array([0, 1, 1, 0]) if name == "cross_entropy" else np.zeros((4, 2))
    for path in (loss, loss.fast):
        with pytest.raises(ValueError, match=r"sample_weight must have shape \(4,\)"):
            path(z, y, np.ones(3))
