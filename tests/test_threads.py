"""lucidnet.threads: the thread count chosen for the machine. Decisions are tested with fake
timings and loads (no timed assertions); the real BLAS setting is checked to come back as it
was; ``import lucidnet`` and ``lucidnet --help`` are checked (in fresh interpreters) not to load
numba, threadpoolctl, pandas or scikit-learn."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lucidnet as ln
from lucidnet import threads as T

ROOT = Path(__file__).resolve().parents[1]
BIG = 30_000_000  # workload A: batch 128 x 235k weights
SMALL = 77_000  # digits 64-32-10, batch 32


# -- check_threads ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [("auto", "auto"), (" AUTO ", "auto"), (1, 1), (8, 8)])
def test_check_threads_accepts_auto_and_positive_integers(value, expected):
    assert T.check_threads(value) == expected
    assert T.check_threads(np.int64(3)) == 3


@pytest.mark.parametrize("value, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError)])
def test_check_threads_names_the_argument_and_the_value(value, error):
    with pytest.raises(error, match=r"threads must be 'auto' or an integer >= 1, got"):
        T.check_threads(value)
    with pytest.raises(TypeError, match="n_threads must be"):
        T.check_threads(True, "n_threads")
    with pytest.raises(TypeError, match="got str 'two'|got 'two'"):
        T.check_threads("two")


# -- plan --------------------------------------------------------------------------------------
def test_plan_a_fixed_count_is_used_as_given():
    p = T.plan(3, SMALL, cores=2, ceiling=1)
    assert (p.threads, p.candidates) == (3, (3,)) and "set by the caller" in p.reason


def test_plan_small_products_run_on_one_thread_whatever_the_cores():
    p = T.plan("auto", SMALL, cores=16, ceiling=16)
    assert (p.threads, p.candidates) == (1, (1,)) and "small matrix products" in p.reason
    assert T.plan("auto", T.SMALL_WORK, cores=2, ceiling=2).candidates == (2, 1)


def test_plan_never_exceeds_the_blas_setting_found_at_the_start():
    # OPENBLAS_NUM_THREADS=1, a joblib worker or an enclosing threadpool_limits(1)
    p = T.plan("auto", BIG, cores=8, ceiling=1)
    assert (p.threads, p.candidates) == (1, (1,)) and "limited to one thread" in p.reason
    assert T.plan("auto", BIG, cores=8, ceiling=4).candidates == (4, 2, 1)
    assert T.plan("auto", BIG, cores=1, ceiling=8).reason == "auto: one core available"


def test_plan_starts_from_the_free_cores_not_counting_this_process():
    idle = T.plan("auto", BIG, cores=2, ceiling=2, load=0.1)
    busy = T.plan("auto", BIG, cores=2, ceiling=2, load=1.0)  # one competing process
    ours = T.plan("auto", BIG, cores=2, ceiling=2, load=1.0, own=1.0)  # that load is us
    assert (idle.threads, busy.threads, ours.threads) == (2, 1, 2)
    assert idle.candidates == busy.candidates == (2, 1)
    # 8 cores, 5 busy with other work: 3 free -> start with 2 of the candidates 8, 4, 2, 1
    eight = T.plan("auto", BIG, cores=8, ceiling=8, load=5.0)
    assert (eight.threads, eight.candidates) == (2, (8, 4, 2, 1))
    # the load average counts all 64 CPUs of the host; 2 of them are ours
    host = T.plan("auto", BIG, cores=2, ceiling=2, load=8.0, total_cpus=64)
    assert host.threads == 2


# -- the tuner, fed fake seconds per step --------------------------------------------------------
def run_tuner(tuner: T.ThreadTuner, cost, blocks: int) -> list[int]:
    """Feed ``blocks`` blocks; ``cost(block, threads)`` is a block's seconds per step.
    Returns the count each block ran with."""
    n, ran = tuner.current, []
    for b in range(blocks):
        ran.append(n)
        n = tuner.record(n, cost(b, n))
    return ran


def issue_15_costs(busy_from: int = 10**9, busy_until: int = 10**9):
    """The issue's A-shaped epoch per thread count: idle 2 threads 0.38, 1 thread 0.50; with a
    competing process 2 threads 1.03, 1 thread 0.50."""

    def cost(block: int, threads: int) -> float:
        busy = busy_from <= block < busy_until
        return {(2, False): 0.38, (1, False): 0.50, (2, True): 1.03, (1, True): 0.50}[
            (threads, busy)
        ]

    return cost


def test_tuner_measures_every_candidate_then_keeps_the_fastest():
    tuner = T.ThreadTuner((2, 1), start=1)
    ran = run_tuner(tuner, issue_15_costs(), 5)
    assert ran == [1, 2, 2, 2, 2]  # 1 measured, 2 measured, 2 chosen
    assert tuner.current == 2 and tuner.decisions == 1 and "1 -> 2" in tuner.reason


def test_tuner_prefers_fewer_threads_on_a_near_tie():
    tuner = T.ThreadTuner((2, 1), start=2, margin=0.1)
    ran = run_tuner(tuner, lambda b, n: {2: 0.95, 1: 1.0}[n], 4)
    assert ran == [2, 1, 1, 1] and tuner.current == 1  # 5% faster is not worth a second thread


def test_tuner_drops_to_one_thread_when_a_competing_process_starts():
    tuner = T.ThreadTuner((2, 1), start=2)
    ran = run_tuner(tuner, issue_15_costs(busy_from=6), 12)
    # blocks 0-5 idle: 2 chosen; block 6 at 2 threads is 2.7x slower -> 1 tried, 2 timed
    # again (still slow) -> 1 chosen
    assert ran[:6] == [2, 1, 2, 2, 2, 2] and ran[6:] == [2, 1, 2, 1, 1, 1]
    assert tuner.current == 1 and tuner.switches == 1
    assert "2.7x the best since the last decision" in tuner.reason


def test_tuner_probes_back_up_with_growing_intervals_and_returns_when_the_machine_is_free():
    tuner = T.ThreadTuner((2, 1), start=1, probe_every=4, max_probe_every=16)
    ran = run_tuner(tuner, issue_15_costs(busy_from=0, busy_until=40), 60)
    probes_at_2 = [b for b, n in enumerate(ran[:46]) if n == 2]
    # busy: 2 tried at the start (lost: the interval doubles to 8), then after 8 and 16 blocks
    # at 1 thread (each probe: 2, then 1 again; lost; 16 is the maximum interval)
    assert probes_at_2 == [1, 10, 28]
    # free from block 40: the probe at block 46 wins; from then on 2, but for short checks of 1
    assert ran[46:49] == [2, 1, 2] and tuner.current == 2 and tuner.switches == 1
    assert ran[48:].count(2) >= 9


def test_tuner_does_not_probe_fewer_threads_than_one_when_one_thread_slows_down():
    tuner = T.ThreadTuner((2, 1), start=1, probe_every=100)
    ran = run_tuner(tuner, lambda b, n: {2: 9.0, 1: 0.5 if b < 5 else 2.0}[n], 12)
    assert ran == [1, 2] + [1] * 10  # slower steps at 1 thread: no other count tried


def test_tuner_after_a_slowdown_compares_fresh_times_only():
    # 4, 2, 1 threads: 4 fastest when idle; busy from block 5: 4 slows, 2 is best, and the
    # stale idle time of 4 does not count against the fresh times of 2 and 1
    def cost(b: int, n: int) -> float:
        return {4: 0.25, 2: 0.35, 1: 0.5}[n] if b < 5 else {4: 1.5, 2: 0.6, 1: 0.7}[n]

    tuner = T.ThreadTuner((4, 2, 1), start=4, probe_every=1000)
    ran = run_tuner(tuner, cost, 10)
    assert ran == [4, 2, 1, 4, 4, 4, 2, 1, 4, 2]  # explore; keep 4; slowed: 2, 1, 4 -> 2
    assert tuner.current == 2 and "4 -> 2 thread(s)" in tuner.reason


def test_tuner_single_noisy_block_costs_one_probe_and_keeps_the_choice():
    tuner = T.ThreadTuner((2, 1), start=2, probe_every=1000)
    ran = run_tuner(tuner, lambda b, n: 0.8 if (b == 5 and n == 2) else {2: 0.38, 1: 0.5}[n], 9)
    assert ran == [2, 1, 2, 2, 2, 2, 1, 2, 2] and tuner.current == 2 and tuner.switches == 0


# -- ThreadControl: blocks timed with a fake clock, the settings applied ------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def applied(monkeypatch):
    """The counts ThreadControl / limited apply (the real BLAS is not touched)."""
    calls: list[int] = []
    monkeypatch.setattr(T.SETTINGS, "apply", calls.append)
    monkeypatch.setattr(T.SETTINGS, "release", lambda: setattr(T.SETTINGS, "holders", 0))
    monkeypatch.setattr(T.SETTINGS, "holders", 0)
    return calls


def simulate(control: T.ThreadControl, clock: FakeClock, epochs: int, steps: int, cost) -> None:
    """The loop's calls, each step advancing the clock by ``cost(epoch, threads in force)``;
    0.05 s of validation between epochs (not timed)."""
    with control:
        for epoch in range(epochs):
            control.epoch_begin(epoch)
            for _ in range(steps):
                clock.t += cost(epoch, control._current)
                control.step_done()
            control.epoch_end()
            clock.t += 0.05


def test_control_adapts_when_steps_slow_down_and_records_each_epoch(applied):
    clock = FakeClock()
    idle_plan = lambda setting, work: T.Plan(2, (2, 1), "auto: test plan")  # noqa: E731
    control = T.ThreadControl("auto", BIG, clock=clock, plan_fn=idle_plan)
    per_step = {(2, False): 0.0038, (1, False): 0.005, (2, True): 0.0103, (1, True): 0.005}
    simulate(control, clock, 6, 100, lambda e, n: per_step[(n, e >= 3)])  # busy from epoch 4
    rec = control.record
    assert rec["setting"] == "auto" and rec["start"] == 2 and rec["reason"] == "auto: test plan"
    assert rec["per_epoch"][:3] == [2, 2, 2] and rec["per_epoch"][3:] == [1, 1, 1]
    assert rec["changes"][0].startswith("epoch 1: kept 2 thread(s)")  # the calibration
    assert rec["changes"][-1].startswith("epoch 4: 2 -> 1 thread(s)")
    assert "the CPU is shared" in rec["changes"][-1]
    assert applied[0] == 2 and applied[-1] == 1
    line = T.describe_record(rec)
    assert line.startswith("Threads: auto; auto: test plan; per epoch: 2 x3, 1 x3")
    assert "2 change(s)" in line


def test_control_with_one_candidate_never_reads_the_clock(applied):
    def no_clock() -> float:
        raise AssertionError("the clock was read")

    control = T.ThreadControl(1, SMALL, clock=no_clock, plan_fn=T._machine_plan)
    simulate(control, FakeClock(), 2, 5, lambda e, n: 0.01)
    assert control.record["per_epoch"] == [1, 1] and applied == [1]


def test_control_keeps_a_models_tuner_between_fits(applied):
    owner = ln.Sequential([ln.Dense(2)])
    clock = FakeClock()
    plan = lambda setting, work: T.Plan(2, (2, 1), "auto: test plan")  # noqa: E731
    busy = {2: 0.0103, 1: 0.005}
    first = T.ThreadControl("auto", BIG, owner=owner, clock=clock, plan_fn=plan)
    simulate(first, clock, 1, 100, lambda e, n: busy[n])
    assert first.record["per_epoch"] == [1]
    second = T.ThreadControl("auto", BIG, owner=owner, clock=clock, plan_fn=plan)
    simulate(second, clock, 1, 100, lambda e, n: busy[n])
    assert (
        second.record["start"] == 1
        and "continuing the last fit's choice" in (second.record["reason"])
    )
    other_work = T.ThreadControl("auto", 2 * BIG, owner=owner, clock=clock, plan_fn=plan)
    simulate(other_work, clock, 1, 10, lambda e, n: busy[n])
    assert other_work.record["start"] == 2  # a different problem is planned afresh


def test_an_inner_holder_keeps_the_settings_in_force(applied):
    outer = T.ThreadControl(1, SMALL, clock=FakeClock(), plan_fn=T._machine_plan)
    with outer:
        T.SETTINGS.holders = 1
        with T.limited("auto", BIG) as inner:
            assert inner is None
        T.SETTINGS.holders = 1
        nested = T.ThreadControl(2, BIG, clock=FakeClock(), plan_fn=T._machine_plan)
        simulate(nested, FakeClock(), 2, 3, lambda e, n: 0.01)  # a fit inside a fit
    assert applied == [1]
    assert nested.record["reason"] == "kept the enclosing settings"
    assert nested.record["per_epoch"] == [] and not nested.holder


def test_a_kernel_that_splits_the_work_gets_the_count_and_blas_one_thread(applied):
    """split_in_kernel: while on, BLAS is set to one thread and the tuner's decisions go to the
    kernel (``current``), not to BLAS; off, BLAS gets the count again. Never on for a fit that
    may use one thread only, or that keeps an enclosing fit's settings."""
    clock = FakeClock()
    plan = lambda setting, work: T.Plan(2, (2, 1), "auto: test plan")  # noqa: E731
    control = T.ThreadControl("auto", BIG, clock=clock, plan_fn=plan)
    with control:
        assert applied == [2] and control.may_split()
        control.epoch_begin(0)
        assert control.split_in_kernel(True) and applied == [2, 1]
        for _ in range(60):  # the calibration's blocks: 2 threads, then 1 (the kernel's)
            clock.t += 0.005 if control.current() == 2 else 0.004
            control.step_done()
        assert control.current() == 1 and set(applied[2:]) == {1}  # BLAS stayed at one
        assert not control.split_in_kernel(False) and applied[-1] == 1  # the count: 1
        control.split_in_kernel(True)
        control._choose(2)
        assert applied[-1] == 1 and control.current() == 2
        control.split_in_kernel(False)
        assert applied[-1] == 2
        control.epoch_end()
    for one in (T.ThreadControl(1, BIG, clock=clock, plan_fn=T._machine_plan), None):
        if one is None:  # a fit inside a fit: not the holder
            T.SETTINGS.holders = 1
            one = T.ThreadControl(2, BIG, clock=clock, plan_fn=T._machine_plan)
        with one:
            before = list(applied)
            assert not one.may_split() and not one.split_in_kernel(True) and applied == before


