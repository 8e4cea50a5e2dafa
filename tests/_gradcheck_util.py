"""Central finite-difference gradient checking shared by the core's tests.

Everything runs in float64: with a step of 1e-6 the central difference has a truncation error of
order eps^2 ~ 1e-12 and a round-off error of order 1e-16 / eps ~ 1e-10, so a correct analytic
gradient agrees to a relative error far below the 1e-6 threshold the tests use, while any
mistake in a backward pass (a missing term, a wrong sign, a transposed matrix) gives errors of
order 1e-2 to 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import lucidnet as ln

EPS = 1e-6
TOL = 1e-6


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n|| / max(||a|| + ||n||, 1e-12): scale-free, and 0 when both are exactly 0."""
    a = np.asarray(analytic, dtype=np.float64).ravel()
    n = np.asarray(numeric, dtype=np.float64).ravel()
    denom = max(np.linalg.norm(a) + np.linalg.norm(n), 1e-12)
    return float(np.linalg.norm(a - n) / denom)


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f() / d x by central differences, perturbing ``x`` in place (and restoring it)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + eps
        f_plus = f()
        x[idx] = old - eps
        f_minus = f()
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def check_model_gradients(
    model: ln.Sequential,
    x: np.ndarray,
    y: np.ndarray | None = None,
    loss: ln.Loss | None = None,
    *,
    include_penalty: bool = False,
    check_input: bool = True,
    seed: int = 0,
    tol: float = TOL,
) -> dict[str, float]:
    """Compare ``model.backward`` with finite differences for every parameter and the input.

    The scalar objective is ``loss(model.forward(x, training=True), y)`` when a loss is given,
    otherwise ``sum(R * output)`` for a fixed random ``R`` (so dL/d(output) = R exercises every
    output unit with a different weight). ``include_penalty`` adds ``model.penalty()``.

    Returns:
        The relative error per checked array (``"input"`` and ``"layer/key"``), after asserting
        that each is below ``tol``.
    """
    assert model.dtype == np.float64, "gradient checks need a float64 model"
    out = model.forward(x, training=True)
    if loss is None:
        proj = np.random.default_rng(seed).standard_normal(out.shape)

        def objective_of(output: np.ndarray) -> tuple[float, np.ndarray]:
            return float(np.sum(proj * output)), proj.copy()

    else:

        def objective_of(output: np.ndarray) -> tuple[float, np.ndarray]:
            return loss(output, y)

    def objective() -> float:
        value = objective_of(model.forward(x, training=True))[0]
        return value + (model.penalty() if include_penalty else 0.0)

    # analytic gradients: one forward, one backward
    _, dout = objective_of(model.forward(x, training=True))
    model.zero_grad()
    dx = model.backward(dout)
    analytic = {name: grad.copy() for name, _, grad in model.parameters()}

    errors: dict[str, float] = {}
    for name, param, _ in model.parameters():
        numeric = numerical_gradient(objective, param)
        errors[name] = rel_error(analytic[name], numeric)
        # a gradient that is identically zero would make the check vacuous
        assert np.any(numeric != 0), f"{name}: objective does not depend on this parameter"
    if check_input:
        xf = np.array(x, dtype=np.float64)

        def objective_x() -> float:
            return objective_of(model.forward(xf, training=True))[0]

        numeric_x = numerical_gradient(objective_x, xf)
        errors["input"] = rel_error(dx, numeric_x)
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"gradient check failed (relative errors {bad}, tolerance {tol})"
    return errors


def away_from_zero(
    rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.1, high: float = 2.0
) -> np.ndarray:
    """Random values with |v| in [low, high] and random sign: no kinks of ReLU / |.| nearby."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)
