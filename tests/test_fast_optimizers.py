"""The fast path of every optimizer (``opt.step``: flat buffers, folded algebra, what ``fit``
runs) against its textbook path (``opt.textbook_step``: ``update`` per parameter array, as the
docstring's formulas, itself checked against hand-written formulas in test_optimizers.py): two
identical models driven by the same random gradients keep the same parameters and slots, for
every registered optimizer with every option, over 25 steps and over 1,000 float32 steps in which
slots decay and get flushed.

Each runs on both fast paths (the ``jit`` fixture, tests/_jit.py): NumPy's ``_fast_update`` and
the compiled kernels (``_kernel_update``, lucidnet/kernels.py). The kernels of SGD, AdaGrad and
RMSprop do the textbook's operations in its order and must give the same bits; Adam's folds the
bias corrections and agrees to rounding."""

from __future__ import annotations

import _jit
import numpy as np
import pytest

import lucidnet as ln
from lucidnet.optimizers import OPTIMIZERS

jit_fixture = _jit.JIT  # the jit and calls fixtures (tests/_jit.py)
calls_fixture = _jit.CALLS


def schedule():
    return ln.CosineDecay(0.05, decay_steps=15, warmup_steps=3)


#: every option of every registered optimizer, and the options all of them share.
OWN_OPTIONS = {
    ln.SGD: [
        {"lr": 0.05},
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    ],
    ln.AdaGrad: [{"lr": 0.1}, {"lr": 0.1, "eps": 1e-3}],
    ln.RMSprop: [
        {"lr": 0.01},
        {"lr": 0.01, "rho": 0.9, "momentum": 0.9},
        {"lr": 0.01, "eps": 1e-2},
    ],
    ln.Adam: [{"lr": 0.01}, {"lr": 0.05, "beta1": 0.5, "beta2": 0.9, "eps": 1e-3}],
    ln.AdamW: [{"lr": 0.01}, {"lr": 0.05, "weight_decay": 0.3}],
}
SHARED_OPTIONS = {
    "plain": {},
    "weight_decay": {"weight_decay": 0.05},
    "clip_norm": {"clip_norm": 1.0},
    "clip_value": {"clip_value": 0.3},
    "schedule": {"lr": "schedule"},
    "all": {"weight_decay": 0.01, "clip_norm": 2.0, "clip_value": 0.5, "lr": "schedule"},
}


def _cases():
    for cls, variants in OWN_OPTIONS.items():
        for i, own in enumerate(variants):
            for shared_name, shared in SHARED_OPTIONS.items():
                cfg = {**own, **shared}
                label = "-".join(f"{k}={v}" for k, v in own.items() if k != "lr") or "default"
                yield pytest.param(cls, cfg, id=f"{cls.__name__}-{label}-{shared_name}-{i}")


CASES = list(_cases())


def make(cls, cfg):
    cfg = dict(cfg)
    if cfg.get("lr") == "schedule":
        cfg["lr"] = schedule()
    return cls(**cfg)


def test_every_registered_optimizer_is_covered():
    registered = {OPTIMIZERS.lookup(name) for name in OPTIMIZERS.names()}
    assert registered == set(OWN_OPTIONS)


def twin_models(dtype):
    """Two identical models with several parameter arrays (the flat buffer has gaps)."""
    models = []
    for _ in range(2):
        model = ln.Sequential([ln.Dense(7, activation="tanh"), ln.Dense(3)], dtype=dtype)
        model.build((5,), seed=0)
        models.append(model)
    return models


def set_grads(model, grads):
    for (_, _, g), new in zip(model.parameters(), grads):
        g[...] = new


def random_grads(model, rng, dtype, step):
    """Gradients of varying size (clipping active on some steps only), with exact zeros."""
    scale = 10.0 ** rng.uniform(-3, 1)
    grads = []
    for _, p, _ in model.parameters():
        g = (rng.standard_normal(p.shape) * scale).astype(dtype)
        g[rng.random(p.shape) < 0.2] = 0.0
        grads.append(g)
    if step % 7 == 3:
        grads[-1][...] = 0.0  # a whole array without gradient
    return grads


def assert_same_state(fast_model, fast_opt, text_model, text_opt, tol, what):
    assert text_opt.iterations == fast_opt.iterations
    assert text_opt.last_step == pytest.approx(fast_opt.last_step, rel=tol)
    for (name, pf, _), (_, pt, _) in zip(fast_model.parameters(), text_model.parameters()):
        np.testing.assert_allclose(pt, pf, rtol=tol, atol=tol, err_msg=f"{what}: {name}")
    assert text_opt.slots.keys() == fast_opt.slots.keys() == set(fast_opt.slot_names)
    for slot in fast_opt.slots:
        sf, st = fast_opt.slots[slot], text_opt.slots[slot]
        np.testing.assert_allclose(
            st, sf, rtol=tol, atol=tol * max(np.abs(sf).max(), 1e-30), err_msg=f"{what}: {slot}"
        )


