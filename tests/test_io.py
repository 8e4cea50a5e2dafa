"""Tests for lucidnet.io: exact save/load round trips (every layer type, float32 / float64, every
optimizer's state, BatchNorm state, history, metadata and a stored data preparation), the file
being plain safetensors, clear ``ModelFileError``s for every kind of bad file, refusal to
overwrite, and loading without pickle.

Crafted files (a declared architecture far larger than the tensors stored, absurd or malformed
sizes, huge / deeply nested / oversized JSON headers, malformed tensor tables, truncation at any
point) must be refused quickly and without allocating: those tests load under ``tracemalloc``
(NumPy reports its array allocations to it) and require a peak below 50 MB for files that declare
models of 16 GB to 400 TB."""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import lucidnet as ln
from lucidnet import io as lnio


@pytest.fixture(scope="module")
def trained(blobs, tmp_path_factory):
    """A trained model using every stateful piece (BatchNorm, Dropout, Adam) and its file."""
    X, y = blobs
    model = ln.Sequential(
        [ln.Dense(16, activation="relu"), ln.BatchNorm(), ln.Dropout(0.2), ln.Dense(3)]
    )
    model.metadata = {"classes": ["a", "b", "c"], "scaler": {"mean": [0.1, 0.2]}}
    model.fit(
        X,
        y,
        loss=ln.CrossEntropy(label_smoothing=0.1),
        optimizer=ln.Adam(lr=0.01),
        epochs=3,
        metrics=["f1"],
        validation_split=0.2,
        seed=0,
        verbose=0,
    )
    path = tmp_path_factory.mktemp("io") / "model.lnet"
    model.save(path)
    return model, path, X, y


def test_round_trip_is_exact(trained):
    model, path, X, y = trained
    loaded = ln.load(path)
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert np.array_equal(loaded.predict_logits(X), model.predict_logits(X))
    w0, w1 = model.get_weights(), loaded.get_weights()
    assert w0.keys() == w1.keys()
    assert any("running_var" in k for k in w0)  # BatchNorm state is part of it
    for k in w0:
        assert np.array_equal(w0[k], w1[k]) and w0[k].dtype == w1[k].dtype, k
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    assert [a.get_config() for a in loaded.layers] == [a.get_config() for a in model.layers]
    assert loaded.input_shape == model.input_shape and loaded.dtype == model.dtype
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.metrics == model.metrics == ["accuracy", "f1"]
    assert loaded.metadata == model.metadata
    assert loaded.history.history == model.history.history
    assert loaded.history.iteration_loss == model.history.iteration_loss
    assert loaded.evaluate(X, y) == model.evaluate(X, y)


def test_optimizer_state_round_trip(trained):
    model, path, _, _ = trained
    loaded = ln.load(path)
    a, b = model.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert b["class"] == "Adam" and b["config"] == a["config"]
    assert b["iterations"] == a["iterations"] > 0
    for slot in ("m", "v"):
        assert a["slots"][slot].keys() == b["slots"][slot].keys()
        for name in a["slots"][slot]:
            assert np.array_equal(a["slots"][slot][name], b["slots"][slot][name])


def test_without_optimizer(trained, tmp_path):
    model, _, X, _ = trained
    model.save(tmp_path / "small.lnet", include_optimizer=False)
    loaded = ln.load(tmp_path / "small.lnet")
    assert loaded.optimizer is None
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_float64_and_embedding_models_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, size=(30, 6))
    y = (ids[:, 0] > 10).astype(float)
    model = ln.Sequential([ln.Embedding(20, 4), ln.Dense(1)], dtype="float64")
    model.fit(ids, y, loss="bce", epochs=2, seed=0, verbose=0)
    model.save(tmp_path / "emb.lnet")
    loaded = ln.load(tmp_path / "emb.lnet")
    assert loaded.dtype == np.float64
    out = loaded.predict(ids)
    assert out.dtype == np.float64 and np.array_equal(out, model.predict(ids))


def test_file_is_a_valid_safetensors_file(trained):
    model, path, _, _ = trained
    tensors = load_file(str(path))
    for name, param, _ in model.parameters():
        assert np.array_equal(tensors[f"param/{name}"], param)
    assert "state/batchnorm_1/running_mean" in tensors
    assert any(k.startswith("opt/m/") for k in tensors)
    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
    info = json.loads(meta["lucidnet"])
    assert info["format"] == "lucidnet-model" and info["format_version"] == lnio.FORMAT_VERSION
    assert [spec["class"] for spec in info["layers"]] == ["Dense", "BatchNorm", "Dropout", "Dense"]


def test_loading_never_uses_pickle(trained, monkeypatch):
    model, path, X, _ = trained

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading a model")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    loaded = ln.load(path)
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_save_refuses_to_overwrite(trained, tmp_path):
    model, _, X, _ = trained
    path = tmp_path / "m.lnet"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(path)
    assert path.read_text() == "keep me"
    model.save(path, overwrite=True)
    assert np.array_equal(ln.load(path).predict(X), model.predict(X))
    # written atomically: no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.lnet"]


