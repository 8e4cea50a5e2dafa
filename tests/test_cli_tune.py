"""``lucidnet tune``: two workers on one SQLite study, a PostgreSQL study, resuming after Ctrl-C,
the best model file, the report, and one-line errors for bad arguments.

Workers run as real processes (``python -m lucidnet``) where processes matter (two at once,
SIGINT); the rest calls ``main`` in this process. Data: a small generated CSV; few trials of
few epochs each.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
pd = pytest.importorskip("pandas")

from _cli import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    """240 rows: three numeric columns and a category decide a 3-class label."""
    rng = np.random.default_rng(0)
    n = 240
    label = rng.integers(0, 3, n)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n) + 1.5 * (label == 0),
            "b": rng.normal(size=n) + 1.5 * (label == 1),
            "c": rng.normal(size=n),
            "shade": np.where(
                rng.random(n) < 0.7, np.array(["red", "green", "blue"])[label], "grey"
            ),
            "label": np.array(["low", "mid", "high"])[label],
        }
    )
    path = tmp_path_factory.mktemp("tune") / "data.csv"
    df.to_csv(path, index=False)
    return path


def worker(csv: Path, *args) -> subprocess.Popen:
    """``lucidnet tune`` in its own process, with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "lucidnet", "tune", str(csv), "--target", "label"]
    argv += ["--epochs", "4", "--quiet", *map(str, args)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def finished(study) -> list:
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def assert_one_clean_study(study, n: int) -> None:
    """``n`` finished trials, numbered without gaps, none left running, no parameter set
    trained twice; trials beyond ``n`` only as 'surplus' (asked for in the same instant as the
    last one, never trained)."""
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len(finished(study)) == n
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    others = [t for t in trials if t.state.name not in ("COMPLETE", "PRUNED")]
    assert all(t.state.name == "FAIL" and t.user_attrs.get("surplus") for t in others)
    params = [tuple(sorted(t.params.items())) for t in finished(study)]
    assert len(set(params)) == len(params)


def tuned_trial(path: Path) -> int:
    import lucidnet as ln

    return ln.load(path).metadata["tuning"]["trial"]


def test_two_workers_share_one_sqlite_study(csv, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    common = ["--trials", 8, "--epochs", 6, "--storage", url, "--study", "shared"]
    procs = [worker(csv, *common, "--out", tmp_path / f"w{i}.lnet") for i in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=url)
    assert_one_clean_study(study, 8)
    ran = [int(out.split("This worker ran ")[1].split()[0]) for out, _ in results]
    assert sum(ran) == 8, ran  # nothing lost, nothing counted twice
    # both asked for 8 and 8 were run in all: they shared the study. Usually both ran some; on
    # a loaded machine one may finish all 8 before the other has read its data (CI saw that):
    # then that one ran 0 and still saves the study's best (below)
    workers = {t.user_attrs["worker"] for t in finished(study)}
    assert workers and workers <= {f"{socket.gethostname()}:{p.pid}" for p in procs}
    # each worker's --out is a normal model file holding the study's best trial
    best = study.best_trial.number
    for i in range(2):
        assert tuned_trial(tmp_path / f"w{i}.lnet") == best
        code, out, err = run(["predict", tmp_path / f"w{i}.lnet", csv])
        assert code == 0 and out.startswith("prediction,proba_high"), err


def states(db: Path) -> list[tuple[str, int]]:
    """Each trial's state and number of reported epochs, from an Optuna SQLite file (read
    directly: cheap enough to poll)."""
    import sqlite3

    query = (
        "SELECT t.state, (SELECT COUNT(*) FROM trial_intermediate_values v "
        "WHERE v.trial_id = t.trial_id) FROM trials t ORDER BY t.number"
    )
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        return list(con.execute(query))


def test_resume_after_ctrl_c(csv, tmp_path):
    """Ctrl-C while a trial trains (SIGINT in this process, once a trial has finished and the
    next one runs): exit status 130, the running trial failed (not left running), and the same
    command continues the study in the default storage next to --out."""
    out, db = tmp_path / "best.lnet", tmp_path / "best.optuna.db"
    stop = threading.Event()

    def press_ctrl_c() -> None:
        while not stop.wait(0.05):
            with contextlib.suppress(Exception):  # (the file may not exist yet)
                now = states(db)  # a trial done, the next one training (epochs reported)
                if ("COMPLETE", 60) in now and now[-1][0] == "RUNNING" and now[-1][1] > 0:
                    _thread.interrupt_main(signal.SIGINT)
                    return

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    try:
        code, _, err = run(["tune", csv, "--target", "label", "--trials", 200, "--epochs", 60,
                            "--patience", 60, "--out", out, "--quiet"])  # fmt: skip
    finally:
        stop.set()
        presser.join()
    assert code == 130, err
    assert "Run the same command again to continue study 'data-label'" in err
    now = [state for state, _ in states(db)]
    done = now.count("COMPLETE") + now.count("PRUNED")
    assert done >= 1 and now[-1] == "FAIL"  # the interrupted trial: failed, not left running
    code, text, err = run(["tune", csv, "--target", "label", "--epochs", 3, "--trials", done + 2,
                           "--out", out, "--quiet"])  # fmt: skip
    assert code == 0, err
    assert "This worker ran 2 trials" in text
    study = optuna.load_study(study_name="data-label", storage=f"sqlite:///{db}")
    assert len(finished(study)) == done + 2 and len(study.trials) == len(now) + 2
    assert tuned_trial(out) == study.best_trial.number


def test_tune_writes_table_importances_report_and_uses_the_config(csv, tmp_path):
    config = tmp_path / "search.toml"
    config.write_text(
        'patience = 3\n[search]\noptimizer = ["adam"]\nbatch-size = [16, 64]\n'
        "lr = {low = 1e-3, high = 0.05, log = true}\n"
    )
    out, report = tmp_path / "m.lnet", tmp_path / "r.html"
    argv = ["tune", csv, "--target", "label", "--trials", 4, "--epochs", 3, "--config", config,
            "--out", out, "--report", report]  # fmt: skip
    code, text, err = run(argv)
    assert code == 0, err
    assert "batch_size  16 | 64" in text and "optimizer   adam" in text
    assert "trial  state      val_loss" in text and "Best trial #" in text
    assert "Parameter importances" in text and "Test set (" in text
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2 and "<pre>trial  state" in page
    url = f"sqlite:///{tmp_path / 'm.optuna.db'}"  # the default storage, next to --out
    study = optuna.load_study(study_name="data-label", storage=url)
    first = study.trials[0]
    assert first.user_attrs["settings"] == "defaults"  # train's defaults run first
    assert first.params["lr"] == 1e-3  # batch size 32 is not in the space: the sampler's
    assert (first.params["layers"], first.params["units"]) == (2, 64)  # hidden 64,32
    assert all(t.params["optimizer"] == "adam" for t in study.trials)
    # the same command again: the study is complete, nothing is trained twice
    code, text, err = run([*argv, "--overwrite"])
    assert code == 0 and "This worker ran 0 trials" in text, err
    assert len(optuna.load_study(study_name="data-label", storage=url).trials) == 4


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lucidnet: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--trials", "0"], ["--trials", "expected an integer >= 1, got '0'"]),
        (["--timeout", "-3"], ["--timeout", "expected a number > 0"]),
        (["--threads", "many"], ["--threads"]),
        (["--storage", "nosuchdb://x"], ["--storage 'nosuchdb://x'"]),
        (["--val-size", "0"], ["needs validation rows"]),
    ],
)
def test_bad_arguments_are_one_line_errors(csv, tmp_path, extra, fragments):
    code, _, err = run(["tune", csv, "--target", "label", "--out", tmp_path / "x.lnet", "--quiet",
                        *extra])  # fmt: skip
    assert_user_error(code, err, *fragments)


