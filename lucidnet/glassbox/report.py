"""A self-contained HTML training report: one file, images embedded as base64 PNG.

``write_report(path, model=..., history=...)`` writes the headline numbers (of the epoch whose
weights the model holds), the verdict against baselines with confidence intervals (when given),
the data summary, the preparation applied, the architecture (``model.summary()``), the
hyper-parameters, the training curves (epochs on whole-number ticks; for a regression trained on
a standardised target, said so), the learning rate, the diagnostics (gradient norms, weight
histograms, per-layer table, warnings), the test metrics (per-class table and confusion matrix;
predicted-vs-actual and residual plots for a regression), the baselines, the calibration
(reliability diagram) and the inputs that move the predictions, named. The file references
nothing outside itself (no scripts, no style sheets, no fonts), so it can be mailed, archived or
opened offline.

Without matplotlib the report is still written, with a note in place of the images.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._files import write_text_atomically
from .._validation import describe
from ..model import Sequential

__all__ = ["write_report", "render_report"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #3b6ea5; padding-bottom: .2em; }
h2 { color: #3b6ea5; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef3f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .8em; white-space: pre-wrap; font-size: 0.85em; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.warn { background: #fff4e5; border-left: 4px solid #e69500; padding: .5em .8em; margin: .4em 0; }
.ok { background: #eaf7ea; border-left: 4px solid #3a9a3a; padding: .5em .8em; }
.note { color: #666; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; }
.card { border: 1px solid #ccd; border-radius: 6px; padding: .5em 1em; min-width: 8em; }
.card .v { font-size: 1.4em; font-weight: 600; }
.card .ci { font-size: 0.8em; color: #555; }
.verdict { background: #eef3f9; border-left: 5px solid #3b6ea5; padding: .6em 1em;
           margin: 1em 0; font-size: 1.1em; }
.thumbs { display: flex; flex-wrap: wrap; gap: .6em; }
.thumb { margin: 0; width: 7.5em; text-align: center; font-size: 0.8em; overflow-wrap: anywhere; }
.thumb img { image-rendering: pixelated; width: 64px; margin: 0 auto .2em auto; }
.thumb.filter { width: 4.5em; }
.thumb.filter img { width: 40px; }
"""

_NUM = ' class="num"'
_NO_PLOTS = "plots omitted: matplotlib is not installed (pip install lucidnet[plot])"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _table(mapping: dict[str, Any], head: tuple[str, str] = ("name", "value")) -> str:
    # right-align the values only when they are all numbers (a column of metrics)
    cls = _NUM if mapping and all(_is_num(v) for v in mapping.values()) else ""
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td{cls}>{_e(_fmt(v))}</td></tr>" for k, v in mapping.items()
    )
    return f"<table><tr><th>{_e(head[0])}</th><th>{_e(head[1])}</th></tr>{rows}</table>"


def _block(value: Any) -> str:
    """A str as preformatted text, a dict as a table, a list as bullet points."""
    if value is None:
        return '<p class="note">not given</p>'
    if hasattr(value, "summary") and callable(value.summary):  # e.g. a TabularPreparer
        value = value.summary()
    if isinstance(value, str):
        return f"<pre>{_e(value)}</pre>"
    if isinstance(value, dict):
        return _table(value)
    if isinstance(value, (list, tuple)):
        return "<ul>" + "".join(f"<li>{_e(_fmt(v))}</li>" for v in value) + "</ul>"
    return f"<pre>{_e(value)}</pre>"


def _img(fig: Any, alt: str) -> str:
    from .plots import figure_to_png

    data = base64.b64encode(figure_to_png(fig, dpi=90)).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _history_parts(history: Any) -> tuple[dict[str, list[float]], dict[str, Any], list[str]]:
    if history is None:
        return {}, {}, []
    if hasattr(history, "to_dict"):
        history = history.to_dict()
    if not isinstance(history, dict):
        raise TypeError(f"history must be a History or its to_dict(), got {describe(history)}")
    values = history.get("history", {})
    meta = {
        k: history.get(k)
        for k in ("best_epoch", "stopped_epoch", "stop_reason")
        if history.get(k) is not None
    }
    meta["epochs_run"] = len(history.get("epoch", []))
    return values, {**meta, "params": history.get("params", {})}, list(history.get("warnings", []))


