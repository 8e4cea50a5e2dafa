"""The ``lucidnet`` command: from a CSV file to an evaluated, saved model.

Commands: ``train``, ``predict``, ``evaluate``, ``info``, ``demo``, and the glass-box tools
``explain``, ``gradcheck``, ``lr-find``, ``export`` (run ``lucidnet COMMAND --help``). The argument
parser, the option types and ``--config`` files live in :mod:`lucidnet.cli_args`; this module
holds the commands and :func:`main`.

Error policy: a user mistake (missing / empty / non-CSV file, unknown column, bad option value,
corrupt model file, an output file that already exists) is reported as ONE line on stderr,
``lucidnet: error: ...``, with exit status 2. Such errors are recognised at the boundaries where
user input is processed (:func:`_user_errors`); any other exception is a bug and keeps its
traceback. Ctrl-C exits with status 130 and a one-line message.

Model files written by ``train`` keep, in ``model.metadata`` (JSON): the fitted data preparation
(``"preparation"``, :meth:`TabularPreparer.to_dict`), the target name, task and class names, the
training configuration and the test metrics, so that ``predict`` / ``evaluate`` / ``info`` need
nothing but the model file and a CSV file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._files import open_atomically, write_text_atomically
from .._version import __version__
from ..model import mlp as build_model  # the table network (tune and images build it too)
from . import defaults, saving
from .args import DEFAULT_MAX_FEATURES as DEFAULT_MAX_FEATURES  # re-exported
from .args import CLIError, _os_msg, parse_args
from .args import build_parser as build_parser  # re-exported

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports it


#: the image path of train / predict / evaluate ("wants": args -> whether train's input is
#: images; "train", "predict", "evaluate"): :mod:`lucidnet.cli.images` fills it when it is
#: imported (``lucidnet/cli/__init__.py`` imports it), so that this module never imports it and
#: the two form no import cycle
IMAGE_COMMANDS: dict[str, Any] = {}


class _InterruptedInFit(KeyboardInterrupt):
    """Ctrl-C during training: ``fit`` has already printed what was kept, so ``main`` exits with
    status 130 without a second message."""


@contextlib.contextmanager
def _user_errors(context: str = "") -> Iterator[None]:
    """Turn the errors that library calls raise for bad *user input* into :class:`CLIError`.

    Used only around calls that validate user data / options / files, so that genuine bugs
    elsewhere still surface with a traceback.
    """
    prefix = f"{context}: " if context else ""
    try:
        yield
    except CLIError:
        raise
    except (FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError) as exc:
        raise CLIError(prefix + (str(exc) if exc.filename is None else _os_msg(exc))) from None
    except (ValueError, TypeError) as exc:  # includes ln.ModelFileError
        raise CLIError(prefix + str(exc)) from None


# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------


def _say(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stdout)


def check_train_outputs(args: argparse.Namespace, out: str) -> None:
    """``train``'s outputs (the model file ``out``, ``--metrics-json``, ``--report``), each
    checked before any work (:func:`_check_output`), and different files."""
    outputs = [(out, "model file"), (args.metrics_json, "metrics file"), (args.report, "report")]
    for path, what in outputs:
        if path:
            _check_output(path, args.overwrite, (args.data,), what)
    given = [os.path.realpath(p) for p, _ in outputs if p]
    if len(set(given)) < len(given):
        raise CLIError("--out, --metrics-json and --report must be different files")


def _check_output(path: str, overwrite: bool, inputs: tuple[str, ...] = (), what: str = "") -> None:
    """Refuse an output path that is an input file (always), exists (without --overwrite), is a
    directory, or lies in a missing directory; checked before any time is spent."""
    label = f"{what} '{path}'" if what else f"'{path}'"
    for src in inputs:
        if src and os.path.exists(src) and os.path.realpath(src) == os.path.realpath(path):
            raise CLIError(f"refusing to write {label}: it is the input file '{src}'")
    if os.path.isdir(path):
        raise CLIError(f"{label} is a directory")
    if os.path.exists(path) and not overwrite:
        raise CLIError(f"{label} already exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"cannot write {label}: directory '{parent}' does not exist")


def _write_text(path: str, text: str) -> None:
    """Write an output text file whole or not at all (temporary file + rename), with the
    permissions open() gives; an OS error becomes a one-line :class:`CLIError`."""
    try:
        write_text_atomically(path, text, encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot write {_os_msg(exc)}") from None


#: what a spreadsheet takes for the start of a formula (OWASP, "CSV Injection")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: a number as Python and pandas write one (``-1``, ``-1.5``, ``-1e-05``): text of this
#: form is a value in any spreadsheet, never a formula, so it is left alone. A leading ``+`` is
#: not part of it: no number is written that way, so ``+1`` in a text cell was put there on purpose.
_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)


def neutralise_formula(value: Any) -> Any:
    """One CSV cell made safe to open in a spreadsheet (OWASP's rule against formula injection).

    Text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
    ``'``, which makes a spreadsheet show it as text instead of evaluating it
    (``=cmd|' /C calc'!A0`` -> ``'=cmd|' /C calc'!A0``). Numbers, and text that is a plain
    number (``-1.5``: a class label read from a numeric column), are returned unchanged.

    Args:
        value: a cell or a column header (any type; only ``str`` can be changed).

    Returns:
        ``value``, or ``"'" + value`` for text that a spreadsheet would run as a formula.
    """
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_STARTS)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def neutralise_formulas(table: Any) -> Any:
    """Apply :func:`neutralise_formula` to every column header of a DataFrame about to be
    written as CSV and to every cell of its text (object / string) columns, in place (the
    table is the caller's own; no copy of a large table); returns the table.

    Numeric and boolean columns are not touched: a negative probability or regression value
    stays ``-1.5``.
    """
    import pandas as pd

    table.columns = [neutralise_formula(c) for c in table.columns]
    for j in range(table.shape[1]):
        column = table.iloc[:, j]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            table.isetitem(j, column.map(neutralise_formula))
    return table


def csv_line_end(table: Any) -> str | None:
    """The line end to write ``table`` with: ``"\\r\\n"`` when a header or a text cell holds a
    carriage return, else None (pandas' default, ``os.linesep``).

    Python's csv writer quotes a cell only for the characters of its line end: before 3.11.9 /
    3.12.3 (CPython gh-67044) a bare CR in a cell went out unquoted under ``"\\n"`` line ends,
    and every CSV reader split the row there, so ``"a\\r=cmd|..."`` became a row whose first
    cell is a formula, past :func:`neutralise_formula`. With CRLF line ends (RFC 4180) the cell
    is quoted on every version.
    """
    import pandas as pd

    def has_cr(value: Any) -> bool:
        return isinstance(value, str) and "\r" in value

    if any(has_cr(c) for c in table.columns):
        return "\r\n"
    for j in range(table.shape[1]):
        column = table.iloc[:, j]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        if column.map(has_cr).any():
            return "\r\n"
    return None


def _read_csv(args: argparse.Namespace, meta: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Read ``args.data`` (CSV, compressed CSV or Parquet): (DataFrame, ReadOptions).

    ``--sep`` / ``--decimal`` / ``--encoding`` override the detection; for a command that uses
    a model file, the options the model was trained with (``meta["reading"]``) are preferred
    where the file agrees with them (:func:`lucidnet.data.columns.read_table`). Stored options
    that are malformed are ignored with one warning line."""
    from ..data.columns import check_read_options, read_table

    hint = None if meta is None else meta.get("reading")
    if hint is not None:
        try:
            if not isinstance(hint, dict) or set(hint) - {"sep", "decimal", "encoding"}:
                raise ValueError("expected an object with sep, decimal, encoding")
            check_read_options(hint.get("sep"), hint.get("decimal"), hint.get("encoding"))
        except ValueError as exc:
            print(
                f"lucidnet: warning: model file: stored reading options ignored ({exc})",
                file=sys.stderr,
            )
            hint = None
    with _user_errors():
        return read_table(
            args.data,
            sep=getattr(args, "sep", None),
            decimal=getattr(args, "decimal", None),
            encoding=getattr(args, "encoding", None),
            hint=hint,
        )


@contextlib.contextmanager
def _model_file_warnings() -> Iterator[None]:
    """Print the warnings of a model file's loader (a malformed descriptive field dropped:
    ``ModelFileWarning``, ``PreparationWarning``) as one ``lucidnet: warning:`` line each,
    instead of Python's two-line warning format."""
    from ..data.prep import PreparationWarning
    from ..io import ModelFileWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ModelFileWarning)
            warnings.simplefilter("always", PreparationWarning)
            yield
    finally:  # (after catch_warnings has put Python's own showwarning back)
        for w in caught:
            if issubclass(w.category, (ModelFileWarning, PreparationWarning)):
                print(f"lucidnet: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
            else:  # anything else as Python would have shown it
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _load_model(path: str, images: bool = False) -> tuple[Any, dict[str, Any], Any]:
    """Load a model file written by ``lucidnet train``: (model, metadata, preparer).

    Every field is checked before it is used (:mod:`lucidnet.cli.model_meta`): a file whose
    fields needed to predict are malformed is refused (one line, exit status 2); each malformed
    descriptive field is dropped with one warning line on stderr. The metadata returned has
    ``task``, ``classes`` (strings, or None) and ``target`` set and only valid fields."""
    from .model_meta import read_trained_model

    with _user_errors():
        trained = read_trained_model(path)
    for note in trained.warnings:
        print(f"lucidnet: warning: {note}", file=sys.stderr)
    if "images" in trained.metadata and not images:
        raise CLIError(f"'{path}' is an image model: this command takes table models only "
                       "(use predict, evaluate or info)")  # fmt: skip
    return trained.model, trained.metadata, trained.preparer


def _features(preparer: Any, df: Any, path: str, drift: bool = False) -> np.ndarray:
    """The prepared float32 features of ``df``, all finite: a value that the saved scaling
    takes beyond the float32 range (1e300 in the CSV, or a crafted statistic in the model file)
    is refused here, with its row and feature, rather than inside the network.

    With ``drift`` (predict, evaluate), what the preparation handles silently is reported first,
    one ``lucidnet: warning:`` line each: per categorical column the rows with a category not
    seen in training, per numeric column the rows far outside the training range (their
    predictions are extrapolations; ``TabularPreparer.out_of_range``), then the columns the
    training data did not have (ignored). The features are the same either way. A feature
    column that is missing is an error naming it, as without ``drift``."""
    if drift:
        with _user_errors(f"'{path}'"):
            report = preparer.input_drift(df)
        for line in report.messages():
            print(f"lucidnet: warning: {line}", file=sys.stderr)
    # (the float32 cast of such a value overflows: refused below, no NumPy warning first)
    with _user_errors(f"'{path}'"), np.errstate(over="ignore", invalid="ignore"):
        X = preparer.transform(df)
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise CLIError(
            f"'{path}': row {row + 1} gives a non-finite value for the feature "
            f"{preparer.feature_names_out()[col]!r} after the saved preparation (a value "
            "beyond the float32 range, about 3.4e38, once scaled)"
        )
    return X


def _labelled(preparer: Any, meta: dict[str, Any], df: Any, path: str) -> tuple[Any, np.ndarray]:
    """Rows with a target value and the encoded target, for evaluate / explain / gradcheck."""
    target = meta.get("target") or preparer.target
    if target not in df.columns:
        raise CLIError(
            f"'{path}' has no target column {target!r} (needed to compute metrics); "
            f"columns: {list(df.columns)}"
        )
    missing = df[target].isna().to_numpy()
    if missing.all():
        raise CLIError(f"'{path}': target column {target!r} is entirely empty")
    df = df.loc[~missing].reset_index(drop=True)
    with _user_errors(f"'{path}'"):
        return df, preparer.encode_target(df[target])


def _class_names(meta: dict[str, Any]) -> list[str]:
    """The class labels of checked metadata (:func:`_load_model`), as strings."""
    return [str(c) for c in meta.get("classes") or []]


def network_predictions(task: str, model: Any, X: np.ndarray) -> np.ndarray:
    """The network's predictions on ``X``: class indices (classification) or values, ``(n,)``;
    computed once per command and shared by the metrics, the intervals and the report."""
    if task == "classification":
        return model.predict_logits(X).argmax(axis=1)
    return model.predict(X).ravel()


def network_outputs(task: str, model: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`network_predictions` and, for a classifier, its predicted probabilities (softmax,
    or one sigmoid as two columns), from one forward pass."""
    if task != "classification":
        return network_predictions(task, model, X), None
    from ..glassbox.calibration import probabilities

    logits = model.predict_logits(X)
    return logits.argmax(axis=1), probabilities(logits)


def test_metrics(task: str, y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """Classification: ``{"accuracy", "f1_macro"}`` plus ``details`` (per-class precision /
    recall / F1 / support and the confusion matrix); regression: ``{"mae", "rmse", "r2"}``.
    ``pred``: :func:`network_predictions` of the rows whose targets are ``y``."""
    from .. import metrics

    if task == "classification":
        k = len(classes)
        prf = metrics.precision_recall_f1(y, pred, n_classes=k)
        per_class = {
            c: {
                "precision": float(prf["precision"][i]),
                "recall": float(prf["recall"][i]),
                "f1": float(prf["f1"][i]),
                "support": int(prf["support"][i]),
            }
            for i, c in enumerate(classes)
        }
        cm = metrics.confusion_matrix(y, pred, n_classes=k)
        return {
            "accuracy": metrics.accuracy(y, pred),
            "f1_macro": metrics.f1(y, pred),
            "details": {
                "classes": classes,
                "per_class": per_class,
                "confusion_matrix": cm.tolist(),
            },
        }
    return {"mae": metrics.mae(y, pred), "rmse": metrics.rmse(y, pred), "r2": metrics.r2(y, pred)}


def format_metrics(task: str, result: dict, n_rows: int, title: str = "Test set") -> str:
    """The metrics of :func:`test_metrics` as text (per-class table, confusion matrix)."""
    from .demo import format_confusion

    if task != "classification":
        return (
            f"{title} ({n_rows} rows): MAE {result['mae']:.4g}   RMSE {result['rmse']:.4g}   "
            f"R^2 {result['r2']:.4f}"
        )
    d = result["details"]
    w = max([5] + [len(c) for c in d["classes"]])
    lines = [
        f"{title} ({n_rows} rows): accuracy {result['accuracy']:.4f}   "
        f"macro F1 {result['f1_macro']:.4f}",
        f"  {'class':<{w}}  precision  recall      f1  support",
    ]
    for c in d["classes"]:
        pc = d["per_class"][c]
        lines.append(
            f"  {c:<{w}}  {pc['precision']:>9.3f}  {pc['recall']:>6.3f}  {pc['f1']:>6.3f}"
            f"  {pc['support']:>7d}"
        )
    lines.append("Confusion matrix (rows: true class, columns: predicted class):")
    lines.append(format_confusion(np.asarray(d["confusion_matrix"]), d["classes"]))
    return "\n".join(lines)


NEAR_PERFECT = 0.99  # a test score at or above this is more often leakage than skill


def near_perfect_warning(task: str, result: dict) -> str | None:
    """A one-line warning for a near-perfect test score (accuracy or R^2 >= 0.99), else None."""
    name, value = (
        ("accuracy", result["accuracy"])
        if task == "classification"
        else (
            "R^2",
            result["r2"],
        )
    )
    if value is None or not value >= NEAR_PERFECT:
        return None
    return (
        f"Warning: test {name} {value:.4f} is near-perfect; check that no column gives the "
        "target away (target leakage: a recoding of it, or a value known only afterwards)"
    )


def _metrics_document(task: str, result: dict | None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"task": task, "test": None}
    if result is not None:
        doc["test"] = {k: v for k, v in result.items() if k != "details"}
        doc.update(result.get("details", {}))
    doc.update(extra)
    return doc


# ------------------------------------------------------------------------------------------------
# train / lr-find: data preparation and model construction
# ------------------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace, df: Any) -> Any:
    """Run :func:`lucidnet.prep.prepare` with the command-line options (errors -> CLIError).

    The limits (:mod:`lucidnet.data.limits`: classes, memory of the feature matrix) are checked
    inside, before the work they guard; their message names the command's options."""
    from ..data.limits import LimitError, cli_option
    from ..data.prep import prepare

    given = (*args.categorical, *args.text, *args.numeric, *getattr(args, "date", []))
    empty = [c for c in given if c in df.columns]
    empty = [c for c in empty if df[c].isna().all()]
    if empty:
        raise CLIError(f"column {empty[0]!r} was given a role but is entirely empty (no values)")
    with _user_errors(f"'{args.data}'"):
        try:
            return prepare(
                df,
                args.target,
                **_preparation_options(args),
                max_features=args.max_features,
                max_classes=args.max_classes,
                max_memory=args.max_memory,
            )
        except LimitError as exc:  # the same message, with the command's option names
            raise CLIError(f"'{args.data}': {exc.message(cli_option)}") from None


def _preparation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The command's options of the data preparation, in memory or streamed: split, task,
    column roles, scaling, categories, the leakage guard."""
    return {
        "test_size": args.test_size,
        "val_size": args.val_size,
        "seed": args.seed,
        "task": None if args.task == "auto" else args.task,
        "categorical": args.categorical,
        "text": args.text,
        "numeric": args.numeric,
        "drop": args.drop,
        "dates": getattr(args, "date", []),
        "scaling": args.scaling,
        "max_categories": args.max_categories,
        "keep_leaks": getattr(args, "keep_leaks", False),
    }


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "task hidden activation optimizer lr batch_size epochs patience dropout batch_norm l2 "
        "class_weight test_size val_size seed scaling max_features max_categories categorical "
        "text numeric drop loss"
    ).split()
    hp = {k: getattr(args, k) for k in keys}
    for key in ("calibrate", "final_fit"):  # train only (lr-find and tune share this function)
        if hasattr(args, key):
            hp[key] = getattr(args, key)
    hp["hidden"] = list(hp["hidden"])
    hp["defaults"] = getattr(args, "defaults_reason", None)  # why (cli/defaults.py), or None
    return hp


def _choose_loss(option: str, task: str, count: bool) -> tuple[str, str]:
    """The loss ``train`` / ``lr-find`` fit with, and a note for the task line: cross-entropy
    for classification; for regression ``--loss``, or by default Poisson for a count target
    (non-negative integers: its predictions exp(z) are never negative) and MSE otherwise."""
    if task == "classification":
        if option not in ("auto", "cross_entropy"):
            raise CLIError(
                f"--loss {option} is a regression loss; the target is classification (it uses "
                "cross-entropy): set --task regression to fit it as numbers"
            )
        return "cross_entropy", ""
    if option != "auto":
        return option, f"; loss {option} (set with --loss)"
    if count:
        return "poisson", (
            ": Poisson regression (log link: predictions exp(z), never negative; --loss mse to "
            "change)"
        )
    return "mse", ""


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any, str, list[str]]:
    """Read and prepare the data, print its summary, build the (unbuilt) model and optimizer."""
    if args.class_weight == "balanced" and args.task == "regression":
        raise CLIError("--class-weight balanced needs a classification task")
    if _streams(args):  # larger than memory: record batches (data/streaming.py)
        return _setup_streamed(args)
    df, reading = _read_csv(args)
    args.reading = reading.to_dict()  # saved in the model file (_model_metadata) for predict
    t0 = time.perf_counter()
    data = _prepare(args, df)
    # the raw rows the trees baseline needs (cmd_train), cut now so that the whole frame can
    # be freed before training
    data.raw = _raw_or_error(data, df, args.seed) if getattr(args, "baselines", False) else None
    prep = data.preparer
    task, reason = prep.target_["task"], prep.target_["reason"]
    if task == "regression" and args.class_weight == "balanced":
        raise CLIError(
            f"--class-weight balanced needs a classification task; the target is regression "
            f"({reason})"
        )
    classes = [str(c) for c in prep.classes_ or []]
    how = "set with --task" if args.task != "auto" else f"picked automatically: {reason}"
    args.loss, loss_note = _choose_loss(args.loss, task, bool(prep.target_.get("count")))
    n, f = data.X_train.shape
    mib = 4 * f * (n + len(data.X_val) + len(data.X_test)) / 2**20
    if not args.quiet:
        _say(
            f"Data: '{args.data}', {len(df)} rows x {df.shape[1]} columns ({reading.describe()})",
            prep.summary(),
            f"Task: {task} ({how}){loss_note}",
            f"Feature matrix: {f} float32 columns, {mib:,.0f} MiB for all splits "
            f"(prepared in {time.perf_counter() - t0:.1f} s)",
        )
        if data.split.note:
            _say(f"Split note: {data.split.note}")
    chosen = defaults.apply(  # the options the user did not give, chosen from the data
        args, n, f, defaults.text_features(prep)
    )
    if chosen and not args.quiet:
        _say(*chosen)
    return (data, *_network(args, task, classes), task, classes)


def _network(args: argparse.Namespace, task: str, classes: list[str]) -> tuple[Any, Any]:
    """The (unbuilt) model and the optimizer of the command-line options."""
    from ..optimizers import get as get_optimizer

    with _user_errors():
        model = build_model(
            len(classes) if task == "classification" else 1,
            args.hidden,
            args.activation,
            args.dropout,
            args.batch_norm,
            args.l2,
            name=Path(args.data).stem,
        )
        optimizer = get_optimizer(args.optimizer, lr=args.lr)
    return model, optimizer


def _streams(args: argparse.Namespace) -> bool:
    """Whether ``train`` / ``predict`` read ``args.data`` in record batches: ``--stream``, or
    a file larger than ``--stream-above`` (auto: a quarter of the memory available now)."""
    from ..data.limits import available_memory

    if getattr(args, "stream", False):
        return True
    above = getattr(args, "stream_above", None)
    if above is None or not os.path.isfile(args.data):
        return False  # "none": never automatically; a missing file: read_table says so
    if above == "auto":
        room = available_memory()
        above = room // 4 if room else 1 << 30
    return os.path.getsize(args.data) > above


def _setup_streamed(args: argparse.Namespace) -> tuple[Any, Any, Any, str, list[str]]:
    """:func:`_setup` for data larger than memory (:func:`lucidnet.data.streaming.stream_prepare`):
    statistics in one pass, training rows streamed and shuffled in a bounded buffer, the
    validation and test rows prepared in memory. Not available: --class-weight, text / date
    columns, the baselines (they need the training rows in memory)."""
    from ..data.streaming import stream_prepare

    if args.class_weight != "none":
        raise CLIError("--class-weight is not available when streaming (--stream)")
    args.baselines, args.reading = False, None
    t0 = time.perf_counter()
    with _user_errors(f"'{args.data}'"):
        data = stream_prepare(
            args.data, args.target, **_preparation_options(args), batch_size=args.batch_size,
            buffer_rows=args.shuffle_buffer, sep=getattr(args, "sep", None),
        )  # fmt: skip
    prep = data.preparer
    task, classes = prep.target_["task"], [str(c) for c in prep.classes_ or []]
    args.loss, loss_note = _choose_loss(args.loss, task, bool(prep.target_.get("count")))
    held = 4 * data.X_train.n_features * (len(data.X_val) + len(data.X_test)) / 2**20
    if not args.quiet:
        _say(
            f"Data: '{args.data}', {data.rows:,} training rows streamed in record batches "
            f"(prepared in {time.perf_counter() - t0:.1f} s)",
            prep.summary(),
            f"Task: {task} ({prep.target_['reason']}){loss_note}",
            f"Streaming: training rows shuffled within {args.shuffle_buffer:,} rows; "
            f"validation and test rows in memory ({held:,.0f} MiB); no baselines",
        )
    return (data, *_network(args, task, classes), task, classes)


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------


def _fit(args: argparse.Namespace, data: Any, model: Any, optimizer: Any, task: str) -> tuple:
    """Train with early stopping on the validation split; returns (history, seconds, best epoch
    (0-based) or None, target scaling ``{"mean", "std"}`` or None, Diagnostics callback or None).

    Regression targets are standardised by ``fit`` (``target_scaling="auto"``) and the scaling is
    folded into the output layer, so the saved model predicts in the target's units; the losses
    in the history are on the standardised target. Count targets (Poisson loss) are not scaled:
    the log link needs the counts themselves."""
    callbacks, stopper, diagnostics = _training_callbacks(args, data)
    if not args.quiet:
        stop = f", early stopping patience {args.patience}" if stopper else " (no validation set)"
        _say(
            "",
            f"Training: {args.optimizer} lr={args.lr}, batch {args.batch_size}, up to "
            f"{args.epochs} epochs{stop}",
        )
    start = time.perf_counter()
    history = _run_fit(args, data, model, optimizer, task, callbacks)
    seconds = time.perf_counter() - start
    if not args.quiet and "threads" in history.params:
        from ..threads import describe_record

        _say(describe_record(history.params["threads"]))
    if history.stop_reason == "interrupted":
        raise _InterruptedInFit  # fit has told the user already (one line on stderr)
    best = stopper.best_epoch if stopper is not None else None
    _report_training(args, history, seconds, best, diagnostics)
    return history, seconds, best, saving.scaling_of(history), diagnostics


def _training_callbacks(args: argparse.Namespace, data: Any) -> tuple[list[Any], Any, Any]:
    """``(callbacks, EarlyStopping or None, Diagnostics or None)``: early stopping when there is
    a validation set, progress output unless ``--quiet``, diagnostics with ``--diagnostics``."""
    from ..callbacks import EarlyStopping, ProgressBar

    callbacks: list[Any] = list(getattr(data, "callbacks", []))  # images: --augment
    stopper = None
    if len(data.X_val) > 0:
        stopper = EarlyStopping("val_loss", patience=args.patience, restore_best_weights=True)
        callbacks.append(stopper)
    if not args.quiet:  # a bar on a terminal, one line per epoch in a pipe or log file
        tty = sys.stdout.isatty()
        callbacks.append(ProgressBar("bar" if tty else "line", file=None if tty else sys.stdout))
    diagnostics = None
    if args.diagnostics:
        from ..glassbox.diagnostics import Diagnostics

        steps = -(-len(data.X_train) // args.batch_size)
        # every 10th batch normally; small data sets still get a few samples per epoch
        diagnostics = Diagnostics(every=max(1, min(10, steps // 4)), emit=False)
        callbacks.append(diagnostics)
    return callbacks, stopper, diagnostics


def _run_fit(
    args: argparse.Namespace, data: Any, model: Any, optimizer: Any, task: str, callbacks: list
) -> Any:
    """``model.fit`` with the command-line options; the History."""
    import warnings

    has_val = len(data.X_val) > 0
    with warnings.catch_warnings():  # NaNGuard's warning is also in history.warnings
        warnings.filterwarnings("ignore", message="training stopped: the loss became")
        return model.fit(
            data.X_train,
            data.y_train,
            loss=args.loss,  # chosen by _setup (_choose_loss)
            optimizer=optimizer,
            epochs=args.epochs,
            batch_size=args.batch_size,
            validation_data=(data.X_val, data.y_val) if has_val else None,
            callbacks=callbacks,
            seed=args.seed,
            verbose=0,
            class_weight=None if args.class_weight == "none" else args.class_weight,
            target_scaling="auto",  # regression: standardised targets, folded back afterwards
            threads=getattr(args, "threads", "auto"),  # --threads (train)
        )


def _report_training(
    args: argparse.Namespace, history: Any, seconds: float, best: int | None, diagnostics: Any
) -> None:
    """Warnings on stderr, then what training did and which weights were kept."""
    shown = set() if diagnostics is None or args.quiet else set(diagnostics.warnings.values())
    for w in history.warnings:  # the diagnostics table below lists its own warnings
        if w not in shown:
            print(f"lucidnet: warning: {w}", file=sys.stderr)
    if best is not None:
        why = "stopped early" if history.stop_reason == "early_stopping" else "ran all epochs"
        chose = (
            f"{why}; early stopping chose epoch {best + 1} (val_loss "
            f"{history['val_loss'][best]:.4f}) and restored its weights"
        )
    else:
        chose = "no validation set: kept the weights of the last epoch"
    _say(
        f"Trained {len(history.epoch)} epochs in {seconds:.{1 if seconds >= 10 else 2}f} s; {chose}"
    )
    if diagnostics is not None and not args.quiet:
        _say(diagnostics.to_text())


def cmd_train(args: argparse.Namespace) -> int:
    """``lucidnet train``: prepare, split, train with early stopping, test, save.

    Everything that could stop the run later is checked before training: the output paths,
    the limits of the data preparation (classes, memory), the model file's header size and the
    free disk space (:func:`_check_model_file`); if saving still fails, the trained model is
    kept (:func:`lucidnet.cli.saving.save_trained`)."""
    wants_images = IMAGE_COMMANDS.get("wants")
    if wants_images is not None and wants_images(args):  # a folder, image paths, IDX files
        return IMAGE_COMMANDS["train"](args)  # checks its own outputs (its default name)
    out = args.out or f"{Path(args.data).stem}.lnet"
    check_train_outputs(args, out)
    data, model, optimizer, task, classes = _setup(args)
    if getattr(args, "calibrate", False) and task != "classification":
        raise CLIError("--calibrate needs a classification task; the target is regression")
    _check_model_file(args, out, data, task, classes)  # before any time is spent training
    history, seconds, best, scaling, diagnostics = _fit(args, data, model, optimizer, task)
    final = defaults.final_fit(args, data, model, best, task, _run_fit)  # text defaults only
    if final is not None:
        model, scaling, line = final
        _say(line)
    # calibration first: a fitted temperature is folded into the weights, and every number
    # below (test metrics, baselines' margins) is then the saved model's
    calibration = _calibration(args, data, model) if task == "classification" else None
    result = verdict = pred = None
    if len(data.X_test):
        pred = network_predictions(task, model, data.X_test)
        result = test_metrics(task, data.y_test, pred, classes)
        text = format_metrics(task, result, len(data.X_test))
        _say(text.splitlines()[0] if args.quiet else "\n" + text)
        warning = near_perfect_warning(task, result)
        if warning:
            _say(warning)
        verdict = _verdict(args, data, pred, task, classes)
    else:
        _say("No test set (--test-size 0): no test metrics")
    data.raw = None  # kept for the baselines only
    if calibration is not None:
        from ..glassbox.calibration import format_calibration

        _say(format_calibration(calibration))
    hp = _hyperparameters(args)
    split = data.split.to_dict()
    model.metadata = _model_metadata(
        args,
        data,
        task,
        seconds=seconds,
        epochs_run=len(history.epoch),
        best=best,
        scaling=scaling,
        result=result,
        calibration=calibration,
    )
    saving.save_trained(model, out, args.overwrite)
    _say(f"Model saved to '{out}' (network + data preparation; 'lucidnet info {out}')")
    if args.metrics_json:
        doc = _metrics_document(
            task,
            result,
            split=split,
            epochs_run=len(history.epoch),
            best_epoch=None if best is None else best + 1,
            hyperparameters=hp,
            **_scaling_note(scaling),
            verdict=verdict,
            calibration=calibration,
        )
        _write_text(args.metrics_json, json.dumps(doc, indent=2) + "\n")
        _say(f"Metrics written to '{args.metrics_json}'")
    if args.report:
        _write_report(
            args, model, history, data, hp, result, diagnostics, verdict=verdict,
            calibration=calibration, pred=pred,
        )  # fmt: skip
    return 0


def _check_model_file(
    args: argparse.Namespace, out: str, data: Any, task: str, classes: list[str]
) -> None:
    """Refuse, before training, a run whose model file could not be written: its header over
    the limit ``load`` accepts (:func:`lucidnet.cli.saving.check_header_fits`, sized from the
    metadata ``train`` will save), or the file larger than the free disk space."""
    planned = _model_metadata(
        args, data, task, seconds=0.0, epochs_run=args.epochs, best=None, scaling=None, result=None
    )
    header = saving.check_header_fits(args, data, task, classes, planned)
    n_out = len(classes) if task == "classification" else 1
    saving.check_disk_space(out, saving.file_bound(args, data.X_train.shape[1], n_out, header))


def _model_metadata(
    args: argparse.Namespace,
    data: Any,
    task: str,
    *,
    seconds: float,
    epochs_run: int,
    best: int | None,
    scaling: dict[str, float] | None,
    result: dict | None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``model.metadata`` of a model file written by ``train`` (what predict / evaluate / info
    read); also sized before training by :func:`_check_model_file`. ``calibration`` describes
    the ECE and the temperature (already folded into the weights: not needed to predict)."""
    return {
        "created_by": "lucidnet train",
        "lucidnet_version": __version__,
        "data_file": os.path.basename(args.data),
        "target": args.target,
        "task": task,
        "task_reason": data.preparer.target_["reason"],
        "classes": (data.preparer.classes_ if task == "classification" else None),
        "preparation": data.preparer.to_dict(),
        "training": {
            **_hyperparameters(args),
            "seconds": round(seconds, 3),
            "epochs_run": epochs_run,
            "best_epoch": None if best is None else best + 1,
        },
        "target_scaling": scaling,  # {"mean", "std"} of the regression target, else None
        "split": data.split.to_dict(),
        "test_metrics": result,
        "reading": getattr(args, "reading", None),  # sep / decimal / encoding, None: Parquet
        "calibration": calibration,
    }


def _scaling_note(scaling: dict[str, float] | None) -> dict[str, Any]:
    """For the metrics file: how the regression target was standardised for training."""
    if scaling is None:
        return {}
    note = "training and validation losses are on the standardised target (y - mean) / std"
    return {"target_scaling": {**scaling, "note": note}}


#: bootstrap draws of the test rows behind every 95% interval the command prints
RESAMPLES = 1000


def _calibration(args: argparse.Namespace, data: Any, model: Any) -> dict[str, Any] | None:
    """The expected calibration error on the test rows (the validation rows without a test
    set), and with ``--calibrate`` a temperature fitted on the validation rows and folded into
    the output layer (:mod:`lucidnet.glassbox.calibration`). None without test and validation
    rows."""
    from ..glassbox.calibration import calibration_report

    fit = getattr(args, "calibrate", False)
    if fit and len(data.X_val) == 0:
        print(
            "lucidnet: warning: --calibrate needs validation rows (--val-size > 0); the model "
            "was not calibrated",
            file=sys.stderr,
        )
        fit = False
    X, y, rows = data.X_test, data.y_test, "test"
    if len(X) == 0:
        X, y, rows = data.X_val, data.y_val, "validation"
    if len(X) == 0:
        return None
    if fit and rows == "validation":
        print(
            "lucidnet: warning: no test rows: the calibration error is measured on the same "
            "validation rows the temperature was fitted on (optimistic)",
            file=sys.stderr,
        )
    return calibration_report(
        model,
        X,
        y,
        rows=rows,
        X_fit=data.X_val if fit else None,
        y_fit=data.y_val if fit else None,
    )


def _verdict(
    args: argparse.Namespace, data: Any, pred: np.ndarray, task: str, classes: list[str]
) -> dict[str, Any]:
    """The network's test metrics with bootstrap 95% intervals and, unless ``--no-baselines``,
    the baselines on the same test rows with the paired margins and the verdict
    (:mod:`lucidnet.glassbox.verdict`); printed, and returned for the metrics file."""
    from ..glassbox import verdict as vd

    baselines = _baselines(args, data, task) if args.baselines else []
    result = vd.compare(
        task,
        data.y_test,
        pred,
        baselines,
        resamples=vd.resamples_for(len(data.y_test), RESAMPLES),
        seed=args.seed,
        n_classes=len(classes) or None,
    )
    if args.quiet:
        _say(("Verdict: " + result["sentence"]) if baselines else vd.format_verdict(result))
    else:
        _say("", vd.format_verdict(result))
    return result


def _baselines(args: argparse.Namespace, data: Any, task: str) -> list[Any]:
    """The trivial, linear and gradient-boosted-trees baselines on the network's training rows.

    A baseline that fails is skipped with one warning line: a reference model must never cost
    the user the network that has just been trained (it is saved after this)."""
    from ..glassbox import verdict as vd

    loss = args.loss
    weight = "balanced" if args.class_weight == "balanced" else None
    out = [vd.trivial_baseline(task, data.y_train, len(data.y_test), loss)]
    linear = lambda: vd.linear_baseline(  # noqa: E731
        task, data.X_train, data.y_train, data.X_test, loss=loss, class_weight=weight,
        seed=args.seed,
    )  # fmt: skip

    def trees() -> Any:
        raw = data.raw
        if "error" in raw:  # cutting the raw rows failed before training: said here
            raise raw["error"]
        return vd.trees_baseline(
            task, raw["train"], raw["y_train"], raw["test"], loss=loss, class_weight=weight,
            seed=args.seed, left_out=raw["text"], rows_note=raw["note"],
        )  # fmt: skip

    for name, make in (("linear", linear), ("gradient-boosted trees", trees)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scikit-learn's chatter; the note says enough
                out.append(make())
        except Exception as exc:  # noqa: BLE001 (see the docstring)
            print(
                f"lucidnet: warning: the {name} baseline was skipped "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                file=sys.stderr,
            )
    return out


def _raw_or_error(data: Any, df: Any, seed: int) -> dict[str, Any]:
    """:func:`_raw_frames`, or ``{"error": the exception}``: run before training, it must not
    stop the run (the trees baseline reports the error after training)."""
    try:
        return _raw_frames(data, df, seed)
    except Exception as exc:  # noqa: BLE001
        return {"error": exc}


def _raw_frames(data: Any, df: Any, seed: int) -> dict[str, Any]:
    """The raw feature columns of the training rows (at most ``MAX_BASELINE_ROWS`` of them,
    :func:`lucidnet.glassbox.verdict.subsample_rows`) and of the test rows, for the trees:
    numeric columns as numbers, categorical ones as strings, dates as days since the epoch;
    text columns (and every column the preparation dropped) left out.

    Returns:
        ``{"train", "y_train", "test", "text": [text columns], "note": the subsample, or ""}``.
    """
    from ..glassbox.verdict import subsample_rows

    prep, split = data.preparer, data.split
    st = prep.state_
    target = prep.target_["name"]
    # the split's indices count the rows with a target, as prepare_target cuts them
    kept = np.flatnonzero(df[target].notna().to_numpy())
    chosen, note = subsample_rows(len(split.train), seed)
    train_rows = split.train if chosen is None else split.train[chosen]
    wanted = [*st["columns"]["numeric"], *st["columns"]["categorical"]]
    wanted += list((st.get("dates") or {}).get("columns", []))
    frames = [_raw_columns(df.iloc[kept[r]][wanted], st) for r in (train_rows, split.test)]
    y_train = data.y_train if chosen is None else data.y_train[chosen]
    return {
        "train": frames[0],
        "y_train": y_train,
        "test": frames[1],
        "text": list(st["columns"]["text"]),
        "note": note,
    }


def _raw_columns(rows: Any, st: dict[str, Any]) -> Any:
    """The typed raw columns of some rows (see :func:`_raw_frames`)."""
    import pandas as pd

    frame = pd.DataFrame(index=rows.index)
    from ..data.columns import date_features

    # integer codes read as cyclic (hour, month, weekday) are plain numbers to the trees
    cyclic = (st.get("cyclic") or {}).get("columns", [])
    for c in [*st["columns"]["numeric"], *cyclic]:
        frame[c] = pd.to_numeric(rows[c], errors="coerce")
    for c in st["columns"]["categorical"]:
        frame[c] = rows[c].astype("string")
    dates = st.get("dates") or {"columns": [], "formats": []}
    for c, fmt in zip(dates["columns"], dates["formats"], strict=True):
        # days since 1970-01-01, parsed as the preparation parses it (forced compact dates too)
        frame[c] = date_features(rows[c], fmt, 0.0)[:, 1]
    return frame


def _write_report(
    args: argparse.Namespace,
    model: Any,
    history: Any,
    data: Any,
    hp: dict[str, Any],
    result: dict | None,
    diagnostics: Any,
    *,
    verdict: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    pred: np.ndarray | None = None,
) -> None:
    """The HTML report of a ``train`` run (``pred``: the test rows' predictions, computed
    once by ``train``): what the run knows (the restored epoch, the target
    scaling, the per-class table, the test rows' predictions, the named inputs), plus the
    verdict against baselines and the calibration when given."""
    from ..glassbox.report import write_report

    t, sp = data.preparer.target_, data.split
    summary = {
        "file": args.data,
        "rows": t["rows_in"],
        "target": f"{t['name']} ({t['task']}: {t['reason']})",
        "split": f"{len(sp.train)} train / {len(sp.val)} validation / {len(sp.test)} test",
        "features": data.X_train.shape[1],
    }
    extras: dict[str, Any] = {
        # early stopping (with a validation set) always restores the best epoch's weights
        "restored_best": len(data.X_val) > 0 and history.best_epoch is not None,
        "target_scaling": history.params.get("target_scaling"),  # losses on (y - mean) / std
        "verdict": verdict,
        "calibration": calibration,
        "target": args.target,
    }
    if len(data.X_test):
        extras["feature_names"] = feature_labels(data.preparer)
        extras["X_test"] = data.X_test
        if t["task"] == "regression":
            extras["y_true"], extras["y_pred"] = data.y_test, pred
    with _user_errors("--report"):
        write_report(
            args.report,
            model=model,
            history=history,
            data_summary=summary,
            preparation=data.preparer,
            hyperparameters=hp,
            test_metrics=result,  # with its "details": per-class table, confusion matrix
            diagnostics=diagnostics,
            overwrite=args.overwrite,
            **extras,
        )
    _say(f"Report written to '{args.report}'")


def cmd_predict(args: argparse.Namespace) -> int:
    """``lucidnet predict``: predictions for every row of a CSV file."""

    if args.out:
        _check_output(args.out, args.overwrite, (args.data, args.model), "output file")
    model, meta, preparer = _load_model(args.model, images=True)
    if "images" in meta:
        return IMAGE_COMMANDS["predict"](args, model, meta, preparer)
    if _streams(args):  # larger than memory: chunks in, chunks out
        return _predict_streamed(args, model, meta, preparer)
    df, _ = _read_csv(args, meta)
    write_predictions(_prediction_table(args, model, meta, preparer, df), args.out)
    return 0


def write_predictions(table: Any, out: str | None) -> None:
    """The predictions table as CSV, to ``out`` (streamed to a temporary file, renamed into
    place when complete) or to standard output."""
    _write_prediction_tables([table], out)


def _write_prediction_tables(tables: Any, out: str | None, how: str = "") -> None:
    """Predictions tables (an iterable: the chunks of one table, computed as they are written)
    as one CSV, the header and line end of the first, to ``out`` (a temporary file renamed
    into place when complete) or to standard output; ``how`` is added to the message."""
    rows, options = 0, {"index": False, "float_format": "%.6g"}
    with contextlib.ExitStack() as stack:
        fh: Any = sys.stdout
        if out:
            try:
                fh = stack.enter_context(open_atomically(out, "w", encoding="utf-8", newline=""))
            except OSError as exc:
                raise CLIError(f"cannot write {_os_msg(exc)}") from None
        for table in tables:
            if rows == 0:
                options["lineterminator"] = csv_line_end(table)
            try:
                table.to_csv(fh, header=rows == 0, **options)
            except OSError as exc:
                raise CLIError(f"cannot write {_os_msg(exc)}") from None
            rows += len(table)
    if out:
        print(f"{rows} predictions written to '{out}'{how}", file=sys.stderr)


def _prediction_table(
    args: argparse.Namespace, model: Any, meta: dict[str, Any], preparer: Any, df: Any,
    drift: bool = True,
) -> Any:  # fmt: skip
    """The ``--keep`` columns and the predictions of the rows of ``df`` (a frame)."""
    classes = _class_names(meta) if meta.get("task") == "classification" else []
    names = ["prediction"] + [f"proba_{c}" for c in classes]
    keep = _kept_columns(df, args.keep, args.data, names)
    X = _features(preparer, df, args.data, drift=drift)
    return add_predictions(_kept_table(df, keep), model, X, classes)


def add_predictions(table: Any, model: Any, X: np.ndarray, classes: list[str]) -> Any:
    """``table`` with the predictions of ``X`` appended after its columns: ``prediction`` (the
    class name, or the number) and, for classification, one ``proba_<class>`` per class;
    class labels and kept columns come from the user's data, so no cell or header may run as
    a spreadsheet formula (neutralised)."""
    if classes:
        proba = model.predict(X)
        table["prediction"] = np.asarray(classes, dtype=object)[proba.argmax(1)]
        for j, c in enumerate(classes):
            table[f"proba_{c}"] = proba[:, j]
    else:
        table["prediction"] = model.predict(X).ravel()
    neutralise_formulas(table)
    return table


def _predict_streamed(args: argparse.Namespace, model: Any, meta: dict[str, Any], prep: Any) -> int:
    """``predict`` on a file larger than memory: record batches in, CSV chunks out (the input
    drift is reported for the first chunk only; the line end is the first chunk's)."""
    from ..data.streaming import frame_chunks

    def tables() -> Iterator[Any]:
        with _user_errors(f"'{args.data}'"):
            chunks = frame_chunks(args.data, sep=getattr(args, "sep", None))
            for i, df in enumerate(chunks):
                yield _prediction_table(args, model, meta, prep, df, drift=i == 0)

    _write_prediction_tables(tables(), args.out, " (streamed)")
    return 0


def _kept_columns(df: Any, keep: list[str] | None, path: str, outputs: list[str]) -> list[str]:
    """The ``--keep`` columns in the input's order (each once); a one-line error names the
    first that ``path`` does not have, or one named like a prediction column (``outputs``)."""
    wanted = set(keep or [])
    for name in dict.fromkeys(keep or []):
        if name not in df.columns:
            shown = ", ".join(repr(str(c)[:40]) for c in list(df.columns)[:20])
            more = f" and {len(df.columns) - 20} more" if len(df.columns) > 20 else ""
            raise CLIError(f"--keep: '{path}' has no column {name!r}; its columns: {shown}{more}")
        if name in outputs:
            raise CLIError(
                f"--keep: column {name!r} has the name of a prediction column "
                f"({', '.join(map(repr, outputs[:5]))}{' ...' if len(outputs) > 5 else ''}); "
                "rename it in the input file"
            )
    return [c for c in df.columns if c in wanted]


def _kept_table(df: Any, keep: list[str]) -> Any:
    """A new frame of the ``keep`` columns of ``df`` (none: an empty frame of ``len(df)`` rows).

    A float column is written as text that reads back to the same value (``repr``; a whole
    number as an integer, ``12`` not ``12.0``), not through the predictions' ``%.6g``
    (``1234567.89`` would become ``1.23457e+06``): a kept column is a copy, not a result."""
    import pandas as pd

    table = pd.DataFrame(index=range(len(df)))
    for c in keep:
        column = df[c].reset_index(drop=True)
        if pd.api.types.is_float_dtype(column):
            column = column.astype(object).map(_exact_float)
        table[c] = column
    return table


def _exact_float(value: Any) -> Any:
    if value != value:  # NaN: an empty cell, as in the input
        return None
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``lucidnet evaluate``: metrics on a labelled CSV file."""
    if args.metrics_json:
        _check_output(args.metrics_json, args.overwrite, (args.data, args.model), "metrics file")
    model, meta, preparer = _load_model(args.model, images=True)
    if "images" in meta:
        return IMAGE_COMMANDS["evaluate"](args, model, meta, preparer)
    task = meta["task"]  # checked against the preparation by _load_model
    if _streams(args):  # larger than memory: the rows in record batches, predictions kept
        y, pred, proba = _evaluated_streamed(args, model, meta, preparer)
        title = f"'{args.data}' (streamed)"
    else:
        df, y = _labelled(preparer, meta, _read_csv(args, meta)[0], args.data)
        X = _features(preparer, df, args.data, drift=True)
        pred, proba = network_outputs(task, model, X)
        title = f"'{args.data}'"
    result = test_metrics(task, y, pred, _class_names(meta))
    _say(format_metrics(task, result, len(y), title=title))
    extra = _evaluation_extras(task, y, pred, proba, len(_class_names(meta)))
    if args.metrics_json:
        doc = _metrics_document(task, result, rows=len(y), data_file=args.data, **extra)
        _write_text(args.metrics_json, json.dumps(doc, indent=2) + "\n")
    return 0


def _evaluated_streamed(
    args: argparse.Namespace, model: Any, meta: dict[str, Any], prep: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``evaluate`` on a file larger than memory: record batches in; the targets, predictions
    and (classifier) probabilities kept, a few numbers per row, for the metrics, intervals and
    calibration on all rows. Rows without a target are left out, as in memory; drift is
    reported for the first batch."""
    from ..data.streaming import frame_chunks

    task, target = meta["task"], meta.get("target") or prep.target
    ys, preds, probas, seen = [], [], [], 0
    with _user_errors(f"'{args.data}'"):
        for df in frame_chunks(args.data, sep=getattr(args, "sep", None)):
            if target in df.columns and df[target].isna().all():
                continue  # a batch without labelled rows (an all-empty file is an error below)
            df, y = _labelled(prep, meta, df, args.data)
            X = _features(prep, df, args.data, drift=seen == 0)
            seen += len(y)
            ys.append(y)
            pred, proba = network_outputs(task, model, X)
            preds.append(pred)
            if proba is not None:
                probas.append(proba)
    if not seen:
        raise CLIError(f"'{args.data}': target column {target!r} is entirely empty")
    proba = np.concatenate(probas) if probas else None
    return np.concatenate(ys), np.concatenate(preds), proba


def _evaluation_extras(
    task: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, n_classes: int
) -> dict[str, Any]:
    """For ``evaluate``: the metrics' bootstrap 95% intervals (no baselines: they need the
    training rows) and, for a classifier, its calibration error on these rows (from
    ``proba``, its predicted probabilities); printed, and returned for the metrics file as
    ``{"verdict", "calibration"}``."""
    from ..glassbox import verdict as vd

    intervals = vd.intervals(
        task,
        y,
        pred,
        resamples=vd.resamples_for(len(y), RESAMPLES),
        n_classes=n_classes or None,
    )
    _say(vd.format_verdict(intervals))
    out: dict[str, Any] = {"verdict": intervals}
    if task == "classification":
        from ..glassbox.calibration import calibration_of_probabilities, format_calibration

        assert proba is not None
        out["calibration"] = calibration_of_probabilities(proba, y, rows="test")
        where = f"the {len(y)} rows of the file"
        _say(format_calibration(out["calibration"], where=where, hint=False))
    return out


def cmd_info(args: argparse.Namespace) -> int:
    """``lucidnet info``: what a model file holds."""
    model, meta, preparer = _load_model(args.model, images=True)
    tr = meta.get("training", {})
    _say(
        f"Model file: '{args.model}' (written by {meta.get('created_by', '?')} "
        f"{meta.get('lucidnet_version', '')} from '{meta.get('data_file', '?')}')"
    )
    classes = _class_names(meta)
    what = f", {len(classes)} classes: {', '.join(classes)}" if classes else ""
    _say(f"Task: {meta.get('task')} of {meta.get('target')!r}{what}", "")
    model.summary(print_fn=_say)
    _say(f"Parameters: {model.n_params:,}", "", preparer.summary(), "")
    h = model.history
    if h is not None and h.epoch:
        best = tr.get("best_epoch")
        line = f"Training: {len(h.epoch)} epochs in {tr.get('seconds', float('nan')):.1f} s"
        if best:
            line += f", best epoch {best} (weights restored)"
        if h.stop_reason:
            line += f", stop reason: {h.stop_reason}"
        final = "  ".join(f"{k} {v[-1]:.4f}" for k, v in h.history.items() if k != "lr")
        _say(line, f"Final epoch: {final}")
        if best:
            at = "  ".join(f"{k} {v[best - 1]:.4f}" for k, v in h.history.items() if k != "lr")
            _say(f"Best epoch:  {at}")
        if meta.get("target_scaling"):
            _say("(the losses are on the standardised target: (y - mean) / std)")
    hp = {k: v for k, v in tr.items() if k not in ("seconds", "epochs_run", "best_epoch")}
    if hp:
        _say("Hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in hp.items()))
    result = meta.get("test_metrics")
    if result:
        n = meta.get("split", {}).get("test", "?")
        _say("", format_metrics(meta["task"], result, n, title="Test set at training"))
    cal = meta.get("calibration")
    if cal:
        from ..glassbox.calibration import format_calibration

        _say(
            format_calibration(
                cal, where=f"the {cal['n_rows']} {cal['rows']} rows at training", hint=False
            )
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``lucidnet demo``: the digits demo (:func:`lucidnet.demo.run_demo`)."""
    from .demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed, bar=sys.stdout.isatty())
    return 0


def feature_labels(preparer: Any) -> list[str]:
    """The preparer's output columns in the user's terms: ``feature_names_out()``
    (``airline=United``, ``text:delay``, ``age is missing``) with what was done to numbers
    said: ``age (standardised)`` / ``age (scaled 0-1)``, ``created:hour (standardised)``.

    The output columns come in blocks (:class:`lucidnet.data.prep.TabularPreparer`): numbers,
    missing indicators, one-hot columns, date features, TF-IDF words."""
    labels = list(preparer.feature_names_out())
    state = preparer.state_ or {}
    numeric = len(state.get("columns", {}).get("numeric", []))
    kind = state.get("numeric", {}).get("scaler", {}).get("kind")
    how = {"standard": " (standardised)", "minmax": " (scaled 0-1)"}.get(kind or "", "")
    for i in range(numeric):
        labels[i] += how
    start = numeric + len(state.get("indicators", []))
    start += sum(len(c) for c in state.get("categorical", {}).get("categories", []))
    dates = state.get("dates") or {}
    for i in range(start, start + sum(1 for _ in _date_features(dates, labels, start))):
        if not labels[i].endswith(" is missing"):  # date features are always standardised
            labels[i] += " (standardised)"
    return labels


def _date_features(dates: dict[str, Any], labels: list[str], start: int) -> Any:
    """The labels of the date block, which starts at ``start``: ``<col>:<part>`` and
    ``<col> is missing`` for each date column, in order."""
    i = start
    for c in dates.get("columns", []):
        while i < len(labels) and (labels[i].startswith(f"{c}:") or labels[i] == f"{c} is missing"):
            yield labels[i]
            i += 1


class _Rows(NamedTuple):
    """What ``explain`` and ``gradcheck`` work on: the rows asked for of the data file."""

    model: Any
    meta: dict[str, Any]
    X: np.ndarray  # the rows asked for, as the network takes them
    y: np.ndarray | None  # their encoded targets (None when the data has none)
    preparer: Any  # a table's TabularPreparer, or an image model's ImagePreparation
    total: int  # rows (images) in the data, for the range check
    image: dict[str, Any] | None = None  # image models: "names", "labels_from"


def _row(args: argparse.Namespace, rows: slice) -> _Rows:
    """Model, metadata, the inputs of ``rows`` of ``data`` and their encoded target (None
    when absent). An image model takes its data in the forms ``predict`` takes (a folder, a
    CSV of image paths, IDX files; :mod:`lucidnet.cli.images`), prepared as in training."""
    model, meta, preparer = _load_model(args.model, images=True)
    if "images" in meta:
        X, y, names, total, labels_from = IMAGE_COMMANDS["rows"](args, meta, preparer, rows)
        image = {"names": names, "labels_from": labels_from}
        return _Rows(model, meta, X, y, preparer, total, image)
    df, _ = _read_csv(args, meta)
    target = meta.get("target")
    y = None
    if target in df.columns:
        df, y = _labelled(preparer, meta, df, args.data)
    X = _features(preparer, df, args.data)
    return _Rows(model, meta, X[rows], None if y is None else y[rows], preparer, len(X))


def _image_row_line(r: _Rows, row: int) -> str:
    """Which image ``explain`` works on, how it was prepared, its label and how the input's
    indices read (a convolution's input is pixels, not named columns)."""
    assert r.image is not None
    prep, names = r.preparer, r.image["names"]
    label = ""
    if r.y is not None:
        value = r.y[0]
        classes = _class_names(r.meta)
        shown = repr(classes[int(value)]) if classes else f"{float(value):.6g}"
        label = f"; label {shown} from {r.image['labels_from']}"
    return (
        f"Image {names[0]!r} (row {row} of {r.total}), {prep.describe()}{label}.\n"
        "Input indices below are [sample, row, column, channel] of its pixels "
        "(row 0, column 0: top left)."
    )


def cmd_explain(args: argparse.Namespace) -> int:
    """``lucidnet explain``: one training step on one row, explained."""
    from ..glassbox.explain import explain_step

    r = _row(args, slice(args.row, args.row + 1))
    model, meta, preparer = r.model, r.meta, r.preparer
    if args.row >= r.total:
        what = "images" if r.image is not None else "rows"
        raise CLIError(f"--row {args.row} is out of range: '{args.data}' has {r.total} {what}")
    x = r.X
    if r.y is None:  # no label in the file: explain the step towards the model's own prediction
        target = (
            model.predict_logits(x).argmax(1)
            if meta.get("task") == "classification"
            else (model.predict(x).ravel())
        )
        absent = "no labels" if r.image is not None else "no target column"
        print(
            f"lucidnet: note: {absent}; using the model's prediction as the label",
            file=sys.stderr,
        )
    else:
        target = r.y
    if r.image is not None and not args.json:
        _say(_image_row_line(r, args.row), "")
    model, target = _as_trained(model, meta, np.asarray(target))
    names = None
    if r.image is None and preparer.state_ and "ids" not in preparer.state_:
        names = feature_labels(preparer)
    result = explain_step(model, x, target, feature_names=names)
    _say(json.dumps(result.to_dict(), indent=2) if args.json else result.to_text())
    return 0


def _as_trained(model: Any, meta: dict[str, Any], target: np.ndarray) -> tuple[Any, np.ndarray]:
    """The model and target as training saw them: a regression trained on the standardised
    target (``target_scaling`` in the metadata) has the scaling folded into its output layer;
    on a copy it is taken out again and the target standardised, so the explained step is
    the one training took (losses and gradients on (y - mean) / std), and the user is told."""
    scaling = meta.get("target_scaling")
    if not scaling:
        return model, target
    mean, std = float(scaling["mean"]), float(scaling["std"])
    work = model.copy()
    if not work.layers[-1].fold_output_scaling(np.array([1.0 / std]), np.array([-mean / std])):
        return model, target  # cannot happen for a model train wrote (a linear Dense output)
    print(
        f"lucidnet: note: the step is explained on the standardised target (y - {mean:.6g}) / "
        f"{std:.6g}, as training ran; predictions and losses below are on that scale",
        file=sys.stderr,
    )
    return work, ((target.astype(np.float64) - mean) / std).astype(target.dtype)


def cmd_gradcheck(args: argparse.Namespace) -> int:
    """``lucidnet gradcheck``: backpropagation against finite differences."""
    from ..glassbox.gradcheck import check_gradients

    r = _row(args, slice(0, args.rows))
    if r.y is None and r.image is not None:
        raise CLIError(
            f"gradcheck needs labels for the model's target {r.meta.get('target')!r}: give a "
            "folder with one sub-folder per class, a CSV with the target column, or IDX files "
            "with their labels file"
        )
    if r.y is None:
        raise CLIError(f"gradcheck needs the target column {r.meta.get('target')!r} in the data")
    X = r.X if r.image is None else _off_ties(r.X)
    result = check_gradients(r.model, X, r.y, loss=r.model.loss)
    if r.image is not None:
        result.notes.append(
            f"the {len(X)} images' pixels were each moved by less than one grey level (seeded "
            "uniform noise, +-1/255): an image's blank background makes exact ties (equal "
            "patches, equal max-pooling candidates) where the loss has no gradient"
        )
    _say(result.to_text())
    return 0 if getattr(result, "passed", True) else 1


def _off_ties(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """Images in [0, 1] moved off exact ties: each pixel by seeded uniform noise of at most
    1/255, reflected at 0 and 1 so the values stay in range (and none is exactly 0)."""
    noise = np.random.default_rng(seed).uniform(-1.0 / 255, 1.0 / 255, X.shape)
    moved = np.abs(X.astype(np.float64) + noise)
    return np.where(moved > 1.0, 2.0 - moved, moved)


def cmd_lr_find(args: argparse.Namespace) -> int:
    """``lucidnet lr-find``: learning-rate range test on the training split."""
    from ..glassbox.lr_finder import find_learning_rate
    from ..training import TargetScaling

    if args.plot:
        _check_output(args.plot, args.overwrite, (args.data,), "plot")
    args.quiet = False
    data, model, optimizer, task, _ = _setup(args)
    y = data.y_train
    loss = args.loss  # chosen by _setup (_choose_loss)
    if task == "regression" and loss != "poisson":  # as fit trains: on the standardised
        y = TargetScaling.of(y.reshape(-1, 1)).scale(y.reshape(-1, 1)).ravel()  # target
    result = find_learning_rate(
        model,
        data.X_train,
        y,
        loss=loss,
        optimizer=optimizer,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    _say("", result.to_text(), f"Next: lucidnet train {args.data} --lr {result.suggestion:.2g} ...")
    if args.plot:
        try:
            result.plot(args.plot)
        except ModuleNotFoundError as exc:
            raise CLIError(f"--plot needs matplotlib ({exc}); pip install matplotlib") from None
        _say(f"Plot written to '{args.plot}'")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``lucidnet export``: the network as an ONNX graph."""
    _check_output(args.onnx, args.overwrite, (args.model,), "ONNX file")
    try:
        from ..interop.onnx_export import export_model_file

        # missing / corrupt / foreign model file, unsupported layer; dropped fields: warnings
        with _user_errors(), _model_file_warnings():
            info = export_model_file(args.model, args.onnx, overwrite=args.overwrite)
    except ImportError as exc:
        raise CLIError(f"export needs the onnx package ({exc}); pip install onnx") from None
    name, shape, dtype = info["input"]
    _say(
        f"ONNX model written to '{args.onnx}' (opset {info['opset']}, {info['nodes']} nodes); "
        f"input {name!r} {shape} {dtype}: the PREPARED features (apply the saved preparation "
        f"first), output {info['output'][0]!r} {info['output'][1]} {info['output_kind']}"
    )
    return 0


COMMANDS = {
    "train": cmd_train,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "info": cmd_info,
    "demo": cmd_demo,
    "explain": cmd_explain,
    "gradcheck": cmd_gradcheck,
    "lr-find": cmd_lr_find,
    "export": cmd_export,
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that a write in progress removes its temporary file and
    leaves the previous output intact (``lucidnet._files``), and training stops cleanly."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`_Terminated` (main thread only: signal
    handlers cannot be set elsewhere); the previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lucidnet`` command; returns the exit status.

    0: success; 2: a user mistake (one line on stderr); 130: interrupted (Ctrl-C); 143:
    terminated (SIGTERM). Anything else raised is a bug and propagates with its traceback.
    """
    try:
        try:
            args = parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        with _sigterm_as_interrupt():
            return COMMANDS[args.command](args)
    except CLIError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the library wrote
        print(f"lucidnet: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except _Terminated:
        print("lucidnet: terminated (SIGTERM); files being written were left as they were",
              file=sys.stderr)  # fmt: skip
        return EXIT_TERMINATED
    except KeyboardInterrupt as exc:
        if not isinstance(exc, _InterruptedInFit):
            print("lucidnet: interrupted by the user (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `lucidnet predict ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
