"""lucidnet's convolution and pooling layers against PyTorch's functions (skipped without torch).

Each case runs the float32 layer (textbook pair and fast pair) and ``torch.nn.functional``'s
``conv1d`` / ``conv2d`` / ``max_pool1d/2d`` / ``avg_pool1d/2d`` on the same input and weights
(channels-last <-> channels-first by transposition; lucidnet's padding applied with ``F.pad``,
which also covers TensorFlow's asymmetric "same" padding), and compares the outputs, dL/dx and
dL/dW, dL/db for dL/dy = a fixed random array, to float32 tolerance.

Run it with an interpreter that has torch, e.g.
``PYTHONPATH=$PWD /work/main/.venv-bench/bin/python -m pytest tests/test_convolution_torch.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import lucidnet as ln

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-4, 1e-5  # float32: sums of up to a few hundred products


def _to_torch(x: np.ndarray) -> torch.Tensor:
    """Channels-last (n, *spatial, c) -> channels-first (n, c, *spatial), with gradients."""
    return torch.tensor(np.moveaxis(x, -1, 1).copy(), requires_grad=True)


def _from_torch(t: torch.Tensor) -> np.ndarray:
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _torch_pad(pads: tuple[tuple[int, int], ...]) -> list[int]:
    """lucidnet's per-axis (before, after) as F.pad's list, last axis first."""
    return [p for lo_hi in reversed(pads) for p in lo_hi]


def _run_lucidnet(layer: ln.Layer, x: np.ndarray, dy_seed: int, fast: bool):
    model = ln.Sequential([layer])
    model.build(x.shape[1:], seed=0)
    if fast:
        y = layer.fast_forward(x).copy()
        rng = np.random.default_rng(dy_seed)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.fast_backward(dy)
    else:
        y = layer.forward(x, training=True)
        rng = np.random.default_rng(dy_seed)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        layer.zero_grad()
        dx = layer.backward(dy)
    return y, dy, dx


CONV_CASES = [
    ("1d-valid", 1, {"kernel_size": 3}, (13, 3)),
    ("1d-stride2-same", 1, {"kernel_size": 4, "stride": 2, "padding": "same"}, (13, 3)),
    ("1d-dilation3-pad2", 1, {"kernel_size": 3, "dilation": 3, "padding": 2}, (16, 4)),
    ("2d-valid", 2, {"kernel_size": 3}, (9, 8, 3)),
    ("2d-lenet-first", 2, {"kernel_size": 5}, (28, 28, 1)),
    ("2d-stride2-same", 2, {"kernel_size": (3, 2), "stride": 2, "padding": "same"}, (9, 7, 4)),
    ("2d-dilation2-pad", 2, {"kernel_size": 3, "dilation": 2, "padding": (1, 2)}, (10, 9, 2)),
    (
        "2d-mixed",
        2,
        {"kernel_size": (2, 3), "stride": (2, 1), "dilation": (2, 1), "padding": 1},
        (9, 8, 3),
    ),
]


@pytest.mark.parametrize("fast", [False, True], ids=["textbook", "fast"])
@pytest.mark.parametrize(
    "rank, kwargs, shape", [c[1:] for c in CONV_CASES], ids=[c[0] for c in CONV_CASES]
)
def test_convolution_equals_torch(rank, kwargs, shape, fast):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    layer = (ln.Conv1D if rank == 1 else ln.Conv2D)(5, **kwargs)
    y, dy, dx = _run_lucidnet(layer, x, 2, fast)
    W, b = layer.params["W"], layer.params["b"]

    xt = _to_torch(x)
    # lucidnet's W (*kernel, c_in, f) -> torch's weight (f, c_in, *kernel)
    Wt = torch.tensor(np.moveaxis(W, (-2, -1), (1, 0)).copy(), requires_grad=True)
    bt = torch.tensor(b.copy(), requires_grad=True)
    conv = F.conv1d if rank == 1 else F.conv2d
    yt = conv(
        F.pad(xt, _torch_pad(layer.pads)), Wt, bt, stride=layer.stride, dilation=layer.dilation
    )
    yt.backward(torch.tensor(np.moveaxis(dy, -1, 1).copy()))

    np.testing.assert_allclose(y, _from_torch(yt), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, _from_torch(xt.grad), rtol=RTOL, atol=ATOL)
    dW = np.moveaxis(Wt.grad.numpy(), (1, 0), (-2, -1))
    np.testing.assert_allclose(layer.grads["W"], dW, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.grads["b"], bt.grad.numpy(), rtol=RTOL, atol=ATOL)


POOL_CASES = [
    ("1d", 1, {"pool_size": 2}, (13, 3)),
    ("1d-overlap", 1, {"pool_size": 3, "stride": 2}, (12, 2)),
    ("2d", 2, {"pool_size": 2}, (9, 8, 3)),
    ("2d-lenet", 2, {"pool_size": 2}, (24, 24, 6)),
    ("2d-overlap-rect", 2, {"pool_size": (3, 2), "stride": (2, 1)}, (9, 7, 2)),
]


@pytest.mark.parametrize("fast", [False, True], ids=["textbook", "fast"])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "rank, kwargs, shape", [c[1:] for c in POOL_CASES], ids=[c[0] for c in POOL_CASES]
)
def test_pooling_equals_torch(rank, kwargs, shape, kind, fast):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    name = ("MaxPool" if kind == "max" else "AvgPool") + f"{rank}D"
    layer = getattr(ln, name)(**kwargs)
    y, dy, dx = _run_lucidnet(layer, x, 4, fast)

    xt = _to_torch(x)
    fn = getattr(F, f"{kind}_pool{rank}d")
    yt = fn(xt, kernel_size=layer.pool_size, stride=layer.stride)
    yt.backward(torch.tensor(np.moveaxis(dy, -1, 1).copy()))
    np.testing.assert_allclose(y, _from_torch(yt), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, _from_torch(xt.grad), rtol=RTOL, atol=ATOL)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_same_padding_equals_torch_same_for_stride_one():
    """PyTorch's own padding="same" (stride 1) puts the odd zero at the end too."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 10, 9, 3)).astype(np.float32)
    layer = ln.Conv2D(4, (4, 3), padding="same", dilation=(1, 2))
    y, _, _ = _run_lucidnet(layer, x, 6, fast=False)
    Wt = torch.tensor(np.moveaxis(layer.params["W"], (-2, -1), (1, 0)).copy())
    yt = F.conv2d(
        _to_torch(x), Wt, torch.tensor(layer.params["b"]), padding="same", dilation=(1, 2)
    )
    np.testing.assert_allclose(y, _from_torch(yt), rtol=RTOL, atol=ATOL)


def test_batchnorm_over_channels_equals_torch_batchnorm2d():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((6, 5, 4, 3)) * 2 + 1).astype(np.float32)
    bn = ln.BatchNorm(momentum=0.9)
    y, dy, dx = _run_lucidnet(bn, x, 8, fast=False)
    tbn = torch.nn.BatchNorm2d(3, momentum=0.1, eps=bn.eps)
    xt = _to_torch(x)
    yt = tbn(xt)
    yt.backward(torch.tensor(np.moveaxis(dy, -1, 1).copy()))
    np.testing.assert_allclose(y, _from_torch(yt), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, _from_torch(xt.grad), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(bn.grads["gamma"], tbn.weight.grad.numpy(), rtol=RTOL, atol=ATOL)
    rm, rv = tbn.running_mean.numpy(), tbn.running_var.numpy()
    np.testing.assert_allclose(bn.state["running_mean"], rm, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(bn.state["running_var"], rv, rtol=RTOL, atol=ATOL)
