"""One compiled call per epoch for networks of Dense layers: the whole training step (forward,
loss, backward, optimizer update) for every mini-batch of an epoch in one loop.

For a small network the NumPy fast path spends most of a step in Python: ~20 NumPy calls of a
few microseconds each on arrays of a few thousand numbers (digits, 64-32-10 at batch 32: ~75 us
per step, of which the arithmetic is a few). Here the epoch is one call to a loop compiled by
numba that reads like the textbook step, layer by layer::

    for each mini-batch (rows of the shuffled order):
        a_0 = X[rows];  a_l = f_l(a_{l-1} W_l + b_l)                    forward
        L, dL/dz_L = loss(a_L, y[rows])                                  loss and its gradient
        dW_l = a_{l-1}^T dz_l;  db_l = sum_i dz_l;                       backward, last layer
        dz_{l-1} = (dz_l W_l^T) * f'_{l-1}                               first
        the optimizer's kernel (kernels.py) on the flat parameters       update

The matrix products are BLAS's (``np.dot`` with ``out``, which numba compiles to a direct call
of the BLAS that SciPy ships, no Python in between): plain loops were 3-4x slower than BLAS
already at 32 x 100 x 128, so the fused path wins for large networks as well (it saves the same
~70 us of Python per step and does the elementwise work in single passes). Where NumPy's wheel
ships its OpenBLAS, the kernel calls that one instead (:func:`_gemm_numpy_blas`). Bias,
activation, loss and gradient sums are loops, as the formulas read.

Threads: the kernel comes in two versions. The serial one runs the step on the calling thread
and lets BLAS split each product over its own threads (as set by ``lucidnet.threads``). The
parallel one (where the fit may use more than one thread: :func:`can_split`) runs the same
code with the products cut into bands, one single-threaded BLAS call per band, and the gather
and the optimizer's update split too, all on numba's threads while BLAS is set to one thread:
the elementwise work, serial beside a threaded BLAS, then uses every core as well, and one pool
of threads instead of two wait on each other. Measured on A's epoch (784-256-128-10, batch
128, 2-core Xeon, quiet): 0.40-0.41 s against 0.46-0.52 s with BLAS's threads (Adam alone: 0.030
against 0.067 s per epoch on two threads or one). The thread tuner chooses between them
(1 thread: serial kernel; more: parallel) on timed blocks of steps, as in the step loop.

It runs only where it gives what the step-by-step fast path gives (tests/test_fused.py: the same
parameters, optimizer state, losses and metrics, float64 to 1e-10, float32 to rounding over
hundreds of steps), and :func:`prepare` declines, so that the step loop runs, for anything else:

* layers: ``Dense`` only (exactly, not a subclass), activations linear / ReLU / tanh / sigmoid,
  no L1 / L2 penalties; a float32 or float64 model; 2-D inputs;
* losses: ``cross_entropy`` on integer labels (no label smoothing or class weights),
  ``binary_cross_entropy`` (no class weights), ``mse``; no sample or class weights in ``fit``;
* optimizers: ``Adam``, ``AdamW``, ``SGD`` (plain, momentum, Nesterov) with a learning rate or a
  schedule, ``clip_value`` and weight decay; not ``clip_norm`` (a norm over all gradients
  between backward and update), not subclasses (their own arithmetic);
* callbacks: those with ``on_batch_end`` hooks other than the NaN guard need the step loop
  (the kernel stops after the step whose loss makes the epoch's sum non-finite, as the guard
  would, and the loop then calls the guard for that step); epoch callbacks run as usual.

When (:meth:`Fused.ready`): ``LUCIDNET_JIT=0`` never, ``1`` always; ``auto`` when the NumPy
path's work that it replaces (estimated from the sizes, so that a seeded run switches at the
same epoch every time) repays what switching costs: importing numba (unless loaded) and
compiling the kernel for these array types, and its parallel version where it may run
(unless compiled in this process, or cached on disk, which loads in milliseconds). The work
counted is the work done so far in this process plus what the current ``fit`` will still do
(its remaining epochs): the ski-rental rule with the rent known in advance. numba is
imported only then: ``import lucidnet`` never loads it.
"""

from __future__ import annotations

import math
import os
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels as _kernels
from .activations import Linear, ReLU, Sigmoid, Tanh
from .callbacks import NaNGuard
from .layers import Dense
from .losses import MSE, BinaryCrossEntropy, CrossEntropy
from .sources import ArraySource

#: seconds to import numba in a fresh process (measured 0.28 s), to compile the epoch kernel
#: for one set of array types with the optimizers' kernels (measured 7-10 s on a busy 2-core
#: machine, 5.8 s on a quiet one), and to load them from numba's disk cache.
IMPORT_S, COMPILE_S, LOAD_S = 0.3, 5.0, 0.05
#: seconds to compile the parallel kernel with the parallel versions of the optimizers'
#: kernels and the gather (measured 15.8 s on a quiet 2-core Xeon, float32)
PARALLEL_COMPILE_S = 15.0
#: estimated seconds per step of the NumPy fast path this replaces: per step, per layer and per
#: multiply-add of the step's matrix products (fitted to benchmarks/run.py's workloads on a
#: 2-core Xeon: B, 64-32-10 at batch 32, ~75 us per step; A, 784-256-128-10 at batch 128,
#: ~1.2 ms per step).
STEP_S, LAYER_S, MAC_S = 20e-6, 25e-6, 0.012e-9

