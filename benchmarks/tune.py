"""``lucidnet tune`` on the shared tabular files: does the search beat ``train``'s defaults, and
do two workers finish a fixed number of trials sooner than one?

1. **Search against defaults**, per data set: ``lucidnet train DATA --target T`` with the
   default settings, then ``lucidnet tune DATA --target T --trials N`` (same seed: the same
   preparation, split and test rows, as tune runs train's preparation); the test metric of each
   (read from the model files' ``test_metrics``), the trials (completed / pruned) and the wall
   time. The search selects on the validation rows only; the test rows are read once, at the end.
2. **Workers**: the same fixed number of trials on a fresh SQLite study, by one worker and by
   two worker processes started together (``--threads 1`` each), interleaved ``--repeats``
   times; wall time and the CPU seconds of the workers. Each worker is started in its own
   session, as a command typed in its own terminal (or run on its own machine) is: Linux's
   autogroup scheduler shares the CPU between sessions, so on a machine busy with other
   sessions the processes of one session get one session's share, however many they are.

The data (``--data-dir``, default ``../shared/data/tabular``) is never copied into the
repository. Run from the repository root:

    PYTHONPATH=$PWD python benchmarks/tune.py --out tune-results.json

Timings on a shared machine are noisy: the script reports the load average before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: data set -> (file, target, train's metric to compare, higher is better)
DATASETS = {
    "mpg": ("mpg.csv", "mpg", "rmse", False),
    "tips": ("tips.csv", "tip", "rmse", False),
    "planets": ("planets.csv", "method", "accuracy", True),
    "diamonds": ("diamonds.csv", "price", "rmse", False),
}


def lucidnet(*args: Any, cwd: Path) -> tuple[float, float, str]:
    """Run ``python -m lucidnet ARGS``; (wall seconds, CPU seconds of the process, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lucidnet", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"lucidnet {' '.join(map(str, args))}: {done.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, done.stdout


def test_metric(model: Path, metric: str) -> float:
    sys.path.insert(0, str(ROOT))
    import lucidnet as ln

    return float(ln.load(model).metadata["test_metrics"][metric])


def search_vs_defaults(name: str, data_dir: Path, work: Path, trials: int, epochs: int) -> dict:
    """Train with the defaults, then tune; both models' test metric."""
    file, target, metric, higher = DATASETS[name]
    data = data_dir / file
    load = os.getloadavg()[0]
    t_wall, _, _ = lucidnet("train", data, "--target", target, "--out", work / f"{name}-train.lnet",
                            "--no-baselines", "--quiet", "--overwrite", cwd=work)  # fmt: skip
    wall, cpu, out = lucidnet(
        "tune", data, "--target", target, "--trials", trials, "--epochs", epochs,
        "--out", work / f"{name}-tuned.lnet", "--quiet", cwd=work,
    )  # fmt: skip
    study = _study(work / f"{name}-tuned.optuna.db", f"{name}-{target}")
    default = test_metric(work / f"{name}-train.lnet", metric)
    tuned = test_metric(work / f"{name}-tuned.lnet", metric)
    return {
        "data": name, "target": target, "metric": metric,
        "default": default, "tuned": tuned,
        "better": tuned > default if higher else tuned < default,
        "trials": trials, "completed": study["COMPLETE"], "pruned": study["PRUNED"],
        "epochs_per_trial_max": epochs, "tune_wall_s": round(wall, 1),
        "tune_cpu_s": round(cpu, 1), "train_wall_s": round(t_wall, 1),
        "best": out.split("Best trial ")[1].splitlines()[0] if "Best trial " in out else "",
        "load_before": round(load, 1),
    }  # fmt: skip


def _study(db: Path, name: str) -> dict[str, int]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT t.state, COUNT(*) FROM trials t JOIN studies s USING (study_id) "
            "WHERE s.study_name = ? GROUP BY t.state",
            (name,),
        ).fetchall()
    finally:
        con.close()
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    counts.update(dict(rows))
    return counts


#: the workers' search space: every trial costs the same (fixed network, batch size and optimizer;
#: the learning rate, dropout and L2 barely change the work), and with --epochs 5 no
#: trial is pruned or stopped early (the pruner waits for 5 epochs; patience 10), so one and two
#: workers do the same work and differ only in how it is spread
EQUAL_TRIALS = (
    'patience = 10\n[search]\nbatch_size = 64\nlayers = 2\nunits = 64\noptimizer = "adam"\n'
)


def workers_run(data: Path, target: str, work: Path, n_workers: int, trials: int, epochs: int,
                tag: str) -> dict:  # fmt: skip
    """``n_workers`` processes on one new SQLite study until it has ``trials`` trials."""
    db = work / f"w-{tag}.db"
    url = f"sqlite:///{db}"
    config = work / "equal-trials.toml"
    config.write_text(EQUAL_TRIALS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "lucidnet", "tune", str(data), "--target", target,
            "--trials", str(trials), "--epochs", str(epochs), "--storage", url,
            "--study", tag, "--threads", "1", "--quiet", "--config", str(config)]  # fmt: skip
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, "--out", str(work / f"w-{tag}-{i}.lnet")],
            env=env,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(n_workers)
    ]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(err[-2000:])
    ran = [int(o.split("This worker ran ")[1].split()[0]) for o, _ in outs]
    counts = _study(db, tag)
    return {
        "workers": n_workers, "wall_s": round(wall, 2),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
        "trials_per_worker": ran, "finished": counts["COMPLETE"] + counts["PRUNED"],
        "load_before": round(load, 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "tabular")
    p.add_argument("--datasets", default="mpg,tips,planets", help="comma-separated")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--epochs", type=int, default=200, help="most per trial (train's default)")
    p.add_argument("--worker-data", default="diamonds")
    p.add_argument("--worker-trials", type=int, default=12)
    p.add_argument("--worker-epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--skip-workers", action="store_true")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "search": [], "workers": []}
    with tempfile.TemporaryDirectory(prefix="lucidnet-tune-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_search:
            for name in args.datasets.split(","):
                row = search_vs_defaults(name, args.data_dir, work, args.trials, args.epochs)
                print(json.dumps(row), flush=True)
                results["search"].append(row)
        if not args.skip_workers:
            file, target, _, _ = DATASETS[args.worker_data]
            for r in range(args.repeats):  # interleaved: 1, 2, 1, 2, ...
                for n in (1, 2):
                    row = workers_run(args.data_dir / file, target, work, n, args.worker_trials,
                                      args.worker_epochs, f"r{r}-n{n}")  # fmt: skip
                    print(json.dumps(row), flush=True)
                    results["workers"].append(row)
            walls = {n: [w["wall_s"] for w in results["workers"] if w["workers"] == n]
                     for n in (1, 2)}  # fmt: skip
            results["speedup_median"] = round(
                statistics.median(walls[1]) / statistics.median(walls[2]), 2
            )
            print("two workers: median speed-up", results["speedup_median"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
