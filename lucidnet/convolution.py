"""Convolutional layers, channels-last like Keras: ``Conv1D``, ``Conv2D``, ``MaxPool1D/2D``,
``AvgPool1D/2D``, ``GlobalAveragePooling1D/2D`` and ``Reshape``.

Shapes: a 1-D layer takes ``(n, length, channels)``, a 2-D layer ``(n, height, width,
channels)``. A convolution is a cross-correlation (no kernel flip, like every framework)::

    y[n, i, j, f] = b[f] + sum_{a, b, c} xpad[n, i*s + a*d, j*s + b*d, c] * W[a, b, c, f]

with stride ``s``, dilation ``d`` and ``xpad`` the input with zeros around it. It is computed as
one matrix product over *patches* (im2col): every output position's receptive field, flattened
in the order ``(a, b, c)``, is a row of a matrix ``P`` (n * positions, kh * kw * c_in), so that
``z = P @ W.reshape(-1, filters) + b`` is a Dense layer applied to patches. The patches are
read from a strided view of the padded input (``as_strided``: no Python loop over positions);
backward is the Dense backward on patches (``dW = P^T dz``, ``dP = dz W^T``) followed by
col2im, which adds each patch gradient back where the patch came from (one vectorised
slice-add per kernel offset: positions overlap when the stride is smaller than the kernel).

Output size per spatial axis: ``(in + before + after - d*(k - 1) - 1) // s + 1``, with the
padding ``(before, after)``: ``"valid"`` no padding; ``"same"`` the zeros TensorFlow adds
(output size ``ceil(in / s)``; stride 1 keeps the size; an odd total puts the extra zero at the
end); an int ``p``: ``p`` zeros on each side (PyTorch's ``padding=p``); a pair of ints (2-D):
per axis.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import initializers
from . import kernels as _kernels
from ._validation import check_positive_int, describe
from .activations import Activation
from .base import LAYERS, Layer
from .layers import KernelLayer

__all__ = [
    "Conv1D",
    "Conv2D",
    "MaxPool1D",
    "MaxPool2D",
    "AvgPool1D",
    "AvgPool2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "Reshape",
]

_PADDING_NAMES = ("valid", "same")
Pads = tuple[tuple[int, int], ...]


# -- argument checks ------------------------------------------------------------------------------
def _int_tuple(value: Any, rank: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int, or a sequence of ``rank`` ints) as a tuple of ``rank`` ints >=
    ``minimum``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (check_positive_int(value, name, minimum=minimum),) * rank
    if isinstance(value, (tuple, list)) and len(value) == rank:
        return tuple(check_positive_int(v, name, minimum=minimum) for v in value)
    what = "an int" if rank == 1 else f"an int or a sequence of {rank} ints"
    raise TypeError(f"{name} must be {what} (each >= {minimum}), got {describe(value)}")


def _check_padding(value: Any, rank: int, allow_ints: bool = True) -> str | int | tuple[int, ...]:
    """``"valid"``, ``"same"``, an int >= 0 or (2-D) a sequence of ``rank`` ints >= 0."""
    if isinstance(value, str):
        if value not in _PADDING_NAMES:
            raise ValueError(
                f"padding must be one of {list(_PADDING_NAMES)}"
                + (" or an int >= 0" if allow_ints else "")
                + f", got {value!r}"
            )
        return value
    if allow_ints:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return check_positive_int(value, "padding", minimum=0)
        if isinstance(value, (tuple, list)) and len(value) == rank:
            return _int_tuple(value, rank, "padding", minimum=0)
    expected = "'valid' or 'same'"
    if allow_ints:
        expected += " or an int >= 0" + (f" or a sequence of {rank} ints" if rank > 1 else "")
    raise TypeError(f"padding must be {expected}, got {describe(value)}")


def _resolve_pads(
    padding: str | int | tuple[int, ...],
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> Pads:
    """``(before, after)`` zeros per spatial axis for ``padding`` on inputs of ``spatial``
    size."""
    if padding == "valid":
        return tuple((0, 0) for _ in spatial)
    if padding == "same":  # TensorFlow's rule: out = ceil(in / s), the odd zero at the end
        pads = []
        for size, k, s, d in zip(spatial, kernel, stride, dilation):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return tuple((padding, padding) for _ in spatial)
    return tuple((int(p), int(p)) for p in padding)


def _output_spatial(
    who: str,
    spatial: tuple[int, ...],
    pads: Pads,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """``(in + before + after - d (k - 1) - 1) // s + 1`` per axis; a ``ValueError`` naming
    the sizes when the (dilated) kernel does not fit in the padded input."""
    out = []
    for axis, (size, (lo, hi), k, s, d) in enumerate(zip(spatial, pads, kernel, stride, dilation)):
        span, padded = d * (k - 1) + 1, size + lo + hi
        if span > padded:
            raise ValueError(
                f"{who}: the kernel spans {span} positions on spatial axis {axis} (size {k}, "
                f"dilation {d}), more than the padded input's {padded} (input {size}, padding "
                f"{lo} + {hi}); use a smaller kernel_size, padding='same', or larger inputs"
            )
        out.append((padded - span) // s + 1)
    return tuple(out)


def _rank_error(who: str, axes: str, shape: tuple[int, ...], rank: int) -> ValueError:
    """The error for a per-sample input shape of the wrong rank, with the Reshape that fixes
    the usual mistakes (flattened images, a missing channel axis)."""
    hint = ""
    if len(shape) == rank:
        hint = f"; add Reshape({(*shape, 1)}) for one channel"
    elif len(shape) == 1 and rank == 2 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        hint = f"; add Reshape({(side, side, 1)})"
    return ValueError(f"{who} expects {axes} inputs, got per-sample shape {shape}{hint}")


# -- patches: im2col and col2im ---------------------------------------------------------------
def _pad(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """``x`` (n, *spatial, c) with ``pads`` added around its spatial axes (``x`` itself when
    there is nothing to add)."""
    if not any(lo or hi for lo, hi in pads):
        return x
    return np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=value)


def window_view(
    xp: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    out: tuple[int, ...],
) -> np.ndarray:
    """A read-only strided view (n, *out, *kernel, c) of the padded input ``xp`` (n, *spatial,
    c): ``view[n, i, j, a, b, c] = xp[n, i*s + a*d, j*s + b*d, c]``. No copy: the receptive
    fields overlap in memory."""
    st = xp.strides
    space = st[1:-1]
    strides = (
        st[0],
        *(s * k for s, k in zip(space, stride)),
        *(s * d for s, d in zip(space, dilation)),
        st[-1],
    )
    shape = (xp.shape[0], *out, *kernel, xp.shape[-1])
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def add_windows(
    dxp: np.ndarray,
    dwin: np.ndarray,
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> np.ndarray:
    """col2im: add ``dwin`` (n, *out, *kernel, c), the gradient of every window of
    :func:`window_view`, into ``dxp`` (n, *spatial, c) where each window was read, and return
    ``dxp``. One slice-add per kernel offset ``(a, b)``: ``dxp[:, a*d :: s, b*d :: s] +=
    dwin[:, :, :, a, b]`` (the positions a window overlaps with its neighbours get the sum)."""
    rank = len(stride)
    out, kernel = dwin.shape[1 : 1 + rank], dwin.shape[1 + rank : 1 + 2 * rank]
    for offset in np.ndindex(*kernel):
        target = tuple(
            slice(o * d, o * d + s * (m - 1) + 1, s)
            for o, d, s, m in zip(offset, dilation, stride, out)
        )
        dxp[(slice(None),) + target] += dwin[(slice(None),) * (1 + rank) + offset]
    return dxp


def _crop(dxp: np.ndarray, pads: Pads) -> np.ndarray:
    """The part of ``dxp`` (n, *padded, c) that is not padding."""
    inner = tuple(slice(lo, dxp.shape[1 + i] - hi) for i, (lo, hi) in enumerate(pads))
    return dxp[(slice(None),) + inner]


def _cropped(layer: Layer, dxp: np.ndarray, pads: Pads, x_shape: tuple[int, ...]) -> np.ndarray:
    """A fast backward's dL/dx from dL/dxpad: the padding cut off (into the layer's workspace
    of the input's ``x_shape``), or ``dxp`` itself without padding."""
    if not any(lo or hi for lo, hi in pads):
        return dxp
    dx = layer._workspace("dx", x_shape, dxp.dtype)
    dx[...] = _crop(dxp, pads)
    return dx