def test_untimed_leaves_a_compile_out_of_the_tuners_block(applied, monkeypatch):
    """A kernel compiled (1 s) between the epoch's start and its steps, after the fit's first
    (untimed) epoch: untimed() restarts the block's timer, so the blocks record the steps'
    4 ms each, not the compile (without it: ~40 ms per step)."""
    clock = FakeClock()
    plan = lambda setting, work: T.Plan(2, (2, 1), "auto: test plan")  # noqa: E731
    recorded: list[float] = []
    record = T.ThreadTuner.record

    def spy(self, threads, seconds):
        recorded.append(seconds)
        return record(self, threads, seconds)

    monkeypatch.setattr(T.ThreadTuner, "record", spy)
    control = T.ThreadControl("auto", BIG, clock=clock, plan_fn=plan)
    with control:
        for epoch in range(2):
            control.epoch_begin(epoch)
            if epoch:
                clock.t += 1.0  # compiling the kernel
                control.untimed()
            for _ in range(30):
                clock.t += 0.004
                control.step_done()
            control.epoch_end()
    assert recorded and max(recorded) == pytest.approx(0.004), recorded


# -- the real BLAS setting -------------------------------------------------------------------
def blas_threads() -> list[int]:
    """The thread count of NumPy's BLAS (the one lucidnet's products use)."""
    from threadpoolctl import threadpool_info

    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    return [p["num_threads"] for p in pools if "numpy" in p["filepath"]] or [
        p["num_threads"] for p in pools
    ]


