"""Learning-rate range test (Smith, 2017, "Cyclical Learning Rates for Training Neural Networks").

``find_learning_rate(model, X, y)`` trains a *copy* of the model for up to ``num_steps``
mini-batches while the learning rate grows geometrically from ``min_lr`` to ``max_lr``, records
the loss of every batch, smooths it (exponential moving average with bias correction, as in
fastai), and stops early once the smoothed loss exceeds ``diverge_factor`` (4) times its minimum.
The model passed in is not modified (not a single bit: its weights, optimizer and random streams
stay as they were).

Suggestion rule (``result.rule``). Two classic read-outs of the curve, combined:

* ``steepest``: the learning rate where the smoothed loss falls fastest per unit of log(lr)
  (most negative slope), searched between the first tenth of the run (where the moving
  average is still warming up) and the minimum of the curve;
* ``min / 10``: one tenth of the learning rate at the minimum of the smoothed loss.

The steepest point is where training makes the most progress per step but is sensitive to noise
in the curve; ``min / 10`` is robust but conservative (fastai's original rule). The suggestion is
their geometric mean (the midpoint on the log scale), clipped to lie below the minimum's learning
rate: when the two agree it changes little, and when one of them is thrown off by noise the
result stays within a factor sqrt(their ratio) of the other.
"""

from __future__ import annotations

import copy as _copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import losses as _losses
from .. import optimizers as _optimizers
from .._validation import check_array, check_float, check_positive_int, check_same_length, describe
from ..model import Sequential
from ..training import prepare_targets, train_step

__all__ = ["LRFinderResult", "find_learning_rate", "suggest_learning_rate"]

RULE = (
    "geometric mean of (a) the learning rate at the steepest descent of the smoothed loss "
    "(per unit of log lr, before its minimum) and (b) the learning rate at the minimum / 10, "
    "capped below the minimum"
)


@dataclass
class LRFinderResult:
    """Outcome of a learning-rate range test.

    Attributes:
        lrs: learning rate of each step, shape (steps,).
        losses: raw mini-batch loss of each step, shape (steps,).
        smoothed: bias-corrected exponential moving average of ``losses``, shape (steps,).
        suggestion: the suggested learning rate (see ``rule``).
        rule: how ``suggestion`` was chosen, in words.
        steepest_lr: learning rate at the steepest descent of the smoothed loss.
        min_loss_lr: learning rate at the minimum of the smoothed loss.
        stopped_early: whether the run stopped because the loss diverged.
        optimizer: the optimizer used, e.g. ``"Adam"``.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    rule: str
    steepest_lr: float
    min_loss_lr: float
    stopped_early: bool
    optimizer: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (non-finite losses become ``None``)."""

        def clean(a: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in a]

        return {
            "lrs": clean(self.lrs),
            "losses": clean(self.losses),
            "smoothed": clean(self.smoothed),
            "suggestion": self.suggestion,
            "rule": self.rule,
            "steepest_lr": self.steepest_lr,
            "min_loss_lr": self.min_loss_lr,
            "stopped_early": self.stopped_early,
            "optimizer": self.optimizer,
            "settings": dict(self.settings),
        }

    def to_text(self) -> str:
        """A short terminal summary with a coarse table of the curve."""
        lines = [
            f"Learning-rate range test ({self.optimizer}, {len(self.lrs)} steps from "
            f"{self.lrs[0]:.3g} to {self.lrs[-1]:.3g}"
            + (", stopped early: the loss diverged)" if self.stopped_early else ")"),
            f"  suggested learning rate: {self.suggestion:.3g}",
            f"    steepest descent at {self.steepest_lr:.3g}; minimum loss at "
            f"{self.min_loss_lr:.3g} (/10 = {self.min_loss_lr / 10:.3g})",
            f"    rule: {self.rule}",
            "  lr          smoothed loss",
        ]
        picks = np.unique(np.linspace(0, len(self.lrs) - 1, min(12, len(self.lrs))).astype(int))
        lo = float(np.nanmin(self.smoothed))
        hi = float(np.nanmax(self.smoothed[np.isfinite(self.smoothed)]))
        for i in picks:
            v = self.smoothed[i]
            width = 0 if not math.isfinite(v) or hi <= lo else int(30 * (v - lo) / (hi - lo))
            lines.append(f"  {self.lrs[i]:<10.3g}  {v:<10.4g} {'#' * width}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def plot(self, path: Any = None, *, dpi: int = 100) -> Any:
        """Loss against learning rate (log scale), the suggestion marked. Returns the matplotlib
        ``Figure``; saves a PNG when ``path`` is given. Needs matplotlib
        (``pip install lucidnet[plot]``)."""
        from .plots import _new_figure, _save

        fig = _new_figure(figsize=(6.4, 4.0))
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(self.lrs, self.losses, color="0.75", linewidth=0.8, label="batch loss")
        ax.plot(self.lrs, self.smoothed, color="C0", linewidth=1.8, label="smoothed loss")
        ax.axvline(
            self.suggestion, color="C3", linestyle="--", label=f"suggestion {self.suggestion:.2g}"
        )
        ax.axvline(self.steepest_lr, color="C2", linestyle=":", label="steepest descent")
        ax.axvline(self.min_loss_lr, color="C1", linestyle=":", label="minimum")
        ax.set_xscale("log")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if finite.size:
            low, first = float(finite.min()), float(finite[0])
            ax.set_ylim(0.8 * low if low > 0 else low - 0.1, max(first, low) * 1.5 + 1e-12)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("Learning-rate range test")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, path, dpi)


