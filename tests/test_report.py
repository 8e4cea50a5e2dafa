"""Tests of lucidnet.report: the HTML is well formed, self-contained, every embedded image is a
valid PNG, and (when Chromium is installed) it renders in a headless browser."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.glassbox.diagnostics import Diagnostics
from lucidnet.glassbox.report import render_report, write_report
from lucidnet.metrics import confusion_matrix

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class TagChecker(HTMLParser):
    """Collects images and checks that every opened tag is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[dict[str, str]] = []
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(text: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [], checker.errors[:5]
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def decode_png(src: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix) :], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(data), format="png")


@pytest.fixture(scope="module")
def run():
    d = ln.datasets.load_digits()
    model = ln.Sequential([ln.Dense(32, activation="relu"), ln.Dense(10)], name="digits_mlp")
    diag = Diagnostics(every=5, emit=False)
    history = model.fit(
        d.X_train,
        d.y_train,
        loss="cross_entropy",
        epochs=4,
        seed=0,
        verbose=0,
        validation_split=0.2,
        callbacks=[diag],
        optimizer=ln.Adam(lr=ln.ExponentialDecay(3e-3, 0.5, decay_steps=50)),
    )
    history.warnings.append("a <b>test</b> warning & more")  # must be escaped, not rendered
    metrics = model.evaluate(d.X_test, d.y_test)
    cm = confusion_matrix(d.y_test, model.predict_classes(d.X_test), 10)
    kwargs = dict(
        model=model,
        history=history,
        data_summary={
            "data set": "scikit-learn digits <script>alert(1)</script>",
            "train samples": len(d.X_train),
            "classes": 10,
        },
        preparation=["standardised features (training-split statistics)"],
        hyperparameters={"epochs": 4, "batch_size": 32, "optimizer": repr(model.optimizer)},
        test_metrics={**metrics, "confusion_matrix": cm, "class_names": list(d.target_names)},
        diagnostics=diag,
    )
    return kwargs, metrics, cm


@pytest.fixture(scope="module")
def report_path(run, tmp_path_factory):
    pytest.importorskip("matplotlib")
    kwargs, *_ = run
    return write_report(tmp_path_factory.mktemp("report") / "report.html", **kwargs)


def test_report_is_well_formed_and_self_contained(run, report_path):
    _, metrics, cm = run
    text = report_path.read_text(encoding="utf-8")
    checker = check_html(text)
    assert checker.external == []  # nothing loaded from outside the file
    # curves, lr schedule, gradient norms, weight histograms, confusion matrix
    assert len(checker.images) == 5
    for img in checker.images:
        pixels = decode_png(img["src"])
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert img.get("alt")
    body = "".join(checker.text)
    for needed in [
        "Data",
        "Preparation",
        "Architecture",
        "Hyper-parameters",
        "Training",
        "Diagnostics",
        "Test metrics",
        "digits_mlp",
        "Total params",
        "standardised features",
        "a <b>test</b> warning & more",
    ]:
        assert needed in body, needed
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert f"{metrics['accuracy']:.4g}" in body
    assert str(int(cm[3, 3])) in body


def test_overwrite_is_explicit(run, tmp_path):
    kwargs = {"model": run[0]["model"], "history": None}
    path = tmp_path / "r.html"
    path.write_text("old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_report(path, **kwargs)
    assert path.read_text() == "old"
    write_report(path, overwrite=True, **kwargs)
    assert path.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "missing" / "r.html", **kwargs)


def test_minimal_report_and_bad_arguments(run):
    kwargs, *_ = run
    text = render_report(model=kwargs["model"], history=None)
    check_html(text)
    assert "no training history" in text and "not given" in text
    with pytest.raises(TypeError, match="model must be"):
        render_report(model="m", history=None)
    with pytest.raises(TypeError, match="history must be"):
        render_report(model=kwargs["model"], history=[1, 2])


def test_report_without_matplotlib(run, monkeypatch):
    kwargs, *_ = run
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    text = render_report(**kwargs)
    checker = check_html(text)
    assert checker.images == []
    assert "pip install lucidnet[plot]" in text
    assert "Confusion matrix" in text  # the table is still there


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report_path, tmp_path):
    path = report_path
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1200,2000",
        f"--screenshot={shot}",
        path.resolve().as_uri(),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), result.stderr[-2000:]
    pixels = decode_png("data:image/png;base64," + base64.b64encode(shot.read_bytes()).decode())
    assert pixels.shape[:2] == (2000, 1200)
    # a rendered page, not a blank one: many distinct colours (text, plots)
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50
    shutil.rmtree(profile, ignore_errors=True)


