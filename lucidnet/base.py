"""The ``Layer`` base class: a textbook ``forward(x, training)`` / ``backward(dy)`` pair and a
fast ``fast_forward(x)`` / ``fast_backward(dy, need_input_grad)`` pair.

A layer caches in ``forward`` what ``backward`` needs. ``backward`` *accumulates* parameter
gradients into ``self.grads`` (so gradients of several backward passes add up, as in PyTorch;
call ``zero_grad()`` between steps) and returns the gradient with respect to the layer's input.
``params``, ``grads`` and ``state`` are same-keyed dicts of arrays so that optimizers, persistence
and the gradient checker stay generic.

``fit`` runs the fast pair instead: the same numbers (to float rounding) computed into reused
workspaces, with gradients overwritten rather than accumulated. Layers without a faster way
inherit defaults that call the textbook pair; tests/test_fast_layers.py proves every layer's
fast pair equal to its textbook pair.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .registry import Registry

LAYERS = Registry("layer")

#: byte alignment of the arrays that training reuses (flat parameters, gradients, optimizer
#: slots, workspaces): one AVX-512 register / one cache line. NumPy's own allocations are only
#: 16-byte aligned, and its vectorised loops run ~30% slower when loads and stores straddle
#: cache lines.
ALIGNMENT = 64


def empty_aligned(shape: int | tuple[int, ...], dtype: Any, zero: bool = False) -> np.ndarray:
    """An uninitialised (or, with ``zero``, zero-filled) array starting on an ``ALIGNMENT``
    boundary: a view into a slightly larger allocation."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = (np.zeros if zero else np.empty)(n * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + n * dtype.itemsize].view(dtype).reshape(shape)


class Layer:
    """Base class of every layer.

    Attributes:
        params: trainable arrays by name.
        grads: gradient arrays, same keys and shapes as ``params``.
        state: non-trainable arrays (e.g. running statistics).
        name: unique name inside a model (assigned by ``Sequential`` if not given).
        built: whether ``build`` has created the parameters.
        input_shape: per-sample input shape (without the batch axis) once built.
    """

    #: whether the layer takes integer inputs (token ids) instead of floats.
    integer_input: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that changes the textbook pair but not the fast pair would otherwise
        # inherit a fast path computing its parent's arithmetic: it gets the defaults, which
        # run its own forward / backward.
        own = cls.__dict__
        if ("forward" in own or "backward" in own) and not (
            "fast_forward" in own or "fast_backward" in own
        ):
            cls.fast_forward = Layer.fast_forward  # type: ignore[method-assign]
            cls.fast_backward = Layer.fast_backward  # type: ignore[method-assign]

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self.built = False
        self.input_shape: tuple[int, ...] | None = None
        self.dtype = np.dtype(np.float32)

    # -- construction ---------------------------------------------------------------------------
    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> None:
        """Create parameters for inputs of per-sample shape ``input_shape``."""
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.built = True

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Shapes of the arrays ``build(input_shape)`` creates, keyed ``"param/<name>"`` and
        ``"state/<name>"``, computed from the configuration without allocating anything.

        Raises ``ValueError`` for an input shape the layer cannot take. ``build`` checks its
        input through it, and the model-file loader uses it to compare a file's declared
        architecture with the tensors the file holds before building. A subclass whose ``build``
        creates arrays overrides both.
        """
        return {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample input shape (identity by default)."""
        return tuple(input_shape)

    def _add_param(self, key: str, value: np.ndarray) -> None:
        self.params[key] = value
        self.grads[key] = np.zeros_like(value)

    # -- textbook path: what readers, ``explain``, ``gradcheck`` and ``predict`` run --------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Compute the layer's output; cache what ``backward`` needs when ``training``."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Given dL/d(output), accumulate dL/d(params) into ``grads`` and return dL/d(input)."""
        raise NotImplementedError

    # -- fast path: what ``fit`` runs (``training.train_step``) ----------------------------------
    # The same arithmetic as the textbook pair, proven equal by tests/test_fast_layers.py, with
    # the performance plumbing kept out of the textbook code: reused workspaces, in-place
    # operations, shortcuts. A layer without a faster way inherits these defaults. Compiled
    # kernels (numba) plug in here too.

    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        """Training-mode forward pass; may return a workspace that the next step overwrites."""
        return self.forward(x, training=True)

    def fast_backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backward pass after ``fast_forward`` that *overwrites* ``grads`` (the same as
        ``zero_grad()`` then ``backward(dy)``). With ``need_input_grad=False`` (the first layer,
        whose dL/dx nobody uses) the layer may skip dL/d(input) and return ``None``."""
        self.zero_grad()
        return self.backward(dy)

    def _workspace(
        self, key: str, shape: tuple[int, ...], dtype: Any, fill: float | None = None
    ) -> np.ndarray:
        """An aligned array kept under ``key`` from one fast-path call to the next, to pass as
        ``out=``: a training step then allocates nothing (fresh arrays cost page faults and
        cache misses). Its previous content is overwritten by the caller, except with ``fill``:
        the array is filled with that value when created and must never be written to (a
        constant operand). Only the fast path uses workspaces, so arrays returned to users by
        ``forward`` are never overwritten by a later call; ``release_workspaces`` frees them.
        """
        buffers = self.__dict__.setdefault("_buffers", {})
        buf = buffers.get((key, shape))
        if buf is None or buf.dtype != dtype:
            buf = buffers[(key, shape)] = empty_aligned(shape, dtype)
            if fill is not None:
                buf.fill(fill)
        return buf

    def release_workspaces(self) -> None:
        """Free the fast path's workspaces (``fit`` calls this when it ends)."""
        self.__dict__.pop("_buffers", None)
        for sub in self.sublayers():
            sub.release_workspaces()

    # -- hooks the training loop and the model use (instead of checking layer types) -------------
    #: the smallest training batch the layer accepts (BatchNorm needs 2 to estimate a variance).
    min_batch_size: ClassVar[int] = 1

    def sublayers(self) -> list[Layer]:
        """Layers held inside this one (a Dense layer's activation), for workspaces and hooks."""
        return []

    def reseed(self, rng: np.random.Generator) -> None:
        """Take a new random stream from ``rng`` (``fit`` calls it so that a seeded run is
        reproducible); only layers that draw random numbers (Dropout) override it."""

    def fold_output_scaling(self, scale: np.ndarray, shift: np.ndarray) -> bool:
        """Make this layer, the model's last, output ``y * scale + shift`` instead of ``y``, by
        changing its parameters in place; return whether it could (a linear Dense layer can).
        ``fit`` uses it to train regression on standardised targets and hand back a model that
        predicts in the target's own units."""
        return False

    def zero_grad(self) -> None:
        """Set every gradient to zero (in place, so views stay valid)."""
        for g in self.grads.values():
            g.fill(0)

    def penalty(self) -> float:
        """Regularisation term this layer adds to the loss (0 by default)."""
        return 0.0

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds of one sample's forward pass through the layer, for the thread
        planner (``threads.plan``): by default one per parameter (a Dense layer's ``x W``);
        a layer that reuses its weights across positions (a convolution) says more."""
        return self.n_params

    # -- persistence ----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Rebuild an (unbuilt) layer from ``get_config()`` output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def _check_input(self, x: np.ndarray) -> None:
        """Raise a clear error if ``x`` does not match the built input shape."""
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"layer {self.name or type(self).__name__} expects inputs of shape "
                f"(batch, {', '.join(map(str, self.input_shape))}), got {x.shape}"
            )
