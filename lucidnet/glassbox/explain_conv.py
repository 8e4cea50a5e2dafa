"""The glass box of a convolution or pooling layer: one output value and one weight gradient
worked out in the open, with the numbers of a real training step.

``explain_step`` (:mod:`lucidnet.glassbox.explain`) calls :func:`conv_details` and
:func:`pool_details` for every ``Conv1D`` / ``Conv2D`` and ``MaxPool`` / ``AvgPool`` layer of
the step; both read only what the step recorded (the layer's input, output, parameters before
the update, the gradient it received and the gradients it left) and the layer's configuration.

Forward, for one output value ``y[n, i, j, f]`` of a ``Conv2D`` (channels-last, no kernel
flip, as every framework)::

    z = b[f] + sum_{a, b, c} xpad[n, i*s + a*d, j*s + b*d, c] * W[a, b, c, f]
    y = activation(z)

shown as the patch (the input values under the kernel, zeros where the kernel overlaps the
padding), the kernel slice ``W[..., f]``, their element-wise products, the sum, the bias and
the output. Backward, for one kernel weight::

    dL/dW[a, b, c, f] = sum over the batch n and every output position (i, j) of
                        xpad[n, i*s + a*d, j*s + b*d, c] * dL/dz[n, i, j, f]

shown term by term (the largest few) with their total, which equals the layer's own gradient
(minus the L1/L2 penalty's gradient, shown separately).

The patches are gathered here with plain indexing, independently of the layer's own im2col,
and the whole layer output is recomputed from them: ``check_max_abs_diff`` is the largest
difference between that recomputation and what the layer returned (float32 rounding for a
float32 model), so an explanation that disagreed with the layer would say so.

Pooling: for one output position the window, which input won the max (max-pooling's backward
routes the gradient there and only there) or how many inputs the average covered; the
gradient routing of the whole layer is recomputed and compared with the layer's ``dL/dx``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..convolution import AvgPool1D, AvgPool2D, Conv1D, Conv2D, MaxPool1D, MaxPool2D

__all__ = [
    "ConvForward",
    "ConvWeightGradient",
    "PoolDetail",
    "CONVOLUTIONS",
    "POOLS",
    "conv_details",
    "pool_details",
    "layer_windows",
]

#: the layer classes explained here (subclasses included)
CONVOLUTIONS = (Conv1D, Conv2D)
POOLS = (MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D)
_TOP_TERMS = 5  # terms of a weight gradient shown, largest |x * dL/dz| first


@dataclass
class ConvForward:
    """One output value of a convolution, computed from its patch.

    Attributes:
        sample, position, filter: the output value ``y[sample, *position, filter]``.
        input_index: per spatial axis, the input coordinates under the kernel (a coordinate
            below 0 or past the end is zero padding).
        input_size: the input's spatial size.
        patch: the input values under the kernel, shape ``(*kernel_size, c_in)``.
        kernel: ``W[..., filter]``, the same shape.
        products: ``patch * kernel``.
        total: the sum of the products.
        bias: ``b[filter]`` (0 without a bias).
        z: ``total + bias``, the pre-activation.
        activation: the fused activation's name, or None.
        recomputed: ``activation(z)`` as recomputed here.
        output: the value the layer itself returned at that position.
        check_max_abs_diff: largest |recomputed - layer output| over the whole layer output.
    """

    sample: int
    position: tuple[int, ...]
    filter: int
    input_index: list[list[int]]
    input_size: tuple[int, ...]
    patch: np.ndarray
    kernel: np.ndarray
    products: np.ndarray
    total: float
    bias: float
    z: float
    activation: str | None
    recomputed: float
    output: float
    check_max_abs_diff: float


@dataclass
class ConvWeightGradient:
    """dL/dW of one kernel weight as a sum over the batch and the output positions.

    Attributes:
        weight: the index ``(*kernel_offset, c_in, filter)`` into ``W``.
        n_terms: number of terms (batch size x output positions).
        terms: the largest terms, ``{"sample", "position", "input_index", "x", "dz",
            "product"}``: input value under that weight at that position times dL/dz there.
        total: the sum of all terms.
        penalty_grad: the L1/L2 penalty's gradient for this weight (0 without penalties).
        grad: the layer's own dL/dW at that index (after the step's backward).
        bias_total: dL/db[filter] recomputed as the sum of dL/dz[..., filter].
        bias_grad: the layer's own dL/db[filter] (None without a bias).
    """

    weight: tuple[int, ...]
    n_terms: int
    terms: list[dict[str, Any]]
    total: float
    penalty_grad: float
    grad: float
    bias_total: float
    bias_grad: float | None


@dataclass
class PoolDetail:
    """One output value of a pooling layer and where its gradient goes.

    Attributes:
        kind: ``"max"`` or ``"average"``.
        sample, position, channel: the output value ``y[sample, *position, channel]``.
        input_index: per spatial axis, the input coordinates of the window.
        input_size: the input's spatial size.
        window: the input values of the window (NaN where it covers padding).
        winner: max: the input coordinate that won (first of equal maxima), else None.
        count: average: the number of real (not padding) inputs averaged, else None.
        output: the value the layer returned; ``recomputed``: max / mean of the window.
        d_output: dL/dy at that position.
        d_window: the layer's dL/dx over the window (all of it comes from this position only
            when the windows do not overlap).
        check_max_abs_diff: largest difference between the whole layer output and its
            recomputation here.
        routing_max_abs_diff: largest difference between the layer's dL/dx and the routing
            recomputed here (max: everything to the first maximum of each window; average:
            dL/dy / count to each real input).
    """

    kind: str
    sample: int
    position: tuple[int, ...]
    channel: int
    input_index: list[list[int]]
    input_size: tuple[int, ...]
    window: np.ndarray
    winner: tuple[int, ...] | None
    count: int | None
    output: float
    recomputed: float
    d_output: float
    d_window: np.ndarray
    check_max_abs_diff: float
    routing_max_abs_diff: float


# --------------------------------------------------------------------------------------------
# the windows of a layer, gathered by plain indexing
# --------------------------------------------------------------------------------------------


def _geometry(layer: Any) -> tuple[tuple[int, ...], ...]:
    """(window size, stride, dilation) per spatial axis of a built convolution or pooling
    layer; its ``pads`` (before, after) per axis are set by ``build``."""
    if isinstance(layer, CONVOLUTIONS):
        return layer.kernel_size, layer.stride, layer.dilation
    return layer.pool_size, layer.stride, (1,) * len(layer.pool_size)


def layer_windows(
    layer: Any, x: np.ndarray, fill: float = 0.0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every window of ``layer`` over ``x`` (n, *spatial, c), gathered by plain indexing.

    Returns:
        ``(windows, index)``: windows (n, *out, *window, c) in float64, ``fill`` where a window
        covers padding; index[axis] (out_axis, window_axis): the input coordinate of each
        window element (negative or past the end: padding).
    """
    rank = x.ndim - 2
    k, s, d = _geometry(layer)
    pads = layer.pads
    xpad = np.pad(np.asarray(x, dtype=np.float64), [(0, 0), *pads, (0, 0)], constant_values=fill)
    index = []
    for ax in range(rank):
        span = xpad.shape[1 + ax] - (k[ax] - 1) * d[ax] - 1
        out = span // s[ax] + 1
        index.append(np.arange(out)[:, None] * s[ax] + np.arange(k[ax])[None, :] * d[ax])
    # broadcast the per-axis (out, window) grids to (*out, *window), axis by axis
    grids = []
    for ax in range(rank):
        shape = [1] * (2 * rank)
        shape[ax], shape[rank + ax] = index[ax].shape
        grids.append(index[ax].reshape(shape))
    windows = xpad[(slice(None), *grids)]  # (n, *out, *window, c)
    return windows, [i - pads[ax][0] for ax, i in enumerate(index)]


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------


