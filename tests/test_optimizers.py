"""Tests for lucidnet.optimizers: each update rule against its formula written out by hand
(PyTorch's conventions, as documented) over several steps, convergence on a quadratic bowl and on
the Rosenbrock function, gradient clipping, and exact resumption from ``state_dict``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lucidnet as ln
from lucidnet import optimizers


class ParamVector(ln.Layer):
    """A layer that only holds a parameter vector ``w`` (identity forward), so that
    ``opt.step(model)`` can be driven with hand-made gradients."""

    def __init__(self, init, name: str | None = None) -> None:
        super().__init__(name)
        self.init = np.asarray(init, dtype=np.float64)

    def build(self, input_shape, rng, dtype):
        super().build(input_shape, rng, dtype)
        self._add_param("w", self.init.astype(dtype))

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy


def vector_model(init, dtype="float64") -> tuple[ln.Sequential, ParamVector]:
    layer = ParamVector(init)
    model = ln.Sequential([layer], dtype=dtype)
    model.build((1,))
    return model, layer


def apply_grad(model, layer, opt, g, path: str = "step") -> None:
    """Set the gradient to ``g`` and update through ``opt.step`` (the fast path) or
    ``opt.textbook_step``."""
    model.zero_grad()
    layer.grads["w"][...] = g
    getattr(opt, path)(model)


# -- the formulas, written out independently of the implementation ----------------------------
def reference_steps(kind: str, cfg: dict, p0: np.ndarray, grads: list[np.ndarray]) -> list:
    """Parameters after each step, computed by the textbook / torch.optim formulas."""
    p = p0.astype(np.float64).copy()
    lr, wd = cfg.get("lr", 0.01), cfg.get("weight_decay", 0.0)
    state = {
        "b": np.zeros_like(p),
        "s": np.zeros_like(p),
        "m": np.zeros_like(p),
        "v": np.zeros_like(p),
    }
    out = []
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64).copy()
        if cfg.get("clip_norm") is not None:
            norm = np.sqrt(np.sum(g * g))
            if norm > cfg["clip_norm"]:
                g = g * (cfg["clip_norm"] / norm)
        if cfg.get("clip_value") is not None:
            g = np.clip(g, -cfg["clip_value"], cfg["clip_value"])
        if wd and kind != "adamw":
            g = g + wd * p  # coupled L2 weight decay
        if kind == "sgd":
            mu = cfg.get("momentum", 0.0)
            if mu:
                state["b"] = mu * state["b"] + g
                step = g + mu * state["b"] if cfg.get("nesterov") else state["b"]
            else:
                step = g
            p = p - lr * step
        elif kind == "adagrad":
            eps = cfg.get("eps", 1e-10)
            state["s"] = state["s"] + g**2
            p = p - lr * g / (np.sqrt(state["s"]) + eps)
        elif kind == "rmsprop":
            rho, eps, mu = cfg.get("rho", 0.99), cfg.get("eps", 1e-8), cfg.get("momentum", 0.0)
            state["v"] = rho * state["v"] + (1 - rho) * g**2
            scaled = g / (np.sqrt(state["v"]) + eps)
            if mu:
                state["b"] = mu * state["b"] + scaled
                p = p - lr * state["b"]
            else:
                p = p - lr * scaled
        elif kind in ("adam", "adamw"):
            b1, b2 = cfg.get("beta1", 0.9), cfg.get("beta2", 0.999)
            eps = cfg.get("eps", 1e-8)
            if kind == "adamw":
                p = p * (1 - lr * cfg.get("weight_decay", 0.01))  # decoupled decay first
            state["m"] = b1 * state["m"] + (1 - b1) * g
            state["v"] = b2 * state["v"] + (1 - b2) * g**2
            m_hat = state["m"] / (1 - b1**t)  # bias correction
            v_hat = state["v"] / (1 - b2**t)
            p = p - lr * m_hat / (np.sqrt(v_hat) + eps)  # eps outside the square root
        else:
            raise KeyError(kind)
        out.append(p.copy())
    return out


CLASSES = {
    "sgd": ln.SGD,
    "adagrad": ln.AdaGrad,
    "rmsprop": ln.RMSprop,
    "adam": ln.Adam,
    "adamw": ln.AdamW,
}
FORMULA_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
    ("adagrad", {"lr": 0.5}),
    ("adagrad", {"lr": 0.5, "eps": 1e-3, "weight_decay": 0.2}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "rho": 0.9, "momentum": 0.9}),
    ("rmsprop", {"lr": 0.01, "eps": 1e-2, "weight_decay": 0.05}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.1, "beta1": 0.5, "beta2": 0.9, "eps": 1e-3}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"lr": 0.1, "weight_decay": 0.3}),
    ("sgd", {"lr": 0.1, "clip_norm": 1.0}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "clip_value": 0.5}),
    ("adam", {"lr": 0.01, "clip_norm": 0.5, "clip_value": 0.2}),
]


@pytest.mark.parametrize("path", ["step", "textbook_step"])
@pytest.mark.parametrize(
    "kind, cfg",
    FORMULA_CASES,
    ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in c.items())}" for k, c in FORMULA_CASES],
)
def test_update_matches_formula_over_several_steps(kind, cfg, path):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(5)
    # gradients of varying size and sign, so that clipping is active on some steps only
    grads = [rng.standard_normal(5) * s for s in (2.0, 0.3, 1.5, 0.05)]
    model, layer = vector_model(p0)
    opt = CLASSES[kind](**cfg)
    expected = reference_steps(kind, cfg, p0, grads)
    for t, (g, want) in enumerate(zip(grads, expected), start=1):
        apply_grad(model, layer, opt, g, path)
        assert opt.iterations == t
        np.testing.assert_allclose(
            layer.params["w"], want, rtol=1e-12, atol=1e-14, err_msg=f"step {t}"
        )


def test_adam_first_step_moves_every_parameter_by_lr():
    """With bias correction, Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g)."""
    model, layer = vector_model([0.0, 0.0, 0.0])
    opt = ln.Adam(lr=0.01)
    apply_grad(model, layer, opt, np.array([1e-3, -5.0, 200.0]))
    np.testing.assert_allclose(layer.params["w"], [-0.01, 0.01, -0.01], rtol=1e-4)


def test_bias_correction_at_t_1_2_3():
    """Constant gradient g: m_hat = g and v_hat = g^2 exactly at every t (no start-up bias)."""
    model, layer = vector_model([1.0])
    opt = ln.Adam(lr=0.1, eps=1e-300)
    positions = []
    for _ in range(3):
        apply_grad(model, layer, opt, np.array([0.5]))
        positions.append(layer.params["w"][0])
    np.testing.assert_allclose(positions, [0.9, 0.8, 0.7], rtol=1e-12)


def test_schedule_as_learning_rate_uses_step_minus_one():
    sched = ln.StepDecay(0.1, step_size=2, gamma=0.5)
    model, layer = vector_model([0.0])
    opt = ln.SGD(lr=sched)
    lrs = []
    for _ in range(5):
        lrs.append(opt.current_lr)
        apply_grad(model, layer, opt, np.array([1.0]))
        assert opt.last_step["lr"] == lrs[-1]
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert layer.params["w"][0] == pytest.approx(-sum(lrs), rel=1e-12)


def test_clip_norm_rescales_globally_across_layers_and_reports_norm():
    model = ln.Sequential([ln.Dense(2), ln.Dense(1)], dtype="float64")
    model.build((2,), seed=0)
    before = {k: v.copy() for k, v in model.get_weights().items()}
    model.zero_grad()
    _, g, _ = model.flat_parameters()
    g[:] = np.arange(1, g.size + 1)
    norm = np.linalg.norm(g)
    expected_g = g * (2.0 / norm)
    opt = ln.SGD(lr=1.0, clip_norm=2.0)
    opt.step(model)
    assert opt.last_step["grad_norm"] == pytest.approx(norm)
    np.testing.assert_allclose(model.flat_parameters()[1], expected_g)  # clipped in place
    for name, p, _ in model.parameters():
        assert not np.array_equal(p, before[name])
    assert np.linalg.norm(model.flat_parameters()[1]) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "opt", [ln.Adam(1e-2), ln.SGD(0.1, momentum=0.9), ln.Adam(1e-2, clip_value=0.5)], ids=repr
)
def test_last_step_reports_the_norm_of_the_gradients_the_update_used(opt):
    """Without clipping the norm is computed when read, from the gradients left in place; fit
    settles it at every epoch end and before per-batch callbacks, so what the gradients become
    afterwards (a callback's backward pass, zero_grad) does not change it."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    seen: list[tuple[float, float]] = []

    class Hook(ln.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            g = self.model.flat_parameters()[1]
            actual = float(np.linalg.norm(g))
            g[:] = 0.0  # a hook that changes the gradients before it reads last_step
            seen.append((opt.last_step["grad_norm"], actual))

    model = ln.Sequential([ln.Dense(5, activation="relu"), ln.Dense(3)], dtype="float64")
    model.fit(
        X,
        y,
        loss="cross_entropy",
        optimizer=opt,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[Hook()],
    )
    assert len(seen) == 8
    if opt.clip_value is None:  # the gradients the update used are still there
        for reported, actual in seen:
            assert reported == pytest.approx(actual, rel=1e-12) and actual > 0
    model.flat_parameters()[1][:] = 1.0  # after fit: settled at the epoch's end
    assert opt.last_step["grad_norm"] == pytest.approx(seen[-1][0], rel=1e-12)


def test_clip_norm_does_not_zero_huge_float32_gradients():
    """g . g overflows float32 for |g| ~ 1e20; the clipped step must still point along g."""
    model, layer = vector_model([1.0, 2.0], dtype="float32")
    opt = ln.SGD(lr=1.0, clip_norm=1.0)
    with np.errstate(over="raise"):
        apply_grad(model, layer, opt, np.array([3e20, 4e20]))
    np.testing.assert_allclose(layer.params["w"], [0.4, 1.2], rtol=1e-6)
    assert opt.last_step["grad_norm"] == pytest.approx(5e20, rel=1e-6)


def test_clip_value_clips_each_component():
    model, layer = vector_model([0.0, 0.0, 0.0])
    opt = ln.SGD(lr=1.0, clip_value=0.5)
    apply_grad(model, layer, opt, np.array([-3.0, 0.2, 0.7]))
    np.testing.assert_allclose(layer.params["w"], [0.5, -0.2, -0.5])


def test_float32_model_keeps_float32_parameters_and_slots():
    model, layer = vector_model([1.0, -1.0], dtype="float32")
    opt = ln.Adam(lr=0.1)
    apply_grad(model, layer, opt, np.array([0.5, 0.5], dtype=np.float32))
    assert layer.params["w"].dtype == np.float32
    assert all(s.dtype == np.float32 for s in opt.slots.values())


# -- convergence ------------------------------------------------------------------------------
A_BOWL = np.array([1.0, 10.0])  # condition number 10
C_BOWL = np.array([1.0, -2.0])


def bowl_grad(w):
    """Gradient of 0.5 * sum(a * (w - c)^2)."""
    return A_BOWL * (w - C_BOWL)


def rosenbrock_grad(w):
    """Gradient of (1 - x)^2 + 100 (y - x^2)^2, minimum at (1, 1)."""
    x, y = w
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def minimise(opt, grad, w0, steps):
    model, layer = vector_model(w0)
    for _ in range(steps):
        apply_grad(model, layer, opt, grad(layer.params["w"]))
    return layer.params["w"].copy()


BOWL_CASES = {
    "sgd": (lambda: ln.SGD(lr=0.1), 500),
    "momentum": (lambda: ln.SGD(lr=0.03, momentum=0.9), 500),
    "nesterov": (lambda: ln.SGD(lr=0.03, momentum=0.9, nesterov=True), 500),
    "adagrad": (lambda: ln.AdaGrad(lr=1.0), 500),
    "rmsprop": (lambda: ln.RMSprop(lr=0.03), 500),
    "rmsprop_momentum": (lambda: ln.RMSprop(lr=0.01, momentum=0.9), 500),
    "adam": (lambda: ln.Adam(lr=0.1), 500),
    "adamw": (lambda: ln.AdamW(lr=0.1, weight_decay=1e-4), 500),
}
ROSENBROCK_CASES = {
    "sgd": (lambda: ln.SGD(lr=1.5e-3), 20000),
    "momentum": (lambda: ln.SGD(lr=1e-3, momentum=0.9), 3000),
    "nesterov": (lambda: ln.SGD(lr=1e-3, momentum=0.9, nesterov=True), 3000),
    "adagrad": (lambda: ln.AdaGrad(lr=0.5), 10000),
    "rmsprop": (lambda: ln.RMSprop(lr=ln.CosineDecay(3e-3, decay_steps=5000)), 5000),
    "rmsprop_momentum": (lambda: ln.RMSprop(lr=3e-4, momentum=0.9), 3000),
    "adam": (lambda: ln.Adam(lr=0.02), 3000),
    "adamw": (lambda: ln.AdamW(lr=0.02, weight_decay=1e-5), 3000),
}


@pytest.mark.parametrize("name", list(BOWL_CASES))
def test_minimises_a_quadratic_bowl(name):
    make, steps = BOWL_CASES[name]
    w = minimise(make(), bowl_grad, [-3.0, 4.0], steps)
    np.testing.assert_allclose(w, C_BOWL, atol=1e-3)


@pytest.mark.parametrize("name", list(ROSENBROCK_CASES))
def test_minimises_the_rosenbrock_function(name):
    make, steps = ROSENBROCK_CASES[name]
    w = minimise(make(), rosenbrock_grad, [-1.2, 1.0], steps)
    np.testing.assert_allclose(w, [1.0, 1.0], atol=2e-2)


def test_every_registered_optimizer_is_covered_by_the_convergence_tests():
    covered = {type(make()).__name__ for make, _ in BOWL_CASES.values()}
    registered = {optimizers.OPTIMIZERS.lookup(n).__name__ for n in optimizers.OPTIMIZERS.names()}
    assert registered <= covered


# -- state_dict and exact resumption ----------------------------------------------------------
RESUME_CASES = {
    "sgd_momentum": lambda: ln.SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: ln.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda: ln.AdaGrad(lr=0.05),
    "rmsprop_momentum": lambda: ln.RMSprop(lr=0.01, momentum=0.5),
    "adam_schedule": lambda: ln.Adam(lr=ln.CosineDecay(0.01, decay_steps=10, warmup_steps=3)),
    "adamw": lambda: ln.AdamW(lr=0.01, weight_decay=0.1),
}


def _batches():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return [(X[i : i + 8], y[i : i + 8]) for i in range(0, 48, 8)]


def _net(seed=0):
    model = ln.Sequential([ln.Dense(8, activation="tanh"), ln.Dense(3)])
    model.build((4,), seed=seed)
    return model


def _train(model, opt, batches):
    loss = ln.CrossEntropy()
    for xb, yb in batches:
        logits = model.forward(xb, training=True)
        _, dlogits = loss(logits, yb)
        model.zero_grad()
        model.backward(dlogits)
        opt.step(model)


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), f"{k} differs"


@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_state_dict_round_trip_resumes_exactly(name, tmp_path):
    batches = _batches()
    make = RESUME_CASES[name]
    straight, opt_straight = _net(), make()
    _train(straight, opt_straight, batches)

    first, opt_first = _net(), make()
    _train(first, opt_first, batches[:4])
    state = opt_first.state_dict()
    assert state["iterations"] == 4 and state["class"] == type(opt_first).__name__

    # 1. a fresh optimizer (rebuilt from the state) and a differently initialised model
    resumed = _net(seed=123)
    resumed.set_weights(first.get_weights())
    opt = optimizers.from_state(state)
    opt.load_state_dict(state, resumed)
    assert opt.iterations == 4 and opt.current_lr == opt_first.current_lr
    _train(resumed, opt, batches[4:])
    _assert_same_weights(resumed, straight)

    # 2. through a model file (optimizer state saved with the model)
    first.optimizer = opt_first
    first.save(tmp_path / "ckpt.lnet")
    loaded = ln.load(tmp_path / "ckpt.lnet")
    _train(loaded, loaded.optimizer, batches[4:])
    _assert_same_weights(loaded, straight)

    # and continuing without the state does differ (the test can fail)
    fresh = _net(seed=123)
    fresh.set_weights(first.get_weights())
    _train(fresh, make(), batches[4:])
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(fresh.get_weights().values(), straight.get_weights().values())
    )