def suggest_learning_rate(lrs: Any, smoothed: Any) -> tuple[float, float, float]:
    """Apply the suggestion rule (module docstring) to a range-test curve.

    Args:
        lrs: increasing learning rates, shape (steps,).
        smoothed: smoothed losses, shape (steps,).

    Returns:
        ``(suggestion, steepest_lr, min_loss_lr)``.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    sm = np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(sm)
    if finite.sum() < 3:
        raise ValueError(
            "the range test produced fewer than 3 finite losses; lower min_lr or max_lr"
        )
    lrs, sm = lrs[finite], sm[finite]
    i_min = int(np.argmin(sm))
    min_lr = float(lrs[i_min])
    skip = max(1, len(sm) // 10)
    # slope of the loss per unit of log(lr); the further moving average over 5 points keeps
    # one noisy batch from deciding the answer
    slope = np.gradient(sm, np.log(lrs))
    slope = np.convolve(slope, np.ones(5) / 5, mode="same")
    lo, hi = min(skip, i_min), max(i_min, min(skip, i_min) + 1)
    window = slope[lo:hi]
    steep = float(lrs[lo + int(np.argmin(window))]) if window.size else min_lr
    suggestion = math.sqrt(steep * (min_lr / 10.0))
    suggestion = min(suggestion, min_lr)
    return float(suggestion), steep, min_lr


def find_learning_rate(
    model: Sequential,
    X: Any,
    y: Any,
    *,
    loss: str | _losses.Loss | None = None,
    optimizer: str | _optimizers.Optimizer = "adam",
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 200,
    batch_size: int = 32,
    seed: int = 0,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
) -> LRFinderResult:
    """Run a learning-rate range test on a copy of ``model`` and suggest a learning rate.

    Args:
        model: a ``Sequential`` (built or not; an unbuilt one is built on the copy with
            ``seed``). Left unchanged.
        X, y: training data (as for ``fit``).
        loss: loss name or instance (default: the model's loss).
        optimizer: optimizer name or instance; an instance is deep-copied and only its
            learning rate is driven. A fresh optimizer state is what training would start from.
        min_lr / max_lr: range of learning rates, swept geometrically.
        num_steps: number of mini-batches (the sweep's length).
        batch_size: mini-batch size.
        seed: seeds the batch order (and the weights of an unbuilt model).
        smoothing: coefficient ``beta`` of the moving average ``avg = beta avg + (1 - beta)
            loss``; 0 disables smoothing.
        diverge_factor: stop when the smoothed loss exceeds this multiple of its minimum.

    Returns:
        An :class:`LRFinderResult` (``.suggestion``, ``.to_text()``, ``.plot(path)``).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a lucidnet Sequential, got {describe(model)}")
    sweep = _Sweep.checked(min_lr, max_lr, num_steps, batch_size, seed, smoothing, diverge_factor)
    loss_fn, opt = _loss_and_optimizer(model, loss, optimizer)
    rng = np.random.default_rng(sweep.seed)
    work, X, y = _working_copy(model, X, y, loss_fn, rng)
    sweep.batch_size = min(sweep.batch_size, X.shape[0])
    lrs, raw, smooth, stopped = _run_sweep(work, X, y, loss_fn, opt, rng, sweep)
    suggestion, steep, at_min = suggest_learning_rate(lrs, smooth)
    return LRFinderResult(
        lrs=np.asarray(lrs),
        losses=np.asarray(raw),
        smoothed=np.asarray(smooth),
        suggestion=suggestion,
        rule=RULE,
        steepest_lr=steep,
        min_loss_lr=at_min,
        stopped_early=stopped,
        optimizer=type(opt).__name__,
        settings={**asdict(sweep), "loss": loss_fn.key},
    )


@dataclass
class _Sweep:
    """The range test's settings (``LRFinderResult.settings``, in this order, plus the loss)."""

    min_lr: float
    max_lr: float
    num_steps: int
    batch_size: int
    seed: int
    smoothing: float
    diverge_factor: float

    @classmethod
    def checked(
        cls,
        min_lr: float,
        max_lr: float,
        num_steps: int,
        batch_size: int,
        seed: int,
        smoothing: float,
        diverge_factor: float,
    ) -> _Sweep:
        min_lr = check_float(min_lr, "min_lr", low=0.0, low_inclusive=False)
        max_lr = check_float(max_lr, "max_lr", low=0.0, low_inclusive=False)
        if max_lr <= min_lr:
            raise ValueError(f"max_lr must be larger than min_lr ({min_lr}), got {max_lr}")
        return cls(
            min_lr=min_lr,
            max_lr=max_lr,
            num_steps=check_positive_int(num_steps, "num_steps", minimum=10),
            batch_size=check_positive_int(batch_size, "batch_size"),
            seed=check_positive_int(seed, "seed", minimum=0),
            smoothing=check_float(smoothing, "smoothing", low=0.0, high=1.0, high_inclusive=False),
            diverge_factor=check_float(
                diverge_factor, "diverge_factor", low=1.0, low_inclusive=False
            ),
        )

    def learning_rates(self) -> np.ndarray:
        """``num_steps`` learning rates growing geometrically from ``min_lr`` to ``max_lr``."""
        steps = np.arange(self.num_steps) / (self.num_steps - 1)
        return self.min_lr * (self.max_lr / self.min_lr) ** steps


def _loss_and_optimizer(
    model: Sequential,
    loss: str | _losses.Loss | None,
    optimizer: str | _optimizers.Optimizer,
) -> tuple[_losses.Loss, _optimizers.Optimizer]:
    """The loss (the argument, else the model's) and a fresh or deep-copied optimizer."""
    if loss is None and model.loss is None:
        raise ValueError("find_learning_rate needs a loss, e.g. loss='cross_entropy'")
    loss_fn = _losses.get(loss) if loss is not None else model.loss
    if isinstance(optimizer, _optimizers.Optimizer):
        return loss_fn, _copy.deepcopy(optimizer)
    if isinstance(optimizer, str):
        return loss_fn, _optimizers.get(optimizer)
    raise TypeError(f"optimizer must be a name or an Optimizer, got {describe(optimizer)}")


def _working_copy(
    model: Sequential, X: Any, y: Any, loss_fn: _losses.Loss, rng: np.random.Generator
) -> tuple[Sequential, np.ndarray, np.ndarray]:
    """A deep copy of the model (built and reseeded from ``rng``) and the checked data; the
    caller's model, optimizer and dropout streams stay put."""
    work = model.copy()
    integer = bool(work.layers) and work.layers[0].integer_input
    X = check_array(X, "X", dtype=None if integer else work.dtype, min_ndim=2, integer=integer)
    if not work.built:
        work.build(X.shape[1:], rng)
    elif tuple(X.shape[1:]) != work.input_shape:
        raise ValueError(
            f"X must have per-sample shape {work.input_shape}, got {X.shape[1:]} (shape {X.shape})"
        )
    y = prepare_targets(work, loss_fn, y)
    check_same_length(X, y)
    for layer in work.layers:  # dropout masks of the copy follow the seed, not the model's stream
        layer.reseed(rng)
    return work, X, y


def _batch_indices(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of successive mini-batches: full batches of a random order of the rows, a
    new order for each pass over the data."""
    order, pos = rng.permutation(n), 0
    while True:
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


def _run_sweep(
    work: Sequential,
    X: np.ndarray,
    y: np.ndarray,
    loss_fn: _losses.Loss,
    opt: _optimizers.Optimizer,
    rng: np.random.Generator,
    sweep: _Sweep,
) -> tuple[list[float], list[float], list[float], bool]:
    """One training step (``train_step``) per learning rate; returns the learning rates, the
    batch losses, their smoothed values and whether the loss diverged (which ends the sweep)."""
    beta = sweep.smoothing
    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []
    avg, best = 0.0, math.inf
    batches = _batch_indices(X.shape[0], sweep.batch_size, rng)
    for i, lr in enumerate(sweep.learning_rates()):
        idx = next(batches)
        opt.lr = float(lr)
        value, _ = train_step(work, X[idx], y[idx], loss_fn, opt)
        avg = beta * avg + (1.0 - beta) * value
        sm = avg / (1.0 - beta ** (i + 1)) if beta else value  # bias-corrected
        lrs.append(float(lr))
        raw.append(float(value))
        smooth.append(float(sm))
        if not math.isfinite(sm):
            return lrs, raw, smooth, True
        best = min(best, sm)
        if i >= 10 and sm > sweep.diverge_factor * best:
            return lrs, raw, smooth, True
    return lrs, raw, smooth, False