def test_html_checker_catches_bad_markup():
    with pytest.raises(AssertionError):
        check_html("<html><body><p>open</body></html>")
    with pytest.raises(AssertionError):
        decode_png("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode())


# ---- reports that tell the truth ------------------------------------------------------------


def cards_of(text: str) -> str:
    """The headline cards' HTML (between the title and the first section)."""
    return text.split('<div class="cards">', 1)[1].split("<h2>", 1)[0]


HISTORY = {
    "history": {"loss": [0.9, 0.5, 0.4, 0.3, 0.2], "val_loss": [0.8, 0.55, 0.45, 0.5, 0.61]},
    "epoch": [0, 1, 2, 3, 4],
    "best_epoch": 2,
    "stopped_epoch": 4,
    "stop_reason": "early_stopping",
}


def test_cards_show_the_restored_epoch_not_the_last(run):
    model = run[0]["model"]
    text = render_report(model=model, history=HISTORY, restored_best=True)
    check_html(text)
    cards = cards_of(text)
    assert "train loss, epoch 3" in cards and "0.4<" in cards and "0.45<" in cards
    assert "epoch 3 of 5" in cards and "the best epoch, restored" in cards
    assert "0.61" not in cards and "0.2<" not in cards  # the last epoch's numbers
    assert "Last epoch (5; not the weights kept)" in text
    last = cards_of(render_report(model=model, history=HISTORY, restored_best=False))
    assert "epoch 5 of 5" in last and "0.61<" in last and "the last epoch" in last
    # not told whether the weights were restored: the best epoch's numbers, not called kept
    unknown = cards_of(render_report(model=model, history=HISTORY))
    assert "best epoch" in unknown and "weights kept" not in unknown and "0.45<" in unknown


def test_per_class_table_from_the_cli_details(run):
    details = {
        "classes": ["neg", "pos"],
        "per_class": {
            "neg": {"precision": 0.9, "recall": 0.8, "f1": 0.847, "support": 120},
            "pos": {"precision": 0.5, "recall": 0.625, "f1": 0.5556, "support": 40},
        },
        "confusion_matrix": [[96, 24], [15, 25]],
    }
    metrics = {"accuracy": 0.756, "f1_macro": 0.70, "details": details}
    text = render_report(model=run[0]["model"], history=None, test_metrics=metrics)
    body = "".join(check_html(text).text)
    assert "Per class:" in body and "precision" in body
    row = text.split("<td>pos</td>", 1)[1].split("</tr>", 1)[0]
    assert [c.split("<")[0] for c in row.split('class="num">')[1:]] == [
        "0.500",
        "0.625",
        "0.556",
        "40",
    ]
    assert "Confusion matrix (rows: true class" in body and ">96<" in text


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = 1000.0 + 250.0 * X[:, 0] - 100.0 * X[:, 1] + rng.normal(0, 20, 300)
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(1)], name="price_mlp")
    diag = Diagnostics(every=5, emit=False)
    history = model.fit(X[:240], y[:240], loss="mse", epochs=5, seed=0, verbose=0, callbacks=[diag])
    scaling = {k: float(v[0]) for k, v in history.params["target_scaling"].items()}
    return model, history, diag, scaling, y[240:], model.predict(X[240:]).ravel(), X[240:]


def test_regression_report_says_what_the_losses_are_on(regression):
    pytest.importorskip("matplotlib")
    model, history, diag, scaling, y_true, y_pred, X_test = regression
    text = render_report(
        model=model,
        history=history,
        diagnostics=diag,
        target_scaling=scaling,
        y_true=y_true,
        y_pred=y_pred,
        target="price",
        feature_names=["size (standardised)", "age (standardised)", "c", "d"],
        X_test=X_test,
    )
    checker = check_html(text)
    body = "".join(checker.text)
    assert "losses are on the standardised target (y - mean) / std" in body
    assert f"mean {scaling['mean']:.4g}" in body
    assert "train loss (standardised)" in cards_of(text)
    alts = {img["alt"] for img in checker.images}
    assert {
        "predicted vs actual",
        "residuals",
        "weight histograms at the start and the end",
    } <= alts
    assert "before the target scaling was folded" in body
    # the inputs by name, the one that drives the price first
    effects = text.split("Inputs that move the predictions", 1)[1]
    assert effects.index("size (standardised)") < effects.index("age (standardised)")
    with pytest.raises(ValueError, match="pass both y_true and y_pred"):
        render_report(model=model, history=history, y_true=y_true)


