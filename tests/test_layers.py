"""Tests for lucidnet.layers: a contract test run on every layer class (shapes, parameter
counts, float64 gradient check of input and parameter gradients, gradients accumulating until
``zero_grad``, config and save/load round trips, in the style of Keras' ``run_layer_test``),
then layer-specific behaviour. These test the textbook pair; tests/test_fast_layers.py proves
every fast pair equal to it."""

from __future__ import annotations

import numpy as np
import pytest
from _gradcheck_util import away_from_zero, check_model_gradients

import lucidnet as ln
from lucidnet.base import LAYERS

N = 6  # batch size used by the contract test
ACTIVATION_NAMES = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softmax"]


def _dense(activation):
    return lambda: ln.Dense(4, activation=activation)


# (id, factory, per-sample input shape, "float" or "ids", expected output shape, n_params)
CASES = [
    *[(f"Dense-{a}", _dense(a), (5,), "float", (4,), 5 * 4 + 4) for a in ACTIVATION_NAMES],
    ("Dense-nobias", lambda: ln.Dense(3, use_bias=False), (5,), "float", (3,), 15),
    ("Dense-instance-activation", lambda: ln.Dense(4, ln.LeakyReLU(0.2)), (5,), "float", (4,), 24),
    ("Dropout", lambda: ln.Dropout(0.4), (5,), "float", (5,), 0),
    ("BatchNorm", lambda: ln.BatchNorm(momentum=0.8), (5,), "float", (5,), 10),
    ("Flatten", ln.Flatten, (2, 3), "float", (6,), 0),
    ("Embedding-mean", lambda: ln.Embedding(7, 3), (4,), "ids", (3,), 21),
    ("Embedding-none", lambda: ln.Embedding(7, 3, pooling=None), (4,), "ids", (4, 3), 21),
    ("Linear", ln.Linear, (5,), "float", (5,), 0),
    ("Sigmoid", ln.Sigmoid, (5,), "float", (5,), 0),
    ("Tanh", ln.Tanh, (5,), "float", (5,), 0),
    ("ReLU", ln.ReLU, (5,), "float", (5,), 0),
    ("LeakyReLU", lambda: ln.LeakyReLU(alpha=0.2), (5,), "float", (5,), 0),
    ("ELU", lambda: ln.ELU(alpha=0.7), (5,), "float", (5,), 0),
    ("GELU", ln.GELU, (5,), "float", (5,), 0),
    ("Softmax", ln.Softmax, (5,), "float", (5,), 0),
    # convolutional layers (tests/test_convolution.py checks every option); tanh, not ReLU:
    # a finite difference across ReLU's kink at z = 0 would be wrong, and z is not controlled
    ("Conv1D", lambda: ln.Conv1D(3, 3, activation="tanh"), (7, 2), "float", (5, 3), 21),
    (
        "Conv2D",
        lambda: ln.Conv2D(2, (3, 2), stride=(2, 1), padding="same", activation="tanh"),
        (5, 4, 2),
        "float",
        (3, 4, 2),
        26,
    ),
    (
        "Conv2D-dilated",
        lambda: ln.Conv2D(2, 2, dilation=2, padding=1),
        (5, 5, 1),
        "float",
        (5, 5, 2),
        10,
    ),
    ("MaxPool1D", lambda: ln.MaxPool1D(2), (6, 2), "float", (3, 2), 0),
    ("MaxPool2D", lambda: ln.MaxPool2D(2, padding="same"), (5, 4, 2), "float", (3, 2, 2), 0),
    ("AvgPool1D", lambda: ln.AvgPool1D(3, 2, padding="same"), (7, 2), "float", (4, 2), 0),
    ("AvgPool2D", lambda: ln.AvgPool2D(2), (4, 5, 2), "float", (2, 2, 2), 0),
    ("GlobalAveragePooling1D", ln.GlobalAveragePooling1D, (5, 3), "float", (3,), 0),
    ("GlobalAveragePooling2D", ln.GlobalAveragePooling2D, (3, 4, 2), "float", (2,), 0),
    ("Reshape", lambda: ln.Reshape((3, -1)), (12,), "float", (3, 4), 0),
    ("BatchNorm-channels", ln.BatchNorm, (3, 3, 2), "float", (3, 3, 2), 4),
]


