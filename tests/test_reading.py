"""Reading real files: separator / decimal / encoding detection (European spreadsheet exports,
tab-separated files), ``--sep`` / ``--decimal`` / ``--encoding`` and the options a model
remembers, compressed CSV (gzip, bz2, xz, zip, zstd), Parquet, and one-line errors for files
that cannot be read. Every file is generated here."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import run

import lucidnet as ln
from lucidnet.data.columns import ReadOptions, infer_roles, read_csv, read_table

TRAIN = ["--target", "label", "--epochs", "8", "--hidden", "16", "--seed", "0"]


def make_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Real-valued measurements (the decimals matter), a category and a 3-class label."""
    rng = np.random.default_rng(seed)
    a, b, c = (rng.normal(20.0, 3.0, n).round(2) for _ in range(3))
    site = rng.choice(["north", "south"], n)
    score = (a - 20.0) + 0.5 * (b - 20.0) + 2.0 * (site == "north")
    label = np.where(score > 2.0, "high", np.where(score < -1.0, "low", "mid"))
    return pd.DataFrame({"a": a, "b": b, "c": c, "site": site, "label": label})


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lucidnet: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def train(tmp_path: Path, data: Path, *extra: str) -> tuple[Path, dict, str]:
    """Train on ``data``; (model file, metrics document, stdout)."""
    out, metrics = tmp_path / f"{data.name}.lnet", tmp_path / f"{data.name}.json"
    code, stdout, err = run(
        ["train", data, *TRAIN, "--out", out, "--metrics-json", metrics, *extra]
    )
    assert code == 0, err
    return out, json.loads(metrics.read_text()), stdout


def predict(model: Path, data: Path, *extra: str) -> pd.DataFrame:
    code, stdout, err = run(["predict", model, data, *extra])
    assert code == 0, err
    return pd.read_csv(io.StringIO(stdout))


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict:
    """The frame as a plain CSV, and a model trained on it with its predictions."""
    d = tmp_path_factory.mktemp("plain")
    df = make_frame()
    path = d / "plain.csv"
    df.to_csv(path, index=False)
    model, metrics, _ = train(d, path)
    return {
        "df": df,
        "path": path,
        "model": model,
        "metrics": metrics,
        "pred": predict(model, path),
    }


# ---- separator and decimal mark -------------------------------------------------------------


def test_european_export_reads_numbers(tmp_path, plain):
    """`;` separators with `,` decimals: the measurements are numbers, as in the plain CSV."""
    path = tmp_path / "eu.csv"
    plain["df"].to_csv(path, sep=";", decimal=",", index=False)
    assert "20," in path.read_text() and ";" in path.read_text()  # really a decimal-comma file
    df, options = read_table(path)
    assert (options.sep, options.decimal) == (";", ",")
    assert options.describe() == "separator ';', decimal ','"
    pd.testing.assert_frame_equal(df, read_csv(plain["path"]))
    roles = infer_roles(df, "label")
    assert [roles[c].role for c in "abc"] == ["numeric"] * 3


def test_european_export_trains_and_predicts_like_plain_csv(tmp_path, plain):
    path = tmp_path / "eu.csv"
    plain["df"].to_csv(path, sep=";", decimal=",", index=False)
    model, metrics, stdout = train(tmp_path, path)
    assert "(separator ';', decimal ',')" in stdout.splitlines()[0]
    assert metrics["test"]["accuracy"] == plain["metrics"]["test"]["accuracy"]
    assert ln.load(model).metadata["reading"] == {"sep": ";", "decimal": ",", "encoding": "utf-8"}
    # predict / evaluate on a file of the same format need no options ...
    pd.testing.assert_frame_equal(predict(model, path), plain["pred"])
    code, out, err = run(["evaluate", model, path])
    assert code == 0 and "accuracy" in out.lower(), err
    # ... and the model trained on the plain CSV reads the European file too (detection)
    pd.testing.assert_frame_equal(predict(plain["model"], path), plain["pred"])


def test_tab_separated(tmp_path, plain):
    path = tmp_path / "data.tsv"
    plain["df"].to_csv(path, sep="\t", index=False)
    df, options = read_table(path)
    assert (options.sep, options.decimal) == ("\t", ".")
    assert options.describe() == "separator tab, decimal '.'"
    pd.testing.assert_frame_equal(df, read_csv(plain["path"]))
    pd.testing.assert_frame_equal(predict(plain["model"], path), plain["pred"])