def _image_axes(sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Per-axis sizes of a 1-D or 2-D layer as an image's (height, width): the compiled kernels
    are written for images, and a sequence is an image of height 1."""
    return sizes if len(sizes) == 2 else (1, *sizes)


def _as_image(a: np.ndarray) -> np.ndarray:
    """``a`` (n, *spatial, c) as (n, height, width, c) (a view)."""
    return a.reshape(a.shape[0], *_image_axes(a.shape[1:-1]), a.shape[-1])


def _kernel_ready(layer: Layer, name: str, kind: str, size: int, *arrays: np.ndarray) -> bool:
    """Whether ``layer`` runs the compiled kernel ``name`` now on ``size`` elements
    (:class:`lucidnet.kernels.Gate`, one per layer and kernel) with C-contiguous ``arrays``."""
    gate = _kernels.gate_for(layer, kind, name)
    return gate.ready(size) and all(a.flags.c_contiguous for a in arrays)


# -- convolutions ---------------------------------------------------------------------------------
class _Conv(KernelLayer):
    """The convolution of any rank; ``Conv1D`` and ``Conv2D`` fix the rank and the axes."""

    rank: ClassVar[int] = 2
    axes: ClassVar[str] = "(n, height, width, channels)"

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = "valid",
        dilation: int | Sequence[int] = 1,
        activation: str | Activation | None = None,
        use_bias: bool = True,
        kernel_initializer: str = "auto",
        l1: float = 0.0,
        l2: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = _int_tuple(kernel_size, self.rank, "kernel_size")
        self.stride = _int_tuple(stride, self.rank, "stride")
        self.padding = _check_padding(padding, self.rank)
        self.dilation = _int_tuple(dilation, self.rank, "dilation")
        self._kernel_options(activation, use_bias, kernel_initializer, l1, l2)
        self.pads: Pads = ()

    # -- shapes ---------------------------------------------------------------------------------
    def _geometry(self, input_shape: tuple[int, ...]) -> tuple[Pads, tuple[int, ...]]:
        """The padding and the output's spatial size for a per-sample ``input_shape``."""
        who = type(self).__name__
        if len(input_shape) != self.rank + 1:
            raise _rank_error(who, self.axes, tuple(input_shape), self.rank)
        spatial = tuple(input_shape[:-1])
        k, s, d = self.kernel_size, self.stride, self.dilation
        pads = _resolve_pads(self.padding, spatial, k, s, d)
        return pads, _output_spatial(who, spatial, pads, k, s, d)

    @property
    def multiply_adds(self) -> int:
        """Every kernel weight once per output position: ``prod(output spatial) * W.size``."""
        if self.input_shape is None:
            return self.n_params
        return math.prod(self._geometry(self.input_shape)[1]) * self.params["W"].size

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        self._geometry(input_shape)
        shapes = {"param/W": (*self.kernel_size, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["param/b"] = (self.filters,)
        return shapes

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*self._geometry(tuple(input_shape))[1], self.filters)

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> None:
        shapes = self.array_shapes(input_shape)  # checks the input shape
        super().build(input_shape, rng, dtype)
        self.pads = self._geometry(self.input_shape or ())[0]
        # fan_in = kh * kw * c_in: the initialisers read it from all axes but the last
        init = initializers.get(self._initializer())
        self._add_param("W", init(shapes["param/W"], rng, self.dtype))
        if self.use_bias:
            self._add_param("b", np.zeros(self.filters, dtype=self.dtype))

    # -- textbook path ---------------------------------------------------------------------------
    def patches(self, x: np.ndarray) -> np.ndarray:
        """im2col: every output position's receptive field, flattened.

        Args:
            x: inputs (n, *spatial, c_in).

        Returns:
            (n, *out, prod(kernel_size) * c_in): ``patches[n, i, j]`` is the padded input
            ``xpad[n, i*s + a*d, j*s + b*d, c]`` over ``(a, b, c)`` in row-major order, the
            order of ``W.reshape(-1, filters)``, so ``patches @ W.reshape(-1, filters)`` is
            the convolution without bias.
        """
        pads, out = self._geometry(tuple(x.shape[1:]))
        view = window_view(_pad(x, pads), self.kernel_size, self.stride, self.dilation, out)
        return view.reshape(x.shape[0], *out, -1)  # a copy: the windows overlap

    #: inference (``training=False``) runs the batch in slices whose patch matrix stays under
    #: this many bytes: ``predict``'s batches of 4,096 images would otherwise copy every
    #: receptive field of all of them at once (a 3x3 convolution of 32 channels on 14x14
    #: maps: 0.9 GB), for the same numbers.
    INFERENCE_PATCH_BYTES: ClassVar[int] = 32 * 2**20

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """z = patches(x) @ W.reshape(-1, filters) + b, a = f(z); caches the patches and z.

        Args:
            x: (n, *spatial, c_in).
            training: cache for ``backward``; inference runs in slices of the batch
                (``INFERENCE_PATCH_BYTES``).

        Returns:
            (n, *out, filters).
        """
        self._check_input(x)
        if not training:
            per_sample = x.dtype.itemsize * math.prod(self.kernel_size) * x.shape[-1]
            per_sample *= math.prod(self._geometry(tuple(x.shape[1:]))[1])
            step = max(1, self.INFERENCE_PATCH_BYTES // per_sample)
            if x.shape[0] > step:
                parts = [self._forward(x[i : i + step], False) for i in range(0, len(x), step)]
                return np.concatenate(parts)
        return self._forward(x, training)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """``forward`` on one slice: im2col, one matrix product, bias, activation."""
        P = self.patches(x)
        W = self.params["W"]
        z = (P.reshape(-1, P.shape[-1]) @ W.reshape(-1, self.filters)).reshape(
            *P.shape[:-1], self.filters
        )
        if self.use_bias:
            z = z + self.params["b"]
        self._x_shape, self._P, self._z = x.shape, P, z
        return z if self.activation is None else self.activation.forward(z, training)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Dense's backward on the patches, then col2im.

        dz = f'(z) dy;  dL/dW += P^T dz (+ the penalties' gradients);  dL/db += sum of dz over
        the batch and every position;  dL/dP = dz W^T, and dL/dx is dL/dP added back where
        each patch was read (:func:`add_windows`), without the padding.
        """
        dz = dy if self.activation is None else self.activation.backward(dy)
        W, P = self.params["W"], self._P
        dz2, W2 = dz.reshape(-1, self.filters), W.reshape(-1, self.filters)
        self.grads["W"] += (P.reshape(-1, P.shape[-1]).T @ dz2).reshape(W.shape)
        self.grads["W"] += self._penalty_grad(W)
        if self.use_bias:
            self.grads["b"] += dz2.sum(axis=0)
        dP = (dz2 @ W2.T).reshape(*dz.shape[:-1], *W.shape[:-1])  # (n, *out, *kernel, c_in)
        n, spatial = self._x_shape[0], self._x_shape[1:-1]
        padded = tuple(size + lo + hi for size, (lo, hi) in zip(spatial, self.pads))
        dxp = np.zeros((n, *padded, self._x_shape[-1]), dtype=dz.dtype)
        return _crop(add_windows(dxp, dP, self.stride, self.dilation), self.pads)

    # -- fast path (fit) ------------------------------------------------------------------------
    # The textbook arithmetic in workspaces: the padded input's border is zeroed once and only
    # its interior written; bias and activation fused as in Dense (compiled kernels where the
    # activation has them); the gradients written into the model's flat buffer; dL/dx skipped
    # for the first layer. Two changes of memory layout, same numbers:
    # * few input channels (a grayscale image: c_in = 1): the patch matrix is built transposed,
    #   P^T (K, rows), one row per kernel offset and channel, copied from shifted slices of the
    #   input (runs of a whole image row; one copy of a transposed view, 1.5x faster than a
    #   copy per offset), and P = P^T.T is handed to BLAS as a transposed operand.
    #   Copying the patches row-major reads runs of only kw * c_in values. LeNet's first layer,
    #   batch 128, CPU time of forward: 5.0 ms (textbook) -> 2.7 ms.
    # * dL/dx without col2im's scatter of dP: for each kernel offset (a, b) the product
    #   dz W[a, b]^T (rows, c_in) (one batched matmul for all offsets) is added to the shifted
    #   slice of dL/dxpad it belongs to. The textbook's slice-adds of dP read runs of c_in
    #   values; these read whole image rows. LeNet's second layer, backward: 6.7 -> 3.4 ms.
    #   With the compiled kernels (lucidnet.kernels, when they pay): dL/dP = dz W^T as one
    #   product and a compiled col2im that reads each patch once: dL/dx 2.1 -> 1.3 ms.
    # * dL/dW sums over every position of every image: KernelLayer._weight_product cuts that
    #   long, thin product into chunks (LeNet's first layer: 1.19 -> 0.50 ms).
    _TRANSPOSED_PATCHES_MAX_RUN = 8  #: kw * c_in up to which the patches are built transposed

    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        n, W = x.shape[0], self.params["W"]
        pads, out = self._geometry(tuple(x.shape[1:]))
        view = window_view(self._padded(x, pads), self.kernel_size, self.stride, self.dilation, out)
        rows, K, c = n * math.prod(out), W.size // self.filters, x.shape[-1]
        if self.kernel_size[-1] * c <= self._TRANSPOSED_PATCHES_MAX_RUN:
            PT = self._workspace("patchesT", (K, rows), x.dtype)
            r = self.rank  # view (n, *out, *kernel, c) -> (*kernel, c, n, *out): one copy
            axes = (*range(1 + r, 2 + 2 * r), 0, *range(1, 1 + r))
            np.copyto(PT.reshape(*self.kernel_size, c, n, *out), view.transpose(axes))
            P = PT.T
        else:
            P = self._workspace("patches", (rows, K), x.dtype)
            np.copyto(P.reshape(n, *out, *self.kernel_size, c), view)
        z = self._workspace("z", (rows, self.filters), x.dtype)
        np.matmul(P, W.reshape(K, self.filters), out=z)
        self._P, self._x_shape, self._out = P, x.shape, out
        return self._fast_activate(z).reshape(n, *out, self.filters)

    def _padded(self, x: np.ndarray, pads: Pads) -> np.ndarray:
        """``x`` with its zero border, in a workspace (``x`` itself without padding)."""
        if not any(lo or hi for lo, hi in pads):
            return x
        shape = (
            x.shape[0],
            *(s + lo + hi for s, (lo, hi) in zip(x.shape[1:-1], pads)),
            x.shape[-1],
        )
        # filled with zeros when created; only the interior is written, so the border stays 0
        xp = self._workspace("xpad", shape, x.dtype, fill=0.0)
        _crop(xp, pads)[...] = x
        return xp

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """The textbook backward with the gradients written (not added) into the flat buffer,
        the bias gradient as ones^T dz, and dL/dx as shifted products (comment above)."""
        P = self._P
        dz = self._fast_kernel_grads(P, dy.reshape(P.shape[0], self.filters))
        if not need_input_grad:
            return None
        return self._fast_input_grad(dz)

    def _fast_input_grad(self, dz: np.ndarray) -> np.ndarray:
        """dL/dx: for each kernel offset, dz W[offset]^T added to the slice of dL/dxpad that
        offset's patch entries were read from; the padding cut off."""
        W, (n, c) = self.params["W"], (self._x_shape[0], self._x_shape[-1])
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(self._x_shape[1:-1], self.pads))
        dxp = self._workspace("dxpad", (n, *padded, c), dz.dtype)
        dxp.fill(0)
        K = W.size // self.filters
        if _kernel_ready(self, "add_windows", "col2im", dz.shape[0] * K, dz):
            # dL/dP = dz W^T as one product, then col2im compiled (reads each patch once)
            dP = np.matmul(
                dz,
                W.reshape(K, self.filters).T,
                out=self._workspace("dP", (dz.shape[0], K), dz.dtype),
            )
            _kernels.kernel("add_windows", dP.size)(
                dP.reshape(n, *_image_axes(self._out), K),
                _as_image(dxp),
                *_image_axes(self.kernel_size),
                *_image_axes(self.stride),
                *_image_axes(self.dilation),
            )
            return _cropped(self, dxp, self.pads, self._x_shape)
        # (*kernel, rows, c_in): one (rows, f) @ (f, c_in) product per kernel offset
        Q = self._workspace("dQ", (*self.kernel_size, dz.shape[0], c), dz.dtype)
        if c == 1:  # all offsets in one product: Q (K, rows) = W (K, f) dz^T
            np.matmul(W.reshape(-1, self.filters), dz.T, out=Q.reshape(-1, dz.shape[0]))
        else:  # W[a, b]^T made contiguous first: matmul then calls BLAS per offset (2x faster)
            WT = self._workspace("WT", (*self.kernel_size, self.filters, c), dz.dtype)
            np.copyto(WT, np.swapaxes(W, -1, -2))
            np.matmul(dz, WT, out=Q)
        for offset in np.ndindex(*self.kernel_size):
            target = tuple(
                slice(o * d, o * d + s * (m - 1) + 1, s)
                for o, d, s, m in zip(offset, self.dilation, self.stride, self._out)
            )
            dxp[(slice(None),) + target] += Q[offset].reshape(n, *self._out, c)
        return _cropped(self, dxp, self.pads, self._x_shape)

    # -- persistence ----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            **self._kernel_config(),
        }

    def __repr__(self) -> str:
        act = "None" if self.activation is None else repr(self.activation.key)
        k = self.kernel_size[0] if len(set(self.kernel_size)) == 1 else self.kernel_size
        extra = "".join(
            f", {key}={value!r}"
            for key, value, default in (
                ("stride", self.stride, (1,) * self.rank),
                ("padding", self.padding, "valid"),
                ("dilation", self.dilation, (1,) * self.rank),
            )
            if value != default
        )
        return f"{type(self).__name__}({self.filters}, {k}{extra}, activation={act})"


