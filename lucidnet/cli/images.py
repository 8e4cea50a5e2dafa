"""``lucidnet train / predict / evaluate`` on images: a folder of class sub-folders, a CSV file
with an image-path column, or IDX files (MNIST's format).

``train`` reads and prepares the images (:mod:`lucidnet.data.images`: one size, gray or RGB,
pixels / 255), splits them (stratified for classes), builds a small convolutional network
(``--model cnn``, the default) or an MLP on the flattened pixels (``--model mlp``), prints it,
trains with early stopping (optionally on randomly shifted copies, ``--augment``), tests it
against baselines on the same test images and saves network and image preparation in one
model file, so that ``predict`` and ``evaluate`` take raw images.

Everything the table path shares (fit with its callbacks and diagnostics, the metrics, the
calibration, saving) is reused from :mod:`lucidnet.cli.commands`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..callbacks import Callback
from ..data import images as im
from . import commands as cm
from .args import CLIError

#: the defaults of the table path that images replace when they were not set (on the command
#: line or in a config file: ``args.options_set``)
#: (option: (table default, image default)); images need fewer, larger batches per epoch
IMAGE_DEFAULTS = {"epochs": (200, 30), "batch_size": (32, 64), "patience": (10, 4)}
#: the most training rows the linear baseline is fitted on (raw pixels: L-BFGS on 784+ columns)
LINEAR_BASELINE_ROWS = 5000


@dataclass
class ImageSource:
    """Images found in the user's input, before decoding.

    Attributes:
        kind: ``"folder"``, ``"csv"`` or ``"idx"``.
        paths: the image files (folder, CSV), or None (IDX).
        pixels: uint8 ``(n, h, w, c)`` (IDX), or None.
        y: the encoded targets (int64 class indices, or float32 values), or None.
        target: the target's name (``"class"`` for a folder, the CSV column, ``"label"``).
        task, reason: the task and why.
        classes: the class names (classification).
        count: a count target (non-negative integers: the Poisson loss).
        column: the CSV's image-path column.
        names: how each image is named in the output (its path as given).
    """

    kind: str
    paths: list[str] | None = None
    pixels: np.ndarray | None = None
    y: np.ndarray | None = None
    target: str = "class"
    task: str = "classification"
    reason: str = ""
    classes: list[str] = field(default_factory=list)
    count: bool = False
    column: str | None = None
    names: list[str] = field(default_factory=list)
    frame: Any = None


# ------------------------------------------------------------------------------------------------
# is it images?
# ------------------------------------------------------------------------------------------------


def wants_images(args: argparse.Namespace) -> bool:
    """Whether ``train`` should take the image path; ``--model cnn`` on a table is an error."""
    kind = im.input_kind(args.data, getattr(args, "image_column", None))
    if kind is None and getattr(args, "model", None) == "cnn":
        raise CLIError(
            f"--model cnn needs image input (a folder of class sub-folders, a CSV with an "
            f"image-path column, or IDX files); '{args.data}' is a table"
        )
    return kind is not None


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def read_source(
    args: argparse.Namespace, meta: dict[str, Any] | None = None, labelled: bool = False
) -> ImageSource:
    """The images and targets of ``args.data``. Training (no ``meta``): targets required. With
    ``meta`` (a model's metadata): targets in the model's encoding, read when present and
    ``labelled`` (evaluate; a folder's class sub-folders and an IDX labels file are always
    read, a CSV's target column only then: predict keeps rows without a target)."""
    column = getattr(args, "image_column", None) or (meta or {}).get("images", {}).get("column")
    kind = im.input_kind(args.data, column)
    if kind is None and os.path.isfile(args.data) and im.looks_like_image_path(args.data):
        return ImageSource("files", paths=[args.data], names=[args.data], y=None)
    if kind is None:
        raise CLIError(
            f"'{args.data}' is not image input: expected a folder (one sub-folder per class), a "
            "CSV file with a column of image paths (--image-column), or an IDX file"
        )
    with _image_errors():
        if kind == "folder":
            return _folder_source(args.data, meta)
        if kind == "idx":
            return _idx_source(args.data, meta)
        return _csv_source(args, column, meta, labelled)


class _image_errors:
    """Turn :class:`lucidnet.data.images.ImageError` (and file errors) into a CLIError."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if isinstance(exc, im.ImageError):
            raise CLIError(str(exc)) from None
        if isinstance(exc, OSError) and not isinstance(exc, CLIError):
            from .args import _os_msg

            raise CLIError(_os_msg(exc) if exc.filename else str(exc)) from None
        return False


def _folder_source(folder: str, meta: dict[str, Any] | None) -> ImageSource:
    if meta is None:
        paths, y, classes = im.list_folder(folder)
        return ImageSource("folder", paths=paths, y=y, classes=classes, names=paths,
                           reason="one sub-folder per class")  # fmt: skip
    # a model's folder: class sub-folders give labels; otherwise every image, unlabelled
    try:
        paths, y, found = im.list_folder(folder)
    except im.ImageError:
        paths = [str(p) for p in im._image_files(Path(folder))]
        if not paths:
            raise im.ImageError(f"'{folder}' has no image files") from None
        return ImageSource("folder", paths=paths, names=paths)
    known = {c: i for i, c in enumerate(meta.get("classes") or [])}
    if meta.get("task") != "classification" or not set(found) <= set(known):
        return ImageSource("folder", paths=paths, names=paths)  # sub-folders are not classes
    y = np.array([known[found[i]] for i in y], dtype=np.int64)
    return ImageSource("folder", paths=paths, y=y, names=paths)


def _idx_source(path: str, meta: dict[str, Any] | None) -> ImageSource:
    images, labels = im.find_idx_pair(path)
    pixels, raw = im.read_idx_images(images, labels)
    names = [f"{images.name}#{i}" for i in range(len(pixels))]
    if raw is None:
        if meta is None:
            raise im.ImageError(
                f"'{images}': no labels file beside it (expected "
                f"'{images.name.replace('images', 'labels').replace('idx3', 'idx1')}')"
            )
        return ImageSource("idx", pixels=pixels, target="label", names=names)
    if meta is None:
        values = np.unique(raw)
        if len(values) < 2:
            raise im.ImageError(f"'{labels}': a single label {values[0]}: nothing to classify")
        classes = [str(v) for v in values]
        y = np.searchsorted(values, raw).astype(np.int64)
        return ImageSource("idx", pixels=pixels, y=y, target="label", classes=classes,
                           names=names, reason="IDX labels file")  # fmt: skip
    known = {c: i for i, c in enumerate(meta.get("classes") or [])}
    unknown = sorted({str(v) for v in np.unique(raw)} - set(known))
    if unknown:
        raise im.ImageError(f"'{labels}': labels {unknown[:5]} are not among the model's classes")
    y = np.array([known[str(v)] for v in raw], dtype=np.int64)
    return ImageSource("idx", pixels=pixels, y=y, target="label", names=names)


def _csv_source(
    args: argparse.Namespace, column: str | None, meta: dict[str, Any] | None, labelled: bool
) -> ImageSource:
    """A CSV file's image paths (relative to its folder) and, for training or ``labelled``
    (evaluate), its target: rows without a target left out, as for tables."""
    df, _ = cm._read_csv(args, meta)
    column = column or im.path_column_in_head(args.data)
    if column is None or column not in df.columns:
        raise CLIError(
            f"'{args.data}' has no image-path column {column!r}; columns: {list(df.columns)[:20]}"
        )
    base = os.path.dirname(os.path.abspath(args.data))
    if meta is None:
        return _csv_training_source(args, df, column, base)
    target, y = meta.get("target"), None
    if labelled and target in df.columns and target != column:
        df = df.loc[df[target].notna()].reset_index(drop=True)
        with cm._user_errors(f"'{args.data}'"):
            y = _encode(df[target], meta)
    paths = im.resolve_paths(list(df[column]), base, column)
    names = [str(v) for v in df[column]]
    return ImageSource("csv", paths=paths, y=y, target=str(target), column=column, names=names,
                       frame=df)  # fmt: skip


def _csv_training_source(args: argparse.Namespace, df: Any, column: str, base: str) -> ImageSource:
    """Training: the target's task (classification, regression, count) and its encoding come
    from the table path's :meth:`TabularPreparer.prepare_target`."""
    from ..data.prep import TabularPreparer

    if args.target == column:
        raise CLIError(f"--target {args.target!r} is the image-path column")
    with cm._user_errors(f"'{args.data}'"):
        prep = TabularPreparer(args.target, task=None if args.task == "auto" else args.task)
        df, y = prep.prepare_target(df)
    t = prep.target_ or {}
    return ImageSource(
        "csv", paths=im.resolve_paths(list(df[column]), base, column), y=y, target=args.target,
        task=t["task"], reason=t["reason"], classes=[str(c) for c in t.get("classes") or []],
        count=bool(t.get("count")), column=column, names=[str(v) for v in df[column]], frame=df,
    )  # fmt: skip


def _encode(values: Any, meta: dict[str, Any]) -> np.ndarray:
    """A target column in a model's encoding: class indices, or float32 values."""
    if meta["task"] == "regression":
        import pandas as pd

        y = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(y).all():
            raise ValueError(f"target column {values.name!r} has values that are not numbers")
        return y.astype(np.float32)
    index = {c: i for i, c in enumerate(meta["classes"])}
    keys = [_label(v) for v in values]
    unknown = sorted({k for k in keys if k not in index})
    if unknown:
        raise ValueError(f"target values {unknown[:5]} are not among the training classes")
    return np.array([index[k] for k in keys], dtype=np.int64)


def _label(v: Any) -> str:
    """A class label as the table path writes it (``3.0`` read from a CSV -> ``"3"``)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def load_pixels(
    source: ImageSource, prep: im.ImagePreparation, skip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, kept)``: float32 ``(n, h, w, c)`` images and the indices of the images kept."""
    with _image_errors():
        if source.pixels is not None:
            X = im.scale(im.resize_array(source.pixels, prep))
            return X, np.arange(len(X))
        assert source.paths is not None
        loaded = im.load_images(source.paths, prep, skip_unreadable=skip)
    if loaded.skipped:
        first = loaded.skipped[0][1]
        print(
            f"lucidnet: warning: {len(loaded.skipped)} unreadable image(s) skipped "
            f"(--skip-unreadable); the first: {first}",
            file=sys.stderr,
        )
    return loaded.X, loaded.kept


def _choose(args: argparse.Namespace, source: ImageSource) -> im.ImagePreparation:
    """The preparation: from ``--image-size`` / ``--color`` and the training images."""
    size = args.image_size
    color = args.color
    if source.pixels is not None:
        n, h, w, c = source.pixels.shape
        auto = "gray" if c == 1 else "rgb"
        chosen = color if color != "auto" else auto
        hh, ww = size or (h, w)
        how = "set with --image-size" if size else f"the IDX file's size, all {n} images"
        return im.ImagePreparation(hh, ww, chosen, f"size: {how}; {chosen}: {c} channel(s)")
    assert source.paths is not None
    with _image_errors():
        return im.choose_preparation(
            source.paths, size, color, skip_unreadable=args.skip_unreadable
        )


# ------------------------------------------------------------------------------------------------
# the networks
# ------------------------------------------------------------------------------------------------


def build_cnn(n_outputs: int, dropout: float = 0.25, name: str | None = None) -> Any:
    """The default network for images: two blocks of a 3x3 convolution (ReLU) and a 2x2
    max-pooling, 32 then 64 filters, then Dropout, Dense(128, ReLU), Dropout and the output
    layer (logits, or one value)."""
    from ..convolution import Conv2D, MaxPool2D
    from ..layers import Dense, Dropout, Flatten
    from ..model import Sequential

    layers: list[Any] = [
        Conv2D(32, 3, activation="relu"),
        MaxPool2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPool2D(2),
        Flatten(),
    ]
    if dropout > 0:
        layers.append(Dropout(dropout))
    layers.append(Dense(128, activation="relu"))
    if dropout > 0:
        layers.append(Dropout(dropout))
    layers.append(Dense(n_outputs))
    return Sequential(layers, name=name)


def build_mlp(args: argparse.Namespace, n_outputs: int, name: str | None = None) -> Any:
    """The table path's MLP (``--hidden``, ``--dropout``, ...) after a Flatten of the pixels."""
    from ..layers import Flatten
    from ..model import Sequential

    mlp = cm.build_model(n_outputs, args.hidden, args.activation, args.dropout, args.batch_norm,
                      args.l2)  # fmt: skip
    return Sequential([Flatten(), *mlp.layers], name=name)


def _apply_image_defaults(args: argparse.Namespace) -> list[str]:
    """Replace the table defaults that were not changed by the image ones; what changed."""
    changed = []
    given = getattr(args, "options_set", frozenset())
    for key, (table, image) in IMAGE_DEFAULTS.items():
        if key not in given and getattr(args, key) == table:
            setattr(args, key, image)
            changed.append(f"{key.replace('_', ' ')} {image}")
    if args.model == "cnn" and "dropout" not in given and args.dropout == 0.0:
        args.dropout = 0.25
        changed.append("dropout 0.25")
    return changed


class ShiftAugment(Callback):
    """A callback (``--augment``) that replaces the training images by randomly shifted (and,
    with ``flip``, mirrored) copies of the originals at the start of every epoch.

    ``fit`` hands it the training array it trains on (``set_training_data``); the callback
    keeps a pristine copy, writes the shifted images into that array in place, and puts the
    originals back when training ends. Its generator is seeded from the run's seed: the same
    seed gives the same shifts."""

    def __init__(self, seed: int, max_shift: int = 2, flip: bool = False) -> None:
        super().__init__()
        self.rng = np.random.default_rng([seed, 1])
        self.max_shift, self.flip = max_shift, flip
        self.target: np.ndarray | None = None
        self.original: np.ndarray | None = None

    def set_training_data(self, X: np.ndarray) -> None:
        self.target, self.original = X, X.copy()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.target is not None and self.original is not None:
            im.shift_images(self.original, self.rng, self.max_shift, self.flip, out=self.target)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.target is not None and self.original is not None:
            self.target[...] = self.original


# ------------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """``lucidnet train`` on images: read, prepare, split, build, train, test, save."""
    out = _check_train_outputs(args)
    args.model = args.model or "cnn"
    data, source, prep = _setup(args)
    task, classes = source.task, source.classes
    model, optimizer = _network(args, data, source)
    saving_bound = 4096 + cm.saving.json_bytes(classes) + 3 * 4 * model.n_params
    cm.saving.check_disk_space(out, saving_bound + 200_000)  # + history and metrics
    history, seconds, best, scaling, diagnostics = cm._fit(args, data, model, optimizer, task)
    calibration = cm._calibration(args, data, model) if task == "classification" else None
    result = verdict = pred = proba = None
    if len(data.X_test):
        pred, proba = cm.network_outputs(task, model, data.X_test)
        result = cm.test_metrics(task, data.y_test, pred, classes)
        text = cm.format_metrics(task, result, len(data.X_test))
        cm._say(text.splitlines()[0] if args.quiet else "\n" + text)
        verdict = _verdict(args, data, pred, task, classes)
    else:
        cm._say("No test set (--test-size 0): no test metrics")
    if calibration is not None:
        from ..glassbox.calibration import format_calibration

        cm._say(format_calibration(calibration))
    model.metadata = _metadata(args, data, source, prep, seconds, history, best, scaling,
                               result, calibration)  # fmt: skip
    cm.saving.save_trained(model, out, args.overwrite)
    cm._say(f"Model saved to '{out}' (network + image preparation; 'lucidnet info {out}')")
    if args.metrics_json:
        doc = cm._metrics_document(
            task, result, split=data.split.to_dict(), epochs_run=len(history.epoch),
            best_epoch=None if best is None else best + 1,
            hyperparameters=model.metadata["training"], images=model.metadata["images"],
            **cm._scaling_note(scaling), verdict=verdict, calibration=calibration,
        )  # fmt: skip
        cm._write_text(args.metrics_json, json.dumps(doc, indent=2) + "\n")
        cm._say(f"Metrics written to '{args.metrics_json}'")
    if args.report:
        run = {"history": history, "diagnostics": diagnostics, "result": result,
               "verdict": verdict, "calibration": calibration, "pred": pred,
               "proba": proba}  # fmt: skip
        _write_report(args, model, data, source, prep, run)
    return 0


def _check_train_outputs(args: argparse.Namespace) -> str:
    """The model file's path; every output checked before any work."""
    if getattr(args, "stream", False):
        raise CLIError(
            "--stream is for tables; image input is decoded in memory (see --max-memory)"
        )
    stem = Path(args.data).name.split(".")[0] or "images"
    out = args.out or f"{stem}.lnet"
    cm.check_train_outputs(args, out)
    return out


def _setup(args: argparse.Namespace) -> tuple[Any, ImageSource, im.ImagePreparation]:
    """Read and prepare the images, split them, print what was done."""
    from types import SimpleNamespace

    from ..data.splits import train_val_test_split

    t0 = time.perf_counter()
    source = read_source(args)
    if source.task == "regression" and args.class_weight == "balanced":
        raise CLIError("--class-weight balanced needs a classification task")
    _check_classes(args, source)
    prep = _choose(args, source)
    _check_memory(args, source, prep)
    X, kept = load_pixels(source, prep, args.skip_unreadable)
    assert source.y is not None
    y = source.y[kept]
    with cm._user_errors(f"'{args.data}'"):
        split = train_val_test_split(
            y, args.test_size, args.val_size, task=source.task, seed=args.seed
        )
    args.loss, loss_note = cm._choose_loss(args.loss, source.task, source.count)
    changed = _apply_image_defaults(args)
    parts = {k: (X[getattr(split, k)], y[getattr(split, k)]) for k in ("train", "val", "test")}
    data = SimpleNamespace(
        X_train=parts["train"][0], y_train=parts["train"][1], X_val=parts["val"][0],
        y_val=parts["val"][1], X_test=parts["test"][0], y_test=parts["test"][1], split=split,
        preparer=None, raw=None, callbacks=[],
        test_names=[source.names[kept[i]] for i in split.test],  # the report's captions
    )  # fmt: skip
    if args.augment:
        data.callbacks.append(ShiftAugment(args.seed, args.shift, args.flip))
    if not args.quiet:
        what = f"{len(source.classes)} classes" if source.classes else source.task
        how = "set with --task" if getattr(args, "task", "auto") != "auto" else source.reason
        cm._say(
            f"Data: '{args.data}' ({source.kind}), {len(X)} images, target {source.target!r}: "
            f"{what}",
            f"Images: {prep.describe()} ({prep.reason}); loaded in "
            f"{time.perf_counter() - t0:.1f} s, {X.nbytes / 2**20:,.0f} MiB",
            f"Task: {source.task} ({how}){loss_note}",
            f"Split: {len(split.train)} train / {len(split.val)} validation / {len(split.test)} "
            f"test{' (stratified)' if split.stratified else ''}",
        )
        if split.note:
            cm._say(f"Split note: {split.note}")
        if changed:
            cm._say("Image defaults: " + ", ".join(changed) + " (set the options to change them)")
        if args.augment:
            flips = ", mirrored left-right at random" if args.flip else ""
            cm._say(f"Augmentation: each epoch, every training image shifted by up to "
                 f"{args.shift} pixels{flips} (seeded)")  # fmt: skip
    return data, source, prep


def _check_classes(args: argparse.Namespace, source: ImageSource) -> None:
    """``--max-classes``, as for tables (a folder of 5,000 sub-folders is likely a mistake)."""
    from ..data.limits import LimitError, check_classes, cli_option

    try:
        check_classes(len(source.classes), args.max_classes, source.target)
    except LimitError as exc:
        raise CLIError(f"'{args.data}': {exc.message(cli_option)}") from None


def _check_memory(args: argparse.Namespace, source: ImageSource, prep: im.ImagePreparation) -> None:
    """Refuse, before decoding, images whose arrays (uint8 while decoding, then float32, and
    the training split's copy) would exceed ``--max-memory`` (default: 80% of the memory
    available now)."""
    from ..data.limits import format_bytes, memory_budget

    n = len(source.names)
    need = n * int(np.prod(prep.shape)) * (1 + 4 + 4)
    budget, where = memory_budget(args.max_memory)
    if budget is not None and need > budget:
        raise CLIError(
            f"'{args.data}': {n:,} images of {prep.describe().split(',')[0]} need about "
            f"{format_bytes(need)}, more than {where or '--max-memory'} "
            f"({format_bytes(budget)}); use a smaller --image-size, fewer images, or "
            "--max-memory"
        )


def _network(args: argparse.Namespace, data: Any, source: ImageSource) -> tuple[Any, Any]:
    """The built (seeded) network, printed, and the optimizer."""
    from ..optimizers import get as get_optimizer

    n_out = len(source.classes) if source.task == "classification" else 1
    name = Path(args.data).name.split(".")[0] or "images"
    with cm._user_errors():
        if args.model == "mlp":
            model = build_mlp(args, n_out, name=name)
        else:
            model = build_cnn(n_out, args.dropout, name=name)
        model.build(data.X_train.shape[1:], np.random.default_rng(args.seed))
        optimizer = get_optimizer(args.optimizer, lr=args.lr)
    if not args.quiet:
        cm._say("", f"Network ({args.model}):")
        model.summary(print_fn=cm._say)
        cm._say(f"Parameters: {model.n_params:,}")
    return model, optimizer


def _verdict(
    args: argparse.Namespace, data: Any, pred: np.ndarray, task: str, classes: list[str]
) -> dict[str, Any]:
    """The network against the trivial baseline and a linear model on the raw pixels (fitted
    on at most LINEAR_BASELINE_ROWS training images); gradient-boosted trees are left out:
    on thousands of pixel columns they take minutes and say little."""
    from ..glassbox import verdict as vd

    baselines = []
    if args.baselines:
        baselines.append(vd.trivial_baseline(task, data.y_train, len(data.y_test), args.loss))
        n = len(data.X_train)
        rows = np.random.default_rng(args.seed).permutation(n)[:LINEAR_BASELINE_ROWS]
        flat = data.X_train[np.sort(rows)].reshape(len(rows), -1)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = vd.linear_baseline(
                    task, flat, data.y_train[np.sort(rows)],
                    data.X_test.reshape(len(data.X_test), -1), loss=args.loss, seed=args.seed,
                )  # fmt: skip
            note = f"raw pixels, {len(rows)} of {n} training images" if n > len(rows) else ""
            baselines.append(vd.Baseline(b.name, b.kind, b.predictions, b.seconds, note or b.note))
        except Exception as exc:  # noqa: BLE001 (a baseline must not cost the trained network)
            print(f"lucidnet: warning: the linear baseline was skipped ({exc})", file=sys.stderr)
    resamples = vd.resamples_for(len(data.y_test), cm.RESAMPLES)
    result = vd.compare(task, data.y_test, pred, baselines, resamples=resamples, seed=args.seed,
                        n_classes=len(classes) or None)  # fmt: skip
    if baselines:
        result["note"] = "no gradient-boosted trees on raw pixels (minutes, and little to learn)"
    cm._say(("Verdict: " + result["sentence"]) if args.quiet and baselines else
         "\n" + vd.format_verdict(result))  # fmt: skip
    if baselines and not args.quiet:
        cm._say("(baselines: majority / mean and a linear model on the raw pixels; no gradient-"
             "boosted trees on pixels)")  # fmt: skip
    return result


def _metadata(
    args: argparse.Namespace, data: Any, source: ImageSource, prep: im.ImagePreparation,
    seconds: float, history: Any, best: int | None, scaling: Any, result: Any, calibration: Any,
) -> dict[str, Any]:  # fmt: skip
    """``model.metadata`` of an image model (checked on load by :mod:`lucidnet.cli.model_meta`)."""
    from .._version import __version__

    keys = ("model optimizer lr batch_size epochs patience dropout l2 class_weight test_size "
            "val_size seed loss augment flip shift color").split()  # fmt: skip
    training = {k: getattr(args, k) for k in keys}
    training["image_size"] = [prep.width, prep.height]
    if args.model == "mlp":
        training.update(hidden=list(args.hidden), activation=args.activation)
    training.update(seconds=round(seconds, 3), epochs_run=len(history.epoch),
                    best_epoch=None if best is None else best + 1)  # fmt: skip
    return {
        "created_by": "lucidnet train",
        "lucidnet_version": __version__,
        "data_file": Path(args.data).name,
        "target": source.target,
        "task": source.task,
        "task_reason": source.reason,
        "classes": source.classes if source.task == "classification" else None,
        "preparation": None,
        "images": {
            "preparation": prep.to_dict(),
            "input": source.kind,
            "column": source.column,
            "count": source.count,
        },
        "training": training,
        "target_scaling": scaling,
        "split": data.split.to_dict(),
        "test_metrics": result,
        "calibration": calibration,
    }


def _write_report(
    args: argparse.Namespace, model: Any, data: Any, source: ImageSource,
    prep: im.ImagePreparation, run: dict[str, Any],
) -> None:  # fmt: skip
    """The HTML report of an image ``train`` run (:mod:`lucidnet.glassbox.report`): what the
    table report shows (curves, early stopping, diagnostics, test metrics, verdict,
    calibration) plus the test images the network got wrong and the first convolution's
    filters. ``run``: ``history``, ``diagnostics``, ``result``, ``verdict``, ``calibration``,
    ``pred``, ``proba`` (the test images' predictions and probabilities, computed once by
    ``train``)."""
    from ..glassbox.report import write_report

    history, task, sp = run["history"], source.task, data.split
    n = len(sp.train) + len(sp.val) + len(sp.test)
    what = f"{len(source.classes)} classes" if source.classes else task
    summary = {
        "input": f"{args.data} ({source.kind})",
        "images": n,
        "target": f"{source.target} ({what}: {source.reason})",
        "split": f"{len(sp.train)} train / {len(sp.val)} validation / {len(sp.test)} test"
        + (" (stratified)" if sp.stratified else ""),
        "network input": " x ".join(map(str, data.X_train.shape[1:])) + " (height x width x "
        "channels)",
    }  # fmt: skip
    steps = [prep.summary()]
    if args.augment:
        flips = ", mirrored left-right at random" if args.flip else ""
        steps.append(f"training augmentation: each epoch, every training image shifted by up "
                     f"to {args.shift} pixels{flips} (seeded)")  # fmt: skip
    extras: dict[str, Any] = {
        "restored_best": len(data.X_val) > 0 and history.best_epoch is not None,
        "target_scaling": history.params.get("target_scaling"),
        "verdict": run["verdict"],
        "calibration": run["calibration"],
        "target": source.target,
    }
    if run["pred"] is not None and len(data.X_test):
        extras["test_images"] = _report_images(data, source, run["pred"], run["proba"])
        if task == "regression":
            extras["y_true"], extras["y_pred"] = data.y_test, run["pred"]
    with cm._user_errors("--report"):
        write_report(
            args.report, model=model, history=history, data_summary=summary,
            preparation=steps, hyperparameters=model.metadata["training"],
            test_metrics=run["result"], diagnostics=run["diagnostics"],
            overwrite=args.overwrite, title=f"Training report: {model.name} (images)", **extras,
        )  # fmt: skip
    cm._say(f"Report written to '{args.report}'")


def _report_images(
    data: Any, source: ImageSource, pred: np.ndarray, proba: np.ndarray | None
) -> dict:
    """The report's ``test_images``: the test images, their labels and predictions, the
    predicted class's probability and the file names."""
    images: dict[str, Any] = {"X": data.X_test, "y_true": data.y_test, "y_pred": pred}
    if proba is not None:
        images["confidence"] = proba[np.arange(len(pred)), pred]
        images["classes"] = source.classes
    else:
        images["classes"] = None
    names = getattr(data, "test_names", None)
    if names is not None:
        images["names"] = names
    return images


# ------------------------------------------------------------------------------------------------
# predict / evaluate
# ------------------------------------------------------------------------------------------------


def _model_inputs(
    args: argparse.Namespace, meta: dict[str, Any], prep: im.ImagePreparation, labelled: bool
) -> tuple[ImageSource, np.ndarray]:
    """The images of ``args.data`` prepared as the model was trained: ``(source, X)``."""
    source = read_source(args, meta, labelled)
    X, kept = load_pixels(source, prep, getattr(args, "skip_unreadable", False))
    if len(kept) < len(source.names):
        source.names = [source.names[i] for i in kept]
        source.y = None if source.y is None else source.y[kept]
        if source.frame is not None:
            source.frame = source.frame.iloc[kept].reset_index(drop=True)
    return source, X


def cmd_predict(
    args: argparse.Namespace, model: Any, meta: dict[str, Any], prep: im.ImagePreparation
) -> int:
    """``lucidnet predict`` with an image model: one row per image (its path or IDX index, the
    ``--keep`` columns of a CSV, the prediction and each class's probability)."""
    import pandas as pd

    source, X = _model_inputs(args, meta, prep, labelled=False)
    classes = cm._class_names(meta) if meta["task"] == "classification" else []
    names = ["prediction"] + [f"proba_{c}" for c in classes]
    if source.frame is not None:
        keep = cm._kept_columns(source.frame, args.keep, args.data, names)
        table = cm._kept_table(source.frame, keep)
    else:
        if args.keep:
            raise CLIError("--keep needs a CSV input (its columns are copied)")
        table = pd.DataFrame({"image": source.names})
    cm.write_predictions(cm.add_predictions(table, model, X, classes), args.out)
    return 0


def cmd_evaluate(
    args: argparse.Namespace, model: Any, meta: dict[str, Any], prep: im.ImagePreparation
) -> int:
    """``lucidnet evaluate`` with an image model: metrics on labelled images."""
    source, X = _model_inputs(args, meta, prep, labelled=True)
    if source.y is None:
        raise CLIError(
            f"'{args.data}' has no labels for the model's target {meta.get('target')!r}: give "
            "a folder with one sub-folder per class, a CSV with the target column, or IDX "
            "files with their labels file"
        )
    task = meta["task"]
    pred, proba = cm.network_outputs(task, model, X)
    result = cm.test_metrics(task, source.y, pred, cm._class_names(meta))
    cm._say(cm.format_metrics(task, result, len(source.y), title=f"'{args.data}'"))
    extra = cm._evaluation_extras(task, source.y, pred, proba, len(cm._class_names(meta)))
    if args.metrics_json:
        doc = cm._metrics_document(task, result, rows=len(source.y), data_file=args.data, **extra)
        cm._write_text(args.metrics_json, json.dumps(doc, indent=2) + "\n")
    return 0


#: where the labels of each kind of input come from (explain's first line)
_LABELS_FROM = {
    "folder": "its class sub-folder",
    "idx": "the IDX labels file",
    "files": "the file",
}


def model_rows(
    args: argparse.Namespace, meta: dict[str, Any], prep: im.ImagePreparation, rows: slice
) -> tuple[np.ndarray, np.ndarray | None, list[str], int, str]:
    """For ``explain`` and ``gradcheck``: the images ``rows`` of ``args.data`` (in the order
    ``predict`` lists them) prepared as the model was trained, only those decoded.

    Returns:
        ``(X, y, names, total, labels_from)``: float32 ``(k, h, w, c)`` images, their labels
        in the model's encoding (None when the input has none: no class sub-folders, no
        target column, no labels file), their names, the number of images in the input and
        where the labels came from (said by ``explain``).
    """
    from dataclasses import replace

    source = read_source(args, meta, labelled=True)
    total = len(source.names)
    picked = range(total)[rows]
    source = replace(
        source,
        paths=None if source.paths is None else source.paths[rows],
        pixels=None if source.pixels is None else source.pixels[rows],
        y=None if source.y is None else source.y[rows],
        names=source.names[rows],
        frame=None,
    )
    if not len(picked):  # the caller says which row is out of range
        return np.zeros((0, *prep.shape), np.float32), source.y, [], total, ""
    X, kept = load_pixels(source, prep, getattr(args, "skip_unreadable", False))
    y = None if source.y is None else source.y[kept]
    where = _LABELS_FROM.get(source.kind, f"the column {source.target!r}")
    return X, y, [source.names[i] for i in kept], total, where


# the commands module consults this table and never imports this module (no import cycle);
# lucidnet/cli/__init__.py imports this module, so the table is filled whenever the CLI runs
cm.IMAGE_COMMANDS.update(
    wants=wants_images, train=cmd_train, predict=cmd_predict, evaluate=cmd_evaluate,
    rows=model_rows,
)  # fmt: skip
