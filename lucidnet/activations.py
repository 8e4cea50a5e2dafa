"""Activation functions as layers.

Each is usable as a layer (``ln.ReLU()``) and by name (``Dense(64, activation="relu")``). All are
numerically stable for inputs of +/-1000: the sigmoid never evaluates ``exp`` of a large positive
number, softmax subtracts the row maximum, ELU clamps before ``expm1``.

Each class's ``forward`` / ``backward`` is the textbook pair and reads like the formula in its
docstring. The hidden-layer activations (sigmoid, tanh, ReLU, leaky ReLU, ELU, GELU) also have a
fast pair for ``fit`` (``fast_forward`` / ``fast_backward``, see :class:`lucidnet.base.Layer`):
the same numbers into workspaces, with data-dependent selects (``np.where``, ~4.5 ns per element
on random signs) replaced by exact 0/1-mask blends. Timings in the docstrings are one forward
plus one backward, float32, on a 2-core Xeon, textbook -> fast; tests/test_fast_layers.py proves
each fast pair equal to the textbook one.

A ``Dense`` layer hands its bias to its activation (``fast_forward_bias`` /
``fast_backward_bias``): ReLU then runs compiled kernels (:mod:`lucidnet.kernels`) that add the
bias and apply the activation in one pass, and mask the gradient and sum the bias gradient in
one pass back, with the same bits as the textbook; the other activations decline (``None``) and
``Dense`` does the NumPy steps itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import kernels as _kernels
from .base import LAYERS, Layer
from .registry import Registry

ACTIVATIONS = Registry("activation")

#: below this many elements the fast methods run the textbook pair instead: NumPy recycles small
#: allocations, so there the workspace lookups (~0.3 us each) cost more than the passes over
#: memory they save (measured crossovers: ~2,000 elements for sigmoid, leaky ReLU and ELU,
#: ~6,000 for ReLU and tanh; batch 32 x 32 units is 1,024).
FAST_MIN_SIZE = 4096


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Stable logistic function: 1 / (1 + exp(-x)) without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable softmax along ``axis`` (row maximum subtracted before ``exp``)."""
    z = x - x.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


