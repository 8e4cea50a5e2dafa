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

The header has one schema, checked at load before any field is used; each part is checked by
the layer that owns it, so that no module needs to know another's fields:

==========================  ==============================================  ===================
field                       checked by                                      when invalid
==========================  ==============================================  ===================
format, format_version      this module (``_read_header``)                  refused
dtype, input_shape, layers  this module against the tensor table            refused
loss                        this module (class, config, class weights per   refused
                            output unit) and the loss's ``from_config``
optimizer                   this module (class, config, iterations) and     refused
                            the tensor table
metrics                     ``training.resolve_metrics``                    dropped, warning
history                     :meth:`lucidnet.callbacks.History.from_dict`    dropped, warning
name                        this module                                     dropped, warning
metadata                    this module: an object; its *fields* belong to  dropped, warning
                            whoever wrote them (``lucidnet train``: the
                            command's ``cli/model_meta.py``; the
                            estimators: ``interop/estimators.py``; the
                            preparation: ``data/_prep_state.py``), which
                            check them when they read the file
==========================  ==============================================  ===================

"Refused" raises :class:`ModelFileError`: a field needed to rebuild and run the network. A
field that only describes the run is dropped with a :class:`ModelFileWarning` (the model is
usable, and ``lucidnet info`` shows everything that is valid). The checks are plain Python
functions on the parsed JSON (no JSON Schema library): the rules that matter are relations
between fields (class weights per output unit, the tensors the architecture declares), which a
schema language cannot state, and the core stays NumPy-only.

Loading never trusts the header's sizes. It reads the header only (at most
``MAX_HEADER_BYTES``), checks the safetensors tensor table against the file size (contiguous,
in bounds: a truncated file is caught here), derives every parameter's and state array's shape
from the declared architecture by arithmetic on the layer configs, without allocating anything,
and compares them with the shapes and dtypes the tensor table lists. Only a file whose
architecture matches the tensors it stores is built, and only then is its tensor data read, in
one pass. A file of a few bytes therefore cannot make the loader allocate more memory than the
tensors the file really holds (plus the JSON it parses).
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from . import losses as _losses
from . import optimizers as _optimizers
from ._files import write_bytes_atomically
from ._validation import describe
from ._version import __version__
from .base import LAYERS, Layer
from .callbacks import History
from .model import Sequential
from .training import resolve_metrics

FORMAT = "lucidnet-model"
FORMAT_VERSION = 1

#: the largest safetensors header (JSON: tensor table, architecture, history, metadata) that
#: ``load`` accepts by default. Parsing JSON costs up to ~25x its size in Python objects, so this
#: bounds what a small crafted file can make the loader allocate; real headers are a few KB (up to
#: a few MB with a long per-batch loss history or a large fitted text vocabulary). safetensors'
#: own limit is 100 MB.
MAX_HEADER_BYTES = 64 * 2**20
#: the most layers a model file may declare (each costs a Python object before anything is
#: checked against the tensors).
MAX_LAYERS = 10_000
#: the most values one sample (the declared input, or any layer's output) may have: 2**31, i.e.
#: 8 GiB per sample in float32; a larger declared shape is taken for a corrupt file.
MAX_SAMPLE_VALUES = 2**31
_MAX_NDIM = 32  # NumPy's own limit is 64
#: the deepest nesting of JSON objects / lists a header may have (a lucidnet header nests about
#: 8 levels deep; user metadata gets the rest)
MAX_JSON_DEPTH = 64
#: the largest optimizer step counter a file may declare (2**53: exact in a float64, which
#: schedules compute with)
MAX_ITERATIONS = 2**53

# safetensors dtype codes of the float dtypes lucidnet models use
_CODES = {"float32": "F32", "float64": "F64"}
# bytes per value of the safetensors dtype codes (the sub-byte F4 / F6 ones are left unchecked)
_ITEMSIZE = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0"), 1),
    **dict.fromkeys(("U16", "I16", "F16", "BF16"), 2),
    **dict.fromkeys(("U32", "I32", "F32"), 4),
    **dict.fromkeys(("U64", "I64", "F64", "C64"), 8),
}


