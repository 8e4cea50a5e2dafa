"""The compiled kernels (lucidnet/kernels.py) and when they run.

The kernels' numbers are proven against the textbook path where they are used
(test_fast_optimizers.py, test_fast_layers.py, test_fast_losses.py, test_performance_paths.py,
each on both fast paths); here: ``import lucidnet`` never loads numba, ``LUCIDNET_JIT`` and the
compile-when-it-pays gate, the kernels on NaN and infinities, the mini-batch gather, the parallel
versions giving the serial versions' bits, the thread setting, subclasses keeping their own
arithmetic, and the cache location fallback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import _jit
import numpy as np
import pytest

import lucidnet as ln
from lucidnet import fused, kernels

jit_fixture = _jit.JIT  # the jit and calls fixtures (tests/_jit.py)
calls_fixture = _jit.CALLS

ROOT = Path(__file__).resolve().parent.parent
needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "LUCIDNET_JIT"}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


# -- numba is loaded only when a kernel pays ---------------------------------------------------


def test_import_and_a_small_fit_do_not_load_numba():
    """``import lucidnet`` and a small fit (auto mode: NumPy, the compile would not pay) never
    import numba, so that the import stays fast."""
    result = _run(
        """
        import sys
        import numpy as np
        import lucidnet as ln
        assert "numba" not in sys.modules, "import lucidnet loaded numba"
        X = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(2)]).fit(
            X, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=0)
        assert "numba" not in sys.modules, "a small fit loaded numba"
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(
    "value, expected",
    [("0", "0"), ("off", "0"), ("1", "1"), (" ON ", "1"), ("auto", "auto"), ("", "auto")],
)
def test_the_setting_is_read_from_the_environment_and_set_by_a_function(
    monkeypatch, value, expected
):
    monkeypatch.setattr(kernels._State, "mode", kernels.mode())  # restored after the test
    monkeypatch.setenv("LUCIDNET_JIT", value)
    kernels.set_mode(None)  # reads LUCIDNET_JIT again, as at import
    assert kernels.mode() == expected
    assert kernels.set_mode("off") == expected and kernels.mode() == "0"
    monkeypatch.delenv("LUCIDNET_JIT")
    kernels.set_mode(None)
    assert kernels.mode() == "auto"


def test_the_environment_is_read_at_import():
    result = _run("import lucidnet; print(lucidnet.kernels.mode())", LUCIDNET_JIT="0")
    assert result.stdout.strip() == "0", result.stderr


