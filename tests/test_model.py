"""Tests for lucidnet.model.Sequential: building, the flat parameter buffer, forward / backward,
weights, copies, predictions per loss, evaluate, summary, and float64 models."""

from __future__ import annotations

import numpy as np
import pytest
from _gradcheck_util import check_model_gradients

import lucidnet as ln


def _mlp(dtype="float32"):
    return ln.Sequential(
        [ln.Dense(5, activation="relu"), ln.BatchNorm(), ln.Dropout(0.5), ln.Dense(3)], dtype=dtype
    )


def test_build_names_shapes_and_parameter_count():
    model = _mlp()
    assert not model.built and model.n_params == 0
    model.build((4,), seed=0)
    assert model.built and model.input_shape == (4,)
    assert [layer.name for layer in model.layers] == [
        "dense_0",
        "batchnorm_1",
        "dropout_2",
        "dense_3",
    ]
    assert model.n_params == (4 * 5 + 5) + (5 + 5) + 0 + (5 * 3 + 3)
    names = [name for name, _, _ in model.parameters()]
    assert names == [
        "dense_0/W",
        "dense_0/b",
        "batchnorm_1/gamma",
        "batchnorm_1/beta",
        "dense_3/W",
        "dense_3/b",
    ]


def test_the_model_builds_itself_on_first_use():
    model = ln.Sequential([ln.Dense(2)])
    out = model.forward(np.ones((3, 7)))
    assert model.input_shape == (7,) and out.shape == (3, 2)


def test_parameters_are_views_of_one_flat_buffer():
    model = _mlp()
    model.build((4,), seed=0)
    p, g, layout = model.flat_parameters()
    assert p.size == g.size >= model.n_params
    assert sum(size for _, _, size, _ in layout) == model.n_params
    # every array starts on a 64-byte boundary (NumPy's vectorised loops are faster there)
    assert p.ctypes.data % 64 == 0 and g.ctypes.data % 64 == 0
    assert all(off * p.itemsize % 64 == 0 for _, off, _, _ in layout)
    gaps = np.ones(p.size, bool)
    for _, off, size, _ in layout:
        gaps[off : off + size] = False
    assert gaps.any() and np.all(p[gaps] == 0) and np.all(g[gaps] == 0)
    assert [entry[0] for entry in layout] == [name for name, _, _ in model.parameters()]
    # writing through the flat vector changes the layers' arrays and vice versa
    p[:] = 0.5
    assert np.all(model.layers[0].params["W"] == 0.5)
    model.layers[3].params["b"][...] = 2.0
    name, off, size, shape = layout[-1]
    assert name == "dense_3/b" and np.all(p[off : off + size] == 2.0) and shape == (3,)
    g[:] = 1.0
    model.zero_grad()
    assert not g.any() and not model.layers[0].grads["W"].any()


def test_flat_parameters_repack_when_a_layer_array_is_replaced():
    model = ln.Sequential([ln.Dense(2)])
    model.build((3,), seed=0)
    model.layers[0].params["W"] = np.full((3, 2), 7.0, dtype=np.float32)
    p, _, _ = model.flat_parameters()
    assert np.all(p[:6] == 7.0)
    opt = ln.SGD(lr=1.0)
    model.zero_grad()
    model.layers[0].grads["W"][...] = 1.0
    opt.step(model)
    np.testing.assert_array_equal(model.layers[0].params["W"], 6.0)


def test_forward_backward_of_the_stack_matches_finite_differences():
    rng = np.random.default_rng(0)
    model = ln.Sequential(
        [ln.Dense(6, activation="elu"), ln.Dense(5, activation="sigmoid"), ln.Dense(2)],
        dtype="float64",
    )
    check_model_gradients(model, rng.standard_normal((5, 3)))


def test_forward_casts_inputs_to_the_model_dtype():
    model = ln.Sequential([ln.Dense(2)])
    assert model.forward(np.ones((2, 3), dtype=np.float64)).dtype == np.float32
    assert model.forward(np.ones((2, 3), dtype=np.int64)).dtype == np.float32


def test_float64_model_trains_and_predicts_in_float64(blobs):
    X, y = blobs
    model = ln.Sequential(
        [ln.Dense(8, activation="relu"), ln.BatchNorm(), ln.Dense(3)], dtype="float64"
    )
    h = model.fit(
        X, y, loss="cross_entropy", optimizer=ln.Adam(lr=0.01), epochs=5, seed=0, verbose=0
    )
    assert model.dtype == np.float64
    assert all(w.dtype == np.float64 for w in model.get_weights().values())
    assert model.predict(X).dtype == np.float64
    assert model.flat_parameters()[0].dtype == np.float64
    assert h["loss"][-1] < h["loss"][0] and model.evaluate(X, y)["accuracy"] > 0.9
    assert all(s.dtype == np.float64 for s in model.optimizer.slots.values())


