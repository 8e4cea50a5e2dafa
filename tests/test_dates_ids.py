"""Identifiers hidden in numbers: float-formatted ids and row-number columns (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lucidnet.data.columns import infer_roles
from lucidnet.data.prep import TabularPreparer


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.integers(0, 2, size=n),
        }
    )


def test_float_formatted_ids_with_collisions_are_dropped() -> None:
    df = _frame()
    # tweet ids written with 6 significant digits: huge integers, many repeated
    rng = np.random.default_rng(1)
    df["tweet_id"] = np.round(rng.uniform(5.69e17, 5.71e17, size=len(df)), -12)
    assert df["tweet_id"].nunique() < len(df)
    roles = infer_roles(df, "y")
    assert roles["tweet_id"].role == "identifier"
    assert "2**53" in roles["tweet_id"].reason


def test_float_ids_all_distinct_unnamed_are_dropped() -> None:
    df = _frame()
    df["ref"] = 5.7e17 + np.arange(len(df)) * 1.0e6
    assert infer_roles(df, "y")["ref"].role == "identifier"


def test_id_named_nearly_distinct_integers_are_dropped() -> None:
    df = _frame()
    ids = np.random.default_rng(2).permutation(10_000)[: len(df)].astype(np.float64)
    ids[:3] = ids[3]  # a few duplicates: nearly, not all, distinct
    df["user_id"] = ids
    assert infer_roles(df, "y")["user_id"].role == "identifier"


def test_row_numbers_in_training_rows_are_dropped() -> None:
    df = _frame()
    df["row"] = np.arange(1, len(df) + 1)
    df["n"] = np.arange(len(df)) + 7  # named innocently
    train = np.sort(np.random.default_rng(3).permutation(len(df))[:140])
    shuffled = np.random.default_rng(4).permutation(train)
    for rows in (train, shuffled):
        roles = infer_roles(df.iloc[rows], "y")
        assert roles["n"].role == "identifier", roles["n"]
        assert "row numbers" in roles["n"].reason
        assert roles["row"].role == "identifier"


def test_permutation_of_row_numbers_dropped() -> None:
    df = _frame()
    df["perm"] = np.random.default_rng(5).permutation(len(df))
    assert infer_roles(df, "y")["perm"].role == "identifier"


def test_increasing_feature_not_by_one_is_kept() -> None:
    df = _frame()
    df["t"] = np.arange(len(df)) * 2 + 3  # increasing, step 2
    df["cum"] = np.cumsum(np.random.default_rng(6).integers(1, 4, size=len(df)))
    df["small_ints"] = np.random.default_rng(7).integers(0, 50, size=len(df))
    df["big"] = np.random.default_rng(8).integers(1, 10**6, size=len(df)).astype(float)
    roles = infer_roles(df.iloc[10:150], "y")
    for c in ("t", "cum", "small_ints", "big"):
        assert roles[c].role == "numeric", (c, roles[c])


def test_preparer_drops_float_ids_and_row_numbers() -> None:
    df = _frame()
    df["tweet_id"] = np.round(np.linspace(5.69e17, 5.71e17, len(df)), -12)
    df["n"] = np.arange(len(df))
    rows = np.random.default_rng(9).permutation(len(df))
    prep = TabularPreparer(target="y").fit(df.iloc[rows[:150]])
    assert prep.feature_names_out() == ["x"]
    assert "row numbers" in prep.summary()
    assert prep.report["columns"]["tweet_id"]["role"] == "identifier"
    assert prep.transform(df.iloc[rows[150:]]).shape == (50, 1)


# ---- dates ------------------------------------------------------------------------------------


def _dates_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 700, size=n), unit="D")
    when = day + pd.to_timedelta(rng.integers(0, 86_400, size=n), unit="s")
    offsets = rng.choice(["-0800", "-0500", "+0100"], size=n)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "iso": day.strftime("%Y-%m-%d"),
            "created": [f"{w:%Y-%m-%d %H:%M:%S} {o}" for w, o in zip(when, offsets, strict=True)],
            "dmy": day.strftime("%d/%m/%Y"),
            "code": rng.integers(20150101, 20161231, size=n).astype(str),
            "y": rng.integers(0, 2, size=n),
        }
    )


def test_date_roles_and_formats() -> None:
    roles = infer_roles(_dates_frame(), "y")
    assert roles["iso"].role == "date" and "%Y-%m-%d" in roles["iso"].reason
    assert roles["created"].role == "date"
    assert "%Y-%m-%d %H:%M:%S %z" in roles["created"].reason
    assert roles["dmy"].role == "date" and "%d/%m/%Y" in roles["dmy"].reason
    assert roles["code"].role == "numeric"  # numbers that look like yyyymmdd stay numbers


def test_ambiguous_day_month_is_not_a_date() -> None:
    df = _dates_frame()
    df["amb"] = ["01/02/2020", "03/04/2021", "05/06/2019", "11/12/2018"] * 30
    assert infer_roles(df, "y")["amb"].role != "date"


def test_date_features_fit_transform_and_round_trip() -> None:
    df = _dates_frame()
    df.loc[[3, 7], "iso"] = None
    df.loc[5, "iso"] = "not a date"
    prep = TabularPreparer(target="y").fit(df.iloc[:100])
    names = prep.feature_names_out()
    assert "iso:year" in names and "iso:days" in names and "iso:weekday sin" in names
    assert "created:hour cos" in names and "iso:hour sin" not in names
    assert "iso is missing" in names
    x = prep.transform(df)
    assert x.shape == (len(df), len(names)) and np.isfinite(x).all()
    miss = x[:, names.index("iso is missing")]
    assert miss[[3, 5, 7]].tolist() == [1.0, 1.0, 1.0] and miss.sum() == 3
    assert "format '%Y-%m-%d'" in prep.summary()
    import json

    again = TabularPreparer.from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(again.transform(df.iloc[100:]), x[100:])
    # new rows: a day outside the training range and an unparseable one still give finite rows
    new = df.iloc[:2].copy()
    new["iso"] = ["2030-06-01", "garbage"]
    assert np.isfinite(prep.transform(new)).all()


def test_a_feature_constant_up_to_float_noise_is_not_blown_up() -> None:
    # every date in one month (as in the airline tweets): month sin/cos are constant, but their
    # spread is float noise (~1e-17), which used to be divided by and became +-1 on every row
    rng = np.random.default_rng(5)
    days = pd.Timestamp("2015-02-01") + pd.to_timedelta(rng.integers(0, 28, size=120), unit="D")
    df = pd.DataFrame({"when": days.strftime("%Y-%m-%d"), "y": rng.integers(0, 2, size=120)})
    prep = TabularPreparer(target="y").fit(df)
    names = prep.feature_names_out()
    x = prep.transform(df)
    for name in ("when:month sin", "when:month cos", "when:year"):
        assert np.abs(x[:, names.index(name)]).max() < 1e-6, name
    assert x[:, names.index("when:days")].std() > 0.5  # a real spread is still standardised


def test_date_state_is_strict() -> None:
    prep = TabularPreparer(target="y").fit(_dates_frame())
    d = prep.to_dict()
    d["state"]["dates"]["formats"][0] = "%Q"
    import pytest

    with pytest.raises(ValueError, match="state.dates.formats"):
        TabularPreparer.from_dict(d)
    d = prep.to_dict()
    d["state"]["dates"]["scale"][0][0] = 0.0
    with pytest.raises(ValueError, match="positive"):
        TabularPreparer.from_dict(d)
