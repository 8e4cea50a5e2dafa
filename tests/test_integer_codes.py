"""Integer codes (cyclic hour / month / weekday, category codes), forced date columns
(``dates=`` / ``--date``) and their place in the memory estimate, on generated data (issue 12)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from lucidnet.cli import commands as cli
from lucidnet.data import limits
from lucidnet.data.columns import infer_roles
from lucidnet.data.prep import TabularPreparer, prepare

N = 400


def _codes(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "hr": rng.integers(0, 24, n),
            "month": rng.integers(1, 13, n),
            "dow": rng.integers(1, 8, n),
            "weathersit": rng.integers(1, 5, n),
            "model_year": rng.choice(np.arange(70, 83), n),
            "size": rng.integers(1, 7, n),
            "age": rng.integers(18, 90, n),
            "cylinders": rng.choice([3, 4, 5, 6, 8], n),
            "number": rng.integers(1, 8, n),
            "type_count": rng.integers(0, 5, n),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
        }
    )


def _roles(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {c: (r.role, r.reason) for c, r in infer_roles(df, "y").items()}


def test_cyclic_codes_by_name_and_range():
    roles = _roles(_codes())
    assert roles["hr"] == (
        "cyclic",
        "integer code, 24 values 0-23, name 'hr' -> cyclic hour (sin/cos, period 24)",
    )
    assert roles["month"][1].startswith("integer code, 12 values 1-12, name 'month' -> cyclic")
    assert roles["dow"][0] == "cyclic" and "cyclic weekday (sin/cos, period 7)" in roles["dow"][1]


def test_category_codes_and_well_filled_years_become_categories():
    roles = _roles(_codes())
    assert roles["weathersit"] == (
        "categorical",
        "integer code, 4 values 1-4, name 'weathersit' -> categories (one-hot)",
    )
    assert roles["model_year"][0] == "categorical"
    assert "each year in >= 5 rows" in roles["model_year"][1]


def test_quantities_stay_numeric():
    roles = _roles(_codes())
    for c in ("size", "age", "cylinders", "number", "type_count", "x"):
        assert roles[c][0] == "numeric", (c, roles[c])


@pytest.mark.parametrize(
    ("name", "values", "why"),
    [
        ("hour", np.arange(N) % 30, "values beyond 24: not an hour of day"),
        ("month", (np.arange(N) % 12) + 0.5, "not integers"),
        ("day", np.arange(N) % 3, "a bare 'day' needs 6 or more values"),
        ("day", np.arange(N) % 31 + 1, "days of the month: beyond 7"),
        ("region_code", np.arange(N) % 40, "more than 24 codes"),
        ("status", np.arange(N) % 100, "fewer than 5 rows per value"),
        ("year", np.r_[[1989], 1990 + np.arange(N - 1) % 20], "a year with a single row"),
        ("model", np.arange(N) % 5, "no name word says code"),
        ("weather", np.arange(N) % 2, "two values: one-hot adds nothing"),
    ],
)
def test_the_rule_stays_conservative(name, values, why):
    df = pd.DataFrame({name: values, "y": np.arange(N) % 2})
    assert infer_roles(df, "y")[name].role == "numeric", why


def test_bare_day_with_a_week_of_values_is_a_weekday():
    df = pd.DataFrame({"day": np.arange(N) % 7 + 1, "y": np.arange(N) % 2})
    role = infer_roles(df, "y")["day"]
    assert role.role == "cyclic" and "weekday" in role.reason


def test_cyclic_features_put_23_next_to_0():
    df = pd.DataFrame({"hour": np.arange(N) % 24, "y": np.arange(N) % 3 * 1.5})
    prep = TabularPreparer("y").fit(df)
    assert prep.feature_names_out() == ["hour:sin", "hour:cos"]
    x = prep.transform(pd.DataFrame({"hour": [0, 6, 12, 23]}))
    np.testing.assert_allclose(x[:2], [[0.0, 1.0], [1.0, 0.0]], atol=1e-7)
    near = np.linalg.norm(x[3] - x[0])
    far = np.linalg.norm(x[2] - x[0])
    assert near < 0.3 < 1.9 < far  # 23 h is one hour from midnight, 12 h is opposite
    assert "cyclic: hour: sin, cos of 2 pi hour / 24" in prep.summary()


def test_missing_cyclic_values_take_the_circle_centre_and_an_indicator():
    df = pd.DataFrame({"month": (np.arange(N) % 12 + 1).astype(float), "y": np.arange(N) % 2})
    df.loc[:9, "month"] = np.nan
    prep = TabularPreparer("y").fit(df)
    assert prep.feature_names_out() == ["month:sin", "month:cos", "month is missing"]
    x = prep.transform(pd.DataFrame({"month": [np.nan, 3.0]}))
    np.testing.assert_allclose(x, [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], atol=1e-7)
    assert "10 missing -> sin = cos = 0 (the circle's centre)" in prep.summary()


def test_a_category_code_one_hot_encodes_and_reports_unseen_codes():
    df = _codes()
    prep = TabularPreparer("y").fit(df)
    names = prep.feature_names_out()
    assert [n for n in names if n.startswith("weathersit=")] == [f"weathersit={k}" for k in "1234"]
    new = df.head(5).copy()
    new["weathersit"] = [1, 2, 9, 9, 3]
    drift = prep.input_drift(new)
    assert drift.unseen["weathersit"].rows == 2 and drift.unseen["weathersit"].examples == ["9"]
    x = prep.transform(new)
    cols = [names.index(f"weathersit={k}") for k in "1234"]
    assert x[2, cols].sum() == 0 and x[0, cols].tolist() == [1, 0, 0, 0]


def test_user_roles_override_the_code_rule():
    roles = infer_roles(_codes(), "y", numeric=["hr"], categorical=["month"])
    assert (roles["hr"].role, roles["month"].role) == ("numeric", "categorical")
    assert roles["hr"].reason == "set by user (inferred: cyclic)"


def test_round_trip_and_validation_of_the_cyclic_state():
    df = _codes()
    df.loc[:4, "hr"] = np.nan
    prep = TabularPreparer("y").fit(df)
    d = prep.to_dict()
    assert d["state"]["cyclic"] == {
        "columns": ["hr", "month", "dow"],
        "period": [24, 12, 7],
        "indicator": [True, False, False],
    }
    back = TabularPreparer.from_dict(d)
    np.testing.assert_array_equal(back.transform(df), prep.transform(df))
    assert back.summary() == prep.summary()
    for key, bad, msg in [
        ("period", [24, 1, 7], r"period\[1\] must be an integer >= 2"),
        ("period", [24, 12], "must have 3 entries"),
        ("indicator", [True, False], "list of 3 booleans"),
        ("columns", ["hr", "hr", "dow"], "duplicate"),
    ]:
        broken = TabularPreparer("y").fit(df).to_dict()
        broken["state"]["cyclic"][key] = bad
        with pytest.raises(ValueError, match=msg):
            TabularPreparer.from_dict(broken)
    broken = prep.to_dict()
    del broken["state"]["cyclic"]["indicator"]
    with pytest.raises(ValueError, match="state.cyclic must have the keys"):
        TabularPreparer.from_dict(broken)


def test_a_file_written_before_codes_and_forced_dates_still_loads():
    """An older preparer dict: no ``dates`` / ``exclude`` in its config, no ``cyclic`` block."""
    df = _codes()[["x", "size", "y"]]
    d = TabularPreparer("y").fit(df).to_dict()
    for key in ("dates", "exclude"):
        del d["config"][key]
    back = TabularPreparer.from_dict(d)
    assert back.feature_names_out() == ["x", "size"]
    np.testing.assert_array_equal(back.transform(df), TabularPreparer("y").fit(df).transform(df))


# ---- forced dates ---------------------------------------------------------------------------


def _dated(n: int = 200) -> pd.DataFrame:
    days = pd.date_range("2021-01-01", periods=n, freq="D")
    return pd.DataFrame(
        {
            "day": days.strftime("%Y%m%d").astype(int),  # 8-digit numbers
            "when": days.strftime("%d/%m/%Y"),
            "x": np.arange(n) % 7 * 1.0,
            "y": np.arange(n) % 2,
        }
    )


def test_a_forced_compact_date_column_is_parsed():
    df = _dated()
    assert infer_roles(df, "y")["day"].role == "numeric"  # 20210101 alone is not taken for a date
    role = infer_roles(df, "y", dates=["day"])["day"]
    assert role.role == "date"
    assert role.reason == "set by user (inferred: numeric), dates, format '%Y%m%d'"
    df.loc[3, "day"] = np.nan  # read as floats: 20210101.0 still parses
    prep = TabularPreparer("y", dates=["day"]).fit(df)
    assert "day:year" in prep.feature_names_out()
    x = prep.transform(df)
    names = prep.feature_names_out()
    days = x[:, names.index("day:days")]
    assert np.all(np.diff(np.delete(days, 3)) > 0)  # elapsed days rise with the date
    back = TabularPreparer.from_dict(prep.to_dict())
    np.testing.assert_array_equal(back.transform(df), x)


def test_a_forced_ambiguous_date_reads_day_first_and_says_so():
    df = pd.DataFrame({"d": ["01/02/2020", "03/04/2020", "05/06/2021"] * 10, "y": [0, 1, 2] * 10})
    assert infer_roles(df, "y")["d"].role == "categorical"  # ambiguous: not detected
    role = infer_roles(df, "y", dates=["d"])["d"]
    assert role.role == "date" and "format '%d/%m/%Y'" in role.reason
    assert "(day and month ambiguous: read day first)" in role.reason


def test_a_forced_date_that_does_not_parse_names_the_column_and_values():
    df = _dated()
    df["note"] = ["2021-01-05"] * 150 + ["soon", "later", "n.a.", "never", "x"] * 10
    with pytest.raises(ValueError) as err:
        infer_roles(df, "y", dates=["note"])
    msg = str(err.value)
    assert "column 'note' was given as a date column" in msg
    assert "the best format '%Y-%m-%d' reads 75% of its 200 values" in msg
    assert "['soon', 'later', 'n.a.', 'never', 'x']" in msg
    with pytest.raises(ValueError, match="dates= names unknown columns"):
        infer_roles(df, "y", dates=["nope"])
    with pytest.raises(ValueError, match="given two roles"):
        infer_roles(df, "y", dates=["when"], categorical=["when"])


def _cli(argv: list) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue()


def test_the_date_option_of_the_cli(tmp_path):
    path = tmp_path / "d.csv"
    df = _dated()
    df["note"] = ["2021-01-05"] * 150 + ["soon"] * 50
    df.to_csv(path, index=False)
    base = ["train", path, "--target", "y", "--epochs", "1", "--hidden", "4"]
    code, out = _cli([*base, "--date", "day", "--drop", "note", "--out", tmp_path / "m.lnet"])
    assert code == 0, out
    assert "format '%Y%m%d'" in out and "dates: day: format '%Y%m%d'" in out
    code, out = _cli([*base, "--date", "note", "--out", tmp_path / "n.lnet"])
    assert code == 2
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "column 'note' was given as a date column" in lines[0]
    assert "Traceback" not in out


# ---- the memory estimate --------------------------------------------------------------------


def test_date_and_cyclic_features_count_in_the_memory_estimate():
    w = limits.FeatureWidths(numeric=2, dates=16, cyclic=3, one_hot=4)
    assert w.total == 25 and w.bytes_per_row() == 100
    df = _dated(2000)
    df["hour"] = np.arange(len(df)) % 24
    df = df.drop(columns=["day", "x"])
    # 2,000 rows x (8 date features: 'when' has no time -> 6; + 2 cyclic) x 4 bytes = 64 kB
    with pytest.raises(limits.LimitError) as err:
        prepare(df, "y", max_memory=60_000)
    msg = err.value.message()
    assert "2,000 rows of all splits x 8 float32 features x 4 bytes: 6 from dates, 2 cyclic" in msg
    data = prepare(df, "y", max_memory=70_000)
    assert data.X_train.shape[1] == 8