def test_saved_file_has_ordinary_permissions(trained, tmp_path):
    """Like any file open() creates: 0666 minus the umask (not mkstemp's owner-only 0600)."""
    model = trained[0]
    umask = os.umask(0o022)
    try:
        model.save(tmp_path / "m.lnet")
        (tmp_path / "ref.txt").write_text("x")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "m.lnet").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "ref.txt").stat().st_mode) == 0o644


def test_save_errors(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        ln.Sequential([ln.Dense(2)]).save(tmp_path / "x.lnet")
    model = ln.Sequential([ln.Dense(2)])
    model.build((3,))
    model.metadata = {"bad": object()}
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        model.save(tmp_path / "x.lnet")
    assert not (tmp_path / "x.lnet").exists()


# -- bad files --------------------------------------------------------------------------------
def _rewrite(path, out, edit_info=None, drop=None, replace=None):
    """Copy a model file with its lucidnet JSON edited / tensors dropped or replaced."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
    info = json.loads(meta["lucidnet"])
    if edit_info:
        edit_info(info)
    for k in drop or ():
        del tensors[k]
    tensors.update(replace or {})
    save_file(tensors, str(out), metadata={"lucidnet": json.dumps(info)})
    return out


def _set(key, value):
    def edit(info):
        info[key] = value

    return edit


BAD_FILES = {
    "empty": (lambda p, o: o.write_bytes(b""), "only 0 bytes"),
    "truncated_header": (lambda p, o: o.write_bytes(p.read_bytes()[:100]), "does not fit"),
    "truncated_data": (
        lambda p, o: o.write_bytes(p.read_bytes()[: len(p.read_bytes()) - 50]),
        "corrupt lucidnet model file: the file is truncated: its tensors need",
    ),
    "text": (lambda p, o: o.write_text("hello, I am a CSV file\n1,2,3\n"), "not a lucidnet"),
    "random": (
        lambda p, o: o.write_bytes(np.random.default_rng(0).bytes(4096)),
        "not a lucidnet",
    ),
    "numpy_npy": (lambda p, o: np.save(o, np.arange(10.0)), "not a lucidnet"),
    "header_not_json": (
        lambda p, o: o.write_bytes(struct.pack("<Q", 8) + b"{nope!!}" + b"\0" * 8),
        "not valid safetensors JSON",
    ),
    "foreign_safetensors": (
        lambda p, o: save_file({"w": np.ones(3, np.float32)}, str(o), metadata={"a": "b"}),
        "another program",
    ),
    "foreign_safetensors_no_metadata": (
        lambda p, o: save_file({"w": np.ones(3, np.float32)}, str(o)),
        "another program",
    ),
    "lucidnet_key_not_json": (
        lambda p, o: save_file({"w": np.ones(3, np.float32)}, str(o), metadata={"lucidnet": "{"}),
        "header is corrupt",
    ),
    "wrong_format": (lambda p, o: _rewrite(p, o, _set("format", "keras")), "unexpected format"),
    "future_version": (
        lambda p, o: _rewrite(p, o, _set("format_version", 99)),
        "format version 99.*upgrade lucidnet",
    ),
    "missing_tensor": (
        lambda p, o: _rewrite(p, o, drop=["param/dense_0/W"]),
        r"missing tensor 'param/dense_0/W': the architecture needs shape \(4, 16\)",
    ),
    "wrong_shape": (
        lambda p, o: _rewrite(p, o, replace={"param/dense_0/b": np.zeros(5, np.float32)}),
        r"param/dense_0/b has shape \(5,\) in the file \(5 values, 20 bytes\), expected "
        r"\(16,\) from the architecture \(16 values, 64 bytes\)",
    ),
    "unknown_layer": (
        lambda p, o: _rewrite(p, o, lambda info: info["layers"][0].update({"class": "os.system"})),
        "unknown layer 'os.system'",
    ),
    "bad_layer_config": (
        lambda p, o: _rewrite(
            p, o, lambda info: info["layers"][0]["config"].update({"evil": "__import__('os')"})
        ),
        "evil",
    ),
    "unknown_loss": (
        lambda p, o: _rewrite(p, o, _set("loss", {"class": "Hinge", "config": {}})),
        "unknown loss class 'Hinge'",
    ),
    "unknown_optimizer": (
        lambda p, o: _rewrite(p, o, lambda info: info["optimizer"].update({"class": "Lion"})),
        "unknown optimizer class 'Lion'",
    ),
    "deeply_nested_header": (
        lambda p, o: o.write_bytes(struct.pack("<Q", 200_000) + b"[" * 200_000),
        "not valid safetensors JSON",
    ),
    "absurd_architecture": (
        lambda p, o: _rewrite(
            p,
            o,
            lambda info: (
                info.update({"input_shape": [10**7]}),
                info["layers"][0]["config"].update({"units": 10**7}),
            ),
        ),
        r"declares 100,000,080,000,003 parameter and state values \(400.0 TB\) but the file "
        r"holds only 2.1 kB of tensor data; first difference: "
        r"param/dense_0/W has shape \(4, 16\) in the file .*expected \(10000000, 10000000\)",
    ),
    "missing_layers": (
        lambda p, o: _rewrite(p, o, lambda info: info.pop("layers")),
        "missing entry 'layers'",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_raise_model_file_error(kind, trained, tmp_path):
    _, good, _, _ = trained
    make, message = BAD_FILES[kind]
    bad = tmp_path / f"{kind}.lnet"
    make(good, bad)
    if kind == "numpy_npy":
        bad = tmp_path / f"{kind}.lnet.npy"  # np.save appends .npy
    with pytest.raises(ln.ModelFileError, match=message) as info:
        ln.load(bad)
    assert str(bad.name) in str(info.value)  # names the file
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, ln.ModelFileError)
    assert isinstance(info.value, ValueError)  # catchable as a ValueError too


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ln.load(tmp_path / "nope.lnet")
    with pytest.raises(ln.ModelFileError, match="directory"):
        ln.load(tmp_path)


# -- round trips of every layer type, dtype and optimizer ---------------------------------------
def _all_layers_model(dtype):
    """A model holding every layer class that takes float inputs (Embedding: see below)."""
    return ln.Sequential(
        [
            ln.Flatten(),
            ln.Dense(8, activation="relu", l2=1e-3),
            ln.BatchNorm(),
            ln.Dropout(0.1),
            ln.Dense(8, activation="leaky_relu", use_bias=False, input_dim=8),
            ln.ELU(),
            ln.GELU(),
            ln.Tanh(),
            ln.Sigmoid(),
            ln.Linear(),
            ln.LeakyReLU(0.2),
            ln.ReLU(),
            ln.Dense(3, kernel_initializer="glorot_uniform"),
            ln.Softmax(),
        ],
        dtype=dtype,
    )


def _assert_same_model(model, loaded, X):
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    assert [a.get_config() for a in loaded.layers] == [a.get_config() for a in model.layers]
    assert loaded.input_shape == model.input_shape and loaded.dtype == model.dtype
    w0, w1 = model.get_weights(), loaded.get_weights()
    assert w0.keys() == w1.keys()
    for k in w0:
        assert np.array_equal(w0[k], w1[k]) and w0[k].dtype == w1[k].dtype, k
    assert np.array_equal(loaded.predict(X), model.predict(X))
    if model.optimizer is not None:
        a, b = model.optimizer.state_dict(), loaded.optimizer.state_dict()
        assert (b["class"], b["config"], b["iterations"]) == (
            a["class"],
            a["config"],
            a["iterations"],
        )
        assert a["slots"].keys() == b["slots"].keys()
        for slot in a["slots"]:
            assert a["slots"][slot].keys() == b["slots"][slot].keys()
            for name in a["slots"][slot]:
                assert np.array_equal(a["slots"][slot][name], b["slots"][slot][name])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "optimizer",
    [
        ln.SGD(lr=0.05, momentum=0.9, nesterov=True),
        ln.AdaGrad(lr=0.05),
        ln.RMSprop(lr=0.01, momentum=0.5),
        ln.Adam(lr=0.01),
        ln.AdamW(lr=0.01),
    ],
    ids=lambda opt: type(opt).__name__,
)
def test_every_layer_type_round_trips(dtype, optimizer, blobs, tmp_path):
    X, y = blobs
    X = X.reshape(-1, 2, 2)  # through Flatten
    model = _all_layers_model(dtype)
    model.fit(X, y, loss="cross_entropy", optimizer=optimizer, epochs=2, seed=0, verbose=0)
    model.save(tmp_path / "m.lnet")
    loaded = ln.load(tmp_path / "m.lnet")
    _assert_same_model(model, loaded, X)
    # the restored optimizer state continues training exactly as the original would
    for m in (model, loaded):
        m.fit(X, y, loss="cross_entropy", optimizer=m.optimizer, epochs=1, seed=1, verbose=0)
    _assert_same_model(model, loaded, X)


@pytest.mark.parametrize("pooling", ["mean", None])
def test_embedding_models_round_trip(pooling, tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 30, size=(40, 5))
    y = (ids[:, 0] > 15).astype(float)
    layers = [ln.Embedding(30, 4, pooling=pooling)]
    layers += [ln.Flatten()] if pooling is None else []
    model = ln.Sequential([*layers, ln.Dense(1)], dtype="float64")
    model.fit(ids, y, loss="bce", optimizer="rmsprop", epochs=2, seed=0, verbose=0)
    model.save(tmp_path / "emb.lnet")
    _assert_same_model(model, ln.load(tmp_path / "emb.lnet"), ids)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cnn_round_trips(dtype, tmp_path):
    """A convolutional network (every convolution layer, BatchNorm over channels) trained by
    fit: the loaded model predicts the same numbers, keeps its configs and its optimizer state,
    and a file whose convolution kernel does not match its declared architecture is refused."""
    rng = np.random.default_rng(2)
    X = rng.random((40, 36)).astype(dtype)
    y = (X[:, :18].mean(axis=1) > 0.5).astype(int)
    model = ln.Sequential(
        [
            ln.Reshape((6, 6, 1)),
            ln.Conv2D(4, 3, padding="same", activation="relu", l2=0.01),
            ln.BatchNorm(),
            ln.MaxPool2D(2),
            ln.Conv2D(3, (2, 1), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
            ln.AvgPool2D(2, padding="same"),
            ln.Reshape((-1, 3)),
            ln.Conv1D(2, 2, padding="same", activation="tanh"),
            ln.MaxPool1D(2, stride=1),
            ln.GlobalAveragePooling1D(),
            ln.Dense(2),
        ],
        dtype=dtype,
    )
    model.fit(X, y, loss="cross_entropy", epochs=2, batch_size=8, seed=0, verbose=0)
    model.save(tmp_path / "cnn.lnet")
    loaded = ln.load(tmp_path / "cnn.lnet")
    _assert_same_model(model, loaded, X)
    assert [a.get_config() for a in loaded.layers] == [a.get_config() for a in model.layers]
    assert loaded.layers[4].pads == model.layers[4].pads == ((1, 1), (0, 0))
    _, info, tensors = _small_file(tmp_path, layers=[ln.Conv2D(2, 3)], shape=(5, 5, 1))
    tensors["param/conv2d_0/W"] = np.ones((2, 2, 1, 2), np.float32)
    error = _load_small(_write_raw(tmp_path / "bad_kernel.lnet", info, tensors))
    assert re.search(r"param/conv2d_0/W has shape \(2, 2, 1, 2\) .*expected \(3, 3, 1, 2\)", error)


def test_model_with_stored_preparation_round_trips(tmp_path):
    """The CLI keeps the fitted data preparation in metadata["preparation"]."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "x": np.linspace(0.0, 1.0, 40),
            "colour": ["red", "green", "blue", "red"] * 10,
            "text": ["good film", "bad plot", "great acting", "dull"] * 10,
            "y": [0, 1] * 20,
        }
    )
    preparer = ln.TabularPreparer(target="y", min_df=1)
    X = preparer.fit(frame).transform(frame)
    model = ln.Sequential([ln.Dense(4, activation="relu"), ln.Dense(2)])
    model.fit(X, frame["y"].to_numpy(), loss="cross_entropy", epochs=2, seed=0, verbose=0)
    model.metadata = {"preparation": preparer.to_dict(), "classes": [0, 1]}
    model.save(tmp_path / "prep.lnet")
    loaded = ln.load(tmp_path / "prep.lnet")
    assert loaded.metadata == model.metadata
    restored = ln.TabularPreparer.from_dict(loaded.metadata["preparation"])
    assert np.array_equal(restored.transform(frame), X)
    _assert_same_model(model, loaded, X)


