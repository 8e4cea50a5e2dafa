"""The ``lucidnet`` command line: argument parser, option types, ``--config`` TOML files.

Everything here turns the command line into a validated :class:`argparse.Namespace`; a mistake
is raised as :class:`CLIError` (one line, exit status 2, printed by :func:`lucidnet.cli.main`).
Option types say what they expected and what they received; a ``--config`` file is checked key
by key against the command's long options, and flags on the command line override it.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import numpy as np

from .._version import __version__
from ..data.limits import DEFAULT_MAX_CLASSES

__all__ = [
    "CLIError",
    "DEFAULT_MAX_CATEGORIES",
    "DEFAULT_MAX_CLASSES",
    "DEFAULT_MAX_FEATURES",
    "build_parser",
    "parse_args",
]


DEFAULT_MAX_FEATURES = 5000
DEFAULT_MAX_CATEGORIES = 100  # TabularPreparer's default


class CLIError(Exception):
    """A user mistake: printed as ``lucidnet: error: <message>``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised as :class:`CLIError`, printed by :func:`main`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sub = self.prog.removeprefix("lucidnet").strip()
        where = f"{sub}: " if sub else ""
        raise CLIError(f"{where}{message} (see '{self.prog} --help')")


def _os_msg(exc: OSError) -> str:
    return f"{exc.strerror or exc}: '{exc.filename}'"


# ------------------------------------------------------------------------------------------------
# Option types (argparse ``type=``): each error says what was expected and what was received
# ------------------------------------------------------------------------------------------------


def _number(kind: type, low: float | None, high: float | None = None, low_open: bool = False):
    what = "an integer" if kind is int else "a number"
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"< {high}"
    expect = f"{what} {' and '.join(s for s in (lo, hi) if s)}".strip()

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expect}, got {text!r}") from None
        bad = not np.isfinite(value)
        if low is not None:
            bad |= value <= low if low_open else value < low
        bad |= high is not None and value >= high
        if bad:
            raise argparse.ArgumentTypeError(f"expected {expect}, got {text!r}")
        return value

    convert.__name__ = expect
    return convert


_pos_int = _number(int, 1)
_class_count = _number(int, 2)
_nonneg_int = _number(int, 0)
_pos_float = _number(float, 0.0, low_open=True)
_nonneg_float = _number(float, 0.0)
_fraction = _number(float, 0.0, 1.0)


def _image_size(text: str) -> tuple[int, int]:
    """``--image-size``: ``N`` or ``WIDTHxHEIGHT`` -> (height, width)."""
    from ..data.images import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_image_options(p: argparse.ArgumentParser, train: bool = True) -> None:
    """Image input (a folder of class sub-folders, a CSV with an image-path column, IDX
    files): handled by :mod:`lucidnet.cli.images`."""
    g = p.add_argument_group(
        "images (DATA: a folder with one sub-folder per class, a CSV file with an image-path "
        "column, or an IDX file)",
        "for images, options not set take other defaults: --epochs 30 --batch-size 64 "
        "--patience 4, and --dropout 0.25 for the cnn"
        if train
        else None,
    )
    g.add_argument(
        "--image-column",
        metavar="COL",
        help="the CSV column of image paths "
        "(relative to the CSV file's folder); default: found by the file suffixes",
    )
    g.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="skip image files that "
        "cannot be read (their count is printed) instead of stopping at the first",
    )
    if not train:
        return
    g.add_argument("--model", choices=("cnn", "mlp"), help=(
        "images: cnn (default: 2 x [Conv 3x3 + MaxPool 2], Dense 128) or mlp (--hidden on the "
        "flattened pixels); tables always use the MLP"))  # fmt: skip
    g.add_argument(
        "--image-size",
        type=_image_size,
        metavar="N|WxH",
        help="resize every image to this size (default: the most common size, longest side <= 64)",
    )
    g.add_argument("--color", choices=("auto", "gray", "rgb"), default="auto",
                   help=_D("auto: gray when every image is gray"))  # fmt: skip
    g.add_argument(
        "--augment",
        action="store_true",
        help="each epoch, shift the training images by up to --shift pixels at random (seeded)",
    )
    _valued(g, "--shift", _nonneg_int, 2, "largest shift of --augment, in pixels", "N")
    g.add_argument(
        "--flip",
        action="store_true",
        help="with --augment, also mirror images left-right at random (not for digits or text)",
    )


