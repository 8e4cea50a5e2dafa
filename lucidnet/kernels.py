"""Fused compiled kernels behind the fast path: plain loops compiled by numba, used when they pay.

Each kernel below is a loop over the elements (or rows) that reads like the formula it computes:
the Adam kernel reads like Adam. numba compiles it to machine code that does in one pass over
memory what the NumPy fast path does in several (an Adam step is 12 NumPy passes over the flat
parameters, one pass here). The NumPy code stays what it was: the textbook path is the reference
(``explain``, ``gradcheck``, the equality tests) and the NumPy fast path the fallback.

When a kernel runs (``Gate.ready``, asked at every call):

* ``LUCIDNET_JIT``, read when lucidnet is imported (``set_mode`` changes it later, or reads
  it again): ``0`` never, ``1`` always (compiled on first use), unset or ``auto``: once the
  problem has repaid the compile, see below. numba missing: never. (Read once rather than at
  every call: ``os.environ.get`` costs ~1 us, and a small network's step asks three times.)
* ``auto``: numba is loaded only after the NumPy paths the kernels replace have done about
  ``COMPILE_AFTER_S`` seconds of work together (estimated from the array sizes, so that a
  seeded run switches at the same step every time): loading numba and the cached kernels costs
  ~1 s in a fresh process, compiling them ~0.5-1 s each the first time, more than a small
  ``fit`` takes in all. This is the ski-rental rule: never more than twice the better of the
  two choices. The load is paid once for all kernels, so all their work counts toward it (a
  CNN's convolutions, poolings and activations each do a part). Once numba is loaded, each
  kernel waits for a tenth of that of its own work (its own compile, or its load from the
  cache, is all it costs then); once a kernel is compiled in this process, it runs for every
  problem at once.

Rounding: the kernels compute in the arrays' dtype with constants rounded to it, as NumPy does,
so a kernel whose operations are the textbook's in the textbook's order gives the same bits
(plain SGD, momentum, Nesterov, AdaGrad, RMSprop, ReLU and its backward); where the algebra is
folded to save operations (Adam's bias corrections, the softmax), the results agree to float32
rounding (tests/test_kernels.py, test_fast_*.py run with the JIT on and off). ``fastmath`` is
off: it would let LLVM reorder sums and ignore NaN, and the results would no longer be
reproducible. Slots that decay (momentum, Adam's moments, RMSprop's average) are flushed to 0 in
the kernel as they are written, below the optimizer's threshold (``optimizers`` module notes),
instead of every ``K`` steps in a separate pass.

Threads: elementwise kernels have a serial and a ``parallel=True`` (``prange``) version; the
parallel one runs above ``PARALLEL_MIN_SIZE`` elements once ``set_kernel_threads`` allows more
than one thread. Both give the same bits (no reductions). The default is one thread: on a busy
machine the parallel version waits for a free core at every call (measured 25 ms instead of
0.5 ms for an Adam step of 235k parameters with other work on both cores), so the choice of
threads is left to the code that knows the load (``lucidnet.threads``).

Cache: ``cache=True`` stores the machine code next to this file (``__pycache__``); where that
directory is read-only numba falls back to the user's cache directory (``$XDG_CACHE_HOME/numba``
or ``~/.cache/numba``), and ``NUMBA_CACHE_DIR`` overrides both. When no location is writable the
kernels are compiled without a cache, in every process. numba is imported only when a kernel is
first compiled: ``import lucidnet`` never loads it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

#: numba's ``prange`` once numba is loaded; a serial kernel (and plain Python) runs it as ``range``.
prange = range

#: ``auto`` mode compiles a kernel once the NumPy path it replaces has done this much work.
COMPILE_AFTER_S = 1.0
#: below this many elements the parallel version costs more than it saves (thread wake-up).
PARALLEL_MIN_SIZE = 100_000


# -- the kernels: plain loops, as the formulas read ------------------------------------------------
# Scalars arrive already rounded to the arrays' dtype (the wrappers below), so a float32 kernel
# computes in float32 as NumPy does; ``zero`` is 0 in that dtype.


def _gradient(g: np.ndarray, p: np.ndarray, i: int, scale: Any, clip: Any, wd: Any) -> Any:
    """The gradient an update uses: rescaled by ``clip_norm`` (``scale``, 1 without it), clipped
    to [-clip, clip] (``clip_value``, inf without it), plus coupled weight decay ``wd * p``;
    written back, so that the model's gradients show what was applied (as the NumPy path)."""
    gi = g[i] * scale
    if gi > clip:
        gi = clip
    elif gi < -clip:
        gi = -clip
    gi = gi + wd * p[i]
    g[i] = gi
    return gi


