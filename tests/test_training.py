"""Tests for lucidnet.training: the public API example, learning real (bundled) data sets,
full-batch and stochastic gradient descent, reproducibility, the validation split, sample and
class weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lucidnet as ln
from lucidnet import training

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0])


@pytest.mark.slow
def test_public_api_example_verbatim(digits, tmp_path, monkeypatch):
    X_train, X_test, y_train, y_test = digits
    xb, yb = X_train[:32], y_train[:32]
    monkeypatch.chdir(tmp_path)  # the example saves to "digits.lnet" in the working directory

    model = ln.Sequential([ln.Dense(64, activation="relu"), ln.Dropout(0.1), ln.Dense(10)])
    history = model.fit(X_train, y_train, loss="cross_entropy", optimizer=ln.Adam(lr=1e-3), epochs=50, batch_size=32, validation_split=0.1, callbacks=[ln.EarlyStopping(patience=5, restore_best_weights=True)], seed=0, verbose=0)  # fmt: skip  # noqa: E501
    proba = model.predict(X_test); scores = model.evaluate(X_test, y_test)  # fmt: skip  # noqa: E702
    model.save("digits.lnet"); same = ln.load("digits.lnet")  # fmt: skip  # noqa: E702
    opt = ln.Adam(lr=1e-3); logits = model.forward(xb, training=True)  # fmt: skip  # noqa: E702
    loss_value, dlogits = ln.losses.get("cross_entropy")(logits, yb)
    model.zero_grad(); model.backward(dlogits); opt.step(model)  # fmt: skip  # noqa: E702

    assert isinstance(history, ln.History) and history.params["validation_samples"] > 0
    assert proba.shape == (360, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(scores) == {"loss", "accuracy"}
    assert scores["accuracy"] >= 0.96
    assert np.array_equal(same.predict(X_test), proba)
    assert (tmp_path / "digits.lnet").is_file()
    assert np.isfinite(loss_value) and dlogits.shape == (32, 10)
    assert opt.iterations == 1
    assert not np.array_equal(model.predict(X_test), proba)  # the manual step changed it


# -- learning real data -----------------------------------------------------------------------
@pytest.mark.slow
def test_digits_reaches_96_percent(digits):
    X_train, X_test, y_train, y_test = digits
    model = ln.Sequential([ln.Dense(64, activation="relu"), ln.Dense(10)])
    model.fit(
        X_train,
        y_train,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-3),
        epochs=30,
        batch_size=32,
        seed=1,
        verbose=0,
    )
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.96
    assert (model.predict_classes(X_test) == y_test).mean() >= 0.96


@pytest.mark.slow
def test_batchnorm_network_trains_on_digits(digits):
    X_train, X_test, y_train, y_test = digits
    model = ln.Sequential([ln.Dense(64), ln.BatchNorm(), ln.ReLU(), ln.Dense(10)])
    h = model.fit(
        X_train,
        y_train,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-3),
        epochs=15,
        batch_size=32,
        seed=0,
        verbose=0,
    )
    assert h["loss"][-1] < h["loss"][0] / 3
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.95
    bn = model.layers[1]
    assert not np.allclose(bn.state["running_mean"], 0)  # running statistics were learned


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("loss, units", [("binary_cross_entropy", 1), ("cross_entropy", 2)])
def test_xor_is_learned_by_a_2_4_1_network(loss, units, seed):
    y = XOR_Y.astype(np.float32) if units == 1 else XOR_Y
    model = ln.Sequential([ln.Dense(4, activation="tanh"), ln.Dense(units)])
    model.fit(
        XOR_X,
        y,
        loss=loss,
        optimizer=ln.Adam(lr=0.05),
        epochs=500,
        batch_size=None,
        seed=seed,
        verbose=0,
    )
    assert model.n_params == (2 * 4 + 4) + (4 * units + units)
    np.testing.assert_array_equal(model.predict_classes(XOR_X), XOR_Y)
    assert model.evaluate(XOR_X, y)["accuracy"] == 1.0
    # a network without a hidden layer cannot represent XOR
    linear = ln.Sequential([ln.Dense(units)])
    linear.fit(
        XOR_X,
        y,
        loss=loss,
        optimizer=ln.Adam(lr=0.05),
        epochs=500,
        batch_size=None,
        seed=seed,
        verbose=0,
    )
    assert linear.evaluate(XOR_X, y)["accuracy"] < 1.0


@pytest.mark.slow
def test_diabetes_regression_r2(diabetes):
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    X_train, X_test, y_train, y_test = diabetes
    model = ln.Sequential([ln.Dense(32, activation="relu", l2=0.03), ln.Dense(1, l2=0.03)])
    model.fit(
        X_train,
        y_train,
        loss="mse",
        optimizer=ln.Adam(lr=3e-3),
        epochs=60,
        batch_size=32,
        seed=0,
        verbose=0,
    )
    pred = model.predict(X_test)
    assert pred.shape == (len(X_test), 1)
    r2 = r2_score(y_test, pred.ravel())
    baseline = r2_score(y_test, LinearRegression().fit(X_train, y_train).predict(X_test))
    assert r2 >= 0.4
    assert r2 >= baseline - 0.05  # as good as least squares on this nearly linear problem
    assert ln.metrics.r2(y_test, pred) == pytest.approx(r2, rel=1e-6)


@pytest.mark.parametrize("batch_size", [None, 1])
def test_full_batch_and_stochastic_gradient_descent_reduce_the_loss(blobs, batch_size):
    X, y = blobs
    X, y = X[:120], y[:120]
    model = ln.Sequential([ln.Dense(8, activation="tanh"), ln.Dense(3)])
    lr = 0.5 if batch_size is None else 0.01
    h = model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=lr),
        epochs=10,
        batch_size=batch_size,
        seed=0,
        verbose=0,
    )
    steps = 1 if batch_size is None else 120
    assert h.params["steps"] == steps and h.params["batch_size"] == (
        120 if batch_size is None else 1
    )
    assert len(h.iteration_loss) == 10 * steps
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    if batch_size is None:  # full-batch gradient descent with a small step decreases monotonically
        assert all(b < a for a, b in zip(h["loss"], h["loss"][1:]))


def test_regression_with_several_outputs_and_huber(blobs):
    X, _ = blobs
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 2))
    Y = (X @ W).astype(np.float32)
    for loss in ("mse", "mae", ln.Huber(delta=0.5)):
        model = ln.Sequential([ln.Dense(2)])
        h = model.fit(X, Y, loss=loss, optimizer=ln.Adam(lr=0.05), epochs=30, seed=0, verbose=0)
        assert h["loss"][-1] < 0.05 * h["loss"][0]
        assert model.predict(X).shape == (240, 2)


def test_embedding_model_learns_a_token_task():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 30, size=(300, 8))
    ids[rng.random(ids.shape) < 0.3] = 0  # padding
    y = (np.isin(ids, np.arange(1, 8)).sum(axis=1) > 1).astype(np.int64)  # "contains 2+ keywords"
    model = ln.Sequential([ln.Embedding(30, 8), ln.Dense(16, activation="relu"), ln.Dense(2)])
    h = model.fit(
        ids, y, loss="cross_entropy", optimizer=ln.Adam(lr=0.02), epochs=40, seed=0, verbose=0
    )
    assert h["accuracy"][-1] > 0.85
    assert not model.layers[0].params["E"][0].any()  # the padding row is never trained


def test_one_hot_targets_train_like_integer_labels(blobs):
    X, y = blobs
    runs = []
    for target in (y, np.eye(3)[y]):
        model = ln.Sequential([ln.Dense(3)])
        runs.append(model.fit(X, target, loss="cross_entropy", epochs=3, seed=0, verbose=0))
    np.testing.assert_allclose(runs[0]["loss"], runs[1]["loss"], rtol=1e-6)
    np.testing.assert_allclose(runs[0]["accuracy"], runs[1]["accuracy"])


# -- reproducibility --------------------------------------------------------------------------
def _reproducible_run(blobs, seed):
    X, y = blobs
    model = ln.Sequential([ln.Dense(16, activation="relu"), ln.Dropout(0.3), ln.Dense(3)])
    h = model.fit(
        X,
        y,
        loss="cross_entropy",
        epochs=3,
        batch_size=16,
        validation_split=0.2,
        seed=seed,
        verbose=0,
    )
    return model, h


def test_same_seed_gives_bit_identical_weights_and_history(blobs):
    m1, h1 = _reproducible_run(blobs, 7)
    m2, h2 = _reproducible_run(blobs, 7)
    w1, w2 = m1.get_weights(), m2.get_weights()
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    assert h1.history == h2.history
    assert h1.iteration_loss == h2.iteration_loss


def test_different_seeds_give_different_weights(blobs):
    m1, h1 = _reproducible_run(blobs, 7)
    m2, h2 = _reproducible_run(blobs, 8)
    w1, w2 = m1.get_weights(), m2.get_weights()
    assert not any(np.array_equal(w1[k], w2[k]) for k in w1 if "W" in k)
    assert h1.iteration_loss != h2.iteration_loss


def test_build_is_seeded(blobs):
    a, b = ln.Sequential([ln.Dense(4)]), ln.Sequential([ln.Dense(4)])
    a.build((3,), seed=3)
    b.build((3,), seed=3)
    assert np.array_equal(a.layers[0].params["W"], b.layers[0].params["W"])


# -- validation split -------------------------------------------------------------------------
@pytest.fixture
def recorded_splits(monkeypatch):
    """Record the (train, validation) indices fit draws."""
    calls = []
    original = training.split_indices

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out)
        return out

    monkeypatch.setattr(training, "split_indices", recording)
    return calls


def test_validation_split_is_stratified_and_random(recorded_splits):
    # sorted, imbalanced labels: the last 10% are all class 2
    y = np.repeat([0, 1, 2], [500, 300, 200])
    X = np.random.default_rng(0).standard_normal((1000, 3)).astype(np.float32)
    h = ln.Sequential([ln.Dense(3)]).fit(
        X, y, loss="cross_entropy", epochs=1, validation_split=0.1, seed=0, verbose=0
    )
    train, val = recorded_splits[0]
    assert h.params["validation_samples"] == len(val) == 100
    assert h.params["samples"] == len(train) == 900
    assert np.intersect1d(train, val).size == 0 and np.union1d(train, val).size == 1000
    np.testing.assert_array_equal(np.bincount(y[val]), [50, 30, 20])  # proportions kept
    assert not np.array_equal(val, np.arange(900, 1000))  # not "the last 10%"
    assert val.min() < 500 < val.max()
    # another seed, another (still stratified) split
    ln.Sequential([ln.Dense(3)]).fit(
        X, y, loss="cross_entropy", epochs=1, validation_split=0.1, seed=1, verbose=0
    )
    assert not np.array_equal(recorded_splits[1][1], val)
    np.testing.assert_array_equal(np.bincount(y[recorded_splits[1][1]]), [50, 30, 20])


def test_validation_split_for_regression_is_random(recorded_splits):
    X = np.random.default_rng(0).standard_normal((200, 3)).astype(np.float32)
    y = np.arange(200, dtype=np.float32)
    ln.Sequential([ln.Dense(1)]).fit(
        X, y, loss="mse", epochs=1, validation_split=0.25, seed=0, verbose=0
    )
    train, val = recorded_splits[0]
    assert len(val) == 50 and len(train) == 150
    assert not np.array_equal(val, np.arange(150, 200))
    assert val.min() < 50 and val.max() >= 150  # spread over the whole range


def test_split_indices_keeps_every_class_in_validation():
    strata = np.array([0] * 50 + [1] * 3)
    train, val = training.split_indices(53, 0.1, np.random.default_rng(0), strata)
    assert set(strata[val]) == {0, 1}  # the rare class still gets one validation sample
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 53


def test_validation_data_takes_precedence(blobs, recorded_splits):
    X, y = blobs
    h = ln.Sequential([ln.Dense(3)]).fit(
        X,
        y,
        loss="cross_entropy",
        epochs=2,
        validation_split=0.5,
        validation_data=(X[:10], y[:10]),
        seed=0,
        verbose=0,
    )
    assert recorded_splits == []
    assert h.params["validation_samples"] == 10 and h.params["samples"] == 240


# -- batching details -------------------------------------------------------------------------
def test_batchnorm_never_sees_a_last_batch_of_one(blobs):
    X, y = blobs
    X, y = X[:65], y[:65]  # 65 = 2 * 32 + 1
    model = ln.Sequential([ln.Dense(4), ln.BatchNorm(), ln.Dense(3)])
    h = model.fit(X, y, loss="cross_entropy", epochs=2, batch_size=32, seed=0, verbose=0)
    assert h.params["steps"] == 2 and len(h.iteration_loss) == 4


def test_batch_size_larger_than_the_data_is_full_batch(blobs):
    X, y = blobs
    h = ln.Sequential([ln.Dense(3)]).fit(
        X, y, loss="cross_entropy", epochs=2, batch_size=1000, verbose=0
    )
    assert h.params["batch_size"] == 240 and h.params["steps"] == 1


def test_shuffle_draws_new_batches_every_epoch(blobs):
    """With a learning rate too small to change float32 weights, each step's loss is the loss
    of its batch at fixed weights: identical epochs without shuffling, different with it."""
    X, y = blobs
    kw = dict(loss="cross_entropy", optimizer=ln.SGD(lr=1e-12), epochs=2, batch_size=40, verbose=0)
    runs = {}
    for shuffle in (False, True):
        model = ln.Sequential([ln.Dense(3)])
        model.build((4,), seed=0)
        runs[shuffle] = model.fit(X, y, shuffle=shuffle, seed=0, **kw).iteration_loss
    assert runs[False][:6] == runs[False][6:]  # weights did not move: same batches, same losses
    assert sorted(runs[True][:6]) != sorted(runs[True][6:])  # reshuffled between epochs
    assert runs[True][:6] != runs[False][:6]


def test_steps_per_epoch_with_a_partial_last_batch(blobs):
    X, y = blobs
    h = ln.Sequential([ln.Dense(3)]).fit(
        X, y, loss="cross_entropy", epochs=2, batch_size=50, verbose=0
    )
    assert h.params["steps"] == math.ceil(240 / 50) and len(h.iteration_loss) == 10


# -- sample and class weights -----------------------------------------------------------------
def test_zero_sample_weights_remove_samples_exactly(blobs):
    """Full-batch SGD with weights 1/0 == SGD on the weighted samples with lr * k / n (the
    weighted sum is divided by n, Keras' convention)."""
    X, y = blobs
    n, k = 240, 150
    w = np.r_[np.ones(k), np.zeros(n - k)]
    kw = dict(loss="cross_entropy", epochs=5, batch_size=None, shuffle=False, seed=0, verbose=0)
    a = ln.Sequential([ln.Dense(3)], dtype="float64")
    a.fit(X, y, optimizer=ln.SGD(lr=0.3), sample_weight=w, **kw)
    b = ln.Sequential([ln.Dense(3)], dtype="float64")
    b.fit(X[:k], y[:k], optimizer=ln.SGD(lr=0.3 * k / n), **kw)
    for key, value in a.get_weights().items():
        np.testing.assert_allclose(value, b.get_weights()[key], rtol=1e-10, atol=1e-12)


def test_class_weight_equals_the_corresponding_sample_weight(blobs):
    X, y = blobs
    kw = dict(loss="cross_entropy", epochs=2, seed=0, verbose=0)
    a = ln.Sequential([ln.Dense(3)])
    ha = a.fit(X, y, class_weight={1: 3.0}, **kw)
    b = ln.Sequential([ln.Dense(3)])
    hb = b.fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0), **kw)
    assert ha.iteration_loss == hb.iteration_loss
    assert all(np.array_equal(v, b.get_weights()[k]) for k, v in a.get_weights().items())