class ModelFileError(ValueError):
    """A file that is missing, corrupt, truncated, or not a lucidnet model."""


class ModelFileWarning(UserWarning):
    """A model file field that only describes the training run (history, metrics, name,
    metadata) was malformed and has been dropped; the model itself loaded."""


def save_model(
    model: Sequential,
    path: str | os.PathLike[str],
    overwrite: bool = False,
    include_optimizer: bool = True,
) -> None:
    """Write ``model`` to ``path`` (atomically: a temporary file renamed into place).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: the model is not built, or its header (architecture, history, metadata) is
            larger than the ``MAX_HEADER_BYTES`` that :func:`load` accepts.
    """
    from safetensors.numpy import save

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it")
    input_shape = model.input_shape
    if input_shape is None:  # not built
        raise ValueError("cannot save a model that is not built: fit it or call build() first")
    scaling = model.fit_target_scaling
    if scaling is not None:  # saved mid-fit (a checkpoint): in the target's units
        model = model.copy()
        scaling.out_of_model(model)
        model.fit_target_scaling = None
    tensors, header = _tensors_and_header(model, input_shape, include_optimizer)
    try:
        meta = json.dumps(header, allow_nan=True)
    except TypeError as exc:
        raise TypeError(f"model.metadata must be JSON-serialisable: {exc}") from None
    data = save(tensors, metadata={"lucidnet": meta})
    (n_header,) = struct.unpack("<Q", data[:8])
    if n_header > MAX_HEADER_BYTES:
        # refuse here rather than write a file that load() would refuse
        raise ValueError(
            f"cannot save the model: its header (architecture, history and metadata) would be "
            f"{n_header:,} bytes, more than the {MAX_HEADER_BYTES:,} bytes (MAX_HEADER_BYTES) "
            "that lucidnet.load accepts; make model.metadata or model.history smaller"
        )
    _write_atomically(path, data)