def _inputs(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if kind == "ids":
        ids = rng.integers(1, 7, size=(N, *shape))
        ids[0, 2:] = 0  # padding at the end of a row
        ids[1, :1] = 0  # and at the start of another
        return ids
    # |x| in [0.1, 2]: no input sits on a kink of ReLU / LeakyReLU
    return away_from_zero(rng, (N, *shape))


def _prepare(layer: ln.Layer, x: np.ndarray) -> None:
    """Make the layer deterministic and kink-free for a finite-difference check."""
    if isinstance(layer, ln.Dropout):
        rng = np.random.default_rng(7)
        layer.fixed_mask = (rng.random(x.shape) >= layer.rate).astype(np.float64)
        assert 0 < layer.fixed_mask.mean() < 1


def test_every_registered_layer_class_has_a_contract_case():
    covered = set()
    for _, factory, *_ in CASES:
        covered.add(type(factory()).__name__)
    registered = {LAYERS.lookup(name).__name__ for name in LAYERS.names()}
    assert registered <= covered, f"layer classes without a contract test: {registered - covered}"


@pytest.mark.parametrize(
    "factory, input_shape, kind, out_shape, n_params",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_layer_contract(factory, input_shape, kind, out_shape, n_params, tmp_path):
    rng = np.random.default_rng(0)
    x = _inputs(kind, input_shape, rng)

    # shapes and parameter counts
    layer = factory()
    assert not layer.built and layer.n_params == 0
    assert layer.output_shape(input_shape) == out_shape
    model = ln.Sequential([layer], dtype="float64")
    model.build(input_shape, seed=0)
    assert layer.built and layer.input_shape == input_shape
    assert layer.n_params == n_params == model.n_params
    assert set(layer.grads) == set(layer.params)
    for key in layer.params:
        assert layer.grads[key].shape == layer.params[key].shape
        assert layer.params[key].dtype == np.float64
    _prepare(layer, x)
    out = model.forward(x, training=True)
    assert out.shape == (N, *out_shape)
    assert out.dtype == np.float64
    assert model.forward(x, training=False).shape == (N, *out_shape)
    if isinstance(layer, ln.Dense) and layer.activation is not None:
        # keep the check away from the ReLU-family kink at z = 0
        assert np.min(np.abs(layer._z)) > 1e-3

    # gradient check: every parameter and (for float inputs) the input
    errors = check_model_gradients(model, x, check_input=kind == "float")
    assert set(errors) == {f"{layer.name}/{k}" for k in layer.params} | (
        {"input"} if kind == "float" else set()
    )

    # the input gradient has the input's shape
    model.zero_grad()
    dx = model.backward(np.ones_like(model.forward(x, training=True)))
    assert dx.shape == x.shape

    # backward accumulates into grads until zero_grad (fit's fast_backward overwrites instead:
    # tests/test_fast_layers.py)
    dy = rng.standard_normal(out.shape)
    model.forward(x, training=True)
    model.zero_grad()
    model.backward(dy)
    once = {k: g.copy() for k, g in layer.grads.items()}
    model.backward(dy)
    for key, g in layer.grads.items():
        assert np.any(once[key] != 0), key
        np.testing.assert_allclose(g, 2 * once[key], rtol=1e-12, err_msg=key)

    # config round trip: a layer rebuilt from its config has the same config
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert repr(clone) == repr(layer)

    # float32 models keep float32 throughout (no silent up-casting)
    layer32 = factory()
    model32 = ln.Sequential([layer32])
    model32.build(input_shape, seed=0)
    _prepare(layer32, x)
    x32 = x if kind == "ids" else x.astype(np.float32)
    for training in (True, False):
        out32 = model32.forward(x32, training=training)
        assert out32.dtype == np.float32
    assert model32.backward(np.ones_like(out32)).dtype == np.float32

    # save / load round trip: identical inference outputs and config
    path = tmp_path / "layer.lnet"
    model.save(path)
    loaded = ln.load(path)
    assert loaded.dtype == np.float64
    assert type(loaded.layers[0]) is type(layer)
    assert loaded.layers[0].get_config() == config
    assert np.array_equal(loaded.predict(x), model.predict(x))
    for key in layer.params:
        assert np.array_equal(loaded.layers[0].params[key], layer.params[key])
    for key in layer.state:
        assert np.array_equal(loaded.layers[0].state[key], layer.state[key])


# -- stacked networks and penalties -----------------------------------------------------------
def test_gradcheck_stack_dense_batchnorm_dropout_dense_cross_entropy():
    rng = np.random.default_rng(1)
    dropout = ln.Dropout(0.3)
    model = ln.Sequential(
        [ln.Dense(7, activation="tanh"), ln.BatchNorm(), dropout, ln.Dense(4)], dtype="float64"
    )
    x = rng.standard_normal((8, 5))
    y = rng.integers(0, 4, size=8)
    model.build((5,), seed=3)
    dropout.fixed_mask = (rng.random((8, 7)) >= 0.3).astype(float)
    errors = check_model_gradients(model, x, y, ln.CrossEntropy())
    assert len(errors) == 2 + 2 + 2 + 1  # W, b, gamma, beta, W, b, input


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_gradcheck_deep_stack_with_each_activation(activation):
    rng = np.random.default_rng(2)
    model = ln.Sequential(
        [ln.Dense(6, activation=activation), ln.Dense(5, activation=activation), ln.Dense(3)],
        dtype="float64",
    )
    x = away_from_zero(rng, (7, 4))
    model.build((4,), seed=5)
    model.forward(x, training=True)
    for layer in model.layers[:2]:
        assert np.min(np.abs(layer._z)) > 1e-3  # away from kinks
    check_model_gradients(model, x, rng.integers(0, 3, size=7), ln.CrossEntropy())


def test_gradcheck_l1_l2_penalties_are_part_of_the_objective():
    rng = np.random.default_rng(3)
    model = ln.Sequential(
        [
            ln.Dense(6, activation="tanh", l1=0.03, l2=0.05),
            ln.Dense(3, l2=0.1, kernel_initializer="glorot_normal"),
        ],
        dtype="float64",
    )
    x = rng.standard_normal((9, 4))
    y = rng.integers(0, 3, size=9)
    model.build((4,), seed=0)
    for layer in model.layers:
        assert np.min(np.abs(layer.params["W"])) > 1e-4  # |W| has a kink at 0
    check_model_gradients(model, x, y, ln.CrossEntropy(), include_penalty=True)
    # the penalty itself: l1 * sum|W| + l2 * sum W^2 (Keras convention, no 1/2)
    W0, W1 = model.layers[0].params["W"], model.layers[1].params["W"]
    expected = 0.03 * np.abs(W0).sum() + 0.05 * (W0**2).sum() + 0.1 * (W1**2).sum()
    assert model.penalty() == pytest.approx(expected, rel=1e-12)


def test_penalty_changes_the_gradient_only_of_the_kernel():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3))
    plain = ln.Sequential([ln.Dense(2)], dtype="float64")
    reg = ln.Sequential([ln.Dense(2, l2=0.5)], dtype="float64")
    plain.build((3,), seed=0)
    reg.build((3,), seed=0)
    dy = rng.standard_normal((5, 2))
    for m in (plain, reg):
        m.forward(x, training=True)
        m.zero_grad()
        m.backward(dy)
    W = plain.layers[0].params["W"]
    np.testing.assert_allclose(reg.layers[0].grads["W"] - plain.layers[0].grads["W"], 2 * 0.5 * W)
    np.testing.assert_array_equal(reg.layers[0].grads["b"], plain.layers[0].grads["b"])


