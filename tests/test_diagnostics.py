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


# -- regression tests: warnings that fit the run (issue 13) ---------------------------------------


def drive(epochs, val=None, loss="mse", **kwargs):
    """Feed a synthetic run to a Diagnostics callback through its hooks: ``epochs`` is a list
    of per-epoch lists of batch losses, ``val`` the per-epoch validation losses. The model
    (one Dense layer) never changes: only the loss-curve rules can speak."""
    model = ln.Sequential([ln.Dense(1)])
    model.build((2,), seed=0)
    model.history = ln.History()
    diag = Diagnostics(every=10**6, emit=False, **kwargs)
    diag.set_model(model, {"loss": loss})
    diag.on_train_begin()
    for e, batches in enumerate(epochs):
        diag.on_epoch_begin(e)
        for b, value in enumerate(batches):
            so_far = float(np.mean(batches[: b + 1]))
            diag.on_batch_end(b, {"loss_batch": float(value), "loss": so_far})
        logs = {"loss": float(np.mean(batches))}
        if val is not None:
            logs["val_loss"] = float(val[e])
        diag.on_epoch_end(e, logs)
    diag.on_train_end()
    return diag


def falling_curve(n_epochs, steps, start, end, rng, noise=0.05):
    """Batch losses falling geometrically from ``start`` to ``end``, with relative noise."""
    t = np.linspace(0.0, 1.0, n_epochs * steps)
    values = start * (end / start) ** t * (1.0 + noise * rng.standard_normal(t.size))
    return [list(values[i * steps : (i + 1) * steps]) for i in range(n_epochs)]


