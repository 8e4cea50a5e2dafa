"""Sentiment of airline tweets (negative / neutral / positive) with the Python API.

The same job as ``lucidnet train Tweets.csv --target airline_sentiment --text text ...``, written
out: :func:`lucidnet.prep.prepare` reads the CSV, encodes the target, makes a stratified train /
validation / test split and fits the preparation (TF-IDF of the tweet, one-hot airline) on the
training rows only; an ``ln.Sequential`` network is trained with early stopping on the
validation split and tested once on the test split.

Only the tweet text and the airline are used as features: ``airline_sentiment_confidence``,
``negativereason`` (only filled in for negative tweets), ``negativereason_confidence`` and the
``*_gold`` columns are by-products of the labelling and would leak the answer.

Usage (from the repository root)::

    python examples/sentiment.py [TWEETS_CSV] [--epochs N]

``TWEETS_CSV`` defaults to ``../shared/data/airline-tweets/Tweets.csv`` (relative to the
repository root); the data are read from there, never copied into the repository.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import lucidnet as ln
from lucidnet import metrics
from lucidnet.data.prep import prepare, read_csv

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "airline-tweets" / "Tweets.csv"
TARGET = "airline_sentiment"
FEATURES = ["text", "airline"]


def main(argv: list[str] | None = None) -> int:
    """Prepare, train, test; print the test accuracy. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="Tweets.csv")
    parser.add_argument("--epochs", type=int, default=50, help="maximum number of epochs")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        df = read_csv(args.data)
        missing = [c for c in (*FEATURES, TARGET) if c not in df.columns]
        if missing:
            raise ValueError(f"'{args.data}' lacks the columns {missing}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # Fitted on the training rows only; 5,000 TF-IDF terms (unigrams + bigrams) keep the dense
    # float32 input at ~20 KB per tweet.
    data = prepare(
        df[[*FEATURES, TARGET]],
        TARGET,
        text=["text"],
        categorical=["airline"],
        max_features=5000,
        test_size=0.2,
        val_size=0.1,
        seed=0,
    )
    print(data.preparer.summary())
    classes = [str(c) for c in data.preparer.classes_]
    model, history = train(data, len(classes), args.epochs)
    best = history.best_epoch
    print(
        f"\n{len(history.epoch)} epochs, best epoch {best + 1 if best is not None else '-'}; "
        f"total time {time.perf_counter() - start:.1f} s"
    )
    test(model, data, classes)

    # New rows go through the same fitted preparation.
    new = {
        "text": ["@united thanks, great crew and an early arrival!", "@united lost my bag again"],
        "airline": ["United", "United"],
    }
    labels = data.preparer.decode_target(model.predict_classes(data.preparer.transform(new)))
    for text, label in zip(new["text"], labels):
        print(f"  {label:<9} <- {text}")
    return 0


def train(data: Any, n_classes: int, epochs: int) -> tuple[ln.Sequential, Any]:
    """A 64-unit ReLU network trained with early stopping on the validation split."""
    model = ln.Sequential(
        [
            ln.Dense(64, activation="relu"),
            ln.Dropout(0.5),  # a wide sparse input on 10k rows overfits within a few epochs
            ln.Dense(n_classes),  # logits: cross-entropy applies the softmax itself
        ],
        name="tweets",
    )
    history = model.fit(
        data.X_train,
        data.y_train,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-3),
        epochs=epochs,
        batch_size=32,
        validation_data=(data.X_val, data.y_val),
        callbacks=[
            ln.EarlyStopping(patience=3, restore_best_weights=True),
            ln.ProgressBar(mode="line"),
        ],
        seed=0,
        verbose=0,
    )
    return model, history


def test(model: ln.Sequential, data: Any, classes: list[str]) -> None:
    """Accuracy, macro F1 and per-class precision / recall on the test split, printed."""
    pred = model.predict_classes(data.X_test)
    accuracy = metrics.accuracy(data.y_test, pred)
    print(f"Test accuracy: {accuracy:.4f}   macro F1: {metrics.f1(data.y_test, pred):.4f}")
    per_class = metrics.precision_recall_f1(data.y_test, pred, n_classes=len(classes))
    for i, c in enumerate(classes):
        print(
            f"  {c:<9} precision {per_class['precision'][i]:.3f}  recall "
            f"{per_class['recall'][i]:.3f}  ({int(per_class['support'][i])} tweets)"
        )


if __name__ == "__main__":
    sys.exit(main())
