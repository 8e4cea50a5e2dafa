"""Count targets (issue 12): the Poisson loss (log link, predictions exp(z) never negative), the
task decision for non-negative integer targets, and count regression through the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _cli import run
from _gradcheck_util import numerical_gradient, rel_error

import lucidnet as ln
from lucidnet import losses
from lucidnet.data.columns import _infer_target, infer_task
from lucidnet.glassbox.gradcheck import check_gradients
from lucidnet.io import load

# -- the loss ---------------------------------------------------------------------------------


def test_poisson_value_and_gradient_are_the_formula():
    """L = mean over samples and units of e^z - t z + t log t - t; dL/dz = (e^z - t) / (n units)."""
    z = np.array([[0.0, np.log(2.0)], [1.0, -1.0], [-2.0, 0.5]])
    t = np.array([[0.0, 3.0], [1.0, 0.0], [4.0, 2.0]])
    value, grad = losses.Poisson()(z, t)
    c = [[0.0, 3.0 * np.log(3.0) - 3.0], [-1.0, 0.0], [4.0 * np.log(4.0) - 4.0, 2 * np.log(2) - 2]]
    per_unit = [[1.0 - 0.0, 2.0 - 3.0 * np.log(2.0)], [np.e - 1.0, np.exp(-1.0)]]
    per_unit.append([np.exp(-2.0) + 8.0, np.exp(0.5) - 1.0])
    assert value == pytest.approx(np.mean(np.add(per_unit, c)), rel=1e-14)
    np.testing.assert_allclose(grad, (np.exp(z) - t) / 6, rtol=1e-15)
    assert losses.get("poisson").key == "poisson"
    assert losses.Poisson.output_activation == "exp" and not losses.Poisson.scale_targets


@pytest.mark.parametrize("fast", [False, True], ids=["textbook", "fast"])
def test_poisson_is_half_the_poisson_deviance(fast):
    """The loss is half of scikit-learn's mean Poisson deviance: 0 at a perfect fit, never
    negative, on both paths."""
    from sklearn.metrics import mean_poisson_deviance

    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 1))
    t = rng.poisson(np.exp(z)).astype(float)
    loss = losses.Poisson()
    value = loss.fast(z, t)[0] if fast else loss(z, t)[0]
    half_deviance = 0.5 * mean_poisson_deviance(t.ravel(), np.exp(z).ravel())
    assert value == pytest.approx(half_deviance, rel=1e-12)
    perfect = np.log(np.array([[1.0], [4.0], [250.0]]))
    value = loss.fast(perfect, np.exp(perfect))[0] if fast else loss(perfect, np.exp(perfect))[0]
    assert abs(value) < 1e-12


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_poisson_gradient_matches_finite_differences_in_float64(weighted):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(7, 3)) * 2
    t = rng.poisson(2.0, size=(7, 3)).astype(float)
    w = rng.uniform(0.2, 3.0, size=7) if weighted else None
    loss = losses.Poisson()
    value, grad = loss(z, t, w)
    numeric = numerical_gradient(lambda: loss(z, t, w)[0], z)
    assert rel_error(grad, numeric) < 1e-8
    fast_value, fast_grad = loss.fast(z, t, w)  # the path fit runs
    assert fast_value == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(fast_grad, grad, rtol=1e-13, atol=1e-16)


def test_poisson_network_passes_the_float64_gradient_check():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 4))
    y = rng.poisson(3.0, size=(10, 1)).astype(float)
    model = ln.Sequential([ln.Dense(5, activation="tanh"), ln.Dense(1)], dtype="float32")
    model.build((4,), seed=0)
    report = check_gradients(model, X, y, loss="poisson")
    assert report.passed, report.to_text()
    assert max(e.rel_error for e in report.entries) < 1e-7


def test_poisson_refuses_negative_targets():
    loss = losses.Poisson()
    with pytest.raises(ValueError, match=r"y must be non-negative .*poisson.*-1\.0"):
        loss.prepare_targets(np.array([1.0, -1.0, 2.0]), (1,), np.float64)
    with pytest.raises(ValueError, match="poisson: y_true must be non-negative"):
        loss(np.zeros((2, 1)), np.array([[1.0], [-2.0]]))
    model = ln.Sequential([ln.Dense(1)])
    with pytest.raises(ValueError, match="non-negative"):
        model.fit(np.ones((3, 2)), np.array([0.0, 1.0, -3.0]), loss="poisson", verbose=0)


def test_poisson_loss_is_finite_on_huge_outputs():
    """z is clipped at MAX_LOG_RATE before exp: no overflow in float32, gradient still > 0."""
    z = np.array([[500.0], [-500.0]], dtype=np.float32)
    t = np.array([[3.0], [0.0]], dtype=np.float32)
    with np.errstate(over="raise"):
        for value, grad in (losses.Poisson()(z, t), losses.Poisson().fast(z, t)):
            assert np.isfinite(value) and np.all(np.isfinite(grad)) and grad[0, 0] > 0


def _count_data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = rng.poisson(np.exp(1.0 + 0.8 * X[:, 0] - 0.5 * X[:, 1])).astype(float)
    return X, y


def test_fit_keeps_counts_unscaled_starts_at_the_mean_and_reports_metrics_on_the_rate():
    X, y = _count_data()
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(1)])
    # a learning rate too small to move: what fit starts from (the output bias at log mean y)
    history = model.fit(
        X, y, loss="poisson", optimizer=ln.SGD(lr=1e-12), epochs=1, verbose=0, seed=0
    )
    assert "target_scaling" not in history.params and model.fit_target_scaling is None
    bias = model.layers[-1].params["b"]  # initialised at 0, then shifted by log mean y
    assert float(bias[0]) == pytest.approx(np.log(np.mean(y)), rel=1e-5)
    model.fit(X, y, loss="poisson", optimizer="adam", epochs=30, verbose=0, seed=0)
    pred = model.predict(X).ravel()
    assert pred.min() > 0
    model.metrics = ["mae"]
    mae = model.evaluate(X, y)["mae"]
    assert mae == pytest.approx(np.mean(np.abs(y - pred)), rel=1e-5)  # on e^z, not on z
    with pytest.raises(ValueError, match="target_scaling=True cannot be used with loss 'poisson'"):
        model.fit(X, y, loss="poisson", epochs=1, verbose=0, target_scaling=True)


# -- the task decision ------------------------------------------------------------------------


def _task(values, name: str = "y", task: str | None = None) -> tuple[str, str, bool]:
    return _infer_target(pd.Series(values, name=name), task)


def test_small_counts_are_count_regression_not_fifteen_classes():
    rng = np.random.default_rng(1)
    counts = np.minimum(rng.poisson(4.0, 5000), 14)
    counts[:15] = np.arange(15)  # every value 0..14 present
    task, reason, count = _task(counts)
    assert (task, count) == ("regression", True)
    assert reason.startswith("count target (non-negative integers, 15 distinct values")
    assert "too many for class codes" in reason
    assert infer_task(counts) == "regression"


def test_class_codes_stay_classification():
    rng = np.random.default_rng(2)
    for values in (rng.integers(0, 3, 3000), rng.integers(0, 10, 3000), rng.integers(1, 6, 500)):
        task, reason, count = _task(values)
        assert (task, count) == ("classification", False), reason
        assert "class codes" in reason
    assert _task([0, 1] * 50)[:1] == ("classification",)


def test_count_like_name_makes_few_values_counts():
    values = np.random.default_rng(3).integers(0, 5, 1000)
    assert _task(values, "label")[0] == "classification"
    for name in ("n_children", "visit_count", "numberOfVisits", "Total"):
        task, reason, count = _task(values, name)
        assert (task, count) == ("regression", True), name
        assert f"the name {name!r} says count" in reason


def test_integers_far_from_zero_or_negative_are_plain_regression():
    rng = np.random.default_rng(4)
    years = rng.integers(1990, 2021, 2000)
    signed = rng.integers(-40, 40, 2000)
    for values in (years, signed):
        task, reason, count = _task(values)
        assert (task, count) == ("regression", False), reason
        assert "count" not in reason
    assert _task(rng.normal(size=100))[2] is False


def test_task_set_by_user_regression_on_counts():
    values = np.random.default_rng(5).integers(0, 3, 1000)
    assert _task(values, task="regression") == ("regression", "set by user", True)
    assert _task(values, task="classification") == ("classification", "set by user", False)
    assert _task(["a", "b"] * 5, task="classification")[2] is False


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def count_file(tmp_path_factory):
    """Small counts 0..14 driven by two of three features (MSE predicted negatives here)."""
    d = tmp_path_factory.mktemp("counts")
    X, y = _count_data(n=1500, seed=6)
    y = np.minimum(y, 14)
    y[:15] = np.arange(15)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df["events"] = y.astype(int)
    df.to_csv(d / "counts.csv", index=False)
    return d


def test_cli_trains_counts_with_poisson_and_never_predicts_negative(count_file):
    data, model_file = count_file / "counts.csv", count_file / "poisson.lnet"
    argv = ["train", data, "--target", "events", "--epochs", "40", "--out", model_file]
    code, out, err = run([*argv, "--seed", "0"])
    assert code == 0, err
    assert "count target (non-negative integers, 15 distinct values" in out
    assert ": Poisson regression" in out
    model = load(model_file)
    assert model.loss.key == "poisson"
    assert model.metadata["training"]["loss"] == "poisson"
    assert model.metadata["target_scaling"] is None
    preds = count_file / "pred.csv"
    code, _, err = run(["predict", model_file, data, "--out", preds])
    assert code == 0, err
    p = pd.read_csv(preds)["prediction"].to_numpy()
    assert p.shape == (1500,) and np.count_nonzero(p < 0) == 0 and np.all(np.isfinite(p))
    r2 = model.metadata["test_metrics"]["r2"]
    assert r2 > 0.3  # it learnt the rate, on exp(z)


def test_cli_loss_option_overrides(count_file):
    data, model_file = count_file / "counts.csv", count_file / "mse.lnet"
    base = ["train", data, "--target", "events", "--epochs", "3", "--quiet", "--overwrite"]
    code, _, err = run([*base, "--loss", "mse", "--out", model_file])
    assert code == 0, err
    assert load(model_file).loss.key == "mse"
    code, out, err = run([*base, "--loss", "huber", "--out", model_file])
    assert code == 0 and load(model_file).loss.key == "huber", err
    as_classes = ["--task", "classification", "--loss", "poisson"]
    code, _, err = run([*base, *as_classes, "--out", model_file])
    assert code == 2 and err.startswith("lucidnet: error: --loss poisson is a regression loss")
    code, _, err = run([*base, "--loss", "hinge", "--out", model_file])
    assert code == 2 and "hinge" in err


def test_cli_three_level_label_stays_classification(tmp_path):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(900, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df["grade"] = (X[:, 0] > -0.5).astype(int) + (X[:, 0] > 0.5).astype(int)  # 0 / 1 / 2
    df.to_csv(tmp_path / "grades.csv", index=False)
    out_file = tmp_path / "g.lnet"
    code, out, err = run(
        ["train", tmp_path / "grades.csv", "--target", "grade", "--epochs", "3", "--out", out_file]
    )
    assert code == 0, err
    assert "Task: classification (picked automatically: integer target with 3 distinct" in out
    assert load(out_file).loss.key == "cross_entropy"


def test_onnx_export_of_a_poisson_model_outputs_the_rate():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from lucidnet.interop.onnx_export import to_onnx

    X, y = _count_data(n=60)
    X = X.astype(np.float32)
    model = ln.Sequential([ln.Dense(4, activation="relu"), ln.Dense(1)])
    model.fit(X, y, loss="poisson", epochs=2, verbose=0, seed=0)
    proto = to_onnx(model)
    out = ort.InferenceSession(proto.SerializeToString()).run(None, {"input": X})[0]
    np.testing.assert_allclose(out, model.predict(X), rtol=1e-5)
    assert {p.key: p.value for p in proto.metadata_props}["lucidnet_output"] == "rates"
