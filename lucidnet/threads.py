"""How many threads the matrix products (BLAS) use: chosen for the
machine (``threads="auto"``, the default of ``fit``) or fixed by the caller (``threads=2``).

Why lucidnet decides this itself: OpenBLAS starts one thread per core and splits every large
matrix product between them. On a machine where other work is running, a thread that waits for
a busy core holds up the whole product. Measured on a 2-core machine with one competing
CPU-bound process: an MNIST-shaped epoch went from 0.38 s (idle, 2 threads) to 1.03 s, while one
thread stayed at 0.50 s; the airline tweets ``train`` took 125.6 s with 2 threads and 6.2 s with
one (issue 15). Small products gain nothing from threads anyway.

The pieces, each testable without a real clock or a real load:

* :func:`check_threads`: ``"auto"`` or an integer >= 1.
* :func:`available_cores`, :func:`machine_load`, :func:`own_load`: what the machine offers and
  how busy it is (the 1-minute load average minus this process's own share).
* :func:`plan`: the starting thread count and the counts worth trying, with the reason: one
  thread for small products (below :data:`SMALL_WORK` multiply-adds per step) or when the cores
  are busy, up to the free cores otherwise; never above the BLAS's own setting at the start
  (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, a joblib worker's limit, an enclosing
  ``threadpool_limits``).
* :class:`ThreadTuner`: decides from measured seconds per step: tries each candidate once,
  keeps the fastest (fewer threads on a near tie), re-tries the others when steps slow down
  against the best seen since the last decision (another process took a core) and now and then
  to find out whether more threads pay again (probes back off while they keep losing).
* :class:`ThreadControl`: applies the decisions around ``fit`` (threadpoolctl for the BLAS; the
  step loop's compiled kernels stay serial, see :meth:`_Settings.apply`; the fused epoch's
  parallel kernel takes the count for its own threads with BLAS on one,
  :meth:`ThreadControl.split_in_kernel`), times blocks of steps for the tuner, records the
  count of every epoch, and restores the previous settings afterwards.
* :func:`limited`: the plan alone (no tuning) around ``predict`` / ``evaluate``.

threadpoolctl is imported when a fit or a prediction first needs it, never by ``import lucidnet``;
without it the BLAS is left as it is (and the record says so).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ._validation import describe

__all__ = [
    "AUTO",
    "SMALL_WORK",
    "check_threads",
    "available_cores",
    "machine_load",
    "own_load",
    "plan",
    "Plan",
    "ThreadTuner",
    "ThreadControl",
    "limited",
    "describe_record",
]

AUTO = "auto"
#: Multiply-adds of one step's forward matrix products (batch x weights) below which one thread
#: is used: splitting a product costs a synchronisation (tens of microseconds) that such small
#: products do not repay. Measured (benchmarks/run.py, contention row): the digits network
#: (64-32-10, batch 32: 77k) runs fastest on one thread; the MNIST-shaped one (784-256-128-10,
#: batch 128: 30M) gains from a second thread on an idle machine.
SMALL_WORK = 4_000_000
#: seconds of training steps timed together, the unit the tuner compares: long enough to
#: average over the scheduler's time slices, short enough that a block at a bad count (a probe,
#: or the first block after another process started) costs little
BLOCK_SECONDS = 0.1


def check_threads(value: Any, name: str = "threads") -> int | str:
    """``"auto"`` or an integer >= 1, else an error naming ``name``."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) and not _is_integer(value):
        raise TypeError(f"{name} must be 'auto' or an integer >= 1, got {describe(value)}")
    if int(value) < 1:
        raise ValueError(f"{name} must be 'auto' or an integer >= 1, got {int(value)}")
    return int(value)


def _is_integer(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Integral)


# -- the machine ---------------------------------------------------------------------------------
_CORES: int | None = None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (a
    container limited to 2 CPUs of a 64-core host sees 64 in ``os.cpu_count()``)."""
    global _CORES
    if _CORES is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        _CORES = max(1, min(cores, _cgroup_quota() or cores))
    return _CORES


def _cgroup_quota() -> int | None:
    """The cgroup v2 CPU quota (``cpu.max``: "quota period") rounded up, or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def machine_load() -> float:
    """The 1-minute load average (runnable processes), 0.0 where the system has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


# (wall, CPU) seconds of this process at the start of the window own_load() averages over
_OWN_MARK = (time.monotonic(), time.process_time())
_IMPORTED = _OWN_MARK[0]


def own_load(window: float = 60.0) -> float:
    """This process's share of the 1-minute load average: its CPU seconds (all threads) per
    wall second since a mark at most about ``window`` seconds old, times how much of a minute
    the load average has had to notice it (a process started 3 s ago barely shows yet)."""
    global _OWN_MARK
    wall, cpu = time.monotonic(), time.process_time()
    wall0, cpu0 = _OWN_MARK
    share = (cpu - cpu0) / (wall - wall0) if wall - wall0 > 0.5 else 0.0
    if wall - wall0 > window:
        _OWN_MARK = (wall, cpu)
    return max(0.0, share) * (1.0 - math.exp(-(wall - _IMPORTED) / 60.0))


# -- the plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Where a run starts: ``threads`` now, the ``candidates`` worth timing (largest first;
    one candidate: nothing to tune) and ``reason`` in plain words."""

    threads: int
    candidates: tuple[int, ...]
    reason: str