def test_parameter_free_model_round_trips(tmp_path):
    model = ln.Sequential([ln.Flatten(), ln.ReLU()])
    model.build((3, 4))
    model.save(tmp_path / "free.lnet")
    loaded = ln.load(tmp_path / "free.lnet")
    X = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    assert loaded.input_shape == (3, 4)
    assert np.array_equal(loaded.predict(X), model.predict(X))


# -- crafted files: refused before anything large is allocated -------------------------------------
def _write_raw(path, info, tensors=None, table=None, data=b""):
    """Write a safetensors file by hand: ``tensors`` (arrays, laid out one after another) or an
    explicit ``table`` of entries with ``data``, and ``info`` as the lucidnet metadata."""
    header = {"__metadata__": {"lucidnet": json.dumps(info)}}
    if tensors is not None:
        chunks, offset = [], 0
        for name, arr in tensors.items():
            raw = np.ascontiguousarray(arr).tobytes()
            code = {"float32": "F32", "float64": "F64", "int64": "I64"}[arr.dtype.name]
            header[name] = {
                "dtype": code,
                "shape": list(arr.shape),
                "data_offsets": [offset, offset + len(raw)],
            }
            chunks.append(raw)
            offset += len(raw)
        data = b"".join(chunks)
    header.update(table or {})
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _small_file(tmp_path, dtype="float32", optimizer=None, layers=None, shape=(4,)):
    """A legitimate small model file and its (lucidnet header, tensors)."""
    model = ln.Sequential(layers or [ln.Dense(3, activation="relu"), ln.Dense(2)], dtype=dtype)
    model.build(shape, seed=0)
    if optimizer is not None:
        model.compile("cross_entropy", optimizer)
        X = np.zeros((2, *shape), dtype=dtype)
        model.fit(X, np.array([0, 1]), epochs=1, verbose=0, seed=0, optimizer=optimizer)
    path = tmp_path / "small.lnet"
    model.save(path, overwrite=True)
    with safe_open(str(path), framework="np") as fh:
        info = json.loads(fh.metadata()["lucidnet"])
    return path, info, load_file(str(path))


