"""Resource limits: checked before the work they guard, and a trained model never lost at save.

* Classes: a 10,000-class target is refused before any fitting, in a moment, naming
  ``--max-classes``; with the limit raised, the model file's header (its 10,000 x 10,000 test
  confusion matrix) is found too large before training.
* Memory: a text column whose TF-IDF matrix would not fit the available memory (simulated by
  replacing :func:`lucidnet.data.limits.available_memory`) is refused before any text is
  tokenised, with the estimate and the ``--max-features`` that fits; that value then trains.
* The model file: its header estimate bounds real files; when saving fails anyway the model is
  kept (without the run's description, or under another name) with one line saying so.
* Scale: a 2,000,000-row CSV trains one epoch in a subprocess whose peak RSS stays within
  ``RSS_BASELINE + BYTES_PER_ROW * rows`` (measured with ``getrusage(RUSAGE_CHILDREN)``).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import run

import lucidnet as ln
from lucidnet.callbacks import History
from lucidnet.cli import saving
from lucidnet.data import limits, prep
from lucidnet.data.prep import TabularPreparer

ROOT = Path(__file__).resolve().parent.parent


def one_error_line(code: int, err: str) -> str:
    """The single ``lucidnet: error:`` line of a refused command (exit status 2)."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lucidnet: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Fitting the preparation or training the network fails the test: refusals come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the limit was checked")

    monkeypatch.setattr(ln.Sequential, "fit", forbidden)
    return forbidden


# ---- classes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k10000(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    n = 20_000
    path = tmp_path_factory.mktemp("classes") / "k10000.csv"
    pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "y": [f"c{i % 10_000}" for i in range(n)],
        }
    ).to_csv(path, index=False)
    return path


def test_10000_classes_refused_before_any_work_in_well_under_a_second(
    k10000, tmp_path, no_work, monkeypatch
):
    monkeypatch.setattr(TabularPreparer, "_fit", no_work)  # not even the preparation
    start = time.perf_counter()
    code, out, err = run(["train", k10000, "--target", "y", "--out", tmp_path / "m.lnet"])
    seconds = time.perf_counter() - start
    line = one_error_line(code, err)
    assert "target column 'y' has 10,000 distinct classes" in line
    assert "more than the limit of 1,000 (--max-classes)" in line
    assert "raise --max-classes" in line and "--task regression" in line
    assert seconds < 1.0, seconds  # reading 20,000 rows and their labels, nothing else
    assert not (tmp_path / "m.lnet").exists() and out == ""


def test_class_limit_in_the_python_api_names_the_parameter(no_work, monkeypatch):
    monkeypatch.setattr(TabularPreparer, "_fit", no_work)
    df = pd.DataFrame({"x": np.arange(60.0) % 7 + 0.5, "y": [f"c{i % 30}" for i in range(60)]})
    limit = r"30 distinct classes.*limit of 20 \(max_classes\)"
    with pytest.raises(limits.LimitError, match=limit):
        prep.prepare(df, "y", max_classes=20)
    assert isinstance(limits.LimitError(lambda opt: ""), ValueError)  # callers catching ValueError
    monkeypatch.undo()
    data = prep.prepare(df, "y", max_classes=None, test_size=0.0, val_size=0.0)  # no limit
    assert len(data.preparer.classes_) == 30


def test_more_classes_than_a_model_file_holds_refused_before_training(k10000, tmp_path, no_work):
    code, _, err = run(
        ["train", k10000, "--target", "y", "--max-classes", "10000", "--out", tmp_path / "m.lnet"]
    )
    line = one_error_line(code, err)
    assert "the model file could not be saved: its header would need up to" in line
    assert "lucidnet.io.MAX_HEADER_BYTES" in line and "nothing was trained" in line
    assert "10,000 x 10,000 confusion matrix" in line and "--test-size 0" in line


def test_max_classes_option_is_checked():
    code, _, err = run(["train", "x.csv", "--target", "y", "--max-classes", "1"])
    assert "expected an integer >= 2, got '1'" in one_error_line(code, err)


# ---- memory -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    """4,000 rows of a 12-word text over 3,000 words (a vocabulary far above 5,000 terms)."""
    rng = np.random.default_rng(1)
    words = np.array([f"w{i}" for i in range(3000)])
    text = [" ".join(rng.choice(words, 12)) for _ in range(4000)]
    path = tmp_path_factory.mktemp("text") / "reviews.csv"
    pd.DataFrame({"text": text, "y": rng.integers(0, 2, 4000)}).to_csv(path, index=False)
    return path


