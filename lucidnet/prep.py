"""Tabular and text data preparation: from a CSV file / DataFrame / array to float arrays.

The workflow (what ``lucidnet train DATA.csv --target COL`` does, see :func:`prepare`)::

    df = read_csv("data.csv")                      # clear errors for missing / empty / binary files
    prep = TabularPreparer(target="label")
    df, y = prep.prepare_target(df)                # drop rows without a target, infer the task,
                                                   # encode class labels (classes_ sorted)
    split = train_val_test_split(y, seed=0)        # stratified for classification
    prep.fit(df.iloc[split.train])                 # statistics from the TRAINING rows only
    X_train = prep.transform(df.iloc[split.train]) # float32
    print(prep.summary())                          # what was done, and why
    state = prep.to_dict()                         # plain JSON; from_dict(state) rebuilds

Column roles (inferred on the fitting rows unless overridden with ``numeric=`` / ``categorical=``
/ ``text=`` / ``drop=``), checked in this order:

* **empty**: every value missing -> dropped (even when a role was requested).
* **constant**: a single distinct value -> dropped (a role requested by the user wins).
* **categorical**: booleans; pandas ``category`` columns; strings that are not text or ids.
* **numeric**: numbers, and strings that all parse as numbers. Integer columns stay numeric even
  with few distinct values (their order carries information); one-hot them with ``categorical=``.
* **identifier**: at least 20 values, all distinct, and either integers forming a consecutive run /
  in a column named like an id (``id``, ``*_id``, ``key``, ``index``, ...) or single-word strings.
* **text**: strings with a mean of >= 3 words, or more than 20 distinct values, more than half of
  the rows distinct and mostly multi-word (e.g. names, titles).

Task inference (:func:`infer_task`): string / bool / category targets -> classification; numbers
with a non-integer value -> regression; integers with 2 distinct values, or with <= 20 distinct
values that are at most 5% of the rows, -> classification; other integers -> regression.

pandas and scikit-learn are imported inside the functions so that ``import lucidnet`` stays fast.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_float, check_one_of, check_positive_int, describe

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ColumnRole",
    "PreparedData",
    "Split",
    "TabularPreparer",
    "as_frame",
    "infer_roles",
    "infer_task",
    "prepare",
    "read_csv",
    "train_val_test_split",
]

FORMAT = "lucidnet.prep"
FORMAT_VERSION = 1
FEATURE_ROLES = ("numeric", "categorical", "text")
MAX_CLASSES = 20  # integer targets with more distinct values are treated as regression
MAX_CLASS_FRACTION = 0.05  # ... and so are those whose distinct values exceed 5% of the rows
ID_MIN_ROWS = 20  # below this, "all values distinct" says nothing about being an identifier
TEXT_MIN_WORDS = 3.0
_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")  # TfidfVectorizer's default token pattern
_NUMBER_KINDS = ("integer", "floating", "mixed-integer-float", "decimal", "empty")  # infer_dtype
_ID_NAMES = {"id", "uuid", "guid", "key", "index", "idx", "row", "rowid", "row_id"}


def _pd() -> Any:
    import pandas

    return pandas


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV file into a DataFrame, with errors that name the file and the problem.

    A file that parses into a single column is re-read with ``;``, tab or ``|`` when its first
    line contains one of them (European / TSV exports). A single column whose header looks like
    prose (more than 64 characters, or 4+ words) is rejected as "not CSV"; other single-column
    files are accepted (a one-feature model's prediction input is legitimate).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a directory, an empty file (0 bytes, or a header without rows), binary
            content (NUL bytes or not UTF-8), or text that is not CSV.
    """
    pd = _pd()
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"data file '{p}' does not exist")
    if os.path.isdir(p):
        raise ValueError(f"data file '{p}' is a directory, expected a CSV file")
    if os.path.getsize(p) == 0:
        raise ValueError(f"data file '{p}' is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(65536)
    if b"\x00" in head:
        raise ValueError(f"data file '{p}' is not a CSV text file: it contains NUL bytes (binary?)")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut by the 64 KiB limit
            raise ValueError(
                f"data file '{p}' is not UTF-8 text (undecodable byte at offset {exc.start}); "
                "binary data, or re-save the CSV as UTF-8"
            ) from None
    first_line = head.decode("utf-8", errors="replace").splitlines()[0] if head.strip() else ""

    def _read(sep: str) -> pd.DataFrame:
        try:
            return pd.read_csv(p, sep=sep, encoding="utf-8")
        except pd.errors.EmptyDataError:
            raise ValueError(f"data file '{p}' is empty (no header, no rows)") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"data file '{p}' is not UTF-8 text: {exc}") from None
        except pd.errors.ParserError as exc:
            raise ValueError(f"data file '{p}' could not be parsed as CSV: {exc}") from None

    df = _read(",")
    if df.shape[1] == 1:
        counts = {s: first_line.count(s) for s in (";", "\t", "|")}
        sep = max(counts, key=counts.get)
        if counts[sep] > 0:
            df = _read(sep)
    if df.shape[1] == 1:
        name = str(df.columns[0])
        if len(name) > 64 or len(name.split()) >= 4:
            raise ValueError(
                f"data file '{p}' does not look like CSV: it parsed into a single column whose "
                f"header is {name[:60]!r}; expected comma-separated columns with a header line"
            )
    if len(df) == 0:
        raise ValueError(f"data file '{p}' has a header ({df.shape[1]} columns) but no data rows")
    return df


