"""``check_gradients`` at kinks: where the loss is not differentiable within ``eps`` of an entry
(a ReLU input at exactly 0: blank image patches with a bias still at 0; a tie in a max-pooling
window), the one-sided slopes differ and the entry is left out, counted and said; a wrong backward
pass is still caught there."""

from __future__ import annotations

import numpy as np

import lucidnet as ln
from lucidnet.glassbox.gradcheck import check_gradients


class DenseScaledGrad(ln.Dense):
    """Broken on purpose: dL/dW is 10% too large."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["W"] *= 1.1
        return dx


def at_a_kink(second: ln.Dense) -> tuple[ln.Sequential, np.ndarray, np.ndarray]:
    """Half the rows all zeros and the first layer's bias exactly 0: those rows' ReLU inputs
    are exactly 0, where relu has no derivative (backpropagation takes relu'(0) = 0). (The
    input is not checked: one input entry moves the 5 units of a zero row both ways at once,
    and their kinks can cancel in the one-sided slopes; the CLI moves image pixels off such
    exact ties instead, tests/test_cli_images.py.)"""
    second.name = "second"
    model = ln.Sequential([ln.Dense(5, activation="relu"), second, ln.Dense(2)])
    model.build((4,), seed=0)
    model.layers[0].params["b"][:] = 0.0
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    X[::2] = 0.0
    return model, X, np.array([0, 1, 0, 1, 1, 0])


def test_entries_at_a_relu_kink_are_left_out_and_said():
    model, X, y = at_a_kink(ln.Dense(3, activation="tanh"))
    report = check_gradients(model, X, y, loss="cross_entropy", check_input=False)
    b = report["dense_0/b"]
    assert b.at_kinks == 5 and b.checked == 0 and b.total == 5  # every bias entry at a kink
    assert report.passed, report.to_text()
    assert report["second/W"].at_kinks == 0 and report["second/W"].rel_error < 1e-7
    text = report.to_text()
    assert "5 checked entries left out (dense_0/b: 5)" in text and "kink" in text
    assert "1 not compared (every sampled entry at a kink: dense_0/b)" in text
    assert report.to_dict()["entries"][1]["at_kinks"] == 5


def test_a_wrong_backward_is_still_caught_beside_kinks():
    model, X, y = at_a_kink(DenseScaledGrad(3, activation="tanh"))
    report = check_gradients(model, X, y, loss="cross_entropy", check_input=False)
    bad = report["second/W"]
    assert not bad.passed and bad.at_kinks == 0 and bad.rel_error > 1e-3
    assert {e.name for e in report.failures} == {"second/W"}
