"""Bad input is refused early with a ValueError / TypeError whose message names the argument
(and says what was expected): shapes, NaN / inf, labels, empty and string arrays, hyper-parameter
values, unknown names. Also the helpers in lucidnet._validation themselves."""

from __future__ import annotations

import numpy as np
import pytest

import lucidnet as ln
from lucidnet import _validation as v

RNG = np.random.default_rng(0)
X = RNG.standard_normal((20, 3)).astype(np.float32)
Y = RNG.integers(0, 3, size=20)


def _clf():
    return ln.Sequential([ln.Dense(4, activation="relu"), ln.Dense(3)])


def _fit(X=X, y=Y, model=None, **kwargs):
    kwargs.setdefault("loss", "cross_entropy")
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("verbose", 0)
    return (model or _clf()).fit(X, y, **kwargs)


# -- data -------------------------------------------------------------------------------------
def test_shape_mismatch_between_X_and_y():
    with pytest.raises(ValueError, match=r"X and y must have the same number of samples.*20.*19"):
        _fit(y=Y[:19])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_X(bad):
    Xb = X.copy()
    Xb[3, 1] = bad
    with pytest.raises(ValueError, match=r"X contains NaN or infinite values.*\(3, 1\)"):
        _fit(X=Xb)
    model = _clf()
    _fit(model=model)
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(Xb)
    with pytest.raises(ValueError, match="X contains NaN"):
        model.evaluate(Xb, Y)


def test_nan_in_regression_targets():
    y = RNG.standard_normal(20)
    y[5] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        _fit(y=y, loss="mse", model=ln.Sequential([ln.Dense(1)]))


@pytest.mark.parametrize("label", [3, -1, 10])
def test_labels_outside_the_known_classes(label):
    y = Y.copy()
    y[7] = label
    with pytest.raises(ValueError, match=rf"y contains label {label} outside the known classes"):
        _fit(y=y)


def test_fractional_labels():
    with pytest.raises(ValueError, match="y must contain integers"):
        _fit(y=Y + 0.5)


def test_bce_targets_must_be_0_1():
    with pytest.raises(ValueError, match="y must contain 0/1 labels"):
        _fit(y=Y.astype(float), loss="bce", model=ln.Sequential([ln.Dense(1)]))


@pytest.mark.parametrize(
    "X_bad, y_bad, arg",
    [
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "X"),
        (X, np.zeros(0, dtype=int), "y"),
        (np.zeros(0), np.zeros(0), "X"),
    ],
)
def test_empty_arrays(X_bad, y_bad, arg):
    with pytest.raises(ValueError, match=rf"{arg} must (not be empty|have)"):
        _fit(X=X_bad, y=y_bad)


def test_string_arrays():
    Xs = np.array([["a", "b", "c"]] * 20)
    with pytest.raises(TypeError, match="X must be numeric.*TabularPreparer"):
        _fit(X=Xs)
    with pytest.raises(TypeError, match="y must be numeric"):
        _fit(y=np.array(["cat", "dog"] * 10))
    with pytest.raises(TypeError, match="X must be numeric"):
        _fit(X=np.array([[1, None, 3]] * 20, dtype=object))


def test_ragged_and_one_dimensional_X():
    with pytest.raises(ValueError, match="X must be a rectangular numeric array"):
        _fit(X=[[1.0, 2.0], [3.0]], y=[0, 1])
    with pytest.raises(ValueError, match=r"X must have >= 2 dimensions, got shape \(20,\)"):
        _fit(X=X[:, 0])
    with pytest.raises(TypeError, match="X must be an array, got None"):
        _fit(X=None)


def test_y_with_the_wrong_number_of_columns():
    with pytest.raises(ValueError, match=r"y must be labels \(n,\) or targets of shape \(n, 3\)"):
        _fit(y=np.eye(4)[Y % 4])
    reg = ln.Sequential([ln.Dense(2)])
    with pytest.raises(ValueError, match=r"y must have per-sample shape \(2,\).*got \(3,\)"):
        _fit(y=np.zeros((20, 3)), loss="mse", model=reg)


def test_no_silent_broadcasting_of_regression_targets():
    """mse with y (n,) and a 3-unit output must fail, not broadcast to (n, 3)."""
    model = ln.Sequential([ln.Dense(3)])
    with pytest.raises(ValueError, match=r"y must have per-sample shape \(3,\)"):
        _fit(y=RNG.standard_normal(20), loss="mse", model=model)
    # (n,) for a single output unit is reshaped explicitly to (n, 1): allowed
    h = _fit(y=RNG.standard_normal(20), loss="mse", model=ln.Sequential([ln.Dense(1)]))
    assert np.isfinite(h["loss"][0])


