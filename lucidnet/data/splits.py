"""Seeded train / validation / test splits of a table's rows, stratified for classification.

scikit-learn is imported inside :func:`train_val_test_split` so that ``import lucidnet`` stays
fast.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_float, check_one_of, check_positive_int
from .columns import infer_task

__all__ = ["Split", "train_val_test_split"]


@dataclass(frozen=True)
class Split:
    """Sorted row indices of a train / validation / test split and how it was made."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    stratified: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Sizes and flags (not the indices), JSON-serialisable."""
        sizes = {k: len(getattr(self, k)) for k in ("train", "val", "test")}
        return {**sizes, "stratified": self.stratified, "note": self.note}


def train_val_test_split(
    n_or_y: int | Any,
    test_size: float = 0.2,
    val_size: float = 0.1,
    *,
    task: str | None = None,
    seed: int = 0,
) -> Split:
    """Seeded train / validation / test split, stratified for classification.

    ``test_size`` and ``val_size`` are fractions of the whole data set, each in ``[0, 1)`` (0
    means no such part) with a sum below 1. Given labels ``y``, the task is inferred unless given;
    for classification both cuts are stratified. When stratification is impossible (a class with
    a single row, or fewer test rows than classes) the split falls back to a plain random one and
    says so in ``note`` instead of failing.

    Raises:
        ValueError: sizes out of range, or too few rows for every requested part to be non-empty.
    """
    from sklearn.model_selection import train_test_split

    test_size = check_float(test_size, "test_size", low=0.0, high=1.0, high_inclusive=False)
    val_size = check_float(val_size, "val_size", low=0.0, high=1.0, high_inclusive=False)
    if test_size + val_size >= 1.0:
        raise ValueError(
            f"test_size + val_size must be < 1 to leave training rows, got {test_size} + {val_size}"
        )
    seed = check_positive_int(seed, "seed", minimum=0)
    if isinstance(n_or_y, numbers.Integral) and not isinstance(n_or_y, bool):
        n, y = int(n_or_y), None
    else:
        y = np.asarray(n_or_y)
        if y.ndim != 1:
            raise ValueError(f"n_or_y must be a row count or 1-D labels, got shape {y.shape}")
        n = len(y)
    n_test = math.ceil(test_size * n) if test_size > 0 else 0
    val_frac = val_size / (1.0 - test_size)
    n_val = math.ceil(val_frac * (n - n_test)) if val_size > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(
            f"n_or_y: {n} rows are too few for test_size={test_size} and val_size={val_size} "
            "(the training part would be empty)"
        )
    if task is None:
        task = infer_task(y) if y is not None else "regression"
    check_one_of(task, "task", ("classification", "regression"))
    strat = y if (y is not None and task == "classification") else None
    note = ""

    def cut(ids: np.ndarray, frac: float) -> tuple[np.ndarray, np.ndarray]:
        nonlocal strat, note
        if frac == 0:
            return ids, ids[:0]
        if strat is not None:
            try:
                return tuple(  # type: ignore[return-value]
                    train_test_split(ids, test_size=frac, random_state=seed, stratify=strat[ids])
                )
            except ValueError as exc:
                strat = None
                note = f"could not stratify ({exc}); used a plain random split"
        return tuple(train_test_split(ids, test_size=frac, random_state=seed))  # type: ignore

    rest, test = cut(np.arange(n), test_size)
    # Only when the first cut stratified is the second one stratified (a consistent split).
    train, val = cut(rest, val_frac)
    return Split(
        train=np.sort(train).astype(np.int64),
        val=np.sort(val).astype(np.int64),
        test=np.sort(test).astype(np.int64),
        stratified=strat is not None,
        note=note,
    )
