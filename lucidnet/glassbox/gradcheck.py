"""Gradient checking: backpropagation against central finite differences, in float64.

``check_gradients(model, X, y)`` copies the model, casts the copy to float64 and compares, for
every parameter array (and the input), the gradient computed by ``backward`` with

    dL/dp ~ (L(p + eps) - L(p - eps)) / (2 eps)          (central difference, error O(eps^2))

where ``L`` is exactly the training objective: the loss of a training-mode forward pass plus the
layers' L1/L2 penalties. The model passed in is never modified.

Agreement of one array is measured by the relative error of the checked entries,

    rel = ||g_backprop - g_numeric|| / max(||g_backprop|| + ||g_numeric||, 1e-300)

and an array is flagged when ``rel > threshold`` *and* the largest absolute difference exceeds
``atol``. The second condition matters for arrays whose gradient is essentially zero (e.g. a bias
after a saturated sigmoid): there the relative error only measures floating-point round-off of
the finite difference, about ``1e-16 * |L| / eps``.

Layers with randomness are made deterministic: before every forward pass each layer is handed
the same seeded random stream (``Layer.reseed``), so a ``Dropout`` layer draws the same mask every
time; ``BatchNorm`` runs in training mode (batch statistics), which is what the training loop
differentiates. Large arrays are sampled (``max_entries`` random entries each, seeded), so the
check costs ``2 * max_entries`` forward passes per array whatever the model's size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import losses as _losses
from .._validation import check_array, check_float, check_positive_int, check_same_length, describe
from ..base import Layer
from ..model import Sequential
from ..training import prepare_targets

__all__ = ["GradCheckEntry", "GradCheckReport", "check_gradients", "as_float64"]


@dataclass
class GradCheckEntry:
    """The comparison for one array.

    Attributes:
        name: ``"layer/param"`` (e.g. ``"dense_0/W"``) or ``"input"``.
        shape: the array's shape.
        checked: number of entries compared.
        total: number of entries in the array.
        rel_error: relative error of the checked entries (see the module docstring).
        max_abs_error: largest ``|g_backprop - g_numeric|`` over the checked entries.
        analytic_norm / numeric_norm: L2 norms of the two gradients over the checked entries.
        worst_index: index of the entry with the largest absolute difference.
        passed: whether the array agrees.
        at_kinks: checked entries left out of the comparison because the loss has a kink
            within ``eps`` of them (see :func:`_kinks`).
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    total: int
    rel_error: float
    max_abs_error: float
    analytic_norm: float
    numeric_norm: float
    worst_index: tuple[int, ...]
    passed: bool
    at_kinks: int = 0

    @property
    def layer(self) -> str:
        """The layer name (``"input"`` for the input gradient)."""
        return self.name.split("/", 1)[0]


