"""Export a lucidnet model to ONNX, to run it with ONNX Runtime (or any ONNX consumer).

Every core layer has an exact ONNX counterpart, written with the same arithmetic lucidnet uses so
that ONNX Runtime reproduces ``model.predict`` to float32 rounding:

=================  ==========================================================================
lucidnet layer     ONNX nodes
=================  ==========================================================================
``Dense``          ``MatMul`` (+ ``Add`` bias), then its activation
``Linear``         ``Identity``
``Sigmoid`` ...    ``Sigmoid``, ``Tanh``, ``Relu``, ``LeakyRelu(alpha)``, ``Elu(alpha)``,
                   ``Softmax(axis=-1)``
``GELU``           tanh approximation: ``Gelu(approximate="tanh")`` for opset >= 20, otherwise
                   ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` from primitives
                   (always for float64 models)
``Dropout``        ``Identity`` (inference)
``BatchNorm``      inference form with the running statistics: ``(x - mean) * s + beta``,
                   ``s = gamma / sqrt(running_var + eps)`` (``Sub``, ``Mul``, ``Add``)
``Flatten``        ``Flatten(axis=1)``
``Embedding``      ``Gather`` of the table times the padding mask (``ids != 0``); with
                   ``pooling="mean"`` ``ReduceSum`` over the sequence / ``max(count, 1)``
``Conv1D/2D``      ``Transpose`` to channels-first, ``Conv`` (kernel ``W`` transposed to
                   ``(filters, c_in, *kernel)``, explicit ``pads``: "same"'s odd zero at the
                   end as lucidnet puts it), ``Transpose`` back, then its activation
``MaxPool1D/2D``   ``MaxPool`` between the same two ``Transpose`` nodes
``AvgPool1D/2D``   ``AveragePool(count_include_pad=0)``: "same" averages the real inputs only
``GlobalAverage    ``ReduceMean`` over the spatial axes
Pooling1D/2D``
``Reshape``        ``Reshape`` to ``(batch, *target_shape)``
=================  ==========================================================================

Tensors stay channels-last between layers, as in lucidnet, so ``Flatten`` after a convolution
flattens in lucidnet's order (``(row, column, channel)``) and ``BatchNorm``'s per-channel
constants broadcast over the last axis; only ONNX's channels-first ``Conv`` / pooling operators
are wrapped in ``Transpose`` nodes (ONNX Runtime's optimiser cancels back-to-back pairs).

The loss's output non-linearity (softmax for ``cross_entropy``, sigmoid for
``binary_cross_entropy``, exp for ``poisson``) is appended, so the ONNX output equals
``model.predict``; pass ``include_output_activation=False`` for raw logits. The batch
dimension is dynamic (``"batch"``). ``onnx`` is needed only here: ``pip install lucidnet[onnx]``.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import numpy as np

from .._files import write_bytes_atomically
from .._validation import check_positive_int, describe
from .._version import __version__

__all__ = ["export_onnx", "to_onnx", "export_model_file", "DEFAULT_OPSET", "SUPPORTED_LAYERS"]

#: ONNX opset written by default (supported by every ONNX Runtime since 1.12).
DEFAULT_OPSET = 17
_MIN_OPSET = 13  # Softmax over one axis and ReduceSum with axes as an input start here
#: layer classes the exporter understands.
SUPPORTED_LAYERS = (
    "Dense", "Dropout", "BatchNorm", "Flatten", "Embedding", "Linear", "Sigmoid", "Tanh",
    "ReLU", "LeakyReLU", "ELU", "GELU", "Softmax", "Conv1D", "Conv2D", "MaxPool1D",
    "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "Reshape",
)  # fmt: skip
_CONVS = ("Conv1D", "Conv2D")
_POOLS = {"MaxPool1D": "MaxPool", "MaxPool2D": "MaxPool", "AvgPool1D": "AveragePool",
          "AvgPool2D": "AveragePool"}  # fmt: skip
_GLOBAL_POOLS = ("GlobalAveragePooling1D", "GlobalAveragePooling2D")


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "ONNX export needs the 'onnx' package, which is not installed: "
            "pip install lucidnet[onnx]"
        ) from exc
    return onnx


class _GraphBuilder:
    """Accumulates nodes and initialisers with unique names derived from the layer names."""

    def __init__(self, onnx: Any, dtype: np.dtype, opset: int) -> None:
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()

    def name(self, base: str) -> str:
        candidate, i = base, 1
        while candidate in self._names:
            candidate, i = f"{base}_{i}", i + 1
        self._names.add(candidate)
        return candidate

    def const(self, base: str, value: Any, dtype: Any = None) -> str:
        arr = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self.name(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.name(f"{base}/{op}")
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _activation(g: _GraphBuilder, act: Any, x: str, base: str) -> str:
    """ONNX nodes for an activation layer object applied to tensor ``x``."""
    kind = type(act).__name__
    if kind == "Linear":
        return g.node("Identity", [x], base)
    if kind == "Sigmoid":
        return g.node("Sigmoid", [x], base)
    if kind == "Tanh":
        return g.node("Tanh", [x], base)
    if kind == "ReLU":
        return g.node("Relu", [x], base)
    if kind in ("LeakyReLU", "ELU") and g.dtype == np.float64:
        # ONNX stores alpha as float32 and ONNX Runtime has no float64 Elu: use primitives
        alpha = g.const(f"{base}/alpha", act.alpha)
        positive = g.node("Greater", [x, g.const(f"{base}/zero", 0.0)], base)
        if kind == "LeakyReLU":
            negative = g.node("Mul", [x, alpha], base)
        else:  # alpha (exp(min(x, 0)) - 1)
            clamped = g.node("Min", [x, g.const(f"{base}/zero_", 0.0)], base)
            exp = g.node("Exp", [clamped], base)
            expm1 = g.node("Sub", [exp, g.const(f"{base}/one", 1.0)], base)
            negative = g.node("Mul", [expm1, alpha], base)
        return g.node("Where", [positive, x, negative], base)
    if kind == "LeakyReLU":
        return g.node("LeakyRelu", [x], base, alpha=float(act.alpha))
    if kind == "ELU":
        return g.node("Elu", [x], base, alpha=float(act.alpha))
    if kind == "Softmax":
        return g.node("Softmax", [x], base, axis=-1)
    if kind == "GELU":
        if g.opset >= 20 and g.dtype == np.float32:  # ONNX Runtime's float64 Gelu is inexact
            return g.node("Gelu", [x], base, approximate="tanh")
        # 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2 / pi): lucidnet's formula
        cube = g.node("Mul", [g.node("Mul", [x, x], base), x], base)
        k, c = g.const(f"{base}/k", 0.044715), g.const(f"{base}/c", np.sqrt(2.0 / np.pi))
        inner = g.node("Add", [x, g.node("Mul", [cube, k], base)], base)
        t = g.node("Tanh", [g.node("Mul", [inner, c], base)], base)
        one_plus = g.node("Add", [t, g.const(f"{base}/one", 1.0)], base)
        half_x = g.node("Mul", [x, g.const(f"{base}/half", 0.5)], base)
        return g.node("Mul", [half_x, one_plus], base)
    raise TypeError(
        f"export_onnx does not support activation {kind}; supported: {', '.join(SUPPORTED_LAYERS)}"
    )


def _layer(g: _GraphBuilder, layer: Any, x: str) -> str:
    """ONNX nodes for one lucidnet layer applied to tensor ``x``; returns the output name."""
    kind, base = type(layer).__name__, layer.name
    if kind == "Dense":
        z = g.node("MatMul", [x, g.const(f"{base}/W", layer.params["W"])], base)
        if layer.use_bias:
            z = g.node("Add", [z, g.const(f"{base}/b", layer.params["b"])], base)
        return z if layer.activation is None else _activation(g, layer.activation, z, base)
    if kind == "Dropout":
        return g.node("Identity", [x], base)
    if kind == "BatchNorm":
        # the same arithmetic as BatchNorm.forward(training=False), constants in the model dtype
        inv_std = 1.0 / np.sqrt(layer.state["running_var"] + layer.eps)
        scale = (layer.params["gamma"] * inv_std).astype(g.dtype)
        mean = g.const(f"{base}/running_mean", layer.state["running_mean"])
        centred = g.node("Sub", [x, mean], base)
        scaled = g.node("Mul", [centred, g.const(f"{base}/scale", scale)], base)
        return g.node("Add", [scaled, g.const(f"{base}/beta", layer.params["beta"])], base)
    if kind == "Flatten":
        return g.node("Flatten", [x], base, axis=1)
    if kind == "Embedding":
        emb = g.node("Gather", [g.const(f"{base}/E", layer.params["E"]), x], base, axis=0)
        # id 0 is padding: its positions are zeros (pooling=None) or left out of the mean
        is_pad = g.node("Equal", [x, g.const(f"{base}/pad_id", 0, np.int64)], base)
        mask = g.node("Cast", [g.node("Not", [is_pad], base)], base, to=_onnx_type(g))
        axis2 = g.const(f"{base}/axis2", [2], np.int64)
        if layer.pooling is None:
            return g.node("Mul", [emb, g.node("Unsqueeze", [mask, axis2], base)], base)
        # mean over the non-padding tokens; an all-padding row gives zeros
        axis1 = g.const(f"{base}/axis1", [1], np.int64)
        count = g.node("ReduceSum", [mask, axis1], base, keepdims=1)
        count = g.node("Max", [count, g.const(f"{base}/one", 1.0)], base)
        weights = g.node("Unsqueeze", [g.node("Div", [mask, count], base), axis2], base)
        return g.node("ReduceSum", [g.node("Mul", [weights, emb], base), axis1], base, keepdims=0)
    if kind in _CONVS or kind in _POOLS or kind in _GLOBAL_POOLS or kind == "Reshape":
        return _spatial_layer(g, layer, x)
    if kind in SUPPORTED_LAYERS:
        return _activation(g, layer, x, base)
    raise TypeError(
        f"export_onnx does not support layer {layer.name!r} ({kind}); supported layer types: "
        f"{', '.join(SUPPORTED_LAYERS)}"
    )


def _spatial_layer(g: _GraphBuilder, layer: Any, x: str) -> str:
    """ONNX nodes for a convolution, pooling or Reshape layer on a channels-last tensor."""
    kind, base = type(layer).__name__, layer.name
    if kind == "Reshape":
        shape = g.const(f"{base}/shape", [0, *layer.target_shape], np.int64)  # 0: keep the batch
        return g.node("Reshape", [x, shape], base)
    rank = len(layer.input_shape) - 1  # spatial axes of (n, *spatial, channels)
    if kind in _GLOBAL_POOLS:
        axes = list(range(1, rank + 1))
        if g.opset >= 18:  # ReduceMean takes its axes as an input from opset 18 on
            return g.node(
                "ReduceMean", [x, g.const(f"{base}/axes", axes, np.int64)], base, keepdims=0
            )
        return g.node("ReduceMean", [x], base, axes=axes, keepdims=0)
    if g.dtype == np.float64 and (kind in _CONVS or _POOLS[kind] == "AveragePool"):
        # ONNX Runtime has no float64 Conv / AveragePool kernels: the same sums from primitives
        out = _windows_by_offset(g, layer, x, kind in _CONVS)
    else:
        out = _channels_first_op(g, layer, x, rank)
    act = getattr(layer, "activation", None)
    return out if act is None else _activation(g, act, out, base)


def _channels_first_op(g: _GraphBuilder, layer: Any, x: str, rank: int) -> str:
    """ONNX's own ``Conv`` / ``MaxPool`` / ``AveragePool`` between two ``Transpose`` nodes
    (channels-last -> channels-first -> channels-last)."""
    kind, base = type(layer).__name__, layer.name
    first = g.node("Transpose", [x], base, perm=[0, rank + 1, *range(1, rank + 1)])
    # ONNX pads: every axis's "before", then every axis's "after"
    pads = [int(p[0]) for p in layer.pads] + [int(p[1]) for p in layer.pads]
    if kind in _CONVS:
        # W (*kernel, c_in, filters) -> ONNX's (filters, c_in, *kernel)
        w = np.transpose(layer.params["W"], (rank + 1, rank, *range(rank)))
        inputs = [first, g.const(f"{base}/W", w)]
        if layer.use_bias:
            inputs.append(g.const(f"{base}/b", layer.params["b"]))
        y = g.node(
            "Conv",
            inputs,
            base,
            kernel_shape=list(layer.kernel_size),
            strides=list(layer.stride),
            dilations=list(layer.dilation),
            pads=pads,
        )
    else:
        extra = {"count_include_pad": 0} if _POOLS[kind] == "AveragePool" else {}
        y = g.node(
            _POOLS[kind],
            [first],
            base,
            kernel_shape=list(layer.pool_size),
            strides=list(layer.stride),
            pads=pads,
            **extra,
        )
    return g.node("Transpose", [y], base, perm=[0, *range(2, rank + 2), 1])


def _windows_by_offset(g: _GraphBuilder, layer: Any, x: str, conv: bool) -> str:
    """A convolution (``conv``) or an average pooling on the channels-last tensor ``x`` as
    one strided ``Slice`` of the zero-padded input per kernel offset: the convolution adds
    ``slice @ W[offset]`` (``MatMul`` over the channels) and the bias, the pooling adds the
    slices and divides by each window's count of real inputs. Any dtype (float64 included)."""
    base = layer.name
    rank = len(layer.input_shape) - 1
    size = layer.kernel_size if conv else layer.pool_size
    dilation = layer.dilation if conv else (1,) * rank
    out = layer.output_shape(layer.input_shape)[:-1]
    pads = [0, *(p[0] for p in layer.pads), 0, 0, *(p[1] for p in layer.pads), 0]
    xp = g.node("Pad", [x, g.const(f"{base}/pads", pads, np.int64)], base)
    axes = g.const(f"{base}/axes", list(range(1, rank + 1)), np.int64)
    steps = g.const(f"{base}/steps", list(layer.stride), np.int64)
    total = None
    for offset in np.ndindex(*size):
        begin = [o * d for o, d in zip(offset, dilation)]
        end = [b + s * (m - 1) + 1 for b, s, m in zip(begin, layer.stride, out)]
        starts = g.const(f"{base}/starts", begin, np.int64)
        part = g.node(
            "Slice", [xp, starts, g.const(f"{base}/ends", end, np.int64), axes, steps], base
        )
        if conv:
            part = g.node("MatMul", [part, g.const(f"{base}/W", layer.params["W"][offset])], base)
        total = part if total is None else g.node("Add", [total, part], base)
    assert total is not None  # every window has at least one offset
    if conv:
        if layer.use_bias:
            total = g.node("Add", [total, g.const(f"{base}/b", layer.params["b"])], base)
        return total
    return g.node("Div", [total, g.const(f"{base}/count", _window_counts(layer, out))], base)