#: seconds of steps per call of the kernel (Fused.epoch), as long as the thread tuner's blocks
BLOCK_SECONDS = 0.1

#: the smallest step (multiply-adds of its forward products at the widest batch) for the
#: parallel kernel: below, starting its parallel loops (a few microseconds each) costs more
#: than the split saves. Measured at threads=2 (epoch, parallel / serial kernel with BLAS's
#: threads): 0.14 M per step 1.5, 0.8 M 1.3, 2.6 M 0.87, 3.2 M 0.81, 30 M (A) 0.85, 539 M 0.88.
SPLIT_MIN_MACS = 2_000_000

#: the largest step (multiply-adds of its forward products at the widest batch) the kernel
#: takes when its products go through numba's ``np.dot`` (SciPy's BLAS): it saves the step
#: loop's Python and NumPy call overhead, which matters for small steps, but SciPy's older
#: OpenBLAS is slower on large products. Measured on a quiet 2-core Xeon (epoch time fused /
#: step loop, both compiled): 0.08 M multiply-adds per step 0.33, 0.54 M 0.61, 3.2 M
#: 0.77-0.84, 7.5 M 0.99, 13 M 0.97, 30 M (workload A) 1.21. Through NumPy's own BLAS
#: (``_gemm_numpy_blas``) the kernel takes every size: 6.7 M 0.76, 30 M 0.86, 68 M 0.91,
#: 341 M 0.78 (2 BLAS threads, a loaded machine, interleaved).
MAX_STEP_MACS = 8_000_000

_ACTIVATIONS = {type(None): 0, Linear: 0, ReLU: 1, Tanh: 2, Sigmoid: 3}
_LOSSES = {CrossEntropy: 0, BinaryCrossEntropy: 1, MSE: 2}


# -- the kernel: BLAS's products and plain loops, as the formulas read --------------------------
def _activate(z: Any, code: int, zero: Any, one: Any) -> Any:
    """f(z): linear, ReLU (NaN kept), tanh or the logistic function (never overflows)."""
    if code == 1:
        return zero if z <= zero else z
    if code == 2:
        return np.tanh(z)
    if code == 3:
        e = np.exp(-abs(z))
        return one / (one + e) if z >= zero else e / (one + e)
    return z


def _slope(a: Any, code: int, zero: Any, one: Any) -> Any:
    """f'(z) from the output a = f(z): ReLU 1 or 0, tanh 1 - a^2, logistic a (1 - a)."""
    if code == 1:
        return one if a > zero else zero
    if code == 2:
        return one - a * a
    if code == 3:
        return a * (one - a)
    return one


def _gemm(trans_a: bool, trans_b: bool, A: Any, B: Any, C: Any, bands: int) -> None:
    """C = op(A) op(B) (op: transposed where asked) for C-contiguous matrices, by numba's
    ``np.dot`` (the BLAS SciPy ships) in one call: ``np.dot`` needs contiguous arrays, so
    ``bands`` is ignored (the parallel kernel is built on NumPy's BLAS only). Replaced by
    :func:`_gemm_numpy_blas` where NumPy's own BLAS can be called (``_compile_epoch``)."""
    a = A.T if trans_a else A
    b = B.T if trans_b else B
    np.dot(a, b, C)


#: NumPy's OpenBLAS's ``cblas_sgemm`` / ``cblas_dgemm`` as numba external functions
#: (``_compile_epoch`` declares them when NumPy's wheel ships that library).
_sgemm: Any = None
_dgemm: Any = None

#: the fewest multiply-adds a band of a product gets in the parallel kernel (fewer bands
#: otherwise): measured on A's epoch, splitting products from 1 M multiply-adds on (bands of
#: 0.5 M) gave 0.395-0.41 s, only those from 20 M on 0.44 s, all of them 0.41 s.
BAND_MACS = 500_000


def _cblas(trans_a: bool, trans_b: bool, A: Any, B: Any, C: Any) -> None:
    """C = op(A) op(B) by one call of NumPy's BLAS (CBLAS, row-major) for matrices whose rows
    may lie apart (bands of larger matrices): the leading dimensions are the row strides.
    The pointers travel as integers (the C ABI passes both in the same registers)."""
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    ta, tb = 112 if trans_a else 111, 112 if trans_b else 111  # CblasTrans / CblasNoTrans
    a, b, c = A.ctypes.data, B.ctypes.data, C.ctypes.data
    lda, ldb = A.strides[0] // A.itemsize, B.strides[0] // B.itemsize
    ldc = C.strides[0] // C.itemsize
    if C.itemsize == 4:
        _sgemm(101, ta, tb, m, n, k, np.float32(1), a, lda, b, ldb, np.float32(0), c, ldc)
    else:
        _dgemm(101, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc)


def _gemm_numpy_blas(trans_a: bool, trans_b: bool, A: Any, B: Any, C: Any, bands: int) -> None:
    """``_gemm`` through the BLAS NumPy itself calls: the same library, the same thread
    settings (``lucidnet.threads`` sets them through threadpoolctl) and the same kernels as the
    step loop's ``np.matmul``. numba's ``np.dot`` calls SciPy's copy of OpenBLAS instead, an
    older build (0.3.30 against NumPy's 0.3.31 here) whose products of workload A's shapes
    took 14% longer. One call (BLAS splits it over its own threads, as set);
    :func:`_gemm_bands` in the parallel kernel."""
    _cblas(trans_a, trans_b, A, B, C)


