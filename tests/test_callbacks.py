"""Tests for lucidnet.callbacks: EarlyStopping (stopping and restoring the best weights),
ModelCheckpoint (never overwriting by accident), ReduceLROnPlateau, NaNGuard, interruption by
KeyboardInterrupt, the hook order, progress output and the History record."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.callbacks import weights_equal


@pytest.fixture(scope="module")
def noisy():
    """A small noisy binary problem on which a wide network overfits within a few epochs."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 10)).astype(np.float32)
    y = (X[:, 0] + 0.8 * rng.standard_normal(120) > 0).astype(np.int64)
    Xv = rng.standard_normal((200, 10)).astype(np.float32)
    yv = (Xv[:, 0] + 0.8 * rng.standard_normal(200) > 0).astype(np.int64)
    return X, y, Xv, yv


class WeightRecorder(ln.Callback):
    """Keeps a copy of the weights at the end of every epoch."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs):
        self.weights.append(self.model.get_weights())


def _wide():
    return ln.Sequential([ln.Dense(64, activation="relu"), ln.Dense(2)])


def _fit(model, data, **kwargs):
    X, y, Xv, yv = data
    defaults = dict(
        loss="cross_entropy",
        optimizer=ln.Adam(lr=0.01),
        epochs=60,
        batch_size=32,
        validation_data=(Xv, yv),
        seed=0,
        verbose=0,
    )
    defaults.update(kwargs)
    return model.fit(X, y, **defaults)


# -- EarlyStopping ----------------------------------------------------------------------------
def test_early_stopping_stops_and_restores_the_best_weights(noisy):
    rec = WeightRecorder()
    stop = ln.EarlyStopping(patience=3, restore_best_weights=True)
    model = _wide()
    h = _fit(model, noisy, callbacks=[rec, stop])
    val = h["val_loss"]
    best = int(np.argmin(val))
    assert h.stop_reason == "early_stopping"
    assert h.best_epoch == stop.best_epoch == best
    assert len(h.epoch) == best + 3 + 1 < 60  # stopped `patience` epochs after the best
    assert h.stopped_epoch == len(h.epoch) - 1
    assert min(val[best + 1 :]) >= val[best]
    # the model holds exactly the weights of the best epoch, not those of the last one
    assert weights_equal(model.get_weights(), rec.weights[best])
    assert not weights_equal(model.get_weights(), rec.weights[-1])
    assert model.evaluate(*noisy[2:])["loss"] == pytest.approx(val[best], rel=1e-9)


def test_early_stopping_without_restore_keeps_the_last_weights(noisy):
    rec = WeightRecorder()
    model = _wide()
    h = _fit(model, noisy, callbacks=[rec, ln.EarlyStopping(patience=3)])
    assert h.stop_reason == "early_stopping"
    assert weights_equal(model.get_weights(), rec.weights[-1])


def test_early_stopping_on_accuracy_uses_max_mode_and_min_delta(noisy):
    stop = ln.EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.5)
    assert stop.mode == "max"
    h = _fit(_wide(), noisy, callbacks=[stop])
    # no epoch can improve accuracy by 0.5 after the first one
    assert h.best_epoch == 0 and len(h.epoch) == 3


def test_early_stopping_start_from_epoch(noisy):
    stop = ln.EarlyStopping(monitor="loss", patience=1, min_delta=1e9, start_from_epoch=4)
    h = _fit(_wide(), noisy, callbacks=[stop])
    assert h.best_epoch == 4 and len(h.epoch) == 6


def test_early_stopping_on_a_missing_key_explains(noisy):
    X, y, _, _ = noisy
    with pytest.raises(ValueError, match="val_loss.*validation_split or validation_data"):
        _wide().fit(X, y, loss="cross_entropy", epochs=2, callbacks=[ln.EarlyStopping()], verbose=0)


# -- ModelCheckpoint --------------------------------------------------------------------------
def test_model_checkpoint_refuses_to_overwrite_before_training(noisy, tmp_path):
    path = tmp_path / "best.lnet"
    path.write_bytes(b"precious")
    model = _wide()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _fit(model, noisy, epochs=2, callbacks=[ln.ModelCheckpoint(path)])
    assert path.read_bytes() == b"precious"
    assert model.history.epoch == [] and model.history.iteration_loss == []  # before any step


def test_model_checkpoint_saves_the_best_model(noisy, tmp_path):
    path = tmp_path / "best.lnet"
    path.write_bytes(b"old")
    ckpt = ln.ModelCheckpoint(path, overwrite=True)
    h = _fit(_wide(), noisy, epochs=10, callbacks=[ckpt])
    val = h["val_loss"]
    improving = [e for e in range(len(val)) if val[e] < min(val[:e], default=math.inf)]
    assert ckpt.saved_epochs == improving
    best = ln.load(path)
    assert best.evaluate(*noisy[2:])["loss"] == pytest.approx(min(val), rel=1e-9)


def test_model_checkpoint_every_epoch(noisy, tmp_path):
    path = tmp_path / "last.lnet"
    rec = WeightRecorder()
    ckpt = ln.ModelCheckpoint(path, save_best_only=False)
    _fit(_wide(), noisy, epochs=4, callbacks=[rec, ckpt])
    assert ckpt.saved_epochs == [0, 1, 2, 3]
    assert weights_equal(ln.load(path).get_weights(), rec.weights[-1])


# -- ReduceLROnPlateau ------------------------------------------------------------------------
def test_reduce_lr_on_plateau_reduces_on_a_real_plateau(noisy):
    cb = ln.ReduceLROnPlateau(factor=0.5, patience=2)
    h = _fit(_wide(), noisy, epochs=15, callbacks=[cb])
    assert cb.reductions, "the validation loss of this overfitting run plateaus"
    first_epoch, first_lr = cb.reductions[0]
    assert first_lr == pytest.approx(0.005)
    assert h["lr"][first_epoch + 1] == pytest.approx(0.005)
    assert all(lr == pytest.approx(0.01) for lr in h["lr"][: first_epoch + 1])


# -- NaNGuard ---------------------------------------------------------------------------------
def _diverging_fit(**kwargs):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    model = ln.Sequential([ln.Dense(16, activation="relu"), ln.Dense(1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow warnings
        with pytest.warns(RuntimeWarning, match="training stopped") as record:
            h = model.fit(
                X * 1000,
                y,
                loss="mse",
                optimizer=ln.SGD(lr=1e6),
                epochs=5,
                seed=0,
                verbose=0,
                **kwargs,
            )
    return model, h, X, [str(w.message) for w in record if "training stopped" in str(w.message)]


def test_nan_guard_stops_with_an_explanation_and_keeps_finite_weights():
    model, h, X, messages = _diverging_fit()
    assert h.stop_reason == "nan"
    assert len(h.epoch) == 0 and h.stopped_epoch == 0  # it diverged in the first epoch
    msg = messages[0]
    assert "epoch 1" in msg and "batch " in msg
    assert "learning rate (1e+06) is probably too high" in msg
    assert "standardise" in msg  # the inputs were multiplied by 1000
    assert msg in h.warnings
    assert all(np.isfinite(w).all() for w in model.get_weights().values())
    assert np.isfinite(model.predict(X)).all()


def test_nan_guard_input_range_only_for_float_inputs():
    from lucidnet.callbacks import _abs_max

    assert _abs_max(np.array([[1.0, -250.0], [3.0, 2.0]])) == 250.0  # the negative side counts
    assert _abs_max(np.array([[1, 2]], dtype=np.int64)) is None  # token ids have no "scale"
    assert _abs_max(np.empty((0, 3))) is None
    assert _abs_max(None) is None


def test_nan_guard_is_added_once(noisy):
    guard = ln.NaNGuard()
    model, h, _, messages = _diverging_fit(callbacks=[guard])
    assert len(messages) == 1 and guard.message == messages[0]


# -- KeyboardInterrupt ------------------------------------------------------------------------
class InterruptAt(ln.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_keyboard_interrupt_stops_cleanly(noisy, capsys):
    X = noisy[0]
    stop = ln.EarlyStopping(patience=50, restore_best_weights=True)
    model = _wide()
    h = _fit(model, noisy, epochs=10, callbacks=[InterruptAt(1, 2), stop])
    assert h.stop_reason == "interrupted"
    assert len(h.epoch) == 1 and len(h["loss"]) == 1
    assert len(h.iteration_loss) == 4 + 3  # one full epoch of 4 batches, then 3 batches
    assert "interrupted" in capsys.readouterr().err
    assert any("interrupted" in w for w in h.warnings)
    # on_train_end still ran: the best (only) epoch's weights were restored
    assert stop.best_epoch == 0
    proba = model.predict(X)
    assert proba.shape == (120, 2) and np.isfinite(proba).all()
    # and training can go on
    h2 = _fit(model, noisy, epochs=1)
    assert h2.stop_reason is None and len(h2.epoch) == 1


# -- hooks, progress output, History ----------------------------------------------------------
class Events(ln.Callback):
    def on_train_begin(self, logs=None):
        self.events = ["train_begin"]

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_batch_end(self, batch, logs):
        self.events.append(f"batch {batch}")
        assert {"loss", "batch_size"} <= set(logs)

    def on_epoch_end(self, epoch, logs):
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_hook_order_and_logs(noisy):
    X, y, _, _ = noisy
    ev = Events()
    _wide().fit(X, y, loss="cross_entropy", epochs=2, batch_size=60, callbacks=[ev], verbose=0)
    keys = "['accuracy', 'loss', 'lr']"
    assert ev.events == [
        "train_begin",
        "epoch_begin 0",
        "batch 0",
        "batch 1",
        f"epoch_end 0 {keys}",
        "epoch_begin 1",
        "batch 0",
        "batch 1",
        f"epoch_end 1 {keys}",
        "train_end",
    ]


def test_history_contents(blobs):
    X, y = blobs
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    h = model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.SGD(lr=0.05),
        epochs=4,
        batch_size=50,
        validation_split=0.2,
        seed=0,
        verbose=0,
    )
    assert model.history is h
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 4 for v in h.history.values())
    assert h.epoch == [0, 1, 2, 3]
    n_train = 240 - 48
    steps = math.ceil(n_train / 50)
    assert h.params["steps"] == steps and h.params["samples"] == n_train
    assert h.params["validation_samples"] == 48
    assert len(h.iteration_loss) == 4 * steps
    assert h["lr"] == [0.05] * 4
    # the epoch loss is the sample-weighted mean of its mini-batch losses
    sizes = [50] * (steps - 1) + [n_train - 50 * (steps - 1)]
    for e in range(4):
        batch_losses = h.iteration_loss[e * steps : (e + 1) * steps]
        assert h["loss"][e] == pytest.approx(np.dot(batch_losses, sizes) / n_train, rel=1e-12)
    assert all(0 <= a <= 1 for a in h["accuracy"] + h["val_accuracy"])
    assert h["val_loss"][-1] == pytest.approx(model.evaluate(X, y)["loss"], rel=0.5)
    # JSON round trip
    data = json.loads(json.dumps(h.to_dict()))
    h2 = ln.History.from_dict(data)
    assert h2.history == h.history and h2.iteration_loss == h.iteration_loss
    assert h2.params == h.params and "loss" in h2
    with pytest.raises(KeyError, match="available: loss"):
        h["val_f1"]
    assert "epochs=4" in repr(h)


def test_extra_metrics_in_history(blobs):
    X, y = blobs
    model = ln.Sequential([ln.Dense(3)])
    h = model.fit(
        X,
        y,
        loss="cross_entropy",
        epochs=2,
        metrics=["f1", "precision"],
        validation_split=0.25,
        seed=0,
        verbose=0,
    )
    assert {"f1", "precision", "val_f1", "val_precision"} <= set(h.history)


def test_progress_output(blobs, capsys):
    X, y = blobs
    model = ln.Sequential([ln.Dense(3)])
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch   1/2") and "loss=" in lines[0]
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=1)
    assert "epoch 1/1" in capsys.readouterr().err  # tqdm bar on stderr


def test_callback_arguments_are_validated():
    with pytest.raises(ValueError, match="mode"):
        ln.EarlyStopping(mode="up")
    with pytest.raises(TypeError, match="patience"):
        ln.EarlyStopping(patience=1.5)
    with pytest.raises(ValueError, match="factor"):
        ln.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(TypeError, match="callbacks"):
        ln.Sequential([ln.Dense(1)]).fit(
            np.zeros((4, 2)), np.zeros(4), loss="mse", callbacks=[print]
        )
