"""``lucidnet train``'s model file: sized before training, and never lost at save time.

A model file keeps its architecture, history and metadata (data preparation, classes, test
metrics) as JSON in the safetensors header, which :func:`lucidnet.load` accepts up to
``lucidnet.io.MAX_HEADER_BYTES``. :func:`check_header_fits` bounds that header before training
from what is known then (the fitted preparation, the classes, the number of test rows, epochs and
steps) and refuses a run whose model could not be saved; :func:`check_disk_space` does the same
for the whole file and the free disk space. :func:`save_trained` is the second net:
if the save fails anyway, the trained model is kept (without the parts that describe the run, or
under another name) and the user is told what was kept, in one line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .args import CLIError, _os_msg

#: the most per-batch training losses (``history.iteration_loss``) a model file keeps; a longer
#: curve is saved as the means of consecutive steps (``metadata.training.iteration_loss_mean_of``
#: says how many). 2 million rows for 200 epochs at batch 32 are 8.75 million steps, ~190 MB of
#: JSON: more than a model file's header may hold. 100,000 values are ~2.2 MB.
MAX_SAVED_ITERATION_LOSSES = 100_000

_FLOAT = 26  # bytes of a float in the header, with separator: "-1.2345678901234567e-05, "
_LAYER = 4096  # bytes of one layer: class, config, and up to 4 arrays x 3 tensor-table entries


def json_bytes(value: Any) -> int:
    """Bytes ``value`` takes in a model file's header: its JSON (as ``lucidnet.io`` writes it),
    embedded as a JSON string in the safetensors header, where ``"`` and ``\\`` are escaped."""
    text = json.dumps(value, allow_nan=True)
    return len(text.encode("utf-8")) + text.count('"') + text.count("\\")


def _digits(n: int) -> int:
    return len(str(max(0, n)))


def _test_metrics_bound(classes: list[str], n_test: int) -> int:
    """Upper bound of ``test_metrics`` (classification): accuracy and macro F1, per-class
    precision / recall / F1 / support, the class list and the k x k confusion matrix, whose
    entries (at most ``n_test`` of them non-zero) sum to ``n_test``."""
    if n_test == 0:
        return 0
    k = len(classes)
    names = json_bytes(classes)  # the class names with their quotes and separators
    entry = json_bytes({"precision": 0, "recall": 0, "f1": 0, "support": 0}) - 4
    per_class = names + k * (entry + 3 * _FLOAT + _digits(n_test) + 4)
    confusion = k * (3 * k + 4) + min(k * k, n_test) * (_digits(n_test) - 1)
    return 512 + 2 * _FLOAT + per_class + names + confusion


def _history_bound(args: argparse.Namespace, n_train: int) -> int:
    """Upper bound of the saved training history: ``--epochs`` epochs of up to 8 logged values,
    the per-batch losses (at most :data:`MAX_SAVED_ITERATION_LOSSES`), fit's parameters and
    warnings (16 kB)."""
    steps = args.epochs * max(1, math.ceil(n_train / args.batch_size))
    per_epoch = 8 * _FLOAT + _digits(args.epochs) + 2
    return 16_384 + args.epochs * per_epoch + min(steps, MAX_SAVED_ITERATION_LOSSES) * _FLOAT


def header_parts(
    args: argparse.Namespace, data: Any, task: str, classes: list[str], metadata: dict[str, Any]
) -> dict[str, int]:
    """Upper bounds, in bytes, of the parts of the model file's header that ``train`` will
    write, from ``metadata`` as it will be saved less what training adds (test metrics,
    history)."""
    rest = {k: v for k, v in metadata.items() if k not in ("preparation", "test_metrics")}
    n_layers = len(args.hidden) * (2 + 2 * bool(args.batch_norm) + bool(args.dropout)) + 1
    return {
        "data preparation": json_bytes(metadata["preparation"]),
        "test metrics": _test_metrics_bound(classes, len(data.X_test))
        if task == "classification"
        else 512,
        "training history": _history_bound(args, len(data.X_train)),
        "architecture and tensor table": 4096 + n_layers * _LAYER,
        "other metadata": json_bytes(rest) + 1024,  # + the float seconds / best epoch
    }


def check_header_fits(
    args: argparse.Namespace, data: Any, task: str, classes: list[str], metadata: dict[str, Any]
) -> int:
    """Refuse, before training, a model whose file header would exceed the limit ``load``
    accepts (``lucidnet.io.MAX_HEADER_BYTES``); returns the estimate in bytes.

    Raises:
        CLIError: the estimate, its largest part and what would make it smaller.
    """
    from ..data.limits import format_bytes
    from ..io import MAX_HEADER_BYTES

    parts = header_parts(args, data, task, classes, metadata)
    total = sum(parts.values())
    if total <= MAX_HEADER_BYTES:
        return total
    biggest = max(parts, key=parts.__getitem__)
    k = len(classes)
    why = {
        "test metrics": f"the {k:,} x {k:,} confusion matrix and per-class table of the test "
        "metrics; use fewer classes (group the rare ones), or --test-size 0 (no test metrics "
        "are saved)",
        "data preparation": "the fitted data preparation (TF-IDF vocabularies, categories); "
        "lower --max-features or --max-categories",
        "training history": "the training history; lower --epochs",
        "architecture and tensor table": "the architecture; use fewer --hidden layers",
        "other metadata": "the column names and classes; drop columns with --drop",
    }[biggest]
    detail = ", ".join(f"{name} {format_bytes(n)}" for name, n in parts.items())
    raise CLIError(
        f"the model file could not be saved: its header would need up to {format_bytes(total)} "
        f"({detail}), more than the {format_bytes(MAX_HEADER_BYTES)} a model file may hold "
        f"(lucidnet.io.MAX_HEADER_BYTES); nothing was trained. Most of it is {why}"
    )


