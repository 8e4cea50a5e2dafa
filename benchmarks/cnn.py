"""Convolutional training speed: a LeNet-shaped network in lucidnet against the same PyTorch
``Conv2d`` model, on the same data, in the same run (issue 16's goal: at most 1.5x PyTorch's
epoch time).

The network, on 28 x 28 x 1 inputs: Conv 6@5x5 ReLU, max-pool 2, Conv 16@5x5 ReLU, max-pool 2,
Dense 120 ReLU, 84 ReLU, 10; softmax cross-entropy, Adam(1e-3), batch 128, reshuffled every
epoch. Data: the MNIST t10k images when ``/work/shared/data/mnist-t10k`` (or ``--data``) has
them, scaled to [0, 1]; otherwise random images with learnable synthetic labels (the speed does
not depend on the pixel values).

Run from the repository root with an interpreter that has torch::

    /work/main/.venv-bench/bin/python benchmarks/cnn.py [--repeats 5] [--threads 2]

Each system runs one warm-up epoch, then ``repeats`` timed epochs interleaved (lucidnet,
torch, torch, lucidnet, ...) so that the machine's varying load affects both alike. The
comparison is of steady-state epochs: lucidnet's warm-up epoch runs with its compiled kernels
switched on from the first step (``kernels.set_mode("1")``: numba loaded, the kernels compiled
or read from numba's disk cache, as PyTorch's warm-up starts its threads), and the timed epochs
in the default ``auto`` mode, which runs kernels compiled in the process. (In a fresh process
``auto`` first lets NumPy do about a second of the kernels' work, the ski-rental rule of
``lucidnet.kernels``: a LeNet ``fit`` on 10,000 images switches during its third epoch.) lucidnet's
epoch is the wall time of ``model.fit(..., epochs=1)``, PyTorch's the usual loop (randperm,
zero_grad, forward, loss, backward, step). Reported: median, min and max per system, the ratio
of the medians (wall time, and the process's CPU time, which a loaded machine distorts less),
the CPU, the BLAS and its threads (threadpoolctl).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lucidnet as ln  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"  # ../shared


def load_images(data: Path | None, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` images (n, 28, 28, 1) float32 in [0, 1], integer labels, and where they came from."""
    folder = data if data is not None else DEFAULT_DATA
    images, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        X = ln.datasets.load_idx(images)[:n].astype(np.float32) / 255.0
        y = ln.datasets.load_idx(labels)[:n].astype(np.int64)
        return X[..., None], y, f"MNIST t10k ({images.parent}), first {len(y):,} images"
    rng = np.random.default_rng(seed)
    X = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = (X[:, :14, :14, 0].mean(axis=(1, 2)) * 10 % 10).astype(np.int64)
    return X, y, f"{n:,} random 28x28 images (MNIST not found at {folder})"


def lucidnet_model() -> ln.Sequential:
    return ln.Sequential(
        [
            ln.Conv2D(6, 5, activation="relu"),
            ln.MaxPool2D(2),
            ln.Conv2D(16, 5, activation="relu"),
            ln.MaxPool2D(2),
            ln.Flatten(),
            ln.Dense(120, activation="relu"),
            ln.Dense(84, activation="relu"),
            ln.Dense(10),
        ]
    )


class LucidnetCNN:
    name = "lucidnet"

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int, threads: int) -> None:
        self.X, self.y, self.batch_size, self.threads = X, y, batch_size, threads
        self.model = lucidnet_model()
        self.optimizer = ln.Adam(lr=1e-3)
        self.calls = 0

    def warm_up(self) -> float:
        """One epoch with the compiled kernels on from the first step (module notes)."""
        previous = ln.kernels.set_mode("1")
        try:
            return self.epoch()
        finally:
            ln.kernels.set_mode(previous)

    def epoch(self) -> float:
        self.calls += 1
        history = self.model.fit(
            self.X,
            self.y,
            loss="cross_entropy",
            optimizer=self.optimizer,
            epochs=1,
            batch_size=self.batch_size,
            seed=self.calls,
            verbose=0,
            threads=self.threads,
        )
        return float(history.history["loss"][-1])

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.model.predict_classes(X) == y))


