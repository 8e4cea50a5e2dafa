"""Tests for lucidnet.prep: reading, role / task inference, splitting, fitting on the training rows
only, reporting and pickle-free persistence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lucidnet.data.prep import (
    TabularPreparer,
    as_frame,
    infer_roles,
    infer_task,
    prepare,
    read_csv,
    train_val_test_split,
)

WORDS = "good bad great awful movie film plot acting music boring fun long short".split()


def make_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Every kind of column, with missing values sprinkled in."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.normal(40.0, 10.0, n).round(2),
            "rooms": rng.integers(1, 6, n),
            "city": rng.choice(["Paris", "Lyon", "Nice"], n),
            "flag": rng.choice([True, False], n),
            "review": [" ".join(rng.choice(WORDS, 5)) for _ in range(n)],
            "const": 7,
            "empty": np.nan,
            "code": [f"C{i:04d}" for i in range(n)],
            "label": rng.choice(["a", "b", "c"], n),
        }
    )
    df.loc[::10, "age"] = np.nan
    df.loc[::7, "city"] = None
    df.loc[::13, "review"] = None
    return df


# ---- reading -------------------------------------------------------------------------------


def test_read_csv_ok_and_semicolon(tmp_path):
    p = tmp_path / "ok.csv"
    p.write_text("a,b\n1,x\n2,y\n")
    assert read_csv(p).shape == (2, 2)
    p2 = tmp_path / "semi.csv"
    p2.write_text("a;b;c\n1;2;3\n4;5;6\n")
    assert list(read_csv(p2).columns) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"a,b,c\n", "no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", "NUL"),
        (b"a,b\n\xff\xfe\xfa,1\n", "UTF-8"),
        (b"This is just some prose that somebody saved\nwith a .csv name\n", "look like CSV"),
    ],
)
def test_read_csv_bad_files(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_csv(p)
    assert str(p) in str(info.value)


def test_read_csv_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="directory"):
        read_csv(tmp_path)


def test_as_frame_numpy_and_bad_type():
    df = as_frame(np.zeros((3, 2)))
    assert list(df.columns) == ["x0", "x1"]
    assert list(as_frame(np.zeros(3)).columns) == ["x0"]
    with pytest.raises(TypeError, match="DataFrame"):
        as_frame(42)


# ---- roles ---------------------------------------------------------------------------------


def test_role_inference():
    roles = infer_roles(make_frame(), "label")
    got = {c: r.role for c, r in roles.items()}
    assert got == {
        "id": "identifier",
        "age": "numeric",
        "rooms": "numeric",
        "city": "categorical",
        "flag": "categorical",
        "review": "text",
        "const": "constant",
        "empty": "empty",
        "code": "identifier",
        "label": "target",
    }
    assert all(r.reason for r in roles.values())


def test_numbers_as_text_and_multiword_names():
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "price": [f"{v:.2f}" for v in rng.random(50)],
            "name": [f"{a} {b}" for a, b in zip(rng.choice(WORDS, 50), range(50), strict=True)],
        }
    )
    roles = infer_roles(df)
    assert roles["price"].role == "numeric"
    assert roles["name"].role == "text"


def test_role_overrides():
    df = make_frame()
    prep = TabularPreparer(
        "label", categorical=["rooms"], numeric=["id"], drop=["city"], text=["code"]
    ).fit(df)
    roles = prep.report["columns"]
    assert roles["rooms"]["role"] == "categorical"
    assert roles["id"]["role"] == "numeric"
    assert roles["city"]["role"] == "dropped"
    assert roles["code"]["role"] == "text"
    assert "rooms=3" in prep.feature_names_out()
    assert "city" in prep.report["dropped"]
    assert prep.transform(df.drop(columns=["city", "const", "empty"])).shape[0] == len(df)


def test_override_errors():
    df = make_frame(30)
    with pytest.raises(ValueError, match=r"unknown columns \['nope'\].*available columns"):
        TabularPreparer("label", categorical=["nope"]).fit(df)
    with pytest.raises(ValueError, match="two roles"):
        TabularPreparer("label", categorical=["age"], numeric=["age"]).fit(df)
    with pytest.raises(ValueError, match="target column"):
        TabularPreparer("label", drop=["label"]).fit(df)
    with pytest.raises(ValueError, match="scaling"):
        TabularPreparer(scaling="robust")


# ---- fitting on the training rows only ----------------------------------------------------


def test_imputation_and_scaling_use_training_rows_only():
    df = make_frame()
    train = df.iloc[:100]
    prep = TabularPreparer("label", scaling="none").fit(train)
    j = prep.feature_names_out().index("age")
    filled = prep.transform(pd.DataFrame({**{c: [df[c].iloc[1]] for c in df}, "age": [np.nan]}))
    assert filled[0, j] == np.float32(train["age"].median())
    assert train["age"].median() != df["age"].median()
    assert prep.report["imputed"]["age"]["count"] == int(train["age"].isna().sum())

    std = TabularPreparer("label").fit(train)
    x = std.transform(train)[:, std.feature_names_out().index("rooms")]
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-4
    scale = std.to_dict()["state"]["numeric"]["scaler"]
    assert scale["mean"][1] == pytest.approx(train["rooms"].mean())
    assert scale["mean"][1] != pytest.approx(df["rooms"].mean())

    mm = TabularPreparer("label", scaling="minmax").fit(train)
    x = mm.transform(train)[:, :2]
    assert x.min() == 0.0 and x.max() == 1.0
    assert mm.transform(df)[:, :2].max() >= 1.0  # rows outside the training range are not clipped


def test_unknown_categories_nan_and_extra_columns():
    df = make_frame()
    prep = TabularPreparer("label").fit(df)
    names = prep.feature_names_out()
    cols = [i for i, n in enumerate(names) if n.startswith("city=")]
    new = df.iloc[:3].copy()
    new["city"] = ["Berlin", None, "Lyon"]
    new["extra"] = 1.0
    out = prep.transform(new.drop(columns=["label"]))
    assert out.dtype == np.float32
    assert out[0, cols].sum() == 0  # unseen category -> all zeros
    assert out[1, names.index("city=(missing)")] == 1  # missing -> its own category
    assert out[1, cols].sum() == 1
    assert out[2, names.index("city=Lyon")] == 1
    assert np.isfinite(out).all()


def test_missing_feature_columns_named():
    df = make_frame(60)
    prep = TabularPreparer("label").fit(df)
    with pytest.raises(ValueError, match=r"missing the feature columns \['age', 'city'\]"):
        prep.transform(df.drop(columns=["age", "city"]))


def test_non_numeric_value_in_numeric_column():
    df = make_frame(60)
    prep = TabularPreparer("label").fit(df)
    bad = df.astype({"age": object})
    bad.loc[3, "age"] = "n/a?"
    with pytest.raises(ValueError, match="'age'.*not numbers"):
        prep.transform(bad)


def test_empty_feature_column_reported_and_no_features_error():
    prep = TabularPreparer("label").fit(make_frame(60))
    assert prep.report["dropped"]["empty"].startswith("empty")
    with pytest.raises(ValueError, match="no usable feature columns"):
        TabularPreparer("y").fit(pd.DataFrame({"c": [1] * 5, "e": [np.nan] * 5, "y": range(5)}))


def test_text_column_without_word_tokens_is_dropped_with_its_reason():
    df = make_frame(60)
    df["symbols"] = ["!! ?" if i % 2 else None for i in range(60)]  # no 2+ character words
    prep = TabularPreparer("label", text=["review", "symbols"]).fit(df)
    assert prep.state_["columns"]["text"] == ["review"]
    assert prep.report["dropped"]["symbols"] == (
        "empty: text column without any word tokens in the fitting rows"
    )
    assert prep.transform(df).shape[1] == len(prep.feature_names_out())


def test_add_indicators():
    df = make_frame()
    names = TabularPreparer("label").fit(df).feature_names_out()  # on by default
    assert "age is missing" in names and "city=(missing)" in names
    assert "city is missing" not in names  # the (missing) category already says it
    # the behaviour before missing categories existed: mode fill plus an indicator
    prep = TabularPreparer("label", missing_category=False).fit(df)
    names = prep.feature_names_out()
    assert {"age is missing", "city is missing"} <= set(names)
    assert "city=(missing)" not in names
    out = prep.transform(df)
    assert out[:, names.index("age is missing")].sum() == df["age"].isna().sum()
    assert out[:, names.index("city is missing")].sum() == df["city"].isna().sum()
    off = TabularPreparer("label", add_indicators=False, missing_category=False).fit(df)
    assert not any(n.endswith(" is missing") for n in off.feature_names_out())


# ---- target ---------------------------------------------------------------------------------


def test_missing_target_rows_dropped_and_counted():
    df = make_frame()
    df.loc[::17, "label"] = None
    prep = TabularPreparer("label")
    kept, y = prep.prepare_target(df)
    n_missing = int(df["label"].isna().sum())
    assert len(kept) == len(y) == len(df) - n_missing
    assert prep.target_["rows_dropped_missing"] == n_missing
    assert prep.classes_ == ["a", "b", "c"]
    assert y.dtype == np.int64 and set(y) == {0, 1, 2}
    assert list(prep.decode_target(y[:5])) == list(kept["label"].iloc[:5])


def test_target_errors():
    df = make_frame(40)
    with pytest.raises(ValueError, match=r"'nope' not found.*available columns.*'label'"):
        TabularPreparer("nope").prepare_target(df)
    with pytest.raises(ValueError, match="entirely empty"):
        TabularPreparer("empty").prepare_target(df)
    with pytest.raises(ValueError, match="single class"):
        TabularPreparer("label").prepare_target(df.assign(label="a"))
    prep = TabularPreparer("label")
    prep.prepare_target(df)
    with pytest.raises(ValueError, match="not among the training classes"):
        prep.encode_target(["a", "z"])


def test_regression_target_float32():
    df = pd.DataFrame({"x": np.arange(30.0), "y": np.linspace(0, 1, 30) ** 2})
    prep = TabularPreparer("y")
    _, y = prep.prepare_target(df)
    assert prep.target_["task"] == "regression" and y.dtype == np.float32
    assert prep.classes_ is None


def test_infer_task_rules():
    assert infer_task(["a", "b", "a"]) == "classification"
    assert infer_task(np.array([True, False, True])) == "classification"
    assert infer_task(pd.Series(["x", "y"], dtype="category")) == "classification"
    assert infer_task([0.5, 1.2, 3.3]) == "regression"
    assert infer_task([0, 1, 1, 0]) == "classification"  # binary integers
    assert infer_task(np.repeat([1, 2, 3], 40)) == "classification"  # 3 values <= 5% of 120
    assert infer_task([1, 2, 3, 4, 5, 6]) == "regression"  # 6 values in 6 rows
    assert infer_task(np.arange(1000) % 50) == "regression"  # more than 20 values
    assert infer_task(np.array([0.0, 1.0, np.nan, 2.0] * 30)) == "classification"


# ---- splitting ------------------------------------------------------------------------------


def test_split_stratified_and_seeded():
    y = np.array([0] * 700 + [1] * 200 + [2] * 100)
    s = train_val_test_split(y, test_size=0.2, val_size=0.1, seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == (700, 100, 200)
    assert s.stratified and s.note == ""
    assert len(np.intersect1d(s.train, s.test)) == 0 and len(np.intersect1d(s.val, s.test)) == 0
    assert sorted(np.concatenate([s.train, s.val, s.test])) == list(range(1000))
    for part in (s.train, s.val, s.test):
        assert np.bincount(y[part], minlength=3) / len(part) == pytest.approx([0.7, 0.2, 0.1])
    again = train_val_test_split(y, test_size=0.2, val_size=0.1, seed=3)
    assert np.array_equal(s.test, again.test) and np.array_equal(s.val, again.val)
    other = train_val_test_split(y, test_size=0.2, val_size=0.1, seed=4)
    assert not np.array_equal(s.test, other.test)
    plain = train_val_test_split(1000, seed=3)
    assert not plain.stratified and len(plain.test) == 200


def test_split_errors_and_fallback():
    with pytest.raises(ValueError, match="test_size"):
        train_val_test_split(100, test_size=1.0)
    with pytest.raises(ValueError, match="test_size"):
        train_val_test_split(100, test_size=-0.1)
    with pytest.raises(ValueError, match=r"test_size \+ val_size"):
        train_val_test_split(100, test_size=0.6, val_size=0.4)
    with pytest.raises(ValueError, match="too few"):
        train_val_test_split(2, test_size=0.5, val_size=0.4)
    y = np.array([0] * 30 + [1])  # one row of class 1 cannot be stratified: kept in training
    s = train_val_test_split(y, task="classification", seed=0)
    assert s.stratified and s.note == "could not stratify class 1: a single row, kept in training"
    assert 30 in s.train and (len(s.val), len(s.test)) == (3, 6)
    # Classes of one or two rows: stratifying would leave the validation part empty.
    s = train_val_test_split(np.array([0, 0, 1, 1]), 0.25, 0.25, task="classification")
    assert not s.stratified and [len(p) for p in (s.train, s.val, s.test)] == [2, 1, 1]
    assert "validation part would be empty" in s.note and "plain random split" in s.note
    assert len(train_val_test_split(50, val_size=0.0).val) == 0


# ---- persistence ----------------------------------------------------------------------------


def _roundtrip(prep: TabularPreparer) -> TabularPreparer:
    return TabularPreparer.from_dict(json.loads(json.dumps(prep.to_dict())))


@pytest.mark.parametrize("scaling", ["standard", "minmax", "none"])
def test_roundtrip_bit_identical(scaling):
    df = make_frame()
    d = prepare(df, "label", seed=0, scaling=scaling, add_indicators=True)
    prep, new = d.preparer, make_frame(50, seed=9)
    new.loc[0, "city"] = "Atlantis"
    back = _roundtrip(prep)
    assert any(n.startswith("review:") for n in prep.feature_names_out())
    assert np.array_equal(back.transform(df), prep.transform(df))
    assert np.array_equal(back.transform(new), prep.transform(new))
    assert back.feature_names_out() == prep.feature_names_out()
    assert back.summary() == prep.summary()
    assert back.classes_ == prep.classes_
    assert np.array_equal(back.encode_target(df["label"]), prep.encode_target(df["label"]))


def test_text_ids_mode_and_roundtrip():
    df = make_frame()
    d = prepare(df, "label", seed=0, text_mode="ids", max_len=8)
    prep = d.preparer
    assert not any(n.startswith("review") for n in prep.feature_names_out())
    ids = d.ids_train
    assert ids.shape == (len(d.split.train), 8) and ids.dtype == np.int64
    assert prep.ids_input_dim == len(WORDS) + 2
    unseen = prep.transform_text_ids(df.iloc[:2].assign(review=["zzz qqq good", None]))
    assert list(unseen[0, :3]) == [1, 1, prep.transform_text_ids(df.assign(review="good"))[0, 0]]
    assert unseen[0, 3:].sum() == 0 and unseen[1].sum() == 0  # padding is 0
    back = _roundtrip(prep)
    assert np.array_equal(back.transform_text_ids(df), prep.transform_text_ids(df))
    assert np.array_equal(back.transform(df), prep.transform(df))
    with pytest.raises(ValueError, match="text_mode='ids'"):
        TabularPreparer("label").fit(df).transform_text_ids(df)


def test_from_dict_rejects_malformed():
    good = TabularPreparer("label").fit(make_frame(60)).to_dict()
    with pytest.raises(ValueError, match="expected a dict"):
        TabularPreparer.from_dict([1, 2])
    with pytest.raises(ValueError, match="'format'"):
        TabularPreparer.from_dict({**good, "format": "other"})
    with pytest.raises(ValueError, match="version"):
        TabularPreparer.from_dict({**good, "version": 99})
    bad = json.loads(json.dumps(good))
    bad["state"]["numeric"]["fill"] = [1.0]
    with pytest.raises(ValueError, match="malformed.*numeric.fill"):
        TabularPreparer.from_dict(bad)
    bad = json.loads(json.dumps(good))
    del bad["state"]["categorical"]
    with pytest.raises(ValueError, match="malformed.*categorical"):
        TabularPreparer.from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["config"]["scaling"] = "weird"
    with pytest.raises(ValueError, match="malformed.*scaling"):
        TabularPreparer.from_dict(bad)


# ---- reporting and the one-call path --------------------------------------------------------


def test_report_and_summary():
    df = make_frame()
    df.loc[::17, "label"] = None
    d = prepare(df, "label", seed=0)
    rep = d.preparer.report
    json.dumps(rep)  # JSON-serialisable
    assert rep["target"]["rows_dropped_missing"] == int(df["label"].isna().sum())
    assert rep["rows_fit"] == len(d.split.train) == len(d.X_train)
    assert rep["categories"]["city"] == {"n_seen": 4, "n_kept": 4}  # with "(missing)"
    assert rep["text_vocabulary"]["review"] > 0
    assert rep["n_features_out"] == d.X_train.shape[1]
    assert set(rep["dropped"]) == {"id", "const", "empty", "code"}
    text = d.preparer.summary()
    for word in ("classification", "identifier", "constant", "median", "dropped", "features"):
        assert word in text
    age = rep["imputed"]["age"]
    assert f"{age['count']} missing -> median {age['value']:.6g} + indicator" in text
    city = rep["imputed"]["city"]["count"]
    assert f"{city} missing -> own category '(missing)'" in text


def test_prepare_numpy_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    data = np.column_stack([X, X @ [1.0, -2.0, 0.5]])
    d = prepare(data, "x3", seed=1)
    assert d.preparer.target_["task"] == "regression"
    assert d.X_train.shape == (70, 3) and d.X_test.shape == (20, 3) and d.y_val.shape == (10,)


def test_max_categories_collapses_rare_values():
    values = ["a"] * 30 + ["b"] * 20 + ["c"] * 5 + ["d"] * 2
    df = pd.DataFrame({"cat": values, "y": np.arange(len(values)) % 2})
    prep = TabularPreparer("y", max_categories=2).fit(df)
    assert prep.feature_names_out() == ["cat=a", "cat=b"]
    assert prep.report["categories"]["cat"] == {"n_seen": 4, "n_kept": 2}
    assert prep.transform(df.iloc[-1:]).sum() == 0


@pytest.mark.parametrize("add_indicators", [False, True])
def test_fit_transform_equals_fit_then_transform_bit_for_bit(add_indicators):
    """fit_transform reuses the TF-IDF matrices computed while fitting (each text is tokenised
    once) and writes every block straight into one float32 matrix: the result must be exactly
    fit() then transform(), and the same as stacking the blocks in float64 and casting."""
    df = make_frame(300, seed=3)
    df["notes"] = [f"note {w} and more words here" for w in np.resize(WORDS, 300)]
    a = TabularPreparer("label", add_indicators=add_indicators)
    b = TabularPreparer("label", add_indicators=add_indicators)
    X_ft = a.fit_transform(df)
    X_sep = b.fit(df).transform(df)
    assert X_ft.dtype == np.float32 and np.array_equal(X_ft, X_sep)
    assert sum(n.startswith("notes:") for n in a.feature_names_out()) > 0
    # the straightforward assembly: every block dense in float64, stacked, then cast
    names = a.feature_names_out()
    for (col, _), vec in zip(a._tfidf_state(), a._vectorizers, strict=True):
        cols = [i for i, n in enumerate(names) if n.startswith(f"{col}:")]
        dense = vec.transform(df[col].fillna("").astype(str).tolist()).toarray()
        assert np.array_equal(X_ft[:, cols], dense.astype(np.float32))
    assert a.to_dict() == b.to_dict()


def test_prepare_fits_on_training_rows_with_fit_transform():
    df = make_frame(240, seed=5)
    d = prepare(df, "label", seed=1)
    again = TabularPreparer.from_dict(json.loads(json.dumps(d.preparer.to_dict())))
    train_rows = df.iloc[d.split.train]
    assert np.array_equal(d.X_train, again.transform(train_rows))
    assert np.array_equal(d.X_test, again.transform(df.iloc[d.split.test]))
