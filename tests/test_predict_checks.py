"""Prediction-time checks of ``lucidnet predict`` / ``evaluate`` (issue 12) on generated files:
categories not seen in training counted per column (one warning line each), columns the training
data did not have listed and ignored, a missing feature column an error naming it, and
``--keep COL ...`` copying input columns (ids) into the predictions file, formulas neutralised.

The warnings change nothing in the numbers: the predictions CSV is compared, text for text, with
the one the command wrote before these checks existed (rebuilt here from the saved preparation
and network, the way ``cmd_predict`` built it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import run

import lucidnet as ln
from lucidnet.data.prep import InputDrift, TabularPreparer

N_ROWS = 240
AIRLINES = ["Delta", "United", "American"]
SEATS = ["aisle", "window", "middle"]


def make_frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """A learnable table with an integer id, a number and two categorical columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    airline = rng.choice(AIRLINES, n)
    seat = rng.choice(SEATS, n)
    score = x + 1.5 * (airline == "Delta") - 1.5 * (airline == "United") + 0.5 * (seat == "aisle")
    df = pd.DataFrame(
        {
            "id": np.arange(n) + 70_000,  # unique integers named 'id': dropped as an identifier
            "x": x.round(4),
            "airline": airline,
            "seat": seat,
            "label": np.where(score > 0.3, "yes", "no"),
            "price": (20.0 * score + 100.0 + rng.normal(0.0, 0.5, n)).round(2),
        }
    )
    df.loc[::13, "seat"] = None  # missing values: imputed, never "unseen"
    return df


def drifted_frame() -> pd.DataFrame:
    """The same rows with 12 unseen airlines (two of them 'Lufthansa' x 8, 'KLM' x 4), 3 unseen
    seats, and two columns the training data did not have."""
    df = make_frame(seed=1)
    df.loc[:7, "airline"] = "Lufthansa"
    df.loc[8:11, "airline"] = "KLM"
    df.loc[20:22, "seat"] = "jump seat"
    df["comment"] = "nothing to see"
    df["weather"] = 3.5
    return df


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lucidnet: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def warnings_of(err: str) -> list[str]:
    lines = err.strip().splitlines()
    assert all(line.startswith("lucidnet: warning: ") for line in lines), err
    return [line.removeprefix("lucidnet: warning: ") for line in lines]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("predict_checks")
    make_frame().to_csv(d / "train.csv", index=False)
    make_frame(seed=1).to_csv(d / "clean.csv", index=False)
    drifted_frame().to_csv(d / "drifted.csv", index=False)
    return d


@pytest.fixture(scope="module")
def clf(work) -> Path:
    model = work / "clf.lnet"
    code, _, err = run(
        ["train", work / "train.csv", "--target", "label", "--drop", "price", "--epochs", "15",
         "--hidden", "8", "--out", model, "--quiet"]
    )  # fmt: skip
    assert code == 0, err
    return model


@pytest.fixture(scope="module")
def reg(work) -> Path:
    model = work / "reg.lnet"
    code, _, err = run(
        ["train", work / "train.csv", "--target", "price", "--drop", "label", "--epochs", "15",
         "--hidden", "8", "--out", model, "--quiet"]
    )  # fmt: skip
    assert code == 0, err
    return model


def csv_before_checks(model_path: Path, data: Path) -> str:
    """The predictions CSV as ``cmd_predict`` wrote it before the prediction-time checks: the
    saved preparation's features, the network's output, the same columns and formatting."""
    model = ln.load(model_path)
    meta = model.metadata
    prep = TabularPreparer.from_dict(meta["preparation"])
    out = model.predict(prep.transform(pd.read_csv(data)))
    if meta["task"] == "classification":
        classes = [str(c) for c in meta["classes"]]
        table = pd.DataFrame({"prediction": np.asarray(classes, dtype=object)[out.argmax(1)]})
        for j, c in enumerate(classes):
            table[f"proba_{c}"] = out[:, j]
    else:
        table = pd.DataFrame({"prediction": out.ravel()})
    return table.to_csv(index=False, float_format="%.6g")


# ---- unseen categories and extra columns ------------------------------------------------------


@pytest.mark.parametrize("which", ["clf", "reg"])
def test_predictions_unchanged_by_the_checks(which, work, request):
    model = request.getfixturevalue(which)
    for name in ("clean.csv", "drifted.csv"):
        code, out, err = run(["predict", model, work / name])
        assert code == 0, err
        assert out == csv_before_checks(model, work / name), name


def test_clean_file_gives_no_warning(clf, work):
    code, _, err = run(["predict", clf, work / "clean.csv"])
    assert code == 0 and err == ""


