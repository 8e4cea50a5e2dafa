"""Smoke test of ``benchmarks/messy.py`` (lucidnet against a hand-built scikit-learn pipeline on
real files), so that the script keeps running as the library changes: one tiny generated file,
every system, few epochs, end to end through the same functions the command runs. Accuracy and
speed are measured by ``make bench-messy``, never asserted here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import messy  # noqa: E402


def _tiny_file(path: Path, n: int = 160) -> None:
    """A small messy table: a row-number id, ISO dates, a category, a number, a classification
    target with one single-row class, and a count target."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(x + (colour == "red") > 0.3, "yes", "no").astype(object)
    label[7] = "rare"  # a single-row class: cannot be stratified, stays in train
    pd.DataFrame(
        {
            "row_id": np.arange(1, n + 1),
            "created": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "colour": colour,
            "x": x,
            "label": label,
            "visits": rng.poisson(np.exp(0.5 + 0.5 * x)),
        }
    ).to_csv(path, index=False)


def test_split_stratifies_and_keeps_single_row_classes_in_train():
    df = pd.DataFrame({"y": ["a"] * 50 + ["b"] * 30 + ["c"], "x": range(81)})
    case = messy.Case("t", "t.csv", "y", "classification")
    train, test, note = messy.split(df, case, seed=0)
    assert len(train) + len(test) == 81 and "c" in set(train["y"]) and "c" not in set(test["y"])
    assert test["y"].value_counts().to_dict() == {"a": 10, "b": 6}  # 20% of each class
    assert note == "stratified; single-row classes kept in train: c"


def test_score_counts_negative_predictions_and_rounds_counts():
    m = messy.score([0, 1, 2, 3], [-0.2, 1.1, 2.4, -1.0], "count")
    assert m["negatives"] == 2 and m["min_prediction"] == -1.0
    assert m["rounded_accuracy"] == 0.75  # -0.2 -> 0, 1.1 -> 1, 2.4 -> 2 right; -1.0 wrong
    c = messy.score(["a", "b", "b"], ["a", "b", "a"], "classification")
    assert c["accuracy"] == pytest.approx(2 / 3) and 0 < c["macro_f1"] < 1
    assert messy.score([1, 2], ["1.0", "2"], "classification")["accuracy"] == 1.0


def test_missing_data_file_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        messy.main(["--data-dir", str(tmp_path), "--cases", "tips-tip"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tabular/tips.csv" in err and "--data-dir" in err


def test_one_case_end_to_end_with_every_system(tmp_path):
    """A count target (the count-rule rows, the negatives) through all three systems: five
    processes (lucidnet train / evaluate / predict, the MLP pipeline, HGB), a few seconds."""
    _tiny_file(tmp_path / "tiny.csv")
    poisson = ("lucidnet --loss poisson", ("--loss", "poisson"))
    case = messy.Case("tiny", "tiny.csv", "visits", "count", drop=("row_id",), variants=(poisson,))
    out = messy.run_case(case, tmp_path, tmp_path / "work", quick=True, log=lambda *a, **k: None)
    res = out["results"]
    assert set(res) == {"lucidnet", "mlp", "hgb", "lucidnet --loss poisson"}
    for label, r in res.items():
        assert "error" not in r, (label, r.get("error"))
        assert np.isfinite(r["metrics"]["r2"]) and r["time_s"] > 0
    assert out["rows"] == [128, 32] and out["split"] == "random"
    found = res["lucidnet"]["detections"]  # read from lucidnet's own printed role table
    assert found["task"] == "regression" and found["loss"] == "poisson"
    assert found["roles"]["row_id"][0] == "identifier" and found["roles"]["created"][0] == "date"
    assert found["roles"]["colour"][0] == "categorical"
    assert res["lucidnet"]["metrics"]["negatives"] == 0  # a count model never predicts below 0
    # the variant with the loss lucidnet chose by itself is not run twice (same seed, same run)
    assert res["lucidnet --loss poisson"]["same_as"] == "auto chose poisson"
    summary = messy.summarise_detections(found)
    assert "identifier: row_id" in summary and "date: created" in summary
    assert "task: regression (poisson loss)" in summary
    # the report: the comparison row with the verdict, the detections, the count-rule table
    report = messy.markdown([out], ["machine line"], "python benchmarks/messy.py --quick")
    row = next(line for line in report.splitlines() if line.startswith("| tiny (`visits`)"))
    assert messy.verdict(out).split()[0] in row and "machine line" in report
    assert "identifier: row_id" in report and "## Other runs" not in report
    assert "lucidnet --loss poisson (= the run without options: auto chose poisson)" in report
    saved = tmp_path / "r.json"  # --render rewrites the report from the saved JSON alone
    saved.write_text(json.dumps({"machine": ["m"], "cases": [out]}, default=messy._json_default))
    assert messy.main(["--render", str(saved), "--markdown", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text() == messy.markdown([out], ["m"], messy.DEFAULT_COMMAND)


def test_verdict_compares_with_the_mlp_and_the_mlp_without_documented_leaks():
    def run(acc):
        return {"metrics": {"accuracy": acc, "macro_f1": acc}, "time_s": 1.0}

    hand = messy.HAND_DROP_LABEL + "leaky"
    results = {"lucidnet": run(0.80), "mlp": run(0.93), "hgb": run(0.9), hand: run(0.79)}
    case = {"case": "t", "target": "y", "task": "classification", "rows": [8, 2], "split": "s"}
    case["results"] = results
    assert messy.verdict(case) == (
        "no (-0.1300 accuracy); vs the MLP without the leaks: yes (+0.0100 accuracy)"
    )
    report = messy.markdown([case], [], "")
    assert f"| t | {hand} | acc 0.7900, macro F1 0.7900 | 1.0 |" in report  # "Other runs"


def test_update_replaces_only_the_remeasured_cases():
    """``--update``: re-measured cases replace theirs, the others stay, a line says when."""
    saved = {"command": "c0", "machine": ["date: d0"], "cases": [{"case": "a"}, {"case": "b"}]}
    new = {
        "command": "c1",
        "machine": ["date: d1", "cpu: x; load average at the start: 9.0 8.0 7.0"],
        "cases": [{"case": "b", "new": True}, {"case": "c"}],
    }
    out = messy.merge(saved, new)
    assert [c["case"] for c in out["cases"]] == ["a", "b", "c"] and out["cases"][1]["new"]
    assert out["command"] == "c0" and out["machine"] == ["date: d0"]
    assert out["remeasured"] == [
        "re-measured later (shared machine, load average 9.0 8.0 7.0): b, c, d1, by `c1`"
    ]
    assert messy._header(out)[-1].startswith("re-measured later")
    assert "## Notes\n\n- seeds 0-4: x" in messy.markdown([], ["h"], "cmd", ["seeds 0-4: x"])
    assert "## Notes" not in messy.markdown([], ["h"], "cmd")
