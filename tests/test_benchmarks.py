"""Smoke test of the benchmark (``benchmarks/run.py``), so that it keeps running as the library
changes: quick mode with a small workload A, lucidnet and the plain NumPy loop only (PyTorch /
JAX are not installed in the test environment and must be reported as skipped, not crash the
run). Speed itself is measured by ``make bench``, never asserted here: rows are found by their
label, never by the ratio they show."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """The Markdown tables in ``text``: per table, one ``{column header: cell}`` per row."""
    lines = text.splitlines()
    tables = []
    for i in range(len(lines) - 1):
        if not (lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1])):
            continue
        header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
        rows = []
        for line in lines[i + 2 :]:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) == len(header), (header, line)
            rows.append(dict(zip(header, cells)))
        tables.append(rows)
    return tables


def test_markdown_tables_are_read_by_column():
    text = "x\n| system | time / lucidnet |\n|---|:--:|\n| lucidnet | 1.00x |\n| b | 2.5x |\nend\n"
    assert markdown_tables(text) == [
        [
            {"system": "lucidnet", "time / lucidnet": "1.00x"},
            {"system": "b", "time / lucidnet": "2.5x"},
        ]
    ]


def test_quick_benchmark_runs_and_reports_every_requested_system(tmp_path):
    out_md = tmp_path / "results.md"
    cmd = [sys.executable, "benchmarks/run.py", "--quick", "--workloads", "A,B,contention,cold"]
    cmd += ["--systems", "lucidnet,numpy,jax-jit", "--no-wait", "--markdown", str(out_md)]
    cmd += ["--samples", "5000", "--repeats", "1"]  # workload A small: a smoke test, not a timing
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    # the epoch-time tables, one per workload, each with lucidnet's row (the 1.00x reference)
    timed = [t for t in markdown_tables(text) if t and "time / lucidnet" in t[0]]
    assert len(timed) == 2, text
    for table in timed:
        labels = [row["system"] for row in table]
        assert labels.count("lucidnet") == 1 and labels.count("lucidnet (fit call)") == 1, labels
    own = [next(row for row in table if row["system"] == "lucidnet") for table in timed]
    assert [row["time / lucidnet"] for row in own] == ["1.00x", "1.00x"]  # time / itself
    # workload B (digits, 10 epochs in quick mode) learns
    assert own[1]["learned"] == "yes", own[1]
    assert "plain NumPy" in text and "Targets:" in text
    try:
        import jax  # noqa: F401
    except ImportError:
        assert "JAX jit step: skipped" in text
    md = out_md.read_text(encoding="utf-8")
    assert md.startswith("# Benchmark results") and "## Full output" in md
    # the contention row: one table per workload, lucidnet auto / 2 / 1, idle and busy
    busy = [t for t in markdown_tables(text) if t and "busy s/epoch" in t[0]]
    assert len(busy) == 2, text
    for table in busy:
        labels = [row["system"] for row in table]
        assert labels[0] == "lucidnet threads=auto" and "lucidnet threads=1" in labels, labels
        assert all(float(row["busy s/epoch"]) > 0 for row in table)
    # the cold-start row, and the machine's thread context printed with every result
    cold = next(t for t in markdown_tables(text) if t and "process" in t[0] and "min-max" in t[0])
    processes = [row["process"] for row in cold]
    assert processes[1:3] == ['python -c "import lucidnet"', "lucidnet --help"]
    assert text.count("BLAS: ") >= 4 and "numba" in text.split("## Contention")[1]
    assert "contention A: lucidnet auto with one competing process" in text
    assert "import lucidnet loads none of numba, threadpoolctl, pandas, scikit-learn" in text