def _load_small(path, limit=50_000_000):
    """``ln.load(path)``'s ModelFileError, asserting that loading allocated less than ``limit``
    bytes (NumPy reports its array allocations to tracemalloc) and took under 2 s (~10 ms here)."""
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ln.ModelFileError) as info:
            ln.load(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"loading allocated {peak:,} bytes"
    assert elapsed < 2.0, f"loading took {elapsed:.2f} s"
    assert path.name in str(info.value)
    return str(info.value)


def _edit_dense(units=None, input_shape=None, index=0):
    def edit(info):
        if units is not None:
            info["layers"][index]["config"]["units"] = units
        if input_shape is not None:
            info["input_shape"] = input_shape

    return edit


HUGE = {
    # Dense(10**5) on 10**5 features: W holds 10**10 float32 values, 40 GB
    "dense_40GB": (
        _edit_dense(units=10**5, input_shape=[10**5]),
        "float32",
        r"declares 10,000,300,002 parameter and state values \(40.0 GB\) but the file "
        r"holds only 92 bytes of tensor data; first difference: param/dense_0/W has shape "
        r"\(4, 3\) in the file \(12 values, 48 bytes\), expected \(100000, 100000\) from the "
        r"architecture \(10,000,000,000 values, 40.0 GB\)",
    ),
    # the example of the bug report: Dense(10**6) on (10**5,), 400 GB
    "dense_400GB": (
        _edit_dense(units=10**6, input_shape=[10**5]),
        "float32",
        r"\(400.0 GB\).*param/dense_0/W has shape \(4, 3\).*expected \(100000, 1000000\)",
    ),
    "dense_float64": (
        _edit_dense(units=10**5, input_shape=[10**5]),
        "float64",
        r"\(80.0 GB\).*param/dense_0/W .*expected \(100000, 100000\) .*80.0 GB",
    ),
    # only the second layer is huge: the first tensor that differs is named
    "second_layer": (
        _edit_dense(units=10**10, index=1),
        "float32",
        r"\(160.0 GB\).*first difference: param/dense_1/W has shape \(3, 2\) in the file .*"
        r"expected \(3, 10000000000\)",
    ),
}


@pytest.mark.parametrize("kind", list(HUGE))
def test_huge_declared_architecture_is_refused_without_allocating(kind, tmp_path):
    edit, dtype, message = HUGE[kind]
    _, info, tensors = _small_file(tmp_path, dtype=dtype)
    edit(info)
    error = _load_small(_write_raw(tmp_path / "huge.lnet", info, tensors))
    assert re.search(message, error), error
    assert "is a corrupt lucidnet model file" in error


def test_huge_embedding_vocabulary_is_refused_without_allocating(tmp_path):
    _, info, tensors = _small_file(tmp_path, layers=[ln.Embedding(10, 4), ln.Dense(2)], shape=(6,))
    info["layers"][0]["config"]["input_dim"] = 10**9  # 10**9 x 4 float32: 16 GB
    error = _load_small(_write_raw(tmp_path / "emb.lnet", info, tensors))
    assert re.search(
        r"\(16.0 GB\).*param/embedding_0/E has shape \(10, 4\) in the file \(40 values, 160 "
        r"bytes\), expected \(1000000000, 4\) from the architecture",
        error,
    ), error


def test_huge_batchnorm_input_is_refused_without_allocating(tmp_path):
    _, info, tensors = _small_file(tmp_path, layers=[ln.BatchNorm(), ln.Dense(2)], shape=(3,))
    info["input_shape"] = [10**9]
    error = _load_small(_write_raw(tmp_path / "bn.lnet", info, tensors))
    assert re.search(r"param/batchnorm_0/gamma has shape \(3,\).*expected \(1000000000,\)", error)


def test_huge_class_weight_dict_is_refused_without_allocating(tmp_path):
    """CrossEntropy(class_weight={k: w}) allocates an array of max(k) + 1 weights."""
    _, info, tensors = _small_file(tmp_path)
    info["loss"] = {"class": "CrossEntropy", "config": {"class_weight": {"5000000000": 2.0}}}
    error = _load_small(_write_raw(tmp_path / "cw.lnet", info, tensors))
    assert "class_weight must be a list, got a dict" in error


def test_tensor_table_declaring_huge_shapes_is_refused(tmp_path):
    """The file's own table claims a 40 GB tensor in 48 bytes: safetensors' size rule."""
    _, info, tensors = _small_file(tmp_path)
    info.update(input_shape=[10**5])
    info["layers"][0]["config"]["units"] = 10**5
    path = _write_raw(tmp_path / "t.lnet", info, tensors)
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    header["param/dense_0/W"]["shape"] = [10**5, 10**5]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + path.read_bytes()[8 + header_len :])
    error = _load_small(path)
    assert re.search(
        r"tensor 'param/dense_0/W' of shape \(100000, 100000\) and dtype F32 "
        r"\(10,000,000,000 values, 40.0 GB\) occupies 48 bytes of the file",
        error,
    ), error


