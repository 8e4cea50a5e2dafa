"""A self-contained HTML training report: one file, images embedded as base64 PNG.

``write_report(path, model=..., history=...)`` writes the data summary, the preparation applied,
the architecture (``model.summary()``), the hyper-parameters, the training curves, the learning
rate, the diagnostics (gradient norms, weight histograms, per-layer table, warnings) and the test
metrics (with a confusion matrix when given). The file references nothing outside itself (no
scripts, no style sheets, no fonts), so it can be mailed, archived or opened offline.

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
) -> str:
    """The report as an HTML string (see :func:`write_report` for the arguments)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a lucidnet Sequential, got {describe(model)}")
    values, meta, warnings_list = _history_parts(history)
    diag = _diagnostics_dict(diagnostics)
    if diag is not None:
        warnings_list += [w for w in diag.get("warnings", {}).values() if w not in warnings_list]
    metrics = dict(test_metrics or {})
    cm = metrics.pop("confusion_matrix", None)
    class_names = metrics.pop("class_names", None)
    plots = _plots_module()
    title = title or f"Training report: {model.name}"
    parts = _head(title)
    parts += _cards(model, values, meta, metrics)
    parts += ["<h2>Data</h2>", _block(data_summary), "<h2>Preparation</h2>", _block(preparation)]
    parts += ["<h2>Architecture</h2>", f"<pre>{_e(model.summary(print_fn=None))}</pre>"]
    parts += _hyperparameters(model, hyperparameters, meta)
    parts += _training(history, values, meta, plots)
    parts += _diagnostics(model, diagnostics, diag, warnings_list, plots)
    parts += _test_metrics(metrics, cm, class_names, plots)
    parts.append("</body></html>")
    return "\n".join(parts)


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


def _cards(
    model: Sequential, values: dict[str, list[float]], meta: dict[str, Any], metrics: dict
) -> list[str]:
    """The headline numbers: test metrics, final losses, epochs, parameters."""
    cards = {f"test {k}": v for k, v in metrics.items() if _is_num(v)}
    if values.get("loss"):
        cards.setdefault("final train loss", values["loss"][-1])
    if values.get("val_loss"):
        cards.setdefault("final val loss", values["val_loss"][-1])
    if meta.get("epochs_run"):
        cards["epochs"] = meta["epochs_run"]
    cards["parameters"] = model.n_params
    body = [
        f'<div class="card"><div>{_e(k)}</div><div class="v">{_e(_fmt(v))}</div></div>'
        for k, v in cards.items()
    ]
    return ['<div class="cards">', *body, "</div>"]


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
    history: Any, values: dict[str, list[float]], meta: dict[str, Any], plots: Any
) -> list[str]:
    """How training ended, the curves and the learning rate, and the last epoch's values."""
    parts = ["<h2>Training</h2>"]
    stop = meta.get("stop_reason")
    if stop:
        where = meta.get("stopped_epoch")
        at = f" at epoch {where + 1}" if where is not None else ""
        parts.append(f"<p>Training stopped early{at}: {_e(stop)}.</p>")
    if meta.get("best_epoch") is not None:
        parts.append(f"<p>Best epoch: {meta['best_epoch'] + 1}.</p>")
    if not values:
        parts.append('<p class="note">no training history</p>')
    elif plots is None:
        parts.append(f'<p class="note">{_e(_NO_PLOTS)}</p>')
    else:
        parts.append(_img(plots.plot_history(history), "training and validation curves"))
        lrs = values.get("lr", [])
        if lrs and len(set(lrs)) > 1:
            parts.append(_img(plots.plot_lr_schedule(history), "learning rate per epoch"))
        elif lrs:
            parts.append(f"<p>Learning rate: constant {_e(_fmt(lrs[0]))}.</p>")
    if values:
        last = {k: v[-1] for k, v in values.items() if v}
        parts.append("<p>Last epoch:</p>" + _table(last, ("quantity", "value")))
    return parts


def _diagnostics(
    model: Sequential,
    diagnostics: Any,
    diag: dict[str, Any] | None,
    warnings_list: list[str],
    plots: Any,
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
            fig = plots.plot_weight_histograms(initial, model)
            parts.append(_img(fig, "weight histograms at the start and the end"))
        except ValueError:
            pass  # no weight matrices (e.g. a model of only BatchNorm layers)
    return parts


def _test_metrics(metrics: dict[str, Any], cm: Any, class_names: Any, plots: Any) -> list[str]:
    parts = ["<h2>Test metrics</h2>"]
    if metrics:
        parts.append(_table(metrics, ("metric", "value")))
    elif cm is None:
        parts.append('<p class="note">not given</p>')
    if cm is not None:
        parts += _confusion_matrix(np.asarray(cm), class_names, plots)
    return parts


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
    )
    # whole or not at all (a fixed "<name>.tmp" before: two writers shared it, and a failure
    # left it behind), with the permissions open() gives
    write_text_atomically(target, text, encoding="utf-8")
    return target
