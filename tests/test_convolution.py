"""Tests for lucidnet.convolution: forward passes against the docstring formulas written as
plain loops, float64 gradient checks of every layer over strides, dilations, paddings, odd sizes
and several channels, the output-size and padding rules, max-pooling's tie rule, argument
errors, BatchNorm per channel, and a small CNN trained by ``fit`` on scikit-learn's digits.

The fast pairs are proven equal to these textbook pairs in tests/test_fast_layers.py, the
contract (config, save / load, float32) in tests/test_layers.py, and equality with PyTorch's
functions in tests/test_convolution_torch.py (when torch is installed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _gradcheck_util import check_model_gradients

import lucidnet as ln

RNG = np.random.default_rng(0)


# -- references: the docstring formulas as loops -------------------------------------------------
def conv_reference(x, W, b, stride, dilation, pads):
    """y[n, i.., f] = b[f] + sum_{a.., c} xpad[n, i*s + a*d.., c] W[a.., c, f], any rank."""
    rank = W.ndim - 2
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    kernel = W.shape[:rank]
    out = [
        (xp.shape[1 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(rank)
    ]
    y = np.zeros((x.shape[0], *out, W.shape[-1]))
    for pos in itertools.product(*(range(o) for o in out)):
        for offset in itertools.product(*(range(k) for k in kernel)):
            at = tuple(p * s + o * d for p, s, o, d in zip(pos, stride, offset, dilation))
            y[(slice(None), *pos)] += xp[(slice(None), *at)] @ W[offset]
    return y + b


def pool_reference(x, pool, stride, pads, kind):
    """Max (padding never wins) or average over the positions inside the input."""
    rank = len(pool)
    fill = -np.inf if kind == "max" else np.nan
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
    out = [(xp.shape[1 + i] - pool[i]) // stride[i] + 1 for i in range(rank)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for pos in itertools.product(*(range(o) for o in out)):
        window = xp[(slice(None), *(slice(p * s, p * s + k) for p, s, k in zip(pos, stride, pool)))]
        flat = window.reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *pos)] = flat.max(axis=1) if kind == "max" else np.nanmean(flat, axis=1)
    return y


def _model(layers, shape, seed=0):
    model = ln.Sequential(layers, dtype="float64")
    model.build(shape, seed=seed)
    return model


# -- convolutions: forward against the formula, gradients by finite differences ----------------
CONV_CASES = [
    # (id, class, kwargs, per-sample input shape)
    ("1d-valid", ln.Conv1D, {"kernel_size": 3}, (11, 3)),
    ("1d-stride2-same", ln.Conv1D, {"kernel_size": 4, "stride": 2, "padding": "same"}, (11, 3)),
    ("1d-dilation2-pad2", ln.Conv1D, {"kernel_size": 3, "dilation": 2, "padding": 2}, (9, 2)),
    (
        "1d-stride3-dilation2-same",
        ln.Conv1D,
        {"kernel_size": 2, "stride": 3, "dilation": 2, "padding": "same"},
        (10, 3),
    ),
    ("2d-valid", ln.Conv2D, {"kernel_size": 3}, (7, 6, 3)),
    (
        "2d-stride2-same",
        ln.Conv2D,
        {"kernel_size": (3, 2), "stride": 2, "padding": "same"},
        (7, 5, 2),
    ),
    (
        "2d-dilation2-pair-pad",
        ln.Conv2D,
        {"kernel_size": 3, "dilation": 2, "padding": (1, 2)},
        (7, 6, 2),
    ),
    (
        "2d-mixed",
        ln.Conv2D,
        {"kernel_size": (2, 3), "stride": (2, 1), "dilation": (2, 1), "padding": 1},
        (7, 5, 3),
    ),
    ("2d-one-channel-same", ln.Conv2D, {"kernel_size": 5, "padding": "same"}, (6, 5, 1)),
]


@pytest.mark.parametrize(
    "cls, kwargs, shape", [c[1:] for c in CONV_CASES], ids=[c[0] for c in CONV_CASES]
)
def test_convolution_forward_is_the_formula_and_gradients_check(cls, kwargs, shape):
    layer = cls(4, **kwargs)
    model = _model([layer], shape)
    x = RNG.standard_normal((2, *shape))
    W, b = layer.params["W"], layer.params["b"]
    b[...] = RNG.standard_normal(b.shape)  # a non-zero bias, so its place in the formula counts
    expected = conv_reference(x, W, b, layer.stride, layer.dilation, layer.pads)
    y = model.forward(x)
    assert y.shape == (2, *layer.output_shape(shape))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    errors = check_model_gradients(model, x)
    assert set(errors) == {"input", f"{layer.name}/W", f"{layer.name}/b"}


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_convolution_with_activation_penalties_and_no_bias(activation):
    layer = ln.Conv2D(
        3, 3, stride=2, padding="same", activation=activation, use_bias=False, l1=0.01, l2=0.03
    )
    model = _model([layer], (5, 6, 2))
    x = RNG.standard_normal((3, 5, 6, 2))
    assert "b" not in layer.params
    z = conv_reference(x, layer.params["W"], 0.0, layer.stride, layer.dilation, layer.pads)
    np.testing.assert_allclose(model.forward(x), layer.activation.forward(z), rtol=1e-12)
    W = layer.params["W"]
    assert model.penalty() == pytest.approx(0.01 * np.abs(W).sum() + 0.03 * (W * W).sum())
    check_model_gradients(model, x, include_penalty=True)


def test_patches_are_the_receptive_fields_in_the_order_of_the_kernel():
    layer = ln.Conv2D(5, (3, 2), stride=(1, 2), padding=1, dilation=(2, 1))
    model = _model([layer], (6, 7, 3))
    x = RNG.standard_normal((2, 6, 7, 3))
    P = layer.patches(x)
    out = layer.output_shape((6, 7, 3))[:2]
    assert P.shape == (2, *out, 3 * 2 * 3)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    i, j = 1, 2  # one output position, by hand: rows i*1 + a*2, columns j*2 + b
    by_hand = np.stack([xp[:, i + 2 * a, 2 * j + b, :] for a in range(3) for b in range(2)], axis=1)
    np.testing.assert_array_equal(P[:, i, j], by_hand.reshape(2, -1))
    z = P @ layer.params["W"].reshape(-1, 5) + layer.params["b"]
    np.testing.assert_allclose(model.forward(x), z, rtol=1e-12)
    conv1 = ln.Conv1D(2, 3, padding="same")
    _model([conv1], (5, 4))
    assert conv1.patches(RNG.standard_normal((3, 5, 4))).shape == (3, 5, 12)


def test_inference_in_slices_gives_the_same_numbers(monkeypatch):
    layer = ln.Conv2D(3, 3, padding="same", activation="tanh")
    model = _model([layer, ln.MaxPool2D(2)], (6, 5, 2))
    x = RNG.standard_normal((7, 6, 5, 2))
    whole = model.predict_logits(x)
    # 6 * 5 positions x 18 patch values x 8 bytes = 4,320 bytes per sample: slices of 2 samples
    monkeypatch.setattr(ln.Conv2D, "INFERENCE_PATCH_BYTES", 9000)
    calls = []
    original = ln.Conv2D._forward
    monkeypatch.setattr(
        ln.Conv2D, "_forward", lambda self, x, t: calls.append(len(x)) or original(self, x, t)
    )
    np.testing.assert_array_equal(model.predict_logits(x), whole)
    assert calls == [2, 2, 2, 1]
    model.forward(x, training=True)  # training: the whole batch, whose patches backward needs
    assert calls[-1] == 7


@pytest.mark.parametrize(
    "size, kernel, stride, dilation, pads, out",
    [
        (7, 3, 1, 1, (1, 1), 7),  # stride 1: the size is kept
        (8, 4, 1, 1, (1, 2), 8),  # an even kernel: the odd zero goes at the end (TensorFlow)
        (7, 3, 2, 1, (1, 1), 4),  # ceil(7 / 2)
        (8, 3, 2, 1, (0, 1), 4),  # ceil(8 / 2)
        (9, 3, 1, 2, (2, 2), 9),  # dilation: the kernel spans 5 positions
        (5, 1, 3, 1, (0, 0), 2),  # a 1-wide kernel needs no zeros
    ],
)
def test_same_padding_follows_tensorflows_rule(size, kernel, stride, dilation, pads, out):
    layer = ln.Conv1D(2, kernel, stride=stride, padding="same", dilation=dilation)
    assert layer.output_shape((size, 3)) == (out, 2)
    _model([layer], (size, 3))
    assert layer.pads == (pads,)


def test_output_size_formula_and_attributes():
    layer = ln.Conv2D(4, (5, 3), stride=(2, 1), padding=(2, 0), dilation=(1, 2))
    # (in + before + after - d (k - 1) - 1) // s + 1
    assert layer.output_shape((11, 9, 3)) == ((11 + 4 - 4 - 1) // 2 + 1, (9 - 4 - 1) + 1, 4)
    assert (layer.kernel_size, layer.stride, layer.dilation) == ((5, 3), (2, 1), (1, 2))
    assert layer.padding == (2, 0)
    _model([layer], (11, 9, 3))
    assert layer.pads == ((2, 2), (0, 0))
    assert ln.Conv1D(2, 3).kernel_size == (3,)


# -- pooling ---------------------------------------------------------------------------------------
POOL_CASES = [
    ("1d", "1D", {"pool_size": 2}, (7, 3)),  # odd length: the last position is not pooled
    ("1d-overlap-same", "1D", {"pool_size": 3, "stride": 2, "padding": "same"}, (8, 2)),
    ("2d", "2D", {"pool_size": 2}, (5, 7, 3)),
    ("2d-overlap", "2D", {"pool_size": 3, "stride": 1}, (5, 4, 2)),
    ("2d-rect-same", "2D", {"pool_size": (2, 3), "stride": (1, 2), "padding": "same"}, (5, 7, 2)),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "suffix, kwargs, shape", [c[1:] for c in POOL_CASES], ids=[c[0] for c in POOL_CASES]
)
def test_pooling_forward_is_the_formula_and_gradients_check(kind, suffix, kwargs, shape):
    cls = getattr(ln, ("MaxPool" if kind == "max" else "AvgPool") + suffix)
    layer = cls(**kwargs)
    model = _model([layer], shape)
    x = RNG.standard_normal((3, *shape))  # distinct values: no ties, no kinks nearby
    expected = pool_reference(x, layer.pool_size, layer.stride, layer.pads, kind)
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-12)
    errors = check_model_gradients(model, x)
    assert errors["input"] < 1e-7


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    """Equal values in a window (ReLU zeros, saturated pixels): the textbook and the fast path
    both give the whole gradient to the first maximum in row-major window order."""
    x = np.zeros((1, 4, 4, 2))
    x[0, 2:, 2:, 1] = [[1.0, 3.0], [3.0, 3.0]]  # a tie of 3.0 in the last window, channel 1
    dy = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    for fast in (False, True):
        layer = ln.MaxPool2D(2)
        _model([layer], (4, 4, 2))
        if fast:
            layer.fast_forward(x)
            dx = layer.fast_backward(dy)
        else:
            layer.forward(x, training=True)
            dx = layer.backward(dy)
        expected = np.zeros_like(x)
        expected[0, ::2, ::2, :] = dy[0]  # all-zero windows: the top-left position
        expected[0, 2, 2, 1], expected[0, 2, 3, 1] = 0.0, dy[0, 1, 1, 1]  # the first 3.0
        np.testing.assert_array_equal(dx, expected)


def test_avg_pool_same_averages_only_the_positions_inside_the_input():
    layer = ln.AvgPool1D(3, stride=1, padding="same")
    _model([layer], (4, 1))
    x = np.array([1.0, 2.0, 3.0, 10.0]).reshape(1, 4, 1)
    np.testing.assert_allclose(layer.forward(x)[0, :, 0], [1.5, 2.0, 5.0, 6.5])


@pytest.mark.parametrize(
    "cls, shape", [(ln.GlobalAveragePooling1D, (5, 3)), (ln.GlobalAveragePooling2D, (3, 4, 2))]
)
def test_global_average_pooling(cls, shape):
    model = _model([cls()], shape)
    x = RNG.standard_normal((2, *shape))
    np.testing.assert_allclose(model.forward(x), x.reshape(2, -1, shape[-1]).mean(axis=1))
    check_model_gradients(model, x)


def test_reshape_infers_minus_one_and_round_trips():
    layer = ln.Reshape((4, -1, 1))
    assert layer.output_shape((12,)) == (4, 3, 1)
    model = _model([layer], (12,))
    x = RNG.standard_normal((2, 12))
    np.testing.assert_array_equal(model.forward(x), x.reshape(2, 4, 3, 1))
    assert model.backward(np.ones((2, 4, 3, 1))).shape == (2, 12)


# -- a whole CNN -------------------------------------------------------------------------------
def test_small_cnn_gradient_check_with_a_loss():
    model = _model(
        [
            ln.Reshape((6, 5, 1)),
            ln.Conv2D(3, 3, padding="same", activation="tanh"),
            ln.MaxPool2D(2, padding="same"),
            ln.BatchNorm(),
            ln.Conv2D(4, 2, stride=(2, 1), activation="tanh"),
            ln.AvgPool2D((1, 2)),
            ln.GlobalAveragePooling2D(),
            ln.Dense(3),
        ],
        (30,),
    )
    x = RNG.standard_normal((4, 30))
    y = np.array([0, 2, 1, 2])
    errors = check_model_gradients(model, x, y, ln.losses.get("cross_entropy"))
    assert len(errors) == 1 + 2 * 4  # the input; W and b of two convs and Dense; BatchNorm


def test_conv1d_network_gradient_check():
    model = _model(
        [
            ln.Conv1D(3, 3, stride=2, padding="same", activation="sigmoid"),
            ln.MaxPool1D(2, stride=1),
            ln.Conv1D(2, 2, dilation=2),
            ln.GlobalAveragePooling1D(),
        ],
        (9, 2),
    )
    check_model_gradients(model, RNG.standard_normal((3, 9, 2)))


def test_batchnorm_normalises_each_channel_over_batch_and_positions():
    bn4, bn2 = ln.BatchNorm(momentum=0.5), ln.BatchNorm(momentum=0.5)
    _model([bn4], (3, 4, 5))
    _model([bn2], (5,))
    x = RNG.standard_normal((6, 3, 4, 5)) * 3 + 1
    y = bn4.forward(x, training=True)
    np.testing.assert_allclose(y, bn2.forward(x.reshape(-1, 5), training=True).reshape(x.shape))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, rtol=1e-4)
    rows = x.reshape(-1, 5)  # the unbiased variance over n * positions = 72 values
    np.testing.assert_allclose(bn4.state["running_var"], 0.5 + 0.5 * rows.var(axis=0, ddof=1))
    dy = RNG.standard_normal(x.shape)
    np.testing.assert_allclose(bn4.backward(dy), bn2.backward(dy.reshape(-1, 5)).reshape(x.shape))
    np.testing.assert_allclose(bn4.grads["gamma"], bn2.grads["gamma"])
    assert bn4.forward(x, training=False).shape == x.shape


def test_a_small_cnn_learns_digits():
    """scikit-learn's 8x8 digits as (8, 8, 1) images: a small CNN trained by fit (the fast
    path) for a few seconds reaches a test accuracy a broken convolution cannot."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    model = ln.Sequential(
        [
            ln.Conv2D(8, 3, padding="same", activation="relu"),
            ln.MaxPool2D(2),
            ln.Conv2D(16, 3, activation="relu"),
            ln.Flatten(),
            ln.Dense(10),
        ]
    )
    model.fit(
        X[train],
        y[train],
        loss="cross_entropy",
        optimizer=ln.Adam(lr=3e-3),
        epochs=10,
        batch_size=32,
        seed=0,
        verbose=0,
        threads=1,  # tiny products: one thread does not wait for a busy core
    )
    accuracy = np.mean(model.predict_classes(X[test]) == y[test])
    assert accuracy > 0.95, accuracy


