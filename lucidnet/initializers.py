"""Weight initialisers.

He initialisation keeps the variance of ReLU-family activations constant through depth
(He et al., 2015); Glorot (Xavier) does the same for symmetric activations such as tanh and
sigmoid (Glorot & Bengio, 2010). Every initialiser takes an explicit ``np.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

from .registry import Registry

INITIALIZERS = Registry("initializer")


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
    return fan_in, shape[-1]


@INITIALIZERS.register("he_normal")
def he_normal(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """N(0, 2 / fan_in)."""
    fan_in, _ = _fans(shape)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


@INITIALIZERS.register("he_uniform")
def he_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))."""
    fan_in, _ = _fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape).astype(dtype)


@INITIALIZERS.register("glorot_uniform", "xavier_uniform", "xavier")
def glorot_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """U(-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out)))."""
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


@INITIALIZERS.register("glorot_normal", "xavier_normal")
def glorot_normal(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


@INITIALIZERS.register("normal")
def normal(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """N(0, 0.05^2), Keras' RandomNormal default; used for embeddings."""
    return (rng.standard_normal(shape) * 0.05).astype(dtype)


@INITIALIZERS.register("zeros")
def zeros(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """All zeros (biases)."""
    return np.zeros(shape, dtype=dtype)


#: what an initialiser is: ``init(shape, rng, dtype) -> array of that shape``.
Initializer = Callable[[tuple[int, ...], np.random.Generator, DTypeLike], np.ndarray]


def get(name: str) -> Initializer:
    """The initialiser function called ``name``."""
    return INITIALIZERS.lookup(name)