def _activate(layer: Any, z: np.ndarray, d_out: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """``activation(z)`` and, given dL/dy, dL/dz, on a private copy of the layer's fused
    activation (its cache belongs to the step)."""
    act = getattr(layer, "activation", None)
    if act is None:
        return z, d_out
    work = copy.deepcopy(act)
    y = work.forward(z, training=True)
    return y, None if d_out is None else work.backward(d_out)


def _default_output_index(out: np.ndarray) -> tuple[int, ...]:
    """Sample 0, at the position and channel of its largest |output| (an active unit)."""
    first = np.abs(np.asarray(out[0], dtype=np.float64))
    return (0, *(int(i) for i in np.unravel_index(int(np.argmax(first)), first.shape)))


def _check_index(index: Any, shape: tuple[int, ...], what: str, layer: str) -> tuple[int, ...]:
    idx = tuple(int(i) for i in index)
    if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape)):
        raise ValueError(
            f"{what} for layer {layer!r} must be an index into shape {shape}, got {tuple(index)}"
        )
    return idx


def conv_details(
    layer: Any,
    x: np.ndarray,
    out: np.ndarray,
    params: dict[str, np.ndarray],
    d_out: np.ndarray,
    grads: dict[str, np.ndarray],
    output_index: Any = None,
    weight_index: Any = None,
) -> tuple[ConvForward, ConvWeightGradient]:
    """One output value and one weight gradient of a convolution layer, from a step's record.

    Args:
        layer: the ``Conv1D`` / ``Conv2D`` layer (its geometry and fused activation).
        x: its input (n, *spatial, c_in); out: its output (n, *out_spatial, filters).
        params: ``W`` (*kernel_size, c_in, filters) and ``b`` before the update.
        d_out: dL/d(output) it received; grads: the gradients its backward left.
        output_index: ``(sample, *position, filter)``; default: sample 0 at its largest |output|.
        weight_index: ``(*kernel_offset, c_in, filter)``; default: the largest |dL/dW|.
    """
    W = np.asarray(params["W"], dtype=np.float64)
    F = W.shape[-1]
    windows, index = layer_windows(layer, x)
    n, out_shape = windows.shape[0], windows.shape[1 : 1 + len(index)]
    flat = windows.reshape(n, *out_shape, -1)
    b = np.asarray(params["b"], dtype=np.float64) if "b" in params else np.zeros(F)
    z = flat @ W.reshape(-1, F) + b
    y, dz = _activate(layer, z, np.asarray(d_out, dtype=np.float64))
    oi = _default_output_index(out) if output_index is None else output_index
    oi = _check_index(oi, tuple(out.shape), "output_index", str(layer.name))
    forward = _conv_forward(layer, windows, index, W, b, z, y, out, oi, tuple(x.shape[1:-1]))
    wi = weight_index
    if wi is None:
        g = np.abs(np.asarray(grads["W"], dtype=np.float64))
        wi = np.unravel_index(int(np.argmax(g)), g.shape)
    wi = _check_index(wi, W.shape, "weight_index", str(layer.name))
    return forward, _conv_weight_gradient(layer, windows, index, W, dz, grads, wi)


