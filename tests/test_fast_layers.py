"""Every layer's fast pair (what ``fit`` runs) computes what its textbook pair computes.

For each case three copies of one layer are built from the same seed. Each step gives them the
same input and the same dL/d(output):

* the textbook copy runs ``forward(x, training=True)``, ``zero_grad()``, ``backward(dy)``;
* the fast copy runs ``fast_forward(x)``, ``fast_backward(dy)``, over gradients set to NaN first
  (stale gradients it must overwrite, not add to);
* a third copy runs the fast pair with ``need_input_grad=False`` (the model's first layer in
  ``fit``), which may return ``None`` or must return the same dL/dx;

then all three take the same update ``p -= 0.1 * g``. Over several steps their outputs, input
gradients, parameter gradients, parameters and state (BatchNorm's running statistics) must
agree, to float32 rounding in float32 and tightly in float64.

The cases are every layer in the ``LAYERS`` registry (a new layer is covered automatically, or
fails here asking for constructor arguments), ``Dense`` with every registered activation, with
penalties and without a bias, parametrised activations, ``Dropout`` (the copies draw the same
random stream), ``Embedding`` on integer ids with and without pooling and ``Flatten`` on 3-D
input. Batches are large enough that the fast methods run their own code (activations hand
arrays below ``FAST_MIN_SIZE`` elements to the textbook pair), and small enough to check that
hand-over. ``test_the_comparison_detects_a_wrong_fast_path`` shows that the check can fail.

``Dense`` with ReLU also runs with the compiled kernels (the ``jit`` fixture, tests/_jit.py): the
bias, the activation, its backward and the bias gradient fused into two loops, which must give
the textbook's bits.
"""

from __future__ import annotations

from collections.abc import Callable

import _jit
import numpy as np
import pytest

import lucidnet as ln
from lucidnet.activations import ACTIVATIONS, FAST_MIN_SIZE
from lucidnet.base import LAYERS, Layer

jit_fixture = _jit.JIT  # the jit and calls fixtures (tests/_jit.py)
calls_fixture = _jit.CALLS

LARGE_BATCH, SMALL_BATCH = 64, 5
FEATURES = 80  # 64 x 80 = 5,120 elements per activation: above FAST_MIN_SIZE
UNITS = 72  # Dense outputs: 64 x 72 = 4,608
STEPS = 4
LR = 0.1
#: largest |fast - textbook| allowed, relative to the largest |textbook| value of the array
TOL = {np.float32: 1e-5, np.float64: 1e-12}

# Constructor arguments and per-sample inputs of registered layers that cannot be built with
# no arguments on (batch, FEATURES) floats; every other registered layer is built that way.
ARGS: dict[str, dict] = {
    "Dense": {"units": UNITS},
    "Dropout": {"rate": 0.3},
    "Embedding": {"input_dim": 50, "output_dim": UNITS},
    "Conv1D": {"filters": 8, "kernel_size": 3, "activation": "relu"},
    "Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"},
    "Reshape": {"target_shape": (8, 10)},
}
INPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "Flatten": ("float", (8, 10)),  # 3-D input (batch, 8, 10)
    "Embedding": ("ids", (12,)),
    "Conv1D": ("float", (20, 4)),  # (batch, length, channels)
    "Conv2D": ("float", (9, 8, 3)),  # (batch, height, width, channels)
    **dict.fromkeys(
        ("MaxPool1D", "MaxPooling1D", "AvgPool1D", "AveragePooling1D"), ("float", (20, 4))
    ),
    **dict.fromkeys(
        ("MaxPool2D", "MaxPooling2D", "AvgPool2D", "AveragePooling2D"), ("float", (9, 8, 3))
    ),
    "GlobalAveragePooling1D": ("float", (20, 4)),
    "GlobalAveragePooling2D": ("float", (9, 8, 3)),
}

Factory = Callable[[], Layer]


def _construct(cls: type[Layer], kwargs: dict) -> Layer:
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise TypeError(
            f"{cls.__name__} needs constructor arguments: add them to ARGS (and its input to "
            f"INPUTS) in tests/test_fast_layers.py ({error})"
        ) from error


def _registered_cases() -> list[tuple[str, Factory, str, tuple[int, ...]]]:
    cases = []
    for name in LAYERS.names():
        cls, kwargs = LAYERS.lookup(name), ARGS.get(name, {})
        kind, shape = INPUTS.get(name, ("float", (FEATURES,)))
        cases.append((name, lambda cls=cls, kw=kwargs: _construct(cls, kw), kind, shape))
    return cases


