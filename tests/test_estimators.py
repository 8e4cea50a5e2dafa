"""Tests of the scikit-learn estimators (lucidnet/estimators.py)."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import parametrize_with_checks

import lucidnet as ln
from lucidnet.interop import estimators as _estimators
from lucidnet.interop.estimators import (
    NeuralNetworkClassifier,
    NeuralNetworkRegressor,
    in_joblib_worker,
    load_estimator,
)

# Small networks and few epochs keep the ~130 checks per estimator fast. float64 instances pass
# every check; the float32 ones differ only in the sample-weight check, which compares weighted
# and repeated fits at rtol 1e-7, below float32 rounding (the float64 run shows the semantics).
_SMALL = dict(hidden_layer_sizes=(10,), max_iter=50, learning_rate_init=1e-2, random_state=0)
_FLOAT32_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": (
        "float32 rounding: weighted and repeated fits agree to ~1e-6, the check wants rtol 1e-7 "
        "(the float64 instance passes it)"
    )
}


# settings that learn the small test problems in a few dozen epochs
_FAST = dict(learning_rate_init=0.01, batch_size=32, random_state=0)


def _expected_failures(estimator):
    return _FLOAT32_XFAIL if estimator.dtype == "float32" else {}


@parametrize_with_checks(
    [
        NeuralNetworkClassifier(**_SMALL, dtype="float64"),
        NeuralNetworkRegressor(**_SMALL, dtype="float64"),
        NeuralNetworkClassifier(**_SMALL),
        NeuralNetworkRegressor(**_SMALL),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def raw_digits():
    """Unscaled digits, stratified 75/25 (the pipelines under test do the scaling)."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# -- scikit-learn tools ---------------------------------------------------------------------------
def test_pipeline_grid_search_digits_parallel(raw_digits):
    X_tr, X_te, y_tr, y_te = raw_digits
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("net", NeuralNetworkClassifier(max_iter=20, batch_size=32, random_state=0)),
        ]
    )
    grid = {"net__hidden_layer_sizes": [(16,), (64,)]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X_tr, y_tr)
    assert set(search.best_params_) == set(grid)
    assert search.best_score_ >= 0.93
    assert search.score(X_te, y_te) >= 0.95
    proba = search.predict_proba(X_te)
    assert proba.shape == (len(y_te), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_inner_threads_are_one_inside_joblib_workers(monkeypatch):
    """GridSearchCV(n_jobs=2) runs each fit in a joblib worker: threads="auto" becomes 1 there
    (the workers share the cores); the refit in the caller keeps "auto"; an explicit count is
    kept everywhere. The threading backend, so the spy sees the workers' calls."""
    from joblib import Parallel, delayed, parallel_config

    assert not in_joblib_worker()
    assert Parallel(n_jobs=2, backend="threading")(delayed(in_joblib_worker)() for _ in "ab") == [
        True,
        True,
    ]
    assert Parallel(n_jobs=1)(delayed(in_joblib_worker)() for _ in "ab") == [False, False]
    seen: list[tuple[bool, object]] = []
    train = _estimators._train

    def spy(*args, **kwargs):
        seen.append((in_joblib_worker(), kwargs["threads"]))
        return train(*args, **kwargs)

    monkeypatch.setattr(_estimators, "_train", spy)
    X, y = make_classification(60, 4, random_state=0)
    grid = {"learning_rate_init": [1e-3, 1e-2]}
    with warnings.catch_warnings(), parallel_config(backend="threading"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = NeuralNetworkClassifier((4,), max_iter=2, random_state=0)
        GridSearchCV(net, grid, cv=2, n_jobs=2).fit(X, y)
        in_workers = {t for inside, t in seen if inside}
        assert in_workers == {1} and [t for inside, t in seen if not inside] == ["auto"]
        seen.clear()
        GridSearchCV(clone(net).set_params(threads=2), grid, cv=2, n_jobs=2).fit(X, y)
        assert {t for _, t in seen} == {2}
    assert net.get_params()["threads"] == "auto"


def test_randomized_search_and_cross_val_score(raw_digits):
    X_tr, _, y_tr, _ = raw_digits
    net = NeuralNetworkClassifier((32,), max_iter=10, **_FAST)
    est = make_pipeline(StandardScaler(), net)
    search = RandomizedSearchCV(
        est,
        {
            "neuralnetworkclassifier__learning_rate_init": [3e-3, 1e-2],
            "neuralnetworkclassifier__optimizer": ["adam", "rmsprop", "nesterov"],
        },
        n_iter=3,
        cv=2,
        random_state=0,
        n_jobs=2,
    ).fit(X_tr[:600], y_tr[:600])
    assert search.best_score_ > 0.85
    scores = cross_val_score(est, X_tr[:600], y_tr[:600], cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_column_transformer_dataframe_and_feature_names():
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "color": rng.choice(["r", "g"], n)}
    )
    y = np.where(df.x1 + (df.color == "r") * 1.5 > 0.7, "yes", "no")
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["x1", "x2"]), ("cat", OneHotEncoder(), ["color"])]
    )
    pipe = make_pipeline(pre, NeuralNetworkClassifier((16,), max_iter=40, **_FAST))
    pipe.fit(df, y)
    assert pipe.score(df, y) > 0.9
    assert set(pipe.predict(df)) <= {"yes", "no"}
    # fitted directly on a DataFrame, the estimator records the column names
    num = df[["x1", "x2"]]
    net = NeuralNetworkRegressor((8,), max_iter=5, random_state=0).fit(num, df.x1.to_numpy())
    assert list(net.feature_names_in_) == ["x1", "x2"] and net.n_features_in_ == 2
    with pytest.warns(UserWarning, match="feature names"):
        net.predict(num.to_numpy())