def test_fit_resumes_exactly_after_save_and_load(tmp_path, blobs):
    """fit for 2 epochs, save, load, fit 1 more == fit for 3 epochs (no shuffling: fit reseeds
    its shuffling from ``seed`` at every call, so only an unshuffled order can be resumed)."""
    X, y = blobs
    kwargs = dict(loss="cross_entropy", batch_size=32, shuffle=False, seed=0, verbose=0)

    def net():
        return ln.Sequential([ln.Dense(16, activation="relu"), ln.Dense(3)])

    straight = net()
    h3 = straight.fit(X, y, optimizer=ln.Adam(lr=0.01), epochs=3, **kwargs)
    part = net()
    part.fit(X, y, optimizer=ln.Adam(lr=0.01), epochs=2, **kwargs)
    part.save(tmp_path / "m.lnet")
    loaded = ln.load(tmp_path / "m.lnet")
    h1 = loaded.fit(X, y, epochs=1, **kwargs)  # continues with the loaded Adam state
    _assert_same_weights(loaded, straight)
    assert h1["loss"][0] == h3["loss"][2]


def test_load_state_dict_errors():
    model = _net()
    opt = ln.Adam()
    _train(model, opt, _batches()[:1])
    state = opt.state_dict()
    with pytest.raises(ValueError, match="Adam.*cannot load into SGD"):
        ln.SGD(momentum=0.9).load_state_dict(state, model)
    other = ln.Sequential([ln.Dense(5, activation="tanh"), ln.Dense(3)])
    other.build((4,), seed=0)
    with pytest.raises(ValueError, match="shape"):
        ln.Adam().load_state_dict(state, other)
    with pytest.raises(ValueError, match="unknown optimizer class"):
        optimizers.from_state({"class": "Lion", "config": {}})


