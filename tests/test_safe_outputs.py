"""Safe outputs (issue 14): every file lucidnet writes appears whole or not at all, with the
permissions ``open()`` gives, and a predictions CSV cannot run formulas in a spreadsheet.

* the writer (:mod:`lucidnet._files`): permissions under several umasks, an existing file's mode
  kept, an exception or Ctrl-C at any point leaving the old file and no temporary file,
  concurrent writers never mixing, a process killed mid-write by SIGTERM / SIGINT / SIGKILL
  leaving the old file (with a plain ``open()`` writer as the control that shows the test can
  fail), links replaced rather than followed, devices and pipes written in place;
* every output of the command (model, ONNX, predictions CSV, metrics JSON, HTML report, PNG):
  its permissions, and the previous file kept when writing it is interrupted;
* two ``lucidnet train --out same.lnet --overwrite`` processes at once;
* formula injection: OWASP's rule cell by cell, and end to end from hostile class labels.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import run

import lucidnet as ln
from lucidnet import _files
from lucidnet._files import open_atomically, write_bytes_atomically, write_text_atomically
from lucidnet.cli import commands as cli
from lucidnet.cli.commands import neutralise_formula, neutralise_formulas

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and signals")

# the report's confusion matrix draws the hostile labels: matplotlib has no glyph for a tab / CR
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")

HOSTILE = [
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1",
    "-x",
    "\tabc",
    "\rabc",
    "a\r=cmd|' /C calc'!A0",  # a formula after a bare CR: a row of its own if left unquoted
]


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def mode_open_gives(directory: Path, mask: int) -> int:
    """The mode of a new file that ``open(path, "w")`` creates under ``mask``."""
    ref = directory / f"reference-{mask:o}.txt"
    with umask(mask), open(ref, "w") as fh:
        fh.write("x")
    mode = mode_of(ref)
    ref.unlink()
    return mode


def leftovers(directory: Path) -> list[str]:
    """Temporary files a writer left behind (hidden ``.*.tmp``, or the old ``*.tmp``)."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ---- the writer: permissions ------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002, 0o000])
@pytest.mark.parametrize("how", ["bytes", "text", "stream"])
def test_a_new_file_gets_the_mode_open_gives(tmp_path, mask, how):
    path = tmp_path / "out.bin"
    with umask(mask):
        if how == "bytes":
            write_bytes_atomically(path, b"data")
        elif how == "text":
            write_text_atomically(path, "data")
        else:
            with open_atomically(path, "w", newline="") as fh:
                fh.write("data")
    assert mode_of(path) == mode_open_gives(tmp_path, mask) == 0o666 & ~mask
    assert path.read_bytes() == b"data"


@posix_only
@pytest.mark.parametrize("existing", [0o600, 0o604, 0o640, 0o444])
def test_replacing_a_file_keeps_its_mode_as_open_does(tmp_path, existing):
    ours, ref = tmp_path / "ours", tmp_path / "ref"
    for p in (ours, ref):
        p.write_text("old")
        p.chmod(existing)
    with umask(0o077):  # a umask that would give 0600 to a new file: it must not apply
        write_bytes_atomically(ours, b"new")
        if existing & 0o200:  # open() can only rewrite a file its owner may write
            with open(ref, "w") as fh:
                fh.write("new")
    assert ours.read_bytes() == b"new"
    assert mode_of(ours) == existing == mode_of(ref)


# ---- the writer: whole or not at all ----------------------------------------------------------


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("mode", ["wb", "w"])
def test_an_exception_while_writing_keeps_the_old_file(tmp_path, error, mode):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    with pytest.raises(error):
        with open_atomically(path, mode) as fh:
            fh.write(b"new and half" if mode == "wb" else "new and half")
            fh.flush()
            raise error("stop")
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["f"]


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_an_interrupt_at_each_step_keeps_the_old_file(tmp_path, monkeypatch, step):
    """Ctrl-C after the data is written (at the fsync) or at the rename itself."""
    path = tmp_path / "f"
    path.write_bytes(b"old")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_files.os, step, interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomically(path, b"new" * 100_000)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_a_new_file_that_fails_is_not_created(tmp_path):
    with pytest.raises(RuntimeError):
        with open_atomically(tmp_path / "new") as fh:
            fh.write(b"partial")
            raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_errors_name_the_path_asked_for(tmp_path):
    missing = tmp_path / "no-such-dir" / "m.lnet"
    with pytest.raises(FileNotFoundError) as info:
        write_bytes_atomically(missing, b"x")
    assert info.value.filename == str(missing)
    (tmp_path / "adir").mkdir()
    with pytest.raises(OSError) as info:  # IsADirectoryError on Linux
        write_bytes_atomically(tmp_path / "adir", b"x")
    assert info.value.filename == str(tmp_path / "adir")
    assert leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'"):
        open_atomically(tmp_path / "x", "a")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="encoding and newline apply to mode 'w' only"):
        open_atomically(tmp_path / "x", "wb", encoding="utf-8")  # type: ignore[call-overload]