# -- errors ------------------------------------------------------------------------------------
def test_wrong_input_rank_names_the_layer_the_axes_and_the_fix():
    model = ln.Sequential([ln.Conv2D(4, 3)])
    with pytest.raises(
        ValueError,
        match=r"Conv2D expects \(n, height, width, channels\) inputs, got per-sample shape "
        r"\(784,\); add Reshape\(\(28, 28, 1\)\)",
    ):
        model.build((784,))
    with pytest.raises(
        ValueError,
        match=r"Conv2D .* got per-sample shape \(28, 28\); "
        r"add Reshape\(\(28, 28, 1\)\) for one channel",
    ):
        ln.Sequential([ln.Conv2D(4, 3)]).build((28, 28))
    with pytest.raises(ValueError, match=r"Conv1D expects \(n, length, channels\) inputs"):
        ln.Sequential([ln.Conv1D(4, 3)]).build((5, 5, 1))
    for layer in (ln.MaxPool2D(), ln.AvgPool1D(), ln.GlobalAveragePooling2D()):
        with pytest.raises(ValueError, match=f"{type(layer).__name__} expects"):
            ln.Sequential([layer]).build((10,))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        model = ln.Sequential([ln.Conv2D(2, 3)])
        model.build((5, 5, 1))
        model.forward(np.zeros((2, 5, 6, 1)))


