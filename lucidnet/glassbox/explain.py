"""Explain one training step: every number of forward pass, loss, backward pass and update.

``explain_step(model, x, y)`` runs one step of the training loop's own ``train_step`` on the
textbook path (``fast=False``: training-mode ``forward``, loss, ``zero_grad``, ``backward``,
``optimizer.textbook_step``), records what each layer received and produced while it runs, and
reads the rest (``z``, gradients, the parameters' change, the optimizer's slots) afterwards:

1. forward: for a ``Dense`` layer the input ``x``, ``W``, ``b``, ``z = x W + b`` and ``a = f(z)``;
   for a ``Conv1D`` / ``Conv2D`` layer one output value worked out from its patch (patch,
   kernel, products, sum, bias, activation); for a pooling layer one window and its max or
   mean (:mod:`lucidnet.glassbox.explain_conv`; ``output_index`` chooses the value);
2. loss: how the value was computed from prediction and target (softmax probabilities and
   ``-log p[target]`` for cross-entropy, each squared error for MSE, ...), and ``dL/d(output)``;
3. backward, last layer first: ``dL/da``, ``dL/dz``, ``dL/dW``, ``dL/db``, ``dL/dx``; for a
   convolution one kernel weight's gradient as the sum over the batch and the positions of
   input times ``dL/dz`` (``weight_index`` chooses the weight), for max-pooling where the
   gradient went (the input that won the max);
4. the optimizer update: gradient, learning rate, momentum / Adam moments and bias corrections,
   each parameter before and after;
5. the loss on the same batch after the update.

With ``feature_names`` (for a model of a prepared table: ``airline=United``, ``text:delay``,
``age (standardised)``) the inputs are named: the row's non-zero inputs with the gradient of the
loss with respect to each, and the largest entries of the first layer's arrays by feature.
``feature_effects(model, X, feature_names)`` says which inputs move the predictions on many rows:
the change of each prediction when one input is set to 0.

The numbers are the real ones: ``train_step`` with the layers' own ``forward`` / ``backward`` and
the optimizer's own update produces them, so the explanation cannot drift from what training
does.

``apply=False`` (default) works on ``model.copy()`` and a deep copy of the optimizer, leaving the
model, its optimizer state and its dropout random stream untouched; ``apply=True`` performs the
step on the real model (as one step of ``fit`` would).
"""

from __future__ import annotations

import copy as _copy
import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

from .. import losses as _losses
from .. import optimizers as _optimizers
from .._validation import check_array, check_positive_int, check_same_length, describe
from ..activations import sigmoid, softmax
from ..base import Layer
from ..layers import Dense, Dropout, KernelLayer
from ..model import Sequential
from ..training import prepare_targets, train_step
from .explain_conv import (
    CONVOLUTIONS,
    POOLS,
    ConvForward,
    ConvWeightGradient,
    PoolDetail,
    conv_details,
    pool_details,
)

__all__ = [
    "StepExplanation",
    "LayerForward",
    "LayerBackward",
    "LossStep",
    "ParamUpdate",
    "UpdateStep",
    "explain_step",
    "format_array",
    "FeatureEffects",
    "feature_effects",
]

# how each activation's derivative is computed in backward, for the text
_DERIVATIVES = {
    "sigmoid": "f'(z) = a (1 - a)",
    "tanh": "f'(z) = 1 - a^2",
    "relu": "f'(z) = 1 if z > 0 else 0",
    "leaky_relu": "f'(z) = 1 if z > 0 else alpha",
    "elu": "f'(z) = 1 if z > 0 else a + alpha",
    "gelu": "f'(z) of the tanh-approximated GELU",
    "softmax": "softmax Jacobian: dz = a * (da - sum(da * a))",
    "linear": "f'(z) = 1",
}


# --------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------


@dataclass
class LayerForward:
    """What one layer did in the forward pass (arrays have the batch as first axis)."""

    name: str
    kind: str
    description: str
    input: np.ndarray
    output: np.ndarray
    params: dict[str, np.ndarray]
    z: np.ndarray | None = None  # Dense only: x W + b
    activation: str | None = None  # Dense only: the activation's name
    conv: ConvForward | None = None  # Conv1D / Conv2D: one output value from its patch
    pool: PoolDetail | None = None  # MaxPool / AvgPool: one window and its gradient


@dataclass
class LayerBackward:
    """What one layer did in the backward pass."""

    name: str
    kind: str
    d_output: np.ndarray  # dL/d(output) = dL/da for a Dense layer
    d_z: np.ndarray | None  # Dense only: dL/dz
    grads: dict[str, np.ndarray]  # dL/dW, dL/db, ...
    d_input: np.ndarray  # dL/d(input), handed to the previous layer
    conv: ConvWeightGradient | None = None  # Conv1D / Conv2D: one dL/dW as a sum of terms


@dataclass
class LossStep:
    """The loss and how it was computed."""

    name: str
    value: float  # data loss + penalty: what the training loop reports
    data_loss: float
    penalty: float
    terms: dict[str, np.ndarray]  # intermediate quantities, e.g. softmax probabilities
    formulas: list[str]
    grad: np.ndarray  # dL/d(output of the network)
    grad_formula: str


@dataclass
class ParamUpdate:
    """One parameter array's update."""

    name: str
    before: np.ndarray
    grad: np.ndarray  # from backpropagation
    applied_grad: np.ndarray  # after clipping / coupled weight decay, what the update used
    after: np.ndarray
    slots_before: dict[str, np.ndarray]
    slots_after: dict[str, np.ndarray]
    terms: dict[str, np.ndarray]  # e.g. Adam's bias-corrected m_hat, v_hat

    @property
    def step(self) -> np.ndarray:
        """after - before."""
        return self.after - self.before


@dataclass
class UpdateStep:
    """The optimizer step."""

    optimizer: str
    config: dict[str, Any]
    lr: float
    t: int  # the optimizer's step counter for this update (1 for the first)
    grad_norm: float
    clipped: bool
    formulas: list[str]
    scalars: dict[str, float]
    params: list[ParamUpdate]

    def __getitem__(self, name: str) -> ParamUpdate:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"no parameter {name!r}; have {', '.join(p.name for p in self.params)}")


