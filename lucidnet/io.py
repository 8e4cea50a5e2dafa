"""Saving and loading models: one safetensors file, no pickle.

Layout of a ``.lnet`` file (a valid safetensors file, readable by any safetensors tool):

* the safetensors header's ``__metadata__`` holds one key, ``"lucidnet"``, whose value is a JSON
  document: ``format`` (``"lucidnet-model"``), ``format_version``, the lucidnet version, dtype,
  input shape, the architecture (each layer's class name and ``get_config()``), the loss, the
  optimizer's class / config / step counter, the training history and user ``metadata`` (for
  example the fitted data preparation);
* tensors ``param/<layer>/<key>``, ``state/<layer>/<key>`` and ``opt/<slot>/<layer>/<key>``.

Loading parses JSON and raw little-endian arrays only, and resolves class names through the
layer / loss / optimizer registries: nothing in the file can make Python execute code.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Any

import numpy as np

from . import __version__
from . import losses as _losses
from . import optimizers as _optimizers
from .base import LAYERS
from .callbacks import History
from .model import Sequential

FORMAT = "lucidnet-model"
FORMAT_VERSION = 1
_MAX_HEADER = 100_000_000  # safetensors' own limit


class ModelFileError(ValueError):
    """A file that is missing, corrupt, truncated, or not a lucidnet model."""


def save_model(
    model: Sequential,
    path: str | os.PathLike,
    overwrite: bool = False,
    include_optimizer: bool = True,
) -> None:
    """Write ``model`` to ``path`` (atomically: a temporary file renamed into place).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: the model is not built.
    """
    from safetensors.numpy import save

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it")
    if not model.built:
        raise ValueError("cannot save a model that is not built: fit it or call build() first")
    tensors: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for key, value in layer.params.items():
            tensors[f"param/{layer.name}/{key}"] = np.ascontiguousarray(value)
        for key, value in layer.state.items():
            tensors[f"state/{layer.name}/{key}"] = np.ascontiguousarray(value)
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lucidnet_version": __version__,
        "name": model.name,
        "dtype": model.dtype.name,
        "input_shape": list(model.input_shape),
        "layers": [
            {"class": type(layer).__name__, "config": layer.get_config()} for layer in model.layers
        ],
        "loss": None
        if model.loss is None
        else {"class": type(model.loss).__name__, "config": model.loss.get_config()},
        "metrics": list(model.metrics),
        "optimizer": None,
        "history": None if model.history is None else model.history.to_dict(),
        "metadata": model.metadata,
    }
    opt = model.optimizer
    if include_optimizer and opt is not None:
        state = opt.state_dict()
        header["optimizer"] = {
            "class": state["class"],
            "config": state["config"],
            "iterations": state["iterations"],
        }
        for slot, arrays in state["slots"].items():
            for name, arr in arrays.items():
                tensors[f"opt/{slot}/{name}"] = arr
    try:
        meta = json.dumps(header, allow_nan=True)
    except TypeError as exc:
        raise TypeError(f"model.metadata must be JSON-serialisable: {exc}") from None
    data = save(tensors, metadata={"lucidnet": meta})
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lnet-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates the file readable by its owner only (0600); give it the permissions
        # an ordinary open() would (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    """Validate the file and return (lucidnet JSON header, raw file bytes)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"model file {path!r} is a directory, not a file")
    with open(path, "rb") as fh:
        data = fh.read()
    bad = f"{path!r} is not a lucidnet model file"
    if len(data) < 8:
        raise ModelFileError(f"{bad}: it has only {len(data)} bytes (empty or truncated)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ModelFileError(
            f"{bad}: its header length ({n}) does not fit the file size ({len(data)} bytes)"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # (deeply nested JSON)
        raise ModelFileError(f"{bad}: its header is not valid safetensors JSON") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or "lucidnet" not in meta:
        raise ModelFileError(f"{bad}: it is a safetensors file from another program")
    try:
        info = json.loads(meta["lucidnet"])
    except (TypeError, json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"{bad}: its lucidnet header is corrupt") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ModelFileError(
            f"{bad}: unexpected format {info.get('format') if isinstance(info, dict) else info!r}"
        )
    version = info.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has format version {version!r}; this lucidnet ({__version__}) reads up to "
            f"version {FORMAT_VERSION}: upgrade lucidnet"
        )
    return info, data


def load(path: str | os.PathLike) -> Sequential:
    """Load a model saved by :meth:`Sequential.save`.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: the file is corrupt, truncated, or not a lucidnet model.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    info, data = read_header(path)
    bad = f"{os.fspath(path)!r} is a corrupt lucidnet model file"
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelFileError(f"{bad}: {exc}") from None
    try:
        layers = []
        for spec in info["layers"]:
            cls = LAYERS.lookup(spec["class"])
            layers.append(cls.from_config(spec["config"]))
        model = Sequential(layers, dtype=info["dtype"], name=info.get("name"))
        model.build(tuple(info["input_shape"]), seed=0)
        for layer in model.layers:
            for store, prefix in ((layer.params, "param"), (layer.state, "state")):
                for key, arr in store.items():
                    value = tensors[f"{prefix}/{layer.name}/{key}"]
                    if value.shape != arr.shape:
                        raise ValueError(
                            f"{prefix}/{layer.name}/{key} has shape {value.shape}, "
                            f"expected {arr.shape}"
                        )
                    arr[...] = value
        if info.get("loss"):
            loss_cls = _losses.LOSSES.lookup(_loss_key(info["loss"]["class"]))
            model.loss = loss_cls.from_config(info["loss"]["config"])
        model.metrics = list(info.get("metrics", []))
        if info.get("optimizer"):
            opt_info = info["optimizer"]
            model.optimizer = _optimizers.from_state(opt_info)
            slots: dict[str, dict[str, np.ndarray]] = {}
            for name, arr in tensors.items():
                if name.startswith("opt/"):
                    _, slot, rest = name.split("/", 2)
                    slots.setdefault(slot, {})[rest] = arr
            model.optimizer.load_state_dict(
                {
                    "class": opt_info["class"],
                    "iterations": opt_info.get("iterations", 0),
                    "slots": slots,
                },
                model,
            )
        if info.get("history"):
            model.history = History.from_dict(info["history"])
        model.metadata = info.get("metadata") or {}
    except (KeyError, TypeError, ValueError, AttributeError, MemoryError) as exc:
        # MemoryError: an architecture in the header far larger than any real model
        detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(f"{bad}: {detail}") from None
    return model


def _loss_key(class_name: str) -> str:
    for cls in (
        _losses.MSE,
        _losses.MAE,
        _losses.Huber,
        _losses.CrossEntropy,
        _losses.BinaryCrossEntropy,
    ):
        if cls.__name__ == class_name:
            return cls.key
    raise ValueError(f"unknown loss class {class_name!r}")