def _flushed(x: Any, tiny: Any) -> Any:
    """``x``, or 0 where ``|x|`` is below the flush threshold (it would turn subnormal)."""
    return tiny - tiny if abs(x) < tiny else x  # NaN is kept (NaN < tiny is false)


def _sgd(p: np.ndarray, g: np.ndarray, lr: Any, scale: Any, clip: Any, wd: Any) -> None:
    for i in prange(p.shape[0]):
        gi = _gradient(g, p, i, scale, clip, wd)
        p[i] = p[i] - lr * gi  # p <- p - lr g


def _sgd_momentum(
    p: np.ndarray,
    g: np.ndarray,
    b: np.ndarray,
    lr: Any,
    mu: Any,
    nesterov: bool,
    scale: Any,
    clip: Any,
    wd: Any,
    tiny: Any,
) -> None:
    for i in prange(p.shape[0]):
        gi = _gradient(g, p, i, scale, clip, wd)
        bi = _flushed(mu * b[i] + gi, tiny)  # b <- mu b + g
        b[i] = bi
        if nesterov:
            p[i] = p[i] - lr * (gi + mu * bi)  # p <- p - lr (g + mu b)
        else:
            p[i] = p[i] - lr * bi  # p <- p - lr b


def _adagrad(
    p: np.ndarray, g: np.ndarray, s: np.ndarray, lr: Any, eps: Any, scale: Any, clip: Any, wd: Any
) -> None:
    for i in prange(p.shape[0]):
        gi = _gradient(g, p, i, scale, clip, wd)
        si = s[i] + gi * gi  # s <- s + g^2
        s[i] = si
        p[i] = p[i] - lr * gi / (np.sqrt(si) + eps)  # p <- p - lr g / (sqrt(s) + eps)


def _rmsprop(
    p: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    b: np.ndarray,
    lr: Any,
    rho: Any,
    one_minus_rho: Any,
    eps: Any,
    mu: Any,
    scale: Any,
    clip: Any,
    wd: Any,
    tiny: Any,
) -> None:
    """Without momentum ``b`` is an empty array and ``mu`` is 0."""
    with_momentum = b.shape[0] > 0
    for i in prange(p.shape[0]):
        gi = _gradient(g, p, i, scale, clip, wd)
        vi = _flushed(rho * v[i] + one_minus_rho * (gi * gi), tiny)  # v <- rho v + (1-rho) g^2
        v[i] = vi
        scaled = gi / (np.sqrt(vi) + eps)  # g / (sqrt(v) + eps)
        if with_momentum:
            bi = _flushed(mu * b[i] + scaled, tiny)  # b <- mu b + g / (sqrt(v) + eps)
            b[i] = bi
            p[i] = p[i] - lr * bi  # p <- p - lr b
        else:
            p[i] = p[i] - lr * scaled  # p <- p - lr g / (sqrt(v) + eps)


def _adam(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    b1: Any,
    one_minus_b1: Any,
    b2: Any,
    one_minus_b2: Any,
    step_size: Any,
    eps_hat: Any,
    decay: Any,
    scale: Any,
    clip: Any,
    wd: Any,
    tiny: Any,
) -> None:
    """Adam with the bias corrections folded into two scalars (the optimizer computes them):
    lr m_hat / (sqrt(v_hat) + eps) = step_size m / (sqrt(v) + eps_hat) with
    step_size = lr sqrt(1 - b2^t) / (1 - b1^t) and eps_hat = eps sqrt(1 - b2^t).
    ``decay`` is AdamW's decoupled 1 - lr wd (1 for Adam)."""
    for i in prange(p.shape[0]):
        gi = _gradient(g, p, i, scale, clip, wd)
        mi = _flushed(b1 * m[i] + one_minus_b1 * gi, tiny)  # m <- b1 m + (1 - b1) g
        vi = _flushed(b2 * v[i] + one_minus_b2 * (gi * gi), tiny)  # v <- b2 v + (1 - b2) g^2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - step_size * mi / (np.sqrt(vi) + eps_hat)


