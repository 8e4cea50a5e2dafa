"""``Diagnostics``: a callback that watches training from the inside and says what went wrong.

Per layer and per epoch it records:

* ``grad_norm``: L2 norm of the layer's gradient (median over the sampled batches);
* ``update_ratio``: ``||delta theta|| / ||theta||``, the size of one optimizer update relative
  to the layer's parameters (median over the sampled batches). About 1e-3 is the classic healthy
  value (Karpathy's rule of thumb); 1e-1 and above means each step rewrites the weights;
* ``dead_fraction`` (ReLU layers): fraction of units never active (``z > 0``) on any sampled
  batch of the epoch (a convolution's units are its filters: a filter is active when it is
  positive at some position of some sampled image);
* ``saturation`` (sigmoid / tanh layers): fraction of activations within 0.01 of the
  function's limits (``s < 0.01`` or ``s > 0.99``; ``|tanh| > 0.99``), where the derivative is
  nearly zero.

It is cheap enough to leave on: it looks at every ``every``-th batch only (default 10), reads the
gradients and the ``Dense`` layers' cached pre-activations or the activations' cached outputs
(convolutions, whose units are their channels; no extra forward pass), and keeps one
copy of the parameter vector to measure the next update.

Warnings. Once per kind and per run, in plain words with a suggested fix, for: learning rate
too high, learning rate too low, exploding gradients, vanishing gradients, dead ReLU units,
overfitting, and NaN / inf. Each warning is appended to ``model.history.warnings`` (the
``History`` that ``fit`` returns) and also issued with ``warnings.warn(message,
TrainingWarning)``: Python's warning machinery prints it once to stderr, and users or test
suites can filter, silence or turn it into an error (``warnings.simplefilter("error",
TrainingWarning)``). Pass ``emit=False`` to only record.

How each warning is decided (the thresholds are constructor arguments):

* ``lr_too_high``, on any of:

  - batches: the smoothed batch loss (the median of the last ``window`` batches, so that one
    lucky or unlucky batch moves nothing) climbs ``diverge_factor`` x above the starting loss
    (the median of the first ``window`` batches, not the first batch alone) and stays there
    for ``window`` batches, while the epoch's running loss is no better than the best
    finished epoch (the trend is not falling);
  - epochs: the epoch training loss is ``rise_factor`` x above its best epoch for two epochs
    in a row, and the validation loss (if any) did not reach a new best meanwhile (one high
    epoch is noise with few batches per epoch, or with dropout);
  - updates: the median update ratio of some layer exceeds ``ratio_high``, or one update is
    larger than the weights it changed.

  A rise counts only above the noise floor: it must also exceed ``noise_floor`` x the starting
  loss, so that wiggles around 1e-4 after a near-perfect fit are not read as a learning-rate
  problem. For a loss not bounded below by 0 (a user's loss whose values go negative) ratios
  mean nothing: there a rise is measured against the progress made since the start, or the
  spread of the first batches.
* ``lr_too_low``: after ``patience_low`` epochs the epoch training loss has fallen by less than
  ``flat_tolerance`` (relative) since the first epoch *and* every layer's update ratio is below
  ``ratio_low``. (Comparing with the first epoch, not with the previous one, keeps a converged
  model from looking "stuck".)
* ``exploding_gradients``: a gradient norm is not finite or above ``explode_norm`` (for a
  Poisson loss, whose gradients carry the targets' own units, also above 100x the layer's first
  sampled norm: growth, not units), or the first
  trainable layer's RMS gradient is ``depth_ratio`` x larger than the last's. (The gradients
  read are those the optimizer left after clipping: with ``clip_norm`` the first test is blind.)
* ``vanishing_gradients``: the first trainable layer's RMS gradient is ``depth_ratio`` x smaller
  than the last's (the signal dies on its way back through the layers).
* ``dead_units``: a ReLU layer has more than ``dead_threshold`` of its units never active.
* ``overfitting``: judged once, when training ends, on the whole curve: the validation loss
  ended ``overfit_patience`` or more epochs after its best and clearly above it (the curve
  smoothed by a median of three epochs rose by more than ``overfit_tolerance`` of its level,
  and by more than its own epoch-to-epoch wiggle since the best) while the training loss kept
  falling. A validation loss that dips and recovers to a new best is not overfitting, and
  neither is one still at its best at the end.
* ``nan``: the loss or a gradient became NaN or infinite.

Advice fits what the run already does. :meth:`Diagnostics.context` reads it from the model and the
run (the caller passes nothing): the dropout rates of ``Dropout`` layers, ``BatchNorm`` layers, L1
/ L2 penalties of ``Dense`` and convolution layers, the optimizer's weight decay, gradient clipping
and learning-rate schedule, a learning rate changed during training (``ReduceLROnPlateau``), and
what ``EarlyStopping`` did (it publishes it in ``History.params["early_stopping"]``: the best epoch
and whether its weights are restored, whichever order the callbacks run in). The warnings then say
what was done and what is left ("Done: the best epoch (2) was restored ...; the run already uses
dropout 0.5. What is left to try: more data, a smaller network, or weight decay (L2).") instead of
recommending what is already there. ``context=`` adds or overrides entries (for what happens
outside the run). ``to_dict()["context"]`` and the ``the run:`` line of :meth:`Diagnostics.to_text`
show it.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections import deque
from typing import Any

import numpy as np

from .._validation import check_float, check_positive_int
from ..callbacks import Callback
from ..convolution import Conv1D, Conv2D
from ..layers import BatchNorm, Dense, Dropout, KernelLayer
from ..losses import LOSSES

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


def _numbers(values: list[float]) -> str:
    return " / ".join(f"{v:g}" for v in values)


def _quartiles(values: Any) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of a few values, by sorting (cheaper than
    NumPy for the ten values of each batch)."""
    v = sorted(values)
    n = len(v)
    mid = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    return v[n // 4], mid, v[(3 * n) // 4]


def _clip_advice(ctx: dict[str, Any], sep: str) -> str:
    """The gradient clipping advice, unless the optimizer already clips (then say so)."""
    if ctx.get("clip_norm") or ctx.get("clip_value"):
        how = f"clip_norm={ctx['clip_norm']:g}" if ctx.get("clip_norm") else "clip_value"
        return f" (the optimizer already clips the gradients: {how})"
    return f"{sep}clip the gradients (clip_norm=1.0)"


def _or(items: list[str]) -> str:
    """``a or b``; ``a, b, or c``."""
    if len(items) <= 2:
        return " or ".join(items)
    return ", ".join(items[:-1]) + ", or " + items[-1]


class TrainingWarning(UserWarning):
    """A problem detected while training (issued by :class:`Diagnostics`)."""


def _unscaled_targets(loss: Any) -> bool:
    """Whether the registered loss ``loss`` (a name) takes its targets in their own units:
    ``Loss.scale_targets`` False (Poisson), so that its gradients carry those units."""
    if not isinstance(loss, str) or loss not in LOSSES:
        return False
    return not getattr(LOSSES.lookup(loss), "scale_targets", True)


def _act_key(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    return None if act is None else getattr(act, "key", None)


def _has_kernel(layer: Any) -> bool:
    """A convolution (``Conv1D`` / ``Conv2D``), whose units are its filters (one per output
    channel, shared by every position)."""
    return isinstance(layer, (Conv1D, Conv2D))


def _watched_layers(layers: list[Any]) -> list[tuple[str, Any, str, str]]:
    """The layers whose units are watched: ``(watched name, object read, activation key,
    what is read)``. A Dense layer with a ReLU / sigmoid / tanh activation, or such an
    activation layer right after a Dense layer without one (``Dense(n), ReLU()``): the Dense
    layer's cached pre-activation ``_z`` (``"z"``). A convolution with such an activation, or
    such an activation layer right after a convolution without one: the activation's cached
    output ``_out`` (``"out"``; both training paths set it), whose units are the channels (the
    last axis), each watched over the batch and every position."""
    watch: list[tuple[str, Any, str, str]] = []
    for i, layer in enumerate(layers):
        key = _act_key(layer)
        if key in _WATCHED and isinstance(layer, Dense):
            watch.append((layer.name, layer, key, "z"))
        elif key in _WATCHED and _has_kernel(layer):
            watch.append((layer.name, layer.activation, key, "out"))
        elif getattr(layer, "key", None) in _WATCHED and i > 0:
            prev = layers[i - 1]
            if isinstance(prev, Dense) and prev.activation is None:
                watch.append((layer.name, prev, layer.key, "z"))
            elif _has_kernel(prev) and getattr(prev, "activation", None) is None:
                watch.append((layer.name, layer, layer.key, "out"))
    return watch


def _unit_states(z: np.ndarray, key: str, source: str) -> tuple[np.ndarray | None, float | None]:
    """(which units were active on the batch, for ReLU; the saturated fraction, for sigmoid /
    tanh) from a pre-activation ``z`` or an activation's output (``source`` ``"out"``); units
    are the last axis, every other axis (batch, positions) is pooled."""
    if key == "relu":
        return np.any(z > 0, axis=tuple(range(z.ndim - 1))), None  # out > 0 <=> z > 0
    if source == "out":  # s < 0.01 or s > 0.99; |tanh z| > 0.99
        far = np.abs(z - 0.5) > 0.49 if key == "sigmoid" else np.abs(z) > 0.99
    elif key == "sigmoid":
        far = np.abs(z) > math.log(99.0)  # s < 0.01 or s > 0.99  <=>  |z| > log(99)
    else:
        far = np.abs(z) > math.atanh(0.99)  # |tanh z| > 0.99  <=>  |z| > atanh(0.99)
    return None, float(np.mean(far))


class Diagnostics(Callback):
    """Record per-layer training health and warn, in plain words, when training goes wrong.

    Args:
        every: look at every ``every``-th batch (1 = all; the default 10 costs a few percent).
        emit: also issue each warning with ``warnings.warn`` (printed once to stderr).
        ratio_high / ratio_low: update-to-weight ratios considered too large / too small.
        diverge_factor: smoothed batch loss above this multiple of its best means the loss is
            diverging (when it stays there for ``window`` batches).
        rise_factor: epoch training loss above this multiple of its best epoch means it rises.
        window: batches in the rolling median that smooths the batch loss (its first value is
            the starting loss), and batches a rise must last.
        noise_floor: rises smaller than this fraction of the starting loss are noise, whatever
            their relative size (the loss near 0 after a near-perfect fit).
        flat_tolerance / patience_low: "loss flat" = less than this relative decrease since the
            first epoch, after ``patience_low`` epochs.
        explode_norm: gradient norms above this count as exploding.
        depth_ratio: RMS gradient ratio between the first and last trainable layers beyond which
            gradients explode (ratio > depth_ratio) or vanish (ratio < 1 / depth_ratio).
        dead_threshold: fraction of never-active ReLU units in a layer that triggers a warning.
        overfit_patience / overfit_tolerance: epochs (and relative margin) of rising validation
            loss, with falling training loss, before warning about overfitting.
        context: entries that add to or override what :meth:`context` reads from the run
            (same keys), for what the callback cannot see.

    Attributes:
        layers: ``{layer_name: {"grad_norm": [...], "update_ratio": [...], "dead_fraction":
            [...], "saturation": [...]}}``, one value per epoch (NaN when not applicable).
        epochs: epoch indices recorded; ``train_loss`` / ``val_loss``: per-epoch losses.
        steps: global step indices of the sampled batches; ``step_grad_norms``:
            ``{layer_name: [norm at each sampled step]}`` (for plots over time).
        warnings: ``{kind: message}`` of the warnings issued (also in ``history.warnings``).
        initial_weights: ``model.get_weights()`` at the start of training (for histograms).
        run_context: what the run already does (:meth:`context`), read when training ends.
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
        window: int = 10,
        noise_floor: float = 0.01,
        flat_tolerance: float = 0.01,
        patience_low: int = 2,
        explode_norm: float = 1e3,
        depth_ratio: float = 1e3,
        dead_threshold: float = 0.5,
        overfit_patience: int = 3,
        overfit_tolerance: float = 0.05,
        context: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.every = check_positive_int(every, "every")
        self.emit = bool(emit)
        self.ratio_high = check_float(ratio_high, "ratio_high", low=0.0, low_inclusive=False)
        self.ratio_low = check_float(ratio_low, "ratio_low", low=0.0, low_inclusive=False)
        self.diverge_factor = check_float(diverge_factor, "diverge_factor", low=1.0)
        self.rise_factor = check_float(rise_factor, "rise_factor", low=1.0)
        self.window = check_positive_int(window, "window")
        self.noise_floor = check_float(noise_floor, "noise_floor", low=0.0)
        self.flat_tolerance = check_float(flat_tolerance, "flat_tolerance", low=0.0)
        self.patience_low = check_positive_int(patience_low, "patience_low")
        self.explode_norm = check_float(explode_norm, "explode_norm", low=0.0, low_inclusive=False)
        self.depth_ratio = check_float(depth_ratio, "depth_ratio", low=1.0, low_inclusive=False)
        self.dead_threshold = check_float(dead_threshold, "dead_threshold", low=0.0, high=1.0)
        self.overfit_patience = check_positive_int(overfit_patience, "overfit_patience")
        self.overfit_tolerance = check_float(overfit_tolerance, "overfit_tolerance", low=0.0)
        if context is not None and not isinstance(context, dict):
            raise TypeError(f"context must be a dict or None, got {type(context).__name__}")
        self._given_context = dict(context or {})
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
        self.run_context: dict[str, Any] = {}
        self._step = 0
        self._recent: deque[float] = deque(maxlen=self.window)  # the last batch losses
        self._start: float | None = None  # median of the first `window` batch losses
        self._spread = 0.0  # their interquartile range (the scale of an unbounded loss)
        self._best_epoch_loss = math.inf  # the best finished epoch's training loss
        self._high_run = 0  # consecutive batches with the smoothed loss too high
        self._epochs_high = 0  # consecutive epochs with the training loss above its best
        self._negative = False  # a loss below 0 was seen: ratios mean nothing
        self._lrs: list[float] = []
        self._prev: np.ndarray | None = None
        self._first_norms: dict[str, float] = {}  # each layer's first sampled gradient norm

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
        self._watch_batch_loss(loss, logs.get("loss"))
        sampled = step % self.every == 0
        snapshot = (step + 1) % self.every == 0
        if not (sampled or snapshot):
            return
        p, g, _ = self.model.flat_parameters()
        if sampled:
            self._sample(step, p, g)
        if snapshot:
            self._prev = p.copy()

    def _watch_batch_loss(self, loss: float, epoch_so_far: Any) -> None:
        """The batch-level divergence rule: the median of the last ``window`` batch losses
        climbs clearly above the starting loss (the median of the first ``window``, robust to a
        lucky first batch) and stays there for ``window`` batches, while the epoch so far is no
        better than the best finished epoch (the trend is not falling). A rise above the best
        epoch that stays below the start is left to the epoch rule: a rolling median of noisy
        batches dips and climbs, the epoch averages do not."""
        self._negative = self._negative or loss < 0
        self._recent.append(loss)
        if len(self._recent) < self.window:
            return
        q1, smoothed, q3 = _quartiles(self._recent)
        if self._start is None:
            self._start, self._spread = smoothed, q3 - q1
        start = self._start
        falling = epoch_so_far is not None and float(epoch_so_far) < self._best_epoch_loss
        if falling or not self._significant_rise(
            smoothed, start, start, self.diverge_factor, self._spread
        ):
            self._high_run = 0
            return
        self._high_run += 1
        if self._high_run >= self.window:
            self._warn_high(
                f"the training loss is rising: the median of the last {self.window} batches is "
                f"{smoothed:.4g}, up from {start:.4g} at the start, for {self._high_run} batches"
            )

    def _significant_rise(
        self, value: float, best: float, start: float, factor: float, noise: float
    ) -> bool:
        """Whether ``value`` is a real rise above ``best``: ``factor`` x above it (for a loss
        bounded below by 0), or above it by ``factor - 1`` x the progress made since ``start``
        or the batch noise (an unbounded loss: ratios mean nothing when the loss can be near 0
        or negative); and in both cases by more than ``noise_floor`` x the loss's scale at the
        start (wiggles of a loss near 0 after a near-perfect fit are not a rise)."""
        rise = value - best
        if not rise > 0:
            return False
        if self._bounded():
            scale, reference = abs(start), best
        else:
            scale = reference = max(start - best, noise)
        return rise > (factor - 1.0) * reference and rise > self.noise_floor * scale

    def _explode_limit(self, name: str, gn: float) -> float:
        """The gradient norm above which layer ``name`` counts as exploding: ``explode_norm``;
        for a loss on targets in their own units (Poisson: the gradient e^z - t is as large as
        the counts, 1e4 for prices in dollars) also 100x the layer's first sampled norm, so
        that only growth counts, not the units."""
        first = self._first_norms.setdefault(name, gn)
        if _unscaled_targets(self.params.get("loss")):
            return max(self.explode_norm, 100.0 * first)
        return self.explode_norm

    def _bounded(self) -> bool:
        """Whether the loss is bounded below by 0 (every built-in loss; a user's loss that goes
        negative is caught by its values)."""
        return not self._negative

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
            elif gn > self._explode_limit(name, gn):
                ctx = self.context()
                self._warn(
                    "exploding_gradients",
                    f"Exploding gradients: the gradient norm of layer {name} reached {gn:.3g}. "
                    f"Fix: lower the learning rate{_clip_advice(ctx, ', ')}, standardise the "
                    "inputs (and regression targets)"
                    f"{'' if ctx['batch_norm'] else ', or add BatchNorm'}.",
                )
            if math.isfinite(ratio):
                worst_ratio = max(worst_ratio, ratio)
        if worst_ratio > 1.0:
            self._warn_high(
                f"a single update changed some weights by {worst_ratio:.3g} times their own size"
            )
        for name, layer, key, source in self._watch:
            # the Dense layer's cached pre-activation, or the activation's cached output
            z = getattr(layer, "_z" if source == "z" else "_out", None)
            if z is None:
                continue
            active, saturated = _unit_states(np.asarray(z), key, source)
            if active is not None:
                old = self._active[name]
                self._active[name] = active if old is None else (old | active)
            elif saturated is not None:
                self._saturated[name].append(saturated)

    # -- per epoch ------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.epochs.append(epoch)
        loss = float(logs.get("loss", float("nan")))
        self.train_loss.append(loss)
        self.val_loss.append(float(logs.get("val_loss", float("nan"))))
        if "lr" in logs:
            self._lrs.append(float(logs["lr"]))
        self._negative = self._negative or loss < 0
        if math.isfinite(loss):
            self._best_epoch_loss = min(self._best_epoch_loss, loss)
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

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Read what the run did (early stopping runs its own hook before or after this one:
        what it published says which epoch it restores), then judge overfitting on the whole
        validation curve."""
        self.run_context = self.context()
        self._check_overfitting()

    def _check_lr_high(self, epoch: int, losses: list[float], ratios: dict[str, float]) -> None:
        """The training loss stays above its best epoch for two epochs in a row while the
        validation loss (if any) does not reach a new best, or updates are huge. One high epoch
        is not enough: with few batches per epoch, or dropout, epoch losses wiggle."""
        start = self._start if self._start is not None else (losses[0] if losses else 0.0)
        rising = len(losses) >= 2 and self._significant_rise(
            losses[-1], min(losses[:-1]), start, self.rise_factor, self._spread
        )
        self._epochs_high = self._epochs_high + 1 if rising else 0
        val = [v for v in self.val_loss if math.isfinite(v)]
        improving = len(val) >= 2 and val[-1] < min(val[:-1])  # the model still gets better
        if self._epochs_high >= 2 and not improving:
            self._warn_high(
                f"the training loss rose to {losses[-1]:.4g} in epoch {epoch + 1}, from "
                f"{min(losses[:-2]):.4g} at best, and stayed up for {self._epochs_high} epochs"
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
            ctx = self.context()
            self._warn(
                "exploding_gradients",
                f"Exploding gradients: the gradient reaching the first layer ({first}) is "
                f"{rms_first / rms_last:.3g}x larger per weight than at the last layer "
                f"({last}); it grows on its way back through the layers. Fix: smaller "
                f"initial weights (He / Glorot initialisation){_clip_advice(ctx, ', ')}"
                f"{'' if ctx['batch_norm'] else ', BatchNorm'}, or fewer layers.",
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
            "sigmoid / tanh in hidden layers, He initialisation, "
            f"{'' if self.context()['batch_norm'] else 'BatchNorm, '}or fewer layers.",
        )

    def _check_overfitting(self) -> None:
        """On the whole validation curve, at the end: the validation loss ended at least
        ``overfit_patience`` epochs after its best and clearly above it, while the training
        loss kept falling. A dip that recovers to a new best, or a curve still at its best at
        the end, is not overfitting. "Clearly" is judged on the curve smoothed by a median of
        three epochs, so that neither a lucky best epoch nor one unlucky last epoch decides,
        and against the curve's epoch-to-epoch wiggle since its best (a noisy plateau is not a
        rise)."""
        val, train = self.val_loss, self.train_loss
        if not val or not all(math.isfinite(v) for v in val + train):
            return
        best = int(np.argmin(val))
        if len(val) - 1 - best < self.overfit_patience:
            return
        low = min(statistics.median(val[max(0, i - 1) : i + 2]) for i in range(len(val)))
        end = statistics.median(val[-3:])
        # the rise's scale: the level itself for a loss bounded below by 0, else the progress
        # made since the first epoch (Poisson's values can be near 0 or negative)
        scale = abs(low) if self._bounded() else val[0] - low
        # and more than the curve's own epoch-to-epoch wiggle since its best: a steady rise
        # over 3+ epochs is several steps, a noisy plateau is about one
        wiggle = statistics.median(abs(b - a) for a, b in zip(val[best:], val[best + 1 :]))
        rise = end - low
        if not (rise > self.overfit_tolerance * scale and rise > wiggle):
            return
        if not train[-1] < train[best]:
            return
        first, last = self.epochs[best] + 1, self.epochs[-1] + 1
        self._warn(
            "overfitting",
            f"Overfitting: the validation loss rose after epoch {first} ({val[best]:.4g} -> "
            f"{val[-1]:.4g} at epoch {last}) while the training loss kept falling "
            f"({train[best]:.4g} -> {train[-1]:.4g}): the model starts to memorise the "
            f"training set. {self._overfitting_advice(first)}",
        )

    def _overfitting_advice(self, best_epoch: int) -> str:
        """What the run already does against overfitting, and what is left (1-based epoch)."""
        ctx = self.run_context or self.context()
        done, left = [], []
        restored = ctx.get("restored_epoch")
        if restored is not None:
            done.append(
                f"the best epoch ({restored + 1}) was restored (early stopping), so the model "
                "keeps the weights from before the rise"
            )
        elif ctx.get("early_stopping"):
            left.append(
                f"restoring the best epoch ({best_epoch}; early stopping kept the last epoch's "
                "weights: EarlyStopping(restore_best_weights=True))"
            )
        else:
            left.append(
                f"stopping near epoch {best_epoch} (EarlyStopping(restore_best_weights=True))"
            )
        left += ["more data", "a smaller network"]
        if ctx.get("dropout"):
            done.append("the run already uses dropout " + _numbers(ctx["dropout"]))
        else:
            left.append("Dropout")
        penalties = [
            f"{name} {ctx[key]:g}"
            for key, name in (("l2", "L2"), ("l1", "L1"), ("weight_decay", "weight decay"))
            if ctx.get(key)
        ]
        if penalties:
            done.append("it already uses " + " and ".join(penalties))
        else:
            left.append("weight decay (L2)")
        text = f"Done: {'; '.join(done)}. " if done else ""
        return text + f"What is left to try: {_or(left)}."

    def context(self) -> dict[str, Any]:
        """What the run already does, read from the model, its optimizer and the run.

        Returns:
            ``{"dropout": [rates of Dropout layers, > 0], "batch_norm": bool, "l1" / "l2": the
            largest penalty of a Dense or convolution layer, "weight_decay": the optimizer's,
            "clip_norm" / "clip_value": its gradient clipping or None, "lr_schedule": the class of
            a learning-rate schedule or None, "lr_range": [first, last] epoch learning rate when it
            changed during training (a schedule, ReduceLROnPlateau) or None, "early_stopping": what
            EarlyStopping published in ``History.params`` or None, "restored_epoch": the 0-based
            epoch whose weights the model ends with when early stopping restores its best epoch,
            else None}``, updated with the ``context=`` given to the constructor.
        """
        layers = list(getattr(self.model, "layers", []) or [])
        # the layers with L1 / L2 penalties: Dense and the convolutions
        dense = [layer for layer in layers if isinstance(layer, KernelLayer)]
        opt = getattr(self.model, "optimizer", None)
        lr = getattr(opt, "lr", None)
        history = getattr(self.model, "history", None)
        params = getattr(history, "params", None)
        stopper = params.get("early_stopping") if isinstance(params, dict) else None
        stopper = dict(stopper) if isinstance(stopper, dict) else None
        restored = None
        if stopper and stopper.get("restore_best_weights"):
            # restored already, or by EarlyStopping's own end-of-training hook after this one
            restored = stopper.get("restored_epoch")
            restored = stopper.get("best_epoch") if restored is None else restored
        lrs = self._lrs
        ctx: dict[str, Any] = {
            "dropout": sorted({float(x.rate) for x in layers if isinstance(x, Dropout) and x.rate}),
            "batch_norm": any(isinstance(x, BatchNorm) for x in layers),
            "l1": max([float(x.l1) for x in dense], default=0.0),
            "l2": max([float(x.l2) for x in dense], default=0.0),
            "weight_decay": float(getattr(opt, "weight_decay", 0.0) or 0.0),
            "clip_norm": getattr(opt, "clip_norm", None),
            "clip_value": getattr(opt, "clip_value", None),
            "lr_schedule": None if lr is None or isinstance(lr, float) else type(lr).__name__,
            "lr_range": [lrs[0], lrs[-1]] if lrs and min(lrs) != max(lrs) else None,
            "early_stopping": stopper,
            "restored_epoch": restored,
        }
        ctx.update(self._given_context)
        return ctx

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
        ctx = self.context()
        what = "the schedule's learning rate" if ctx["lr_schedule"] else "the learning rate"
        self._warn(
            "lr_too_high",
            f"Learning rate too high{lr}: {evidence}. Fix: divide {what} by 10 "
            f"(ln.find_learning_rate suggests one){_clip_advice(ctx, ', or ')}.",
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
            "context": _jsonable(self.run_context),
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
        done = _context_text(self.run_context)
        if done:
            lines.append(f"  the run: {done}")
        lines += [f"  ! {w}" for w in self.warnings.values()] or ["  no warnings"]
        return "\n".join(lines)


def _context_text(ctx: dict[str, Any]) -> str:
    """One line of what the run did (``"early stopping restored epoch 3; dropout 0.5"``)."""
    parts = []
    if ctx.get("restored_epoch") is not None:
        parts.append(f"early stopping restored epoch {ctx['restored_epoch'] + 1}")
    elif ctx.get("early_stopping"):
        parts.append("early stopping without restoring the best epoch")
    if ctx.get("dropout"):
        parts.append("dropout " + _numbers(ctx["dropout"]))
    if ctx.get("batch_norm"):
        parts.append("batch norm")
    for key, name in (("l2", "L2"), ("l1", "L1"), ("weight_decay", "weight decay")):
        if ctx.get(key):
            parts.append(f"{name} {ctx[key]:g}")
    if ctx.get("clip_norm"):
        parts.append(f"gradient clipping at norm {ctx['clip_norm']:g}")
    if ctx.get("lr_schedule"):
        parts.append(f"learning-rate schedule {ctx['lr_schedule']}")
    if ctx.get("lr_range"):
        first, last = ctx["lr_range"]
        parts.append(f"learning rate {first:.3g} -> {last:.3g}")
    return "; ".join(parts)


def _jsonable(ctx: dict[str, Any]) -> dict[str, Any]:
    """The context with plain JSON values (an entry given by the caller may be anything)."""
    return json.loads(json.dumps(ctx, default=str)) if ctx else {}