def test_balanced_class_weight_raises_minority_recall():
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.1).astype(np.int64)  # 10% positives
    X = (rng.standard_normal((600, 2)) + y[:, None] * 1.0).astype(np.float32)
    recalls = []
    for cw in (None, "balanced"):
        model = ln.Sequential([ln.Dense(2)])
        model.fit(X, y, loss="cross_entropy", epochs=20, class_weight=cw, seed=0, verbose=0)
        recalls.append(float(np.mean(model.predict_classes(X)[y == 1] == 1)))
    assert recalls[1] > recalls[0] + 0.2


def test_fit_does_not_modify_its_inputs(blobs):
    X, y = blobs  # read-only arrays: an in-place write would raise
    X2, y2 = X.copy(), y.copy()
    ln.Sequential([ln.Dense(3)]).fit(
        X, y, loss="cross_entropy", epochs=1, validation_split=0.2, verbose=0
    )
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


# -- the loop itself --------------------------------------------------------------------------
def test_fit_equals_the_explicit_training_loop(blobs):
    """fit (no shuffling) performs exactly forward -> loss -> zero_grad -> backward -> step on
    consecutive mini-batches: the same weights as the loop written out by hand."""
    X, y = blobs

    def net():
        model = ln.Sequential(
            [
                ln.Dense(8, activation="relu"),
                ln.BatchNorm(),
                ln.Dense(8, activation="gelu", l2=0.01),
                ln.Dense(3),
            ]  # noqa: E501
        )
        model.build((4,), seed=0)
        return model

    fitted = net()
    h = fitted.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=0.01),
        epochs=2,
        batch_size=50,
        shuffle=False,
        verbose=0,
    )  # noqa: E501
    manual, opt, loss = net(), ln.Adam(lr=0.01), ln.CrossEntropy()
    losses = []
    for _ in range(2):
        for i in range(0, 240, 50):
            logits = manual.forward(X[i : i + 50], training=True)
            value, dlogits = loss(logits, y[i : i + 50])
            losses.append(value + manual.penalty())
            manual.zero_grad()
            manual.backward(dlogits)
            opt.step(manual)
    for key, value in fitted.get_weights().items():
        np.testing.assert_allclose(value, manual.get_weights()[key], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(h.iteration_loss, losses, rtol=1e-6)


def test_arrays_returned_outside_fit_are_not_overwritten_later(blobs):
    X, y = blobs
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    model.fit(X, y, loss="cross_entropy", epochs=1, seed=0, verbose=0)
    a = model.forward(X[:10], training=True)
    a_copy = a.copy()
    model.zero_grad()
    da = model.backward(np.ones_like(a))
    da_copy = da.copy()
    b = model.forward(X[10:20], training=True)
    model.backward(np.full_like(b, 2.0))
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(da, da_copy)


@pytest.mark.parametrize("kind", ["labels", "one_hot", "binary", "binary_1d", "multi_label"])
def test_training_accuracy_uses_the_same_definition_as_evaluate(blobs, kind):
    """Full batch: epoch 0's accuracy is measured on the initial weights, so it must equal
    evaluate() on the initial weights, for every kind of classification target."""
    X, y = blobs
    targets = {
        "labels": (y, 3, "cross_entropy"),
        "one_hot": (np.eye(3)[y], 3, "cross_entropy"),
        "binary": ((y == 1).astype(np.float32)[:, None], 1, "bce"),
        "binary_1d": ((y == 1).astype(np.float32), 1, "bce"),
        "multi_label": (
            np.stack([y == 0, y == 2, X[:, 3] > 0], axis=1).astype(np.float32),
            3,
            "bce",
        ),  # noqa: E501
    }
    t, units, loss = targets[kind]
    model = ln.Sequential([ln.Dense(units)])
    model.build((4,), seed=3)
    model.compile(loss=loss)
    before = model.evaluate(X, t)["accuracy"]
    assert 0.05 < before < 0.95
    h = model.fit(X, t, epochs=1, batch_size=None, seed=0, verbose=0)
    assert h["accuracy"][0] == pytest.approx(before, abs=1e-12)


# -- train_step: the one training step ---------------------------------------------------------
def test_fit_is_train_step_on_consecutive_batches(blobs):
    """fit (no shuffling) = train_step on consecutive mini-batches, on both paths."""
    X, y = blobs

    def net():
        model = ln.Sequential([ln.Dense(8, activation="relu", l2=0.01), ln.Dense(3)])
        model.build((4,), seed=0)
        return model

    fitted = net()
    h = fitted.fit(X, y, loss="cross_entropy", optimizer=ln.Adam(lr=0.01), epochs=2,
                   batch_size=50, shuffle=False, verbose=0)  # fmt: skip
    for fast in (True, False):
        manual, opt, loss = net(), ln.Adam(lr=0.01), ln.CrossEntropy()
        values = []
        for _ in range(2):
            for i in range(0, 240, 50):
                value, _ = training.train_step(
                    manual, X[i : i + 50], y[i : i + 50], loss, opt, fast=fast
                )
                values.append(value)
        for key, value in fitted.get_weights().items():
            np.testing.assert_allclose(value, manual.get_weights()[key], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(h.iteration_loss, values, rtol=1e-6)


def test_train_step_penalty_uses_the_weights_before_the_update(blobs):
    X, y = blobs
    model = ln.Sequential([ln.Dense(3, l2=0.5)])
    model.build((4,), seed=0)
    before = model.penalty()
    logits = model.forward(X[:16])
    expected = ln.CrossEntropy()(logits, y[:16])[0] + before
    value, _ = ln.train_step(model, X[:16], y[:16], ln.CrossEntropy(), ln.SGD(lr=0.5))
    assert value == pytest.approx(expected, rel=1e-6)
    assert model.penalty() != pytest.approx(before)  # the step did change the weights


def test_last_batch_below_a_layers_minimum_joins_the_previous_one(blobs):
    """Layer.min_batch_size is a hook: a custom layer needing 3 rows is respected too."""
    X, y = blobs
    sizes = []

    class NeedsThree(ln.layers.Linear):
        min_batch_size = 3

        def forward(self, x, training=False):
            if training:
                sizes.append(x.shape[0])
            return x

    model = ln.Sequential([ln.Dense(4), NeedsThree(), ln.Dense(3)])
    model.fit(X[:42], y[:42], loss="cross_entropy", epochs=1, batch_size=20, verbose=0)
    assert sizes == [20, 22]  # 42 = 20 + 20 + 2: the 2 rows join the second batch


# -- target scaling ------------------------------------------------------------------------------
def _regression(n=300, scale=1000.0, offset=5000.0, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    W = rng.standard_normal((3, outputs))
    y = (np.tanh(X @ W) * scale + offset).astype(np.float32)
    return X, (y[:, 0] if outputs == 1 else y)


def _mlp(out=1):
    return ln.Sequential([ln.Dense(16, activation="tanh"), ln.Dense(out)])


@pytest.mark.parametrize("outputs", [1, 2])
def test_regression_in_large_units_is_learned_with_target_scaling(outputs):
    X, y = _regression(outputs=outputs)
    model = _mlp(outputs)
    h = model.fit(X, y, loss="mse", epochs=60, batch_size=32, seed=0, verbose=0)
    pred = model.predict(X).reshape(y.shape)
    r2 = 1 - ((pred - y) ** 2).sum() / ((y - y.mean(axis=0)) ** 2).sum()
    assert r2 > 0.9  # in the target's own units
    assert h.params["target_scaling"]["mean"] == pytest.approx(
        np.atleast_1d(y.mean(axis=0)).tolist(), rel=1e-5
    )
    assert h.history["loss"][-1] < 0.1  # losses are on the standardised target
    assert model.fit_target_scaling is None  # folded back after fit
    raw = _mlp(outputs)
    raw.fit(X, y, loss="mse", epochs=60, batch_size=32, seed=0, verbose=0, target_scaling=False)
    raw_pred = raw.predict(X).reshape(y.shape)
    assert ((raw_pred - y) ** 2).mean() > 10 * ((pred - y) ** 2).mean()


def test_target_scaling_equals_training_on_standardised_targets_by_hand():
    X, y = _regression()
    auto = _mlp()
    auto.build((3,), seed=1)
    by_hand = auto.copy()
    auto.fit(X, y, loss="mse", epochs=3, batch_size=50, shuffle=False, verbose=0)
    mean, std = y.astype(np.float64).mean(), y.astype(np.float64).std()
    by_hand.fit(X, (y - mean) / std, loss="mse", epochs=3, batch_size=50, shuffle=False,
                verbose=0, target_scaling=False)  # fmt: skip
    np.testing.assert_allclose(
        auto.predict(X), by_hand.predict(X) * std + mean, rtol=1e-4, atol=1e-3 * std
    )


def test_a_second_fit_continues_in_target_units():
    X, y = _regression()
    model = _mlp()
    model.fit(X, y, loss="mse", epochs=30, seed=0, verbose=0)
    first = ((model.predict(X)[:, 0] - y) ** 2).mean()
    model.fit(X, y, epochs=30, seed=1, verbose=0)  # same loss and optimizer, warm start
    second = ((model.predict(X)[:, 0] - y) ** 2).mean()
    assert second < first * 1.05


def test_checkpoints_saved_during_fit_predict_in_target_units(tmp_path):
    X, y = _regression()
    path = tmp_path / "best.lnet"
    model = _mlp()
    model.fit(X, y, loss="mse", epochs=5, seed=0, verbose=0, validation_split=0.2,
              callbacks=[ln.ModelCheckpoint(str(path), save_best_only=False)])  # fmt: skip
    np.testing.assert_allclose(ln.load(path).predict(X), model.predict(X), rtol=1e-5, atol=1e-2)


def test_target_scaling_option_is_checked():
    X, y = _regression()
    with pytest.raises(ValueError, match="target_scaling must be True, False or 'auto'"):
        _mlp().fit(X, y, loss="mse", epochs=1, verbose=0, target_scaling="yes")
    sig = ln.Sequential([ln.Dense(4), ln.Dense(1, activation="sigmoid")])
    with pytest.raises(ValueError, match="needs a linear Dense output layer"):
        sig.fit(X, y / y.max(), loss="mse", epochs=1, verbose=0, target_scaling=True)
    # "auto" leaves a model it cannot fold into alone
    h = sig.fit(X, y / y.max(), loss="mse", epochs=1, verbose=0)
    assert "target_scaling" not in h.params
    Xc, yc = blobs_like = (X, (y > y.mean()).astype(int))  # noqa: F841
    with pytest.raises(ValueError, match="target_scaling needs a regression loss"):
        _mlp(2).fit(Xc, yc, loss="cross_entropy", epochs=1, verbose=0, target_scaling=True)


def test_an_interrupted_fit_still_folds_the_scaling_back():
    X, y = _regression()

    class Stop(ln.Callback):
        def on_batch_end(self, batch, logs):
            if batch == 3:
                raise KeyboardInterrupt

    model = _mlp()
    model.fit(X, y, loss="mse", epochs=2, verbose=0, callbacks=[Stop()])
    assert model.history.stop_reason == "interrupted"
    assert model.fit_target_scaling is None
    assert abs(float(model.predict(X).mean()) - float(y.mean())) < 0.5 * float(y.std())


def test_fit_records_the_threads_of_every_epoch_and_the_file_keeps_them(tmp_path):
    """``threads`` is checked like any argument, the count of every epoch is recorded in
    ``history.params["threads"]`` (one per recorded epoch, early stopping included) and the
    saved model keeps the record."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 3)).astype(np.float32), rng.integers(0, 2, 80)
    model = ln.Sequential([ln.Dense(4, activation="relu"), ln.Dense(2)])
    stop = ln.EarlyStopping("val_loss", patience=0, min_delta=10.0)  # stops after 2 epochs
    h = model.fit(X, y, loss="cross_entropy", epochs=5, validation_split=0.2, verbose=0,
                  callbacks=[stop], threads=2, seed=0)  # fmt: skip
    record = h.params["threads"]
    assert record["setting"] == 2 and record["per_epoch"] == [2] * len(h.epoch)
    assert len(h.epoch) < 5
    model.save(tmp_path / "m.lnet")
    assert ln.load(tmp_path / "m.lnet").history.params["threads"] == record
    with pytest.raises(TypeError, match="threads must be 'auto' or an integer >= 1"):
        training.fit(model, X, y, epochs=1, threads="fast", verbose=0)