def _gemm_bands(trans_a: bool, trans_b: bool, A: Any, B: Any, C: Any, bands: int) -> None:
    """``_gemm`` in the parallel kernel: up to ``bands`` bands of C (:func:`_bands`) on
    numba's threads, BLAS itself on one thread meanwhile; fewer bands where each would get
    under :data:`BAND_MACS` multiply-adds, one call below that."""
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    parts = min(bands, max(1, m * n * k // BAND_MACS), max(m, n))
    if parts <= 1:
        _cblas(trans_a, trans_b, A, B, C)
    else:
        _bands(trans_a, trans_b, A, B, C, parts)


def _bands(trans_a: bool, trans_b: bool, A: Any, B: Any, C: Any, parts: int) -> None:
    """C = op(A) op(B) as ``parts`` single-threaded BLAS calls, one per band of C's columns
    (or of its rows, whichever side is longer), in parallel (compiled with ``prange``): a band
    of C's columns is op(A) times the same columns of op(B), a band of rows the same rows of
    op(A) times op(B). Each entry is the same dot product as in one call (its rounding may
    differ: BLAS picks its blocking by the sizes)."""
    m, n = C.shape
    for t in prange(parts):
        if n >= m:  # bands of C's columns
            lo, hi = t * n // parts, (t + 1) * n // parts
            b = B[lo:hi] if trans_b else B[:, lo:hi]
            _cblas(trans_a, trans_b, A, b, C[:, lo:hi])
        else:  # bands of C's rows
            lo, hi = t * m // parts, (t + 1) * m // parts
            a = A[:, lo:hi] if trans_a else A[lo:hi]
            _cblas(trans_a, trans_b, a, B, C[lo:hi])


def _forward(x: Any, W: Any, b: Any, code: int, out: Any, zero: Any, one: Any, bands: int) -> None:
    """out = f(x W + b) for the batch: the product by BLAS (numba calls it without Python in
    between, into ``out``; in up to ``bands`` bands in the parallel kernel), then the bias and
    the activation in one pass. ReLU's loop is written out: with the activation chosen inside
    the loop LLVM does not vectorise it."""
    _gemm(False, False, x, W, out, bands)
    m, k_out = out.shape
    if code == 1:
        for i in range(m):
            for j in range(k_out):
                v = out[i, j] + b[j]
                out[i, j] = zero if v <= zero else v  # NaN kept, as _activate
        return
    for i in range(m):
        for j in range(k_out):
            out[i, j] = _activate(out[i, j] + b[j], code, zero, one)


def _backward(
    x: Any,
    dz: Any,
    W: Any,
    gW: Any,
    gb: Any,
    code_x: int,
    dx: Any,
    zero: Any,
    one: Any,
    bands: int,
) -> None:
    """gW = x^T dz, gb = sum over the batch of dz (rows added in order); with a ``dx`` of
    rows (all but the first layer) dx = (dz W^T) * f'(x), dL/dz of the layer below (x is its
    output)."""
    _gemm(True, False, x, dz, gW, bands)
    m, k_out = dz.shape
    for j in range(k_out):
        gb[j] = zero
    for i in range(m):
        for j in range(k_out):
            gb[j] += dz[i, j]
    if dx.shape[0] == 0:
        return
    _gemm(False, True, dz, W, dx, bands)
    if code_x == 1:  # ReLU written out, as in _forward
        for i in range(m):
            for k in range(dx.shape[1]):
                dx[i, k] = dx[i, k] * (one if x[i, k] > zero else zero)
        return
    for i in range(m):
        for k in range(dx.shape[1]):
            dx[i, k] = dx[i, k] * _slope(x[i, k], code_x, zero, one)


def _loss(
    code: int, z: Any, rows: Any, labels: Any, targets: Any, grad: Any, zero: Any, one: Any
) -> tuple[float, float]:
    """The mean loss over the batch (float64), dL/dz into ``grad`` and the number of samples
    classified right (0 for regression; multi-label: mean over the units per sample)."""
    m, k = z.shape
    total, right = 0.0, 0.0
    for i in range(m):
        r = rows[i]
        if code == 0:  # softmax cross-entropy: log sum_j e^(z_ij - max) - (z_iy - max)
            top, best = z[i, 0], 0
            for j in range(1, k):
                if z[i, j] > top or z[i, j] != z[i, j]:  # NaN wins, as in np.max
                    top, best = z[i, j], j
            sum_exp = zero
            for j in range(k):
                e = np.exp(z[i, j] - top)
                grad[i, j] = e
                sum_exp += e
            y = labels[r]
            total += np.log(sum_exp) - (z[i, y] - top)
            for j in range(k):
                grad[i, j] = grad[i, j] / (sum_exp * m)  # softmax / n
            grad[i, y] -= one / m
            right += 1.0 if best == y else 0.0
        elif code == 1:  # sigmoid cross-entropy: max(z, 0) - z t + log(1 + e^-|z|)
            hits = 0.0
            for j in range(k):
                zij, tij = z[i, j], targets[r, j]
                e = np.exp(-abs(zij))
                total += max(zij, zero) - zij * tij + np.log1p(e)
                s = one / (one + e) if zij >= zero else e / (one + e)
                grad[i, j] = (s - tij) / (m * k)
                hits += 1.0 if (zij > zero) == (tij > 0.5) else 0.0
            right += hits / k
        else:  # mean squared error: mean over units of (z - t)^2
            for j in range(k):
                d = z[i, j] - targets[r, j]
                total += d * d
                grad[i, j] = d * (2 / k) / m
    if code == 0:
        return total / m, right
    return total / (m * k), right


#: kernels.py's loops (the optimizers' and the mini-batch gather), replaced by their compiled
#: versions in _compile_epoch (the parallel versions in the parallel kernel)
_gather_rows: Any = _kernels._gather_rows
_adam: Any = _kernels._adam
_sgd: Any = _kernels._sgd
_sgd_momentum: Any = _kernels._sgd_momentum


def _update(
    opt_code: int, p: Any, g: Any, s1: Any, s2: Any, step: Any, c: Any, nesterov: bool
) -> None:
    """The optimizer's own kernel (kernels.py) on the flat vectors: 0 Adam / AdamW, 1 SGD,
    2 SGD with momentum (Nesterov's when ``nesterov``)."""
    if opt_code == 0:
        _adam(
            p, g, s1, s2, c[0], c[1], c[2], c[3], step[0], step[1], step[2], c[8], c[5], c[6], c[7]
        )
    elif opt_code == 1:
        _sgd(p, g, step[0], c[8], c[5], c[6])
    else:
        _sgd_momentum(p, g, s1, step[0], c[4], nesterov, c[8], c[5], c[6], c[7])


def _epoch(
    X: Any,
    labels: Any,
    targets: Any,
    order: Any,
    starts: Any,
    layout: Any,
    codes: Any,
    p: Any,
    g: Any,
    s1: Any,
    s2: Any,
    acts: Any,
    grads: Any,
    xb: Any,
    no_bias: Any,
    loss_code: Any,
    opt_code: Any,
    per_step: Any,
    consts: Any,
    nesterov: Any,
    values: Any,
    correct: Any,
    last_norm: Any,
    carry: Any,
    bands: Any,
) -> int:
    """Every step of an epoch; returns the number of steps done (fewer than planned when the
    running loss sum turns non-finite: the step loop's NaN guard stops there too).

    ``layout[l]`` = (W offset, b offset or -1, inputs, units, offset of its outputs in
    ``acts``) in the flat ``p`` and ``g``; ``grads`` holds dL/dz of two layers (alternating
    halves); ``xb`` holds the mini-batch's inputs; ``no_bias`` stands in for the bias of a layer
    without one: row 0 zeros, row 1 its gradient, discarded. ``per_step[s]`` = the
    optimizer's scalars of step s (Adam: step size, eps_hat, decay; SGD: learning rate);
    ``consts`` = (b1, 1 - b1, b2, 1 - b2, momentum, clip_value, coupled weight decay, flush
    threshold, 1, 0). ``carry[0]``: the epoch's loss sum so far (weighted by the batch sizes),
    read at the start and written at the end: an epoch runs in several calls, and the NaN stop
    looks at the sum over the whole epoch, as the step loop's guard does. ``bands``: the
    threads of the parallel kernel, as many bands per large product (1 in the serial one)."""
    n_layers, steps = layout.shape[0], starts.shape[0] - 1
    zero, one = consts[9], consts[8]
    half = grads.shape[0] // 2
    running = carry[0]
    for s in range(steps):
        rows = order[starts[s] : starts[s + 1]]
        m = rows.shape[0]
        x = xb[: m * X.shape[1]].reshape((m, X.shape[1]))
        _gather_rows(X, rows, x)  # the mini-batch: rows of X in the shuffled order
        for layer in range(n_layers):  # forward, first layer first
            w_off, b_off, k_in, k_out, a_off = layout[layer]
            W = p[w_off : w_off + k_in * k_out].reshape((k_in, k_out))
            b = p[b_off : b_off + k_out] if b_off >= 0 else no_bias[0, :k_out]
            out = acts[a_off : a_off + m * k_out].reshape((m, k_out))
            _forward(x, W, b, codes[layer], out, zero, one, bands)
            x = out
        k = layout[n_layers - 1][3]
        z = acts[layout[n_layers - 1][4] : layout[n_layers - 1][4] + m * k].reshape((m, k))
        dz = grads[: m * k].reshape((m, k))
        value, right = _loss(loss_code, z, rows, labels, targets, dz, zero, one)
        values[s], correct[s] = value, right
        running += value * m
        if codes[n_layers - 1] != 0:  # an output activation before the loss: its slope
            for i in range(m):
                for j in range(k):
                    dz[i, j] *= _slope(z[i, j], codes[n_layers - 1], zero, one)
        dz_at = 0
        for layer in range(n_layers - 1, -1, -1):  # backward, last layer first
            w_off, b_off, k_in, k_out, a_off = layout[layer]
            dz = grads[dz_at : dz_at + m * k_out].reshape((m, k_out))
            W = p[w_off : w_off + k_in * k_out].reshape((k_in, k_out))
            gW = g[w_off : w_off + k_in * k_out].reshape((k_in, k_out))
            gb = g[b_off : b_off + k_out] if b_off >= 0 else no_bias[1, :k_out]
            if layer == 0:
                x = xb[: m * k_in].reshape((m, k_in))
                _backward(x, dz, W, gW, gb, 0, dz[:0], zero, one, bands)  # no dL/dX
            else:
                x_off = layout[layer - 1][4]
                x = acts[x_off : x_off + m * k_in].reshape((m, k_in))
                dx = grads[half - dz_at : half - dz_at + m * k_in].reshape((m, k_in))
                _backward(x, dz, W, gW, gb, codes[layer - 1], dx, zero, one, bands)
                dz_at = half - dz_at
        if s == steps - 1 or not math.isfinite(running):
            total = 0.0  # the gradients' norm before the update, for Optimizer.last_step
            for i in range(g.shape[0]):
                total += float(g[i]) * float(g[i])
            last_norm[0] = math.sqrt(total)
        _update(opt_code, p, g, s1, s2, per_step[s], consts, nesterov)
        if not math.isfinite(running):
            carry[0] = running
            return s + 1
    carry[0] = running
    return steps


# -- compiling -----------------------------------------------------------------------------------
#: the kernel's helpers, compiled (and inlined) before it; the optimizers' kernels and the
#: gather come from kernels.py, so that an update here is the very loop the step path's
#: kernel runs.
_HELPERS = ("_activate", "_slope", "_cblas", "_gemm", "_forward", "_backward", "_loss", "_update")
_KERNELS = {
    "_gather_rows": "gather_rows",
    "_adam": "adam",
    "_sgd": "sgd",
    "_sgd_momentum": "sgd_momentum",
}
#: numba's ``prange`` once the kernel is compiled
prange = range


class _State:
    kernel: Any = None  # the serial kernel (BLAS splits the products itself, if it may)
    parallel: Any = None  # the parallel kernel, once compiled
    bands: Any = None  # the parallel kernel's _bands, compiled (tests call it alone)
    split: bool | None = None  # whether the parallel kernel may run (None: not known yet)
    signatures: set[tuple[str, ...]] = set()  # array types compiled (or loaded) in this process
    work_s = 0.0  # estimated NumPy-path seconds spent by fits that could have used the kernel
    cached: dict[str, bool] = {}  # variant -> whether numba's disk cache holds it (asked once)
    epochs = 0  # epochs run through the kernel in this process (the benchmark reports it)
    numpy_blas: bool | None = None  # whether NumPy's BLAS can be called (_numpy_blas_available)


def _compiled(parallel: bool = False) -> Any:
    """The epoch kernel (serial, or parallel), compiled on first use (numba imported then);
    its products through NumPy's own BLAS where that can be called (:func:`_gemm_numpy_blas`)."""
    with _COMPILING:  # two threads fitting at once compile it once
        if parallel and _State.parallel is None:
            _State.parallel = _compile_epoch(parallel=True)
        if not parallel and _State.kernel is None:
            _State.kernel = _compile_epoch(parallel=False)
    return _State.parallel if parallel else _State.kernel


#: held while an epoch kernel is compiled
_COMPILING = threading.Lock()


def _variant(parallel: bool = False) -> str:
    """The kernel's name: products through NumPy's BLAS or numba's ``np.dot``; parallel."""
    name = "_epoch_numpy_blas" if _numpy_blas_available() else "_epoch"
    return name + "_split" if parallel else name


def _compile_epoch(parallel: bool) -> Any:
    """Compile (or load from numba's disk cache) an epoch kernel: this module's ``_epoch``
    with its helpers compiled and inlined, reading its names from a copy of the module's
    globals in which they are bound to what this version calls: the optimizers' kernels and
    the gather from kernels.py (their serial or parallel versions), the products through
    NumPy's BLAS (:func:`_gemm_numpy_blas`, or in bands: :func:`_gemm_bands`) or numba's
    ``np.dot``. In the parallel version only the small loops over bands and elements are
    compiled with numba's ``parallel=True``; the step is the serial one's code (a parallel
    compile of the whole kernel took 20 s against 5 s)."""
    numba = _kernels._load_numba()
    numpy_blas = _declare_numpy_blas(numba)  # before the copy: it sets _sgemm / _dgemm
    names = dict(globals(), prange=numba.prange)
    for name, kernel_name in _KERNELS.items():
        names[name] = _kernels.version(kernel_name, parallel)
    if numpy_blas:
        names["_gemm"] = _gemm_bands if parallel else _gemm_numpy_blas
    for name in _HELPERS:
        compiled = _bound(names[name], names, name)
        names[name] = numba.njit(inline="always", error_model="numpy")(compiled)
    if parallel:
        names["_bands"] = _State.bands = _kernels._compile(_bound(_bands, names, "_bands"), True)
    return _kernels._compile(_bound(_epoch, names, _variant(parallel)), parallel=False)


def _bound(function: Any, names: dict[str, Any], name: str) -> Any:
    """``function``'s code under ``name`` reading its globals from ``names`` (numba compiles
    what the names hold then; its disk cache keeps functions apart by name)."""
    bound = types.FunctionType(function.__code__, names, name)
    bound.__qualname__ = name
    bound.__doc__ = function.__doc__
    return bound


#: NumPy's wheels ship OpenBLAS as ``scipy-openblas64``, whose CBLAS symbols carry a prefix and
#: a suffix (64-bit integers).
_NUMPY_CBLAS = ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_")


def _declare_numpy_blas(numba: Any) -> bool:
    """Make the BLAS library NumPy calls visible to numba's linker and declare its sgemm /
    dgemm; ``False`` (numba's ``np.dot`` then) where NumPy's BLAS is not that library (another
    build of NumPy, another BLAS) or ``LUCIDNET_NUMPY_BLAS=0``."""
    global _sgemm, _dgemm
    if not _numpy_blas_available():
        return False
    addresses = _numpy_blas_addresses()
    if addresses is None:
        _State.numpy_blas = False
        return False
    from llvmlite import binding  # type: ignore[import-untyped]

    # the two functions only, by address: loading the library globally (dlopen's RTLD_GLOBAL)
    # would let its other symbols take the place of SciPy's (SciPy's LAPACK then failed)
    for name, address in zip(_NUMPY_CBLAS, addresses):
        binding.add_symbol(name, address)
    t = numba.types
    ints = (t.int32, t.int32, t.int32, t.int64, t.int64, t.int64)
    for name, real in zip(_NUMPY_CBLAS, (t.float32, t.float64)):
        pointers = (t.intp, t.int64, t.intp, t.int64, real, t.intp, t.int64)
        function = t.ExternalFunction(name, t.void(*ints, real, *pointers))
        if real is t.float32:
            _sgemm = function
        else:
            _dgemm = function
    return True


def _numpy_blas_available() -> bool:
    """Whether the kernel will call NumPy's BLAS (asked once a process)."""
    if _State.numpy_blas is None:
        allowed = os.environ.get("LUCIDNET_NUMPY_BLAS", "1") != "0"
        _State.numpy_blas = allowed and _numpy_blas_path() is not None
    return _State.numpy_blas


def _numpy_blas_addresses() -> tuple[int, int] | None:
    """The addresses of :data:`_NUMPY_CBLAS` in NumPy's BLAS (:func:`_numpy_blas_path`)."""
    import ctypes

    path = _numpy_blas_path()
    if path is None:
        return None
    library = ctypes.CDLL(path)  # loaded by NumPy already: the same handle, symbols local
    sgemm, dgemm = (ctypes.cast(getattr(library, n), ctypes.c_void_p).value for n in _NUMPY_CBLAS)
    return (sgemm, dgemm) if sgemm and dgemm else None


def _numpy_blas_path() -> str | None:
    """The file of the OpenBLAS that NumPy's wheel ships (in ``numpy.libs`` or
    ``numpy/.dylibs``) if it exports :data:`_NUMPY_CBLAS`, found among the loaded BLAS
    libraries by threadpoolctl."""
    import ctypes

    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped]
    except ImportError:
        return None
    package = Path(np.__file__).resolve().parent  # .../site-packages/numpy
    homes = (package, package.parent / "numpy.libs")  # macOS: numpy/.dylibs; Linux: numpy.libs
    for info in threadpool_info():
        path = str(info.get("filepath") or "")
        if info.get("internal_api") != "openblas" or not path:
            continue
        if not any(Path(path).resolve().is_relative_to(home) for home in homes):
            continue  # another package's copy (SciPy's), not the one NumPy calls
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(library, name) for name in _NUMPY_CBLAS):
            return path
    return None


