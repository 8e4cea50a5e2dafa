"""The optimised training paths compute what the straightforward ones compute.

``fit`` takes shortcuts that the public, step-by-step API does not: layers write intermediate
arrays into workspaces reused from one mini-batch to the next (``Layer._workspace``), the first
layer skips dL/d(input) (``backward(input_grad=False)``), the loss skips re-validating targets
(``validate=False``), ReLU's backward multiplies by a mask, and Adam folds its bias corrections
into fewer passes. Each test compares a shortcut with a plain reference written out here, to
float32 tolerance. No test measures time.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import lucidnet as ln

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


def manual_training(model: ln.Sequential, X, y, batch_size: int, epochs: int, lr: float = 1e-3):
    """The step-by-step public API, outside ``fit``: no workspaces, full backward, validating
    loss; batches in order (as ``fit(shuffle=False)``)."""
    loss, opt = ln.CrossEntropy(), ln.Adam(lr=lr)
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            xb, yb = X[start : start + batch_size], y[start : start + batch_size]
            logits = model.forward(xb, training=True)
            _, grad = loss(logits, yb)
            model.zero_grad()
            model.backward(grad)
            opt.step(model)


# -- fit against the references --------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [16, 70, 1])
def test_fit_matches_plain_float64_reference(batch_size):
    """Uneven batches (70 = 4 x 16 + 6) exercise workspaces of two batch sizes in every epoch."""
    X, y = toy_data()
    model = mlp()
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


def test_fit_matches_step_by_step_public_api():
    """fit's shortcuts (workspaces, no input gradient, no target re-validation) change nothing."""
    X, y = toy_data(n=53)
    fast, slow = mlp(), mlp()
    fast.build((X.shape[1],), seed=3)
    slow.build((X.shape[1],), seed=3)
    fast.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=ln.Adam(lr=1e-2),
        epochs=4,
        batch_size=8,
        shuffle=False,
        verbose=0,
    )
    manual_training(slow, X, y, batch_size=8, epochs=4, lr=1e-2)
    for (W, b), (W2, b2) in zip(dense_weights(fast), dense_weights(slow)):
        np.testing.assert_allclose(W, W2, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b, b2, rtol=1e-6, atol=1e-7)


def test_fit_twice_with_other_batch_sizes_matches_reference():
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


def test_workspaces_exist_only_during_fit():
    X, y = toy_data(n=32)
    model = mlp()
    seen = {}

    class Peek(ln.Callback):
        def on_batch_end(self, batch, logs):
            for layer in self.model.layers:
                seen[layer.name] = sorted(k for k, _ in layer._buffers)

    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=8, verbose=0, callbacks=[Peek()])
    # z and the column of ones for the bias gradient in every layer; dx except in the first
    # layer; no dW / db: fit overwrites the gradients
    first, *rest = model.layers
    assert seen[first.name] == ["ones", "z"]
    assert all(seen[layer.name] == ["dx", "ones", "z"] for layer in rest)
    for layer in model.layers:
        for part in (layer, *layer.sublayers()):
            assert "_buffers" not in part.__dict__  # freed at the end of fit


def test_workspaces_are_released_after_an_exception_in_fit():
    X, y = toy_data(n=30)
    model = mlp()

    class Boom(ln.Callback):
        def on_batch_end(self, batch, logs):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=8, verbose=0, callbacks=[Boom()])
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


# -- the individual shortcuts ----------------------------------------------------------------------


def test_fast_backward_without_input_grad_gives_the_same_parameter_gradients():
    X, _ = toy_data(n=9)
    model = mlp(dtype="float64")
    model.build((X.shape[1],), seed=0)
    dy = np.random.default_rng(1).standard_normal((9, 3))
    model.forward(X, training=True)
    model.zero_grad()
    dx = model.backward(dy)
    full = model.flat_parameters()[1].copy()
    model.fast_forward(X)
    model.fast_backward(dy)  # the first layer skips dL/dx
    np.testing.assert_allclose(model.flat_parameters()[1], full, rtol=1e-12, atol=1e-15)
    assert dx.shape == X.shape
    first = model.layers[0]
    first.fast_forward(X)
    assert first.fast_backward(np.ones((9, first.units)), need_input_grad=False) is None


def test_textbook_backward_accumulates():
    X, _ = toy_data(n=9)
    model = mlp(dtype="float64")
    model.build((X.shape[1],), seed=0)
    dy = np.random.default_rng(2).standard_normal((9, 3))
    model.forward(X, training=True)
    model.zero_grad()
    model.backward(dy)
    once = model.flat_parameters()[1].copy()
    model.backward(dy)
    np.testing.assert_allclose(model.flat_parameters()[1], 2 * once, rtol=1e-12)


