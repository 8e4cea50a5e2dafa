"""Real model files to attack, a way to rewrite their header, and every reader of a model file
run with its outcome classified: shared by ``test_model_file_schema.py`` (one crafted file per
class of failure) and ``test_fuzz_model_files.py`` (the structure-aware fuzzer).

A model file is a safetensors file: an 8-byte little-endian header length, the header JSON (the
tensor table and ``__metadata__``, whose ``"lucidnet"`` entry is the lucidnet JSON document as a
string), then the tensor bytes. :func:`rewrite` changes the lucidnet document and keeps that
layout valid, so the crafted file gets past the safetensors checks to the fields under test.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

import lucidnet as ln
from lucidnet.cli import commands as cli
from lucidnet.data.prep import PreparationWarning
from lucidnet.interop.estimators import (
    NeuralNetworkClassifier,
    NeuralNetworkRegressor,
    load_estimator,
)
from lucidnet.interop.onnx_export import export_model_file
from lucidnet.io import ModelFileWarning

WORDS = "good bad fine poor great awful plot".split()


def make_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small learnable table: a number (with gaps), a category, a short text, a 3-class label
    and a numeric target; small enough that a model file's header is a few KB."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(3)
    city = rng.choice(["Paris", "Lyon", "Nice"], n)
    text = [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]
    score = x + (city == "Paris") - (city == "Nice")
    df = pd.DataFrame(
        {
            "x": x,
            "city": city,
            "review": text,
            "label": np.where(score > 0.5, "high", np.where(score < -0.5, "low", "mid")),
            "price": (10 * score + 50).round(2),
        }
    )
    df.loc[::7, "x"] = np.nan
    return df


def run_cli(argv: list[Any]) -> tuple[int, str, str]:
    """``lucidnet.cli.main(argv)`` in-process, stdout / stderr captured; an exception escapes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@dataclass
class Bases:
    """The real model files every crafted file starts from, and the CSV files to use them on."""

    work: Path
    data: Path  # labelled CSV (both targets)
    clf: Path  # lucidnet train, classification (numeric, categorical, text columns)
    reg: Path  # lucidnet train, regression
    api: Path  # Python API: Sequential fitted and saved, with user metadata
    est_clf: Path  # NeuralNetworkClassifier.save
    est_reg: Path  # NeuralNetworkRegressor.save
    X: np.ndarray  # features for the API model and the estimators


def make_bases(work: Path) -> Bases:
    """Train the base files once (about 2 s)."""
    data = work / "data.csv"
    make_frame().to_csv(data, index=False)
    common = ["--epochs", "3", "--hidden", "4", "--quiet", "--max-features", "20"]
    for name, target, drop in (("clf", "label", "price"), ("reg", "price", "label")):
        code, _, err = run_cli(
            ["train", data, "--target", target, "--drop", drop, "--out", work / f"{name}.lnet"]
            + common
        )
        assert code == 0, err
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    model = ln.Sequential([ln.Dense(4, activation="relu"), ln.Dense(3)], name="api")
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=0, seed=0, validation_split=0.2)
    model.metadata = {"owner": "tests", "tags": ["a", "b"]}
    model.save(work / "api.lnet")
    with warnings.catch_warnings():  # three epochs do not converge, and need not
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = NeuralNetworkClassifier((4,), max_iter=3, random_state=0).fit(X, y)
        reg = NeuralNetworkRegressor((4,), max_iter=3, random_state=0, early_stopping=True)
        reg.fit(X, X[:, 0] * 2.0)
    clf.save(work / "est_clf.lnet")
    reg.save(work / "est_reg.lnet")
    return Bases(
        work,
        data,
        work / "clf.lnet",
        work / "reg.lnet",
        work / "api.lnet",
        work / "est_clf.lnet",
        work / "est_reg.lnet",
        X,
    )


# ---- the file layout ------------------------------------------------------------------------


