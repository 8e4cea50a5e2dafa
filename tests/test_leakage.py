"""Target-leakage guard (lucidnet.data.leakage, prepare(keep_leaks=...), the CLI's --keep-leaks
and its near-perfect-score warning), on generated data."""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import pandas as pd
import pytest

from lucidnet.cli import commands as cli
from lucidnet.data.columns import infer_roles
from lucidnet.data.leakage import extends, find_leaks
from lucidnet.data.prep import PreparationWarning, TabularPreparer, prepare


def _classification(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """``label`` from a noisy score: ``strong`` predicts it in ~90% of rows (not a leak);
    ``answer`` is the label recoded yes/no (a leak); ``reason`` is filled in only for label 1."""
    rng = np.random.default_rng(seed)
    strong = rng.normal(size=n)
    label = (strong + rng.normal(0.0, 0.4, n) > 0).astype(int)
    return pd.DataFrame(
        {
            "strong": strong,
            "other": rng.normal(size=n),
            "city": rng.choice(["a", "b", "c"], n),
            "answer": np.where(label == 1, "yes", "no"),
            "label": label,
        }
    )


def _features(data) -> list[str]:
    cols = data.preparer.report["features"]
    return cols["numeric"] + cols["categorical"] + cols["text"]


def test_recoded_target_is_excluded_and_reported():
    data = prepare(_classification(), "label")
    assert "answer" not in _features(data)
    assert {"strong", "other", "city"} <= set(_features(data))  # a strong feature is kept
    summary = data.preparer.summary()
    assert "excluded as likely target leakage" in summary
    assert "'answer' (its value alone gives the class in 100.0% of rows)" in summary


def test_filled_in_only_for_one_class_is_excluded():
    df = _classification()
    rng = np.random.default_rng(1)
    df["reason"] = np.where(df["label"] == 1, rng.choice(["late", "rude", "lost"], len(df)), None)
    df = df.drop(columns="answer")
    data = prepare(df, "label")
    assert "reason" not in _features(data)
    assert "'reason'" in data.preparer.summary()


def test_numeric_recoding_is_excluded():
    df = _classification().drop(columns="answer")
    df["code"] = df["label"] * 7.0 + 3.0
    data = prepare(df, "label")
    assert "code" not in _features(data)
    assert "strong" in _features(data)


def test_parts_of_a_total_are_excluded_for_a_regression_target():
    rng = np.random.default_rng(2)
    n = 1500
    a, b = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    df = pd.DataFrame(
        {"a": a, "b": b, "noise": rng.normal(size=n), "signal": a + rng.normal(0, 20, n)}
    )
    df["total"] = a + b
    data = prepare(df, "total")
    assert not {"a", "b"} & set(_features(data))
    assert {"noise", "signal"} <= set(_features(data))
    assert "'a' + 'b' (a + b equals the target" in data.preparer.summary()


def test_difference_and_monotone_function_for_a_regression_target():
    rng = np.random.default_rng(3)
    n = 1500
    gross, fee = rng.uniform(100, 200, n), rng.uniform(0, 50, n)
    df = pd.DataFrame({"gross": gross, "fee": fee, "x": rng.normal(size=n)})
    df["net"] = gross - fee
    df["net_log"] = np.log(df["net"])  # a monotone function of the target
    data = prepare(df, "net")
    assert set(_features(data)) == {"x"}


def test_keep_leaks_keeps_and_still_warns():
    data = prepare(_classification(), "label", keep_leaks=True)
    assert "answer" in _features(data)
    summary = data.preparer.summary()
    assert "WARNING: kept (--keep-leaks) although they look like target leakage" in summary
    assert "'answer'" in summary
    with pytest.raises(TypeError, match="keep_leaks must be True or False"):
        prepare(_classification(), "label", keep_leaks="yes")


def test_no_leak_no_summary_lines():
    data = prepare(_classification().drop(columns="answer"), "label")
    assert "leakage" not in data.preparer.summary()
    assert data.preparer.report_["leakage"]["columns"] == []


def test_only_training_rows_are_checked():
    """A column that leaks only on test rows is not seen (and so not excluded)."""
    df = _classification().drop(columns="answer")
    data = prepare(df, "label", seed=0)
    test_rows = data.split.test
    df["late"] = "x"
    df.loc[test_rows, "late"] = np.where(df.loc[test_rows, "label"] == 1, "yes", "no")
    data = prepare(df, "label", seed=0)
    assert data.preparer.report_["leakage"]["columns"] == []


def test_identifier_like_column_is_not_flagged():
    df = _classification().drop(columns="answer")
    df["code"] = [f"c{i}" for i in range(len(df))]  # unique per row: pure, but proves nothing
    roles = infer_roles(df, "label", categorical=["code"])
    leaks, _ = find_leaks(df, df["label"].to_numpy(), "classification", roles)
    assert leaks == []


def test_fast_on_100k_rows():
    rng = np.random.default_rng(4)
    n = 100_000
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(10)})
    for i in range(5):
        df[f"c{i}"] = rng.choice(list("abcdefgh"), n)
    y = (df["x0"] + rng.normal(0, 0.5, n) > 0).astype(np.int64).to_numpy()
    df["leak"] = np.where(y == 1, "yes", "no")
    roles = infer_roles(df)
    start = time.perf_counter()
    leaks, sampled = find_leaks(df, y, "classification", roles)
    assert time.perf_counter() - start < 5.0
    assert [leak.columns for leak in leaks] == [("leak",)]
    assert sampled == 20_000
    yr = df["x0"].to_numpy() + df["x1"].to_numpy()
    start = time.perf_counter()
    leaks, _ = find_leaks(df, yr, "regression", roles)
    assert time.perf_counter() - start < 5.0
    assert [leak.columns for leak in leaks] == [("x0", "x1")]


