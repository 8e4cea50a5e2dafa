"""``Diagnostics``: a callback that watches training from the inside and says what went wrong.

Per layer and per epoch it records:

* ``grad_norm``: L2 norm of the layer's gradient (median over the sampled batches);
* ``update_ratio``: ``||delta theta|| / ||theta||``, the size of one optimizer update relative
  to the layer's parameters (median over the sampled batches). About 1e-3 is the classic healthy
  value (Karpathy's rule of thumb); 1e-1 and above means each step rewrites the weights;
* ``dead_fraction`` (ReLU layers): fraction of units never active (``z > 0``) on any sampled
  batch of the epoch;
* ``saturation`` (sigmoid / tanh layers): fraction of activations within 0.01 of the
  function's limits (``s < 0.01`` or ``s > 0.99``; ``|tanh| > 0.99``), where the derivative is
  nearly zero.

It is cheap enough to leave on: it looks at every ``every``-th batch only (default 10), reads the
gradients and the ``Dense`` layers' cached pre-activations (no extra forward pass), and keeps one
copy of the parameter vector to measure the next update.

Warnings. Once per kind and per run, in plain words with a suggested fix, for: learning rate
too high, learning rate too low, exploding gradients, vanishing gradients, dead ReLU units,
overfitting, and NaN / inf. Each warning is appended to ``model.history.warnings`` (the
``History`` that ``fit`` returns) and also issued with ``warnings.warn(message,
TrainingWarning)``: Python's warning machinery prints it once to stderr, and users or test
suites can filter, silence or turn it into an error (``warnings.simplefilter("error",
TrainingWarning)``). Pass ``emit=False`` to only record.

How each warning is decided (the thresholds are constructor arguments):

* ``lr_too_high``: the smoothed batch loss climbs above ``diverge_factor`` x the first batch's
  loss, the epoch's training loss is ``rise_factor`` x above its best epoch, or the median update
  ratio of some layer exceeds ``ratio_high``.
* ``lr_too_low``: after ``patience_low`` epochs the epoch training loss has fallen by less than
  ``flat_tolerance`` (relative) since the first epoch *and* every layer's update ratio is below
  ``ratio_low``. (Comparing with the first epoch, not with the previous one, keeps a converged
  model from looking "stuck".)
* ``exploding_gradients``: a gradient norm is not finite or above ``explode_norm``, or the first
  trainable layer's RMS gradient is ``depth_ratio`` x larger than the last's.
* ``vanishing_gradients``: the first trainable layer's RMS gradient is ``depth_ratio`` x smaller
  than the last's (the signal dies on its way back through the layers).
* ``dead_units``: a ReLU layer has more than ``dead_threshold`` of its units never active.
* ``overfitting``: the validation loss has risen for ``overfit_patience`` epochs above its best
  (by ``overfit_tolerance`` relative) while the training loss kept falling.
* ``nan``: the loss or a gradient became NaN or infinite.
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any

import numpy as np

from .._validation import check_float, check_positive_int
from ..callbacks import Callback
from ..layers import Dense

__all__ = ["Diagnostics", "TrainingWarning", "WARNING_KINDS"]

#: the kinds of warnings, in the order they are checked.
WARNING_KINDS = (
    "nan",
    "lr_too_high",
    "lr_too_low",
    "exploding_gradients",
    "vanishing_gradients",
    "dead_units",
    "overfitting",
)

_METRICS = ("grad_norm", "update_ratio", "dead_fraction", "saturation")
_WATCHED = ("relu", "sigmoid", "tanh")  # activations whose units are watched


class TrainingWarning(UserWarning):
    """A problem detected while training (issued by :class:`Diagnostics`)."""


def _act_key(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    return None if act is None else getattr(act, "key", None)


def _watched_layers(layers: list[Any]) -> list[tuple[str, Any, str]]:
    """The layers whose units are watched: ``(watched name, Dense layer whose cached z is read,
    activation key)`` for a Dense layer with a ReLU / sigmoid / tanh activation, and for such
    an activation layer right after a Dense layer without one (``Dense(n), ReLU()``)."""
    watch: list[tuple[str, Any, str]] = []
    for i, layer in enumerate(layers):
        key = _act_key(layer)
        if key in _WATCHED and isinstance(layer, Dense):
            watch.append((layer.name, layer, key))
        elif getattr(layer, "key", None) in _WATCHED and i > 0:
            prev = layers[i - 1]
            if isinstance(prev, Dense) and prev.activation is None:
                watch.append((layer.name, prev, layer.key))
    return watch


class Diagnostics(Callback):
    """Record per-layer training health and warn, in plain words, when training goes wrong.

    Args:
        every: look at every ``every``-th batch (1 = all; the default 10 costs a few percent).
        emit: also issue each warning with ``warnings.warn`` (printed once to stderr).
        ratio_high / ratio_low: update-to-weight ratios considered too large / too small.
        diverge_factor: smoothed batch loss above this multiple of the first batch's loss means
            the loss is diverging.
        rise_factor: epoch training loss above this multiple of its best epoch means it rises.
        flat_tolerance / patience_low: "loss flat" = less than this relative decrease since the
            first epoch, after ``patience_low`` epochs.
        explode_norm: gradient norms above this count as exploding.
        depth_ratio: RMS gradient ratio between the first and last trainable layers beyond which
            gradients explode (ratio > depth_ratio) or vanish (ratio < 1 / depth_ratio).
        dead_threshold: fraction of never-active ReLU units in a layer that triggers a warning.
        overfit_patience / overfit_tolerance: epochs (and relative margin) of rising validation
            loss, with falling training loss, before warning about overfitting.

    Attributes:
        layers: ``{layer_name: {"grad_norm": [...], "update_ratio": [...], "dead_fraction":
            [...], "saturation": [...]}}``, one value per epoch (NaN when not applicable).
        epochs: epoch indices recorded; ``train_loss`` / ``val_loss``: per-epoch losses.
        steps: global step indices of the sampled batches; ``step_grad_norms``:
            ``{layer_name: [norm at each sampled step]}`` (for plots over time).
        warnings: ``{kind: message}`` of the warnings issued (also in ``history.warnings``).
        initial_weights: ``model.get_weights()`` at the start of training (for histograms).
    """

    def __init__(
        self,
        every: int = 10,
        *,
        emit: bool = True,
        ratio_high: float = 0.1,
        ratio_low: float = 1e-5,
        diverge_factor: float = 1.5,
        rise_factor: float = 1.25,
        flat_tolerance: float = 0.01,
        patience_low: int = 2,
        explode_norm: float = 1e3,
        depth_ratio: float = 1e3,
        dead_threshold: float = 0.5,
        overfit_patience: int = 3,
        overfit_tolerance: float = 0.05,
    ) -> None:
        super().__init__()
        self.every = check_positive_int(every, "every")
        self.emit = bool(emit)
        self.ratio_high = check_float(ratio_high, "ratio_high", low=0.0, low_inclusive=False)
        self.ratio_low = check_float(ratio_low, "ratio_low", low=0.0, low_inclusive=False)
        self.diverge_factor = check_float(diverge_factor, "diverge_factor", low=1.0)
        self.rise_factor = check_float(rise_factor, "rise_factor", low=1.0)
        self.flat_tolerance = check_float(flat_tolerance, "flat_tolerance", low=0.0)
        self.patience_low = check_positive_int(patience_low, "patience_low")
        self.explode_norm = check_float(explode_norm, "explode_norm", low=0.0, low_inclusive=False)
        self.depth_ratio = check_float(depth_ratio, "depth_ratio", low=1.0, low_inclusive=False)
        self.dead_threshold = check_float(dead_threshold, "dead_threshold", low=0.0, high=1.0)
        self.overfit_patience = check_positive_int(overfit_patience, "overfit_patience")
        self.overfit_tolerance = check_float(overfit_tolerance, "overfit_tolerance", low=0.0)
        self._reset()

    # -- state ----------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.layers: dict[str, dict[str, list[float]]] = {}
        self.epochs: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.steps: list[int] = []
        self.step_grad_norms: dict[str, list[float]] = {}
        self.warnings: dict[str, str] = {}
        self.initial_weights: dict[str, np.ndarray] = {}
        self._step = 0
        self._first_loss: float | None = None
        self._ema = 0.0
        self._ema_n = 0
        self._prev: np.ndarray | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()
        model = self.model
        p, _, layout = model.flat_parameters()
        self._group_layout(layout)
        self._watch = _watched_layers(model.layers)
        for name in list(self._groups) + [w[0] for w in self._watch]:
            self.layers.setdefault(name, {m: [] for m in _METRICS})
        self.step_grad_norms = {name: [] for name in self._groups}
        self.initial_weights = model.get_weights()
        self._prev = p.copy()
        self._new_epoch()

    def _group_layout(self, layout: list[tuple[str, int, int, tuple[int, ...]]]) -> None:
        """Index the flat parameter vector by layer, for per-layer sums in three vectorised
        calls: reduceat sums each array's entries, bincount adds the arrays of a layer."""
        groups: dict[str, int] = {}
        owner, starts = [], []
        for name, offset, _size, _shape in layout:
            owner.append(groups.setdefault(name.split("/", 1)[0], len(groups)))
            starts.append(offset)
        order = np.argsort(starts, kind="stable")
        self._starts = np.asarray(starts, dtype=np.intp)[order]
        self._owner = np.asarray(owner, dtype=np.intp)[order]
        self._sizes = np.bincount(
            np.asarray(owner, dtype=np.intp),
            weights=np.asarray([e[2] for e in layout], dtype=np.float64),
            minlength=len(groups),
        )
        self._groups = groups
        self._trainable = list(groups)

    def _new_epoch(self) -> None:
        self._samples: dict[str, dict[str, list[float]]] = {
            name: {"grad_norm": [], "update_ratio": []} for name in self._groups
        }
        self._active: dict[str, np.ndarray | None] = {w[0]: None for w in self._watch}
        self._saturated: dict[str, list[float]] = {w[0]: [] for w in self._watch}

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._new_epoch()

    # -- per batch ------------------------------------------------------------------------------
    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        step = self._step
        self._step += 1
        loss = float(logs["loss_batch"] if "loss_batch" in logs else logs.get("loss", 0.0))
        if not math.isfinite(loss):
            self._warn_nan(
                f"the training loss became {loss} at epoch {self._epoch + 1}, batch {batch + 1}"
            )
            return
        if self._first_loss is None:
            self._first_loss = loss
        self._ema = 0.9 * self._ema + 0.1 * loss
        self._ema_n += 1
        smoothed = self._ema / (1.0 - 0.9**self._ema_n)
        if (
            self._ema_n >= 5
            and self._first_loss > 0
            and smoothed > self.diverge_factor * self._first_loss
        ):
            self._warn_high(
                f"the training loss is rising: its running average is {smoothed:.4g}, up from "
                f"{self._first_loss:.4g} at the first batch"
            )
        sampled = step % self.every == 0
        snapshot = (step + 1) % self.every == 0
        if not (sampled or snapshot):
            return
        p, g, _ = self.model.flat_parameters()
        if sampled:
            self._sample(step, p, g)
        if snapshot:
            self._prev = p.copy()

    def _sample(self, step: int, p: np.ndarray, g: np.ndarray) -> None:
        self.steps.append(step)
        prev = self._prev
        worst_ratio = 0.0
        gn_all = self._layer_norms(g)
        # the ratio's denominator is the weights the update was applied to (before the step)
        pn_all = self._layer_norms(prev if prev is not None else p)
        dn_all = self._layer_norms(p - prev) if prev is not None else np.zeros_like(pn_all)
        for name, i in self._groups.items():
            gn, pn, dn = float(gn_all[i]), float(pn_all[i]), float(dn_all[i])
            ratio = dn / pn if pn > 0 else float("nan")
            self._samples[name]["grad_norm"].append(gn)
            self._samples[name]["update_ratio"].append(ratio)
            self.step_grad_norms[name].append(gn)
            if not math.isfinite(gn):
                self._warn_nan(f"the gradient of layer {name} became {gn}")
            elif gn > self.explode_norm:
                self._warn(
                    "exploding_gradients",
                    f"Exploding gradients: the gradient norm of layer {name} reached {gn:.3g}. "
                    "Fix: clip the gradients (e.g. Adam(clip_norm=1.0)), lower the learning "
                    "rate, standardise the inputs (and regression targets), or add BatchNorm.",
                )
            if math.isfinite(ratio):
                worst_ratio = max(worst_ratio, ratio)
        if worst_ratio > 1.0:
            self._warn_high(
                f"a single update changed some weights by {worst_ratio:.3g} times their own size"
            )
        for name, layer, key in self._watch:
            z = getattr(layer, "_z", None)  # the Dense layer's cached pre-activation
            if z is None:
                continue
            if key == "relu":
                now = np.any(z > 0, axis=0)
                old = self._active[name]
                self._active[name] = now if old is None else (old | now)
            elif key == "sigmoid":
                # s < 0.01 or s > 0.99  <=>  |z| > log(99)
                self._saturated[name].append(float(np.mean(np.abs(z) > math.log(99.0))))
            else:
                # |tanh z| > 0.99  <=>  |z| > atanh(0.99)
                self._saturated[name].append(float(np.mean(np.abs(z) > math.atanh(0.99))))

    # -- per epoch ------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.epochs.append(epoch)
        loss = float(logs.get("loss", float("nan")))
        self.train_loss.append(loss)
        self.val_loss.append(float(logs.get("val_loss", float("nan"))))
        for name in self.layers:
            rec = self.layers[name]
            smp = self._samples.get(name)
            if smp is not None and smp["grad_norm"]:
                # statistics.median: a few values, where np.median's overhead would dominate
                rec["grad_norm"].append(float(statistics.median(smp["grad_norm"])))
                ratios = [r for r in smp["update_ratio"] if math.isfinite(r)]
                rec["update_ratio"].append(statistics.median(ratios) if ratios else float("nan"))
            else:
                rec["grad_norm"].append(float("nan"))
                rec["update_ratio"].append(float("nan"))
            active = self._active.get(name)
            rec["dead_fraction"].append(
                float("nan") if active is None else float(1.0 - np.mean(active))
            )
            sat = self._saturated.get(name)
            rec["saturation"].append(float(np.mean(sat)) if sat else float("nan"))
        self._check_epoch(epoch)

    def _last(self, metric: str) -> dict[str, float]:
        return {
            name: rec[metric][-1]
            for name, rec in self.layers.items()
            if rec[metric] and math.isfinite(rec[metric][-1])
        }

    def _check_epoch(self, epoch: int) -> None:
        losses = [v for v in self.train_loss if math.isfinite(v)]
        ratios = self._last("update_ratio")
        self._check_lr_high(epoch, losses, ratios)
        self._check_lr_low(losses, ratios)
        # dead ReLU units are checked before vanishing gradients, which dead units also cause
        if not self._check_dead_units(epoch):
            self._check_gradient_depth()
        self._check_overfitting(epoch)

    def _check_lr_high(self, epoch: int, losses: list[float], ratios: dict[str, float]) -> None:
        """The loss rises from epoch to epoch, or updates are huge."""
        if len(losses) >= 2 and losses[-1] > self.rise_factor * min(losses[:-1]) > 0:
            self._warn_high(
                f"the training loss rose to {losses[-1]:.4g} in epoch {epoch + 1}, from "
                f"{min(losses[:-1]):.4g} at best"
            )
        big = {k: v for k, v in ratios.items() if v > self.ratio_high}
        if big:
            name, value = max(big.items(), key=lambda kv: kv[1])
            self._warn_high(
                f"each update changes layer {name}'s weights by {value:.2g} of their size "
                "(a healthy ratio is about 0.001)"
            )

    def _check_lr_low(self, losses: list[float], ratios: dict[str, float]) -> None:
        """The loss has hardly moved since the start and the updates are tiny."""
        if not (len(self.epochs) >= self.patience_low and len(losses) >= 2 and ratios):
            return
        drop = (losses[0] - losses[-1]) / abs(losses[0]) if losses[0] else 0.0
        top = max(ratios.values())
        if drop < self.flat_tolerance and top < self.ratio_low:
            self._warn(
                "lr_too_low",
                f"Learning rate too low: in {len(self.epochs)} epochs the training loss "
                f"barely moved ({losses[0]:.4g} -> {losses[-1]:.4g}) and each update changes "
                f"the weights by at most {top:.2g} of their size (a healthy ratio is about "
                "0.001). Fix: raise the learning rate 10x to 100x (ln.find_learning_rate "
                "suggests one).",
            )

    def _check_dead_units(self, epoch: int) -> bool:
        """Warn when a ReLU layer has too many never-active units; return whether one has."""
        dead = {k: v for k, v in self._last("dead_fraction").items() if v > self.dead_threshold}
        if dead:
            name, frac = max(dead.items(), key=lambda kv: kv[1])
            self._warn(
                "dead_units",
                f"Dead ReLU units: {frac:.0%} of layer {name}'s units never activated during "
                f"epoch {epoch + 1} (their output and gradient are always 0, so they cannot "
                "learn). Fix: lower the learning rate, check the bias initialisation (biases "
                "should start near 0), or use LeakyReLU / ELU.",
            )
        return bool(dead)

    def _check_gradient_depth(self) -> None:
        """Exploding / vanishing gradients: the first and last trainable layers' RMS gradient."""
        norms = self._last("grad_norm")
        trainable = [n for n in self._trainable if n in norms]
        if len(trainable) < 2:
            return
        first, last = trainable[0], trainable[-1]
        rms_first = norms[first] / math.sqrt(self._size(first))
        rms_last = norms[last] / math.sqrt(self._size(last))
        if rms_last > 0 and rms_first / rms_last > self.depth_ratio:
            self._warn(
                "exploding_gradients",
                f"Exploding gradients: the gradient reaching the first layer ({first}) is "
                f"{rms_first / rms_last:.3g}x larger per weight than at the last layer "
                f"({last}); it grows on its way back through the layers. Fix: smaller "
                "initial weights (He / Glorot initialisation), gradient clipping "
                "(clip_norm=1.0), BatchNorm, or fewer layers.",
            )
        elif rms_last > 0 and rms_first * self.depth_ratio < rms_last:
            self._warn_vanishing(first, last, rms_first, rms_last)

    def _warn_vanishing(self, first: str, last: str, rms_first: float, rms_last: float) -> None:
        sat = self._last("saturation")
        hint = ""
        if sat:
            worst = max(sat.items(), key=lambda kv: kv[1])
            hint = f" {worst[1]:.0%} of layer {worst[0]}'s activations are saturated."
        factor = f"{rms_last / rms_first:.3g}x smaller" if rms_first else "zero"
        self._warn(
            "vanishing_gradients",
            f"Vanishing gradients: the gradient reaching the first layer ({first}) is "
            f"{factor} per weight compared with the last layer ({last}), so the early "
            f"layers barely learn.{hint} Fix: use ReLU-family activations instead of "
            "sigmoid / tanh in hidden layers, He initialisation, BatchNorm, or fewer "
            "layers.",
        )

    def _check_overfitting(self, epoch: int) -> None:
        val = self.val_loss
        if not val or not all(math.isfinite(v) for v in val):
            return
        best = int(np.argmin(val))
        since = len(val) - 1 - best
        if since < self.overfit_patience:
            return
        tail_val = val[best:]
        tail_train = self.train_loss[best:]
        rising = val[-1] > val[best] * (1.0 + self.overfit_tolerance)
        train_falling = tail_train[-1] < tail_train[0]
        if rising and train_falling and all(v >= val[best] for v in tail_val):
            self._warn(
                "overfitting",
                f"Overfitting: the validation loss is rising ({val[best]:.4g} at epoch "
                f"{best + 1}, {val[-1]:.4g} at epoch {epoch + 1}) while the training loss "
                f"keeps falling ({tail_train[0]:.4g} -> {tail_train[-1]:.4g}): the model "
                f"memorises the training set. Fix: stop near epoch {best + 1} "
                "(EarlyStopping(restore_best_weights=True)), add Dropout or L2 "
                "regularisation, use a smaller network, or get more data.",
            )

    def _size(self, name: str) -> int:
        return int(self._sizes[self._groups[name]])

    def _layer_norms(self, v: np.ndarray) -> np.ndarray:
        """L2 norm of ``v`` restricted to each layer's parameters, in layer order."""
        if v.size == 0:
            return np.zeros(len(self._groups))
        sq = np.add.reduceat(np.square(v, dtype=np.float64), self._starts)
        return np.sqrt(np.bincount(self._owner, weights=sq, minlength=len(self._groups)))

    # -- warnings -------------------------------------------------------------------------------
    def _warn_high(self, evidence: str) -> None:
        opt = getattr(self.model, "optimizer", None)
        lr = f" ({opt.current_lr:.3g})" if opt is not None else ""
        self._warn(
            "lr_too_high",
            f"Learning rate too high{lr}: {evidence}. Fix: divide the learning rate by 10 "
            "(ln.find_learning_rate suggests one), or clip the gradients (clip_norm=1.0).",
        )

    def _warn_nan(self, evidence: str) -> None:
        self._warn(
            "nan",
            f"NaN / inf: {evidence}. The numbers overflowed. Fix: lower the learning rate "
            "(10x), standardise the inputs, clip the gradients (clip_norm=1.0), and check the "
            "data for NaN / inf.",
        )

    def _warn(self, kind: str, message: str) -> None:
        if kind in self.warnings:
            return  # once per kind and run
        text = f"Diagnostics: {message}"
        self.warnings[kind] = text
        history = getattr(self.model, "history", None)
        if history is not None and hasattr(history, "warnings"):
            history.warnings.append(text)
        if self.emit:
            warnings.warn(text, TrainingWarning, stacklevel=2)

    # -- output ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable records (NaN -> None), for reports and plots."""

        def clean(values: list[float]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        return {
            "every": self.every,
            "epochs": list(self.epochs),
            "train_loss": clean(self.train_loss),
            "val_loss": clean(self.val_loss),
            "layers": {n: {m: clean(v) for m, v in rec.items()} for n, rec in self.layers.items()},
            "steps": list(self.steps),
            "step_grad_norms": {n: clean(v) for n, v in self.step_grad_norms.items()},
            "warnings": dict(self.warnings),
        }

    def to_text(self) -> str:
        """The last epoch's per-layer numbers and the warnings, as a table."""
        if not self.epochs:
            return "Diagnostics: no epoch recorded yet"
        rows = [("layer", "grad norm", "update/weight", "dead units", "saturated")]

        def fmt(v: float, pct: bool = False) -> str:
            if not math.isfinite(v):
                return "-"
            return f"{v:.0%}" if pct else f"{v:.3g}"

        for name, rec in self.layers.items():
            rows.append(
                (
                    name,
                    fmt(rec["grad_norm"][-1]),
                    fmt(rec["update_ratio"][-1]),
                    fmt(rec["dead_fraction"][-1], True),
                    fmt(rec["saturation"][-1], True),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [f"Diagnostics after epoch {self.epochs[-1] + 1} (every {self.every} batches)"]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines += [f"  ! {w}" for w in self.warnings.values()] or ["  no warnings"]
        return "\n".join(lines)
