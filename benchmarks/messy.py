"""Real, messy files: ``lucidnet train`` with no options against the scikit-learn pipeline a
practitioner would write by hand, and gradient-boosted trees as a reference (issue 12's evidence).

For each case (a file and a target column) the script makes one seeded split (80% train / 20%
test, stratified for classification where a class has the rows for it; rarer classes stay in
train), writes ``train.csv`` / ``test.csv`` to a temporary folder and runs, each as its own
process so that the wall time is the whole job:

- **lucidnet**: ``lucidnet train train.csv --target COL`` (no modelling options: it detects the
  roles, leaks, dates, ids and the task by itself, and holds out its own validation and test rows
  from ``train.csv``), then ``lucidnet evaluate model test.csv``; the time is both commands.
  ``lucidnet predict`` (not timed) gives the predictions for the metrics and the negative count.
- **MLP pipeline**: ``benchmarks/messy_systems.py mlp``: one-hot + imputation + scaling (+ TF-IDF
  for the tweets' text), ``MLPClassifier`` / ``MLPRegressor`` with early stopping.
- **HGB**: ``benchmarks/messy_systems.py hgb``: ``HistGradientBoosting*`` with native categories.

All three get the same raw columns (the scikit-learn ones minus obvious ids, see ``Case.drop``)
and are scored on the same test rows by the same code: accuracy and macro F1, or R^2, MAE and the
number of negative predictions of a non-negative target. For count targets the script also runs
lucidnet with ``--loss mse`` / ``--loss poisson`` (and ``--task classification`` for small counts)
to check its count rule. Writes a Markdown report and a JSON file next to it.

    python benchmarks/messy.py --data-dir ../shared/data --markdown benchmarks/MESSY.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # sibling modules, also when run from another directory

import machine  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One benchmark case: a file of the shared data folder and the column to predict.

    Attributes:
        name: short label used by ``--cases``.
        file: path relative to the data folder.
        target: the column to predict.
        task: ``classification``, ``regression`` or ``count`` (a non-negative integer target,
            fitted as a regression by the scikit-learn systems).
        text: columns the scikit-learn pipelines TF-IDF (lucidnet detects text by itself).
        drop: obvious identifiers the scikit-learn pipelines drop (lucidnet gets every column).
        variants: extra lucidnet runs, ``(label, extra options)``, for the count-rule review.
        hand_drop: columns a careful practitioner drops by hand (documented leaks): the MLP
            pipeline runs once more without them, as an extra row.
    """

    name: str
    file: str
    target: str
    task: str
    text: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()
    hand_drop: tuple[str, ...] = ()


_COUNT_VARIANTS = (
    ("lucidnet --loss poisson", ("--loss", "poisson")),
    ("lucidnet --loss mse", ("--loss", "mse")),
)

CASES = (
    Case(
        "tweets",
        "airline-tweets/Tweets.csv",
        "airline_sentiment",
        "classification",
        text=("text",),
        drop=("tweet_id",),
        # the README's --drop list: by-products of the labelling that give the answer away
        hand_drop=(
            "airline_sentiment_confidence",
            "negativereason",
            "negativereason_confidence",
            "airline_sentiment_gold",
            "negativereason_gold",
        ),
    ),
    # lucidnet's rule takes price (non-negative integers, > 10 values) for a count: Poisson
    Case("diamonds", "tabular/diamonds.csv", "price", "regression", variants=_COUNT_VARIANTS),
    Case("mpg", "tabular/mpg.csv", "mpg", "regression"),
    Case("planets-method", "tabular/planets.csv", "method", "classification"),
    Case(
        "planets-number",
        "tabular/planets.csv",
        "number",
        "count",
        variants=(
            *_COUNT_VARIANTS,
            ("lucidnet --task classification", ("--task", "classification")),
        ),
    ),
    Case("tips-tip", "tabular/tips.csv", "tip", "regression"),
    Case("tips-time", "tabular/tips.csv", "time", "classification"),
)

DEFAULT_COMMAND = (
    "python benchmarks/messy.py --data-dir ../shared/data --markdown benchmarks/MESSY.md"
)
HAND_DROP_LABEL = "MLP pipeline, documented leaks dropped by hand: "
SYSTEM_LABELS = {"lucidnet": "lucidnet", "mlp": "MLP pipeline", "hgb": "HGB (reference)"}


# ----------------------------------------------------------------------------- split