def as_frame(data: Any, name: str = "data") -> pd.DataFrame:
    """Accept a DataFrame, a NumPy array (columns ``x0``, ``x1``, ...), a dict or a CSV path.

    Non-string column names are converted to strings so that the fitted state stays JSON.
    """
    pd = _pd()
    if isinstance(data, (str, os.PathLike)):
        return read_csv(data)
    if isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, np.ndarray):
        arr = data.reshape(-1, 1) if data.ndim == 1 else data
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 1-D or 2-D array, got shape {data.shape}")
        df = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    elif isinstance(data, dict):
        df = pd.DataFrame(data)
    else:
        raise TypeError(
            f"{name} must be a pandas DataFrame, a NumPy array, a dict of columns or a CSV path, "
            f"got {describe(data)}"
        )
    if not all(isinstance(c, str) for c in df.columns):
        df = df.rename(columns=str)
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise ValueError(f"{name} has duplicated column names: {dup}")
    return df


# --------------------------------------------------------------------------------------------
# Role and task inference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRole:
    """The role of one column and the reason it was chosen.

    ``role`` is one of ``numeric``, ``categorical``, ``text`` (used as features), ``identifier``,
    ``constant``, ``empty``, ``dropped`` (user's ``drop=``), or ``target``.
    """

    role: str
    reason: str


def _looks_like_id(name: str) -> bool:
    low = name.strip().lower()
    return low in _ID_NAMES or low.endswith(("_id", " id", "-id")) or name.endswith(("Id", "ID"))


def _numeric_role(values: np.ndarray, name: str, prefix: str) -> ColumnRole:
    finite = values[np.isfinite(values)]
    n_unique = len(np.unique(finite))
    if finite.size and np.all(finite == np.round(finite)):
        if n_unique == len(values) >= ID_MIN_ROWS:
            consecutive = bool(np.all(np.diff(np.sort(finite)) == 1))
            if consecutive or _looks_like_id(name):
                why = "consecutive integers" if consecutive else "an id-like name"
                return ColumnRole(
                    "identifier", f"{prefix}all {len(values)} integers distinct, {why}"
                )
        return ColumnRole("numeric", f"{prefix}integers, {n_unique} distinct values")
    return ColumnRole("numeric", f"{prefix}real numbers, {n_unique} distinct values")


def _infer_role(s: pd.Series, name: str) -> ColumnRole:
    pd = _pd()
    values = s.dropna()
    n = len(values)
    if n == 0:
        return ColumnRole("empty", f"all {len(s)} values are missing")
    n_unique = values.nunique()
    if n_unique == 1:
        extra = f", plus {len(s) - n} missing" if len(s) > n else ""
        return ColumnRole("constant", f"single value {_label_key(values.iloc[0])!r}{extra}")
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "boolean":
        return ColumnRole("categorical", "boolean values")
    if isinstance(s.dtype, pd.CategoricalDtype):
        return ColumnRole("categorical", f"pandas category dtype, {n_unique} values")
    if pd.api.types.is_numeric_dtype(s.dtype):
        return _numeric_role(values.to_numpy(dtype=np.float64), name, "")
    coerced = pd.to_numeric(values, errors="coerce")
    if coerced.notna().all():
        return _numeric_role(coerced.to_numpy(dtype=np.float64), name, "numbers stored as text; ")
    words = values.astype(str).str.split().str.len()
    mean_words = float(words.mean())
    if mean_words >= TEXT_MIN_WORDS:
        return ColumnRole("text", f"free text, {mean_words:.1f} words per value on average")
    if n_unique == n >= ID_MIN_ROWS and float((words <= 1).mean()) >= 0.95:
        return ColumnRole("identifier", f"all {n} single-word strings distinct")
    if n_unique > 20 and n_unique > 0.5 * n and float((words >= 2).mean()) >= 0.5:
        return ColumnRole("text", f"{n_unique} distinct multi-word strings in {n} rows")
    return ColumnRole("categorical", f"strings, {n_unique} distinct values")


def _as_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of column names, got {describe(value)}")
    return list(value)


def infer_roles(
    df: pd.DataFrame,
    target: str | None = None,
    *,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    text: list[str] | None = None,
    drop: list[str] | None = None,
) -> dict[str, ColumnRole]:
    """Assign a :class:`ColumnRole` to every column of ``df`` (rules in the module docstring).

    Raises:
        ValueError: an override names an unknown column, names the target, or a column is given
            two roles.
    """
    overrides = {
        "numeric": _as_list(numeric, "numeric"),
        "categorical": _as_list(categorical, "categorical"),
        "text": _as_list(text, "text"),
        "dropped": _as_list(drop, "drop"),
    }
    columns = list(df.columns)
    forced: dict[str, str] = {}
    for role, names in overrides.items():
        arg = "drop" if role == "dropped" else role
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise ValueError(
                f"{arg}= names unknown columns {unknown}; available columns: {columns}"
            )
        if target is not None and target in names:
            raise ValueError(f"{arg}= names the target column {target!r}; remove it from {arg}=")
        for c in names:
            if c in forced and forced[c] != role:
                raise ValueError(f"column {c!r} is given two roles: {forced[c]!r} and {role!r}")
            forced[c] = role
    roles: dict[str, ColumnRole] = {}
    for c in columns:
        if c == target:
            roles[c] = ColumnRole("target", "the target column")
            continue
        if forced.get(c) == "dropped":
            roles[c] = ColumnRole("dropped", "listed in drop=")
            continue
        inferred = _infer_role(df[c], c)
        if c in forced and inferred.role != "empty":
            roles[c] = ColumnRole(forced[c], f"set by user (inferred: {inferred.role})")
        else:
            roles[c] = inferred
    return roles