def plan(
    setting: int | str,
    work: int,
    *,
    cores: int,
    ceiling: int,
    load: float = 0.0,
    own: float = 0.0,
    total_cpus: int | None = None,
) -> Plan:
    """The starting thread count for ``work`` multiply-adds per step.

    Args:
        setting: ``"auto"`` or a fixed count (used as given).
        work: multiply-adds of one step's forward matrix products (batch x weights).
        cores: cores this process may use (:func:`available_cores`).
        ceiling: the BLAS's thread count before lucidnet changed it (the user's or an
            enclosing limit); ``"auto"`` never goes above it.
        load: the 1-minute load average; own: this process's share of it.
        total_cpus: CPUs the load average counts (default ``cores``): other processes' load
            is taken as spread evenly over them.
    """
    if setting != AUTO:
        n = int(setting)
        return Plan(n, (n,), f"threads={n} (set by the caller)")
    top = max(1, min(cores, ceiling))
    if top == 1:
        why = "one core available" if cores == 1 else "the BLAS was limited to one thread"
        return Plan(1, (1,), f"auto: {why}")
    if work < SMALL_WORK:
        return Plan(
            1,
            (1,),
            f"auto: small matrix products ({work:,} multiply-adds per step): one thread, "
            "splitting them costs more than it saves",
        )
    busy = max(0.0, load - own)
    free = cores * (1.0 - min(1.0, busy / (total_cpus or cores)))
    candidates = _halvings(top)
    start = next((n for n in candidates if n <= max(1.0, free + 0.25)), 1)
    return Plan(
        start,
        candidates,
        f"auto: {cores} cores, load {load:.1f} of which {own:.1f} this process: start with "
        f"{start}, then timed",
    )


def _halvings(top: int) -> tuple[int, ...]:
    """``top, top // 2, ..., 1``: the counts the tuner tries (8 cores: 8, 4, 2, 1)."""
    out = [top]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return tuple(out)