# -- Dense ------------------------------------------------------------------------------------
def test_dense_forward_matches_formula():
    rng = np.random.default_rng(0)
    model = ln.Sequential([ln.Dense(3, activation="tanh")], dtype="float64")
    x = rng.standard_normal((4, 2))
    model.build((2,), seed=0)
    layer = model.layers[0]
    layer.params["b"][...] = [0.1, -0.2, 0.3]
    expected = np.tanh(x @ layer.params["W"] + layer.params["b"])
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-14)


def test_dense_backward_accumulates_until_zero_grad():
    rng = np.random.default_rng(0)
    model = ln.Sequential([ln.Dense(3)], dtype="float64")
    x = rng.standard_normal((4, 2))
    dy = rng.standard_normal((4, 3))
    model.forward(x, training=True)
    model.zero_grad()
    model.backward(dy)
    once = model.layers[0].grads["W"].copy()
    model.backward(dy)
    np.testing.assert_allclose(model.layers[0].grads["W"], 2 * once)
    model.zero_grad()
    assert not model.layers[0].grads["W"].any()


@pytest.mark.parametrize(
    "activation, init",
    [
        ("relu", "he_normal"),
        ("gelu", "he_normal"),
        ("tanh", "glorot_uniform"),
        (None, "glorot_uniform"),
    ],
)
def test_dense_auto_initialiser(activation, init):
    fan_in, units = 400, 300
    model = ln.Sequential([ln.Dense(units, activation=activation)], dtype="float64")
    model.build((fan_in,), seed=0)
    W = model.layers[0].params["W"]
    if init == "he_normal":
        assert W.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.02)
    else:
        limit = np.sqrt(6 / (fan_in + units))
        assert np.abs(W).max() <= limit
        assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)  # uniform's std
    assert not model.layers[0].params["b"].any()


