"""Tests of lucidnet.diagnostics: the records are right, each warning fires on a run built to
provoke it, and a healthy run stays silent."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.glassbox.diagnostics import Diagnostics, TrainingWarning


@pytest.fixture(scope="module")
def digits():
    return ln.datasets.load_digits()


def run(model, X, y, every=10, emit=False, **kwargs):
    diag = Diagnostics(every=every, emit=emit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaNGuard's own warning
        history = model.fit(X, y, callbacks=[diag], verbose=0, seed=0, **kwargs)
    return diag, history


def mlp(*hidden, activation="relu", out=10):
    return ln.Sequential([ln.Dense(h, activation=activation) for h in hidden] + [ln.Dense(out)])


def test_healthy_digits_run_is_silent(digits):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diag, history = run(
            mlp(64),
            digits.X_train,
            digits.y_train,
            emit=True,
            loss="cross_entropy",
            epochs=10,
            validation_split=0.2,
        )
    assert history.warnings == [] and diag.warnings == {}
    assert not [w for w in caught if issubclass(w.category, TrainingWarning)]
    assert history.history["val_accuracy"][-1] > 0.9
    assert len(diag.layers["dense_0"]["grad_norm"]) == 10
    ratio = diag.layers["dense_0"]["update_ratio"][-1]
    assert 1e-5 < ratio < 1e-1  # the healthy range the warnings are built around


def test_lr_too_high(digits):
    diag, history = run(
        mlp(64),
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=10.0),
        epochs=2,
    )
    assert "lr_too_high" in diag.warnings
    assert any("Learning rate too high" in w for w in history.warnings)


def test_lr_too_high_without_nan(digits):
    # Adam at lr=1: the loss climbs far above its start without overflowing
    diag, _ = run(
        mlp(64),
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1.0),
        epochs=2,
    )
    assert "lr_too_high" in diag.warnings and "nan" not in diag.warnings


def test_lr_too_low(digits):
    diag, history = run(
        mlp(64),
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-7),
        epochs=3,
    )
    assert set(diag.warnings) == {"lr_too_low"}
    assert "raise the learning rate" in history.warnings[0]


def test_vanishing_gradients_in_a_deep_sigmoid_network(digits):
    model = mlp(*[32] * 8, activation="sigmoid")
    diag, _ = run(
        model,
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=0.1),
        epochs=2,
    )
    assert "vanishing_gradients" in diag.warnings
    norms = [diag.layers[f"dense_{i}"]["grad_norm"][-1] for i in range(9)]
    assert norms[0] < 1e-3 * norms[-1]  # the record behind the warning


def test_exploding_gradients_in_a_deep_linear_network(digits):
    model = mlp(*[32] * 8, activation=None)
    model.build((64,), seed=0)
    model.set_weights(
        {k: v * 2.5 if k.endswith("/W") else v for k, v in model.get_weights().items()}
    )
    diag, _ = run(
        model,
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=1e-6),
        epochs=1,
    )
    assert "exploding_gradients" in diag.warnings


def test_dead_relu_units(digits):
    model = mlp(64)
    model.build((64,), seed=0)
    weights = model.get_weights()
    weights["dense_0/b"][:] = -100.0  # every pre-activation is negative: all units dead
    model.set_weights(weights)
    diag, _ = run(model, digits.X_train, digits.y_train, loss="cross_entropy", epochs=2)
    assert diag.layers["dense_0"]["dead_fraction"] == [1.0, 1.0]
    assert set(diag.warnings) == {"dead_units"}  # not misreported as vanishing gradients


def test_overfitting_on_a_tiny_noisy_training_set(digits):
    rng = np.random.default_rng(0)
    n = 60
    y = digits.y_train[:n].copy()
    flip = rng.random(n) < 0.5  # noisy labels the big network memorises
    y[flip] = rng.integers(0, 10, flip.sum())
    diag, _ = run(
        mlp(128, 128),
        digits.X_train[:n],
        y,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=3e-3),
        epochs=15,
        batch_size=10,
        validation_data=(digits.X_test[:200], digits.y_test[:200]),
    )
    assert "overfitting" in diag.warnings
    best = int(np.argmin(diag.val_loss))
    assert diag.val_loss[-1] > diag.val_loss[best] and diag.train_loss[-1] < diag.train_loss[best]


def test_nan_is_reported(digits):
    y = np.full(len(digits.y_train), 1e20)  # (p - t)^2 overflows float32: the loss is inf
    # (on raw targets: fit's target scaling would have made them 0)
    diag, history = run(
        mlp(16, out=1), digits.X_train, y, loss="mse", epochs=1, target_scaling=False
    )
    assert "nan" in diag.warnings and "inf" in diag.warnings["nan"]
    assert history.stop_reason == "nan"


def test_each_warning_is_issued_once_with_warnings_warn(digits):
    with pytest.warns(TrainingWarning, match="Learning rate too low") as record:
        diag, history = run(
            mlp(32),
            digits.X_train,
            digits.y_train,
            emit=True,
            loss="cross_entropy",
            optimizer=ln.SGD(lr=1e-8),
            epochs=5,
        )
    assert len([w for w in record if "too low" in str(w.message)]) == 1
    assert sum("too low" in w for w in history.warnings) == 1


def test_records_match_a_manual_step():
    """With full-batch SGD and every=1, the first epoch's numbers are those of one step."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    lr = 0.05
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    diag, _ = run(
        model,
        X,
        y,
        every=1,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=lr),
        epochs=1,
        batch_size=None,
    )
    twin = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    twin.build((6,), seed=np.random.default_rng(0))  # fit builds with its seeded generator
    start = twin.get_weights()
    for k, v in diag.initial_weights.items():
        np.testing.assert_array_equal(start[k], v)
    loss = ln.losses.get("cross_entropy")
    _, grad = loss(twin.forward(X, training=True), y)
    twin.backward(grad)
    g = np.sqrt(np.sum(twin.layers[0].grads["W"] ** 2) + np.sum(twin.layers[0].grads["b"] ** 2))
    w = np.sqrt(np.sum(start["dense_0/W"] ** 2) + np.sum(start["dense_0/b"] ** 2))
    rec = diag.layers["dense_0"]
    assert rec["grad_norm"][0] == pytest.approx(g, rel=1e-5)
    assert rec["update_ratio"][0] == pytest.approx(lr * g / w, rel=1e-4)
    z = X @ start["dense_0/W"] + start["dense_0/b"]
    assert rec["dead_fraction"][0] == pytest.approx(np.mean(~np.any(z > 0, axis=0)))
    assert np.isnan(diag.layers["dense_1"]["dead_fraction"][0])  # no ReLU there