@LAYERS.register("Conv1D")
class Conv1D(_Conv):
    """1-D convolution over sequences: ``y[n, i, f] = b[f] + sum_{a, c} xpad[n, i*s + a*d, c]
    W[a, c, f]``, then the activation.

    Args:
        filters: number of output channels.
        kernel_size: window length ``k`` (an int).
        stride: step ``s`` between windows.
        padding: ``"valid"``, ``"same"`` or an int of zeros on each side (module docstring).
        dilation: spacing ``d`` between the kernel's taps.
        activation, use_bias, kernel_initializer, l1, l2: as ``Dense`` (``"auto"``: He normal
            for ReLU-family activations, Glorot uniform otherwise, fan_in = k * c_in).

    Shapes: x (n, length, c_in) -> (n, out_len, filters); W (k, c_in, filters); b (filters,).
    """

    rank = 1
    axes = "(n, length, channels)"


@LAYERS.register("Conv2D")
class Conv2D(_Conv):
    """2-D convolution over images: ``y[n, i, j, f] = b[f] + sum_{a, b, c} xpad[n, i*s + a*d,
    j*s + b*d, c] W[a, b, c, f]``, then the activation.

    Args:
        filters: number of output channels.
        kernel_size: ``(kh, kw)`` or one int for both.
        stride: ``(sh, sw)`` or one int.
        padding: ``"valid"``, ``"same"``, an int or a pair of ints (module docstring).
        dilation: ``(dh, dw)`` or one int.
        activation, use_bias, kernel_initializer, l1, l2: as ``Dense`` (``"auto"``: He normal
            for ReLU-family activations, Glorot uniform otherwise, fan_in = kh * kw * c_in).

    Shapes: x (n, h, w, c_in) -> (n, oh, ow, filters); W (kh, kw, c_in, filters);
    b (filters,).
    """

    rank = 2
    axes = "(n, height, width, channels)"