def test_text_encoding_and_newlines(tmp_path):
    write_text_atomically(tmp_path / "a.txt", "é\n")
    assert (tmp_path / "a.txt").read_bytes() == "é\n".encode().replace(b"\n", os.linesep.encode())
    with open_atomically(tmp_path / "b.csv", "w", newline="") as fh:
        csv.writer(fh).writerow(["a", "b\r\nc"])
    assert (tmp_path / "b.csv").read_bytes() == b'a,"b\r\nc"\r\n'
    (tmp_path / "c.txt").write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(tmp_path / "c.txt", "naïve", encoding="ascii")
    assert (tmp_path / "c.txt").read_text() == "old"
    assert leftovers(tmp_path) == []


@posix_only
def test_a_symbolic_link_is_replaced_not_followed(tmp_path):
    run7 = tmp_path / "run7.lnet"
    run7.write_bytes(b"run 7")
    latest = tmp_path / "latest.lnet"
    latest.symlink_to(run7)
    with umask(0o022):
        write_bytes_atomically(latest, b"run 8")
    assert run7.read_bytes() == b"run 7"  # the run the link pointed to is kept
    assert not latest.is_symlink() and latest.read_bytes() == b"run 8"
    assert mode_of(latest) == 0o644


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_or_device_is_written_in_place(tmp_path):
    """``--out /dev/stdout`` or a named pipe: written into, not renamed over (a rename would
    replace the node itself, /dev/null included when running as root)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_bytes_atomically(fifo, b"through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]
    # (not tried on /dev/null itself: a broken writer run as root would replace the device)


def test_the_writer_is_standard_library_only():
    """A base utility every layer may import: no NumPy, nothing of lucidnet (the import
    contracts check the package side; this checks the third-party side)."""
    tree = ast.parse((ROOT / "lucidnet" / "_files.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in lucidnet._files"
            imported.add((node.module or "").split(".")[0])
    assert {"os", "contextlib"} <= imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# ---- the writer: other processes ----------------------------------------------------------------

#: a child that writes PATH with the atomic writer (or plain open(), the control) slowly, in
#: chunks, saying "writing" once it is well under way so that the parent can signal it mid-write.
SLOW_WRITER = textwrap.dedent(
    """
    import signal, sys, time
    sys.path.insert(0, sys.argv[3])
    from lucidnet._files import open_atomically
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the parent ignores it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    path, how = sys.argv[1], sys.argv[2]
    with (open_atomically(path) if how == "atomic" else open(path, "wb")) as fh:
        for i in range(3000):
            fh.write(b"new " * 256)
            fh.flush()
            if i == 3:
                print("writing", flush=True)
            time.sleep(0.002)
    """
)


@posix_only
@pytest.mark.parametrize(
    "how, sig",
    [
        ("atomic", signal.SIGTERM),
        ("atomic", signal.SIGINT),
        ("atomic", signal.SIGKILL),
        ("plain open", signal.SIGTERM),  # the control: this one must damage the file
    ],
)
def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path, how, sig):
    path = tmp_path / "model.lnet"
    path.write_bytes(b"the previous model")
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(path), how, str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing", child.stderr.read()
        child.send_signal(sig)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert child.returncode != 0  # it was killed before it finished
    if how == "plain open":
        content = path.read_bytes()
        assert content != b"the previous model" and content.startswith(b"new new")
        return
    assert path.read_bytes() == b"the previous model"
    left = leftovers(tmp_path)
    if sig == signal.SIGINT:  # KeyboardInterrupt: the writer removes its temporary file
        assert left == []
    else:  # killed outright: no code runs, a hidden temporary file may remain, never the target
        assert all(name.startswith(".model.lnet.") for name in left), left


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from lucidnet._files import write_bytes_atomically
    path, byte = sys.argv[1], int(sys.argv[2])
    for _ in range(40):
        write_bytes_atomically(path, bytes([byte]) * 2**20)
    """
)