@dataclass
class StepExplanation:
    """Everything one training step did; ``to_text()`` for people, ``to_dict()`` for JSON."""

    x: np.ndarray
    y: np.ndarray
    applied: bool
    forward: list[LayerForward]
    loss: LossStep
    backward: list[LayerBackward]  # last layer first, as computed
    update: UpdateStep
    loss_before: float
    loss_after: float
    max_entries: int = 16
    notes: list[str] = field(default_factory=list)
    feature_names: list[str] | None = None  # one per input column, or None (indices)

    def inputs(self, max_entries: int | None = None) -> list[dict[str, Any]]:
        """The first sample's non-zero inputs, largest magnitude first (at most
        ``max_entries``): ``{"index", "name", "value", "d_loss_d_input"}``, where
        ``d_loss_d_input`` is dL/dx from this step's backward pass (``None`` when the model
        starts with an embedding, whose integer input has no gradient)."""
        k = self.max_entries if max_entries is None else max_entries
        x = np.asarray(self.x[0]).reshape(-1)
        grad = self.backward[-1].d_input if self.backward else None
        g = None if grad is None or grad.size != self.x.size else np.asarray(grad[0]).reshape(-1)
        nonzero = np.flatnonzero(x)
        order = nonzero[np.argsort(-np.abs(x[nonzero].astype(np.float64)), kind="stable")][:k]
        return [
            {
                "index": int(i),
                "name": _feature_label(int(i), self.feature_names),
                "value": _num(x[i]),
                "d_loss_d_input": None if g is None else _num(g[i]),
            }
            for i in order
        ]

    def layer(self, name: str) -> tuple[LayerForward, LayerBackward]:
        """The forward and backward records of layer ``name``."""
        for f in self.forward:
            if f.name == name:
                b = next(b for b in self.backward if b.name == name)
                return f, b
        raise KeyError(f"no layer {name!r}; have {', '.join(f.name for f in self.forward)}")

    # -- output ---------------------------------------------------------------------------------
    def to_dict(self, max_entries: int | None = None) -> dict[str, Any]:
        """JSON-serialisable form with the same structure as the attributes. Arrays with at most
        ``max_entries`` entries become nested lists; larger ones become summaries (shape, norm,
        mean, min, max, largest entries). NaN / inf become ``None``."""
        k = self.max_entries if max_entries is None else max_entries
        out = _to_jsonable(self, k)
        out["batch_size"] = int(self.x.shape[0])
        # the names of the non-zero inputs, not the whole list (thousands for TF-IDF text)
        del out["feature_names"]
        out["inputs"] = self.inputs(k) if self.x.ndim == 2 else []
        return out

    def to_json(self, max_entries: int | None = None) -> str:
        return json.dumps(self.to_dict(max_entries), indent=2)

    def to_text(self, max_entries: int | None = None) -> str:
        """Readable terminal text, section by section."""
        k = self.max_entries if max_entries is None else max_entries
        names = self.feature_names
        sections = [
            _text_header(self),
            *([_text_inputs(self, k)] if names is not None and self.x.ndim == 2 else []),
            _text_forward(self.forward, k, names),
            _text_loss(self.loss, k),
            _text_backward(self.forward, self.backward, k, names),
            _text_update(self.update, k),
            _text_result(self, k),
        ]
        return "\n\n".join("\n".join(lines) for lines in sections)

    def __str__(self) -> str:
        return self.to_text()


# --------------------------------------------------------------------------------------------
# the text, section by section (each returns its lines)
# --------------------------------------------------------------------------------------------


def _text_header(e: StepExplanation) -> list[str]:
    n = int(e.x.shape[0])
    where = "applied to the model" if e.applied else "on a copy: the model is unchanged"
    chain = " -> ".join(f"{f.name} {f.description}" for f in e.forward)
    return [
        f"One training step on a batch of {n} sample{'s' if n != 1 else ''} ({where})",
        f"model: {chain}",
        f"loss: {e.loss.name}   optimizer: {e.update.optimizer}",
    ]


def _text_inputs(e: StepExplanation, k: int) -> list[str]:
    """The first sample's non-zero inputs by name, with dL/dx of each."""
    n_in = int(np.prod(e.x.shape[1:]))
    shown = e.inputs(k)
    nonzero = int(np.count_nonzero(e.x[0]))
    first = "the sample" if e.x.shape[0] == 1 else "the first sample"
    lines = [f"0. The input: {nonzero} of {n_in} features of {first} are non-zero"]
    if not shown:
        return lines
    w = min(40, max(len(r["name"]) for r in shown))
    lines.append(f"    {'feature':<{w}}  {'value':>10}  {'dL/dx':>11}")
    for r in shown:
        g = "-" if r["d_loss_d_input"] is None else f"{r['d_loss_d_input']:>11.4g}"
        lines.append(f"    {r['name']:<{w}}  {r['value']:>10.4g}  {g:>11}")
    if nonzero > len(shown):
        lines.append(f"    ... and {nonzero - len(shown)} more (largest values shown)")
    lines.append("    dL/dx > 0: a larger value of the input would raise the loss on this row")
    return lines


def _text_forward(forward: list[LayerForward], k: int, names: list[str] | None = None) -> list[str]:
    lines = ["1. Forward pass (first layer to last, training mode)"]
    for i, f in enumerate(forward):
        out_note = "network output" if i == len(forward) - 1 else None
        lines.append(f"  {f.name}  {f.description}")
        first = names if i == 0 else None  # only the first layer sees the named features
        if f.z is not None:
            lines += _dense_forward_rows(f, k, out_note, first)
        else:
            lines += _layer_forward_rows(f, k, out_note, first)
        if f.conv is not None:
            lines += _conv_forward_rows(f.conv, k)
        if f.pool is not None:
            lines += _pool_forward_rows(f.pool, k)
    return lines


def _dense_forward_rows(
    f: LayerForward, k: int, out_note: str | None, names: list[str] | None = None
) -> list[str]:
    """input x, W, b, z = x W + b and a = f(z) (z is the output when there is no activation)."""
    rows = [_row("input x", f.input, k, names=names, axis=-1)]
    rows += [
        _row(key, v, k, names=names if key == "W" else None, axis=0) for key, v in f.params.items()
    ]
    z_label = "z = x W + b" if "b" in f.params else "z = x W"
    if f.activation is None:
        return rows + [_row(z_label, f.z, k, out_note)]
    return rows + [_row(z_label, f.z, k), _row(f"a = {f.activation}(z)", f.output, k, out_note)]


def _layer_forward_rows(
    f: LayerForward, k: int, out_note: str | None, names: list[str] | None = None
) -> list[str]:
    rows = [_row("input", f.input, k, names=names, axis=-1)]
    rows += [_row(key, v, k) for key, v in f.params.items()]
    return rows + [_row("output", f.output, k, out_note)]


def _text_loss(lo: LossStep, k: int) -> list[str]:
    lines = [f"2. Loss: {lo.name}"]
    lines += [f"    {formula}" for formula in lo.formulas]
    lines += [_row(key, v, k) for key, v in lo.terms.items()]
    lines.append(_row("data loss", lo.data_loss, k))
    if lo.penalty:
        lines += [_row("+ L1/L2 penalty", lo.penalty, k), _row("= loss", lo.value, k)]
    lines.append(f"    {lo.grad_formula}")
    lines.append(_row(lo.grad_formula.split(" = ")[0], lo.grad, k))
    return lines


def _text_backward(
    forward: list[LayerForward],
    backward: list[LayerBackward],
    k: int,
    names: list[str] | None = None,
) -> list[str]:
    lines = ["3. Backward pass (last layer to first)"]
    layer_names = [f.name for f in forward]  # not ``names``: those are the input features
    for b in backward:
        pos = layer_names.index(b.name)
        f = forward[pos]
        source = "the loss" if pos == len(layer_names) - 1 else layer_names[pos + 1]
        lines.append(f"  {b.name}  {f.description}")
        first = names if pos == 0 else None
        if b.d_z is not None:
            lines += _dense_backward_rows(f, b, source, k, first)
        else:
            lines.append(_row("dL/d(output)", b.d_output, k, f"from {source}"))
            lines += [_row(f"dL/d{key}", v, k) for key, v in b.grads.items()]
        if b.conv is not None:
            lines += _conv_backward_rows(b.conv, f, k)
        if f.pool is not None:
            lines += _pool_backward_rows(f.pool, k)
        what = f"passed back to {layer_names[pos - 1]}" if pos > 0 else "w.r.t. the input; not used"
        label = "dL/dx = dL/dz W^T" if b.d_z is not None else "dL/d(input)"
        named = first if b.d_input.shape == f.input.shape else None
        lines.append(_row(label, b.d_input, k, what, names=named, axis=-1))
    return lines


