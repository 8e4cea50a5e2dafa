"""Seeded index splits, the one way lucidnet cuts rows into parts.

Used by ``fit`` (``validation_split``), the data preparation (train / validation / test), the
scikit-learn estimators and the bundled data sets. NumPy only: the core and the data package both
build on it and on nothing of each other.
"""

from __future__ import annotations

import numpy as np


def split_indices(
    n: int, fraction: float, rng: np.random.Generator, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``range(n)`` into a kept part and a held-out part of about ``fraction * n`` rows.

    Without ``strata`` the held-out rows are a random ``max(1, round(fraction * n))``. With
    ``strata`` (one label per row) each class gives ``round(fraction * class_count)`` rows, at
    least one when it has two or more, so class proportions are kept in both parts; a class with
    a single row stays in the kept part.

    Args:
        n: number of rows.
        fraction: share of rows to hold out, in (0, 1).
        rng: the random generator (explicit, so that a seeded run is reproducible).
        strata: optional (n,) class labels to stratify by.

    Returns:
        ``(kept, held_out)``: sorted int64 row indices, disjoint, together ``range(n)``.
    """
    if strata is None:
        perm = rng.permutation(n)
        n_out = max(1, int(round(fraction * n)))
        return np.sort(perm[n_out:]), np.sort(perm[:n_out])
    held = []
    for cls in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == cls))
        k = int(round(fraction * members.size))
        if k == 0 and members.size >= 2:
            k = 1
        held.append(members[:k])
    out = np.sort(np.concatenate(held)).astype(np.int64)
    kept = np.setdiff1d(np.arange(n), out, assume_unique=True)
    return kept, out
