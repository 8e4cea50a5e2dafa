"""Where ``fit`` gets its mini-batches: arrays in memory, or a source of batches.

``fit(X, y)`` on arrays and ``fit(source)`` on a source run the same loop: the loop asks a
:class:`BatchSource` for the batches of each epoch, and arrays are simply one kind of source
(:class:`ArraySource`, which reshuffles with the run's generator exactly as the loop always has,
so a seeded run gives the same bits as before sources existed).

A source is anything with ``batches(epoch, rng) -> iterable of (X, y) or (X, y, sample_weight)``
tuples, where each ``X`` is ``(m, features)``, ``y`` the matching ``m`` targets and
``sample_weight`` ``(m,)``; ``rng`` is the run's seeded ``np.random.Generator``, for a source that
shuffles. Optional attributes let ``fit`` know more before the first epoch (all may be absent):

- ``n_rows``: rows per epoch (history, progress display);
- ``batch_size``: rows per batch (the thread plan); ``n_batches``: batches per epoch
  (learning-rate schedules counted in epochs);
- ``target_moments()``: ``(mean, std)`` per output of the training targets, for the regression
  target scaling (without it ``fit`` makes one extra pass over the source to compute them).

:func:`as_source` also accepts a plain Python iterable of batch tuples (a list, a generator, or a
function returning a fresh iterator per epoch). A one-shot iterator (a generator) can be consumed
once: it serves one epoch only, and ``fit`` says so before training starts.

This module imports NumPy only; reading files in record batches (Parquet, large CSVs) is in
:mod:`lucidnet.data.streaming`, which builds sources of this kind.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._validation import describe

__all__ = ["BatchSource", "ArraySource", "IterableSource", "as_source", "is_source"]

Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None]


@runtime_checkable
class BatchSource(Protocol):
    """What ``fit`` needs of a source: the batches of one epoch."""

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterable[Any]: ...


class ArraySource:
    """In-memory arrays as a source: the loop's batches, reshuffled each epoch.

    Args:
        X: (n, ...) inputs; y: (n, ...) targets; weights: optional (n,) sample weights (all
            checked by ``fit`` already).
        batch_size: rows per batch (at most n).
        shuffle: a fresh permutation from ``rng`` every epoch (else the rows in order).
        fold_last: the last, short batch joins the one before (a layer's minimum batch size).
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None,
        batch_size: int,
        shuffle: bool = True,
        fold_last: bool = False,
    ) -> None:
        self.X, self.y, self.weights = X, y, weights
        self.n_rows, self.batch_size = int(X.shape[0]), int(batch_size)
        self.shuffle, self.fold_last = shuffle, fold_last
        self.n_batches = -(-self.n_rows // self.batch_size) - int(fold_last)

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """One epoch's row order: a fresh permutation from ``rng``, or the rows in order. The
        fused epoch kernel (``lucidnet.fused``) takes it too, so both paths see the same rows."""
        return rng.permutation(self.n_rows) if self.shuffle else np.arange(self.n_rows)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Batch]:
        """The ``n_batches`` batches of one epoch (one permutation drawn from ``rng``)."""
        n, bs = self.n_rows, self.batch_size
        order = self.order(rng)
        for step in range(self.n_batches):
            stop = n if (self.fold_last and step == self.n_batches - 1) else (step + 1) * bs
            idx = order[step * bs : stop]
            # plain fancy indexing: kernels.gather_rows into a reused buffer measured 8 us
            # slower per step on digits (its checks and dispatch cost more than the copy)
            yield self.X[idx], self.y[idx], None if self.weights is None else self.weights[idx]


class IterableSource:
    """A Python iterable of batch tuples as a source.

    Args:
        data: a re-iterable (a list of ``(X, y)`` tuples, a ``DataLoader``: every epoch
            iterates it again), a function called with no arguments for each epoch's fresh
            iterator, or a one-shot iterator (a generator: one epoch only).
    """

    def __init__(self, data: Any) -> None:
        self.data = data
        self.one_shot = isinstance(data, Iterator)
        self.n_batches: int | None = len(data) if isinstance(data, Sized) else None

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        if callable(self.data) and not isinstance(self.data, Iterable):
            it = self.data()
            if not isinstance(it, Iterable):
                raise TypeError(
                    f"a batch source function must return an iterable of (X, y) batches, got "
                    f"{describe(it)}"
                )
            return iter(it)
        if self.one_shot and epoch > 0:
            raise ValueError(
                "the batch source is a one-shot iterator, used up after one epoch: for several "
                "epochs pass a list of batches, a function returning a fresh iterator, or an "
                "object with a batches(epoch, rng) method"
            )
        return iter(self.data)  # a one-shot iterator continues where the last call stopped