def test_concurrent_writers_never_leave_a_mixed_or_partial_file(tmp_path):
    """Three processes rewrite the same 1 MiB file 40 times each while it is read over and
    over: every read is one writer's whole file."""
    path = tmp_path / "same.bin"
    path.write_bytes(bytes([0]) * 2**20)
    children = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(path), str(k), str(ROOT)])
        for k in (1, 2, 3)
    ]
    seen = set()
    reads = 0
    while any(c.poll() is None for c in children) or reads == 0:
        data = path.read_bytes()
        reads += 1
        assert len(data) == 2**20
        assert data.count(data[:1]) == len(data), "a mixed file"
        seen.add(data[0])
    assert [c.wait(timeout=60) for c in children] == [0, 0, 0]
    assert seen & {1, 2, 3}, seen  # the reader did see the writers' files
    assert path.read_bytes()[0] in (1, 2, 3)
    assert sorted(os.listdir(tmp_path)) == ["same.bin"]


# ---- formula injection: the rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    "cell, written",
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
        ("+1", "'+1"),  # no number is written with a '+': text someone chose
        ("-x", "'-x"),
        ("\tabc", "'\tabc"),
        ("\rabc", "'\rabc"),
        ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"),
        ("-1 ", "'-1 "),
        ("-١", "'-١"),  # not an ASCII number
        ("=", "'="),
        # numbers, and text that is a number as Python / pandas write one: untouched
        ("-1", "-1"),
        ("-1.5", "-1.5"),
        ("-0.", "-0."),
        ("-1e-05", "-1e-05"),
        ("-2.5E+10", "-2.5E+10"),
        ("1", "1"),
        (-1.5, -1.5),
        (-3, -3),
        (np.float32(-0.25), np.float32(-0.25)),
        (None, None),
        # harmless text
        ("", ""),
        ("abc", "abc"),
        ("a=b", "a=b"),
        ("proba_=cmd|' /C calc'!A0", "proba_=cmd|' /C calc'!A0"),
        ("'=already", "'=already"),
    ],
)
def test_formula_rule(cell, written):
    assert neutralise_formula(cell) == written
    assert type(neutralise_formula(cell)) is type(written)


def test_formula_rule_on_a_table_keeps_numeric_columns():
    table = pd.DataFrame(
        {
            "prediction": ["=1+1", "-1", "ok", None],
            "=header": [-1.5, 2.0, -0.0, np.nan],
            "-1": [-1, 2, 3, 4],
            "flag": [True, False, True, False],
        }
    )
    out = neutralise_formulas(table)
    assert out is table  # in place: no copy of a large table
    assert list(out.columns) == ["prediction", "'=header", "-1", "flag"]
    assert out["prediction"].tolist()[:3] == ["'=1+1", "-1", "ok"]
    assert pd.isna(out["prediction"].iloc[3])
    assert out["'=header"].dtype == np.float64
    assert out["'=header"].tolist()[:3] == [-1.5, 2.0, -0.0]
    assert out["-1"].tolist() == [-1, 2, 3, 4] and out["-1"].dtype == np.int64
    assert out["flag"].dtype == bool
    text = out.to_csv(index=False)
    assert text.splitlines()[1] == "'=1+1,-1.5,-1,True"