def test_float32_and_float64_models_agree(blobs):
    X, y = blobs
    m32 = ln.Sequential([ln.Dense(4, activation="tanh"), ln.Dense(3)])
    m32.build((4,), seed=0)
    m64 = ln.Sequential([ln.Dense(4, activation="tanh"), ln.Dense(3)], dtype="float64")
    m64.build((4,), seed=0)
    m64.set_weights(m32.get_weights())
    np.testing.assert_allclose(m32.predict_logits(X), m64.predict_logits(X), rtol=1e-4, atol=1e-5)


# -- weights and copies -----------------------------------------------------------------------
def test_get_and_set_weights(blobs):
    X, y = blobs
    model = _mlp()
    model.fit(X, y, loss="cross_entropy", epochs=2, seed=0, verbose=0)
    weights = model.get_weights()
    assert "batchnorm_1/running_mean" in weights and "dense_0/W" in weights
    before = model.predict(X)
    weights["dense_0/W"] += 1.0  # a copy: the model is unchanged
    assert np.array_equal(model.predict(X), before)
    other = _mlp()
    other.build((4,), seed=1)
    other.set_weights(model.get_weights())
    assert np.array_equal(other.predict_logits(X), model.predict_logits(X))
    bad = model.get_weights()
    bad["dense_0/W"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"dense_0/W.*shape \(2, 2\), expected \(4, 5\)"):
        model.set_weights(bad)
    del bad["dense_0/W"]
    with pytest.raises(ValueError, match="missing array 'dense_0/W'"):
        model.set_weights(bad)


def test_copy_is_independent(blobs):
    X, y = blobs
    model = _mlp()
    model.fit(X, y, loss="cross_entropy", optimizer=ln.Adam(lr=0.01), epochs=1, seed=0, verbose=0)
    clone = model.copy()
    before = model.predict(X)
    assert np.array_equal(clone.predict(X), before)
    assert clone.optimizer is not model.optimizer
    clone.fit(X, y, epochs=2, seed=1, verbose=0)  # continues with the copied optimizer
    assert np.array_equal(model.predict(X), before)
    assert not np.array_equal(clone.predict(X), before)
    p_model, p_clone = model.flat_parameters()[0], clone.flat_parameters()[0]
    assert not np.shares_memory(p_model, p_clone)


def test_backward_accumulates_and_zero_grad_resets():
    rng = np.random.default_rng(0)
    model = ln.Sequential([ln.Dense(3, activation="tanh"), ln.Dense(2)], dtype="float64")
    x = rng.standard_normal((4, 3))
    out = model.forward(x, training=True)
    model.zero_grad()
    model.backward(np.ones_like(out))
    once = model.flat_parameters()[1].copy()
    model.backward(np.ones_like(out))
    np.testing.assert_allclose(model.flat_parameters()[1], 2 * once)


def test_add_and_naming_rules():
    model = ln.Sequential()
    model.add(ln.Dense(3, name="hidden"))
    with pytest.raises(ValueError, match="duplicate layer name 'hidden'"):
        model.add(ln.Dense(2, name="hidden"))
    model.add(ln.Dense(2))
    assert model.layers[1].name == "dense_1"
    model.build((4,))
    with pytest.raises(ValueError, match="already built"):
        model.add(ln.Dense(1))