@pytest.mark.parametrize(
    "layers, shape",
    [
        ([ln.Flatten(), ln.ReLU()], [10**6, 10**6]),  # 10**12 values per sample
        ([ln.Dropout(0.5)], [2**31 + 1]),
        ([ln.Tanh()], [10**4000]),
    ],
)
def test_huge_input_shape_of_parameter_free_layers_is_refused(layers, shape, tmp_path):
    _, info, tensors = _small_file(tmp_path, layers=layers, shape=(3,))
    info["input_shape"] = shape
    error = _load_small(_write_raw(tmp_path / "free.lnet", info, tensors))
    assert re.search(
        r"input_shape \(.*\) has (~10\^\d+|[\d,]+) values per sample, more than the "
        r"2,147,483,648 \(MAX_SAMPLE_VALUES\)",
        error,
    ), error


def test_huge_layer_output_is_refused(tmp_path):
    """Tensors that match, but a layer output of 2**32 values per sample: refused too."""
    _, info, tensors = _small_file(
        tmp_path, layers=[ln.Embedding(10, 4, pooling=None), ln.Flatten(), ln.Dense(2)], shape=(6,)
    )
    info["input_shape"] = [2**30]
    error = _load_small(_write_raw(tmp_path / "out.lnet", info, tensors))
    assert re.search(
        r"the output shape of layer 'embedding_0' \(1073741824, 4\) has 4,294,967,296 values per "
        r"sample, more than the 2,147,483,648 \(MAX_SAMPLE_VALUES\)",
        error,
    ), error