def split_file(raw: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """(lucidnet document, safetensors header, tensor bytes) of a model file's bytes."""
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return json.loads(header["__metadata__"]["lucidnet"]), header, raw[8 + n :]


def join_file(info: Any, header: dict[str, Any], data: bytes) -> bytes:
    """A model file with ``info`` as its lucidnet document (the tensor table and bytes kept)."""
    header = {**header, "__metadata__": {"lucidnet": json.dumps(info, allow_nan=True)}}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def rewrite(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """Copy ``src`` to ``dst`` with its lucidnet document changed by ``edit`` (in place, or
    return a replacement)."""
    info, header, data = split_file(src.read_bytes())
    replaced = edit(info)
    dst.write_bytes(join_file(info if replaced is None else replaced, header, data))
    return dst


# ---- every reader, with its outcome classified -------------------------------------------------


@dataclass
class Outcome:
    """What one reader did with a file: ``"ok"`` (worked), ``"refused"`` (the documented
    error), ``"escaped"`` (anything else: a traceback, a multi-line error, an undocumented
    exception); ``detail`` says what."""

    reader: str
    kind: str
    detail: str = ""
    warned: bool = False
    #: Python warnings raised while a command ran (in a terminal they would print as two lines
    #: each: NumPy's RuntimeWarnings on a network whose weights overflow); counted, not escapes
    python_warnings: tuple[str, ...] = ()


def _cli_outcome(reader: str, argv: list[Any]) -> Outcome:
    """Exit 0, or exit 2 with one ``lucidnet: error:`` line; every other stderr line is a
    ``lucidnet: warning:`` / ``note:`` line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code, _, err = run_cli(argv)
        except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            return Outcome(reader, "escaped", f"{type(exc).__name__}: {exc}"[:300])
    python = tuple(f"{w.category.__name__}: {w.message}"[:80] for w in caught)
    if any(not issubclass(w.category, RuntimeWarning) for w in caught):
        return Outcome(reader, "escaped", f"Python warning on stderr: {python}"[:300])
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("lucidnet: error: ")]
    others = [line for line in lines if not line.startswith("lucidnet: error: ")]
    warned = any(line.startswith("lucidnet: warning: ") for line in lines)
    if any(not line.startswith(("lucidnet: warning: ", "lucidnet: note: ")) for line in others):
        return Outcome(reader, "escaped", f"exit {code}, stray stderr: {err[-300:]}")
    if code == 0 and not errors:
        return Outcome(reader, "ok", warned=warned, python_warnings=python)
    if code == 2 and len(errors) == 1 and lines[-1] == errors[0]:
        return Outcome(reader, "refused", errors[0][:300], warned, python)
    return Outcome(reader, "escaped", f"exit {code}: {err[-300:]}")


def _library_outcome(reader: str, call: Callable[[], Any], allowed: tuple[type, ...]) -> Outcome:
    """The call worked, or raised one of ``allowed``; warnings other than the model-file ones
    (and NumPy's RuntimeWarnings on non-finite weights) count as escapes too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
        except allowed as exc:
            kind, detail = "refused", f"{type(exc).__name__}: {exc}"[:300]
        except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            return Outcome(reader, "escaped", f"{type(exc).__name__}: {exc}"[:300])
        else:
            kind, detail = "ok", ""
    expected = (ModelFileWarning, PreparationWarning, RuntimeWarning)
    stray = [w for w in caught if not issubclass(w.category, expected)]
    if stray:
        w = stray[0]
        return Outcome(reader, "escaped", f"warning {w.category.__name__}: {w.message}"[:300])
    return Outcome(reader, kind, detail, warned=bool(caught))


def _estimator_use(path: Path, X: np.ndarray) -> None:
    """Load the estimator; when it takes ``X`` as it is (same width, no feature names), predict."""
    est = load_estimator(path)
    if est.n_features_in_ == X.shape[1] and not hasattr(est, "feature_names_in_"):
        est.predict(X[:5])


def _load_and_predict(path: Path, X: np.ndarray) -> None:
    model = ln.load(path)
    if model.input_shape == (X.shape[1],) and not model.layers[0].integer_input:
        model.predict(X[:5])


def readers(path: Path, bases: Bases, onnx_out: Path, cli_data: bool) -> list[Outcome]:
    """Every reader of a model file on ``path``: ``lucidnet.load`` (and ``predict`` when the
    network takes the test features), ``lucidnet info`` / ``predict`` / ``evaluate`` /
    ``explain`` on the labelled CSV, ``lucidnet export``, ``load_estimator`` (and its
    ``predict``) and the ONNX exporter. ``cli_data=False`` skips the commands that read the
    CSV when ``info`` refuses the file (they refuse it at the same point: the loading)."""
    out = [
        _library_outcome(
            "load", lambda: _load_and_predict(path, bases.X), (ln.ModelFileError, ValueError)
        ),
        _cli_outcome("info", ["info", path]),
    ]
    if cli_data or out[-1].kind == "ok":
        data = bases.data
        out += [
            _cli_outcome("predict", ["predict", path, data]),
            _cli_outcome("evaluate", ["evaluate", path, data]),
            _cli_outcome("explain", ["explain", path, data, "--row", "1"]),
        ]
    out.append(
        _library_outcome(
            "load_estimator", lambda: _estimator_use(path, bases.X), (ln.ModelFileError,)
        )
    )
    out.append(_cli_outcome("export", ["export", path, "--onnx", onnx_out, "--overwrite"]))
    # export_onnx documents TypeError for a layer type without ONNX export
    out.append(
        _library_outcome(
            "onnx",
            lambda: export_model_file(path, onnx_out, overwrite=True),
            (ln.ModelFileError, ValueError, TypeError),
        )
    )
    return out