@dataclass
class GradCheckReport:
    """Result of :func:`check_gradients`.

    Attributes:
        entries: one :class:`GradCheckEntry` per parameter array, first layer first, then the
            input gradient (when checked).
        eps / threshold / atol: the settings used.
        loss_value: the objective at the unperturbed point.
        n_samples: number of samples in the batch used.
    """

    entries: list[GradCheckEntry]
    eps: float
    threshold: float
    atol: float
    loss_value: float
    n_samples: int
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every checked array agrees."""
        return all(e.passed for e in self.entries)

    @property
    def failures(self) -> list[GradCheckEntry]:
        """The arrays that disagree."""
        return [e for e in self.entries if not e.passed]

    @property
    def max_rel_error(self) -> float:
        """The largest relative error over all arrays."""
        return max((e.rel_error for e in self.entries), default=0.0)

    def __getitem__(self, name: str) -> GradCheckEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no array {name!r}; checked: {', '.join(e.name for e in self.entries)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "passed": self.passed,
            "eps": self.eps,
            "threshold": self.threshold,
            "atol": self.atol,
            "loss": num(self.loss_value),
            "n_samples": self.n_samples,
            "notes": list(self.notes),
            "entries": [
                {
                    "name": e.name,
                    "shape": list(e.shape),
                    "checked": e.checked,
                    "total": e.total,
                    "rel_error": num(e.rel_error),
                    "max_abs_error": num(e.max_abs_error),
                    "analytic_norm": num(e.analytic_norm),
                    "numeric_norm": num(e.numeric_norm),
                    "worst_index": list(e.worst_index),
                    "passed": e.passed,
                    "at_kinks": e.at_kinks,
                }
                for e in self.entries
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        """A readable table for the terminal."""
        lines = [
            "Gradient check: backpropagation vs central finite differences "
            f"(float64, eps={self.eps:g}, {self.n_samples} samples, loss {self.loss_value:.6g})",
            f"an array fails when its relative error > {self.threshold:g} "
            f"and its largest difference > {self.atol:g}",
        ]
        rows = [("array", "shape", "checked", "rel. error", "max |diff|", "status")]
        for e in self.entries:
            rows.append(
                (
                    e.name,
                    str(tuple(e.shape)),
                    f"{e.checked}/{e.total}",
                    f"{e.rel_error:.2e}",
                    f"{e.max_abs_error:.2e}",
                    "ok" if e.passed else "FAIL",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for i, r in enumerate(rows):
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if i == 0:
                lines.append("  " + "-" * (sum(widths) + 2 * (len(widths) - 1)))
        lines.extend(f"note: {n}" for n in self.notes)
        kinks = sum(e.at_kinks for e in self.entries)
        if kinks:
            where = ", ".join(f"{e.name}: {e.at_kinks}" for e in self.entries if e.at_kinks)
            lines.append(
                f"note: {kinks} checked entries left out ({where}): the loss has a kink within "
                "eps of them (a ReLU input at 0, a tie in a max-pooling window; exact zeros in "
                "the data make them common), where finite differences measure no gradient"
            )
        if self.passed:
            unchecked = [e.name for e in self.entries if e.checked == 0 and e.at_kinks]
            if unchecked:  # agreeing on no entry is not agreeing: say which were not compared
                lines.append(
                    f"PASSED: {len(self.entries) - len(unchecked)} arrays agree; "
                    f"{len(unchecked)} not compared (every sampled entry at a kink: "
                    f"{', '.join(unchecked)})"
                )
            else:
                lines.append(f"PASSED: all {len(self.entries)} arrays agree")
        else:
            bad = ", ".join(
                f"{e.name} (rel. error {e.rel_error:.2e}, worst entry {list(e.worst_index)})"
                for e in self.failures
            )
            lines.append(
                f"FAILED: {len(self.failures)} of {len(self.entries)} arrays disagree: {bad}. "
                "The backward pass of those layers does not match their forward pass."
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def as_float64(model: Sequential) -> Sequential:
    """An independent float64 copy of ``model`` (parameters, gradients and state cast).

    Finite differences need float64: in float32 the round-off of ``L(p + eps) - L(p - eps)``
    (about ``1e-7 * |L| / eps``) swamps the gradient for any useful ``eps``.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a lucidnet Sequential, got {describe(model)}")
    m = model.copy()
    f64 = np.dtype(np.float64)
    m.dtype = f64
    for layer in m.layers:
        layer.dtype = f64
        for store in (layer.params, layer.grads, layer.state):
            for key in list(store):
                store[key] = np.array(store[key], dtype=f64)
    if m.built:
        m.flat_parameters()  # the arrays were replaced: re-pack them into float64 buffers
    return m


class _Objective:
    """The training objective ``L``: the loss of a training-mode forward pass of ``model`` on
    ``(X, y)`` plus the layers' penalties, a deterministic function of the parameters and the
    input. Layers that draw random numbers (those overriding ``Layer.reseed``, e.g. Dropout)
    get the same seeded stream before every forward pass, so they draw the same numbers (the
    same dropout mask) every time."""

    def __init__(self, model: Sequential, y: np.ndarray, loss: _losses.Loss, seed: int) -> None:
        self.model, self.y, self.loss = model, y, loss
        self.random_layers = [
            layer for layer in model.layers if type(layer).reseed is not Layer.reseed
        ]
        self._rng = np.random.default_rng(seed)
        self._start = self._rng.bit_generator.state

    def _reseed(self) -> None:
        # only the random layers (the others would ignore it), from a stream rewound to the
        # same start: rewinding is cheaper than seeding a new generator (~20 us)
        if self.random_layers:
            self._rng.bit_generator.state = self._start
            for layer in self.random_layers:
                layer.reseed(self._rng)

    def __call__(self, X: np.ndarray) -> float:
        self._reseed()
        value, _ = self.loss(self.model.forward(X, training=True), self.y)
        return value + self.model.penalty()

    def backpropagate(self, X: np.ndarray) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """``L``, every parameter's gradient and dL/dX by backpropagation: the textbook forward,
        loss and backward of a training step, without the update."""
        m = self.model
        self._reseed()
        m.zero_grad()
        value, d_out = self.loss(m.forward(X, training=True), self.y)
        value += m.penalty()
        dX = m.backward(d_out)
        return value, {name: g.copy() for name, _, g in m.parameters()}, dX

    def notes(self) -> list[str]:
        if not self.random_layers:
            return []
        names = ", ".join(str(layer.name) for layer in self.random_layers)
        return [
            f"random draws fixed for the check: {names} draw the same numbers (seeded) in every "
            "forward pass, so dropout masks do not change"
        ]