BAD_SIZES = {
    "negative_input": (_set("input_shape", [-4]), "input_shape must be a list of 1 to 32 positive"),
    "zero_input": (_set("input_shape", [0]), r"positive integers, got \[0\] \(list\)"),
    "float_input": (_set("input_shape", [4.0]), r"got \[4.0\] \(list\)"),
    "string_input": (_set("input_shape", ["4"]), "positive integers"),
    "bool_input": (_set("input_shape", [True]), "positive integers"),
    "empty_input": (_set("input_shape", []), "positive integers"),
    "scalar_input": (_set("input_shape", 4), r"got 4 \(int\)"),
    "too_many_dims": (_set("input_shape", [1] * 33), "1 to 32 positive integers"),
    "negative_units": (
        _edit_dense(units=-3),
        r"layer 0 \(Dense\): units must be an integer >= 1, got -3",
    ),
    "zero_units": (_edit_dense(units=0), "units must be an integer >= 1, got 0"),
    "float_units": (_edit_dense(units=3.0), r"units must be an integer >= 1, got 3.0 \(float\)"),
    "string_units": (_edit_dense(units="3"), r"units must be an integer >= 1, got '3' \(str\)"),
    "bool_units": (_edit_dense(units=True), r"got True \(bool\)"),
    "null_units": (
        lambda info: info["layers"][0]["config"].update(units=None),
        r"got None \(NoneType\)",
    ),
    "wrong_input_dim": (
        lambda info: info["layers"][0]["config"].update(input_dim=7),
        "Dense was declared with input_dim=7, got inputs with 4 features",
    ),
    "dtype": (
        _set("dtype", "complex128"),
        r"dtype must be 'float32' or 'float64', got 'complex128'",
    ),
    "dtype_structured": (_set("dtype", [["a", "<f4", [10**9]]]), "dtype must be 'float32'"),
    "layers_not_list": (_set("layers", {"a": 1}), "'layers' must be a non-empty list"),
    "no_layers": (_set("layers", []), "'layers' must be a non-empty list"),
    "layer_not_object": (_set("layers", [5]), r"layer 0 must be \{'class'"),
    "config_not_object": (
        lambda info: info["layers"][0].update(config=[1, 2]),
        r"layer 0 must be \{'class': name, 'config': \{\.\.\.\}\}",
    ),
    "too_many_layers": (
        _set("layers", [{"class": "ReLU", "config": {}}] * 10_001),
        "declares 10,001 layers, more than MAX_LAYERS",
    ),
    "optimizer_not_object": (_set("optimizer", [1]), "'optimizer' must be an object"),
}


@pytest.mark.parametrize("kind", list(BAD_SIZES))
def test_bad_sizes_and_structure_in_the_header(kind, tmp_path):
    edit, message = BAD_SIZES[kind]
    _, info, tensors = _small_file(tmp_path)
    edit(info)
    error = _load_small(_write_raw(tmp_path / f"{kind}.lnet", info, tensors))
    assert re.search(message, error), error


