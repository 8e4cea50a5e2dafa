"""Data preparation: from a file to training-ready arrays, without leakage.

``columns`` reads a table and gives each column a role with a reason; ``splits`` cuts rows into
train / validation / test (stratified for classification); ``prep`` fits the preparation
(impute, scale, one-hot, TF-IDF) on the training rows only and keeps its state as JSON;
``limits`` refuses, before the work, a target with too many classes or a prepared matrix that
would not fit the memory available;
``datasets`` reads IDX files and wraps scikit-learn's bundled data sets.

This package uses NumPy, pandas and scikit-learn, never the network core: data preparation and
the core are independent (checked by the import contract in ``pyproject.toml``).
"""
