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

Reading, column roles and task inference live in :mod:`lucidnet.columns` (the rules are in its
docstring), splitting in :mod:`lucidnet.splits`; their public names are re-exported here so that
``from lucidnet.prep import read_csv, train_val_test_split`` keeps working.

pandas and scikit-learn are imported inside the functions so that ``import lucidnet`` stays fast.
"""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_one_of, check_positive_int, describe
from .._validation import json_kind as state_kind
from ._prep_state import FEATURE_ROLES as FEATURE_ROLES
from ._prep_state import PreparationWarning as PreparationWarning
from ._prep_state import clean_fit_report, validate_state, validate_target
from .columns import ID_MIN_ROWS as ID_MIN_ROWS
from .columns import MAX_CLASS_FRACTION as MAX_CLASS_FRACTION
from .columns import MAX_CLASSES as MAX_CLASSES
from .columns import TEXT_MIN_WORDS as TEXT_MIN_WORDS
from .columns import (
    ColumnRole,
    _as_list,
    _cat_array,
    _category_counts,
    _infer_target,
    _label_key,
    _num_array,
    _pd,
    _sort_key,
    _text_list,
    as_frame,
    cyclic_period,
    date_feature_names,
    date_features,
    date_origin,
    heavy_tailed,
    infer_roles,
    infer_task,
    read_csv,
)
from .limits import DEFAULT_MAX_CLASSES as DEFAULT_MAX_CLASSES
from .limits import FeatureWidths, LimitError, check_classes, check_matrix_memory
from .splits import Split, train_val_test_split

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ColumnRole",
    "InputDrift",
    "LimitError",
    "OutOfRange",
    "PreparedData",
    "Split",
    "TabularPreparer",
    "UnseenCategories",
    "as_frame",
    "infer_roles",
    "infer_task",
    "prepare",
    "read_csv",
    "train_val_test_split",
]

FORMAT = "lucidnet.prep"
FORMAT_VERSION = 1
_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")  # TfidfVectorizer's default token pattern
#: :meth:`TabularPreparer.transform` works through the rows in chunks whose float64 intermediate
#: blocks (parsed and scaled numbers, one-hot columns) take about this many bytes, so that its
#: memory is the float32 result plus a bounded amount, whatever the number of rows; every step
#: is row by row, so the result is the same as in one piece.
TRANSFORM_CHUNK_BYTES = 32 * 2**20
_MIN_CHUNK_ROWS = 1024  # below this, per-call overheads of scikit-learn would dominate


# --------------------------------------------------------------------------------------------
# The preparer
# --------------------------------------------------------------------------------------------


class TabularPreparer:
    """Turns a frame into a float32 matrix: impute, scale, one-hot, TF-IDF (scikit-learn style).

    Output columns, in order: numeric (imputed with the training median, then scaled), missing
    indicators (``add_indicators=True``, the default: one 0/1 column ``"<col> is missing"`` per
    numeric column that had missing values in the fitting rows), one-hot categoricals, date
    features (standardised), cyclic integer codes (``"<col>:sin"``, ``"<col>:cos"`` of ``2 pi
    value / period``, 0 and 0 where missing), then TF-IDF per text column (missing -> empty
    string).

    Categorical columns keep at most ``max_categories`` categories each (the most frequent;
    others and unseen values encode as all zeros). With ``missing_category=True`` (the default)
    a column with missing values in the fitting rows gets a category of its own, one-hot column
    ``"<col>=(missing)"``, always kept: a missing value often means something (no complaint
    reason = not a complaint) that a filled-in value would hide. A missing value in a column
    that had none in the fitting rows encodes as all zeros, like an unseen value. With
    ``missing_category=False`` missing values take the most frequent training value (and, with
    ``add_indicators``, a ``"<col> is missing"`` column), as before this option existed.

    With ``text_mode="ids"`` the text columns are left out of :meth:`transform` and
    :meth:`transform_text_ids` gives ``(n, max_len)`` int64 token ids for an ``Embedding`` layer
    (``input_dim=ids_input_dim``): all text columns of a row joined, lower-cased, tokenised like
    TF-IDF, truncated / padded at the end; 0 = padding, 1 = unknown, 2.. = training vocabulary by
    descending document frequency. ``max_len=None`` picks the 95th percentile of training lengths.

    Args:
        target: the target column, excluded from the features (may be absent at prediction).
        task: ``"classification"`` / ``"regression"``, or None to infer it from the target.
        numeric, categorical, text, drop: column-role overrides.
        dates: columns to parse as dates whatever they look like (the format is detected; an
            error shows values that do not parse).
        exclude: columns to leave out, each with the reason the role table gives (what
            :func:`prepare`'s leakage guard excludes: ``{"col": "excluded as likely target
            leakage: ..."}``).
        scaling: ``"standard"``, ``"minmax"`` or ``"none"`` for the numeric columns.
        add_indicators: add the missing-indicator columns (numeric columns; categorical ones
            too when ``missing_category=False``).
        missing_category: a category of its own for missing categorical values (else the most
            frequent training value).
        text_mode: ``"tfidf"`` or ``"ids"``.
        max_features: vocabulary cap per text column (TF-IDF) or in total (ids).
        ngram_range: TF-IDF word n-grams, default unigrams + bigrams.
        min_df: minimal document frequency; None = 2 with >= 50 fitting rows, else 1.
        max_len: sequence length for ``text_mode="ids"``.
        max_categories: one-hot columns kept per categorical column.
        log_heavy_tails: pass heavy-tailed numeric columns (non-negative, spanning several
            orders of magnitude: :func:`lucidnet.data.columns.heavy_tailed`) through ``log1p``
            before imputing and scaling them (the role table says which). At transform time a
            negative value in such a column is taken as 0 (:meth:`input_drift` reports it).
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
        dates: list[str] | None = None,
        exclude: dict[str, str] | None = None,
        scaling: str = "standard",
        add_indicators: bool = True,
        missing_category: bool = True,
        text_mode: str = "tfidf",
        max_features: int = 20000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int | None = None,
        max_len: int | None = None,
        max_categories: int = 100,
        log_heavy_tails: bool = True,
    ) -> None:
        if target is not None and not isinstance(target, str):
            raise TypeError(f"target must be a column name (str) or None, got {describe(target)}")
        if task is not None:
            check_one_of(task, "task", ("classification", "regression"))
        self.target, self.task = target, task
        self.numeric = _as_list(numeric, "numeric")
        self.categorical = _as_list(categorical, "categorical")
        self.text, self.drop = _as_list(text, "text"), _as_list(drop, "drop")
        self.dates = _as_list(dates, "dates")
        if exclude is not None and (
            not isinstance(exclude, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in exclude.items())
        ):
            raise TypeError(
                f"exclude must map column names to reasons (str -> str), got {describe(exclude)}"
            )
        self.exclude: dict[str, str] | None = dict(exclude) if exclude is not None else None
        self.scaling = check_one_of(scaling, "scaling", ("standard", "minmax", "none"))
        if not isinstance(add_indicators, bool):
            raise TypeError(f"add_indicators must be True or False, got {describe(add_indicators)}")
        if not isinstance(missing_category, bool):
            raise TypeError(
                f"missing_category must be True or False, got {describe(missing_category)}"
            )
        self.add_indicators, self.missing_category = add_indicators, missing_category
        if not isinstance(log_heavy_tails, bool):
            raise TypeError(
                f"log_heavy_tails must be True or False, got {describe(log_heavy_tails)}"
            )
        self.log_heavy_tails = log_heavy_tails
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
        task, reason, count = _infer_target(df[t], self.task)
        info: dict[str, Any] = {
            "name": t,
            "task": task,
            "reason": reason,
            "rows_in": int(len(missing)),
            "rows_dropped_missing": int(missing.sum()),
        }
        if task == "regression":  # non-negative integers: the CLI fits them as counts (Poisson)
            info["count"] = count
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
        self._fit(data)
        return self

    def _fit(
        self, data: Any, check_widths: Callable[[FeatureWidths], None] | None = None
    ) -> list[Any]:
        """:meth:`fit`; returns the TF-IDF matrices of ``data``'s text columns (scipy sparse),
        computed by the fitting itself, for :meth:`fit_transform`.

        ``check_widths`` (:func:`prepare`'s memory check) is called with the output's columns
        once the roles, the numeric and the categorical columns are fitted, before any text
        column is tokenised (text columns counted at their ``max_features`` cap); it raises to
        stop the fit."""
        df = as_frame(data)
        if len(df) == 0:
            raise ValueError("data has no rows to fit on")
        roles = self._infer_roles(df)
        cols = {r: [c for c, cr in roles.items() if cr.role == r] for r in FEATURE_ROLES}
        n = len(df)
        min_df = self.min_df if self.min_df is not None else (2 if n >= 50 else 1)
        imputed: dict[str, dict[str, Any]] = {}  # column -> what was filled in, for the report
        state: dict[str, Any] = {"columns": dict(cols), "indicators": []}
        if cols["numeric"]:
            state["numeric"] = self._fit_numeric(df, cols["numeric"], imputed, state["indicators"])
        if cols["categorical"]:
            state["categorical"] = self._fit_categorical(
                df, cols["categorical"], imputed, state["indicators"]
            )
        date_cols = [c for c, cr in roles.items() if cr.role == "date"]
        if date_cols:
            state["dates"] = _fit_dates(df, date_cols, roles, imputed, self.add_indicators)
        cyclic_cols = [c for c, cr in roles.items() if cr.role == "cyclic"]
        if cyclic_cols:
            state["cyclic"] = _fit_cyclic(df, cyclic_cols, roles, imputed, self.add_indicators)
        if check_widths is not None:
            check_widths(self._widths_before_text(state))
        fitted_text = self._fit_text(df, min_df, roles, imputed, state)
        if not any(state["columns"].values()) and not date_cols and not cyclic_cols:
            dropped = {c: f"{r.role}: {r.reason}" for c, r in roles.items() if r.role != "target"}
            raise ValueError(f"no usable feature columns in data; dropped: {dropped}")
        dtypes = {c: str(df[c].dtype) for c in roles}
        report = {"rows_fit": n, "imputed": imputed, "min_df": min_df}
        self._finish_fit(state, roles, dtypes, report)
        return fitted_text

    def _infer_roles(self, df: pd.DataFrame) -> dict[str, ColumnRole]:
        """The column roles of the fitting rows ``df``, with this preparer's overrides."""
        return infer_roles(
            df,
            self.target if self.target in df.columns else None,
            numeric=self.numeric,
            categorical=self.categorical,
            text=self.text,
            drop=self.drop,
            dates=self.dates,
            excluded=self.exclude,
        )

    def _finish_fit(
        self,
        state: dict[str, Any],
        roles: dict[str, ColumnRole],
        dtypes: dict[str, str],
        report: dict[str, Any],
    ) -> None:
        """The last step of fitting, from the fitted statistics in ``state`` (in memory, or
        streamed by :mod:`lucidnet.data.streaming`): the role table, the fitted objects, the
        fit report (``rows_fit``, ``imputed``, ``min_df``)."""
        state["roles"] = {c: [r.role, r.reason, dtypes[c]] for c, r in roles.items()}
        for c, why in self._heavy_tail_notes(state).items():
            state["roles"][c][1] += f"; {why}"
        self._load_state(state)
        self.report_ = report

    def _widths_before_text(self, state: dict[str, Any]) -> FeatureWidths:
        """The output columns known once numeric and categorical columns are fitted, with each
        TF-IDF text column at its cap (``max_features``), for the memory check."""
        cols = state["columns"]
        tfidf = self.text_mode == "tfidf"
        return FeatureWidths(
            numeric=len(cols["numeric"]) + len(state["indicators"]),
            dates=len(_date_names(state)),
            cyclic=len(_cyclic_names(state)),
            one_hot=sum(len(c) for c in state.get("categorical", {}).get("categories", [])),
            text=tuple(self.max_features for _ in cols["text"]) if tfidf else (),
            max_features=self.max_features,
            max_categories=self.max_categories,
            categorical_columns=len(cols["categorical"]),
            ids_bytes_per_row=8 * (self.max_len or 256) if cols["text"] and not tfidf else 0,
        )

    def _fit_numeric(
        self, df: pd.DataFrame, columns: list[str], imputed: dict, indicators: list[str]
    ) -> dict[str, Any]:
        """The numeric columns' training range (``min``, ``max``, raw values, for
        :meth:`input_drift`), which of them are log-transformed (``log``, heavy tails), median
        fill values and the scaler's statistics (both after the log, the scaler's after
        filling); records the imputed columns (and their indicators)."""
        from sklearn.impute import SimpleImputer

        num = np.column_stack([_num_array(df[c], c) for c in columns])
        seen = [num[np.isfinite(num[:, j]), j] for j in range(len(columns))]
        lo = [float(v.min()) if len(v) else 0.0 for v in seen]
        hi = [float(v.max()) if len(v) else 0.0 for v in seen]
        log = [self.log_heavy_tails and heavy_tailed(num[:, j]) for j in range(len(columns))]
        num[:, np.asarray(log, bool)] = np.log1p(num[:, np.asarray(log, bool)])
        stats = []
        for j, c in enumerate(columns):
            # one column at a time: the imputer's masked median holds several copies of its
            # input (~5x), so this bounds the temporary memory by one column; same medians
            stats += SimpleImputer(strategy="median").fit(num[:, [j]]).statistics_.tolist()
            miss = np.isnan(num[:, j])
            if miss.any():
                # the report gives the fill in the column's own units (exp(median log) - 1)
                shown = float(np.expm1(stats[j])) if log[j] else stats[j]
                imputed[c] = {"count": int(miss.sum()), "value": shown, "how": "median"}
                if self.add_indicators:
                    indicators.append(c)
                num[miss, j] = stats[j]  # what the fitted imputer's transform writes
        scaler = self._scaler_state(num)
        return {"fill": stats, "scaler": scaler, "log": log, "min": lo, "max": hi}

    def _heavy_tail_notes(self, state: dict[str, Any]) -> dict[str, str]:
        """Per log-transformed column, its note for the role table: ``"heavy-tailed: 0.09 to
        730,000 -> log1p then standardised"``."""
        num = state.get("numeric", {})
        then = {"standard": "standardised", "minmax": "min-max scaled", "none": "not scaled"}
        return {
            c: f"heavy-tailed: {_num(num['min'][j])} to {_num(num['max'][j])} -> log1p then "
            + then[self.scaling]
            for j, c in enumerate(state["columns"]["numeric"])
            if num["log"][j]
        }

    def _scaler_state(self, x: np.ndarray) -> dict[str, Any]:
        """The fitted scaler of ``self.scaling`` as plain lists (what :meth:`_load_state` reads)."""
        from sklearn.preprocessing import MinMaxScaler, StandardScaler

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
        sc["n_samples_seen"] = len(x)
        return sc

    def _fit_categorical(
        self, df: pd.DataFrame, columns: list[str], imputed: dict, indicators: list[str]
    ) -> dict[str, Any]:
        """The fill values and the kept categories (the ``max_categories`` most frequent) of
        the categorical columns; records the imputed columns (and their indicators).

        With ``missing_category`` the fill value of a column is its missing label
        (:func:`_missing_label`), kept as a category when the column had missing values (the
        state's ``missing`` entry says which); otherwise the most frequent value."""
        counts, missing = [], []
        for c in columns:
            column_counts, n_missing = _category_counts(df[c])
            counts.append(column_counts)
            missing.append(n_missing)
        return self._categorical_state(columns, counts, missing, imputed, indicators)

    def _categorical_state(
        self,
        columns: list[str],
        counts: list[Counter],
        missing: list[int],
        imputed: dict,
        indicators: list[str],
    ) -> dict[str, Any]:
        """:meth:`_fit_categorical` from each column's category counts and number of missing
        values (counted in memory, or streamed by :mod:`lucidnet.data.streaming`). The most
        frequent value (``missing_category=False``) is SimpleImputer's: ties go to the
        smallest."""
        fills, cats, seen, labels = [], [], {}, []
        for c, given, k in zip(columns, counts, missing, strict=True):
            col = Counter(given)  # a copy: the fill value may be counted in below
            if self.missing_category:
                fills.append(_missing_label(col))
                labels.append(fills[-1] if k else None)
            else:
                fills.append(min(col, key=lambda v, col=col: (-col[v], v)) if col else "nan")
                col[fills[-1]] += k
            top = sorted(col, key=lambda v, col=col: (-col[v], v))
            if labels and labels[-1] is not None:  # the missing category is always kept
                top = top[: self.max_categories - 1] + [labels[-1]]
                seen[c] = len(col) + 1
            else:
                top = top[: self.max_categories]
                seen[c] = len(col)
            cats.append(sorted(top))
            if k:
                how = "own category" if self.missing_category else "most frequent"
                imputed[c] = {"count": k, "value": fills[-1], "how": how}
                if self.add_indicators and not self.missing_category:
                    indicators.append(c)
        state: dict[str, Any] = {"fill": fills, "categories": cats, "n_seen": seen}
        if self.missing_category:
            state["missing"] = labels
        return state

    def _fit_text(
        self,
        df: pd.DataFrame,
        min_df: int,
        roles: dict[str, ColumnRole],
        imputed: dict,
        state: dict[str, Any],
    ) -> list[Any]:
        """Fit the text columns (TF-IDF vocabularies or one token-id vocabulary) into
        ``state``; a column without any word token becomes ``"empty"`` and is dropped. Returns
        the TF-IDF matrices of the fitting rows (empty for ids)."""
        text_cols = list(state["columns"]["text"])
        fitted_text: list[Any] = []
        if text_cols and self.text_mode == "tfidf":
            state["text"], fitted_text, dropped = self._fit_tfidf(df, text_cols, min_df)
            text_cols = [c for c in text_cols if c not in dropped]
        elif text_cols:
            state["ids"], dropped = self._fit_ids(df, text_cols, min_df), {}
        else:
            dropped = {}
        for c in text_cols:
            k = int(df[c].isna().sum())
            if k:
                imputed[c] = {"count": k, "value": "", "how": "empty string"}
        for c, why in dropped.items():
            roles[c] = ColumnRole("empty", why)
        state["columns"]["text"] = text_cols
        return fitted_text

    def _fit_tfidf(
        self, df: pd.DataFrame, columns: list[str], min_df: int
    ) -> tuple[dict[str, Any], list[Any], dict[str, str]]:
        """One TF-IDF vectorizer per text column: ``(state, matrices of the fitting rows,
        {dropped column: why})``."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vecs, fitted, dropped = [], [], {}
        for c in columns:
            docs = _text_list(df[c])
            vec = None
            for md in dict.fromkeys((min_df, 1)):  # retry with min_df=1 before giving up
                attempt = TfidfVectorizer(
                    ngram_range=self.ngram_range, max_features=self.max_features, min_df=md
                )
                try:
                    fitted.append(attempt.fit_transform(docs))
                except ValueError:  # empty vocabulary: no tokens of 2+ word characters
                    continue
                vec = attempt
                break
            if vec is None:
                dropped[c] = "text column without any word tokens in the fitting rows"
                continue
            vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
            vecs.append({"vocabulary": vocab, "idf": vec.idf_.tolist()})
        return {"vectorizers": vecs}, fitted, dropped

    def _fit_ids(self, df: pd.DataFrame, columns: list[str], min_df: int) -> dict[str, Any]:
        """One token vocabulary over all text columns (most frequent first) and the sequence
        length (``max_len``, else the 95th percentile of the token counts, at most 256)."""
        docs = [
            " ".join(parts) for parts in zip(*(_text_list(df[c]) for c in columns), strict=True)
        ]
        tokens = [_TOKEN_RE.findall(d.lower()) for d in docs]
        dfreq = Counter(t for toks in tokens for t in set(toks))
        vocab = sorted((t for t, k in dfreq.items() if k >= min_df), key=lambda t: (-dfreq[t], t))
        lengths = [len(t) for t in tokens]
        max_len = self.max_len or int(min(256, max(1, np.percentile(lengths, 95))))
        return {"vocabulary": vocab[: self.max_features], "max_len": max_len}

    def fit_transform(self, data: Any) -> np.ndarray:
        """``fit(data)`` then ``transform(data)``, tokenising each text only once: the TF-IDF
        matrices computed while fitting are reused (they equal what ``transform`` computes)."""
        return self._fit_transform(data)

    def _fit_transform(
        self, data: Any, check_widths: Callable[[FeatureWidths], None] | None = None
    ) -> np.ndarray:
        df = as_frame(data)
        return self._transform(df, self._fit(df, check_widths))

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
            # absent in files written before heavy tails were log-transformed: none is
            self._num_log = np.asarray(state["numeric"].get("log", [False] * len(fill)), bool)
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

    def _fitted_state(self) -> dict[str, Any]:
        """:attr:`state_`, or a ValueError saying that fit() has not been called."""
        if self.state_ is None:
            raise ValueError("this TabularPreparer is not fitted: call fit() first")
        return self.state_

    def _check_input(self, data: Any) -> pd.DataFrame:
        columns = self._fitted_state()["columns"]
        df = as_frame(data)
        needed = [c for r in FEATURE_ROLES for c in columns[r]]
        needed += self._fitted_state().get("dates", {}).get("columns", [])
        needed += self._fitted_state().get("cyclic", {}).get("columns", [])
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
        statistics; unseen categories encode as all zeros (:meth:`input_drift` reports both).

        Raises:
            ValueError: feature columns used at fit time are missing (the error names them), or a
                numeric column holds values that are not numbers.
        """
        return self._transform(data, None)

    def input_drift(self, data: Any, max_examples: int = 3) -> InputDrift:
        """What :meth:`transform` would handle silently in ``data``: per categorical column, the
        rows whose category is not one of those kept at fit time (they encode as all zeros), per
        numeric column the rows far outside the training range (:meth:`out_of_range`), and
        the columns that the fitting data did not have (ignored). Reads ``data`` only: the
        numbers :meth:`transform` gives are the same whether or not this is called.

        Args:
            data: the frame to be transformed (``n_rows`` rows).
            max_examples: at most this many example categories per column, most frequent first.

        Returns:
            An :class:`InputDrift`; ``messages()`` gives one line per finding.

        Raises:
            ValueError: feature columns used at fit time are missing (as :meth:`transform`).
        """
        st = self._fitted_state()
        df = self._check_input(data)
        pd = _pd()
        known = set(st["roles"]) | ({self.target} if self.target is not None else set())
        extra = [str(c) for c in df.columns if str(c) not in known]
        unseen: dict[str, UnseenCategories] = {}
        cat = st.get("categorical")
        for j, c in enumerate(st["columns"]["categorical"]):
            kept = cat["categories"][j]
            # the values the one-hot encoder sees: missing values are filled (never unseen)
            values = pd.Series(_cat_array(df[c]), dtype=object)
            new = values[values.notna() & ~values.isin(kept)]
            if len(new):
                top = new.value_counts(sort=True).index[:max_examples]
                unseen[c] = UnseenCategories(
                    rows=len(new),
                    examples=[str(v) for v in top],
                    kept=len(kept),
                    seen=int(cat["n_seen"].get(c, len(kept))),
                )
        return InputDrift(unseen=unseen, extra=extra, out_of_range=self.out_of_range(df))

    def out_of_range(self, data: Any) -> dict[str, OutOfRange]:
        """Per numeric column, the rows of ``data`` whose value lies far outside the training
        range: beyond the training minimum or maximum by more than the training range (max -
        min, or max(1, abs(max)) for a column constant in training), measured after the log of a
        heavy-tailed column; there, a negative value (taken as 0) counts too. The network never
        saw inputs like these: its predictions for them are extrapolations. Missing values do
        not count. Empty for preparers saved before the range was kept.

        Returns:
            ``{column: OutOfRange}`` for the columns with such rows, in column order.

        Raises:
            ValueError: feature columns used at fit time are missing (as :meth:`transform`).
        """
        df = self._check_input(data)
        st = self._fitted_state()
        num = st.get("numeric", {})
        if "min" not in num:
            return {}
        found = {}
        for j, c in enumerate(st["columns"]["numeric"]):
            x = _num_array(df[c], c)
            lo, hi = num["min"][j], num["max"][j]
            dist = _beyond_range(x, lo, hi, num["log"][j])
            far = dist > 1.0  # NaN (missing) compares False
            if far.any():
                worst = float(x[far][np.argmax(dist[far])])
                found[c] = OutOfRange(rows=int(far.sum()), worst=worst, min=lo, max=hi)
        return found

    def _transform(self, data: Any, text: list[Any] | None) -> np.ndarray:
        """:meth:`transform`, with the TF-IDF matrices of the text columns given (``fit_transform``)
        or computed; in chunks of rows (:data:`TRANSFORM_CHUNK_BYTES`)."""
        df = self._check_input(data)
        width = self._n_features_out()
        # one float32 matrix, each chunk's blocks written into its rows once (no float64 copy of
        # the whole matrix; the sparse TF-IDF blocks are scattered in, never densified on their own)
        out = np.zeros((len(df), width), dtype=np.float32)
        step = max(_MIN_CHUNK_ROWS, TRANSFORM_CHUNK_BYTES // (8 * max(1, width)))
        for start in range(0, len(df), step):
            stop = min(len(df), start + step)
            part = [m[start:stop] for m in text] if text else None
            self._transform_rows(df.iloc[start:stop], part, out[start:stop])
        return out

    def _transform_rows(self, df: pd.DataFrame, text: list[Any] | None, out: np.ndarray) -> None:
        """Write the features of the rows of ``df`` into ``out`` (their rows of the result)."""
        cols = self.state_["columns"]
        blocks: list[Any] = []
        if cols["numeric"]:
            x = np.column_stack([_num_array(df[c], c) for c in cols["numeric"]])
            if self._num_log.any():  # a negative value was never seen there: taken as 0
                x[:, self._num_log] = np.log1p(np.maximum(x[:, self._num_log], 0.0))
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
        if "dates" in self.state_:
            blocks.append(_transform_dates(df, self.state_["dates"]))
        if "cyclic" in self.state_:
            blocks.append(_transform_cyclic(df, self.state_["cyclic"]))
        for j, ((c, _), vec) in enumerate(zip(self._tfidf_state(), self._vectorizers, strict=True)):
            blocks.append(text[j] if text else vec.transform(_text_list(df[c])))
        start = 0
        for b in blocks:
            width = b.shape[1]
            if isinstance(b, np.ndarray):
                out[:, start : start + width] = b
            else:
                coo = b.tocoo()
                out[coo.row, start + coo.col] = coo.data
            start += width

    def _n_features_out(self) -> int:
        """``len(feature_names_out())``, without building the names."""
        st = self._fitted_state()
        n = len(st["columns"]["numeric"]) + len(st["indicators"])
        if "categorical" in st:
            n += sum(len(c) for c in st["categorical"]["categories"])
        n += len(_date_names(st)) + len(_cyclic_names(st))
        return n + sum(len(v["vocabulary"]) for _, v in self._tfidf_state())

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
        """Names of the :meth:`transform` columns: ``age``, ``age is missing``, ``city=Paris``,
        ``city=(missing)``, ``review:good``."""
        st = self._fitted_state()
        names = list(st["columns"]["numeric"]) + [f"{c} is missing" for c in st["indicators"]]
        if "categorical" in st:
            for c, cats in zip(
                st["columns"]["categorical"], st["categorical"]["categories"], strict=True
            ):
                names += [f"{c}={v}" for v in cats]
        names += _date_names(st) + _cyclic_names(st)
        for c, v in self._tfidf_state():
            names += [f"{c}:{t}" for t in v["vocabulary"]]
        return names

    def _date_columns(self) -> tuple[list[str], list[str]]:
        """The date columns and their formats (empty lists when there are none)."""
        d = self._fitted_state().get("dates", {})
        return list(d.get("columns", [])), list(d.get("formats", []))

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
        st = self._fitted_state()
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
                if v["role"] not in FEATURE_ROLES + ("target", "date", "cyclic")
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
            # heavy-tailed numeric columns passed through log1p (absent from older files: none)
            "log1p": [
                c
                for c, f in zip(
                    st["columns"]["numeric"], st.get("numeric", {}).get("log", []), strict=False
                )
                if f
            ],
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
            done = _missing_note(r["imputed"].get(c), c in r["indicators"])
            lines.append(f"    {c:<{width}}  {v['role']:<11}  {v['reason']}{done}")
        for c, v in r["categories"].items():
            extra = f" (kept the {v['n_kept']} most frequent)" if v["n_kept"] < v["n_seen"] else ""
            lines.append(f"  categories: {c}: {v['n_seen']}{extra}")
        for c, fmt in zip(*self._date_columns(), strict=True):
            feats = ", ".join(date_feature_names("%H" in fmt))
            ind = " + missing indicator" if f"{c} is missing" in _date_names(self.state_) else ""
            lines.append(f"  dates: {c}: format {fmt!r} -> {feats} (standardised){ind}")
        cyc = self.state_.get("cyclic")
        for j, c in enumerate(cyc["columns"] if cyc else []):
            ind = " + missing indicator" * cyc["indicator"][j]
            lines.append(f"  cyclic: {c}: sin, cos of 2 pi {c} / {cyc['period'][j]}{ind}")
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
        lines += _leakage_lines(self.report_.get("leakage"))
        f = r["features"]
        lines.append(
            f"  output: {r['n_features_out']} features ({len(f['numeric'])} numeric, scaling "
            f"{self.scaling!r}; {len(r['indicators'])} missing indicators; "
            f"{sum(v['n_kept'] for v in r['categories'].values())} one-hot; "
            f"{sum(r['text_vocabulary'].values())} TF-IDF"
            + (f"; {len(_date_names(self.state_))} from dates" if "dates" in self.state_ else "")
            + (f"; {len(_cyclic_names(self.state_))} cyclic" if "cyclic" in self.state_ else "")
            + ")"
        )
        return "\n".join(lines)

    # ---- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted preparer as plain JSON values (no pickle); see :meth:`from_dict`."""
        return copy.deepcopy(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "config": self._config(),
                "state": self._fitted_state(),
                "target": self.target_,
                "fit_report": self.report_,
            }
        )

    @classmethod
    def from_dict(cls, d: Any) -> TabularPreparer:
        """Rebuild a preparer saved by :meth:`to_dict`; its transform output is bit-identical.

        Every part is checked before anything is built from it (the schema is in
        :mod:`lucidnet.data._prep_state`): ``config`` by the constructor, ``state`` and
        ``target`` entry by entry. A malformed ``fit_report`` entry (it only describes the
        fitting) is dropped with a ``PreparationWarning``.

        Raises:
            ValueError: ``d`` is not a lucidnet preparer dict of a supported version, or is
                malformed (the message says which entry).
        """

        def bad(msg: str) -> ValueError:
            return ValueError(f"malformed preparer dict: {msg}")

        if not isinstance(d, dict):
            raise bad(f"expected a dict, got {state_kind(d)}")
        if d.get("format") != FORMAT:
            raise bad(f"'format' must be {FORMAT!r}, got {state_kind(d.get('format'))}")
        if d.get("version") != FORMAT_VERSION or isinstance(d.get("version"), bool):
            raise bad(
                f"unsupported 'version' {state_kind(d.get('version'))} (this lucidnet reads "
                f"{FORMAT_VERSION})"
            )
        for key in ("config", "state"):
            if not isinstance(d.get(key), dict):
                raise bad(f"{key!r} must be a dict, got {state_kind(d.get(key))}")
        try:
            prep = cls(**d["config"])
        except (TypeError, ValueError) as exc:
            raise bad(f"invalid 'config': {exc}") from None
        try:
            validate_state(d["state"], prep.scaling, prep.text_mode)
            validate_target(d.get("target"), prep._config())
            prep._load_state(copy.deepcopy(d["state"]))
        except KeyError as exc:
            raise bad(f"missing entry {exc} in 'state'") from None
        except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            raise bad(str(exc)) from None
        prep.target_ = copy.deepcopy(d.get("target"))
        prep.report_ = clean_fit_report(copy.deepcopy(d.get("fit_report", {})))
        return prep