def is_source(X: Any) -> bool:
    """Whether ``X`` is a batch source rather than an array (a NumPy array, a list of rows, a
    DataFrame): an object with ``batches``, an iterator, a function, an iterable that is not
    array-like (no ``__array__``: a PyTorch ``DataLoader``), or a list / tuple of batch
    tuples."""
    if isinstance(X, np.ndarray):
        return False
    if isinstance(X, BatchSource) or isinstance(X, Iterator):
        return True
    if callable(X) and not isinstance(X, Iterable):
        return True
    if isinstance(X, Iterable) and not isinstance(X, (list, tuple, str, bytes, dict)):
        # a re-iterable of batches (a PyTorch DataLoader, ...), unless it is array-like
        return not hasattr(X, "__array__")
    if isinstance(X, (list, tuple)) and X:
        # a list of (X, y) tuples of arrays, not a list of rows of numbers
        return all(isinstance(b, tuple) and 2 <= len(b) <= 3 for b in X) and all(
            hasattr(b[0], "__len__") and np.ndim(b[0]) >= 2 for b in X[:1]
        )
    return False


def as_source(X: Any) -> BatchSource:
    """``X`` as a :class:`BatchSource` (objects with ``batches`` are returned as they are).

    Raises:
        TypeError: ``X`` is not a batch source (see :func:`is_source`).
    """
    if isinstance(X, BatchSource):
        return X
    if is_source(X):
        return IterableSource(X)
    raise TypeError(
        "X must be an array, or a batch source: an object with a batches(epoch, rng) method, a "
        "list of (X, y) tuples, a function returning an iterator of them, or an iterator; got "
        f"{describe(X)}"
    )


class CheckedSource:
    """A user's source with every batch checked (and converted) before it reaches a step.

    Args:
        source: the user's source.
        check: turns one raw batch (whatever the source yielded) and its position
            (``"batch 3 of epoch 1"``) into checked ``(X, y, sample_weight)`` arrays; raises a
            clear error for a malformed batch.
        min_batch: the model's minimum batch size (BatchNorm: 2): a smaller batch is joined to
            the one before it, as ``fit`` does with arrays.
        first: the first batch of epoch 0 when it was taken from a one-shot iterator to build
            the model (it is given back in front).
    """

    def __init__(
        self,
        source: BatchSource,
        check: Callable[[Any, str], Batch],
        min_batch: int = 1,
        first: Any = None,
    ) -> None:
        self.source, self.check, self.min_batch = source, check, min_batch
        self._first = first
        self.n_rows: int | None = _optional_int(source, "n_rows")
        self.batch_size: int | None = _optional_int(source, "batch_size")
        self.n_batches: int | None = _optional_int(source, "n_batches")

    def raw_batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        """The source's own batches of one epoch (the peeked first batch put back)."""
        it: Iterable[Any] = self.source.batches(epoch, rng)
        if self._first is not None and epoch == 0:
            it = itertools.chain([self._first], it)
            self._first = None
        return iter(it)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Batch]:
        held: Batch | None = None
        for i, raw in enumerate(self.raw_batches(epoch, rng)):
            batch = self.check(raw, f"batch {i} of epoch {epoch}")
            if held is not None and len(batch[0]) < self.min_batch:
                held = _join(held, batch)  # too small for a layer (BatchNorm): join the last
                continue
            if held is not None:
                yield held
            held = batch
        if held is not None:
            yield held


def _join(a: Batch, b: Batch) -> Batch:
    w = None if a[2] is None or b[2] is None else np.concatenate([a[2], b[2]])
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]), w


def _optional_int(source: Any, name: str) -> int | None:
    value = getattr(source, name, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(f"a batch source's {name} must be a non-negative integer or None, got "
                        f"{describe(value)}")  # fmt: skip
    return int(value)