def test_a_carriage_return_in_a_cell_switches_to_crlf_so_it_is_quoted():
    plain = pd.DataFrame({"prediction": ["a", "'-b"], "proba_a": [0.5, -0.5]})
    assert cli.csv_line_end(plain) is None  # the usual output is unchanged
    sneaky = pd.DataFrame({"prediction": ["ok", "a\r=cmd|' /C calc'!A0"], "p": [0.5, 1.0]})
    assert cli.csv_line_end(sneaky) == "\r\n"
    text = sneaky.to_csv(index=False, lineterminator=cli.csv_line_end(sneaky))
    assert text == "prediction,p\r\nok,0.5\r\n\"a\r=cmd|' /C calc'!A0\",1.0\r\n"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["prediction", "p"], ["ok", "0.5"], ["a\r=cmd|' /C calc'!A0", "1.0"]]
    header = pd.DataFrame({"x\ry": [1.0]})
    assert cli.csv_line_end(header) == "\r\n"


# ---- the command's outputs ----------------------------------------------------------------------


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """As a user's CSV file would be: RFC 4180, CR inside a cell quoted (pandas' default "\\n"
    line end leaves a bare CR unquoted before Python 3.11.9)."""
    df.to_csv(path, index=False, lineterminator="\r\n")


def hostile_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A learnable table whose class labels are the hostile strings (the class is the bin of x)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, len(HOSTILE), n)
    return pd.DataFrame(
        {
            "x": x.round(4),
            "noise": rng.normal(0.0, 1.0, n).round(4),
            "label": [HOSTILE[int(v)] for v in x],
        }
    )


TRAIN = ["--target", "label", "--epochs", "15", "--hidden", "8", "--lr", "0.05",
         "--no-diagnostics", "--quiet"]  # fmt: skip
MASK = 0o027  # a umask that no default gives: new files 0640


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """Every kind of output the command writes, written under MASK."""
    d = tmp_path_factory.mktemp("outputs")
    write_csv(hostile_frame(), d / "data.csv")
    paths = {ext: d / f"out.{ext}" for ext in ("lnet", "json", "html", "csv", "eval.json", "png")}
    with umask(MASK):
        steps = [
            ["train", d / "data.csv", *TRAIN, "--out", paths["lnet"],
             "--metrics-json", paths["json"], "--report", paths["html"]],
            ["predict", paths["lnet"], d / "data.csv", "--out", paths["csv"]],
            ["evaluate", paths["lnet"], d / "data.csv", "--metrics-json", paths["eval.json"]],
        ]  # fmt: skip
        if _has("matplotlib"):
            steps.append(["lr-find", d / "data.csv", "--target", "label", "--hidden", "8",
                          "--plot", paths["png"]])  # fmt: skip
        if _has("onnx"):
            paths["onnx"] = d / "out.onnx"
            steps.append(["export", paths["lnet"], "--onnx", paths["onnx"]])
        for argv in steps:
            code, _, err = run(argv)
            assert code == 0, (argv[0], err)
    paths["dir"] = d
    return paths


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@posix_only
def test_every_output_has_the_mode_open_gives(outputs):
    expected = mode_open_gives(outputs["dir"], MASK)
    assert expected == 0o640
    written = {k: p for k, p in outputs.items() if k != "dir" and p.exists()}
    assert {"lnet", "json", "html", "csv", "eval.json"} <= set(written)
    for key, path in written.items():
        assert mode_of(path) == expected, (key, oct(mode_of(path)))
    assert leftovers(outputs["dir"]) == []


def read_cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_predictions_csv_neutralises_hostile_labels(outputs):
    rows = read_cells(outputs["csv"])
    header, body = rows[0], rows[1:]
    classes = ln.load(outputs["lnet"]).metadata["classes"]
    assert sorted(classes) == sorted(HOSTILE)
    # headers start with "proba_": never a formula, written as they are
    assert header == ["prediction"] + [f"proba_{c}" for c in classes]
    assert len(body) == 240
    safe = {neutralise_formula(c) for c in HOSTILE}
    assert "a\r=cmd|' /C calc'!A0" in safe  # starts with "a": no prefix, but quoted (below)
    predicted = {row[0] for row in body}
    assert predicted <= safe and len(predicted) >= 4, predicted
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    # the prefix is the only change: strip it and the labels are back
    assert {p[1:] if p.startswith("'") else p for p in predicted} <= set(HOSTILE)
    # the cells with a CR are quoted (CRLF line ends), so no reader splits a row there
    assert len(pd.read_csv(outputs["csv"])) == 240
    probabilities = np.array([[float(v) for v in row[1:]] for row in body])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_predictions_to_stdout_are_neutralised_too(outputs):
    code, out, err = run(["predict", outputs["lnet"], outputs["dir"] / "data.csv"])
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert rows == read_cells(outputs["csv"])


