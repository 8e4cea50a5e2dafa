"""Streaming a table (lucidnet/data/streaming.py): the statistics equal the in-memory preparer's,
the streamed source trains the same model as arrays, the shuffle buffer is bounded."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

import lucidnet as ln  # noqa: E402
from lucidnet.callbacks import EarlyStopping  # noqa: E402
from lucidnet.data.prep import TabularPreparer  # noqa: E402
from lucidnet.data.streaming import StreamSource, StreamSplit, stream_prepare  # noqa: E402


def _frame(n: int = 1500, seed: int = 0, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"x{i}": rng.normal(i, 1 + i, size=n) for i in range(3)})
    df["heavy"] = np.exp(rng.normal(0, 3, size=n))  # log1p then standardised
    df.loc[rng.random(n) < 0.1, "x1"] = np.nan
    df["cat"] = rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    df.loc[rng.random(n) < 0.05, "cat"] = None
    if regression:
        df["y"] = 2.0 * df.x0 + (df.cat == "a") * 3 + rng.normal(0, 0.1, size=n)
    else:
        df["y"] = np.where(df.x0 + (df.cat == "a") - 0.5 > 0, "yes", "no")
    df.loc[rng.random(n) < 0.02, "y"] = None  # rows without a target are dropped
    return df


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    df = _frame()
    path = tmp_path_factory.mktemp("stream") / "t.parquet"
    df.to_parquet(path, row_group_size=400)
    return df, str(path)


def _train_rows(df: pd.DataFrame, split: StreamSplit, part: int = 0) -> pd.DataFrame:
    has = df["y"].notna().to_numpy()
    rows = np.flatnonzero(has)
    return df.iloc[rows[split.parts(rows) == part]]


def _in_memory(df, split, **kw) -> TabularPreparer:
    prep = TabularPreparer("y", **kw)
    prep.prepare_target(df)
    return prep.fit(_train_rows(df, split))


@pytest.mark.parametrize(
    "kw", [{}, {"scaling": "minmax", "missing_category": False}, {"scaling": "none"}]
)
def test_streamed_statistics_equal_the_in_memory_preparers(table, kw):
    df, path = table
    data = stream_prepare(path, "y", batch_rows=300, max_holdout=None, **kw)
    mem = _in_memory(df, data.split, **kw)
    st, ref = data.preparer.state_, mem.state_
    assert st["columns"] == ref["columns"] and st["indicators"] == ref["indicators"]
    assert st["roles"] == ref["roles"] and st["categorical"] == ref["categorical"]
    num, num_ref = st["numeric"], ref["numeric"]
    for key in ("fill", "log", "min", "max"):
        assert num[key] == pytest.approx(num_ref[key], rel=1e-12), key
    assert num["log"] == [False, False, False, True]
    for key, value in num_ref["scaler"].items():
        assert num["scaler"][key] == (
            value if isinstance(value, str) else pytest.approx(value, rel=1e-9, abs=1e-12)
        ), key
    assert data.preparer.report_["imputed"] == mem.report_["imputed"]
    assert (
        data.preparer.report_["rows_fit"] == mem.report_["rows_fit"] == data.split.counts["train"]
    )
    assert data.preparer.classes_ == ["no", "yes"]
    X_val = mem.transform(_train_rows(df, data.split, 1))
    np.testing.assert_allclose(data.X_val, X_val, rtol=1e-6, atol=1e-6)
    assert data.preparer.target_["rows_dropped_missing"] == int(df.y.isna().sum())


def test_a_csv_streams_to_the_same_preparer_as_parquet(table, tmp_path):
    df, path = table
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    a = stream_prepare(path, "y", batch_rows=300).preparer.state_
    b = stream_prepare(str(csv), "y", batch_rows=300).preparer.state_
    assert a["categorical"] == b["categorical"] and a["columns"] == b["columns"]
    np.testing.assert_allclose(a["numeric"]["scaler"]["mean"], b["numeric"]["scaler"]["mean"])


@pytest.mark.parametrize("regression", [False, True])
def test_streaming_and_in_memory_training_give_the_same_model(tmp_path, regression):
    df = _frame(900, seed=1, regression=regression)
    path = tmp_path / "t.parquet"
    df.to_parquet(path, row_group_size=250)
    data = stream_prepare(str(path), "y", batch_size=32, shuffle=False, batch_rows=100)
    train = _train_rows(df, data.split)
    X = data.preparer.transform(train)
    y = data.preparer.encode_target(train["y"])
    out, loss = (1, "mse") if regression else (2, "cross_entropy")

    def model():
        return ln.Sequential([ln.Dense(16, activation="relu"), ln.Dense(out)])

    a, b = model(), model()
    val = (data.X_val, data.y_val)
    a.fit(X, y, loss=loss, epochs=3, batch_size=32, shuffle=False, seed=4, validation_data=val,
          verbose=0)  # fmt: skip
    hist = b.fit(data.X_train, loss=loss, epochs=3, seed=4, validation_data=val, verbose=0)
    np.testing.assert_allclose(b.predict(data.X_test), a.predict(data.X_test), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(hist["val_loss"], a.history["val_loss"], rtol=1e-4)
    assert hist.params["samples"] == len(X) and hist.params["batch_size"] == 32


def test_the_shuffle_buffer_is_bounded_and_every_row_comes_once(tmp_path):
    n = 12_000
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"x": np.arange(n, dtype=np.float64), "z": rng.normal(size=n)})
    df["y"] = (df.z + rng.normal(0, 0.3, size=n) > 0).astype(np.int64)  # z: no exact leak
    path = tmp_path / "t.parquet"
    df.to_parquet(path, row_group_size=1000)
    data = stream_prepare(str(path), "y", batch_size=50, buffer_rows=1000, batch_rows=500,
                          max_holdout=None, test_size=0.1, val_size=0.1)  # fmt: skip
    source = data.X_train
    assert isinstance(source, StreamSource)
    scaler = data.preparer.state_["numeric"]["scaler"]
    epochs = []
    for epoch in range(2):
        xs = np.concatenate([b[0][:, 0] for b in source.batches(epoch, rng)])
        epochs.append(np.rint(xs * scaler["scale"][0] + scaler["mean"][0]))
    train = _train_rows(df, data.split)["x"].to_numpy()
    for got in epochs:
        np.testing.assert_array_equal(np.sort(got), train)  # each row once
        assert np.mean(np.diff(got) == 1) < 0.05  # not in file order
    assert not np.array_equal(epochs[0], epochs[1])
    assert 1000 <= source.max_rows_held <= 1000 + 500  # buffer + one record batch
    # early stopping on the streamed training with the in-memory validation rows
    model = ln.Sequential([ln.Dense(8, activation="relu"), ln.Dense(2)])
    stop = EarlyStopping("val_loss", patience=1, min_delta=10.0)
    hist = model.fit(source, loss="cross_entropy", epochs=10, seed=0, callbacks=[stop],
                     validation_data=(data.X_val, data.y_val), verbose=0)  # fmt: skip
    assert len(hist.epoch) == 2 and hist.stop_reason == "early_stopping"
    assert hist["val_accuracy"][-1] > 0.8


def test_the_hash_split_is_seeded_and_capped(tmp_path):
    rows = np.arange(100_000)
    a, b = StreamSplit(0.2, 0.1, seed=0), StreamSplit(0.2, 0.1, seed=1)
    parts = a.parts(rows)
    np.testing.assert_array_equal(parts, a.parts(rows))
    assert np.mean(parts == 2) == pytest.approx(0.2, abs=0.01)
    assert np.mean(parts == 1) == pytest.approx(0.1, abs=0.01)
    assert np.mean(parts != b.parts(rows)) > 0.3
    df = _frame(2000)
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    data = stream_prepare(str(path), "y", max_holdout=100)
    assert 60 <= len(data.X_test) <= 140 and 60 <= len(data.X_val) <= 140
    assert "capped" in data.split.note


def test_a_median_from_a_sample_is_said_and_close(table):
    df, path = table
    data = stream_prepare(path, "y", median_sample=200, batch_rows=300)
    assert "median fills from a sample of 200" in data.split.note
    true = np.nanmedian(_train_rows(df, data.split)["x1"])
    assert data.preparer.state_["numeric"]["fill"][1] == pytest.approx(true, abs=0.5)


def test_what_cannot_stream_is_said_clearly(tmp_path):
    df = _frame(300)
    df["words"] = [f"some free text number {i} about things" for i in range(300)]
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    with pytest.raises(ValueError, match=r"not supported when streaming; \['words'\]"):
        stream_prepare(str(path), "y")
    assert stream_prepare(str(path), "y", drop=["words"]).preparer.state_ is not None
    with pytest.raises(ValueError, match="target column 'nope' not found"):
        stream_prepare(str(path), "nope")
    with pytest.raises(ValueError, match="not found"):
        stream_prepare(str(tmp_path / "missing.parquet"), "y")


def test_cli_train_streams_a_large_file_and_predict_streams_its_output(tmp_path, capsys):
    from lucidnet.cli.commands import main

    df = _frame(1200, seed=3)
    data = tmp_path / "big.parquet"
    df.to_parquet(data, row_group_size=300)
    model = tmp_path / "m.lnet"
    # --stream-above 1: any file is "large"
    argv = ["train", str(data), "--target", "y", "--epochs", "2", "--stream-above", "1"]
    assert main([*argv, "--out", str(model), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "Test set" in out.out or "accuracy" in out.out
    meta = ln.load(str(model)).metadata
    assert "seeded hash of the row number" in meta["split"]["note"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["predict", str(model), str(data), "--stream", "--out", str(a)]) == 0
    assert main(["predict", str(model), str(data), "--out", str(b), "--stream-above", "none"]) == 0
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 1201
    assert main([*argv, "--class-weight", "balanced", "--out", str(tmp_path / "x.lnet")]) == 2
    assert "not available when streaming" in capsys.readouterr().err


@pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
def test_evaluate_streams_a_large_file_to_the_in_memory_metrics(tmp_path, capsys, regression):
    """``evaluate`` on a file read in record batches (a batch whose targets are all empty
    among them) gives the in-memory command's metrics, intervals and calibration; a file
    without any target is the same one-line error."""
    import json

    from lucidnet.cli.commands import main

    df = _frame(1200, seed=4, regression=regression)
    df.loc[300:599, "y"] = None  # the second record batch has no labelled row
    data = tmp_path / "big.parquet"
    df.to_parquet(data, row_group_size=300)
    model = tmp_path / "m.lnet"
    train = ["train", str(data), "--target", "y", "--epochs", "2", "--out", str(model), "--quiet"]
    assert main(train) == 0
    docs = []
    for i, how in enumerate((["--stream"], ["--stream-above", "none"])):
        out = tmp_path / f"e{i}.json"
        assert main(["evaluate", str(model), str(data), *how, "--metrics-json", str(out)]) == 0
        docs.append(json.loads(out.read_text()))
    printed = capsys.readouterr().out
    assert "(streamed)" in printed
    for key in ("test_metrics", "rows", "verdict", "calibration"):
        _assert_close(docs[0].get(key), docs[1].get(key), key)
    assert docs[0]["rows"] == int(df["y"].notna().sum())
    empty = tmp_path / "empty.parquet"
    df.assign(y=None).to_parquet(empty, row_group_size=300)
    assert main(["evaluate", str(model), str(empty), "--stream"]) == 2
    assert "entirely empty" in capsys.readouterr().err


def _assert_close(a, b, where: str) -> None:
    """Nested dicts / lists equal, numbers to 1e-6 (predictions in batches of another size
    round differently in float32), timings ignored."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            if k != "seconds":
                _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9), where
    else:
        assert a == b, where