def render_report(
    *,
    model: Sequential,
    history: Any,
    data_summary: Any = None,
    preparation: Any = None,
    hyperparameters: dict[str, Any] | None = None,
    test_metrics: dict[str, Any] | None = None,
    diagnostics: Any = None,
    title: str | None = None,
    restored_best: bool | None = None,
    target_scaling: dict[str, Any] | None = None,
    weights_before_scaling: dict[str, Any] | None = None,
    y_true: Any = None,
    y_pred: Any = None,
    target: str | None = None,
    verdict: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    feature_names: list[str] | None = None,
    X_test: Any = None,
    test_images: dict[str, Any] | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_report` for the arguments)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a lucidnet Sequential, got {describe(model)}")
    values, meta, warnings_list = _history_parts(history)
    meta["kept"] = _kept_epoch(meta, restored_best)
    diag = _diagnostics_dict(diagnostics)
    if diag is not None:
        warnings_list += [w for w in diag.get("warnings", {}).values() if w not in warnings_list]
    metrics, cm, class_names, per_class = _split_metrics(test_metrics)
    verdict = _checked_dict(verdict, "verdict")
    calibration = _checked_dict(calibration, "calibration")
    scaled = _scaling(target_scaling)
    plots = _plots_module()
    title = title or f"Training report: {model.name}"
    parts = _head(title)
    parts += _cards(model, values, meta, metrics, verdict, scaled is not None)
    parts += _verdict_line(verdict)
    parts += ["<h2>Data</h2>", _block(data_summary), "<h2>Preparation</h2>", _block(preparation)]
    parts += ["<h2>Architecture</h2>", f"<pre>{_e(model.summary(print_fn=None))}</pre>"]
    parts += _hyperparameters(model, hyperparameters, meta)
    parts += _training(history, values, meta, plots, scaled)
    end = _end_weights(model, weights_before_scaling, scaled)
    parts += _diagnostics(diagnostics, diag, warnings_list, plots, end, scaled is not None)
    images = _checked_images(test_images, class_names)
    parts += _conv_filters(model, None if images is None else images["X"])
    parts += _test_metrics(metrics, cm, class_names, plots, verdict)
    parts += _per_class(per_class)
    parts += _regression_plots(y_true, y_pred, target, plots)
    parts += _test_image_grid(images)
    parts += _baselines(verdict)
    parts += _calibration(calibration, plots)
    parts += _feature_effects(model, X_test, feature_names)
    parts.append("</body></html>")
    return "\n".join(parts)


def _checked_dict(value: Any, name: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise TypeError(f"{name} must be a dict or None, got {describe(value)}")


def _split_metrics(test_metrics: dict[str, Any] | None) -> tuple[dict, Any, Any, Any]:
    """(scalar metrics, confusion matrix, class names, per-class table) of ``test_metrics``,
    which may hold them at the top level or in ``details`` (as the CLI's test metrics do)."""
    metrics = dict(_checked_dict(test_metrics, "test_metrics") or {})
    details = metrics.pop("details", None) or {}
    cm = metrics.pop("confusion_matrix", details.get("confusion_matrix"))
    class_names = metrics.pop("class_names", details.get("classes"))
    per_class = metrics.pop("per_class", details.get("per_class"))
    return metrics, cm, class_names, per_class


def _scaling(target_scaling: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
    """``{"mean", "std"}`` as float arrays (one value per output), or None."""
    if target_scaling is None:
        return None
    if not isinstance(target_scaling, dict) or not {"mean", "std"} <= set(target_scaling):
        raise TypeError(
            f"target_scaling must be a dict with 'mean' and 'std', got {describe(target_scaling)}"
        )
    return {
        k: np.atleast_1d(np.asarray(target_scaling[k], dtype=np.float64)) for k in ("mean", "std")
    }


def _kept_epoch(meta: dict[str, Any], restored_best: bool | None) -> dict[str, Any] | None:
    """Which epoch the headline numbers are of: ``{"index" (0-based), "why"}``, or None.
    Unknown whether the best epoch's weights were restored (``None``): its numbers, called the
    best epoch's, not the weights kept."""
    n = meta.get("epochs_run") or 0
    if not n:
        return None
    best = meta.get("best_epoch")
    if best is not None and restored_best is not False:
        why = "the best epoch, restored" if restored_best else "the best epoch"
        return {"index": int(best), "why": why}
    return {"index": n - 1, "why": "the last epoch"}


def _diagnostics_dict(diagnostics: Any) -> dict[str, Any] | None:
    if diagnostics is None:
        return None
    diag = diagnostics.to_dict() if hasattr(diagnostics, "to_dict") else diagnostics
    if not isinstance(diag, dict):
        raise TypeError(
            f"diagnostics must be a Diagnostics or its to_dict(), got {describe(diagnostics)}"
        )
    return diag


def _plots_module() -> Any:
    """``lucidnet.glassbox.plots`` when matplotlib can make figures, else ``None``."""
    from . import plots  # imports matplotlib only when a figure is made

    try:
        plots._new_figure()
    except ImportError:
        return None
    return plots


def _head(title: str) -> list[str]:
    from .._version import __version__

    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">written {now} by lucidnet {__version__}</p>',
    ]


_CI_NAMES = {"f1_macro": "macro_f1", "f1": "macro_f1"}  # the CLI's names -> the verdict's


def _ci_of(verdict: dict[str, Any] | None, metric: str) -> list[float] | None:
    """The 95% interval of the network's ``metric`` in ``verdict``, or None."""
    if not verdict:
        return None
    network = verdict.get("network") or {}
    entry = network.get(metric) or network.get(_CI_NAMES.get(metric, metric)) or {}
    ci = entry.get("ci95") if isinstance(entry, dict) else None
    return [float(v) for v in ci] if ci is not None and len(ci) == 2 else None


def _ci_text(ci: list[float] | None, signed: bool = False) -> str:
    if ci is None:
        return ""
    f = (lambda v: f"{v:+.4g}") if signed else _fmt
    return f"[{f(ci[0])}, {f(ci[1])}]"


def _cards(
    model: Sequential,
    values: dict[str, list[float]],
    meta: dict[str, Any],
    metrics: dict,
    verdict: dict[str, Any] | None,
    scaled: bool,
) -> list[str]:
    """The headline numbers: test metrics (with their 95% intervals), the losses of the epoch
    whose weights the model holds, that epoch, the parameters."""
    cards = [(f"test {k}", v, _ci_of(verdict, k)) for k, v in metrics.items() if _is_num(v)]
    kept = meta.get("kept")
    if kept is not None:
        i, std = kept["index"], " (standardised)" if scaled else ""
        for key, label in (("loss", "train loss"), ("val_loss", "val loss")):
            if len(values.get(key, [])) > i:
                cards.append((f"{label}{std}, epoch {i + 1}", values[key][i], None))
        title = "best epoch" if kept["why"] == "the best epoch" else "weights kept"
        cards.append((title, f"epoch {i + 1} of {meta['epochs_run']}", kept["why"]))
    cards.append(("parameters", model.n_params, None))
    body = [
        f'<div class="card"><div>{_e(k)}</div><div class="v">{_e(_fmt(v))}</div>'
        + (f'<div class="ci">{_e(_card_note(note))}</div>' if note else "")
        + "</div>"
        for k, v, note in cards
    ]
    return ['<div class="cards">', *body, "</div>"]


def _card_note(note: Any) -> str:
    return f"95% CI {_ci_text(note)}" if isinstance(note, list) else str(note)


def _verdict_line(verdict: dict[str, Any] | None) -> list[str]:
    """The verdict sentence, prominent, right under the headline numbers."""
    if not verdict or not verdict.get("sentence"):
        return []
    return [f'<div class="verdict"><b>Verdict:</b> {_e(verdict["sentence"])}</div>']


def _hyperparameters(
    model: Sequential, hyperparameters: dict[str, Any] | None, meta: dict[str, Any]
) -> list[str]:
    """The given settings, else the history's parameters plus the optimizer and loss."""
    hp = dict(hyperparameters) if hyperparameters else {}
    if not hp:
        hp.update(meta.get("params", {}))
        if model.optimizer is not None:
            hp["optimizer"] = repr(model.optimizer)
        if model.loss is not None:
            hp["loss"] = repr(model.loss)
    return ["<h2>Hyper-parameters</h2>", _table(hp) if hp else '<p class="note">not given</p>']


def _training(
    history: Any,
    values: dict[str, list[float]],
    meta: dict[str, Any],
    plots: Any,
    scaled: dict[str, np.ndarray] | None,
) -> list[str]:
    """How training ended, the curves and the learning rate, and the last epoch's values."""
    parts = ["<h2>Training</h2>"]
    stop = meta.get("stop_reason")
    if stop:
        where = meta.get("stopped_epoch")
        at = f" at epoch {where + 1}" if where is not None else ""
        parts.append(f"<p>Training stopped early{at}: {_e(stop)}.</p>")
    kept = meta.get("kept")
    if meta.get("best_epoch") is not None:
        restored = kept is not None and kept["why"].endswith("restored")
        tail = "; the model holds its weights (restored by early stopping)" if restored else ""
        parts.append(f"<p>Best epoch: {meta['best_epoch'] + 1}{tail}.</p>")
    if scaled is not None:
        parts.append(_scaling_note(scaled))
    if not values:
        parts.append('<p class="note">no training history</p>')
    elif plots is None:
        parts.append(f'<p class="note">{_e(_NO_PLOTS)}</p>')
    else:
        label = "loss (standardised target)" if scaled is not None else None
        fig = plots.plot_history(history, loss_label=label)
        parts.append(_img(fig, "training and validation curves"))
        lrs = values.get("lr", [])
        if lrs and len(set(lrs)) > 1:
            parts.append(_img(plots.plot_lr_schedule(history), "learning rate per epoch"))
        elif lrs:
            parts.append(f"<p>Learning rate: constant {_e(_fmt(lrs[0]))}.</p>")
    if values:
        last = {k: v[-1] for k, v in values.items() if v}
        n = len(next(iter(values.values())))
        note = "" if kept is None or kept["index"] == n - 1 else "; not the weights kept"
        parts.append(f"<p>Last epoch ({n}{note}):</p>" + _table(last, ("quantity", "value")))
    return parts


def _scaling_note(scaled: dict[str, np.ndarray]) -> str:
    def nums(a: np.ndarray) -> str:
        return ", ".join(_fmt(float(v)) for v in a)

    return (
        '<div class="warn">The training and validation losses are on the standardised target '
        f"(y - mean) / std, with mean {_e(nums(scaled['mean']))} and std "
        f"{_e(nums(scaled['std']))}: a loss of 1 is as good as always predicting the mean. "
        "The saved model predicts in the target's own units (the scaling is folded into its "
        "output layer), and the test metrics below are in those units.</div>"
    )


def _end_weights(
    model: Sequential,
    before: dict[str, Any] | None,
    scaled: dict[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """The weights to draw as "end": ``before`` (the weights before the target scaling was
    folded in) when given, else the model's, with the fold undone when ``scaled`` is given
    (``W / std``, ``(b - mean) / std`` on the output layer), so they compare with the start."""
    if before is not None:
        if not isinstance(before, dict):
            raise TypeError(
                f"weights_before_scaling must be a get_weights() dict, got {describe(before)}"
            )
        return before
    weights = model.get_weights() if model.built else {}
    if scaled is None or not model.layers:
        return weights
    name = model.layers[-1].name
    w_key, b_key = f"{name}/W", f"{name}/b"
    if w_key in weights:
        weights[w_key] = weights[w_key] / scaled["std"]
    if b_key in weights:
        weights[b_key] = (weights[b_key] - scaled["mean"]) / scaled["std"]
    return weights


def _diagnostics(
    diagnostics: Any,
    diag: dict[str, Any] | None,
    warnings_list: list[str],
    plots: Any,
    end: dict[str, np.ndarray],
    scaled: bool,
) -> list[str]:
    """The warnings, the per-layer table, gradient norms and weight histograms."""
    parts = ["<h2>Diagnostics</h2>"]
    if warnings_list:
        parts.extend(f'<div class="warn">{_e(w)}</div>' for w in warnings_list)
    else:
        parts.append('<div class="ok">No warnings were raised during training.</div>')
    if diag is None:
        return parts
    parts.append(_diagnostics_table(diag))
    if plots is not None and diag.get("steps"):
        parts.append(_img(plots.plot_gradient_norms(diag), "gradient norm per layer"))
    initial = getattr(diagnostics, "initial_weights", None)
    if plots is not None and initial:
        try:
            fig = plots.plot_weight_histograms(initial, end)
        except ValueError:
            return parts  # no weight matrices (e.g. a model of only BatchNorm layers)
        parts.append(_img(fig, "weight histograms at the start and the end"))
        if scaled:
            parts.append(
                '<p class="note">Weights at the end as trained, before the target scaling was '
                "folded into the output layer (the saved model's output layer is that times "
                "the target's std).</p>"
            )
    return parts


def _test_metrics(
    metrics: dict[str, Any], cm: Any, class_names: Any, plots: Any, verdict: dict | None
) -> list[str]:
    parts = ["<h2>Test metrics</h2>"]
    if verdict and verdict.get("n_test"):
        parts.append(f"<p>On {_e(_fmt(verdict['n_test']))} test rows.</p>")
    if metrics:
        parts.append(_metrics_table(metrics, verdict))
    elif cm is None:
        parts.append('<p class="note">not given</p>')
    if cm is not None:
        parts += _confusion_matrix(np.asarray(cm), class_names, plots)
    return parts


def _metrics_table(metrics: dict[str, Any], verdict: dict | None) -> str:
    """metric | value, plus a 95% interval column when the verdict has intervals."""
    cis = {k: _ci_of(verdict, k) for k in metrics}
    if not any(cis.values()):
        return _table(metrics, ("metric", "value"))
    rows = "".join(
        f'<tr><td>{_e(k)}</td><td class="num">{_e(_fmt(v))}</td>'
        f'<td class="num">{_e(_ci_text(cis[k]))}</td></tr>'
        for k, v in metrics.items()
    )
    how = (
        f" ({_fmt(verdict['resamples'])} bootstrap resamples)"
        if verdict and verdict.get("resamples")
        else ""
    )
    head = f"<tr><th>metric</th><th>value</th><th>95% interval{_e(how)}</th></tr>"
    return f"<table>{head}{rows}</table>"


def _per_class(per_class: Any) -> list[str]:
    """Precision, recall, F1 and support per class (the table ``lucidnet train`` prints)."""
    if not per_class:
        return []
    if not isinstance(per_class, dict):
        raise TypeError(f"per_class must be a dict class -> metrics, got {describe(per_class)}")
    cols = ("precision", "recall", "f1", "support")
    head = "<tr><th>class</th>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    rows = "".join(
        f"<tr><td>{_e(name)}</td>"
        + "".join(f'<td class="num">{_e(_cell(rec.get(c), c))}</td>' for c in cols)
        + "</tr>"
        for name, rec in per_class.items()
    )
    return ["<p>Per class:</p>", f"<table>{head}{rows}</table>"]


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    return f"{int(value):,}" if column == "support" else f"{float(value):.3f}"


def _confusion_matrix(cm: np.ndarray, class_names: Any, plots: Any) -> list[str]:
    """The confusion matrix as an image (when matplotlib is there) and as a table."""
    names = [str(c) for c in (class_names or range(cm.shape[0]))]
    parts = []
    if plots is not None:
        parts.append(_img(plots.plot_confusion_matrix(cm, class_names=names), "confusion matrix"))
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{_e(names[i])}</th>"
        + "".join(f'<td class="num">{int(v)}</td>' for v in row)
        + "</tr>"
        for i, row in enumerate(cm)
    )
    parts.append(
        "<p>Confusion matrix (rows: true class, columns: predicted class):</p>"
        f"<table><tr><th></th>{head}</tr>{body}</table>"
    )
    return parts


def _regression_plots(y_true: Any, y_pred: Any, target: str | None, plots: Any) -> list[str]:
    """Predicted vs actual and the residuals of the test rows."""
    if y_true is None and y_pred is None:
        return []
    if y_true is None or y_pred is None:
        raise ValueError("pass both y_true and y_pred (the test rows' actual and predicted values)")
    if plots is None:
        return [f'<p class="note">{_e(_NO_PLOTS)}</p>']
    name = target or "target"
    return [
        _img(plots.plot_predicted_vs_actual(y_true, y_pred, target=name), "predicted vs actual"),
        _img(plots.plot_residuals(y_true, y_pred, target=name), "residuals"),
    ]


def _value_ci(entry: Any, signed: bool = False) -> str:
    """``0.79 [0.77, 0.81]`` from ``{"value", "ci95"}`` (``-`` when absent)."""
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "-"
    v = float(entry["value"])
    text = f"{v:+.4g}" if signed else _fmt(v)
    ci = entry.get("ci95")
    if ci is not None and len(ci) == 2 and None not in ci:
        text += " " + _ci_text([float(c) for c in ci], signed)
    return text


def _baselines(verdict: dict[str, Any] | None) -> list[str]:
    """The network and each baseline on the same test rows, with 95% intervals, and the
    network's margin over each on the verdict's metric (paired bootstrap)."""
    if not verdict:
        return []
    network = verdict.get("network") or {}
    baselines = [b for b in verdict.get("baselines") or [] if isinstance(b, dict)]
    names = list(network) + [
        k for b in baselines for k in (b.get("metrics") or {}) if k not in network
    ]
    names = list(dict.fromkeys(names))
    metric = verdict.get("metric", "")
    head = "<tr><th>model</th><th>kind</th>" + "".join(f"<th>{_e(n)}</th>" for n in names)
    head += f"<th>margin: network minus model ({_e(metric)})</th><th>seconds</th></tr>"
    rows = [_baseline_row("the network", "network", network, None, None, names)]
    rows += [
        _baseline_row(
            str(b.get("name", "?")),
            str(b.get("kind", "")),
            b.get("metrics") or {},
            b.get("margin"),
            b.get("seconds"),
            names,
        )
        for b in baselines
    ]
    parts = ["<h2>Is the network worth it? Baselines on the same test rows</h2>"]
    parts.append("<table>" + head + "".join(rows) + "</table>")
    parts.append(f'<p class="note">{_e(_bootstrap_note(verdict))}</p>')
    return parts


def _baseline_row(
    name: str, kind: str, metrics: dict, margin: Any, seconds: Any, names: list[str]
) -> str:
    cells = "".join(f'<td class="num">{_e(_value_ci(metrics.get(n)))}</td>' for n in names)
    secs = _fmt(float(seconds)) if _is_num(seconds) else "-"
    return (
        f"<tr><td>{_e(name)}</td><td>{_e(kind)}</td>{cells}"
        f'<td class="num">{_e(_value_ci(margin, signed=True))}</td>'
        f'<td class="num">{_e(secs)}</td></tr>'
    )


def _bootstrap_note(verdict: dict[str, Any]) -> str:
    bits = []
    if verdict.get("n_test"):
        bits.append(f"{_fmt(verdict['n_test'])} test rows")
    if verdict.get("resamples"):
        bits.append(
            f"{_fmt(verdict['resamples'])} bootstrap resamples (seed {verdict.get('seed', '-')})"
        )
    if _is_num(verdict.get("seconds")):
        bits.append(f"baselines and intervals took {_fmt(float(verdict['seconds']))} s")
    text = "Brackets: 95% intervals; the margins come from a paired bootstrap on the same rows"
    return text + (" (" + "; ".join(bits) + ")." if bits else ".")


def _calibration(calibration: dict[str, Any] | None, plots: Any) -> list[str]:
    """The expected calibration error (before / after temperature scaling), the reliability
    diagram and its bins."""
    if not calibration:
        return []
    parts = ["<h2>Calibration: can the probabilities be taken at their word?</h2>"]
    parts.append(f"<p>{_e(_calibration_sentence(calibration))}</p>")
    bins, after = calibration.get("bins") or [], calibration.get("bins_after")
    if plots is None:
        parts.append(f'<p class="note">{_e(_NO_PLOTS)}</p>')
    elif bins:
        fig = plots.plot_reliability(
            bins,
            after or None,
            ece=calibration.get("ece_before"),
            ece_after=calibration.get("ece_after"),
        )
        parts.append(_img(fig, "reliability diagram"))
    if bins:
        parts.append(_bins_table(bins, after))
    return parts


def _calibration_sentence(c: dict[str, Any]) -> str:
    rows = f" on the {_fmt(c['n_rows'])} {c.get('rows', 'test')} rows" if c.get("n_rows") else ""
    text = "Expected calibration error (ECE: the mean gap between confidence and accuracy, "
    text += f"weighted by the rows per bin){rows}: "
    text += _fmt(float(c["ece_before"])) if _is_num(c.get("ece_before")) else "not given"
    if _is_num(c.get("temperature")):
        text += f"; with temperature scaling (T = {float(c['temperature']):.3g})"
        if _is_num(c.get("ece_after")):
            text += f": {_fmt(float(c['ece_after']))}"
    return text + ". Lower is better; 0 means a confidence of 80% is right 80% of the time."


def _bins_table(bins: list[dict[str, Any]], after: Any) -> str:
    head = "<tr><th>confidence bin</th><th>rows</th><th>mean confidence</th><th>accuracy</th>"
    head += "<th>accuracy after scaling</th></tr>" if after else "</tr>"
    rows = []
    for i, b in enumerate(bins):
        if not b.get("count"):
            continue
        cells = [f"{float(b['lo']):.2f} - {float(b['hi']):.2f}", _fmt(b["count"])]
        cells += [_num_or_dash(b.get("confidence")), _num_or_dash(b.get("accuracy"))]
        if after:
            a = after[i] if i < len(after) and isinstance(after[i], dict) else {}
            cells.append(_num_or_dash(a.get("accuracy")))
        rows.append("<tr>" + "".join(f'<td class="num">{_e(c)}</td>' for c in cells) + "</tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def _num_or_dash(v: Any) -> str:
    return f"{float(v):.3f}" if _is_num(v) else "-"


_CONSTANT = (
    ' <span class="note">(the same value on every row: the model can only use it as a bias; '
    "setting it to 0 says little)</span>"
)


def _effect_sign(unit: str) -> str:
    if unit == "prediction":
        return "A positive mean effect: the input raises the prediction on average."
    return "A positive mean effect: the input supports the class the model predicts."


def _feature_effects(model: Sequential, X_test: Any, feature_names: list[str] | None) -> list[str]:
    """The inputs that move the predictions most, by name (:func:`explain.feature_effects`)."""
    if X_test is None:
        return []
    from .explain import feature_effects

    parts = ["<h2>Inputs that move the predictions</h2>"]
    try:
        fx = feature_effects(model, X_test, feature_names)
    except ValueError as exc:  # e.g. a model of token ids: no per-feature inputs
        return parts + [f'<p class="note">not computed: {_e(exc)}</p>']
    top = fx.top(20)
    parts.append(
        f"<p>Per input, how much the {_e(fx.unit)} changes when the input is set to 0 (for a "
        "prepared table: the training mean of a standardised number, &quot;not this "
        "category&quot; for a one-hot column, &quot;word absent&quot; for a text column), "
        f"averaged over {_e(_fmt(fx.rows))} test rows. {_e(_effect_sign(fx.unit))} This "
        "shows what the model uses, not what causes the target.</p>"
    )
    head = "<tr><th>input</th><th>mean |effect|</th><th>mean effect</th>"
    head += "<th>rows where non-zero</th></tr>"
    rows = "".join(
        f"<tr><td>{_e(e['name'])}{_CONSTANT if e.get('constant') else ''}</td>"
        f'<td class="num">{e["mean_abs"]:.4g}</td>'
        f'<td class="num">{e["mean"]:+.4g}</td><td class="num">{e["rows_nonzero"]:,}</td></tr>'
        for e in top
    )
    return parts + [f"<table>{head}{rows}</table>"]


def _diagnostics_table(diag: dict[str, Any]) -> str:
    layers = diag.get("layers", {})
    if not layers:
        return ""
    head = "<tr><th>layer</th><th>grad norm</th><th>update / weight</th><th>dead units</th>"
    head += "<th>saturated</th></tr>"
    rows = []
    for name, rec in layers.items():

        def last(key: str, pct: bool = False, rec: dict = rec) -> str:
            vals = [v for v in rec.get(key, []) if v is not None]
            if not vals:
                return "-"
            return f"{vals[-1]:.0%}" if pct else f"{vals[-1]:.3g}"

        rows.append(
            f'<tr><td>{_e(name)}</td><td class="num">{last("grad_norm")}</td>'
            f'<td class="num">{last("update_ratio")}</td>'
            f'<td class="num">{last("dead_fraction", True)}</td>'
            f'<td class="num">{last("saturation", True)}</td></tr>'
        )
    return "<p>Per layer, last epoch:</p><table>" + head + "".join(rows) + "</table>"


def write_report(
    path: str | os.PathLike,
    *,
    model: Sequential,
    history: Any,
    data_summary: Any = None,
    preparation: Any = None,
    hyperparameters: dict[str, Any] | None = None,
    test_metrics: dict[str, Any] | None = None,
    diagnostics: Any = None,
    overwrite: bool = False,
    title: str | None = None,
    **extras: Any,
) -> Path:
    """Write a self-contained HTML report of a training run.

    Args:
        path: the ``.html`` file to write.
        model: the trained ``Sequential`` (architecture via ``model.summary()``).
        history: the ``History`` returned by ``fit`` (or its ``to_dict()``; ``None`` to omit).
        data_summary: what the data is: a dict (shown as a table), a string or a list.
        preparation: the preparation applied: a ``TabularPreparer`` (its ``summary()``), a
            string, a dict or a list of steps.
        hyperparameters: dict of settings; default: the history's parameters plus the
            optimizer and loss.
        test_metrics: dict of metric -> value; may hold ``"confusion_matrix"`` (k x k counts,
            rows = true class) and ``"class_names"``.
        diagnostics: a :class:`~lucidnet.diagnostics.Diagnostics` callback used in training
            (or its ``to_dict()``): adds gradient norms, weight histograms and its warnings.
        overwrite: replace an existing file (otherwise ``FileExistsError``).
        title: the page title.
        **extras: keyword-only, each optional:

            - ``restored_best``: whether the model holds the best epoch's weights (early
              stopping restored them); ``None`` (default): the headline losses are the best
              epoch's when the history has one.
            - ``target_scaling``: ``{"mean", "std"}`` of a regression target standardised for
              training: the report says the losses are on that scale, and draws the end
              weights with the scaling unfolded from the output layer.
            - ``weights_before_scaling``: the ``get_weights()`` dict before the scaling was
              folded in (else it is undone from ``target_scaling``).
            - ``y_true``, ``y_pred``, ``target``: the test rows' actual and predicted values
              of a regression and the target's name: predicted-vs-actual and residual plots.
            - ``verdict``: ``{"metric", "n_test", "resamples", "seed", "seconds", "network":
              {metric: {"value", "ci95"}}, "baselines": [{"name", "kind", "seconds",
              "metrics", "margin": {"value", "ci95"}}], "sentence"}``: the verdict line, the
              intervals and the baselines table.
            - ``calibration``: ``{"ece_before", "ece_after", "temperature", "bins",
              "bins_after", "n_rows", "rows"}``, bins ``{"lo", "hi", "count", "confidence",
              "accuracy"}``: the ECE line and the reliability diagram.
            - ``feature_names`` and ``X_test``: the inputs' names and test rows in the
              model's input space: the inputs that move the predictions, by name.
            - ``test_images``: the test images of an image model, ``{"X": (n, h, w, c)
              pixels in [0, 1], "y_true": (n,), "y_pred": (n,)}`` and optionally
              ``"classes"`` (class names, for class-index targets: a classification),
              ``"confidence"`` ((n,) probability of the predicted class) and ``"names"`` (n
              file names): a grid of the misclassified images (most confident first), or of
              a regression's worst-predicted ones, at most 24; the first convolution's filters
              are drawn in any case, marked with how many of these images each responds to.

            ``test_metrics`` may also hold ``"per_class"`` (class -> precision / recall /
            f1 / support) or the CLI's ``"details"``.

    Returns:
        The path written.
    """
    target = Path(os.fspath(path))
    if target.exists() and not overwrite:
        raise FileExistsError(f"report {str(target)!r} already exists; pass overwrite=True")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"directory {str(target.parent)!r} for the report does not exist")
    text = render_report(
        model=model,
        history=history,
        data_summary=data_summary,
        preparation=preparation,
        hyperparameters=hyperparameters,
        test_metrics=test_metrics,
        diagnostics=diagnostics,
        title=title,
        **extras,
    )
    # whole or not at all (a fixed "<name>.tmp" before: two writers shared it, and a failure
    # left it behind), with the permissions open() gives
    write_text_atomically(target, text, encoding="utf-8")
    return target


# ------------------------------------------------------------------------------------------------
# image models: the test images got wrong, the first convolution's filters
# ------------------------------------------------------------------------------------------------

#: the most test images drawn in the grid, and the most filter tiles drawn
MAX_IMAGES = 24
MAX_FILTER_TILES = 96


def _checked_images(test_images: Any, class_names: Any) -> dict[str, Any] | None:
    """``test_images`` checked: arrays of one length, images ``(n, h, w, 1 or 3)``."""
    d = _checked_dict(test_images, "test_images")
    if d is None:
        return None
    missing = {"X", "y_true", "y_pred"} - set(d)
    if missing:
        raise ValueError(f"test_images needs the keys X, y_true, y_pred; missing {sorted(missing)}")
    X = np.asarray(d["X"])
    if X.ndim != 4 or X.shape[3] not in (1, 3):
        raise ValueError(f"test_images['X'] must be (n, h, w, 1 or 3) images, got shape {X.shape}")
    out = {
        "X": X,
        "y_true": np.asarray(d["y_true"]).ravel(),
        "y_pred": np.asarray(d["y_pred"]).ravel(),
    }
    for key in ("confidence", "names"):
        if d.get(key) is not None:
            out[key] = np.asarray(d[key]) if key == "confidence" else [str(v) for v in d[key]]
    for key in ("y_true", "y_pred", "confidence", "names"):
        if key in out and len(out[key]) != len(X):
            raise ValueError(
                f"test_images[{key!r}] has {len(out[key])} entries for {len(X)} images"
            )
    classes = d.get("classes", class_names)
    out["classes"] = None if classes is None else [str(c) for c in classes]
    return out


def _thumb(image: np.ndarray, caption: list[str], cls: str = "thumb", size: int = 48) -> str:
    from .plots import image_to_png

    data = base64.b64encode(image_to_png(image, min_size=size)).decode("ascii")
    alt = "; ".join(caption)
    text = "<br>".join(_e(c) for c in caption)
    return (
        f'<figure class="{cls}"><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def _test_image_grid(images: dict[str, Any] | None) -> list[str]:
    """The misclassified test images (most confident first) or, for values, the worst
    predicted, each with its true and predicted label."""
    if images is None:
        return []
    X, yt, yp, classes = images["X"], images["y_true"], images["y_pred"], images["classes"]
    conf, names = images.get("confidence"), images.get("names")
    n = len(X)
    if classes is not None:
        wrong = np.flatnonzero(yt != yp)
        order = wrong if conf is None else wrong[np.argsort(-conf[wrong], kind="stable")]
        head = "<h2>Test images the network got wrong</h2>"
        if not len(wrong):
            return [head, f'<div class="ok">All {n:,} test images are classified correctly.</div>']
        how = "most confident first" if conf is not None else "in test-set order"
        intro = f"{len(wrong):,} of {n:,} test images misclassified"
    else:
        err = np.abs(yp.astype(np.float64) - yt.astype(np.float64))
        order = np.argsort(-err, kind="stable")
        head = "<h2>Test images predicted worst</h2>"
        how, intro = "largest error first", f"The {n:,} test images by |predicted - actual|"
    shown = order[:MAX_IMAGES]
    figs = []
    for i in shown:
        if classes is not None:
            cap = [f"true {classes[int(yt[i])]}", f"predicted {classes[int(yp[i])]}"]
            if conf is not None:
                cap[1] += f" ({float(conf[i]):.0%})"
        else:
            cap = [f"actual {_fmt(float(yt[i]))}", f"predicted {_fmt(float(yp[i]))}"]
        if names is not None:
            cap.append(Path(names[i]).name)
        figs.append(_thumb(X[i], cap))
    note = f"; the first {len(shown)} shown" if len(order) > len(shown) else ""
    return [head, f"<p>{_e(intro)} ({_e(how)}{_e(note)}), as the network saw them.</p>",
            '<div class="thumbs">', *figs, "</div>"]  # fmt: skip


def _first_conv(model: Sequential) -> tuple[int, Any] | None:
    from ..convolution import Conv2D

    for i, layer in enumerate(model.layers):
        if isinstance(layer, Conv2D):
            return i, layer
    return None


def _conv_filters(model: Sequential, X: np.ndarray | None) -> list[str]:
    """The first ``Conv2D``'s kernels as small images; with test images (and a ReLU), how many
    of them each filter responds to (positive somewhere): a filter that never does is dead."""
    found = _first_conv(model) if model.built else None
    if found is None:
        return []
    from .plots import filter_tiles

    i, layer = found
    W = model.get_weights()[f"{layer.name}/W"]
    tiles, labels, how = filter_tiles(W)
    active = _filter_activity(model, i, X) if X is not None and len(X) else None
    kh, kw, c_in, n = W.shape
    where = "the pixels" if i == 0 else f"the output of {model.layers[i - 1].name}"
    parts = [
        f"<h2>First convolution's filters ({_e(layer.name)})</h2>",
        f"<p>{n} filters of {kh}x{kw} over {c_in} channel(s) of {_e(where)}; {_e(how)}.</p>",
    ]
    if active is not None:
        share, m = active
        dead = int((share == 0).sum())
        parts.append(
            f"<p>Under each: on how many of {m:,} test images the filter's ReLU output is "
            "positive somewhere. "
            + (f"<b>{dead} filter(s) never respond</b> (dead: they pass nothing on and get no "
               "gradient)." if dead else "Every filter responds to some image.")
            + "</p>"
        )  # fmt: skip
    figs = []
    for j, (tile, label) in enumerate(zip(tiles[:MAX_FILTER_TILES], labels, strict=False)):
        cap = [label]
        if active is not None:
            f = j if c_in == 3 else j // c_in
            cap.append(f"{active[0][f]:.0%} of images")
        figs.append(_thumb(tile, cap, "thumb filter", size=30))
    if len(tiles) > MAX_FILTER_TILES:
        parts.append(f'<p class="note">the first {MAX_FILTER_TILES} of {len(tiles)} shown</p>')
    return parts + ['<div class="thumbs">', *figs, "</div>"]


def _filter_activity(
    model: Sequential, index: int, X: np.ndarray, rows: int = 512
) -> tuple[np.ndarray, int] | None:
    """Per filter of layer ``index`` (a convolution with a ReLU), the fraction of (at most
    ``rows``) images on which its output is positive somewhere; None without a ReLU."""
    layer = model.layers[index]
    if getattr(getattr(layer, "activation", None), "key", None) != "relu":
        return None
    a = np.asarray(X[:rows], dtype=np.float32)
    for lay in model.layers[: index + 1]:
        a = lay.forward(a, training=False)
    on = (a > 0).reshape(len(a), -1, a.shape[-1]).any(axis=1)
    return on.mean(axis=0), len(a)