# -- pooling --------------------------------------------------------------------------------------
class _Pool(Layer):
    """Pooling of any rank over windows of ``pool_size`` every ``stride`` positions, per
    channel; ``MaxPool*`` and ``AvgPool*`` define the reduction."""

    rank: ClassVar[int] = 2
    axes: ClassVar[str] = "(n, height, width, channels)"
    #: the value the padding holds (max: -inf, so a padded position never wins).
    pad_value: ClassVar[float] = 0.0

    def __init__(
        self,
        pool_size: int | Sequence[int] = 2,
        stride: int | Sequence[int] | None = None,
        padding: str = "valid",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.pool_size = _int_tuple(pool_size, self.rank, "pool_size")
        self.stride = self.pool_size if stride is None else _int_tuple(stride, self.rank, "stride")
        self.padding = _check_padding(padding, self.rank, allow_ints=False)
        self.pads: Pads = ()

    def _geometry(self, input_shape: tuple[int, ...]) -> tuple[Pads, tuple[int, ...]]:
        who = type(self).__name__
        if len(input_shape) != self.rank + 1:
            raise _rank_error(who, self.axes, tuple(input_shape), self.rank)
        spatial, ones = tuple(input_shape[:-1]), (1,) * self.rank
        pads = _resolve_pads(self.padding, spatial, self.pool_size, self.stride, ones)
        return pads, _output_spatial(who, spatial, pads, self.pool_size, self.stride, ones)

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        self._geometry(input_shape)  # checks the input shape; pooling has no arrays
        return {}

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> None:
        self.array_shapes(input_shape)
        super().build(input_shape, rng, dtype)
        self.pads = self._geometry(tuple(input_shape))[0]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*self._geometry(tuple(input_shape))[1], input_shape[-1])

    def _windows(self, x: np.ndarray) -> np.ndarray:
        """The windows (n, *out, *pool_size, c) of ``x`` padded with ``pad_value``; caches
        the shapes backward needs."""
        self._check_input(x)
        pads, out = self._geometry(tuple(x.shape[1:]))
        xp = _pad(x, pads, self.pad_value)
        self._x_shape, self._xp_shape, self._pads = x.shape, xp.shape, pads
        return window_view(xp, self.pool_size, self.stride, (1,) * self.rank, out)

    def _to_input(self, dwin: np.ndarray) -> np.ndarray:
        """col2im of the windows' gradient (n, *out, *pool_size, c), without the padding."""
        dxp = np.zeros(self._xp_shape, dtype=dwin.dtype)
        add_windows(dxp, dwin, self.stride, (1,) * self.rank)
        return _crop(dxp, self._pads)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "stride": self.stride,
            "padding": self.padding,
        }