def _central_differences(
    flat: np.ndarray, idx: np.ndarray, eps: float, objective: Callable[[], float]
) -> tuple[np.ndarray, np.ndarray]:
    """``(f(v + eps) - f(v - eps)) / (2 eps)`` for each entry ``flat[i]``, ``i`` in ``idx``,
    and the difference of the one-sided slopes ``(f(v + eps) - f(v)) / eps - (f(v) - f(v -
    eps)) / eps`` (about ``eps f''`` where ``f`` is smooth; see :func:`_kinks`).

    ``flat`` is a view into the array that ``objective`` reads (a parameter or the input), so
    writing an entry perturbs it; each entry is restored before the next one is moved.
    """
    numeric, bend = np.empty(idx.size), np.empty(idx.size)
    centre = objective()
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + eps
        up = objective()
        flat[i] = old - eps
        down = objective()
        flat[i] = old
        numeric[j] = (up - down) / (2.0 * eps)
        bend[j] = ((up - centre) - (centre - down)) / eps
    return numeric, bend


def _kinks(
    analytic: np.ndarray, numeric: np.ndarray, bend: np.ndarray, threshold: float, atol: float
) -> np.ndarray:
    """The entries where the loss has a kink within ``eps``: those that disagree (by more than
    ``atol`` and, relatively, ``threshold``) and whose one-sided slopes differ by more than the
    backpropagated gradient differs from the central difference.

    A ReLU input at exactly 0, or a max-pooling window whose largest values tie (an image's
    blank background gives both: zero patches, equal outputs), makes the loss
    non-differentiable there; a step of ``eps`` across such a point gives a central difference
    between the two one-sided slopes, which no gradient matches (backpropagation takes one
    side: the slope on one side, ``relu'(0) = 0``, the first maximum). Where ``f`` is smooth
    the one-sided slopes differ by about ``eps f''``, far less than the disagreement a wrong
    backward pass makes, so a wrong backward pass is not excused as a kink. Not every kink
    shows: one entry that moves several units across their kinks in opposite directions (an
    input pixel under a blank patch) can bend the slopes so that they cancel; data with exact
    ties is better moved off them (``lucidnet gradcheck`` does so for images)."""
    diff = np.abs(analytic - numeric)
    disagree = (diff > atol) & (diff > threshold * (np.abs(analytic) + np.abs(numeric)))
    return disagree & (np.abs(bend) > diff)


def _sample(size: int, max_entries: int, rng: np.random.Generator) -> np.ndarray:
    if size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_entries, replace=False))


def _compare(
    name: str,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numeric: np.ndarray,
    idx: np.ndarray,
    threshold: float,
    atol: float,
) -> GradCheckEntry:
    diff = np.abs(analytic - numeric)
    na, nn = float(np.linalg.norm(analytic)), float(np.linalg.norm(numeric))
    denom = max(na + nn, 1e-300)
    rel = float(np.linalg.norm(analytic - numeric)) / denom
    worst = int(np.argmax(diff)) if diff.size else 0
    max_abs = float(diff.max()) if diff.size else 0.0
    ok = not (rel > threshold and max_abs > atol) and math.isfinite(rel)
    worst_index = (
        tuple(int(i) for i in np.unravel_index(int(idx[worst]), shape)) if idx.size else ()
    )
    return GradCheckEntry(
        name=name,
        shape=tuple(int(d) for d in shape),
        checked=int(idx.size),
        total=int(np.prod(shape)),
        rel_error=rel,
        max_abs_error=max_abs,
        analytic_norm=na,
        numeric_norm=nn,
        worst_index=worst_index,
        passed=bool(ok),
    )


