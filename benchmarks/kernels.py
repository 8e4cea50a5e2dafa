"""Each compiled kernel (lucidnet/kernels.py) against the NumPy fast path it replaces.

Run from the repository root::

    python benchmarks/kernels.py                 # every kernel at the sizes of workloads A and B
    python benchmarks/kernels.py --repeats 9 --threads 2
    python benchmarks/kernels.py --epochs A,B --threads 1   # whole epochs, NumPy vs kernels

For each kernel and size: microseconds per call of the NumPy fast path, of the serial kernel and
of the parallel kernel (``prange``, ``--threads`` threads), medians of ``--repeats`` rounds
(each round times a loop of calls), the three variants interleaved round by round so that a
varying machine load affects all alike. Compile time is excluded (one warm-up call each). The
sizes: the flat parameters of workload B (64-32-10: 2,410) and A (784-256-128-10: 235,146) and
ten times A; a hidden layer of B (32 x 32) and of A (128 x 256); the logits of B and A; a batch
of B and A gathered from its data set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lucidnet as ln  # noqa: E402
from lucidnet import kernels  # noqa: E402


class _Flat:
    """The part of a model an optimizer needs: flat parameters, gradients and their layout."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.p = rng.standard_normal(n).astype(np.float32)
        self.g = (rng.standard_normal(n) * 1e-2).astype(np.float32)
        self.layout = [("w", 0, n, (n,))]

    def flat_parameters(self) -> tuple[np.ndarray, np.ndarray, list]:
        return self.p, self.g, self.layout


def _timed(fn: Callable[[], object], budget_s: float = 0.05) -> float:
    """Microseconds per call, from a loop long enough to measure."""
    fn()
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return elapsed / loops * 1e6
        loops *= 2


def _optimizer_cases(rng: np.random.Generator) -> list[tuple[str, int, dict]]:
    cases = []
    for n in (2_410, 235_146, 2_351_460):
        for name, make in (("adam", ln.Adam), ("sgd_momentum", lambda: ln.SGD(0.01, 0.9))):
            variants = {}
            for mode in ("numpy", "serial", "parallel"):
                opt, model = make(), _Flat(n, rng)
                opt.step(model)  # slots made
                if mode == "numpy":
                    variants[mode] = lambda o=opt, m=model: o._fast_update(m.p, m.g, 1e-3, 5)
                else:
                    terms = kernels.gradient_terms(np.dtype(np.float32), 1.0, None, 0.0)
                    size = n if mode == "parallel" else 0
                    variants[mode] = lambda o=opt, m=model, s=size, t=terms: _kernel_step(
                        o, m, s, t
                    )
            cases.append((name, n, variants))
    return cases


def _kernel_step(opt: ln.Optimizer, model: _Flat, size: int, terms: tuple) -> None:
    saved = kernels.PARALLEL_MIN_SIZE
    kernels.PARALLEL_MIN_SIZE = size if size else 10**12
    try:
        opt._kernel_update(model.p, model.g, 1e-3, 5, terms)
    finally:
        kernels.PARALLEL_MIN_SIZE = saved


def _activation_cases(rng: np.random.Generator) -> list[tuple[str, int, dict]]:
    cases = []
    for n, k in ((32, 32), (128, 256), (1024, 1024)):
        z0 = rng.standard_normal((n, k)).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        dy = rng.standard_normal((n, k)).astype(np.float32)
        relu, db = ln.ReLU(), np.empty(k, np.float32)
        ones = np.ones(n, np.float32)
        z, out, dz = z0.copy(), np.empty_like(z0), np.empty_like(z0)

        def numpy_path(relu=relu, z=z, b=b, dy=dy, db=db, ones=ones, z0=z0):
            z[...] = z0
            z += b  # what Dense + ReLU's fast pair do
            relu.fast_forward(z)
            dz = relu.fast_backward(dy)
            np.matmul(ones, dz, out=db)

        def kernel_path(parallel, z=z, b=b, dy=dy, db=db, out=out, dz=dz, z0=z0):
            z[...] = z0
            size = z.size if parallel else 0
            saved = kernels.PARALLEL_MIN_SIZE
            kernels.PARALLEL_MIN_SIZE = size if size else 10**12
            try:
                kernels.kernel("bias_relu", size)(z, b, out, np.float32(0))
            finally:
                kernels.PARALLEL_MIN_SIZE = saved
            kernels.kernel("relu_backward_bias")(dy, out, dz, db, np.float32(0), np.float32(1))

        variants = {
            "numpy": numpy_path,
            "serial": lambda f=kernel_path: f(False),
            "parallel": lambda f=kernel_path: f(True),
        }
        cases.append(("bias+relu fwd+bwd", n * k, variants))
    return cases