# -- partial_fit ----------------------------------------------------------------------------------
def test_partial_fit_decreases_loss_and_needs_classes(raw_digits):
    X_tr, X_te, y_tr, y_te = raw_digits
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    est = NeuralNetworkClassifier((32,), **_FAST)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        est.partial_fit(X_tr[:100], y_tr[:100])
    chunks = np.array_split(np.arange(len(y_tr)), 4)
    # the first chunk lacks classes 8 and 9: `classes` tells the estimator they exist
    first = chunks[0][y_tr[chunks[0]] < 8]
    est.partial_fit(X_tr[first], y_tr[first], classes=np.arange(10))
    assert list(est.classes_) == list(range(10)) and est.n_iter_ == 1
    for _ in range(3):
        for idx in chunks:
            est.partial_fit(X_tr[idx], y_tr[idx])
    curve = est.loss_curve_
    assert len(curve) == est.n_iter_ == 13
    assert curve[-1] < 0.5 * curve[1]
    assert est.score(X_te, y_te) > 0.9
    with pytest.raises(ValueError, match="differs from the classes"):
        est.partial_fit(X_tr[:10], y_tr[:10], classes=np.arange(11))
    with pytest.raises(ValueError, match="not in classes"):
        est.partial_fit(X_tr[:10], np.full(10, 12))
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X_tr[:10, :5], y_tr[:10])


def test_partial_fit_continues_fit_and_regressor():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    est = NeuralNetworkRegressor((16,), max_iter=5, random_state=0).fit(X, y)
    before = est.loss_curve_[-1]
    for _ in range(20):
        est.partial_fit(X, y)
    assert est.n_iter_ == 25 and est.loss_curve_[-1] < before


def test_partial_fit_early_stopping_stops_and_restores_best():
    X, y = make_classification(400, 10, random_state=0)
    est = NeuralNetworkClassifier(
        (16,), early_stopping=True, n_iter_no_change=2, tol=10.0, random_state=0
    )
    # tol=10: no held-out loss counts as an improvement, so calls 2-4 exhaust the patience
    for _ in range(4):
        est.partial_fit(X, y, classes=[0, 1])
    assert est.early_stopped_ and est.n_iter_ == 4
    assert len(est.validation_loss_curve_) == 4
    assert est.best_loss_ == min(est.validation_loss_curve_)
    weights = est.model_.get_weights()
    with pytest.warns(UserWarning, match="partial_fit ignored"):
        est.partial_fit(X, y)
    assert est.n_iter_ == 4
    assert all(np.array_equal(v, est.model_.get_weights()[k]) for k, v in weights.items())
    est.fit(X, y)  # fit starts again
    assert est.n_iter_ >= 1 and est.validation_loss_curve_ is not None


