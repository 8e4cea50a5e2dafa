"""Tests of lucidnet.gradcheck: healthy layers pass, deliberately broken backward passes fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.callbacks import weights_equal
from lucidnet.glassbox.gradcheck import as_float64, check_gradients

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 5))
LABELS = RNG.integers(0, 3, size=12)
TARGETS = RNG.normal(size=(12, 2))
COUNTS = np.random.default_rng(12).poisson(2.0, size=(12, 2)).astype(float)


def built(layers, dtype="float32", shape=(5,)):
    model = ln.Sequential(layers, dtype=dtype)
    model.build(shape, seed=1)
    return model


class DenseNoActivationGrad(ln.Dense):
    """Broken on purpose: backward forgets the activation's derivative."""

    def backward(self, dy):
        W = self.params["W"]
        self.grads["W"] += self._x.T @ dy
        self.grads["b"] += dy.sum(axis=0)
        return dy @ W.T


class DenseScaledGrad(ln.Dense):
    """Broken on purpose: dL/dW is 10% too large."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["W"] *= 1.1
        return dx


class DenseWrongInputGrad(ln.Dense):
    """Broken on purpose: dL/dx uses W instead of W^T (square layer, so shapes still fit)."""

    def backward(self, dy):
        dz = self.activation.backward(dy)
        self.grads["W"] += self._x.T @ dz
        self.grads["b"] += dz.sum(axis=0)
        return dz @ self.params["W"]


@pytest.mark.parametrize(
    "layers, loss, y",
    [
        ([ln.Dense(6, activation="relu"), ln.Dense(3)], "cross_entropy", LABELS),
        (
            [
                ln.Dense(6, activation="tanh", l1=0.01, l2=0.02),
                ln.Dense(6, activation="sigmoid"),
                ln.Dense(2),
            ],
            "mse",
            TARGETS,
        ),
        (
            [
                ln.Dense(6, activation="gelu"),
                ln.Dense(6, activation="elu"),
                ln.Dense(6, activation="leaky_relu"),
                ln.Dense(2),
            ],
            "huber",
            TARGETS,
        ),
        (
            [ln.Dense(6), ln.BatchNorm(), ln.ReLU(), ln.Dropout(0.4), ln.Dense(3)],
            "cross_entropy",
            LABELS,
        ),
        ([ln.Dense(4, activation="tanh"), ln.Dense(2), ln.Softmax()], "mse", TARGETS),
        ([ln.Dense(6, activation="tanh"), ln.Dense(2)], "poisson", COUNTS),
        (
            [ln.Dense(6, activation="relu"), ln.Dense(1)],
            "binary_cross_entropy",
            (LABELS > 0).astype(float),
        ),
        (
            [
                ln.Reshape((5, 1)),
                ln.Conv1D(3, 2, padding="same", activation="tanh"),
                ln.MaxPool1D(2, padding="same"),
                ln.Flatten(),
                ln.Dense(3),
            ],
            "cross_entropy",
            LABELS,
        ),
        (
            [
                ln.Reshape((5, 1, 1)),
                ln.Conv2D(3, (2, 1), stride=(2, 1), padding=1, activation="tanh"),
                ln.BatchNorm(),
                ln.AvgPool2D((2, 1), padding="same"),
                ln.GlobalAveragePooling2D(),
                ln.Dense(2),
            ],
            "mse",
            TARGETS,
        ),
    ],
)
def test_healthy_models_pass(layers, loss, y):
    model = built(layers)
    report = check_gradients(model, X, y, loss=loss)
    assert report.passed, report.to_text()
    # float64 central differences agree to far better than the threshold; an array whose true
    # gradient is 0 (a bias followed by BatchNorm) shows only round-off, far below atol
    for e in report.entries:
        assert e.rel_error < 1e-7 or e.max_abs_error < 1e-12, e
    names = [e.name for e in report.entries]
    assert names[-1] == "input" and len(names) == sum(1 for _ in model.parameters()) + 1


def test_embedding_model_skips_the_integer_input():
    ids = RNG.integers(0, 10, size=(8, 4))
    model = built([ln.Embedding(10, 3), ln.Dense(2)], shape=(4,))
    report = check_gradients(model, ids, LABELS[:8] % 2, loss="cross_entropy")
    assert report.passed, report.to_text()
    assert [e.name for e in report.entries] == ["embedding_0/E", "dense_1/W", "dense_1/b"]
    assert any("integer" in n for n in report.notes)


@pytest.mark.parametrize(
    "broken, bad",
    [
        (DenseNoActivationGrad(6, activation="tanh"), {"broken/W", "broken/b"}),
        (DenseScaledGrad(6, activation="relu"), {"broken/W"}),
    ],
)
def test_broken_backward_is_flagged(broken, bad):
    broken.name = "broken"
    model = built([ln.Dense(6, activation="relu"), broken, ln.Dense(3)])
    report = check_gradients(model, X, LABELS, loss="cross_entropy")
    assert not report.passed
    failed = {e.name for e in report.failures}
    # the broken layer's own parameters fail; the layers after it are unaffected
    assert bad <= failed
    assert "dense_2/W" not in failed and "dense_2/b" not in failed
    assert report["broken/W"].rel_error > 1e-3
    assert "FAILED" in report.to_text() and "broken/W" in report.to_text()


def test_wrong_input_gradient_is_flagged_upstream():
    model = built(
        [ln.Dense(6, activation="relu"), DenseWrongInputGrad(6, activation="tanh"), ln.Dense(3)]
    )
    report = check_gradients(model, X, LABELS, loss="cross_entropy")
    failed = {e.name for e in report.failures}
    # its own weights are right, but everything before it receives a wrong gradient
    assert "densewronginputgrad_1/W" not in failed
    assert {"dense_0/W", "input"} <= failed


def test_model_is_not_modified_and_stays_float32():
    model = built([ln.Dense(6, activation="relu"), ln.Dropout(0.5), ln.Dense(3)])
    before = model.get_weights()
    rng_state = model.layers[1].rng.bit_generator.state
    check_gradients(model, X, LABELS, loss="cross_entropy")
    assert weights_equal(model.get_weights(), before)
    assert model.dtype == np.float32 and model.layers[0].params["W"].dtype == np.float32
    assert model.layers[1].fixed_mask is None
    assert model.layers[1].rng.bit_generator.state == rng_state


def test_as_float64_copies_every_array():
    model = built([ln.Dense(4), ln.BatchNorm(), ln.Dense(2)])
    m64 = as_float64(model)
    for layer in m64.layers:
        for store in (layer.params, layer.grads, layer.state):
            assert all(v.dtype == np.float64 for v in store.values())
    p, g, layout = m64.flat_parameters()
    assert p.dtype == np.float64 and sum(size for _, _, size, _ in layout) == model.n_params
    np.testing.assert_array_equal(m64.layers[0].params["W"], model.layers[0].params["W"])


def test_sampling_is_bounded_and_seeded():
    model = built([ln.Dense(20, activation="tanh"), ln.Dense(3)], shape=(5,))
    a = check_gradients(model, X, LABELS, loss="cross_entropy", max_entries=7, seed=3)
    b = check_gradients(model, X, LABELS, loss="cross_entropy", max_entries=7, seed=3)
    assert all(e.checked == min(7, e.total) for e in a.entries)
    assert [e.rel_error for e in a.entries] == [e.rel_error for e in b.entries]
    assert a["dense_0/W"].total == 100


def test_unbuilt_model_is_built_on_the_copy():
    model = ln.Sequential([ln.Dense(4, activation="sigmoid"), ln.Dense(2)])
    report = check_gradients(model, X, TARGETS, loss="mse")
    assert report.passed and not model.built


def test_outputs_and_errors():
    model = built([ln.Dense(3, activation="relu"), ln.Dense(3)])
    report = check_gradients(model, X, LABELS, loss="cross_entropy")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["passed"] is True and d["entries"][0]["name"] == "dense_0/W"
    assert "PASSED" in report.to_text()
    with pytest.raises(ValueError, match="eps"):
        check_gradients(model, X, LABELS, loss="cross_entropy", eps=0.0)
    with pytest.raises(ValueError, match="needs a loss"):
        check_gradients(model, X, LABELS)
    with pytest.raises(ValueError, match="per-sample shape"):
        check_gradients(model, X[:, :3], LABELS, loss="cross_entropy")
    with pytest.raises(TypeError, match="model must be"):
        check_gradients(object(), X, LABELS, loss="cross_entropy")


class MultiplicativeNoise(ln.Layer):
    """A random layer other than Dropout: y = x * (1 + 0.5 n), n ~ N(0, 1) drawn per call from
    its own stream, which ``reseed`` replaces (the hook gradcheck relies on)."""

    def __init__(self, name=None):
        super().__init__(name)
        self.rng = np.random.default_rng()

    def reseed(self, rng):
        self.rng = np.random.default_rng(rng.integers(2**63))

    def forward(self, x, training=False):
        self._m = 1.0 + 0.5 * self.rng.standard_normal(x.shape) if training else 1.0
        return x * self._m

    def backward(self, dy):
        return dy * self._m


def test_any_layer_overriding_reseed_draws_the_same_numbers_in_every_pass():
    # without the same draws in every forward pass the finite differences would be noise
    model = built(
        [ln.Dense(6, activation="tanh"), MultiplicativeNoise(), ln.Dropout(0.3), ln.Dense(3)],
        dtype="float64",
    )
    report = check_gradients(model, X, LABELS, loss="cross_entropy")
    assert report.passed, report.to_text()
    assert report.max_rel_error < 1e-7
    note = next(n for n in report.notes if "random draws" in n)
    assert "multiplicativenoise_1" in note and "dropout_2" in note
    # the layers that draw nothing random are not named
    plain = check_gradients(built([ln.Dense(3)]), X, LABELS, loss="cross_entropy")
    assert not any("random draws" in n for n in plain.notes)
