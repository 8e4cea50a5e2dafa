"""fit on batch sources (lucidnet/sources.py): the same model as arrays, checks, callbacks."""

from __future__ import annotations

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.callbacks import EarlyStopping
from lucidnet.sources import ArraySource, as_source, is_source


def _data(n: int = 200, task: str = "classification", seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    if task == "classification":
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    else:
        y = (3.0 * X[:, 0] - X[:, 2] + 10.0).astype(np.float32)
    return X, y


def _model(out: int = 2, batch_norm: bool = False):
    layers = [ln.Dense(8, activation="relu")]
    if batch_norm:
        layers.append(ln.BatchNorm())
    return ln.Sequential([*layers, ln.Dense(out)])


def _in_order(X, y, bs):
    return [(X[i : i + bs], y[i : i + bs]) for i in range(0, len(X), bs)]


def _weights(model):
    return [v.copy() for _, v in sorted(model.get_weights().items())]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_list_of_batches_trains_the_same_model_as_the_arrays_in_order(task):
    X, y = _data(task=task)
    loss = "cross_entropy" if task == "classification" else "mse"
    a, b = _model(2 if task == "classification" else 1), None
    a.fit(X, y, loss=loss, epochs=3, batch_size=32, shuffle=False, seed=1, verbose=0)
    b = _model(2 if task == "classification" else 1)
    hist = b.fit(_in_order(X, y, 32), loss=loss, epochs=3, seed=1, verbose=0)
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert hist.params["samples"] == 200 and len(hist.epoch) == 3
    assert hist.params["steps"] == 7
    np.testing.assert_allclose(hist["loss"], a.history["loss"], rtol=1e-5)


def test_array_source_shuffles_with_the_runs_generator():
    X, y = _data(50)
    src = ArraySource(X, y, None, batch_size=16, shuffle=True)
    first = np.concatenate([b[1] for b in src.batches(0, np.random.default_rng(3))])
    order = np.random.default_rng(3).permutation(50)
    np.testing.assert_array_equal(first, y[order])
    assert src.n_batches == 4
    folded = ArraySource(X, y, None, batch_size=49, shuffle=False, fold_last=True)
    assert [len(b[0]) for b in folded.batches(0, np.random.default_rng(0))] == [50]


class _Shuffled:
    """A source object: batches of 20 rows in an order drawn from the run's generator."""

    def __init__(self, X, y):
        self.X, self.y, self.n_rows, self.batch_size = X, y, len(X), 20
        self.epochs_seen: list[int] = []

    def batches(self, epoch, rng):
        self.epochs_seen.append(epoch)
        order = rng.permutation(len(self.X))
        for i in range(0, len(order), 20):
            yield self.X[order[i : i + 20]], self.y[order[i : i + 20]]


def test_a_source_object_with_validation_data_and_early_stopping():
    X, y = _data(300)
    src = _Shuffled(X[:240], y[:240])
    stopper = EarlyStopping("val_loss", patience=1, min_delta=10.0)  # stops after 2 epochs
    model = _model()
    hist = model.fit(
        src, loss="cross_entropy", validation_data=(X[240:], y[240:]), epochs=20, seed=0,
        callbacks=[stopper], verbose=0, metrics=["f1"],
    )  # fmt: skip
    assert src.epochs_seen[1:] == list(range(len(hist.epoch)))  # [0] is the model-building peek
    assert len(hist.epoch) == 2 and hist.stop_reason == "early_stopping"
    assert "val_loss" in hist.history and "val_f1" in hist.history
    assert "f1" not in hist.history  # training-set metrics need the rows in memory
    assert hist.params["samples"] == 240 and hist.params["batch_size"] == 20
    # the same seed gives the same run
    again = _model().fit(
        _Shuffled(X[:240], y[:240]), loss="cross_entropy", epochs=2, seed=0, verbose=0
    )
    np.testing.assert_allclose(again["loss"], hist["loss"], rtol=1e-6)


def test_an_iterator_serves_one_epoch_and_a_function_many():
    X, y = _data()
    gen = (b for b in _in_order(X, y, 50))
    hist = _model().fit(gen, loss="cross_entropy", epochs=1, seed=0, verbose=0)
    assert hist.params["samples"] == 200 and hist.params["steps"] == 4
    with pytest.raises(ValueError, match="one-shot iterator"):
        _model().fit((b for b in _in_order(X, y, 50)), loss="cross_entropy", epochs=2, verbose=0)
    hist = _model().fit(
        lambda: iter(_in_order(X, y, 50)), loss="cross_entropy", epochs=3, seed=0, verbose=0
    )
    assert len(hist.epoch) == 3 and hist.params["samples"] == 200


def test_weights_in_batches_and_a_short_last_batch_joined_for_batch_norm():
    X, y = _data(41)
    w = np.ones(41, dtype=np.float32)
    batches = [(X[:20], y[:20], w[:20]), (X[20:40], y[20:40], w[20:40]), (X[40:], y[40:], w[40:])]
    model = _model(batch_norm=True)
    hist = model.fit(
        batches, loss="cross_entropy", epochs=1, seed=0, verbose=0
    )  # a 1-row batch would fail BatchNorm
    assert len(hist.iteration_loss) == 2


def test_regression_target_scaling_from_the_source_matches_the_arrays():
    X, y = _data(task="regression")
    a = _model(1)
    a.fit(X, y, loss="mse", epochs=2, batch_size=25, shuffle=False, seed=2, verbose=0)
    b = _model(1)
    b.fit(_in_order(X, y, 25), loss="mse", epochs=2, seed=2, verbose=0)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-4, atol=1e-4)
    assert b.fit_target_scaling is None  # folded back into the output layer