def _missing_note(imputed: dict[str, Any] | None, indicator: bool) -> str:
    """What was done with a column's missing values, for its row of the role table:
    ``"; 12 missing -> median 4.5 + indicator"``, ``"; 3310 missing -> own category
    '(missing)'"`` (empty without missing values)."""
    if not imputed:
        return ""
    value, how = imputed["value"], imputed["how"]
    if how == "median" and isinstance(value, (int, float)):
        done = f"median {value:.6g}"
    elif how == "own category":
        done = f"own category {value!r}"
    elif how == "empty string":  # text columns
        done = how
    elif how == "circle centre":  # cyclic codes
        done = "sin = cos = 0 (the circle's centre)"
    else:
        done = f"{how} {value!r}"
    return f"; {imputed['count']} missing -> {done}" + " + indicator" * indicator


def _missing_label(values: Counter) -> str:
    """``"(missing)"``, or, if a column holds that very string, ``"((missing))"`` and so on: the
    category of the missing values must not merge with a real value."""
    label = "(missing)"
    while label in values:
        label = f"({label})"
    return label


# --------------------------------------------------------------------------------------------
# One call for the CLI
# --------------------------------------------------------------------------------------------


def _beyond_range(x: np.ndarray, lo: float, hi: float, log: bool) -> np.ndarray:
    """How far each value of ``x`` (``(n,)``, NaN missing) lies outside ``lo`` .. ``hi``, in
    units of the margin (:meth:`TabularPreparer.out_of_range`): 0 inside, > 1 far; measured on
    ``log1p`` of the values for a log-transformed column, where a negative value is infinitely
    far (it was never possible in training). NaN where ``x`` is missing."""
    t, tlo, thi = (np.log1p(np.maximum(x, 0.0)), np.log1p(lo), np.log1p(hi)) if log else (x, lo, hi)
    margin = thi - tlo if thi > tlo else max(1.0, abs(thi))
    dist = np.abs(t - np.clip(t, tlo, thi)) / margin
    if log:
        dist[x < 0] = np.inf
    return dist


