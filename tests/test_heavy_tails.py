"""Heavy-tailed numeric columns (issue 12): the rule of
:func:`lucidnet.data.columns.heavy_tailed`, the ``log1p`` the preparer applies before imputing
and scaling such a column (said in the role table), its saved state (validated on load; files
written before it load and transform as before), and :meth:`TabularPreparer.out_of_range`.

Generated data only: an orbital-period-like column, log-normal over six orders of magnitude.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lucidnet.data.columns import HEAVY_TAIL_MIN_DISTINCT, HEAVY_TAIL_RATIO, heavy_tailed
from lucidnet.data.prep import TabularPreparer


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """``period`` log-normal (about 0.1 to 1e5, median ~40), ``mass`` normal (not heavy), a
    target that depends on log(period)."""
    rng = np.random.default_rng(seed)
    period = np.exp(rng.normal(np.log(40.0), 2.5, n)).round(3)
    mass = rng.normal(5.0, 1.0, n).round(3)
    df = pd.DataFrame({"period": period, "mass": mass, "y": np.log(period) + mass})
    df.loc[::17, "period"] = np.nan
    return df


# ---- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.exp(np.linspace(-2.0, 11.0, 50)), True),  # 0.14 .. 60,000, median ~ 90
        (np.r_[np.zeros(80), np.round(10 ** np.linspace(0, 5, 20))], True),  # many zeros
        (np.r_[np.arange(1.0, 20.0), 1e4, np.nan], True),  # one huge value, missing ignored
        (np.linspace(0.0, 50.0, 40), False),  # max / median 2
        (np.r_[-1.0, np.exp(np.linspace(-2.0, 11.0, 50))], False),  # a negative value
        (np.r_[np.ones(30), 1e6 * np.ones(3), 2, 3, 4, 5, 6, 7], False),  # 8 distinct: a code
        (np.r_[np.zeros(30), np.nan], False),  # no positive value
        (np.full(5, np.nan), False),
    ],
)
def test_rule(values, expected):
    assert heavy_tailed(np.asarray(values, dtype=np.float64)) is expected


def test_rule_thresholds_are_the_documented_ones():
    x = np.arange(1.0, HEAVY_TAIL_MIN_DISTINCT + 1.0)  # 1 .. 10, median 5.5
    x[-1] = HEAVY_TAIL_RATIO * np.median(x) * 0.99  # just below the ratio
    assert not heavy_tailed(x)
    x[-1] = HEAVY_TAIL_RATIO * np.median(x) * 1.01
    assert heavy_tailed(x)
    assert not heavy_tailed(x[1:])  # one distinct value too few


# ---- the preparer -----------------------------------------------------------------------------


def test_heavy_column_is_log_transformed_then_standardised():
    df = frame()
    prep = TabularPreparer("y").fit(df)
    X = prep.transform(df)
    names = prep.feature_names_out()
    logp = np.log1p(df["period"].to_numpy())
    fill = np.nanmedian(logp)  # imputed in log space
    logp = np.where(np.isnan(logp), fill, logp)
    expected = (logp - logp.mean()) / logp.std()
    np.testing.assert_allclose(X[:, names.index("period")], expected, rtol=1e-5, atol=1e-5)
    # the normal column is untouched (standardised as it is)
    m = df["mass"].to_numpy()
    np.testing.assert_allclose(X[:, names.index("mass")], (m - m.mean()) / m.std(), atol=1e-5)
    st = prep.state_["numeric"]
    assert st["log"] == [True, False]
    assert st["min"][0] == np.nanmin(df["period"]) and st["max"][0] == np.nanmax(df["period"])
    assert prep.report["log1p"] == ["period"]


def test_role_table_says_so():
    df = frame()
    summary = TabularPreparer("y").fit(df).summary()
    (line,) = [s for s in summary.splitlines() if s.strip().startswith("period")]
    lo, hi = np.nanmin(df["period"]), np.nanmax(df["period"])
    assert f"heavy-tailed: {lo:.4g} to {hi:,.0f} -> log1p then standardised" in line
    # the median filled in (that of the log), in the column's own units
    assert f"median {np.expm1(np.nanmedian(np.log1p(df['period']))):.6g}" in line
    (mass,) = [s for s in summary.splitlines() if s.strip().startswith("mass")]
    assert "heavy-tailed" not in mass
    minmax = TabularPreparer("y", scaling="minmax").fit(df).summary()
    assert "-> log1p then min-max scaled" in minmax


def test_option_off_keeps_raw_values():
    df = frame()
    prep = TabularPreparer("y", log_heavy_tails=False).fit(df)
    assert prep.state_["numeric"]["log"] == [False, False]
    assert "heavy-tailed" not in prep.summary()
    with pytest.raises(TypeError, match="log_heavy_tails must be True or False"):
        TabularPreparer("y", log_heavy_tails="yes")


def test_far_value_stays_moderate_after_the_log():
    """The point of the log: a period 10x beyond the training maximum gives a feature of a few
    standard deviations, not hundreds."""
    df = frame()
    far = pd.DataFrame({"period": [10 * np.nanmax(df["period"])], "mass": [5.0]})
    on = TabularPreparer("y").fit(df).transform(far)[0, 0]
    off = TabularPreparer("y", log_heavy_tails=False).fit(df).transform(far)[0, 0]
    assert 2 < on < 6 and off > 50


def test_negative_value_at_transform_time_is_taken_as_zero():
    df = frame()
    prep = TabularPreparer("y").fit(df)
    rows = pd.DataFrame({"period": [-5.0, 0.0, np.nan], "mass": [5.0, 5.0, 5.0]})
    X = prep.transform(rows)
    assert np.isfinite(X).all() and X[0, 0] == X[1, 0]
    assert X[2, 0] == prep.transform(pd.DataFrame({"period": [np.nan], "mass": [5.0]}))[0, 0]


def test_saved_and_reloaded_transform_identically():
    df = frame()
    prep = TabularPreparer("y").fit(df)
    again = TabularPreparer.from_dict(prep.to_dict())
    np.testing.assert_array_equal(prep.transform(df), again.transform(df))
    assert again.state_["numeric"]["log"] == [True, False]


def test_files_written_before_load_and_transform_as_before():
    """A saved preparer without ``log`` / ``min`` / ``max`` (and no ``log_heavy_tails`` in its
    config) transforms exactly as one fitted without the log, and checks no range."""
    df = frame()
    raw = TabularPreparer("y", log_heavy_tails=False).fit(df)
    d = raw.to_dict()
    for key in ("log", "min", "max"):
        del d["state"]["numeric"][key]
    del d["config"]["log_heavy_tails"]
    old = TabularPreparer.from_dict(d)
    np.testing.assert_array_equal(old.transform(df), raw.transform(df))
    far = pd.DataFrame({"period": [1e9], "mass": [5.0]})
    assert old.out_of_range(far) == {} and raw.out_of_range(far) != {}
    assert old.report["log1p"] == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda n: n.update(log=[True]), "state.numeric.log must be a list of 2 booleans"),
        (lambda n: n.update(log=[1, 0]), "state.numeric.log must be a list of 2 booleans"),
        (lambda n: n.update(min=[1e9, 0.0]), "min must not exceed state.numeric.max"),
        (lambda n: n.update(min=[-1.0, 0.0]), "must be >= 0 for a log-transformed column"),
        (lambda n: n.update(max=[float("nan"), 1.0]), "state.numeric.max must hold finite"),
        (lambda n: n.pop("min"), "state.numeric must have the keys"),
    ],
)
def test_malformed_state_is_refused(change, fragment):
    d = TabularPreparer("y").fit(frame()).to_dict()
    change(d["state"]["numeric"])
    with pytest.raises(ValueError, match="malformed preparer dict") as info:
        TabularPreparer.from_dict(d)
    assert fragment in str(info.value)


# ---- out of range -----------------------------------------------------------------------------


def test_out_of_range_counts_far_rows_after_the_log():
    df = frame()
    prep = TabularPreparer("y").fit(df)
    lo, hi = np.nanmin(df["period"]), np.nanmax(df["period"])
    log_span = np.log1p(hi) - np.log1p(lo)
    beyond = np.expm1(np.log1p(hi) + 1.01 * log_span)  # past the margin, in log units
    within = np.expm1(np.log1p(hi) + 0.99 * log_span)  # huge in raw units, but within
    rows = pd.DataFrame(
        {"period": [beyond, within, -1.0, np.nan, hi], "mass": [5.0, 5.0, 5.0, 5.0, 100.0]}
    )
    found = prep.out_of_range(rows)
    assert list(found) == ["period", "mass"]
    assert found["period"].rows == 2 and found["period"].worst == -1.0  # a negative: no log
    m = df["mass"]
    assert found["mass"].rows == 1 and found["mass"].max == m.max() and found["mass"].min == m.min()
    # below the minimum by more than the range, in a column without the log
    low = prep.out_of_range(pd.DataFrame({"period": [1.0], "mass": [m.min() - 1.01 * np.ptp(m)]}))
    assert list(low) == ["mass"] and low["mass"].worst < m.min()
    assert prep.out_of_range(df) == {}


def test_out_of_range_message():
    df = pd.DataFrame({"period": np.r_[np.linspace(0.09, 50.0, 40), 69000.0], "y": 1.0})
    df["y"] = np.arange(len(df))
    prep = TabularPreparer("y", log_heavy_tails=False).fit(df)
    (line,) = prep.input_drift(pd.DataFrame({"period": [730000.0, 3.0]})).messages()
    assert line == (
        "'period': 1 row far outside the training range (730,000 > max 69,000); "
        "predictions for such rows are extrapolations"
    )
    (line,) = prep.input_drift(pd.DataFrame({"period": [-1e5, -2e5]})).messages()
    assert line.startswith("'period': 2 rows far outside the training range (e.g. -200,000 < min")


def test_constant_training_column_uses_its_magnitude_as_margin():
    """Constant 3 in training: far means beyond 3 +- max(1, 3)."""
    df = pd.DataFrame({"c": [3.0] * 20, "x": np.arange(20.0), "y": np.arange(20.0)})
    prep = TabularPreparer("y", numeric=["c"]).fit(df)
    found = prep.out_of_range(pd.DataFrame({"c": [3.5, 5.5, 7.5], "x": 1.0}))
    assert list(found) == ["c"] and found["c"].rows == 1 and found["c"].worst == 7.5
