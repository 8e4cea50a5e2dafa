"""Tests of the ONNX exporter (lucidnet/onnx_export.py): every layer type, run in ONNX Runtime."""

from __future__ import annotations

import sys

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
from lucidnet.interop.onnx_export import export_model_file, export_onnx, to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(path_or_proto, x: np.ndarray) -> np.ndarray:
    source = path_or_proto if isinstance(path_or_proto, str) else path_or_proto.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _randomise(model: ln.Sequential, seed: int) -> None:
    """Non-trivial weights everywhere (biases, BatchNorm affine and running statistics)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for arr in layer.params.values():
            arr[...] = rng.normal(scale=0.5, size=arr.shape)
        if "running_var" in layer.state:
            layer.state["running_mean"][...] = rng.normal(size=layer.state["running_mean"].shape)
            layer.state["running_var"][...] = rng.uniform(
                0.3, 2.0, layer.state["running_var"].shape
            )


def _floats(shape):
    return lambda rng, n: rng.normal(size=(n, *shape))


def _ids(seq_len, vocab):
    def make(rng, n):
        ids = rng.integers(0, vocab, size=(n, seq_len))
        ids[:, -2:] = 0  # trailing padding
        ids[0] = 0  # an all-padding row: the mean pooling must give zeros, not NaN
        return ids

    return make


# (id, layers factory, per-sample input shape, input maker, loss)
CASES = [
    ("dense", lambda: [ln.Dense(4)], (6,), _floats((6,)), "mse"),
    ("dense_no_bias", lambda: [ln.Dense(4, use_bias=False)], (6,), _floats((6,)), "mse"),
    *[
        (f"dense_{act}", lambda act=act: [ln.Dense(5, activation=act), ln.Dense(3)], (6,),
         _floats((6,)), "cross_entropy")
        for act in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softmax", "linear")
    ],
    (
        "activation_layers",
        lambda: [ln.Dense(8), ln.LeakyReLU(0.2), ln.Dense(8), ln.ELU(0.7), ln.Dense(8), ln.GELU(),
                 ln.Sigmoid(), ln.Tanh(), ln.ReLU(), ln.Linear(), ln.Dense(4), ln.Softmax()],
        (5,), _floats((5,)), "mse",
    ),
    ("dropout", lambda: [ln.Dense(8, activation="relu"), ln.Dropout(0.5), ln.Dense(3)], (5,),
     _floats((5,)), "cross_entropy"),
    ("batchnorm", lambda: [ln.Dense(8), ln.BatchNorm(eps=1e-3), ln.ReLU(), ln.Dense(1)], (5,),
     _floats((5,)), "binary_cross_entropy"),
    ("flatten", lambda: [ln.Flatten(), ln.Dense(5, activation="tanh"), ln.Dense(2)], (4, 3, 2),
     _floats((4, 3, 2)), "binary_cross_entropy"),
    ("embedding_mean", lambda: [ln.Embedding(20, 6), ln.Dense(3)], (7,), _ids(7, 20),
     "cross_entropy"),
    ("embedding_no_pooling", lambda: [ln.Embedding(20, 4, pooling=None), ln.Flatten(), ln.Dense(2)],
     (5,), _ids(5, 20), "huber"),
]  # fmt: skip


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_layer_matches_lucidnet(case, dtype, opset, tmp_path):
    _, layers, input_shape, make_input, loss = case
    model = ln.Sequential(layers(), dtype=dtype)
    model.build(input_shape, seed=0)
    model.compile(loss)
    _randomise(model, seed=1)
    rng = np.random.default_rng(2)
    tol = 1e-5 if dtype == "float32" else 1e-12
    path = str(tmp_path / "model.onnx")
    for activation in (True, False):
        export_onnx(model, path, opset=opset, include_output_activation=activation, overwrite=True)
        onnx.checker.check_model(path, full_check=True)
        for n in (1, 7):  # the batch dimension is dynamic
            x = make_input(rng, n)
            x = x if x.dtype.kind == "i" else x.astype(dtype)
            expected = model.predict(x) if activation else model.predict_logits(x)
            got = _run(path, x)
            assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


def test_output_activation_nodes_and_metadata():
    model = ln.Sequential([ln.Dense(3)])
    model.build((2,), seed=0)
    model.compile("cross_entropy")
    with_act = to_onnx(model)
    without = to_onnx(model, include_output_activation=False)
    assert [n.op_type for n in with_act.graph.node] == ["MatMul", "Add", "Softmax", "Identity"]
    assert [n.op_type for n in without.graph.node] == ["MatMul", "Add", "Identity"]
    props = {p.key: p.value for p in with_act.metadata_props}
    assert props["lucidnet_output"] == "probabilities" and props["lucidnet_loss"] == "cross_entropy"
    assert {p.key: p.value for p in without.metadata_props}["lucidnet_output"] == "logits"
    dims = with_act.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 2
    gelu = ln.Sequential([ln.Dense(3, activation="gelu")])
    gelu.build((2,), seed=0)
    assert "Gelu" in [n.op_type for n in to_onnx(gelu, opset=20).graph.node]
    assert "Gelu" not in [n.op_type for n in to_onnx(gelu, opset=17).graph.node]


def test_trained_digits_model(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    layers = [ln.Dense(64, activation="relu"), ln.BatchNorm(), ln.Dropout(0.2)]
    model = ln.Sequential([*layers, ln.Dense(32, activation="gelu"), ln.Dense(10)])
    model.fit(X[:1400], y[:1400], loss="cross_entropy", epochs=5, seed=0, verbose=0)
    assert model.evaluate(X[1400:], y[1400:])["accuracy"] > 0.85
    path = str(tmp_path / "digits.onnx")
    model.export_onnx(path)  # the Sequential method hook
    onnx.checker.check_model(path, full_check=True)
    got = _run(path, X)
    expected = model.predict(X)
    assert np.abs(got - expected).max() <= 1e-5
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_estimator_export(tmp_path):
    from sklearn.datasets import make_classification

    from lucidnet.interop.estimators import NeuralNetworkClassifier

    X, y = make_classification(200, 6, n_classes=3, n_informative=4, random_state=0)
    labels = np.array(["x", "y", "z"])[y]
    est = NeuralNetworkClassifier((16,), max_iter=10, random_state=0).fit(X, labels)
    proto = export_onnx(est, tmp_path / "est.onnx")
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["classes"] == '["x", "y", "z"]'
    assert props["sklearn_estimator"] == "NeuralNetworkClassifier"
    got = _run(str(tmp_path / "est.onnx"), X.astype(np.float32))
    np.testing.assert_allclose(got, est.predict_proba(X), atol=1e-5)


def test_export_model_file_for_the_cli(tmp_path):
    model = ln.Sequential([ln.Dense(4, activation="tanh"), ln.Dense(1)])
    model.build((3,), seed=0)
    model.compile("mse")
    model.save(tmp_path / "m.lnet")
    summary = export_model_file(tmp_path / "m.lnet", tmp_path / "m.onnx")
    assert summary["input"] == ("input", ["batch", 3], "float32")
    assert summary["output"] == ("output", ["batch", 1], "float32")
    assert summary["opset"] == 17 and summary["output_kind"] == "values" and summary["nodes"] == 6
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(_run(str(tmp_path / "m.onnx"), x), model.predict(x), atol=1e-6)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model_file(tmp_path / "m.lnet", tmp_path / "m.onnx")
    export_model_file(tmp_path / "m.lnet", tmp_path / "m.onnx", overwrite=True, opset=18)


class _Custom(ln.Layer):
    def forward(self, x, training=False):
        return x


def test_errors(tmp_path, monkeypatch):
    unbuilt = ln.Sequential([ln.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        to_onnx(unbuilt)
    custom = ln.Sequential([ln.Dense(2), _Custom()])
    custom.build((3,), seed=0)
    with pytest.raises(TypeError, match="does not support layer .*_Custom.*supported layer types"):
        to_onnx(custom)
    model = ln.Sequential([ln.Dense(2)])
    model.build((3,), seed=0)
    with pytest.raises(ValueError, match="opset must be in"):
        to_onnx(model, opset=12)
    with pytest.raises(TypeError, match="opset"):
        to_onnx(model, opset="17")
    with pytest.raises(TypeError, match="input_name"):
        to_onnx(model, input_name="")
    with pytest.raises(TypeError, match="model must be a lucidnet Sequential"):
        to_onnx("model.lnet")
    monkeypatch.setitem(sys.modules, "onnx", None)  # simulate onnx not being installed
    with pytest.raises(ImportError, match=r"pip install lucidnet\[onnx\]"):
        export_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


# --------------------------------------------------------------------------------------------
# convolutions and pooling (lucidnet/convolution.py), run in ONNX Runtime
# --------------------------------------------------------------------------------------------

ONNX_CASES = [
    ("conv2d_valid", lambda: [Conv2D(4, 3, activation="relu"), ln.Flatten(), ln.Dense(3)],
     (8, 7, 2), "cross_entropy"),
    ("conv2d_same_stride2_asymmetric", lambda: [Conv2D(3, (3, 2), stride=2, padding="same"),
                                                ln.Flatten(), ln.Dense(2)], (8, 7, 3), "mse"),
    ("conv2d_int_pad_dilation", lambda: [Conv2D(2, 3, padding=(2, 1), dilation=(2, 1),
                                                stride=(1, 2), activation="tanh"),
                                         Conv2D(3, 2, padding=1, activation="gelu"),
                                         ln.Flatten(), ln.Dense(1)], (9, 8, 1),
     "binary_cross_entropy"),
    ("conv2d_pools_batchnorm", lambda: [Conv2D(4, 3, padding="same", use_bias=False),
                                        ln.BatchNorm(), ln.ReLU(),
                                        MaxPool2D(3, stride=2, padding="same"),
                                        AvgPool2D(2, padding="same"), ln.Flatten(),
                                        ln.Dense(3)], (9, 7, 2), "cross_entropy"),
    ("conv2d_gap_avg_valid", lambda: [Conv2D(3, 2, activation="elu"), AvgPool2D((2, 3), stride=1),
                                      MaxPool2D(2), GlobalAveragePooling2D(), ln.Dense(2)],
     (8, 8, 3), "cross_entropy"),
    ("reshape_flat_pixels", lambda: [Reshape((6, 6, 1)), Conv2D(2, 3, activation="sigmoid"),
                                     ln.Flatten(), ln.Dense(2)], (36,), "cross_entropy"),
    ("conv1d_same_stride", lambda: [Conv1D(3, 4, stride=2, padding="same", activation="relu"),
                                    MaxPool1D(2, padding="same"), ln.Flatten(), ln.Dense(2)],
     (11, 2), "cross_entropy"),
    ("conv1d_dilation_pools", lambda: [Conv1D(4, 3, dilation=2, padding=2), ln.BatchNorm(),
                                       AvgPool1D(3, stride=2, padding="same"),
                                       MaxPool1D(2, stride=1), GlobalAveragePooling1D(),
                                       ln.Dense(1)], (12, 3), "poisson"),
    # pools first, on inputs below 0 (shifted by INPUT_SHIFT): "same" padding must never win a
    # max (-inf, not 0) nor count in a mean
    ("pools_same_on_negatives_2d", lambda: [MaxPool2D((3, 2), stride=2, padding="same"),
                                            AvgPool2D(2, padding="same"), ln.Flatten(),
                                            ln.Dense(2)], (7, 6, 2), "mse"),
    ("pools_same_on_negatives_1d", lambda: [MaxPool1D(3, stride=2, padding="same"),
                                            AvgPool1D(3, stride=2, padding="same"), ln.Flatten(),
                                            ln.Dense(2)], (9, 2), "mse"),
    ("reshape_minus_one", lambda: [ln.Flatten(), Reshape((-1, 4)), Conv1D(2, 2), ln.Flatten(),
                                   ln.Dense(2)], (4, 2, 2), "mse"),
]  # fmt: skip


INPUT_SHIFT = {"pools_same_on_negatives_2d": -3.0, "pools_same_on_negatives_1d": -3.0}


@pytest.mark.parametrize("case", ONNX_CASES, ids=[c[0] for c in ONNX_CASES])
def test_onnx_export_of_convolutions_matches_predict(case):
    name, layers, shape, loss = case
    for dtype, opset in (("float32", 17), ("float64", 20)):
        model = ln.Sequential(layers(), dtype=dtype)
        model.build(shape, seed=0)
        model.compile(loss)
        _randomise(model, seed=1)
        proto = to_onnx(model, opset=opset)
        onnx.checker.check_model(proto, full_check=True)
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        x = np.random.default_rng(2).normal(INPUT_SHIFT.get(name, 0.0), size=(5, *shape))
        x = x.astype(dtype)
        got = session.run(None, {"input": x})[0]
        expected = model.predict(x)
        assert got.shape == expected.shape and got.dtype == np.dtype(dtype)
        tol = 2e-5 if dtype == "float32" else 1e-11
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def test_onnx_conv_graph_keeps_channels_last_between_layers():
    model = ln.Sequential([Conv2D(2, 3, padding="same"), MaxPool2D(2), ln.Flatten(), ln.Dense(1)])
    model.build((4, 4, 1), seed=0)
    ops = [n.op_type for n in to_onnx(model).graph.node]
    assert ops == [
        "Transpose",
        "Conv",
        "Transpose",
        "Transpose",
        "MaxPool",
        "Transpose",
        "Flatten",
        "MatMul",
        "Add",
        "Identity",
    ]
    assert onnx.__version__


def test_onnx_export_of_a_trained_digits_cnn():
    """A CNN trained on scikit-learn's 8x8 digits (flat pixels reshaped to images): ONNX
    Runtime predicts what ``predict`` does, to float32 rounding, on every image."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    model = ln.Sequential([
        Reshape((8, 8, 1)),
        Conv2D(8, 3, padding="same", activation="relu"),
        ln.BatchNorm(),
        MaxPool2D(2),
        Conv2D(16, 3, activation="relu"),
        GlobalAveragePooling2D(),
        ln.Dense(10),
    ])  # fmt: skip
    model.fit(
        X[:1400],
        y[:1400],
        loss="cross_entropy",
        optimizer=ln.Adam(lr=0.01),
        epochs=3,
        batch_size=32,
        seed=0,
        verbose=0,
    )
    assert model.evaluate(X[1400:], y[1400:])["accuracy"] > 0.8
    session = ort.InferenceSession(
        to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"input": X})[0]
    expected = model.predict(X)
    assert np.abs(got - expected).max() <= 1e-5
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
