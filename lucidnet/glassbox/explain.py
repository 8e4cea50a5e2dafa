"""Explain one training step: every number of forward pass, loss, backward pass and update.

``explain_step(model, x, y)`` runs exactly what the training loop runs for one mini-batch
(training-mode forward, loss, ``zero_grad``, backward, ``optimizer.step``) layer by layer, and
records what each layer received and produced:

1. forward: for a ``Dense`` layer the input ``x``, ``W``, ``b``, ``z = x W + b`` and ``a = f(z)``;
2. loss: how the value was computed from prediction and target (softmax probabilities and
   ``-log p[target]`` for cross-entropy, each squared error for MSE, ...), and ``dL/d(output)``;
3. backward, last layer first: ``dL/da``, ``dL/dz``, ``dL/dW``, ``dL/db``, ``dL/dx``;
4. the optimizer update: gradient, learning rate, momentum / Adam moments and bias corrections,
   each parameter before and after;
5. the loss on the same batch after the update.

The numbers are the real ones: the layers' own ``forward`` / ``backward`` and the optimizer's own
``step`` produce them, so the explanation cannot drift from what training does.

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
from ..layers import Dense, Dropout
from ..model import Sequential
from ..training import prepare_targets

__all__ = [
    "StepExplanation",
    "LayerForward",
    "LayerBackward",
    "LossStep",
    "ParamUpdate",
    "UpdateStep",
    "explain_step",
    "format_array",
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


@dataclass
class LayerBackward:
    """What one layer did in the backward pass."""

    name: str
    kind: str
    d_output: np.ndarray  # dL/d(output) = dL/da for a Dense layer
    d_z: np.ndarray | None  # Dense only: dL/dz
    grads: dict[str, np.ndarray]  # dL/dW, dL/db, ...
    d_input: np.ndarray  # dL/d(input), handed to the previous layer


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
        return out

    def to_json(self, max_entries: int | None = None) -> str:
        return json.dumps(self.to_dict(max_entries), indent=2)

    def to_text(self, max_entries: int | None = None) -> str:
        """Readable terminal text, section by section."""
        k = self.max_entries if max_entries is None else max_entries
        out: list[str] = []
        add = out.append
        n = int(self.x.shape[0])
        chain = " -> ".join(f"{f.name} {f.description}" for f in self.forward)
        add(
            f"One training step on a batch of {n} sample{'s' if n != 1 else ''} "
            f"({'applied to the model' if self.applied else 'on a copy: the model is unchanged'})"
        )
        add(f"model: {chain}")
        add(f"loss: {self.loss.name}   optimizer: {self.update.optimizer}")
        add("")
        add("1. Forward pass (first layer to last, training mode)")
        for i, f in enumerate(self.forward):
            add(f"  {f.name}  {f.description}")
            out_note = "network output" if i == len(self.forward) - 1 else None
            if f.z is not None:
                add(_row("input x", f.input, k))
                for key, v in f.params.items():
                    add(_row(key, v, k))
                z_label = "z = x W + b" if "b" in f.params else "z = x W"
                if f.activation is None:
                    add(_row(z_label, f.z, k, out_note))
                else:
                    add(_row(z_label, f.z, k))
                    add(_row(f"a = {f.activation}(z)", f.output, k, out_note))
            else:
                add(_row("input", f.input, k))
                for key, v in f.params.items():
                    add(_row(key, v, k))
                add(_row("output", f.output, k, out_note))
        add("")
        lo = self.loss
        add(f"2. Loss: {lo.name}")
        for formula in lo.formulas:
            add(f"    {formula}")
        for key, v in lo.terms.items():
            add(_row(key, v, k))
        add(_row("data loss", lo.data_loss, k))
        if lo.penalty:
            add(_row("+ L1/L2 penalty", lo.penalty, k))
            add(_row("= loss", lo.value, k))
        add(f"    {lo.grad_formula}")
        add(_row(lo.grad_formula.split(" = ")[0], lo.grad, k))
        add("")
        add("3. Backward pass (last layer to first)")
        names = [f.name for f in self.forward]
        for b in self.backward:
            f = self.forward[names.index(b.name)]
            pos = names.index(b.name)
            source = "the loss" if pos == len(names) - 1 else names[pos + 1]
            target = names[pos - 1] if pos > 0 else None
            add(f"  {b.name}  {f.description}")
            if b.d_z is not None:
                add(_row("dL/da", b.d_output, k, f"from {source}"))
                if f.activation is None:
                    add(_row("dL/dz = dL/da", b.d_z, k, "no activation"))
                else:
                    deriv = _DERIVATIVES.get(f.activation, "f'(z)")
                    add(_row("dL/dz = dL/da * f'(z)", b.d_z, k, deriv))
                if "W" in b.grads:
                    add(_row("dL/dW = x^T dL/dz", b.grads["W"], k, _reg_note(f)))
                if "b" in b.grads:
                    add(_row("dL/db = sum_batch dL/dz", b.grads["b"], k))
            else:
                add(_row("dL/d(output)", b.d_output, k, f"from {source}"))
                for key, v in b.grads.items():
                    add(_row(f"dL/d{key}", v, k))
            what = f"passed back to {target}" if target else "w.r.t. the input; not used"
            add(
                _row(
                    "dL/dx = dL/dz W^T" if b.d_z is not None else "dL/d(input)", b.d_input, k, what
                )
            )
        add("")
        up = self.update
        add(f"4. Update: {up.optimizer}, step t = {up.t}, learning rate {up.lr:.6g}")
        add(f"    gradient norm {up.grad_norm:.6g}" + (" (clipped)" if up.clipped else ""))
        for formula in up.formulas:
            add(f"    {formula}")
        for key, v in up.scalars.items():
            add(_row(key, v, k))
        for p in up.params:
            add(f"  {p.name}")
            add(_row("before p", p.before, k))
            add(_row("gradient g", p.grad, k))
            if not np.array_equal(p.grad, p.applied_grad):
                add(_row("g as applied", p.applied_grad, k, "after clipping / weight decay"))
            for s, v in p.slots_after.items():
                add(_row(f"{s} (new)", v, k))
            for s, v in p.terms.items():
                add(_row(s, v, k))
            add(_row("step = after - before", p.step, k))
            add(_row("after p_new", p.after, k))
        add("")
        add("5. Result")
        change = self.loss_after - self.loss_before
        rel = change / abs(self.loss_before) if self.loss_before else float("nan")
        add(_row("loss before update", self.loss_before, k))
        same = "same batch, same dropout mask" if self.notes else "same batch"
        add(_row("loss after update", self.loss_after, k, same))
        add(_row("change", change, k, f"{rel:+.2%}"))
        for note in self.notes:
            add(f"  note: {note}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()


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


def format_array(a: Any, max_entries: int = 16) -> str:
    """An array in full when it has at most ``max_entries`` entries, else a one-line summary
    (shape, L2 norm, mean, range and the three entries of largest magnitude)."""
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
    big = ", ".join(f"{list(i)}={v:.4g}" for i, v in _largest(f))
    return (
        f"shape {a.shape}, norm {np.linalg.norm(f):.4g}, mean {f.mean():.4g}, "
        f"range [{f.min():.4g}, {f.max():.4g}]; largest: {big}"
    )


def _row(label: str, value: Any, k: int, note: str | None = None) -> str:
    text = format_array(value, k)
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
    n = z.shape[0]
    terms: dict[str, np.ndarray] = {}
    if isinstance(loss, _losses.CrossEntropy):
        k = z.shape[1]
        p = softmax(z.copy())
        terms["logits z"] = z
        terms["p = softmax(z)"] = p
        plain = y.ndim == 1 and not loss.label_smoothing and loss.class_weight is None
        if plain:
            rows = np.arange(n)
            terms["target class"] = y
            terms["p[target]"] = p[rows, y]
            terms["-log p[target]"] = -np.log(p[rows, y])
            formulas = [
                "p = exp(z - max z) / sum exp(z - max z)   (softmax, per sample)",
                "per-sample loss = -log p[target]",
                f"loss = mean over the {n} sample(s)",
            ]
            return terms, formulas, f"dL/dz = (p - onehot(target)) / {n}"
        t = np.zeros((n, k)) if y.ndim == 1 else np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            t[np.arange(n), y] = 1.0
        if loss.label_smoothing:
            t = (1 - loss.label_smoothing) * t + loss.label_smoothing / k
        w = np.ones(k) if loss.class_weight is None else loss.class_weight
        terms["target t"] = t
        terms["-w t log p"] = -(w * t) * np.log(p)
        terms["per-sample loss"] = terms["-w t log p"].sum(axis=1)
        formulas = [
            "p = softmax(z)",
            "t = (1 - s) t + s / k (label smoothing s)" if loss.label_smoothing else "",
            "per-sample loss = -sum_c w_c t_c log p_c",
            f"loss = mean over the {n} sample(s)",
        ]
        grad = f"dL/dz = (p * sum_c(w_c t_c) - w t) / {n}"
        return terms, [f for f in formulas if f], grad
    t = np.asarray(y, dtype=np.float64)
    units = int(np.prod(z.shape[1:]))
    if isinstance(loss, _losses.BinaryCrossEntropy):
        s = sigmoid(z.copy())
        terms["logits z"] = z
        terms["s = sigmoid(z)"] = s
        terms["target t"] = t
        per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        if loss.class_weight is not None:
            per = per * (t * loss.class_weight[1] + (1 - t) * loss.class_weight[0])
        terms["-t log s - (1-t) log(1-s)"] = per
        terms["per-sample loss"] = per.reshape(n, -1).mean(axis=1)
        formulas = [
            "s = 1 / (1 + exp(-z))",
            "per-unit loss = -t log s - (1 - t) log(1 - s)",
            f"per-sample loss = mean over the {units} output unit(s); loss = mean over {n}",
        ]
        return terms, formulas, f"dL/dz = (s - t) / ({units} * {n})"
    r = z - t
    terms["prediction p"] = z
    terms["target t"] = t
    terms["error p - t"] = r
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
# the step
# --------------------------------------------------------------------------------------------


def _describe_layer(layer: Any) -> str:
    text = repr(layer)
    if isinstance(layer, Dense) and (layer.l1 or layer.l2):
        text += f" + reg(l1={layer.l1:g}, l2={layer.l2:g})"
    return text


def _short_repr(obj: Any, name: str | None = None) -> str:
    """``Adam(lr=0.001, beta1=0.9, ...)`` without the settings that are off (None / 0 / False)."""
    items = [f"{k}={v!r}" for k, v in obj.get_config().items() if v not in (None, 0, 0.0, False)]
    name = name or type(obj).__name__
    return f"{name}({', '.join(items)})" if items else name


def _slot_arrays(state: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    return {s: arrays[name] for s, arrays in state.get("slots", {}).items() if name in arrays}


def explain_step(
    model: Sequential,
    x: Any,
    y: Any,
    loss: str | _losses.Loss | None = None,
    optimizer: str | _optimizers.Optimizer | None = None,
    *,
    apply: bool = False,
    max_entries: int = 16,
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

    Returns:
        A :class:`StepExplanation` (``.to_text()``, ``.to_dict()``; the raw arrays are its
        attributes).

    Raises:
        TypeError / ValueError: bad arguments, or a model that is not built.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a lucidnet Sequential, got {describe(model)}")
    if not model.built:
        raise ValueError(
            "model is not built: call model.build(input_shape, seed=...) or fit it first"
        )
    max_entries = check_positive_int(max_entries, "max_entries")
    if loss is None and model.loss is None:
        raise ValueError("explain_step needs a loss: pass loss='cross_entropy' / 'mse' ...")
    loss_fn = _losses.get(loss) if loss is not None else model.loss
    if optimizer is not None:
        opt = _optimizers.get(optimizer)
    else:
        opt = model.optimizer if model.optimizer is not None else _optimizers.Adam()

    integer = model.layers[0].integer_input
    xa = np.asarray(x)
    single = tuple(xa.shape) == tuple(model.input_shape)
    if single:
        xa = xa[None]
        y = np.asarray(y)[None]
    xa = check_array(xa, "x", dtype=None if integer else model.dtype, min_ndim=2, integer=integer)
    if tuple(xa.shape[1:]) != model.input_shape:
        raise ValueError(
            f"x must be one sample of shape {model.input_shape} or a batch of shape "
            f"(n, {', '.join(map(str, model.input_shape))}), got {xa.shape}"
        )
    ya = prepare_targets(model, loss_fn, y, "y")
    check_same_length(xa, ya, "x", "y")

    if apply:
        work, work_opt = model, opt
        if model.optimizer is None:
            model.optimizer = opt
        if model.loss is None:
            model.loss = loss_fn
    else:
        work, work_opt = model.copy(), _copy.deepcopy(opt)

    # 1. forward, layer by layer (what Sequential.forward does)
    forward: list[LayerForward] = []
    h = xa
    for layer in work.layers:
        inp = h
        h = layer.forward(inp, training=True)
        rec = LayerForward(
            name=layer.name,
            kind=type(layer).__name__,
            description=_describe_layer(layer),
            input=np.array(inp),
            output=np.array(h),
            params={key: v.copy() for key, v in layer.params.items()},
        )
        if isinstance(layer, Dense):
            rec.z = np.array(layer._z)
            rec.activation = None if layer.activation is None else layer.activation.key
        forward.append(rec)

    # 2. loss
    data_loss, dlogits = loss_fn(h, ya)
    penalty = work.penalty()
    terms, formulas, grad_formula = _loss_terms(loss_fn, h, ya)
    loss_step = LossStep(
        name=_short_repr(loss_fn, loss_fn.key),
        value=data_loss + penalty,
        data_loss=data_loss,
        penalty=penalty,
        terms=terms,
        formulas=formulas,
        grad=np.array(dlogits),
        grad_formula=grad_formula,
    )

    # 3. backward, last layer first (what Sequential.backward does)
    work.zero_grad()
    backward: list[LayerBackward] = []
    dy = dlogits
    for layer in reversed(work.layers):
        d_z = None
        if isinstance(layer, Dense):
            # activation.backward only reads its forward cache, so calling it here to show dL/dz
            # does not change what layer.backward computes next
            d_z = np.array(dy if layer.activation is None else layer.activation.backward(dy))
        dx = layer.backward(dy)
        backward.append(
            LayerBackward(
                name=layer.name,
                kind=type(layer).__name__,
                d_output=np.array(dy),
                d_z=d_z,
                grads={key: g.copy() for key, g in layer.grads.items()},
                d_input=np.array(dx),
            )
        )
        dy = dx

    # 4. the optimizer's own step
    before = {name: p.copy() for name, p, _ in work.parameters()}
    grads = {name: g.copy() for name, _, g in work.parameters()}
    state_before = work_opt.state_dict()
    lr = work_opt.current_lr
    t = work_opt.iterations + 1
    work_opt.step(work)
    last = work_opt.last_step
    state_after = work_opt.state_dict()
    formulas_u, scalars = _update_formulas(work_opt, t)
    params = []
    for name, p, g in work.parameters():
        slots_after = _slot_arrays(state_after, name)
        slots_before = _slot_arrays(state_before, name) or {
            s: np.zeros_like(v) for s, v in slots_after.items()
        }
        params.append(
            ParamUpdate(
                name=name,
                before=before[name],
                grad=grads[name],
                applied_grad=g.copy(),
                after=p.copy(),
                slots_before=slots_before,
                slots_after=slots_after,
                terms=_adam_terms(work_opt, slots_after, t, lr),
            )
        )
    grad_norm = float(
        last.get("grad_norm", np.sqrt(sum(float(np.sum(v * v)) for v in grads.values())))
    )
    update = UpdateStep(
        optimizer=_short_repr(work_opt),
        config=work_opt.get_config(),
        lr=float(lr),
        t=t,
        grad_norm=grad_norm,
        clipped=work_opt.clip_norm is not None and grad_norm > work_opt.clip_norm,
        formulas=formulas_u,
        scalars=scalars,
        params=params,
    )

    # 5. the loss on the same batch after the update, on a throwaway copy (so BatchNorm running
    # statistics and dropout random streams are not advanced) with the same dropout masks
    probe = work.copy()
    notes = []
    for layer, rec in zip(probe.layers, forward):
        if isinstance(layer, Dropout) and layer.rate > 0:
            # an input of 0 gives 0 whatever the mask, elsewhere a non-zero output means "kept"
            layer.fixed_mask = ((rec.input == 0) | (rec.output != 0)).astype(probe.dtype)
            notes.append(f"{layer.name}: the loss after the update reuses the step's dropout mask")
    value_after, _ = loss_fn(probe.forward(xa, training=True), ya)
    value_after += probe.penalty()

    return StepExplanation(
        x=np.array(xa),
        y=np.array(ya),
        applied=bool(apply),
        forward=forward,
        loss=loss_step,
        backward=backward,
        update=update,
        loss_before=float(data_loss + penalty),
        loss_after=float(value_after),
        max_entries=max_entries,
        notes=notes,
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