@pytest.mark.parametrize(
    ("source", "kwargs", "error", "match"),
    [
        ([(np.ones((4, 5)), np.zeros(4, int))], {"y": np.zeros(4)}, ValueError, "y must be None"),
        ([(np.ones((4, 5)), np.zeros(4, int))], {"class_weight": "balanced"}, ValueError,
         "class_weight cannot"),
        ([(np.ones((4, 5)), np.zeros(4, int))], {"validation_split": 0.2}, ValueError,
         "validation_split needs arrays"),
        (lambda: iter([]), {}, ValueError, "gave no batches"),
        (lambda: 3, {}, TypeError, "must return an iterable"),
        (lambda: iter([np.ones((4, 5))]), {}, TypeError, r"batch 0 of epoch 0: a batch source"),
        ([(np.ones((4, 5)), np.zeros(4, int)), (np.ones((4, 6)), np.zeros(4, int))], {},
         ValueError, r"X of batch 1 of epoch 0 must have per-sample shape \(5,\)"),
        ([(np.ones((4, 5)), np.zeros(4, int)), (np.ones((4, 5)), np.zeros(3, int))], {},
         ValueError, "batch 1 of epoch 0"),
        ([(np.full((4, 5), np.nan), np.zeros(4, int))], {}, ValueError, "X of batch 0"),
    ],
)  # fmt: skip
def test_bad_sources_are_named_clearly(source, kwargs, error, match):
    with pytest.raises(error, match=match):
        _model().fit(source, loss="cross_entropy", epochs=1, verbose=0, **kwargs)


class _Loader:
    """A re-iterable of batches with a length, as a PyTorch DataLoader is."""

    def __init__(self, batches):
        self.data = batches

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


def test_a_reiterable_like_a_data_loader_is_a_source():
    X, y = _data()
    hist = _model().fit(_Loader(_in_order(X, y, 40)), loss="cross_entropy", epochs=2, verbose=0)
    assert hist.params["steps"] == 5 and hist.params["samples"] == 200


def test_what_counts_as_a_source():
    X, y = _data(10)
    assert not is_source(pd_like()) and not is_source("text")
    assert not is_source(X) and not is_source([[1.0, 2.0], [3.0, 4.0]]) and not is_source([])
    assert is_source([(X, y)]) and is_source(iter([(X, y)])) and is_source(lambda: None)
    with pytest.raises(TypeError, match="batch source"):
        as_source(42)
    with pytest.raises(ValueError, match="y must be None when X is a batch source"):
        _model().fit(lambda: iter([(X, y)]), y, loss="cross_entropy", verbose=0)


def pd_like():
    """An array-like iterable (a DataFrame, a tensor): not a source."""

    class ArrayLike:
        def __iter__(self):
            return iter([])

        def __array__(self, dtype=None, copy=None):
            return np.zeros((2, 5))

    return ArrayLike()