def _dense_backward_rows(
    f: LayerForward, b: LayerBackward, source: str, k: int, names: list[str] | None = None
) -> list[str]:
    """dL/da, dL/dz with the activation's derivative, dL/dW and dL/db."""
    rows = [_row("dL/da", b.d_output, k, f"from {source}")]
    if f.activation is None:
        rows.append(_row("dL/dz = dL/da", b.d_z, k, "no activation"))
    else:
        deriv = _DERIVATIVES.get(f.activation, "f'(z)")
        rows.append(_row("dL/dz = dL/da * f'(z)", b.d_z, k, deriv))
    if "W" in b.grads:
        rows.append(_row("dL/dW = x^T dL/dz", b.grads["W"], k, _reg_note(f), names=names, axis=0))
    if "b" in b.grads:
        rows.append(_row("dL/db = sum_batch dL/dz", b.grads["b"], k))
    return rows


_AXES = {1: ("positions",), 2: ("rows", "columns"), 3: ("depths", "rows", "columns")}


def _where(input_index: list[list[int]], size: tuple[int, ...]) -> str:
    """``rows [2, 3, 4], columns [-1, 0, 1] (-1: padding)``."""
    names = _AXES.get(len(input_index), tuple(f"axis {i}" for i in range(len(input_index))))
    parts = [f"{n} {idx}" for n, idx in zip(names, input_index)]
    outside = any(not 0 <= v < n for idx, n in zip(input_index, size) for v in idx)
    return ", ".join(parts) + (" (outside the input: padding)" if outside else "")


def _small(a: np.ndarray, k: int) -> str:
    """A kernel-sized array in full up to 81 entries (a 3x3 kernel over 9 channels), channel
    first so each channel prints as a grid."""
    return format_array(np.moveaxis(a, -1, 0) if a.ndim > 1 else a, max(k, 81))


def _conv_forward_rows(c: ConvForward, k: int) -> list[str]:
    """One output value of a convolution: patch, kernel, products, sum, bias, activation."""
    pos = ", ".join(map(str, c.position))
    by_ch = " (by input channel)" if c.patch.shape[-1] > 1 else ""
    rows = [
        f"    one output value worked out: sample {c.sample}, position ({pos}), filter {c.filter}",
        f"    under the kernel: input {_where(c.input_index, c.input_size)}",
        f"    {'patch x' + by_ch:<{_LABEL_WIDTH}} " + _indent(_small(c.patch, k)),
        f"    {'kernel W[..., ' + str(c.filter) + ']':<{_LABEL_WIDTH}} "
        + _indent(_small(c.kernel, k)),
        f"    {'products patch * W':<{_LABEL_WIDTH}} " + _indent(_small(c.products, k)),
        _row(f"sum of the {c.products.size} products", c.total, k),
        _row(f"+ bias b[{c.filter}]", c.bias, k),
        _row("= z", c.z, k),
    ]
    check = f"whole layer recomputed from its patches: max |diff| {c.check_max_abs_diff:.2g}"
    label = "output" if c.activation is None else f"a = {c.activation}(z)"
    rows.append(_row(label, c.recomputed, k, f"the layer's output there: {c.output:.6g}; {check}"))
    return rows


def _indent(text: str) -> str:
    return text.replace("\n", "\n" + " " * (4 + _LABEL_WIDTH + 1))


def _conv_backward_rows(c: ConvWeightGradient, f: LayerForward, k: int) -> list[str]:
    """dL/dW of one kernel weight as the sum over the batch and the positions of
    x (under that weight) * dL/dz, its largest terms shown."""
    w = ", ".join(map(str, c.weight))
    fl = c.weight[-1]
    rank = len(c.weight) - 2
    rows = [
        f"    one kernel weight's gradient: W[{w}] = kernel offset {tuple(c.weight[:rank])}, "
        f"input channel {c.weight[rank]}, filter {fl}",
        f"    dL/dW[{w}] = sum over the batch and every output position of x (the input under "
        f"W[{w}] there) * dL/dz[..., {fl}]",
        f"    the {min(len(c.terms), c.n_terms)} largest of its {c.n_terms} terms:",
    ]
    for t in c.terms:
        at = ", ".join(map(str, t["input_index"]))
        where = ", ".join(map(str, t["position"]))
        rows.append(
            f"      sample {t['sample']}, position ({where}): x[{at}] = {t['x']:.4g} times "
            f"dL/dz = {t['dz']:.4g} gives {t['product']:.4g}"
        )
    rows.append(_row(f"sum of the {c.n_terms} terms", c.total, k))
    if c.penalty_grad:
        rows.append(_row("+ L1/L2 penalty gradient", c.penalty_grad, k))
    rows.append(_row(f"= dL/dW[{w}]", c.grad, k, "the layer's own gradient"))
    if c.bias_grad is not None:
        rows.append(
            _row(f"dL/db[{fl}] = sum dL/dz", c.bias_total, k, f"the layer's own: {c.bias_grad:.6g}")
        )
    return rows


def _pool_forward_rows(p: PoolDetail, k: int) -> list[str]:
    pos = ", ".join(map(str, p.position))
    rows = [
        f"    one window: sample {p.sample}, position ({pos}), channel {p.channel}; input "
        f"{_where(p.input_index, p.input_size)}",
        f"    {'window (NaN: padding)':<{_LABEL_WIDTH}} " + _indent(_small(p.window, k)),
    ]
    note = f"the layer's output there: {p.output:.6g}; whole layer recomputed: max |diff| "
    note += f"{p.check_max_abs_diff:.2g}"
    if p.winner is not None:
        at = ", ".join(map(str, p.winner))
        rows.append(_row(f"max, at x[{at}]", p.recomputed, k, note))
    else:
        rows.append(_row(f"mean of {p.count} inputs", p.recomputed, k, note))
    return rows


def _pool_backward_rows(p: PoolDetail, k: int) -> list[str]:
    if p.winner is not None:
        at = ", ".join(map(str, p.winner))
        how = f"goes to the input that won the max, x[{at}], and to no other"
    else:
        how = f"is shared equally: dL/dy / {p.count} to each input of the window"
    check = f"routing of the whole layer recomputed: max |diff| {p.routing_max_abs_diff:.2g}"
    return [
        f"    the window's dL/dy = {p.d_output:.4g} {how}",
        f"    {'dL/dx over the window':<{_LABEL_WIDTH}} "
        + _indent(_small(p.d_window, k))
        + f"   ({check})",
    ]


def _text_update(up: UpdateStep, k: int) -> list[str]:
    lines = [
        f"4. Update: {up.optimizer}, step t = {up.t}, learning rate {up.lr:.6g}",
        f"    gradient norm {up.grad_norm:.6g}" + (" (clipped)" if up.clipped else ""),
    ]
    lines += [f"    {formula}" for formula in up.formulas]
    lines += [_row(key, v, k) for key, v in up.scalars.items()]
    for p in up.params:
        lines += _param_rows(p, k)
    return lines


def _param_rows(p: ParamUpdate, k: int) -> list[str]:
    rows = [f"  {p.name}", _row("before p", p.before, k), _row("gradient g", p.grad, k)]
    if not np.array_equal(p.grad, p.applied_grad):
        rows.append(_row("g as applied", p.applied_grad, k, "after clipping / weight decay"))
    rows += [_row(f"{s} (new)", v, k) for s, v in p.slots_after.items()]
    rows += [_row(s, v, k) for s, v in p.terms.items()]
    return rows + [_row("step = after - before", p.step, k), _row("after p_new", p.after, k)]


