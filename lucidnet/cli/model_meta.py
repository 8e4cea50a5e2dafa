"""The schema of what ``lucidnet train`` stores in ``model.metadata``, checked when the command
reads a model file (``predict``, ``evaluate``, ``info``, ``explain``, ``gradcheck``).

The rest of the file is checked by the layer that owns it before this module sees it:
``lucidnet.load`` checks the architecture, loss, optimizer, history and that the metadata is an
object (:mod:`lucidnet.io`); ``TabularPreparer.from_dict`` checks the stored preparation
(:mod:`lucidnet.data._prep_state`). This module checks the command's own fields and how they
fit together with the network and the preparation:

===============================  ============================================  ===============
field                            rule                                          when invalid
===============================  ============================================  ===============
``preparation``                  a valid ``TabularPreparer`` with a target      refused
``task``                         ``"classification"`` / ``"regression"``, the   refused
                                 preparation's task
``classes``                      classification: the preparation's classes,     refused
                                 one per output unit; regression: null
``target``                       the preparation's target column (a string)    refused
(the network)                    input: one float feature per prepared column  refused
                                 (no ``Embedding`` first: the command feeds
                                 floats); output: one unit per class with a
                                 softmax loss, or one unit with a regression
                                 loss
``test_metrics``                 the metrics of ``test_metrics()`` for this    dropped, warning
                                 task and these classes (per-class table and
                                 k x k confusion matrix)
``training``                     per entry: ``seconds`` >= 0, ``epochs_run``,  entry dropped,
                                 ``best_epoch`` in [1, epochs run], the        warning
                                 hyper-parameters JSON scalars or flat lists
``split``                        train / val / test counts, ``stratified``,    dropped, warning
                                 ``note``
``target_scaling``               null or ``{"mean", "std"}`` numbers           dropped, warning
``calibration``                  null, or (classification) the ECE before /    dropped, warning
                                 after, the temperature (> 0, already folded
                                 into the weights), the reliability bins
``images`` (image models)        ``preparation`` (height, width in [1, 1024],    refused
                                 ``color`` gray / rgb, pixels / 255, bilinear),
                                 ``input`` folder / csv / idx, the CSV's path
                                 ``column``, ``count``; with it ``task``,
                                 ``classes`` (2+ distinct names, or null for
                                 regression) and ``target`` (a string) are
                                 checked on their own (``preparation`` is
                                 null), and the network's input is the image
                                 shape (height, width, channels)
``created_by``, ``data_file``,   strings                                       dropped, warning
``lucidnet_version``,
``task_reason``
===============================  ============================================  ===============

"Refused" is a :class:`lucidnet.ModelFileError` (for the command: one line, exit status 2): the
field is needed to turn a CSV row into features or the network's output into a prediction.
"Dropped" fields only describe the training run; the command prints one warning line per
dropped field and ``info`` shows the rest. Other keys (a user's own) are kept unread.

Why checking functions and not JSON Schema (the ``jsonschema`` package): the rules that matter
are relations, between fields (the confusion matrix is k x k for the k classes, the best epoch
lies within the epochs run) and with the objects the other layers built (one output unit per
class, one input per prepared feature), which a JSON Schema cannot state; the per-field
"refuse or drop" policy would need a schema per field anyway; and lucidnet would gain a
dependency for the easy half. Each rule is a small function of the parsed JSON that returns
the value to keep (numbers as floats, so that formatting them cannot fail) or raises
``ValueError`` saying what was expected and what was found, without printing the (possibly
huge) value itself.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._validation import json_kind
from ..io import ModelFileError, load

if TYPE_CHECKING:  # pragma: no cover
    from ..data.images import ImagePreparation
    from ..data.prep import TabularPreparer
    from ..model import Sequential

TASKS = ("classification", "regression")
#: the largest count (rows, epochs, confusion-matrix cell) a metadata field may state
MAX_COUNT = 2**53

Check = Callable[[Any], Any]


@dataclass(frozen=True)
class TrainedModel:
    """A model file written by ``lucidnet train``, checked.

    Attributes:
        model: the network (checked by ``lucidnet.load``).
        preparer: the fitted data preparation, with its target (an image model:
            the :class:`lucidnet.data.images.ImagePreparation`).
        metadata: ``model.metadata`` with every field this module knows valid: ``task``,
            ``classes`` (labels as strings, or None) and ``target`` always set; malformed
            descriptive fields removed.
        warnings: one line per field dropped (by ``load``, the preparation or this module).
    """

    model: Sequential
    preparer: TabularPreparer | ImagePreparation
    metadata: dict[str, Any]
    warnings: tuple[str, ...]


def read_trained_model(path: str) -> TrainedModel:
    """Load ``path`` and check its metadata against the schema in the module docstring.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: the file is corrupt, was not written by ``lucidnet train``, or a field
            needed to predict is malformed (the message names it).
    """
    from ..data.prep import TabularPreparer

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(path)
        meta = model.metadata
        bad = f"model file '{os.fspath(path)}'"
        if "images" in meta:
            return _read_image_model(path, model, meta, caught)
        if not isinstance(meta.get("preparation"), dict):
            raise ModelFileError(
                f"{bad} has no stored data preparation (it was not written by 'lucidnet "
                "train'); use the Python API to predict with it"
            )
        try:
            preparer = TabularPreparer.from_dict(meta["preparation"])
            clean = _needed_fields(meta, preparer)
            _check_network(model, preparer, clean["task"], clean["classes"])
        except ValueError as exc:
            raise ModelFileError(f"{bad}: {exc}") from None
        dropped = _descriptive_fields(meta, clean, model)
    return TrainedModel(model, preparer, clean, _notes(path, caught, dropped))


def _notes(path: str, caught: list[warnings.WarningMessage], dropped: list[str]) -> tuple[str, ...]:
    """One line per warning and dropped field, each naming the file."""
    # lucidnet.load's warnings name the file already; the preparation's and ours do not
    named = repr(os.fspath(path))
    bad = f"model file '{os.fspath(path)}'"
    notes = [str(w.message) for w in caught] + dropped
    notes = [n if n.startswith(named) else f"{bad}: {n}" for n in notes]
    return tuple(" ".join(n.split()) for n in notes)


# ------------------------------------------------------------------------------------------------
# image models
# ------------------------------------------------------------------------------------------------

#: where an image model's training images came from
IMAGE_INPUTS = ("folder", "csv", "idx")


def _read_image_model(
    path: str, model: Sequential, meta: dict[str, Any], caught: list[warnings.WarningMessage]
) -> TrainedModel:
    """An image model (``meta["images"]``): its preparation, task, classes and target checked
    (refused when malformed), the network's input against the preparation's image shape and
    its output against the task; then the descriptive fields as for tables."""
    bad = f"model file '{os.fspath(path)}'"
    try:
        prep, clean = _image_fields(meta)
        if tuple(model.input_shape or ()) != prep.shape:
            raise ValueError(
                f"the network's input shape {tuple(model.input_shape or ())} does not match the "
                f"image preparation's {prep.shape} (height, width, channels)"
            )
        if model.layers[0].integer_input:
            raise ValueError("its first layer takes token ids, but images are float pixels")
        _check_outputs(model, clean["task"], clean["classes"])
    except ValueError as exc:
        raise ModelFileError(f"{bad}: {exc}") from None
    dropped = _descriptive_fields(meta, clean, model)
    return TrainedModel(model, prep, clean, _notes(path, caught, dropped))


def _image_fields(meta: dict[str, Any]) -> tuple[ImagePreparation, dict[str, Any]]:
    """``(preparation, metadata)`` with ``images``, ``task``, ``classes``, ``target`` checked."""
    from ..data.images import ImagePreparation

    rule = record(
        {
            "preparation": ImagePreparation.from_dict,
            "input": lambda v: _one_of(v, IMAGE_INPUTS),
            "column": nullable(text),
            "count": boolean,
        }
    )
    try:
        images = rule(meta["images"])
    except ValueError as exc:
        raise ValueError(f"'images': {exc}") from None
    task = meta.get("task")
    if task not in TASKS:
        raise ValueError(f"'task' must be one of {list(TASKS)}, got {json_kind(task)}")
    classes = meta.get("classes")
    if task == "classification":
        if (
            not isinstance(classes, list)
            or len(classes) < 2
            or not all(isinstance(c, str) for c in classes)
            or len(set(classes)) != len(classes)
        ):
            raise ValueError(
                f"'classes' must be a list of 2 or more distinct class names, got "
                f"{json_kind(classes)}"
            )
    elif classes is not None:
        raise ValueError("'classes' must be null for a regression model")
    if not isinstance(meta.get("target"), str):
        raise ValueError(f"'target' must be a string, got {json_kind(meta.get('target'))}")
    if images["input"] == "csv" and images["column"] is None:
        raise ValueError("'images': a model trained on a CSV file needs its image-path 'column'")
    clean = dict(meta, images=images, classes=classes)
    return images["preparation"], clean


def _one_of(v: Any, options: tuple[str, ...]) -> str:
    if v not in options:
        raise ValueError(f"expected one of {list(options)}, got {json_kind(v)}")
    return str(v)


# ------------------------------------------------------------------------------------------------
# fields needed to predict
# ------------------------------------------------------------------------------------------------


def _needed_fields(meta: dict[str, Any], preparer: TabularPreparer) -> dict[str, Any]:
    """``meta`` with ``task``, ``classes`` and ``target`` checked against the preparation (and
    filled in from it when absent, as files of older versions may lack them)."""
    t = preparer.target_
    if t is None:
        raise ValueError("its data preparation has no target (it was not fitted by 'train')")
    clean = dict(meta)
    task = meta.get("task")
    if task is None:
        task = t["task"]
    if task not in TASKS or task != t["task"]:
        raise ValueError(
            f"'task' must be the preparation's task {t['task']!r}, "
            f"got {json_kind(meta.get('task'))}"
        )
    expected = None if task == "regression" else [str(c) for c in t["classes"]]
    classes = meta.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or not all(isinstance(c, (str, int, float)) for c in classes)
        or [str(c) for c in classes] != expected
    ):
        raise ValueError(
            f"'classes' must be the {len(expected)} classes of the preparation"
            if expected
            else "'classes' must be null for a regression model"
        )
    target = meta.get("target")
    if target is not None and target != t["name"]:
        raise ValueError(
            f"'target' must be the preparation's target column {t['name']!r}, "
            f"got {json_kind(target)}"
        )
    clean.update(task=task, classes=expected, target=t["name"])
    return clean


def _output_shape(model: Sequential) -> tuple[int, ...]:
    shape = tuple(model.input_shape or ())
    for layer in model.layers:
        shape = tuple(layer.output_shape(shape))
    return shape


def _check_network(
    model: Sequential, preparer: TabularPreparer, task: str, classes: list[str] | None
) -> None:
    """The network takes the prepared features and gives one output per class (or one value)."""
    n_features = len(preparer.feature_names_out())
    if tuple(model.input_shape or ()) != (n_features,):
        raise ValueError(
            f"the network's input shape {tuple(model.input_shape or ())} does not match the "
            f"{n_features} features of its data preparation"
        )
    first = model.layers[0]
    if first.integer_input:
        raise ValueError(
            f"its first layer ({type(first).__name__}) takes token ids, but the command feeds "
            "the network prepared float features"
        )
    _check_outputs(model, task, classes)


def _check_outputs(model: Sequential, task: str, classes: list[str] | None) -> None:
    """One output unit per class with a softmax loss, or one unit with a regression loss."""
    out, loss = _output_shape(model), model.loss
    if task == "classification":
        k = len(classes or [])
        if loss is None or loss.output_activation != "softmax" or out != (k,):
            raise ValueError(
                f"a classification model needs a softmax loss (cross_entropy) and {k} output "
                f"units, one per class; the network has output shape {out} and loss "
                f"{None if loss is None else loss.key!r}"
            )
    elif loss is None or loss.task != "regression" or out != (1,):
        raise ValueError(
            f"a regression model needs a regression loss and 1 output unit; the network has "
            f"output shape {out} and loss {None if loss is None else loss.key!r}"
        )


# ------------------------------------------------------------------------------------------------
# descriptive fields
# ------------------------------------------------------------------------------------------------


def text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {json_kind(v)}")
    return v


def number(v: Any) -> float:
    """A JSON number (NaN and infinities allowed: a metric may be undefined) as a float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {json_kind(v)}")
    try:
        return float(v)
    except OverflowError:
        raise ValueError("expected a number, got an integer beyond the float range") from None


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {json_kind(v)}")
    return v