def test_limited_sets_the_blas_threads_and_restores_them():
    from threadpoolctl import threadpool_limits

    before = blas_threads()
    with threadpool_limits(2, user_api="blas"):
        with T.limited(1, BIG) as n:
            assert n == 1 and set(blas_threads()) == {1}
        assert set(blas_threads()) == {2}
    assert blas_threads() == before


def test_fit_applies_threads_records_them_and_restores_the_blas():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    before = blas_threads()
    seen: list[list[int]] = []

    class Probe(ln.Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(blas_threads())

    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(2)])
    h = model.fit(X, y, loss="cross_entropy", epochs=2, threads=1, callbacks=[Probe()], verbose=0)
    assert seen and all(set(s) == {1} for s in seen)
    assert blas_threads() == before
    assert h.params["threads"]["per_epoch"] == [1, 1]
    h = model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)  # auto: a tiny network
    assert h.params["threads"]["setting"] == "auto" and h.params["threads"]["per_epoch"] == [1]
    assert "small matrix products" in h.params["threads"]["reason"]
    with pytest.raises(ValueError, match="threads must be 'auto' or an integer >= 1, got 0"):
        model.fit(X, y, epochs=1, threads=0, verbose=0)


def test_available_cores_is_positive_and_at_most_the_cpu_count():
    assert 1 <= T.available_cores() <= (__import__("os").cpu_count() or 1)
    assert T.machine_load() >= 0.0 and T.own_load() >= 0.0