CASES = [
    *_registered_cases(),
    *[
        (f"Dense-{a}", lambda a=a: ln.Dense(UNITS, activation=a), "float", (FEATURES,))
        for a in ACTIVATIONS.names()
    ],
    (
        "Dense-l1-l2",
        lambda: ln.Dense(UNITS, activation="tanh", l1=0.01, l2=0.02),
        "float",
        (FEATURES,),
    ),
    ("Dense-nobias", lambda: ln.Dense(UNITS, "relu", use_bias=False), "float", (FEATURES,)),
    ("Dense-LeakyReLU(0.2)", lambda: ln.Dense(UNITS, ln.LeakyReLU(0.2)), "float", (FEATURES,)),
    ("Dense-ELU(0.7)", lambda: ln.Dense(UNITS, ln.ELU(0.7)), "float", (FEATURES,)),
    ("LeakyReLU(0.2)", lambda: ln.LeakyReLU(alpha=0.2), "float", (FEATURES,)),
    ("ELU(0.7)", lambda: ln.ELU(alpha=0.7), "float", (FEATURES,)),
    ("BatchNorm(0.8)", lambda: ln.BatchNorm(momentum=0.8, eps=1e-3), "float", (FEATURES,)),
    ("Dropout(0.5)", lambda: ln.Dropout(0.5), "float", (FEATURES,)),
    ("Embedding-no-pooling", lambda: ln.Embedding(50, 16, pooling=None), "ids", (12,)),
    (
        "Conv2D-stride-same-dilation",
        lambda: ln.Conv2D(6, (3, 2), stride=2, padding="same", dilation=(1, 2), activation="tanh"),
        "float",
        (9, 8, 3),
    ),
    ("Conv2D-pad1-linear", lambda: ln.Conv2D(5, 3, padding=1), "float", (7, 6, 2)),
    (
        "Conv1D-l1-l2-nobias",
        lambda: ln.Conv1D(6, 4, stride=3, use_bias=False, l1=0.01, l2=0.02),
        "float",
        (20, 4),
    ),
    ("MaxPool2D-overlap-same", lambda: ln.MaxPool2D(3, 2, padding="same"), "float", (9, 8, 3)),
    ("AvgPool1D-same", lambda: ln.AvgPool1D(3, 2, padding="same"), "float", (20, 4)),
    ("BatchNorm-channels", lambda: ln.BatchNorm(momentum=0.8), "float", (6, 5, 3)),
]