def test_tfidf_matrix_that_does_not_fit_is_refused_before_any_work(
    reviews, tmp_path, no_work, monkeypatch
):
    # a machine with 50 MB free: the matrix may take 80% of it, 40 MB; 4,000 rows x 5,000
    # TF-IDF terms x 4 bytes = 80 MB does not fit, 4,000 x 2,500 x 4 = 40 MB does
    monkeypatch.setattr(limits, "available_memory", lambda: 50_000_000)
    monkeypatch.setattr(TabularPreparer, "_fit_tfidf", no_work)  # nothing tokenised
    code, out, err = run(["train", reviews, "--target", "y", "--out", tmp_path / "m.lnet"])
    line = one_error_line(code, err)
    assert "the prepared feature matrix would need about 80.0 MB" in line
    assert "4,000 rows of all splits x 5,000 float32 features x 4 bytes" in line
    assert "1 text column x up to 5,000 TF-IDF terms (--max-features)" in line
    assert "more than the 40.0 MB it may use (80% of the 50.0 MB of memory available now)" in line
    assert "lower --max-features to at most 2,500" in line and "--max-memory" in line
    assert out == ""


def test_the_suggested_max_features_fits_and_trains(reviews, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 50_000_000)
    argv = ["train", reviews, "--target", "y", "--epochs", "1", "--quiet", "--max-features"]
    code, out, err = run([*argv, "2500", "--out", tmp_path / "m.lnet"])
    assert code == 0, err
    assert ln.load(tmp_path / "m.lnet").input_shape[0] <= 2500


def test_memory_limit_in_the_python_api_and_the_max_memory_option(reviews, tmp_path, no_work):
    df = pd.read_csv(reviews)
    with pytest.raises(limits.LimitError, match=r"set with max_memory\).*max_features to at most"):
        prep.prepare(df, "y", max_memory=10_000_000)
    code, _, err = run(["train", reviews, "--target", "y", "--max-memory", "10M"])
    line = one_error_line(code, err)
    assert "more than the 10.0 MB it may use (set with --max-memory)" in line
    assert "lower --max-features to at most 625" in line
    code, _, err = run(["train", reviews, "--target", "y", "--max-memory", "lots"])
    assert "expected a memory size like 500M, 8G" in one_error_line(code, err)


def test_categories_count_in_the_estimate_and_max_categories_is_an_option(tmp_path):
    rng = np.random.default_rng(2)
    n = 5000
    df = pd.DataFrame({f"c{j}": [f"v{v}" for v in rng.integers(0, 400, n)] for j in range(4)})
    df["y"] = rng.integers(0, 2, n)
    path = tmp_path / "cats.csv"
    df.to_csv(path, index=False)
    # 4 columns x 100 kept categories (the default cap) x 5,000 rows x 4 bytes = 8 MB
    argv = ["train", path, "--target", "y", "--max-memory", "4M", "--epochs", "1", "--quiet"]
    code, _, err = run(argv)
    line = one_error_line(code, err)
    assert "5,000 rows of all splits x 400 float32 features x 4 bytes: 400 one-hot" in line
    assert "lower --max-categories to at most 50" in line
    code, _, err = run([*argv, "--max-categories", "50", "--out", tmp_path / "m.lnet"])
    assert code == 0, err  # 5,000 x 200 x 4 bytes = 4 MB: fits
    assert ln.load(tmp_path / "m.lnet").input_shape == (200,)


def test_available_memory_reads_the_machine():
    free = limits.available_memory()
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo")
    total = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert free is not None and 0 < free <= total


def test_chunked_transform_equals_the_transform_in_one_piece(monkeypatch):
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "city": rng.choice(["Paris", "Lyon", None], n),
            "review": [" ".join(rng.choice(["good", "bad", "film", "plot"], 5)) for _ in range(n)],
            "y": rng.choice(["a", "b", "c"], n),
        }
    )
    whole = prep.prepare(df, "y", add_indicators=True)
    monkeypatch.setattr(prep, "TRANSFORM_CHUNK_BYTES", 1)
    monkeypatch.setattr(prep, "_MIN_CHUNK_ROWS", 7)  # 300 chunks of 7 rows for the training part
    chunked = prep.prepare(df, "y", add_indicators=True)
    for part in ("X_train", "X_val", "X_test"):
        a, b = getattr(whole, part), getattr(chunked, part)
        assert a.dtype == b.dtype == np.float32 and a.shape[1] > 10
        assert np.array_equal(a, b), part
    assert whole.preparer.to_dict() == chunked.preparer.to_dict()
    assert whole.X_train.shape[1] == len(whole.preparer.feature_names_out())


