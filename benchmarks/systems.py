"""The systems compared by ``benchmarks/run.py``: one trainer class per system, same interface.

Every trainer trains the same network (ReLU hidden layers, a linear output layer, softmax
cross-entropy on logits, Adam with PyTorch's defaults, zero biases) on the same float32 data with
the same batch size, reshuffling the samples every epoch. The peers draw He-normal initial weights
from one shared recipe (``he_normal`` with the seed's generator), so for a given seed they start
from the same weights; lucidnet uses its own default initialisation (He normal for the ReLU
layers, Glorot uniform for the linear output layer), and ``LucidnetPeerInit`` is lucidnet starting
from the peers' weights (used for the accuracy comparison, not timed):

* ``trainer = Cls(X, y, hidden, n_classes=..., batch_size=..., lr=..., seed=..., threads=...)``
* ``trainer.epoch() -> float``: one pass over the data; returns the epoch's mean training loss.
  Asynchronous systems (JAX) finish their work before returning, so wall time around the call is
  the epoch's time.
* ``trainer.accuracy(X, y) -> float``: accuracy of the current weights.

Peers whose package is missing raise ``ImportError`` from ``__init__``; ``run.py`` reports them as
skipped. Nothing here is timed: the caller times ``epoch()``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """He-normal initial weights (std sqrt(2 / fan_in)), float32, shape (fan_in, fan_out)."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def layer_sizes(n_features: int, hidden: tuple[int, ...], n_classes: int) -> list[tuple[int, int]]:
    """[(fan_in, fan_out)] of every Dense layer of the benchmarked MLP."""
    sizes = [n_features, *hidden, n_classes]
    return list(zip(sizes[:-1], sizes[1:]))


class Trainer:
    """Common constructor arguments; subclasses implement ``epoch`` and ``predict_classes``."""

    name = "?"
    #: a short description of how the system is driven (printed under the table).
    how = ""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        hidden: tuple[int, ...],
        *,
        n_classes: int,
        batch_size: int,
        lr: float,
        seed: int,
        threads: int,
    ) -> None:
        self.X, self.y = X, y
        self.hidden, self.n_classes = tuple(hidden), int(n_classes)
        self.batch_size, self.lr, self.seed, self.threads = int(batch_size), lr, seed, threads
        self.rng = np.random.default_rng(seed)
        self.sizes = layer_sizes(X.shape[1], self.hidden, self.n_classes)

    def epoch(self) -> float:
        raise NotImplementedError

    def predict_classes(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict_classes(X) == y))