def _inputs(kind: str, shape: tuple[int, ...], batch: int, dtype, rng) -> np.ndarray:
    if kind == "ids":
        ids = rng.integers(0, 50, size=(batch, *shape))
        ids[0] = 0  # an all-padding row
        ids[1, shape[0] // 2 :] = 0  # padding at the end of a row
        return ids
    x = (rng.standard_normal((batch, *shape)) * 2.0).astype(dtype)
    x.reshape(-1)[::11] = 0.0  # exact zeros: the kinks of ReLU, leaky ReLU and ELU
    return x


def _build(factory: Factory, shape: tuple[int, ...], dtype, seed: int) -> Layer:
    model = ln.Sequential([factory()], dtype=dtype)
    model.build(shape, seed=seed)  # parameters become views into one flat buffer, as in fit
    return model.layers[0]


def _update(layer: Layer) -> None:
    for key, p in layer.params.items():
        p -= LR * layer.grads[key]


def _assert_close(fast, textbook, dtype, what: str) -> None:
    fast, textbook = np.asarray(fast), np.asarray(textbook)
    assert fast.shape == textbook.shape, what
    assert fast.dtype == textbook.dtype, what
    finite = np.abs(textbook[np.isfinite(textbook)])
    scale = float(finite.max()) if finite.size else 0.0
    tol = TOL[np.dtype(dtype).type]
    np.testing.assert_allclose(fast, textbook, rtol=tol, atol=tol * scale, err_msg=what)


def _has_workspaces(layer: Layer) -> bool:
    return any("_buffers" in part.__dict__ for part in (layer, *layer.sublayers()))


def run_and_compare(
    factory: Factory,
    kind: str,
    shape: tuple[int, ...],
    dtype,
    batch: int = LARGE_BATCH,
    steps: int = STEPS,
    seed: int = 0,
) -> Layer:
    """Run ``steps`` training steps on the three copies, asserting agreement after each;
    return the fast copy."""
    textbook, fast, fast_no_dx = (_build(factory, shape, dtype, seed) for _ in range(3))
    rng = np.random.default_rng(seed + 1)
    for step in range(steps):
        x = _inputs(kind, shape, batch, dtype, rng)
        x_before = x.copy()
        out_t = textbook.forward(x, training=True)
        # dL/d(output) of a mean loss: the update then moves the weights by a few percent
        dy = (rng.standard_normal(out_t.shape) / batch).astype(dtype)
        textbook.zero_grad()
        dx_t = textbook.backward(dy)

        out_f = fast.fast_forward(x).copy()  # may be a workspace the next step overwrites
        for g in fast.grads.values():
            g.fill(np.nan)  # stale gradients: fast_backward must overwrite every one
        dx_f = fast.fast_backward(dy, need_input_grad=True)

        out_n = fast_no_dx.fast_forward(x).copy()
        for g in fast_no_dx.grads.values():
            g.fill(np.nan)
        dx_n = fast_no_dx.fast_backward(dy, need_input_grad=False)

        at = f"step {step}"
        np.testing.assert_array_equal(x, x_before, err_msg=f"{at}: the input was modified")
        for name, out in (("output", out_f), ("output (no dx)", out_n)):
            _assert_close(out, out_t, dtype, f"{at}: {name}")
        assert dx_f is not None, f"{at}: need_input_grad=True must return dL/dx"
        _assert_close(dx_f, dx_t, dtype, f"{at}: dL/dx")
        if dx_n is not None:
            _assert_close(dx_n, dx_t, dtype, f"{at}: dL/dx with need_input_grad=False")
        for copy in (fast, fast_no_dx):
            assert copy.grads.keys() == textbook.grads.keys()
            for key, g in textbook.grads.items():
                _assert_close(copy.grads[key], g, dtype, f"{at}: gradient {key}")
            for key, s in textbook.state.items():
                _assert_close(copy.state[key], s, dtype, f"{at}: state {key}")
        for layer in (textbook, fast, fast_no_dx):
            _update(layer)
        for copy in (fast, fast_no_dx):
            for key, p in textbook.params.items():
                _assert_close(copy.params[key], p, dtype, f"{at}: parameter {key}")
    return fast


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch", [LARGE_BATCH, SMALL_BATCH], ids=["large", "small"])
@pytest.mark.parametrize("factory, kind, shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_pair_equals_textbook_pair(factory, kind, shape, batch, dtype):
    fast = run_and_compare(factory, kind, shape, dtype, batch=batch)
    own_fast_path = any(
        type(part).fast_forward is not Layer.fast_forward for part in (fast, *fast.sublayers())
    )
    if own_fast_path and batch == LARGE_BATCH:
        # the comparison above really ran the layer's own fast code, not the textbook fallback
        assert _has_workspaces(fast)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_conv_relu_fast_pair_on_both_fast_paths(dtype, jit, calls):
    """A convolution hands its patch products to the activation's fused bias kernels as a
    (positions, filters) matrix, as Dense does: equal to the textbook pair with the kernels
    on and off."""
    run_and_compare(
        lambda: ln.Conv2D(8, 3, padding="same", activation="relu"), "float", (9, 8, 1), dtype
    )
    if jit == "kernels":
        assert {"bias_relu", "relu_backward_bias"} <= set(calls)


#: convolutions and poolings whose fast pair has compiled kernels (col2im of dL/dpatches; 2 x 2
#: max-pooling forward and backward), with the kernels each one must call
KERNEL_CASES = [
    ("Conv2D-c3", lambda: ln.Conv2D(5, 3, activation="tanh"), (9, 8, 3), {"add_windows"}),
    (
        "Conv2D-stride-dilation-same",
        lambda: ln.Conv2D(4, (3, 2), stride=(2, 1), dilation=(1, 2), padding="same"),
        (9, 8, 2),
        {"add_windows"},
    ),
    ("Conv1D-stride-pad", lambda: ln.Conv1D(6, 4, stride=3, padding=2), (20, 4), {"add_windows"}),
    # one input channel: the patches built transposed (one copy of a transposed view)
    ("Conv1D-c1", lambda: ln.Conv1D(3, 5, dilation=2), (30, 1), {"add_windows"}),
    ("Conv2D-c1-same", lambda: ln.Conv2D(4, 5, padding="same"), (10, 9, 1), {"add_windows"}),
    (
        "MaxPool2D-2x2",
        lambda: ln.MaxPool2D(2),
        (9, 8, 3),
        {"max_pool_2x2", "max_pool_2x2_backward"},
    ),
    (
        "MaxPool2D-2x2-overlap-same",
        lambda: ln.MaxPool2D(2, 1, padding="same"),
        (9, 8, 3),
        {"max_pool_2x2", "max_pool_2x2_backward"},
    ),
    ("MaxPool2D-3x3", lambda: ln.MaxPool2D(3, 2, padding="same"), (9, 8, 3), set()),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "factory, shape, kernels", [c[1:] for c in KERNEL_CASES], ids=[c[0] for c in KERNEL_CASES]
)
def test_conv_and_pool_kernels_equal_the_textbook(factory, shape, kernels, dtype, jit, calls):
    """The compiled col2im and 2 x 2 max-pooling kernels compute the textbook's numbers (the
    NumPy fast path too); other pool sizes keep the NumPy fast path."""
    run_and_compare(factory, "float", shape, dtype)
    assert set(calls) == (kernels if jit == "kernels" else set())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_max_pool_kernel_keeps_the_first_maximum_and_nan(dtype, jit):
    """Ties go to the first maximum in row-major window order, as np.argmax; a NaN makes the
    window's maximum NaN (np.maximum), on both fast paths."""
    pool = _build(lambda: ln.MaxPool2D(2), (4, 4, 2), dtype, 0)
    x = np.zeros((3, 4, 4, 2), dtype)
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 5.0  # a tie: the first (offset 1) wins
    x[1, 2, 2, 1], x[1, 3, 3, 1] = 7.0, np.nan  # NaN after the maximum in a window
    x[1, 0, 0, 0], x[1, 1, 1, 0] = np.nan, 7.0  # NaN first
    x[2, :2, :2, :] = -np.inf  # a window of -inf
    y = pool.fast_forward(x).copy()
    assert y[0, 0, 0, 0] == 5.0 and y[2, 0, 0, 0] == -np.inf
    assert np.isnan(y[1, 1, 1, 1]) and np.isnan(y[1, 0, 0, 0])
    dy = np.ones_like(y)
    dx = pool.fast_backward(dy)
    assert dx[0, 0, 1, 0] == 1.0 and dx[0, 1, 0, 0] == 0.0  # the gradient goes to the first
    textbook = _build(lambda: ln.MaxPool2D(2), (4, 4, 2), dtype, 0)
    np.testing.assert_array_equal(y, textbook.forward(x, training=True))
    finite = ~np.isnan(x).reshape(3, 2, 2, 2, 2, 2).any(axis=(2, 4), keepdims=True)
    finite = np.broadcast_to(finite, (3, 2, 2, 2, 2, 2)).reshape(x.shape)
    np.testing.assert_array_equal(dx[finite], textbook.backward(dy)[finite])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_max_pool_kernel_equals_the_numpy_fast_path_on_every_nan_and_tie(dtype):
    """Every 2 x 2 window of values from {NaN, -inf, 0, 1, 2, inf} (6^4 windows, NaN at each
    offset among them): the compiled kernel's maximum, the offset it keeps and the gradient it
    routes equal the NumPy fast path's."""
    from lucidnet import kernels

    if not kernels.available():
        pytest.skip("numba is not installed")
    values = np.array([np.nan, -np.inf, 0.0, 1.0, 2.0, np.inf], dtype)
    windows = np.stack(np.meshgrid(*[values] * 4, indexing="ij"), -1).reshape(-1, 2, 2)
    n = len(windows)  # 1,296 windows as one-channel 2 x 2 images
    x = windows[:, :, :, None]
    dy = np.arange(1, n + 1, dtype=dtype).reshape(n, 1, 1, 1)
    got = {}
    for mode in ("0", "1"):
        previous = kernels.set_mode(mode)
        try:
            pool = _build(lambda: ln.MaxPool2D(2), (2, 2, 1), dtype, 0)
            y = pool.fast_forward(x).copy()
            got[mode] = (y, pool._where.copy(), pool.fast_backward(dy).copy())
        finally:
            kernels.set_mode(previous)
    for name, numpy_path, kernel in zip(("y", "where", "dx"), got["0"], got["1"]):
        np.testing.assert_array_equal(kernel, numpy_path, err_msg=name)
    assert np.isnan(got["1"][0]).sum() == n - 5**4  # every window with a NaN gives NaN


@pytest.mark.parametrize("rows_per_image", [64, 49], ids=["whole-chunks", "remainder"])
def test_long_weight_products_summed_in_chunks_equal_the_textbook(rows_per_image):
    """A convolution's weight gradient sums over batch x positions rows (here 8,192 or 6,272
    >= 8 chunks of 512): the fast path's chunked products equal the textbook's one product
    (float64: to rounding; the chunks really ran)."""
    side = int(np.sqrt(rows_per_image)) + 2  # 3x3 valid convolution: (side - 2)^2 positions
    layer = run_and_compare(
        lambda: ln.Conv2D(4, 3, activation="relu"), "float", (side, side, 2), np.float64, 128, 2
    )
    parts = layer.__dict__["_buffers"]
    assert any("dW_parts" in str(key) for key in parts), sorted(map(str, parts))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch", [LARGE_BATCH, SMALL_BATCH], ids=["large", "small"])
def test_dense_relu_gives_the_textbook_bits_on_both_fast_paths(batch, dtype, jit, calls):
    """The fused kernels (bias + ReLU forward; mask + bias gradient backward) do the textbook's
    operations in its order: the same bits, not only the same numbers to rounding (NumPy's fast
    path sums the bias gradient as a matrix-vector product: to rounding)."""

    def same(actual, desired, err_msg=""):
        if jit == "kernels":
            np.testing.assert_array_equal(actual, desired, err_msg=err_msg)
        else:
            _assert_close(actual, desired, dtype, err_msg)

    textbook, fast = (_build(lambda: ln.Dense(UNITS, "relu"), (FEATURES,), dtype, 0) for _ in "ab")
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = _inputs("float", (FEATURES,), batch, dtype, rng)
        out_t = textbook.forward(x, training=True)
        dy = (rng.standard_normal(out_t.shape) / batch).astype(dtype)
        textbook.zero_grad()
        dx_t = textbook.backward(dy)
        out_f = fast.fast_forward(x).copy()
        dx_f = fast.fast_backward(dy)
        same(out_f, out_t)
        same(fast._z, textbook._z)  # z = x W + b, which Diagnostics reads
        same(dx_f, dx_t)
        for key, g in textbook.grads.items():
            same(fast.grads[key], g, err_msg=key)
        for layer in (textbook, fast):
            _update(layer)
    expected = ["bias_relu", "relu_backward_bias"] * 3 if jit == "kernels" else []
    assert calls == expected


def test_every_registered_layer_and_activation_has_a_case():
    ids = {c[0] for c in CASES}
    assert set(LAYERS.names()) <= ids
    assert {f"Dense-{a}" for a in ACTIVATIONS.names()} <= ids
    assert LARGE_BATCH * min(FEATURES, UNITS) >= FAST_MIN_SIZE > SMALL_BATCH * FEATURES


def test_small_arrays_take_the_textbook_pair_inside_the_fast_methods():
    """Below FAST_MIN_SIZE elements the activations' fast methods allocate like the textbook
    (NumPy recycles small blocks, cheaper than a workspace lookup)."""
    for cls in (ln.Sigmoid, ln.Tanh, ln.ReLU, ln.LeakyReLU, ln.ELU):
        layer = run_and_compare(cls, "float", (FEATURES,), np.float32, SMALL_BATCH)
        assert not _has_workspaces(layer), cls.__name__


ACTIVATION_LAYERS = [
    ln.Sigmoid,
    ln.Tanh,
    ln.ReLU,
    ln.LeakyReLU,
    ln.ELU,
    ln.GELU,
    ln.Softmax,
    ln.Linear,
]


def _extreme_inputs(values: list[float], dtype) -> np.ndarray:
    x = np.resize(np.asarray(values, dtype=dtype), LARGE_BATCH * FEATURES)
    return x.reshape(LARGE_BATCH, FEATURES)


@pytest.mark.parametrize("cls", ACTIVATION_LAYERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_fast_activations_are_stable_at_plus_minus_1000(cls, dtype):
    x = _extreme_inputs([-1000.0, -30.0, -1.0, -0.0, 0.0, 0.5, 30.0, 1000.0, 3.0], dtype)
    dy = np.ones_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        textbook = cls()
        out_t = textbook.forward(x, training=True)
        dx_t = textbook.backward(dy)
        fast = cls()
        out_f = fast.fast_forward(x)
        dx_f = fast.fast_backward(dy)
    _assert_close(out_f, out_t, dtype, "output")
    _assert_close(dx_f, dx_t, dtype, "dL/dx")


@pytest.mark.parametrize("cls", ACTIVATION_LAYERS, ids=lambda c: c.__name__)
def test_fast_activations_propagate_nan_and_inf_like_the_textbook(cls):
    x = _extreme_inputs([np.nan, np.inf, -np.inf, 1.0, -1.0, 0.0], np.float32)
    dy = _extreme_inputs([1.0, -2.0, 0.5, np.nan], np.float32)
    with np.errstate(all="ignore"):
        textbook, fast = cls(), cls()
        out_t, out_f = textbook.forward(x, training=True), fast.fast_forward(x)
        dx_t, dx_f = textbook.backward(dy), fast.fast_backward(dy)
    # assert_allclose counts NaN == NaN and inf == inf (same sign) as equal
    np.testing.assert_allclose(out_f, out_t, rtol=1e-6, atol=0)
    np.testing.assert_allclose(dx_f, dx_t, rtol=1e-6, atol=0)


# -- the comparison can fail ------------------------------------------------------------------


class WrongDerivativeTanh(ln.Tanh):
    def fast_backward(self, dy, need_input_grad=True):
        return dy * (1.0 - self._out)  # should be 1 - tanh^2


class AccumulatingDense(ln.Dense):
    def fast_backward(self, dy, need_input_grad=True):
        return self.backward(dy)  # adds to the stale gradients instead of overwriting them


class FrozenStatisticsBatchNorm(ln.BatchNorm):
    def fast_forward(self, x):
        saved = {k: v.copy() for k, v in self.state.items()}
        out = super().fast_forward(x)
        for k, v in saved.items():
            self.state[k][...] = v  # forgets to update the running statistics
        return out


class SlightlyOffGELU(ln.GELU):
    def fast_forward(self, x):
        return super().fast_forward(x) * np.float32(1.0001)  # 1e-4 relative: 10x the tolerance


class SkipsInputGradELU(ln.ELU):
    def fast_backward(self, dy, need_input_grad=True):
        dx = super().fast_backward(dy, need_input_grad)
        return dx if need_input_grad else dx * 0.5  # a wrong dL/dx when not asked for one


@pytest.mark.parametrize(
    "factory",
    [
        WrongDerivativeTanh,
        lambda: AccumulatingDense(UNITS, activation="relu"),
        FrozenStatisticsBatchNorm,
        SlightlyOffGELU,
        SkipsInputGradELU,
    ],
    ids=["derivative", "accumulates", "state", "off-by-1e-4", "need_input_grad"],
)
def test_the_comparison_detects_a_wrong_fast_path(factory):
    with pytest.raises(AssertionError):
        run_and_compare(factory, "float", (FEATURES,), np.float32)


# -- subclasses and the defaults --------------------------------------------------------------


def test_a_subclass_changing_the_textbook_pair_gets_the_default_fast_pair():
    """A fast pair inherited from the parent would compute the parent's arithmetic."""

    class Doubled(ln.Tanh):
        def forward(self, x, training=False):
            return 2 * super().forward(x, training)

        def backward(self, dy):
            return super().backward(2 * dy)

    assert Doubled.fast_forward is Layer.fast_forward
    assert Doubled.fast_backward is Layer.fast_backward

    class Halved(ln.ReLU):  # ReLU's fused bias kernels would skip the change
        def fast_forward(self, x):
            return 0.5 * super().fast_forward(x)

    assert Halved.fast_forward_bias is ln.activations.Activation.fast_forward_bias
    assert Halved.fast_backward_bias is ln.activations.Activation.fast_backward_bias
    assert Halved().fast_forward_bias(np.ones((2, 3)), np.ones(3)) is None
    assert WrongDerivativeTanh.fast_forward is ln.Tanh.fast_forward  # only fast_backward changed
    run_and_compare(Doubled, "float", (FEATURES,), np.float64)


def test_dense_subclass_with_its_own_backward_still_trains():
    """Custom layers keep the plain contract backward(dy); fit zeroes their gradients."""
    calls = []

    class MyDense(ln.Dense):
        def backward(self, dy):
            calls.append(dy.shape)
            return super().backward(dy)

    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 6)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model = ln.Sequential([MyDense(8, activation="relu"), ln.Dense(3)])
    model.build((6,), seed=0)
    reference = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)])
    reference.build((6,), seed=0)
    for m in (model, reference):
        m.fit(X, y, loss="cross_entropy", epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert len(calls) == 6
    for mine, ref in zip(model.layers, reference.layers):
        for key, value in ref.params.items():
            np.testing.assert_allclose(mine.params[key], value, rtol=1e-6, atol=1e-7)
