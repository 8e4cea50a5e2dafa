"""Argument checking shared by every module.

Every error raised here names the argument, what was expected and what was received, so that a
user mistake is explained where it is made rather than deep inside NumPy.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

_FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages (type, and shape/dtype for arrays)."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Resolve ``"float32"``/``"float64"`` (or the NumPy types) to a ``np.dtype``."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64', got {describe(dtype)}")
    return resolved


def check_positive_int(value: Any, name: str, *, allow_none: bool = False, minimum: int = 1) -> Any:
    """Check that ``value`` is an integer >= ``minimum`` (bools are rejected)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer >= {minimum}"
            + (" or None" if allow_none else "")
            + f", got {describe(value)}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that ``value`` is a finite real number inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    value = float(value)
    lo = "[" if low_inclusive else "("
    hi = "]" if high_inclusive else ")"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = not np.isfinite(value)
    if low is not None:
        bad |= value < low if low_inclusive else value <= low
    if high is not None:
        bad |= value > high if high_inclusive else value >= high
    if bad:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def check_array(
    x: Any,
    name: str,
    *,
    dtype: DTypeLike | None = None,
    min_ndim: int = 1,
    max_ndim: int | None = None,
    allow_nan: bool = False,
    integer: bool = False,
) -> np.ndarray:
    """Convert ``x`` to a NumPy array and validate it.

    Args:
        x: array-like input.
        name: the argument's name, used in error messages.
        dtype: float dtype to cast to (ignored when ``integer`` is true).
        min_ndim / max_ndim: allowed number of dimensions.
        allow_nan: whether NaN / inf are accepted.
        integer: require integer values (for class labels and token ids).

    Raises:
        TypeError: for strings, objects and other non-numeric input.
        ValueError: for empty arrays, wrong rank, or NaN/inf.
    """
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular numeric array: {exc}") from None
    if arr.dtype.kind in "USO":
        raise TypeError(
            f"{name} must be numeric, got an array of dtype {arr.dtype} "
            f"(encode strings first, e.g. with lucidnet.prep.TabularPreparer)"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim < min_ndim or (max_ndim is not None and arr.ndim > max_ndim):
        expect = f"{min_ndim}" if max_ndim == min_ndim else f">= {min_ndim}"
        if max_ndim is not None and max_ndim != min_ndim:
            expect = f"{min_ndim} to {max_ndim}"
        raise ValueError(f"{name} must have {expect} dimensions, got shape {arr.shape}")
    if arr.size == 0 or (arr.ndim >= 1 and arr.shape[0] == 0):
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if integer:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} must contain integers, got non-integer values")
        return arr.astype(np.int64, copy=False)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if not allow_nan and arr.dtype.kind == "f" and not all_finite(arr):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or infinite values (first at index "
            f"{tuple(int(i) for i in bad)}); "
            "impute or drop them first"
        )
    return arr


def all_finite(arr: np.ndarray) -> bool:
    """Whether a float array holds no NaN / inf, without a temporary as large as the array.

    NaN and inf propagate through a sum (inf - inf is NaN), so a finite sum proves every value
    finite; only when the sum is not finite (a NaN / inf, or finite values overflowing) are the
    values checked one by one, a block of rows at a time.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(arr, axis=None)):
            return True
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    step = max(1, (1 << 20) // max(1, flat.shape[1]))
    return all(np.isfinite(flat[i : i + step]).all() for i in range(0, flat.shape[0], step))


def check_same_length(x: np.ndarray, y: np.ndarray, x_name: str = "X", y_name: str = "y") -> None:
    """Check that two arrays have the same number of samples (first axis)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same number of samples, got {x.shape[0]} "
            f"({x_name} shape {x.shape}) and {y.shape[0]} ({y_name} shape {y.shape})"
        )


def check_one_of(value: Any, name: str, options: tuple[Any, ...]) -> Any:
    """Check that ``value`` is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {describe(value)}")
    return value


def json_kind(value: Any) -> str:
    """What a JSON value is, for error messages, without printing a possibly huge value."""
    if isinstance(value, (list, dict)):
        return f"{'a list' if isinstance(value, list) else 'an object'} of {len(value)} entries"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)