#: optimizers whose kernel does the textbook's float operations in the textbook's order.
EXACT_KERNELS = (ln.SGD, ln.AdaGrad, ln.RMSprop)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cls, cfg", CASES)
def test_textbook_step_equals_step_over_25_steps(cls, cfg, dtype, jit, calls):
    fast_model, text_model = twin_models(dtype)
    fast_opt, text_opt = make(cls, cfg), make(cls, cfg)
    rng = np.random.default_rng(0)
    tol = 2e-6 if dtype == "float32" else 1e-12
    for step in range(25):
        grads = random_grads(fast_model, rng, np.dtype(dtype), step)
        set_grads(fast_model, grads)
        set_grads(text_model, grads)
        fast_opt.step(fast_model)
        text_opt.textbook_step(text_model)
        assert_same_state(fast_model, fast_opt, text_model, text_opt, tol, f"step {step + 1}")
        if jit == "kernels" and cls in EXACT_KERNELS:
            assert_identical(fast_model, fast_opt, text_model, text_opt, f"step {step + 1}")
        # both clip (and add coupled decay to) the model's gradients in place, alike
        for (_, _, gf), (_, _, gt) in zip(fast_model.parameters(), text_model.parameters()):
            np.testing.assert_allclose(gt, gf, rtol=tol, atol=tol)
    assert fast_opt.iterations == 25
    # the path under test really ran: every step through the kernel, or none
    assert len(calls) == (25 if jit == "kernels" else 0)
    # the state moved: parameters and every slot changed from their start
    start, _ = twin_models(dtype)
    for (_, p, _), (_, p0, _) in zip(fast_model.parameters(), start.parameters()):
        assert not np.allclose(p, p0)
    for slot in fast_opt.slots.values():
        assert np.any(slot != 0)


def assert_identical(fast_model, fast_opt, text_model, text_opt, what):
    """The same bits in parameters, gradients and slots."""
    for (name, pf, gf), (_, pt, gt) in zip(fast_model.parameters(), text_model.parameters()):
        np.testing.assert_array_equal(pf, pt, err_msg=f"{what}: {name}")
        np.testing.assert_array_equal(gf, gt, err_msg=f"{what}: gradient of {name}")
    for slot in fast_opt.slots:
        np.testing.assert_array_equal(fast_opt.slots[slot], text_opt.slots[slot], err_msg=slot)


#: the long run with NumPy's fast path on every option; with the kernels, whose flush works
#: differently (in the loop, every step), without the shared options (kept short: the kernels'
#: handling of those is checked step by step above)
LONG_CASES = [
    pytest.param(*c.values, mode, id=f"{mode}-{c.id}")
    for c in CASES
    for mode in ("numpy", "kernels")
    if "-plain-" in c.id or ("-all-" in c.id and mode == "numpy")
]


@pytest.mark.parametrize("cls, cfg, jit", LONG_CASES, indirect=["jit"])
def test_a_long_float32_run_with_vanishing_gradients_still_agrees(cls, cfg, jit):
    """1,000 float32 steps; a third of the entries lose their gradient for good after 100
    steps (dead units), so their decaying slots reach the flush threshold and are flushed."""
    fast_model, text_model = twin_models("float32")
    fast_opt, text_opt = make(cls, cfg), make(cls, cfg)
    rng = np.random.default_rng(1)
    dead = [rng.random(p.shape) < 0.35 for _, p, _ in fast_model.parameters()]
    for step in range(1000):
        grads = random_grads(fast_model, rng, np.float32, step)
        for g, mask in zip(grads, dead):
            g *= 0.01  # small steps: the parameters stay in a bounded range
            if step >= 100:
                g[mask] = 0.0
        set_grads(fast_model, grads)
        set_grads(text_model, grads)
        fast_opt.step(fast_model)
        text_opt.textbook_step(text_model)
    assert_same_state(fast_model, fast_opt, text_model, text_opt, 1e-5, "after 1000 steps")
    if fast_opt.weight_decay and fast_opt.coupled_decay:
        return  # coupled decay gives the dead entries a gradient (wd * p): nothing decays away
    for name, factor in fast_opt._decays().items():
        if name in fast_opt.slots and 0 < factor <= 0.9:
            # decayed from ~1e-3 by 0.9**900 ~ 1e-41: flushed to exactly 0 on both paths
            for opt in (fast_opt, text_opt):
                flat = np.concatenate([s.ravel() for s in _slot_arrays(opt, name, dead)])
                assert np.all(flat == 0.0), (type(opt).__name__, name)


def _slot_arrays(opt, slot, masks):
    """The entries of ``slot`` whose gradient died, per parameter array."""
    return [
        opt.slots[slot][off : off + size].reshape(shape)[mask]
        for (_, off, size, shape), mask in zip(opt._layout, masks)
    ]


@pytest.mark.parametrize("cls, cfg", [c for c in CASES if "-all-" in c.id])
def test_the_two_paths_share_one_state(cls, cfg, jit):
    """Alternating textbook_step and step on one model is the same as step alone: both read and
    advance the same slots (so explain on a mid-training optimizer shows its real state)."""
    fast_model, mixed_model = twin_models("float64")
    fast_opt, mixed_opt = make(cls, cfg), make(cls, cfg)
    rng = np.random.default_rng(2)
    for step in range(12):
        grads = random_grads(fast_model, rng, np.float64, step)
        set_grads(fast_model, grads)
        set_grads(mixed_model, grads)
        fast_opt.step(fast_model)
        (mixed_opt.textbook_step if step % 2 else mixed_opt.step)(mixed_model)
    assert_same_state(fast_model, fast_opt, mixed_model, mixed_opt, 1e-12, "mixed")


def test_textbook_step_checks_its_argument_and_the_model():
    with pytest.raises(TypeError, match="opt.textbook_step expects a lucidnet Sequential"):
        ln.Adam().textbook_step("model")
    model, _ = twin_models("float64")
    opt = ln.Adam()
    opt.textbook_step(model)
    other = ln.Sequential([ln.Dense(4), ln.Dense(3)], dtype="float64")
    other.build((5,), seed=0)
    with pytest.raises(ValueError, match="different parameters"):
        opt.textbook_step(other)