def _tensors_and_header(
    model: Sequential, input_shape: tuple[int, ...], include_optimizer: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays to store (``param/``, ``state/``, ``opt/`` names) and the JSON header."""
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
        "input_shape": list(input_shape),
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
    return tensors, header


def _write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file in the same directory,
    fsync-ed, then renamed into place, with the permissions ``open()`` would give (0666 minus the
    umask; an existing file keeps its own). A reader never sees a half-written file, and a
    failure or Ctrl-C leaves the old file intact (:mod:`lucidnet._files`)."""
    write_bytes_atomically(path, data)


# -- reading the header -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    """One tensor of the safetensors table: dtype code, shape, byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _open(path: str | os.PathLike[str]) -> tuple[str, IO[bytes]]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"model file {path!r} is a directory, not a file")
    return path, open(path, "rb")  # (closed by the caller's with block)


def _read_header(
    fh: IO[bytes], path: str, max_header_bytes: int
) -> tuple[dict[str, Any], dict[str, _Entry], int]:
    """Read and check the header of the open file ``fh`` (positioned at 0), leaving ``fh`` at
    the start of the tensor data.

    Returns:
        (lucidnet JSON header, tensor table by name, size of the tensor data in bytes).
    """
    size = os.fstat(fh.fileno()).st_size
    bad = f"{path!r} is not a lucidnet model file"
    prefix = fh.read(8)
    if len(prefix) < 8:
        raise ModelFileError(f"{bad}: it has only {len(prefix)} bytes (empty or truncated)")
    (n,) = struct.unpack("<Q", prefix)
    if 8 + n > size:
        raise ModelFileError(
            f"{bad}: its header length ({n}) does not fit the file size ({size} bytes): "
            "truncated, or not a safetensors file"
        )
    if n > max_header_bytes:
        raise ModelFileError(
            f"{path!r} has a {n:,}-byte header, more than the {max_header_bytes:,} bytes this "
            "loader accepts (lucidnet.io.MAX_HEADER_BYTES); if you trust the file, pass a larger "
            "max_header_bytes to lucidnet.load"
        )
    raw = fh.read(n)
    if len(raw) != n:
        raise ModelFileError(f"{bad}: the file ended inside its header (truncated)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        # ValueError: invalid UTF-8 / JSON, or an integer of more than 4300 digits;
        # RecursionError: deeply nested JSON
        raise ModelFileError(f"{bad}: its header is not valid safetensors JSON") from None
    del raw
    _check_depth(header, f"{bad}: its safetensors header")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or "lucidnet" not in meta:
        raise ModelFileError(f"{bad}: it is a safetensors file from another program")
    try:
        info = json.loads(meta["lucidnet"])
    except (TypeError, ValueError, RecursionError):
        raise ModelFileError(f"{bad}: its lucidnet header is corrupt") from None
    _check_depth(info, f"{bad}: its lucidnet header")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else info
        raise ModelFileError(f"{bad}: unexpected format {describe(found)}")
    version = info.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has format version {describe(version)}; this lucidnet ({__version__}) "
            f"reads up to version {FORMAT_VERSION}: upgrade lucidnet"
        )
    data_len = size - 8 - n
    try:
        table = _tensor_table(header, data_len)
    except ValueError as exc:
        raise ModelFileError(f"{path!r} is a corrupt lucidnet model file: {exc}") from None
    return info, table, data_len


def _check_depth(value: Any, what: str) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH``. Python's JSON parser accepts up to
    ~1,000 levels, but anything that then walks the value recursively (``repr`` in an error
    message, ``copy.deepcopy`` in ``Sequential.copy``) would hit the recursion limit on it:
    checked here once, without recursion."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ModelFileError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _is_size(value: Any) -> bool:
    """A non-negative int from JSON (bools are ints in Python, not sizes)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_table(header: dict[str, Any], data_len: int) -> dict[str, _Entry]:
    """The safetensors tensor table, checked as safetensors itself checks it: well-formed
    entries whose byte ranges tile the ``data_len`` bytes of data exactly (no gap, no overlap),
    so the tensors together hold exactly the data the file has."""
    table: dict[str, _Entry] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        shape = spec.get("shape") if isinstance(spec, dict) else None
        offsets = spec.get("data_offsets") if isinstance(spec, dict) else None
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("dtype"), str)
            or not isinstance(shape, list)
            or not all(_is_size(d) for d in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_size(o) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise ValueError(f"tensor {name!r} has a malformed safetensors entry {describe(spec)}")
        entry = _Entry(spec["dtype"], tuple(shape), offsets[0], offsets[1])
        itemsize = _ITEMSIZE.get(entry.dtype)
        if itemsize is not None and entry.end - entry.begin != math.prod(entry.shape) * itemsize:
            raise ValueError(
                f"tensor {name!r} of shape {entry.shape} and dtype {entry.dtype} "
                f"({_size(entry.shape, entry.dtype)}) occupies {_nbytes(entry.end - entry.begin)} "
                "of the file"
            )
        table[name] = entry
    position = 0
    for name, entry in sorted(table.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != position:
            raise ValueError(
                f"tensor {name!r} starts at byte {entry.begin} of the data, expected {position} "
                "(overlapping or missing tensor data)"
            )
        position = entry.end
    if position > data_len:
        raise ValueError(
            f"the file is truncated: its tensors need {position:,} bytes of data, it holds "
            f"{data_len:,}"
        )
    if position < data_len:
        raise ValueError(f"{data_len - position:,} bytes of unexpected data after the tensors")
    return table


# -- the declared architecture, without allocating ------------------------------------------------
def _declared_arrays(layer: Layer, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]] | None:
    """``{"param/W": shape, "state/...": shape}`` that ``layer.build(shape)`` would create
    (``Layer.array_shapes``), or ``None`` when that cannot be known before building: the class
    that defines the layer's ``build`` does not define ``array_shapes`` too (a user's own layer
    class, or a subclass with its own ``build``). ``tests/test_io.py`` checks the shapes
    against the real ``build`` of every registered layer class."""
    cls = type(layer)
    build_owner = next(c for c in cls.__mro__ if "build" in c.__dict__)
    shapes_owner = next(c for c in cls.__mro__ if "array_shapes" in c.__dict__)
    if not issubclass(shapes_owner, build_owner):
        return None
    return layer.array_shapes(shape)


def _sample_shape(value: Any, what: str) -> tuple[int, ...]:
    """Check a per-sample shape read from the file: 1 to 32 positive integers, at most
    ``MAX_SAMPLE_VALUES`` values in all."""
    if (
        not isinstance(value, (list, tuple))
        or not 1 <= len(value) <= _MAX_NDIM
        or not all(_is_size(d) and d > 0 for d in value)
    ):
        raise ValueError(
            f"{what} must be a list of 1 to {_MAX_NDIM} positive integers, got {describe(value)}"
        )
    shape = tuple(value)
    if math.prod(shape) > MAX_SAMPLE_VALUES:
        raise ValueError(
            f"{what} {shape} has {_count(math.prod(shape))} values per sample, more than the "
            f"{MAX_SAMPLE_VALUES:,} (MAX_SAMPLE_VALUES) a lucidnet model can have"
        )
    return shape


def _count(n: int) -> str:
    """``"1,000"``, or ``"~10^5000"`` for a number too long to print (Python refuses to turn an
    int of more than 4300 digits into a string)."""
    return f"{n:,}" if n < 10**30 else f"~10^{int(n.bit_length() * math.log10(2))}"


def _nbytes(n: int) -> str:
    """``"4.0 GB"``: a byte count for error messages."""
    if n < 1000:
        return f"{n} bytes"
    if n >= 10**18:
        return f"{_count(n)} bytes"
    k = (len(str(n)) - 1) // 3
    return f"{n / 1000**k:.1f} {('kB', 'MB', 'GB', 'TB', 'PB')[k - 1]}"


def _size(shape: tuple[int, ...], code: str) -> str:
    """``"1,000 values, 4.0 kB"``: the size of an array of ``shape`` and dtype ``code``."""
    n = math.prod(shape)
    return f"{_count(n)} value{'s' if n != 1 else ''}, {_nbytes(n * _ITEMSIZE[code])}"


def _declared_model(
    info: dict[str, Any],
) -> tuple[Sequential, dict[str, tuple[int, ...]], str | None, tuple[int, ...]]:
    """The unbuilt model the header declares, the tensors (name -> shape) its parameters and
    state need, why the architecture is impossible (a layer's output too large; ``None`` if it
    is not) and its per-sample output shape; allocates nothing that grows with the declared
    sizes."""
    specs = info["layers"]
    if not isinstance(specs, list) or not specs:
        raise ValueError(f"'layers' must be a non-empty list of layers, got {describe(specs)}")
    if len(specs) > MAX_LAYERS:
        raise ValueError(
            f"it declares {len(specs):,} layers, more than MAX_LAYERS ({MAX_LAYERS:,})"
        )
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in _CODES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {describe(dtype)}")
    shape = _sample_shape(info["input_shape"], "input_shape")
    layers = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
            raise ValueError(
                f"layer {i} must be {{'class': name, 'config': {{...}}}}, got {describe(spec)}"
            )
        cls_name = spec.get("class")
        try:
            if not isinstance(cls_name, str):  # LAYERS.lookup's own message, for a typed call
                raise TypeError(f"layer must be a name (str), got {type(cls_name).__name__}")
            layers.append(LAYERS.lookup(cls_name).from_config(spec["config"]))
        except (TypeError, ValueError) as exc:
            label = cls_name[:60] if isinstance(cls_name, str) else describe(cls_name)
            raise ValueError(f"layer {i} ({label}): {exc}") from None
    name = info.get("name")
    model = Sequential(layers, dtype=dtype, name=name if isinstance(name, str) else None)
    declared: dict[str, tuple[int, ...]] = {}
    for layer in model.layers:
        arrays = _declared_arrays(layer, shape)
        for key, array_shape in (arrays or {}).items():
            prefix, key = key.split("/")
            declared[f"{prefix}/{layer.name}/{key}"] = array_shape
        try:
            shape = _sample_shape(
                list(layer.output_shape(shape)), f"the output shape of layer {layer.name!r}"
            )
        except ValueError as exc:
            # the arrays declared so far (this layer's included) are checked first: their
            # mismatch with the stored tensors is the more useful message
            return model, declared, str(exc), shape
    return model, declared, None, shape


def _mismatch(name: str, shape: tuple[int, ...], entry: _Entry | None, code: str) -> str | None:
    """Why the stored tensor ``entry`` cannot hold the declared array, or ``None`` if it can."""
    if entry is None:
        return (
            f"missing tensor {name!r}: the architecture needs shape {shape} ({_size(shape, code)})"
        )
    if entry.dtype != code:
        return f"{name} has dtype {entry.dtype} in the file, expected {code} (the model's dtype)"
    if entry.shape != shape or entry.end - entry.begin != math.prod(shape) * _ITEMSIZE[code]:
        return (
            f"{name} has shape {entry.shape} in the file ({_size(entry.shape, code)}), "
            f"expected {shape} from the architecture ({_size(shape, code)})"
        )
    return None


def _check_declared(
    declared: dict[str, tuple[int, ...]], table: dict[str, _Entry], code: str, data_len: int
) -> None:
    """Refuse a declared architecture that the stored tensors do not match, naming the first
    tensor that differs; when the declared arrays could not even fit in the file, say so."""
    problem = next(
        (
            why
            for name, shape in declared.items()
            if (why := _mismatch(name, shape, table.get(name), code)) is not None
        ),
        None,
    )
    total = sum(math.prod(shape) for shape in declared.values())
    if total * _ITEMSIZE[code] > data_len:
        raise ValueError(
            f"its architecture declares {_count(total)} parameter and state values "
            f"({_nbytes(total * _ITEMSIZE[code])}) but the file holds only {_nbytes(data_len)} "
            f"of tensor data; first difference: {problem}"
        )
    if problem is not None:
        raise ValueError(problem)


def _check_optimizer_tensors(
    opt: Any, declared: dict[str, tuple[int, ...]], table: dict[str, _Entry], code: str
) -> None:
    """Check the stored optimizer slots (``opt/<slot>/<layer>/<key>``) before any is read."""
    for name, entry in table.items():
        if not name.startswith("opt/"):
            continue
        parts = name.split("/", 2)
        if len(parts) != 3:
            raise ValueError(f"malformed optimizer tensor name {name!r}")
        _, slot, param = parts
        if slot not in opt.slot_names:
            raise ValueError(f"unknown optimizer slot {slot!r} for {type(opt).__name__}")
        shape = declared.get(f"param/{param}")
        if shape is not None:
            why = _mismatch(name, shape, entry, code)
            if why is not None:
                raise ValueError(why)


# -- loading --------------------------------------------------------------------------------------
def load(path: str | os.PathLike[str], *, max_header_bytes: int | None = None) -> Sequential:
    """Load a model saved by :meth:`Sequential.save`.

    The declared architecture is checked against the tensors the file stores before anything is
    built, so a corrupt or crafted file is refused without allocating more than it holds.

    Args:
        path: the ``.lnet`` file.
        max_header_bytes: the largest header (JSON) accepted, by default ``MAX_HEADER_BYTES``
            (64 MiB); raise it only for a file you trust.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: the file is corrupt, truncated, not a lucidnet model, or declares an
            architecture that its tensors do not match.
    """
    path, fh = _open(path)
    bad = f"{path!r} is a corrupt lucidnet model file"
    with fh:
        cap = MAX_HEADER_BYTES if max_header_bytes is None else max_header_bytes
        info, table, data_len = _read_header(fh, path, cap)
        try:
            plan = _plan(info, table, data_len)
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise _corrupt(bad, exc) from None
        # the header is consistent: read the tensor data, in one pass
        data = fh.read(data_len)
    if len(data) != data_len:
        raise ModelFileError(f"{bad}: the file is truncated (it changed while being read?)")
    try:
        _fill(plan, info, table, data)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, MemoryError) as exc:
        # MemoryError: only a user's own layer class (whose arrays cannot be derived before
        # building it) can still ask for more memory than the file holds
        raise _corrupt(bad, exc) from None
    _describe_run(plan.model, info, path)
    return plan.model


@dataclass
class _Plan:
    """What a checked header declares, before any tensor data is read."""

    model: Sequential  # unbuilt, with its loss
    code: str  # safetensors dtype code of the parameters ("F32" / "F64")
    optimizer: _optimizers.Optimizer | None
    opt_state: dict[str, Any]  # for load_state_dict, once the tensors are read


def _plan(info: dict[str, Any], table: dict[str, _Entry], data_len: int) -> _Plan:
    """The model, loss and optimizer the header declares, with every declared array checked
    against the tensor table (no allocation yet)."""
    model, declared, impossible, output_shape = _declared_model(info)
    code = _CODES[model.dtype.name]
    _check_declared(declared, table, code, data_len)
    if impossible is not None:
        raise ValueError(impossible)
    optimizer, opt_state = _declared_optimizer(info.get("optimizer"))
    if optimizer is not None:
        _check_optimizer_tensors(optimizer, declared, table, code)
    model.loss = _declared_loss(info.get("loss"), output_shape)
    return _Plan(model, code, optimizer, opt_state)


def _class_and_config(spec: Any, what: str) -> tuple[str, dict[str, Any]]:
    """``spec`` as ``{"class": name, "config": {...}}`` (the loss's and the optimizer's form)."""
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("class"), str)
        or not isinstance(spec.get("config", {}), dict)
    ):
        raise ValueError(
            f"{what!r} must be an object {{'class': name, 'config': {{...}}}} or null, got "
            f"{describe(spec)}"
        )
    return spec["class"], spec.get("config", {})


def _declared_optimizer(spec: Any) -> tuple[_optimizers.Optimizer | None, dict[str, Any]]:
    """The optimizer the header declares (its slots are loaded later) and its step counter."""
    if spec is None:
        return None, {}
    name, config = _class_and_config(spec, "optimizer")
    iterations = spec.get("iterations", 0)
    if not _is_size(iterations) or iterations > MAX_ITERATIONS:
        raise ValueError(
            f"the optimizer's 'iterations' must be an integer in [0, {MAX_ITERATIONS}], got "
            f"{describe(iterations)}"
        )
    optimizer = _optimizers.from_state({"class": name, "config": config})
    return optimizer, {"class": name, "iterations": iterations}


def _declared_loss(spec: Any, output_shape: tuple[int, ...]) -> _losses.Loss | None:
    """The loss the header declares, its class weights checked against the output units."""
    if spec is None:
        return None
    name, config = _class_and_config(spec, "loss")
    if isinstance(config.get("class_weight"), dict):
        # a {class: weight} dict allocates an array as long as its largest key;
        # lucidnet saves class weights as a list
        raise ValueError("the loss's class_weight must be a list, got a dict")
    loss = _loss_class(name).from_config(config)
    weights = getattr(loss, "class_weight", None)
    if (
        isinstance(loss, _losses.CrossEntropy)
        and weights is not None
        and len(weights) != output_shape[-1]
    ):
        raise ValueError(
            f"the loss's class_weight has {len(weights)} entries for the {output_shape[-1]} "
            "classes (output units) of the network"
        )
    return loss


def _fill(plan: _Plan, info: dict[str, Any], table: dict[str, _Entry], data: bytes) -> None:
    """Build the planned model and copy the stored tensors, optimizer state, history and
    metadata into it."""
    model, code = plan.model, plan.code

    def tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A read-only view of the stored tensor ``name``, checked to be ``shape``."""
        why = _mismatch(name, shape, table.get(name), code)
        if why is not None:
            raise ValueError(why)
        dtype = np.dtype("<f4" if code == "F32" else "<f8")
        return np.frombuffer(data, dtype, math.prod(shape), table[name].begin).reshape(shape)

    model.build(tuple(info["input_shape"]), seed=0)
    for layer in model.layers:
        for store, prefix in ((layer.params, "param"), (layer.state, "state")):
            for key, arr in store.items():
                # (already checked for the known layer classes, not for a user's own)
                arr[...] = tensor(f"{prefix}/{layer.name}/{key}", arr.shape)
    if plan.optimizer is not None:
        model.optimizer = plan.optimizer
        slots: dict[str, dict[str, np.ndarray]] = {}
        for name, entry in table.items():
            if name.startswith("opt/"):
                _, slot, rest = name.split("/", 2)
                slots.setdefault(slot, {})[rest] = tensor(name, entry.shape)
        plan.optimizer.load_state_dict({**plan.opt_state, "slots": slots}, model)


