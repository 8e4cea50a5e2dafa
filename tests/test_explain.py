"""Tests of lucidnet.explain: the explained step agrees with a hand computation and with the
real training step."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lucidnet as ln
from lucidnet.callbacks import weights_equal
from lucidnet.glassbox.explain import explain_step, feature_effects, format_array

X1 = np.array([[0.5, -1.5]])
T1 = np.array([[0.75]])
W1 = np.array([[0.3, -0.4], [0.2, 0.6]])
B1 = np.array([0.05, -0.1])
W2 = np.array([[0.7], [-0.5]])
B2 = np.array([0.1])


def tiny_model(activation: str = "sigmoid", dtype: str = "float64", out: int = 1) -> ln.Sequential:
    """The 2-2-1 (or 2-2-out) network with known weights."""
    model = ln.Sequential([ln.Dense(2, activation=activation), ln.Dense(out)], dtype=dtype)
    model.build((2,), seed=0)
    w2 = W2 if out == 1 else np.array([[0.7, -0.2], [-0.5, 0.4]])
    b2 = B2 if out == 1 else np.array([0.1, -0.3])
    model.set_weights({"dense_0/W": W1, "dense_0/b": B1, "dense_1/W": w2, "dense_1/b": b2})
    return model


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def hand_forward(x, w1, b1, w2, b2):
    z1 = x @ w1 + b1
    a1 = sigmoid(z1)
    z2 = a1 @ w2 + b2
    return z1, a1, z2


def hand_gradients(x, t, w1, b1, w2, b2):
    """Forward and backward of the sigmoid 2-2-1 network with MSE, written out by hand."""
    n = x.shape[0]
    z1, a1, z2 = hand_forward(x, w1, b1, w2, b2)
    loss = np.mean((z2 - t) ** 2)
    dz2 = 2.0 * (z2 - t) / n
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ w2.T
    dz1 = da1 * a1 * (1.0 - a1)
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return dict(
        z1=z1,
        a1=a1,
        z2=z2,
        loss=loss,
        dz2=dz2,
        dW2=dW2,
        db2=db2,
        da1=da1,
        dz1=dz1,
        dW1=dW1,
        db1=db1,
    )


def test_sgd_step_matches_hand_computation():
    model = tiny_model()
    lr = 0.5
    e = explain_step(model, X1[0], T1[0], loss="mse", optimizer=ln.SGD(lr=lr))
    h = hand_gradients(X1, T1, W1, B1, W2, B2)
    f0, f1 = e.forward
    np.testing.assert_allclose(f0.input, X1, rtol=1e-12)
    np.testing.assert_allclose(f0.z, h["z1"], rtol=1e-12)
    np.testing.assert_allclose(f0.output, h["a1"], rtol=1e-12)
    np.testing.assert_allclose(f1.z, h["z2"], rtol=1e-12)
    assert e.loss.value == pytest.approx(h["loss"], rel=1e-12)
    np.testing.assert_allclose(e.loss.terms["(p - t)^2"], (h["z2"] - T1) ** 2, rtol=1e-12)
    np.testing.assert_allclose(e.loss.grad, h["dz2"], rtol=1e-12)
    # backward is recorded last layer first
    b1, b0 = e.backward
    assert (b1.name, b0.name) == ("dense_1", "dense_0")
    np.testing.assert_allclose(b1.grads["W"], h["dW2"], rtol=1e-12)
    np.testing.assert_allclose(b1.grads["b"], h["db2"], rtol=1e-12)
    np.testing.assert_allclose(b1.d_input, h["da1"], rtol=1e-12)
    np.testing.assert_allclose(b0.d_output, h["da1"], rtol=1e-12)
    np.testing.assert_allclose(b0.d_z, h["dz1"], rtol=1e-12)
    np.testing.assert_allclose(b0.grads["W"], h["dW1"], rtol=1e-12)
    np.testing.assert_allclose(b0.grads["b"], h["db1"], rtol=1e-12)
    # update: p_new = p - lr g
    new = {
        "dense_0/W": W1 - lr * h["dW1"],
        "dense_0/b": B1 - lr * h["db1"],
        "dense_1/W": W2 - lr * h["dW2"],
        "dense_1/b": B2 - lr * h["db2"],
    }
    for name, value in new.items():
        np.testing.assert_allclose(e.update[name].after, value, rtol=1e-12)
        np.testing.assert_allclose(e.update[name].before, model.get_weights()[name], rtol=0)
    assert e.update.lr == lr and e.update.t == 1
    _, _, z2_new = hand_forward(X1, *new.values())
    assert e.loss_after == pytest.approx(np.mean((z2_new - T1) ** 2), rel=1e-12)
    assert e.loss_after < e.loss_before


def test_adam_step_matches_hand_computation():
    model = tiny_model()
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    x = np.array([[0.5, -1.5], [1.0, 0.25], [-0.3, 0.8]])
    t = np.array([[0.75], [-0.2], [0.1]])
    e = explain_step(model, x, t, loss="mse", optimizer=ln.Adam(lr=lr, beta1=b1, beta2=b2, eps=eps))
    h = hand_gradients(x, t, W1, B1, W2, B2)
    assert e.update.scalars["1 - beta1^t"] == pytest.approx(1 - b1)
    for name, g, p in [("dense_0/W", h["dW1"], W1), ("dense_1/b", h["db2"], B2)]:
        m = (1 - b1) * g
        v = (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1), v / (1 - b2)
        up = e.update[name]
        np.testing.assert_allclose(up.grad, g, rtol=1e-12)
        np.testing.assert_allclose(up.slots_before["m"], 0.0)
        np.testing.assert_allclose(up.slots_after["m"], m, rtol=1e-12)
        np.testing.assert_allclose(up.slots_after["v"], v, rtol=1e-12)
        np.testing.assert_allclose(up.terms["m_hat"], m_hat, rtol=1e-12)
        np.testing.assert_allclose(up.terms["v_hat"], v_hat, rtol=1e-12)
        np.testing.assert_allclose(up.after, p - lr * m_hat / (np.sqrt(v_hat) + eps), rtol=1e-12)


def test_cross_entropy_terms_match_hand_computation():
    model = tiny_model(activation="tanh", out=2)
    x = np.array([[0.5, -1.5], [1.0, 0.25]])
    labels = np.array([1, 0])
    e = explain_step(model, x, labels, loss="cross_entropy", optimizer="sgd")
    z1 = np.tanh(x @ W1 + B1)
    logits = z1 @ np.array([[0.7, -0.2], [-0.5, 0.4]]) + np.array([0.1, -0.3])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(e.loss.terms["p = softmax(z)"], p, rtol=1e-12)
    np.testing.assert_allclose(
        e.loss.terms["-log p[target]"], -np.log(p[[0, 1], labels]), rtol=1e-12
    )
    assert e.loss.value == pytest.approx(-np.log(p[[0, 1], labels]).mean(), rel=1e-12)
    onehot = np.eye(2)[labels]
    np.testing.assert_allclose(e.loss.grad, (p - onehot) / 2, rtol=1e-12)
    # the tanh derivative 1 - a^2 in dL/dz of the hidden layer
    b_hidden = e.backward[1]
    np.testing.assert_allclose(b_hidden.d_z, b_hidden.d_output * (1 - z1**2), rtol=1e-12)


def trained_model(dropout: float = 0.0, batchnorm: bool = False) -> tuple[ln.Sequential, tuple]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 5)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    layers = [ln.Dense(8, activation="relu")]
    if batchnorm:
        layers.append(ln.BatchNorm())
    if dropout:
        layers.append(ln.Dropout(dropout))
    layers.append(ln.Dense(3))
    model = ln.Sequential(layers)
    model.fit(X, y, loss="cross_entropy", optimizer=ln.Adam(lr=0.01), epochs=2, seed=0, verbose=0)
    return model, (X[:6], y[:6])


def real_step(model: ln.Sequential, x: np.ndarray, y: np.ndarray) -> float:
    """One step on the textbook path (which explain shows; tests/test_train_step.py proves it
    equal to fit's fast path to float32 rounding); returns the loss afterwards."""
    ln.train_step(model, x, y, model.loss, model.optimizer, fast=False)
    return model.loss(model.forward(x, training=True), y)[0]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_loss_after_equals_next_real_step_and_model_untouched(batchnorm):
    model, (x, y) = trained_model(batchnorm=batchnorm)
    before = model.get_weights()
    opt_state = model.optimizer.state_dict()
    e = model.explain_step(x, y)  # the model's loss and (Adam, mid-training) optimizer
    assert weights_equal(model.get_weights(), before)  # apply=False leaves the model alone
    after_state = model.optimizer.state_dict()
    assert after_state["iterations"] == opt_state["iterations"]
    for slot, arrays in opt_state["slots"].items():
        for name, arr in arrays.items():
            np.testing.assert_array_equal(after_state["slots"][slot][name], arr)
    assert e.update.t == opt_state["iterations"] + 1
    np.testing.assert_array_equal(
        e.update["dense_0/W"].slots_before["m"], opt_state["slots"]["m"]["dense_0/W"]
    )
    loss_real = real_step(model, x, y)
    assert e.loss_after == pytest.approx(loss_real, rel=1e-6)
    for p in e.update.params:  # the same arithmetic in the same order: bit for bit
        np.testing.assert_array_equal(p.after, model.get_weights()[p.name])


def test_dropout_step_uses_the_next_mask_of_the_real_model():
    model, (x, y) = trained_model(dropout=0.5)
    e = explain_step(model, x, y)
    dropout = model.layers[1]
    real_step(model, x, y)
    for p in e.update.params:
        np.testing.assert_array_equal(p.after, model.get_weights()[p.name])
    assert any("dropout mask" in n for n in e.notes)
    # the loss after the update reuses exactly the mask the real step drew: rebuild that mask
    # from the real step's first forward pass (the same random stream as the explained step)
    twin, _ = trained_model(dropout=0.5)
    twin.forward(x, training=True)
    mask = (twin.layers[1]._scale != 0).astype(np.float32)
    dropout.fixed_mask = mask
    expected = model.loss(model.forward(x, training=True), y)[0]
    assert e.loss_after == pytest.approx(expected, rel=1e-12)
    assert 0 < mask.mean() < 1


def test_explain_runs_train_step_on_the_textbook_path(monkeypatch):
    from lucidnet.glassbox import explain as explain_module

    calls = []
    real_train_step = explain_module.train_step

    def spy(model, xb, yb, loss, optimizer, sample_weight=None, *, fast=True):
        calls.append((model, fast))
        return real_train_step(model, xb, yb, loss, optimizer, sample_weight, fast=fast)

    monkeypatch.setattr(explain_module, "train_step", spy)
    model = tiny_model()
    explain_step(model, X1[0], T1[0], loss="mse", optimizer="sgd")
    assert len(calls) == 1 and calls[0][1] is False and calls[0][0] is not model
    explain_step(model, X1[0], T1[0], loss="mse", optimizer="sgd", apply=True)
    assert len(calls) == 2 and calls[1][0] is model


def test_recording_leaves_no_trace_on_the_model():
    model, (x, y) = trained_model(batchnorm=True, dropout=0.2)
    explain_step(model, x, y, apply=True)
    assert model.observers == []
    # a step that fails half-way (BatchNorm cannot train on one sample) removes it too
    with pytest.raises(ValueError, match="at least 2 samples"):
        explain_step(model, x[0], y[0], apply=True)
    assert model.observers == []
    assert all("forward" not in vars(layer) for layer in model.layers)


def test_apply_true_changes_the_model_like_a_real_step():
    model, (x, y) = trained_model()
    twin = model.copy()
    e = explain_step(model, x, y, apply=True)
    real_step(twin, x, y)
    assert e.applied
    assert weights_equal(model.get_weights(), twin.get_weights())
    assert model.optimizer.iterations == twin.optimizer.iterations


def test_text_and_dict_outputs():
    model = tiny_model(dtype="float32")
    e = explain_step(model, X1[0], T1[0], loss="mse", optimizer=ln.SGD(lr=0.5, momentum=0.9))
    text = e.to_text()
    for part in [
        "1. Forward pass",
        "2. Loss",
        "3. Backward pass",
        "4. Update",
        "5. Result",
        "z = x W + b",
        "a = sigmoid(z)",
        "dL/dz = dL/da * f'(z)",
        "b = 0.9 b_old + g",
    ]:
        assert part in text
    assert f"{e.loss_after:.6g}" in text
    d = json.loads(json.dumps(e.to_dict()))
    assert d["batch_size"] == 1
    np.testing.assert_allclose(d["forward"][0]["z"], e.forward[0].z)
    assert d["update"]["params"][0]["name"] == "dense_0/W"
    assert d["loss_after"] == pytest.approx(e.loss_after)


def test_large_layers_are_summarised():
    model = ln.Sequential([ln.Dense(40, activation="relu"), ln.Dense(3)])
    model.build((30,), seed=0)
    x = np.random.default_rng(0).normal(size=(4, 30))
    e = explain_step(model, x, [0, 1, 2, 1], loss="cross_entropy", optimizer="sgd")
    text = e.to_text()
    assert "shape (30, 40), norm" in text and "largest:" in text
    w = e.to_dict()["forward"][0]["params"]["W"]
    assert w["shape"] == [30, 40]
    assert w["norm"] == pytest.approx(np.linalg.norm(model.get_weights()["dense_0/W"]), rel=1e-5)
    big = np.abs(model.get_weights()["dense_0/W"]).max()
    assert abs(w["largest"][0]["value"]) == pytest.approx(big, rel=1e-6)


def test_format_array_full_and_summary():
    assert format_array(np.array([1.5, -2.0])) == "[ 1.5, -2. ]"
    text = format_array(np.arange(100.0).reshape(10, 10), max_entries=16)
    assert text.startswith("shape (10, 10)") and "[9, 9]=99" in text


def test_errors_name_the_argument():
    model = ln.Sequential([ln.Dense(2), ln.Dense(1)])
    with pytest.raises(ValueError, match="not built"):
        explain_step(model, [1.0, 2.0], 1.0, loss="mse")
    model = tiny_model()
    with pytest.raises(ValueError, match="needs a loss"):
        explain_step(model, [1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="x must be one sample"):
        explain_step(model, [[1.0, 2.0, 3.0]], [1.0], loss="mse")
    with pytest.raises(TypeError, match="model must be"):
        explain_step("model", [1.0, 2.0], 1.0, loss="mse")


# ---- the inputs by name, and which inputs move the predictions ------------------------------


def named_model() -> tuple[ln.Sequential, np.ndarray, list[str]]:
    model = ln.Sequential([ln.Dense(6, activation="tanh"), ln.Dense(3)], dtype="float64")
    model.build((20,), seed=0)
    x = np.zeros((1, 20))
    x[0, [2, 7, 15]] = [1.0, -0.5, 2.0]  # a sparse row: three non-zero inputs
    names = [f"feature {i}" for i in range(20)]
    names[15], names[2] = "airline=United", "text:delay"
    return model, x, names


def test_step_names_the_inputs():
    model, x, names = named_model()
    e = explain_step(model, x, [1], loss="cross_entropy", optimizer="sgd", feature_names=names)
    rows = e.inputs()
    assert [r["name"] for r in rows] == ["airline=United", "text:delay", "feature 7"]  # by |x|
    assert [r["value"] for r in rows] == [2.0, 1.0, -0.5]
    d_input = e.layer("dense_0")[1].d_input[0]  # dL/dx of the step's own backward pass
    assert [r["d_loss_d_input"] for r in rows] == pytest.approx(d_input[[15, 2, 7]].tolist())
    text = e.to_text()
    assert "0. The input: 3 of 20 features of the sample are non-zero" in text
    assert "airline=United" in text.split("1. Forward pass")[0]
    # the first layer's W (20 x 6): its largest entries by feature, not by row index
    w = model.get_weights()["dense_0/W"]
    i, j = np.unravel_index(np.abs(w).argmax(), w.shape)
    assert f"[{names[i]}, {j}]=" in text
    d = json.loads(json.dumps(e.to_dict()))
    assert "feature_names" not in d  # not the whole list (thousands for TF-IDF text)
    assert [r["name"] for r in d["inputs"]] == ["airline=United", "text:delay", "feature 7"]
    plain = explain_step(model, x, [1], loss="cross_entropy", optimizer="sgd")
    assert "0. The input" not in plain.to_text()
    assert plain.inputs()[0]["name"] == "input 15"
    # the first layer's dL/dx (1 x 20, summarised) names its largest entries by feature, not
    # by layer name (a local variable once shadowed the feature names)
    g = e.layer("dense_0")[1].d_input[0]
    dx_row = [line for line in text.splitlines() if "w.r.t. the input; not used" in line][0]
    assert f"[0, {names[int(np.abs(g).argmax())]}]=" in dx_row and "dense_" not in dx_row


def test_feature_names_are_checked():
    model, x, names = named_model()
    with pytest.raises(ValueError, match=r"feature_names must have one name per input \(20\)"):
        explain_step(model, x, [1], loss="cross_entropy", feature_names=names[:-1])
    with pytest.raises(TypeError, match="feature_names must be a list of str"):
        explain_step(model, x, [1], loss="cross_entropy", feature_names="airline")
    with pytest.raises(TypeError, match="feature_names must be a list of str"):
        explain_step(model, x, [1], loss="cross_entropy", feature_names=[1] * 20)


def test_feature_effects_of_a_linear_model_are_weight_times_input():
    """For y = x w + b, setting x_j to 0 changes the prediction by exactly w_j x_j."""
    rng = np.random.default_rng(1)
    model = ln.Sequential([ln.Dense(1)], dtype="float64")
    model.build((5,), seed=0)
    model.loss = ln.losses.get("mse")
    w = np.array([[2.0], [-1.0], [0.5], [0.0], [3.0]])
    model.set_weights({"dense_0/W": w, "dense_0/b": np.array([0.3])})
    X = rng.normal(size=(50, 5))
    X[:, 4] = 0.0  # never non-zero: no effect whatever its weight
    X[:, 3] = 1.0  # constant: a bias for the model, flagged
    X[::2, 1] = 0.0
    fx = feature_effects(model, X, ["a", "b", "c", "d", "e"])
    by_name = {e["name"]: e for e in fx.effects}
    for j, name in enumerate("abcde"):
        contrib = w[j, 0] * X[:, j]
        assert by_name[name]["mean_abs"] == pytest.approx(np.abs(contrib).mean())
        assert by_name[name]["mean"] == pytest.approx(contrib.mean())
        assert by_name[name]["rows_nonzero"] == np.count_nonzero(X[:, j])
    assert [e["constant"] for e in fx.effects if e["name"] in "de"] == [True, False]
    assert fx.effects[0]["name"] == "a" and fx.unit == "prediction" and fx.rows == 50
    # d (weight 0) moves nothing but is present; e is never non-zero: left out
    assert [e["name"] for e in fx.top(10)] == ["a", "b", "c", "d"]
    assert "a " in fx.to_text()


def test_feature_effects_of_a_classifier_follow_the_predicted_class():
    model, _, names = named_model()
    model.loss = ln.losses.get("cross_entropy")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 20)) * (rng.random((30, 20)) < 0.3)  # sparse rows
    fx = feature_effects(model, X, names, max_rows=25, seed=3)
    assert fx.rows == 25 and fx.unit == "probability of the predicted class"
    pick = np.sort(np.random.default_rng(3).choice(30, 25, replace=False))
    Xs = X[pick]
    p = model.predict(Xs)
    c = p.argmax(axis=1)
    j = 15
    Xm = Xs.copy()
    Xm[:, j] = 0.0
    effect = p[np.arange(25), c] - model.predict(Xm)[np.arange(25), c]
    e = next(e for e in fx.effects if e["name"] == "airline=United")
    assert e["mean_abs"] == pytest.approx(np.abs(effect).mean())
    assert e["mean"] == pytest.approx(effect.mean())
    with pytest.raises(ValueError, match="X must have 20 columns"):
        feature_effects(model, X[:, :5])