def _num(v: float) -> str:
    """A number for a message: ``730,000``, ``0.09071``, ``43.92``, ``1.5e+15``."""
    return f"{v:,.0f}" if 1e3 <= abs(v) < 1e15 else f"{v:.4g}"


def _short(value: str, limit: int = 40) -> str:
    """``repr`` of a name or value from the data, cut to about ``limit`` characters: one line
    whatever it holds (a newline in a column name is shown as ``\\n``)."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


@dataclass(frozen=True)
class UnseenCategories:
    """Rows of one categorical column whose category :meth:`TabularPreparer.transform` encodes
    as all zeros: ``rows`` of them, ``examples`` (most frequent first); ``kept`` one-hot columns
    out of ``seen`` distinct categories in the fitting rows (``seen > kept``: a category seen
    but too rare to be kept counts here too)."""

    rows: int
    examples: list[str]
    kept: int
    seen: int


@dataclass(frozen=True)
class OutOfRange:
    """Rows of one numeric column far outside its training range ``min`` .. ``max`` (raw
    values; :meth:`TabularPreparer.out_of_range`): ``rows`` of them, the most extreme value
    ``worst``."""

    rows: int
    worst: float
    min: float
    max: float

    def message(self, column: str) -> str:
        """``"orbital_period: 1 row far outside the training range (730,000 > max 69,000);
        predictions for such rows are extrapolations"``."""
        side = f"> max {_num(self.max)}" if self.worst > self.max else f"< min {_num(self.min)}"
        rows = f"{self.rows} row{'s' if self.rows != 1 else ''}"
        example = "e.g. " * (self.rows > 1) + f"{_num(self.worst)} {side}"
        return (
            f"{_short(column)}: {rows} far outside the training range ({example}); "
            "predictions for such rows are extrapolations"
        )