def test_an_optimizer_refuses_a_second_model_with_other_parameters():
    opt = ln.Adam()
    _train(_net(), opt, _batches()[:1])
    other = ln.Sequential([ln.Dense(5), ln.Dense(3)])
    other.build((4,), seed=0)
    with pytest.raises(ValueError, match="different parameters"):
        _train(other, opt, _batches()[:1])


# -- construction -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ln.SGD, ln.AdaGrad, ln.RMSprop, ln.Adam, ln.AdamW])
def test_learning_rate_validation(cls):
    for bad in (0, -1, -0.5, math.inf, math.nan):
        with pytest.raises(ValueError, match="lr"):
            cls(lr=bad)
    for bad in ("0.1", True, None, [0.1]):
        with pytest.raises(TypeError, match="lr"):
            cls(lr=bad)
    assert cls(lr=1.5).current_lr == 1.5  # a large rate is legal, only unwise


def test_hyperparameter_validation_names_the_argument():
    with pytest.raises(ValueError, match="momentum"):
        ln.SGD(momentum=1.0)
    with pytest.raises(ValueError, match="nesterov"):
        ln.SGD(nesterov=True)
    with pytest.raises(ValueError, match="beta2"):
        ln.Adam(beta2=1.0)
    with pytest.raises(ValueError, match="clip_norm"):
        ln.Adam(clip_norm=0)
    with pytest.raises(ValueError, match="weight_decay"):
        ln.SGD(weight_decay=-0.1)
    with pytest.raises(TypeError, match="opt.step expects a lucidnet Sequential"):
        ln.SGD().step("model")