def _loss_cases(rng: np.random.Generator) -> list[tuple[str, int, dict]]:
    cases = []
    for n in (32, 128):
        z = rng.standard_normal((n, 10)).astype(np.float32)
        y = rng.integers(0, 10, n)
        loss = ln.CrossEntropy()
        grad = np.empty_like(z)
        variants = {
            "numpy": lambda loss=loss, z=z, y=y: loss._fast_mean_and_grad(z, y),
            "serial": lambda z=z, y=y, g=grad: kernels.kernel("softmax_cross_entropy")(
                z, y, g, np.float32(0), np.float32(len(z))
            ),
        }
        cases.append(("softmax cross-entropy", n * 10, variants))
    return cases


def _gather_cases(rng: np.random.Generator) -> list[tuple[str, int, dict]]:
    cases = []
    for rows, cols, batch in ((1_797, 64, 32), (60_000, 784, 128), (60_000, 784, 1024)):
        X = rng.random((rows, cols), dtype=np.float32)
        idx = rng.permutation(rows)[:batch]
        out = np.empty((batch, cols), np.float32)

        def kernel_gather(parallel, X=X, idx=idx, out=out):
            kernels.kernel("gather_rows", out.size if parallel else 0)(X, idx, out)

        variants = {
            "numpy X[idx]": lambda X=X, idx=idx: X[idx],
            "numpy take": lambda X=X, idx=idx, out=out: np.take(X, idx, axis=0, out=out),
            "serial": lambda f=kernel_gather: f(False),
            "parallel": lambda f=kernel_gather: f(True),
        }
        cases.append(("gather rows", batch * cols, variants))
    return cases


def _workload(name: str, rows: int | None) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """(X, y, layer sizes, batch) of workload A (random MNIST-shaped) or B (digits-shaped)."""
    rng = np.random.default_rng(0)
    if name == "A":
        n, dims, batch = rows or 60_000, [784, 256, 128, 10], 128
    else:
        n, dims, batch = rows or 1_797, [64, 32, 10], 32
    X = rng.random((n, dims[0]), dtype=np.float32)
    y = (X[:, :10] @ rng.standard_normal((10, dims[-1]))).argmax(axis=1)
    return X, y, dims, batch


def epochs(workload: str, rows: int | None, repeats: int, threads: int) -> None:
    """Epoch times of ``train_step`` over a reshuffled data set (what ``fit`` runs per epoch),
    NumPy only and with the kernels, one epoch of each in turn; medians."""
    X, y, dims, batch = _workload(workload, rows)
    runs = {}
    for mode in ("0", "1"):
        model = ln.Sequential(
            [ln.Dense(d, activation="relu") for d in dims[1:-1]] + [ln.Dense(dims[-1])]
        )
        model.build((dims[0],), seed=0)
        runs[mode] = (model, ln.CrossEntropy(), ln.Adam(1e-3), np.random.default_rng(1), [])
    kernels.set_kernel_threads(threads)
    for round_ in range(repeats + 1):  # round 0: warm-up (and the compile)
        for mode, (model, loss, opt, rng, times) in runs.items():
            kernels.set_mode(mode)
            idx = rng.permutation(len(X))
            start = time.perf_counter()
            for s in range(0, len(X), batch):
                b = idx[s : s + batch]
                ln.train_step(model, X[b], y[b], loss, opt)
            if round_:
                times.append(time.perf_counter() - start)
    kernels.set_mode(None)
    cells = ", ".join(
        f"{'numpy' if m == '0' else 'kernels'} {statistics.median(r[4]) * 1e3:8.1f} ms "
        f"({min(r[4]) * 1e3:.1f}-{max(r[4]) * 1e3:.1f})"
        for m, r in runs.items()
    )
    print(f"workload {workload}: {len(X):,} rows, batch {batch}, kernel threads {threads}: {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads of the parallel kernels")
    parser.add_argument("--epochs", default="", help="workloads whose epoch times to measure: A,B")
    parser.add_argument("--rows", type=int, default=None, help="rows of the epoch workloads")
    args = parser.parse_args(argv)
    if not kernels.available():
        print("numba is not installed: nothing to compare")
        return 1
    if args.epochs:
        for workload in args.epochs.split(","):
            epochs(workload.strip(), args.rows, args.repeats, args.threads)
        return 0
    kernels.set_kernel_threads(args.threads)
    kernels.PARALLEL_MIN_SIZE = 1  # the cases choose: size 0 asks for the serial version
    rng = np.random.default_rng(0)
    cases = _optimizer_cases(rng) + _activation_cases(rng) + _loss_cases(rng)
    cases += _gather_cases(rng)
    print(
        f"numba {kernels.numba_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"parallel kernels on {args.threads} threads; us per call, median of {args.repeats}"
    )
    for name, size, variants in cases:
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant, fn in variants.items():  # interleaved round by round
                times[variant].append(_timed(fn))
        cells = ", ".join(f"{v} {statistics.median(t):9.1f}" for v, t in times.items())
        print(f"{name:24s} {size:>10,d}  {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