def test_fit_early_stopping_and_convergence_warning():
    X, y = make_classification(300, 10, random_state=0)
    est = NeuralNetworkClassifier(
        (16,), max_iter=300, early_stopping=True, n_iter_no_change=5, random_state=0
    ).fit(X, y)
    assert est.early_stopped_ and est.n_iter_ < 300
    assert len(est.validation_loss_curve_) == len(est.loss_curve_) == est.n_iter_
    assert est.best_loss_ == min(est.validation_loss_curve_)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        NeuralNetworkClassifier((4,), max_iter=3, random_state=0).fit(X, y)
    # without early stopping the training loss stops improving by tol -> converged, no warning
    est = NeuralNetworkClassifier((4,), max_iter=500, tol=0.05, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)
    assert est.early_stopped_ and est.n_iter_ < 500 and est.validation_loss_curve_ is None


# -- targets --------------------------------------------------------------------------------------
def test_multi_output_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    Y = np.c_[X[:, 0] - X[:, 1], np.sin(X[:, 2]), X[:, 3] ** 2 / 3]
    est = NeuralNetworkRegressor((32,), max_iter=60, **_FAST).fit(X, Y)
    pred = est.predict(X)
    assert pred.shape == (500, 3) and pred.dtype == np.float64 and est.n_outputs_ == 3
    assert est.model_.layers[-1].units == 3
    assert est.score(X, Y) > 0.9
    single = NeuralNetworkRegressor((8,), max_iter=3, random_state=0).fit(X, Y[:, 0])
    assert single.predict(X).shape == (500,)


