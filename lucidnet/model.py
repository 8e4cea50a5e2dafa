"""``Sequential``: a stack of layers with an explicit forward and backward pass.

``forward`` runs the layers first to last; ``backward`` runs them last to first, each layer
turning dL/d(its output) into dL/d(its input) and accumulating dL/d(its parameters). After
``build`` every parameter (and gradient) array is a view into one flat buffer, which lets the
optimizers update all parameters with a few vectorised operations.
"""

from __future__ import annotations

import copy as _copy
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from . import activations as _activations
from . import losses as _losses
from . import threads as _threads
from ._validation import check_array, check_dtype, check_positive_int, describe
from .base import ALIGNMENT, Layer, empty_aligned
from .callbacks import History
from .layers import BatchNorm, Dense, Dropout
from .losses import labels_from_logits
from .optimizers import Optimizer
from .optimizers import get as _get_optimizer
from .training import TargetScaling, resolve_metrics
from .training import evaluate as _evaluate
from .training import fit as _fit

#: Sequential methods whose work lives above this module (persistence, the glass box, ONNX):
#: name -> a function returning the implementation. The package root, the top of the
#: layering, registers them (``lucidnet/__init__.py``), so the core imports nothing upward.
_DELEGATES: dict[str, Callable[[], Callable[..., Any]]] = {}


def register_delegate(name: str, resolve: Callable[[], Callable[..., Any]]) -> None:
    """Connect the ``Sequential`` method ``name`` to the implementation ``resolve()`` returns
    (called at first use, so the implementing module can be imported lazily)."""
    _DELEGATES[name] = resolve


def _delegate(name: str) -> Callable[..., Any]:
    return _DELEGATES[name]()


# Batch size used by predict / evaluate: large enough to amortise Python overhead, small enough
# to keep activations of big models in cache-friendly memory.
_INFERENCE_BATCH = 4096