# -- the tuner -----------------------------------------------------------------------------------
class ThreadTuner:
    """Chooses the thread count from measured seconds per step, one block of steps at a time.

    ``record(threads, seconds_per_step)`` takes the block just run and returns the count for
    the next one. It tries every candidate once, then keeps the fastest by its latest block
    (more threads only when at least ``margin`` faster: they suffer more when the machine gets
    busy). It tries the smaller counts when a block at the chosen count is ``slowdown`` times
    slower than the best block at that count since the last decision (another process took a
    core), and all the others every ``probe_every`` blocks (to find that more threads pay
    again); each comparison ends with a fresh block at the chosen count, so that one slow block
    does not decide alone. An interval whose comparison did not change the choice doubles, up
    to ``max_probe_every``.

    Attributes:
        current: the chosen count; reason: why, in words (after each decision).
        decisions: comparisons finished; switches: how often they changed the chosen count;
        probes: comparisons started.
    """

    def __init__(
        self,
        candidates: tuple[int, ...],
        start: int,
        *,
        slowdown: float = 1.3,
        margin: float = 0.1,
        probe_every: int = 16,
        max_probe_every: int = 256,
    ) -> None:
        self.candidates = tuple(sorted(set(candidates)))
        self.current = start
        self.slowdown, self.margin = slowdown, margin
        self.base_interval, self.max_interval = probe_every, max_probe_every
        self.interval = probe_every
        self.recent: dict[int, float] = {}  # latest seconds per step at each count
        self.baseline: dict[int, float] = {}  # best since the last decision
        self.reason = "first measurement"
        self.switches = self.probes = self.decisions = 0
        self._to_measure = [n for n in reversed(self.candidates) if n != start]
        self._probing = bool(self._to_measure)
        self._compared: set[int] = set()  # counts timed in the comparison under way
        self.probes = int(self._probing)
        self._since_probe = 0

    def record(self, threads: int, seconds: float) -> int:
        """Take a block's seconds per step at ``threads``; return the count to run next."""
        self.recent[threads] = seconds
        self.baseline[threads] = min(self.baseline.get(threads, math.inf), seconds)
        if self._probing:
            self._compared.add(threads)
            if self._to_measure:  # comparing: run the next candidate
                return self._to_measure.pop(0)
            self._probing = False  # every count compared has a fresh time: decide
            self._decide()
            return self.current
        self._since_probe += 1
        # slower steps: another process took a core, fewer threads may help (none fewer than
        # one); now and then: more threads may pay again
        slowed = threads > self.candidates[0] and seconds > self.slowdown * self.baseline[threads]
        due = self._since_probe >= self.interval
        if slowed or due:
            self.reason = (
                f"steps at {threads} thread(s) took {seconds / self.baseline[threads]:.1f}x "
                "the best since the last decision (the CPU is shared)"
                if slowed
                else f"checking again after {self._since_probe} blocks"
            )
            self._since_probe = 0
            # the others, then the chosen count again: the decision compares fresh blocks, so
            # one slow block (a burst of other work) does not decide alone
            self._to_measure = [
                n for n in reversed(self.candidates) if n != self.current and (due or n < threads)
            ] + [self.current]
            self._compared = set()
            self._probing = True
            self.probes += 1
            return self._to_measure.pop(0)
        return self.current

    def _decide(self) -> None:
        """The fastest of the counts just compared (older times may describe another state
        of the machine); more threads only when clearly faster."""
        compared = sorted(self._compared)
        best = compared[0]
        for n in compared[1:]:
            if self.recent[n] < (1.0 - self.margin) * self.recent[best]:
                best = n
        self.decisions += 1
        times = ", ".join(f"{n}: {1e3 * self.recent[n]:.2f} ms" for n in compared)
        if best != self.current:
            self.switches += 1
            self.interval = self.base_interval
            why = f"{self.current} -> {best} thread(s): per step {times}"
        else:
            self.interval = min(2 * self.interval, self.max_interval)
            why = f"kept {best} thread(s): per step {times}"
        self.reason = f"{why} ({self.reason})" if self.reason else why
        self.current = best
        # the best times since this decision start now: what counts as "slowed down" follows
        # the machine as it is, not as it was an hour ago
        self.baseline = {n: t for n, t in self.recent.items() if n == best}


# -- applying the decision -----------------------------------------------------------------------
class _Settings:
    """The process-wide thread settings: BLAS through threadpoolctl. The first
    holder saves the previous settings and the last one restores them, so a fit inside a fit
    (or two at once in threads) leaves the process as it found it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self._blas: Any = None  # threadpoolctl's controller of the BLAS libraries
        self._saved: Any = None  # the limiter holding the BLAS settings before the first holder
        self._modules_seen = 0
        self.note = ""

    def blas(self, refresh: bool = False) -> Any:
        """threadpoolctl's controller of the loaded BLAS libraries. ``refresh``: look again
        if modules were imported since the last look (scipy brings its own OpenBLAS); the
        look costs about a millisecond, too much to repeat for every short ``fit``."""
        if refresh and self._modules_seen != len(sys.modules):
            self._blas = None
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
            except ImportError:  # a dependency; if it is missing, BLAS threads stay as they are
                self.note = "threadpoolctl not installed: BLAS threads left as they are"
                return None
            self._blas = ThreadpoolController().select(user_api="blas")
            self._modules_seen = len(sys.modules)
        return self._blas

    def blas_threads(self) -> int:
        """The BLAS's current thread count (the largest over the loaded BLAS libraries)."""
        ctl = self.blas()
        if ctl is None:
            return available_cores()
        return max((int(lib.num_threads) for lib in ctl.lib_controllers), default=1)

    def acquire(self) -> bool:
        """Become a holder; ``True`` for the first (who may set the threads)."""
        with self.lock:
            self.holders += 1
            return self.holders == 1

    def apply(self, n: int) -> None:
        ctl = self.blas()
        if ctl is not None:
            limiter = ctl.limit(limits=n)
            if self._saved is None:
                self._saved = limiter  # restoring it restores the settings before lucidnet's
        # The step loop's compiled kernels stay serial (``kernels.set_kernel_threads`` is the user's
        # choice, 1 by default): their parallel versions beside a multi-threaded BLAS spin on
        # the same cores. Measured on 2 cores, an A-shaped epoch (30,000 samples) with 2 BLAS
        # threads took 2.5-2.9 s with 2 kernel threads against 0.28 s with serial kernels.

    def release(self) -> None:
        with self.lock:
            self.holders -= 1
            if self.holders:
                return
            if self._saved is not None:
                self._saved.restore_original_limits()
            self._saved = None


