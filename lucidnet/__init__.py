"""lucidnet: neural networks on NumPy with explicit, inspectable backpropagation.

>>> import lucidnet as ln
>>> model = ln.Sequential([ln.Dense(64, activation="relu"), ln.Dropout(0.1), ln.Dense(10)])

The core (layers, losses, optimizers, schedules, callbacks, metrics, the model and its training
loop, persistence) imports NumPy only; heavier helpers load their dependencies when first used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import activations, callbacks, initializers, layers, losses, metrics, optimizers, schedules
from .activations import ELU, GELU, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .callbacks import (
    Callback,
    EarlyStopping,
    History,
    ModelCheckpoint,
    NaNGuard,
    ProgressBar,
    ReduceLROnPlateau,
)
from .io import ModelFileError, load, save_model
from .layers import BatchNorm, Dense, Dropout, Embedding, Flatten, Layer
from .losses import MAE, MSE, BinaryCrossEntropy, CrossEntropy, Huber, Loss
from .model import Sequential
from .optimizers import SGD, AdaGrad, Adam, AdamW, Optimizer, RMSprop
from .schedules import Constant, CosineDecay, ExponentialDecay, Schedule, StepDecay
from .training import fit

__all__ = [
    "__version__",
    "activations",
    "callbacks",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "schedules",
    "Sequential",
    "Layer",
    "Dense",
    "Dropout",
    "BatchNorm",
    "Flatten",
    "Embedding",
    "Linear",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "Softmax",
    "Loss",
    "MSE",
    "MAE",
    "Huber",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "Optimizer",
    "SGD",
    "AdaGrad",
    "RMSprop",
    "Adam",
    "AdamW",
    "Schedule",
    "Constant",
    "StepDecay",
    "ExponentialDecay",
    "CosineDecay",
    "Callback",
    "History",
    "EarlyStopping",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "ProgressBar",
    "NaNGuard",
    "fit",
    "load",
    "save_model",
    "ModelFileError",
]

# Modules outside the core are imported on first attribute access (PEP 562), so that
# ``import lucidnet`` does not pay for pandas / scikit-learn / matplotlib.
_LAZY_MODULES = {
    "datasets",
    "prep",
    "columns",
    "splits",
    "cli_args",
    "demo",
    "explain",
    "gradcheck",
    "diagnostics",
    "lr_finder",
    "plots",
    "report",
    "estimators",
    "onnx_export",
    "cli",
}
_LAZY_NAMES = {
    "TabularPreparer": "prep",
    "check_gradients": "gradcheck",
    "find_learning_rate": "lr_finder",
    "Diagnostics": "diagnostics",
    "TrainingWarning": "diagnostics",
    "explain_step": "explain",
    "write_report": "report",
    "WeightTracker": "plots",
    "NeuralNetworkClassifier": "estimators",
    "NeuralNetworkRegressor": "estimators",
    "load_estimator": "estimators",
    "export_onnx": "onnx_export",
    "to_onnx": "onnx_export",
}


def __getattr__(name: str):
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        module = importlib.import_module(f".{_LAZY_NAMES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'lucidnet' has no attribute {name!r}")
