"""The fused epoch kernel (lucidnet/fused.py): one compiled call per epoch for small Dense
networks gives what the step-by-step fast path gives, declines what it does not cover, and
runs when its gate says it pays."""

from __future__ import annotations

import os

import numpy as np
import pytest

import lucidnet as ln
from lucidnet import fused, kernels
from lucidnet.sources import ArraySource

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


@pytest.fixture
def epochs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the epochs that ran through the kernel (one entry of steps per call)."""
    seen: list[int] = []
    original = fused.Fused.epoch

    def spy(self, order, block_done=None, control=None):
        out = original(self, order, block_done, control)
        seen.append(len(out[0]))
        return out

    monkeypatch.setattr(fused.Fused, "epoch", spy)
    return seen


def _data(loss: str, n: int = 50, d: int = 6, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, k)) < 0.4).astype(float)
    else:
        y = rng.standard_normal((n, k))
    return X, y


def _fit(mode: str, layers, loss: str, optimizer, dtype: str, epochs: int = 4, **kwargs):
    previous = kernels.set_mode(mode)
    try:
        X, y = _data(loss)
        model = ln.Sequential(layers(), dtype=dtype)
        history = model.fit(
            X, y, loss=loss, optimizer=optimizer(), epochs=epochs, batch_size=16, seed=3,
            verbose=0, **kwargs,
        )  # fmt: skip
    finally:
        kernels.set_mode(previous)
    return model, history


def _same_run(a, b, dtype: str) -> None:
    (ma, ha), (mb, hb) = a, b
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 2e-6}
    for (name, pa, ga), (_, pb, gb) in zip(ma.parameters(), mb.parameters(), strict=True):
        np.testing.assert_allclose(pb, pa, err_msg=name, **tol)
        np.testing.assert_allclose(gb, ga, err_msg=name, **tol)
    oa, ob = ma.optimizer, mb.optimizer
    assert oa.iterations == ob.iterations
    for slot in oa.slots:
        np.testing.assert_allclose(ob.slots[slot], oa.slots[slot], err_msg=slot, **tol)
    assert ob.last_step["lr"] == pytest.approx(oa.last_step["lr"], rel=1e-12)
    assert ob.last_step["grad_norm"] == pytest.approx(oa.last_step["grad_norm"], rel=1e-4)
    np.testing.assert_allclose(hb.iteration_loss, ha.iteration_loss, **tol)
    for key, values in ha.history.items():
        np.testing.assert_allclose(hb.history[key], values, err_msg=key, **tol)


LAYERS = {
    "relu": lambda: [ln.Dense(8, activation="relu"), ln.Dense(3)],
    "tanh-sigmoid": lambda: [
        ln.Dense(8, activation="tanh"),
        ln.Dense(5, activation="sigmoid"),
        ln.Dense(3, activation="linear"),
    ],
    "no-bias": lambda: [ln.Dense(8, activation="relu", use_bias=False), ln.Dense(3)],
    "activated-output": lambda: [ln.Dense(8, activation="relu"), ln.Dense(3, activation="tanh")],
}
OPTIMIZERS = {
    "adam": lambda: ln.Adam(lr=0.01, weight_decay=1e-3, clip_value=0.5),
    "adamw-schedule": lambda: ln.AdamW(lr=ln.ExponentialDecay(0.02, 0.5), weight_decay=0.1),
    "sgd": lambda: ln.SGD(lr=0.1),
    "nesterov": lambda: ln.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
}


@needs_numba
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layers", list(LAYERS))
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse"])
def test_the_fused_epochs_give_the_step_paths_numbers(dtype, layers, loss, epochs):
    """Four epochs (16 steps, the last batch of each epoch smaller) through the kernel and
    through the step loop: the same parameters, gradients, optimizer state, losses and
    metrics, to float64 rounding in float64 (the sums run in another order than BLAS's)."""
    for name in ("adam", "nesterov") if layers != "relu" else OPTIMIZERS:
        run = (LAYERS[layers], loss, OPTIMIZERS[name], dtype)
        reference = _fit("0", *run)
        assert epochs == []
        _same_run(reference, _fit("1", *run), dtype)
        assert epochs == [4] * 4, name  # the kernel really ran, every epoch
        epochs.clear()


@needs_numba
def test_one_binary_output_with_its_accuracy(epochs):
    """The common binary case: one sigmoid output unit, 0/1 labels given as (n,)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((70, 5))
    y = (X[:, 0] - X[:, 1] > 0).astype(float)
    runs = []
    for mode in ("0", "1"):
        previous = kernels.set_mode(mode)
        try:
            model = ln.Sequential([ln.Dense(6, activation="tanh"), ln.Dense(1)], dtype="float64")
            history = model.fit(
                X, y, loss="binary_cross_entropy", optimizer=ln.Adam(0.05), epochs=5,
                batch_size=16, seed=0, verbose=0,
            )  # fmt: skip
        finally:
            kernels.set_mode(previous)
        runs.append((model, history))
    _same_run(*runs, "float64")
    assert runs[1][1].history["accuracy"][-1] > 0.6  # it learns, and counts right
    assert epochs == [5] * 5


@needs_numba
def test_over_many_steps_float32_stays_with_the_step_path(epochs):
    """Digits-sized, 30 epochs of Adam (450 steps) in float32: still equal to rounding."""
    run = (lambda: [ln.Dense(32, activation="relu"), ln.Dense(10)], "cross_entropy")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((240, 64)).astype(np.float32)
    y = (X[:, :10] @ rng.standard_normal((10, 10))).argmax(axis=1)
    models = []
    for mode in ("0", "1"):
        previous = kernels.set_mode(mode)
        try:
            model = ln.Sequential(run[0]())
            model.fit(X, y, loss=run[1], epochs=30, batch_size=16, seed=0, verbose=0)
        finally:
            kernels.set_mode(previous)
        models.append(model)
    assert len(epochs) == 30
    for (name, a, _), (_, b, _) in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=2e-5, err_msg=name)


@needs_numba
def test_callbacks_validation_and_threads_at_epoch_granularity(epochs):
    """Early stopping on a validation loss, the history and the threads record: as the loop."""

    def run(mode):
        return _fit(
            mode, LAYERS["relu"], "cross_entropy", OPTIMIZERS["adam"], "float64", epochs=30,
            validation_split=0.2, callbacks=[ln.EarlyStopping(patience=2)],
        )  # fmt: skip

    a, b = run("0"), run("1")
    _same_run(a, b, "float64")
    assert a[1].stopped_epoch == b[1].stopped_epoch
    assert len(a[1].params["threads"]["per_epoch"]) == len(b[1].params["threads"]["per_epoch"])
    assert epochs and all(steps == 3 for steps in epochs)


@needs_numba
@pytest.mark.parametrize("block_seconds", [0.1, 1e-12], ids=["one-call", "one-step-calls"])
def test_a_loss_that_turns_nan_stops_where_the_step_loop_stops(epochs, monkeypatch, block_seconds):
    """The kernel stops after the step whose loss makes the sum non-finite and the NaN guard
    restores the epoch's starting weights: the same state as the step loop, also when the
    epoch runs in calls of one step (the sum carried across calls: a NaN on a call's last step
    stops the epoch too)."""
    monkeypatch.setattr(fused, "BLOCK_SECONDS", block_seconds)

    def run(mode):
        with pytest.warns(RuntimeWarning, match="loss became"), np.errstate(over="ignore"):
            return _fit(mode, LAYERS["relu"], "mse", lambda: ln.SGD(lr=1e6), "float64")

    a, b = run("0"), run("1")
    assert a[1].stop_reason == b[1].stop_reason == "nan"
    assert len(a[1].iteration_loss) == len(b[1].iteration_loss) < 16
    assert a[0].optimizer.iterations == b[0].optimizer.iterations
    for (_, pa, _), (_, pb, _) in zip(a[0].parameters(), b[0].parameters()):
        np.testing.assert_allclose(pb, pa, rtol=1e-10)  # the weights of that epoch's start
    assert epochs


class _Batches(ln.Callback):
    def on_batch_end(self, batch, logs):
        pass


class _MyDense(ln.Dense):
    pass


@needs_numba
@pytest.mark.parametrize(
    "case",
    [
        "dropout", "l2", "subclass", "elu", "sample_weight", "class_weight", "clip_norm",
        "rmsprop", "batch_callback", "label_smoothing", "one_hot", "huber", "float_inputs",
        "source",
    ],
)  # fmt: skip
def test_what_it_does_not_cover_takes_the_step_loop(case, epochs):
    layers = [ln.Dense(8, activation="relu"), ln.Dense(3)]
    loss: object = "cross_entropy"
    opt: object = ln.Adam()
    kwargs: dict = {}
    X, y = _data("cross_entropy")
    if case == "dropout":
        layers.insert(1, ln.Dropout(0.2))
    elif case == "l2":
        layers[0] = ln.Dense(8, activation="relu", l2=1e-3)
    elif case == "subclass":
        layers[0] = _MyDense(8, activation="relu")
    elif case == "elu":
        layers[0] = ln.Dense(8, activation="elu")
    elif case == "sample_weight":
        kwargs["sample_weight"] = np.ones(len(X))
    elif case == "class_weight":
        kwargs["class_weight"] = "balanced"
    elif case == "clip_norm":
        opt = ln.Adam(clip_norm=1.0)
    elif case == "rmsprop":
        opt = ln.RMSprop()
    elif case == "batch_callback":
        kwargs["callbacks"] = [_Batches()]
    elif case == "label_smoothing":
        loss = ln.CrossEntropy(label_smoothing=0.1)
    elif case == "one_hot":
        y = np.eye(3)[y]
    elif case == "huber":
        loss, y = "huber", np.eye(3)[y]
    elif case == "float_inputs":  # token ids into an Embedding: not 2-D float rows for Dense
        layers = [ln.Embedding(10, 4), ln.Flatten(), ln.Dense(3)]
        X = np.random.default_rng(0).integers(0, 10, (50, 6))
    elif case == "source":  # a user's batches (lucidnet.sources): the kernel indexes arrays
        X, y = [(X[i : i + 16], y[i : i + 16]) for i in range(0, len(X), 16)], None
    previous = kernels.set_mode("1")
    try:
        model = ln.Sequential(layers)
        model.fit(X, y, loss=loss, optimizer=opt, epochs=2, batch_size=16, verbose=0, **kwargs)
    finally:
        kernels.set_mode(previous)
    assert epochs == []
    assert np.isfinite(model.history.history["loss"]).all()


def test_off_means_off(epochs):
    previous = kernels.set_mode("0")
    try:
        X, y = _data("cross_entropy")
        ln.Sequential(LAYERS["relu"]()).fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
    finally:
        kernels.set_mode(previous)
    assert epochs == []


class _Run:
    """What ``fused.prepare`` reads of fit's run."""

    def __init__(self, X, y, **kw):
        self.X, self.y, self.weights, self.batch_hooks = X, y, None, []
        self.loss, self.optimizer = ln.CrossEntropy(), ln.Adam()
        self.batch_size, self.steps, self.epochs, self.control = 16, 4, 10, None
        self.__dict__.update(kw)
        self.source = ArraySource(self.X, self.y, None, self.batch_size)


def test_auto_compiles_once_the_numpy_work_repays_it(monkeypatch):
    """The ski-rental gate: switching costs importing numba (unless loaded) plus compiling
    (unless compiled in this process, or loading from the disk cache); it pays when the
    work done so far plus what this fit will still do reaches that. Deterministic: sizes,
    not clocks."""
    monkeypatch.setattr(kernels, "available", lambda: True)
    monkeypatch.setattr(fused._State, "work_s", 0.0)
    monkeypatch.setattr(fused._State, "signatures", set())
    previous = kernels.set_mode("auto")
    try:
        X, y = _data("cross_entropy")
        X = X.astype(np.float32)
        model = ln.Sequential(LAYERS["relu"]())
        model.build((X.shape[1],), seed=0)
        plan = fused.prepare(model, _Run(X, y))
        assert plan is not None
        per_epoch = plan.epoch_s
        assert 4 * 20e-6 < per_epoch < 4 * 1e-3
        monkeypatch.setattr(kernels, "is_loaded", lambda: False)
        monkeypatch.setattr(fused, "_cached_on_disk", lambda parallel=False: False)
        cost = fused.IMPORT_S + fused.COMPILE_S
        epochs_to_pay = int(np.ceil(cost / per_epoch))
        assert not plan.ready(epochs_to_pay - 1)  # this fit alone does not repay it
        assert fused._State.work_s == pytest.approx(per_epoch)  # counted: the NumPy path ran
        assert plan.ready(epochs_to_pay)  # with what has been done, it does
        fused._State.work_s = 0.0
        monkeypatch.setattr(kernels, "is_loaded", lambda: True)
        monkeypatch.setattr(fused, "_cached_on_disk", lambda parallel=False: True)
        cheap = int(np.ceil(fused.LOAD_S / per_epoch))
        assert not plan.ready(cheap - 1) and plan.ready(cheap)
        fused._State.signatures.add(plan.signature)  # compiled in this process: free
        assert plan.ready(1)
        # where the parallel kernel may run too, compiling it counts as well
        fused._State.work_s = 0.0
        plan.split = True
        monkeypatch.setattr(fused, "_cached_on_disk", lambda parallel=False: False)
        both = int(np.ceil(fused.PARALLEL_COMPILE_S / per_epoch))
        assert not plan.ready(both - 1) and not plan.compiled()
        fused._State.work_s = 0.0
        assert plan.ready(both)
        fused._State.signatures.add((*plan.signature, "parallel"))
        assert plan.ready(1) and plan.compiled()
    finally:
        kernels.set_mode(previous)


def test_the_thread_control_times_fused_epochs_as_blocks(monkeypatch):
    """An epoch run in one call counts its steps and is one timed block for the tuner, which
    moves to fewer threads when epochs slow down (the CPU shared from epoch 4), as it does with
    blocks of steps; the fit's first epoch is not timed when it compiled the kernel, and is
    when ``warm`` (compiled before)."""
    from lucidnet import threads as T

    applied: list[int] = []
    monkeypatch.setattr(T.SETTINGS, "apply", applied.append)
    monkeypatch.setattr(T.SETTINGS, "release", lambda: setattr(T.SETTINGS, "holders", 0))
    monkeypatch.setattr(T.SETTINGS, "holders", 0)
    now = [0.0]
    plan = lambda setting, work: T.Plan(2, (2, 1), "auto: test plan")  # noqa: E731
    per_step = {(2, False): 0.0038, (1, False): 0.005, (2, True): 0.0103, (1, True): 0.005}
    for warm in (False, True):
        control = T.ThreadControl("auto", 30_000_000, clock=lambda: now[0], plan_fn=plan)
        with control:
            for epoch in range(8):
                control.epoch_begin(epoch)
                now[0] += 100 * per_step[(control._current, epoch >= 3)]  # busy from epoch 4
                control.step_done(100, warm)
                control.epoch_end()
                now[0] += 0.05
        per_epoch = control.record["per_epoch"]
        changes = control.record["changes"]
        assert len(per_epoch) == 8 and per_epoch[-2:] == [1, 1], per_epoch
        # the calibration ends an epoch sooner when the first epoch is timed too
        assert changes[0].startswith(f"epoch {2 if warm else 3}: kept 2 thread(s)"), changes
        assert "2 -> 1 thread(s)" in changes[-1] and "the CPU is shared" in changes[-1]
        assert control._epoch_counts == {1: 100}  # the last epoch's 100 steps, at 1 thread


@needs_numba
@pytest.mark.parametrize("numpy_blas", [False, True])
def test_a_large_step_takes_the_step_loop_unless_numpys_blas_is_called(
    epochs, monkeypatch, numpy_blas
):
    """Above MAX_STEP_MACS multiply-adds per step the step loop is as fast as the kernel on
    SciPy's BLAS (measured): the kernel declines; at the limit it runs. On NumPy's BLAS it
    takes every size."""
    X, y = _data("cross_entropy")
    macs = 16 * (6 * 8 + 8 * 3)  # batch 16, 6-8-3
    monkeypatch.setattr(fused, "_numpy_blas_available", lambda: numpy_blas)
    previous = kernels.set_mode("1")
    try:
        for limit, runs in ((macs - 1, numpy_blas), (macs, True)):
            monkeypatch.setattr(fused, "MAX_STEP_MACS", limit)
            epochs.clear()
            ln.Sequential(LAYERS["relu"]()).fit(
                X, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=0
            )
            assert bool(epochs) is runs, limit
    finally:
        kernels.set_mode(previous)


_VARIANT_RUN = """
import json, numpy as np, lucidnet as ln
from lucidnet import fused, kernels
kernels.set_mode("1")
rng = np.random.default_rng(0)
out = {}
for dtype in ("float32", "float64"):
    X = rng.standard_normal((96, 7)).astype(dtype)
    y = rng.integers(0, 3, 96)
    model = ln.Sequential([ln.Dense(9, activation="relu"), ln.Dense(5, activation="tanh"),
                           ln.Dense(3)], dtype=dtype)
    model.fit(X, y, loss="cross_entropy", epochs=3, batch_size=32, seed=1, verbose=0)
    out[dtype] = model.flat_parameters()[0].astype(float).tolist()
out["variant"] = fused._State.kernel.py_func.__name__
out["epochs"] = fused._State.epochs
print(json.dumps(out))
"""


@needs_numba
def test_products_through_numpys_blas_or_numbas_give_the_same_training():
    """The kernel's matrix products call NumPy's own BLAS where NumPy's wheel ships it (the
    library and thread settings of the step loop's np.matmul), else numba's np.dot; both
    variants train to the same weights (float64: to rounding), in fresh processes since the
    choice is made once per process (LUCIDNET_NUMPY_BLAS=0 forces numba's)."""
    import json
    import os
    import subprocess
    import sys

    runs = {}
    for flag in ("1", "0"):
        env = {**os.environ, "LUCIDNET_NUMPY_BLAS": flag, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run(
            [sys.executable, "-c", _VARIANT_RUN], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs[flag] = json.loads(done.stdout.strip().splitlines()[-1])
        assert runs[flag]["epochs"] == 6  # every epoch fused (3 per dtype)
    assert runs["0"]["variant"] == "_epoch"
    if fused._numpy_blas_path() is not None:  # NumPy's wheel: its BLAS is called
        assert runs["1"]["variant"] == "_epoch_numpy_blas"
    np.testing.assert_allclose(runs["1"]["float64"], runs["0"]["float64"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(runs["1"]["float32"], runs["0"]["float32"], rtol=1e-4, atol=1e-5)


@needs_numba
def test_an_epoch_in_blocks_of_steps_equals_one_call_and_lets_the_tuner_time_them(monkeypatch):
    """The kernel runs an epoch in blocks of about BLOCK_SECONDS of steps, the thread tuner
    called after each (so it can change the threads within an epoch, as in the step loop):
    blocks of one step give the same training as one call per epoch."""
    from lucidnet import threads

    calls: list[int] = []
    original = threads.ThreadControl.step_done

    def spy(self, steps=1, warm=False):
        calls.append(steps)
        return original(self, steps, warm)

    monkeypatch.setattr(threads.ThreadControl, "step_done", spy)
    runs = []
    for block_seconds in (1e9, 1e-12):  # one call per epoch; one call per step
        monkeypatch.setattr(fused, "BLOCK_SECONDS", block_seconds)
        calls.clear()
        runs.append(_fit("1", LAYERS["relu"], "cross_entropy", ln.Adam, "float64"))
        steps = -(-50 // 16)  # 50 rows, batch 16
        assert calls == ([steps] * 4 if block_seconds > 1 else [1] * (4 * steps)), calls
    _same_run(runs[0], runs[1], "float64")


_LAPACK_AFTER_FUSED = """
import numpy as np, lucidnet as ln
from lucidnet import fused, kernels
kernels.set_mode("1")
X = np.random.default_rng(0).standard_normal((50, 6))
ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(3)]).fit(
    X, np.arange(50) % 3, loss="cross_entropy", epochs=1, verbose=0)
assert fused._State.kernel is not None
from sklearn.datasets import load_diabetes  # SciPy loaded after the kernel
from sklearn.linear_model import LinearRegression
X, y = load_diabetes(return_X_y=True)
coef32 = LinearRegression().fit(X.astype(np.float32), y).coef_
np.testing.assert_allclose(coef32, LinearRegression().fit(X, y).coef_, rtol=1e-3)
print("ok")
"""


@needs_numba
def test_calling_numpys_blas_leaves_scipys_lapack_working():
    """The kernel reaches NumPy's BLAS by two registered addresses, not by loading that library
    globally, which let its symbols take the place of those of libraries loaded afterwards
    (SciPy's float32 least squares then failed: "Too large work array required"). In a fresh
    process, so that SciPy is loaded after the kernel."""
    import os
    import subprocess
    import sys

    pytest.importorskip("sklearn")
    done = subprocess.run(
        [sys.executable, "-c", _LAPACK_AFTER_FUSED], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.fixture
def bands_used(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bands of every block's kernel (1: the serial kernel), in order."""
    used: list[int] = []
    original = fused.Fused._kernel

    def spy(self, threads):
        kernel, bands = original(self, threads)
        used.append(bands)
        return kernel, bands

    monkeypatch.setattr(fused.Fused, "_kernel", spy)
    return used


def _numba_threads_or_skip() -> None:
    numba = kernels._load_numba()
    try:
        kernels.start_threads(numba.get_num_threads)
    except ValueError as exc:  # NUMBA_THREADING_LAYER names a layer that cannot be loaded
        pytest.skip(f"numba cannot start its threads here: {exc}")


def _bands_kernel():
    """The parallel kernel's own fused._bands (compiled with it)."""
    _numba_threads_or_skip()
    kernels.start_threads(lambda: fused._compiled(parallel=True))
    return fused._State.bands


@needs_numba
@pytest.mark.skipif(not fused.can_split(), reason="the parallel kernel needs NumPy's BLAS")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_product_in_bands_equals_the_whole_product(dtype):
    """C = op(A) op(B) cut into 1-3 bands of C's columns (C wider than tall) or rows (taller
    than wide), A and B transposed or not, band widths that do not divide evenly: every entry
    as NumPy's product gives it (rounding), and nothing outside C written."""
    bands = _bands_kernel()
    rng = np.random.default_rng(0)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    for m, n, k in ((5, 11, 7), (13, 4, 6)):
        for trans_a in (False, True):
            for trans_b in (False, True):
                A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
                B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
                expected = (A.T if trans_a else A) @ (B.T if trans_b else B)
                for parts in (1, 2, 3):
                    padded = np.full((m + 2, n + 3), 7.0, dtype)  # C a view inside it
                    bands(trans_a, trans_b, A, B, padded[1 : m + 1, 2 : n + 2], parts)
                    np.testing.assert_allclose(padded[1 : m + 1, 2 : n + 2], expected, **tol)
                    outside = padded.copy()
                    outside[1 : m + 1, 2 : n + 2] = 7.0
                    assert (outside == 7.0).all(), (m, n, trans_a, trans_b, parts)


def _wide_fit(threads=2, epochs: int = 2, mode: str = "1", hidden=("relu",), **kwargs):
    """``(model, history)`` of a float64 network whose products (1024 inputs, layers of 512)
    are cut into bands by the parallel kernel; kernels on (``mode`` "1") or off ("0")."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((48, 1024)), rng.integers(0, 3, 48)
    layers = [ln.Dense(512, activation=name) for name in hidden] + [ln.Dense(3)]
    model = ln.Sequential(layers, dtype="float64")
    previous = kernels.set_mode(mode)
    try:
        history = model.fit(
            X, y, loss="cross_entropy", epochs=epochs, batch_size=16, seed=1, verbose=0,
            threads=threads, **kwargs,
        )  # fmt: skip
    finally:
        kernels.set_mode(previous)
    return model, history


@needs_numba
def test_the_parallel_kernel_gives_the_step_paths_numbers(monkeypatch, bands_used):
    """threads=2 on a network whose products are large enough to be cut into bands (forward,
    dW and dL/dX, C's rows and columns): the parallel kernel (bands, gather and Adam on
    numba's threads, BLAS on one) trains to the step loop's numbers; BLAS's threads are back
    at 2 after each epoch. Where it may not run (no NumPy BLAS, numba's workqueue layer) the
    serial kernel does, to the same numbers."""
    from lucidnet import threads as T

    applied: list[int] = []
    apply = T.SETTINGS.apply
    monkeypatch.setattr(T.SETTINGS, "apply", lambda n: (applied.append(n), apply(n)))

    def run(mode):
        return _wide_fit(2, 2, mode, ("relu", "tanh"), optimizer=ln.Adam(1e-3))

    reference = run("0")
    applied.clear()
    _same_run(reference, run("1"), "float64")
    assert len(bands_used) == 2  # one block per epoch
    if fused._State.split:
        assert bands_used == [2, 2]
        assert applied == [2, 1, 2, 1, 2], applied  # fit: 2; each epoch 1, then 2 again
    else:
        assert bands_used == [1, 1] and not fused.can_split()


_FORK_AFTER_PARALLEL = """
import os, numpy as np, lucidnet as ln
from lucidnet import fused, kernels
kernels.set_mode("1")
rng = np.random.default_rng(0)
X, y = rng.standard_normal((48, 1024)), rng.integers(0, 3, 48)
def fit():
    m = ln.Sequential([ln.Dense(512, activation="relu"), ln.Dense(3)])
    m.fit(X, y, loss="cross_entropy", epochs=1, batch_size=16, verbose=0, threads=2)
    return m.flat_parameters()[0]
openmp = kernels._libgomp()
levels = openmp.omp_get_max_active_levels() if openmp is not None else None
fit()
print("parent split", fused._State.split, "forked", kernels.forked(), flush=True)
if openmp is not None:  # numba's omp layer turned nesting on; put back as it was
    print("levels", levels, openmp.omp_get_max_active_levels(), flush=True)
pid = os.fork()
if pid == 0:
    parent_split = fused._State.split  # False where numba's threads could not run at all
    ok = np.isfinite(fit()).all()
    ok = ok and (not parent_split or (kernels.forked() and not fused.can_split()))
    os._exit(0 if ok else 3)
print("child status", os.waitpid(pid, 0)[1], flush=True)
"""


@needs_numba
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_forked_after_the_parallel_kernel_trains_with_the_serial_one():
    """GNU OpenMP (numba's omp layer) ends a forked child that starts parallel work when the
    parent's threads ran ("fork() called from a process already using GNU OpenMP"): a child
    forked after a parallel fit knows it (kernels.forked) and trains with the serial kernel.
    And the nesting numba's omp layer turns on is put back (kernels.start_threads: PyTorch
    sharing that libgomp ran 3.5x slower). In a fresh process: the fork must follow this
    process's first parallel work."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FORK_AFTER_PARALLEL], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "parent split True forked False" or "split False" in lines[0], lines
    levels = [line.split() for line in lines if line.startswith("levels")]
    assert all(before == after for _, before, after in levels), lines
    assert lines[-1] == "child status 0", (lines, done.stderr[-2000:])


@needs_numba
def test_the_kernels_are_loaded_before_the_first_timed_block(monkeypatch):
    """Compiling (or loading) the serial and the parallel kernel happens before the epoch's
    first block, and the block's timer starts after it (ThreadControl.untimed), so the thread
    tuner never times a compile (one there made it take 2 threads for slower than 1, and a
    fit that switched to the kernel after a step-loop epoch timed the whole compile)."""
    from lucidnet import threads as T

    events: list[str] = []
    compile_epoch, step_done = fused._compile_epoch, T.ThreadControl.step_done

    def compiling(parallel):
        events.append(f"compile {parallel}")
        return compile_epoch(parallel)

    def block(self, steps=1, warm=False):
        events.append("block")
        return step_done(self, steps, warm)

    untimed = T.ThreadControl.untimed

    def restarted(self):
        events.append("untimed")
        return untimed(self)

    monkeypatch.setattr(fused, "_compile_epoch", compiling)
    monkeypatch.setattr(T.ThreadControl, "step_done", block)
    monkeypatch.setattr(T.ThreadControl, "untimed", restarted)
    for name in ("kernel", "parallel"):
        monkeypatch.setattr(fused._State, name, None)
    monkeypatch.setattr(fused._State, "signatures", set())
    plan = lambda setting, work: T.Plan(1, (2, 1), "auto: test plan")  # noqa: E731
    monkeypatch.setattr(T, "_machine_plan", plan)
    _wide_fit(threads="auto", epochs=1)
    # the parallel kernel is compiled where it may run, and also where its first call finds
    # it may not (numba's workqueue layer): either way before the timer restarts
    before = ["compile False"] + (["compile True"] if "compile True" in events else [])
    assert events[: len(before) + 1] == before + ["untimed"], events
    assert "compile" not in " ".join(events[len(before) + 1 :]), events
    assert "compile True" in events or not fused.can_split(), events


@needs_numba
def test_an_error_in_an_epoch_leaves_the_threads_as_they_were(monkeypatch):
    """A kernel that fails mid-epoch: BLAS's threads, numba's and the holder count are back
    as before the fit."""
    from lucidnet import threads as T

    original = fused.Fused._kernel

    def failing(self, threads):
        original(self, threads)  # numba's threads set for the parallel kernel
        raise RuntimeError("kernel failed")

    _numba_threads_or_skip()
    before = T.SETTINGS.blas_threads()
    numba = kernels._load_numba()
    numba_before = numba.get_num_threads()
    monkeypatch.setattr(fused.Fused, "_kernel", failing)
    with pytest.raises(RuntimeError, match="kernel failed"):
        _wide_fit(threads=2)
    assert T.SETTINGS.holders == 0 and T.SETTINGS.blas_threads() == before
    assert numba.get_num_threads() == numba_before


@needs_numba
def test_a_small_step_keeps_the_serial_kernel_even_at_two_threads(monkeypatch, bands_used):
    """Below SPLIT_MIN_MACS multiply-adds per step, starting the parallel loops costs more
    than splitting saves (measured 1.3-1.5x slower epochs): threads=2 runs the serial kernel
    (BLAS splits its products as it is set); at the limit the parallel kernel runs."""
    step_macs = 16 * (1024 * 512 + 512 * 3)  # _wide_fit's network at batch 16
    for limit, parallel in ((step_macs + 1, False), (step_macs, True)):
        monkeypatch.setattr(fused, "SPLIT_MIN_MACS", limit)
        bands_used.clear()
        _wide_fit(threads=2, epochs=1)
        assert bands_used == ([2] if parallel and fused.can_split() else [1]), (limit, bands_used)