def _conv_forward(
    layer: Any,
    windows: np.ndarray,
    index: list[np.ndarray],
    W: np.ndarray,
    b: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    out: np.ndarray,
    oi: tuple[int, ...],
    input_size: tuple[int, ...],
) -> ConvForward:
    sample, position, f = oi[0], oi[1:-1], oi[-1]
    patch = windows[(sample, *position)]
    kernel = W[..., f]
    products = patch * kernel
    act = getattr(layer, "activation", None)
    return ConvForward(
        sample=sample,
        position=tuple(position),
        filter=f,
        input_index=[[int(v) for v in index[ax][p]] for ax, p in enumerate(position)],
        input_size=input_size,
        patch=patch,
        kernel=kernel,
        products=products,
        total=float(products.sum()),
        bias=float(b[f]),
        z=float(z[(sample, *position, f)]),
        activation=None if act is None else str(act.key),
        recomputed=float(y[oi]),
        output=float(out[oi]),
        check_max_abs_diff=float(np.max(np.abs(y - out))) if y.size else 0.0,
    )


def _conv_weight_gradient(
    layer: Any,
    windows: np.ndarray,
    index: list[np.ndarray],
    W: np.ndarray,
    dz: np.ndarray,
    grads: dict[str, np.ndarray],
    wi: tuple[int, ...],
) -> ConvWeightGradient:
    rank = len(index)
    offset, c, f = wi[:rank], wi[rank], wi[-1]
    xs = windows[(Ellipsis, *offset, c)]  # (n, *out): the input under W[offset, c] everywhere
    products = xs * dz[..., f]
    flat = np.abs(products).reshape(-1)
    top = np.argsort(-flat, kind="stable")[:_TOP_TERMS]
    terms = []
    for t in top:
        pos = np.unravel_index(int(t), products.shape)
        at = [int(index[ax][pos[1 + ax], offset[ax]]) for ax in range(rank)]
        terms.append(
            {
                "sample": int(pos[0]),
                "position": [int(p) for p in pos[1:]],
                "input_index": [int(pos[0]), *at, int(c)],
                "x": float(xs[pos]),
                "dz": float(dz[(*pos, f)]),
                "product": float(products[pos]),
            }
        )
    w = float(W[wi])
    l1, l2 = float(getattr(layer, "l1", 0.0) or 0.0), float(getattr(layer, "l2", 0.0) or 0.0)
    has_b = "b" in grads
    return ConvWeightGradient(
        weight=wi,
        n_terms=int(products.size),
        terms=terms,
        total=float(products.sum()),
        penalty_grad=l1 * float(np.sign(w)) + 2.0 * l2 * w,
        grad=float(grads["W"][wi]),
        bias_total=float(dz[..., f].sum()),
        bias_grad=float(grads["b"][f]) if has_b else None,
    )


