"""The scikit-learn estimators under joblib's Dask backend: ``GridSearchCV`` on a
``dask.distributed.LocalCluster`` gives the default backend's results, and inside a Dask worker
an estimator with ``threads="auto"`` trains with one BLAS thread (the workers share the cores).

One in-process cluster (``processes=False``, two single-threaded workers) for the module; a
tiny data set and few epochs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
distributed = pytest.importorskip(
    "distributed", reason="needs dask.distributed (lucidnet[distributed])"
)

from joblib import Parallel, delayed, parallel_config  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_validate  # noqa: E402

from lucidnet.interop.estimators import (  # noqa: E402
    NeuralNetworkClassifier,
    _inner_threads,
    in_joblib_worker,
)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def small(**kw) -> NeuralNetworkClassifier:
    return NeuralNetworkClassifier(hidden_layer_sizes=(8,), max_iter=8, random_state=0, **kw)


def search(X, y, n_jobs: int) -> GridSearchCV:
    grid = {"learning_rate_init": [1e-3, 1e-2], "l2": [0.0, 1e-3]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 8 epochs
        return GridSearchCV(small(), grid, cv=2, n_jobs=n_jobs).fit(X, y)


def test_grid_search_on_dask_matches_the_default_backend(client, iris):
    X, y = iris
    local = search(X, y, n_jobs=1)  # the default backend (in this process: no loky start-up)
    with parallel_config(backend="dask"), distributed.get_task_stream(client) as stream:
        on_dask = search(X, y, n_jobs=2)
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], rtol=1e-6
    )
    assert on_dask.best_params_ == local.best_params_
    np.testing.assert_allclose(
        on_dask.best_estimator_.predict_proba(X), local.best_estimator_.predict_proba(X), rtol=1e-5
    )
    # the fits ran as tasks on the cluster's workers (2 folds x 4 candidates, in batches)
    assert len(stream.data) >= 2


def test_inside_a_dask_worker_blas_threads_are_limited(client, iris):
    assert not in_joblib_worker() and _inner_threads("auto") == "auto"  # here: lucidnet decides
    with parallel_config(backend="dask"):
        inside = Parallel(n_jobs=2)(delayed(lambda: (in_joblib_worker(), _inner_threads("auto")))()
                                    for _ in range(2))  # fmt: skip
    assert inside == [(True, 1), (True, 1)]
    assert _inner_threads(3) == 3  # an explicit count is kept

    X, y = iris
    with warnings.catch_warnings(), parallel_config(backend="dask"):
        warnings.simplefilter("ignore")
        fitted = cross_validate(small(), X, y, cv=2, n_jobs=2, return_estimator=True)
    for est in fitted["estimator"]:  # what each worker's fit ran with
        assert est.model_.history.params["threads"]["setting"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = small().fit(X, y)  # outside a worker: the estimator's own setting
    assert alone.model_.history.params["threads"]["setting"] == "auto"
