"""Tests of lucidnet.plots: every plot returns a Figure and saves a PNG; the loss surface and
the recorded gradient-descent path hold the right numbers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.glassbox import plots
from lucidnet.glassbox.diagnostics import Diagnostics

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained():
    """A small digits model trained with Diagnostics, a weight tracker and early stopping."""
    d = ln.datasets.load_digits()
    X, y = d.X_train[:400], d.y_train[:400]
    model = ln.Sequential([ln.Dense(16, activation="relu"), ln.Dense(10)])
    diag = Diagnostics(every=2, emit=False)
    tracker = plots.WeightTracker([("dense_0/W", (20, 3)), "dense_1/W[3,2]"])
    history = model.fit(
        X,
        y,
        loss="cross_entropy",
        epochs=6,
        validation_split=0.25,
        seed=0,
        verbose=0,
        optimizer=ln.Adam(lr=ln.ExponentialDecay(0.01, decay_rate=0.5, decay_steps=20)),
        callbacks=[diag, tracker, ln.EarlyStopping(patience=1)],
    )
    return model, history, diag, tracker, (X, y)


def saved_png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG


def test_history_plot_marks_best_and_stopped_epochs(trained, tmp_path):
    _, history, *_ = trained
    history.best_epoch, history.stopped_epoch = 2, 4  # as EarlyStopping would set them
    fig = plots.plot_history(history, path=tmp_path / "h.png")
    assert saved_png(tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[:2] == ["train loss", "val loss"]
    assert "best epoch 3" in labels and "stopped 5" in labels
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), history["val_loss"])
    plots.plot_history(history.to_dict())  # the saved form works too


def test_lr_schedule_from_history_and_schedule(trained, tmp_path):
    _, history, *_ = trained
    fig = plots.plot_lr_schedule(history, path=tmp_path / "lr.png")
    assert saved_png(tmp_path / "lr.png")
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), history["lr"])
    schedule = ln.CosineDecay(0.1, decay_steps=50)
    fig = plots.plot_lr_schedule(schedule, steps=60)
    ys = fig.axes[0].get_lines()[0].get_ydata()
    assert ys[0] == pytest.approx(0.1) and len(ys) == 60
    with pytest.raises(TypeError, match="steps"):
        plots.plot_lr_schedule(schedule)


def test_gradient_norms_and_weight_histograms(trained, tmp_path):
    model, _, diag, *_ = trained
    fig = plots.plot_gradient_norms(diag, path=tmp_path / "g.png")
    assert saved_png(tmp_path / "g.png")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["dense_0", "dense_1"]
    np.testing.assert_allclose(lines[0].get_ydata(), diag.step_grad_norms["dense_0"])
    fig = plots.plot_weight_histograms(diag.initial_weights, model, path=tmp_path / "w.png")
    assert saved_png(tmp_path / "w.png")
    assert [ax.get_title() for ax in fig.axes] == ["dense_0/W", "dense_1/W"]
    with pytest.raises(ValueError, match="no recorded steps"):
        plots.plot_gradient_norms({"steps": [], "step_grad_norms": {}})


def test_confusion_matrix(tmp_path):
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
    fig = plots.plot_confusion_matrix(
        y_true=y_true, y_pred=y_pred, class_names=["a", "b", "c"], path=tmp_path / "cm.png"
    )
    assert saved_png(tmp_path / "cm.png")
    shown = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(shown, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    fig = plots.plot_confusion_matrix(np.array([[3, 1], [0, 4]]), normalize=True)
    np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array(), [[0.75, 0.25], [0, 1]])
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.ones((2, 3)))


def test_weight_tracker_records_the_path(trained):
    model, history, _, tracker, _ = trained
    path = tracker.path
    steps = len(history.iteration_loss)
    assert path.shape == (steps + 1, 2)
    w = model.get_weights()
    # the last row is the trained model (EarlyStopping here does not restore weights)
    assert path[-1, 0] == w["dense_0/W"][20, 3] and path[-1, 1] == w["dense_1/W"][3, 2]
    assert np.all(np.diff(path, axis=0) != 0)  # Adam moves every weight every step


def test_loss_surface_values(trained):
    model, _, _, _, (X, y) = trained
    weights = (("dense_0/W", (20, 3)), ("dense_1/W", (3, 2)))
    a, b, Z = plots.loss_surface(model, X, y, weights, span=0.5, resolution=5)
    assert Z.shape == (5, 5)
    # the centre of the grid is the trained model itself
    assert Z[2, 2] == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-5)
    # a corner equals the loss with the two weights set by hand
    twin = model.copy()
    w = twin.get_weights()
    w["dense_0/W"][20, 3], w["dense_1/W"][3, 2] = a[0], b[4]
    twin.set_weights(w)
    assert Z[4, 0] == pytest.approx(twin.evaluate(X, y)["loss"], rel=1e-5)
    np.testing.assert_allclose(a[[0, -1]] - a[2], [-0.5, 0.5], rtol=1e-6)
    # the model was not touched
    assert model.get_weights()["dense_0/W"][20, 3] == pytest.approx(a[2])


def test_loss_surface_plot_with_path(trained, tmp_path):
    model, _, _, tracker, (X, y) = trained
    weights = (("dense_0/W", (20, 3)), ("dense_1/W", (3, 2)))
    fig = plots.plot_loss_surface(
        model, X[:100], y[:100], weights, tracker.path, resolution=9, path=tmp_path / "s.png"
    )
    assert saved_png(tmp_path / "s.png")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_xydata(), tracker.path)
    # the grid covers the whole path
    lo, hi = ax.get_xlim()
    assert lo <= tracker.path[:, 0].min() and hi >= tracker.path[:, 0].max()
    with pytest.raises(ValueError, match="unknown parameter"):
        plots.plot_loss_surface(model, X, y, (("nope/W", (0, 0)), weights[1]))
    with pytest.raises(ValueError, match="out of range"):
        plots.plot_loss_surface(model, X, y, (("dense_0/W", (99, 0)), weights[1]))


def test_missing_matplotlib_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install lucidnet\[plot\]"):
        plots.plot_confusion_matrix(np.eye(2))


def test_epoch_axes_have_integer_ticks_and_the_loss_its_label():
    history = {"loss": [1.0, 0.6, 0.5], "val_loss": [1.1, 0.7, 0.65], "lr": [0.1, 0.05, 0.02]}
    fig = plots.plot_history(history, loss_label="loss (standardised target)")
    fig.canvas.draw()  # the locator picks the ticks when drawn
    ax = fig.axes[0]
    assert ax.get_title() == ax.get_ylabel() == "loss (standardised target)"
    ticks = ax.get_xticks()
    assert len(ticks) >= 2 and np.all(ticks == np.round(ticks))  # no epoch 1.5
    lr = plots.plot_lr_schedule(history)
    lr.canvas.draw()
    assert np.all(lr.axes[0].get_xticks() == np.round(lr.axes[0].get_xticks()))


BINS = [
    {"lo": 0.0, "hi": 0.5, "count": 0, "confidence": None, "accuracy": None},  # empty: skipped
    {"lo": 0.5, "hi": 0.75, "count": 30, "confidence": 0.6, "accuracy": 0.5},
    {"lo": 0.75, "hi": 1.0, "count": 70, "confidence": 0.9, "accuracy": 0.8, "extra": 1},
]


def test_reliability_diagram(tmp_path):
    after = [dict(b, accuracy=b["confidence"]) for b in BINS]
    fig = plots.plot_reliability(BINS, after, ece=0.08, ece_after=0.01, path=tmp_path / "r.png")
    assert saved_png(tmp_path / "r.png")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {
        "perfectly calibrated",
        "before (ECE 0.080)",
        "after temperature scaling (ECE 0.010)",
    }
    np.testing.assert_allclose(lines["before (ECE 0.080)"].get_xdata(), [0.6, 0.9])
    np.testing.assert_allclose(lines["before (ECE 0.080)"].get_ydata(), [0.5, 0.8])
    heights = [p.get_height() for p in fig.axes[1].patches]
    np.testing.assert_allclose(heights, [0.3, 0.7])  # share of rows per bin
    assert plots.plot_reliability(BINS).axes[0].get_lines()[1].get_label() == "model"
    with pytest.raises(TypeError, match="bins must be a list of dicts"):
        plots.plot_reliability("bins")
    with pytest.raises(ValueError, match="bins_after: a bin lacks accuracy"):
        plots.plot_reliability(BINS, [{"lo": 0, "hi": 1, "count": 1, "confidence": 0.5}])


def test_predicted_vs_actual_and_residuals(tmp_path):
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 1.5, 3.0, 5.0])
    fig = plots.plot_predicted_vs_actual(y, p, target="price", path=tmp_path / "pa.png")
    assert saved_png(tmp_path / "pa.png")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.column_stack([y, p]))
    assert ax.get_xlabel() == "actual price" and ax.get_ylabel() == "predicted price"
    fig = plots.plot_residuals(y, p.reshape(-1, 1), target="price", path=tmp_path / "res.png")
    assert saved_png(tmp_path / "res.png")
    np.testing.assert_allclose(
        fig.axes[0].collections[0].get_offsets(), np.column_stack([p, y - p])
    )
    assert sum(patch.get_height() for patch in fig.axes[1].patches) == 4  # every residual
    with pytest.raises(ValueError, match="as many values, got 4 and 3"):
        plots.plot_residuals(y, p[:3])


def test_the_sampling_interval_reads_as_english():
    from lucidnet.glassbox.plots import _every

    said = [_every(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 111)]
    assert said == [
        "every step", "every 2nd step", "every 3rd step", "every 4th step", "every 11th step",
        "every 12th step", "every 13th step", "every 21st step", "every 22nd step",
        "every 23rd step", "every 111th step",
    ]  # fmt: skip
