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
  the target (relative error < 1e-6) on >= 99% of the rows;
* **by name** (:func:`extends`), any feature column (text and dates too): its name extends
  the target's name (``airline_sentiment_confidence``, ``airline_sentiment_gold``,
  ``price_per_carat``, ``label_prob`` for ``airline_sentiment`` / ``price`` / ``label``: the
  target's name, then a separator ``_ - . :`` or space, or a capital letter after a
  lower-case one, then words) or extends the name of a column already found to leak
  (``negativereason_gold`` after ``negativereason``), repeated until nothing changes. Such
  columns are usually by-products of the labelling (a labeller's confidence, a gold-standard
  copy) and cannot be known when a prediction is wanted. Not flagged: a rest without letters
  (``sales_2019`` for ``sales``: another period) or with a word that says the value comes
  from before the outcome (``lag``, ``prev``, ``previous``, ``last``, ``past``, ``prior``,
  ``shift``, ``hist``, ``baseline``...: ``sales_lag1`` is a legitimate forecasting input).
  The evidence printed adds what the column alone says about the target on the fitting rows
  (balanced accuracy of its best mapping or thresholds against chance, coverage where it is
  filled in; Spearman or the share of variance between its categories for regression).

Statistical checks cover numeric and categorical columns (identifiers, constant and dropped
columns are never checked). Thresholds are module constants.
"""

from __future__ import annotations

import math
import re
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
SCREEN_ROWS = 2_000  # the first look of the single-column tree check (see _tree_score)
SCREEN_BAR = 0.9
SMALL_TABLE = 20  # categories in a column small enough to be a recoding table
MAX_PAIR_COLUMNS = 200  # the pair check is quadratic in the numeric columns
#: words after a target's name that mark a value from before the outcome: not leakage by name
PAST_WORDS = {"lag", "lags", "lagged", "prev", "previous", "last", "past", "prior", "shift"}
PAST_WORDS |= {"shifted", "before", "hist", "history", "historical", "baseline", "initial"}
_NAMED_ROLES = ("numeric", "categorical", "text", "date", "cyclic")


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
    leaks += _name_leaks(df, y, task, roles, leaks, names)
    return leaks, sampled


def extends(name: str, base: str) -> bool:
    """Whether the column name ``name`` extends ``base`` (rule in the module docstring):
    ``base``, a separator or a camel-case capital, then a rest with letters and no word of
    :data:`PAST_WORDS`. Case-insensitive on ``base``."""
    if not base or len(name) <= len(base) or name[: len(base)].lower() != base.lower():
        return False
    rest = name[len(base) :]
    if not (rest[0] in "_-.: " or (rest[0].isupper() and base[-1].islower())):
        return False
    words = {w.lower() for w in re.findall(r"[A-Za-z][a-z]*|[A-Z]+(?![a-z])", rest)}
    return bool(words) and not words & PAST_WORDS


def _name_leaks(
    df: pd.DataFrame,
    y: np.ndarray,
    task: str,
    roles: dict[str, ColumnRole],
    found: list[Leak],
    classes: list[str],
) -> list[Leak]:
    """Feature columns whose name extends the target's or a leaking column's name (repeated
    until no more are found), with what each column says about the target as evidence."""
    target = next((c for c, r in roles.items() if r.role == "target"), None)
    bases = ([target] if target is not None else []) + [c for leak in found for c in leak.columns]
    candidates = [
        c for c, r in roles.items() if r.role in _NAMED_ROLES and c in df.columns and c not in bases
    ]
    leaks: list[Leak] = []
    grew = True
    while grew:
        grew = False
        for c in candidates:
            base = next((b for b in bases if extends(c, b)), None)
            if base is None or c in bases:
                continue
            whose = "the target's name" if base == target else "the leaking column's name"
            why = f"its name extends {whose} {base!r}"
            stats = _association(df[c], roles[c].role, y, task, classes)
            leaks.append(Leak((c,), f"{why}; {stats}"))
            bases.append(c)
            grew = True
    return leaks


def _association(s: Any, role: str, y: np.ndarray, task: str, classes: list[str]) -> str:
    """What one column alone says about the target, in words (the evidence of a leak by
    name): classification: the balanced accuracy of the best category -> class mapping (and
    its accuracy where the column is filled in) or of thresholds, against chance; regression:
    Spearman correlation or the share of the target's variance between categories."""
    if role not in ("numeric", "categorical", "cyclic"):
        return f"a {role} column, not checked statistically"
    numeric = role != "categorical"
    if task == "classification":
        y = y.astype(np.int64)
        chance = 1.0 / len(np.unique(y))
        if numeric:
            x = _numeric(s)
            finite = x[np.isfinite(x)]
            x = np.where(np.isfinite(x), x, finite.min() - 1.0 if finite.size else 0.0)
            score = _tree_score(x, y)
            return (
                f"alone, thresholds on it give the class with cross-validated balanced accuracy "
                f"{score:.2f} (chance {chance:.2f})"
            )
        codes, missing = _codes(s)
        k = int(y.max()) + 1
        out = (
            f"alone, its value gives the class with balanced accuracy "
            f"{_balanced(_majority_map(codes, y, k), y):.2f} (chance {chance:.2f})"
        )
        n = int((~missing).sum())
        if 0 < n < len(y):
            right = _majority_map(codes[~missing], y[~missing], k).mean()
            out += (
                f"; filled in {n} rows ({n / len(y):.1%}), there it gives the class in {right:.0%}"
            )
        return out
    yf = y.astype(np.float64)
    if numeric:
        x = _numeric(s)
        ok = np.isfinite(x)
        if ok.sum() < 3 or np.ptp(x[ok]) == 0:
            return "too few values to measure"
        rho = float(np.corrcoef(_rank(x[ok]), _rank(yf[ok]))[0, 1])
        return f"Spearman correlation with the target {rho:+.2f}"
    codes, _ = _codes(s)
    means = np.bincount(codes, weights=yf) / np.maximum(np.bincount(codes), 1)
    total = float(np.var(yf))
    between = float(np.var(means[codes])) / total if total > 0 else 0.0
    return f"its categories explain {between:.0%} of the target's variance"


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
    """Cross-validated balanced accuracy of a shallow tree on the single column ``x``.

    A first look on a seeded sample of ``SCREEN_ROWS`` rows settles most columns: one that
    scores below ``SCREEN_BAR`` there is far from the ``SCORE`` a leak needs (a leak scores
    about 1.0 on any sample), so the check on all rows runs only for suspects. This keeps the
    guard to about a tenth of a second per numeric column on 20,000 rows instead of 0.5 s."""
    if len(y) > SCREEN_ROWS:
        rows = np.random.default_rng(0).choice(len(y), SCREEN_ROWS, replace=False)
        first = _tree_cv(x[rows], y[rows])
        if first < SCREEN_BAR:
            return first
    return _tree_cv(x, y)


def _tree_cv(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.model_selection import StratifiedKFold
    from sklearn.tree import DecisionTreeClassifier

    counts = np.bincount(y)
    folds = int(min(3, counts[counts > 0].min()))
    if folds < 2:
        return 0.0
    k = int((counts > 0).sum())
    tree = DecisionTreeClassifier(max_leaf_nodes=min(2 * k, 32), random_state=0)
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    X = x.reshape(-1, 1)
    scores = []
    # the folds by hand: cross_val_score's own machinery costs ~0.1 s a call, 50x the trees
    with warnings.catch_warnings():  # e.g. "more classes than half the rows": not the user's
        warnings.simplefilter("ignore")
        for fit_rows, test_rows in cv.split(X, y):
            pred = tree.fit(X[fit_rows], y[fit_rows]).predict(X[test_rows])
            scores.append(_balanced(pred == y[test_rows], y[test_rows]))
    return float(np.mean(scores))


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