@needs_numba
def test_the_gate_compiles_once_the_numpy_work_would_have_paid(monkeypatch):
    monkeypatch.setattr(kernels._State, "mode", "auto")
    monkeypatch.setattr(kernels, "COMPILE_AFTER_S", 1e-3)  # 1 ms of estimated NumPy work
    monkeypatch.setattr(kernels._State, "serial", {})  # nothing compiled yet in this process
    monkeypatch.setattr(kernels._State, "parallel", {})
    monkeypatch.setattr(kernels._State, "compiled", set())
    monkeypatch.setattr(kernels._State, "work_ns", 0.0)
    numba = kernels._load_numba()
    monkeypatch.setattr(kernels._State, "numba", None)  # as in a process that has not loaded it
    gate = kernels.Gate("optimizer", "sgd")
    per_call, per_element = kernels._NUMPY_COST_NS["optimizer"]
    calls_before = int(1e6 // (per_call + per_element * 1000))  # calls of 1,000 elements
    answers = [gate.ready(1000) for _ in range(calls_before + 1)]
    assert answers == [False] * calls_before + [True]  # the same step every run: no timing
    # loading numba is shared: the work of every gate counts toward it, so once it has paid,
    # a second gate (another kernel) does not wait again for the load
    assert kernels.Gate("optimizer", "sgd").ready(1000)
    monkeypatch.setattr(kernels._State, "work_ns", 0.0)
    halves = [kernels.Gate("optimizer", "sgd"), kernels.Gate("loss", "softmax_cross_entropy")]
    answers = [g.ready(1000) for _ in range(calls_before) for g in halves]
    assert answers.index(True) < calls_before + 2  # two gates share the budget: half as long
    # with numba loaded, each gate waits for a tenth as long of its own work
    monkeypatch.setattr(kernels._State, "numba", numba)
    loaded = kernels.Gate("optimizer", "sgd")
    answers = [loaded.ready(1000) for _ in range(calls_before // 10 + 1)]
    assert answers[-1] and sum(answers) == 1
    kernels.kernel("sgd")  # compiled (from the cache) by the first user
    assert kernels.Gate("optimizer", "sgd").ready(10)  # a compiled kernel runs at once
    kernels.set_mode("0")
    assert not kernels.Gate("optimizer", "sgd").ready(10**9)
    kernels.set_mode("1")
    assert kernels.Gate("optimizer", "adam").ready(1)
    monkeypatch.setattr(kernels._State, "available", False)  # numba not installed
    assert not kernels.Gate("optimizer", "adam").ready(10**9)


# -- the kernels on the numbers that break formulas ---------------------------------------------


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_propagate_nan_and_inf_like_the_textbook(dtype):
    rng = np.random.default_rng(0)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1.0, 2.0], dtype=dtype)
    z = rng.choice(specials, size=(9, 8)).astype(dtype)
    b = np.array([0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 0.5, -0.5], dtype=dtype)
    dy = rng.choice(specials, size=(9, 8)).astype(dtype)
    textbook = ln.ReLU()
    with np.errstate(all="ignore"):
        out_t = textbook.forward(z + b, training=True)
        dx_t = textbook.backward(dy)
        db_t = dx_t.sum(axis=0)
        z_plus_b = z + b
    zf, out, dz, db = z.copy(), np.empty_like(z), np.empty_like(z), np.empty(8, dtype)
    kernels.kernel("bias_relu")(zf, b, out, dtype(0))
    kernels.kernel("relu_backward_bias")(dy, out, dz, db, dtype(0), dtype(1))
    np.testing.assert_array_equal(zf, z_plus_b)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_array_equal(dz, dx_t)
    np.testing.assert_array_equal(db, db_t)


@needs_numba
def test_optimizer_kernels_keep_nan_and_flush_only_tiny_slots():
    """A NaN gradient stays NaN in the slots (never flushed away as if it were tiny); slots
    below the threshold become exactly 0 in the same pass."""
    p = np.ones(4, np.float32)
    g = np.array([np.nan, 0.0, 1e-3, 0.0], np.float32)
    b = np.array([0.0, 1e-32, 1.0, 1e-20], np.float32)
    terms = kernels.gradient_terms(p.dtype, 1.0, None, 0.0)
    tiny = kernels.flush_threshold(p.dtype, 2.0**26)
    kernels.kernel("sgd_momentum")(p, g, b, np.float32(0.1), np.float32(0.9), False, *terms, tiny)
    assert np.isnan(b[0]) and np.isnan(p[0])
    assert b[1] == 0.0  # 0.9e-32 < 8e-31: flushed
    assert b[2] == np.float32(0.9) * np.float32(1.0) + np.float32(1e-3)
    assert b[3] == np.float32(0.9) * np.float32(1e-20)  # above the threshold: kept


# -- the mini-batch gather --------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(50, 7), (50, 3, 4)], ids=["2-D", "3-D"])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32, np.intp])
def test_gather_rows_equals_fancy_indexing(shape, index_dtype, jit, calls):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    idx = rng.permutation(50)[:20].astype(index_dtype)
    out = np.full((20, *shape[1:]), np.nan, np.float32)
    assert kernels.gather_rows(x, idx, out) is out
    np.testing.assert_array_equal(out, x[idx])
    assert calls == (["gather_rows"] if jit == "kernels" else [])


def test_gather_rows_falls_back_to_numpy_for_strided_input(jit, calls):
    x = np.arange(200, dtype=np.float64).reshape(20, 10)[:, ::2]  # not C-contiguous
    idx = np.array([3, 0, 19, 3])
    out = np.empty((4, 5))
    np.testing.assert_array_equal(kernels.gather_rows(x, idx, out), x[idx])
    assert calls == []


# -- threads: the parallel versions give the same bits ------------------------------------------


@needs_numba
def test_parallel_kernels_give_the_serial_bits(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN_SIZE", 1_000)
    monkeypatch.setattr(kernels._State, "threads", 2)
    assert kernels.kernel("adam", 999) is kernels.kernel("adam", 0)  # small: serial
    serial, parallel = kernels.kernel("adam", 0), kernels.kernel("adam", 5_000)
    assert serial is not parallel
    rng = np.random.default_rng(0)
    state = [rng.standard_normal(5_000).astype(np.float32) for _ in range(3)]
    state.append(rng.random(5_000).astype(np.float32))  # v >= 0
    copies = [[a.copy() for a in state] for _ in range(2)]
    c = np.float32
    terms = kernels.gradient_terms(np.dtype(np.float32), 0.5, 0.7, 0.01)
    consts = (c(0.9), c(0.1), c(0.999), c(0.001), c(0.01), c(1e-8), c(1.0), *terms, c(1e-30))
    for kernel, (p, g, m, v) in zip((serial, parallel), copies):
        kernel(p, g, m, v, *consts)
    for a, b in zip(*copies):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(copies[0][0], state[0])  # the update happened
    monkeypatch.setattr(kernels._State, "threads", 1)
    assert kernels.kernel("adam", 10**7) is serial  # one thread: always the serial version


def test_set_kernel_threads_checks_its_argument(monkeypatch):
    monkeypatch.setattr(kernels._State, "threads", kernels._State.threads)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="kernel threads must be a positive int or None"):
            kernels.set_kernel_threads(bad)
    kernels.set_kernel_threads(1)
    assert kernels.kernel_threads() == 1
    kernels.set_kernel_threads(None)
    assert kernels.kernel_threads() == 1  # the default: serial kernels


# -- subclasses keep their own arithmetic ------------------------------------------------------


def test_an_optimizer_subclass_with_its_own_update_runs_no_kernel(monkeypatch, calls):
    monkeypatch.setattr(kernels._State, "mode", "1")

    class HalfSGD(ln.SGD):
        def _fast_update(self, p, g, lr, t):
            p -= 0.5 * lr * g

    assert HalfSGD.kernel_name == "" and ln.SGD.kernel_name == "sgd"
    model = ln.Sequential([ln.Dense(3)], dtype="float64")
    model.build((2,), seed=0)
    before = model.flat_parameters()[0].copy()
    model.flat_parameters()[1][...] = 1.0
    HalfSGD(lr=0.1).step(model)
    p, g, _ = model.flat_parameters()
    np.testing.assert_array_equal(p[g != 0], before[g != 0] - 0.05)
    assert calls == []


# -- the cache ---------------------------------------------------------------------------------


@needs_numba
def test_without_a_writable_cache_location_the_kernels_compile_uncached(monkeypatch):
    numba = kernels._load_numba()
    real_njit = numba.njit

    def njit(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(*args, **options)

    def double(x):  # a tiny kernel: quick to compile
        for i in range(x.shape[0]):
            x[i] = 2 * x[i]

    monkeypatch.setattr(numba, "njit", njit)
    compiled = kernels._compile(double, parallel=False)
    x = np.arange(3.0)
    compiled(x)
    np.testing.assert_array_equal(x, [0.0, 2.0, 4.0])
    assert compiled.py_func is double  # compiled by numba, not the Python function


@needs_numba
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write a read-only folder"
)
def test_a_read_only_package_folder_caches_in_the_user_cache(tmp_path):
    package = tmp_path / "site"
    package.mkdir()
    (package / "kernels.py").write_text((ROOT / "lucidnet" / "kernels.py").read_text())
    package.chmod(0o555)
    try:
        code = f"""
            import sys; sys.path.insert(0, {str(package)!r})
            import numpy as np, kernels
            out = np.empty((1, 2))
            kernels.kernel("gather_rows")(np.ones((3, 2)), np.array([1]), out)
            """
        result = _run(code, XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert not (package / "__pycache__").exists()
        assert list((tmp_path / "cache").rglob("kernels._gather_rows-*.nbi"))
    finally:
        package.chmod(0o755)


# -- a whole fit ---------------------------------------------------------------------------------


def _fit_digits_like(seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(203, 12)).astype(np.float32)  # 203: the last batch is a short one
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    model = ln.Sequential([ln.Dense(16, activation="relu"), ln.Dense(3)])
    history = model.fit(
        X, y, loss="cross_entropy", optimizer=ln.SGD(lr=0.1, momentum=0.9), epochs=3,
        batch_size=32, seed=seed, verbose=0, threads=1,
    )  # fmt: skip
    return [p.copy() for _, p, _ in model.parameters()], list(history.history["loss"])


def test_a_whole_fit_is_the_same_with_and_without_the_kernels(calls, monkeypatch):
    """SGD with momentum, Dense + ReLU and softmax cross-entropy: kernels equal to NumPy; the
    whole fit must then be too (up to the loss value's summation). The step loop's kernels,
    not the fused epoch (tests/test_fused.py), which would take this fit over."""
    monkeypatch.setattr(fused, "prepare", lambda model, run: None)
    previous = kernels.set_mode("0")
    try:
        params_np, loss_np = _fit_digits_like()
        assert calls == []
        if not kernels.available():
            pytest.skip("numba is not installed")
        kernels.set_mode("1")
        params_k, loss_k = _fit_digits_like()
    finally:
        kernels.set_mode(previous)
    assert {"bias_relu", "relu_backward_bias"} <= set(calls), calls
    for a, b in zip(params_np, params_k, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_np, loss_k, rtol=1e-5)