def test_kernel_larger_than_the_padded_input():
    with pytest.raises(
        ValueError,
        match=r"Conv2D: the kernel spans 5 positions on spatial axis 1 "
        r".*padded input's 4 \(input 4, padding 0 \+ 0\)",
    ):
        ln.Conv2D(2, 5).output_shape((6, 4, 1))
    with pytest.raises(ValueError, match=r"spans 7 positions .*dilation 3"):
        ln.Conv1D(2, 3, dilation=3).output_shape((6, 1))
    assert ln.Conv1D(2, 3, dilation=3, padding=1).output_shape((6, 1)) == (2, 2)
    with pytest.raises(ValueError, match="MaxPool2D: the kernel spans 3"):
        ln.Sequential([ln.MaxPool2D(3)]).build((2, 2, 1))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: ln.Conv2D(4, 3, padding="full"),
            ValueError,
            r"padding must be one of \['valid', 'same'\] or an int >= 0, got 'full'",
        ),
        (
            lambda: ln.Conv2D(4, 3, padding=-1),
            ValueError,
            "padding must be an integer >= 0, got -1",
        ),
        (
            lambda: ln.Conv2D(4, 3, padding=(1, 2, 3)),
            TypeError,
            "padding must be 'valid' or 'same' or an int >= 0 or a sequence of 2 ints",
        ),
        (lambda: ln.Conv1D(4, 3, padding=(1, 2)), TypeError, "padding must be"),
        (
            lambda: ln.Conv2D(4, (3, 3, 3)),
            TypeError,
            "kernel_size must be an int or a sequence of 2 ints",
        ),
        (lambda: ln.Conv2D(4, 0), ValueError, "kernel_size must be an integer >= 1, got 0"),
        (lambda: ln.Conv2D(4, 3, stride=1.5), TypeError, "stride must be"),
        (lambda: ln.Conv1D(4, 3, dilation=(2,)), None, None),
        (lambda: ln.Conv2D(0, 3), ValueError, "filters must be an integer >= 1"),
        (lambda: ln.Conv2D(4, 3, activation="swish"), ValueError, "unknown activation"),
        (
            lambda: ln.Conv2D(4, 3, kernel_initializer="orthogonal"),
            ValueError,
            "unknown initializer",
        ),
        (lambda: ln.MaxPool2D(2, padding=1), TypeError, "padding must be 'valid' or 'same', got 1"),
        (
            lambda: ln.AvgPool1D(2, padding="causal"),
            ValueError,
            r"padding must be one of \['valid', 'same'\], got 'causal'",
        ),
        (lambda: ln.MaxPool1D(0), ValueError, "pool_size must be an integer >= 1"),
        (lambda: ln.Reshape((2, -1, -1)), ValueError, "target_shape may contain one -1"),
        (lambda: ln.Reshape(28), TypeError, "target_shape must be a non-empty sequence"),
        (lambda: ln.Reshape((0, 4)), ValueError, "target_shape must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_value(make, error, message):
    if error is None:
        make()  # accepted
        return
    with pytest.raises(error, match=message):
        make()


def test_reshape_of_the_wrong_size():
    with pytest.raises(
        ValueError,
        match=r"Reshape cannot give inputs of per-sample shape \(10,\) \(10 values\) "
        r"the shape \(3, 3\) \(9 values\)",
    ):
        ln.Sequential([ln.Reshape((3, 3))]).build((10,))
    with pytest.raises(ValueError, match="times a whole number"):
        ln.Reshape((3, -1)).output_shape((10,))


def test_layers_are_registered_and_rebuilt_from_their_config():
    for name in ("Conv1D", "Conv2D", "MaxPool2D", "MaxPooling2D", "AvgPool1D", "Reshape"):
        assert ln.layers.get(name) is getattr(ln, name.replace("Pooling", "Pool"))
    layer = ln.Conv2D(4, (3, 2), stride=2, padding=(1, 0), activation=ln.LeakyReLU(0.3), l2=0.1)
    config = layer.get_config()
    clone = ln.Conv2D.from_config(config)
    assert clone.get_config() == config and clone.activation.alpha == 0.3
    assert (
        repr(clone) == "Conv2D(4, (3, 2), stride=(2, 2), padding=(1, 0), activation='leaky_relu')"
    )


def test_the_cnn_benchmark_runs(tmp_path, monkeypatch):
    """benchmarks/cnn.py's entry point on a few random images (tmp_path holds no MNIST files):
    it trains, times and reports, with PyTorch beside it where torch is installed."""
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from benchmarks.cnn import format_result, run_cnn_benchmark

    result = run_cnn_benchmark(n=64, repeats=1, batch_size=32, threads=1, data=tmp_path)
    assert result["data"].startswith("64 random 28x28 images")
    assert len(result["seconds"]["lucidnet"]) == 1 and result["median"]["lucidnet"] > 0
    assert ("PyTorch" in result["median"]) == ("torch" in sys.modules)
    assert "lucidnet" in format_result(result) and "threads" in result["context"]


def test_multiply_adds_count_every_position():
    """The thread planner's work estimate: a convolution multiplies each kernel weight once per
    output position (LeNet's first layer: 24 x 24 positions x 150 weights), not once."""
    model = ln.Sequential([ln.Conv2D(6, 5), ln.MaxPool2D(2), ln.Flatten(), ln.Dense(10)])
    model.build((28, 28, 1), seed=0)
    conv, _, _, dense = model.layers
    assert conv.multiply_adds == 24 * 24 * 5 * 5 * 1 * 6
    assert dense.multiply_adds == dense.n_params == 12 * 12 * 6 * 10 + 10
    assert ln.Conv1D(4, 3, stride=2).multiply_adds == 0  # not built yet: its parameters