def test_quoted_separators_do_not_fool_detection(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('name,x\n"a; b; c",1.5\n"d; e",2.5\n"f;g",3.5\n')
    df, options = read_table(path)
    assert options.sep == "," and list(df.columns) == ["name", "x"]
    assert df["x"].dtype == np.float64


def test_plain_semicolon_file_keeps_decimal_point(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b\n1.5;x\n2.25;y\n")
    df, options = read_table(path)
    assert (options.sep, options.decimal) == (";", ".")
    assert df["a"].tolist() == [1.5, 2.25]


# ---- overrides and remembered options -------------------------------------------------------


def test_overrides_win_over_detection(tmp_path, plain):
    path = tmp_path / "eu.csv"
    plain["df"].to_csv(path, sep=";", decimal=",", index=False)
    df, options = read_table(path, decimal=".")  # told: the commas are not decimal marks
    assert options.decimal == "." and not pd.api.types.is_numeric_dtype(df["a"])
    df, options = read_table(path, sep=",")
    assert options.sep == "," and df.shape[1] != 5


def test_encoding_remembered_and_overridden(tmp_path, plain):
    df = plain["df"].assign(site=plain["df"]["site"].map({"north": "Nörd", "south": "Süd"}))
    path = tmp_path / "latin.csv"
    df.to_csv(path, sep=";", decimal=",", index=False, encoding="cp1252")
    code, _, err = run(["train", path, *TRAIN, "--out", tmp_path / "m.lnet"])
    assert_one_line_error(code, err, str(path), "not UTF-8", "--encoding")
    model, _, stdout = train(tmp_path, path, "--encoding", "cp1252")
    assert "encoding 'cp1252'" in stdout.splitlines()[0]
    assert ln.load(model).metadata["reading"]["encoding"] == "cp1252"
    first = predict(model, path)  # the model remembers cp1252
    assert len(first) == len(df)
    code, _, err = run(["predict", model, path, "--encoding", "utf-8"])  # an override wins
    assert_one_line_error(code, err, "not utf-8 text")


def test_stored_options_do_not_block_another_separator(tmp_path, plain):
    """A model trained on a `;` export still reads a plain CSV: the stored separator is only
    preferred when the file splits consistently with it."""
    path = tmp_path / "eu.csv"
    plain["df"].to_csv(path, sep=";", decimal=",", index=False)
    model, _, _ = train(tmp_path, path)
    pd.testing.assert_frame_equal(predict(model, plain["path"]), plain["pred"])


def test_malformed_stored_options_are_ignored_with_a_warning(tmp_path, plain):
    model = ln.load(plain["model"])
    model.metadata["reading"] = {"sep": "\n", "decimal": 3, "encoding": "rot13"}
    crafted = tmp_path / "crafted.lnet"
    model.save(crafted)
    code, out, err = run(["predict", crafted, plain["path"]])
    assert code == 0, err
    assert err.count("stored reading options ignored") == 1 and len(err.splitlines()) == 1
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), plain["pred"])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--sep", "ab"], "single character"),
        (["--sep", '"'], "single character"),
        (["--decimal", "x"], "single character"),
        (["--encoding", "no-such-codec"], "unknown encoding 'no-such-codec'"),
        (["--encoding", "base64"], "unknown encoding 'base64'"),  # a codec, not a text encoding
        (["--sep", ";", "--decimal", ";"], "also the separator"),
    ],
)
def test_bad_options_one_line(tmp_path, plain, argv, fragment):
    code, _, err = run(["train", plain["path"], *TRAIN, "--out", tmp_path / "m.lnet", *argv])
    assert_one_line_error(code, err, fragment)
    code, _, err = run(["predict", plain["model"], plain["path"], *argv])
    assert_one_line_error(code, err, fragment)


def test_option_aliases(tmp_path, plain):
    path = tmp_path / "data.tsv"
    plain["df"].to_csv(path, sep="\t", index=False)
    for sep in ("tab", "\\t", "\t"):
        pd.testing.assert_frame_equal(predict(plain["model"], path, "--sep", sep), plain["pred"])


# ---- compressed files and Parquet -----------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "compression"),
    [(".csv.gz", "gzip"), (".csv.bz2", "bz2"), (".csv.xz", "xz"), (".zip", "zip")],
)
def test_compressed_csv_train_and_predict(tmp_path, plain, suffix, compression):
    path = tmp_path / f"data{suffix}"
    plain["df"].to_csv(path, index=False, compression=compression)
    df, options = read_table(path)
    assert options.compression == compression
    pd.testing.assert_frame_equal(df, read_csv(plain["path"]))
    model, metrics, stdout = train(tmp_path, path)
    assert f"{compression}-compressed" in stdout.splitlines()[0]
    assert metrics["test"] == plain["metrics"]["test"]  # same data, same seed: same model
    pd.testing.assert_frame_equal(predict(model, path), plain["pred"])


def test_compression_found_by_magic_bytes_not_name(tmp_path, plain):
    path = tmp_path / "really_gzip.csv"
    path.write_bytes(gzip.compress(plain["path"].read_bytes()))
    assert read_table(path)[1].compression == "gzip"
    pd.testing.assert_frame_equal(predict(plain["model"], path), plain["pred"])


