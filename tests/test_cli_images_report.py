"""``lucidnet train IMAGES --report``: the HTML report of an image model (curves, test metrics,
confusion matrix, the first convolution's filters, the test images the network got wrong), one
self-contained file written like every output (refused when it exists, without --overwrite); and
the report's image sections through the Python API (the misclassified grid's cap, a
regression's worst-predicted images, the thumbnails as real PNGs)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from test_cli_images import assert_user_error, digit_images, run

import lucidnet as ln
from lucidnet.glassbox.plots import filter_tiles, image_to_png
from lucidnet.glassbox.report import MAX_IMAGES, render_report


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """The default CNN trained briefly (2 epochs: some test images wrong) with --report."""
    root = tmp_path_factory.mktemp("imgreport")
    X, y = digit_images()
    for i, (img, label) in enumerate(zip(X, y, strict=True)):
        (root / "digits" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "digits" / str(label) / f"{i:03d}.png")
    code, out, err = run(
        ["train", root / "digits", "--out", root / "m.lnet", "--epochs", 2, "--seed", 3,
         "--metrics-json", root / "m.json", "--report", root / "r.html", "--quiet"]
    )  # fmt: skip
    assert code == 0, err
    return root, out


def images_in(html: str, section: str) -> list[bytes]:
    """The PNGs embedded in the section whose heading starts with ``section``."""
    part = html.split(f"<h2>{section}", 1)[1].split("<h2>", 1)[0]
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', part)]


def test_report_of_an_image_model(reported):
    root, out = reported
    assert f"Report written to '{root / 'r.html'}'" in out
    html = (root / "r.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</body></html>")
    # self-contained: no scripts, style sheets, fonts or images from elsewhere
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)
    for heading in ("Data", "Architecture", "Training", "Diagnostics", "Test metrics"):
        assert f"<h2>{heading}</h2>" in html
    assert "Conv2D(32, 3, activation=&#x27;relu&#x27;)" in html  # the architecture
    assert "Confusion matrix (rows: true class" in html and "Per class:" in html
    assert "16x16 gray, pixels / 255" in html and "84 train / 12 validation / 24 test" in html
    metrics = json.loads((root / "m.json").read_text())
    cm = np.array(metrics["confusion_matrix"])
    wrong = int(cm.sum() - np.trace(cm))
    assert wrong > 0  # 2 epochs: the grid is drawn (12 of 24 wrong with this seed)
    grid = images_in(html, "Test images the network got wrong")
    assert len(grid) == min(wrong, MAX_IMAGES)
    if wrong:
        assert f"{wrong} of 24 test images misclassified" in html
        first = Image.open(io.BytesIO(grid[0]))
        assert first.size == (48, 48) and first.mode == "L"  # 16x16 gray, enlarged 3x
    filters = images_in(html, "First convolution")
    assert len(filters) == 32  # the first Conv2D's 32 filters of 3x3
    assert Image.open(io.BytesIO(filters[0])).size == (30, 30)
    assert "of 24 test images the filter" in html


def test_report_refuses_to_overwrite(reported):
    root, _ = reported
    before = (root / "r.html").read_bytes()
    code, _, err = run(["train", root / "digits", "--out", root / "other.lnet", "--report",
                        root / "r.html"])  # fmt: skip
    assert_user_error(code, err, "report", "already exists", "--overwrite")
    assert (root / "r.html").read_bytes() == before and not (root / "other.lnet").exists()
    code, _, err = run(["train", root / "digits", "--out", root / "x.lnet", "--report",
                        root / "x.lnet"])  # fmt: skip
    assert_user_error(code, err, "must be different files")


def small_cnn(n_out: int, channels: int = 1) -> ln.Sequential:
    model = ln.Sequential([ln.Conv2D(4, 3, activation="relu"), ln.Flatten(), ln.Dense(n_out)])
    model.build((6, 6, channels), seed=0)
    return model


def test_misclassified_grid_is_capped_and_most_confident_first():
    rng = np.random.default_rng(0)
    n = 40
    X = rng.random((n, 6, 6, 1)).astype(np.float32)
    y_true, y_pred = np.zeros(n, int), np.ones(n, int)
    y_pred[:3] = 0  # 37 wrong
    confidence = np.linspace(0.5, 0.9, n)
    html = render_report(
        model=small_cnn(2), history=None,
        test_images={"X": X, "y_true": y_true, "y_pred": y_pred, "classes": ["cat", "dog"],
                     "confidence": confidence, "names": [f"d/{i}.png" for i in range(n)]},
    )  # fmt: skip
    assert "37 of 40 test images misclassified (most confident first; the first 24 shown)" in html
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html.split("got wrong", 1)[1])
    assert len(captions) == MAX_IMAGES
    assert captions[0] == "true cat<br>predicted dog (90%)<br>39.png"  # the most confident
    assert "4 filters of 3x3 over 1 channel(s) of the pixels" in html


def test_worst_predicted_images_of_a_regression_and_rgb_filters():
    X = np.random.default_rng(1).random((5, 6, 6, 3))
    y_true = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y_pred = np.array([1.1, 2.0, 7.0, 4.0, 4.5])
    html = render_report(
        model=small_cnn(1, channels=3), history=None,
        test_images={"X": X, "y_true": y_true, "y_pred": y_pred},
    )  # fmt: skip
    assert "<h2>Test images predicted worst</h2>" in html
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html.split("predicted worst", 1)[1])
    assert captions[0] == "actual 3<br>predicted 7" and captions[1] == "actual 5<br>predicted 4.5"
    assert "scaled to [0, 1] as an RGB colour image" in html
    with pytest.raises(ValueError, match="test_images\\['y_pred'\\] has 4 entries for 5"):
        render_report(model=small_cnn(1, 3), history=None,
                      test_images={"X": X, "y_true": y_true, "y_pred": y_pred[:4]})  # fmt: skip


def test_png_thumbnails_and_filter_colours():
    gray = np.array([[0.0, 1.0], [0.5, 0.25]])
    img = Image.open(io.BytesIO(image_to_png(gray, min_size=4)))
    assert img.size == (4, 4) and img.mode == "L"
    np.testing.assert_array_equal(
        np.asarray(img), np.repeat(np.repeat([[0, 255], [128, 64]], 2, 0), 2, 1)
    )
    rgb = Image.open(io.BytesIO(image_to_png(np.full((3, 2, 3), 200, np.uint8), min_size=1)))
    assert rgb.size == (2, 3) and rgb.mode == "RGB"
    with pytest.raises(ValueError, match="image must be"):
        image_to_png(np.zeros((2, 2, 2)))
    W = np.zeros((1, 2, 1, 1))
    W[0, 0, 0, 0], W[0, 1, 0, 0] = -2.0, 1.0  # one scale for all: -2 is full blue, 1 half red
    tiles, labels, how = filter_tiles(W)
    assert labels == ["filter 0"] and "blue: negative" in how
    np.testing.assert_array_equal(tiles[0][0], [[0, 0, 255], [255, 128, 128]])