def _threads(text: str) -> int | str:
    """``--threads``: ``auto`` or an integer >= 1."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}")
    return value


_threads.__name__ = "'auto' or an integer >= 1"


_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _memory_size(text: str) -> int | str | None:
    """``"auto"``, ``"none"`` (no memory check) or a size: ``"500M"``, ``"8G"``, ``"1.5GB"``,
    ``"2GiB"``, ``"123456789"`` (bytes) -> bytes."""
    low = text.strip().lower()
    if low in ("auto", "none"):
        return None if low == "none" else "auto"
    match = re.fullmatch(r"([0-9.e+]+)\s*([a-z]*)", low)
    number, unit = match.groups() if match else ("", "")
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        value = float("nan")
    if not np.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a memory size like 500M, 8G, 2GiB (or 'auto', 'none'), got {text!r}"
        )
    return int(value)


_memory_size.__name__ = "a memory size"


def _hidden(text: str) -> tuple[int, ...]:
    """``"64,32"`` -> (64, 32); ``"none"`` / ``""`` -> () (no hidden layer: a linear model)."""
    if text.strip().lower() in ("", "none", "0"):
        return ()
    try:
        units = tuple(int(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer sizes like 64,32 (or 'none'), got {text!r}"
        )
    return units


def _reading_type(name: str, aliases: dict[str, str]) -> Any:
    """An option type for ``--sep`` / ``--decimal`` / ``--encoding``, checked as
    :func:`lucidnet.data.columns.check_read_options` checks them."""
    from ..data.columns import check_read_options

    def convert(text: str) -> str:
        value = aliases.get(text.strip().lower(), text)
        try:
            check_read_options(**{name: value})
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    convert.__name__ = name
    return convert


_SEP_ALIASES = {"\\t": "\t", "tab": "\t", "semicolon": ";", "comma": ",", "pipe": "|"}
_DECIMAL_ALIASES = {"comma": ",", "point": ".", "dot": "."}


def _add_reading_options(g: Any) -> None:
    """``--sep``, ``--decimal``, ``--encoding``: how to read a CSV data file (detected when
    not given; ``predict`` / ``evaluate`` reuse the ones the model was trained with)."""
    g.add_argument(
        "--sep",
        type=_reading_type("sep", _SEP_ALIASES),
        metavar="CHAR",
        help="field separator, e.g. ';' or tab (default: detected among , ; tab |; predict, "
        "evaluate, explain, gradcheck prefer the one the model was trained with)",
    )
    g.add_argument(
        "--decimal",
        type=_reading_type("decimal", _DECIMAL_ALIASES),
        metavar="CHAR",
        help="decimal mark of numbers, '.' or ',' (default: detected; ',' in a European "
        "export with ';' separators)",
    )
    g.add_argument(
        "--encoding",
        type=_reading_type("encoding", {}),
        metavar="NAME",
        help="text encoding, e.g. cp1252, latin-1 (default: UTF-8, or UTF-16 with a BOM)",
    )


# ------------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------------

_FMT = argparse.RawDescriptionHelpFormatter
_DATA_HELP = (
    "CSV file with a header line (also gzip / bz2 / xz / zip / zstd compressed), or a Parquet file"
)

_TRAIN_EPILOG = """\
examples:
  lucidnet train houses.csv --target price
  lucidnet train tweets.csv --target sentiment --text text --drop tweet_id --epochs 30
  lucidnet train churn.csv --target churned --hidden 128,64 --dropout 0.2 --batch-norm \\
      --class-weight balanced --out churn.lnet --metrics-json metrics.json --report report.html
  lucidnet train data.csv --config hyper.toml --lr 0.01    # flags override the config file

config file (TOML): keys are the long option names, e.g.
  target = "price"
  hidden = [64, 32]        # or "64,32"
  lr = 0.003
  batch-size = 64          # batch_size works too
  drop = ["id", "notes"]

