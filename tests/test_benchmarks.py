"""Smoke test of the benchmark (``benchmarks/run.py``), so that it keeps running as the library
changes: quick mode, lucidnet and the plain NumPy loop only (PyTorch / JAX are not installed in
the test environment and must be reported as skipped, not crash the run). Speed itself is
measured by ``make bench``, never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_and_reports_every_requested_system(tmp_path):
    out_md = tmp_path / "results.md"
    cmd = [sys.executable, "benchmarks/run.py", "--quick", "--workloads", "A,B"]
    cmd += ["--systems", "lucidnet,numpy,jax-jit", "--no-wait", "--markdown", str(out_md)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    # the epoch-time rows of lucidnet (its own time is the 1.00x reference), one per workload
    rows = [ln for ln in text.splitlines() if ln.startswith("| lucidnet ") and "| 1.00x " in ln]
    assert len(rows) == 2
    # workload B (digits, 10 epochs in quick mode) learns: the last column says so
    assert rows[1].rstrip(" |").endswith("yes"), rows[1]
    assert "plain NumPy" in text and "Targets:" in text
    try:
        import jax  # noqa: F401
    except ImportError:
        assert "JAX jit step: skipped" in text
    md = out_md.read_text(encoding="utf-8")
    assert md.startswith("# Benchmark results") and "## Full output" in md