def test_dtype_of_stored_tensors_must_match(tmp_path):
    _, info, tensors = _small_file(tmp_path)
    tensors["param/dense_0/W"] = tensors["param/dense_0/W"].astype(np.float64)
    error = _load_small(_write_raw(tmp_path / "f64.lnet", info, tensors))
    assert "param/dense_0/W has dtype F64 in the file, expected F32 (the model's dtype)" in error


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.update({"opt/m/dense_0/W": np.zeros((5, 5), np.float32)}),
            r"opt/m/dense_0/W has shape \(5, 5\) in the file .*expected \(4, 3\)",
        ),
        (
            lambda t: t.update({"opt/m/dense_0/W": np.zeros((4, 3), np.float64)}),
            "opt/m/dense_0/W has dtype F64 in the file, expected F32",
        ),
        (
            lambda t: t.update({"opt/velocity/dense_0/W": np.zeros((4, 3), np.float32)}),
            "unknown optimizer slot 'velocity' for Adam",
        ),
        (
            lambda t: t.update({"opt/m": np.zeros(3, np.float32)}),
            "malformed optimizer tensor name 'opt/m'",
        ),
        (
            lambda t: t.pop("opt/v/dense_1/b"),
            "optimizer state lacks slot 'v' for parameter 'dense_1/b'",
        ),
    ],
)
def test_bad_optimizer_tensors(edit, message, tmp_path):
    _, info, tensors = _small_file(tmp_path, optimizer="adam")
    edit(tensors)
    error = _load_small(_write_raw(tmp_path / "opt.lnet", info, tensors))
    assert re.search(message, error), error


def test_header_size_is_capped(trained, tmp_path):
    _, path, _, _ = trained
    size = struct.unpack("<Q", path.read_bytes()[:8])[0]
    with pytest.raises(
        ln.ModelFileError,
        match=rf"has a {size:,}-byte header, more than the "
        r"1,000 bytes this loader accepts .*max_header_bytes",
    ):
        ln.load(path, max_header_bytes=1000)
    assert ln.load(path, max_header_bytes=size).n_params > 0
    # a header just over the default cap, in a (sparse) file that is large enough to hold it:
    # refused from its length alone, before any of it is read
    big = tmp_path / "big.lnet"
    n = lnio.MAX_HEADER_BYTES + 1
    with open(big, "wb") as fh:
        fh.write(struct.pack("<Q", n) + b"{")
        fh.truncate(8 + n)
    error = _load_small(big, limit=5_000_000)
    assert f"has a {n:,}-byte header, more than the {lnio.MAX_HEADER_BYTES:,} bytes" in error


def test_save_refuses_a_header_that_load_would_refuse(tmp_path, monkeypatch):
    model = ln.Sequential([ln.Dense(2)])
    model.build((3,))
    model.metadata = {"notes": "x" * 5000}
    monkeypatch.setattr(lnio, "MAX_HEADER_BYTES", 4000)
    with pytest.raises(ValueError, match=r"header .* would be [\d,]+ bytes, more than the 4,000"):
        model.save(tmp_path / "m.lnet")
    assert not (tmp_path / "m.lnet").exists()
    model.metadata = {}
    model.save(tmp_path / "m.lnet")
    assert ln.load(tmp_path / "m.lnet").n_params == 8


@pytest.mark.parametrize("where", ["metadata", "layer_config"])
def test_deeply_nested_lucidnet_json(where, tmp_path):
    _, info, tensors = _small_file(tmp_path)
    nested = "[" * 100_000 + "]" * 100_000
    text = json.dumps(info)
    if where == "metadata":
        text = text.replace('"metadata": {}', f'"metadata": {nested}')
    else:
        text = text.replace('"units": 3', f'"units": {nested}')
    assert nested in text
    header = {"__metadata__": {"lucidnet": text}}
    path = _write_raw(tmp_path / "deep.lnet", info, tensors)  # for the tensor table
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    table = json.loads(path.read_bytes()[8 : 8 + n])
    table.update(header)
    raw = json.dumps(table).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + path.read_bytes()[8 + n :])
    assert "lucidnet header is corrupt" in _load_small(path)


def test_integer_with_too_many_digits(tmp_path):
    """Python refuses to parse integers of more than 4300 digits (a ValueError, not a
    JSONDecodeError): still a ModelFileError."""
    _, info, tensors = _small_file(tmp_path)
    text = json.dumps(info).replace('"units": 3', '"units": ' + "9" * 5000)
    path = _write_raw(tmp_path / "digits.lnet", info, tensors)
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    table = json.loads(path.read_bytes()[8 : 8 + n])
    table["__metadata__"]["lucidnet"] = text
    raw = json.dumps(table).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + path.read_bytes()[8 + n :])
    assert "lucidnet header is corrupt" in _load_small(path)
    raw = b'{"__metadata__": {"lucidnet": "{}"}, "x": ' + b"1" * 5000 + b"}"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    assert "header is not valid safetensors JSON" in _load_small(path)