def _window_counts(layer: Any, out: tuple[int, ...]) -> np.ndarray:
    """How many real (not padding) inputs each pooling window covers: (*out, 1), the product
    over the axes of each axis's count."""
    per_axis = []
    for m, (lo, _), k, s, n in zip(
        out, layer.pads, layer.pool_size, layer.stride, layer.input_shape[:-1]
    ):
        start = np.arange(m) * s - lo
        per_axis.append((np.minimum(start + k, n) - np.maximum(start, 0)).astype(np.float64))
    return functools.reduce(np.multiply.outer, per_axis).reshape(*out, 1)


def _onnx_type(g: _GraphBuilder) -> int:
    return g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype)


def _resolve(model: Any) -> tuple[Any, dict[str, str]]:
    """The Sequential to export (also from a fitted scikit-learn estimator) and extra
    metadata to record."""
    from ..model import Sequential

    extra: dict[str, str] = {}
    if not isinstance(model, Sequential) and isinstance(getattr(model, "model_", None), Sequential):
        classes = getattr(model, "classes_", None)
        if classes is not None:
            extra["classes"] = json.dumps([c.item() if hasattr(c, "item") else c for c in classes])
        extra["sklearn_estimator"] = type(model).__name__
        model = model.model_
    if not isinstance(model, Sequential):
        raise TypeError(
            "model must be a lucidnet Sequential or a fitted lucidnet estimator, got "
            f"{describe(model)}"
        )
    if not model.built:
        raise ValueError("cannot export a model that is not built: fit it or call build() first")
    return model, extra


