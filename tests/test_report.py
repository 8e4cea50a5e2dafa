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