# -- predictions per loss ---------------------------------------------------------------------
def test_predict_returns_probabilities_for_classification(blobs):
    X, y = blobs
    model = ln.Sequential([ln.Dense(3)])
    model.fit(X, y, loss="cross_entropy", epochs=3, seed=0, verbose=0)
    proba = model.predict(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    logits = model.predict_logits(X)
    np.testing.assert_array_equal(model.predict_classes(X), logits.argmax(axis=1))
    np.testing.assert_array_equal(proba.argmax(axis=1), logits.argmax(axis=1))


def test_predict_for_binary_cross_entropy(blobs):
    X, y = blobs
    yb = (y == 1).astype(np.float32)
    model = ln.Sequential([ln.Dense(1)])
    model.fit(X, yb, loss="bce", epochs=3, seed=0, verbose=0)
    proba = model.predict(X)
    assert proba.shape == (240, 1) and np.all((proba > 0) & (proba < 1))
    classes = model.predict_classes(X)
    assert classes.shape == (240,)
    np.testing.assert_array_equal(classes, (proba[:, 0] > 0.5).astype(int))
    assert model.evaluate(X, yb)["accuracy"] == pytest.approx(np.mean(classes == yb))


def test_predict_for_regression_returns_raw_outputs(blobs):
    X, _ = blobs
    model = ln.Sequential([ln.Dense(2)])
    model.compile(loss="mse")
    model.build((4,), seed=0)
    np.testing.assert_array_equal(model.predict(X), model.predict_logits(X))
    with pytest.raises(ValueError, match="classification loss"):
        model.predict_classes(X)


def test_predict_in_batches_equals_one_batch(blobs):
    X, y = blobs
    model = _mlp()
    model.fit(X, y, loss="cross_entropy", epochs=1, seed=0, verbose=0)
    np.testing.assert_allclose(model.predict(X, batch_size=7), model.predict(X), rtol=1e-6)
    # inference is deterministic (dropout off, BatchNorm running statistics)
    assert np.array_equal(model.predict(X), model.predict(X))


def test_evaluate(blobs):
    X, y = blobs
    model = ln.Sequential([ln.Dense(3, l2=0.1)])
    model.compile(loss="cross_entropy", metrics=["f1", "precision", "recall"])
    model.build((4,), seed=0)
    scores = model.evaluate(X, y)
    assert set(scores) == {"loss", "accuracy", "f1", "precision", "recall"}
    value, _ = ln.CrossEntropy()(model.predict_logits(X), y)
    assert scores["loss"] == pytest.approx(value + model.penalty(), rel=1e-6)  # includes L2
    assert scores["accuracy"] == pytest.approx(np.mean(model.predict_classes(X) == y))
    w = np.where(y == 0, 1.0, 0.0)
    weighted = model.evaluate(X, y, sample_weight=w)
    value_w, _ = ln.CrossEntropy()(model.predict_logits(X), y, w)
    assert weighted["loss"] == pytest.approx(value_w + model.penalty(), rel=1e-6)
    assert weighted["loss"] != pytest.approx(scores["loss"])


def test_regression_evaluate_has_no_accuracy(blobs):
    X, _ = blobs
    model = ln.Sequential([ln.Dense(1)])
    model.compile(loss="mse", metrics=["mae", "r2"])
    model.build((4,), seed=0)
    scores = model.evaluate(X, X[:, 0])
    assert set(scores) == {"loss", "mae", "r2"}


# -- description ------------------------------------------------------------------------------
def test_summary_and_repr():
    model = _mlp()
    lines = []
    text = model.summary(print_fn=lines.append)
    assert lines == [text] and "not built" in text
    model.build((4,), seed=0)
    model.compile(loss="cross_entropy", optimizer="adam")
    text = model.summary(print_fn=None)
    for part in (
        "dense_0",
        "(None, 5)",
        "batchnorm_1",
        "(None, 3)",
        "Total params: 53",
        "float32",
        "Adam",
    ):
        assert part in text
    assert repr(model).startswith("Sequential([Dense(5, activation='relu'), BatchNorm(")


def test_observers_see_every_textbook_layer_call_and_not_the_fast_path():
    rng = np.random.default_rng(0)
    model = ln.Sequential([ln.Dense(4, activation="relu"), ln.Dense(2)], dtype="float64")
    model.build((3,), seed=0)
    calls = []
    model.observers.append(lambda stage, layer, got, out: calls.append((stage, layer.name)))
    x = rng.standard_normal((5, 3))
    y = model.forward(x, training=True)
    model.backward(np.ones_like(y))
    assert calls == [
        ("forward", "dense_0"),
        ("forward", "dense_1"),
        ("backward", "dense_1"),
        ("backward", "dense_0"),
    ]
    calls.clear()
    model.fast_backward(np.ones_like(model.fast_forward(x)))
    assert calls == []


def test_mlp_builds_the_table_network():
    """ln.mlp: Dense(act) [-> Dropout] per hidden layer, or Dense -> BatchNorm -> act, then
    a linear output (the network of `lucidnet train` and of `tune`)."""
    plain = ln.mlp(3, hidden=(8, 4), activation="tanh", dropout=0.2, l2=1e-3)
    kinds = [type(layer).__name__ for layer in plain.layers]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert plain.layers[0].activation.key == "tanh" and plain.layers[-1].activation is None
    assert all(layer.l2 == 1e-3 for layer in plain.layers if isinstance(layer, ln.Dense))
    normed = ln.mlp(2, hidden=(8,), batch_norm=True)
    assert [type(layer).__name__ for layer in normed.layers] == [
        "Dense",
        "BatchNorm",
        "ReLU",
        "Dense",
    ]
    assert normed.layers[0].activation is None
    plain.build((6,), seed=0)
    assert plain.predict(np.zeros((5, 6), np.float32)).shape == (5, 3)
