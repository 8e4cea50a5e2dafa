"""lucidnet.interop.tuning: the search space, the pruning callback, the objective, run_study and
tune() on arrays (Optuna; in-memory or temporary SQLite storages, small generated data)."""

from __future__ import annotations

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from lucidnet import Dense, Sequential, fit, losses  # noqa: E402
from lucidnet.interop import tuning  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian classes in 4 dimensions (separable enough to learn in a few epochs)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)) + 2.0 * np.eye(3, 4)[y]
    return X.astype(np.float32), y


# --- the search space -------------------------------------------------------------------------


def test_parse_space_overrides_entry_by_entry():
    space = tuning.parse_space(
        {"lr": {"low": 1e-3, "high": 0.1, "log": True}, "batch-size": [8, 16], "dropout": 0.0}
    )
    assert space["lr"] == tuning.Range(1e-3, 0.1, log=True)
    assert space["batch_size"] == tuning.Choice((8, 16))
    assert space["dropout"] == 0.0  # fixed: not searched
    assert space["optimizer"] == tuning.DEFAULT_SPACE["optimizer"]  # untouched default
    assert space["units"] == tuning.Range(16, 256, log=True, integer=True)


def test_hidden_choices_replace_layers_and_units():
    space = tuning.parse_space({"hidden": ["64,32", [128], "none"]})
    assert "layers" not in space and "units" not in space
    assert space["hidden"] == tuning.Choice(((64, 32), (128,), ()))
    config = tuning.suggest(optuna.trial.FixedTrial({**_fixed(), "hidden": "64,32"}), space)
    assert config["hidden"] == (64, 32)
    # a plain list of sizes is one fixed value
    assert tuning.parse_space({"hidden": [32, 16]})["hidden"] == (32, 16)


def _fixed() -> dict:
    return {"lr": 0.01, "batch_size": 32, "dropout": 0.1, "l2": 1e-4, "optimizer": "adam"}


def test_suggest_builds_halving_hidden_sizes_and_keeps_defaults():
    trial = optuna.trial.FixedTrial({**_fixed(), "layers": 3, "units": 64})
    config = tuning.suggest(trial, defaults={"activation": "tanh"})
    assert config["hidden"] == (64, 32, 16)
    assert config["activation"] == "tanh" and config["batch_norm"] is False
    assert config["lr"] == 0.01 and config["optimizer"] == "adam"


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"nope": 1}, "unknown parameter 'nope'"),
        ({"lr": {"low": 0.1, "high": 0.01}}, "expected low < high"),
        ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "out of range"),
        ({"lr": {"low": 1e-3, "high": 0.1, "step": 2}}, "expected a table with low, high"),
        ({"optimizer": ["adam", "lbfgs"]}, "expected one of"),
        ({"optimizer": {"low": 1, "high": 2}}, "a range needs a numeric parameter"),
        ({"dropout": 1.0}, "out of range"),
        ({"batch_size": [16, 2.5]}, "out of range"),
        ({"batch_size": []}, "non-empty list"),
        ({"hidden": ["64,x"]}, "layer sizes like"),
        ({"batch_norm": "yes"}, "expected one of"),
    ],
)
def test_parse_space_errors_name_the_entry(entry, message):
    with pytest.raises(ValueError, match=message) as info:
        tuning.parse_space(entry)
    assert "search space" in str(info.value)


# --- the validation curve and pruning -----------------------------------------------------------


def test_validation_curve_leaves_out_the_weight_penalty():
    X, y = blobs()
    model = Sequential([Dense(8, activation="relu", l2=0.05), Dense(3, l2=0.05)])
    curve = tuning.ValidationCurve()
    h = fit(model, X[:200], y[:200], loss="cross_entropy", epochs=3,
            validation_data=(X[200:], y[200:]), callbacks=[curve], seed=0, verbose=0)  # fmt: skip
    data_loss, _ = losses.get("cross_entropy")(model.predict_logits(X[200:]), y[200:])
    assert model.penalty() > 0.01
    assert curve.values[-1] == pytest.approx(float(data_loss), rel=1e-5)
    assert curve.values[-1] == pytest.approx(h["val_loss"][-1] - model.penalty(), rel=1e-5)