memory: text columns become dense TF-IDF features, rows x (max-features per text column) x 4
bytes (10,000 rows x 5,000 terms = 200 MB); lower --max-features for big text data. The feature
matrix of all splits is estimated before any text is vectorised and refused, with the estimate
and the --max-features that would fit, when it exceeds 80% of the memory available now
(--max-memory sets another limit).
"""


def _D(text: str) -> str:
    """Help text with the option's default appended."""
    return f"{text} (default: %(default)s)"


def _valued(
    group: Any, flag: str, convert: Any, default: Any, help: str, metavar: str | None = None
) -> None:
    """An option that takes one value checked by ``convert``; the help shows its default."""
    group.add_argument(flag, type=convert, default=default, metavar=metavar, help=_D(help))


def _add_files(p: argparse.ArgumentParser, data: bool = True) -> None:
    """The positional MODEL_FILE (and DATA.csv) of the commands that use a trained model."""
    p.add_argument("model", metavar="MODEL_FILE")
    if data:
        p.add_argument("data", metavar="DATA.csv", help=_DATA_HELP)
        _add_reading_options(p.add_argument_group("reading the data file"))


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("data", metavar="DATA.csv", help=_DATA_HELP)
    _add_reading_options(g)
    g.add_argument("--target", metavar="COL", help="column to predict (required)")
    g.add_argument(
        "--task",
        choices=("auto", "classification", "regression"),
        default="auto",
        help=_D(
            "auto: strings, booleans, few distinct integers -> classification; counts "
            "(non-negative integers, > 10 values or a count-like name) -> regression with the "
            "Poisson loss; else regression"
        ),
    )
    for role in ("categorical", "text", "numeric", "drop"):
        what = "drop these columns" if role == "drop" else f"treat these columns as {role}"
        g.add_argument(
            f"--{role}",
            metavar="COL",
            nargs="+",
            action="extend",
            default=[],
            help=f"{what} (repeatable; put DATA.csv before it)",
        )
    g.add_argument(
        "--date",
        metavar="COL",
        nargs="+",
        action="extend",
        default=[],
        help=(
            "parse these columns as dates (format detected, e.g. %%Y-%%m-%%d, %%d/%%m/%%Y, "
            "%%Y%%m%%d; an error shows values that do not parse); other date columns are "
            "still found automatically (repeatable; put DATA.csv before it)"
        ),
    )
    g.add_argument(
        "--keep-leaks",
        action="store_true",
        help=(
            "keep the columns that look like target leakage (checked on the training rows: "
            "a recoding of the target, or columns whose sum / difference is the target); "
            "by default they are excluded, and listed either way"
        ),
    )
    g.add_argument(
        "--scaling",
        choices=("standard", "minmax"),
        default="standard",
        help=_D("scaling of numeric columns"),
    )
    _valued(
        g,
        "--max-features",
        _pos_int,
        DEFAULT_MAX_FEATURES,
        "TF-IDF terms kept per text column; memory: rows x N x 4 bytes",
        "N",
    )
    _valued(
        g,
        "--max-categories",
        _pos_int,
        DEFAULT_MAX_CATEGORIES,
        "one-hot columns per categorical column (its most frequent values; the others encode "
        "as all zeros); memory: rows x N x 4 bytes",
        "N",
    )
    _valued(
        g,
        "--max-classes",
        _class_count,
        DEFAULT_MAX_CLASSES,
        "most classes a classification target may have; checked before any work",
        "N",
    )
    _valued(
        g,
        "--max-memory",
        _memory_size,
        "auto",
        "most memory the prepared feature matrix may take, e.g. 4G; auto: 80%% of the memory "
        "available now; none: no check",
        "SIZE",
    )
    _valued(g, "--test-size", _fraction, 0.2, "fraction of rows held out for testing", "F")
    _valued(
        g, "--val-size", _fraction, 0.1, "fraction of rows for validation / early stopping", "F"
    )
    _valued(g, "--seed", _nonneg_int, 0, "seeds the split, initial weights, shuffling and dropout")
    g.add_argument("--config", metavar="FILE.toml", help="hyper-parameters from a TOML file")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from ..activations import ACTIVATIONS
    from ..optimizers import OPTIMIZERS

    g = p.add_argument_group("model and training")
    g.add_argument(
        "--hidden",
        type=_hidden,
        default=(64, 32),
        metavar="64,32",
        help="hidden layer sizes, 'none' for a linear model (default: 64,32)",
    )
    g.add_argument(
        "--activation", choices=ACTIVATIONS.names(), default="relu", help=_D("hidden layers")
    )
    g.add_argument(
        "--optimizer",
        choices=[*OPTIMIZERS.names(), "momentum", "nesterov"],
        default="adam",
        help=_D("momentum / nesterov: SGD with momentum 0.9"),
    )
    _valued(g, "--lr", _pos_float, 1e-3, "learning rate", "LR")
    _valued(g, "--batch-size", _pos_int, 32, "mini-batch size", "N")
    _valued(g, "--epochs", _pos_int, 200, "maximum number of epochs", "N")
    _valued(
        g, "--patience", _nonneg_int, 10, "epochs without val_loss improvement before stopping", "N"
    )
    _valued(g, "--dropout", _fraction, 0.0, "dropout after each hidden layer", "RATE")
    g.add_argument("--batch-norm", action="store_true", help="BatchNorm before each activation")
    _valued(g, "--l2", _nonneg_float, 0.0, "L2 weight penalty")
    g.add_argument(
        "--class-weight",
        choices=("none", "balanced"),
        default="none",
        help=_D("balanced: weight classes by inverse frequency"),
    )
    g.add_argument(
        "--loss",
        choices=("auto", "mse", "mae", "huber", "poisson"),
        default="auto",
        help=_D(
            "regression loss; auto: poisson for count targets (predictions exp(z), never "
            "negative), mse otherwise; classification always uses cross-entropy"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``lucidnet`` argument parser (one sub-parser per command)."""
    parser = _Parser(
        prog="lucidnet",
        formatter_class=_FMT,
        description="Neural networks on NumPy: from a CSV file to an evaluated, saved model.",
        epilog="examples:\n  lucidnet demo\n  lucidnet train data.csv --target label\n"
        "  lucidnet predict data.lnet new.csv --out predictions.csv\n"
        "run 'lucidnet COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"lucidnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in (
        _add_train,
        _add_predict,
        _add_evaluate,
        _add_info,
        _add_demo,
        _add_explain,
        _add_gradcheck,
        _add_lr_find,
        _add_export,
        _add_tune,
    ):  # in the order `lucidnet --help` lists them
        add_command(sub)
    return parser


def _command(sub: Any, name: str, help: str, epilog: str) -> argparse.ArgumentParser:
    """A sub-command whose description is its help line, with examples as the epilog."""
    return sub.add_parser(
        name, help=help, description=help, epilog="examples:\n" + epilog, formatter_class=_FMT
    )


def _add_streaming(p: argparse.ArgumentParser, train: bool) -> None:
    """``--stream`` and its threshold (train, predict): data larger than memory is read in
    record batches (lucidnet/data/streaming.py)."""
    g = p.add_argument_group("data larger than memory")
    g.add_argument(
        "--stream",
        action="store_true",
        help="read the data file in record batches (Parquet or CSV, pyarrow) instead of whole"
        + (
            ": statistics in one pass, training rows shuffled within --shuffle-buffer"
            if train
            else ": predictions written chunk by chunk"
        ),  # fmt: skip
    )
    _valued(
        g, "--stream-above", _memory_size, "auto",
        "stream a data file larger than this; auto: a quarter of the memory available now, "
        "none: only with --stream", "SIZE",
    )  # fmt: skip
    if train:
        _valued(g, "--shuffle-buffer", _pos_int, 100_000, "rows shuffled together when "
                "streaming", "ROWS")  # fmt: skip


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="prepare a CSV file, train a network, test it and save it",
        description="Prepare DATA.csv (roles, imputation, encoding: fitted on the training rows"
        " only), split it train / validation / test, train with early stopping on the"
        " validation loss, report test metrics and save model + preparation in one file.",
        epilog=_TRAIN_EPILOG,
        formatter_class=_FMT,
    )
    _add_data_options(p)
    _add_model_options(p)
    _add_image_options(p)
    _valued(
        p.add_argument_group("speed"),
        "--threads",
        _threads,
        "auto",
        "threads of the matrix products; auto: one for small networks, else chosen from the "
        "free cores and adapted while training when other work slows the steps down",
        "N|auto",
    )
    _add_streaming(p, train=True)
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="MODEL_FILE", help="default: <data stem>.lnet in the cwd")
    g.add_argument("--metrics-json", metavar="PATH", help="write the test metrics as JSON")
    g.add_argument("--report", metavar="REPORT.html", help="write an HTML training report")
    g.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help="do not watch gradients / dead units / overfitting during training",
    )
    g.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="do not fit the reference models (majority class or mean, linear, gradient-boosted"
        " trees) on the same rows to compare the network with",
    )
    g.add_argument(
        "--final-fit",
        choices=("auto", "on", "off"),
        default="auto",
        help=_D(
            "after early stopping has chosen the epochs, train a new network on the training +"
            " validation rows for that many epochs (the test rows stay unseen); auto: for"
            " text-dominated input (see 'Defaults for text')"
        ),
    )
    g.add_argument(
        "--calibrate",
        action="store_true",
        help="classification: fit a temperature on the validation rows that makes the predicted"
        " probabilities match the observed frequencies (the predicted classes do not change);"
        " saved in the model, applied by predict, evaluate and export",
    )
    g.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g.add_argument("--quiet", action="store_true", help="print only the final results")


def _add_predict(sub: Any) -> None:
    p = _command(
        sub,
        "predict",
        "predict with a trained model (applies the saved data preparation)",
        "  lucidnet predict model.lnet new.csv                 # CSV on stdout\n"
        "  lucidnet predict model.lnet new.csv --out predictions.csv\n"
        "  lucidnet predict model.lnet new.csv --keep id --out predictions.csv\n"
        "output columns: prediction (the class label or the value), and for classification\n"
        "proba_<class> per class, after the --keep columns; one row per input row, in order.\n"
        "The target may be absent. Categories not seen in training and columns the training\n"
        "data did not have are reported on stderr (one warning line each); a missing feature\n"
        "column is an error.",
    )
    _add_files(p)
    _add_image_options(p, train=False)
    p.add_argument("--out", metavar="PREDICTIONS.csv", help="default: CSV on stdout")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_streaming(p, train=False)
    p.add_argument(
        "--keep",
        metavar="COL",
        nargs="+",
        action="extend",
        default=[],
        help="copy these input columns (ids) into the output, before the predictions, in the"
        " input's order (repeatable; put DATA.csv before it)",
    )


def _add_evaluate(sub: Any) -> None:
    p = _command(
        sub,
        "evaluate",
        "metrics of a trained model on a labelled CSV file",
        "  lucidnet evaluate model.lnet labelled.csv --metrics-json metrics.json",
    )
    _add_files(p)
    _add_image_options(p, train=False)
    p.add_argument("--metrics-json", metavar="PATH")
    p.add_argument("--overwrite", action="store_true", help="replace an existing metrics file")
    _add_streaming(p, train=False)


def _add_info(sub: Any) -> None:
    p = _command(
        sub,
        "info",
        "architecture, preparation, training history and test metrics of a model file",
        "  lucidnet info model.lnet",
    )
    _add_files(p, data=False)


def _add_demo(sub: Any) -> None:
    p = _command(
        sub,
        "demo",
        "train and test a network on scikit-learn's digits data set (what 'make demo' runs)",
        "  lucidnet demo\n  lucidnet demo --epochs 20 --seed 1",
    )
    p.add_argument("--epochs", type=_pos_int, default=100)
    p.add_argument("--seed", type=_nonneg_int, default=0)


def _add_explain(sub: Any) -> None:
    p = _command(
        sub,
        "explain",
        "one training step on one row, layer by layer: forward values, gradients, update",
        "  lucidnet explain model.lnet data.csv --row 0\n"
        "  lucidnet explain model.lnet data.csv --row 12 --json > step.json",
    )
    _add_files(p)
    _add_image_options(p, train=False)
    p.add_argument("--row", type=_nonneg_int, required=True, help="0-based data row")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_gradcheck(sub: Any) -> None:
    p = _command(
        sub,
        "gradcheck",
        "compare backpropagation with finite differences on a few rows of a data file",
        "  lucidnet gradcheck model.lnet data.csv --rows 8",
    )
    _add_files(p)
    _add_image_options(p, train=False)
    p.add_argument("--rows", type=_pos_int, default=8, help="rows used (default 8)")


def _add_lr_find(sub: Any) -> None:
    p = _command(
        sub,
        "lr-find",
        "learning-rate range test: loss against an exponentially growing learning rate",
        "  lucidnet lr-find data.csv --target label --plot lr.png\n"
        "  lucidnet lr-find data.csv --target label --config hyper.toml",
    )
    _add_data_options(p)
    _add_model_options(p)
    p.add_argument("--plot", metavar="PNG", help="save the loss curve (needs matplotlib)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")


def _add_export(sub: Any) -> None:
    p = _command(
        sub,
        "export",
        "export the network to ONNX (the data preparation is not part of the graph)",
        "  lucidnet export model.lnet --onnx model.onnx",
    )
    _add_files(p, data=False)
    p.add_argument("--onnx", metavar="OUT.onnx", required=True)
    p.add_argument("--overwrite", action="store_true")


_TUNE_EPILOG = """\
examples:
  lucidnet tune houses.csv --target price --trials 50 --out best.lnet
  lucidnet tune houses.csv --target price --trials 50 --config search.toml --report tune.html
  # several workers (one per core or machine) share one study through one storage:
  lucidnet tune houses.csv --target price --trials 200 --study houses \\
      --storage postgresql://user:pass@db-host/optuna --out best-$(hostname).lnet

The study lives in --storage (default: an SQLite file next to --out, best.lnet ->
best.optuna.db); after Ctrl-C, run the same command again to continue it. --trials counts
the study's finished trials (all workers'), not this run's. Options of 'train' not searched
(--activation, --patience, --class-weight, ...) apply to every trial; --epochs is the most
per trial.

search space (TOML, the [search] table of --config; each entry replaces the default's):
  [search]
  lr = {low = 1e-4, high = 0.03, log = true}    # a range
  batch_size = [32, 64, 128]                   # choices
  optimizer = ["adam", "rmsprop"]
  dropout = 0.0                                # one value: not searched
  layers = {low = 1, high = 3}                 # hidden layers, the first 'units' wide,
  units = {low = 16, high = 256, log = true}   #   each next one half as wide
  # hidden = ["64,32", "128"]                  # or explicit choices of hidden sizes
"""


def _add_tune(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="search hyper-parameters with Optuna (TPE, pruning); save the best model",
        description="Prepare DATA.csv once (as 'train' does: same roles, split and test rows),"
        " then train one network per trial with hyper-parameters drawn by Optuna's TPE sampler"
        " (hidden sizes, learning rate, batch size, dropout, L2, optimizer), pruning poor trials"
        " from their per-epoch validation loss; save the best model so far to --out.",
        epilog=_TUNE_EPILOG,
        formatter_class=_FMT,
    )
    p.set_defaults(config_tables=("search",))
    _add_data_options(p)
    _add_model_options(p)
    p.set_defaults(epochs=50)
    g = p.add_argument_group("search")
    _valued(g, "--trials", _pos_int, 20, "finished trials the study should hold", "N")
    g.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL, e.g. sqlite:///tune.db or postgresql://user:pass@host/db "
        "(default: an SQLite file next to --out, best.lnet -> best.optuna.db)",
    )
    g.add_argument("--study", metavar="NAME", help="study name (default: <data stem>-<target>)")
    g.add_argument(
        "--timeout", type=_pos_float, metavar="S", help="start no new trial after S seconds"
    )
    _valued(
        g,
        "--threads",
        _threads,
        1,
        "threads of the matrix products per trial (1: parallel workers use one core each)",
        "N|auto",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="BEST.lnet", help="default: <data stem>-tuned.lnet")
    g.add_argument("--report", metavar="REPORT.html", help="history and importance plots")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --report file, or an --out file not written for this study "
        "(the study's own best-model file is always kept up to date)",
    )
    g.add_argument("--quiet", action="store_true", help="print only the results")


# ------------------------------------------------------------------------------------------------
# Config file
# ------------------------------------------------------------------------------------------------


def _load_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise CLIError(
                "--config needs Python >= 3.11 or the 'tomli' package (pip install tomli)"
            ) from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise CLIError(f"config file: {_os_msg(exc)}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"config file '{path}' is not valid TOML: {exc}") from None


def _long_options(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        a.option_strings[-1][2:]: a
        for a in sub._actions
        if a.option_strings
        and a.option_strings[-1].startswith("--")
        and a.dest not in ("help", "config")
    }


def _config_defaults(
    sub: argparse.ArgumentParser, path: str, shared: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Validate a TOML config against ``sub``'s long options; return ``{dest: value}``.
    Keys in ``shared`` (options of ``train``) that ``sub`` lacks are ignored, so one config
    file serves both ``train`` and ``lr-find``."""
    valid = _long_options(sub)
    out: dict[str, Any] = {}
    for key, value in _load_toml(path).items():
        if key in (sub.get_default("config_tables") or ()):  # a table, e.g. tune's [search]
            if not isinstance(value, dict):
                raise CLIError(f"config file '{path}': [{key}] must be a table, got {value!r}")
            out[f"config_{key}"] = value
            continue
        action = valid.get(key.replace("_", "-"))
        if action is None and key.replace("_", "-") in shared:
            continue
        if action is None:
            raise CLIError(
                f"config file '{path}': unknown key {key!r}; valid keys: {', '.join(sorted(valid))}"
            )
        where = f"config file '{path}': key {key!r}"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise CLIError(f"{where}: expected true or false, got {value!r}")
            out[action.dest] = action.const if value else action.default
            continue
        if action.nargs == "+":
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CLIError(f"{where}: expected a list of column names, got {value!r}")
            out[action.dest] = list(value)
            continue
        if isinstance(value, list) and action.dest == "hidden":
            value = ",".join(str(v) for v in value) if value else "none"
        if isinstance(value, (bool, list, dict)):
            raise CLIError(f"{where}: expected a single value, got {value!r}")
        try:
            converted = action.type(str(value)) if action.type else str(value)
        except argparse.ArgumentTypeError as exc:
            raise CLIError(f"{where}: {exc}") from None
        if action.choices is not None and converted not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise CLIError(f"{where}: invalid choice {value!r} (choose from {choices})")
        out[action.dest] = converted
    return out


def options_given(
    argv: list[str] | None, command: str, configured: dict[str, Any] | None = None
) -> frozenset[str]:
    """The option destinations the user set for ``command``: on the command line ``argv``
    (``sys.argv[1:]`` when None; parsed again with every default suppressed, so an abbreviated
    or ``--opt=value`` flag counts, and a value equal to the static default still counts as
    given) or as keys of its ``--config`` file (``configured``: those already read, as
    :func:`parse_args` has them; None: read the file named on the command line). The image and
    text defaults change only the options not given (``cli/images.py``, ``cli/defaults.py``)."""
    import sys

    tokens = sys.argv[1:] if argv is None else [str(t) for t in argv]
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in subs.choices[command]._actions:
        action.default = argparse.SUPPRESS
    seen = vars(parser.parse_args(tokens))
    given = set(seen) - {"command"}
    if configured is not None:
        given |= set(configured)
    elif seen.get("config"):
        shared = frozenset(_long_options(subs.choices["train"]))
        given |= set(_config_defaults(subs.choices[command], seen["config"], shared))
    return frozenset(given)


def _labels_in_data(args: argparse.Namespace) -> bool:
    """``train`` on a folder of class sub-folders or an IDX file: the labels come with it (and
    a path that does not exist is reported as such by the command, not as a missing --target)."""
    if args.command != "train":
        return False
    import os

    from ..data.images import input_kind

    return not os.path.exists(args.data) or input_kind(args.data) in ("folder", "idx")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; ``--config`` values become defaults that flags override."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configured: dict[str, Any] = {}
    if getattr(args, "config", None):
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        shared = frozenset(_long_options(subs.choices["train"]))
        sub = subs.choices[args.command]
        configured = _config_defaults(sub, args.config, shared)
        sub.set_defaults(**configured)
        args = parser.parse_args(argv)
    if args.command == "train":  # image or text input changes the defaults of options not set
        args.options_set = options_given(argv, args.command, configured)
    if hasattr(args, "target") and not args.target and not _labels_in_data(args):
        raise CLIError(
            f"{args.command} needs --target COLUMN (on the command line or in the config file)"
        )
    return args
