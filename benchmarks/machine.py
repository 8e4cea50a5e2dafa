"""What the benchmark ran on: CPU, cores, load, BLAS configuration and measured sgemm peak."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time

import numpy as np


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    """The vector extensions the CPU reports (AVX2 / AVX-512 / FMA)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ("fma", "avx2", "avx512f", "avx512_bf16")
                    return " ".join(w for w in wanted if w in flags) or "none of fma/avx2/avx512"
    except OSError:
        pass
    return "unknown"


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None where it does not exist."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)  # idle + iowait, all


def busy_fraction(window: float = 0.25) -> float:
    """Fraction of all CPU time spent busy during ``window`` seconds (0 when unknown)."""
    a = _cpu_times()
    time.sleep(window)
    b = _cpu_times()
    if a is None or b is None or b[1] == a[1]:
        return 0.0
    return 1.0 - (b[0] - a[0]) / (b[1] - a[1])


class QuietWaiter:
    """Waits, before each timed epoch, until the machine is idle (at most ``busy`` of its CPU
    time used, by anything) for up to ``patience`` seconds, so that other people's processes
    on a shared machine distort the timings less. Counts how often it gave up waiting."""

    def __init__(self, enabled: bool = True, busy: float = 0.1, patience: float = 20.0) -> None:
        self.enabled, self.busy, self.patience = enabled, busy, patience
        self.waited = 0.0
        self.gave_up = 0
        self.checks = 0

    def wait(self) -> None:
        if not self.enabled:
            return
        self.checks += 1
        t0 = time.perf_counter()
        while busy_fraction() > self.busy:
            if time.perf_counter() - t0 > self.patience:
                self.gave_up += 1
                break
        self.waited += time.perf_counter() - t0

    def summary(self) -> str:
        if not self.enabled:
            return "timed epochs were not held back for other processes (--no-wait)"
        return (
            f"before each timed epoch the benchmark waited for an idle machine (<= "
            f"{100 * self.busy:.0f}% CPU busy): {self.waited:.0f} s waited in all; "
            f"{self.gave_up} of {self.checks} epochs started on a busy machine after "
            f"{self.patience:.0f} s of waiting"
        )


def blas_info() -> list[str]:
    """NumPy's BLAS as built (``numpy.show_config``) and as loaded (threadpoolctl)."""
    lines = [f"numpy {np.__version__}"]
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        lines.append(
            f"numpy.show_config blas: {blas.get('name')} {blas.get('version')}; "
            f"{blas.get('openblas configuration', '').strip()}"
        )
    except Exception as exc:  # the format of show_config is not a stable API
        lines.append(f"numpy.show_config unavailable: {exc}")
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            lines.append(
                "threadpoolctl: "
                + ", ".join(
                    f"{k}={pool.get(k)}"
                    for k in ("user_api", "internal_api", "version", "architecture", "num_threads")
                )
                + f" ({os.path.basename(str(pool.get('filepath')))})"
            )
    except ImportError:
        lines.append("threadpoolctl not installed: BLAS threads / core type unknown")
    lines.append(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(not set)')}")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            lines.append(f"{var}={os.environ[var]}")
    return lines


def thread_context() -> str:
    """One line to print with every result: CPU, cores, the BLAS as loaded (kernel, threads,
    threading layer, via threadpoolctl), the thread environment variables and numba's version
    (read from the installed metadata: numba is not imported)."""
    from importlib import metadata

    parts = [f"cpu: {cpu_model()}, {cores()} cores, load {load_average()}"]
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                parts.append(
                    f"BLAS: {pool.get('internal_api')} {pool.get('version')} kernel "
                    f"{pool.get('architecture')}, {pool.get('num_threads')} threads "
                    f"({pool.get('threading_layer')})"
                )
    except ImportError:
        parts.append("BLAS: unknown (threadpoolctl not installed)")
    env = [f"{v}={os.environ[v]}" for v in _THREAD_VARS if v in os.environ]
    parts.append("thread variables: " + (", ".join(env) if env else "none set"))
    try:
        parts.append(f"numba {metadata.version('numba')}")
    except metadata.PackageNotFoundError:
        parts.append("numba not installed")
    return "; ".join(parts)


_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "LUCIDNET_JIT",
)


def sgemm_peak(size: int = 2048, repeats: int = 7) -> float:
    """Measured float32 matmul speed of NumPy's BLAS in GFLOP/s (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


def describe(peak: float) -> list[str]:
    """Lines describing the machine, for the report header."""
    return [
        f"date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"cpu: {cpu_model()} ({cores()} cores usable; flags: {cpu_flags()})",
        f"python {platform.python_version()} on {platform.platform()}",
        *blas_info(),
        f"measured sgemm peak (NumPy, 2048x2048 float32): {peak:.1f} GFLOP/s",
    ]