def _text_result(e: StepExplanation, k: int) -> list[str]:
    change = e.loss_after - e.loss_before
    rel = change / abs(e.loss_before) if e.loss_before else float("nan")
    same = "same batch, same dropout mask" if e.notes else "same batch"
    return [
        "5. Result",
        _row("loss before update", e.loss_before, k),
        _row("loss after update", e.loss_after, k, same),
        _row("change", change, k, f"{rel:+.2%}"),
    ] + [f"  note: {note}" for note in e.notes]


def _reg_note(f: LayerForward) -> str | None:
    # _describe_layer marks layers with L1/L2 penalties, whose gradient backward adds to dL/dW
    return "plus the L1/L2 penalty's gradient" if "+ reg(" in f.description else None


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------

_LABEL_WIDTH = 26


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return _num(obj)
    if isinstance(obj, (np.integer, int, bool, str)) or obj is None:
        return obj.item() if isinstance(obj, np.generic) else obj
    return repr(obj)


def _to_jsonable(obj: Any, k: int) -> Any:
    """Recursively convert records (dataclasses), dicts, lists and arrays for ``json.dumps``."""
    if is_dataclass(obj) and not isinstance(obj, type):
        if isinstance(obj, (ConvForward, PoolDetail)):
            k = max(k, 81)  # patch, kernel, products, window in full (as in the text)
        out = {f.name: _to_jsonable(getattr(obj, f.name), k) for f in fields(obj)}
        if isinstance(obj, ParamUpdate):
            out["step"] = _to_jsonable(obj.step, k)
        return out
    if isinstance(obj, np.ndarray):
        return _array_dict(obj, k)
    if isinstance(obj, dict):
        return {str(key): _to_jsonable(v, k) for key, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v, k) for v in obj]
    return _jsonable(obj)


def _largest(a: np.ndarray, count: int = 3) -> list[tuple[tuple[int, ...], float]]:
    flat = np.abs(np.nan_to_num(a.reshape(-1).astype(np.float64), nan=np.inf))
    count = min(count, flat.size)
    top = np.argpartition(-flat, count - 1)[:count]
    top = top[np.argsort(-flat[top], kind="stable")]
    return [
        (tuple(int(i) for i in np.unravel_index(int(j), a.shape)), float(a.reshape(-1)[j]))
        for j in top
    ]


def _array_dict(a: Any, max_entries: int) -> Any:
    a = np.asarray(a)
    if a.ndim == 0:
        return _num(a) if a.dtype.kind == "f" else a.item()
    if a.size <= max_entries:
        return _jsonable(a.tolist())  # nested lists; NaN / inf become None
    f = a.astype(np.float64)
    return {
        "shape": list(a.shape),
        "norm": _num(np.linalg.norm(f)),
        "mean": _num(f.mean()),
        "min": _num(f.min()),
        "max": _num(f.max()),
        "largest": [{"index": list(i), "value": _num(v)} for i, v in _largest(f)],
    }


def _feature_label(i: int, names: list[str] | None) -> str:
    return names[i] if names is not None and 0 <= i < len(names) else f"input {i}"


def _index_text(index: tuple[int, ...], names: list[str] | None, axis: int) -> str:
    """``[0, 5]``, or with names for ``axis``: ``[0, airline=United]``."""
    if names is None or not index:
        return str(list(index))
    ax = axis % len(index)
    parts = [names[i] if j == ax and 0 <= i < len(names) else str(i) for j, i in enumerate(index)]
    return "[" + ", ".join(parts) + "]"


def format_array(
    a: Any, max_entries: int = 16, *, names: list[str] | None = None, axis: int = -1
) -> str:
    """An array in full when it has at most ``max_entries`` entries, else a one-line summary
    (shape, L2 norm, mean, range and the three entries of largest magnitude).

    ``names`` label the indices along ``axis`` of those largest entries (for example the
    input features of a first layer's ``W``, ``axis=0``)."""
    a = np.asarray(a)
    if a.ndim == 0:
        return f"{float(a):.6g}" if a.dtype.kind == "f" else str(a.item())
    if a.size <= max_entries:
        if a.dtype.kind == "f":
            return np.array2string(
                a.astype(np.float64),
                precision=4,
                floatmode="maxprec",
                separator=", ",
                max_line_width=100 - _LABEL_WIDTH - 4,
            )
        return np.array2string(a, separator=", ", max_line_width=100 - _LABEL_WIDTH - 4)
    f = a.astype(np.float64)
    big = ", ".join(f"{_index_text(i, names, axis)}={v:.4g}" for i, v in _largest(f))
    return (
        f"shape {a.shape}, norm {np.linalg.norm(f):.4g}, mean {f.mean():.4g}, "
        f"range [{f.min():.4g}, {f.max():.4g}]; largest: {big}"
    )


def _row(
    label: str,
    value: Any,
    k: int,
    note: str | None = None,
    *,
    names: list[str] | None = None,
    axis: int = -1,
) -> str:
    text = format_array(value, k, names=names, axis=axis)
    pad = " " * (4 + _LABEL_WIDTH + 1)
    lines = text.split("\n")
    first = f"    {label:<{_LABEL_WIDTH}} {lines[0]}"
    if len(label) > _LABEL_WIDTH:
        first = f"    {label}\n{pad}{lines[0]}"
    body = [first] + [pad + line for line in lines[1:]]
    if note:
        body[-1] += f"   ({note})"
    return "\n".join(body)


# --------------------------------------------------------------------------------------------
# the loss, term by term
# --------------------------------------------------------------------------------------------


def _loss_terms(
    loss: _losses.Loss, z: np.ndarray, y: np.ndarray
) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Intermediate quantities of the loss (recomputed in float64 for display), the formulas,
    and the formula of dL/d(output)."""
    z = np.asarray(z, dtype=np.float64)
    if isinstance(loss, _losses.CrossEntropy):
        plain = y.ndim == 1 and not loss.label_smoothing and loss.class_weight is None
        return _cross_entropy_terms(z, y) if plain else _weighted_cross_entropy_terms(loss, z, y)
    t = np.asarray(y, dtype=np.float64)
    if isinstance(loss, _losses.BinaryCrossEntropy):
        return _binary_cross_entropy_terms(loss, z, t)
    return _regression_terms(loss, z, t)


def _cross_entropy_terms(
    z: np.ndarray, y: np.ndarray
) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Softmax cross-entropy on integer labels, without smoothing or class weights."""
    n = z.shape[0]
    p = softmax(z.copy())
    rows = np.arange(n)
    terms = {
        "logits z": z,
        "p = softmax(z)": p,
        "target class": y,
        "p[target]": p[rows, y],
        "-log p[target]": -np.log(p[rows, y]),
    }
    formulas = [
        "p = exp(z - max z) / sum exp(z - max z)   (softmax, per sample)",
        "per-sample loss = -log p[target]",
        f"loss = mean over the {n} sample(s)",
    ]
    return terms, formulas, f"dL/dz = (p - onehot(target)) / {n}"