class TorchCNN:
    name = "PyTorch"

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int, threads: int) -> None:
        import torch

        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Conv2d(1, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss_fn = nn.CrossEntropyLoss()
        # channels-first, PyTorch's native layout (a copy made once, outside the timing)
        self.Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))
        self.yt = torch.from_numpy(y)
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(0)

    def warm_up(self) -> float:
        return self.epoch()

    def epoch(self) -> float:
        torch, n, total = self.torch, self.Xt.shape[0], 0.0
        perm = torch.randperm(n, generator=self.gen)
        for start in range(0, n, self.batch_size):
            idx = perm[start : start + self.batch_size]
            xb, yb = self.Xt[idx], self.yt[idx]
            self.opt.zero_grad()
            loss = self.loss_fn(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += float(loss.detach()) * len(idx)
        return total / n

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        with self.torch.no_grad():
            xt = self.torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))
            return float(np.mean(self.model(xt).argmax(dim=1).numpy() == y))


def _context(threads: int) -> str:
    from benchmarks.machine import thread_context

    kernels = ", ".join(sorted(ln.kernels._State.compiled)) or "none"
    return (
        f"{thread_context()}; fit(threads={threads}), torch.set_num_threads({threads}); "
        f"lucidnet kernels compiled in this process: {kernels} (mode {ln.kernels.mode()})"
    )


def run_cnn_benchmark(
    n: int = 10_000,
    repeats: int = 5,
    batch_size: int = 128,
    threads: int | None = None,
    data: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Time LeNet epochs of lucidnet and PyTorch, interleaved; return the numbers.

    Args:
        n: training images (the first ``n`` of MNIST t10k, or random ones).
        repeats: timed epochs per system (after one warm-up epoch each).
        batch_size: mini-batch size of both.
        threads: BLAS / intra-op threads of both (``None``: the usable cores).
        data: folder with the t10k IDX files (default ``/work/shared/data/mnist-t10k``).

    Returns:
        ``{"data", "threads", "context", "seconds": {system: [epoch times]}, "median":
        {system: s}, "ratio": lucidnet median / PyTorch median, "cpu_seconds" / "cpu_median" /
        "cpu_ratio": the same for the process's CPU time (on a loaded machine the wall time
        also counts waiting for a core; the CPU time does not, but it counts threads that
        spin while they wait), "accuracy": {system: training accuracy after the run},
        "final_loss": {system: loss}}``. Without torch, only lucidnet's numbers and the ratios
        ``None``.
    """
    from benchmarks.machine import cores

    threads = threads or cores()
    X, y, source = load_images(Path(data) if data is not None else None, n)
    systems: list[Any] = [LucidnetCNN(X, y, batch_size, threads)]
    try:
        systems.append(TorchCNN(X, y, batch_size, threads))
    except ImportError:
        pass
    losses = {s.name: s.warm_up() for s in systems}  # threads, workspaces, kernels, caches
    seconds: dict[str, list[float]] = {s.name: [] for s in systems}
    cpu: dict[str, list[float]] = {s.name: [] for s in systems}
    for r in range(repeats):
        for s in systems if r % 2 == 0 else systems[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            losses[s.name] = s.epoch()
            seconds[s.name].append(time.perf_counter() - t0)
            cpu[s.name].append(time.process_time() - c0)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    cpu_median = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "data": source,
        "threads": threads,
        "context": _context(threads),
        "seconds": seconds,
        "median": median,
        "ratio": median["lucidnet"] / median["PyTorch"] if "PyTorch" in median else None,
        "cpu_seconds": cpu,
        "cpu_median": cpu_median,
        "cpu_ratio": (
            cpu_median["lucidnet"] / cpu_median["PyTorch"] if "PyTorch" in cpu_median else None
        ),
        "accuracy": {s.name: s.accuracy(X, y) for s in systems},
        "final_loss": losses,
    }


def format_result(result: dict[str, Any]) -> str:
    lines = [f"LeNet-5 on {result['data']}, batch 128, Adam, {result['threads']} threads"]
    for name, times in result["seconds"].items():
        lines.append(
            f"  {name:9s} epoch median {result['median'][name]:.3f} s (min {min(times):.3f}, "
            f"max {max(times):.3f}; {len(times)} epochs; CPU time median "
            f"{result['cpu_median'][name]:.3f} s), train accuracy "
            f"{result['accuracy'][name]:.3f}, last loss {result['final_loss'][name]:.4f}"
        )
    if result["ratio"] is not None:
        lines.append(
            f"  ratio lucidnet / PyTorch (medians): wall time {result['ratio']:.2f}x, "
            f"CPU time {result['cpu_ratio']:.2f}x"
        )
    else:
        lines.append("  PyTorch not installed: no ratio")
    lines.append("  " + result["context"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="training images")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per system")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="default: usable cores")
    parser.add_argument("--data", default=None, help="folder with the t10k IDX files")
    args = parser.parse_args(argv)
    result = run_cnn_benchmark(args.n, args.repeats, args.batch_size, args.threads, args.data)
    print(format_result(result))


if __name__ == "__main__":
    main()