# -- the command line ----------------------------------------------------------------------------
def test_cli_threads_option():
    from lucidnet.cli.args import parse_args

    base = ["train", "d.csv", "--target", "y"]
    assert parse_args(base).threads == "auto"
    assert parse_args(base + ["--threads", "2"]).threads == 2
    assert parse_args(base + ["--threads", "Auto"]).threads == "auto"
    from lucidnet.cli.args import CLIError

    for bad in ("0", "two", "1.5"):
        with pytest.raises(CLIError, match=f"expected 'auto' or an integer >= 1, got '{bad}'"):
            parse_args(base + ["--threads", bad])


def test_cli_train_prints_one_threads_line(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    lines = ["a,b,c,y"] + [f"{a:.3f},{b:.3f},{c:.3f},{int(a + b > 0)}" for a, b, c in X]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "lucidnet.cli", "train", "d.csv", "--target", "y"]
    cmd += ["--epochs", "2", "--threads", "1", "--no-diagnostics", "--out", "m.lnet"]
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = [ln_ for ln_ in proc.stdout.splitlines() if ln_.startswith("Threads:")]
    assert found == ["Threads: 1; threads=1 (set by the caller); per epoch: 1 x2"]


# -- cold start ----------------------------------------------------------------------------------
HEAVY_CHECK = textwrap.dedent(
    """
    import sys
    {action}
    heavy = ("numba", "threadpoolctl", "pandas", "sklearn", "joblib", "scipy")
    print(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)))
    """
)


@pytest.mark.parametrize(
    "action",
    [
        "import lucidnet\nimport lucidnet.threads\ndir(lucidnet)",
        "from lucidnet.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from lucidnet.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n"
        "    pass",
    ],
    ids=["import lucidnet", "lucidnet --help", "lucidnet train --help"],
)
def test_cold_start_loads_no_heavy_module(action):
    code = HEAVY_CHECK.format(action=action)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_fit_leaves_the_compiled_kernels_serial(monkeypatch):
    """Parallel kernels beside a multi-threaded BLAS spin on the same cores (an A-shaped epoch:
    2.5 s against 0.28 s on 2 cores), so fit's thread decisions are for the BLAS only."""
    from lucidnet import kernels

    calls = []
    monkeypatch.setattr(kernels, "set_kernel_threads", lambda n: calls.append(n))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 5)).astype(np.float32), rng.integers(0, 2, 64)
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(2)])
    model.fit(X, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=0, seed=0, threads=2)
    assert calls == [] and kernels.kernel_threads() == 1