def test_X_with_a_different_number_of_features_than_the_model():
    model = _clf()
    _fit(model=model)
    with pytest.raises(ValueError, match=r"X must have per-sample shape \(3,\).*\(5,\)"):
        model.predict(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"validation_data\[0\] must have per-sample shape"):
        _fit(model=model, validation_data=(np.zeros((4, 5)), Y[:4]))


@pytest.mark.parametrize(
    "n, labels, split",
    [(2, None, 0.9), (10, None, 0.99), (3, [0, 1, 1], 0.9), (2, [0, 1], 0.5)],
)
def test_validation_split_leaving_an_empty_part(n, labels, split):
    if labels is None:
        kwargs = dict(y=np.zeros(n), loss="mse", model=ln.Sequential([ln.Dense(1)]))
    else:
        kwargs = dict(y=np.array(labels))
    with pytest.raises(ValueError, match=rf"validation_split={split} leaves \d+ training"):
        _fit(X=np.zeros((n, 3)), validation_split=split, **kwargs)
    with pytest.raises(ValueError, match="validation_split needs at least 2 samples"):
        _fit(
            X=np.zeros((1, 3)),
            y=np.zeros(1),
            loss="mse",
            model=ln.Sequential([ln.Dense(1)]),
            validation_split=0.5,
        )  # noqa: E501


def test_validation_data_checks():
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(X_val, y_val\)"):
        _fit(validation_data=X)
    with pytest.raises(ValueError, match=r"validation_data\[0\] and validation_data\[1\]"):
        _fit(validation_data=(X, Y[:5]))
    with pytest.raises(ValueError, match=r"validation_data\[1\] contains label 7"):
        _fit(validation_data=(X, np.full(20, 7)))


def test_sample_and_class_weight_checks():
    with pytest.raises(ValueError, match=r"sample_weight must have one weight per sample \(20\)"):
        _fit(sample_weight=np.ones(19))
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        _fit(sample_weight=-np.ones(20))
    with pytest.raises(ValueError, match="sample_weight contains NaN"):
        _fit(sample_weight=np.full(20, np.nan))
    with pytest.raises(ValueError, match="class_weight must be 'balanced' or a dict"):
        _fit(class_weight="auto")
    with pytest.raises(ValueError, match=r"class_weight has class 5 outside \[0, 3\)"):
        _fit(class_weight={5: 2.0})
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        _fit(
            y=RNG.standard_normal(20),
            loss="mse",
            model=ln.Sequential([ln.Dense(1)]),
            class_weight="balanced",
        )


# -- hyper-parameters -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arg, bad, exc",
    [
        ("epochs", 0, ValueError),
        ("epochs", -1, ValueError),
        ("epochs", 1.5, TypeError),
        ("epochs", "10", TypeError),
        ("epochs", True, TypeError),
        ("epochs", None, TypeError),
        ("batch_size", 0, ValueError),
        ("batch_size", -1, ValueError),
        ("batch_size", 1.5, TypeError),
        ("batch_size", "10", TypeError),
        ("batch_size", True, TypeError),
        ("validation_split", 1.0, ValueError),
        ("validation_split", 1.5, ValueError),
        ("validation_split", -0.1, ValueError),
        ("validation_split", "0.1", TypeError),
        ("validation_split", True, TypeError),
        ("seed", 1.5, TypeError),
        ("seed", "0", TypeError),
        ("seed", True, TypeError),
        ("verbose", 3, ValueError),
        ("verbose", "yes", ValueError),
    ],
)
def test_fit_hyperparameters(arg, bad, exc):
    with pytest.raises(exc, match=arg):
        _fit(**{arg: bad})


@pytest.mark.parametrize(
    "bad, exc", [(0, ValueError), (-1, ValueError), ("10", TypeError), (True, TypeError)]
)
@pytest.mark.parametrize("cls", [ln.SGD, ln.Adam])
def test_learning_rate_values(cls, bad, exc):
    with pytest.raises(exc, match="lr"):
        cls(lr=bad)
    with pytest.raises(exc, match="lr"):
        ln.optimizers.get(cls.__name__.lower(), lr=bad)


def test_learning_rate_1_5_is_accepted():
    assert ln.SGD(lr=1.5).current_lr == 1.5