def _cli(argv: list) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def leaky_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("leak") / "leaky.csv"
    _classification(600).to_csv(path, index=False)
    return path


def test_cli_excludes_by_default_and_keep_leaks_keeps(leaky_csv, tmp_path):
    base = ["train", leaky_csv, "--target", "label", "--epochs", "3", "--hidden", "8"]
    code, out = _cli([*base, "--out", tmp_path / "a.lnet"])
    assert code == 0, out
    assert "excluded as likely target leakage" in out and "'answer'" in out
    code, out = _cli([*base, "--keep-leaks", "--out", tmp_path / "b.lnet"])
    assert code == 0, out
    assert "WARNING: kept (--keep-leaks)" in out


def test_near_perfect_warning():
    warn = cli.near_perfect_warning("classification", {"accuracy": 0.995})
    assert warn is not None and "near-perfect" in warn and "leakage" in warn
    assert len(warn.splitlines()) == 1
    assert cli.near_perfect_warning("classification", {"accuracy": 0.98}) is None
    assert "R^2 0.9990" in cli.near_perfect_warning("regression", {"r2": 0.999})
    assert cli.near_perfect_warning("regression", {"r2": 0.5}) is None


def test_cli_prints_near_perfect_warning(leaky_csv, tmp_path):
    argv = ["train", leaky_csv, "--target", "label", "--keep-leaks", "--epochs", "30"]
    code, out = _cli([*argv, "--out", tmp_path / "c.lnet"])
    assert code == 0, out
    assert "is near-perfect; check that no column gives the target away" in out


@pytest.mark.parametrize(
    "entry",
    [
        None,
        [],
        {"columns": "x"},
        {"columns": [1]},
        {"columns": ["'a' (b)"], "kept": "no"},
        {"columns": ["'a' (b)"], "kept": True, "rows_sampled": "many"},
    ],
)
def test_malformed_leakage_entry_read_back_is_dropped_with_a_warning(entry):
    data = prepare(_classification(), "label")
    d = data.preparer.to_dict()
    assert TabularPreparer.from_dict(d).report_["leakage"] == d["fit_report"]["leakage"]
    d["fit_report"]["leakage"] = entry
    with pytest.warns(PreparationWarning, match="'leakage' is malformed"):
        restored = TabularPreparer.from_dict(d)
    assert "leakage" not in restored.report_
    assert "keep them with keep_leaks" not in restored.summary()
    assert restored.feature_names_out() == data.preparer.feature_names_out()


def test_leaks_are_kept_when_nothing_else_is_left():
    df = _classification()[["answer", "label"]]
    data = prepare(df, "label")
    assert _features(data) == ["answer"]
    assert "WARNING: kept (nothing else to learn from)" in data.preparer.summary()


