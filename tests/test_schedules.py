"""Tests for lucidnet.schedules: values at chosen steps against the formulas, ``unit="epoch"``,
a schedule as an optimizer's learning rate inside ``fit``, and ReduceLROnPlateau as a callback."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lucidnet as ln
from lucidnet import schedules

STEPS = [0, 1, 2, 5, 9, 10, 11, 25, 99, 100, 1000]


def test_constant():
    s = ln.Constant(0.3)
    assert [s(t) for t in STEPS] == [0.3] * len(STEPS)


def test_step_decay_matches_formula():
    s = ln.StepDecay(0.1, step_size=10, gamma=0.5)
    for t in STEPS:
        assert s(t) == pytest.approx(0.1 * 0.5 ** math.floor(t / 10), rel=1e-15)
    assert [s(t) for t in (9, 10, 19, 20)] == pytest.approx([0.1, 0.05, 0.05, 0.025])


def test_exponential_decay_matches_formula():
    s = ln.ExponentialDecay(0.01, decay_rate=0.9, decay_steps=7)
    for t in STEPS:
        assert s(t) == pytest.approx(0.01 * 0.9 ** (t / 7), rel=1e-14)


def test_cosine_decay_with_warmup_matches_formula():
    lr, warm, decay, alpha = 0.2, 5, 50, 0.1
    s = ln.CosineDecay(lr, decay_steps=decay, alpha=alpha, warmup_steps=warm)
    for t in STEPS:
        if t < warm:
            expected = lr * (t + 1) / warm
        else:
            u = min(t - warm, decay) / decay
            expected = lr * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * u)))
        assert s(t) == pytest.approx(expected, rel=1e-14), t
    assert s(warm - 1) == pytest.approx(lr)  # warm-up ends at the full rate
    assert s(warm) == pytest.approx(lr)  # then the decay starts from it
    assert s(warm + decay // 2) == pytest.approx(lr * (alpha + (1 - alpha) / 2))
    assert s(warm + decay) == pytest.approx(alpha * lr)
    assert s(10**6) == pytest.approx(alpha * lr)  # and stays at the floor


def test_unit_epoch_advances_once_per_epoch():
    s = ln.StepDecay(1.0, step_size=2, gamma=0.1, unit="epoch")
    steps_per_epoch = 5
    values = [s(step, steps_per_epoch) for step in range(25)]
    epochs = [step // steps_per_epoch for step in range(25)]
    assert values == pytest.approx([0.1 ** (e // 2) for e in epochs])
    # unit="step" ignores steps_per_epoch
    assert ln.StepDecay(1.0, 2, 0.1)(4, steps_per_epoch) == pytest.approx(0.01)


def test_schedule_as_adam_lr_in_fit_is_logged_per_epoch(blobs):
    X, y = blobs
    sched = ln.StepDecay(0.01, step_size=2, gamma=0.5, unit="epoch")
    opt = ln.Adam(lr=sched)
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    h = model.fit(
        X, y, loss="cross_entropy", optimizer=opt, epochs=5, batch_size=60, seed=0, verbose=0
    )
    assert h["lr"] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])
    assert opt.iterations == 5 * 4
    assert opt.current_lr == pytest.approx(0.0025)  # next: epoch 5 (0-based), 0.01 * 0.5^2
    # a per-step schedule: lr of each epoch's first update
    opt2 = ln.Adam(lr=ln.ExponentialDecay(0.01, 0.5, decay_steps=4))
    model2 = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    h2 = model2.fit(
        X, y, loss="cross_entropy", optimizer=opt2, epochs=3, batch_size=60, seed=0, verbose=0
    )
    assert h2["lr"] == pytest.approx([0.01, 0.005, 0.0025])


def test_schedule_drives_the_update_size():
    """The same gradients with a decayed rate move the weights less."""
    layer = ln.Dense(1, use_bias=False)
    model = ln.Sequential([layer], dtype="float64")
    model.build((1,), seed=0)
    opt = ln.SGD(lr=ln.StepDecay(1.0, step_size=1, gamma=0.5))
    moves = []
    for _ in range(4):
        before = layer.params["W"].copy()
        model.zero_grad()
        layer.grads["W"][...] = 1.0
        opt.step(model)
        moves.append(float((before - layer.params["W"])[0, 0]))
    assert moves == pytest.approx([1.0, 0.5, 0.25, 0.125])


def test_reduce_lr_on_plateau_as_callback(blobs):
    X, y = blobs
    # monitoring "loss" with an unreachable min_delta: every epoch after the first is a plateau
    cb = ln.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9, min_lr=0.01)
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    h = model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=0.1),
        epochs=6,
        callbacks=[cb],
        seed=0,
        verbose=0,
    )
    assert h["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125, 0.01])
    assert model.optimizer.lr == pytest.approx(0.01)  # floored at min_lr
    assert [e for e, _ in cb.reductions] == [1, 2, 3, 4]


def test_reduce_lr_on_plateau_waits_for_patience_and_cooldown(blobs):
    X, y = blobs
    cb = ln.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=2, cooldown=1, min_delta=1e9)
    model = ln.Sequential([ln.Dense(3)])
    h = model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=1.0),
        epochs=8,
        callbacks=[cb],
        seed=0,
        verbose=0,
    )
    # epoch 0 sets the best; plateaus at 1, 2 -> reduce after epoch 2; cooldown epoch 3;
    # plateaus at 4, 5 -> reduce after epoch 5
    assert [e for e, _ in cb.reductions] == [2, 5]
    assert h["lr"] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_reduce_lr_on_plateau_does_not_reduce_while_improving(blobs):
    X, y = blobs
    cb = ln.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=0.0)
    model = ln.Sequential([ln.Dense(3)])
    model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=0.05),
        epochs=5,
        callbacks=[cb],
        seed=0,
        verbose=0,
    )
    assert cb.reductions == []
    assert model.optimizer.lr == 0.05


def test_reduce_lr_on_plateau_refuses_a_schedule(blobs):
    X, y = blobs
    model = ln.Sequential([ln.Dense(3)])
    with pytest.raises(ValueError, match="schedule"):
        model.fit(
            X,
            y,
            loss="cross_entropy",
            optimizer=ln.SGD(lr=ln.Constant(0.1)),
            epochs=1,
            callbacks=[ln.ReduceLROnPlateau(monitor="loss")],
            verbose=0,
        )


def test_validation_names_the_argument():
    with pytest.raises(ValueError, match="lr"):
        ln.Constant(0.0)
    with pytest.raises(TypeError, match="lr"):
        ln.Constant("0.1")
    with pytest.raises(ValueError, match="step_size"):
        ln.StepDecay(0.1, step_size=0)
    with pytest.raises(ValueError, match="unit"):
        ln.StepDecay(0.1, 2, unit="batch")
    with pytest.raises(ValueError, match="alpha"):
        ln.CosineDecay(0.1, 10, alpha=1.5)
    with pytest.raises(ValueError, match="decay_rate"):
        ln.ExponentialDecay(0.1, decay_rate=0.0)
    with pytest.raises(ValueError, match="unknown schedule 'linear'.*cosine"):
        schedules.get("linear")


@pytest.mark.parametrize(
    "sched",
    [
        ln.Constant(0.1),
        ln.StepDecay(0.1, 3, 0.5, unit="epoch"),
        ln.ExponentialDecay(0.1, 0.9, 4),
        ln.CosineDecay(0.1, 100, alpha=0.05, warmup_steps=10),
    ],
)
def test_config_round_trip(sched):
    clone = schedules.from_config({"class": type(sched).__name__, **sched.get_config()})
    assert type(clone) is type(sched)
    assert [clone(t, 3) for t in STEPS] == [sched(t, 3) for t in STEPS]
    assert schedules.get(sched) is sched
    assert np.isfinite(sched(10**9))