def file_bound(args: argparse.Namespace, n_inputs: int, n_outputs: int, header: int) -> int:
    """Upper bound of the model file's size: the header, and each parameter (and BatchNorm
    statistic) stored as float32 with up to two optimizer slots (Adam's m and v)."""
    dims = [n_inputs, *args.hidden, n_outputs]
    values = sum(a * b + b for a, b in zip(dims, dims[1:], strict=False))
    values += 4 * sum(args.hidden) if args.batch_norm else 0
    return header + 8 + 3 * 4 * values


def check_disk_space(path: str, n_bytes: int) -> None:
    """Refuse, before training, a model file that the disk holding ``path`` has no room for
    (the file is written next to ``path`` and renamed, so the old file counts as used)."""
    from ..data.limits import format_bytes

    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(directory)
    except (OSError, AttributeError):  # no statvfs on this platform: the rescue still holds
        return
    free = st.f_bavail * st.f_frsize
    if n_bytes > free:
        raise CLIError(
            f"not enough disk space for the model file '{path}': it may need up to "
            f"{format_bytes(n_bytes)}, {format_bytes(free)} are free in '{directory}'; nothing "
            "was trained"
        )


def history_to_save(history: Any) -> tuple[Any, int]:
    """``(history as saved, steps per saved loss)``: the same History when its per-batch
    losses fit :data:`MAX_SAVED_ITERATION_LOSSES`, else a copy whose per-batch losses are the
    means of consecutive groups of that many steps (the last group may be shorter)."""
    from ..callbacks import History

    if history is None:
        return None, 1
    n = len(history.iteration_loss)
    if n <= MAX_SAVED_ITERATION_LOSSES:
        return history, 1
    group = math.ceil(n / MAX_SAVED_ITERATION_LOSSES)
    starts = np.arange(0, n, group)
    sums = np.add.reduceat(np.asarray(history.iteration_loss, dtype=np.float64), starts)
    counts = np.diff(np.append(starts, n))
    saved = History.from_dict(history.to_dict(include_iterations=False))
    saved.iteration_loss = (sums / counts).tolist()
    return saved, group


def save_trained(model: Any, path: str, overwrite: bool) -> None:
    """Save the trained ``model`` to ``path``; never lose it silently.

    The per-batch loss curve is thinned first if it is long (:func:`history_to_save`; the note
    ``metadata.training.iteration_loss_mean_of`` says so). If the file is still refused as too
    large, the model is saved without the test metrics and the training history (they describe
    the run; the network and its data preparation are what ``predict`` needs), with
    ``metadata.saved_without`` naming what was left out, and a warning line says so. If
    ``path`` cannot be written (disk full, directory gone, permissions), the model is written
    under another name (next to ``path``, in the working directory, or in the temporary
    directory) and a :class:`CLIError` names where it is.

    Raises:
        CLIError: ``path`` could not be written (the message says where the model was kept,
            or that it could not be kept anywhere).
    """
    full_history = model.history
    saved, group = history_to_save(full_history)
    if group > 1:
        model.metadata["training"]["iteration_loss_mean_of"] = group
    model.history = saved
    try:
        _save_slimmed_if_needed(model, path, overwrite)
    except OSError as exc:
        _rescue(model, path, exc)
    finally:
        model.history = full_history  # the report and plots draw the whole curve


def _save_slimmed_if_needed(model: Any, path: str, overwrite: bool) -> None:
    try:
        model.save(path, overwrite=overwrite)
        return
    except ValueError as exc:  # the header is larger than load accepts
        reason = str(exc)
    dropped = [k for k in ("test_metrics",) if model.metadata.get(k) is not None]
    dropped += ["history"] if model.history is not None else []
    model.metadata = {**model.metadata, "test_metrics": None, "saved_without": dropped}
    history, model.history = model.history, None
    try:
        model.save(path, overwrite=overwrite)
    except ValueError as exc:
        raise CLIError(
            f"the trained model could not be saved to '{path}', even without its test metrics "
            f"and history: {exc}"
        ) from None
    finally:
        model.history = history
    left_out = " and ".join(d.replace("_", " ") for d in dropped)
    print(
        f"lucidnet: warning: {' '.join(reason.split())}; '{path}' was saved without {left_out} "
        "(the test metrics are printed above, and written to --metrics-json when given); the "
        "network and its data preparation are complete",
        file=sys.stderr,
    )


def _rescue(model: Any, path: str, error: OSError) -> None:
    """``path`` could not be written: save the model under another name, then raise a
    :class:`CLIError` that says where it is."""
    what = _os_msg(error) if error.filename else f"{error.strerror or error}: '{path}'"
    name = f"{Path(path).stem}.rescued-{os.getpid()}.lnet"
    places = [os.path.dirname(os.path.abspath(path)), os.getcwd(), tempfile.gettempdir()]
    tried = []
    for place in dict.fromkeys(places):
        candidate = os.path.join(place, name)
        try:
            model.save(candidate, overwrite=False)
        except (OSError, ValueError) as exc:
            tried.append(f"'{candidate}': {exc}")
            continue
        raise CLIError(
            f"cannot write the model file ({what}); the trained model was saved to "
            f"'{candidate}' instead"
        ) from None
    raise CLIError(
        f"cannot write the model file ({what}); the trained model could not be kept "
        f"(also tried {'; '.join(tried)})"
    ) from None


def scaling_of(history: Any) -> dict[str, float] | None:
    """The regression target's standardisation ``fit`` used (``history.params``), as the model
    file stores it: ``{"mean", "std"}`` plain numbers (one output), or None."""
    scaling = history.params.get("target_scaling")
    return None if scaling is None else {k: float(v[0]) for k, v in scaling.items()}