SETTINGS = _Settings()


def _machine_plan(setting: int | str, work: int) -> Plan:
    """:func:`plan` with this machine's numbers."""
    if setting != AUTO:
        return plan(setting, work, cores=available_cores(), ceiling=int(setting))
    return plan(
        setting,
        work,
        cores=available_cores(),
        ceiling=SETTINGS.blas_threads(),
        load=machine_load(),
        own=own_load(),
        total_cpus=os.cpu_count(),
    )


@contextmanager
def limited(setting: int | str, work: int) -> Iterator[int | None]:
    """Run the block with the planned thread count (``predict``, ``evaluate``): no tuning, the
    previous settings restored afterwards. Inside a ``fit`` (or another ``limited``) the
    settings in force are kept. Yields the count set, or None when kept."""
    if not SETTINGS.acquire():
        try:
            yield None
        finally:
            SETTINGS.release()
        return
    try:
        chosen = _machine_plan(setting, work).threads
        SETTINGS.apply(chosen)
        yield chosen
    finally:
        SETTINGS.release()


# owner (a model) -> (work per step, tuner): what the last fit of that model learned
_TUNERS: weakref.WeakKeyDictionary[Any, tuple[int, ThreadTuner]] = weakref.WeakKeyDictionary()


def _reused_tuner(owner: Any, work: int, candidates: tuple[int, ...]) -> ThreadTuner | None:
    """The tuner of ``owner``'s last fit if it timed the same work over the same counts."""
    try:
        last = _TUNERS.get(owner) if owner is not None else None
    except TypeError:  # not weak-referenceable: no memory between fits
        return None
    if last is None or last[0] != work or last[1].candidates != tuple(sorted(candidates)):
        return None
    return last[1]


def _remember_tuner(owner: Any, work: int, tuner: ThreadTuner) -> None:
    if owner is not None:
        try:
            _TUNERS[owner] = (work, tuner)
        except TypeError:
            pass