def test_dense_rejects_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="units"):
        ln.Dense(0)
    with pytest.raises(TypeError, match="units"):
        ln.Dense(2.5)
    with pytest.raises(ValueError, match="l2"):
        ln.Dense(2, l2=-1.0)
    with pytest.raises(ValueError, match="initializer"):
        ln.Dense(2, kernel_initializer="nope")
    with pytest.raises(ValueError, match="Flatten"):
        ln.Sequential([ln.Dense(2)]).build((3, 4))
    with pytest.raises(ValueError, match="input_dim=5"):
        ln.Sequential([ln.Dense(2, input_dim=5)]).build((4,))
    model = ln.Sequential([ln.Dense(2)])
    model.build((3,))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, 3\)"):
        model.forward(np.zeros((2, 4)))


def test_activation_objects_are_not_shared_between_layers():
    a, b = ln.Dense(2, activation="relu"), ln.Dense(2, activation="relu")
    assert a.activation is not b.activation
    # one instance passed to several layers: each layer gets its own copy (a shared forward
    # cache would corrupt the gradients of the earlier layers)
    act = ln.LeakyReLU(alpha=0.2)
    model = ln.Sequential([ln.Dense(4, act), ln.Dense(4, act), ln.Dense(2)], dtype="float64")
    assert model.layers[0].activation is not model.layers[1].activation
    assert model.layers[1].activation.alpha == 0.2
    rng = np.random.default_rng(0)
    model.build((3,), seed=0)
    check_model_gradients(model, away_from_zero(rng, (5, 3)))


# -- Dropout ----------------------------------------------------------------------------------
def test_dropout_training_mask_and_scaling():
    model = ln.Sequential([ln.Dropout(0.25)], dtype="float64")
    model.build((1000,), seed=0)
    x = np.ones((20, 1000))
    out = model.forward(x, training=True)
    kept = out != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(out[kept], 1 / 0.75)  # inverted dropout
    assert out.mean() == pytest.approx(1.0, abs=0.02)  # expectation preserved
    dy = np.full_like(x, 2.0)
    np.testing.assert_allclose(model.backward(dy), np.where(kept, 2 / 0.75, 0))
    np.testing.assert_array_equal(model.forward(x, training=False), x)


def test_dropout_masks_follow_the_seed_and_change_between_calls():
    def masks(seed):
        model = ln.Sequential([ln.Dropout(0.5)])
        model.build((50,), seed=seed)
        x = np.ones((4, 50), dtype=np.float32)
        return model.forward(x, training=True), model.forward(x, training=True)

    a1, a2 = masks(0)
    b1, b2 = masks(0)
    c1, _ = masks(1)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
    assert not np.array_equal(a1, c1)


def test_dropout_rate_validation():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="rate"):
            ln.Dropout(bad)
    with pytest.raises(TypeError, match="rate"):
        ln.Dropout("0.5")
    model = ln.Sequential([ln.Dropout(0.0)])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(model.forward(x, training=True), x)


