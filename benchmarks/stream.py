"""Data larger than memory: ``lucidnet train big.parquet`` streamed, its peak memory and speed.

    PYTHONPATH=$PWD python benchmarks/stream.py [--rows 5000000] [--dir /tmp]

1. Writes a Parquet file of ``--rows`` rows x 20 float64 columns and a class label (row groups of
   250,000 rows, generated chunk by chunk, so that generation holds one chunk), and a separate
   test file of 200,000 rows from the same distribution. The label is ``x @ w + noise > 0`` with
   a quadratic term, so that a network beats a linear model a little.
2. Runs ``lucidnet train BIG --target y --stream --epochs 1`` in a child process, which prints its
   own peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after ``main``
   returns; the float64 frame of the whole file alone would take ``rows x 21 x 8`` bytes.
3. Trains in memory (no streaming) on a subsample (the first ``--subsample`` rows) with the same
   options, and evaluates both models on the separate test file (``lucidnet evaluate``).

Throughput: training rows / training seconds (the model file's ``training.seconds``: the epoch,
reading and preparing included) and rows of the file / the child's wall time (the statistics
pass, the held-out pass, training, testing, saving). The machine may be shared: say so with the
numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = 20
CHUNK = 100_000  # rows per generated chunk and per Parquet row group (about 17 MB of float64)

_CHILD = """
import resource, sys
from lucidnet.cli.commands import main
rc = main(sys.argv[1:])
print("MAXRSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


def write_parquet(path: Path, rows: int, seed: int) -> None:
    """``rows`` rows of 20 float64 columns and a 0/1 label ``y``, written chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    w = np.random.default_rng(12345).normal(size=COLUMNS)  # the same rule for every file
    rng = np.random.default_rng(seed)
    schema = pa.schema([(f"x{j}", pa.float64()) for j in range(COLUMNS)] + [("y", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            x = rng.normal(size=(n, COLUMNS))
            score = x @ w / np.sqrt(COLUMNS) + 0.5 * (x[:, 0] ** 2 - 1) + rng.normal(0, 0.3, n)
            cols = [pa.array(x[:, j]) for j in range(COLUMNS)]
            cols.append(pa.array((score > 0).astype(np.int64)))
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=CHUNK)


def run_cli(argv: list[str]) -> tuple[float, int, str]:
    """``lucidnet ARGV`` in a child process: (wall seconds, peak RSS in MiB, its output)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"lucidnet {' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    kib = int(proc.stderr.rsplit("MAXRSS_KIB", 1)[1].split()[0])
    return wall, kib // 1024, proc.stdout


def accuracy(model: Path, test: Path, out: Path) -> float:
    """The model's accuracy on the test file (``lucidnet evaluate --metrics-json``)."""
    run_cli(["evaluate", str(model), str(test), "--metrics-json", str(out), "--overwrite"])
    return float(json.loads(out.read_text())["test"]["accuracy"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--subsample", type=int, default=500_000)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    big, small, test = (
        d / "ln_stream_big.parquet",
        d / "ln_stream_sub.parquet",
        d / "ln_stream_test.parquet",
    )
    t0 = time.perf_counter()
    if not big.exists() or big.stat().st_size < args.rows * 8:
        write_parquet(big, args.rows, seed=0)
    write_parquet(small, args.subsample, seed=0)  # the first rows of the big file
    write_parquet(test, 200_000, seed=99)
    gen = time.perf_counter() - t0
    common = ["--target", "y", "--epochs", "1", "--batch-size", str(args.batch_size), "--quiet",
              "--no-diagnostics", "--overwrite"]  # fmt: skip
    frame_mib = args.rows * (COLUMNS + 1) * 8 / 2**20  # the whole file as a float64 frame
    out = {"rows": args.rows, "columns": COLUMNS, "file_mib": big.stat().st_size / 2**20,
           "float64_frame_mib": frame_mib, "generate_s": gen}  # fmt: skip
    wall, rss, _ = run_cli(
        ["train", str(big), "--stream", "--out", str(d / "ln_big.lnet"), *common]
    )
    from lucidnet.cli.commands import _load_model  # the model file's metadata

    meta = _load_model(str(d / "ln_big.lnet"))[1]
    train_rows, seconds = meta["split"]["train"], meta["training"]["seconds"]
    out.update(stream_wall_s=wall, stream_peak_rss_mib=rss, train_rows=train_rows,
               train_s=seconds, train_rows_per_s=train_rows / seconds,
               end_to_end_rows_per_s=args.rows / wall)  # fmt: skip
    wall_m, rss_m, _ = run_cli(["train", str(small), "--stream-above", "none",
                                "--out", str(d / "ln_sub.lnet"), *common])  # fmt: skip
    out.update(memory_subsample_rows=args.subsample, memory_wall_s=wall_m,
               memory_peak_rss_mib=rss_m)  # fmt: skip
    out["stream_test_accuracy"] = accuracy(d / "ln_big.lnet", test, d / "ln_big.json")
    out["memory_test_accuracy"] = accuracy(d / "ln_sub.lnet", test, d / "ln_sub.json")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