# --------------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------------


def _pool_routing(
    kind: str, windows: np.ndarray, index: list[np.ndarray], d_out: np.ndarray, shape: tuple
) -> np.ndarray:
    """dL/dx of the pooling layer recomputed: max: each window's dL/dy to its first maximum;
    average: dL/dy / count to each real input of the window."""
    n, c, rank = windows.shape[0], windows.shape[-1], len(index)
    out_shape = windows.shape[1 : 1 + rank]
    win_shape = windows.shape[1 + rank : 1 + 2 * rank]
    flat = windows.reshape(n, *out_shape, -1, c)
    dx = np.zeros(shape)
    spatial = shape[1:-1]
    grid = np.indices((n, *out_shape, c), sparse=True)
    if kind == "max":
        won = np.unravel_index(np.argmax(flat, axis=-2), win_shape)  # per axis (n, *out, c)
        coords = [index[ax][grid[1 + ax], won[ax]] for ax in range(rank)]
        np.add.at(dx, (grid[0], *coords, grid[-1]), d_out)
        return dx
    valid = ~np.isnan(flat)
    share = d_out / valid.sum(axis=-2)
    for w in range(flat.shape[-2]):  # each window element in turn (a handful)
        off = np.unravel_index(w, win_shape)
        # padding (NaN in the window) gets no share; its clipped coordinate receives 0
        coords = [
            np.clip(index[ax][grid[1 + ax], off[ax]], 0, spatial[ax] - 1) for ax in range(rank)
        ]
        np.add.at(dx, (grid[0], *coords, grid[-1]), np.where(valid[..., w, :], share, 0.0))
    return dx


def pool_details(
    layer: Any,
    x: np.ndarray,
    out: np.ndarray,
    d_out: np.ndarray,
    d_input: np.ndarray,
    output_index: Any = None,
) -> PoolDetail:
    """One output value of a ``MaxPool`` / ``AvgPool`` layer and where its gradient goes.

    Args:
        layer: the pooling layer; x / out: its input and output; d_out / d_input: the gradient
            it received and the one it returned.
        output_index: ``(sample, *position, channel)``; default: sample 0 at its largest
            |output|.
    """
    kind = "max" if isinstance(layer, (MaxPool1D, MaxPool2D)) else "average"
    windows, index = layer_windows(layer, x, fill=-np.inf if kind == "max" else np.nan)
    rank = len(index)
    oi = _default_output_index(out) if output_index is None else output_index
    oi = _check_index(oi, tuple(out.shape), "output_index", str(layer.name))
    sample, position, ch = oi[0], oi[1:-1], oi[-1]
    flat = windows.reshape(*windows.shape[: 1 + rank], -1, windows.shape[-1])
    pooled = flat.max(axis=-2) if kind == "max" else np.nanmean(flat, axis=-2)
    window = windows[(sample, *position, Ellipsis, ch)]
    window = np.where(np.isinf(window), np.nan, window)
    in_index = [[int(v) for v in index[ax][p]] for ax, p in enumerate(position)]
    winner = count = None
    if kind == "max":
        at = np.unravel_index(int(np.nanargmax(window)), window.shape)
        winner = (sample, *(in_index[ax][a] for ax, a in enumerate(at)), ch)
    else:
        count = int(np.sum(~np.isnan(window)))
    d_in = np.asarray(d_input, dtype=np.float64)
    d_pad = np.pad(d_in, [(0, 0), *[(x.shape[1 + a], x.shape[1 + a]) for a in range(rank)], (0, 0)])
    grids = np.ix_(*[np.asarray(i) + x.shape[1 + ax] for ax, i in enumerate(in_index)])
    routed = _pool_routing(kind, windows, index, np.asarray(d_out, dtype=np.float64), x.shape)
    return PoolDetail(
        kind=kind,
        sample=sample,
        position=tuple(position),
        channel=ch,
        input_index=in_index,
        input_size=tuple(x.shape[1:-1]),
        window=window,
        winner=winner,
        count=count,
        output=float(out[oi]),
        recomputed=float(pooled[oi]),
        d_output=float(d_out[oi]),
        d_window=d_pad[sample][(*grids, ch)],
        check_max_abs_diff=float(np.max(np.abs(pooled - out))) if out.size else 0.0,
        routing_max_abs_diff=float(np.max(np.abs(routed - d_in))) if d_in.size else 0.0,
    )