def _bias_relu(z: np.ndarray, b: np.ndarray, out: np.ndarray, zero: Any) -> None:
    """z <- z + b (the pre-activation, kept for diagnostics);  out = max(z, 0), NaN kept."""
    n, k = z.shape
    for i in prange(n):
        for j in range(k):
            zij = z[i, j] + b[j]
            z[i, j] = zij
            out[i, j] = zero if zij <= 0 else zij


def _relu_backward_bias(
    dy: np.ndarray, out: np.ndarray, dz: np.ndarray, db: np.ndarray, zero: Any, one: Any
) -> None:
    """dz = dy * (out > 0), the textbook's 0/1 factor (so inf * 0 is NaN here too);
    db = sum over the batch of dz, the rows added in order."""
    n, k = dy.shape
    for j in range(k):
        db[j] = zero
    for i in range(n):
        for j in range(k):
            dzij = dy[i, j] * (one if out[i, j] > 0 else zero)
            dz[i, j] = dzij
            db[j] += dzij


def _softmax_cross_entropy(
    z: np.ndarray, labels: np.ndarray, grad: np.ndarray, zero: Any, count: Any
) -> float:
    """Mean over the n rows of L_i = log sum_j e^(z_ij - m_i) - (z_iy - m_i), m_i the row
    maximum; grad = (softmax(z) - onehot(y)) / n (``count`` is n in the dtype). The loss is
    summed in float64."""
    n, k = z.shape
    total = 0.0
    for i in range(n):
        m = z[i, 0]
        for j in range(1, k):
            if z[i, j] > m or z[i, j] != z[i, j]:  # NaN wins, as in np.max
                m = z[i, j]
        sum_exp = zero
        for j in range(k):
            e = np.exp(z[i, j] - m)
            grad[i, j] = e
            sum_exp += e
        y = labels[i]
        total += np.log(sum_exp) - (z[i, y] - m)
        denominator = sum_exp * count
        for j in range(k):
            grad[i, j] = grad[i, j] / denominator
        grad[i, y] -= 1 / count
    return total / n


def _sigmoid_cross_entropy(z: np.ndarray, t: np.ndarray, grad: np.ndarray) -> float:
    """Mean over rows and units of l = max(z, 0) - z t + log(1 + e^-|z|) (no overflow);
    grad = (sigmoid(z) - t) / (n units), sigmoid from e^-|z| (never overflows). Computed in
    float64 (the Python constants promote it), rounded to the dtype when stored."""
    n, k = z.shape
    count = n * k
    total = 0.0
    for i in range(n):
        for j in range(k):
            zij, tij = z[i, j], t[i, j]
            e = np.exp(-abs(zij))
            total += max(zij, 0) - zij * tij + np.log1p(e)
            s = 1 / (1 + e) if zij >= 0 else e / (1 + e)
            grad[i, j] = (s - tij) / count
    return total / count


