"""Tests of lucidnet.lr_finder: the suggestion trains digits well, the model is left untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.callbacks import weights_equal
from lucidnet.glassbox.lr_finder import find_learning_rate, suggest_learning_rate


@pytest.fixture(scope="module")
def digits():
    return ln.datasets.load_digits()


def digits_model(seed=0, dropout=0.0):
    layers = [ln.Dense(64, activation="relu")]
    if dropout:
        layers.append(ln.Dropout(dropout))
    model = ln.Sequential(layers + [ln.Dense(10)])
    model.build((64,), seed=seed)
    return model


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_suggestion_trains_digits(digits, optimizer):
    model = digits_model()
    result = find_learning_rate(
        model, digits.X_train, digits.y_train, loss="cross_entropy", optimizer=optimizer
    )
    limits = (1e-4, 1e-1) if optimizer == "adam" else (1e-3, 1.0)
    assert limits[0] <= result.suggestion <= limits[1], result.to_text()
    assert result.suggestion <= result.min_loss_lr
    history = model.fit(
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        optimizer=ln.optimizers.get(optimizer, lr=result.suggestion),
        epochs=5,
        validation_split=0.2,
        seed=0,
        verbose=0,
    )
    assert history.history["val_accuracy"][-1] > 0.9


def test_model_is_left_unchanged_bit_for_bit(digits):
    model = digits_model(dropout=0.2)
    model.fit(
        digits.X_train[:200],
        digits.y_train[:200],
        loss="cross_entropy",
        epochs=1,
        seed=0,
        verbose=0,
    )
    weights = model.get_weights()
    opt_state = model.optimizer.state_dict()
    rng_state = model.layers[1].rng.bit_generator.state
    find_learning_rate(model, digits.X_train, digits.y_train, num_steps=50)
    assert weights_equal(model.get_weights(), weights)
    assert model.layers[1].rng.bit_generator.state == rng_state
    new_state = model.optimizer.state_dict()
    assert new_state["iterations"] == opt_state["iterations"]
    for slot, arrays in opt_state["slots"].items():
        for name, arr in arrays.items():
            np.testing.assert_array_equal(new_state["slots"][slot][name], arr)


def test_stops_when_the_loss_diverges(digits):
    result = find_learning_rate(
        digits_model(),
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        max_lr=100.0,
        num_steps=150,
    )
    assert result.stopped_early and len(result.lrs) < 150
    last = result.smoothed[-1]
    assert not np.isfinite(last) or last > 4 * np.nanmin(result.smoothed[:-1])
    # the sweep is geometric from min_lr
    ratios = result.lrs[1:] / result.lrs[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
    assert result.lrs[0] == pytest.approx(1e-7)


def test_smoothing_is_a_bias_corrected_moving_average(digits):
    result = find_learning_rate(
        digits_model(),
        digits.X_train,
        digits.y_train,
        loss="cross_entropy",
        num_steps=30,
        max_lr=1e-2,
        smoothing=0.9,
    )
    avg, expect = 0.0, []
    for i, v in enumerate(result.losses):
        avg = 0.9 * avg + 0.1 * v
        expect.append(avg / (1 - 0.9 ** (i + 1)))
    np.testing.assert_allclose(result.smoothed, expect, rtol=1e-12)


def test_rule_on_a_synthetic_curve():
    lrs = np.geomspace(1e-6, 1.0, 121)
    x = np.log10(lrs)
    # a descent centred at 1e-3 (steepest there), then a rise from 0.1 on
    curve = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 5, 0)
    suggestion, steep, at_min = suggest_learning_rate(lrs, curve)
    assert steep == pytest.approx(1e-3, rel=0.3)
    assert 0.05 < at_min < 0.2
    assert suggestion == pytest.approx(np.sqrt(steep * at_min / 10), rel=1e-9)
    with pytest.raises(ValueError, match="fewer than 3"):
        suggest_learning_rate(lrs[:2], curve[:2])


def test_reproducible_and_outputs(digits, tmp_path):
    kwargs = dict(loss="cross_entropy", num_steps=40, seed=5)
    a = find_learning_rate(digits_model(), digits.X_train, digits.y_train, **kwargs)
    b = find_learning_rate(digits_model(), digits.X_train, digits.y_train, **kwargs)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert a.suggestion == b.suggestion
    text = a.to_text()
    assert f"{a.suggestion:.3g}" in text and "rule:" in text
    d = json.loads(json.dumps(a.to_dict()))
    assert d["suggestion"] == a.suggestion and len(d["lrs"]) == len(a.lrs)
    fig = a.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.axes[0].get_xscale() == "log"


def test_argument_errors(digits):
    model = digits_model()
    X, y = digits.X_train, digits.y_train
    with pytest.raises(ValueError, match="max_lr"):
        find_learning_rate(model, X, y, loss="cross_entropy", min_lr=1.0, max_lr=0.1)
    with pytest.raises(TypeError, match="optimizer"):
        find_learning_rate(model, X, y, loss="cross_entropy", optimizer=3)
    with pytest.raises(ValueError, match="num_steps"):
        find_learning_rate(model, X, y, loss="cross_entropy", num_steps=5)
    with pytest.raises(ValueError, match="needs a loss"):
        find_learning_rate(model, X, y)


def test_each_step_is_one_fast_train_step(digits, monkeypatch):
    from lucidnet.glassbox import lr_finder

    calls = []
    real_train_step = lr_finder.train_step

    def spy(model, xb, yb, loss, optimizer, sample_weight=None, *, fast=True):
        calls.append((xb.shape[0], optimizer.lr, fast))
        return real_train_step(model, xb, yb, loss, optimizer, sample_weight, fast=fast)

    monkeypatch.setattr(lr_finder, "train_step", spy)
    result = find_learning_rate(
        digits_model(), digits.X_train, digits.y_train, loss="cross_entropy", num_steps=20
    )
    assert [c[1] for c in calls] == list(result.lrs)
    assert all(c[0] == 32 and c[2] for c in calls)


def test_dropout_masks_follow_the_seed_not_the_model_stream(digits):
    a = digits_model(dropout=0.3)
    b = a.copy()
    b.layers[1].rng.random(1000)  # advance the copy's dropout stream
    kwargs = dict(loss="cross_entropy", num_steps=20, seed=7)
    ra = find_learning_rate(a, digits.X_train, digits.y_train, **kwargs)
    rb = find_learning_rate(b, digits.X_train, digits.y_train, **kwargs)
    np.testing.assert_array_equal(ra.losses, rb.losses)
    rc = find_learning_rate(a, digits.X_train, digits.y_train, **{**kwargs, "seed": 8})
    assert not np.array_equal(ra.losses, rc.losses)