def test_numeric_class_labels_and_regression_values_are_untouched(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, 200)
    pd.DataFrame({"x": x.round(4), "y": np.where(x > 0, 1, -1), "v": (x - 10).round(3)}).to_csv(
        tmp_path / "d.csv", index=False
    )
    for target, drop in (("y", "v"), ("v", "y")):
        model = tmp_path / f"{target}.lnet"
        code, _, err = run(
            ["train", tmp_path / "d.csv", "--target", target, "--drop", drop, "--epochs", "5",
             "--hidden", "4", "--no-diagnostics", "--quiet", "--out", model]
        )  # fmt: skip
        assert code == 0, err
        code, _, err = run(["predict", model, tmp_path / "d.csv", "--out", tmp_path / "p.csv"])
        assert code == 0, err
        rows = read_cells(tmp_path / "p.csv")
        cells = [row[0] for row in rows[1:]]
        if target == "y":  # class labels -1 / 1, text in the model: written as numbers
            assert rows[0] == ["prediction", "proba_-1", "proba_1"]
            assert set(cells) <= {"-1", "1"} and "-1" in cells
        else:  # regression: negative values stay numbers
            assert rows[0] == ["prediction"]
            assert all(c.startswith("-") for c in cells)
            assert not any(c.startswith("'") for c in cells)
            [float(c) for c in cells]
        (tmp_path / "p.csv").unlink()


def _interrupt_rename_of(monkeypatch, suffix: str) -> list[str]:
    """Make the atomic writer's rename onto a path ending in ``suffix`` raise KeyboardInterrupt:
    Ctrl-C at the last moment, the new file complete in its temporary file."""
    real = os.replace
    hit = []

    def replace(src, dst, *args, **kwargs):
        if os.fspath(dst).endswith(suffix):
            hit.append(os.fspath(dst))
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(_files.os, "replace", replace)
    return hit


OLD = b"the previous file\n"


@pytest.mark.parametrize("suffix", ["out.lnet", "out.json", "out.html"])
def test_train_interrupted_while_writing_keeps_the_previous_file(tmp_path, monkeypatch, suffix):
    write_csv(hostile_frame(), tmp_path / "data.csv")
    for name in ("out.lnet", "out.json", "out.html"):
        (tmp_path / name).write_bytes(OLD)
    hit = _interrupt_rename_of(monkeypatch, suffix)
    code, _, err = run(
        ["train", tmp_path / "data.csv", *TRAIN, "--out", tmp_path / "out.lnet",
         "--metrics-json", tmp_path / "out.json", "--report", tmp_path / "out.html",
         "--overwrite"]
    )  # fmt: skip
    assert code == 130, err
    assert hit == [str(tmp_path / suffix)]
    assert (tmp_path / suffix).read_bytes() == OLD
    assert leftovers(tmp_path) == []
    if suffix != "out.lnet":  # written before the interrupted one: complete and valid
        assert ln.load(tmp_path / "out.lnet").metadata["target"] == "label"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("saved")
    write_csv(hostile_frame(), d / "data.csv")
    code, _, err = run(["train", d / "data.csv", *TRAIN, "--out", d / "m.lnet"])
    assert code == 0, err
    return d


@pytest.mark.parametrize(
    "command, option, name, needs",
    [
        ("predict", "--out", "p.csv", None),
        ("evaluate", "--metrics-json", "e.json", None),
        ("export", "--onnx", "m.onnx", "onnx"),
        ("lr-find", "--plot", "lr.png", "matplotlib"),
    ],
)
def test_other_outputs_interrupted_keep_the_previous_file(
    saved, tmp_path, monkeypatch, command, option, name, needs
):
    if needs:
        pytest.importorskip(needs)
    target = tmp_path / name
    target.write_bytes(OLD)
    args = {
        "predict": [saved / "m.lnet", saved / "data.csv"],
        "evaluate": [saved / "m.lnet", saved / "data.csv"],
        "export": [saved / "m.lnet"],
        "lr-find": [saved / "data.csv", "--target", "label", "--hidden", "4"],
    }[command]
    hit = _interrupt_rename_of(monkeypatch, name)
    code, _, err = run([command, *args, option, target, "--overwrite"])
    assert code == 130, err
    assert hit == [str(target)]
    assert target.read_bytes() == OLD
    assert leftovers(tmp_path) == []
    monkeypatch.undo()  # and without the interrupt the same command replaces it
    code, _, err = run([command, *args, option, target, "--overwrite"])
    assert code == 0, err
    assert target.read_bytes() != OLD and leftovers(tmp_path) == []