# ---- the model file -----------------------------------------------------------------------------


def header_bytes(path: Path) -> int:
    with open(path, "rb") as fh:
        return struct.unpack("<Q", fh.read(8))[0]


def test_header_estimate_bounds_the_real_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    n = 6000
    df = pd.DataFrame(
        {"x": rng.normal(size=n), "z": rng.normal(size=n), "y": [f"k{i % 300}" for i in range(n)]}
    )
    df.to_csv(tmp_path / "d.csv", index=False)
    seen = {}
    check = saving.check_header_fits

    def spy(args, data, task, classes, metadata):
        seen["parts"] = saving.header_parts(args, data, task, classes, metadata)
        return check(args, data, task, classes, metadata)

    monkeypatch.setattr(saving, "check_header_fits", spy)
    argv = ["train", tmp_path / "d.csv", "--target", "y", "--epochs", "3", "--batch-size", "8"]
    code, _, err = run([*argv, "--quiet", "--out", tmp_path / "m.lnet"])
    assert code == 0, err
    actual, estimate = header_bytes(tmp_path / "m.lnet"), sum(seen["parts"].values())
    assert actual <= estimate <= 1.5 * actual  # an upper bound, and not a loose one
    assert seen["parts"]["test metrics"] > actual / 2  # 300 x 300 confusion matrix: most of it


def test_a_model_file_larger_than_the_free_disk_space_is_refused_before_training(
    small_csv, tmp_path, no_work, monkeypatch
):
    class Full:
        f_bavail, f_frsize = 2, 4096  # 8 kB free

    monkeypatch.setattr(saving.os, "statvfs", lambda path: Full)
    code, _, err = run(["train", small_csv, "--target", "y", "--out", tmp_path / "m.lnet"])
    line = one_error_line(code, err)
    assert f"not enough disk space for the model file '{tmp_path / 'm.lnet'}'" in line
    assert "8.2 kB are free" in line and "nothing was trained" in line


def test_json_bytes_is_the_size_in_the_safetensors_header():
    from safetensors.numpy import save

    for value in ({"a": 'x"y\\z', "é": [1.5, None, "\n"]}, ["c1", "c2"], {"deep": {"k": [1, 2]}}):
        inner = json.dumps(value)
        empty = save({"t": np.zeros(1, np.float32)}, metadata={"lucidnet": ""})
        full = save({"t": np.zeros(1, np.float32)}, metadata={"lucidnet": inner})
        grown = struct.unpack("<Q", full[:8])[0] - struct.unpack("<Q", empty[:8])[0]
        assert grown <= saving.json_bytes(value) <= grown + 8  # (safetensors pads to 8 bytes)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    n = 400
    x = rng.normal(size=n)
    path = tmp_path_factory.mktemp("small") / "small.csv"
    pd.DataFrame(
        {
            "x": x,
            "z": rng.normal(size=n),
            "y": np.where(x > 0.3, "hi", np.where(x < -0.3, "lo", "mid")),
        }
    ).to_csv(path, index=False)
    return path


def test_a_save_that_fails_for_size_keeps_the_model_without_the_run_description(
    small_csv, tmp_path, monkeypatch
):
    import lucidnet.io

    out, full = tmp_path / "m.lnet", tmp_path / "full.lnet"
    # --keep-leaks: y is a threshold function of x, which the leakage guard would exclude
    argv = ["train", small_csv, "--target", "y", "--epochs", "30", "--quiet", "--keep-leaks"]
    assert run([*argv, "--out", full])[0] == 0
    slim = ln.load(full)
    slim.metadata = {**slim.metadata, "test_metrics": None, "saved_without": ["a", "b"]}
    slim.history = None
    slim.save(tmp_path / "slim.lnet")
    # a header limit that the full file exceeds and the network + preparation fit, and an
    # estimate that missed it: the second net is what is tested here
    monkeypatch.setattr(saving, "check_header_fits", lambda *a: 0)
    limit = (header_bytes(full) + header_bytes(tmp_path / "slim.lnet")) // 2
    monkeypatch.setattr(lucidnet.io, "MAX_HEADER_BYTES", limit)
    code, out_text, err = run([*argv, "--out", out, "--metrics-json", tmp_path / "m.json"])
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lucidnet: warning: "), err
    assert f"'{out}' was saved without test metrics and history" in lines[0]
    assert "the network and its data preparation are complete" in lines[0]
    assert "Traceback" not in err and f"Model saved to '{out}'" in out_text
    model = ln.load(out)
    assert model.metadata["saved_without"] == ["test_metrics", "history"]
    assert model.metadata["test_metrics"] is None and model.history is None
    assert json.loads((tmp_path / "m.json").read_text())["test"]["accuracy"] > 0.5  # not lost
    code, predictions, err = run(["predict", out, small_csv])
    assert code == 0 and predictions.startswith("prediction,proba_hi,proba_lo,proba_mid"), err
    code, info, err = run(["info", out])
    assert code == 0 and "Task: classification" in info, err


