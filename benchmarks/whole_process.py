"""Workload C (whole processes) for ``benchmarks/run.py``: ``lucidnet train`` on a generated CSV
against the equivalent scikit-learn script, ``import lucidnet`` time, and workload A's memory
(peak and per-epoch resident memory, in a fresh process)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from report import table

CATEGORIES = {
    "city": [f"city_{i:02d}" for i in range(20)],
    "plan": ["basic", "standard", "premium", "family"],
    "device": ["android", "ios", "web", "tv", "tablet", "other"],
}
CLASSES = np.array(["stay", "churn", "upgrade"])


def peer_versions() -> dict[str, str]:
    """Installed versions of the compared packages (without importing them)."""
    out = {}
    for pkg in ("lucidnet", "numpy", "torch", "jax", "jaxlib", "scikit-learn", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """A churn-like table: 5 numeric columns (1% missing income), 3 categorical columns, one
    free-text column, and a 3-class label that depends on all three kinds plus noise."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(400)])
    good, bad = vocab[:20], vocab[20:40]
    num = {
        "age": rng.integers(18, 90, rows),
        "income": np.round(rng.lognormal(10, 0.5, rows), 2),
        "tenure_months": rng.integers(0, 120, rows),
        "usage_hours": np.round(rng.gamma(2.0, 10.0, rows), 1),
        "support_calls": rng.poisson(1.5, rows),
    }
    cat = {k: rng.choice(v, rows) for k, v in CATEGORIES.items()}
    tone = rng.normal(0, 1, rows)
    words = []
    for t in tone:
        k = rng.integers(5, 20)
        w = rng.choice(vocab[40:], k)
        n_tone = rng.integers(1, 4)
        w[:n_tone] = rng.choice(good if t > 0 else bad, n_tone)
        rng.shuffle(w)
        words.append(" ".join(w))
    score_churn = (
        0.8 * (num["support_calls"] - 1.5)
        - 0.02 * (num["tenure_months"] - 60)
        - 0.9 * tone
        + 0.6 * (cat["plan"] == "basic")
    )
    score_up = 0.03 * (num["usage_hours"] - 20) + 0.8 * tone + 0.7 * (cat["device"] == "tv")
    scores = np.stack([np.zeros(rows), score_churn, score_up], axis=1)
    scores += rng.gumbel(size=scores.shape)
    df = pd.DataFrame({**num, **cat, "review": words, "label": CLASSES[scores.argmax(axis=1)]})
    df.loc[rng.random(rows) < 0.01, "income"] = np.nan
    df.to_csv(path, index=False)


# Runs the command given after the result path and writes its wall time, peak resident memory
# and exit status there. A small fresh interpreter in between matters: a child forked from the
# benchmark itself (with PyTorch and JAX loaded) would count the benchmark's memory as its own.
_MEASURE = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
doc = {"wall": time.perf_counter() - t0, "rss_kb": usage.ru_maxrss,
       "code": os.waitstatus_to_exitcode(status)}
with open(sys.argv[1], "w") as f:
    json.dump(doc, f)
"""


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, int, str]:
    """Run ``cmd``; return (wall seconds, peak resident memory in MB, exit status, output)."""
    result, log = (
        cwd / "benchmarks" / "_work" / "measure.json",
        cwd / "benchmarks" / "_work" / "out.txt",
    )
    with open(log, "w", encoding="utf-8") as out:
        subprocess.run(
            [sys.executable, "-c", _MEASURE, str(result), *cmd],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    doc = json.loads(result.read_text())
    return doc["wall"], doc["rss_kb"] / 1024, doc["code"], log.read_text(errors="replace")


def find_accuracy(doc: Any) -> float:
    """The first ``accuracy`` value in a (nested) metrics JSON document."""
    if isinstance(doc, dict):
        if isinstance(doc.get("accuracy"), (int, float)):
            return float(doc["accuracy"])
        for v in doc.values():
            a = find_accuracy(v)
            if math.isfinite(a):
                return a
    if isinstance(doc, list):
        for v in doc:
            a = find_accuracy(v)
            if math.isfinite(a):
                return a
    return float("nan")


def lucidnet_command() -> list[str]:
    """The ``lucidnet`` console script of this interpreter's environment, else ``-m``."""
    script = Path(sys.executable).with_name("lucidnet")
    if script.exists():
        return [str(script)]
    found = shutil.which("lucidnet")
    return [found] if found else [sys.executable, "-m", "lucidnet.cli"]