def _gather_rows(x: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    """out[i] = x[idx[i]] for a 2-D ``x``. Element by element: numba compiles the inner loop to
    vector copies, where a slice assignment (``out[i, :] = ...``) costs 1-5x more."""
    n, k = out.shape
    for i in prange(n):
        row = idx[i]
        for j in range(k):
            out[i, j] = x[row, j]


# -- convolution and pooling: images as (n, height, width, channels); a 1-D layer passes its
# sequences as images of height 1. Parallel versions split the batch (samples are independent).
def _add_windows(
    dP: np.ndarray, dxp: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int
) -> None:
    """col2im: dxp[s, i*sh + a*dh, j*sw + b*dw, c] += dP[s, i, j, (a*kw + b)*C + c] for every
    output position (i, j) and kernel offset (a, b): each patch's gradient added back where the
    patch was read (overlapping patches add up, in the order of the positions). dP is
    (n, oh, ow, kh*kw*C), dxp (n, H, W, C), zeroed by the caller."""
    n, oh, ow = dP.shape[0], dP.shape[1], dP.shape[2]
    c = dxp.shape[3]
    for s in prange(n):
        for i in range(oh):
            for a in range(kh):
                row = dxp[s, i * sh + a * dh]  # (W, C): the input row kernel row a reads
                for j in range(ow):
                    patch = dP[s, i, j]
                    for b in range(kw):
                        x = j * sw + b * dw
                        k0 = (a * kw + b) * c
                        for ch in range(c):
                            row[x, ch] += patch[k0 + ch]


def _max_pool_2x2(xp: np.ndarray, y: np.ndarray, where: np.ndarray, sh: int, sw: int) -> None:
    """Max pooling over 2 x 2 windows every (sh, sw) positions: y[s, i, j, c] = the largest of
    xp[s, i*sh + a, j*sw + b, c] over a, b in {0, 1}, and where = its offset 2a + b. The NumPy
    fast path's steps, offset by offset: where moves to an offset whose value is strictly
    larger than the running maximum (the first maximum wins ties), and the running maximum
    becomes NaN at a NaN (np.maximum), after which nothing compares larger. xp (n, H, W, C) is
    padded with -inf by the caller.

    The window is written out, not looped over, and the NaN is taken by a select of its own:
    LLVM then turns each step into branch-free selects (a loop over the window, or one
    condition for both cases, kept the branches: 3-4x slower on random data)."""
    n, oh, ow, c = y.shape
    for s in prange(n):
        for i in range(oh):
            r0, r1 = xp[s, i * sh], xp[s, i * sh + 1]
            for j in range(ow):
                x0 = j * sw
                for ch in range(c):
                    m = r0[x0, ch]
                    w = 0
                    v = r0[x0 + 1, ch]
                    if v > m:
                        m = v
                        w = 1
                    m = v if v != v else m
                    v = r1[x0, ch]
                    if v > m:
                        m = v
                        w = 2
                    m = v if v != v else m
                    v = r1[x0 + 1, ch]
                    if v > m:
                        m = v
                        w = 3
                    m = v if v != v else m
                    y[s, i, j, ch] = m
                    where[s, i, j, ch] = w


def _max_pool_2x2_backward(
    dy: np.ndarray, where: np.ndarray, dxp: np.ndarray, sh: int, sw: int, zero: Any
) -> None:
    """dxp[s, i*sh + a, j*sw + b, c] += dy[s, i, j, c] at each window's maximum 2a + b = where,
    0 elsewhere (added, so overlapping windows add up). dxp (n, H, W, C) zeroed by the
    caller; ``zero`` is 0 in the dtype (a Python 0 would make the sums float64)."""
    n, oh, ow, c = dy.shape
    for s in prange(n):
        for i in range(oh):
            r0, r1 = dxp[s, i * sh], dxp[s, i * sh + 1]
            for j in range(ow):
                x0 = j * sw
                for ch in range(c):
                    w, d = where[s, i, j, ch], dy[s, i, j, ch]
                    r0[x0, ch] += d if w == 0 else zero
                    r0[x0 + 1, ch] += d if w == 1 else zero
                    r1[x0, ch] += d if w == 2 else zero
                    r1[x0 + 1, ch] += d if w == 3 else zero


#: kernel name -> (source, whether it has a parallel version).
_SOURCES: dict[str, tuple[Callable[..., Any], bool]] = {
    "sgd": (_sgd, True),
    "sgd_momentum": (_sgd_momentum, True),
    "adagrad": (_adagrad, True),
    "rmsprop": (_rmsprop, True),
    "adam": (_adam, True),
    "bias_relu": (_bias_relu, True),
    "relu_backward_bias": (_relu_backward_bias, False),
    "softmax_cross_entropy": (_softmax_cross_entropy, False),
    "sigmoid_cross_entropy": (_sigmoid_cross_entropy, False),
    "gather_rows": (_gather_rows, True),
    "add_windows": (_add_windows, True),
    "max_pool_2x2": (_max_pool_2x2, True),
    "max_pool_2x2_backward": (_max_pool_2x2_backward, True),
}
#: helpers the kernels call, compiled (and inlined) before them.
_HELPERS = ("_gradient", "_flushed")

#: estimated NumPy cost of the work a kernel replaces, nanoseconds per call and per element,
#: which ``auto`` counts toward ``COMPILE_AFTER_S``: fitted to ``benchmarks/kernels.py`` on a
#: shared 2-core Xeon (float32; Adam 24 us for 2,410 parameters and 1.25 ms for 235k; bias + ReLU
#: forward and backward 17 us for 32 x 32 and 100 us for 128 x 256; softmax cross-entropy 10 us
#: for 32 x 10 and 27 us for 128 x 10; gathering 32 x 64 rows 2.7 us, 128 x 784 30 us).
_NUMPY_COST_NS = {
    "optimizer": (12_000.0, 5.0),
    "activation": (12_000.0, 2.5),
    "loss": (5_000.0, 17.0),
    "gather": (2_000.0, 0.3),
    # per element of dL/dpatches: the NumPy fast path's per-offset products and slice-adds,
    # 2.1 ms for LeNet's second convolution (1.2M elements, batch 128)
    "col2im": (10_000.0, 1.7),
    # per element of the pooling's input, forward or backward: 0.9 / 0.6 ms for LeNet's first
    # max-pool (442k elements, batch 128)
    "pool": (10_000.0, 1.7),
}


# -- loading and compiling ---------------------------------------------------------------------
def _parse_mode(value: str | None) -> str:
    value = (value or "auto").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "0"
    if value in ("1", "on", "true", "yes"):
        return "1"
    return "auto"


class _State:
    mode: str = _parse_mode(os.environ.get("LUCIDNET_JIT"))
    numba: Any = None
    available: bool | None = None
    threads: int | None = None  # set_kernel_threads; None: 1 (serial kernels)
    serial: dict[str, Any] = {}
    parallel: dict[str, Any] = {}
    compiled: set[str] = set()  # names with a serial or parallel version compiled
    work_ns: float = 0.0  # every gate's estimated NumPy work while numba is not loaded
    forked: bool = False  # a fork of a process whose numba threads had started (forked())


def mode() -> str:
    """``"0"`` (off), ``"1"`` (on) or ``"auto"``: when the kernels run (module notes)."""
    return _State.mode


def set_mode(value: str | None) -> str:
    """Set when the kernels run: ``"0"`` / ``"off"``, ``"1"`` / ``"on"`` or ``"auto"``;
    ``None`` reads ``LUCIDNET_JIT`` again. Returns the previous setting."""
    previous = _State.mode
    _State.mode = _parse_mode(os.environ.get("LUCIDNET_JIT") if value is None else value)
    return previous


def available() -> bool:
    """Whether numba can be imported (found without importing it)."""
    if _State.available is None:
        _State.available = importlib.util.find_spec("numba") is not None
    return _State.available


def numba_version() -> str | None:
    """numba's version if it is installed (read without importing numba)."""
    if not available():
        return None
    from importlib.metadata import version

    return version("numba")


def _load_numba() -> Any:
    if _State.numba is None:
        numba: Any = importlib.import_module("numba")  # here, never at import time
        globals()["prange"] = numba.prange
        for name in _HELPERS:
            helper = globals()[name]
            if not hasattr(helper, "py_func"):  # not compiled yet (numba loaded a second time)
                globals()[name] = numba.njit(inline="always", error_model="numpy")(helper)
        _State.numba = numba
        if _State.threads is not None:  # it starts numba's threads
            count = min(_State.threads, numba.config.NUMBA_NUM_THREADS)
            start_threads(lambda: numba.set_num_threads(count))
    return _State.numba


def _compile(source: Callable[..., Any], parallel: bool) -> Any:
    """A numba dispatcher for ``source``, cached on disk where a cache location is writable.

    The parallel version is compiled from a copy of the function under another name, so that
    its cache files do not collide with the serial version's (numba names them after it)."""
    numba = _load_numba()
    func = source
    if parallel:
        func = types.FunctionType(
            source.__code__, source.__globals__, source.__name__ + "_parallel"
        )
        func.__qualname__ = source.__qualname__ + "_parallel"
        func.__doc__ = source.__doc__
    options = {"error_model": "numpy", "parallel": parallel, "fastmath": False}
    try:
        return numba.njit(cache=True, **options)(func)
    except RuntimeError:  # "cannot cache function ...: no locator available": nowhere writable
        return numba.njit(cache=False, **options)(func)


def kernel(name: str, size: int = 0) -> Any:
    """The compiled kernel ``name`` (compiled now if needed), its parallel version for ``size``
    elements and above ``PARALLEL_MIN_SIZE`` when more than one kernel thread is allowed."""
    parallel = size >= PARALLEL_MIN_SIZE and kernel_threads() > 1 and not forked()
    return version(name, parallel and _SOURCES[name][1])


def version(name: str, parallel: bool) -> Any:
    """The serial or the parallel (``prange`` on numba's threads) version of the kernel
    ``name``, compiled now if needed."""
    table = _State.parallel if parallel else _State.serial
    compiled = table.get(name)
    if compiled is None:
        compiled = table[name] = _compile(_SOURCES[name][0], parallel)
        _State.compiled.add(name)
    return compiled


def set_kernel_threads(n: int | None) -> None:
    """Threads the parallel kernels may use; 1 or ``None`` (the default) makes every kernel run
    its serial version. Applied to numba now if it is loaded, else when it is loaded."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"kernel threads must be a positive int or None, got {n!r}")
    _State.threads = n
    numba = _State.numba
    if numba is not None:  # it starts numba's threads
        most = numba.config.NUMBA_NUM_THREADS
        start_threads(lambda: numba.set_num_threads(most if n is None else min(n, most)))


def forked() -> bool:
    """Whether this process is a fork of one in which numba's threads had started: GNU OpenMP
    (numba's ``omp`` threading layer) ends such a child (SIGTERM, "fork() called from a
    process already using GNU OpenMP") when it starts parallel work, so the parallel kernels
    are not used there."""
    return _State.forked


def _after_fork_in_child() -> None:
    if _threads_started():
        _State.forked = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def start_threads(first_call: Callable[[], Any]) -> str:
    """Run ``first_call`` (anything that may start numba's threads: a parallel kernel's
    first call or compile, ``numba.set_num_threads``) and return numba's threading layer
    (``"omp"``, ``"tbb"`` or ``"workqueue"``; ``""`` while no thread has started).

    numba's ``omp`` layer turns on nested parallelism (OpenMP's max active levels 255) in GNU
    OpenMP when it starts its threads. The process may share that libgomp with others: PyTorch
    imported afterwards links to it, and its nested parallel regions then put 4 threads on 2
    cores (a PyTorch epoch of A's network on 20,000 samples: 0.9 s instead of 0.26 s after a
    parallel fit). So when the threads start here, the setting found before is put back."""
    numba = _load_numba()
    openmp = None if _threads_started() else _libgomp()
    levels = openmp.omp_get_max_active_levels() if openmp is not None else None
    try:
        first_call()
    finally:
        layer = str(numba.threading_layer()) if _threads_started() else ""
        if openmp is not None and layer == "omp":
            openmp.omp_set_max_active_levels(levels)
    return layer


def _threads_started() -> bool:
    """Whether numba's threads have started in this process (or in the one it was forked
    from): numba names its threading layer only then."""
    numba = sys.modules.get("numba")
    if numba is None:
        return False
    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    except Exception:  # noqa: BLE001 - another numba: assume they have (the safe side)
        return True
    return True


def _libgomp() -> Any:
    """The GNU OpenMP library numba's ``omp`` layer calls (found through that layer's own
    library, whose dependencies ``ctypes`` searches), or None."""
    import ctypes

    try:
        spec = importlib.util.find_spec("numba.np.ufunc.omppool")
        library = ctypes.CDLL(spec.origin) if spec is not None and spec.origin else None
        if library is not None and hasattr(library, "omp_set_max_active_levels"):
            return library
    except (ImportError, OSError):
        pass
    return None


def kernel_threads() -> int:
    """Threads the parallel kernels would use now (1: the serial versions)."""
    return 1 if _State.threads is None else _State.threads


def is_loaded() -> bool:
    """Whether this process has loaded numba for the kernels."""
    return _State.numba is not None


class Gate:
    """Whether one user of a kernel (an optimizer, a layer, a loss) should call it now.

    Args:
        kind: ``"optimizer"``, ``"activation"``, ``"loss"``, ``"gather"``, ``"col2im"`` or
            ``"pool"``: which estimate of the NumPy path's cost ``auto`` counts.
        name: the kernel, to know whether it is compiled already.
    """

    __slots__ = ("kind", "name", "work_ns", "per_call", "per_element")

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name, self.work_ns = kind, name, 0.0
        self.per_call, self.per_element = _NUMPY_COST_NS[kind]

    def ready(self, size: int) -> bool:
        """Whether to run the kernel on ``size`` elements (counts the work otherwise). Asked at
        every call of a small network's step, so the common answers come first and cheaply."""
        setting = _State.mode
        if setting == "0":
            return False
        if setting == "1" or self.name in _State.compiled:
            return _State.available or available()
        work = self.per_call + self.per_element * size
        self.work_ns += work
        if _State.numba is None:  # loading numba is paid once for every kernel: all work counts
            _State.work_ns += work
            return _State.work_ns >= COMPILE_AFTER_S * 1e9 and available()
        return self.work_ns >= 0.1 * COMPILE_AFTER_S * 1e9 and available()


