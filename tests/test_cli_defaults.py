"""Tests of ``lucidnet.cli.defaults``: the rule that picks the network / training settings of
``lucidnet train`` from the prepared data, which options count as given, and the run's summary
("why") and saved hyper-parameters, on generated files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import run

import lucidnet as ln
from lucidnet.cli import defaults
from lucidnet.cli.args import options_given

# ---- the rule ---------------------------------------------------------------------------------


def test_tabular_input_keeps_the_static_defaults():
    choice = defaults.choose(n_features=40, n_text=19, n_train=10_000)
    assert choice.settings == {} and choice.reason == ""


def test_text_dominated_input_gets_the_text_settings_with_a_reason():
    choice = defaults.choose(n_features=5394, n_text=5179, n_train=8198)
    assert choice.settings == defaults.TEXT_SETTINGS
    assert "5179 of the 5394 input features (96%" in choice.reason


def test_the_threshold_is_inclusive():
    assert defaults.choose(n_features=10, n_text=5, n_train=10_000).settings
    assert not defaults.choose(n_features=11, n_text=5, n_train=10_000).settings


def test_given_options_are_never_changed():
    choice = defaults.choose(5394, 5179, 8198, given=("dropout", "hidden"))
    assert "dropout" not in choice.settings and "hidden" not in choice.settings
    assert choice.kept == ("hidden", "dropout")
    assert choice.settings["batch_size"] == defaults.TEXT_SETTINGS["batch_size"]


def test_few_rows_keep_the_small_batch():
    """Below MIN_STEPS batches of 128 per epoch the batch size stays (and the reason says so)."""
    rows = defaults.MIN_STEPS * defaults.TEXT_SETTINGS["batch_size"]
    assert "batch_size" in defaults.choose(100, 90, rows).settings
    few = defaults.choose(100, 90, rows - 1)
    assert "batch_size" not in few.settings and few.settings["dropout"] == 0.5
    assert f"fewer than {rows} training rows" in few.reason


@pytest.mark.parametrize("n_features, n_text", [(0, 0), (10, 11), (10, -1)])
def test_bad_counts_are_refused(n_features, n_text):
    with pytest.raises(ValueError, match="n_text"):
        defaults.choose(n_features, n_text, 100)


# ---- which options the user gave ----------------------------------------------------------------


def test_given_options_read_the_command_line_and_the_config_file(tmp_path):
    base = ["train", "d.csv", "--target", "y"]
    assert not {"dropout", "batch_size", "hidden"} & options_given(base, "train")
    # an explicit value equal to the static default still counts as given
    given = options_given([*base, "--dropout", "0", "--hidden", "64,32"], "train")
    assert {"dropout", "hidden"} <= given and "batch_size" not in given
    cfg = tmp_path / "h.toml"
    cfg.write_text("batch_size = 32\n")
    given = options_given([*base, "--config", str(cfg)], "train")
    assert "batch_size" in given and "dropout" not in given


# ---- end to end -------------------------------------------------------------------------------

WORDS = [f"w{i}" for i in range(60)]


def text_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A review column (many distinct words: TF-IDF dominates the input) and a number."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    texts = []
    for y in label:
        words = list(rng.choice(WORDS[2:], 6)) + [WORDS[int(y)]]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return pd.DataFrame({"x": rng.normal(size=n).round(3), "review": texts, "label": label})


@pytest.fixture(scope="module")
def text_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("defaults") / "reviews.csv"
    text_frame(4000).to_csv(path, index=False)
    return path


def _training(tmp: Path, csv: Path, *extra: str) -> tuple[str, dict]:
    out = tmp / "m.lnet"
    metrics = tmp / "m.json"
    code, stdout, err = run(
        ["train", csv, "--target", "label", "--epochs", "1", "--no-baselines", "--out", out,
         "--metrics-json", metrics, "--overwrite", *extra]
    )  # fmt: skip
    assert code == 0, err
    return stdout, json.loads(metrics.read_text())["hyperparameters"]


def test_text_file_trains_with_the_text_settings_and_says_why(text_csv, tmp_path):
    stdout, hp = _training(tmp_path, text_csv)
    assert "Defaults for text: --hidden 100, --dropout 0.5, --batch-size 128" in stdout
    assert "why: " in stdout and "TF-IDF text terms" in stdout
    assert (hp["hidden"], hp["dropout"], hp["batch_size"]) == ([100], 0.5, 128)
    assert "TF-IDF" in hp["defaults"]
    assert "batch 128" in stdout  # the training line shows what is used
    # the final fit: training + validation rows (2800 + 400 of 4000), the epochs chosen
    assert "Final fit (text defaults)" in stdout and "(3200) for the 1 epochs" in stdout
    assert "final fit: training + validation rows (3200)" in hp["defaults"]


def _fit_data(n_train: int = 6, n_val: int = 2) -> argparse.Namespace:
    rng = np.random.default_rng(0)
    return argparse.Namespace(
        X_train=rng.normal(size=(n_train, 3)).astype(np.float32), y_train=np.arange(n_train) % 2,
        X_val=rng.normal(size=(n_val, 3)).astype(np.float32), y_val=np.arange(n_val) % 2,
    )  # fmt: skip


def test_final_fit_trains_a_fresh_network_on_training_and_validation_rows():
    model = ln.Sequential([ln.Dense(4, activation="relu"), ln.Dropout(0.5), ln.Dense(2)])
    model.build((3,))
    data = _fit_data()
    X_train, X_val = data.X_train.copy(), data.X_val.copy()
    args = argparse.Namespace(defaults_reason="text", epochs=200, optimizer="adam", lr=1e-3)
    seen = {}

    def run_fit(opts, rows, net, optimizer, task, callbacks):
        seen.update(epochs=opts.epochs, X=rows.X_train, y=rows.y_train, val=len(rows.X_val))
        seen.update(net=net, built=net.built)
        return ln.History()

    net, scaling, line = defaults.final_fit(args, data, model, 4, "classification", run_fit)
    assert net is seen["net"] and net is not model and not seen["built"]
    assert [type(a).__name__ for a in net.layers] == [type(a).__name__ for a in model.layers]
    assert seen["epochs"] == 5 and seen["val"] == 0 and args.epochs == 200
    np.testing.assert_array_equal(seen["X"], np.concatenate([X_train, X_val]))
    np.testing.assert_array_equal(seen["y"], [0, 1, 0, 1, 0, 1, 0, 1])
    assert data.X_train is seen["X"]  # the baselines are fitted on the same rows
    assert scaling is None and "(8) for the 5 epochs" in line
    assert args.defaults_reason.startswith("text; final fit")


@pytest.mark.parametrize(
    "reason, best, calibrate, n_val",
    [(None, 4, False, 2), ("text", None, False, 2), ("text", 4, True, 2), ("text", 4, False, 0)],
)
def test_final_fit_is_skipped(reason, best, calibrate, n_val):
    """Without the text rule, early stopping, unseen validation rows: no final fit."""
    data = _fit_data(n_val=n_val)
    args = argparse.Namespace(defaults_reason=reason, calibrate=calibrate)
    fail = lambda *a: pytest.fail("run_fit must not be called")  # noqa: E731
    assert defaults.final_fit(args, data, None, best, "classification", fail) is None
    assert len(data.X_train) == 6


def test_no_final_fit_with_calibrate(text_csv, tmp_path):
    stdout, hp = _training(tmp_path, text_csv, "--calibrate")
    assert "Final fit" not in stdout and "final fit" not in hp["defaults"]


@pytest.mark.parametrize(
    "mode, reason, runs", [("off", "text", False), ("on", None, True), ("auto", None, False)]
)
def test_final_fit_option(mode, reason, runs):
    """--final-fit off skips the text rule's final fit; on asks for it without the rule."""
    model = ln.Sequential([ln.Dense(2)])
    model.build((3,))
    args = argparse.Namespace(
        defaults_reason=reason, final_fit=mode, epochs=9, optimizer="adam", lr=1e-3
    )
    calls = []

    def run_fit(opts, rows, net, optimizer, task, callbacks):
        calls.append(opts.epochs)
        return ln.History()

    out = defaults.final_fit(args, _fit_data(), model, 2, "classification", run_fit)
    assert (out is not None) is runs and calls == ([3] if runs else [])
    if runs:
        assert "Final fit (--final-fit on)" in out[2]
        assert args.defaults_reason.startswith("final fit: training + validation rows (8)")


def test_final_fit_off_on_the_command_line(text_csv, tmp_path):
    stdout, hp = _training(tmp_path, text_csv, "--final-fit", "off")
    assert "Defaults for text" in stdout and "Final fit" not in stdout
    assert hp["final_fit"] == "off" and "final fit" not in hp["defaults"]


def test_options_given_override_the_rule(text_csv, tmp_path):
    stdout, hp = _training(tmp_path, text_csv, "--dropout", "0", "--hidden", "64,32")
    assert "kept as given: --hidden 64,32, --dropout 0.0" in stdout
    assert (hp["hidden"], hp["dropout"], hp["batch_size"]) == ([64, 32], 0.0, 128)


def test_tabular_file_keeps_the_static_defaults(tmp_path):
    rng = np.random.default_rng(1)
    csv = tmp_path / "t.csv"
    pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)}).assign(
        label=lambda d: (d.a > 0).astype(int)
    ).to_csv(csv, index=False)
    stdout, hp = _training(tmp_path, csv)
    assert "Defaults for text" not in stdout
    assert (hp["hidden"], hp["dropout"], hp["batch_size"]) == ([64, 32], 0.0, 32)
    assert hp["defaults"] is None