def _weighted_cross_entropy_terms(
    loss: _losses.CrossEntropy, z: np.ndarray, y: np.ndarray
) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Softmax cross-entropy with soft / one-hot targets, label smoothing or class weights."""
    n, k = z.shape[0], z.shape[1]
    p = softmax(z.copy())
    t = np.zeros((n, k)) if y.ndim == 1 else np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        t[np.arange(n), y] = 1.0
    if loss.label_smoothing:
        t = (1 - loss.label_smoothing) * t + loss.label_smoothing / k
    w = np.ones(k) if loss.class_weight is None else loss.class_weight
    per_class = -(w * t) * np.log(p)
    terms = {
        "logits z": z,
        "p = softmax(z)": p,
        "target t": t,
        "-w t log p": per_class,
        "per-sample loss": per_class.sum(axis=1),
    }
    formulas = [
        "p = softmax(z)",
        "t = (1 - s) t + s / k (label smoothing s)" if loss.label_smoothing else "",
        "per-sample loss = -sum_c w_c t_c log p_c",
        f"loss = mean over the {n} sample(s)",
    ]
    grad = f"dL/dz = (p * sum_c(w_c t_c) - w t) / {n}"
    return terms, [f for f in formulas if f], grad


def _binary_cross_entropy_terms(
    loss: _losses.BinaryCrossEntropy, z: np.ndarray, t: np.ndarray
) -> tuple[dict[str, np.ndarray], list[str], str]:
    n, units = z.shape[0], int(np.prod(z.shape[1:]))
    per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    if loss.class_weight is not None:
        per = per * (t * loss.class_weight[1] + (1 - t) * loss.class_weight[0])
    terms = {
        "logits z": z,
        "s = sigmoid(z)": sigmoid(z.copy()),
        "target t": t,
        "-t log s - (1-t) log(1-s)": per,
        "per-sample loss": per.reshape(n, -1).mean(axis=1),
    }
    formulas = [
        "s = 1 / (1 + exp(-z))",
        "per-unit loss = -t log s - (1 - t) log(1 - s)",
        f"per-sample loss = mean over the {units} output unit(s); loss = mean over {n}",
    ]
    return terms, formulas, f"dL/dz = (s - t) / ({units} * {n})"


def _regression_terms(
    loss: _losses.Loss, z: np.ndarray, t: np.ndarray
) -> tuple[dict[str, np.ndarray], list[str], str]:
    """MSE, MAE and Huber per unit; any other loss only by its value and gradient."""
    n, units = z.shape[0], int(np.prod(z.shape[1:]))
    r = z - t
    terms = {"prediction p": z, "target t": t, "error p - t": r}
    if isinstance(loss, _losses.MSE):
        terms["(p - t)^2"] = r * r
        formulas = ["per-unit loss = (p - t)^2"]
        grad = f"dL/dp = 2 (p - t) / ({units} * {n})"
    elif isinstance(loss, _losses.MAE):
        terms["|p - t|"] = np.abs(r)
        formulas = ["per-unit loss = |p - t|"]
        grad = f"dL/dp = sign(p - t) / ({units} * {n})"
    elif isinstance(loss, _losses.Huber):
        d = loss.delta
        terms["huber(p - t)"] = np.where(np.abs(r) <= d, 0.5 * r * r, d * (np.abs(r) - 0.5 * d))
        formulas = [f"per-unit loss = r^2 / 2 if |r| <= {d:g} else {d:g} (|r| - {d:g} / 2)"]
        grad = f"dL/dp = clip(p - t, -{d:g}, {d:g}) / ({units} * {n})"
    else:
        return terms, [f"{type(loss).__name__}: value and gradient from the loss itself"], "dL/dp"
    last = list(terms.values())[-1]
    terms["per-sample loss"] = last.reshape(n, -1).mean(axis=1)
    formulas.append(f"per-sample loss = mean over the {units} output unit(s)")
    formulas.append(f"loss = mean over the {n} sample(s)")
    return terms, formulas, grad


# --------------------------------------------------------------------------------------------
# the optimizer, formula by formula
# --------------------------------------------------------------------------------------------


def _update_formulas(opt: _optimizers.Optimizer, t: int) -> tuple[list[str], dict[str, float]]:
    formulas: list[str] = []
    scalars: dict[str, float] = {}
    if opt.clip_norm is not None:
        formulas.append(f"g = g * {opt.clip_norm:g} / ||g|| if ||g|| > {opt.clip_norm:g}")
    if opt.clip_value is not None:
        formulas.append(f"g = clip(g, -{opt.clip_value:g}, {opt.clip_value:g})")
    if opt.weight_decay and opt.coupled_decay:
        formulas.append(f"g = g + {opt.weight_decay:g} p   (L2 weight decay)")
    if isinstance(opt, _optimizers.Adam):
        b1, b2 = opt.beta1, opt.beta2
        if isinstance(opt, _optimizers.AdamW) and opt.weight_decay:
            formulas.append(f"p = p (1 - lr * {opt.weight_decay:g})   (decoupled weight decay)")
        formulas += [
            f"m = {b1:g} m_old + {1 - b1:g} g          (first moment)",
            f"v = {b2:g} v_old + {1 - b2:g} g^2        (second moment)",
            f"m_hat = m / (1 - {b1:g}^{t}),  v_hat = v / (1 - {b2:g}^{t})   (bias corrections)",
            f"p_new = p - lr m_hat / (sqrt(v_hat) + {opt.eps:g})",
        ]
        scalars["1 - beta1^t"] = 1.0 - b1**t
        scalars["1 - beta2^t"] = 1.0 - b2**t
    elif isinstance(opt, _optimizers.SGD):
        mu = opt.momentum
        if not mu:
            formulas.append("p_new = p - lr g")
        elif opt.nesterov:
            formulas += [f"b = {mu:g} b_old + g", f"p_new = p - lr (g + {mu:g} b)   (Nesterov)"]
        else:
            formulas += [f"b = {mu:g} b_old + g   (momentum buffer)", "p_new = p - lr b"]
    elif isinstance(opt, _optimizers.RMSprop):
        formulas.append(f"v = {opt.rho:g} v_old + {1 - opt.rho:g} g^2")
        if opt.momentum:
            formulas += [
                f"b = {opt.momentum:g} b_old + g / (sqrt(v) + {opt.eps:g})",
                "p_new = p - lr b",
            ]
        else:
            formulas.append(f"p_new = p - lr g / (sqrt(v) + {opt.eps:g})")
    elif isinstance(opt, _optimizers.AdaGrad):
        formulas += ["s = s_old + g^2", f"p_new = p - lr g / (sqrt(s) + {opt.eps:g})"]
    else:
        formulas.append(f"p_new = {type(opt).__name__} update of p")
    return formulas, scalars


# --------------------------------------------------------------------------------------------
# the step: train_step on a copy, watched layer by layer
# --------------------------------------------------------------------------------------------


def _describe_layer(layer: Layer) -> str:
    text = repr(layer)
    l1, l2 = getattr(layer, "l1", 0.0), getattr(layer, "l2", 0.0)  # Dense and convolutions
    if isinstance(layer, KernelLayer) and (l1 or l2):
        text += f" + reg(l1={l1:g}, l2={l2:g})"
    return text


def _short_repr(obj: Any, name: str | None = None) -> str:
    """``Adam(lr=0.001, beta1=0.9, ...)`` without the settings that are off (None / 0 / False)."""
    items = [f"{k}={v!r}" for k, v in obj.get_config().items() if v not in (None, 0, 0.0, False)]
    name = name or type(obj).__name__
    return f"{name}({', '.join(items)})" if items else name


def _slot_arrays(state: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    return {s: arrays[name] for s, arrays in state.get("slots", {}).items() if name in arrays}


class _LayerTaps:
    """Inside a ``with`` block, records what every layer's textbook ``forward`` and ``backward``
    received and returned (and the gradients ``backward`` left in ``grads``), through the
    model's ``observers`` hook, so ``train_step`` runs exactly as in training and the records
    hold its own numbers."""

    def __init__(self, model: Sequential) -> None:
        self.model = model
        self.forward: list[LayerForward] = []  # first layer first
        self.backward: list[LayerBackward] = []  # last layer first, as computed

    def __enter__(self) -> _LayerTaps:
        self.model.observers.append(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        self.model.observers.remove(self._record)

    def _record(self, stage: str, layer: Layer, received: np.ndarray, out: np.ndarray) -> None:
        if stage == "forward":
            self.forward.append(_forward_record(layer, received, out))
        else:
            self.backward.append(_backward_record(layer, received, out))


def _forward_record(layer: Layer, x: np.ndarray, out: np.ndarray) -> LayerForward:
    return LayerForward(
        name=str(layer.name),
        kind=type(layer).__name__,
        description=_describe_layer(layer),
        input=np.array(x),
        output=np.array(out),
        params={key: v.copy() for key, v in layer.params.items()},  # before the update
    )


def _backward_record(layer: Layer, dy: np.ndarray, dx: np.ndarray) -> LayerBackward:
    return LayerBackward(
        name=str(layer.name),
        kind=type(layer).__name__,
        d_output=np.array(dy),
        d_z=None,
        grads={key: g.copy() for key, g in layer.grads.items()},  # before the optimizer
        d_input=np.array(dx),
    )


def _add_dense_details(
    layers: list[Layer], forward: list[LayerForward], backward: list[LayerBackward]
) -> None:
    """For display, a Dense layer's z and dL/dz, read from its textbook caches after the step:
    ``_z`` (z = x W + b) and its activation's cache, whose ``backward`` only reads it."""
    by_name = {b.name: b for b in backward}
    for layer, f in zip(layers, forward):
        if not isinstance(layer, Dense):
            continue
        act = layer.activation
        b = by_name[f.name]
        f.z = np.array(layer._z)
        f.activation = None if act is None else act.key
        b.d_z = np.array(b.d_output if act is None else act.backward(b.d_output))