class Activation(Layer):
    """Base class: an element-wise (or row-wise) function with no parameters."""

    #: registry name, used by ``activation=`` strings and in summaries.
    key = "linear"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        """An activation has no parameters: its fast backward always returns dL/dx (the
        default runs the textbook ``backward``)."""
        return self.backward(dy)

    # -- fused with the bias of the Dense layer before it (compiled kernels) --------------------
    def fast_forward_bias(self, z: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """``fast_forward(z + b)`` in one pass, ``z`` (n, units) overwritten with ``z + b``
        (b: (units,)); ``None`` when this activation has no such kernel or it does not pay (the
        caller then adds the bias and calls ``fast_forward``)."""
        return None

    def fast_backward_bias(self, dy: np.ndarray, db: np.ndarray) -> np.ndarray | None:
        """After ``fast_forward_bias``: ``dz = fast_backward(dy)`` and ``db`` (units,)
        overwritten with the sum of ``dz`` over the batch, in one pass; ``None`` when
        ``fast_forward_bias`` declined (the caller does both itself)."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a subclass that changes any pair but not the fused methods would otherwise run its
        # parent's kernels instead of its own arithmetic: it gets the declining defaults
        own = cls.__dict__
        changed = {"forward", "backward", "fast_forward", "fast_backward"} & own.keys()
        if changed and not {"fast_forward_bias", "fast_backward_bias"} & own.keys():
            cls.fast_forward_bias = Activation.fast_forward_bias  # type: ignore[method-assign]
            cls.fast_backward_bias = Activation.fast_backward_bias  # type: ignore[method-assign]


@ACTIVATIONS.register("linear", "identity", "none")
@LAYERS.register("Linear")
class Linear(Activation):
    """f(z) = z."""

    key = "linear"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy


@ACTIVATIONS.register("sigmoid", "logistic")
@LAYERS.register("Sigmoid")
class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z);  f'(z) = f(z) (1 - f(z))."""

    key = "sigmoid"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._out = sigmoid(x)
        return self._out

    def backward(self, dy: np.ndarray) -> np.ndarray:
        s = self._out
        return dy * s * (1.0 - s)

    # fast path (fit): 128 x 256: 220 -> 85 us; 32 x 32 would lose (0.8x): textbook below
    # FAST_MIN_SIZE
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        if x.size < FAST_MIN_SIZE:
            return self.forward(x, training=True)
        e = np.abs(x, out=self._workspace("e", x.shape, x.dtype))
        np.negative(e, out=e)
        np.exp(e, out=e)  # e = exp(-|x|) in [0, 1]: never overflows
        d = np.add(e, 1.0, out=self._workspace("d", x.shape, x.dtype))
        below = np.divide(e, d, out=e)  # e / (1 + e): sigmoid(x) for x < 0
        above = np.divide(1.0, d, out=d)  # 1 / (1 + e): sigmoid(x) for x >= 0
        # blend with the 0/1 mask instead of np.where: both candidates are finite, so
        # above * 1 + below * 0 == above exactly, and the other way round (NaN stays NaN)
        mask = np.greater_equal(x, 0, out=self._workspace("mask", x.shape, np.bool_))
        out = np.multiply(above, mask, out=self._workspace("out", x.shape, x.dtype))
        np.logical_not(mask, out=mask)
        out += np.multiply(below, mask, out=below)
        self._out = out
        return out

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        if dy.size < FAST_MIN_SIZE:
            return self.backward(dy)
        s = self._out
        dx = np.multiply(dy, s, out=self._workspace("dx", dy.shape, dy.dtype))
        dx *= np.subtract(1.0, s, out=self._workspace("1-s", dy.shape, dy.dtype))
        return dx


@ACTIVATIONS.register("tanh")
@LAYERS.register("Tanh")
class Tanh(Activation):
    """f(z) = tanh z;  f'(z) = 1 - tanh^2 z."""

    key = "tanh"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._out = np.tanh(x)
        return self._out

    def backward(self, dy: np.ndarray) -> np.ndarray:
        t = self._out
        return dy * (1.0 - t * t)

    # fast path (fit): the same operations into workspaces; 128 x 256: 34 -> 25 us
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        if x.size < FAST_MIN_SIZE:
            return self.forward(x, training=True)
        self._out = np.tanh(x, out=self._workspace("out", x.shape, x.dtype))
        return self._out

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        if dy.size < FAST_MIN_SIZE:
            return self.backward(dy)
        t = self._out
        slope = np.multiply(t, t, out=self._workspace("slope", dy.shape, dy.dtype))
        np.subtract(1.0, slope, out=slope)
        return np.multiply(dy, slope, out=self._workspace("dx", dy.shape, dy.dtype))


@ACTIVATIONS.register("relu")
@LAYERS.register("ReLU")
class ReLU(Activation):
    """f(z) = max(z, 0);  f'(z) = 1 if z > 0 else 0 (0 at z = 0, as in PyTorch)."""

    key = "relu"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._out = np.maximum(x, 0)
        return self._out

    def backward(self, dy: np.ndarray) -> np.ndarray:
        # where the output is 0 the unit was inactive (z <= 0) and passes no gradient
        return dy * (self._out > 0)

    # fast path (fit): the same, into workspaces kept from step to step; 128 x 256: 26 -> 19 us
    # (32 x 32 would lose, 3.4 -> 4.4 us: textbook below FAST_MIN_SIZE)
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        if x.size < FAST_MIN_SIZE:
            return self.forward(x, training=True)
        # max(x, 0) against an array of zeros: NumPy vectorises np.maximum between two arrays,
        # not with a scalar (~2x faster in float32)
        zeros = self._workspace("zeros", x.shape, x.dtype, fill=0.0)
        self._out = np.maximum(x, zeros, out=self._workspace("out", x.shape, x.dtype))
        return self._out

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        if dy.size < FAST_MIN_SIZE:
            return self.backward(dy)
        mask = np.greater(self._out, 0, out=self._workspace("mask", dy.shape, np.bool_))
        return np.multiply(dy, mask, out=self._workspace("dx", dy.shape, dy.dtype))

    # compiled (lucidnet.kernels): bias + forward, then backward + bias gradient, in two loops
    # instead of five NumPy passes: 32 x 32: 17 -> 8 us, 128 x 256: 100 -> 71 us (float32,
    # benchmarks/kernels.py on a shared 2-core Xeon)
    def fast_forward_bias(self, z: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        gate = _kernels.gate_for(self, "activation", "bias_relu")
        if not gate.ready(z.size) or not z.flags.c_contiguous:
            self._fused = False
            return None
        out = self._workspace("out", z.shape, z.dtype)
        _kernels.kernel("bias_relu", z.size)(z, b, out, z.dtype.type(0))
        self._out, self._fused = out, True
        return out

    def fast_backward_bias(self, dy: np.ndarray, db: np.ndarray) -> np.ndarray | None:
        if not self.__dict__.get("_fused") or not dy.flags.c_contiguous:
            return None
        dz = self._workspace("dx", dy.shape, dy.dtype)
        c = dy.dtype.type
        _kernels.kernel("relu_backward_bias")(dy, self._out, dz, db, c(0), c(1))
        return dz


@ACTIVATIONS.register("leaky_relu")
@LAYERS.register("LeakyReLU")
class LeakyReLU(Activation):
    """f(z) = z if z > 0 else alpha z."""

    key = "leaky_relu"

    def __init__(self, alpha: float = 0.01, name: str | None = None) -> None:
        super().__init__(name)
        self.alpha = float(alpha)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._pos = x > 0
        return np.where(self._pos, x, self.alpha * x).astype(x.dtype, copy=False)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return np.where(self._pos, dy, self.alpha * dy).astype(dy.dtype, copy=False)

    # fast path (fit): forward computes the slope f'(x) (1 or alpha) once, as an exact 0/1-mask
    # blend, and both passes multiply by it: 128 x 256: 305 -> 53 us
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        if x.size < FAST_MIN_SIZE:
            return self.forward(x, training=True)
        pos = np.greater(x, 0, out=self._workspace("pos", x.shape, np.bool_))
        rest = np.logical_not(pos, out=self._workspace("rest", x.shape, np.bool_))
        # alpha where x <= 0 (or NaN), 1 where x > 0: alpha * 0 + 1 == 1 exactly
        slope = np.multiply(
            rest, x.dtype.type(self.alpha), out=self._workspace("slope", x.shape, x.dtype)
        )
        slope += pos
        self._slope = slope
        return np.multiply(x, slope, out=self._workspace("out", x.shape, x.dtype))

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        if dy.size < FAST_MIN_SIZE:
            return self.backward(dy)
        return np.multiply(dy, self._slope, out=self._workspace("dx", dy.shape, dy.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


@ACTIVATIONS.register("elu")
@LAYERS.register("ELU")
class ELU(Activation):
    """f(z) = z if z > 0 else alpha (e^z - 1);  f'(z) = 1 if z > 0 else f(z) + alpha."""

    key = "elu"

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        super().__init__(name)
        self.alpha = float(alpha)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._pos = x > 0
        # clamp first so expm1 never sees a large positive value
        neg = self.alpha * np.expm1(np.minimum(x, 0))
        self._out = np.where(self._pos, x, neg).astype(x.dtype, copy=False)
        return self._out

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return np.where(self._pos, dy, dy * (self._out + self.alpha)).astype(dy.dtype, copy=False)

    # fast path (fit): no np.where; forward also computes the slope f'(x), which backward
    # multiplies by: 128 x 256: 345 -> 60 us
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        if x.size < FAST_MIN_SIZE:
            return self.forward(x, training=True)
        zeros = self._workspace("zeros", x.shape, x.dtype, fill=0.0)
        neg = np.minimum(x, zeros, out=self._workspace("neg", x.shape, x.dtype))
        np.expm1(neg, out=neg)
        neg *= self.alpha  # alpha (e^min(x, 0) - 1): exactly 0 where x > 0
        # x > 0: x + 0 == x;  x <= 0: 0 + neg == neg
        out = np.maximum(x, zeros, out=self._workspace("out", x.shape, x.dtype))
        out += neg
        # slope: (neg + alpha) * 0 + 1 == 1 where x > 0, (neg + alpha) * 1 + 0 elsewhere
        pos = np.greater(x, 0, out=self._workspace("pos", x.shape, np.bool_))
        slope = np.add(neg, self.alpha, out=neg)
        slope *= np.logical_not(pos, out=self._workspace("rest", x.shape, np.bool_))
        slope += pos
        self._out, self._slope = out, slope
        return out

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        if dy.size < FAST_MIN_SIZE:
            return self.backward(dy)
        return np.multiply(dy, self._slope, out=self._workspace("dx", dy.shape, dy.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


# a Python float, so that float32 inputs are computed in float32 (an np.float64 constant would
# promote every intermediate to float64)
_GELU_C = math.sqrt(2.0 / math.pi)


@ACTIVATIONS.register("gelu")
@LAYERS.register("GELU")
class GELU(Activation):
    """Gaussian error linear unit, tanh approximation (Hendrycks & Gimpel 2016).

    f(z) = 0.5 z (1 + tanh(u)),  u = sqrt(2/pi) (z + 0.044715 z^3)
    f'(z) = 0.5 (1 + tanh u) + 0.5 z (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 z^2)
    This is PyTorch's ``GELU(approximate="tanh")``; it differs from the erf form by < 1e-3.
    """

    key = "gelu"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._x = x
        self._t = np.tanh(_GELU_C * (x + 0.044715 * x**3))
        return (0.5 * x * (1.0 + self._t)).astype(x.dtype, copy=False)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, t = self._x, self._t
        du = _GELU_C * (1.0 + 3 * 0.044715 * x * x)
        return (dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)).astype(dy.dtype, copy=False)

    # fast path (fit): z^3 as z * z * z (NumPy's power is ~60 ns per element), in place into
    # workspaces: 128 x 256: 2,440 -> 145 us; 32 x 32: 89 -> 20 us (so no FAST_MIN_SIZE)
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        t = np.multiply(x, x, out=self._workspace("t", x.shape, x.dtype))
        t *= x
        t *= 0.044715
        t += x
        t *= _GELU_C
        self._t = np.tanh(t, out=t)  # tanh u
        out = np.add(t, 1.0, out=self._workspace("out", x.shape, x.dtype))
        out *= x
        out *= 0.5
        return out

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        x, t = self._x, self._t
        du = np.multiply(x, 3 * 0.044715, out=self._workspace("du", x.shape, x.dtype))
        du *= x
        du += 1.0
        du *= _GELU_C  # du/dz
        slope = np.multiply(t, t, out=self._workspace("slope", x.shape, x.dtype))
        np.subtract(1.0, slope, out=slope)
        slope *= x
        slope *= 0.5
        slope *= du  # 0.5 z (1 - tanh^2 u) du/dz
        half = np.add(t, 1.0, out=du)
        half *= 0.5
        slope += half  # + 0.5 (1 + tanh u)
        return np.multiply(dy, slope, out=self._workspace("dx", x.shape, x.dtype))


@ACTIVATIONS.register("softmax")
@LAYERS.register("Softmax")
class Softmax(Activation):
    """s_i = e^{z_i} / sum_j e^{z_j} over the last axis;  dz = s * (dy - sum(dy * s)).

    For training a classifier, prefer a linear output with ``loss="cross_entropy"``, which fuses
    softmax with the loss (simpler gradient ``s - y``, no log of 0).
    """

    key = "softmax"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._out = softmax(x)
        return self._out

    def backward(self, dy: np.ndarray) -> np.ndarray:
        s = self._out
        return s * (dy - (dy * s).sum(axis=-1, keepdims=True))


def get(activation: str | Activation | None) -> Activation | None:
    """Resolve ``activation`` (a name, an ``Activation`` instance or ``None``) to a new layer."""
    if activation is None:
        return None
    if isinstance(activation, Activation):
        return activation
    cls = ACTIVATIONS.lookup(activation)
    return cls()
