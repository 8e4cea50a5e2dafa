"""Learning-rate schedules: ``lr = schedule(step, steps_per_epoch)``.

``step`` counts optimizer updates from 0 (the first update uses ``schedule(0)``). With
``unit="epoch"`` the schedule advances once per epoch (``epoch = step // steps_per_epoch``), the
textbook "halve the rate every 10 epochs"; with ``unit="step"`` (default) it advances every update.
Pass a schedule as an optimizer's ``lr``: ``ln.Adam(lr=ln.CosineDecay(1e-3, decay_steps=5000))``.
Reduce-on-plateau is a callback (:class:`lucidnet.callbacks.ReduceLROnPlateau`) because it needs
the validation loss.
"""

from __future__ import annotations

import math
from typing import Any

from ._validation import check_float, check_one_of, check_positive_int, describe
from .registry import Registry

SCHEDULES = Registry("schedule")


class Schedule:
    """Base class: subclasses implement ``value(t)`` for t in the schedule's unit."""

    def __init__(self, lr: float, unit: str = "step") -> None:
        self.lr = check_float(lr, "lr", low=0.0, low_inclusive=False)
        self.unit = check_one_of(unit, "unit", ("step", "epoch"))

    def __call__(self, step: int, steps_per_epoch: int = 1) -> float:
        t = step if self.unit == "step" else step // max(int(steps_per_epoch), 1)
        return float(self.value(t))

    def value(self, t: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "unit": self.unit}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Schedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@SCHEDULES.register("constant")
class Constant(Schedule):
    """lr(t) = lr."""

    def value(self, t: int) -> float:
        return self.lr


@SCHEDULES.register("step", "step_decay")
class StepDecay(Schedule):
    """lr(t) = lr * gamma ** floor(t / step_size)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1, unit: str = "step") -> None:
        super().__init__(lr, unit)
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_float(gamma, "gamma", low=0.0, low_inclusive=False)

    def value(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "step_size": self.step_size, "gamma": self.gamma}


@SCHEDULES.register("exponential", "exponential_decay")
class ExponentialDecay(Schedule):
    """lr(t) = lr * decay_rate ** (t / decay_steps)."""

    def __init__(
        self, lr: float, decay_rate: float, decay_steps: int = 1, unit: str = "step"
    ) -> None:
        super().__init__(lr, unit)
        self.decay_rate = check_float(decay_rate, "decay_rate", low=0.0, low_inclusive=False)
        self.decay_steps = check_positive_int(decay_steps, "decay_steps")

    def value(self, t: int) -> float:
        return self.lr * self.decay_rate ** (t / self.decay_steps)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
        }


@SCHEDULES.register("cosine", "cosine_decay")
class CosineDecay(Schedule):
    """Linear warm-up, then cosine decay (Loshchilov & Hutter, 2017).

    For t < warmup_steps: lr(t) = lr * (t + 1) / warmup_steps.
    Then with u = min(t - warmup_steps, decay_steps) / decay_steps:
    lr(t) = lr * (alpha + (1 - alpha) * 0.5 * (1 + cos(pi u))), ending at ``alpha * lr``.
    """

    def __init__(
        self,
        lr: float,
        decay_steps: int,
        alpha: float = 0.0,
        warmup_steps: int = 0,
        unit: str = "step",
    ) -> None:
        super().__init__(lr, unit)
        self.decay_steps = check_positive_int(decay_steps, "decay_steps")
        self.alpha = check_float(alpha, "alpha", low=0.0, high=1.0)
        self.warmup_steps = check_positive_int(warmup_steps, "warmup_steps", minimum=0)

    def value(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.lr * (t + 1) / self.warmup_steps
        u = min(t - self.warmup_steps, self.decay_steps) / self.decay_steps
        return self.lr * (self.alpha + (1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * u)))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_steps": self.warmup_steps,
        }


def get(schedule: str | Schedule, **kwargs: Any) -> Schedule:
    """Resolve a schedule name (with constructor kwargs) or instance."""
    if isinstance(schedule, Schedule):
        return schedule
    if not isinstance(schedule, str):
        raise TypeError(f"schedule must be a name or a Schedule, got {describe(schedule)}")
    return SCHEDULES.lookup(schedule)(**kwargs)


def from_config(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from ``{"class": name, **config}``."""
    config = dict(config)
    cls = {c.__name__: c for c in (Constant, StepDecay, ExponentialDecay, CosineDecay)}
    name = config.pop("class")
    if name not in cls:
        raise ValueError(f"unknown schedule class {name!r}; valid: {', '.join(cls)}")
    return cls[name].from_config(config)