def test_end_weights_undo_the_folded_output_scaling(regression):
    from lucidnet.glassbox.report import _end_weights

    model = regression[0].copy()
    trained = model.get_weights()  # as training left them, on the standardised target
    model.layers[-1].fold_output_scaling(np.array([250.0]), np.array([1000.0]))
    scaled = {"mean": np.array([1000.0]), "std": np.array([250.0])}
    end = _end_weights(model, None, scaled)
    for name, w in trained.items():
        np.testing.assert_allclose(end[name], w, rtol=1e-5, atol=1e-6)
    assert _end_weights(model, trained, scaled) is trained  # given: used as they are
    with pytest.raises(TypeError, match="weights_before_scaling must be"):
        render_report(model=model, history=None, weights_before_scaling=[1.0])


VERDICT = {
    "metric": "accuracy",
    "n_test": 2929,
    "resamples": 1000,
    "seed": 0,
    "seconds": 4.2,
    "network": {
        "accuracy": {"value": 0.79, "ci95": [0.775, 0.805]},
        "macro_f1": {"value": 0.73, "ci95": [0.71, 0.75]},
    },
    "baselines": [
        {
            "name": "majority class",
            "kind": "trivial",
            "seconds": 0.001,
            "metrics": {"accuracy": {"value": 0.627, "ci95": [0.61, 0.645]}},
            "margin": {"value": 0.163, "ci95": [0.145, 0.18]},
        },
        {
            "name": "gradient-boosted trees",
            "kind": "trees",
            "seconds": 3.1,
            "metrics": {
                "accuracy": {"value": 0.802, "ci95": [0.788, 0.816]},
                "macro_f1": {"value": 0.74, "ci95": None},
            },
            "margin": {"value": -0.012, "ci95": [-0.025, 0.001]},
            "future_key": "ignored",
        },
    ],
    "sentence": "the network beats the majority class by 16.3 accuracy points; trees are 1.2 "
    "points better <on this table>",
    "something_new": {"nested": True},
}

BINS_CAL = [
    {"lo": 0.3, "hi": 0.5, "count": 100, "confidence": 0.42, "accuracy": 0.38},
    {"lo": 0.5, "hi": 0.8, "count": 0, "confidence": None, "accuracy": None},
    {"lo": 0.8, "hi": 1.0, "count": 900, "confidence": 0.93, "accuracy": 0.85},
]
CALIBRATION = {
    "ece_before": 0.061,
    "ece_after": 0.018,
    "temperature": 1.45,
    "bins": BINS_CAL,
    "bins_after": [dict(b, accuracy=b["confidence"]) for b in BINS_CAL],
    "n_rows": 1000,
    "rows": "test",
}


def test_verdict_baselines_and_calibration(run):
    pytest.importorskip("matplotlib")
    kwargs = run[0]
    text = render_report(
        **{**kwargs, "test_metrics": {"accuracy": 0.79, "f1_macro": 0.73}},
        verdict=VERDICT,
        calibration=CALIBRATION,
    )
    checker = check_html(text)
    # the sentence right under the headline, before the data section, and escaped
    head = text.split("<h2>Data</h2>", 1)[0]
    assert 'class="verdict"' in head and "points better &lt;on this table&gt;" in head
    assert text.count('class="verdict"') == 1
    assert "95% CI [0.775, 0.805]" in cards_of(text)
    assert "0.79 [0.775, 0.805]" in text or ">[0.775, 0.805]<" in text
    table = text.split("Is the network worth it?", 1)[1].split("</table>", 1)[0]
    for fragment in [
        "majority class",
        "trivial",
        "0.627 [0.61, 0.645]",
        "+0.163 [+0.145, +0.18]",
        "-0.012 [-0.025, +0.001]",
        "gradient-boosted trees",
        ">0.74<",  # no interval given: the value alone
        ">3.1<",
    ]:
        assert fragment in table, fragment
    assert "1,000 bootstrap resamples" in text and "2,929 test rows" in text
    body = "".join(checker.text)
    assert "Expected calibration error" in body and "0.061" in body and "T = 1.45" in body
    assert "0.018" in body
    assert "reliability diagram" in [img["alt"] for img in checker.images]
    assert "0.80 - 1.00" in body and "0.50 - 0.80" not in body  # empty bins left out


def test_partial_verdict_and_calibration_and_bad_types(run):
    model = run[0]["model"]
    verdict = {"metric": "r2", "network": {"r2": {"value": 0.5}}, "baselines": []}
    calibration = {"ece_before": 0.1, "bins": [], "ece_after": None, "temperature": None}
    text = render_report(model=model, history=None, verdict=verdict, calibration=calibration)
    check_html(text)
    assert "Is the network worth it?" in text and 'class="verdict"' not in text
    assert "Expected calibration error" in text and "temperature scaling" not in text
    with pytest.raises(TypeError, match="verdict must be a dict"):
        render_report(model=model, history=None, verdict="good")
    with pytest.raises(TypeError, match="target_scaling must be a dict with 'mean' and 'std'"):
        render_report(model=model, history=None, target_scaling={"mean": 1.0})