def test_unseen_categories_and_extra_columns_reported(clf, work):
    code, _, err = run(["predict", clf, work / "drifted.csv"])
    assert code == 0
    assert warnings_of(err) == [
        "'airline': 12 rows with categories not seen in training (e.g. 'Lufthansa', 'KLM'); "
        "they get no one-hot column",
        "'seat': 3 rows with categories not seen in training (e.g. 'jump seat'); "
        "they get no one-hot column",
        "2 columns not in the training data, ignored: 'comment', 'weather'",
    ]


def test_unseen_rows_encode_as_zeros_and_predict_like_the_library(clf, work):
    """The rows the warning counts are exactly the rows whose one-hot block is all zeros."""
    prep = TabularPreparer.from_dict(ln.load(clf).metadata["preparation"])
    df = drifted_frame()
    drift = prep.input_drift(df)
    assert isinstance(drift, InputDrift)
    assert drift.extra == ["comment", "weather"]
    assert drift.unseen["airline"].rows == 12 and drift.unseen["airline"].examples[0] == "Lufthansa"
    X = prep.transform(df)
    names = prep.feature_names_out()
    block = X[:, [j for j, n in enumerate(names) if n.startswith("airline")]]
    assert len(block.T) == len(AIRLINES)
    np.testing.assert_array_equal(np.flatnonzero(block.sum(axis=1) == 0), np.arange(12))
    # reporting reads the frame only: the same features before and after
    np.testing.assert_array_equal(X, TabularPreparer.from_dict(prep.to_dict()).transform(df))


def test_rare_training_category_is_reported_as_such():
    """A category seen at fit time but beyond ``max_categories`` also encodes as zeros: the
    warning says so instead of calling it unseen."""
    train = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["rare"], "x": np.arange(9.0)})
    prep = TabularPreparer(max_categories=2).fit(train)
    drift = prep.input_drift(pd.DataFrame({"c": ["rare", "a", "new", None], "x": 1.0}))
    (line,) = drift.messages()
    assert line.startswith("'c': 2 rows with categories not seen in training (or too rare: ")
    assert "only the 2 most frequent of 3 were kept" in line


def test_hostile_names_stay_on_one_line(clf, work):
    df = drifted_frame()
    df["evil\nlucidnet: error: fake"] = 1
    df.loc[0, "airline"] = "x\r\ny" * 30
    path = work / "hostile_names.csv"
    df.to_csv(path, index=False)
    code, _, err = run(["predict", clf, path])
    assert code == 0
    lines = warnings_of(err)
    assert len(lines) == 3
    assert "'evil\\nlucidnet: error: fake'" in lines[2]
    assert all(len(line) < 300 for line in lines)


def test_evaluate_reports_and_scores_the_same(clf, work):
    without_extra = work / "drifted_no_extra.csv"
    drifted_frame().drop(columns=["comment", "weather"]).to_csv(without_extra, index=False)
    code, out, err = run(["evaluate", clf, work / "drifted.csv"])
    assert code == 0
    lines = warnings_of(err)
    assert lines[0].startswith("'airline': 12 rows with categories not seen in training")
    assert lines[-1] == "2 columns not in the training data, ignored: 'comment', 'weather'"
    code2, out2, err2 = run(["evaluate", clf, without_extra])
    assert code2 == 0 and len(warnings_of(err2)) == 2
    assert out.replace("drifted.csv", "X") == out2.replace("drifted_no_extra.csv", "X")


def test_evaluate_metrics_match_the_library(reg, work):
    metrics = work / "reg_metrics.json"
    code, _, err = run(["evaluate", reg, work / "drifted.csv", "--metrics-json", metrics])
    assert code == 0, err
    model = ln.load(reg)
    prep = TabularPreparer.from_dict(model.metadata["preparation"])
    df = drifted_frame()
    pred = model.predict(prep.transform(df)).ravel()
    mae = float(np.mean(np.abs(pred - df["price"].to_numpy())))
    assert json.loads(metrics.read_text())["test"]["mae"] == pytest.approx(mae, rel=1e-5)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_missing_feature_column_is_an_error_naming_it(command, clf, work):
    path = work / "no_airline.csv"
    make_frame(seed=1).drop(columns=["airline"]).to_csv(path, index=False)
    code, out, err = run([command, clf, path])
    assert_user_error(code, err, str(path), "missing the feature columns ['airline']")
    assert out == ""


# ---- --keep -----------------------------------------------------------------------------------


