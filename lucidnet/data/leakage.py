"""Target-leakage guard: columns that give the target away, found on the TRAINING rows only.

A column that is the target recoded (``yes``/``no`` for 1/0), a column filled in only once the
outcome was known (a "reason" given only for one class), or two columns whose sum or difference
is the target (parts of a total) give a near-perfect score that a user may believe. The checks
(all on the fitting rows, a seeded sample of at most ``max_rows`` of them):

* categorical column, classification target: mapping each category (missing values are a
  category) to its most frequent class predicts the target with balanced accuracy >= 0.99;
  categories seen once count as wrong, so an identifier-like column is never flagged;
* categorical column, "when present": on the rows where it is not missing (at least 20 of
  them) the same mapping is right for >= 99% of them, and chance is ruled out (the most
  frequent class's share to the power of the number of such rows is below 1e-3);
* numeric column, classification target: a shallow decision tree on that column alone
  (missing values below the minimum) scores a cross-validated balanced accuracy >= 0.99;
* numeric column, regression target: ``|Spearman| >= 0.995`` (a monotone function of it);
* pair of numeric columns, numeric regression target: ``a + b``, ``a - b`` or ``b - a`` equals
  the target (relative error < 1e-6) on >= 99% of the rows.

Only numeric and categorical columns are checked (identifiers, text, constant and dropped
columns are not). Thresholds are module constants.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from .columns import ColumnRole

SCORE = 0.99  # balanced accuracy / share of rows that counts as "gives the target away"
SPEARMAN = 0.995
REL_TOL = 1e-6
MIN_PRESENT = 20
CHANCE = 1e-3
MAX_ROWS = 20_000
SMALL_TABLE = 20  # categories in a column small enough to be a recoding table
MAX_PAIR_COLUMNS = 200  # the pair check is quadratic in the numeric columns


@dataclass(frozen=True)
class Leak:
    """Columns that give the target away, with the evidence in words."""

    columns: tuple[str, ...]
    evidence: str

    def message(self) -> str:
        names = " + ".join(repr(c) for c in self.columns)
        return f"{names} ({self.evidence})"


def find_leaks(
    df: pd.DataFrame,
    y: np.ndarray,
    task: str,
    roles: dict[str, ColumnRole],
    *,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    classes: list[Any] | None = None,
) -> tuple[list[Leak], int | None]:
    """Columns of ``df`` (training rows) that predict ``y`` almost perfectly.

    Args:
        df: the fitting rows, shape (n, columns).
        y: the encoded target, shape (n,): int class indices or float values.
        task: ``"classification"`` or ``"regression"``.
        roles: column -> role (:func:`lucidnet.data.columns.infer_roles`); only ``numeric`` and
            ``categorical`` columns are checked.
        max_rows: rows above this are sampled (seeded) to keep the check to seconds.
        classes: the class labels, for the evidence (classification).

    Returns:
        ``(leaks, sampled)``: the leaks found, and the number of rows sampled (None: all).
    """
    y = np.asarray(y)
    sampled = None
    if len(df) > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(len(df), max_rows, replace=False))
        df, y, sampled = df.iloc[idx], y[idx], max_rows
    numeric = [c for c, r in roles.items() if r.role == "numeric" and c in df.columns]
    categorical = [c for c, r in roles.items() if r.role == "categorical" and c in df.columns]
    leaks: list[Leak] = []
    names = [str(c) for c in classes] if classes is not None else []
    names += [f"#{k}" for k in range(len(names), int(y.max()) + 1 if len(y) else 0)]
    values = {c: _numeric(df[c]) for c in numeric}
    if task == "classification":
        for c in categorical + numeric:
            why = (
                _categorical_leak(*_codes(df[c]), y, names)
                if c in categorical
                else _numeric_class_leak(values[c], y, names)
            )
            if why:
                leaks.append(Leak((c,), why))
    else:
        yf = y.astype(np.float64)
        for c in numeric:
            why = _spearman_leak(values[c], yf)
            if why:
                leaks.append(Leak((c,), why))
        flagged = {c for leak in leaks for c in leak.columns}
        rest = [c for c in numeric if c not in flagged][:MAX_PAIR_COLUMNS]
        leaks += _pair_leaks({c: values[c] for c in rest}, yf)
    return leaks, sampled


def _numeric(s: Any) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)


def _codes(s: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, missing)``: category codes with missing values as a category of their own,
    and the mask of the missing rows."""
    import pandas as pd

    codes, _ = pd.factorize(s.astype(object), use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    missing = codes < 0
    codes[missing] = codes.max() + 1 if len(codes) else 0
    return codes, missing


def _majority_map(codes: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per row: True where the row's category's most frequent class is the row's class and the
    category was seen more than once (a category seen once proves nothing, unless the column has
    at most ``SMALL_TABLE`` categories)."""
    table = np.zeros((codes.max() + 1, n_classes), dtype=np.int64)
    np.add.at(table, (codes, y), 1)
    pred = table.argmax(axis=1)[codes]
    if len(table) <= SMALL_TABLE:  # a short recoding table: every category counts
        return pred == y
    seen_once = table.sum(axis=1)[codes] < 2
    return (pred == y) & ~seen_once


def _balanced(correct: np.ndarray, y: np.ndarray) -> float:
    classes = np.unique(y)
    return float(np.mean([correct[y == k].mean() for k in classes]))


def _categorical_leak(
    codes: np.ndarray, missing: np.ndarray, y: np.ndarray, classes: list[str]
) -> str | None:
    y = y.astype(np.int64)
    k = int(y.max()) + 1
    correct = _majority_map(codes, y, k)
    score = _balanced(correct, y)
    if score >= SCORE:
        return f"its value alone gives the class in {correct.mean():.1%} of rows"
    for c in range(k) if k > 2 else ():
        yc = (y == c).astype(np.int64)
        if _balanced(_majority_map(codes, yc, 2), yc) >= SCORE:
            return (
                f"its value alone tells class {classes[c]!r} from the others in >= "
                f"{SCORE:.0%} of rows"
            )
    present = ~missing
    n = int(present.sum())
    if n < MIN_PRESENT or n == len(codes):
        return None
    right = _majority_map(codes[present], y[present], k)
    share = np.bincount(y, minlength=k).max() / len(y)
    if right.mean() >= SCORE and share**n < CHANCE:
        return (
            f"where it is filled in ({n} rows, {n / len(y):.1%}) its value gives the class "
            f"in {right.mean():.1%} of them"
        )
    return None


def _numeric_class_leak(x: np.ndarray, y: np.ndarray, classes: list[str]) -> str | None:
    finite = x[np.isfinite(x)]
    if len(finite) == 0:
        return None
    x = np.where(np.isfinite(x), x, finite.min() - 1.0)  # missing: its own side of a threshold
    y = y.astype(np.int64)
    score = _tree_score(x, y)
    if score >= SCORE:
        return (
            f"thresholds on it alone give the class (cross-validated balanced accuracy {score:.3f})"
        )
    present = np.unique(y)
    for c in present if len(present) > 2 else ():
        yc = (y == c).astype(np.int64)
        score = _tree_score(x, yc)
        if score >= SCORE:
            return (
                f"thresholds on it alone tell class {classes[c]!r} from the others "
                f"(cross-validated balanced accuracy {score:.3f})"
            )
    return None


def _tree_score(x: np.ndarray, y: np.ndarray) -> float:
    """Cross-validated balanced accuracy of a shallow tree on the single column ``x``."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    counts = np.bincount(y)
    folds = int(min(3, counts[counts > 0].min()))
    if folds < 2:
        return 0.0
    k = int((counts > 0).sum())
    tree = DecisionTreeClassifier(max_leaf_nodes=min(2 * k, 32), random_state=0)
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    with warnings.catch_warnings():  # e.g. "more classes than half the rows": not the user's
        warnings.simplefilter("ignore")
        scores = cross_val_score(tree, x.reshape(-1, 1), y, cv=cv, scoring="balanced_accuracy")
    return float(scores.mean())


def _spearman_leak(x: np.ndarray, y: np.ndarray) -> str | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < max(3, SCORE * len(y)):
        return None
    rx, ry = _rank(x[ok]), _rank(y[ok])
    if rx.std() == 0 or ry.std() == 0:
        return None
    rho = float(np.corrcoef(rx, ry)[0, 1])
    if abs(rho) >= SPEARMAN:
        return f"the target is a monotone function of it: Spearman correlation {rho:+.4f}"
    return None


def _rank(v: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.Series(v).rank(method="average").to_numpy()


def _pair_leaks(values: dict[str, np.ndarray], y: np.ndarray) -> list[Leak]:
    names = list(values)
    if len(names) < 2:
        return []
    X = np.column_stack([values[c] for c in names])
    scale = np.maximum(np.abs(y), 1e-12)[:, None]
    need = math.ceil(SCORE * len(y))
    leaks: list[Leak] = []
    used: set[str] = set()
    for i, a in enumerate(names[:-1]):
        rest = X[:, i + 1 :]
        # column a combined with every later column at once: (n, m) candidates per relation
        for fmt, combo in (
            ("{a} + {b}", X[:, [i]] + rest),
            ("{a} - {b}", X[:, [i]] - rest),
            ("{b} - {a}", rest - X[:, [i]]),
        ):
            with np.errstate(invalid="ignore"):
                hits = (np.abs(combo - y[:, None]) / scale < REL_TOL).sum(axis=0) >= need
            for j in np.flatnonzero(hits):
                b = names[i + 1 + j]
                if a in used or b in used:
                    continue
                used |= {a, b}
                expr = fmt.format(a=a, b=b)
                leaks.append(Leak((a, b), f"{expr} equals the target on >= {SCORE:.0%} of rows"))
    return leaks