def test_truncated_at_every_point(tmp_path):
    path, _, _ = _small_file(tmp_path, optimizer="adam")
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    messages = {}
    for cut in [0, 3, 8, 20, 8 + n - 1, 8 + n, 8 + n + 1, (len(data) + 8 + n) // 2, len(data) - 1]:
        bad = tmp_path / f"cut{cut}.lnet"
        bad.write_bytes(data[:cut])
        messages[cut] = _load_small(bad)
    assert "only 0 bytes" in messages[0] and "only 3 bytes" in messages[3]
    assert "does not fit the file size" in messages[20] and "does not fit" in messages[8 + n - 1]
    for cut in (8 + n, 8 + n + 1, len(data) - 1):
        assert (
            f"the file is truncated: its tensors need {len(data) - 8 - n:,} bytes" in messages[cut]
        )


@pytest.mark.parametrize(
    "table, data, message",
    [
        (  # two tensors over the same bytes: could claim more data than the file holds
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            },
            b"\0" * 8,
            "starts at byte 0 of the data, expected 8 .overlapping or missing",
        ),
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
            b"\0" * 16,
            "'a' starts at byte 8 of the data, expected 0",
        ),
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 12,
            "4 bytes of unexpected data after the tensors",
        ),
        (
            {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
            b"\0" * 8,
            "tensor 'a' has a malformed safetensors entry",
        ),
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
            b"\0" * 8,
            "tensor 'a' has a malformed safetensors entry",
        ),
        (
            {"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}},
            b"\0" * 8,
            "tensor 'a' has a malformed safetensors entry",
        ),
        ({"a": [1, 2]}, b"", "tensor 'a' has a malformed safetensors entry"),
    ],
)
def test_malformed_tensor_tables(table, data, message, tmp_path):
    _, info, _ = _small_file(tmp_path)
    error = _load_small(_write_raw(tmp_path / "t.lnet", info, table=table, data=data))
    assert re.search(message, error), error


def test_extra_tensors_are_ignored(tmp_path):
    """As before: tensors the architecture does not use do not stop a file from loading."""
    path, info, tensors = _small_file(tmp_path)
    tensors["notes/ids"] = np.arange(3, dtype=np.int64)
    loaded = ln.load(_write_raw(tmp_path / "extra.lnet", info, tensors))
    assert np.array_equal(loaded.layers[0].params["W"], tensors["param/dense_0/W"])


def test_every_registered_layer_class_is_checked_before_building():
    """The loader derives each layer's arrays from its config (without allocating): that
    derivation must agree with the layer's real build, for every registered layer class."""
    from lucidnet.base import LAYERS

    examples = [
        (ln.Dense(5), (3,)),
        (ln.Dense(5, use_bias=False, input_dim=3), (3,)),
        (ln.BatchNorm(), (6,)),
        (ln.Embedding(7, 4), (5,)),
        (ln.Embedding(7, 4, pooling=None), (5,)),
        (ln.Dropout(0.5), (2, 3)),
        (ln.Flatten(), (2, 3)),
        *[(cls(), (4,)) for cls in (ln.Linear, ln.Sigmoid, ln.Tanh, ln.ReLU, ln.Softmax)],
        *[(cls(), (4,)) for cls in (ln.LeakyReLU, ln.ELU, ln.GELU)],
        (ln.BatchNorm(), (4, 3, 2)),
        (ln.Conv1D(4, 3, padding="same"), (7, 2)),
        (ln.Conv2D(4, (3, 2), stride=2, use_bias=False), (7, 6, 2)),
        *[(cls(2), (6, 3)) for cls in (ln.MaxPool1D, ln.AvgPool1D)],
        *[(cls(2), (6, 4, 3)) for cls in (ln.MaxPool2D, ln.AvgPool2D)],
        (ln.GlobalAveragePooling1D(), (6, 3)),
        (ln.GlobalAveragePooling2D(), (6, 4, 3)),
        (ln.Reshape((2, -1)), (6,)),
    ]
    covered = {type(layer) for layer, _ in examples}
    registered = set(LAYERS._items.values())
    assert registered <= covered, f"add examples for {registered - covered}"
    for layer, shape in examples:
        declared = lnio._declared_arrays(layer, shape)
        assert declared is not None, type(layer)  # known to the loader: checked before building
        layer.build(shape, np.random.default_rng(0), np.float32)
        built = {f"param/{k}": v.shape for k, v in layer.params.items()}
        built.update({f"state/{k}": v.shape for k, v in layer.state.items()})
        assert declared == built, type(layer)


def test_user_layer_class_is_still_loaded_and_checked(tmp_path, monkeypatch):
    """A layer class the loader does not know is built first, then checked (as before)."""
    from lucidnet.base import LAYERS, Layer

    class Scale(Layer):
        def build(self, input_shape, rng, dtype):
            super().build(input_shape, rng, dtype)
            self._add_param("s", np.ones(input_shape, dtype=dtype))

        def forward(self, x, training=False):
            return x * self.params["s"]

    monkeypatch.setitem(LAYERS._items, "scale", Scale)
    model = ln.Sequential([Scale(), ln.Dense(2)])
    model.build((3,), seed=0)
    model.layers[0].params["s"][...] = [1.0, 2.0, 3.0]
    model.save(tmp_path / "scale.lnet")
    loaded = ln.load(tmp_path / "scale.lnet")
    assert np.array_equal(loaded.layers[0].params["s"], [1.0, 2.0, 3.0])
    _, info, tensors = _small_file(tmp_path, layers=[Scale(), ln.Dense(2)], shape=(3,))
    tensors["param/scale_0/s"] = np.ones(5, np.float32)
    error = _load_small(_write_raw(tmp_path / "bad_scale.lnet", info, tensors))
    assert re.search(r"param/scale_0/s has shape \(5,\) in the file .*expected \(3,\)", error)