@dataclass(frozen=True)
class InputDrift:
    """How a frame to transform differs from the fitting data (:meth:`TabularPreparer.input_drift`):
    ``unseen`` categories per categorical column, ``extra`` columns (ignored), numeric values
    far ``out_of_range`` per column."""

    unseen: dict[str, UnseenCategories]
    extra: list[str]
    out_of_range: dict[str, OutOfRange] = field(default_factory=dict)

    def messages(self, max_columns: int = 10) -> list[str]:
        """One line per categorical column with unseen categories, then one for the extra
        columns (at most ``max_columns`` named); names and values quoted, cut to 40 characters."""
        lines = []
        for c, u in self.unseen.items():
            what = "not seen in training"
            if u.seen > u.kept:  # a rare training category is encoded like an unseen one
                what += f" (or too rare: only the {u.kept} most frequent of {u.seen} were kept)"
            examples = ", ".join(_short(v) for v in u.examples)
            lines.append(
                f"{_short(c)}: {u.rows} row{'s' if u.rows != 1 else ''} with categories {what} "
                f"(e.g. {examples}); they get no one-hot column"
            )
        lines += [o.message(c) for c, o in self.out_of_range.items()]
        if self.extra:
            names = ", ".join(_short(c) for c in self.extra[:max_columns])
            more = len(self.extra) - max_columns
            names += f" and {more} more" if more > 0 else ""
            n = len(self.extra)
            lines.append(
                f"{n} column{'s' if n != 1 else ''} not in the training data, ignored: {names}"
            )
        return lines


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
    max_classes: int | None = DEFAULT_MAX_CLASSES,
    max_memory: int | str | None = "auto",
    keep_leaks: bool = False,
    **preparer_kwargs: Any,
) -> PreparedData:
    """Read / accept data, encode the target, split (seeded, stratified) and fit on train only.

    Two limits are checked before the work they guard (:mod:`lucidnet.data.limits`): the number
    of classes right after the target is read, and the memory of the float32 feature matrix of
    all splits once the column roles are known, before any text column is tokenised and before
    the matrix is allocated.

    Args:
        max_classes: the most classes a classification target may have (None: no limit).
        max_memory: the most bytes the feature matrix (all splits) may take: ``"auto"``
            (``limits.MEMORY_FRACTION`` of the memory available now), a number, or None (no
            check).
        keep_leaks: keep the columns that look like target leakage
            (:mod:`lucidnet.data.leakage`, checked on the training rows) instead of dropping
            them; either way they are listed in the summary.
        preparer_kwargs: go to :class:`TabularPreparer` (``task``, ``categorical``,
            ``scaling``, ``max_features``...).

    Raises:
        LimitError: too many classes, or a feature matrix that would not fit (the message gives
            the estimate and the ``max_features`` / ``max_categories`` that would fit).
        ValueError: bad data or arguments (see :class:`TabularPreparer`).
    """
    check_positive_int(max_classes, "max_classes", allow_none=True)
    prep = TabularPreparer(target, **preparer_kwargs)
    df, y = prep.prepare_target(as_frame(data))
    if prep.target_["task"] == "classification":
        check_classes(len(prep.classes_), max_classes, target)
    split = train_val_test_split(y, test_size, val_size, task=prep.target_["task"], seed=seed)
    parts = {k: df.iloc[getattr(split, k)] for k in ("train", "val", "test")}
    n_rows = len(df)
    del df  # the parts hold the rows now; a dropped-target copy can be freed

    def check_memory(widths: FeatureWidths) -> None:
        check_matrix_memory(n_rows, widths, max_memory)

    leakage = _guard_leakage(prep, parts["train"], y[split.train], keep_leaks, seed)
    # statistics from the training rows only
    X_train = prep._fit_transform(parts["train"], check_memory)
    prep.report_["leakage"] = leakage
    ids = {
        k: prep.transform_text_ids(v) if "ids" in prep.state_ else None for k, v in parts.items()
    }
    prep.report_["split"] = split.to_dict()
    return PreparedData(
        X_train=X_train,
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


# ---- date columns -----------------------------------------------------------------------------


def _fit_dates(
    df: pd.DataFrame,
    columns: list[str],
    roles: dict[str, ColumnRole],
    imputed: dict[str, Any],
    add_indicators: bool,
) -> dict[str, Any]:
    """Per date column: its format (from the role's reason), the earliest date (the origin of
    "days"), the median fill of each feature, and the mean / scale that standardise them (date
    features are always standardised: a raw year of 2015 would dwarf every other input)."""
    st: dict[str, Any] = {k: [] for k in ("columns", "formats", "origin", "fill", "mean", "scale")}
    st["indicator"] = []
    for c in columns:
        fmt = roles[c].reason.split("format ", 1)[1].strip("'\"")
        origin = date_origin(df[c], fmt)
        x = date_features(df[c], fmt, origin)
        miss = np.isnan(x[:, 0])
        fill = np.nanmedian(x, axis=0) if (~miss).any() else np.zeros(x.shape[1])
        x[miss] = fill
        scale = x.std(axis=0)
        # a constant feature (every tweet in one month: month sin/cos) has a spread of float
        # noise (1e-17), not 0; dividing by it would blow the noise up into a feature of +-1
        scale[scale <= 1e-12 * np.maximum(1.0, np.abs(x.mean(axis=0)))] = 1.0
        if miss.any():
            # the median of the "days" feature, as a date, describes the fill in the role table
            mid = np.datetime64(int(round((origin + fill[1]) * 86_400)), "s").astype("M8[D]")
            imputed[c] = {"count": int(miss.sum()), "value": str(mid), "how": "median date"}
        st["columns"].append(c)
        st["formats"].append(fmt)
        st["origin"].append(origin)
        st["fill"].append(fill.tolist())
        st["mean"].append(x.mean(axis=0).tolist())
        st["scale"].append(scale.tolist())
        st["indicator"].append(bool(miss.any() and add_indicators))
    return st


def _block_names(d: dict[str, Any], features: Callable[[int], Sequence[str]]) -> list[str]:
    """``column:feature`` for each column of a state block (``features(j)``: the j-th column's
    feature names), each followed by ``column is missing`` where it has an indicator."""
    names: list[str] = []
    for j, c in enumerate(d["columns"]):
        names += [f"{c}:{f}" for f in features(j)]
        names += [f"{c} is missing"] if d["indicator"][j] else []
    return names


def _date_names(st: dict[str, Any]) -> list[str]:
    """The output names of the date features (after the one-hot columns)."""
    d = st.get("dates")
    return _block_names(d, lambda j: date_feature_names("%H" in d["formats"][j])) if d else []


def _transform_dates(df: pd.DataFrame, d: dict[str, Any]) -> np.ndarray:
    """The standardised date features (and missing indicators) of the rows of ``df``."""
    blocks = []
    for j, c in enumerate(d["columns"]):
        x = date_features(df[c], d["formats"][j], d["origin"][j])
        miss = np.isnan(x[:, 0])
        x[miss] = np.asarray(d["fill"][j])
        blocks.append((x - np.asarray(d["mean"][j])) / np.asarray(d["scale"][j]))
        if d["indicator"][j]:
            blocks.append(miss[:, None].astype(np.float64))
    return np.column_stack(blocks) if blocks else np.zeros((len(df), 0))


# ---- cyclic integer codes -----------------------------------------------------------------------


def _fit_cyclic(
    df: pd.DataFrame,
    columns: list[str],
    roles: dict[str, ColumnRole],
    imputed: dict[str, Any],
    add_indicators: bool,
) -> dict[str, Any]:
    """Per cyclic code (hour, month, weekday: :func:`lucidnet.data.columns._integer_code`) its
    period, read from the role's reason, and whether it gets a missing indicator. A missing
    value encodes as sin = cos = 0, the centre of the circle: no hour rather than a made-up
    one; the features need no statistics (they already lie in [-1, 1])."""
    st: dict[str, Any] = {"columns": [], "period": [], "indicator": []}
    for c in columns:
        k = int(df[c].isna().sum())
        if k:
            imputed[c] = {"count": k, "value": None, "how": "circle centre"}
        st["columns"].append(c)
        st["period"].append(cyclic_period(roles[c].reason))
        st["indicator"].append(bool(k and add_indicators))
    return st


def _cyclic_names(st: dict[str, Any]) -> list[str]:
    """The output names of the cyclic codes' features (after the date features)."""
    d = st.get("cyclic")
    return _block_names(d, lambda j: ("sin", "cos")) if d else []


def _transform_cyclic(df: pd.DataFrame, d: dict[str, Any]) -> np.ndarray:
    """``sin`` and ``cos`` of ``2 pi value / period`` per cyclic column (0 and 0 where missing),
    then its missing indicator if it has one."""
    blocks = []
    for c, period, ind in zip(d["columns"], d["period"], d["indicator"], strict=True):
        v = _num_array(df[c], c)
        miss = np.isnan(v)
        angle = 2.0 * np.pi * np.where(miss, 0.0, v) / period
        blocks += [np.where(miss, 0.0, np.sin(angle)), np.where(miss, 0.0, np.cos(angle))]
        if ind:
            blocks.append(miss.astype(np.float64))
    return np.column_stack(blocks) if blocks else np.zeros((len(df), 0))


# ---- target leakage ---------------------------------------------------------------------------


def _guard_leakage(
    prep: TabularPreparer, train: pd.DataFrame, y: np.ndarray, keep: bool, seed: int
) -> dict[str, Any]:
    """Find target leakage on the training rows (:mod:`lucidnet.data.leakage`); unless ``keep``,
    add the columns to ``prep.drop`` (so the fitted preparation and its saved form leave them
    out). Returns what the summary reports."""
    from .leakage import find_leaks

    if not isinstance(keep, bool):
        raise TypeError(f"keep_leaks must be True or False, got {describe(keep)}")
    roles = prep._infer_roles(train)
    assert prep.target_ is not None  # prepare_target ran
    task = prep.target_["task"]
    leaks, sampled = find_leaks(train, y, task, roles, seed=seed, classes=prep.classes_)
    out = [c for leak in leaks for c in leak.columns]
    features = [c for c, r in roles.items() if r.role in FEATURE_ROLES + ("date", "cyclic")]
    why = "--keep-leaks" if keep else None
    if not keep and out and set(features) <= set(out):
        keep, why = True, "nothing else to learn from"  # excluding would leave no feature
    if not keep:
        # the role table says why: "excluded as likely target leakage: <evidence>"
        evidence = {
            c: leak.evidence if len(leak.columns) == 1 else leak.message()
            for leak in leaks
            for c in leak.columns
        }
        for attr in ("numeric", "categorical", "text", "dates"):
            setattr(prep, attr, [c for c in getattr(prep, attr) if c not in out])
        prep.exclude = dict(prep.exclude or {})
        prep.exclude.update({c: f"excluded as likely target leakage: {evidence[c]}" for c in out})
    return {
        "columns": [leak.message() for leak in leaks],
        "kept": keep,
        "kept_why": why,
        "rows_sampled": sampled,
    }


def _leakage_lines(leakage: dict[str, Any] | None) -> list[str]:
    """The summary's lines on target leakage (none when nothing was found). The entry is the
    one :func:`_guard_leakage` wrote, or one read back from a model file and checked there
    (:func:`lucidnet.data._prep_state.clean_fit_report` drops a malformed one)."""
    if not leakage or not leakage["columns"]:
        return []
    why = leakage["kept_why"] or "--keep-leaks"
    what = (
        f"WARNING: kept ({why}) although they look like target leakage"
        if leakage["kept"]
        else "excluded as likely target leakage (keep them with keep_leaks=True / --keep-leaks)"
    )
    lines = [f"  {what}:"] + [f"    {m}" for m in leakage["columns"]]
    if leakage["rows_sampled"]:
        lines.append(f"    (checked on a sample of {leakage['rows_sampled']} training rows)")
    return lines