# -- lucidnet ------------------------------------------------------------------------------------
class LucidnetFit(Trainer):
    """lucidnet's public API: ``model.fit(X, y, epochs=1, ...)`` per epoch, continuing with the
    same Adam instance. ``inner_seconds`` is the epoch's time measured inside ``fit`` (from
    ``on_epoch_begin`` to ``on_epoch_end``); the call itself also validates the data."""

    name = "lucidnet"
    how = "Sequential.fit(X, y, epochs=1) per epoch (same Adam instance)"
    #: start from the peers' He-normal weights instead of lucidnet's default initialisation
    peer_init = False
    #: ``fit(threads=...)``: "auto" (lucidnet's default) or a fixed count (contention row)
    fit_threads: int | str = "auto"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import lucidnet as ln

        self._ln = ln
        layers = [ln.Dense(h, activation="relu") for h in self.hidden] + [ln.Dense(self.n_classes)]
        self.model = ln.Sequential(layers)
        self.model.build((self.X.shape[1],), seed=self.seed)
        if self.peer_init:
            for layer, (fan_in, fan_out) in zip(self.model.layers, self.sizes):
                layer.params["W"][...] = he_normal(self.rng, fan_in, fan_out)
        self.optimizer = ln.Adam(lr=self.lr)
        self._calls = 0

        class _EpochTimer(ln.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs):
                self.seconds = time.perf_counter() - self.t0

        self._timer = _EpochTimer()
        self.inner_seconds = float("nan")

    def epoch(self) -> float:
        self._calls += 1
        history = self.model.fit(
            self.X,
            self.y,
            loss="cross_entropy",
            optimizer=self.optimizer,
            epochs=1,
            batch_size=self.batch_size,
            seed=self.seed * 100_003 + self._calls,  # a new shuffle every epoch
            verbose=0,
            callbacks=[self._timer],
            threads=self.fit_threads,
        )
        self.inner_seconds = self._timer.seconds
        self.thread_record = history.params.get("threads", {})
        return float(history.history["loss"][-1])

    def predict_classes(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_classes(X)


def lucidnet_with_threads(setting: int | str) -> type[LucidnetFit]:
    """``LucidnetFit`` with ``fit(threads=setting)``, named after the setting."""
    return type(
        f"LucidnetThreads{setting}",
        (LucidnetFit,),
        {"fit_threads": setting, "name": f"lucidnet threads={setting}"},
    )


class LucidnetPeerInit(LucidnetFit):
    """lucidnet from the same initial weights as the peers: with equal starting points, the
    accuracies of one seed differ only by floating-point rounding and the shuffling order."""

    name = "lucidnet (peers' init)"
    peer_init = True


# -- plain NumPy ---------------------------------------------------------------------------------
class PlainNumpy(Trainer):
    """The MLP written plainly in NumPy, as a tutorial would: forward, softmax cross-entropy,
    backward and Adam per array, new arrays for every intermediate result."""

    name = "plain NumPy"
    how = "hand-written NumPy loop (no buffer reuse)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.W = [he_normal(self.rng, i, o) for i, o in self.sizes]
        self.b = [np.zeros(o, np.float32) for _, o in self.sizes]
        params = self.W + self.b
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def epoch(self) -> float:
        X, y, bs = self.X, self.y, self.batch_size
        n = X.shape[0]
        order = self.rng.permutation(n)
        total = 0.0
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            x, t = X[idx], y[idx]
            # forward
            acts = [x]
            for W, b in zip(self.W[:-1], self.b[:-1]):
                acts.append(np.maximum(acts[-1] @ W + b, 0))
            logits = acts[-1] @ self.W[-1] + self.b[-1]
            # softmax cross-entropy
            shifted = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            s = e.sum(axis=1, keepdims=True)
            rows = np.arange(len(idx))
            total += float(np.sum(np.log(s[:, 0]) - shifted[rows, t]))
            d = e / s
            d[rows, t] -= 1
            d /= len(idx)
            # backward
            gW, gb = [None] * len(self.W), [None] * len(self.b)
            for i in range(len(self.W) - 1, -1, -1):
                gW[i] = acts[i].T @ d
                gb[i] = d.sum(axis=0)
                if i:
                    d = (d @ self.W[i].T) * (acts[i] > 0)
            # Adam (PyTorch's form)
            self.t += 1
            bc1, bc2 = 1 - 0.9**self.t, 1 - 0.999**self.t
            for p, g, m, v in zip(self.W + self.b, gW + gb, self.m, self.v):
                m[...] = 0.9 * m + 0.1 * g
                v[...] = 0.999 * v + 0.001 * g * g
                p -= (self.lr / bc1) * m / (np.sqrt(v) / bc2**0.5 + 1e-8)
        return total / n

    def predict_classes(self, X: np.ndarray) -> np.ndarray:
        h = X
        for W, b in zip(self.W[:-1], self.b[:-1]):
            h = np.maximum(h @ W + b, 0)
        return (h @ self.W[-1] + self.b[-1]).argmax(axis=1)


# -- PyTorch -------------------------------------------------------------------------------------
class TorchEager(Trainer):
    """PyTorch eager mode with the usual loop: index the tensors with a random permutation,
    ``zero_grad`` / forward / ``CrossEntropyLoss`` / ``backward`` / ``Adam.step``."""

    name = "PyTorch eager"
    how = "usual torch loop, torch.set_num_threads(cores)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import torch

        self.torch = torch
        torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        layers: list[Any] = []
        for i, (fan_in, fan_out) in enumerate(self.sizes):
            lin = torch.nn.Linear(fan_in, fan_out)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(he_normal(self.rng, fan_in, fan_out).T.copy()))
                lin.bias.zero_()
            layers.append(lin)
            if i < len(self.sizes) - 1:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.Xt = torch.from_numpy(self.X)
        self.yt = torch.from_numpy(self.y.astype(np.int64))
        self.gen = torch.Generator().manual_seed(self.seed)

    def epoch(self) -> float:
        torch = self.torch
        n, bs = self.Xt.shape[0], self.batch_size
        perm = torch.randperm(n, generator=self.gen)
        total = 0.0
        self.model.train()
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            xb, yb = self.Xt[idx], self.yt[idx]
            self.opt.zero_grad()
            loss = self.loss_fn(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(idx)
        return total / n

    def predict_classes(self, X: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(X)).argmax(dim=1).numpy()


class TorchEagerFTZ(TorchEager):
    """The same loop with ``torch.set_flush_denormal(True)`` during each epoch: the CPU then
    treats subnormal numbers as 0, as JAX / XLA always do. Not what the usual loop does, but it
    shows how much of PyTorch's time goes to subnormal arithmetic (Adam's moments of weights
    whose gradient stays 0 decay into that range; Intel CPUs are slow on them). The mode is
    switched off again after the epoch, so the other systems, interleaved in the same process,
    are unaffected. It is set for the calling thread, where PyTorch runs its Adam step."""

    name = "PyTorch eager FTZ"
    how = "the same loop inside torch.set_flush_denormal(True)"

    def epoch(self) -> float:
        self.torch.set_flush_denormal(True)
        try:
            return super().epoch()
        finally:
            self.torch.set_flush_denormal(False)


# -- scikit-learn --------------------------------------------------------------------------------
class SklearnMLP(Trainer):
    """scikit-learn's ``MLPClassifier`` (solver adam, alpha=0, float32 input), one
    ``partial_fit`` per epoch (one shuffled pass over the data)."""

    name = "scikit-learn"
    how = "MLPClassifier(solver='adam', alpha=0).partial_fit per epoch, float32 X"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from sklearn.neural_network import MLPClassifier

        self.clf = MLPClassifier(
            hidden_layer_sizes=self.hidden,
            activation="relu",
            solver="adam",
            alpha=0.0,
            batch_size=self.batch_size,
            learning_rate_init=self.lr,
            shuffle=True,
            random_state=self.seed,
        )
        self.classes = np.arange(self.n_classes)

    def epoch(self) -> float:
        self.clf.partial_fit(self.X, self.y, classes=self.classes)
        return float(self.clf.loss_)

    def predict_classes(self, X: np.ndarray) -> np.ndarray:
        return self.clf.predict(X)


# -- JAX -----------------------------------------------------------------------------------------
def _import_jax():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    return jax, jnp


class JaxJit(Trainer):
    """JAX: one ``jax.jit``-compiled training step (gather, forward, loss, gradient, Adam) called
    from a Python loop over the mini-batches."""

    name = "JAX jit step"
    how = "jax.jit(train_step) called per mini-batch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jax, jnp = _import_jax()
        self.jax, self.jnp = jax, jnp
        params = [
            (jnp.asarray(he_normal(self.rng, i, o)), jnp.zeros(o, jnp.float32))
            for i, o in self.sizes
        ]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.state = (params, zeros, zeros, jnp.zeros((), jnp.float32))
        self.Xd, self.yd = jnp.asarray(self.X), jnp.asarray(self.y.astype(np.int32))
        lr = self.lr

        def forward(params, x):
            for W, b in params[:-1]:
                x = jax.nn.relu(x @ W + b)
            W, b = params[-1]
            return x @ W + b

        def loss_fn(params, x, t):
            logits = forward(params, x)
            picked = jnp.take_along_axis(logits, t[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

        def step(state, X, y, idx):
            params, m, v, t = state
            loss, grads = jax.value_and_grad(loss_fn)(params, X[idx], y[idx])
            t = t + 1
            m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
            v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
            bc1, bc2 = 1 - 0.9**t, 1 - 0.999**t
            params = jax.tree_util.tree_map(
                lambda p, m, v: p - (lr / bc1) * m / (jnp.sqrt(v) / jnp.sqrt(bc2) + 1e-8),
                params,
                m,
                v,
            )
            return (params, m, v, t), loss

        self._forward = jax.jit(forward)
        self._step_py = step
        self._step = jax.jit(step)

    def _batches(self) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's shuffled indices as full batches (steps, bs) plus the remainder."""
        n, bs = self.X.shape[0], self.batch_size
        order = self.rng.permutation(n).astype(np.int32)
        full = (n // bs) * bs
        return order[:full].reshape(-1, bs), order[full:]

    def epoch(self) -> float:
        full, rest = self._batches()
        losses = []
        for idx in full:
            self.state, loss = self._step(self.state, self.Xd, self.yd, idx)
            losses.append(loss)
        total = float(self.jnp.sum(self.jnp.stack(losses))) * full.shape[1]
        if rest.size:
            self.state, loss = self._step(self.state, self.Xd, self.yd, rest)
            total += float(loss) * rest.size
        return total / self.X.shape[0]

    def predict_classes(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(self.state[0], self.jnp.asarray(X))).argmax(axis=1)


class JaxScan(JaxJit):
    """JAX: the whole epoch's full mini-batches in one compiled ``lax.scan`` (the remainder
    batch, if any, with the jitted step)."""

    name = "JAX lax.scan"
    how = "jax.jit(lax.scan(train_step)) per epoch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jax = self.jax
        step = self._step_py

        def run_epoch(state, X, y, batches):
            return jax.lax.scan(lambda s, idx: step(s, X, y, idx), state, batches)

        self._epoch = jax.jit(run_epoch)

    def epoch(self) -> float:
        full, rest = self._batches()
        self.state, losses = self._epoch(self.state, self.Xd, self.yd, full)
        total = float(self.jnp.sum(losses)) * full.shape[1]
        if rest.size:
            self.state, loss = self._step(self.state, self.Xd, self.yd, rest)
            total += float(loss) * rest.size
        return total / self.X.shape[0]


#: name used on the command line -> trainer class, in the order of the tables.
SYSTEMS: dict[str, type[Trainer]] = {
    "lucidnet": LucidnetFit,
    "numpy": PlainNumpy,
    "torch": TorchEager,
    "torch-ftz": TorchEagerFTZ,
    "sklearn": SklearnMLP,
    "jax-jit": JaxJit,
    "jax-scan": JaxScan,
}