def _add_conv_details(
    layers: list[Layer],
    forward: list[LayerForward],
    backward: list[LayerBackward],
    focus: _Focus,
) -> None:
    """For display, one output value and one weight gradient of every convolution, and one
    window of every pooling layer, computed from the step's records
    (:mod:`lucidnet.glassbox.explain_conv`)."""
    by_name = {b.name: b for b in backward}
    for layer, f in zip(layers, forward):
        b = by_name[f.name]
        at = focus.outputs.get(f.name)
        if isinstance(layer, CONVOLUTIONS):
            f.conv, b.conv = conv_details(
                layer, f.input, f.output, f.params, b.d_output, b.grads, at,
                focus.weights.get(f.name),
            )  # fmt: skip
        elif isinstance(layer, POOLS):
            f.pool = pool_details(layer, f.input, f.output, b.d_output, b.d_input, at)


@dataclass
class _Focus:
    """Where to look inside convolution / pooling layers: output indices
    ``(sample, *position, channel)`` and kernel indices ``(*offset, c_in, filter)`` by layer
    name (a layer not named gets the defaults of :func:`conv_details`)."""

    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    weights: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _check_focus(model: Sequential, output_index: Any, weight_index: Any) -> _Focus:
    """``output_index`` / ``weight_index`` as dicts of int tuples keyed by the names of the
    model's convolution (and, for outputs, pooling) layers; a TypeError / ValueError names the
    argument otherwise."""
    focus = _Focus()
    for arg, value, allowed, store in (
        ("output_index", output_index, CONVOLUTIONS + POOLS, focus.outputs),
        ("weight_index", weight_index, CONVOLUTIONS, focus.weights),
    ):
        if value is None:
            continue
        if not isinstance(value, dict):
            raise TypeError(
                f"{arg} must be a dict {{layer name: index tuple}}, got {describe(value)}"
            )
        names = [str(layer.name) for layer in model.layers if isinstance(layer, allowed)]
        for name, index in value.items():
            if name not in names:
                kinds = "/".join(t.__name__ for t in allowed)
                raise ValueError(
                    f"{arg} names layer {name!r}, which is not one of the model's {kinds} "
                    f"layers ({', '.join(names) or 'none'})"
                )
            if not isinstance(index, (tuple, list)) or not all(
                isinstance(i, (int, np.integer)) for i in index
            ):
                raise TypeError(f"{arg}[{name!r}] must be a tuple of ints, got {describe(index)}")
            store[name] = tuple(int(i) for i in index)
    return focus


@dataclass
class _Step:
    """What ``_run_step`` observed."""

    forward: list[LayerForward]
    backward: list[LayerBackward]
    value: float  # train_step's loss: data loss + penalties
    penalty: float
    lr: float
    t: int
    state_before: dict[str, Any]


def _run_step(
    work: Sequential,
    opt: _optimizers.Optimizer,
    loss_fn: _losses.Loss,
    xa: np.ndarray,
    ya: np.ndarray,
    focus: _Focus,
) -> _Step:
    """One textbook training step, ``train_step(fast=False)``, with its layers recorded."""
    penalty = work.penalty()  # of the weights before the update, as in train_step's loss
    lr, t, state_before = opt.current_lr, opt.iterations + 1, opt.state_dict()
    with _LayerTaps(work) as taps:
        value, _ = train_step(work, xa, ya, loss_fn, opt, fast=False)
    _add_dense_details(work.layers, taps.forward, taps.backward)
    _add_conv_details(work.layers, taps.forward, taps.backward, focus)
    return _Step(taps.forward, taps.backward, float(value), penalty, lr, t, state_before)


def _loss_record(loss_fn: _losses.Loss, step: _Step, ya: np.ndarray) -> LossStep:
    output = step.forward[-1].output
    # the data term alone: the same loss on the same output as inside train_step, which
    # returns it plus the penalties
    data_loss, _ = loss_fn(output, ya, validate=False)
    terms, formulas, grad_formula = _loss_terms(loss_fn, output, ya)
    return LossStep(
        name=_short_repr(loss_fn, loss_fn.key),
        value=step.value,
        data_loss=data_loss,
        penalty=step.penalty,
        terms=terms,
        formulas=formulas,
        grad=step.backward[0].d_output,  # what the last layer's backward received
        grad_formula=grad_formula,
    )


def _update_record(work: Sequential, opt: _optimizers.Optimizer, step: _Step) -> UpdateStep:
    """The optimizer's step, read from the parameters, gradients and slots before and after."""
    before = {f"{f.name}/{key}": v for f in step.forward for key, v in f.params.items()}
    by_name = {f"{b.name}/{key}": g for b in step.backward for key, g in b.grads.items()}
    grads = {name: by_name[name] for name, _, _ in work.parameters()}  # first layer first
    state_after = opt.state_dict()
    params = []
    for name, p, g in work.parameters():
        slots_after = _slot_arrays(state_after, name)
        slots_before = _slot_arrays(step.state_before, name) or {
            s: np.zeros_like(v) for s, v in slots_after.items()
        }
        params.append(
            ParamUpdate(
                name=name,
                before=before[name],
                grad=grads[name],
                applied_grad=g.copy(),  # the optimizer clips / decays the gradients in place
                after=p.copy(),
                slots_before=slots_before,
                slots_after=slots_after,
                terms=_adam_terms(opt, slots_after, step.t, step.lr),
            )
        )
    return _update_step(opt, step, grads, params)


