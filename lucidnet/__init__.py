"""lucidnet: neural networks on NumPy with explicit, inspectable backpropagation.

>>> import lucidnet as ln
>>> model = ln.Sequential([ln.Dense(64, activation="relu"), ln.Dropout(0.1), ln.Dense(10)])

The package has five parts (ARCHITECTURE.md draws them): the NumPy core, flat in this folder
(layers, activations, losses, optimizers, schedules, metrics, callbacks, the training loop, the
model, persistence); ``lucidnet.data`` (reading tables, column roles, splits, preparation, data
sets); ``lucidnet.glassbox`` (explain, gradient check, diagnostics, LR finder, plots, report);
``lucidnet.interop`` (scikit-learn estimators, ONNX, Optuna search: ``ln.tune``);
``lucidnet.cli`` (the command). The core is imported here; the other parts load on first use, so
``import lucidnet`` does not pay for pandas / scikit-learn / matplotlib / Optuna.

This module is the top of the layering: besides re-exporting the public names it connects the
``Sequential`` convenience methods whose work lives above the core (``save``, ``explain_step``,
``export_onnx``) to their implementations, so that no core module imports upward.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from . import (
    activations,
    callbacks,
    convolution,
    initializers,
    layers,
    losses,
    metrics,
    optimizers,
    schedules,
)
from ._version import __version__
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
from .convolution import (
    AvgPool1D,
    AvgPool2D,
    Conv1D,
    Conv2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    MaxPool1D,
    MaxPool2D,
    Reshape,
)
from .io import ModelFileError, ModelFileWarning, load, save_model
from .layers import BatchNorm, Dense, Dropout, Embedding, Flatten, Layer
from .losses import MAE, MSE, BinaryCrossEntropy, CrossEntropy, Huber, Loss
from .model import Sequential, mlp, register_delegate
from .optimizers import SGD, AdaGrad, Adam, AdamW, Optimizer, RMSprop
from .schedules import Constant, CosineDecay, ExponentialDecay, Schedule, StepDecay
from .training import fit, train_step

# Modules and names outside the core, imported on first attribute access (PEP 562).
#: short name -> module: ``ln.prep`` is ``lucidnet.data.prep``, and so on (the short names are
#: the modules' homes before the subpackages; ``import lucidnet.prep`` keeps working too).
_LAZY_MODULES = {
    "data": "lucidnet.data",
    "glassbox": "lucidnet.glassbox",
    "interop": "lucidnet.interop",
    "cli": "lucidnet.cli",
    "datasets": "lucidnet.data.datasets",
    "prep": "lucidnet.data.prep",
    "columns": "lucidnet.data.columns",
    "splits": "lucidnet.data.splits",
    "explain": "lucidnet.glassbox.explain",
    "gradcheck": "lucidnet.glassbox.gradcheck",
    "diagnostics": "lucidnet.glassbox.diagnostics",
    "lr_finder": "lucidnet.glassbox.lr_finder",
    "plots": "lucidnet.glassbox.plots",
    "report": "lucidnet.glassbox.report",
    "estimators": "lucidnet.interop.estimators",
    "onnx_export": "lucidnet.interop.onnx_export",
    "cli_args": "lucidnet.cli.args",
    "demo": "lucidnet.cli.demo",
}
#: public name -> the module that defines it.
_LAZY_NAMES = {
    "TabularPreparer": "lucidnet.data.prep",
    "prepare": "lucidnet.data.prep",
    "check_gradients": "lucidnet.glassbox.gradcheck",
    "find_learning_rate": "lucidnet.glassbox.lr_finder",
    "Diagnostics": "lucidnet.glassbox.diagnostics",
    "TrainingWarning": "lucidnet.glassbox.diagnostics",
    "explain_step": "lucidnet.glassbox.explain",
    "write_report": "lucidnet.glassbox.report",
    "WeightTracker": "lucidnet.glassbox.plots",
    "NeuralNetworkClassifier": "lucidnet.interop.estimators",
    "NeuralNetworkRegressor": "lucidnet.interop.estimators",
    "load_estimator": "lucidnet.interop.estimators",
    "export_onnx": "lucidnet.interop.onnx_export",
    "to_onnx": "lucidnet.interop.onnx_export",
    "tune": "lucidnet.interop.tuning",
}

__all__ = [
    "__version__",
    "activations",
    "callbacks",
    "convolution",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "schedules",
    "Sequential",
    "mlp",
    "Layer",
    "Dense",
    "Dropout",
    "BatchNorm",
    "Flatten",
    "Embedding",
    "Conv1D",
    "Conv2D",
    "MaxPool1D",
    "MaxPool2D",
    "AvgPool1D",
    "AvgPool2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "Reshape",
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
    "train_step",
    "load",
    "save_model",
    "ModelFileError",
    "ModelFileWarning",
]


def _lazy(module: str, name: str) -> Callable[[], Callable[..., Any]]:
    return lambda: getattr(importlib.import_module(module), name)


# Sequential.save / explain_step / export_onnx: delegations wired here, at the top of the
# layering, so the core's model.py names no module above it.
register_delegate("save", lambda: save_model)
register_delegate("explain_step", _lazy("lucidnet.glassbox.explain", "explain_step"))
register_delegate("export_onnx", _lazy("lucidnet.interop.onnx_export", "export_onnx"))


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name])
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'lucidnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_NAMES))


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import lucidnet.prep`` (a module's home before the subpackages) gives the module in its
    new home, ``lucidnet.data.prep``: the same module object, not a copy."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        short = fullname.removeprefix(f"{__name__}.")
        if short == fullname or short not in _LAZY_MODULES or _LAZY_MODULES[short] == fullname:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = importlib.import_module(_LAZY_MODULES[spec.name.removeprefix(f"{__name__}.")])
        spec.loader_state = module.__spec__  # the import system overwrites __spec__ next
        return module

    def exec_module(self, module: ModuleType) -> None:
        assert module.__spec__ is not None  # set by the import system from find_spec's answer
        module.__spec__ = module.__spec__.loader_state  # already executed in its own home


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