def _infer_task(y: Any) -> tuple[str, str]:
    pd = _pd()
    s = pd.Series(np.asarray(y).ravel()) if not isinstance(y, pd.Series) else y
    values = s.dropna()
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "boolean":
        return "classification", "boolean target"
    if isinstance(s.dtype, pd.CategoricalDtype) or kind not in _NUMBER_KINDS:
        return "classification", "non-numeric target values"
    v = values.to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    if not np.all(v == np.round(v)):
        return "regression", "non-integer target values"
    k = len(np.unique(v))
    if k <= 2 or (k <= MAX_CLASSES and k <= MAX_CLASS_FRACTION * len(v)):
        return "classification", f"integer target with {k} distinct values in {len(v)} rows"
    return "regression", (
        f"integer target with {k} distinct values in {len(v)} rows (more than {MAX_CLASSES}, "
        f"or more than {MAX_CLASS_FRACTION:.0%} of the rows)"
    )


def infer_task(y: Any) -> str:
    """``"classification"`` or ``"regression"`` for a target (rule in the module docstring)."""
    return _infer_task(y)[0]


def _label_key(v: Any) -> Any:
    """A JSON-friendly, hashable label: NumPy scalars -> Python, integral floats -> int."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Value conversion helpers
# --------------------------------------------------------------------------------------------


def _cat_str(v: Any) -> str:
    """Canonical category string: ``1``, ``1.0`` and ``np.int64(1)`` all become ``"1"``."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (numbers.Integral, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v)


def _cat_array(s: pd.Series) -> np.ndarray:
    """Object array of category strings with ``np.nan`` for missing (what SimpleImputer wants)."""
    pd = _pd()
    vals = s.astype(object).to_numpy()
    mask = pd.isna(vals)
    if pd.api.types.infer_dtype(vals, skipna=True) == "string":  # fast path, no per-value calls
        out = vals.copy()
    else:
        out = np.array(
            [None if m else _cat_str(v) for v, m in zip(vals, mask, strict=True)], dtype=object
        )
    out[mask] = np.nan
    return out


