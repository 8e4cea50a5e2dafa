"""The scikit-learn side of ``benchmarks/messy.py``: the pipelines a practitioner would write by
hand for a raw CSV file, run as their own process so that their wall time, like lucidnet's, is
the whole job (imports, reading the files, fitting, predicting).

Two systems:

- ``mlp``: ``ColumnTransformer`` (object / boolean columns: missing -> the category
  ``"(missing)"``, then one-hot with ``handle_unknown="ignore"``; numeric columns: median
  imputation + ``StandardScaler``; the named text columns: TF-IDF of words and word pairs in at
  least 2 training rows) followed by ``MLPClassifier`` / ``MLPRegressor`` with
  ``early_stopping=True`` and otherwise scikit-learn's defaults (one hidden layer of 100 ReLU
  units, Adam 1e-3, batches of 200, at most 200 epochs; stops when the accuracy or R^2 on a
  random 10% of the training rows has not improved for 10 epochs), seeded.
- ``hgb``: the reference. ``HistGradientBoostingClassifier`` / ``Regressor`` (defaults: 100
  iterations, early stopping above 10,000 rows) with native categorical support: object
  columns ordinal-encoded (at most 255 categories, the rarest grouped, as the native support
  requires), numeric columns as they are
  (NaN is native too), text columns as TF-IDF reduced to 100 dimensions by ``TruncatedSVD``
  (boosting needs a dense matrix).

    python benchmarks/messy_systems.py mlp train.csv test.csv --target y --task regression \
        --text text --drop id --out predictions.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

SYSTEMS = ("mlp", "hgb")
TASKS = ("classification", "regression")


def column_kinds(X: pd.DataFrame, text: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(numeric, categorical, text) column names of ``X`` as a practitioner sorts them: by dtype,
    the text columns named by hand."""
    text = [c for c in text if c in X.columns]
    rest = [c for c in X.columns if c not in text]
    numeric = [c for c in rest if pd.api.types.is_numeric_dtype(X[c]) and X[c].dtype != bool]
    categorical = [c for c in rest if c not in numeric]
    return numeric, categorical, text


def _as_strings(X: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as strings, missing values as their own category."""
    return X.astype("object").where(X.notna(), "(missing)").astype(str)


def mlp_pipeline(X: pd.DataFrame, task: str, text: Sequence[str], seed: int, quick: bool) -> Any:
    """The hand-built pipeline: one-hot + scaling (+ TF-IDF) and scikit-learn's MLP."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric, categorical, text_cols = column_kinds(X, text)
    parts: list[tuple[str, Any, Any]] = [
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        (
            "cat",
            make_pipeline(FunctionTransformer(_as_strings), OneHotEncoder(handle_unknown="ignore")),
            categorical,
        ),
    ]
    for col in text_cols:  # a text column goes to the vectoriser as one 1-D column
        parts.append((f"tfidf_{col}", TfidfVectorizer(ngram_range=(1, 2), min_df=2), col))
    mlp_cls = MLPClassifier if task == "classification" else MLPRegressor
    mlp = mlp_cls(early_stopping=True, random_state=seed, max_iter=3 if quick else 200)
    return Pipeline([("prep", ColumnTransformer(parts)), ("mlp", mlp)])


def hgb_pipeline(X: pd.DataFrame, task: str, text: Sequence[str], seed: int, quick: bool) -> Any:
    """The reference: gradient-boosted trees with native categorical support."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    numeric, categorical, text_cols = column_kinds(X, text)
    ordinal = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, max_categories=255
    )
    parts: list[tuple[str, Any, Any]] = [
        ("cat", make_pipeline(FunctionTransformer(_as_strings), ordinal), categorical),
        ("num", "passthrough", numeric),
    ]
    for col in text_cols:
        svd = TruncatedSVD(n_components=100, random_state=seed)
        tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
        parts.append((f"svd_{col}", make_pipeline(tfidf, svd), col))
    is_cat = [True] * len(categorical) + [False] * (len(numeric) + 100 * len(text_cols))
    hgb_cls = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    hgb = hgb_cls(
        categorical_features=np.array(is_cat, dtype=bool) if any(is_cat) else None,
        random_state=seed,  # early stopping "auto": on above 10,000 rows, as by default
        max_iter=10 if quick else 100,
    )
    return Pipeline([("prep", ColumnTransformer(parts)), ("hgb", hgb)])


def fit_predict(
    system: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    task: str,
    *,
    text: Sequence[str] = (),
    drop: Sequence[str] = (),
    seed: int = 0,
    quick: bool = False,
) -> tuple[np.ndarray, int]:
    """Fit ``system`` on ``train`` (all columns but ``target`` and ``drop``) and predict ``test``.

    Returns:
        (predictions, iterations): (len(test),) predicted classes (classification) or values
        (regression), and the epochs (MLP) or boosting iterations (HGB) the fit ran.
    """
    if system not in SYSTEMS:
        raise ValueError(f"system: expected one of {SYSTEMS}, got {system!r}")
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    drop_cols = [target, *[c for c in drop if c in train.columns]]
    X_train, X_test = train.drop(columns=drop_cols), test.drop(columns=drop_cols, errors="ignore")
    for col in text:  # TF-IDF cannot read NaN: a missing text is an empty one
        if col in X_train.columns:
            X_train[col] = X_train[col].fillna("").astype(str)
            X_test[col] = X_test[col].fillna("").astype(str)
    y = train[target]
    if task == "classification":
        y = y.astype(str)
    build = mlp_pipeline if system == "mlp" else hgb_pipeline
    model = build(X_train, task, list(text), seed, quick)
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # quick mode stops after 3 epochs
        model.fit(X_train, y)
    return np.asarray(model.predict(X_test)), int(model[-1].n_iter_)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("system", choices=SYSTEMS)
    p.add_argument("train")
    p.add_argument("test")
    p.add_argument("--target", required=True)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--text", nargs="*", default=[])
    p.add_argument("--drop", nargs="*", default=[])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True, help="predictions CSV (one column 'prediction')")
    args = p.parse_args(argv)
    train, test = pd.read_csv(args.train), pd.read_csv(args.test)
    pred, iterations = fit_predict(
        args.system,
        train,
        test,
        args.target,
        args.task,
        text=args.text,
        drop=args.drop,
        seed=args.seed,
        quick=args.quick,
    )
    pd.DataFrame({"prediction": pred}).to_csv(args.out, index=False)
    print(json.dumps({"iterations": iterations}))  # read by messy.py
    return 0


if __name__ == "__main__":
    sys.exit(main())