@dataclass
class ThreadControl:
    """The thread count of one ``fit``: planned, applied, tuned on timed blocks of steps and
    recorded per epoch. Used as a context manager around the epochs; the loop calls
    :meth:`epoch_begin`, :meth:`step_done` after each step and :meth:`epoch_end`.

    ``owner`` (the model) keeps the tuner between fits: ``fit(epochs=1)`` called per epoch, or
    an estimator's ``partial_fit``, continues from what the last call learned instead of
    timing every count again. ``clock`` and ``plan_fn`` are injectable so that tests decide
    with fake times and loads.
    """

    setting: int | str
    work: int
    owner: Any = None
    clock: Callable[[], float] = time.perf_counter
    plan_fn: Callable[[int | str, int], Plan] = _machine_plan
    tuner: ThreadTuner | None = None
    record: dict[str, Any] = field(default_factory=dict)
    holder: bool = False
    _current: int = 1
    _top: int = 1  # the most threads this fit may use
    _split: bool = False  # the threads are a kernel's, which splits the work itself (BLAS: 1)
    _chosen: int = 1  # the tuner's choice (a probe block runs another count for a while)
    _steps: int = 0  # steps in the current block
    _spent: float = 0.0  # seconds of steps in the current block before this epoch
    _t0: float = 0.0  # when this epoch's steps started
    _warm: bool = False  # the first step of the fit (compilation, allocation) is not timed
    _epoch_counts: dict[int, int] = field(default_factory=dict)
    _epoch: int = 0

    def __enter__(self) -> ThreadControl:
        self.holder = SETTINGS.acquire()
        try:
            self._start()
        except BaseException:
            SETTINGS.release()
            raise
        return self

    def _start(self) -> None:
        if not self.holder:  # a fit inside a fit, or two at once: keep what is in force
            self.record = {"setting": self.setting, "reason": "kept the enclosing settings"}
            self.record.update(per_epoch=[], changes=[], probes=0)
            return
        SETTINGS.blas(refresh=True)
        p = self.plan_fn(self.setting, self.work)
        if len(p.candidates) > 1:
            self.tuner = _reused_tuner(self.owner, self.work, p.candidates)
            if self.tuner is None:
                self.tuner = ThreadTuner(p.candidates, p.threads)
                _remember_tuner(self.owner, self.work, self.tuner)
            else:
                p = Plan(
                    self.tuner.current,
                    p.candidates,
                    f"auto: continuing the last fit's choice ({self.tuner.current})",
                )
        self._current = self._chosen = p.threads
        self._top = max(p.candidates)
        SETTINGS.apply(p.threads)
        self.record = {"setting": self.setting, "start": p.threads, "reason": p.reason}
        self.record.update(per_epoch=[], changes=[], probes=0)
        if SETTINGS.note:
            self.record["note"] = SETTINGS.note

    def __exit__(self, *exc: Any) -> None:
        SETTINGS.release()

    def epoch_begin(self, epoch: int) -> None:
        """A new epoch: the block's timer runs again (it stopped at the last epoch's end, so
        validation and callbacks between epochs are not timed)."""
        self._epoch, self._epoch_counts = epoch, {}
        if self.tuner is not None:
            self._t0 = self.clock()

    def step_done(self, steps: int = 1, warm: bool = False) -> None:
        """After every training step, or after ``steps`` steps run in one compiled call
        (an epoch of lucidnet.fused): count them; once a block has run ``BLOCK_SECONDS``, let
        the tuner decide from its seconds per step. The fit's first call is not timed (it
        compiles and allocates) unless ``warm`` says it did neither."""
        self._epoch_counts[self._current] = self._epoch_counts.get(self._current, 0) + steps
        if self.tuner is None:
            return
        now = self.clock()
        if not self._warm and not warm:
            self._warm = True
            SETTINGS.blas(refresh=True)  # libraries loaded by the first step (numba's calls to
            self._apply(self._current)  # SciPy's BLAS in lucidnet.fused) get it too
            self._t0 = now
            return
        self._warm = True
        self._steps += steps
        spent = self._spent + now - self._t0
        if spent < BLOCK_SECONDS:
            return
        self._choose(self.tuner.record(self._current, spent / self._steps))
        self._steps, self._spent, self._t0 = 0, 0.0, self.clock()

    def _choose(self, n: int) -> None:
        assert self.tuner is not None
        first = self.tuner.decisions == 1 and not self.record["changes"]
        if self.tuner.current != self._chosen or first:  # the calibration's result, then changes
            self._chosen = self.tuner.current
            self.record["changes"].append(f"epoch {self._epoch + 1}: {self.tuner.reason}")
        self.record["probes"] = self.tuner.probes
        if n != self._current:
            self._apply(n)
            self._current = n

    def _apply(self, n: int) -> None:
        SETTINGS.apply(1 if self._split else n)

    def current(self) -> int:
        """The thread count the next steps run with."""
        return self._current

    def may_split(self) -> bool:
        """Whether this fit may run a kernel that splits the work over its own threads
        (:meth:`split_in_kernel`): only the holder of the settings, and only with more than
        one thread among the counts it may choose."""
        return self.holder and self._top > 1

    def split_in_kernel(self, on: bool) -> bool:
        """While ``on``, the threads are those of a kernel that splits the products and the
        elementwise work itself (``lucidnet.fused``'s parallel kernel, which asks
        :meth:`current` before every block): BLAS runs one thread meanwhile, since two pools
        of threads spinning on the same cores slow each other down many times over. Off: BLAS
        gets the count again. Returns whether it is on (see :meth:`may_split`)."""
        on = on and self.may_split()
        if on != self._split:
            SETTINGS.apply(1 if on else self._current)
            self._split = on
        return on

    def untimed(self) -> None:
        """The time since the block's timer last ran (or this epoch began) is not the
        steps': a kernel was compiled or loaded meanwhile."""
        if self.tuner is not None:
            self._t0 = self.clock()

    def epoch_end(self) -> None:
        """Stop the block's timer; record the count that ran most of the epoch's steps."""
        if self.tuner is not None:
            self._spent += self.clock() - self._t0
        counts = self._epoch_counts
        if self.holder and counts:  # a fit that kept another's settings does not know them
            self.record["per_epoch"].append(max(counts, key=counts.__getitem__))


def describe_record(record: dict[str, Any]) -> str:
    """One line for the CLI: setting, start and why, the counts per epoch and the changes."""
    if not record:
        return "threads: not recorded"
    per = record.get("per_epoch", [])
    runs: list[str] = []
    for n in per:  # "2 x3, 1 x5": run-length, short for long trainings
        if runs and runs[-1].split(" x")[0] == str(n):
            head, _, count = runs[-1].partition(" x")
            runs[-1] = f"{head} x{int(count or 1) + 1}"
        else:
            runs.append(str(n))
    text = f"Threads: {record.get('setting')}; {record.get('reason', '')}"
    if per:
        text += f"; per epoch: {', '.join(runs)}"
    changes = record.get("changes", [])
    if changes:
        text += f"; {len(changes)} change(s), last: {changes[-1]}"
    return text