def _num_array(s: pd.Series, name: str) -> np.ndarray:
    """float64 values; non-finite values count as missing; unparsable strings are an error."""
    pd = _pd()
    num = pd.to_numeric(s.astype(object) if s.dtype == bool else s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        examples = list(dict.fromkeys(s[bad].astype(str)))[:3]
        raise ValueError(
            f"numeric column {name!r} contains {int(bad.sum())} values that are not numbers, "
            f"e.g. {examples}"
        )
    out = num.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def _text_list(s: pd.Series) -> list[str]:
    return ["" if m else str(v) for v, m in zip(s.astype(object), s.isna(), strict=True)]


# --------------------------------------------------------------------------------------------
# The preparer
# --------------------------------------------------------------------------------------------


class TabularPreparer:
    """Turns a frame into a float32 matrix: impute, scale, one-hot, TF-IDF (scikit-learn style).

    Output columns, in order: numeric (imputed with the training median, then scaled), missing
    indicators (``add_indicators=True``: one 0/1 column per numeric or categorical column that had
    missing values in the fitting rows), one-hot categoricals (missing -> most frequent training
    value; at most ``max_categories`` most frequent categories per column, others and unseen
    values encode as all zeros), then TF-IDF per text column (missing -> empty string).

    With ``text_mode="ids"`` the text columns are left out of :meth:`transform` and
    :meth:`transform_text_ids` gives ``(n, max_len)`` int64 token ids for an ``Embedding`` layer
    (``input_dim=ids_input_dim``): all text columns of a row joined, lower-cased, tokenised like
    TF-IDF, truncated / padded at the end; 0 = padding, 1 = unknown, 2.. = training vocabulary by
    descending document frequency. ``max_len=None`` picks the 95th percentile of training lengths.

    Args:
        target: the target column, excluded from the features (may be absent at prediction).
        task: ``"classification"`` / ``"regression"``, or None to infer it from the target.
        numeric, categorical, text, drop: column-role overrides.
        scaling: ``"standard"``, ``"minmax"`` or ``"none"`` for the numeric columns.
        add_indicators: add the missing-indicator columns.
        text_mode: ``"tfidf"`` or ``"ids"``.
        max_features: vocabulary cap per text column (TF-IDF) or in total (ids).
        ngram_range: TF-IDF word n-grams, default unigrams + bigrams.
        min_df: minimal document frequency; None = 2 with >= 50 fitting rows, else 1.
        max_len: sequence length for ``text_mode="ids"``.
        max_categories: one-hot columns kept per categorical column.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        task: str | None = None,
        numeric: list[str] | None = None,
        categorical: list[str] | None = None,
        text: list[str] | None = None,
        drop: list[str] | None = None,
        scaling: str = "standard",
        add_indicators: bool = False,
        text_mode: str = "tfidf",
        max_features: int = 20000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int | None = None,
        max_len: int | None = None,
        max_categories: int = 100,
    ) -> None:
        if target is not None and not isinstance(target, str):
            raise TypeError(f"target must be a column name (str) or None, got {describe(target)}")
        if task is not None:
            check_one_of(task, "task", ("classification", "regression"))
        self.target, self.task = target, task
        self.numeric = _as_list(numeric, "numeric")
        self.categorical = _as_list(categorical, "categorical")
        self.text, self.drop = _as_list(text, "text"), _as_list(drop, "drop")
        self.scaling = check_one_of(scaling, "scaling", ("standard", "minmax", "none"))
        if not isinstance(add_indicators, bool):
            raise TypeError(f"add_indicators must be True or False, got {describe(add_indicators)}")
        self.add_indicators = add_indicators
        self.text_mode = check_one_of(text_mode, "text_mode", ("tfidf", "ids"))
        self.max_features = check_positive_int(max_features, "max_features")
        ng = list(ngram_range) if isinstance(ngram_range, (list, tuple)) else []
        if len(ng) != 2 or not all(isinstance(v, int) for v in ng) or not 1 <= ng[0] <= ng[1]:
            raise ValueError(
                f"ngram_range must be (low, high), 1 <= low <= high, got {ngram_range!r}"
            )
        self.ngram_range = (int(ng[0]), int(ng[1]))
        self.min_df = check_positive_int(min_df, "min_df", allow_none=True)
        self.max_len = check_positive_int(max_len, "max_len", allow_none=True)
        self.max_categories = check_positive_int(max_categories, "max_categories")
        self.target_: dict[str, Any] | None = None  # set by prepare_target
        self.state_: dict[str, Any] | None = None  # set by fit / from_dict
        self.report_: dict[str, Any] = {}

    def __repr__(self) -> str:
        fitted = "fitted" if self.state_ is not None else "not fitted"
        return f"TabularPreparer(target={self.target!r}, scaling={self.scaling!r}, {fitted})"

    def _config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-ready (``from_dict`` calls ``cls(**config)``)."""
        names = list(inspect.signature(TabularPreparer.__init__).parameters)[1:]
        return {
            k: list(v) if isinstance(v, tuple) else v for k in names for v in [getattr(self, k)]
        }

    # ---- target -----------------------------------------------------------------------------

    @property
    def classes_(self) -> list[Any] | None:
        """Sorted class labels (classification), None for regression or before prepare_target."""
        return None if self.target_ is None else self.target_.get("classes")

    def prepare_target(self, data: Any) -> tuple[pd.DataFrame, np.ndarray]:
        """Drop rows with a missing target, infer the task and encode the target.

        Call it on the whole data set before splitting, so that every class is known.

        Returns:
            ``(frame, y)``: the rows with a target (index reset) and y as int64 class indices
            into :attr:`classes_` (classification) or float32 values (regression).

        Raises:
            ValueError: unknown target column (the error lists the columns), a target that is
                entirely empty, a single class / single value, non-numeric regression target.
        """
        df = as_frame(data)
        t = self.target
        if t is None:
            raise ValueError("target is None: create the preparer with target='COLUMN'")
        if t not in df.columns:
            raise ValueError(
                f"target column {t!r} not found; available columns: {list(df.columns)}"
            )
        missing = df[t].isna().to_numpy()
        if missing.all():
            raise ValueError(
                f"target column {t!r} is entirely empty (all {len(df)} values missing)"
            )
        df = df.loc[~missing].reset_index(drop=True)
        task, reason = (self.task, "set by user") if self.task else _infer_task(df[t])
        info: dict[str, Any] = {
            "name": t,
            "task": task,
            "reason": reason,
            "rows_in": int(len(missing)),
            "rows_dropped_missing": int(missing.sum()),
        }
        if task == "classification":
            classes = sorted({_label_key(v) for v in df[t].astype(object)}, key=_sort_key)
            if len(classes) < 2:
                raise ValueError(
                    f"target column {t!r} has a single class {classes[0]!r}: classification needs "
                    "at least 2 classes"
                )
            info["classes"] = classes
        else:
            try:
                values = _num_array(df[t], t)
            except ValueError as exc:
                raise ValueError(f"regression target {t!r}: {exc}") from None
            if np.isnan(values).any():
                raise ValueError(f"regression target {t!r} contains infinite values")
            if len(np.unique(values)) < 2:
                raise ValueError(
                    f"target column {t!r} has a single value {values[0]!r}: nothing to learn"
                )
        self.target_ = info
        return df, self.encode_target(df[t])

    def encode_target(self, values: Any) -> np.ndarray:
        """Class labels -> int64 indices into :attr:`classes_`, or regression values -> float32."""
        pd = _pd()
        if self.target_ is None:
            raise ValueError("the target is not fitted: call prepare_target() first")
        s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
        if s.isna().any():
            raise ValueError(f"target values contain {int(s.isna().sum())} missing values")
        if self.target_["task"] == "regression":
            return _num_array(s, self.target_["name"]).astype(np.float32)
        index = {c: i for i, c in enumerate(self.target_["classes"])}
        keys = [_label_key(v) for v in s.astype(object)]
        unknown = sorted({k for k in keys if k not in index}, key=_sort_key)
        if unknown:
            raise ValueError(
                f"target values {unknown[:5]} are not among the training classes {list(index)}"
            )
        return np.array([index[k] for k in keys], dtype=np.int64)

    def decode_target(self, y: Any) -> np.ndarray:
        """Class indices -> labels (object array); regression values are returned as given."""
        if self.target_ is None:
            raise ValueError("the target is not fitted: call prepare_target() first")
        if self.target_["task"] == "regression":
            return np.asarray(y)
        classes = np.array(self.target_["classes"], dtype=object)
        return classes[np.asarray(y, dtype=np.int64)]

    # ---- fitting ----------------------------------------------------------------------------

    def fit(self, data: Any) -> TabularPreparer:
        """Infer column roles and fit every statistic on ``data`` (the TRAINING rows only)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import MinMaxScaler, StandardScaler

        df = as_frame(data)
        if len(df) == 0:
            raise ValueError("data has no rows to fit on")
        roles = infer_roles(
            df,
            self.target if self.target in df.columns else None,
            numeric=self.numeric,
            categorical=self.categorical,
            text=self.text,
            drop=self.drop,
        )
        cols = {r: [c for c, cr in roles.items() if cr.role == r] for r in FEATURE_ROLES}
        n = len(df)
        min_df = self.min_df if self.min_df is not None else (2 if n >= 50 else 1)
        imputed: dict[str, dict[str, Any]] = {}
        state: dict[str, Any] = {"columns": dict(cols), "indicators": []}

        if cols["numeric"]:
            num = np.column_stack([_num_array(df[c], c) for c in cols["numeric"]])
            miss = np.isnan(num)
            filled = SimpleImputer(strategy="median").fit(num)
            x = filled.transform(num)
            stats = filled.statistics_.tolist()
            sc: dict[str, Any] = {"kind": self.scaling}
            if self.scaling == "standard":
                s = StandardScaler().fit(x)
                sc.update(mean=s.mean_.tolist(), var=s.var_.tolist(), scale=s.scale_.tolist())
            elif self.scaling == "minmax":
                m = MinMaxScaler().fit(x)
                sc.update(
                    data_min=m.data_min_.tolist(),
                    data_max=m.data_max_.tolist(),
                    data_range=m.data_range_.tolist(),
                    scale=m.scale_.tolist(),
                    min=m.min_.tolist(),
                )
            sc["n_samples_seen"] = n
            state["numeric"] = {"fill": stats, "scaler": sc}
            for j, c in enumerate(cols["numeric"]):
                if miss[:, j].any():
                    k = int(miss[:, j].sum())
                    imputed[c] = {"count": k, "value": stats[j], "how": "median"}
                    if self.add_indicators:
                        state["indicators"].append(c)

        if cols["categorical"]:
            raw = np.column_stack([_cat_array(df[c]) for c in cols["categorical"]])
            imp = SimpleImputer(strategy="most_frequent").fit(raw)
            filled_cat = imp.transform(raw)
            fills, cats, seen = [], [], {}
            for j, c in enumerate(cols["categorical"]):
                k = int(_pd().isna(raw[:, j]).sum())
                fills.append(str(imp.statistics_[j]))
                if k:
                    imputed[c] = {"count": k, "value": fills[-1], "how": "most frequent"}
                    if self.add_indicators:
                        state["indicators"].append(c)
                counts = Counter(filled_cat[:, j].tolist())
                top = sorted(counts, key=lambda v: (-counts[v], v))[: self.max_categories]
                cats.append(sorted(top))
                seen[c] = len(counts)
            state["categorical"] = {"fill": fills, "categories": cats, "n_seen": seen}

        text_cols, dropped_text = list(cols["text"]), {}
        if text_cols and self.text_mode == "tfidf":
            vecs = []
            for c in list(text_cols):
                docs = _text_list(df[c])
                vec = None
                for md in dict.fromkeys((min_df, 1)):  # retry with min_df=1 before giving up
                    try:
                        vec = TfidfVectorizer(
                            ngram_range=self.ngram_range, max_features=self.max_features, min_df=md
                        ).fit(docs)
                        break
                    except ValueError:  # empty vocabulary: no tokens of 2+ word characters
                        continue
                if vec is None:
                    text_cols.remove(c)
                    dropped_text[c] = "text column without any word tokens in the fitting rows"
                    continue
                vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
                vecs.append({"vocabulary": vocab, "idf": vec.idf_.tolist()})
            state["text"] = {"vectorizers": vecs}
        elif text_cols:
            docs = [
                " ".join(parts)
                for parts in zip(*(_text_list(df[c]) for c in text_cols), strict=True)
            ]
            tokens = [_TOKEN_RE.findall(d.lower()) for d in docs]
            dfreq = Counter(t for toks in tokens for t in set(toks))
            vocab = sorted(
                (t for t, k in dfreq.items() if k >= min_df), key=lambda t: (-dfreq[t], t)
            )
            lengths = [len(t) for t in tokens]
            max_len = self.max_len or int(min(256, max(1, np.percentile(lengths, 95))))
            state["ids"] = {"vocabulary": vocab[: self.max_features], "max_len": max_len}
        for c in text_cols:
            k = int(df[c].isna().sum())
            if k:
                imputed[c] = {"count": k, "value": "", "how": "empty string"}
        for c, why in dropped_text.items():
            roles[c] = ColumnRole("empty", why)
        state["columns"]["text"] = text_cols

        if not any(state["columns"].values()):
            dropped = {c: f"{r.role}: {r.reason}" for c, r in roles.items() if r.role != "target"}
            raise ValueError(f"no usable feature columns in data; dropped: {dropped}")
        state["roles"] = {c: [r.role, r.reason, str(df[c].dtype)] for c, r in roles.items()}
        self._load_state(state)
        self.report_ = {"rows_fit": n, "imputed": imputed, "min_df": min_df}
        return self

    def fit_transform(self, data: Any) -> np.ndarray:
        """``fit(data)`` then ``transform(data)``."""
        return self.fit(data).transform(data)

    # ---- rebuilding scikit-learn objects from plain state ------------------------------------

    def _load_state(self, state: dict[str, Any]) -> None:
        """Build the scikit-learn objects from plain values; fit() and from_dict() both use this,
        so an original and a reloaded preparer run the same code on the same numbers."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

        self._num_imputer = self._scaler = self._cat_imputer = self._encoder = None
        self._vectorizers: list[Any] = []
        if "numeric" in state:
            fill = np.asarray(state["numeric"]["fill"], dtype=np.float64)
            # The median of one row is that row: the imputer's statistics_ are exactly `fill`.
            self._num_imputer = SimpleImputer(strategy="median").fit(fill[None, :])
            sc = state["numeric"]["scaler"]
            arrays = {
                k: np.asarray(v, dtype=np.float64) for k, v in sc.items() if isinstance(v, list)
            }
            if sc["kind"] != "none":
                scaler = StandardScaler() if sc["kind"] == "standard" else MinMaxScaler()
                for k, v in arrays.items():
                    setattr(scaler, k + "_", v)
                scaler.n_features_in_, scaler.n_samples_seen_ = len(fill), int(sc["n_samples_seen"])
                self._scaler = scaler
        if "categorical" in state:
            fill = np.array(state["categorical"]["fill"], dtype=object)
            self._cat_imputer = SimpleImputer(strategy="most_frequent").fit(fill[None, :])
            cats = [list(c) for c in state["categorical"]["categories"]]
            self._encoder = OneHotEncoder(
                categories=cats, handle_unknown="ignore", sparse_output=False
            )
            self._encoder.fit(np.array([[c[0] for c in cats]], dtype=object))
        for v in state.get("text", {}).get("vectorizers", []):
            vec = TfidfVectorizer(
                ngram_range=self.ngram_range,
                vocabulary={t: i for i, t in enumerate(v["vocabulary"])},
            )
            vec.idf_ = np.asarray(v["idf"], dtype=np.float64)
            self._vectorizers.append(vec)
        if "ids" in state:
            self._ids_index = {t: i + 2 for i, t in enumerate(state["ids"]["vocabulary"])}
        self.state_ = state

    # ---- transforming -----------------------------------------------------------------------

    def _check_input(self, data: Any) -> pd.DataFrame:
        if self.state_ is None:
            raise ValueError("this TabularPreparer is not fitted: call fit() first")
        df = as_frame(data)
        needed = [c for r in FEATURE_ROLES for c in self.state_["columns"][r]]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise ValueError(
                f"data is missing the feature columns {missing} used at fit time; "
                f"got columns {list(df.columns)}"
            )
        return df

    def transform(self, data: Any) -> np.ndarray:
        """Features as a float32 array ``(n_rows, n_features_out)``.

        Extra columns (and the target) are ignored; missing values are imputed with the training
        statistics; unseen categories encode as all zeros.

        Raises:
            ValueError: feature columns used at fit time are missing (the error names them), or a
                numeric column holds values that are not numbers.
        """
        df = self._check_input(data)
        cols = self.state_["columns"]
        if len(df) == 0:
            return np.zeros((0, len(self.feature_names_out())), dtype=np.float32)
        blocks: list[np.ndarray] = []
        if cols["numeric"]:
            x = np.column_stack([_num_array(df[c], c) for c in cols["numeric"]])
            x = self._num_imputer.transform(x)
            blocks.append(self._scaler.transform(x) if self._scaler is not None else x)
        if self.state_["indicators"]:
            pd = _pd()
            ind = [
                np.isnan(_num_array(df[c], c))
                if c in cols["numeric"]
                else pd.isna(df[c]).to_numpy()
                for c in self.state_["indicators"]
            ]
            blocks.append(np.column_stack(ind).astype(np.float64))
        if cols["categorical"]:
            raw = np.column_stack([_cat_array(df[c]) for c in cols["categorical"]])
            with warnings.catch_warnings():  # unseen / collapsed categories -> zeros, by design
                warnings.filterwarnings("ignore", message="Found unknown categories")
                blocks.append(self._encoder.transform(self._cat_imputer.transform(raw)))
        for (c, _), vec in zip(self._tfidf_state(), self._vectorizers, strict=True):
            blocks.append(vec.transform(_text_list(df[c])).toarray())
        return (
            np.hstack(blocks).astype(np.float32) if blocks else np.zeros((len(df), 0), np.float32)
        )

    def transform_text_ids(self, data: Any) -> np.ndarray:
        """Token ids ``(n_rows, max_len)`` int64 for ``text_mode="ids"`` (0 pad, 1 unknown)."""
        df = self._check_input(data)
        if "ids" not in self.state_:
            raise ValueError(
                "transform_text_ids needs text_mode='ids' and at least one text column; "
                f"got text_mode={self.text_mode!r}, text columns {self.state_['columns']['text']}"
            )
        max_len = self.state_["ids"]["max_len"]
        cols = self.state_["columns"]["text"]
        out = np.zeros((len(df), max_len), dtype=np.int64)
        docs = zip(*(_text_list(df[c]) for c in cols), strict=True) if len(df) else []
        for i, parts in enumerate(docs):
            ids = [self._ids_index.get(t, 1) for t in _TOKEN_RE.findall(" ".join(parts).lower())]
            out[i, : min(len(ids), max_len)] = ids[:max_len]
        return out

    @property
    def ids_input_dim(self) -> int:
        """``Embedding`` input size for :meth:`transform_text_ids`: vocabulary size + 2."""
        if self.state_ is None or "ids" not in self.state_:
            raise ValueError("ids_input_dim needs a preparer fitted with text_mode='ids'")
        return len(self.state_["ids"]["vocabulary"]) + 2

    def feature_names_out(self) -> list[str]:
        """Names of the :meth:`transform` columns: ``age``, ``age__missing``, ``city=Paris``,
        ``review:good``."""
        if self.state_ is None:
            raise ValueError("this TabularPreparer is not fitted: call fit() first")
        st = self.state_
        names = list(st["columns"]["numeric"]) + [f"{c}__missing" for c in st["indicators"]]
        if "categorical" in st:
            for c, cats in zip(
                st["columns"]["categorical"], st["categorical"]["categories"], strict=True
            ):
                names += [f"{c}={v}" for v in cats]
        for c, v in self._tfidf_state():
            names += [f"{c}:{t}" for t in v["vocabulary"]]
        return names

    def _tfidf_state(self) -> list[tuple[str, dict[str, Any]]]:
        """``(column, {"vocabulary", "idf"})`` per TF-IDF text column; empty in ids mode."""
        if "text" not in self.state_:
            return []
        cols = self.state_["columns"]["text"]
        return list(zip(cols, self.state_["text"]["vectorizers"], strict=True))

    # ---- reporting --------------------------------------------------------------------------

    @property
    def report(self) -> dict[str, Any]:
        """What was done, as a JSON-serialisable dict (see :meth:`summary` for the text form)."""
        if self.state_ is None:
            raise ValueError("this TabularPreparer is not fitted: call fit() first")
        st = self.state_
        roles = {
            c: {"role": r, "reason": why, "dtype": dt} for c, (r, why, dt) in st["roles"].items()
        }
        cat_info = {}
        for j, c in enumerate(st["columns"]["categorical"]):
            cats = st["categorical"]["categories"][j]
            cat_info[c] = {"n_seen": st["categorical"]["n_seen"][c], "n_kept": len(cats)}
        text_vocab = {c: len(v["vocabulary"]) for c, v in self._tfidf_state()}
        return {
            "rows_fit": self.report_.get("rows_fit"),
            "target": self.target_,
            "columns": roles,
            "features": {r: list(st["columns"][r]) for r in FEATURE_ROLES},
            "dropped": {
                c: f"{v['role']}: {v['reason']}"
                for c, v in roles.items()
                if v["role"] not in FEATURE_ROLES + ("target",)
            },
            "imputed": self.report_.get("imputed", {}),
            "indicators": list(st["indicators"]),
            "categories": cat_info,
            "text_vocabulary": text_vocab,
            "ids": (
                {"vocabulary": len(st["ids"]["vocabulary"]), "max_len": st["ids"]["max_len"]}
                if "ids" in st
                else None
            ),
            "scaling": self.scaling,
            "split": self.report_.get("split"),
            "n_features_out": len(self.feature_names_out()),
        }

    def summary(self) -> str:
        """Human-readable account of the preparation: rows, roles with reasons, imputation..."""
        r = self.report
        lines = ["Data preparation"]
        t = r["target"]
        if t:
            kept = t["rows_in"] - t["rows_dropped_missing"]
            lines.append(
                f"  rows: {t['rows_in']} read, {t['rows_dropped_missing']} dropped (missing "
                f"target), {kept} kept; {r['rows_fit']} used to fit the preparation"
            )
            task = f"  target: {t['name']!r} -> {t['task']} ({t['reason']})"
            if t.get("classes") is not None:
                shown = ", ".join(map(str, t["classes"][:10])) + (
                    ", ..." * (len(t["classes"]) > 10)
                )
                task += f", {len(t['classes'])} classes: {shown}"
            lines.append(task)
        else:
            lines.append(f"  rows: {r['rows_fit']} used to fit the preparation")
        width = max([len(c) for c in r["columns"]] + [6])
        lines.append("  columns:")
        for c, v in r["columns"].items():
            lines.append(f"    {c:<{width}}  {v['role']:<11}  {v['reason']}")
        if r["imputed"]:
            lines.append("  imputed (fitting rows):")
            for c, v in r["imputed"].items():
                lines.append(
                    f"    {c:<{width}}  {v['count']} values -> {v['value']!r} ({v['how']})"
                )
        for c, v in r["categories"].items():
            extra = f" (kept the {v['n_kept']} most frequent)" if v["n_kept"] < v["n_seen"] else ""
            lines.append(f"  categories: {c}: {v['n_seen']}{extra}")
        for c, k in r["text_vocabulary"].items():
            lines.append(f"  text vocabulary: {c}: {k} terms (TF-IDF, n-grams {self.ngram_range})")
        if r["split"]:
            sp = r["split"]
            how = "stratified" if sp["stratified"] else "random"
            lines.append(
                f"  split: {sp['train']} train / {sp['val']} val / {sp['test']} test ({how})"
            )
            lines += [f"    note: {sp['note']}"] if sp["note"] else []
        if r["ids"]:
            lines.append(
                f"  token ids: vocabulary {r['ids']['vocabulary']} (+2 for padding/unknown), "
                f"max_len {r['ids']['max_len']}"
            )
        f = r["features"]
        lines.append(
            f"  output: {r['n_features_out']} features ({len(f['numeric'])} numeric, scaling "
            f"{self.scaling!r}; {len(r['indicators'])} missing indicators; "
            f"{sum(v['n_kept'] for v in r['categories'].values())} one-hot; "
            f"{sum(r['text_vocabulary'].values())} TF-IDF)"
        )
        return "\n".join(lines)

    # ---- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted preparer as plain JSON values (no pickle); see :meth:`from_dict`."""
        if self.state_ is None:
            raise ValueError("this TabularPreparer is not fitted: call fit() first")
        return copy.deepcopy(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "config": self._config(),
                "state": self.state_,
                "target": self.target_,
                "fit_report": self.report_,
            }
        )

    @classmethod
    def from_dict(cls, d: Any) -> TabularPreparer:
        """Rebuild a preparer saved by :meth:`to_dict`; its transform output is bit-identical.

        Raises:
            ValueError: ``d`` is not a lucidnet preparer dict of a supported version, or is
                malformed (the message says which entry).
        """

        def bad(msg: str) -> ValueError:
            return ValueError(f"malformed preparer dict: {msg}")

        if not isinstance(d, dict):
            raise bad(f"expected a dict, got {describe(d)}")
        if d.get("format") != FORMAT:
            raise bad(f"'format' must be {FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != FORMAT_VERSION:
            raise bad(
                f"unsupported 'version' {d.get('version')!r} (this lucidnet reads {FORMAT_VERSION})"
            )
        for key, typ in (("config", dict), ("state", dict), ("fit_report", dict)):
            if not isinstance(d.get(key), typ):
                raise bad(f"{key!r} must be a dict, got {describe(d.get(key))}")
        if d.get("target") is not None and not isinstance(d["target"], dict):
            raise bad(f"'target' must be a dict or None, got {describe(d['target'])}")
        try:
            prep = cls(**d["config"])
        except (TypeError, ValueError) as exc:
            raise bad(f"invalid 'config': {exc}") from None
        st = d["state"]
        try:
            _validate_state(st, prep.scaling)
            if d["target"] is not None:
                t = d["target"]
                if t.get("task") not in ("classification", "regression") or not isinstance(
                    t.get("name"), str
                ):
                    raise ValueError("'target' needs 'name' (str) and 'task'")
                if t["task"] == "classification" and not isinstance(t.get("classes"), list):
                    raise ValueError("'target' of a classification task needs a 'classes' list")
            prep._load_state(copy.deepcopy(st))
        except KeyError as exc:
            raise bad(f"missing entry {exc} in 'state'") from None
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise bad(str(exc)) from None
        prep.target_, prep.report_ = copy.deepcopy(d["target"]), copy.deepcopy(d["fit_report"])
        return prep


def _validate_state(st: dict[str, Any], scaling: str) -> None:
    """Check shapes and types of a state dict before rebuilding scikit-learn objects from it."""

    def lst(v: Any, where: str, n: int | None = None, kind: type | tuple = (int, float)) -> list:
        if not isinstance(v, list) or not all(
            isinstance(x, kind) and not isinstance(x, bool) for x in v
        ):
            raise ValueError(f"{where} must be a list of {getattr(kind, '__name__', 'numbers')}")
        if n is not None and len(v) != n:
            raise ValueError(f"{where} must have {n} entries, got {len(v)}")
        return v

    cols = st.get("columns")
    if not isinstance(cols, dict) or set(cols) != set(FEATURE_ROLES):
        raise ValueError(f"'state.columns' must map each of {list(FEATURE_ROLES)} to a list")
    for r in FEATURE_ROLES:
        lst(cols[r], f"state.columns.{r}", kind=str)
    roles = st.get("roles")
    if not isinstance(roles, dict) or not all(
        isinstance(v, list) and len(v) == 3 and all(isinstance(x, str) for x in v)
        for v in roles.values()
    ):
        raise ValueError("'state.roles' must map column names to [role, reason, dtype]")
    lst(st.get("indicators"), "state.indicators", kind=str)
    if cols["numeric"]:
        n = len(cols["numeric"])
        lst(st["numeric"]["fill"], "state.numeric.fill", n)
        sc = st["numeric"]["scaler"]
        if sc.get("kind") != scaling:
            raise ValueError(
                f"state.numeric.scaler.kind must be {scaling!r}, got {sc.get('kind')!r}"
            )
        keys = {
            "standard": ("mean", "var", "scale"),
            "minmax": ("data_min", "data_max", "data_range", "scale", "min"),
        }
        for k in keys.get(scaling, ()):
            lst(sc.get(k), f"state.numeric.scaler.{k}", n)
        if not isinstance(sc.get("n_samples_seen"), int):
            raise ValueError("state.numeric.scaler.n_samples_seen must be an int")
    if cols["categorical"]:
        n = len(cols["categorical"])
        lst(st["categorical"]["fill"], "state.categorical.fill", n, str)
        cats = st["categorical"]["categories"]
        if not isinstance(cats, list) or len(cats) != n:
            raise ValueError(f"state.categorical.categories must be a list of {n} lists")
        for j, c in enumerate(cats):
            if not lst(c, f"state.categorical.categories[{j}]", kind=str):
                raise ValueError(f"state.categorical.categories[{j}] is empty")
        if set(st["categorical"]["n_seen"]) != set(cols["categorical"]):
            raise ValueError("state.categorical.n_seen must have one count per categorical column")
    if "ids" in st:
        lst(st["ids"]["vocabulary"], "state.ids.vocabulary", kind=str)
        check_positive_int(st["ids"]["max_len"], "state.ids.max_len")
    elif cols["text"]:
        vecs = st["text"]["vectorizers"]
        if not isinstance(vecs, list) or len(vecs) != len(cols["text"]):
            raise ValueError(f"state.text.vectorizers must be a list of {len(cols['text'])} dicts")
        for j, v in enumerate(vecs):
            voc = lst(v["vocabulary"], f"state.text.vectorizers[{j}].vocabulary", kind=str)
            lst(v["idf"], f"state.text.vectorizers[{j}].idf", len(voc))


# --------------------------------------------------------------------------------------------
# One call for the CLI
# --------------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """Everything :func:`prepare` produces. ``ids_*`` are set only with ``text_mode="ids"``."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    preparer: TabularPreparer
    split: Split
    ids_train: np.ndarray | None = None
    ids_val: np.ndarray | None = None
    ids_test: np.ndarray | None = None


def prepare(
    data: Any,
    target: str,
    *,
    test_size: float = 0.2,
    val_size: float = 0.1,
    seed: int = 0,
    **preparer_kwargs: Any,
) -> PreparedData:
    """Read / accept data, encode the target, split (seeded, stratified) and fit on train only.

    ``preparer_kwargs`` go to :class:`TabularPreparer` (``task``, ``categorical``, ``scaling``...).
    """
    prep = TabularPreparer(target, **preparer_kwargs)
    df, y = prep.prepare_target(as_frame(data))
    split = train_val_test_split(y, test_size, val_size, task=prep.target_["task"], seed=seed)
    prep.fit(df.iloc[split.train])
    parts = {k: df.iloc[getattr(split, k)] for k in ("train", "val", "test")}
    ids = {
        k: prep.transform_text_ids(v) if "ids" in prep.state_ else None for k, v in parts.items()
    }
    prep.report_["split"] = split.to_dict()
    return PreparedData(
        X_train=prep.transform(parts["train"]),
        y_train=y[split.train],
        X_val=prep.transform(parts["val"]),
        y_val=y[split.val],
        X_test=prep.transform(parts["test"]),
        y_test=y[split.test],
        preparer=prep,
        split=split,
        ids_train=ids["train"],
        ids_val=ids["val"],
        ids_test=ids["test"],
    )
