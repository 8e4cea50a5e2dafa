"""Missing values in the preparation (issue 12): a 0/1 ``"<col> is missing"`` indicator per numeric
column with missing values (the value itself still takes the training median), a category of its
own, ``"<col>=(missing)"``, for categorical columns, what was done in the role table, and saved
preparers of the new and the old format."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from lucidnet.data.prep import TabularPreparer


def make_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Numeric ``x`` (a quarter missing) and ``full`` (none), categorical ``city`` (a sixth
    missing) and ``kind`` (none), and a binary label."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x": rng.normal(5.0, 2.0, n).round(3),
            "full": rng.normal(0.0, 1.0, n),
            "city": rng.choice(["Paris", "Lyon", "Nice"], n).astype(object),
            "kind": rng.choice(["u", "v"], n),
            "label": rng.choice(["a", "b"], n),
        }
    )
    df.loc[::4, "x"] = np.nan
    df.loc[1::6, "city"] = None
    return df


def roundtrip(prep: TabularPreparer) -> TabularPreparer:
    return TabularPreparer.from_dict(json.loads(json.dumps(prep.to_dict())))


# ---- numeric: indicators ---------------------------------------------------------------------


def test_numeric_indicator_only_where_values_were_missing_and_correct():
    df = make_frame()
    prep = TabularPreparer("label", scaling="none").fit(df)
    names = prep.feature_names_out()
    assert "x is missing" in names and "full is missing" not in names
    assert prep.state_["indicators"] == ["x"]
    out = prep.transform(df)
    miss = df["x"].isna().to_numpy()
    assert np.array_equal(out[:, names.index("x is missing")], miss.astype(np.float32))
    # the value itself keeps the median imputation
    x = out[:, names.index("x")]
    assert np.all(x[miss] == np.float32(df["x"].median()))
    assert np.array_equal(x[~miss], df["x"][~miss].to_numpy(np.float32))


def test_indicators_can_be_turned_off():
    df = make_frame()
    prep = TabularPreparer("label", add_indicators=False).fit(df)
    assert prep.state_["indicators"] == []
    assert not any(n.endswith(" is missing") for n in prep.feature_names_out())
    assert "x is missing" in TabularPreparer("label").fit(df).feature_names_out()
    with pytest.raises(TypeError, match="missing_category must be True or False"):
        TabularPreparer("label", missing_category="yes")


# ---- categorical: a category of its own ----------------------------------------------------


def test_missing_category_used_instead_of_the_mode():
    df = make_frame()
    prep = TabularPreparer("label").fit(df)
    names = prep.feature_names_out()
    assert [n for n in names if n.startswith("city=")] == [
        "city=(missing)",
        "city=Lyon",
        "city=Nice",
        "city=Paris",
    ]
    assert "kind=(missing)" not in names  # no missing values in the fitting rows
    out = prep.transform(df)
    miss = df["city"].isna().to_numpy()
    assert np.array_equal(out[:, names.index("city=(missing)")], miss.astype(np.float32))
    city = [i for i, n in enumerate(names) if n.startswith("city=")]
    assert np.all(out[:, city].sum(axis=1) == 1)  # exactly one category per row
    assert prep.report["imputed"]["city"] == {
        "count": int(miss.sum()),
        "value": "(missing)",
        "how": "own category",
    }
    assert prep.state_["categorical"]["missing"] == ["(missing)", None]


def test_transform_of_a_new_frame_with_missing_values():
    df = make_frame()
    prep = TabularPreparer("label", scaling="none").fit(df)
    names = prep.feature_names_out()
    new = pd.DataFrame(
        {
            "x": [np.nan, 7.0, np.nan],
            "full": [np.nan, 0.5, 1.0],
            "city": [None, "Berlin", "Lyon"],
            "kind": ["u", None, "v"],
        }
    )
    out = prep.transform(new)
    col = {n: out[:, names.index(n)] for n in names}
    assert list(col["x is missing"]) == [1, 0, 1]
    assert col["x"][0] == np.float32(df["x"].median()) and col["x"][1] == 7.0
    assert col["full"][0] == np.float32(df["full"].median())  # no indicator: median only
    assert list(col["city=(missing)"]) == [1, 0, 0]
    city = [i for i, n in enumerate(names) if n.startswith("city=")]
    assert out[1, city].sum() == 0  # an unseen category: all zeros, as before
    assert col["city=Lyon"][2] == 1
    # a missing value in a column that had none when fitted: all zeros, like an unseen value
    kind = [i for i, n in enumerate(names) if n.startswith("kind=")]
    assert out[1, kind].sum() == 0 and out[2, names.index("kind=v")] == 1
    assert np.array_equal(roundtrip(prep).transform(new), out)


def test_missing_category_is_kept_by_max_categories():
    values = ["a"] * 30 + ["b"] * 20 + ["c"] * 5 + [None] * 2
    df = pd.DataFrame({"cat": values, "y": np.arange(len(values)) % 2})
    prep = TabularPreparer("y", max_categories=2).fit(df)
    assert prep.feature_names_out() == ["cat=(missing)", "cat=a"]
    assert prep.report["categories"]["cat"] == {"n_seen": 4, "n_kept": 2}
    assert prep.transform(df.iloc[-1:]).tolist() == [[1.0, 0.0]]


def test_a_real_value_named_missing_does_not_merge_with_the_missing_category():
    df = pd.DataFrame({"cat": ["(missing)", "a", None, "a"] * 5, "y": [0, 1] * 10})
    prep = TabularPreparer("y").fit(df)
    assert prep.feature_names_out() == ["cat=((missing))", "cat=(missing)", "cat=a"]
    assert prep.transform(df.iloc[:3]).tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]


# ---- the role table ---------------------------------------------------------------------------


def test_role_table_says_what_was_done_per_column():
    df = make_frame()
    prep = TabularPreparer("label").fit(df)
    rows = {
        line.split()[0]: line for line in prep.summary().splitlines()[3:] if line[:4] == " " * 4
    }
    n_x, n_city = int(df["x"].isna().sum()), int(df["city"].isna().sum())
    median = float(df["x"].median())
    assert rows["x"].endswith(f"; {n_x} missing -> median {median:.6g} + indicator")
    assert rows["city"].endswith(f"; {n_city} missing -> own category '(missing)'")
    assert "missing" not in rows["full"] and "missing" not in rows["kind"]
    assert "1 missing indicators" in prep.summary()
    df["note"] = [None if i % 5 == 0 else f"words here {i % 7} and there" for i in range(len(df))]
    text = TabularPreparer("label", text=["note"]).fit(df).summary()
    assert f"; {len(df[::5])} missing -> empty string\n" in text
    old = TabularPreparer("label", add_indicators=False, missing_category=False).fit(df)
    text = old.summary()
    assert f"{n_x} missing -> median {median:.6g}\n" in text + "\n"
    assert f"{n_city} missing -> most frequent " in text


# ---- saved preparers ---------------------------------------------------------------------------


def test_roundtrip_with_the_new_fields_is_bit_identical():
    df = make_frame(200, seed=1)
    prep = TabularPreparer("label").fit(df.iloc[:150])
    again = roundtrip(prep)
    assert again.state_ == prep.state_ and again.to_dict() == prep.to_dict()
    assert np.array_equal(again.transform(df), prep.transform(df))
    assert again.summary() == prep.summary()


#: a preparer as written before missing indicators were the default and missing categories
#: existed (no ``missing_category`` in the config, no ``categorical.missing`` in the state)
OLD_FORMAT = {
    "format": "lucidnet.prep",
    "version": 1,
    "config": {
        "target": "y",
        "task": None,
        "numeric": [],
        "categorical": [],
        "text": [],
        "drop": [],
        "scaling": "none",
        "add_indicators": False,
        "text_mode": "tfidf",
        "max_features": 20000,
        "ngram_range": [1, 2],
        "min_df": None,
        "max_len": None,
        "max_categories": 100,
    },
    "state": {
        "columns": {"numeric": ["x"], "categorical": ["c"], "text": []},
        "indicators": [],
        "numeric": {"fill": [4.5], "scaler": {"kind": "none", "n_samples_seen": 10}},
        "categorical": {"fill": ["b"], "categories": [["a", "b"]], "n_seen": {"c": 2}},
        "roles": {
            "x": ["numeric", "numbers", "float64"],
            "c": ["categorical", "few distinct values", "object"],
            "y": ["target", "target", "int64"],
        },
    },
    "target": {
        "name": "y",
        "task": "classification",
        "reason": "set by user",
        "rows_in": 10,
        "rows_dropped_missing": 0,
        "classes": [0, 1],
    },
    "fit_report": {
        "rows_fit": 10,
        "imputed": {
            "x": {"count": 2, "value": 4.5, "how": "median"},
            "c": {"count": 3, "value": "b", "how": "most frequent"},
        },
        "min_df": 1,
    },
}


def test_old_format_loads_and_predicts_as_before():
    prep = TabularPreparer.from_dict(copy.deepcopy(OLD_FORMAT))
    assert prep.feature_names_out() == ["x", "c=a", "c=b"]
    new = pd.DataFrame({"x": [np.nan, 1.0, 2.0], "c": [None, "a", "zzz"]})
    # missing: the median and the most frequent value, no indicator; unseen: all zeros
    assert prep.transform(new).tolist() == [[4.5, 0, 1], [1, 1, 0], [2, 0, 0]]
    text = prep.summary()
    assert "2 missing -> median 4.5" in text and "+ indicator" not in text
    assert "3 missing -> most frequent 'b'" in text
    # saved again, it keeps the old format's state (no missing category) and predictions
    again = roundtrip(prep)
    assert "missing" not in again.state_["categorical"]
    assert np.array_equal(again.transform(new), prep.transform(new))


def test_old_behaviour_still_available_and_equal_to_the_old_format():
    df = make_frame()
    prep = TabularPreparer("label", add_indicators=False, missing_category=False).fit(df)
    st = prep.to_dict()["state"]
    assert "missing" not in st["categorical"] and st["indicators"] == []
    mode = df["city"].mode().sort_values().iloc[0]
    assert st["categorical"]["fill"][0] == mode
    out = prep.transform(pd.DataFrame({"x": [1.0], "full": [0.0], "city": [None], "kind": ["u"]}))
    assert out[0, prep.feature_names_out().index(f"city={mode}")] == 1


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c: c.update(missing=["zzz", None]), r"missing\[0\] must be null or"),
        (lambda c: c.update(missing=["Lyon", None]), r"missing\[0\] must be null or"),
        (lambda c: c.update(missing=[None, None]), r"fill\[0\] must not be a category"),
        (lambda c: c.update(missing=["(missing)"]), "must be a list of 2 strings or nulls"),
        (lambda c: c.update(missing="(missing)"), "must be a list of 2 strings or nulls"),
        (lambda c: c.update(missing=[1, None]), r"missing\[0\] must be null or"),
        (lambda c: c["fill"].__setitem__(1, "u"), r"fill\[1\] must not be a category"),
        (lambda c: c.update(extra=1), "state.categorical must have the keys"),
    ],
)
def test_malformed_missing_categories_are_refused(mutate, match):
    d = TabularPreparer("label").fit(make_frame()).to_dict()
    mutate(d["state"]["categorical"])
    with pytest.raises(ValueError, match=match):
        TabularPreparer.from_dict(d)


# ---- why: missingness that carries information ---------------------------------------------


def informative_frame(n: int, seed: int) -> pd.DataFrame:
    """Airline-tweet-like: ``reason`` is given exactly for complaints (label 1) and missing
    otherwise; ``income`` is missing exactly for label 0 and otherwise centred on its median.
    Filling either with a typical value hides the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    reasons = rng.choice(
        ["Customer Service Issue", "Late Flight", "Lost Luggage"], n, p=[0.6, 0.3, 0.1]
    )
    return pd.DataFrame(
        {
            "reason": np.where(y == 1, reasons, None),
            "income": np.where(y == 0, np.nan, rng.normal(0.0, 1.0, n)),
            "noise": rng.normal(size=n),
            "label": y,
        }
    )


@pytest.mark.parametrize("column", ["reason", "income"])
def test_informative_missingness_beats_imputation(column):
    train, test = informative_frame(400, seed=0), informative_frame(400, seed=1)
    keep = [column, "noise", "label"]
    scores = {}
    for name, kwargs in {
        "new": {},
        "mode/median": {"add_indicators": False, "missing_category": False},
    }.items():
        prep = TabularPreparer("label", task="classification", **kwargs).fit(train[keep])
        clf = LogisticRegression(max_iter=1000).fit(prep.transform(train[keep]), train["label"])
        scores[name] = clf.score(prep.transform(test[keep]), test["label"])
    assert scores["new"] >= 0.99
    assert scores["mode/median"] < 0.85