def _update_step(
    opt: _optimizers.Optimizer, step: _Step, grads: dict[str, np.ndarray], params: list
) -> UpdateStep:
    default_norm = np.sqrt(sum(float(np.sum(v * v)) for v in grads.values()))
    grad_norm = float(opt.last_step.get("grad_norm", default_norm))
    formulas, scalars = _update_formulas(opt, step.t)
    return UpdateStep(
        optimizer=_short_repr(opt),
        config=opt.get_config(),
        lr=float(step.lr),
        t=step.t,
        grad_norm=grad_norm,
        clipped=opt.clip_norm is not None and grad_norm > opt.clip_norm,
        formulas=formulas,
        scalars=scalars,
        params=params,
    )


def _adam_terms(
    opt: _optimizers.Optimizer, slots: dict[str, np.ndarray], t: int, lr: float
) -> dict[str, np.ndarray]:
    """Adam's bias-corrected moments and the resulting step, recomputed for display."""
    if not isinstance(opt, _optimizers.Adam) or "m" not in slots:
        return {}
    m_hat = slots["m"].astype(np.float64) / (1.0 - opt.beta1**t)
    v_hat = slots["v"].astype(np.float64) / (1.0 - opt.beta2**t)
    return {
        "m_hat": m_hat,
        "v_hat": v_hat,
        "-lr*m_hat/(sqrt v_hat+eps)": -lr * m_hat / (np.sqrt(v_hat) + opt.eps),
    }


def _loss_after_update(
    replay: Sequential, work: Sequential, xa: np.ndarray, ya: np.ndarray, loss_fn: _losses.Loss
) -> float:
    """The loss on the same batch with the updated weights. ``replay`` is a copy of the model
    taken just before the step: its random streams draw the step's dropout masks again, and
    the working model's streams and BatchNorm running statistics are not advanced."""
    replay.set_weights(work.get_weights())
    value, _ = loss_fn(replay.forward(xa, training=True), ya)
    return float(value + replay.penalty())


def _replay_notes(layers: list[Layer]) -> list[str]:
    # display only: name the layers whose random draws the loss after the update repeats
    return [
        f"{layer.name}: the loss after the update reuses the step's dropout mask"
        for layer in layers
        if isinstance(layer, Dropout) and layer.rate > 0
    ]


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------


def explain_step(
    model: Sequential,
    x: Any,
    y: Any,
    loss: str | _losses.Loss | None = None,
    optimizer: str | _optimizers.Optimizer | None = None,
    *,
    apply: bool = False,
    max_entries: int = 16,
    feature_names: list[str] | None = None,
    output_index: dict[str, tuple[int, ...]] | None = None,
    weight_index: dict[str, tuple[int, ...]] | None = None,
) -> StepExplanation:
    """Run one training step on ``(x, y)`` and record every intermediate number.

    Args:
        model: a built ``Sequential`` (call ``build`` or ``fit`` first).
        x: one sample (per-sample shape, e.g. ``(64,)``) or a small batch ``(n, ...)``.
        y: its target(s), as for ``fit`` (a label, a one-hot row, a float ...).
        loss: loss name or instance (default: the model's loss).
        optimizer: optimizer name or instance (default: the model's optimizer, else
            ``Adam()`` as in ``fit``). Its state (moments, step counter) is used as is, so the
            explanation shows the *next* step of an ongoing training run.
        apply: ``False`` (default): run on ``model.copy()`` and a deep copy of the optimizer,
            leaving both untouched. ``True``: perform the step on the model itself (and on
            ``optimizer``; a new optimizer / loss is stored on the model if it had none).
        max_entries: arrays with more entries are summarised in ``to_text()`` / ``to_dict()``.
        feature_names: one name per input column (``model.input_shape == (d,)``), e.g. from
            a preparer's ``feature_names_out()``: the text names the row's inputs and the
            largest entries of the first layer's arrays by feature instead of by index.
        output_index: for convolution and pooling layers, by layer name, the output value
            worked out from its patch / window: ``(sample, *position, channel)``, e.g.
            ``{"conv2d_0": (0, 3, 5, 2)}``. Default: sample 0 at its largest |output|.
        weight_index: for convolution layers, by layer name, the kernel weight whose gradient
            is shown as a sum over the batch and the positions: ``(*offset, c_in, filter)``,
            e.g. ``{"conv2d_0": (1, 0, 0, 2)}``. Default: the largest |dL/dW|.

    Returns:
        A :class:`StepExplanation` (``.to_text()``, ``.to_dict()``; the raw arrays are its
        attributes).

    Raises:
        TypeError / ValueError: bad arguments, or a model that is not built.
    """
    _check_model(model)
    max_entries = check_positive_int(max_entries, "max_entries")
    names = check_feature_names(feature_names, model)
    focus = _check_focus(model, output_index, weight_index)
    loss_fn, opt = _loss_and_optimizer(model, loss, optimizer)
    xa, ya = _batch(model, loss_fn, x, y)
    work, work_opt = _working_pair(model, loss_fn, opt, apply)
    replay = work.copy()  # before the step: see _loss_after_update
    step = _run_step(work, work_opt, loss_fn, xa, ya, focus)
    return StepExplanation(
        x=np.array(xa),
        y=np.array(ya),
        applied=bool(apply),
        forward=step.forward,
        loss=_loss_record(loss_fn, step, ya),
        backward=step.backward,
        update=_update_record(work, work_opt, step),
        loss_before=step.value,
        loss_after=_loss_after_update(replay, work, xa, ya, loss_fn),
        max_entries=max_entries,
        notes=_replay_notes(work.layers),
        feature_names=names,
    )


def check_feature_names(feature_names: Any, model: Sequential) -> list[str] | None:
    """``feature_names`` as a list of str, one per input of a model with flat ``(d,)``
    inputs; ``None`` stays ``None``. Raises TypeError / ValueError naming the argument."""
    if feature_names is None:
        return None
    if isinstance(feature_names, str) or not isinstance(feature_names, (list, tuple)):
        raise TypeError(f"feature_names must be a list of str, got {describe(feature_names)}")
    bad = [v for v in feature_names if not isinstance(v, str)]
    if bad:
        raise TypeError(f"feature_names must be a list of str, got an entry {describe(bad[0])}")
    shape = tuple(model.input_shape or ())
    if len(shape) != 1 or model.layers[0].integer_input:
        raise ValueError(
            f"feature_names need a model with flat float inputs (d,), this one takes {shape}"
        )
    if len(feature_names) != shape[0]:
        raise ValueError(
            f"feature_names must have one name per input ({shape[0]}), got {len(feature_names)}"
        )
    return list(feature_names)


def _check_model(model: Any) -> None:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a lucidnet Sequential, got {describe(model)}")
    if not model.built:
        raise ValueError(
            "model is not built: call model.build(input_shape, seed=...) or fit it first"
        )


def _loss_and_optimizer(
    model: Sequential,
    loss: str | _losses.Loss | None,
    optimizer: str | _optimizers.Optimizer | None,
) -> tuple[_losses.Loss, _optimizers.Optimizer]:
    """The loss and optimizer to use: the arguments, else the model's (Adam() as in fit)."""
    if loss is None and model.loss is None:
        raise ValueError("explain_step needs a loss: pass loss='cross_entropy' / 'mse' ...")
    loss_fn = _losses.get(loss) if loss is not None else model.loss
    if optimizer is not None:
        return loss_fn, _optimizers.get(optimizer)
    return loss_fn, model.optimizer if model.optimizer is not None else _optimizers.Adam()