def check_gradients(
    model: Sequential,
    X: Any,
    y: Any,
    loss: str | _losses.Loss | None = None,
    *,
    eps: float = 1e-6,
    threshold: float = 1e-6,
    atol: float = 1e-8,
    max_entries: int = 50,
    check_input: bool = True,
    seed: int = 0,
) -> GradCheckReport:
    """Compare the model's backpropagated gradients with central finite differences.

    Args:
        model: a ``Sequential`` (built, or it is built on a copy with ``seed``). Not modified.
        X: a small batch of inputs, shape (n, ...). A few dozen samples are plenty.
        y: the matching targets (as for ``fit``).
        loss: loss name or instance; default the model's loss.
        eps: finite-difference step (in float64, 1e-6 balances truncation error ~eps^2 against
            round-off ~1e-16 / eps).
        threshold: largest acceptable relative error per array. Healthy float64 layers give
            1e-10 to 1e-8; a wrong backward pass gives 1e-3 to 1.
        atol: absolute differences below this never fail (arrays with ~zero gradient).
        max_entries: entries checked per array (chosen at random, seeded, when larger).
        check_input: also check dL/dX (skipped for integer inputs such as token ids).
        seed: seeds the entry sampling, the random layers' draws (dropout masks) and, if
            needed, the initial weights.

    Returns:
        A :class:`GradCheckReport`; ``report.passed`` tells whether everything agrees and
        ``report.to_text()`` prints a table.

    Raises:
        TypeError / ValueError: bad arguments (naming the argument).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a lucidnet Sequential, got {describe(model)}")
    eps = check_float(eps, "eps", low=0.0, low_inclusive=False)
    threshold = check_float(threshold, "threshold", low=0.0, low_inclusive=False)
    atol = check_float(atol, "atol", low=0.0)
    max_entries = check_positive_int(max_entries, "max_entries")
    seed = check_positive_int(seed, "seed", minimum=0)
    if loss is None and model.loss is None:
        raise ValueError("check_gradients needs a loss: pass loss='mse' (or fit/compile first)")
    loss_fn = _losses.get(loss) if loss is not None else model.loss
    m, X, y, integer = _float64_problem(model, X, y, loss_fn, seed)
    objective = _Objective(m, y, loss_fn, seed)
    notes = objective.notes()
    value, analytic, dX = objective.backpropagate(X)

    rng = np.random.default_rng(seed)  # picks the entries of large arrays

    def check(name: str, array: np.ndarray, grad: np.ndarray, X_eval: np.ndarray) -> GradCheckEntry:
        flat = array.reshape(-1)  # a view: writing to it perturbs what the objective reads
        idx = _sample(flat.size, max_entries, rng)
        numeric, bend = _central_differences(flat, idx, eps, lambda: objective(X_eval))
        a = np.asarray(grad, dtype=np.float64).reshape(-1)[idx]
        smooth = ~_kinks(a, numeric, bend, threshold, atol)
        entry = _compare(
            name, array.shape, a[smooth], numeric[smooth], idx[smooth], threshold, atol
        )
        entry.total, entry.at_kinks = int(array.size), int((~smooth).sum())
        return entry

    entries = [check(name, p, analytic[name], X) for name, p, _ in m.parameters()]
    if check_input and not integer:
        Xp = np.array(X, dtype=np.float64)
        entries.append(check("input", Xp, dX, Xp))
    elif check_input:
        notes.append("input gradient not checked: the inputs are integer token ids")
    return GradCheckReport(
        entries=entries,
        eps=eps,
        threshold=threshold,
        atol=atol,
        loss_value=float(value),
        n_samples=int(X.shape[0]),
        notes=notes,
    )


def _float64_problem(
    model: Sequential, X: Any, y: Any, loss_fn: _losses.Loss, seed: int
) -> tuple[Sequential, np.ndarray, np.ndarray, bool]:
    """A float64 copy of the model (built with ``seed`` if it was not), the checked batch, and
    whether the inputs are integer token ids."""
    integer = bool(model.layers) and model.layers[0].integer_input
    X = check_array(X, "X", dtype=None if integer else np.float64, min_ndim=2, integer=integer)
    m = as_float64(model)
    if not m.built:
        m.build(X.shape[1:], np.random.default_rng(seed))
    if tuple(X.shape[1:]) != m.input_shape:
        raise ValueError(
            f"X must have per-sample shape {m.input_shape} (the model was built for it), "
            f"got {X.shape[1:]}"
        )
    y = prepare_targets(m, loss_fn, y)
    check_same_length(X, y)
    return m, X, y, integer
