"""Gradient-descent optimizers: ``opt.step(model)`` updates every trainable parameter in place.

Conventions match PyTorch (``torch.optim``), so numbers can be compared one to one:

* The step counter ``t`` starts at 1 for the first update; the learning rate of update ``t`` is
  ``lr`` or ``schedule(t - 1)``.
* Adam's epsilon is added **outside** the square root, after bias correction:
  ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
* ``weight_decay`` in SGD / AdaGrad / RMSprop / Adam is the coupled L2 form (``g += wd * p``);
  AdamW decays decoupled from the gradient (``p *= 1 - lr * wd`` before the Adam step).
* Gradient clipping happens before the update: ``clip_norm`` rescales all gradients together
  when their global L2 norm exceeds it; ``clip_value`` clips each component to [-c, c].
  Both modify the model's gradients in place, so what you inspect is what was applied.
* Decaying slots (momentum, Adam's moments, RMSprop's average) are flushed to zero where their
  magnitude falls below ``2**26`` times the dtype's smallest normal number (about 8e-31 in float32),
  every ``K`` steps with ``K`` short enough that no value can decay from there into the subnormal
  range in between. Why: a parameter whose gradient stays exactly 0 (the weights of a dead ReLU
  unit) has its momentum multiplied by ``beta`` every step and reaches the subnormal range after a
  few hundred steps, and arithmetic on subnormal numbers is 10-100x slower on many x86 CPUs (the
  whole optimizer step slowed down threefold on workload A of the benchmark). The effect on an
  update is below ``lr * 1e-22``; frameworks that flush subnormals in hardware (JAX / XLA set the
  CPU's flush-to-zero mode) differ from the written formula by the same kind of amount.

Two implementations of every update rule, which give the same numbers up to rounding
(tests/test_fast_optimizers.py), share the bookkeeping above (clipping, coupled weight decay, the
step counter and learning-rate schedule, flushing):

* ``opt.step(model)``, the **fast** path ``fit`` runs: a ``Sequential`` keeps all parameters (and
  gradients) in one flat buffer with each layer's arrays as views into it, and the optimizer's
  slots (momentum, moments) are flat too, so ``_fast_update`` is a handful of vectorised, in-place
  NumPy operations on one vector whatever the number of layers, with the algebra folded to save
  passes (Adam's bias corrections). When numba is there and the problem is large enough to repay
  compiling (:mod:`lucidnet.kernels`), ``_kernel_update`` runs instead: the whole step, clipping,
  weight decay and flushing included, in one compiled loop over the flat vectors.
* ``opt.textbook_step(model)``, the **textbook** path: ``update(param, grad, slots, lr, t)`` on
  each parameter array in turn, written as the class docstring's formulas. The arrays are views
  of the same flat buffers, so both paths read and advance one state.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from . import kernels as _kernels
from . import schedules as _schedules
from ._validation import check_float, describe
from .base import empty_aligned
from .registry import Registry

OPTIMIZERS = Registry("optimizer")

#: a model's parameter layout, ``[(name, offset, size, shape)]`` (``Sequential.flat_parameters``).
_Layout = list[tuple[str, int, int, tuple[int, ...]]]


class Parametrised(Protocol):
    """What an optimizer needs of a model (``Sequential`` has it): every parameter and gradient
    as two flat vectors and their layout. A protocol, so that this module, below the model,
    never imports it."""

    def flat_parameters(self) -> tuple[np.ndarray, np.ndarray, _Layout]: ...


class Optimizer:
    """Base class.

    Args:
        lr: learning rate (a positive float) or a :class:`~lucidnet.schedules.Schedule`.
        weight_decay: coupled L2 weight decay (added to the gradient).
        clip_norm: maximum global L2 norm of the gradients (``None``: no clipping).
        clip_value: maximum absolute value of each gradient component (``None``: no clipping).
    """

    #: names of the per-parameter slots (e.g. Adam's ``("m", "v")``).
    slot_names: tuple[str, ...] = ()

    def __init__(
        self,
        lr: float | _schedules.Schedule = 0.01,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        if isinstance(lr, _schedules.Schedule):
            self.lr: float | _schedules.Schedule = lr
        else:
            self.lr = check_float(lr, "lr", low=0.0, low_inclusive=False)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0.0)
        self.clip_norm = (
            None
            if clip_norm is None
            else check_float(clip_norm, "clip_norm", low=0.0, low_inclusive=False)
        )
        self.clip_value = (
            None
            if clip_value is None
            else check_float(clip_value, "clip_value", low=0.0, low_inclusive=False)
        )
        self.iterations = 0
        self.steps_per_epoch = 1
        self.slots: dict[str, np.ndarray] = {}
        self._layout: _Layout | None = None
        self._layout_seen: _Layout | None = None  # the layout list last checked against _layout
        self._flush_periods: dict[str, int] = {}
        self._gate: _kernels.Gate | None = None  # when to run the compiled kernel (first step)
        self._tiny: Any = 0.0  # the flush threshold in the parameters' dtype
        # scratch space as large as the flat parameters, made by _init_slots on the first step
        # (_layout is None until then); an empty placeholder rather than None, so that the hot
        # path needs no None check
        self._buf: np.ndarray = np.empty(0)
        self._last_step: dict[str, float] = {}
        self._norm_owed: np.ndarray | None = None  # the gradients whose norm last_step owes

    @property
    def last_step(self) -> dict[str, float]:
        """What the last update did: ``{"lr": its learning rate, "grad_norm": the gradients'
        global L2 norm before clipping}`` (for diagnostics).

        The norm is a pass over every gradient, which an update without clipping or coupled
        weight decay does not need (3% of an MNIST-sized epoch): it is then computed when
        ``last_step`` is first read, from the gradients the update left in place. ``fit``
        settles it before anything else can overwrite them (before per-batch callbacks, at the
        end of every epoch); read it, or call :meth:`settle`, before the next backward pass
        when driving updates yourself."""
        self.settle()
        return self._last_step

    @last_step.setter
    def last_step(self, value: dict[str, float]) -> None:
        self._last_step, self._norm_owed = dict(value), None

    def settle(self) -> None:
        """Compute now what ``last_step`` still owes (the last update's gradient norm), before
        the gradients it is computed from change."""
        if self._norm_owed is not None:
            self._last_step["grad_norm"] = self._gradient_norm(self._norm_owed)
            self._norm_owed = None

    # -- learning rate --------------------------------------------------------------------------
    @property
    def current_lr(self) -> float:
        """The learning rate the next update will use."""
        return self._lr_at(self.iterations)

    # -- the update: shared bookkeeping ---------------------------------------------------------
    def _begin_step(
        self, model: Parametrised, caller: str
    ) -> tuple[np.ndarray, np.ndarray, _Layout, float, int]:
        """The bookkeeping both paths do before an update: slots for ``model``'s parameters,
        gradient clipping, this update's learning rate and step counter, coupled weight decay.

        Returns:
            ``(p, g, layout, lr, t)``: the model's flat parameters and (clipped, decayed)
            gradients, their layout ``[(name, offset, size, shape)]``, the learning rate and the
            step number ``t`` (1 for the first update).
        """
        p, g, layout = self._parameters(model, caller)
        lr, t = self._prepare_gradients(p, g)
        return p, g, layout, lr, t

    def _prepare_gradients(self, p: np.ndarray, g: np.ndarray) -> tuple[float, int]:
        """Advance the step counter, then clip the flat gradient ``g`` and add the coupled
        weight decay, in place; return the learning rate and the step number."""
        norm, lr, t = self._advance(g)
        if self.clip_norm is not None and norm > self.clip_norm:
            g *= self.clip_norm / norm
        if self.clip_value is not None:
            np.clip(g, -self.clip_value, self.clip_value, out=g)
        if self.weight_decay and self.coupled_decay:
            np.multiply(p, self.weight_decay, out=self._buf)
            g += self._buf  # g <- g + wd * p
        return lr, t

    def _parameters(
        self, model: Parametrised, caller: str
    ) -> tuple[np.ndarray, np.ndarray, _Layout]:
        """``model``'s flat parameters, gradients and layout, with slots made for them."""
        if not hasattr(model, "flat_parameters"):
            raise TypeError(f"{caller} expects a lucidnet Sequential model, got {describe(model)}")
        p, g, layout = model.flat_parameters()
        if layout is not self._layout_seen or self._buf.dtype != p.dtype:  # not every step
            self._ensure_slots(p, layout)
        return p, g, layout

    def _advance(self, g: np.ndarray) -> tuple[float, float, int]:
        """Start an update: the gradients' global norm before clipping, this update's learning
        rate and step number (the counter advances), recorded in ``last_step``. The norm is
        computed now only when the update needs it (``clip_norm``) or will change ``g`` (the
        clipping and the coupled weight decay write the applied gradient back); otherwise it
        is NaN here and ``last_step`` computes it when read."""
        lr = self.current_lr
        self.iterations += 1
        if (
            self.clip_norm is None
            and self.clip_value is None
            and not (self.weight_decay and self.coupled_decay)
        ):
            self._last_step, self._norm_owed = {"lr": lr}, g
            return math.nan, lr, self.iterations
        norm = self._gradient_norm(g)
        self.last_step = {"lr": lr, "grad_norm": norm}
        return norm, lr, self.iterations

    def _ensure_slots(self, p: np.ndarray, layout: _Layout) -> None:
        """Make the slots on first use; refuse a model whose parameters differ from the first's."""
        if self._layout is None or self._buf.dtype != p.dtype:
            self._init_slots(p, layout)
        elif layout is not self._layout_seen:  # checked once per layout list
            if [entry[:3] for entry in layout] != [entry[:3] for entry in self._layout]:
                raise ValueError(
                    "this optimizer was used with a model of different parameters; create a new "
                    "optimizer for each model"
                )
            self._layout_seen = layout

    @staticmethod
    def _gradient_norm(g: np.ndarray) -> float:
        """The global L2 norm of the flat gradient ``g``."""
        # np.vdot: BLAS dot without NumPy's floating-point error check, so an overflow (handled
        # just below) neither warns nor raises, and without an np.errstate block every step
        sq = float(np.vdot(g, g))
        if not math.isfinite(sq) and g.dtype != np.float64:
            # in float32, g . g overflows to inf for |g| ~ 1e19 and clipping would then multiply
            # the gradient by clip_norm / inf = 0 instead of rescaling it: redo it in float64
            # (only then: the float64 copy would cost more than the whole update every step)
            g64 = g.astype(np.float64)
            sq = float(np.dot(g64, g64))
        return math.sqrt(sq)

    def _end_step(self) -> None:
        """The bookkeeping both paths do after an update: flush decaying slots (module notes)."""
        for name, period in self._flush_periods.items():
            if self.iterations % period == 0:
                _flush_subnormal(self.slots[name], self._buf)

    # -- the update: the two paths --------------------------------------------------------------
    def step(self, model: Parametrised) -> None:
        """The fast path: one update of every trainable parameter of ``model`` from its
        ``grads``, on the flat buffers at once: the compiled kernel (``_kernel_update``) when
        :mod:`lucidnet.kernels` says it pays, else ``_fast_update`` (NumPy)."""
        p, g, _ = self._parameters(model, "opt.step")
        if self._gate is not None and self._gate.ready(p.size):
            norm, lr, t = self._advance(g)
            scale = 1.0
            if self.clip_norm is not None and norm > self.clip_norm:
                scale = self.clip_norm / norm
            wd = self.weight_decay if self.coupled_decay else 0.0
            terms = _kernels.gradient_terms(p.dtype, scale, self.clip_value, wd)
            self._kernel_update(p, g, lr, t, terms)  # flushes the slots as it writes them
            return
        lr, t = self._prepare_gradients(p, g)
        self._fast_update(p, g, lr, t)
        self._end_step()

    def textbook_step(self, model: Parametrised) -> None:
        """The textbook path: the same update as ``step``, computed by ``update`` one parameter
        array at a time as the class docstring writes it. ``param``, ``grad`` and the slots are
        views of the model's flat buffers and of this optimizer's flat slots, so the state is
        the one ``step`` reads and writes (mixing the paths, or inspecting the slots, is fine)."""
        p, g, layout, lr, t = self._begin_step(model, "opt.textbook_step")
        for _, offset, size, shape in layout:
            part = slice(offset, offset + size)
            slots = {name: flat[part].reshape(shape) for name, flat in self.slots.items()}
            self.update(p[part].reshape(shape), g[part].reshape(shape), slots, lr, t)
        self._end_step()

    def update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], lr: float, t: int
    ) -> None:
        """The textbook update of one parameter array, in place.

        Args:
            param: the parameter array (updated in place).
            grad: its gradient, after clipping and coupled weight decay.
            slots: ``{slot name: array shaped like param}`` (updated in place).
            lr: this update's learning rate.
            t: the step number, 1 for the first update.
        """
        raise NotImplementedError

    def _fast_update(self, p: np.ndarray, g: np.ndarray, lr: float, t: int) -> None:
        """The fast update of the flat parameter vector ``p`` from the flat gradient ``g``, on
        the flat slots, in place (``self._buf`` is scratch space of the same size)."""
        raise NotImplementedError

    def _kernel_update(
        self, p: np.ndarray, g: np.ndarray, lr: float, t: int, terms: tuple[Any, Any, Any]
    ) -> None:
        """The fast update as one compiled kernel (:mod:`lucidnet.kernels`): ``terms`` are
        ``(clip_norm scale, clip_value, coupled weight decay)`` in the parameters' dtype, which
        the kernel applies to the gradient (and writes back) before the update. An optimizer
        without a kernel leaves ``kernel_name`` empty and ``step`` runs ``_fast_update``."""
        raise NotImplementedError

    #: the kernel ``_kernel_update`` runs ("" for none: the NumPy fast path always).
    kernel_name = ""

    def _kernel(self) -> str:
        """The kernel this instance's options need (``kernel_name`` unless they change it)."""
        return self.kernel_name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a subclass that changes the update but not the kernel would otherwise run its parent's
        # kernel, not its own arithmetic: it gets the NumPy fast path (or its textbook update)
        own = cls.__dict__
        if ("update" in own or "_fast_update" in own) and "_kernel_update" not in own:
            cls.kernel_name = ""

    def _decays(self) -> dict[str, float]:
        """{slot name: factor it is multiplied by every step} for slots that decay toward 0."""
        return {}

    #: whether ``weight_decay`` is added to the gradient (False for AdamW).
    coupled_decay = True

    def _init_slots(self, p: np.ndarray, layout: _Layout) -> None:
        self._layout = list(layout)
        self._layout_seen = layout
        self.slots = {name: empty_aligned(p.shape, p.dtype, zero=True) for name in self.slot_names}
        self._buf = empty_aligned(p.shape, p.dtype)
        self._flush_periods = {
            name: _flush_period(factor)
            for name, factor in self._decays().items()
            if name in self.slots and factor > 0.0
        }
        self._tiny = _kernels.flush_threshold(p.dtype, _FLUSH_MARGIN)
        self._gate = _kernels.Gate("optimizer", self._kernel()) if self.kernel_name else None

    # -- the fused epoch (lucidnet.fused): one compiled call runs an epoch's updates -------------
    def fused_form(self) -> int | None:
        """Which update the fused epoch kernel runs for this optimizer (0 Adam / AdamW, 1 SGD,
        2 SGD with momentum), or ``None`` where it has none: other optimizers, subclasses
        (their own arithmetic), ``clip_norm`` (a norm over all gradients before the update)."""
        return None

    def fused_vectors(self, model: Parametrised) -> tuple[np.ndarray, ...]:
        """``(p, g, slot 1, slot 2)``: the model's flat parameters and gradients and the
        slots the fused update writes (empty where unused), made now if need be."""
        p, g, _ = self._parameters(model, "fit")
        slots = [self.slots[name] for name in self.slot_names]
        empty = np.empty(0, p.dtype)
        return (p, g, *slots, empty, empty)[:4]

    def fused_schedule(
        self, steps: int, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray, bool, list[float]]:
        """The next ``steps`` updates' scalars for the fused kernel, rounded to ``dtype`` as
        the step path's kernel rounds them: ``(per step (steps, 3), constants, nesterov,
        learning rates)``; constants = (b1, 1 - b1, b2, 1 - b2, momentum, clip_value, coupled
        weight decay, flush threshold, 1, 0)."""
        lrs = [self._lr_at(self.iterations + s) for s in range(steps)]
        per_step = np.zeros((steps, 3), dtype)
        per_step[:, 0] = lrs
        return per_step, self._fused_constants(dtype), False, lrs

    def _lr_at(self, iteration: int) -> float:
        if isinstance(self.lr, _schedules.Schedule):
            return self.lr(iteration, self.steps_per_epoch)
        return float(self.lr)

    def _fused_constants(
        self, dtype: np.dtype, b1: float = 0.0, b2: float = 0.0, mu: float = 0.0
    ) -> np.ndarray:
        wd = self.weight_decay if self.coupled_decay else 0.0
        _, clip, wd = _kernels.gradient_terms(dtype, 1.0, self.clip_value, wd)
        return np.array([b1, 1.0 - b1, b2, 1.0 - b2, mu, clip, wd, self._tiny, 1.0, 0.0], dtype)

    def fused_done(self, steps: int, lr: float, grad_norm: float) -> None:
        """Account for ``steps`` updates the fused kernel made: the step counter, and
        ``last_step`` as the step path leaves it (the last update's lr and gradient norm)."""
        self.iterations += steps
        self.last_step = {"lr": lr, "grad_norm": grad_norm}

    # -- state ----------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        lr: float | dict[str, Any]
        if isinstance(self.lr, _schedules.Schedule):
            lr = {"class": type(self.lr).__name__, **self.lr.get_config()}
        else:
            lr = self.lr
        return {
            "lr": lr,
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
            "clip_value": self.clip_value,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        config = dict(config)
        if isinstance(config.get("lr"), dict):
            config["lr"] = _schedules.from_config(config["lr"])
        return cls(**config)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: config, step counter and per-parameter slots
        (``{"slots": {slot: {param_name: array}}}``, arrays are copies)."""
        slots: dict[str, dict[str, np.ndarray]] = {}
        if self._layout is not None:
            for slot, flat in self.slots.items():
                slots[slot] = {
                    name: flat[off : off + size].reshape(shape).copy()
                    for name, off, size, shape in self._layout
                }
        return {
            "class": type(self).__name__,
            "config": self.get_config(),
            "iterations": self.iterations,
            "slots": slots,
        }

    def load_state_dict(self, state: dict[str, Any], model: Parametrised) -> None:
        """Restore slots saved by ``state_dict`` for ``model``'s parameters."""
        if state.get("class") != type(self).__name__:
            raise ValueError(
                f"optimizer state is for {state.get('class')!r}, cannot load into "
                f"{type(self).__name__}"
            )
        p, _, layout = model.flat_parameters()
        self._init_slots(p, layout)
        self.iterations = int(state.get("iterations", 0))
        for slot, arrays in state.get("slots", {}).items():
            if slot not in self.slots:
                raise ValueError(f"unknown optimizer slot {slot!r} for {type(self).__name__}")
            for name, off, size, shape in layout:
                if name not in arrays:
                    raise ValueError(f"optimizer state lacks slot {slot!r} for parameter {name!r}")
                arr = np.asarray(arrays[name])
                if arr.shape != tuple(shape):
                    raise ValueError(
                        f"optimizer slot {slot}/{name} has shape {arr.shape}, expected {shape}"
                    )
                self.slots[slot][off : off + size] = arr.ravel()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """(Mini-batch) stochastic gradient descent, with optional momentum and Nesterov momentum.

    Plain:     p <- p - lr * g
    Momentum:  b <- mu * b + g;   p <- p - lr * b
    Nesterov:  b <- mu * b + g;   p <- p - lr * (g + mu * b)
    (PyTorch's formulation with dampening 0; b starts at 0.)
    """

    def __init__(
        self,
        lr: float | _schedules.Schedule = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.momentum = check_float(momentum, "momentum", low=0.0, high=1.0, high_inclusive=False)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True requires momentum > 0, got momentum=0.0")
        self.slot_names = ("momentum",) if self.momentum else ()

    def update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], lr: float, t: int
    ) -> None:
        if not self.momentum:
            param -= lr * grad  # p <- p - lr g
            return
        b = slots["momentum"]
        b[...] = self.momentum * b + grad  # b <- mu b + g
        if self.nesterov:
            param -= lr * (grad + self.momentum * b)  # p <- p - lr (g + mu b)
        else:
            param -= lr * b  # p <- p - lr b

    def _fast_update(self, p: np.ndarray, g: np.ndarray, lr: float, t: int) -> None:
        if not self.momentum:
            np.multiply(g, lr, out=self._buf)
            p -= self._buf
            return
        b = self.slots["momentum"]
        b *= self.momentum
        b += g
        if self.nesterov:
            np.multiply(b, self.momentum, out=self._buf)
            self._buf += g
            self._buf *= lr
        else:
            np.multiply(b, lr, out=self._buf)
        p -= self._buf

    kernel_name = "sgd"

    def _kernel(self) -> str:
        return "sgd_momentum" if self.momentum else "sgd"

    def _kernel_update(
        self, p: np.ndarray, g: np.ndarray, lr: float, t: int, terms: tuple[Any, Any, Any]
    ) -> None:
        c = p.dtype.type
        if not self.momentum:
            _kernels.kernel("sgd", p.size)(p, g, c(lr), *terms)
            return
        b, mu = self.slots["momentum"], c(self.momentum)
        _kernels.kernel("sgd_momentum", p.size)(
            p, g, b, c(lr), mu, self.nesterov, *terms, self._tiny
        )

    def _decays(self) -> dict[str, float]:
        return {"momentum": self.momentum}

    def fused_form(self) -> int | None:
        if type(self) is not SGD or self.clip_norm is not None:
            return None
        return 2 if self.momentum else 1

    def fused_schedule(
        self, steps: int, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray, bool, list[float]]:
        per_step, _, _, lrs = super().fused_schedule(steps, dtype)
        return per_step, self._fused_constants(dtype, mu=self.momentum), self.nesterov, lrs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@OPTIMIZERS.register("adagrad")