def import_seconds(module: str, repeats: int = 5) -> float:
    """Median time of ``import module`` in a fresh interpreter (interpreter start excluded)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if res.returncode != 0:
            return float("nan")
        times.append(float(res.stdout.strip().splitlines()[-1]))
    return float(np.median(times))


def memory_probe_main(samples: int, epochs: int, make_data) -> int:
    """Child process of ``memory_probe``: workload A with lucidnet, printing one JSON line with
    resident memory after import, after making the data, at each epoch end, and the peak."""
    import lucidnet as ln

    def rss_mb(field: str = "VmRSS") -> float:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    after_import = rss_mb()
    X, y, _, _ = make_data(samples, 1)
    after_data = rss_mb()
    per_epoch: list[float] = []

    class Rss(ln.Callback):
        def on_epoch_end(self, epoch, logs):
            per_epoch.append(rss_mb())

    model = ln.Sequential(
        [ln.Dense(256, activation="relu"), ln.Dense(128, activation="relu"), ln.Dense(10)]
    )
    model.fit(
        X,
        y,
        loss="cross_entropy",
        epochs=epochs,
        batch_size=128,
        seed=0,
        verbose=0,
        callbacks=[Rss()],
    )
    doc = {
        "data_mb": (X.nbytes + y.nbytes) / 2**20,
        "after_import_mb": after_import,
        "after_data_mb": after_data,
        "per_epoch_mb": per_epoch,
        "peak_mb": rss_mb("VmHWM"),
    }
    print(json.dumps(doc))
    return 0


def memory_probe(samples: int, epochs: int, here: Path) -> dict:
    cmd = [sys.executable, str(here / "run.py"), "--memory-probe", "--samples", str(samples)]
    # the compiled kernels from the first step (LUCIDNET_JIT=1), so that loading numba (about
    # 100 MB, once: in the default "auto" mode it happens during epoch 2) is not read as growth
    env = {**os.environ, "LUCIDNET_JIT": "1"}
    res = subprocess.run(cmd + ["--epochs", str(epochs)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def workload_c(args, here: Path, log) -> dict:
    rows = args.c_rows or (10_000 if args.quick else 50_000)
    epochs = args.c_epochs or (3 if args.quick else 10)
    work = here / "_work"
    work.mkdir(exist_ok=True)
    out: dict = {"targets": []}
    log(f"\n## Workload C: whole processes ({rows:,}-row CSV, {epochs} epochs), import, memory")

    # import time and memory of workload A first: they need no CLI
    t_imp = import_seconds("lucidnet")
    others = {m: import_seconds(m, 3) for m in ("torch", "sklearn.neural_network", "jax")}
    log(
        f"import lucidnet: {t_imp:.3f} s (median of 5 fresh interpreters); for comparison "
        + ", ".join(f"import {m}: {t:.2f} s" for m, t in others.items() if math.isfinite(t))
    )
    out["targets"].append((f"import lucidnet well under 0.5 s: {t_imp:.3f} s", t_imp < 0.5))
    n_mem = args.samples
    mem = memory_probe(n_mem, 3, here)
    if "error" in mem:
        log(f"memory probe failed: {mem['error']}")
    else:
        growth = mem["per_epoch_mb"][-1] - mem["per_epoch_mb"][0]
        log(
            f"workload A memory ({n_mem:,} samples, 3 epochs, lucidnet, fresh process): training "
            f"data {mem['data_mb']:.0f} MB; resident after import {mem['after_import_mb']:.0f} MB, "
            f"after making the data {mem['after_data_mb']:.0f} MB, peak {mem['peak_mb']:.0f} MB "
            f"({mem['peak_mb'] / mem['data_mb']:.2f}x the data); at each epoch end "
            + ", ".join(f"{m:.0f}" for m in mem["per_epoch_mb"])
            + " MB"
        )
        # judged on the full 60,000 samples only: with less data the interpreter dominates
        full = n_mem >= 60_000
        out["targets"].append(
            (
                f"A: peak memory below 2x the training data: process peak {mem['peak_mb']:.0f} "
                f"MB vs 2 x {mem['data_mb']:.0f} MB of data",
                mem["peak_mb"] < 2 * mem["data_mb"] if full else None,
            )
        )
        out["targets"].append(
            (
                f"A: no memory growth across epochs: {growth:+.1f} MB from epoch 1 to 3",
                growth < 5.0,
            )
        )

    cli = lucidnet_command()
    probe = subprocess.run(cli + ["train", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        log(f"workload C skipped: `lucidnet train --help` failed ({probe.stderr.strip()[-200:]})")
        return out
    data = work / "c_data.csv"
    make_csv(data, rows)
    size_mb = data.stat().st_size / 2**20
    # fmt: off
    lucid = cli + [
        "train", str(data), "--target", "label", "--text", "review",
        "--categorical", "city", "plan", "device", "--hidden", "64,32",
        "--epochs", str(epochs), "--patience", str(epochs), "--batch-size", "128",
        "--lr", "0.001", "--max-features", "300", "--seed", "0", "--no-diagnostics",
        "--no-baselines",  # like for like: the scikit-learn script fits no reference models
        "--dropout", "0", "--final-fit", "off",  # nor a text rule (its text is 300 terms)
        "--out", str(work / "c_model.lnet"), "--metrics-json", str(work / "c_metrics.json"),
        "--overwrite", "--quiet",
    ]
    # fmt: on
    skl = [
        sys.executable,
        str(here / "sklearn_pipeline.py"),
        str(data),
        "--epochs",
        str(epochs),
        "--max-features",
        "300",
        "--seed",
        "0",
        "--metrics-json",
        str(work / "c_sklearn.json"),
    ]
    runs = 1 if args.quick else 2
    res: dict[str, list[tuple[float, float]]] = {"lucidnet train": [], "scikit-learn script": []}
    acc: dict[str, float] = {}
    for _ in range(runs):  # interleaved
        for name, cmd, metrics in (
            ("lucidnet train", lucid, work / "c_metrics.json"),
            ("scikit-learn script", skl, work / "c_sklearn.json"),
        ):
            wall, peak, code, text = run_measured(cmd, here.parent)
            if code != 0:
                log(f"{name} failed (exit {code}): {text.strip()[-400:]}")
                return out
            res[name].append((wall, peak))
            acc[name] = find_accuracy(json.loads(metrics.read_text()))
    log(
        f"data: {size_mb:.1f} MB CSV; 5 numeric (1% missing), 3 categorical, 1 text column "
        f"(TF-IDF, 300 terms), 3 classes; 70/10/20 train/validation/test split, 64-32 ReLU, "
        f"Adam(1e-3), batch 128, {epochs} epochs; {runs} run(s) each, interleaved"
    )
    t_ref = min(w for w, _ in res["lucidnet train"])
    rows_out = []
    for name, vals in res.items():
        wall = min(w for w, _ in vals)
        rows_out.append(
            [
                name,
                f"{wall:.2f}",
                f"{max(p for _, p in vals):.0f}",
                f"{acc[name]:.4f}",
                f"{wall / t_ref:.2f}x",
            ]
        )
    for line in table(
        ["process", "wall s (best)", "peak RSS MB", "test acc", "time / lucidnet"], rows_out
    ):
        log(line)
    import machine  # the sibling module (benchmarks/ is on the path)

    log(machine.thread_context())
    out["ratio"] = rows_out[1][4]
    return out
