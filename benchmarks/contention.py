"""The contention row and the cold-start row of ``benchmarks/run.py``.

Contention: the epochs of workloads A (784-256-128-10, batch 128) and B (digits 64-32-10, batch
32) timed on the idle machine and again while one competing CPU-bound process
(``python -c "while True: pass"``, started and stopped by the benchmark) runs, for lucidnet with
``threads="auto"``, a fixed count equal to the cores and 1, and for PyTorch eager (as many
threads as cores, and 1) when it is installed. The systems are interleaved within each phase.
Target (issue 15): with the competing process, an epoch takes at most 1.3x lucidnet's best idle
single-thread epoch.

Cold start: wall time of whole processes, interleaved: the bare interpreter (``python -c
pass``), ``python -c "import lucidnet"``, ``lucidnet --help`` and the peers' imports; plus
``import lucidnet`` timed inside the interpreter and the heavy modules it loads (none of numba,
threadpoolctl, pandas, scikit-learn may be among them).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import machine
import numpy as np
from report import fmt_range, table
from systems import LucidnetFit, TorchEager, lucidnet_with_threads

ROOT = Path(__file__).resolve().parent.parent
BUSY_CODE = "while True: pass"
#: modules ``import lucidnet`` must not load (numba only when a kernel is first needed)
HEAVY = ("numba", "threadpoolctl", "pandas", "sklearn", "scipy", "matplotlib", "joblib", "torch")


@contextmanager
def competing_process(count: int = 1) -> Iterator[list[subprocess.Popen]]:
    """``count`` CPU-bound processes running for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_CODE]) for _ in range(count)]
    try:
        time.sleep(0.5)  # started and spinning before the first timed epoch
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


class TorchOneThread(TorchEager):
    name = "PyTorch eager threads=1"
    how = "usual torch loop, torch.set_num_threads(1)"

    def __init__(self, *args, **kwargs) -> None:
        kwargs["threads"] = 1
        super().__init__(*args, **kwargs)


def contention_systems(cores: int, names: list[str]) -> list[tuple[str, type]]:
    """(label, trainer class): lucidnet auto / cores (at least 2) / 1; PyTorch with as many
    threads as cores and with 1 when ``torch`` is among the requested ``names``."""
    fixed = max(2, cores)
    out: list[tuple[str, type]] = [
        ("lucidnet threads=auto", LucidnetFit),
        (f"lucidnet threads={fixed}", lucidnet_with_threads(fixed)),
        ("lucidnet threads=1", lucidnet_with_threads(1)),
    ]
    if "torch" in names:
        out += [(f"PyTorch eager threads={cores}", TorchEager)]
        out += [("PyTorch eager threads=1", TorchOneThread)]
    return out


def _timed_phase(trainers: dict, rounds: int, epochs: int, waiter, busy: bool) -> dict:
    """Seconds per epoch of every trainer, interleaved (rotating order), and lucidnet auto's
    thread count per epoch."""
    times: dict[str, list[float]] = {name: [] for name in trainers}
    threads: dict[str, list[int]] = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            tr = trainers[name]
            for _ in range(epochs):
                if not busy:
                    waiter.wait()
                t0 = time.perf_counter()
                tr.epoch()
                times[name].append(time.perf_counter() - t0)
                record = getattr(tr, "thread_record", None) or {}
                threads[name] += record.get("per_epoch", [])
            time.sleep(0.1)  # lets BLAS worker threads stop spinning before the next system
    return {"times": times, "threads": threads}


def _shape(args, key: str, makers: dict):
    """(label, X, y, hidden, batch size, rounds, epochs per round) of workload A or B;
    ``makers`` holds run.py's data functions (``"A"``: make_workload_a, ``"B"``: digits)."""
    if key == "A":
        n = args.samples
        X, y, _, _ = makers["A"](n, 10)
        rounds = args.repeats or (2 if args.quick else 3)
        return f"A (784-256-128-10, batch 128, {n:,} samples)", X, y, (256, 128), 128, rounds, 1
    X, y = makers["B"]()
    rounds, epochs = (2, 3) if args.quick else (4, 5)
    return "B (digits 64-32-10, batch 32)", X, y, (32,), 32, rounds, epochs