# ---- leakage by name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base", "expected"),
    [
        ("airline_sentiment_confidence", "airline_sentiment", True),
        ("airline_sentiment_gold", "airline_sentiment", True),
        ("label_prob", "label", True),
        ("priceLog", "price", True),
        ("Price per carat", "price", True),
        ("negativereason_gold", "negativereason", True),
        ("label", "label", False),  # the column itself
        ("labels", "label", False),  # no separator: another word
        ("sales_2019", "sales", False),  # another period
        ("sales_lag1", "sales", False),  # a value from before the outcome
        ("sales_prev_week", "sales", False),
        ("label_baseline", "label", False),
        ("pricey", "price", False),
        ("x_price", "price", False),  # only names that start with the target's
    ],
)
def test_extends(name, base, expected):
    assert extends(name, base) is expected


def _named(n: int = 1200, seed: int = 5) -> pd.DataFrame:
    """``label_confidence``: a labeller's confidence, only weakly related to the label (no
    statistical check flags it); ``reason``: filled in only for label 1 (a leak);
    ``reason_gold``: filled in on a few rows only (too few for a statistical check);
    ``label_lag1``: last period's label, a legitimate input."""
    rng = np.random.default_rng(seed)
    df = _classification(n, seed).drop(columns="answer")
    label = df["label"].to_numpy()
    df["label_confidence"] = np.clip(0.7 + 0.1 * label + rng.normal(0, 0.2, n), 0.3, 1.0)
    df["reason"] = np.where(label == 1, rng.choice(["late", "rude", "lost"], n), None)
    gold = np.full(n, None, dtype=object)
    few = rng.choice(np.flatnonzero(label == 1), 10, replace=False)
    gold[few] = df["reason"].to_numpy()[few]
    df["reason_gold"] = gold
    df["label_lag1"] = np.roll(label, 1)
    return df


def test_columns_named_after_the_target_or_a_leak_are_excluded_with_evidence():
    df = _named()
    roles = infer_roles(df, "label")
    leaks, _ = find_leaks(df, df["label"].to_numpy(), "classification", roles)
    found = {leak.columns[0]: leak.evidence for leak in leaks}
    assert set(found) == {"reason", "label_confidence", "reason_gold"}
    assert found["label_confidence"].startswith("its name extends the target's name 'label'; ")
    assert "cross-validated balanced accuracy" in found["label_confidence"]
    assert "(chance 0.50)" in found["label_confidence"]
    assert found["reason_gold"].startswith("its name extends the leaking column's name 'reason'")
    assert (
        "filled in" in found["reason_gold"]
        and "there it gives the class in 100%" in (found["reason_gold"])
    )


def test_the_role_table_says_excluded_as_leakage_not_listed_in_drop():
    data = prepare(_named(), "label", drop=["other"])
    assert set(_features(data)) == {"strong", "city", "label_lag1"}
    roles = data.preparer.report["columns"]
    assert roles["other"]["reason"] == "listed in drop="
    for c in ("reason", "label_confidence", "reason_gold"):
        assert roles[c]["role"] == "dropped"
        assert roles[c]["reason"].startswith("excluded as likely target leakage: "), roles[c]
    assert "its name extends the target's name 'label'" in roles["label_confidence"]["reason"]
    back = TabularPreparer.from_dict(data.preparer.to_dict())
    assert back.summary() == data.preparer.summary()
    assert back.exclude == data.preparer.exclude
    kept = prepare(_named(), "label", keep_leaks=True)
    assert {"reason", "label_confidence", "reason_gold"} <= set(_features(kept))
    assert "WARNING: kept (--keep-leaks)" in kept.preparer.summary()


def test_name_rule_for_a_regression_target_and_other_roles():
    rng = np.random.default_rng(6)
    n = 600
    price = rng.uniform(100, 1000, n)
    df = pd.DataFrame(
        {
            "carat": price / 500 + rng.normal(0, 0.5, n),
            "price_band": np.where(price > 500, "high", "low"),
            "price_note": [f"about {p:.0f} dollars, a fair price" for p in price],
            "price_2019": price * 0.9 + rng.normal(0, 100, n),
            "price": price,
        }
    )
    roles = infer_roles(df, "price")
    assert roles["price_note"].role == "text"
    leaks, _ = find_leaks(df, price, "regression", roles)
    found = {leak.columns[0]: leak.evidence for leak in leaks}
    assert set(found) == {"price_band", "price_note"}
    assert "its categories explain" in found["price_band"]
    assert "a text column, not checked statistically" in found["price_note"]


def test_exclude_is_checked():
    with pytest.raises(TypeError, match="exclude must map column names to reasons"):
        TabularPreparer("y", exclude=["a"])
    with pytest.raises(TypeError, match="exclude must map column names to reasons"):
        TabularPreparer("y", exclude={"a": 1})