def _cached_on_disk(parallel: bool = False) -> bool:
    """Whether numba's disk cache seems to hold the epoch kernel (its index files, named after
    it), in the package's ``__pycache__`` or under ``NUMBA_CACHE_DIR``; asked once a process."""
    variant = _variant(parallel)
    if variant not in _State.cached:
        pattern = f"fused.{variant}-*.nbi"
        found = False
        try:
            found = next((Path(__file__).parent / "__pycache__").glob(pattern), None) is not None
            env = os.environ.get("NUMBA_CACHE_DIR")
            if env and not found:
                found = next(Path(env).rglob(pattern), None) is not None
        except OSError:
            pass
        _State.cached[variant] = found
    return _State.cached[variant]


def can_split() -> bool:
    """Whether epochs may run the parallel kernel (module notes): its products call NumPy's
    BLAS, numba may start more than one thread, this process is no fork of one whose numba
    threads ran (GNU OpenMP ends such a child when it starts them: ``kernels.forked``) and
    numba's threading layer is known not to be ``workqueue`` (which took ~0.1 ms to start each
    parallel loop against ~2 us for ``omp``: the kernel starts about ten per step)."""
    if _State.split is False or not _numpy_blas_available() or _kernels.forked():
        return False
    if not _kernels.is_loaded():
        return True  # numba's thread count is asked once it is loaded (not loaded for this)
    return bool(_kernels._load_numba().config.NUMBA_NUM_THREADS > 1)