def workload_contention(args, log, makers: dict, names: list[str]) -> dict:
    """The contention table of workloads A and B; targets per workload."""
    cores = machine.cores()
    out: dict = {"targets": [], "tables": {}}
    log(
        "\n## Contention: the same epochs idle and with one competing CPU-bound process "
        f'(`python -c "{BUSY_CODE}"`, started by the benchmark)'
    )
    for key in ("A", "B"):
        label, X, y, hidden, bs, rounds, epochs = _shape(args, key, makers)
        trainers = {}
        for name, cls in contention_systems(cores, names):
            try:
                trainers[name] = cls(
                    X, y, hidden, n_classes=10, batch_size=bs, lr=1e-3, seed=0, threads=cores
                )
            except ImportError as exc:
                log(f"  {name}: skipped: {exc.name or exc} not installed")
                continue
            trainers[name].epoch()  # warm-up (threads started, kernels compiled)
        idle = _timed_phase(trainers, rounds, epochs, args.waiter, busy=False)
        with competing_process(1):
            busy = _timed_phase(trainers, rounds, epochs, args.waiter, busy=True)
        ref = min(idle["times"]["lucidnet threads=1"])  # the target's yardstick
        rows = []
        for name in trainers:
            ti, tb = idle["times"][name], busy["times"][name]
            mi, mb = float(np.median(ti)), float(np.median(tb))
            seen = busy["threads"][name] or idle["threads"][name]
            rows.append(
                [
                    name,
                    f"{mi:.4f}",
                    f"{mb:.4f}",
                    fmt_range(tb, 1, 4),
                    f"{mb / mi:.2f}x",
                    f"{mb / ref:.2f}x",
                    _runs(idle["threads"][name]) + " / " + _runs(busy["threads"][name])
                    if seen
                    else "-",
                ]
            )
        log(f"\n### {label}: {rounds * epochs} timed epochs per system and phase, interleaved")
        header = ["system", "idle s/epoch", "busy s/epoch", "busy min-max", "busy / idle"]
        header += ["busy / best idle 1-thread", "threads per epoch idle / busy"]
        for line in table(header, rows):
            log(line)
        log(machine.thread_context())
        auto = float(np.median(busy["times"]["lucidnet threads=auto"]))
        out["targets"].append(
            (
                f"contention {key}: lucidnet auto with one competing process <= 1.3x its best idle "
                f"single-thread epoch: {auto:.4f} s vs {ref:.4f} s ({auto / ref:.2f}x)",
                auto <= 1.3 * ref,
            )
        )
        out["tables"][key] = rows
    return out


def _runs(counts: list[int]) -> str:
    """``[2, 2, 1, 1, 1]`` as ``"2x2 1x3"``."""
    parts: list[list[int]] = []
    for c in counts:
        if parts and parts[-1][0] == c:
            parts[-1][1] += 1
        else:
            parts.append([c, 1])
    return " ".join(f"{c}x{k}" for c, k in parts) or "-"


# -- cold start ----------------------------------------------------------------------------------
def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return wall if res.returncode == 0 else float("nan")


def cold_start_commands(names: list[str]) -> dict[str, list[str]]:
    """The processes timed: this checkout's lucidnet (run from the repository root) and the
    imports of the requested peers (``names``: torch, jax-*, sklearn) that are installed."""
    py = sys.executable
    cmds = {
        "python -c pass (interpreter start)": [py, "-c", "pass"],
        'python -c "import lucidnet"': [py, "-c", "import lucidnet"],
        "lucidnet --help": [py, "-m", "lucidnet.cli", "--help"],
    }
    wanted = {"torch": "torch", "jax-jit": "jax", "jax-scan": "jax"}
    wanted["sklearn"] = "sklearn.neural_network"
    for module in dict.fromkeys(wanted[n] for n in names if n in wanted):
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            cmds[f'python -c "import {module}"'] = [py, "-c", f"import {module}"]
    return cmds


def loaded_by_import() -> tuple[float, list[str]]:
    """``import lucidnet`` timed inside a fresh interpreter, and the heavy modules it loaded."""
    code = (
        "import sys, time; t = time.perf_counter(); import lucidnet; "
        "print(time.perf_counter() - t); "
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        return float("nan"), [f"failed: {res.stderr.strip()[-200:]}"]
    lines = res.stdout.splitlines()
    return float(lines[0]), [m for m in lines[1].split(",") if m] if len(lines) > 1 else []


def workload_cold_start(args, log, names: list[str]) -> dict:
    rounds = 3 if args.quick else 7
    cmds = cold_start_commands(names)
    walls: dict[str, list[float]] = {name: [] for name in cmds}
    names = list(cmds)
    for r in range(rounds):  # interleaved, rotating
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            walls[name].append(_wall(cmds[name]))
    base = float(np.median(walls[names[0]]))
    rows = []
    for name, times in walls.items():
        med = float(np.median(times))
        rows.append([name, f"{med:.3f}", fmt_range(times, 1, 3), f"{med - base:+.3f}"])
    log(f"\n## Cold start: whole processes, {rounds} runs each, interleaved")
    for line in table(["process", "wall s", "min-max", "minus interpreter start"], rows):
        log(line)
    inside, heavy = loaded_by_import()
    bad = [m for m in heavy if m in ("numba", "threadpoolctl", "pandas", "sklearn")]
    log(
        f"import lucidnet inside the interpreter: {inside:.3f} s; heavy modules it loaded: "
        f"{', '.join(heavy) or 'none'}"
    )
    log(machine.thread_context())
    for_help = float(np.median(walls["lucidnet --help"]))
    return {
        "targets": [
            (f"cold start: import lucidnet < 0.2 s: {inside:.3f} s", inside < 0.2),
            (
                "cold start: import lucidnet loads none of numba, threadpoolctl, pandas, "
                f"scikit-learn: {', '.join(bad) or 'none loaded'}",
                not bad,
            ),
            (f"cold start: lucidnet --help (no target): {for_help:.3f} s", None),
        ],
        "rows": rows,
    }