def split(
    df: pd.DataFrame, case: Case, seed: int = 0, test_size: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """One seeded train / test split of ``df`` (rows with a missing target dropped first).

    Classification: stratified over the classes with at least 2 rows; rows of rarer classes
    stay in train (they cannot be both learnt and tested). Other tasks: a random split.

    Returns:
        (train, test, note) with ``note`` a sentence on how the split was made.
    """
    from sklearn.model_selection import train_test_split

    df = df[df[case.target].notna()].reset_index(drop=True)
    if case.task != "classification":
        train, test = train_test_split(df, test_size=test_size, random_state=seed)
        return train, test, "random"
    counts = df[case.target].value_counts()
    rare = counts.index[counts < 2]
    keep = df[~df[case.target].isin(rare)]
    train, test = train_test_split(
        keep, test_size=test_size, random_state=seed, stratify=keep[case.target]
    )
    train = pd.concat([train, df[df[case.target].isin(rare)]])
    note = "stratified"
    if len(rare):
        note += "; single-row classes kept in train: " + ", ".join(map(str, rare))
    return train, test, note


# ----------------------------------------------------------------------------- metrics


def _labels(values: Any) -> np.ndarray:
    """Class labels as comparable strings (``3``, ``3.0`` and ``"3"`` are one class)."""
    s = pd.Series(values)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all():
        return np.array([f"{v:g}" for v in num])
    return s.astype(str).to_numpy()


def score(y_true: Any, y_pred: Any, task: str) -> dict[str, float]:
    """The metrics of one system on the test rows.

    Classification: accuracy, macro F1 (over the classes in ``y_true`` or ``y_pred``).
    Regression / count: R^2, MAE, RMSE, the number of negative predictions, and for counts
    the accuracy of the rounded prediction.
    """
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

    if task == "classification":
        t, p = _labels(y_true), _labels(y_pred)
        return {
            "accuracy": float(accuracy_score(t, p)),
            "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        }
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(pd.to_numeric(pd.Series(y_pred), errors="coerce"), dtype=float)
    out = {
        "r2": float(r2_score(t, p)),
        "mae": float(mean_absolute_error(t, p)),
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "negatives": int((p < 0).sum()),
        "min_prediction": float(p.min()),
    }
    if task == "count":
        out["rounded_accuracy"] = float(np.mean(np.rint(p) == t))
    return out


def primary(task: str) -> str:
    """The metric that decides "at least as accurate": accuracy, or R^2."""
    return "accuracy" if task == "classification" else "r2"


# ----------------------------------------------------------------------------- processes


def _env() -> dict[str, str]:
    """The environment of the child processes: this checkout's lucidnet first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _run(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``; returns the finished process and its wall time in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    return proc, time.perf_counter() - t0


def _failure(step: str, proc: subprocess.CompletedProcess) -> str:
    last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
    return f"{step} exited {proc.returncode}: {last[:300]}"


def run_lucidnet(
    work: Path, case: Case, extra: tuple[str, ...] = (), quick: bool = False, tag: str = "ln"
) -> dict[str, Any]:
    """``lucidnet train`` (no options but ``extra``) and ``lucidnet evaluate``, timed together,
    then ``lucidnet predict`` for the predictions (not timed).

    Returns:
        ``{"time_s", "predictions", "detections", "evaluate", "stdout"}``, or ``{"error"}``.
    """
    cli = [sys.executable, "-m", "lucidnet.cli"]
    model, train_json, eval_json = f"{tag}.lnet", f"{tag}_train.json", f"{tag}_eval.json"
    opts = [*extra, *(("--epochs", "3") if quick else ())]
    train_cmd = [*cli, "train", "train.csv", "--target", case.target, *opts]
    train_cmd += ["--out", model, "--metrics-json", train_json, "--overwrite"]
    proc, t_train = _run(train_cmd, work)
    if proc.returncode != 0:
        return {"error": _failure("lucidnet train", proc)}
    out = proc.stdout + proc.stderr
    ev, t_eval = _run([*cli, "evaluate", model, "test.csv", "--metrics-json", eval_json], work)
    if ev.returncode != 0:
        return {"error": _failure("lucidnet evaluate", ev)}
    pr, t_pred = _run([*cli, "predict", model, "test.csv", "--out", f"{tag}_pred.csv"], work)
    if pr.returncode != 0:
        return {"error": _failure("lucidnet predict", pr)}
    train_metrics = json.loads((work / train_json).read_text(encoding="utf-8"))
    return {
        "time_s": t_train + t_eval,
        "train_s": t_train,
        "predict_s": t_pred,
        "predictions": pd.read_csv(work / f"{tag}_pred.csv")["prediction"].to_numpy(),
        "detections": detections(out, train_metrics),
        "evaluate": json.loads((work / eval_json).read_text(encoding="utf-8")).get("test"),
        "epochs_run": train_metrics.get("epochs_run"),
        "stdout": out,
    }


def run_sklearn(
    work: Path, case: Case, system: str, quick: bool = False, extra_drop: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One scikit-learn system (``mlp`` or ``hgb``) as its own process, timed; ``extra_drop``
    columns are dropped besides the case's obvious ids."""
    task = "classification" if case.task == "classification" else "regression"
    out = f"{system}{'_hand' if extra_drop else ''}_pred.csv"
    cmd = [sys.executable, str(HERE / "messy_systems.py"), system, "train.csv", "test.csv"]
    cmd += ["--target", case.target, "--task", task, "--out", out, "--text", *case.text]
    cmd += ["--drop", *case.drop, *extra_drop, *(["--quick"] if quick else [])]
    proc, seconds = _run(cmd, work)
    if proc.returncode != 0:
        return {"error": _failure(f"messy_systems.py {system}", proc)}
    preds = pd.read_csv(work / out)["prediction"].to_numpy()
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"time_s": seconds, "predictions": preds, "iterations": info["iterations"]}


# ----------------------------------------------------------------------------- detections

_ROLE_LINE = re.compile(r"^    (\S.*?)\s{2,}([a-z][a-z_ -]*?)\s{2,}(.*)$")
_LEAK_LINE = re.compile(r"^\s+'(.+?)' \((.*)\)\s*$")
_REPORTED_ROLES = ("identifier", "date", "text", "constant", "empty", "dropped")


def detections(output: str, train_metrics: dict[str, Any]) -> dict[str, Any]:
    """What ``lucidnet train`` found by itself, read from its printed output and metrics JSON.

    Returns:
        ``{"task", "task_reason", "loss", "roles": {column: [role, reason]}, "leaks":
        {column: evidence}, "missing_indicators", "split"}``.
    """
    found: dict[str, Any] = {"task": train_metrics.get("task"), "roles": {}, "leaks": {}}
    found["loss"] = train_metrics.get("hyperparameters", {}).get("loss")
    lines = output.splitlines()
    section = ""
    for line in lines:
        stripped = line.strip()
        if line.startswith("  target: "):
            found["task_reason"] = line.split("->", 1)[-1].strip()
        elif line.startswith("  split: "):
            found["split"] = stripped.removeprefix("split: ")
        elif line.startswith("  output: "):
            m = re.search(r"(\d+) missing indicators", line)
            found["missing_indicators"] = int(m.group(1)) if m else None
        if line.startswith("  ") and not line.startswith("    "):
            section = stripped
            continue
        if section == "columns:" and (m := _ROLE_LINE.match(line)):
            found["roles"][m.group(1)] = [m.group(2).strip(), m.group(3).strip()]
        elif section.startswith("excluded as likely target leakage") and (
            m := _LEAK_LINE.match(line)
        ):
            found["leaks"][m.group(1)] = m.group(2)
    return found


def summarise_detections(found: dict[str, Any]) -> str:
    """One cell of the report: roles other than numeric / categorical, leaks, task and loss."""
    parts = []
    by_role: dict[str, list[str]] = {}
    for col, (role, reason) in found.get("roles", {}).items():
        if col in found.get("leaks", {}):
            continue  # listed with its evidence below
        if role in _REPORTED_ROLES:
            by_role.setdefault(role, []).append(col)
        elif role not in ("numeric", "categorical", "target"):  # a role this script predates
            by_role.setdefault(role, []).append(col)
        elif role == "categorical" and "integer" in reason:
            by_role.setdefault("integer codes as categories", []).append(col)
    for role, cols in by_role.items():
        parts.append(f"{role}: {', '.join(cols)}")
    if found.get("leaks"):
        parts.append("leaks excluded: " + ", ".join(found["leaks"]))
    if found.get("missing_indicators"):
        parts.append(f"{found['missing_indicators']} missing indicators")
    task = found.get("task") or "?"
    loss = found.get("loss")
    parts.append(f"task: {task}" + (f" ({loss} loss)" if task == "regression" and loss else ""))
    return "; ".join(parts)


# ----------------------------------------------------------------------------- one case


def run_case(
    case: Case,
    data_dir: Path,
    work: Path,
    *,
    systems: tuple[str, ...] = ("lucidnet", "mlp", "hgb"),
    variants: bool = True,
    quick: bool = False,
    seed: int = 0,
    log: Any = print,
) -> dict[str, Any]:
    """Split one case's file, run every system on it and score them on the same test rows.

    Returns:
        ``{"case", "file", "target", "task", "rows", "split", "results": {label: result}}``
        where a result has ``metrics`` and ``time_s`` (or ``error``).
    """
    work.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(data_dir / case.file)
    train, test, note = split(df, case, seed)
    train.to_csv(work / "train.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    out: dict[str, Any] = {"case": case.name, "file": case.file, "target": case.target}
    out |= {"task": case.task, "rows": [len(train), len(test)], "split": note, "results": {}}
    for system in systems:
        log(f"  {case.name}: {system} ...", flush=True)
        if system == "lucidnet":
            result = run_lucidnet(work, case, quick=quick)
        else:
            result = run_sklearn(work, case, system, quick=quick)
        out["results"][system] = _scored(result, test[case.target], case.task, log)
    auto = out["results"].get("lucidnet", {})
    for i, (label, extra) in enumerate(case.variants if variants and auto else ()):
        chosen = auto.get("detections", {})
        if (
            extra[0] == "--loss"
            and chosen.get("task") == "regression"
            and chosen.get("loss") == extra[1]
        ):
            # the run without options already used this loss: same seed, same result
            out["results"][label] = {**auto, "same_as": f"auto chose {extra[1]}"}
            continue
        log(f"  {case.name}: {label} ...", flush=True)
        result = run_lucidnet(work, case, extra, quick, tag=f"v{i}")
        out["results"][label] = _scored(result, test[case.target], case.task, log)
    if variants and case.hand_drop and "mlp" in systems:
        label = HAND_DROP_LABEL + ", ".join(case.hand_drop)
        log(f"  {case.name}: {label} ...", flush=True)
        result = run_sklearn(work, case, "mlp", quick, extra_drop=case.hand_drop)
        out["results"][label] = _scored(result, test[case.target], case.task, log)
    return out


def _scored(result: dict[str, Any], y_test: pd.Series, task: str, log: Any) -> dict[str, Any]:
    """``result`` with its predictions replaced by their metrics (and the output dropped)."""
    if "predictions" in result:
        result["metrics"] = score(y_test, result.pop("predictions"), task)
    result.pop("stdout", None)
    log(f"    {_result_line(result, task)}", flush=True)
    return result


def _result_line(result: dict[str, Any], task: str) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    return f"{_metric_text(result['metrics'], task)}; {result['time_s']:.1f} s"


def _metric_text(m: dict[str, float], task: str) -> str:
    if task == "classification":
        return f"accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f}"
    text = f"R^2 {m['r2']:.4f}, MAE {m['mae']:.4g}"
    if "rounded_accuracy" in m:
        text += f", rounded accuracy {m['rounded_accuracy']:.3f}"
    return text


def verdict(case_result: dict[str, Any]) -> str:
    """Whether lucidnet is at least as accurate as the MLP pipeline on the primary metric (and
    as the pipeline without the documented leaks, where that ran)."""
    res = case_result["results"]
    ln = res.get("lucidnet", {})
    key = primary(case_result["task"])
    parts = []
    for label, r in res.items():
        if label != "mlp" and not label.startswith(HAND_DROP_LABEL):
            continue
        if "metrics" not in ln or "metrics" not in r:
            parts.append("n/a")
            continue
        diff = ln["metrics"][key] - r["metrics"][key]
        text = f"{'yes' if diff >= 0 else 'no'} ({diff:+.4f} {key.replace('r2', 'R^2')})"
        parts.append(text if label == "mlp" else f"vs the MLP without the leaks: {text}")
    return "; ".join(parts) or "n/a"


# ----------------------------------------------------------------------------- report


def machine_lines() -> list[str]:
    """CPU, cores, load and BLAS (threadpoolctl if installed, else numpy.show_config)."""
    return [
        f"date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"cpu: {machine.cpu_model()} ({machine.cores()} cores usable; "
        f"flags: {machine.cpu_flags()}); load average at the start: {machine.load_average()}",
        f"python {platform.python_version()} on {platform.platform()}; "
        f"pandas {pd.__version__}; scikit-learn {_sklearn_version()}",
        *machine.blas_info(),
    ]


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def _cell(result: dict[str, Any] | None, task: str) -> str:
    if not result:
        return "-"
    if "error" in result:
        return "failed"
    return _metric_text(result["metrics"], task).replace("accuracy ", "acc ")


def _negatives(res: dict[str, Any], systems: tuple[str, ...]) -> str:
    cells = []
    for s in systems:
        m = res.get(s, {}).get("metrics", {})
        cells.append(str(m["negatives"]) if "negatives" in m else "-")
    return " / ".join(cells)


def _times(res: dict[str, Any], systems: tuple[str, ...]) -> str:
    return " / ".join(
        f"{res[s]['time_s']:.1f}" if "time_s" in res.get(s, {}) else "-" for s in systems
    )


SYSTEMS_TEXT = (
    "Each case is split once (seeded; 80% train.csv / 20% test.csv, stratified for "
    "classification; classes of a single row stay in train). The systems, each its own process:",
    "",
    "- **lucidnet**: `lucidnet train train.csv --target COL` with no modelling option, then "
    "`lucidnet evaluate`. It holds out its own validation (10%) and test (20%) rows from "
    "train.csv, so it fits on 70% of train.csv where the MLP pipeline fits on 90% of it. "
    "Where TF-IDF terms are at least half of its input features (tweets, mpg) its text "
    "defaults apply (`lucidnet/cli/defaults.py`: one layer of 100 units, dropout 0.5, batches "
    "of 128 from 2,560 training rows, and a final fit on the training + validation rows, 80%, "
    "for the epochs early stopping chose); the run prints them with the reason.",
    "- **MLP pipeline** (`benchmarks/messy_systems.py mlp`): the raw columns minus obvious ids "
    "(tweets: `tweet_id`), nothing else removed (no leak, date or id handling): object columns "
    "one-hot (`handle_unknown='ignore'`, missing as a category), numeric ones median-imputed and "
    "standardised, the tweets' `text` TF-IDF (words and pairs, `min_df=2`); `MLPClassifier` / "
    "`MLPRegressor` with `early_stopping=True` and scikit-learn's other defaults (100 ReLU "
    "units, Adam, batches of 200), `random_state=0`.",
    "- **HGB** (`benchmarks/messy_systems.py hgb`), the reference: `HistGradientBoosting*` "
    "with defaults and native categorical support (object columns ordinal-encoded, at most 255 "
    "categories), the tweets' text as TF-IDF reduced to 100 SVD components.",
)


def _iterations(res: dict[str, Any], systems: tuple[str, ...]) -> str:
    keys = {"lucidnet": "epochs_run"}
    return " / ".join(str(res.get(s, {}).get(keys.get(s, "iterations"), "-")) for s in systems)


def markdown(
    cases: list[dict[str, Any]], header: list[str], args_line: str, notes: Sequence[str] = ()
) -> str:
    """The report: machine, the comparison table, detections, the count-rule review."""
    systems = ("lucidnet", "mlp", "hgb")
    lines = [
        "# lucidnet on real, messy files",
        "",
        f"Generated by `{args_line}` (`make bench-messy`); do not edit by hand.",
        "",
        "```",
        *header,
        "```",
        "",
        *SYSTEMS_TEXT,
        "",
        "Times are wall seconds of whole processes (imports, reading, fitting, predicting; "
        "lucidnet: `train` + `evaluate`) on a shared machine: other jobs ran beside them, so "
        "they are noisy (re-run before quoting one). Every system is scored on the same test "
        "rows by the same code. `lucidnet >= MLP` compares accuracy (classification) or R^2.",
        "",
        "| case | train / test rows | lucidnet | MLP pipeline | HGB (reference) "
        "| lucidnet >= MLP | time s (lucidnet / MLP / HGB) | epochs (l / M), HGB iterations "
        "| negative predictions (l / M / H) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        res, task = c["results"], c["task"]
        neg = _negatives(res, systems) if task != "classification" else "-"
        lines.append(
            f"| {c['case']} (`{c['target']}`) | {c['rows'][0]} / {c['rows'][1]} "
            f"| {_cell(res.get('lucidnet'), task)} | {_cell(res.get('mlp'), task)} "
            f"| {_cell(res.get('hgb'), task)} | {verdict(c)} | {_times(res, systems)} "
            f"| {_iterations(res, systems)} | {neg} |"
        )
    lines += ["", "## What lucidnet detected (no options given)", ""]
    lines += ["| case | split | detections |", "|---|---|---|"]
    for c in cases:
        found = c["results"].get("lucidnet", {}).get("detections")
        text = summarise_detections(found) if found else "-"
        lines.append(f"| {c['case']} | {c['split']} | {text} |")
    lines += _variant_lines(cases)
    lines += _other_lines(cases)
    lines += _failure_lines(cases)
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _variant_lines(cases: list[dict[str, Any]]) -> list[str]:
    rows = [
        (c, label, r)
        for c in cases
        if c["task"] != "classification" and any(k.startswith("lucidnet ") for k in c["results"])
        for label, r in c["results"].items()
        if label.startswith("lucidnet") and "metrics" in r
    ]
    if not any(label != "lucidnet" for _, label, _ in rows):
        return []
    lines = ["", "## Count targets: lucidnet's loss", ""]
    lines += [
        "lucidnet's rule fits non-negative integer targets with more than 10 values, or fewer "
        "under a count-like name, with the Poisson loss (log link); the same split re-run with "
        "`--loss mse` (and `--task classification` for small counts):",
        "",
    ]
    lines += [
        "| case | lucidnet run | R^2 | MAE | RMSE | rounded accuracy | negatives | min prediction "
        "| time s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, label, r in rows:
        m = r["metrics"]
        same = f" (= the run without options: {r['same_as']})" if r.get("same_as") else ""
        lines.append(
            f"| {c['case']} | {label}{same} | {m['r2']:.4f} | {m['mae']:.4g} | {m['rmse']:.4g} "
            f"| {_fmt(m.get('rounded_accuracy'), '.3f')} | {m['negatives']} "
            f"| {m['min_prediction']:.4g} | {r['time_s']:.1f} |"
        )
    return lines


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _other_lines(cases: list[dict[str, Any]]) -> list[str]:
    """Extra runs of non-count cases (an MLP pipeline with hand-dropped leaks)."""
    rows = [
        f"| {c['case']} | {label} | {_cell(r, c['task'])} | {r.get('time_s', 0):.1f} |"
        for c in cases
        for label, r in c["results"].items()
        if label not in SYSTEM_LABELS and not label.startswith("lucidnet ")
    ]
    if not rows:
        return []
    head = ["", "## Other runs", "", "| case | run | metrics | time s |", "|---|---|---|---|"]
    return head + rows


def _failure_lines(cases: list[dict[str, Any]]) -> list[str]:
    failed = [
        f"- {c['case']} / {label}: {r['error']}"
        for c in cases
        for label, r in c["results"].items()
        if "error" in r
    ]
    return ["", "## Failures", "", *failed] if failed else []


# ----------------------------------------------------------------------------- command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [c.name for c in CASES]
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--cases", default=",".join(names), help=f"comma list of {', '.join(names)}")
    p.add_argument("--systems", default="lucidnet,mlp,hgb", help="comma list of lucidnet, mlp, hgb")
    p.add_argument("--no-variants", action="store_true", help="skip the count-rule runs")
    p.add_argument("--quick", action="store_true", help="few epochs / iterations: a smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", type=Path, help="write the report here (and .json beside it)")
    p.add_argument("--work-dir", type=Path, help="keep the split files and models here")
    p.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite --markdown from a saved JSON"
    )
    p.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="TEXT",
        help="a line for the report's Notes section (kept in the JSON; repeatable)",
    )
    p.add_argument(
        "--update",
        type=Path,
        metavar="JSON",
        help="re-measure only the --cases: they replace their rows in this saved JSON (the "
        "others are kept, with their date) and --markdown is written from the whole",
    )
    return p.parse_args(argv)


def check_inputs(args: argparse.Namespace) -> tuple[list[Case], tuple[str, ...]]:
    """The selected cases and systems; exits 2 with one line when a name or a file is wrong."""
    by_name = {c.name: c for c in CASES}
    wanted = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    bad_systems = [s for s in systems if s not in SYSTEM_LABELS]
    if unknown or bad_systems or not wanted:
        _refuse(
            f"--cases / --systems: expected names from {sorted(by_name)} / "
            f"{sorted(SYSTEM_LABELS)}, got {unknown or bad_systems or 'nothing'}"
        )
    cases = [by_name[n] for n in wanted]
    missing = sorted({c.file for c in cases if not (args.data_dir / c.file).is_file()})
    if missing:
        _refuse(
            f"missing data file(s) under {args.data_dir}: {', '.join(missing)} "
            "(pass --data-dir: the shared data folder, see its README.md)"
        )
    return cases, systems


def _refuse(message: str) -> None:
    print(f"messy.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def merge(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``saved`` (a report's JSON) with the cases of ``new`` (a run of some cases) in place of
    its own (new cases appended), and a line saying when and how they were re-measured."""
    fresh = {c["case"]: c for c in new["cases"]}
    cases = [fresh.pop(c["case"], c) for c in saved["cases"]]
    when = next((line for line in new["machine"] if line.startswith("date: ")), "date: ?")
    load = next((line.split("load average at the start: ")[-1] for line in new["machine"]
                 if "load average" in line), "?")  # fmt: skip
    note = (
        f"re-measured later (shared machine, load average {load}): "
        f"{', '.join(c['case'] for c in new['cases'])}, {when.removeprefix('date: ')}, "
        f"by `{new.get('command', '?')}`"
    )
    out = {**saved, "cases": cases + list(fresh.values())}
    out["remeasured"] = [*saved.get("remeasured", []), note]
    return out


def _header(payload: dict[str, Any]) -> list[str]:
    """The machine lines of a report, and one line per later re-measurement."""
    return [*payload["machine"], *payload.get("remeasured", [])]


def render(
    json_path: Path,
    markdown_path: Path | None,
    saved: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> int:
    """Rewrite the Markdown report from a saved JSON file (no benchmark is run); with
    ``saved`` (``--update``), its cases merged into that report first, and the JSON beside
    ``markdown_path`` rewritten too."""
    payload = json.loads(json_path.read_text(encoding="utf-8"))
    if saved is not None:
        payload = merge(saved, payload)
    payload["notes"] = [*payload.get("notes", []), *notes]
    command = payload.get("command", DEFAULT_COMMAND)
    report = markdown(payload["cases"], _header(payload), command, payload["notes"])
    if markdown_path and saved is not None:
        _save(markdown_path, report, payload)
    elif markdown_path:
        markdown_path.write_text(report, encoding="utf-8")
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # read once, before anything is written (--update may name the JSON beside --markdown)
    args.saved = json.loads(args.update.read_text(encoding="utf-8")) if args.update else None
    if args.render:
        return render(args.render, args.markdown, args.saved, args.note)
    cases, systems = check_inputs(args)
    header = machine_lines()
    print("\n".join(header), flush=True)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"python benchmarks/messy.py {argv_text}".strip()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lucidnet-messy-") as tmp:
        base = args.work_dir or Path(tmp)
        for case in cases:
            print(f"{case.name}: {case.file}, target {case.target!r}", flush=True)
            results.append(
                run_case(
                    case,
                    args.data_dir,
                    base / case.name,
                    systems=systems,
                    variants=not args.no_variants,
                    quick=args.quick,
                    seed=args.seed,
                )
            )
            report = markdown(results, header, command)
            _write(
                args, report, header, results, command
            )  # after every case: a long run keeps its part
    print(report)
    return 0


def _write(
    args: argparse.Namespace,
    report: str,
    header: list[str],
    results: list[dict[str, Any]],
    command: str,
) -> None:
    """The Markdown report and the JSON beside it, when ``--markdown`` was given."""
    if not args.markdown:
        return
    payload = {"command": command, "machine": header, "quick": args.quick, "seed": args.seed}
    payload["cases"] = results
    if args.saved is not None:  # --update: the other cases as they were measured before
        payload = merge(args.saved, payload)
    payload["notes"] = [*payload.get("notes", []), *args.note]
    report = markdown(payload["cases"], _header(payload), payload["command"], payload["notes"])
    _save(args.markdown, report, payload)


def _save(markdown_path: Path, report: str, payload: dict[str, Any]) -> None:
    markdown_path.write_text(report, encoding="utf-8")
    markdown_path.with_suffix(".json").write_text(
        json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