# -- when and how fit uses it ------------------------------------------------------------------
class Fused:
    """The epoch kernel's arguments for one ``fit`` (made by :func:`prepare`), and the calls."""

    def __init__(
        self,
        model: Any,
        run: Any,
        codes: list[int],
        layout: np.ndarray,
        loss_code: int,
        opt_code: int,
        split: bool = False,
    ) -> None:
        X, y, opt = run.X, run.y, run.optimizer
        self.split = split  # whether the parallel kernel may run too (compiled with the serial)
        self.model, self.X, self.optimizer, self.source = model, X, opt, run.source
        self.opt_code, self.loss_code = opt_code, loss_code
        dtype = np.dtype(model.dtype)
        self.labels = np.ascontiguousarray(y) if loss_code == 0 else np.empty(0, np.int64)
        self.targets = np.ascontiguousarray(y) if loss_code else np.empty((0, 0), dtype)
        self.starts = np.append(np.arange(run.steps, dtype=np.int64) * run.batch_size, len(X))
        bounds = self.starts.tolist()
        self.sizes = [stop - start for start, stop in zip(bounds, bounds[1:])]
        self.widest_batch = max(self.sizes)
        self.codes, self.layout = np.array(codes, np.int64), layout.copy()
        self.layout[:, 4] *= self.widest_batch  # where each layer's outputs start in acts
        units, inputs = layout[:, 3], layout[:, 2]
        macs = self.widest_batch * int((units * inputs).sum())
        self.epoch_s = run.steps * (STEP_S + LAYER_S * len(codes) + MAC_S * 3 * macs)
        self.signature = (dtype.char,)  # what numba compiles the kernel for (cheaper than .name)
        self.buffers: tuple[np.ndarray, ...] = ()  # made by the first epoch
        self._numba_threads = 0  # numba's thread count before the parallel kernel set it

    def _buffers(self, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        """The workspaces, made once: every layer's outputs, dL/dz of two layers, the
        mini-batch's inputs, the stand-in bias (zeros) and its discarded gradient."""
        if not self.buffers:
            m, units, inputs = self.widest_batch, self.layout[:, 3], self.layout[:, 2]
            widest = int(max(units.max(), inputs[1:].max(initial=0)))
            self.buffers = (
                np.empty(m * int(units.sum()), dtype),
                np.empty(2 * m * widest, dtype),
                np.empty(m * int(inputs[0]), dtype),
                np.zeros((2, int(units.max())), dtype),
            )
        return self.buffers

    def ready(self, epochs_left: int) -> bool:
        """Whether to run this epoch through the kernel (module notes); counts the NumPy
        path's work when not."""
        if _kernels.mode() == "1":
            return _kernels.available()
        cost = 0.0 if _kernels.is_loaded() else IMPORT_S
        if self.signature not in _State.signatures:
            cost += LOAD_S if _cached_on_disk() else COMPILE_S
        if self._splits() and self._parallel_signature not in _State.signatures:
            cost += LOAD_S if _cached_on_disk(parallel=True) else PARALLEL_COMPILE_S
        if _State.work_s + epochs_left * self.epoch_s >= cost and _kernels.available():
            return True
        _State.work_s += self.epoch_s
        return False

    def compiled(self) -> bool:
        """Whether the kernel for these array types is compiled (or loaded) in this process
        (and its parallel version, where it may run)."""
        parallel = not self._splits() or self._parallel_signature in _State.signatures
        return parallel and self.signature in _State.signatures

    def _splits(self) -> bool:
        """Whether this fit's epochs may run the parallel kernel (:func:`can_split`, asked
        again: the threading layer is known after the first parallel call)."""
        return self.split and can_split()

    @property
    def _parallel_signature(self) -> tuple[str, ...]:
        return (*self.signature, "parallel")

    def epoch(
        self,
        order: np.ndarray,
        block_done: Callable[[int], None] | None = None,
        control: Any = None,
    ) -> tuple[list[float], float, float, int]:
        """One epoch over the rows in ``order``: ``(the steps' losses, their sum weighted by
        the batch sizes, the samples classified right, the samples seen)``; fewer steps than
        planned when the loss sum became non-finite.

        The steps run in blocks of about :data:`BLOCK_SECONDS` (one call for a small network's
        whole epoch), ``block_done(steps)`` called after each: the thread tuner times blocks
        of steps and changes the threads between them, within an epoch, as it does in the
        step loop (another process taking a core mid-epoch costs one block, not an epoch).
        ``control`` is the fit's :class:`lucidnet.threads.ThreadControl`, if any: where the
        parallel kernel may run, the tuner's count becomes that kernel's threads for the
        epoch (``control.split_in_kernel``: BLAS on one thread meanwhile), asked before every
        block (1: the serial kernel); elsewhere the serial kernel runs and BLAS splits its
        products as the count says."""
        opt, steps = self.optimizer, len(self.sizes)
        p, g, s1, s2 = opt.fused_vectors(self.model)  # as the step does: slots made if need be
        per_step, consts, nesterov, lrs = opt.fused_schedule(steps, p.dtype)
        values, correct, norm, carry = np.empty(steps), np.empty(steps), np.zeros(1), np.zeros(1)
        order = np.ascontiguousarray(order, np.int64)
        buffers = self._buffers(p.dtype)

        def arguments(first: int, last: int) -> tuple[Any, ...]:  # steps first to last - 1
            return (
                self.X, self.labels, self.targets, order, self.starts[first : last + 1],
                self.layout, self.codes, p, g, s1, s2, *buffers, self.loss_code,
                self.opt_code, per_step[first:last], consts, nesterov, values[first:last],
                correct[first:last], norm, carry,
            )  # fmt: skip

        loaded = self._load(arguments(0, 0), control is not None and control.may_split())
        if loaded and control is not None:
            control.untimed()  # the tuner times steps, not the compile (or the disk cache)
        block = max(1, int(BLOCK_SECONDS * steps / self.epoch_s))
        done, split = 0, False
        try:
            split = control is not None and self._splits() and control.split_in_kernel(True)
            for first in range(0, steps, block):
                last = min(first + block, steps)
                kernel, bands = self._kernel(control.current() if split else 1)
                ran = kernel(*arguments(first, last), bands)
                done += ran
                if block_done is not None:
                    block_done(ran)
                if not math.isfinite(carry[0]):  # the loss sum turned non-finite: stopped
                    break  # after that step (the last of this call, or earlier), as the loop
        finally:
            try:
                if split:
                    control.split_in_kernel(False)  # validation and callbacks: BLAS's threads
            finally:
                if self._numba_threads:  # numba's thread count of this thread, as it was
                    _kernels._load_numba().set_num_threads(self._numba_threads)
                    self._numba_threads = 0
        _State.epochs += 1
        opt.fused_done(done, lrs[done - 1], float(norm[0]))
        losses = values[:done].tolist()
        loss_sum = 0.0
        for value, m in zip(losses, self.sizes):  # in the step loop's order
            loss_sum = loss_sum + value * m
        return losses, loss_sum, float(correct[:done].sum()), int(self.starts[done])

    def _load(self, no_steps: tuple[Any, ...], parallel: bool) -> bool:
        """Compile (or load) the kernels this epoch may call (the parallel one too where
        ``parallel`` and it may run), each called once with ``no_steps`` (no step), before the
        first block: a compile inside a block would be timed by the thread tuner. The
        parallel kernel's first call in this process starts numba's threads and tells the
        threading layer (:func:`can_split`; a layer numba cannot load, such as
        ``NUMBA_THREADING_LAYER=tbb`` without tbb, leaves the serial kernel). Returns whether
        anything was compiled or loaded."""
        loaded = self.signature not in _State.signatures
        if loaded:
            _compiled()(*no_steps, 1)
            _State.signatures.add(self.signature)
        if not parallel or not self._splits() or self._parallel_signature in _State.signatures:
            return loaded
        if _State.split is None:
            try:
                layer = _kernels.start_threads(lambda: _compiled(parallel=True)(*no_steps, 1))
            except ValueError:  # numba: "No threading layer could be loaded"
                layer = ""
            _State.split = layer in ("omp", "tbb")
        else:
            _compiled(parallel=True)(*no_steps, 1)
        _State.signatures.add(self._parallel_signature)
        return True

    def _kernel(self, threads: int) -> tuple[Any, int]:
        """The kernel for a block at ``threads`` threads and its bands per product: the
        parallel one (numba's threads set to that many) above one thread, else the serial
        one."""
        if threads == 1:
            return _compiled(), 1
        numba = _kernels._load_numba()
        threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        self._numba_threads = self._numba_threads or numba.get_num_threads()
        numba.set_num_threads(threads)
        return _compiled(parallel=True), threads


def prepare(model: Any, run: Any) -> Fused | None:
    """The fused epochs for this ``fit``, or ``None`` where they do not apply (module notes):
    then the step loop runs. ``run`` is ``training``'s prepared run (X, y, weights, loss,
    optimizer, batch size, steps, batch hooks, thread control)."""
    if _kernels.mode() == "0" or run.weights is not None or not _kernels.available():
        return None
    if any(type(cb) is not NaNGuard for cb in run.batch_hooks):
        return None
    X, dtype = run.X, np.dtype(model.dtype)
    if not isinstance(run.source, ArraySource):
        return None  # batches from elsewhere (a user's source, a stream): the step loop
    if dtype not in (np.float32, np.float64) or X.ndim != 2 or X.dtype != dtype:
        return None
    if not X.flags.c_contiguous or len(X) == 0:
        return None
    codes = _layer_codes(model.layers)
    loss_code = _loss_code(run.loss, run.y, dtype)
    opt_code = run.optimizer.fused_form()
    if codes is None or loss_code is None or opt_code is None:
        return None
    layout = _layout(model)
    if layout is None:
        return None
    step_macs = run.batch_size * int((layout[:, 2] * layout[:, 3]).sum())
    if step_macs > MAX_STEP_MACS and not _numpy_blas_available():
        return None  # a large step on SciPy's BLAS: the step loop is as fast (MAX_STEP_MACS)
    # the parallel kernel may run where the run's threads may go above one and the step is
    # large enough to repay starting its parallel loops
    split = step_macs >= SPLIT_MIN_MACS and run.control is not None and run.control.may_split()
    split = split and can_split()
    return Fused(model, run, codes, layout, loss_code, opt_code, split)


def _layer_codes(layers: list[Any]) -> list[int] | None:
    codes = []
    for layer in layers:
        if type(layer) is not Dense or layer.l1 or layer.l2:
            return None
        code = _ACTIVATIONS.get(type(layer.activation))
        if code is None:
            return None
        codes.append(code)
    return codes


def _loss_code(loss: Any, y: np.ndarray, dtype: np.dtype) -> int | None:
    code = _LOSSES.get(type(loss))
    if code == 0:
        plain = not loss.label_smoothing and loss.class_weight is None
        return code if plain and y.ndim == 1 and y.dtype == np.int64 else None
    if code == 1 and loss.class_weight is not None:
        return None
    return code if code is not None and y.ndim == 2 and y.dtype == dtype else None


def _layout(model: Any) -> np.ndarray | None:
    """Per layer (W offset, b offset or -1, inputs, units, outputs' offset in the
    activations buffer, per sample), from the model's flat parameter layout."""
    _, _, entries = model.flat_parameters()
    offsets = {name: offset for name, offset, _, _ in entries}
    rows, out_at = [], 0
    for layer in model.layers:
        W = layer.params["W"]
        w_off = offsets.get(f"{layer.name}/W")
        b_off = offsets.get(f"{layer.name}/b", -1) if layer.use_bias else -1
        if w_off is None or W.ndim != 2:
            return None
        rows.append((w_off, b_off, W.shape[0], W.shape[1], out_at))
        out_at += W.shape[1]
    return np.array(rows, np.int64)
