"""Plots of training: curves, learning-rate schedule, gradient norms, weights, confusion matrix,
and the loss surface around two weights with the path gradient descent took.

matplotlib is an optional dependency (``pip install lucidnet[plot]``), imported when a plot is
first drawn. Figures are built with the object-oriented API (``matplotlib.figure.Figure``, drawn
by the Agg renderer), never through ``pyplot``: nothing here changes matplotlib's global backend
or leaves figures open, so the functions are safe in scripts, servers and notebooks alike.

Every function returns the ``Figure`` and, when ``path`` is given, also saves it as a PNG.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .._files import write_bytes_atomically
from .._validation import check_array, check_positive_int, describe
from ..callbacks import Callback

__all__ = [
    "plot_history",
    "plot_lr_schedule",
    "plot_gradient_norms",
    "plot_weight_histograms",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_predicted_vs_actual",
    "plot_residuals",
    "plot_loss_surface",
    "loss_surface",
    "WeightTracker",
    "figure_to_png",
    "image_to_png",
    "filter_tiles",
]

_INSTALL_HINT = "plots need matplotlib: pip install lucidnet[plot] (or pip install matplotlib)"


def _new_figure(figsize: tuple[float, float] = (6.4, 4.0)) -> Any:
    """A standalone matplotlib Figure (Agg canvas), or a clear ImportError."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas, so savefig needs no pyplot
    return fig


def _save(fig: Any, path: str | os.PathLike | None, dpi: int = 100) -> Any:
    """Save ``fig`` as a PNG at ``path`` (if given) and return it. Rendered in memory first, then
    written whole or not at all with the permissions open() gives: a failure while drawing
    or writing never leaves a truncated image or destroys the previous one."""
    if path is not None:
        write_bytes_atomically(path, figure_to_png(fig, dpi=dpi))
    return fig