def test_fast_backward_overwriting_equals_zero_grad_then_backward():
    """fast_backward (what fit uses) == zero_grad() + backward(), for Dense with L1/L2
    penalties and for layers without a fast path of their own (BatchNorm)."""
    rng = np.random.default_rng(3)
    model = ln.Sequential(
        [ln.Dense(5, activation="tanh", l1=0.01, l2=0.02), ln.BatchNorm(), ln.Dense(2)],
        dtype="float64",
    )
    model.build((4,), seed=0)
    x, dy = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    model.forward(x, training=True)
    model.zero_grad()
    model.backward(dy)
    expected = model.flat_parameters()[1].copy()
    for _, _, grad in model.parameters():
        grad[...] = 7.0  # stale gradients that must not leak in
    model.fast_forward(x)
    model.fast_backward(dy)
    np.testing.assert_allclose(model.flat_parameters()[1], expected, rtol=1e-12, atol=1e-15)


def test_dense_subclass_with_its_own_backward_still_trains():
    """Custom layers keep the plain contract backward(dy); fit zeroes their gradients."""
    calls = []

    class MyDense(ln.Dense):
        def backward(self, dy):
            calls.append(dy.shape)
            return super().backward(dy)

    X, y = toy_data(n=24)
    model = ln.Sequential([MyDense(8, activation="relu"), ln.Dense(3)])
    model.build((X.shape[1],), seed=0)
    reference = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    reference.build((X.shape[1],), seed=0)
    for m in (model, reference):
        m.fit(X, y, loss="cross_entropy", epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert len(calls) == 6
    for (W, b), (W2, b2) in zip(dense_weights(model), dense_weights(reference)):
        np.testing.assert_allclose(W, W2, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b, b2, rtol=1e-6, atol=1e-7)


def test_relu_backward_mask_matches_where_reference():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 5)).astype(np.float32)
    z[0, :3] = 0.0  # at exactly 0 the gradient is 0 (as in PyTorch)
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    relu = ln.ReLU()
    relu.forward(z, training=True)
    dx = relu.backward(dy)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, np.where(z > 0, dy, 0))


def test_cross_entropy_without_validation_is_identical():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 4)).astype(np.float32) * 5
    labels = rng.integers(0, 4, 7)
    loss = ln.CrossEntropy()
    v1, g1 = loss(logits, labels)
    v2, g2 = loss(logits, labels, validate=False)
    assert v1 == v2
    np.testing.assert_array_equal(g1, g2)
    # and against the textbook formula in float64
    z = logits.astype(np.float64)
    z_max = z.max(axis=1, keepdims=True)
    log_p = z - z_max - np.log(np.exp(z - z_max).sum(axis=1, keepdims=True))
    assert v1 == pytest.approx(-log_p[np.arange(7), labels].mean(), rel=1e-6)
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(g1, (np.exp(log_p) - onehot) / 7, atol=1e-7)


def test_adam_folded_update_matches_textbook_formula():
    """Adam moves sqrt(1 - b2^t) out of the denominator; the values are the same."""
    model = ln.Sequential([ln.Dense(3)], dtype="float64")
    model.build((4,), seed=0)
    p, g, _ = model.flat_parameters()
    rng = np.random.default_rng(0)
    opt = ln.Adam(lr=0.01, eps=1e-3)  # a large eps makes its placement matter
    ref_p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t in range(1, 6):
        g[:] = rng.standard_normal(g.size) * 10.0 ** rng.integers(-4, 2)
        opt.step(model)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref_p -= 0.01 / (1 - 0.9**t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999**t) + 1e-3)
        np.testing.assert_allclose(p, ref_p, rtol=1e-12, atol=1e-15)


def test_a_float32_training_step_stays_float32():
    """No silent float64 upcast anywhere in the step (a float64 array would halve the speed)."""
    X, y = toy_data(n=32)
    model = mlp()
    seen = {}

    class Inspect(ln.Callback):
        def on_batch_end(self, batch, logs):
            for layer in self.model.layers:
                for name in ("_x", "_z"):
                    seen[f"{layer.name}.{name}"] = getattr(layer, name).dtype
                if layer.activation is not None:
                    seen[f"{layer.name}.relu_out"] = layer.activation._out.dtype
                for key, buf in layer.__dict__.get("_buffers", {}).items():
                    seen[f"{layer.name}.buffer.{key[0]}"] = buf.dtype
            for slot, arr in self.model.optimizer.slots.items():
                seen[f"adam.{slot}"] = arr.dtype
            flat_p, flat_g, _ = self.model.flat_parameters()
            seen["params"], seen["grads"] = flat_p.dtype, flat_g.dtype

    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=8, verbose=0, callbacks=[Inspect()])
    assert len(seen) > 10
    assert {k: v for k, v in seen.items() if v != np.float32} == {}
    logits = model.forward(X[:4], training=True)
    _, grad = model.loss(logits, y[:4], validate=False)
    assert grad.dtype == np.float32


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