def to_onnx(
    model: Any,
    *,
    opset: int = DEFAULT_OPSET,
    include_output_activation: bool = True,
    input_name: str = "input",
    output_name: str = "output",
) -> Any:
    """Build the ONNX graph of ``model`` in memory (see :func:`export_onnx` for the arguments).

    Returns:
        An ``onnx.ModelProto`` that passed ``onnx.checker.check_model``.
    """
    onnx = _import_onnx()
    model, extra = _resolve(model)
    opset = _check_names_and_opset(onnx, opset, input_name, output_name)
    g = _GraphBuilder(onnx, model.dtype, opset)
    act = None if model.loss is None else model.loss.output_activation
    graph = _graph(g, model, act if include_output_activation else None, input_name, output_name)
    opset_ids = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(
        graph,
        opset_imports=opset_ids,
        producer_name="lucidnet",
        producer_version=__version__,
        ir_version=onnx.helper.find_min_ir_version_for(opset_ids),
    )
    if include_output_activation and act is not None:
        kind = "rates" if act == "exp" else "probabilities"
    else:
        kind = "logits" if act is not None else "values"
    meta = {"lucidnet_output": kind, "lucidnet_loss": "" if model.loss is None else model.loss.key}
    onnx.helper.set_model_props(proto, {**meta, **extra})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _check_names_and_opset(onnx: Any, opset: Any, input_name: Any, output_name: Any) -> int:
    """The opset, checked against what the installed onnx supports, and the graph's names."""
    opset = check_positive_int(opset, "opset")
    latest = onnx.defs.onnx_opset_version()
    if not _MIN_OPSET <= opset <= latest:
        raise ValueError(
            f"opset must be in [{_MIN_OPSET}, {latest}] (the installed onnx supports up to "
            f"{latest}), got {opset}"
        )
    for arg, value in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{arg} must be a non-empty str, got {describe(value)}")
    return opset