def count(v: Any, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= MAX_COUNT:
        raise ValueError(f"expected an integer >= {minimum}, got {json_kind(v)}")
    return v


def record(fields: dict[str, Check]) -> Check:
    """An object with exactly the keys of ``fields``, each checked by its function."""

    def check(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict) or set(v) != set(fields):
            found = sorted(v)[:8] if isinstance(v, dict) else json_kind(v)
            raise ValueError(f"expected an object with the keys {sorted(fields)}, got {found}")
        out = {}
        for key, field in fields.items():
            try:
                out[key] = field(v[key])
            except ValueError as exc:
                raise ValueError(f"{key!r}: {exc}") from None
        return out

    return check


def nullable(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _scalar(v: Any) -> Any:
    """A hyper-parameter value: a JSON scalar, or a flat list of them."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(v, scalar) or (isinstance(v, list) and all(isinstance(x, scalar) for x in v)):
        return v
    raise ValueError(f"expected a value or a flat list of values, got {json_kind(v)}")


def _test_metrics(task: str, classes: list[str] | None) -> Check:
    """The check of ``test_metrics`` for this task (and these classes)."""
    if task == "regression":
        return record({"mae": number, "rmse": number, "r2": number})
    names = classes or []
    k = len(names)
    per_class = record({"precision": number, "recall": number, "f1": number, "support": count})

    def table(v: Any) -> dict[str, Any]:
        return record(dict.fromkeys(names, per_class))(v)

    def matrix(v: Any) -> list[list[int]]:
        if not isinstance(v, list) or len(v) != k:
            raise ValueError(f"expected {k} rows, got {json_kind(v)}")
        rows = []
        for row in v:
            if not isinstance(row, list) or len(row) != k:
                raise ValueError(f"expected {k} x {k} counts, got a row that is {json_kind(row)}")
            rows.append([count(c) for c in row])
        return rows

    def same_classes(v: Any) -> list[str]:
        if v != names:
            raise ValueError("expected the model's classes")
        return list(names)

    details = record({"classes": same_classes, "per_class": table, "confusion_matrix": matrix})
    return record({"accuracy": number, "f1_macro": number, "details": details})


#: the most reliability bins a calibration entry may list
MAX_BINS = 1000


def _fraction(v: Any) -> float:
    x = number(v)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"expected a number in [0, 1], got {x}")
    return x


def _bins(v: Any) -> list[dict[str, Any]]:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_BINS:
        raise ValueError(f"expected a list of 1 to {MAX_BINS} bins, got {json_kind(v)}")
    rule = record(
        {
            "lo": _fraction,
            "hi": _fraction,
            "count": count,
            "confidence": nullable(_fraction),
            "accuracy": nullable(_fraction),
        }
    )
    return [rule(b) for b in v]


def _calibration(task: str) -> Check:
    """The check of ``calibration`` (glassbox/calibration.py's report): only a classifier has
    one; the temperature is a finite number > 0 and comes with the ECE after it."""
    rule = record(
        {
            "ece_before": _fraction,
            "ece_after": nullable(_fraction),
            "temperature": nullable(_temperature),
            "bins": _bins,
            "bins_after": nullable(_bins),
            "n_rows": lambda n: count(n, minimum=1),
            "rows": _rows_kind,
            "n_bins": lambda n: count(n, minimum=1),
            "fitted_on": nullable(lambda n: count(n, minimum=1)),
        }
    )

    def check(v: Any) -> dict[str, Any]:
        if task != "classification":
            raise ValueError("a regression model has no calibration")
        out = rule(v)
        fitted = [out[k] is not None for k in ("temperature", "ece_after", "bins_after")]
        if any(fitted) and not all(fitted):
            raise ValueError("'temperature', 'ece_after' and 'bins_after' go together")
        return out

    return check


def _temperature(v: Any) -> float:
    x = number(v)
    if not 0 < x < math.inf:
        raise ValueError(f"expected a finite number > 0, got {x}")
    return x


def _rows_kind(v: Any) -> str:
    if v not in ("validation", "test"):
        raise ValueError(f"expected 'validation' or 'test', got {json_kind(v)}")
    return str(v)


def _training(v: Any, history_epochs: int | None) -> tuple[dict[str, Any], list[str]]:
    """``training``, entry by entry: the kept entries and why each other one was dropped."""
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {json_kind(v)}")
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    checks: dict[str, Check] = {
        "seconds": lambda s: _non_negative(number(s)),
        "epochs_run": count,
        "best_epoch": nullable(lambda e: count(e, minimum=1)),
    }
    for key, value in v.items():
        try:
            kept[key] = checks.get(key, _scalar)(value)
        except ValueError as exc:
            dropped.append(f"'training.{key[:40]}' is malformed and was dropped ({exc})")
    best = kept.get("best_epoch")
    limits = [n for n in (kept.get("epochs_run"), history_epochs) if n is not None]
    if best is not None and any(best > n for n in limits):
        del kept["best_epoch"]
        dropped.append(
            f"'training.best_epoch' ({best}) is beyond the epochs run ({min(limits)}) and was "
            "dropped"
        )
    return kept, dropped


def _non_negative(x: float) -> float:
    if not x >= 0 or math.isinf(x):
        raise ValueError(f"expected a finite number >= 0, got {x}")
    return x


_SPLIT = record(
    {
        "train": count,
        "val": count,
        "test": count,
        "stratified": boolean,
        "note": text,
    }
)


def _target_scaling(v: Any) -> dict[str, Any]:
    """``{"mean", "std"}`` of a standardised regression target: ``explain`` divides by ``std``
    (the scaling taken back out of the output layer), so ``std`` must be positive with ``1 /
    std`` and ``mean / std`` finite (a subnormal ``std`` would turn the step into NaN)."""
    out = record({"mean": number, "std": number})(v)
    mean, std = out["mean"], out["std"]
    ok = std > 0 and all(math.isfinite(x) for x in (mean, std, 1.0 / std, mean / std))
    if not ok:
        raise ValueError(
            f"expected a finite mean and a positive standard deviation whose inverse is finite, "
            f"got mean {mean!r}, std {std!r}"
        )
    return out


#: the descriptive fields that have one check each (``training`` and ``test_metrics`` depend
#: on other fields and are handled in ``_descriptive_fields``)
DESCRIPTIVE: dict[str, Check] = {
    "created_by": text,
    "lucidnet_version": text,
    "data_file": text,
    "task_reason": text,
    "split": _SPLIT,
    "target_scaling": nullable(_target_scaling),
}


def _descriptive_fields(
    meta: dict[str, Any], clean: dict[str, Any], model: Sequential
) -> list[str]:
    """Check the descriptive fields into ``clean`` (in place): each malformed one is removed and
    a line says why."""
    dropped: list[str] = []
    task, classes = clean["task"], clean["classes"]
    checks = {
        **DESCRIPTIVE,
        "test_metrics": nullable(_test_metrics(task, classes)),
        "calibration": nullable(_calibration(task)),
    }
    for key, check in checks.items():
        if key not in meta:
            continue
        try:
            clean[key] = check(meta[key])
        except ValueError as exc:
            del clean[key]
            dropped.append(f"its {key!r} entry is malformed and was dropped ({exc})")
    if "training" in meta:
        epochs = None if model.history is None else len(model.history.epoch)
        try:
            clean["training"], more = _training(meta["training"], epochs)
            dropped += more
        except ValueError as exc:
            del clean["training"]
            dropped.append(f"its 'training' entry is malformed and was dropped ({exc})")
    return dropped