def test_zstd(tmp_path, plain, monkeypatch):
    path = tmp_path / "data.csv.zst"
    try:
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(plain["path"].read_bytes()))
        pd.testing.assert_frame_equal(read_csv(path), read_csv(plain["path"]))
    except ImportError:
        path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 32)  # the magic number is enough
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed
    code, _, err = run(["predict", plain["model"], path])
    assert_one_line_error(code, err, str(path), "zstd-compressed", "pip install zstandard")


def test_parquet_train_and_predict(tmp_path, plain):
    pytest.importorskip("pyarrow", reason="Parquet input needs pyarrow (lucidnet[parquet])")
    path = tmp_path / "data.parquet"
    plain["df"].to_parquet(path, index=False)
    df, options = read_table(path)
    assert options == ReadOptions("parquet", None, None, None, None)
    model, metrics, stdout = train(tmp_path, path)
    assert "(Parquet)" in stdout.splitlines()[0]
    assert metrics["test"] == plain["metrics"]["test"]
    assert ln.load(model).metadata["reading"] is None
    pd.testing.assert_frame_equal(predict(model, path), plain["pred"])
    pd.testing.assert_frame_equal(predict(model, plain["path"]), plain["pred"])  # and CSV


def test_parquet_without_pyarrow_one_line(tmp_path, plain, monkeypatch):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    # (train: it reads the data first; loading a model file with pyarrow "missing" this way
    # would trip pandas, which takes a None in sys.modules for an imported pyarrow)
    code, _, err = run(["train", path, *TRAIN])
    assert_one_line_error(code, err, str(path), 'pip install "lucidnet[parquet]"')


def test_corrupt_parquet_one_line(tmp_path, plain):
    pytest.importorskip("pyarrow", reason="Parquet input needs pyarrow (lucidnet[parquet])")
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1" + b"\x07" * 64 + b"PAR1")
    code, _, err = run(["predict", plain["model"], path])
    assert_one_line_error(code, err, str(path), "could not be read as Parquet")


# ---- files that are not data ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("binary.csv", bytes(range(256)) * 4, "NUL bytes"),
        ("binary.csv.gz", gzip.compress(bytes(range(256)) * 4), "NUL bytes"),
        ("binary.csv.bz2", bz2.compress(b"\x00\x01\x02garbage" * 50), "NUL bytes"),
        ("cut.csv.gz", gzip.compress(b"a,b\n1,2\n" * 500)[:30], "could not be decompressed"),
        ("fake.csv.gz", b"\x1f\x8b" + b"\x07" * 40, "could not be decompressed"),
        ("two.zip", None, "2 files"),
        ("notgz.csv.gz", b"\x00\x00 not gzip", "not gzip-compressed"),
        ("fake.parquet", b"a,b\n1,2\n", "not Parquet"),
    ],
)
def test_unreadable_files_one_line(tmp_path, plain, name, content, fragment):
    path = tmp_path / name
    if content is None:
        import zipfile

        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("a.csv", "a,b\n1,2\n")
            zf.writestr("b.csv", "a,b\n1,2\n")
    else:
        path.write_bytes(content)
    for argv in (["train", path, *TRAIN], ["predict", plain["model"], path]):
        code, _, err = run(argv)
        assert_one_line_error(code, err, str(path), fragment)
        assert "Traceback" not in err


@pytest.mark.parametrize("compression", ["gzip", "xz", "bz2"])
def test_stream_cut_after_the_head_one_line(tmp_path, plain, compression):
    """The first 64 KiB decompress fine; the rest of the stream is missing."""
    text = make_frame(n=6000).to_csv(index=False).encode()
    assert len(text) > 2 * 65536
    packed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": __import__("lzma").compress}
    blob = packed[compression](text)
    path = tmp_path / f"cut.csv.{compression}"
    path.write_bytes(blob[: int(len(blob) * 0.8)])
    code, _, err = run(["predict", plain["model"], path])
    assert_one_line_error(code, err, str(path), f"{compression}-compressed", "decompressed")


def test_text_that_starts_like_a_magic_number_is_text(tmp_path):
    path = tmp_path / "bz.csv"
    path.write_text("BZh_score,PAR,label\n1.5,2,x\n2.5,3,y\n")
    df, options = read_table(path)
    assert options.compression is None and list(df.columns) == ["BZh_score", "PAR", "label"]
    path.write_text("PAR1,b\n1,2\n")
    assert read_table(path)[1].format == "csv"


def test_utf16_tab_export(tmp_path, plain):
    """Excel's "Unicode text": UTF-16 with a byte-order mark, tab-separated (NUL bytes and all)."""
    path = tmp_path / "unicode.txt"
    plain["df"].to_csv(path, sep="\t", index=False, encoding="utf-16")
    assert b"\x00" in path.read_bytes()
    df, options = read_table(path)
    assert (options.sep, options.encoding) == ("\t", "utf-16")
    pd.testing.assert_frame_equal(df, read_csv(plain["path"]))
    pd.testing.assert_frame_equal(predict(plain["model"], path), plain["pred"])