def _graph(g: _GraphBuilder, model: Any, act: str | None, input_name: str, output_name: str) -> Any:
    """The graph: one group of nodes per layer, then the output activation ``act`` (softmax,
    sigmoid or None), typed input (batch, \\*input_shape) and output (batch, \\*output_shape)."""
    onnx = g.onnx
    g._names.update((input_name, output_name))
    integer_input = model.layers[0].integer_input
    in_type = onnx.TensorProto.INT64 if integer_input else _onnx_type(g)
    x = input_name
    shape = tuple(model.input_shape)
    for layer in model.layers:
        x = _layer(g, layer, x)
        shape = layer.output_shape(shape)
    if act == "softmax":
        x = g.node("Softmax", [x], "output_activation", axis=-1)
    elif act == "sigmoid":
        x = g.node("Sigmoid", [x], "output_activation")
    elif act == "exp":  # poisson: the rate e^z (predict also clips z at 30; Exp does not)
        x = g.node("Exp", [x], "output_activation")
    g.nodes.append(onnx.helper.make_node("Identity", [x], [output_name], name="output"))
    return onnx.helper.make_graph(
        g.nodes,
        model.name,
        [onnx.helper.make_tensor_value_info(input_name, in_type, ["batch", *model.input_shape])],
        [onnx.helper.make_tensor_value_info(output_name, _onnx_type(g), ["batch", *shape])],
        initializer=g.initializers,
    )


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    include_output_activation: bool = True,
    overwrite: bool = False,
    *,
    input_name: str = "input",
    output_name: str = "output",
) -> Any:
    """Write ``model`` to ``path`` as an ONNX file.

    Args:
        model: a built :class:`~lucidnet.Sequential`, or a fitted ``NeuralNetworkClassifier`` /
            ``NeuralNetworkRegressor`` (its ``model_``, whose output is ``predict_proba`` except
            for a binary ``loss="binary_cross_entropy"`` classifier: P(second class), (n, 1);
            the class labels go to the metadata as JSON under ``"classes"``).
        path: destination ``.onnx`` file, written atomically.
        opset: ONNX opset version (13 to the installed onnx's latest; GELU uses the ``Gelu``
            operator from 20 on).
        include_output_activation: append the loss's softmax / sigmoid so the output equals
            ``model.predict``; ``False`` outputs the logits.
        overwrite: replace an existing file.
        input_name, output_name: graph input / output names. The input is
            (batch, \\*input_shape) in the model dtype (int64 token ids for an ``Embedding`` first
            layer); the output is (batch, \\*output_shape) in the model dtype.

    Returns:
        The ``onnx.ModelProto`` written.

    Raises:
        ImportError: ``onnx`` is not installed.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        TypeError: a layer type without ONNX export.
        ValueError: the model is not built, or the opset is out of range.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it")
    proto = to_onnx(
        model,
        opset=opset,
        include_output_activation=include_output_activation,
        input_name=input_name,
        output_name=output_name,
    )
    # whole or not at all, with the permissions open() gives (mkstemp's 0600 before)
    write_bytes_atomically(path, proto.SerializeToString())
    return proto


def export_model_file(
    model_path: str | os.PathLike, onnx_path: str | os.PathLike, **kwargs: Any
) -> dict[str, Any]:
    """Load a lucidnet model file and export it to ONNX (for ``lucidnet export --onnx``).

    Args:
        model_path: a ``.lnet`` file written by ``Sequential.save`` or an estimator's ``save``.
        onnx_path: destination ONNX file.
        **kwargs: passed to :func:`export_onnx` (``opset``, ``include_output_activation``,
            ``overwrite`` ...).

    Returns:
        A summary for printing: ``{"path", "opset", "nodes", "input": (name, shape, type),
        "output": (name, shape, type), "output_kind"}`` where shapes use ``"batch"`` for the
        dynamic axis.
    """
    from ..io import load

    proto = export_onnx(load(model_path), onnx_path, **kwargs)
    onnx = _import_onnx()

    def describe_value(v: Any) -> tuple[str, list, str]:
        t = v.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        return v.name, dims, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name

    props = {p.key: p.value for p in proto.metadata_props}
    return {
        "path": os.fspath(onnx_path),
        "opset": proto.opset_import[0].version,
        "nodes": len(proto.graph.node),
        "input": describe_value(proto.graph.input[0]),
        "output": describe_value(proto.graph.output[0]),
        "output_kind": props.get("lucidnet_output", ""),
    }
