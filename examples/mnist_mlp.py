"""Train a feed-forward network on MNIST digits with lucidnet.

Uses the 10,000-image MNIST test set in IDX format (the only part shipped in ``shared/data``),
split 8,000 / 2,000 (stratified, seed 0) into a training and a held-out test set.

Usage (from the repository root)::

    python examples/mnist_mlp.py [MNIST_DIR]

``MNIST_DIR`` defaults to ``../shared/data/mnist-t10k``. The data are read from there, never
copied into the repository.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

import lucidnet as ln

REPO_ROOT = Path(__file__).resolve().parent.parent

# Relative to the repository root, not the working directory, so the script runs from anywhere.
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "mnist-t10k"


def main(argv: list[str] | None = None) -> int:
    """Load, split, train, evaluate; print the test accuracy. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_DATA,
        help="directory with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        "(default: ../shared/data/mnist-t10k)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="maximum number of epochs")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        images, labels = ln.datasets.load_mnist(args.data_dir, kind="t10k")
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # Flatten 28x28 images to 784 features and scale pixel values to [0, 1]: unscaled 0-255
    # inputs make the first layer's pre-activations huge and training unstable.
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    y = labels.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=8000, test_size=2000, stratify=y, random_state=0
    )
    print(f"train {X_train.shape}, test {X_test.shape}")

    model = ln.Sequential(
        [
            ln.Dense(256, activation="relu"),
            ln.Dropout(0.2),
            ln.Dense(10),  # logits: the cross-entropy loss applies the softmax itself
        ]
    )
    model.fit(
        X_train,
        y_train,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-3),
        epochs=args.epochs,
        batch_size=64,
        # Early stopping watches a validation split carved from the training data, so the
        # held-out test set plays no part in choosing the model.
        validation_split=0.1,
        callbacks=[ln.EarlyStopping(patience=5, restore_best_weights=True)],
        seed=0,
        verbose=1,
    )
    scores = model.evaluate(X_test, y_test)
    elapsed = time.perf_counter() - start

    print(f"test loss {scores['loss']:.4f}, test accuracy {scores['accuracy']:.4f}")
    print(f"wall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