def test_predict_batch_size_is_checked():
    model = _clf()
    _fit(model=model)
    for bad, exc in (
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        ("10", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(exc, match="batch_size"):
            model.predict(X, batch_size=bad)


# -- unknown names list the valid ones --------------------------------------------------------
@pytest.mark.parametrize(
    "call, kind, some_valid",
    [
        (lambda: ln.Dense(3, activation="swish"), "activation", "relu"),
        (lambda: _fit(loss="hinge"), "loss", "cross_entropy"),
        (lambda: _fit(optimizer="lbfgs"), "optimizer", "adam"),
        (lambda: ln.layers.get("Conv3D"), "layer", "Dense"),
        (lambda: _fit(metrics=["auc"]), "metric", "accuracy"),
        (lambda: ln.schedules.get("linear"), "schedule", "cosine"),
        (lambda: ln.Dense(3, kernel_initializer="orthogonal"), "initializer", "he_normal"),
    ],
)
def test_unknown_names_list_the_valid_ones(call, kind, some_valid):
    with pytest.raises(ValueError, match=rf"unknown {kind} '.*'; valid names are: .*{some_valid}"):
        call()


def test_wrong_types_for_named_things():
    with pytest.raises(TypeError, match="loss"):
        _fit(loss=lambda p, t: 0.0)
    with pytest.raises(TypeError, match="optimizer"):
        _fit(optimizer=0.01)
    with pytest.raises(TypeError, match="metrics"):
        _fit(metrics=[len])
    with pytest.raises(
        ValueError, match="metric 'accuracy' needs a classification loss, got loss 'mse'"
    ):
        _fit(
            metrics=["accuracy"],
            loss="mse",
            y=RNG.standard_normal(20),
            model=ln.Sequential([ln.Dense(1)]),
        )
    with pytest.raises(ValueError, match="fit needs a loss"):
        _clf().fit(X, Y, epochs=1, verbose=0)


def test_model_construction_errors():
    with pytest.raises(TypeError, match="layers must be a list of Layer objects"):
        ln.Sequential(ln.Dense(3))
    with pytest.raises(TypeError, match="Sequential layers must be lucidnet Layer objects"):
        ln.Sequential([ln.Dense(3), "relu"])
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        ln.Sequential([ln.Dense(3)], dtype="int32")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        ln.Sequential([ln.Dense(3)], dtype="float16")
    with pytest.raises(ValueError, match="empty Sequential"):
        ln.Sequential([]).build((3,))
    with pytest.raises(TypeError, match="name must be a str"):
        ln.Dense(3, name=5)


def test_evaluate_and_predict_before_training():
    model = _clf()
    with pytest.raises(ValueError, match="not trained or built"):
        model.predict(X)
    with pytest.raises(ValueError, match="evaluate needs a loss"):
        model.evaluate(X, Y)
    with pytest.raises(ValueError, match="backward called before forward"):
        model.backward(np.zeros((2, 3)))


# -- the helpers ------------------------------------------------------------------------------
def test_validation_helpers():
    assert (
        v.check_positive_int(np.int64(3), "n") == 3
        and v.check_positive_int(None, "n", allow_none=True) is None
    )
    with pytest.raises(ValueError, match=r"n must be an integer >= 2, got 1"):
        v.check_positive_int(1, "n", minimum=2)
    assert v.check_float(np.float32(0.5), "x", low=0, high=1) == 0.5
    with pytest.raises(ValueError, match=r"x must be a finite number in \(0.0, 1.0\], got 0.0"):
        v.check_float(0.0, "x", low=0.0, high=1.0, low_inclusive=False)
    with pytest.raises(ValueError, match="finite"):
        v.check_float(float("nan"), "x")
    assert v.check_dtype(np.float64) == np.float64
    arr = v.check_array([[1, 2]], "a", dtype=np.float32)
    assert arr.dtype == np.float32
    assert v.check_array(np.array([1.0, 2.0]), "ids", integer=True).dtype == np.int64
    with pytest.raises(ValueError, match="a must have 1 to 2 dimensions"):
        v.check_array(np.zeros((2, 2, 2)), "a", min_ndim=1, max_ndim=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        v.check_one_of("x", "mode", ("a", "b"))
    assert "array of shape (2, 3) and dtype float64" == v.describe(np.zeros((2, 3)))
    assert v.describe("x" * 100).endswith("... (str)")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_without_a_full_size_temporary(dtype):
    from lucidnet._validation import all_finite

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 7, 3)).astype(dtype)
    assert all_finite(X) and all_finite(X[:, ::2]) and all_finite(X.ravel())
    for bad in (np.nan, np.inf, -np.inf):
        Y = X.copy()
        Y[123, 4, 1] = bad
        assert not all_finite(Y) and not all_finite(Y.ravel()) and not all_finite(Y[100:200])
    both = X.copy()
    both[0, 0, 0], both[-1, -1, -1] = np.inf, -np.inf  # the sum is NaN, not inf
    assert not all_finite(both)
    # finite values whose sum overflows: the exact check, not the sum, decides
    huge = np.full((5000, 3), np.finfo(dtype).max / 2, dtype=dtype)
    assert all_finite(huge)
    huge[4999, 2] = np.nan
    assert not all_finite(huge)
