"""The main job on bundled data: a feed-forward network on scikit-learn's digits (8x8 images).

``lucidnet demo`` (and ``make demo``) runs :func:`run_demo`: a stratified train / validation /
test split, standardisation fitted on the training split only, a 64-64-10 ReLU network trained
with Adam and early stopping (with a progress bar per epoch), then the test accuracy and the
confusion matrix on images the network never saw.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import numpy as np

from .. import metrics
from ..callbacks import EarlyStopping, ProgressBar
from ..data.splits import train_val_test_split
from ..layers import Dense, Dropout
from ..model import Sequential
from ..optimizers import Adam


def format_confusion(cm: np.ndarray, labels: list[str]) -> str:
    """A confusion matrix as text: rows are true classes, columns predicted classes.

    Args:
        cm: (k, k) counts, ``cm[i, j]`` = rows of true class i predicted as class j.
        labels: the k class names.
    """
    longest = max((len(s) for s in labels), default=0)
    width = max(4, longest + 1, len(str(int(cm.max()))) + 1 if cm.size else 0)
    first = max(10, longest + 2)  # the row-label column fits long class names
    head = "true\\pred".ljust(first) + "".join(s.rjust(width) for s in labels)
    rows = [
        label.ljust(first) + "".join(str(int(v)).rjust(width) for v in row)
        for label, row in zip(labels, cm)
    ]
    return "\n".join([head, *rows])


def run_demo(epochs: int = 100, seed: int = 0, out: TextIO | None = None, bar: bool = True) -> dict:
    """Train and test on the digits data set; print the story and return the test scores."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    out = out or sys.stdout
    X, y = load_digits(return_X_y=True)
    print(f"Data: scikit-learn digits, {X.shape[0]} images of 8x8 pixels, 10 classes", file=out)
    rows = train_val_test_split(y, test_size=0.2, val_size=0.0, task="classification", seed=seed)
    X_train, X_test, y_train, y_test = X[rows.train], X[rows.test], y[rows.train], y[rows.test]
    scaler = StandardScaler().fit(X_train)  # fitted on the training split only: no leakage
    X_train = scaler.transform(X_train).astype(np.float32)
    X_test = scaler.transform(X_test).astype(np.float32)
    print(
        f"Split: {X_train.shape[0]} train (10% of it held out for validation) / "
        f"{X_test.shape[0]} test, stratified; features standardised on the training split",
        file=out,
    )
    model = Sequential([Dense(64, activation="relu"), Dropout(0.1), Dense(10)], name="digits")
    model.build((X.shape[1],), seed=seed)
    model.summary(print_fn=lambda s: print(s, file=out))
    start = time.perf_counter()
    history = model.fit(
        X_train,
        y_train,
        loss="cross_entropy",
        optimizer=Adam(lr=1e-3),
        epochs=epochs,
        batch_size=32,
        validation_split=0.1,
        callbacks=[
            EarlyStopping(patience=10, restore_best_weights=True),
            ProgressBar(mode="bar" if bar else "line", file=out if not bar else None),
        ],
        seed=seed,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    best = history.best_epoch
    print(
        f"Trained {len(history.epoch)} epochs in {seconds:.2f} s; early stopping kept epoch "
        f"{best + 1 if best is not None else len(history.epoch)} "
        f"(val_loss {min(history['val_loss']):.4f})",
        file=out,
    )
    scores = model.evaluate(X_test, y_test)
    pred = model.predict_classes(X_test)
    cm = metrics.confusion_matrix(y_test, pred, n_classes=10)
    print(f"\nTest accuracy: {scores['accuracy']:.4f}   test loss: {scores['loss']:.4f}", file=out)
    print(f"Macro F1: {metrics.f1(y_test, pred):.4f}\n", file=out)
    print("Confusion matrix (test set):", file=out)
    print(format_confusion(cm, [str(i) for i in range(10)]), file=out)
    return {"accuracy": scores["accuracy"], "loss": scores["loss"], "epochs": len(history.epoch)}
