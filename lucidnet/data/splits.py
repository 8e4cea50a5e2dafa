"""Seeded train / validation / test splits of a table's rows, stratified for classification.

The rows are cut with :func:`lucidnet.splitting.split_indices`, the one way lucidnet cuts rows
(``fit``'s ``validation_split`` and the estimators' early stopping use it too).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_float, check_one_of, check_positive_int
from ..splitting import split_indices
from .columns import infer_task

__all__ = ["Split", "train_val_test_split"]

_MAX_NAMED = 5  # classes named in a note before "and N more"


@dataclass(frozen=True)
class Split:
    """Sorted row indices of a train / validation / test split and how it was made.

    Attributes:
        train, val, test: sorted int64 row indices, disjoint, together ``range(n)``.
        stratified: both cuts were stratified by class (a class with a single row at a cut
            stays in training and is named in ``note``).
        note: what could not be done as asked, in words ("" when everything was).
    """

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
    for classification both cuts are stratified. Rows are cut by
    :func:`lucidnet.splitting.split_indices` with ``np.random.default_rng(seed)``: first the test
    part, then the validation part from the rest. A class with a single row at a cut cannot be
    stratified: it stays in training, and ``note`` names it. When stratifying would leave a
    requested part empty, the split falls back to a plain random one and says so in ``note``
    instead of failing.

    Args:
        n_or_y: the number of rows, or one label / target per row (n,).
        test_size: share of all rows in the test part.
        val_size: share of all rows in the validation part.
        task: ``"classification"`` (stratified) or ``"regression"``; inferred from ``y`` when
            ``None`` (a row count means regression).
        seed: seed of the random generator.

    Returns:
        A :class:`Split` with sorted int64 indices that together are ``range(n)``.

    Raises:
        ValueError: sizes out of range, or too few rows for every requested part to be non-empty.
    """
    test_size = check_float(test_size, "test_size", low=0.0, high=1.0, high_inclusive=False)
    val_size = check_float(val_size, "val_size", low=0.0, high=1.0, high_inclusive=False)
    if test_size + val_size >= 1.0:
        raise ValueError(
            f"test_size + val_size must be < 1 to leave training rows, got {test_size} + {val_size}"
        )
    seed = check_positive_int(seed, "seed", minimum=0)
    n, y = _rows_and_labels(n_or_y)
    _check_enough_rows(n, test_size, val_size)
    if task is None:
        task = infer_task(y) if y is not None else "regression"
    check_one_of(task, "task", ("classification", "regression"))
    fractions = (test_size, val_size / (1.0 - test_size))  # the second of the rows left
    if y is None or task != "classification":
        return Split(*_cut_twice(n, fractions, seed)[:3], stratified=False)
    return _stratified_split(y, fractions, seed, (test_size, val_size))


def _stratified_split(
    y: np.ndarray, fractions: tuple[float, float], seed: int, sizes: tuple[float, float]
) -> Split:
    """Both cuts stratified by ``y``; a plain random split when that leaves a part asked for by
    ``sizes`` (test, validation) empty."""
    n = len(y)
    classes, codes = _encode_labels(y)
    train, val, test, singles = _cut_twice(n, fractions, seed, codes)
    empty = _empty_parts(train, val, test, *sizes)
    if empty:
        train, val, test, _ = _cut_twice(n, fractions, seed)
        why = [f"the {' and '.join(empty)} part{'s' if len(empty) > 1 else ''} would be empty"]
        why += [f"{names}: {how}" for names, how in _singles(classes, singles)]
        note = f"could not stratify ({'; '.join(why)}); used a plain random split"
        return Split(train, val, test, stratified=False, note=note)
    kept = [f"{names}: {how}, kept in training" for names, how in _singles(classes, singles)]
    note = f"could not stratify {'; '.join(kept)}" if kept else ""
    return Split(train, val, test, stratified=True, note=note)


def _rows_and_labels(n_or_y: Any) -> tuple[int, np.ndarray | None]:
    """The row count and the labels (``None`` when given a count)."""
    if isinstance(n_or_y, numbers.Integral) and not isinstance(n_or_y, bool):
        return int(n_or_y), None
    y = np.asarray(n_or_y)
    if y.ndim != 1:
        raise ValueError(f"n_or_y must be a row count or 1-D labels, got shape {y.shape}")
    return len(y), y


def _check_enough_rows(n: int, test_size: float, val_size: float) -> None:
    """Refuse sizes that leave no training row, counting parts as rounded up (the most the
    cuts below can hold out)."""
    n_test = math.ceil(test_size * n) if test_size > 0 else 0
    val_frac = val_size / (1.0 - test_size)
    n_val = math.ceil(val_frac * (n - n_test)) if val_size > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(
            f"n_or_y: {n} rows are too few for test_size={test_size} and val_size={val_size} "
            "(the training part would be empty)"
        )


def _encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, codes)``: the sorted distinct labels and each row's index into them (labels
    of mixed Python types are compared as strings)."""
    try:
        return np.unique(y, return_inverse=True)
    except TypeError:
        codes = np.unique(y.astype(str), return_inverse=True)[1]
        first = np.unique(codes, return_index=True)[1]
        return y[first], codes


def _cut_twice(
    n: int, fractions: tuple[float, float], seed: int, codes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[list[int], list[int]]]:
    """``(train, val, test, singles)``: the test cut, then the validation cut of the rest, one
    seeded generator for both; ``singles`` lists the classes (codes) with a single row at each
    cut (kept in training). ``codes`` stratifies both cuts."""
    rng = np.random.default_rng(seed)
    rest, test, first = _cut(np.arange(n), fractions[0], rng, codes)
    train, val, second = _cut(rest, fractions[1], rng, codes)
    return train, val, test, (first, [c for c in second if c not in first])


def _cut(
    ids: np.ndarray, fraction: float, rng: np.random.Generator, codes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``ids`` cut into kept and held-out rows, and the classes with a single row among them."""
    if fraction == 0:
        return ids, ids[:0], []
    strata = None if codes is None else codes[ids]
    kept, held = split_indices(ids.size, fraction, rng, strata)
    singles = [] if strata is None else np.flatnonzero(np.bincount(strata) == 1).tolist()
    return ids[kept], ids[held], singles


def _empty_parts(
    train: np.ndarray, val: np.ndarray, test: np.ndarray, test_size: float, val_size: float
) -> list[str]:
    """Names of the parts that were asked for but came out empty."""
    wanted = [("training", train, True), ("test", test, test_size > 0)]
    wanted.append(("validation", val, val_size > 0))
    return [name for name, part, asked in wanted if asked and not part.size]


def _singles(classes: np.ndarray, singles: tuple[list[int], list[int]]) -> list[tuple[str, str]]:
    """``(classes named, why)`` for the classes with a single row at the test / validation cut."""
    first, second = singles
    out = [(_names(classes, first), "a single row")] if first else []
    if second:
        out.append((_names(classes, second), "a single row left after the test cut"))
    return out


def _names(classes: np.ndarray, codes: list[int]) -> str:
    labels = [
        classes[c].item() if isinstance(classes[c], np.generic) else classes[c] for c in codes
    ]
    shown = ", ".join(repr(v) for v in labels[:_MAX_NAMED])
    more = f" and {len(labels) - _MAX_NAMED} more" if len(labels) > _MAX_NAMED else ""
    return f"class{'es' if len(labels) > 1 else ''} {shown}{more}"
