"""The glass box of the convolution layers (issue 16): ``explain`` works a convolution's output
value and one kernel weight's gradient out in the open, ``check_gradients`` and ``Diagnostics``
work on CNNs (their ONNX export is tested in test_onnx.py).

Every number ``explain`` shows is compared with the layer's own computation (its output, its
``patches``, the gradients of a separate forward / backward pass) and with the formulas written
out here with loops."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.convolution import (
    AvgPool1D,
    AvgPool2D,
    Conv1D,
    Conv2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    MaxPool1D,
    MaxPool2D,
    Reshape,
)
from lucidnet.glassbox.diagnostics import Diagnostics
from lucidnet.glassbox.explain import explain_step
from lucidnet.glassbox.gradcheck import check_gradients


def _model(layers, input_shape, dtype="float64", seed=0):
    model = ln.Sequential(layers, dtype=dtype)
    model.build(input_shape, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:  # non-zero biases: the bias term must show up
        if "b" in layer.params:
            layer.params["b"][...] = rng.normal(scale=0.3, size=layer.params["b"].shape)
    return model


def _reference_gradients(model, x, y, loss):
    """Every parameter's gradient and each layer's input / output by a plain forward and
    backward pass of a copy (not through explain)."""
    m = model.copy()
    acts = []
    m.observers.append(lambda stage, layer, a, b: acts.append((stage, layer.name, a, b)))
    m.zero_grad()
    value, d = ln.losses.get(loss)(m.forward(x, training=True), y)
    m.backward(d)
    return {name: g.copy() for name, _, g in m.parameters()}, acts


def _loop_conv_value(x, W, b, pads, stride, dilation, n, pos, f):
    """y[n, *pos, f] = b[f] + sum xpad[n, pos*s + a*d, c] W[a, c, f], by loops."""
    rank = len(pos)
    total = float(b[f])
    for offset in itertools.product(*(range(k) for k in W.shape[:rank])):
        at = [pos[i] * stride[i] + offset[i] * dilation[i] - pads[i][0] for i in range(rank)]
        if all(0 <= at[i] < x.shape[1 + i] for i in range(rank)):
            for c in range(W.shape[rank]):
                total += x[(n, *at, c)] * W[(*offset, c, f)]
    return total


CONV_CASES = [
    # (id, layer factory, input shape, output index (None: the default), weight index)
    ("2d_same_stride2", lambda: Conv2D(3, 3, stride=2, padding="same", activation="relu"),
     (7, 6, 2), (1, 3, 0, 2), (2, 2, 1, 0)),
    ("2d_int_pad_dilation", lambda: Conv2D(2, (2, 3), padding=(1, 2), dilation=(2, 1),
                                           activation="tanh"), (5, 5, 3), (0, 0, 0, 1), None),
    ("1d_same_dilation", lambda: Conv1D(4, 3, padding="same", dilation=2), (9, 2), (2, 8, 3),
     (0, 1, 2)),
    ("1d_valid_stride", lambda: Conv1D(2, 4, stride=3, activation="sigmoid"), (11, 3), None,
     None),
]  # fmt: skip


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_explain_convolution_forward_and_weight_gradient(case):
    _, make, shape, out_idx, w_idx = case
    conv = make()
    model = _model([conv, ln.Flatten(), ln.Dense(3)], shape)
    model.layers[0].l2 = 0.01  # the penalty's gradient is part of dL/dW
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3, *shape)), np.array([0, 2, 1])
    kw = {}
    if out_idx is not None:
        kw["output_index"] = {conv.name: out_idx}
    if w_idx is not None:
        kw["weight_index"] = {conv.name: w_idx}
    e = explain_step(model, x, y, loss="cross_entropy", optimizer=ln.SGD(lr=0.1), **kw)
    f, b = e.layer(conv.name)
    c, g = f.conv, b.conv
    W, bias = model.layers[0].params["W"], model.layers[0].params["b"]
    out = model.layers[0].forward(x)  # the layer's own output, not through explain
    oi = out_idx
    if out_idx is None:  # the default: sample 0 at its largest |output|
        oi = (0, *(int(i) for i in np.unravel_index(np.argmax(np.abs(out[0])), out[0].shape)))
    assert (c.sample, *c.position, c.filter) == tuple(oi)
    # the patch is the layer's own im2col row; kernel slice, products, sum, bias, z, output
    rank = len(shape) - 1
    patches = model.layers[0].patches(x)
    np.testing.assert_array_equal(c.patch.reshape(-1), patches[oi[:-1]])
    np.testing.assert_array_equal(c.kernel, W[..., c.filter])
    np.testing.assert_allclose(c.products, c.patch * c.kernel, rtol=1e-15)
    assert c.total == pytest.approx(c.products.sum(), rel=1e-12)
    assert c.bias == bias[c.filter] and c.z == pytest.approx(c.total + c.bias, rel=1e-12)
    conv_ = model.layers[0]
    loops = _loop_conv_value(
        x, W, bias, conv_.pads, conv_.stride, conv_.dilation, c.sample, c.position, c.filter
    )
    assert c.z == pytest.approx(loops, rel=1e-12, abs=1e-12)
    assert c.output == out[oi] and c.recomputed == pytest.approx(out[oi], rel=1e-12, abs=1e-14)
    assert c.check_max_abs_diff < 1e-12
    for axis, idx in enumerate(c.input_index):  # the coordinates under the kernel
        start = c.position[axis] * conv_.stride[axis] - conv_.pads[axis][0]
        assert idx == [start + a * conv_.dilation[axis] for a in range(W.shape[axis])]
    # backward: dL/dW[w] = sum of x * dL/dz over batch and positions (+ the L2 term)
    ref, _ = _reference_gradients(model, x, y, "cross_entropy")
    wi = w_idx if w_idx is not None else np.unravel_index(np.argmax(np.abs(b.grads["W"])), W.shape)
    assert g.weight == tuple(wi)
    assert g.grad == pytest.approx(ref[f"{conv.name}/W"][wi], rel=1e-12, abs=1e-15)
    assert g.penalty_grad == pytest.approx(2 * 0.01 * W[wi], rel=1e-12)
    assert g.total + g.penalty_grad == pytest.approx(g.grad, rel=1e-10, abs=1e-14)
    assert g.n_terms == 3 * int(np.prod(out.shape[1:-1]))
    assert g.bias_grad == pytest.approx(ref[f"{conv.name}/b"][wi[-1]], rel=1e-12, abs=1e-15)
    assert g.bias_total == pytest.approx(g.bias_grad, rel=1e-10, abs=1e-14)
    # each term shown is x (at the input index it names; padding reads 0) times dL/dz there
    products = [abs(t["product"]) for t in g.terms]
    assert products == sorted(products, reverse=True) and len(g.terms) == min(5, g.n_terms)
    for t in g.terms:
        n_, *at, ch = t["input_index"]
        inside = all(0 <= a < x.shape[1 + i] for i, a in enumerate(at))
        assert t["x"] == (x[(n_, *at, ch)] if inside else 0.0)
        assert t["product"] == pytest.approx(t["x"] * t["dz"], rel=1e-12)
        assert len(t["position"]) == rank
    text = e.to_text()
    assert f"one output value worked out: sample {c.sample}" in text
    assert f"sum of the {g.n_terms} terms" in text and "the layer's own gradient" in text
    json.loads(e.to_json())  # every record serialises


def test_explain_conv_dz_uses_the_activation_derivative():
    """With a fused ReLU, dL/dz is dL/da where z > 0 and 0 elsewhere: the terms' dz say so."""
    conv = Conv2D(2, 2, activation="relu")
    model = _model([conv, GlobalAveragePooling2D(), ln.Dense(1)], (4, 4, 1))
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 1))
    e = explain_step(model, x, np.array([[1.0], [-1.0]]), loss="mse")
    f, b = e.layer(conv.name)
    fl = b.conv.weight[-1]
    da = b.d_output[..., fl]
    dz = np.where(f.output[..., fl] > 0, da, 0.0)
    shown = {(t["sample"], *t["position"]): t["dz"] for t in b.conv.terms}
    for (n, *pos), v in shown.items():
        assert v == dz[(n, *pos)]
    assert b.conv.bias_total == pytest.approx(dz.sum(), rel=1e-12, abs=1e-15)