class _MaxPool(_Pool):
    pad_value = -np.inf

    @property
    def _two_by_two(self) -> bool:
        """2-D windows of 2 x 2, the common case the compiled kernels serve (any stride)."""
        return self.pool_size == (2, 2)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """y = the largest value of each window (per channel); caches where it is."""
        win = self._windows(x)
        n, c = x.shape[0], x.shape[-1]
        out = win.shape[1 : 1 + self.rank]
        flat = win.reshape(n, *out, -1, c)  # (n, *out, window positions, c): a copy
        # np.argmax returns the first maximum: ties go to the first position in row-major order
        self._argmax = flat.argmax(axis=-2)[..., None, :]
        return np.take_along_axis(flat, self._argmax, axis=-2)[..., 0, :]

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dL/dx: each window passes dy to the position of its maximum (the first one where
        several are equal) and nothing to the others; overlapping windows add up."""
        n, c = dy.shape[0], dy.shape[-1]
        dflat = np.zeros((*self._argmax.shape[:-2], math.prod(self.pool_size), c), dy.dtype)
        np.put_along_axis(dflat, self._argmax, dy[..., None, :], axis=-2)
        return self._to_input(dflat.reshape(n, *dy.shape[1:-1], *self.pool_size, c))

    # -- fast path (fit) ------------------------------------------------------------------------
    # The same maxima without copying the windows: one pass per window offset k over a strided
    # view, keeping the running maximum and the offset where it was reached. Branch-free (a
    # masked copy with a random mask mispredicts every other element: 5x slower): where
    # candidate > max (strictly: the first maximum wins, as np.argmax's), ``where`` becomes
    # max(where, k * larger), which is k since k exceeds every earlier offset. Backward
    # multiplies dy by the 0/1 mask where == k, one pass per offset (added up where windows
    # overlap). LeNet's first pooling, batch 128, CPU time: forward 4.7 -> 0.9 ms, backward
    # 2.7 -> 0.7 ms. 2 x 2 windows (any stride, any padding) have compiled kernels (when they
    # pay: lucidnet.kernels), the same numbers in one pass: forward 0.9 -> 0.35 ms, backward
    # 0.6 -> 0.45 ms. (A kernel looping over any window size kept a branch per comparison
    # and was slower than NumPy on random data.)
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        pads, out = self._geometry(tuple(x.shape[1:]))
        xp = x
        if any(lo or hi for lo, hi in pads):
            shape = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[1:-1], pads))
            # filled with -inf when created; only the interior is written afterwards
            xp = self._workspace("xpad", (x.shape[0], *shape, x.shape[-1]), x.dtype, fill=-np.inf)
            _crop(xp, pads)[...] = x
        y_shape = (x.shape[0], *out, x.shape[-1])
        y = self._workspace("y", y_shape, x.dtype)
        # the smallest integer type that can number the window's offsets (less memory traffic)
        index = np.int8 if math.prod(self.pool_size) <= 127 else np.int32
        where = self._workspace("where", y_shape, index)
        self._where, self._x_shape, self._xp_shape, self._pads = where, x.shape, xp.shape, pads
        if self._two_by_two and _kernel_ready(self, "max_pool_2x2", "pool", xp.size, xp):
            kernel = _kernels.kernel("max_pool_2x2", xp.size)
            kernel(xp, y, where, *self.stride)
            return y
        view = window_view(xp, self.pool_size, self.stride, (1,) * self.rank, out)
        larger = self._workspace("larger", y_shape, np.bool_)
        k_larger = self._workspace("k_larger", y_shape, index)
        lead = (slice(None),) * (1 + self.rank)
        for k, offset in enumerate(np.ndindex(*self.pool_size)):
            candidate = view[lead + offset]
            if k == 0:
                np.copyto(y, candidate)
                where.fill(0)
                continue
            np.greater(candidate, y, out=larger)
            np.maximum(y, candidate, out=y)
            np.maximum(where, np.multiply(larger, index(k), out=k_larger), out=where)
        return y

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        if not need_input_grad:
            return None
        where, out = self._where, dy.shape[1:-1]
        dxp = self._workspace("dxpad", self._xp_shape, dy.dtype)
        dxp.fill(0)
        if self._two_by_two and _kernel_ready(self, "max_pool_2x2", "pool", dxp.size, dy):
            kernel = _kernels.kernel("max_pool_2x2_backward", dxp.size)
            kernel(dy, where, dxp, *self.stride, dy.dtype.type(0))
            return _cropped(self, dxp, self._pads, self._x_shape)
        overlap = any(s < p for s, p in zip(self.stride, self.pool_size))
        mask = self._workspace("mask", dy.shape, np.bool_)
        part = self._workspace("part", dy.shape, dy.dtype)
        for k, offset in enumerate(np.ndindex(*self.pool_size)):
            spans = zip(offset, self.stride, out)
            target = dxp[
                (slice(None),) + tuple(slice(o, o + s * (m - 1) + 1, s) for o, s, m in spans)
            ]
            np.equal(where, k, out=mask)
            if overlap:
                target += np.multiply(dy, mask, out=part)
            else:  # each input position is in one window at most
                np.multiply(dy, mask, out=target)
        return _cropped(self, dxp, self._pads, self._x_shape)


class _AvgPool(_Pool):
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """y = the mean of each window (per channel); with ``padding="same"`` the mean of its
        positions inside the input only (Keras), i.e. the window sum over their count."""
        win = self._windows(x)
        axes = tuple(range(1 + self.rank, 1 + 2 * self.rank))
        key = (x.dtype, x.shape[1:])
        if self.__dict__.get("_count_key") != key:  # the counts depend on the shape only
            self._count, self._count_key = self._counts(x.dtype), key
        return (win.sum(axis=axes) / self._count).astype(x.dtype, copy=False)

    def _counts(self, dtype: Any) -> np.ndarray:
        """How many input positions each window covers: (1, *out, 1)."""
        inside = np.ones((1, *self._x_shape[1:-1], 1), dtype=dtype)
        out = tuple(
            (p - k) // s + 1 for p, k, s in zip(self._xp_shape[1:-1], self.pool_size, self.stride)
        )
        view = window_view(
            _pad(inside, self._pads), self.pool_size, self.stride, (1,) * self.rank, out
        )
        return view.sum(axis=tuple(range(1 + self.rank, 1 + 2 * self.rank)))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dL/dx: each window spreads dy / count evenly over its positions (padding's share is
        dropped); overlapping windows add up."""
        share = (dy / self._count).astype(dy.dtype, copy=False)
        idx = (slice(None),) * (1 + self.rank) + (None,) * self.rank
        dwin = np.broadcast_to(share[idx], (*dy.shape[:-1], *self.pool_size, dy.shape[-1]))
        return self._to_input(dwin)