# -- BatchNorm --------------------------------------------------------------------------------
def test_batchnorm_training_normalises_and_updates_running_statistics():
    rng = np.random.default_rng(0)
    bn = ln.BatchNorm(momentum=0.9, eps=1e-5)
    model = ln.Sequential([bn], dtype="float64")
    x = rng.standard_normal((16, 3)) * [1.0, 5.0, 0.1] + [0.0, 10.0, -3.0]
    model.build((3,), seed=0)
    out = model.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5), rtol=1e-10)
    # running = momentum * running + (1 - momentum) * batch; unbiased variance, as PyTorch
    np.testing.assert_allclose(bn.state["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        bn.state["running_var"], 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-12
    )
    # inference uses the running statistics, not the batch's
    bn.params["gamma"][...] = [1.0, 2.0, 3.0]
    bn.params["beta"][...] = [0.5, 0.0, -0.5]
    rm, rv = bn.state["running_mean"], bn.state["running_var"]
    expected = (x - rm) / np.sqrt(rv + 1e-5) * bn.params["gamma"] + bn.params["beta"]
    np.testing.assert_allclose(model.forward(x, training=False), expected, rtol=1e-12)
    # inference does not change the running statistics
    before = rm.copy()
    model.forward(x, training=False)
    np.testing.assert_array_equal(bn.state["running_mean"], before)


def test_batchnorm_running_statistics_converge_to_the_data_statistics():
    rng = np.random.default_rng(1)
    bn = ln.BatchNorm(momentum=0.5)
    model = ln.Sequential([bn], dtype="float64")
    data = rng.standard_normal((4000, 2)) * [2.0, 0.5] + [1.0, -1.0]
    for i in range(0, 4000, 100):
        model.forward(data[i : i + 100], training=True)
    np.testing.assert_allclose(bn.state["running_mean"], [1.0, -1.0], atol=0.15)
    np.testing.assert_allclose(bn.state["running_var"], [4.0, 0.25], rtol=0.3)


def test_batchnorm_refuses_a_training_batch_of_one():
    model = ln.Sequential([ln.BatchNorm()])
    model.build((3,))
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.forward(np.ones((1, 3)), training=True)
    assert model.forward(np.ones((1, 3)), training=False).shape == (1, 3)


# -- Flatten ----------------------------------------------------------------------------------
def test_flatten_then_dense_on_images():
    rng = np.random.default_rng(0)
    model = ln.Sequential([ln.Flatten(), ln.Dense(3)], dtype="float64")
    x = rng.standard_normal((4, 2, 3, 2))
    out = model.forward(x, training=True)
    assert out.shape == (4, 3)
    assert model.layers[1].params["W"].shape == (12, 3)
    check_model_gradients(model, x)


# -- Embedding --------------------------------------------------------------------------------
def test_embedding_mean_pooling_ignores_padding():
    model = ln.Sequential([ln.Embedding(5, 2)], dtype="float64")
    ids = np.array([[1, 2, 0, 0], [3, 3, 4, 0], [0, 0, 0, 0]])
    model.build((4,), seed=0)
    E = model.layers[0].params["E"]
    out = model.forward(ids)
    np.testing.assert_allclose(out[0], (E[1] + E[2]) / 2)
    np.testing.assert_allclose(out[1], (2 * E[3] + E[4]) / 3)
    np.testing.assert_array_equal(out[2], 0)  # all padding: zeros, not NaN


def test_embedding_padding_row_is_zero_and_never_trained():
    model = ln.Sequential([ln.Embedding(5, 2, pooling=None)], dtype="float64")
    ids = np.array([[1, 2, 0], [3, 0, 0]])
    model.build((3,), seed=0)
    E = model.layers[0].params["E"]
    assert not E[0].any()
    out = model.forward(ids, training=True)
    np.testing.assert_array_equal(out[1, 1:], 0)  # padding positions output zeros
    model.zero_grad()
    model.backward(np.ones_like(out))
    grads = model.layers[0].grads["E"]
    assert not grads[0].any()
    np.testing.assert_array_equal(grads[1], [1, 1])
    assert not grads[4].any()  # unused id: no gradient


def test_embedding_accepts_float_ids_and_rejects_bad_ids():
    model = ln.Sequential([ln.Embedding(5, 2)])
    model.build((2,))
    np.testing.assert_array_equal(
        model.forward(np.array([[1.0, 2.0]])), model.forward(np.array([[1, 2]]))
    )
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        model.forward(np.array([[1, 5]]))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        model.forward(np.array([[-1, 2]]))
    with pytest.raises(ValueError, match="integer"):
        model.forward(np.array([[1.5, 2.0]]))
    with pytest.raises(ValueError, match="pooling"):
        ln.Embedding(5, 2, pooling="max")
    with pytest.raises(ValueError, match="input_dim"):
        ln.Embedding(1, 2)


def test_layers_get_lists_valid_names():
    assert ln.layers.get("Dense") is ln.Dense
    assert ln.layers.get("batchnormalization") is ln.BatchNorm
    assert ln.layers.get("Conv2D") is ln.Conv2D  # convolution.py registers in the same registry
    with pytest.raises(ValueError, match="unknown layer 'Conv3D'.*Dense.*BatchNorm.*Conv2D"):
        ln.layers.get("Conv3D")


def test_the_gradient_checker_detects_a_wrong_backward():
    """Guard against a vacuous checker: a subtly wrong derivative must fail the check."""

    class BadTanh(ln.Tanh):
        def backward(self, dy):
            return dy * (1.0 - self._out)  # should be 1 - tanh^2

    class BadDense(ln.Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["b"] *= 1.001  # 0.1 % too large
            return dx

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    for layer in (BadTanh(), BadDense(2)):
        model = ln.Sequential([layer], dtype="float64")
        model.build((3,), seed=0)
        with pytest.raises(AssertionError, match="gradient check failed"):
            check_model_gradients(model, x)