def _batch(
    model: Sequential, loss_fn: _losses.Loss, x: Any, y: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as a checked batch: one sample becomes a batch of one."""
    integer = model.layers[0].integer_input
    xa = np.asarray(x)
    if tuple(xa.shape) == tuple(model.input_shape):
        xa, y = xa[None], np.asarray(y)[None]
    xa = check_array(xa, "x", dtype=None if integer else model.dtype, min_ndim=2, integer=integer)
    if tuple(xa.shape[1:]) != model.input_shape:
        raise ValueError(
            f"x must be one sample of shape {model.input_shape} or a batch of shape "
            f"(n, {', '.join(map(str, model.input_shape))}), got {xa.shape}"
        )
    ya = prepare_targets(model, loss_fn, y, "y")
    check_same_length(xa, ya, "x", "y")
    return xa, ya


def _working_pair(
    model: Sequential, loss_fn: _losses.Loss, opt: _optimizers.Optimizer, apply: bool
) -> tuple[Sequential, _optimizers.Optimizer]:
    """The model and optimizer the step runs on: copies, or (``apply``) the real ones."""
    if not apply:
        return model.copy(), _copy.deepcopy(opt)
    if model.optimizer is None:
        model.optimizer = opt
    if model.loss is None:
        model.loss = loss_fn
    return model, opt


# --------------------------------------------------------------------------------------------
# which inputs move the predictions: the change when one input is set to 0
# --------------------------------------------------------------------------------------------


@dataclass
class FeatureEffects:
    """How much each input moves the model's predictions on a set of rows.

    The effect of input ``j`` on a row is the prediction minus the prediction with ``x[j]``
    set to 0 (for a prepared table: the training mean of a standardised number, "not this
    category" for a one-hot column, "word absent" for a text column). Classifiers: the change
    of the probability of the class the model predicts for the row (positive: the input
    supports that prediction); regression: the change of the prediction, in its units.

    Attributes:
        unit: what the effects measure, in words.
        rows: number of rows evaluated.
        effects: per input, largest ``mean_abs`` first: ``{"index", "name", "mean_abs"
            (mean |effect| over all rows, 0 where the input is 0), "mean" (signed),
            "rows_nonzero", "constant"}``. ``constant``: the input has one non-zero value on
            every row, so the model can only use it as a bias; setting it to 0 takes the rows
            where the model never saw them, and its effect says little.
    """

    unit: str
    rows: int
    effects: list[dict[str, Any]]

    def top(self, n: int = 15) -> list[dict[str, Any]]:
        """The ``n`` inputs with the largest mean |effect| (inputs never non-zero left out)."""
        return [e for e in self.effects if e["rows_nonzero"] > 0][: check_positive_int(n, "n")]

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "rows": self.rows, "effects": _jsonable(self.effects)}

    def to_text(self, n: int = 15) -> str:
        shown = self.top(n)
        w = min(40, max([7] + [len(e["name"]) for e in shown]))
        lines = [
            f"Inputs that move the predictions most ({self.rows:,} rows; effect = change of "
            f"the {self.unit} when the input is set to 0)",
            f"  {'feature':<{w}}  {'mean |effect|':>13}  {'mean effect':>11}  {'rows':>6}",
        ]
        lines += [
            f"  {e['name']:<{w}}  {e['mean_abs']:>13.4g}  {e['mean']:>11.4g}  "
            f"{e['rows_nonzero']:>6,}"
            + ("  (constant: a bias, not information)" if e["constant"] else "")
            for e in shown
        ]
        return "\n".join(lines)


def _prediction_score(
    model: Sequential, X: np.ndarray, classes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(score per row, predicted class per row or None): the probability of the predicted
    class for a classifier (``classes`` fixes the class to follow), else the prediction
    (the mean over outputs for several)."""
    out = model.predict(X).astype(np.float64).reshape(X.shape[0], -1)
    loss = model.loss
    if loss is None or loss.task != "classification":
        return out.mean(axis=1), None
    if out.shape[1] == 1:  # sigmoid: probability of class 1
        p1 = out[:, 0]
        c = (p1 > 0.5).astype(np.int64) if classes is None else classes
        return np.where(c == 1, p1, 1.0 - p1), c
    c = out.argmax(axis=1) if classes is None else classes
    return out[np.arange(X.shape[0]), c], c


def feature_effects(
    model: Sequential,
    X: Any,
    feature_names: list[str] | None = None,
    *,
    max_rows: int = 1000,
    seed: int = 0,
) -> FeatureEffects:
    """The change of each prediction when one input at a time is set to 0, averaged over rows.

    Only non-zero inputs are changed (setting a 0 to 0 changes nothing), so the cost is one
    inference pass over as many rows as ``X`` has non-zero entries (a sparse TF-IDF row costs
    its few words, not its vocabulary).

    Args:
        model: a trained ``Sequential`` with flat float inputs ``(d,)`` and a loss (to tell a
            classifier from a regression).
        X: (n, d) rows in the model's input space, e.g. the prepared test rows.
        feature_names: one name per input (``None``: ``"input 0"``, ...).
        max_rows: at most this many rows, drawn at random with ``seed`` when ``X`` has more.
        seed: for that draw.

    Returns:
        A :class:`FeatureEffects`, largest mean |effect| first.
    """
    _check_model(model)
    names = check_feature_names(feature_names, model)
    max_rows = check_positive_int(max_rows, "max_rows")
    Xa = check_array(X, "X", dtype=model.dtype, min_ndim=2, max_ndim=2)
    d = Xa.shape[1]
    if (d,) != tuple(model.input_shape):
        raise ValueError(f"X must have {model.input_shape[0]} columns, got {d}")
    if Xa.shape[0] > max_rows:
        pick = np.sort(np.random.default_rng(seed).choice(Xa.shape[0], max_rows, replace=False))
        Xa = Xa[pick]
    ref, classes = _prediction_score(model, Xa, None)
    rows, cols = np.nonzero(Xa)
    total, signed = np.zeros(d), np.zeros(d)
    chunk = max(64, 2**23 // max(d, 1))  # about 32 MiB of float32 rows per pass
    for start in range(0, rows.size, chunk):
        r, c = rows[start : start + chunk], cols[start : start + chunk]
        Xm = Xa[r]
        Xm[np.arange(r.size), c] = 0.0
        new, _ = _prediction_score(model, Xm, None if classes is None else classes[r])
        effect = ref[r] - new
        np.add.at(total, c, np.abs(effect))
        np.add.at(signed, c, effect)
    n = Xa.shape[0]
    counts = np.bincount(cols, minlength=d)
    constant = (counts == n) & (np.ptp(Xa, axis=0) == 0)  # one non-zero value on every row
    order = np.argsort(-total, kind="stable")
    effects = [
        {
            "index": int(j),
            "name": _feature_label(int(j), names),
            "mean_abs": float(total[j] / n),
            "mean": float(signed[j] / n),
            "rows_nonzero": int(counts[j]),
            "constant": bool(constant[j]),
        }
        for j in order
    ]
    unit = "prediction" if classes is None else "probability of the predicted class"
    return FeatureEffects(unit=unit, rows=n, effects=effects)