@LAYERS.register("MaxPool1D", "MaxPooling1D")
class MaxPool1D(_MaxPool):
    """Max pooling over sequences: ``y[n, i, c] = max_a xpad[n, i*s + a, c]``.

    Args:
        pool_size: window length.
        stride: step between windows (``None``: ``pool_size``, non-overlapping windows).
        padding: ``"valid"`` or ``"same"`` (padded with -inf: a pad never wins).

    Backward routes dy to each window's maximum; ties go to the first maximum.

    Shapes: x (n, length, c) -> (n, out_len, c).
    """

    rank = 1
    axes = "(n, length, channels)"


@LAYERS.register("MaxPool2D", "MaxPooling2D")
class MaxPool2D(_MaxPool):
    """Max pooling over images: ``y[n, i, j, c] = max_{a, b} xpad[n, i*sh + a, j*sw + b, c]``.

    Args:
        pool_size: ``(ph, pw)`` or one int.
        stride: ``(sh, sw)``, one int or ``None`` (``pool_size``: non-overlapping windows).
        padding: ``"valid"`` or ``"same"`` (padded with -inf: a pad never wins).

    Backward routes dy to each window's maximum; ties go to the first maximum in row-major
    window order.

    Shapes: x (n, h, w, c) -> (n, oh, ow, c).
    """