def test_get_and_config_round_trip():
    assert isinstance(optimizers.get("adam", lr=0.1), ln.Adam)
    nesterov = optimizers.get("nesterov", lr=0.1)
    assert isinstance(nesterov, ln.SGD) and nesterov.nesterov and nesterov.momentum == 0.9
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'.*sgd.*adam"):
        optimizers.get("lbfgs")
    with pytest.raises(TypeError, match="optimizer"):
        optimizers.get(3)
    opt = ln.AdamW(lr=ln.ExponentialDecay(0.01, 0.5, 100), weight_decay=0.02, clip_norm=1.0)
    clone = ln.AdamW.from_config(opt.get_config())
    assert clone.get_config() == opt.get_config()
    assert repr(clone) == repr(opt)


# -- subnormal flushing -------------------------------------------------------------------------
def _subnormal_count(a: np.ndarray) -> int:
    mag = np.abs(a)
    return int(np.count_nonzero((mag > 0) & (mag < np.finfo(a.dtype).tiny)))


@pytest.mark.parametrize(
    "kind, cfg, slots",
    [
        ("adam", {"lr": 0.01}, ("m", "v")),
        ("adamw", {"lr": 0.01}, ("m", "v")),
        ("sgd", {"lr": 0.01, "momentum": 0.9}, ("momentum",)),
        ("rmsprop", {"lr": 0.01, "rho": 0.9, "momentum": 0.5}, ("sq_avg", "momentum")),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", ["step", "textbook_step"])
def test_decaying_slots_never_become_subnormal(kind, cfg, slots, dtype, path):
    """A parameter whose gradient stays exactly 0 (a dead ReLU unit's weights) has its slots
    multiplied by beta every step; without flushing they reach the subnormal range, where x86
    arithmetic is 10-100x slower. The flush keeps them out of it and sets them to exact 0."""
    # float32: ~850 steps of 0.9 take 1e-3 below float32's smallest normal number (1.2e-38);
    # float64 needs ~6,700 steps
    steps = 1200 if dtype == "float32" else 7000
    model, layer = vector_model([0.5, -0.5, 0.25], dtype=dtype)
    opt = CLASSES[kind](**cfg)
    for t in range(steps):
        apply_grad(model, layer, opt, np.array([1e-3, 1.0, 0.0]) if t == 0 else 0.0, path)
        for name in slots:
            assert _subnormal_count(opt.slots[name]) == 0, (name, t)
    for name in slots:
        if CLASSES[kind](**cfg)._decays()[name] <= 0.9:
            assert np.all(opt.slots[name] == 0.0), name  # decayed away and flushed to exact 0
    assert np.all(np.isfinite(layer.params["w"]))


def test_flush_period_keeps_a_value_above_the_threshold_normal_until_the_next_flush():
    tiny32 = np.finfo(np.float32).tiny
    for beta in (0.0001, 0.5, 0.9, 0.99, 0.999, 0.9999):
        period = optimizers._flush_period(beta)
        assert period >= 1
        # the smallest value that survives a flush stays a normal number for `period` steps
        assert tiny32 * optimizers._FLUSH_MARGIN * beta**period >= tiny32
    assert optimizers._flush_period(0.9) > 100  # flushing costs ~3 passes every 100+ steps


@pytest.mark.parametrize("path", ["step", "textbook_step"])
def test_flushing_changes_adam_by_far_less_than_float32_rounding(path):
    """1,000 float32 Adam steps with a gradient that vanishes after step 1 (m decays into the
    subnormal range): the parameters equal the float64 formula, which never flushes."""
    p0, g0 = np.array([0.5, -0.5]), np.array([1e-3, 2.0])
    model, layer = vector_model(p0, dtype="float32")
    opt = ln.Adam(lr=0.01)
    grads = [g0] + [np.zeros(2)] * 999
    for g in grads:
        apply_grad(model, layer, opt, g, path)
    want = reference_steps("adam", {"lr": 0.01}, p0, grads)[-1]
    np.testing.assert_allclose(layer.params["w"], want, rtol=1e-6)
