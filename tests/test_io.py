"""Tests for lucidnet.io: exact save/load round trips (weights, BatchNorm state, optimizer state,
history, metadata), the file being plain safetensors, clear ``ModelFileError``s for every kind of
bad file, refusal to overwrite, and loading without pickle."""

from __future__ import annotations

import json
import os
import pickle
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
        "corrupt",
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
        "missing entry 'param/dense_0/W'",
    ),
    "wrong_shape": (
        lambda p, o: _rewrite(p, o, replace={"param/dense_0/b": np.zeros(5, np.float32)}),
        r"param/dense_0/b has shape \(5,\), expected \(16,\)",
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
        "Unable to allocate",
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