class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al., 2011):  s <- s + g^2;  p <- p - lr * g / (sqrt(s) + eps)."""

    slot_names = ("sum_sq",)

    def __init__(
        self,
        lr: float | _schedules.Schedule = 0.01,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.eps = check_float(eps, "eps", low=0.0, low_inclusive=False)

    def update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], lr: float, t: int
    ) -> None:
        s = slots["sum_sq"]
        s[...] = s + grad**2  # s <- s + g^2
        param -= lr * grad / (np.sqrt(s) + self.eps)  # p <- p - lr g / (sqrt(s) + eps)

    def _fast_update(self, p: np.ndarray, g: np.ndarray, lr: float, t: int) -> None:
        s, buf = self.slots["sum_sq"], self._buf
        np.multiply(g, g, out=buf)
        s += buf
        np.sqrt(s, out=buf)
        buf += self.eps
        np.divide(g, buf, out=buf)
        buf *= lr
        p -= buf

    kernel_name = "adagrad"

    def _kernel_update(
        self, p: np.ndarray, g: np.ndarray, lr: float, t: int, terms: tuple[Any, Any, Any]
    ) -> None:
        c = p.dtype.type
        _kernels.kernel("adagrad", p.size)(p, g, self.slots["sum_sq"], c(lr), c(self.eps), *terms)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012), PyTorch's form.

    v <- rho * v + (1 - rho) * g^2
    without momentum: p <- p - lr * g / (sqrt(v) + eps)
    with momentum mu:  b <- mu * b + g / (sqrt(v) + eps);  p <- p - lr * b
    (``rho`` is PyTorch's ``alpha``, default 0.99.)
    """

    def __init__(
        self,
        lr: float | _schedules.Schedule = 0.001,
        rho: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.rho = check_float(rho, "rho", low=0.0, high=1.0, high_inclusive=False)
        self.eps = check_float(eps, "eps", low=0.0, low_inclusive=False)
        self.momentum = check_float(momentum, "momentum", low=0.0, high=1.0, high_inclusive=False)
        self.slot_names = ("sq_avg", "momentum") if self.momentum else ("sq_avg",)

    def update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], lr: float, t: int
    ) -> None:
        v = slots["sq_avg"]
        v[...] = self.rho * v + (1.0 - self.rho) * grad**2  # v <- rho v + (1 - rho) g^2
        scaled = grad / (np.sqrt(v) + self.eps)  # g / (sqrt(v) + eps)
        if self.momentum:
            b = slots["momentum"]
            b[...] = self.momentum * b + scaled  # b <- mu b + g / (sqrt(v) + eps)
            param -= lr * b  # p <- p - lr b
        else:
            param -= lr * scaled  # p <- p - lr g / (sqrt(v) + eps)

    def _fast_update(self, p: np.ndarray, g: np.ndarray, lr: float, t: int) -> None:
        v, buf = self.slots["sq_avg"], self._buf
        v *= self.rho
        np.multiply(g, g, out=buf)
        buf *= 1.0 - self.rho
        v += buf
        np.sqrt(v, out=buf)
        buf += self.eps
        np.divide(g, buf, out=buf)
        if self.momentum:
            b = self.slots["momentum"]
            b *= self.momentum
            b += buf
            np.multiply(b, lr, out=buf)
        else:
            buf *= lr
        p -= buf

    kernel_name = "rmsprop"

    def _kernel_update(
        self, p: np.ndarray, g: np.ndarray, lr: float, t: int, terms: tuple[Any, Any, Any]
    ) -> None:
        c = p.dtype.type
        # without momentum the kernel gets an empty momentum array (one compiled version)
        b = self.slots["momentum"] if self.momentum else np.empty(0, p.dtype)
        _kernels.kernel("rmsprop", p.size)(
            p, g, self.slots["sq_avg"], b, c(lr), c(self.rho), c(1.0 - self.rho), c(self.eps),
            c(self.momentum), *terms, self._tiny,
        )  # fmt: skip

    def _decays(self) -> dict[str, float]:
        return {"sq_avg": self.rho, "momentum": self.momentum}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "eps": self.eps, "momentum": self.momentum}


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), PyTorch's form (epsilon outside the square root):

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    slot_names = ("m", "v")

    def __init__(
        self,
        lr: float | _schedules.Schedule = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.beta1 = check_float(beta1, "beta1", low=0.0, high=1.0, high_inclusive=False)
        self.beta2 = check_float(beta2, "beta2", low=0.0, high=1.0, high_inclusive=False)
        self.eps = check_float(eps, "eps", low=0.0, low_inclusive=False)

    def update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], lr: float, t: int
    ) -> None:
        m, v = slots["m"], slots["v"]
        b1, b2 = self.beta1, self.beta2
        m[...] = b1 * m + (1.0 - b1) * grad  # m <- b1 m + (1 - b1) g
        v[...] = b2 * v + (1.0 - b2) * grad**2  # v <- b2 v + (1 - b2) g^2
        m_hat = m / (1.0 - b1**t)  # bias corrections
        v_hat = v / (1.0 - b2**t)
        param -= lr * m_hat / (np.sqrt(v_hat) + self.eps)  # eps outside the square root

    def _fast_update(self, p: np.ndarray, g: np.ndarray, lr: float, t: int) -> None:
        m, v, buf = self.slots["m"], self.slots["v"], self._buf
        b1, b2 = self.beta1, self.beta2
        np.multiply(g, 1.0 - b1, out=buf)  # (1 - b1) g
        m *= b1
        m += buf
        # (1 - b2) g^2 from (1 - b1) g, squared in place: this pass reads only the buffer just
        # written (in cache) instead of the gradient again (~10% less time for the whole update)
        np.multiply(buf, buf, out=buf)
        buf *= (1.0 - b2) / (1.0 - b1) ** 2
        v *= b2
        v += buf
        bc1 = 1.0 - b1**t
        bc2 = 1.0 - b2**t
        # lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), with sqrt(bc2) moved out of the
        # denominator (one pass over the parameters fewer, same value):
        # = (lr sqrt(bc2) / bc1) * m / (sqrt(v) + eps sqrt(bc2))
        np.sqrt(v, out=buf)
        buf += self.eps * math.sqrt(bc2)
        np.divide(m, buf, out=buf)
        buf *= lr * math.sqrt(bc2) / bc1
        p -= buf

    kernel_name = "adam"

    def _kernel_update(
        self, p: np.ndarray, g: np.ndarray, lr: float, t: int, terms: tuple[Any, Any, Any]
    ) -> None:
        self._adam_kernel(p, g, lr, t, terms, decay=1.0)

    def _adam_kernel(
        self,
        p: np.ndarray,
        g: np.ndarray,
        lr: float,
        t: int,
        terms: tuple[Any, Any, Any],
        decay: float,
    ) -> None:
        """The Adam kernel, ``p`` first multiplied by ``decay`` (AdamW's 1 - lr wd)."""
        c, b1, b2 = p.dtype.type, self.beta1, self.beta2
        step_size, eps_hat = self._folded(lr, t)
        _kernels.kernel("adam", p.size)(
            p, g, self.slots["m"], self.slots["v"], c(b1), c(1.0 - b1), c(b2), c(1.0 - b2),
            c(step_size), c(eps_hat), c(decay), *terms, self._tiny,
        )  # fmt: skip

    def _folded(self, lr: float, t: int) -> tuple[float, float]:
        """Step ``t``'s bias corrections folded into the step size and epsilon (see _adam):
        ``(lr sqrt(1 - b2^t) / (1 - b1^t), eps sqrt(1 - b2^t))``."""
        bc1, bc2 = 1.0 - self.beta1**t, 1.0 - self.beta2**t
        return lr * math.sqrt(bc2) / bc1, self.eps * math.sqrt(bc2)

    def _decays(self) -> dict[str, float]:
        return {"m": self.beta1, "v": self.beta2}

    def fused_form(self) -> int | None:
        if type(self) not in (Adam, AdamW) or self.clip_norm is not None:
            return None
        return 0

    def fused_schedule(
        self, steps: int, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray, bool, list[float]]:
        """Per step: the step size and eps_hat of ``_adam_kernel`` (bias corrections folded)
        and AdamW's decay 1 - lr wd (1 for Adam)."""
        per_step, _, _, lrs = super().fused_schedule(steps, dtype)
        decoupled = 0.0 if self.coupled_decay else self.weight_decay
        for s, lr in enumerate(lrs):
            per_step[s] = (*self._folded(lr, self.iterations + s + 1), 1.0 - lr * decoupled)
        constants = self._fused_constants(dtype, b1=self.beta1, b2=self.beta2)
        return per_step, constants, False, lrs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), PyTorch's form:

    p <- p * (1 - lr * wd), then the Adam update. Decay applies to every parameter.
    """

    coupled_decay = False

    def __init__(
        self,
        lr: float | _schedules.Schedule = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm, clip_value)

    def update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], lr: float, t: int
    ) -> None:
        if self.weight_decay:
            param *= 1.0 - lr * self.weight_decay  # p <- p (1 - lr wd), decoupled from g
        super().update(param, grad, slots, lr, t)

    def _fast_update(self, p: np.ndarray, g: np.ndarray, lr: float, t: int) -> None:
        if self.weight_decay:
            p *= 1.0 - lr * self.weight_decay
        super()._fast_update(p, g, lr, t)

    def _kernel_update(
        self, p: np.ndarray, g: np.ndarray, lr: float, t: int, terms: tuple[Any, Any, Any]
    ) -> None:
        self._adam_kernel(p, g, lr, t, terms, decay=1.0 - lr * self.weight_decay)


#: slots are flushed below this multiple of the dtype's smallest normal number.
_FLUSH_MARGIN = 2.0**26


def _flush_period(factor: float) -> int:
    """Steps between flushes of a slot multiplied by ``factor`` (0 < factor < 1) every step:
    a value just above the threshold stays normal for that many steps."""
    return max(1, min(10_000, int(math.log(_FLUSH_MARGIN) / -math.log(factor))))


def _flush_subnormal(slot: np.ndarray, buf: np.ndarray) -> None:
    """Set entries of ``slot`` with magnitude below the flush threshold to exactly 0."""
    threshold = np.finfo(slot.dtype).tiny * _FLUSH_MARGIN
    np.abs(slot, out=buf)
    # buf < threshold as a boolean mask without a second float temporary
    np.putmask(slot, buf < threshold, 0.0)


def get(optimizer: str | Optimizer, **kwargs: Any) -> Optimizer:
    """Resolve an optimizer name (``"adam"``, ``"sgd"``, ...; kwargs go to the constructor) or
    instance. ``"momentum"`` and ``"nesterov"`` are SGD with momentum 0.9 (plus Nesterov)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in ("momentum", "nesterov"):
        kwargs.setdefault("momentum", 0.9)
        return SGD(nesterov=optimizer.lower() == "nesterov", **kwargs)
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {describe(optimizer)}")
    return OPTIMIZERS.lookup(optimizer)(**kwargs)


def from_state(state: dict[str, Any]) -> Optimizer:
    """Build an optimizer from ``state_dict()["class"]`` and ``["config"]`` (slots not loaded)."""
    classes = {}
    for key in OPTIMIZERS.names():
        cls = OPTIMIZERS.lookup(key)
        classes[cls.__name__] = cls
    name = state.get("class")
    if name not in classes:
        raise ValueError(f"unknown optimizer class {name!r}; valid: {', '.join(classes)}")
    return classes[name].from_config(state.get("config", {}))