def test_a_save_that_cannot_write_the_file_keeps_the_model_under_another_name(
    small_csv, tmp_path, monkeypatch
):
    out = tmp_path / "m.lnet"
    real_save = ln.Sequential.save

    def disk_full_for_out(self, path, *args, **kwargs):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(ln.Sequential, "save", disk_full_for_out)
    code, _, err = run(["train", small_csv, "--target", "y", "--epochs", "3", "--out", out])
    line = one_error_line(code, err)
    rescued = tmp_path / f"m.rescued-{os.getpid()}.lnet"
    assert f"No space left on device: '{out}'" in line
    assert f"the trained model was saved to '{rescued}' instead" in line
    assert ln.load(rescued).metadata["task"] == "classification" and not out.exists()


def test_a_long_loss_curve_is_saved_as_means_of_consecutive_steps(small_csv, tmp_path, monkeypatch):
    h = History()
    h.iteration_loss = [float(v) for v in range(95)]
    monkeypatch.setattr(saving, "MAX_SAVED_ITERATION_LOSSES", 10)
    saved, group = saving.history_to_save(h)
    assert group == 10 and saved is not h and len(h.iteration_loss) == 95  # original untouched
    assert saved.iteration_loss == [4.5 + 10 * i for i in range(9)] + [92.0]
    short = History()
    short.iteration_loss = [1.0] * 10
    assert saving.history_to_save(short) == (short, 1)  # short curves are saved as they are
    # through the command: 14 steps per epoch x 4 epochs = 56 losses -> 10 means of 6 steps
    argv = ["train", small_csv, "--target", "y", "--epochs", "4", "--patience", "9"]
    code, _, err = run([*argv, "--batch-size", "20", "--quiet", "--out", tmp_path / "m.lnet"])
    assert code == 0, err
    model = ln.load(tmp_path / "m.lnet")
    steps = model.history.params["steps"] * len(model.history.epoch)
    group = -(-steps // 10)
    assert steps > 10 and len(model.history.iteration_loss) == -(-steps // group) <= 10
    assert model.metadata["training"]["iteration_loss_mean_of"] == group


# ---- scale --------------------------------------------------------------------------------------

#: the documented bound: peak RSS of ``lucidnet train`` on an all-numeric CSV of 5 columns is at
#: most the RSS of a process that has imported lucidnet, pandas and scikit-learn plus this many
#: bytes per row (measured: 2,000,000 rows, ~160 bytes per row, 470 MiB peak on 2 cores).
BYTES_PER_ROW = 250
N_ROWS = 2_000_000

_PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(r.returncode)"
)


def peak_rss(argv: list[str], tmp_path: Path) -> tuple[int, subprocess.CompletedProcess]:
    """Peak RSS (bytes) of the command ``argv``, the only child of a fresh wrapper process."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *argv], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    return int(done.stdout.strip().splitlines()[-1]), done


def test_two_million_rows_train_one_epoch_within_the_memory_bound(tmp_path):
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 1000, N_ROWS), rng.integers(0, 1000, N_ROWS)
    c, d = rng.integers(0, 100, N_ROWS), rng.integers(-50, 50, N_ROWS)
    y = (a + b + 10 * d + rng.integers(0, 300, N_ROWS) > 1000).astype(np.int8)
    csv = tmp_path / "big.csv"
    pd.DataFrame({"a": a, "b": b, "c": c, "d": d, "y": y}).to_csv(csv, index=False)
    del a, b, c, d, y
    imports = "import lucidnet.cli.commands, pandas, sklearn.impute, sklearn.preprocessing"
    baseline, _ = peak_rss([sys.executable, "-c", imports], tmp_path)
    train = [sys.executable, "-m", "lucidnet.cli", "train", str(csv), "--target", "y"]
    start = time.perf_counter()
    peak, done = peak_rss([*train, "--epochs", "1", "--batch-size", "256", "--quiet"], tmp_path)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "Test set (400000 rows): accuracy" in done.stdout
    assert (tmp_path / "big.lnet").exists()
    bound = baseline + BYTES_PER_ROW * N_ROWS
    print(f"2M rows: peak {peak / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB, {seconds:.1f} s")
    assert peak <= bound, (peak / 2**20, baseline / 2**20)
