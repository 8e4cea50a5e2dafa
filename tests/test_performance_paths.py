"""End-to-end properties of ``fit``'s fast path that per-layer tests cannot show.

``fit`` runs each layer's fast pair (``fast_forward`` / ``fast_backward``: workspaces reused
from one mini-batch to the next, overwritten gradients, no dL/d(input) for the first layer),
``Loss.fast`` and the optimizer's folded update. tests/test_fast_layers.py proves each layer's
fast pair equal to its textbook pair; the tests here pin what only whole runs show: the weights
after ``fit`` equal an independent float64 reference written out here (batches of several
sizes, a second ``fit`` with another batch size), workspaces exist only during ``fit`` and are
freed after it (also after an exception), arrays returned outside ``fit`` are never
overwritten, a float32 step stays float32, the training data is not copied, and memory does
not grow across epochs. The reference runs are repeated on both fast paths (the ``jit``
fixture, tests/_jit.py): NumPy only, and with the compiled kernels. No test measures time.
"""

from __future__ import annotations

import tracemalloc

import _jit
import numpy as np
import pytest

import lucidnet as ln
from lucidnet import kernels
from lucidnet.activations import FAST_MIN_SIZE

jit_fixture = _jit.JIT  # the jit and calls fixtures (tests/_jit.py)
calls_fixture = _jit.CALLS

# -- a plain float64 reference of the whole training step ------------------------------------------