class Sequential:
    """A feed-forward network: layers applied one after another.

    Args:
        layers: the layers, first to last.
        dtype: ``"float32"`` (default, fast) or ``"float64"`` (gradient checks).
        name: optional model name.

    Example:
        >>> model = Sequential([Dense(64, activation="relu"), Dropout(0.1), Dense(10)])
    """

    def __init__(
        self, layers: Iterable[Layer] | None = None, dtype: Any = "float32", name: str | None = None
    ) -> None:
        self.dtype = check_dtype(dtype)
        self.name = name or "sequential"
        self.layers: list[Layer] = []
        self.loss: _losses.Loss | None = None
        self.optimizer: Optimizer | None = None
        self.metrics: list[str] = []
        self.history: History | None = None
        self.metadata: dict[str, Any] = {}
        self.stop_training = False
        #: while ``fit`` trains on standardised regression targets, their scaling (the output
        #: layer then predicts standardised values; saving folds it back), else ``None``.
        self.fit_target_scaling: TargetScaling | None = None
        #: functions ``watch(stage, layer, received, returned)`` called after every layer call
        #: of the textbook path: ``("forward", layer, x, y)`` and ``("backward", layer, dy, dx)``.
        #: How the glass box watches a real step (``explain_step``); the fast path has none.
        self.observers: list[Callable[[str, Layer, np.ndarray, np.ndarray], None]] = []
        self.input_shape: tuple[int, ...] | None = None
        self._views: list[tuple[Layer, str, np.ndarray, np.ndarray]] = []
        self._flat: tuple[np.ndarray, np.ndarray] | None = None
        self._layout: list[tuple[str, int, int, tuple[int, ...]]] = []
        if layers is not None:
            if isinstance(layers, Layer) or not isinstance(layers, Iterable):
                raise TypeError(f"layers must be a list of Layer objects, got {describe(layers)}")
            for layer in layers:
                self.add(layer)

    # -- structure --------------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        """Append a layer (before the model is built)."""
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Sequential layers must be lucidnet Layer objects, got {describe(layer)}"
            )
        if self.built:
            raise ValueError("cannot add layers to a model that is already built")
        if layer.name is None:
            layer.name = f"{type(layer).__name__.lower()}_{len(self.layers)}"
        if any(existing.name == layer.name for existing in self.layers):
            raise ValueError(f"duplicate layer name {layer.name!r}; layer names must be unique")
        self.layers.append(layer)

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(
        self, input_shape: Iterable[int], seed: int | np.random.Generator | None = None
    ) -> None:
        """Create every layer's parameters for per-sample inputs of shape ``input_shape``.

        Args:
            input_shape: shape of one sample, without the batch axis (e.g. ``(64,)``).
            seed: seed or ``np.random.Generator`` for the initial weights and dropout masks.
        """
        if not self.layers:
            raise ValueError("cannot build an empty Sequential model: add layers first")
        shape = tuple(int(d) for d in input_shape)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        current = shape
        for layer in self.layers:
            layer.build(current, rng, self.dtype)
            current = layer.output_shape(current)
        self.input_shape = shape
        self._pack()

    def _pack(self) -> None:
        """Move every parameter and gradient into one flat buffer, leaving views in the layers."""
        entries = [(layer, key) for layer in self.layers for key in layer.params]
        # every array starts on an ALIGNMENT boundary of the buffer (itself aligned); the gaps
        # between them stay zero, so norms, sums and optimizer updates over the whole buffer
        # are unchanged by them
        unit = max(1, ALIGNMENT // np.dtype(self.dtype).itemsize)
        offsets, total = [], 0
        for layer, key in entries:
            offsets.append(total)
            total += -(-layer.params[key].size // unit) * unit
        flat_p = empty_aligned(total, self.dtype, zero=True)
        flat_g = empty_aligned(total, self.dtype, zero=True)
        self._views, self._layout = [], []
        for (layer, key), offset in zip(entries, offsets):
            value = np.asarray(layer.params[key])
            size, shape = value.size, value.shape
            flat_p[offset : offset + size] = value.ravel()
            flat_g[offset : offset + size] = np.asarray(layer.grads[key]).ravel()
            pv = flat_p[offset : offset + size].reshape(shape)
            gv = flat_g[offset : offset + size].reshape(shape)
            layer.params[key], layer.grads[key] = pv, gv
            self._views.append((layer, key, pv, gv))
            self._layout.append((f"{layer.name}/{key}", offset, size, tuple(shape)))
        self._flat = (flat_p, flat_g)

    def flat_parameters(
        self,
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int, int, tuple[int, ...]]]]:
        """All parameters and gradients as two flat vectors (views shared with the layers) and
        the layout ``[(name, offset, size, shape)]``. Re-packs if a layer's array was replaced.

        Each array starts on a 64-byte boundary, so the vectors can hold a few zeros between
        arrays (``p.size >= n_params``); they stay zero through every update."""
        if self._flat is None:
            raise ValueError("the model is not built yet: call build(input_shape) or fit first")
        for layer, key, pv, gv in self._views:
            if layer.params[key] is not pv or layer.grads[key] is not gv:
                self._pack()
                break
        return self._flat[0], self._flat[1], self._layout

    def parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, param, grad)`` for every trainable array, first layer first."""
        for layer in self.layers:
            for key in layer.params:
                yield f"{layer.name}/{key}", layer.params[key], layer.grads[key]

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds of one sample's forward pass (``Layer.multiply_adds``): the work the
        thread planner sizes ``fit`` and ``predict`` by."""
        return int(sum(layer.multiply_adds for layer in self.layers))

    @property
    def n_params(self) -> int:
        return int(sum(layer.n_params for layer in self.layers))

    def _ensure_built(self, x: np.ndarray, seed: Any = None) -> None:
        if not self.built:
            self.build(x.shape[1:], seed)

    # -- computation ------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Forward pass through every layer; returns the raw output (logits for classifiers)."""
        x = np.asarray(x)
        if x.dtype != self.dtype and not (self.layers and self.layers[0].integer_input):
            x = x.astype(self.dtype)
        self._ensure_built(x)
        for layer in self.layers:
            out = layer.forward(x, training)
            for watch in self.observers:
                watch("forward", layer, x, out)
            x = out
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Backward pass, last layer first: each layer accumulates its ``grads`` and turns
        dL/d(its output) into dL/d(its input); returns dL/d(model input)."""
        if not self.built:
            raise ValueError("backward called before forward: the model is not built")
        for layer in reversed(self.layers):
            dx = layer.backward(dy)
            for watch in self.observers:
                watch("backward", layer, dy, dx)
            dy = dx
        return dy

    # -- fast path (fit, through training.train_step) ---------------------------------------------
    def fast_forward(self, x: np.ndarray) -> np.ndarray:
        """Training-mode forward pass through the layers' fast paths (``Layer.fast_forward``):
        the same numbers as ``forward(x, training=True)``; the result may be a workspace that the
        next step overwrites."""
        for layer in self.layers:
            x = layer.fast_forward(x)
        return x

    def fast_backward(self, dy: np.ndarray) -> None:
        """Backward pass through the layers' fast paths after ``fast_forward``: *overwrites*
        every gradient (the same as ``zero_grad()`` then ``backward(dy)``) and skips dL/d(input)
        of the first layer, which training never uses."""
        for layer in reversed(self.layers[1:]):
            dx = layer.fast_backward(dy)
            assert dx is not None  # need_input_grad=True: every layer returns dL/dx
            dy = dx
        self.layers[0].fast_backward(dy, need_input_grad=False)

    def release_workspaces(self) -> None:
        """Free the arrays the fast path keeps from one step to the next (end of ``fit``)."""
        for layer in self.layers:
            layer.release_workspaces()

    def zero_grad(self) -> None:
        """Reset every gradient to zero."""
        if self._flat is not None:
            self.flat_parameters()[1].fill(0)
        else:
            for layer in self.layers:
                layer.zero_grad()

    def penalty(self) -> float:
        """Sum of the layers' regularisation terms (L1 / L2), part of the training loss."""
        return float(sum(layer.penalty() for layer in self.layers))

    # -- weights ----------------------------------------------------------------------------------
    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and state array, keyed ``"layer/key"``."""
        out = {
            f"{layer.name}/{k}": v.copy() for layer in self.layers for k, v in layer.params.items()
        }
        out.update(
            {f"{layer.name}/{k}": v.copy() for layer in self.layers for k, v in layer.state.items()}
        )
        return out

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy arrays from ``get_weights()`` output into the model (in place)."""
        for layer in self.layers:
            for store in (layer.params, layer.state):
                for key, arr in store.items():
                    name = f"{layer.name}/{key}"
                    if name not in weights:
                        raise ValueError(f"set_weights: missing array {name!r}")
                    value = np.asarray(weights[name])
                    if value.shape != arr.shape:
                        raise ValueError(
                            f"set_weights: {name!r} has shape {value.shape}, expected {arr.shape}"
                        )
                    arr[...] = value

    def copy(self) -> Sequential:
        """An independent deep copy (weights, loss, optimizer state, metadata)."""
        clone = _copy.deepcopy(self)
        if clone.built:
            clone._pack()  # deepcopy turned the flat-buffer views into separate arrays
        return clone

    # -- training and inference -------------------------------------------------------------------
    def compile(
        self, loss: str | _losses.Loss, optimizer: Any = "adam", metrics: Any = None
    ) -> None:
        """Set the loss (and optimizer / metrics) without training, e.g. before ``evaluate``."""
        self.loss = _losses.get(loss)
        self.optimizer = _get_optimizer(optimizer)
        self.metrics = resolve_metrics(self.loss, metrics)

    def fit(self, X: Any, y: Any = None, **kwargs: Any) -> History:
        """Train the model; see :func:`lucidnet.training.fit` for every argument (among them
        ``threads="auto"`` or a thread count for the matrix products)."""
        return _fit(self, X, y, **kwargs)

    def explain_step(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Explain one training step on ``(x, y)``; see
        :func:`lucidnet.glassbox.explain.explain_step`. Returns its ``Explanation`` (typed
        ``Any`` here: the core does not name types of the glass box, which sits above it)."""
        return _delegate("explain_step")(self, x, y, **kwargs)

    def _check_X(self, X: Any, name: str = "X") -> np.ndarray:
        integer = bool(self.layers) and self.layers[0].integer_input
        X = check_array(X, name, dtype=None if integer else self.dtype, min_ndim=2, integer=integer)
        if self.built and tuple(X.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{name} must have per-sample shape {self.input_shape} (the model was built for "
                f"it), got {X.shape[1:]} (full shape {X.shape})"
            )
        return X

    def predict_logits(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Raw network outputs (logits for classifiers), in inference mode."""
        X = self._check_X(X)
        if not self.built:
            raise ValueError("the model is not trained or built yet: call fit or build first")
        bs = check_positive_int(batch_size, "batch_size", allow_none=True) or _INFERENCE_BATCH
        # threads chosen for the size of the products (inside fit: the fit's settings)
        with _threads.limited("auto", min(bs, X.shape[0]) * self.multiply_adds):
            outs = [self.forward(X[i : i + bs], training=False) for i in range(0, X.shape[0], bs)]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def predict(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Predictions: class probabilities for ``cross_entropy`` (softmax) and
        ``binary_cross_entropy`` (sigmoid), raw outputs for regression losses."""
        return _losses.output_transform(self.loss, self.predict_logits(X, batch_size))

    def predict_classes(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Integer class predictions (argmax, or logit > 0 for binary cross-entropy)."""
        if self.loss is None or self.loss.task != "classification":
            raise ValueError("predict_classes needs a model trained with a classification loss")
        return labels_from_logits(self.loss, self.predict_logits(X, batch_size))

    def evaluate(
        self, X: Any, y: Any, batch_size: int | None = None, sample_weight: Any = None
    ) -> dict[str, float]:
        """Loss and metrics on ``(X, y)`` in inference mode, e.g. ``{"loss", "accuracy"}``."""
        return _evaluate(self, X, y, batch_size=batch_size, sample_weight=sample_weight)

    # -- description ------------------------------------------------------------------------
    def summary(self, print_fn: Any = print) -> str:
        """A table of layers, output shapes and parameter counts; printed and returned."""
        rows = [("layer", "type", "output shape", "params")]
        shape = self.input_shape
        for layer in self.layers:
            kind = repr(layer)
            if shape is not None:
                shape = layer.output_shape(shape)
                out = "(None, " + ", ".join(map(str, shape)) + ")"
            else:
                out = "?"
            rows.append((str(layer.name), kind, out, f"{layer.n_params:,}" if layer.built else "?"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "-" * (sum(widths) + 6)
        text = [f'Model "{self.name}" ({self.dtype.name})', line]
        for i, r in enumerate(rows):
            text.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
            if i == 0:
                text.append(line)
        text.append(line)
        text.append(
            f"Total params: {self.n_params:,}" if self.built else "Total params: ? (not built)"
        )
        if self.loss is not None:
            text.append(f"Loss: {self.loss!r}   Optimizer: {self.optimizer!r}")
        out = "\n".join(text)
        if print_fn is not None:
            print_fn(out)
        return out

    def save(
        self, path: str | os.PathLike[str], overwrite: bool = False, include_optimizer: bool = True
    ) -> None:
        """Save architecture, weights, optimizer state, history and metadata to one file
        (safetensors with a JSON header; no pickle). Refuses to replace an existing file unless
        ``overwrite=True``."""
        _delegate("save")(self, path, overwrite=overwrite, include_optimizer=include_optimizer)

    def export_onnx(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Export to an ONNX file; see :func:`lucidnet.onnx_export.export_onnx` (needs ``onnx``)."""
        return _delegate("export_onnx")(self, path, **kwargs)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}])"


def mlp(
    n_outputs: int,
    hidden: Iterable[int] = (64, 32),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    l2: float = 0.0,
    name: str | None = None,
) -> Sequential:
    """A multilayer perceptron: per hidden layer ``Dense(activation)`` (with ``batch_norm``:
    ``Dense -> BatchNorm -> activation``) and a ``Dropout`` when ``dropout > 0``; then a linear
    ``Dense(n_outputs)`` whose outputs are logits (the losses fuse the output function). The
    network ``lucidnet train`` builds for tables and ``tune``'s default.

    Shapes: x (n, features) -> (n, n_outputs).
    """
    layers: list[Layer] = []
    for units in hidden:
        if batch_norm:
            layers += [Dense(units, l2=l2), BatchNorm()]
            act = _activations.get(activation)  # a fresh activation layer per hidden layer
            layers += [] if act is None else [act]
        else:
            layers.append(Dense(units, activation=activation, l2=l2))
        if dropout > 0:
            layers.append(Dropout(dropout))
    layers.append(Dense(n_outputs, l2=l2))
    return Sequential(layers, name=name)