def _describe_run(model: Sequential, info: dict[str, Any], path: str) -> None:
    """Set the fields that only describe the run (metrics, history, name, metadata): each one
    that is malformed is dropped with a :class:`ModelFileWarning` naming it."""
    for field, default, read in _DESCRIPTIVE:
        value = info.get(field)
        if value is None:
            value = default(model)
        else:
            try:
                value = read(model, value)
            except (TypeError, ValueError, OverflowError) as exc:
                warnings.warn(
                    f"{path!r}: its {field!r} entry is malformed and was dropped ({exc})",
                    ModelFileWarning,
                    stacklevel=3,
                )
                value = default(model)
        setattr(model, field, value)


def _read_metrics(model: Sequential, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ValueError(f"expected a list of metric names, got {describe(value)}")
    if model.loss is not None:
        resolve_metrics(model.loss, value)  # known names, that fit the loss
    return list(value)


def _read_name(model: Sequential, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {describe(value)}")
    return value


def _read_metadata(model: Sequential, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {describe(value)}")
    return value


#: the descriptive fields: (header key == model attribute, default, reader raising ValueError)
_DESCRIPTIVE: tuple[tuple[str, Callable[[Sequential], Any], Callable[[Sequential, Any], Any]], ...]
_DESCRIPTIVE = (
    ("metrics", lambda model: [], _read_metrics),
    ("history", lambda model: None, lambda model, value: History.from_dict(value)),
    ("name", lambda model: model.name, _read_name),
    ("metadata", lambda model: {}, _read_metadata),
)


def _corrupt(bad: str, exc: Exception) -> ModelFileError:
    """The ``ModelFileError`` for an error met while reading the file's contents."""
    detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
    return ModelFileError(f"{bad}: {detail}")


def _loss_class(class_name: str) -> type[_losses.Loss]:
    """The registered loss class called ``class_name`` (a model file stores class names)."""
    for key in _losses.LOSSES.names():
        cls = _losses.LOSSES.lookup(key)
        if cls.__name__ == class_name:
            return cls
    raise ValueError(f"unknown loss class {class_name!r}")