def test_saturation_of_sigmoid_and_tanh():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(32, 4)).astype(np.float32) * 100  # huge inputs saturate every unit
    y = rng.integers(0, 2, size=32)
    model = ln.Sequential([ln.Dense(8, activation="tanh"), ln.Dense(8), ln.Sigmoid(), ln.Dense(2)])
    diag, _ = run(
        model,
        X,
        y,
        every=1,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=1e-4),
        epochs=1,
        batch_size=None,
    )
    assert diag.layers["dense_0"]["saturation"][0] > 0.9
    assert 0.0 <= diag.layers["sigmoid_2"]["saturation"][0] <= 1.0


def test_outputs_and_arguments(digits):
    diag, _ = run(
        mlp(16), digits.X_train[:200], digits.y_train[:200], loss="cross_entropy", epochs=2
    )
    d = json.loads(json.dumps(diag.to_dict()))
    assert d["epochs"] == [0, 1] and set(d["layers"]) == {"dense_0", "dense_1"}
    assert len(d["steps"]) == len(d["step_grad_norms"]["dense_0"])
    assert "dense_0" in diag.to_text()
    with pytest.raises(ValueError, match="every"):
        Diagnostics(every=0)
    with pytest.raises(ValueError, match="dead_threshold"):
        Diagnostics(dead_threshold=2.0)