def test_keep_copies_columns_before_predictions_in_input_order(clf, work):
    df = drifted_frame()
    df["ref"] = [f"R-{i:04d}" for i in range(len(df))]
    df["amount"] = np.round(np.linspace(-5.0, 1234567.891, len(df)), 3)
    df.loc[3, "amount"] = np.nan
    path = work / "with_ids.csv"
    df.to_csv(path, index=False)
    out_file = work / "kept.csv"
    code, _, err = run(
        ["predict", clf, path, "--keep", "amount", "ref", "--keep", "id", "--out", out_file]
    )
    assert code == 0, err
    text = out_file.read_text()
    pred = pd.read_csv(io.StringIO(text))
    head = ["id", "ref", "amount", "prediction", "proba_no", "proba_yes"]
    assert list(pred.columns) == head  # input order, not the order given
    np.testing.assert_array_equal(pred["id"], df["id"])
    assert (pred["ref"] == df["ref"]).all()
    # a kept number is copied exactly (not through the predictions' %.6g)
    np.testing.assert_array_equal(pred["amount"], df["amount"])
    # the prediction columns are those written without --keep
    _, plain, _ = run(["predict", clf, path])
    kept_out = pd.read_csv(io.StringIO(text)).iloc[:, 3:]
    pd.testing.assert_frame_equal(kept_out, pd.read_csv(io.StringIO(plain)))


def test_keep_hostile_text_is_neutralised(reg, work):
    df = make_frame(seed=2)
    formulas = ["=cmd|' /C calc'!A0", "+1+1", "@SUM(A1)", "-2+3", "\t=1", "safe", "-12.5"]
    df["note"] = [formulas[i % len(formulas)] for i in range(len(df))]
    df.loc[1, "note"] = 'line\r=HYPERLINK("http://evil")'
    df["=HEADER()"] = "x"
    path = work / "hostile.csv"
    df.to_csv(path, index=False)
    code, out, err = run(["predict", reg, path, "--keep", "note", "=HEADER()"])
    assert code == 0, err
    pred = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert len(pred) == len(df)  # the CR did not split a row
    assert list(pred.columns) == ["note", "'=HEADER()", "prediction"]
    notes = pred["note"].tolist()
    assert notes[0] == "'=cmd|' /C calc'!A0"
    assert notes[1] == 'line\r=HYPERLINK("http://evil")'  # starts with 'l': left as it is
    assert notes[2:7] == ["'@SUM(A1)", "'-2+3", "'\t=1", "safe", "-12.5"]
    assert notes[7] == notes[0]
    for cell in notes:
        assert not cell.startswith(("=", "+", "@", "\t")), cell


@pytest.mark.parametrize(
    ("keep", "fragment"),
    [
        (["nope"], "--keep: '{path}' has no column 'nope'; its columns: 'prediction', 'id', 'x'"),
        (["id", "ID"], "has no column 'ID'"),
        (["prediction"], "--keep: column 'prediction' has the name of a prediction column"),
        (["label"], None),  # the target is an input column like any other
    ],
)
def test_keep_unknown_or_clashing_column(keep, fragment, clf, work):
    path = work / "with_prediction.csv"
    df = make_frame(seed=1)
    df.insert(0, "prediction", "from an earlier run")
    df.to_csv(path, index=False)
    out_file = work / "never.csv"
    code, out, err = run(["predict", clf, path, "--keep", *keep, "--out", out_file])
    if fragment is None:
        assert code == 0, err
        assert list(pd.read_csv(out_file).columns[:2]) == ["label", "prediction"]
        out_file.unlink()
        return
    assert_user_error(code, err, fragment.format(path=path))
    assert not out_file.exists() and out == ""


# ---- numeric values far outside the training range --------------------------------------------


def test_far_numeric_values_warned_once_per_column_predictions_unchanged(reg, work):
    """``x`` spans about -3 to 3 in training: 100 and -50 lie beyond it by more than its range;
    one warning line for the column, the same predictions as without the check."""
    df = make_frame(seed=1)
    df.loc[0, "x"], df.loc[1, "x"], df.loc[2, "x"] = 100.0, -50.0, 4.0  # 4: near, not far
    path = work / "far.csv"
    df.to_csv(path, index=False)
    x = make_frame()["x"]
    prep = TabularPreparer.from_dict(ln.load(reg).metadata["preparation"])
    fit_rows = prep.report_["rows_fit"]
    assert fit_rows < len(x)  # the range is that of the fitting rows, read from the model file
    hi = prep.state_["numeric"]["max"][prep.state_["columns"]["numeric"].index("x")]
    assert hi <= x.max()
    for command in ("predict", "evaluate"):
        code, out, err = run([command, reg, path])
        assert code == 0, err
        assert warnings_of(err) == [
            f"'x': 2 rows far outside the training range (e.g. 100 > max {hi:.4g}); "
            "predictions for such rows are extrapolations"
        ]
    code, out, _ = run(["predict", reg, path])
    assert out == csv_before_checks(reg, path)