def test_predictions_csv_failing_mid_stream_keeps_the_previous_file(saved, tmp_path, monkeypatch):
    """The CSV is streamed (not built in memory first): a failure after some rows are out
    leaves the previous file, not the first rows of the new one."""
    target = tmp_path / "p.csv"
    target.write_bytes(OLD)
    real_to_csv = pd.DataFrame.to_csv

    def half_then_interrupt(self, buf=None, *args, **kwargs):
        real_to_csv(self.head(len(self) // 2), buf, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_interrupt)
    code, _, err = run(["predict", saved / "m.lnet", saved / "data.csv", "--out", target,
                        "--overwrite"])  # fmt: skip
    assert code == 130, err
    assert target.read_bytes() == OLD
    assert sorted(os.listdir(tmp_path)) == ["p.csv"]


def test_a_report_written_twice_leaves_no_temporary_file(saved, tmp_path, monkeypatch):
    """write_report used a fixed "<name>.tmp" next to the report: a failure left it there."""
    from lucidnet.glassbox.report import write_report

    model = ln.load(saved / "m.lnet")
    target = tmp_path / "r.html"
    write_report(target, model=model, history=model.history)
    first = target.read_text(encoding="utf-8")
    hit = _interrupt_rename_of(monkeypatch, "r.html")
    with pytest.raises(KeyboardInterrupt):
        write_report(target, model=model, history=None, title="second", overwrite=True)
    assert hit and target.read_text(encoding="utf-8") == first
    assert sorted(os.listdir(tmp_path)) == ["r.html"]


# ---- two trainings, one output file -------------------------------------------------------------


def test_two_concurrent_trains_to_the_same_file_leave_one_valid_model(tmp_path):
    """``lucidnet train --out same.lnet --overwrite`` twice at once (different seeds): the file
    is one run's complete model, never a mix of the two (its predictions are those of one
    seed's model, trained again here in-process)."""
    data = tmp_path / "data.csv"
    write_csv(hostile_frame(), data)
    out = tmp_path / "same.lnet"
    out.write_bytes(OLD)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lucidnet.cli",
                "train",
                str(data),
                *TRAIN,
                "--seed",
                str(seed),
                "--out",
                str(out),
                "--overwrite",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for seed in (1, 2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "same.lnet"]
    model = ln.load(out)
    seed = model.metadata["training"]["seed"]
    assert seed in (1, 2)
    ref = tmp_path / "ref.lnet"
    code, _, err = run(["train", data, *TRAIN, "--seed", seed, "--out", ref])
    assert code == 0, err
    X = np.random.default_rng(0).normal(0.0, 1.0, (20, model.input_shape[0])).astype(np.float32)
    np.testing.assert_allclose(model.predict(X), ln.load(ref).predict(X), rtol=1e-5, atol=1e-6)
    assert json.loads(json.dumps(model.metadata["classes"])) == sorted(HOSTILE)


def test_sigterm_during_a_write_keeps_the_previous_file_and_exits_143(
    monkeypatch, capsys, tmp_path
):
    """SIGTERM raises like Ctrl-C inside the command, so a write in progress removes its
    temporary file and the previous output stays; main reports one line and exits 143, and
    the previous SIGTERM handler comes back."""
    import os
    import signal

    from lucidnet._files import open_atomically
    from lucidnet.cli import commands

    target = tmp_path / "out.txt"
    target.write_text("previous")

    def command(args):
        with open_atomically(target, "w") as fh:
            fh.write("half of the new ")
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write
            fh.write("content")
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(commands.COMMANDS, "info", command)
    assert commands.main(["info", "x.lnet"]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "terminated (SIGTERM)" in err[0]
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left
    assert signal.getsignal(signal.SIGTERM) is before