def test_regressor_standardises_targets_in_large_units():
    """Targets in large units train like standardised ones; predictions come back in the
    target's units, also after early stopping restored the best (standardised-frame) weights
    and after partial_fit calls (the statistics of the first call stay fixed)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    big = 5000.0 + 1000.0 * y
    params = dict(hidden_layer_sizes=(16,), max_iter=100, random_state=0, dtype="float64")
    unit = NeuralNetworkRegressor(**params).fit(X, y)
    est = NeuralNetworkRegressor(**params).fit(X, big)
    np.testing.assert_allclose(est.loss_curve_, unit.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(est.predict(X), 5000.0 + 1000.0 * unit.predict(X), rtol=1e-6)
    stopped = NeuralNetworkRegressor(
        **{**params, "max_iter": 300}, learning_rate_init=0.01, early_stopping=True, tol=1e-3
    ).fit(X, big)
    assert stopped.early_stopped_ and stopped.score(X, big) > 0.9
    assert stopped._target_scaling.mean[0] == pytest.approx(np.mean(big), rel=0.05)
    scaling = est._target_scaling
    for _ in range(3):
        est.partial_fit(X[:100] + 1.0, big[:100] + 3000.0)
    assert est._target_scaling is scaling and est.score(X, big) > 0.5
    partial = NeuralNetworkRegressor(
        **params, early_stopping=True, n_iter_no_change=2, tol=10.0, batch_size=20
    )
    partial.set_params(learning_rate_init=0.01)
    for _ in range(4):  # tol=10: calls 2-4 exhaust the patience; best weights restored
        partial.partial_fit(X, big)
    assert partial.early_stopped_ and partial.score(X, big) > 0.9


def test_multi_label_classification():
    X, Y = make_multilabel_classification(600, 20, n_classes=4, random_state=0)
    X_tr, X_te, Y_tr, Y_te = train_test_split(X, Y, random_state=0)
    est = NeuralNetworkClassifier((64,), max_iter=30, l2=1e-3, **_FAST).fit(X_tr, Y_tr)
    assert est.out_activation_ == "logistic" and list(est.classes_) == [0, 1, 2, 3]
    proba = est.predict_proba(X_te)
    assert proba.shape == Y_te.shape and proba.min() >= 0 and proba.max() <= 1
    pred = est.predict(X_te)
    assert pred.shape == Y_te.shape and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    per_label = (pred == Y_te).mean()
    majority = np.maximum(Y_te.mean(axis=0), 1 - Y_te.mean(axis=0)).mean()
    assert per_label > majority + 0.05 and per_label > 0.8


def test_string_labels_and_binary_losses():
    X, y = make_classification(300, 6, random_state=2)
    labels = np.array(["cat", "dog"])[y]
    for loss, units in (("cross_entropy", 2), ("binary_cross_entropy", 1)):
        est = NeuralNetworkClassifier((8,), max_iter=30, loss=loss, **_FAST).fit(X, labels)
        assert est.model_.layers[-1].units == units
        assert list(est.classes_) == ["cat", "dog"]
        proba = est.predict_proba(X)
        assert proba.shape == (300, 2)
        np.testing.assert_array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])
        assert est.score(X, labels) > 0.85
    with pytest.raises(ValueError, match="binary or multi-label"):
        NeuralNetworkClassifier(loss="binary_cross_entropy").fit(X, np.arange(300) % 3)


# -- weights --------------------------------------------------------------------------------------
def test_sample_weight_equals_repetition_and_removal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    w = rng.integers(0, 4, size=40)
    params = dict(
        hidden_layer_sizes=(8,),
        max_iter=40,
        batch_size=1000,
        dtype="float64",
        random_state=0,
        shuffle=False,
    )
    weighted = NeuralNetworkClassifier(**params).fit(X, y, sample_weight=w)
    repeated = NeuralNetworkClassifier(**params).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-9)
    unweighted = NeuralNetworkClassifier(**params).fit(X, y)
    assert np.abs(unweighted.predict_proba(X) - weighted.predict_proba(X)).max() > 1e-3


def test_sample_weight_and_class_weight_shift_predictions():
    X, y = make_classification(400, 5, n_informative=2, class_sep=0.3, random_state=3)
    params = dict(hidden_layer_sizes=(8,), max_iter=60, random_state=0)
    plain = NeuralNetworkClassifier(**params).fit(X, y)
    heavy = NeuralNetworkClassifier(**params).fit(X, y, sample_weight=np.where(y == 1, 20.0, 1.0))
    assert heavy.predict(X).mean() > plain.predict(X).mean() + 0.1
    by_dict = NeuralNetworkClassifier(**params, class_weight={0: 1.0, 1: 20.0}).fit(X, y)
    np.testing.assert_allclose(by_dict.predict_proba(X), heavy.predict_proba(X), atol=1e-6)
    # "balanced" is exactly compute_sample_weight("balanced")
    y_imb = np.where(np.arange(400) % 5 == 0, 1, 0)
    bal = NeuralNetworkClassifier(**params, class_weight="balanced").fit(X, y_imb)
    sw = NeuralNetworkClassifier(**params).fit(
        X, y_imb, sample_weight=compute_sample_weight("balanced", y_imb)
    )
    np.testing.assert_allclose(bal.predict_proba(X), sw.predict_proba(X), atol=1e-6)
    with pytest.raises(ValueError, match="partial_fit"):
        NeuralNetworkClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    # labels map to class indices: string labels, unlisted classes weigh 1, {} weighs nothing
    labels = np.where(y == 1, "yes", "no")
    by_label = NeuralNetworkClassifier(**params, class_weight={"yes": 20.0}).fit(X, labels)
    np.testing.assert_allclose(by_label.predict_proba(X), heavy.predict_proba(X), atol=1e-6)
    empty = NeuralNetworkClassifier(**params, class_weight={}).fit(X, y)
    np.testing.assert_array_equal(empty.predict_proba(X), plain.predict_proba(X))
    with pytest.raises(ValueError, match=r"not classes of y: \[5\]"):
        NeuralNetworkClassifier(**params, class_weight={1: 2.0, 5: 3.0}).fit(X, y)


# -- hyper-parameters -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, layer_types",
    [
        ({}, ["Dense", "Dense"]),
        ({"dropout": 0.2}, ["Dense", "Dropout", "Dense"]),
        ({"batch_norm": True, "activation": "tanh"}, ["Dense", "BatchNorm", "Tanh", "Dense"]),
        ({"hidden_layer_sizes": (), "optimizer": "sgd"}, ["Dense"]),
        (
            {"hidden_layer_sizes": (8, 4), "activation": "gelu", "optimizer": "adamw"},
            ["Dense", "Dense", "Dense"],
        ),
    ],
)
def test_architecture_options_build_and_train(params, layer_types):
    X, y = make_classification(200, 6, random_state=0)
    est = NeuralNetworkClassifier(**{"hidden_layer_sizes": (8,), "max_iter": 30, **_FAST, **params})
    est.fit(X, y)
    assert [type(layer).__name__ for layer in est.model_.layers] == layer_types
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    assert est.score(X, y) > 0.8


@pytest.mark.parametrize(
    "schedule, final_ratio",
    [("cosine", 0.0), ("step", 0.001), ("exponential", 0.01), ("constant", 1.0)],
)
def test_lr_schedules_and_clip_norm(schedule, final_ratio):
    X, y = make_classification(100, 4, random_state=0)
    est = NeuralNetworkClassifier(
        (4,),
        max_iter=9,
        learning_rate_init=0.01,
        batch_size=50,
        lr_schedule=schedule,
        clip_norm=1.0,
        tol=0.0,
        random_state=0,
    ).fit(X, y)
    opt = est.model_.optimizer
    assert opt.clip_norm == 1.0 and opt.iterations == 18
    # the rate reached after max_iter epochs, relative to learning_rate_init
    assert opt.current_lr / 0.01 == pytest.approx(final_ratio, abs=1e-12)


def test_regressor_losses_and_l1_l2():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] * 2
    for loss, key in (("mse", "mse"), ("absolute_error", "mae"), ("huber", "huber")):
        est = NeuralNetworkRegressor((8,), loss=loss, max_iter=40, l2=1e-4, l1=1e-5, **_FAST)
        est.fit(X, y)
        assert est.model_.loss.key == key
        assert all(layer.l2 == 1e-4 and layer.l1 == 1e-5 for layer in est.model_.layers)
        assert est.score(X, y) > 0.8


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"hidden_layer_sizes": (10, 0)}, ValueError, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": "10"}, TypeError, "hidden_layer_sizes"),
        ({"activation": "softmax"}, ValueError, "activation"),
        ({"activation": "swish"}, ValueError, "activation"),
        ({"optimizer": "lbfgs"}, ValueError, "optimizer"),
        ({"learning_rate_init": 0.0}, ValueError, "learning_rate_init"),
        ({"batch_size": "big"}, TypeError, "batch_size"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"loss": "mse"}, ValueError, "loss"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"l2": -1.0}, ValueError, "l2"),
        ({"lr_schedule": "linear"}, ValueError, "lr_schedule"),
        ({"clip_norm": 0}, ValueError, "clip_norm"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change"),
        ({"dtype": "float16"}, ValueError, "dtype"),
        ({"class_weight": "auto"}, ValueError, "class_weight"),
        ({"random_state": "seed"}, TypeError, "random_state"),
        ({"early_stopping": "yes"}, TypeError, "early_stopping"),
        ({"threads": 0}, ValueError, "threads must be 'auto' or an integer >= 1"),
        ({"threads": "many"}, TypeError, "threads must be 'auto' or an integer >= 1"),
    ],
)
def test_bad_parameters_raise_naming_the_argument(params, error, match):
    X, y = make_classification(30, 4, random_state=0)
    with pytest.raises(error, match=match):
        NeuralNetworkClassifier(**{"max_iter": 1, **params}).fit(X, y)


def test_bad_targets():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="Unknown label type"):
        NeuralNetworkClassifier().fit(X, X[:, 0])
    with pytest.raises(ValueError, match="1 class"):
        NeuralNetworkClassifier().fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        NeuralNetworkClassifier().fit(X, np.c_[np.arange(20) % 3, np.arange(20) % 2])
    with pytest.raises(ValueError, match="zero for every"):
        NeuralNetworkRegressor().fit(X, X[:, 0], sample_weight=np.zeros(20))


# -- persistence ----------------------------------------------------------------------------------
def _fitted_pair():
    X, y = make_classification(200, 5, n_classes=3, n_informative=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    clf = NeuralNetworkClassifier(
        (8,),
        max_iter=20,
        dropout=0.1,
        batch_norm=True,
        class_weight={"a": 2.0, "b": 1.0, "c": 1.0},
        lr_schedule=ln.CosineDecay(0.01, decay_steps=50),
        random_state=np.random.RandomState(0),
    ).fit(X, labels)
    reg = NeuralNetworkRegressor((8,), max_iter=20, random_state=1, dtype="float64")
    reg.fit(pd.DataFrame(X, columns=list("pqrst")), np.c_[X[:, 0], X[:, 1]])
    return X, clf, reg


def test_pickle_and_clone():
    X, clf, reg = _fitted_pair()
    df = pd.DataFrame(X, columns=list("pqrst"))
    for est, data in ((clf, X), (reg, df)):
        restored = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(restored.predict(data), est.predict(data))
        fresh = clone(est)
        assert fresh.get_params().keys() == est.get_params().keys()
        assert not hasattr(fresh, "model_")
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(clf)).predict_proba(X), clf.predict_proba(X)
    )


def test_save_load_round_trip(tmp_path):
    X, clf, reg = _fitted_pair()
    df = pd.DataFrame(X, columns=list("pqrst"))
    clf.save(tmp_path / "clf.lnet")
    reg.save(tmp_path / "reg.lnet")
    clf2 = NeuralNetworkClassifier.load(tmp_path / "clf.lnet")
    reg2 = load_estimator(tmp_path / "reg.lnet")
    assert isinstance(reg2, NeuralNetworkRegressor)
    np.testing.assert_array_equal(clf2.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(clf2.predict(X), clf.predict(X))
    assert clf2.classes_.tolist() == ["a", "b", "c"] and clf2.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(reg2.predict(df), reg.predict(df))
    assert list(reg2.feature_names_in_) == list("pqrst") and reg2.n_outputs_ == 2
    for a, b in ((clf, clf2), (reg, reg2)):
        assert a.loss_curve_ == b.loss_curve_ and a.n_iter_ == b.n_iter_
        params_a, params_b = a.get_params(), b.get_params()
        params_a["random_state"] = params_b["random_state"] = None  # a RandomState is not stored
        assert repr(params_a) == repr(params_b)
    # continued training works after loading (optimizer state is in the file)
    clf2.partial_fit(X, clf.predict(X))
    assert clf2.n_iter_ == clf.n_iter_ + 1
    # ... with the regressor's target scaling too
    np.testing.assert_array_equal(reg2._target_scaling.std, reg._target_scaling.std)
    reg.partial_fit(df, reg.predict(df))
    reg2.partial_fit(df, reg2.predict(df))
    np.testing.assert_array_equal(reg2.predict(df), reg.predict(df))
    # the file is an ordinary lucidnet model too
    model = ln.load(tmp_path / "clf.lnet")
    np.testing.assert_allclose(model.predict(X), clf.predict_proba(X), atol=1e-6)
    with pytest.raises(FileExistsError):
        clf.save(tmp_path / "clf.lnet")
    clf.save(tmp_path / "clf.lnet", overwrite=True)
    with pytest.raises(ln.ModelFileError, match="NeuralNetworkRegressor, not a"):
        NeuralNetworkClassifier.load(tmp_path / "reg.lnet")
    model.metadata = {}
    model.save(tmp_path / "plain.lnet")
    with pytest.raises(ln.ModelFileError, match="no scikit-learn estimator"):
        load_estimator(tmp_path / "plain.lnet")