def lucky_count_regression(n=5000, seed=0):
    """A count regression (Poisson rates exp(-1 + 0.8 x0 - 0.6 x1), mean count about 0.5),
    ordered so that the first batch of 32 (no shuffling) is the 32 rows of lowest rate: an
    easy, "lucky" first batch whose loss is well below that of the batches after it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    rate = np.exp(-1.0 + 0.8 * X[:, 0] - 0.6 * X[:, 1])
    y = rng.poisson(rate).astype(np.float32)
    first = np.argsort(rate)[:32]
    order = np.concatenate([first, rng.permutation(np.setdiff1d(np.arange(n), first))])
    return X[order], y[order]


def test_a_lucky_first_batch_is_not_a_high_learning_rate():
    """The rule used to compare a running average with 1.5x the first batch's loss: on this
    count regression (the CLI's defaults: Adam 1e-3, batch 32, Poisson loss) the loss falls
    every epoch, yet it warned "learning rate too high" because the first batch was easy."""
    X, y = lucky_count_regression()
    model = mlp(32, 16, out=1)
    diag, history = run(
        model, X, y, loss="poisson", optimizer=ln.Adam(lr=1e-3), epochs=4, shuffle=False
    )
    first, following = history.iteration_loss[0], np.median(history.iteration_loss[1:10])
    assert following > 1.5 * first  # the first batch is lucky: what the old rule tripped on
    losses = history.history["loss"]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # the loss falls every epoch
    assert "lr_too_high" not in diag.warnings and diag.warnings == {}


def test_a_lucky_first_batch_in_a_synthetic_curve():
    rng = np.random.default_rng(0)
    epochs = falling_curve(5, 40, 0.425, 0.007, rng)
    epochs[0][0] = 0.05  # one easy first batch, 8x below the others
    assert "lr_too_high" not in drive(epochs).warnings


def test_wiggles_at_the_noise_floor_are_not_a_high_learning_rate():
    """After a near-perfect fit the loss hovers around 1e-4: relative jumps of 3x there are
    noise, not a learning-rate problem (the rise is far below 1% of the starting loss)."""
    rng = np.random.default_rng(1)
    epochs = falling_curve(4, 50, 1.0, 1e-4, rng)
    for e in range(6):  # then six epochs at the floor, each alternately 1x and 3x
        level = 1e-4 * (3.0 if e % 2 else 1.0)
        epochs.append(list(level * rng.uniform(0.5, 3.0, 50)))
    diag = drive(epochs, loss="mse")
    assert diag.warnings == {}
    assert max(diag.train_loss[4:]) > 2.5 * min(diag.train_loss)  # big relative wiggles


@pytest.mark.parametrize("loss", ["mse", "poisson"])
def test_a_real_rise_of_the_loss_is_still_reported(loss):
    """The same driver does warn when the loss climbs back up and stays there (for a loss
    bounded below by 0, and for the Poisson loss, whose values are offset by a constant)."""
    rng = np.random.default_rng(2)
    offset = -0.3 if loss == "poisson" else 0.0
    epochs = [[v + offset for v in e] for e in falling_curve(3, 40, 1.0, 0.05, rng)]
    epochs += [[v + offset for v in e] for e in falling_curve(3, 40, 0.3, 2.0, rng)]
    diag = drive(epochs, loss=loss)
    assert set(diag.warnings) == {"lr_too_high"}
    assert "rising" in diag.warnings["lr_too_high"] or "rose" in diag.warnings["lr_too_high"]


def test_one_high_epoch_with_the_validation_loss_still_improving_is_not_reported():
    """Tips with dropout 0.5 (170 rows, 6 batches per epoch): the epoch training loss went
    2.29, 2.09, 1.80, 1.38, 1.78, 1.46 while the validation loss fell every epoch."""
    train = [2.29, 2.09, 1.80, 1.38, 1.78, 1.46, 1.50, 1.34, 1.22]
    val = [0.474, 0.417, 0.382, 0.363, 0.348, 0.341, 0.340, 0.338, 0.335]
    epochs = [[v] * 6 for v in train]
    assert drive(epochs, val=val).warnings == {}


def test_overfitting_is_judged_on_the_whole_curve():
    """A validation loss that rises for a few epochs and then reaches a new best is not
    overfitting (the old rule warned during the rise), nor one still at its best at the end;
    a clear rise at the end is."""
    train = [[1.0 - 0.05 * e] * 5 for e in range(12)]
    dip = [0.9, 0.8, 0.7, 0.75, 0.8, 0.85, 0.9, 0.7, 0.65, 0.6, 0.58, 0.57]
    assert "overfitting" not in drive(train, val=dip).warnings
    best_at_end = [0.9 - 0.02 * e for e in range(12)]
    assert "overfitting" not in drive(train, val=best_at_end).warnings
    rises = [0.9, 0.8, 0.7, 0.6, 0.62, 0.65, 0.7, 0.74, 0.78, 0.8, 0.83, 0.86]
    diag = drive(train, val=rises)
    assert "overfitting" in diag.warnings and "after epoch 4" in diag.warnings["overfitting"]


def test_overfitting_on_a_poisson_loss_near_zero_or_negative():
    """Poisson losses are offset by a constant of the targets and can be negative: a rise of
    0.001 on -1.495 is not "5% above the best" (the old rule multiplied a negative best by
    1.05 and warned on any rise)."""
    train = [[-1.0 - 0.05 * e] * 5 for e in range(12)]
    flat = [-1.3, -1.45, -1.49, -1.495, -1.494, -1.495, -1.494, -1.4945, -1.494, -1.494]
    flat += [-1.4942, -1.494]
    assert "overfitting" not in drive(train, val=flat, loss="poisson").warnings
    rises = [-1.3, -1.45, -1.49, -1.5, -1.48, -1.46, -1.44, -1.42, -1.4, -1.38, -1.36, -1.34]
    assert "overfitting" in drive(train, val=rises, loss="poisson").warnings


def noisy_digits(digits, n=60):
    rng = np.random.default_rng(0)
    y = digits.y_train[:n].copy()
    flip = rng.random(n) < 0.5  # noisy labels the big network memorises
    y[flip] = rng.integers(0, 10, flip.sum())
    return digits.X_train[:n], y


@pytest.mark.parametrize("diagnostics_first", [False, True], ids=["after", "before"])
def test_overfitting_advice_says_what_was_done_and_what_is_left(digits, diagnostics_first):
    """The CLI restores the best epoch and may use dropout: the advice must not tell it to do
    either again. Whichever order the callbacks come in, the restored epoch is known."""
    X, y = noisy_digits(digits)
    model = ln.Sequential(
        [ln.Dense(128, activation="relu"), ln.Dense(128, activation="relu"), ln.Dropout(0.5)]
        + [ln.Dense(10)]
    )
    stopper = ln.callbacks.EarlyStopping(patience=8, restore_best_weights=True)
    diag = Diagnostics(emit=False)
    callbacks = [diag, stopper] if diagnostics_first else [stopper, diag]
    model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=3e-3),
        epochs=30,
        batch_size=10,
        validation_data=(digits.X_test[:200], digits.y_test[:200]),
        callbacks=callbacks,
        verbose=0,
        seed=0,
    )
    message = diag.warnings["overfitting"]
    best = stopper.best_epoch
    assert stopper.restored_epoch == best is not None
    assert f"the best epoch ({best + 1}) was restored" in message
    assert "already uses dropout 0.5" in message
    left = message.split("What is left to try:")[1]
    assert "more data" in left and "smaller network" in left and "weight decay" in left
    assert "EarlyStopping" not in message and "Dropout" not in left
    ctx = diag.to_dict()["context"]
    assert ctx["restored_epoch"] == best and ctx["dropout"] == [0.5]
    assert ctx["early_stopping"]["restore_best_weights"] is True
    assert model.history.params["early_stopping"]["restored_epoch"] == best
    assert "the run: early stopping restored epoch" in diag.to_text()


def test_overfitting_advice_without_early_stopping_names_it(digits):
    X, y = noisy_digits(digits)
    model = ln.Sequential(
        [ln.Dense(128, activation="relu", l2=1e-5), ln.Dense(128, activation="relu")]
        + [ln.Dense(10)]
    )
    diag, _ = run(
        model,
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=3e-3),
        epochs=15,
        batch_size=10,
        validation_data=(digits.X_test[:200], digits.y_test[:200]),
    )
    message = diag.warnings["overfitting"]
    assert "EarlyStopping(restore_best_weights=True)" in message
    assert "already uses L2 1e-05" in message and "Dropout" in message.split("left")[1]


def test_context_is_read_from_the_model_the_optimizer_and_the_run(digits):
    model = ln.Sequential(
        [ln.Dense(16), ln.BatchNorm(), ln.ReLU(), ln.Dropout(0.2), ln.Dense(16, l1=1e-4)]
        + [ln.Dropout(0.3), ln.Dense(10)]
    )
    plateau = ln.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=10.0)
    opt = ln.Adam(lr=1e-3, weight_decay=1e-4, clip_norm=2.0)
    diag = Diagnostics(emit=False, context={"note": "given by the caller"})
    X, y = digits.X_train[:200], digits.y_train[:200]
    model.fit(X, y, loss="cross_entropy", optimizer=opt, epochs=3, callbacks=[plateau, diag])
    ctx = diag.run_context
    assert ctx["dropout"] == [0.2, 0.3] and ctx["batch_norm"] is True
    assert ctx["l1"] == 1e-4 and ctx["l2"] == 0.0 and ctx["weight_decay"] == 1e-4
    assert ctx["clip_norm"] == 2.0 and ctx["lr_schedule"] is None
    assert ctx["lr_range"][0] == 1e-3 and ctx["lr_range"][1] < 1e-3  # lowered by the plateau
    assert ctx["early_stopping"] is None and ctx["restored_epoch"] is None
    assert ctx["note"] == "given by the caller"
    assert json.loads(json.dumps(diag.to_dict()))["context"]["dropout"] == [0.2, 0.3]
    scheduled = ln.Adam(lr=ln.schedules.CosineDecay(1e-3, 10))
    model.fit(X, y, loss="cross_entropy", optimizer=scheduled, epochs=1, callbacks=[diag])
    assert diag.run_context["lr_schedule"] == "CosineDecay"
    with pytest.raises(TypeError, match="context"):
        Diagnostics(context=["dropout"])


def test_learning_rate_advice_fits_the_optimizer(digits):
    """An optimizer that already clips its gradients is not told to clip them (Adam's steps
    are about lr in size whatever the gradient's norm: lr=1 is still far too high)."""
    optimizer = ln.Adam(lr=1.0, clip_norm=1.0)
    diag, _ = run(
        mlp(64), digits.X_train, digits.y_train, loss="cross_entropy", optimizer=optimizer, epochs=2
    )
    message = diag.warnings["lr_too_high"]
    assert "already clips the gradients: clip_norm=1" in message
    assert "clip the gradients (clip_norm=1.0)" not in message
    scheduled = ln.SGD(lr=ln.schedules.ExponentialDecay(10.0, 0.5))
    diag, _ = run(
        mlp(64), digits.X_train, digits.y_train, loss="cross_entropy", optimizer=scheduled, epochs=1
    )
    assert "divide the schedule's learning rate by 10" in diag.warnings["lr_too_high"]


def test_overfitting_advice_with_early_stopping_that_does_not_restore():
    """What EarlyStopping publishes can also be given as context=: stopping without restoring
    the best epoch leaves the restoring to do."""
    train = [[1.0 - 0.05 * e] * 5 for e in range(12)]
    rises = [0.9, 0.8, 0.7, 0.6, 0.62, 0.65, 0.7, 0.74, 0.78, 0.8, 0.83, 0.86]
    stopper = {"monitor": "val_loss", "patience": 8, "restore_best_weights": False}
    diag = drive(train, val=rises, context={"early_stopping": stopper})
    left = diag.warnings["overfitting"].split("What is left to try:")[1]
    assert "restoring the best epoch (4" in left and "restore_best_weights=True" in left
    assert "Done:" not in diag.warnings["overfitting"]
    assert diag.to_dict()["context"]["early_stopping"] == stopper


def _large_counts(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    return X, rng.poisson(np.exp(8.0 + 0.4 * X[:, 0] - 0.3 * X[:, 1])).astype(np.float64)


def test_poisson_gradients_in_the_targets_units_are_not_exploding():
    """Counts in the thousands (prices in dollars): the Poisson gradient e^z - t is that large
    from the first step on, while training goes well; only growth counts as exploding."""
    X, y = _large_counts()
    diag, history = run(mlp(16, out=1), X, y, loss="poisson", epochs=4, batch_size=32)
    assert max(max(v) for v in diag.step_grad_norms.values()) > 1e3  # large, by its units
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "exploding_gradients" not in diag.warnings


def test_a_diverging_poisson_run_is_still_named():
    X, y = _large_counts(400)
    diag, _ = run(
        mlp(16, out=1), X, y, loss="poisson", optimizer=ln.SGD(lr=0.05), epochs=2, batch_size=32
    )
    assert {"exploding_gradients", "nan", "lr_too_high"} & set(diag.warnings), diag.warnings