def reference_training(
    weights: list[tuple[np.ndarray, np.ndarray]],
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    epochs: int,
    lr: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mini-batch training of a ReLU MLP (linear output, softmax cross-entropy, Adam in PyTorch's
    form), in float64, without shuffling, written as plainly as possible."""
    W = [w.astype(np.float64) for w, _ in weights]
    b = [bb.astype(np.float64) for _, bb in weights]
    params = W + b
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    X = X.astype(np.float64)
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            x, labels = X[start : start + batch_size], y[start : start + batch_size]
            n = len(x)
            acts = [x]
            for i in range(len(W)):
                z = acts[-1] @ W[i] + b[i]
                acts.append(np.maximum(z, 0) if i < len(W) - 1 else z)
            logits = acts[-1]
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            d = p.copy()
            d[np.arange(n), labels] -= 1
            d /= n
            gW, gb = [None] * len(W), [None] * len(W)
            for i in reversed(range(len(W))):
                gW[i] = acts[i].T @ d
                gb[i] = d.sum(axis=0)
                d = (d @ W[i].T) * (acts[i] > 0)
            t += 1
            for k, g in enumerate(gW + gb):
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                m_hat = m[k] / (1 - b1**t)
                v_hat = v[k] / (1 - b2**t)
                params[k] -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return [(params[i], params[len(W) + i]) for i in range(len(W))]


def mlp(hidden=(16, 8), classes=3, dtype="float32") -> ln.Sequential:
    layers = [ln.Dense(h, activation="relu") for h in hidden] + [ln.Dense(classes)]
    return ln.Sequential(layers, dtype=dtype)


def dense_weights(model: ln.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(layer.params["W"].copy(), layer.params["b"].copy()) for layer in model.layers]


def toy_data(n: int = 70, d: int = 6, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, :classes] + 0.3 * rng.standard_normal((n, classes))).argmax(axis=1)
    return X, y


# -- fit against the references --------------------------------------------------------------------


@pytest.mark.parametrize(
    "hidden, batch_size",
    [((16, 8), 16), ((16, 8), 70), ((16, 8), 1), ((80, 8), 64)],
    ids=["16-8-batch16", "16-8-full-batch", "16-8-sgd", "80-8-batch64"],
)
def test_fit_matches_plain_float64_reference(hidden, batch_size, jit):
    """Uneven batches (70 = 4 x 16 + 6) exercise workspaces of two batch sizes in every epoch;
    80 units x 64 rows is large enough for ReLU's own fast code (FAST_MIN_SIZE), and the last
    batch of 6 rows hands it to the textbook pair in the same epoch."""
    X, y = toy_data()
    if hidden[0] == 80:
        assert batch_size * 80 >= FAST_MIN_SIZE > 6 * 80  # both ReLU paths in one epoch
    model = mlp(hidden)
    model.build((X.shape[1],), seed=1)
    start = dense_weights(model)
    epochs = 3 if batch_size > 1 else 1
    model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-3),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=False,
        verbose=0,
    )
    expected = reference_training(start, X, y, batch_size, epochs)
    for (W, b), (W_ref, b_ref) in zip(dense_weights(model), expected):
        # float32 training vs a float64 reference: agreement to a small fraction of one Adam
        # step (lr = 1e-3) after every update
        np.testing.assert_allclose(W, W_ref, rtol=1e-4, atol=2e-6)
        np.testing.assert_allclose(b, b_ref, rtol=1e-4, atol=2e-6)
    # and the weights really moved: the comparison is not between two untouched copies
    assert not np.allclose(dense_weights(model)[0][0], start[0][0], atol=1e-4)


def test_fit_twice_with_other_batch_sizes_matches_reference(jit):
    """Workspaces from an earlier fit with another batch size never leak into a later one."""
    X, y = toy_data(n=40)
    model = mlp()
    model.build((X.shape[1],), seed=5)
    start = dense_weights(model)
    model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-3),
        epochs=1,
        batch_size=12,
        shuffle=False,
        verbose=0,
    )
    after_first = reference_training(start, X, y, 12, 1)
    for (W, _), (W_ref, _) in zip(dense_weights(model), after_first):
        np.testing.assert_allclose(W, W_ref, rtol=1e-4, atol=2e-6)
    # a new optimizer (fresh Adam state) and batch size 7: compare with the reference from here
    middle = dense_weights(model)
    model.fit(X, y, optimizer=ln.Adam(lr=1e-3), epochs=2, batch_size=7, shuffle=False, verbose=0)
    for (W, b), (W_ref, b_ref) in zip(dense_weights(model), reference_training(middle, X, y, 7, 2)):
        np.testing.assert_allclose(W, W_ref, rtol=1e-4, atol=2e-6)
        np.testing.assert_allclose(b, b_ref, rtol=1e-4, atol=2e-6)


def _workspace_names(part: ln.Layer) -> list[str]:
    return sorted(key for key, _ in part.__dict__.get("_buffers", {}))


def test_workspaces_exist_only_during_fit(jit):
    X, y = toy_data(n=128)
    model = mlp(hidden=(80, 8))  # 64 x 80: the first ReLU runs its own fast code
    seen = {}

    class Peek(ln.Callback):
        def on_batch_end(self, batch, logs):
            for layer in self.model.layers:
                seen[layer.name] = _workspace_names(layer)
                for act in layer.sublayers():
                    seen[f"{layer.name}.relu"] = _workspace_names(act)

    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=64, verbose=0, callbacks=[Peek()])
    # z and the column of ones for the bias gradient in every layer; dx except in the first
    # layer; no dW / db: fit overwrites the gradients
    first, second, last = model.layers
    if jit == "kernels":  # ReLU's kernels add the bias and sum its gradient, at any size
        assert seen[first.name] == ["z"]
        assert seen[second.name] == ["dx", "z"]
        assert seen[f"{first.name}.relu"] == seen[f"{second.name}.relu"] == ["dx", "out"]
    else:
        assert seen[first.name] == ["ones", "z"]
        assert seen[second.name] == ["dx", "ones", "z"]
        assert seen[f"{first.name}.relu"] == ["dx", "mask", "out", "zeros"]
        assert seen[f"{second.name}.relu"] == []  # 64 x 8 elements: the textbook pair
    assert seen[last.name] == ["dx", "ones", "z"]
    for layer in model.layers:
        for part in (layer, *layer.sublayers()):
            assert "_buffers" not in part.__dict__  # freed at the end of fit


def test_workspaces_are_released_after_an_exception_in_fit(monkeypatch):
    monkeypatch.setattr(kernels._State, "mode", "0")  # the NumPy path's workspaces, listed below
    X, y = toy_data(n=128)
    model = mlp(hidden=(80, 8))
    seen = []

    class Boom(ln.Callback):
        def on_batch_end(self, batch, logs):
            seen.append(_workspace_names(self.model.layers[0].activation))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.fit(
            X, y, loss="cross_entropy", epochs=1, batch_size=64, verbose=0, callbacks=[Boom()]
        )
    assert seen == [["dx", "mask", "out", "zeros"]]
    for layer in model.layers:
        for part in (layer, *layer.sublayers()):
            assert "_buffers" not in part.__dict__


def test_outputs_kept_by_the_user_are_never_overwritten():
    """Outside fit every forward / backward returns new arrays, training mode included."""
    X, y = toy_data(n=20)
    model = mlp()
    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=5, verbose=0)
    first = model.forward(X[:5], training=True)
    kept = first.copy()
    second = model.forward(X[5:10], training=True)
    assert second is not first
    np.testing.assert_array_equal(first, kept)
    dx1 = model.backward(np.ones_like(second))
    dx1_kept = dx1.copy()
    model.backward(2 * np.ones_like(second))
    np.testing.assert_array_equal(dx1, dx1_kept)


def _float_arrays(part: ln.Layer):
    """(name, array) for every floating-point array a layer holds: cached intermediates,
    workspaces, parameters, gradients and state."""
    for name, value in part.__dict__.items():
        if isinstance(value, np.ndarray):
            yield name, value
    for (key, _), buf in part.__dict__.get("_buffers", {}).items():
        yield f"buffer.{key}", buf
    for kind in ("params", "grads", "state"):
        for key, value in getattr(part, kind).items():
            yield f"{kind}.{key}", value


def _dtypes(model: ln.Sequential) -> dict[str, np.dtype]:
    """The dtype of every floating-point array the model and its optimizer hold."""
    seen = {}
    for layer in model.layers:
        for part in (layer, *layer.sublayers()):
            for name, arr in _float_arrays(part):
                if arr.dtype.kind == "f":
                    seen[f"{part.name or type(part).__name__}.{name}"] = arr.dtype
    for slot, arr in model.optimizer.slots.items():
        seen[f"{type(model.optimizer).__name__}.{slot}"] = arr.dtype
    flat_p, flat_g, _ = model.flat_parameters()
    seen["params"], seen["grads"] = flat_p.dtype, flat_g.dtype
    return seen


def test_a_float32_training_step_stays_float32(jit):
    """No silent float64 upcast anywhere in the step (a float64 array would halve the speed),
    on the fast path of every hidden activation and BatchNorm, and on the textbook path."""
    X, y = toy_data(n=128)
    hidden = ["relu", "gelu", "elu", "tanh", "sigmoid", "leaky_relu"]
    model = ln.Sequential(
        [ln.Dense(80, activation="relu"), ln.BatchNorm()]
        + [ln.Dense(80, activation=a) for a in hidden[1:]]
        + [ln.Dense(3)]
    )
    seen = {}

    class Inspect(ln.Callback):
        def on_batch_end(self, batch, logs):
            seen.update(_dtypes(self.model))

    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=64, verbose=0, callbacks=[Inspect()])
    for a in hidden:  # each activation ran its own fast code (its workspaces are listed)
        assert any(k.startswith(f"{type(ln.activations.get(a)).__name__}.buffer.") for k in seen), a
    assert len(seen) > 50
    assert {k: v for k, v in seen.items() if v != np.float32} == {}
    # the textbook step (what explain shows) too
    _, out = ln.train_step(model, X[:64], y[:64], model.loss, model.optimizer, fast=False)
    assert out.dtype == np.float32
    textbook = _dtypes(model)
    assert len(textbook) > 40
    assert {k: v for k, v in textbook.items() if v != np.float32} == {}


def test_fit_does_not_copy_float32_training_data():
    """fit uses C-contiguous float32 X as it is: a copy would double the memory of big data."""
    X, y = toy_data(n=40)
    model = mlp()
    seen = {}

    class Inspect(ln.NaNGuard):
        def on_train_begin(self, logs=None):
            seen["inputs"] = self.inputs

    guard = Inspect()
    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=8, verbose=0, callbacks=[guard])
    assert seen["inputs"] is X
    assert guard.inputs is None  # released at the end of fit
    assert model._check_X(X) is X


def test_memory_does_not_grow_across_epochs():
    X, y = toy_data(n=256, d=20)
    model = mlp(hidden=(32,))
    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=32, verbose=0)  # warm-up
    traced: list[int] = []

    class Trace(ln.Callback):
        def on_epoch_end(self, epoch, logs):
            traced.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        model.fit(X, y, epochs=8, batch_size=32, verbose=0, callbacks=[Trace()])
        model.fit(X, y, epochs=1, batch_size=32, verbose=0)
        after_fit = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # from the second epoch on, only the history grows: 8 per-step losses and a few per-epoch
    # numbers (~1 KB per epoch); a leaked batch-sized array would be >= 8 KB per epoch
    per_epoch = (traced[-1] - traced[1]) / (len(traced) - 2)
    assert per_epoch < 4096, traced
    # and the workspaces are freed when fit returns: nothing batch-sized stays allocated
    assert after_fit - traced[0] < 64 * 1024, (traced, after_fit)