@LAYERS.register("AvgPool1D", "AveragePooling1D")
class AvgPool1D(_AvgPool):
    """Average pooling over sequences: ``y[n, i, c] = mean_a x[n, i*s + a, c]``.

    Args:
        pool_size: window length.
        stride: step between windows (``None``: ``pool_size``).
        padding: ``"valid"`` or ``"same"`` (the mean over the positions inside the input).

    Shapes: x (n, length, c) -> (n, out_len, c).
    """

    rank = 1
    axes = "(n, length, channels)"


@LAYERS.register("AvgPool2D", "AveragePooling2D")
class AvgPool2D(_AvgPool):
    """Average pooling over images: ``y[n, i, j, c] = mean_{a, b} x[n, i*sh + a, j*sw + b, c]``.

    Args:
        pool_size: ``(ph, pw)`` or one int.
        stride: ``(sh, sw)``, one int or ``None`` (``pool_size``).
        padding: ``"valid"`` or ``"same"`` (the mean over the positions inside the input).

    Shapes: x (n, h, w, c) -> (n, oh, ow, c).
    """


class _GlobalAveragePooling(Layer):
    rank: ClassVar[int] = 2
    axes: ClassVar[str] = "(n, height, width, channels)"

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        if len(input_shape) != self.rank + 1:
            raise _rank_error(type(self).__name__, self.axes, tuple(input_shape), self.rank)
        return {}

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> None:
        self.array_shapes(input_shape)
        super().build(input_shape, rng, dtype)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.array_shapes(tuple(input_shape))
        return (input_shape[-1],)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """y[n, c] = the mean of x[n, ..., c] over every spatial position."""
        self._check_input(x)
        self._x_shape = x.shape
        return x.mean(axis=tuple(range(1, 1 + self.rank)))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dL/dx[n, ..., c] = dy[n, c] / (number of positions), at every position."""
        positions = math.prod(self._x_shape[1:-1])
        share = (dy / positions).astype(dy.dtype, copy=False)
        idx = (slice(None),) + (None,) * self.rank + (slice(None),)
        return np.broadcast_to(share[idx], self._x_shape).copy()


@LAYERS.register("GlobalAveragePooling1D")
class GlobalAveragePooling1D(_GlobalAveragePooling):
    """The mean over the length axis: (n, length, c) -> (n, c)."""

    rank = 1
    axes = "(n, length, channels)"


@LAYERS.register("GlobalAveragePooling2D")
class GlobalAveragePooling2D(_GlobalAveragePooling):
    """The mean over height and width: (n, h, w, c) -> (n, c)."""


@LAYERS.register("Reshape")
class Reshape(Layer):
    """Give each sample a new shape with the same number of values (a view; no copy for
    contiguous inputs), e.g. 784 pixels -> ``Reshape((28, 28, 1))`` -> a 28x28 one-channel
    image.

    Args:
        target_shape: the per-sample shape (without the batch axis); one entry may be -1
            (inferred from the others).

    Shapes: x (n, *input_shape) -> (n, *target_shape).
    """

    def __init__(self, target_shape: Sequence[int], name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(target_shape, (tuple, list)) or not target_shape:
            raise TypeError(
                f"target_shape must be a non-empty sequence of ints, got {describe(target_shape)}"
            )
        dims = tuple(
            -1
            if isinstance(d, numbers.Integral) and not isinstance(d, bool) and d == -1
            else check_positive_int(d, "target_shape")
            for d in target_shape
        )
        if dims.count(-1) > 1:
            raise ValueError(f"target_shape may contain one -1, got {target_shape!r}")
        self.target_shape = dims

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        size, known = math.prod(input_shape), math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if size != known or -1 in self.target_shape:
            raise ValueError(
                f"Reshape cannot give inputs of per-sample shape {tuple(input_shape)} ({size} "
                f"values) the shape {self.target_shape} ({known} values"
                + (" times a whole number" if -1 in self.target_shape else "")
                + ")"
            )
        return self.target_shape

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        self.output_shape(input_shape)  # checks the input shape
        return {}

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> None:
        self.array_shapes(input_shape)
        super().build(input_shape, rng, dtype)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._check_input(x)
        self._x_shape = x.shape
        return x.reshape(x.shape[0], *self.output_shape(tuple(x.shape[1:])))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self._x_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": self.target_shape}