def gate_for(owner: Any, kind: str, name: str) -> Gate:
    """The :class:`Gate` of kernel ``name`` for ``owner`` (a layer, an activation, a loss), made
    on first use and kept in the owner's ``__dict__`` (under ``"_gates"``)."""
    gates = owner.__dict__.setdefault("_gates", {})
    gate = gates.get(name)
    if gate is None:
        gate = gates[name] = Gate(kind, name)
    return gate


# -- the calls: constants rounded to the arrays' dtype -----------------------------------------
def gradient_terms(
    dtype: np.dtype, scale: float, clip: float | None, wd: float
) -> tuple[Any, Any, Any]:
    """``(scale, clip, wd)`` for ``_gradient`` in ``dtype`` (no clip: inf)."""
    c = dtype.type
    return c(scale), c(math.inf if clip is None else clip), c(wd)


def flush_threshold(dtype: np.dtype, margin: float) -> Any:
    """The flush threshold ``margin * smallest normal`` in ``dtype``."""
    return dtype.type(np.finfo(dtype).tiny * margin)


def gather_rows(x: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[i] = x[idx[i]]`` (a shuffled mini-batch) and return ``out``.

    The kernel copies the rows straight into ``out``, on several threads for large batches;
    ``np.take(x, idx, axis=0, out=out)`` is the fallback (numba off, ``x`` not C-contiguous or
    of more than two dimensions... flattened to rows first). ``idx`` must hold valid row indices
    (not checked inside the kernel, so check them once per epoch, as ``rng.permutation`` makes
    them)."""
    if (
        mode() != "0"
        and available()
        and x.flags.c_contiguous
        and out.flags.c_contiguous
        and x.ndim >= 2
        and out.dtype == x.dtype
        and idx.dtype.kind in "iu"
        and _GATHER_GATE.ready(out.size)
    ):
        rows, cols = x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64))
        kernel("gather_rows", out.size)(x.reshape(rows, cols), idx, out.reshape(len(idx), cols))
        return out
    np.take(x, idx, axis=0, out=out)
    return out


_GATHER_GATE = Gate("gather", "gather_rows")