def test_bad_config_and_foreign_out_file_are_one_line_errors(csv, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[search]\nlr = {low = 1, high = 0.1}\n")
    code, _, err = run(["tune", csv, "--target", "label", "--config", config])
    assert_user_error(code, err, "[search]", "'lr'", "expected low < high")
    config.write_text("search = 3\n")
    code, _, err = run(["tune", csv, "--target", "label", "--config", config])
    assert_user_error(code, err, "[search] must be a table")
    other = tmp_path / "other.lnet"
    other.write_text("not a model")
    code, _, err = run(["tune", csv, "--target", "label", "--out", other])
    assert_user_error(code, err, "already exists", "--overwrite")
    assert other.read_text() == "not a model"


# --- PostgreSQL ---------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a free loopback port, its data in a temporary
    directory (as the 'postgres' user when run as root: initdb refuses root)."""
    pytest.importorskip(
        "psycopg2", reason="PostgreSQL test needs psycopg2 (pip install psycopg2-binary)"
    )
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL test skipped: no initdb / pg_ctl on PATH or in /usr/lib/postgresql "
                    "(.ci/run installs Debian's postgresql)")  # fmt: skip
    run_as = {}
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL test skipped: running as root and there is no 'postgres' "
                        "user to run the server as")  # fmt: skip
        run_as = {"user": user.pw_uid, "group": user.pw_gid}
    home = Path(tempfile.mkdtemp(prefix="lucidnet-pg-"))
    if run_as:
        os.chown(home, run_as["user"], run_as["group"])
    data, port = home / "data", _free_port()
    cmds = [
        [bindir / "initdb", "-D", data, "-U", "tune", "--auth=trust", "-E", "UTF8"],
        [
            bindir / "pg_ctl",
            "-D",
            data,
            "-w",
            "-t",
            "60",
            "-l",
            home / "log",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {home} -F",
            "start",
        ],  # fmt: skip
    ]
    try:
        for c in cmds:
            done = subprocess.run([str(a) for a in c], capture_output=True, text=True, timeout=120,
                                  **run_as)  # fmt: skip
            if done.returncode != 0:
                pytest.skip(f"PostgreSQL test skipped: {Path(c[0]).name} failed: "
                            f"{(done.stderr or done.stdout).strip()[-300:]}")  # fmt: skip
        yield f"postgresql://tune@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, **run_as)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_join_one_postgresql_study(csv, tmp_path, postgres):
    """A worker process and this process, started together on one PostgreSQL study."""
    common = ["--trials", 6, "--storage", postgres, "--study", "pg"]
    other = worker(csv, *common, "--out", tmp_path / "pg0.lnet")
    code, text, err = run(["tune", csv, "--target", "label", "--epochs", 4, "--quiet", *common,
                           "--out", tmp_path / "pg1.lnet"])  # fmt: skip
    assert code == 0, err
    _, other_err = other.communicate(timeout=240)
    assert other.returncode == 0, other_err
    study = optuna.load_study(study_name="pg", storage=postgres.replace("://", "+psycopg2://"))
    assert_one_clean_study(study, 6)
    for i in range(2):
        assert tuned_trial(tmp_path / f"pg{i}.lnet") == study.best_trial.number


def test_a_worker_waits_for_the_other_workers_running_trials(monkeypatch, capsys):
    """Once it has no trial left to start, a worker waits while other workers' trials still
    run (then its --out gets the study's final best), marking stale ones failed as it polls;
    not after --timeout ran out; at most twice the longest finished trial (at least the
    heartbeat grace period: a trial without heartbeats is not waited for forever); Ctrl-C
    stops the wait, SIGTERM still ends the command."""
    import datetime
    from types import SimpleNamespace

    from lucidnet.cli import commands, tune
    from lucidnet.interop import tuning

    stale_checks: list[object] = []
    monkeypatch.setattr(optuna.storages, "fail_stale_trials", stale_checks.append)
    finished_trial = SimpleNamespace(duration=datetime.timedelta(seconds=100), number=0)

    class Study:
        def __init__(self, running: list[int]) -> None:
            self.running = running  # trials still running at each poll (the last repeats)

        def get_trials(self, deepcopy: bool, states: tuple | None = None) -> list[object]:
            if states is None:  # every trial: their durations
                return [finished_trial]
            assert [s.name for s in states] == ["RUNNING"]
            count = self.running.pop(0) if len(self.running) > 1 else self.running[0]
            return [SimpleNamespace(number=7, duration=None)] * count

    args = SimpleNamespace(quiet=False)
    study = Study([2, 1, 0])
    tune._wait_for_other_workers(args, study, poll_s=0.0)
    assert stale_checks == [study, study]
    assert "Waiting for 2 trial(s) still running in other workers" in capsys.readouterr().out

    tune._wait_for_other_workers(args, Study([1]), timed_out=True, poll_s=0.0)  # time spent
    assert capsys.readouterr().out == ""

    now = [0.0]

    def clock() -> float:  # each poll takes 30 s
        now[0] += 30.0
        return now[0]

    limit = max(tuning.GRACE_SECONDS, 200)
    tune._wait_for_other_workers(args, Study([1]), poll_s=0.0, clock=clock)  # never finishes
    out = capsys.readouterr().out
    assert f"Gave up waiting after {limit} s for trial(s) #7" in out
    assert now[0] <= limit + 90  # gave up at the first poll past the limit

    class Interrupted(Study):
        def __init__(self, error: type[BaseException]) -> None:
            super().__init__([1])
            self.error, self.polls = error, 0

        def get_trials(self, deepcopy: bool, states: tuple | None = None) -> list[object]:
            if states is not None:
                self.polls += 1
                if self.polls > 1:
                    raise self.error
            return super().get_trials(deepcopy, states)

    tune._wait_for_other_workers(args, Interrupted(KeyboardInterrupt), poll_s=0.0)
    assert "Stopped waiting (Ctrl-C)" in capsys.readouterr().out
    with pytest.raises(commands._Terminated):
        tune._wait_for_other_workers(args, Interrupted(commands._Terminated), poll_s=0.0)
    capsys.readouterr()
    tune._wait_for_other_workers(args, Study([0]), poll_s=0.0)  # nothing running: no wait
    assert capsys.readouterr().out == ""