def test_a_trial_is_pruned_from_its_per_epoch_validation_loss():
    X, y = blobs()
    objective = tuning.Objective(
        X[:180], y[:180], X[180:], y[180:], loss="cross_entropy", n_outputs=3, epochs=12,
        patience=50, seed=0,
    )  # fmt: skip
    study = tuning.make_study(
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    )
    good = {**_fixed(), "layers": 1, "units": 16, "dropout": 0.0}
    bad = {**good, "lr": 1e-4, "optimizer": "momentum"}  # barely moves: worse at every epoch
    study.enqueue_trial(good)
    study.enqueue_trial(bad)
    tuning.run_study(study, objective, 2)
    first, second = study.trials
    assert first.state.name == "COMPLETE" and len(first.intermediate_values) == 12
    assert second.state.name == "PRUNED"
    reported = second.intermediate_values
    assert 2 <= len(reported) < 12  # stopped after the warm-up, long before the last epoch
    assert second.user_attrs["epochs"] == len(reported)
    # the reported values are the epoch's validation losses: replay the same configuration
    config = tuning.best_config(second, objective)
    replay = objective.train(config)
    np.testing.assert_allclose(
        [reported[e] for e in sorted(reported)], replay.curve.values[: len(reported)], rtol=1e-6
    )


# --- run_study and tune() -------------------------------------------------------------------------


def test_run_study_never_trains_past_n_trials():
    """Two trials already started by other workers fill a study of 2: this worker's trial is
    recorded as surplus (failed, not trained) and the worker stops."""
    X, y = blobs()
    calls = []
    study = tuning.make_study()
    study.ask(), study.ask()  # running elsewhere
    ran = tuning.run_study(study, lambda t: calls.append(t) or 1.0, 2)
    assert ran == 0 and calls == []
    surplus = study.trials[-1]
    assert surplus.state.name == "FAIL" and surplus.user_attrs["surplus"] is True


def test_tune_returns_the_best_model_and_a_study_resumes(tmp_path):
    X, y = blobs(300)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    kwargs = dict(loss="cross_entropy", epochs=6, patience=50, storage=url, study_name="s",
                  sampler_seed=0)  # fmt: skip
    first = tuning.tune(X, y, n_trials=3, **kwargs)
    assert first.trials_run == 3
    assert first.best_value == pytest.approx(first.study.best_value)
    # the returned model is the best trial's: its validation loss (held-out 20%, seed 0)
    rng = np.random.default_rng(0)
    from lucidnet.splitting import split_indices

    _, held = split_indices(len(X), 0.2, rng, y)
    data_loss, _ = losses.get("cross_entropy")(first.best_model.predict_logits(X[held]), y[held])
    assert float(data_loss) == pytest.approx(first.best_value, rel=1e-4)

    # the same call again with a larger total continues the stored study
    again = tuning.tune(X, y, n_trials=5, **kwargs)
    trials = again.study.trials
    assert again.trials_run == 2
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    # when the best trial is from the first run, its model is retrained: the same network
    data_loss, _ = losses.get("cross_entropy")(again.best_model.predict_logits(X[held]), y[held])
    assert float(data_loss) == pytest.approx(again.best_value, rel=1e-4)


def test_tune_checks_its_arguments():
    X, y = blobs(60)
    with pytest.raises(ValueError, match="n_trials"):
        tuning.tune(X, y, loss="cross_entropy", n_trials=0)
    with pytest.raises(ValueError, match="validation rows"):
        tuning.Objective(X, y, X[:0], y[:0], loss="mse", n_outputs=1)


def test_a_diverging_trial_is_pruned_quietly_with_its_reason():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)).astype(np.float32)
    y = np.exp(X @ np.array([1.0, 2.0, 0.5]) + 6.0).round().astype(np.float32)  # counts
    objective = tuning.Objective(
        X[:100], y[:100], X[100:], y[100:], loss="poisson", n_outputs=1, epochs=5, seed=0
    )
    study = tuning.make_study()
    study.enqueue_trial({**_fixed(), "lr": 0.03, "optimizer": "momentum", "layers": 1,
                         "units": 16})  # fmt: skip
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning.run_study(study, objective, 1)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED"
    assert "loss became" in trial.user_attrs["warning"]
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