POOL_CASES = [
    ("max2d", lambda: MaxPool2D(2), (6, 6, 2)),
    ("max2d_same_overlap", lambda: MaxPool2D(3, stride=2, padding="same"), (5, 6, 2)),
    ("avg2d_same", lambda: AvgPool2D(2, padding="same"), (5, 5, 2)),
    ("max1d", lambda: MaxPool1D(3, stride=1), (7, 2)),
    ("avg1d", lambda: AvgPool1D(2, stride=1), (6, 3)),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_explain_pooling_window_and_routing(case):
    _, make, shape = case
    pool = make()
    model = _model([pool, ln.Flatten(), ln.Dense(2)], shape)
    x = np.random.default_rng(5).normal(size=(2, *shape))  # no ties: one maximum per window
    last = tuple(d - 1 for d in pool.output_shape(shape))  # the last window: padding if any
    e = explain_step(
        model, x, np.array([1, 0]), loss="cross_entropy", output_index={pool.name: (1, *last)}
    )
    f, b = e.layer(pool.name)
    p = f.pool
    out = model.layers[0].forward(x)
    assert (p.sample, *p.position, p.channel) == (1, *last)
    assert p.output == out[(1, *last)] and p.check_max_abs_diff == 0.0
    assert p.routing_max_abs_diff < 1e-15  # the layer's dL/dx, recomputed for every window
    inside = p.window[~np.isnan(p.window)]
    grid = np.ix_(*[[i for i in idx if 0 <= i < shape[a]] for a, idx in enumerate(p.input_index)])
    np.testing.assert_array_equal(np.sort(inside), np.sort(x[1][(*grid, p.channel)].ravel()))
    if p.kind == "max":
        assert p.recomputed == inside.max() == x[p.winner]
        # the winner receives dL/dy (plus the share of any other window it wins), the rest 0
        assert b.d_input[p.winner] != 0.0
        assert (
            p.d_window[np.unravel_index(np.nanargmax(p.window), p.window.shape)]
            == (b.d_input[p.winner])
        )
        if pool.stride == pool.pool_size and not any(lo or hi for lo, hi in pool.pads):
            assert b.d_input[p.winner] == p.d_output
            assert np.count_nonzero(p.d_window) == 1
        assert "goes to the input that won the max" in e.to_text()
    else:
        assert p.count == inside.size and p.recomputed == pytest.approx(inside.mean(), rel=1e-12)
        assert "is shared equally" in e.to_text()


def test_explain_focus_arguments_are_checked():
    conv = Conv2D(2, 3)
    model = _model([conv, MaxPool2D(2), ln.Flatten(), ln.Dense(2)], (6, 6, 1))
    x, y = np.zeros((1, 6, 6, 1)), np.array([0])
    with pytest.raises(ValueError, match="output_index names layer 'dense_3'"):
        explain_step(model, x, y, loss="cross_entropy", output_index={"dense_3": (0, 0)})
    with pytest.raises(ValueError, match="weight_index names layer 'maxpool2d_1'.*conv2d_0"):
        explain_step(model, x, y, loss="cross_entropy", weight_index={"maxpool2d_1": (0,)})
    with pytest.raises(ValueError, match=r"output_index for layer 'conv2d_0' must be an index"):
        explain_step(model, x, y, loss="cross_entropy", output_index={"conv2d_0": (0, 9, 0, 0)})
    with pytest.raises(TypeError, match="weight_index must be a dict"):
        explain_step(model, x, y, loss="cross_entropy", weight_index=(0, 0, 0, 0))


# --------------------------------------------------------------------------------------------
# gradient check
# --------------------------------------------------------------------------------------------


def _cnn_layers():
    return [
        Conv2D(3, 3, padding="same", activation="tanh"),
        ln.BatchNorm(),
        MaxPool2D(2, stride=1),
        Conv2D(2, (2, 3), stride=2, padding=1, dilation=(1, 2), l2=0.01),
        AvgPool2D(2, padding="same"),
        ln.Flatten(),
        Reshape((-1, 2)),
        Conv1D(3, 2, padding="same", activation="elu"),
        MaxPool1D(2, padding="same"),
        AvgPool1D(2, stride=1),
        GlobalAveragePooling1D(),
        ln.Dense(3),
    ]


def test_gradcheck_passes_on_a_cnn_with_every_new_layer():
    rng = np.random.default_rng(0)
    model = ln.Sequential(_cnn_layers())
    X, y = rng.normal(size=(4, 7, 8, 2)), np.array([0, 1, 2, 1])
    report = check_gradients(model, X, y, loss="cross_entropy", max_entries=12)
    assert report.passed, report.to_text()
    names = {e.name for e in report.entries}
    assert {"conv2d_0/W", "conv2d_3/W", "conv1d_7/b", "batchnorm_1/gamma", "input"} <= names
    assert report.max_rel_error < 1e-6
    gap = ln.Sequential([Conv2D(2, 2, activation="relu"), GlobalAveragePooling2D(), ln.Dense(1)])
    X2 = rng.normal(size=(3, 5, 5, 1))
    assert check_gradients(gap, X2, rng.normal(size=(3, 1)), loss="mse").passed


def test_gradcheck_catches_a_wrong_convolution_backward():
    class BrokenConv2D(Conv2D):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["W"][0, 0] *= 1.01  # one kernel offset's gradient 1% off
            return dx

    model = ln.Sequential([BrokenConv2D(2, 2), ln.Flatten(), ln.Dense(1)])
    rng = np.random.default_rng(1)
    report = check_gradients(
        model, rng.normal(size=(3, 4, 4, 1)), rng.normal(size=(3, 1)), loss="mse"
    )
    assert not report.passed
    assert [e.name for e in report.failures] == ["brokenconv2d_0/W"]


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------


def _images(n=96, seed=0):
    """Bright square top-left (class 0) or bottom-right (class 1) on noise, 8x8x1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=0.3, size=(n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i, c in enumerate(y):
        r = 1 if c == 0 else 4
        X[i, r : r + 3, r : r + 3, 0] += 1.5
    return X, y


def test_diagnostics_watch_convolution_units():
    X, y = _images()
    model = ln.Sequential(
        [
            Conv2D(4, 3, padding="same", activation="relu"),
            MaxPool2D(2),
            Conv2D(3, 3, activation="tanh"),
            ln.BatchNorm(),
            Conv2D(2, 1),
            ln.ReLU(),
            GlobalAveragePooling2D(),
            ln.Dense(2),
        ]
    )
    diag = Diagnostics(every=1, emit=False)
    history = model.fit(
        X, y, loss="cross_entropy", epochs=3, batch_size=16, seed=0, callbacks=[diag], verbose=0
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    rec = diag.layers
    for name in ("conv2d_0", "conv2d_2", "conv2d_4", "batchnorm_3", "dense_7"):
        assert len(rec[name]["grad_norm"]) == 3 and all(np.isfinite(rec[name]["grad_norm"]))
        assert all(r > 0 for r in rec[name]["update_ratio"])
    # ReLU units of a convolution are its filters: the fraction is a multiple of 1/4
    dead = rec["conv2d_0"]["dead_fraction"]
    assert all(0.0 <= v <= 1.0 and (4 * v).is_integer() for v in dead)
    assert all(0.0 <= v <= 0.5 for v in rec["relu_5"]["dead_fraction"])  # 2 filters
    assert all(0.0 <= v <= 1.0 for v in rec["conv2d_2"]["saturation"])
    json.dumps(diag.to_dict())
    assert "conv2d_0" in diag.to_text()


def test_diagnostics_dead_convolution_filters_warn():
    X, y = _images()
    model = ln.Sequential([Conv2D(4, 3, activation="relu"), GlobalAveragePooling2D(), ln.Dense(2)])
    model.build(X.shape[1:], seed=0)
    model.layers[0].params["b"][:3] = -50.0  # three of four filters can never fire
    diag = Diagnostics(every=1, emit=False)
    model.fit(
        X, y, loss="cross_entropy", epochs=1, batch_size=32, seed=0, callbacks=[diag], verbose=0
    )
    assert diag.layers["conv2d_0"]["dead_fraction"] == [0.75]
    assert any("Dead ReLU units: 75% of layer conv2d_0" in w for w in model.history.warnings)


def test_diagnostics_context_reads_convolution_penalties():
    X, y = _images(32)
    model = ln.Sequential([Conv2D(2, 3, l2=0.003), ln.Flatten(), ln.Dense(2)])
    diag = Diagnostics(every=1, emit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, loss="cross_entropy", epochs=1, seed=0, callbacks=[diag], verbose=0)
    assert diag.context()["l2"] == 0.003