def figure_to_png(fig: Any, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (used to embed images in HTML reports)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# small images without matplotlib: thumbnails of inputs, convolution filters
# --------------------------------------------------------------------------------------------


def image_to_png(image: Any, min_size: int = 48) -> bytes:
    """One small image as PNG bytes, enlarged by a whole factor (each pixel a square block,
    no smoothing) until its longer side is at least ``min_size``. Needs neither matplotlib nor
    Pillow (the PNG is written with :mod:`zlib`).

    Args:
        image: ``(h, w)``, ``(h, w, 1)`` (gray) or ``(h, w, 3)`` (RGB); floats in [0, 1]
            (clipped) or uint8.
        min_size: the smallest longer side of the result, in pixels.

    Returns:
        The PNG file's bytes (8-bit gray or RGB).
    """
    import struct
    import zlib

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or 0 in a.shape[:2]:
        raise ValueError(f"image must be (h, w), (h, w, 1) or (h, w, 3), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = _unit_to_uint8(np.nan_to_num(a.astype(np.float64), nan=0.0))
    k = max(1, -(-check_positive_int(min_size, "min_size") // max(a.shape[:2])))
    a = np.repeat(np.repeat(a, k, axis=0), k, axis=1)
    h, w = a.shape[:2]
    rows = np.ascontiguousarray(a).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    color = 0 if a.ndim == 2 else 2  # gray, RGB
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def filter_tiles(W: Any) -> tuple[list[np.ndarray], list[str], str]:
    """The kernels of a ``Conv2D`` as small RGB images, one per filter (and input channel).

    Three input channels (an RGB image): each filter drawn as a colour image, its weights
    scaled to [0, 1] filter by filter (what the filter responds to most, in colour). Any other
    number of channels: each channel of each filter drawn on one diverging scale shared by all
    (blue negative, white 0, red positive), so that strong and weak filters compare.

    Args:
        W: the kernel, ``(kh, kw, c_in, filters)``.

    Returns:
        ``(tiles, labels, how)``: uint8 ``(kh, kw, 3)`` images, a label for each
        (``"filter 3"`` or ``"filter 3, channel 1"``) and one sentence on the colours.
    """
    W = check_array(W, "W", dtype=np.float64, min_ndim=4, max_ndim=4)
    kh, kw, c_in, n = W.shape
    if c_in == 3:
        tiles, labels = [], []
        for f in range(n):
            k = W[:, :, :, f]
            span = float(k.max() - k.min())
            tiles.append(_unit_to_uint8((k - k.min()) / span if span > 0 else k * 0 + 0.5))
            labels.append(f"filter {f}")
        return tiles, labels, "each filter's weights scaled to [0, 1] as an RGB colour image"
    top = float(np.abs(W).max()) or 1.0
    tiles, labels = [], []
    for f in range(n):
        for c in range(c_in):
            tiles.append(_diverging(W[:, :, c, f] / top))
            labels.append(f"filter {f}" if c_in == 1 else f"filter {f}, channel {c}")
    how = f"blue: negative, white: 0, red: positive weights; one scale for all (|w| <= {top:.3g})"
    return tiles, labels, how


def _unit_to_uint8(a: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def _diverging(v: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] as RGB: -1 blue (0, 0, 1) through white to 1 red (1, 0, 0)."""
    v = np.clip(v, -1.0, 1.0)
    pos, neg = np.clip(v, 0, None), np.clip(-v, 0, None)
    rgb = np.stack([1.0 - neg, 1.0 - pos - neg, 1.0 - pos], axis=-1)
    return _unit_to_uint8(rgb)


def _integer_ticks(ax: Any) -> None:
    """Whole numbers only on the x axis (epochs): no "epoch 2.5" on a short run."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _history_dict(history: Any) -> tuple[dict[str, list[float]], int | None, int | None]:
    """(per-epoch values, best_epoch, stopped_epoch) from a History, its to_dict(), or a dict."""
    if hasattr(history, "history") and isinstance(history.history, dict):
        return history.history, history.best_epoch, history.stopped_epoch
    if isinstance(history, dict) and isinstance(history.get("history"), dict):
        return history["history"], history.get("best_epoch"), history.get("stopped_epoch")
    if isinstance(history, dict):
        return history, None, None
    raise TypeError(f"history must be a History or a dict, got {describe(history)}")


# --------------------------------------------------------------------------------------------
# curves
# --------------------------------------------------------------------------------------------


def plot_history(
    history: Any,
    metrics: list[str] | None = None,
    path: str | os.PathLike | None = None,
    *,
    loss_label: str | None = None,
) -> Any:
    """Training and validation loss (and metric) curves per epoch.

    Args:
        history: the ``History`` returned by ``fit`` (or ``History.to_dict()``).
        metrics: metric keys to plot besides the loss (default: every key with a ``val_``
            twin or a known metric, e.g. ``accuracy``).
        path: save the figure there as PNG.
        loss_label: the loss panel's axis label and title (default ``"loss"``), e.g.
            ``"loss (standardised target)"`` for a regression trained on a scaled target.

    The best epoch (``history.best_epoch``, set by ``EarlyStopping``) is marked with a dotted
    line, the epoch where training stopped early with a dashed one.
    """
    values, best, stopped = _history_dict(history)
    if "loss" not in values:
        raise ValueError(f"history has no 'loss' curve; keys: {', '.join(values) or 'none'}")
    if metrics is None:
        metrics = [k for k in values if not k.startswith("val_") and k not in ("loss", "lr")]
    panels = ["loss", *metrics]
    fig = _new_figure(figsize=(5.0 * len(panels), 3.6))
    for i, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        train = values.get(key, [])
        epochs = np.arange(1, len(train) + 1)
        ax.plot(epochs, train, marker="o", markersize=3, label=f"train {key}")
        if f"val_{key}" in values:
            val = values[f"val_{key}"]
            ax.plot(np.arange(1, len(val) + 1), val, marker="o", markersize=3, label=f"val {key}")
        if best is not None:
            ax.axvline(best + 1, color="C2", linestyle=":", label=f"best epoch {best + 1}")
        if stopped is not None:
            ax.axvline(stopped + 1, color="C3", linestyle="--", label=f"stopped {stopped + 1}")
        ax.set_xlabel("epoch")
        _integer_ticks(ax)
        label = loss_label if key == "loss" and loss_label else key
        ax.set_ylabel(label)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_lr_schedule(
    source: Any,
    steps: int | None = None,
    steps_per_epoch: int = 1,
    path: str | os.PathLike | None = None,
) -> Any:
    """The learning rate over time.

    Args:
        source: a ``History`` (its per-epoch ``lr``), a ``Schedule`` (evaluated for ``steps``
            optimizer steps), an optimizer (its ``lr``), or a sequence of learning rates.
        steps: number of steps to draw for a schedule / optimizer (required for those).
        steps_per_epoch: for schedules with ``unit="epoch"``.
        path: save the figure there as PNG.
    """
    from .. import optimizers as _optimizers
    from .. import schedules as _schedules

    xlabel = "step"
    if isinstance(source, _optimizers.Optimizer):
        source = source.lr
    if isinstance(source, (_schedules.Schedule, float, int)) and not isinstance(source, bool):
        steps = check_positive_int(steps, "steps")
        if isinstance(source, _schedules.Schedule):
            lrs = [source(t, steps_per_epoch) for t in range(steps)]
        else:
            lrs = [float(source)] * steps
    elif hasattr(source, "history") or isinstance(source, dict):
        values, _, _ = _history_dict(source)
        if "lr" not in values:
            raise ValueError("history has no 'lr' values")
        lrs, xlabel = values["lr"], "epoch"
    else:
        lrs = check_array(source, "source", dtype=np.float64, max_ndim=1).tolist()
    fig = _new_figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(1, len(lrs) + 1) if xlabel == "epoch" else np.arange(len(lrs))
    ax.plot(x, lrs, color="C1")
    if min(lrs) > 0 and max(lrs) / min(lrs) > 100:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    _integer_ticks(ax)
    ax.set_ylabel("learning rate")
    ax.set_title("Learning-rate schedule")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _diag_dict(diagnostics: Any) -> dict[str, Any]:
    if hasattr(diagnostics, "to_dict"):
        return diagnostics.to_dict()
    if isinstance(diagnostics, dict):
        return diagnostics
    raise TypeError(
        f"diagnostics must be a Diagnostics or its to_dict(), got {describe(diagnostics)}"
    )


def _every(n: int) -> str:
    """ "every step", "every 2nd step", "every 11th step", "every 23rd step"."""
    if n == 1:
        return "every step"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"every {n}{suffix} step"


def plot_gradient_norms(diagnostics: Any, path: str | os.PathLike | None = None) -> Any:
    """Per-layer gradient norms over the sampled training steps (log scale), from
    :class:`lucidnet.diagnostics.Diagnostics` (or its ``to_dict()``)."""
    d = _diag_dict(diagnostics)
    steps = np.asarray(d.get("steps", []))
    norms = d.get("step_grad_norms", {})
    if steps.size == 0 or not norms:
        raise ValueError("diagnostics has no recorded steps: train with the callback first")
    fig = _new_figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for name, vals in norms.items():
        v = np.array([np.nan if x is None else x for x in vals], dtype=np.float64)
        v[v <= 0] = np.nan  # log scale: a zero gradient shows as a gap
        ax.plot(steps[: v.size], v, label=name, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel(f"training step ({_every(int(d.get('every', 1)))})")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title("Gradient norm per layer")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _weights_of(source: Any) -> dict[str, np.ndarray]:
    if hasattr(source, "get_weights"):
        source = source.get_weights()
    if not isinstance(source, dict):
        raise TypeError(f"weights must be a model or a get_weights() dict, got {describe(source)}")
    return source


def plot_weight_histograms(
    start: Any, end: Any, path: str | os.PathLike | None = None, bins: int = 40
) -> Any:
    """Histograms of each weight matrix at the start and at the end of training.

    Args:
        start / end: models or ``get_weights()`` dicts (``Diagnostics.initial_weights`` holds
            the start of a run). Only arrays with 2 or more dimensions (weight matrices) and
            ``gamma`` of BatchNorm are drawn.
        path: save the figure there as PNG.
    """
    a, b = _weights_of(start), _weights_of(end)
    names = [k for k in b if k in a and (np.ndim(b[k]) >= 2 or k.endswith("/gamma"))]
    if not names:
        raise ValueError("no weight matrices in common between start and end")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _new_figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        s, e = np.ravel(a[name]).astype(np.float64), np.ravel(b[name]).astype(np.float64)
        both = np.concatenate([s, e])
        both = both[np.isfinite(both)]
        edges = np.histogram_bin_edges(both if both.size else [0.0, 1.0], bins=bins)
        ax.hist(s, bins=edges, alpha=0.55, label="start", color="C0")
        ax.hist(e, bins=edges, alpha=0.55, label="end", color="C1")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(
    cm: Any = None,
    *,
    y_true: Any = None,
    y_pred: Any = None,
    class_names: list[str] | None = None,
    normalize: bool = False,
    path: str | os.PathLike | None = None,
) -> Any:
    """A confusion matrix as a heat map with counts (or row fractions with ``normalize``).

    Pass either ``cm`` (k x k counts, rows = true class) or ``y_true`` and ``y_pred``.
    """
    if cm is None:
        if y_true is None or y_pred is None:
            raise ValueError("pass cm, or both y_true and y_pred")
        from ..metrics import confusion_matrix

        cm = confusion_matrix(y_true, y_pred)
    cm = check_array(cm, "cm", dtype=np.float64, min_ndim=2, max_ndim=2)
    k = cm.shape[0]
    if cm.shape != (k, k):
        raise ValueError(f"cm must be square (k, k), got shape {cm.shape}")
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"class_names must have {k} entries, got {len(names)}")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(3.5, 0.45 * k + 2.0)
    fig = _new_figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix" + (" (row fractions)" if normalize else ""))
    if k <= 20:
        top = shown.max() if shown.size else 0
        for i in range(k):
            for j in range(k):
                v = shown[i, j]
                text = f"{v:.2f}" if normalize else f"{int(round(v))}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.6 * top else "black",
                )
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# how good the predictions are: calibration, regression fit
# --------------------------------------------------------------------------------------------


def _bin_arrays(bins: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(centres, confidence, accuracy, count) of a reliability table's non-empty bins."""
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, dict) for b in bins):
        raise TypeError(
            f"{name} must be a list of dicts with lo, hi, count, confidence, accuracy; "
            f"got {describe(bins)}"
        )
    keys = ("lo", "hi", "count", "confidence", "accuracy")
    for b in bins:
        missing = [k for k in keys if k not in b]
        if missing:
            raise ValueError(f"{name}: a bin lacks {', '.join(missing)}; got keys {sorted(b)}")
    full = [b for b in bins if b["count"] and b["confidence"] is not None]
    cols = [np.array([float(b[k]) for b in full], dtype=np.float64) for k in keys]
    lo, hi, count, conf, acc = cols
    return (lo + hi) / 2, conf, acc, count


def plot_reliability(
    bins: Any,
    bins_after: Any = None,
    *,
    ece: float | None = None,
    ece_after: float | None = None,
    path: str | os.PathLike | None = None,
) -> Any:
    """Reliability diagram: per confidence bin, the accuracy of the predictions against their
    mean confidence (on the diagonal = calibrated), with the share of rows per bin below.

    Args:
        bins: ``[{"lo", "hi", "count", "confidence", "accuracy"}, ...]`` (empty bins, with
            ``count`` 0, are skipped).
        bins_after: the same after temperature scaling, or ``None``.
        ece / ece_after: expected calibration errors, shown in the legend.
        path: save the figure there as PNG.
    """
    curves = [("before" if bins_after is not None else "model", bins, ece, "C0")]
    if bins_after is not None:
        curves.append(("after temperature scaling", bins_after, ece_after, "C1"))
    parsed = [
        (lab, _bin_arrays(b, n), e, c) for (lab, b, e, c), n in zip(curves, ("bins", "bins_after"))
    ]
    fig = _new_figure(figsize=(5.2, 5.6))
    ax = fig.add_axes((0.14, 0.36, 0.8, 0.58))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for label, (_, conf, acc, _), e, colour in parsed:
        text = label if e is None else f"{label} (ECE {e:.3f})"
        ax.plot(conf, acc, marker="o", color=colour, label=text)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("Reliability diagram")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    counts = fig.add_axes((0.14, 0.08, 0.8, 0.18), sharex=ax)
    x, _, _, count = parsed[0][1]
    width = min((float(b["hi"]) - float(b["lo"]) for b in bins), default=0.1)
    counts.bar(x, count / max(count.sum(), 1), width=0.9 * width, color="C0", alpha=0.6)
    counts.set_xlabel("confidence of the predicted class")
    counts.set_ylabel("share of rows", fontsize=8)
    return _save(fig, path)


def _paired(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = check_array(y_true, "y_true", dtype=np.float64, max_ndim=2).ravel()
    p = check_array(y_pred, "y_pred", dtype=np.float64, max_ndim=2).ravel()
    if t.size != p.size:
        raise ValueError(f"y_true and y_pred must have as many values, got {t.size} and {p.size}")
    if t.size == 0:
        raise ValueError("y_true and y_pred are empty")
    return t, p


def plot_predicted_vs_actual(
    y_true: Any, y_pred: Any, *, target: str = "target", path: str | os.PathLike | None = None
) -> Any:
    """Predicted against actual values of a regression (points on the diagonal are exact).

    Args:
        y_true, y_pred: (n,) actual and predicted values, in the target's units.
        target: the target's name, for the axis labels.
        path: save the figure there as PNG.
    """
    t, p = _paired(y_true, y_pred)
    fig = _new_figure(figsize=(5.2, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    few = t.size <= 2000  # bigger, opaque points when there are few
    ax.scatter(t, p, s=14 if few else 4, alpha=0.6 if few else 0.25, color="C0", edgecolors="none")
    finite = np.concatenate([t, p])
    finite = finite[np.isfinite(finite)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ax.plot(
        [lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="predicted = actual"
    )
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(f"Predicted vs actual ({t.size:,} rows)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_residuals(
    y_true: Any, y_pred: Any, *, target: str = "target", path: str | os.PathLike | None = None
) -> Any:
    """Residuals (actual - predicted) against the prediction, and their histogram: a pattern
    (a funnel, a curve) shows what the model misses.

    Args:
        y_true, y_pred: (n,) actual and predicted values, in the target's units.
        target: the target's name, for the axis labels.
        path: save the figure there as PNG.
    """
    t, p = _paired(y_true, y_pred)
    r = t - p
    fig = _new_figure(figsize=(9.0, 3.8))
    ax = fig.add_subplot(1, 2, 1)
    few = t.size <= 2000
    ax.scatter(p, r, s=14 if few else 4, alpha=0.6 if few else 0.25, color="C0", edgecolors="none")
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel(f"predicted {target}")
    ax.set_ylabel("residual (actual - predicted)")
    ax.set_title("Residuals vs prediction")
    ax.grid(alpha=0.3)
    hist = fig.add_subplot(1, 2, 2)
    finite = r[np.isfinite(r)]
    hist.hist(finite if finite.size else [0.0], bins=40, color="C1", alpha=0.8)
    hist.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    hist.set_xlabel("residual (actual - predicted)")
    hist.set_ylabel("rows")
    hist.set_title("Distribution of the residuals")
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# loss surface
# --------------------------------------------------------------------------------------------


def _parse_weight(model: Any, spec: Any) -> tuple[str, tuple[int, ...]]:
    """``("dense_0/W", (i, j))`` or ``"dense_0/W[i,j]"`` -> (name, index), validated."""
    if isinstance(spec, str) and "[" in spec and spec.endswith("]"):
        name, _, rest = spec[:-1].partition("[")
        index = tuple(int(v) for v in rest.split(",") if v.strip())
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        name, index = spec[0], tuple(int(v) for v in np.atleast_1d(spec[1]))
    else:
        raise ValueError(
            f"a weight must be ('layer/param', index) or 'layer/param[i,j]', got {spec!r}"
        )
    params = {n: p for n, p, _ in model.parameters()}
    if name not in params:
        raise ValueError(f"unknown parameter {name!r}; the model has {', '.join(params)}")
    shape = params[name].shape
    if len(index) != len(shape) or any(not 0 <= i < d for i, d in zip(index, shape)):
        raise ValueError(f"index {index} is out of range for {name} of shape {shape}")
    return name, index


class WeightTracker(Callback):
    """Record the values of a few chosen weights after every optimizer step (to draw the path
    gradient descent took over the loss surface).

    Args:
        weights: e.g. ``[("dense_0/W", (0, 0)), "dense_1/W[2,0]"]``.

    Attributes:
        path: array (steps + 1, len(weights)): the values at the start and after each step.
    """

    def __init__(self, weights: list[Any]) -> None:
        super().__init__()
        self.specs = list(weights)
        self._values: list[list[float]] = []

    def _read(self) -> list[float]:
        params = {n: p for n, p, _ in self.model.parameters()}
        return [float(params[name][index]) for name, index in self._parsed]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._parsed = [_parse_weight(self.model, s) for s in self.specs]
        self._values = [self._read()]

    def on_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        self._values.append(self._read())

    @property
    def path(self) -> np.ndarray:
        return np.asarray(self._values, dtype=np.float64)


def loss_surface(
    model: Any,
    X: Any,
    y: Any,
    weights: tuple[Any, Any],
    *,
    center: tuple[float, float] | None = None,
    span: tuple[float, float] | float = 1.0,
    resolution: int = 31,
    loss: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss on a grid of values of two weights, all other weights fixed (inference mode).

    Returns:
        ``(a, b, Z)``: grid values of the first and second weight (each (resolution,)) and
        the loss ``Z[i, j]`` at ``(a[j], b[i])`` (shape (resolution, resolution)).
    """
    from .. import losses as _losses
    from ..training import prepare_targets

    resolution = check_positive_int(resolution, "resolution", minimum=3)
    loss_fn = _losses.get(loss) if loss is not None else model.loss
    if loss_fn is None:
        raise ValueError("loss_surface needs a loss: pass loss=... or fit the model first")
    work = model.copy()
    (n1, i1), (n2, i2) = (_parse_weight(work, w) for w in weights)
    params = {n: p for n, p, _ in work.parameters()}
    c = center if center is not None else (float(params[n1][i1]), float(params[n2][i2]))
    s1, s2 = (span, span) if np.isscalar(span) else span
    a = np.linspace(c[0] - s1, c[0] + s1, resolution)
    b = np.linspace(c[1] - s2, c[1] + s2, resolution)
    integer = bool(work.layers) and work.layers[0].integer_input
    Xc = check_array(X, "X", dtype=None if integer else work.dtype, min_ndim=2, integer=integer)
    yc = prepare_targets(work, loss_fn, y)
    Z = np.empty((resolution, resolution))
    for i, vb in enumerate(b):
        params[n2][i2] = vb
        for j, va in enumerate(a):
            params[n1][i1] = va
            Z[i, j] = loss_fn(work.forward(Xc, training=False), yc)[0] + work.penalty()
    return a, b, Z


def plot_loss_surface(
    model: Any,
    X: Any,
    y: Any,
    weights: tuple[Any, Any],
    trajectory: Any = None,
    *,
    span: float | tuple[float, float] | None = None,
    resolution: int = 31,
    loss: Any = None,
    path: str | os.PathLike | None = None,
) -> Any:
    """Contour plot of the loss around two weights of a trained model, with the path gradient
    descent took (from :class:`WeightTracker`).

    The surface is a 2-D slice: every other weight stays at its final value, so the path (along
    which the other weights moved too) is drawn over the slice at the end of training.

    Args:
        model: the trained model (the grid is centred on its current weights).
        X, y: data on which the loss is evaluated (a few hundred samples suffice).
        weights: the two weights, e.g. ``(("dense_0/W", (0, 0)), ("dense_1/W", (0, 0)))``.
        trajectory: (steps, 2) values of the two weights during training, or ``None``.
        span: half-width of the grid per weight; default: 1.25x the trajectory's extent
            (at least 0.5), or 1.0 without a trajectory.
        resolution: grid points per axis.
        loss: loss (default the model's).
        path: save the figure there as PNG.
    """
    params = {n: p for n, p, _ in model.parameters()}
    (n1, i1), (n2, i2) = (_parse_weight(model, w) for w in weights)
    center = (float(params[n1][i1]), float(params[n2][i2]))
    traj, span = _trajectory_and_span(trajectory, center, span)
    a, b, Z = loss_surface(
        model, X, y, weights, center=center, span=span, resolution=resolution, loss=loss
    )
    fig = _new_figure(figsize=(6.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    finite = Z[np.isfinite(Z)]
    # log-spaced levels: the interesting part of a loss surface is near its minimum
    lo, hi = float(finite.min()), float(finite.max())
    levels = np.geomspace(max(lo, 1e-12), max(hi, lo * 1.001 + 1e-12), 20)
    cs = ax.contourf(a, b, np.clip(Z, levels[0], levels[-1]), levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="loss")
    if traj is not None:
        ax.plot(traj[:, 0], traj[:, 1], color="white", linewidth=1.2, marker=".", markersize=2)
        ax.plot(*traj[0], marker="o", color="red", markersize=6, label="start")
    ax.plot(*center, marker="*", color="orange", markersize=12, label="end (trained)")
    ax.set_xlabel(f"{n1}{list(i1)}")
    ax.set_ylabel(f"{n2}{list(i2)}")
    ax.set_title("Loss surface around two weights")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def _trajectory_and_span(
    trajectory: Any, center: tuple[float, float], span: float | tuple[float, float] | None
) -> tuple[np.ndarray | None, float | tuple[float, float]]:
    """The checked (steps, 2) trajectory (or ``None``) and the grid's half-widths: ``span`` if
    given, else 1.25x the trajectory's extent around ``center`` (at least 0.5), else 1.0."""
    traj = None
    if trajectory is not None:
        traj = check_array(trajectory, "trajectory", dtype=np.float64, min_ndim=2, max_ndim=2)
        if traj.shape[1] != 2:
            raise ValueError(f"trajectory must have shape (steps, 2), got {traj.shape}")
    if span is not None:
        return traj, span
    if traj is None:
        return traj, 1.0
    ext = np.abs(traj - np.asarray(center)).max(axis=0)
    return traj, (max(1.25 * ext[0], 0.5), max(1.25 * ext[1], 0.5))
