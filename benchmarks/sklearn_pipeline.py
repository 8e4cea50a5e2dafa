"""Workload C's scikit-learn side: what ``lucidnet train DATA.csv --target label ...`` does, as a
scikit-learn script a practitioner would write (run as its own process by ``run.py``).

Same work as the lucidnet command: read the CSV, split 70/10/20 train/validation/test
(stratified; the validation rows are held out as lucidnet holds them out for early stopping),
impute + standardise the numeric columns, one-hot encode the categorical ones, TF-IDF the text
column with lucidnet's default settings (words and word pairs, terms in at least 2 training rows,
the ``--max-features`` most frequent), train a 64-32 ReLU MLP with Adam(1e-3), batch 128, for
exactly ``--epochs`` epochs, print and save the test accuracy.

    python benchmarks/sklearn_pipeline.py benchmarks/_work/c_data.csv --epochs 10
"""

from __future__ import annotations

import argparse
import json
import warnings

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["age", "income", "tenure_months", "usage_hours", "support_calls"]
CATEGORICAL = ["city", "plan", "device"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("data")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-features", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics-json")
    args = p.parse_args()

    df = pd.read_csv(args.data)
    y = df.pop("label")
    X_rest, X_test, y_rest, y_test = train_test_split(
        df, y, test_size=0.2, stratify=y, random_state=args.seed
    )
    X_train, _, y_train, _ = train_test_split(
        X_rest, y_rest, test_size=0.125, stratify=y_rest, random_state=args.seed
    )  # 0.125 of the remaining 80% = 10% of all rows held out as validation
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            (
                "text",
                TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=args.max_features),
                "review",
            ),
        ]
    )
    mlp = MLPClassifier(
        hidden_layer_sizes=(64, 32),
        solver="adam",
        learning_rate_init=1e-3,
        batch_size=128,
        alpha=0.0,
        max_iter=args.epochs,
        n_iter_no_change=args.epochs + 1,  # run exactly --epochs epochs
        tol=0.0,
        random_state=args.seed,
    )
    model = Pipeline([("prep", prep), ("mlp", mlp)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    accuracy = float((model.predict(X_test) == y_test).mean())
    print(f"test accuracy {accuracy:.4f}")
    if args.metrics_json:
        with open(args.metrics_json, "w", encoding="utf-8") as f:
            json.dump({"accuracy": accuracy}, f)


if __name__ == "__main__":
    main()
