"""``training.train_step`` on its fast path (``fit``'s: ``fast_forward``, ``Loss.fast``,
``fast_backward``, ``Optimizer.step``) against its textbook path (``forward``, ``loss(...)``,
``backward``, ``Optimizer.textbook_step``): two identical models trained on the same batches give
the same loss values, outputs, weights and optimizer state, step after step, for every registered
loss with a few optimizers, with and without sample weights, through an L2-penalised Dense."""

from __future__ import annotations

import numpy as np
import pytest

import lucidnet as ln
from lucidnet import training
from lucidnet.losses import LOSSES, Poisson

# the last batch is smaller (a second batch shape); odd sizes, so that MAE's bias gradient (a
# mean of signs) is never exactly 0, where rounding in the backward passes would decide the sign
# of Adam's normalised step
N_IN, BATCHES = 6, (15, 17, 15, 9)

#: one or two configurations of every registered loss, with the shape of its raw targets.
LOSS_CASES = {
    "mse": (ln.MSE, 3),
    "mae": (ln.MAE, 3),
    "huber": (lambda: ln.Huber(delta=0.5), 3),
    "mse_1_unit": (ln.MSE, 1),
    "cross_entropy": (ln.CrossEntropy, "labels"),
    "cross_entropy_onehot": (ln.CrossEntropy, "onehot"),
    "cross_entropy_smoothing_class_weight": (
        lambda: ln.CrossEntropy(label_smoothing=0.1, class_weight=[1.0, 2.0, 0.5, 1.5]),
        "labels",
    ),
    "poisson": (Poisson, "counts"),
    "binary_cross_entropy": (ln.BinaryCrossEntropy, 1),
    "binary_cross_entropy_multilabel_class_weight": (
        lambda: ln.BinaryCrossEntropy(class_weight=[0.5, 2.0]),
        3,
    ),
}
OPTIMIZER_CASES = {
    "sgd_nesterov": lambda: ln.SGD(lr=0.05, momentum=0.9, nesterov=True, clip_norm=5.0),
    "rmsprop": lambda: ln.RMSprop(lr=0.01, momentum=0.5, weight_decay=1e-3),
    "adam_schedule": lambda: ln.Adam(lr=ln.CosineDecay(0.02, decay_steps=8, warmup_steps=2)),
    "adamw": lambda: ln.AdamW(lr=0.01, weight_decay=0.05, clip_value=1.0),
}


def test_every_registered_loss_is_covered():
    registered = {LOSSES.lookup(name) for name in LOSSES.names()}
    assert registered == {type(make()) for make, _ in LOSS_CASES.values()}


def data(target, dtype, rng):
    """Inputs and raw targets for all batches, and the number of output units."""
    n = sum(BATCHES)
    X = rng.standard_normal((n, N_IN)).astype(dtype)
    if target in ("labels", "onehot"):
        labels = rng.integers(0, 4, size=n)
        return X, (labels if target == "labels" else np.eye(4)[labels]), 4
    if target == "counts":  # non-negative counts for the Poisson loss, 3 output units
        return X, rng.poisson(2.0, size=(n, 3)).astype(float), 3
    y = rng.standard_normal((n, target)) * 2
    if target == 1:
        y = y[:, 0]  # 1-D targets for one output unit, as users pass them
    return X, y, target


def twin_models(units, dtype):
    models = []
    for _ in range(2):
        model = ln.Sequential(
            [ln.Dense(8, activation="tanh", l2=1e-2), ln.Dense(units)], dtype=dtype
        )
        model.build((N_IN,), seed=0)
        models.append(model)
    return models


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("opt_name", list(OPTIMIZER_CASES))
@pytest.mark.parametrize("loss_name", list(LOSS_CASES))
def test_fast_and_textbook_train_steps_agree(loss_name, opt_name, weighted, dtype):
    make_loss, target = LOSS_CASES[loss_name]
    rng = np.random.default_rng(0)
    X, y_raw, units = data(target, dtype, rng)
    if isinstance(make_loss(), ln.BinaryCrossEntropy):
        y_raw = (y_raw > 0).astype(float)
    fast_model, text_model = twin_models(units, dtype)
    loss = make_loss()
    y = training.prepare_targets(fast_model, loss, y_raw)  # what fit does once
    w = rng.uniform(0.0, 2.0, size=len(X)).astype(dtype) if weighted else None
    fast_opt, text_opt = OPTIMIZER_CASES[opt_name](), OPTIMIZER_CASES[opt_name]()
    tol = 1e-5 if dtype == "float32" else 1e-12
    start = 0
    for epoch in range(2):
        for size in BATCHES:
            rows = slice(start % len(X), start % len(X) + size)
            start += size
            xb, yb, wb = X[rows], y[rows], None if w is None else w[rows]
            v_fast, out_fast = training.train_step(fast_model, xb, yb, loss, fast_opt, wb)
            out_fast = out_fast.copy()  # a workspace the next step overwrites
            v_text, out_text = training.train_step(
                text_model, xb, yb, loss, text_opt, wb, fast=False
            )
            what = f"epoch {epoch}, rows {rows}"
            assert isinstance(v_fast, float) and isinstance(v_text, float)
            assert v_fast == pytest.approx(v_text, rel=tol, abs=tol), what
            assert out_fast.dtype == out_text.dtype == np.dtype(dtype)
            np.testing.assert_allclose(out_fast, out_text, rtol=tol, atol=tol, err_msg=what)
            assert_same_weights(fast_model, text_model, tol, what)
    assert fast_opt.iterations == text_opt.iterations == 2 * len(BATCHES)
    for slot in fast_opt.slots:
        np.testing.assert_allclose(fast_opt.slots[slot], text_opt.slots[slot], rtol=tol, atol=tol)
    # the models did learn something (the comparison is not between two untouched models)
    untouched, _ = twin_models(units, dtype)
    assert not np.allclose(fast_model.layers[0].params["W"], untouched.layers[0].params["W"])


def assert_same_weights(a, b, tol, what):
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=tol, atol=tol, err_msg=f"{what}: {key}")


def test_the_returned_value_includes_the_l2_penalty_on_both_paths():
    rng = np.random.default_rng(1)
    X, y_raw, units = data(3, "float64", rng)
    fast_model, text_model = twin_models(units, "float64")
    loss = ln.MSE()
    W = fast_model.layers[0].params["W"]
    penalty = 1e-2 * float(np.sum(W * W))  # before the update changes W
    data_loss, _ = loss(fast_model.forward(X[:16]), y_raw[:16])
    for model, fast in ((fast_model, True), (text_model, False)):
        value, _ = training.train_step(model, X[:16], y_raw[:16], loss, ln.SGD(lr=0.1), fast=fast)
        assert value == pytest.approx(data_loss + penalty, rel=1e-12)
    assert penalty > 1e-3 * data_loss  # large enough to matter
