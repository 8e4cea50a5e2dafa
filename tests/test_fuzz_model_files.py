"""A structure-aware fuzzer over real saved models, with hypothesis.

Each case starts from a real model file (``lucidnet train`` classification and regression, a
``Sequential`` saved from Python, the two scikit-learn estimators), parses its lucidnet JSON
document and applies one to three mutations to it: a field's value replaced by a hostile one
(wrong type, NaN, 2**63, a 10,000-character string, a formula, lists nested 60 to 5,000
deep), a key deleted or added, a list truncated, grown or repeated, a value wrapped in a list
or an object, a value moved from elsewhere in the document; then, one case in eight, a
byte-level mutation of the whole file (bytes flipped in the header or the tensor data,
truncation, a wrong header length, trailing bytes). The safetensors layout stays valid unless
a byte-level mutation breaks it, so most cases reach the field checks.

Every reader then runs on the file, in-process (``_model_files.readers``): ``lucidnet.load``
(and ``predict`` when it loads), ``lucidnet info`` / ``predict`` / ``evaluate`` / ``explain`` /
``export`` through ``lucidnet.cli.commands.main``, ``load_estimator`` (and ``predict``) and
the ONNX exporter. A case is clean when each reader worked (possibly with a warning for a dropped
descriptive field) or refused the file as documented: exit status 2 and one ``lucidnet:
error:`` line for the command, ``ModelFileError`` (a ``ValueError``) for the library.
Anything else (a traceback, an undocumented exception, a stray warning) is an escape; the test
counts cases, readers run and escapes, prints them, and fails if there is any escape.

Budget: ``LUCIDNET_FUZZ_EXAMPLES`` cases in all (default 2,000: about 40 s on 2 cores;
``make fuzz`` runs 20,000), shared among the base files by weight. ``derandomize=True``: the
same cases on every run, so CI is deterministic. Set ``LUCIDNET_FUZZ_REPORT=path.json`` to
write the counts to a file.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _model_files import Bases, join_file, make_bases, readers, split_file
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

TOTAL = int(os.environ.get("LUCIDNET_FUZZ_EXAMPLES", "2000"))
#: the share of the cases each base file gets (the CLI files have the most fields)
WEIGHTS = {"clf": 0.40, "reg": 0.20, "api": 0.10, "est_clf": 0.18, "est_reg": 0.12}
#: where a mutation starts its walk down the document (those present in the base file), so that
#: deep fields are reached as often as the top ones
ANCHORS = [
    (),
    ("layers",),
    ("loss",),
    ("optimizer",),
    ("history",),
    ("metadata",),
    ("metadata", "preparation"),
    ("metadata", "preparation", "state"),
    ("metadata", "preparation", "target"),
    ("metadata", "preparation", "fit_report"),
    ("metadata", "test_metrics"),
    ("metadata", "test_metrics", "details"),
    ("metadata", "training"),
    ("metadata", "sklearn_estimator"),
    ("metadata", "sklearn_estimator", "params"),
    ("metadata", "sklearn_estimator", "fitted"),
]
#: placeholders replaced by lists nested this deep in the JSON text (``json.dumps`` itself
#: refuses to write them): 60 is accepted, 70 refused by the depth limit, ~990 is at the edge of
#: Python's parser, 5,000 beyond it
DEEP = {f"__lucidnet_fuzz_deep_{d}__": d for d in (60, 70, 400, 990, 5000)}

#: the hostile values a field may be replaced by
HOSTILE_VALUES: list[Any] = [
    *(None, True, False, 0, 1, -1, 2, 3, 2**31, 2**53 + 1, 2**63, -(2**63), 10**30, 10**400),
    *(0.5, -0.0, 1e308, -1e308, math.nan, math.inf, -math.inf),
    *("", "x", "classification", "regression", "softmax", "logistic", "float64", "Dense"),
    *("CrossEntropy", "=cmd|' /C calc'!A0", "a" * 10_000),
    *([], {}, [[]], [None], [1, 2], ["a", "a"], {"class": "Dense", "config": {}}),
    *DEEP,
]
HOSTILE = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none()), max_size=6),
    st.dictionaries(st.text(max_size=6), st.integers(-2, 2), max_size=3),
)

OPS = ("replace", "delete", "insert", "grow", "truncate", "wrap", "retype", "tweak", "move")
BYTE_OPS = ("flip", "truncate_file", "length", "append")


def _hostile(data: Any) -> Any:
    """A hostile value, copied: the strategy's lists and objects are shared constants, and a
    later mutation must not change them (hypothesis would see a different case next time)."""
    return copy.deepcopy(data.draw(HOSTILE))


def _children(node: Any) -> list[Any]:
    return list(node) if isinstance(node, dict) else list(range(len(node)))


def _walk(data: Any, holder: list[Any], start: tuple) -> tuple[Any, Any]:
    """A random node at or below ``start``: ``(container, key)``; the document itself is
    ``holder[0]``."""
    container, key = holder, 0
    node = holder[0]
    for k in start:  # (an earlier mutation may have changed the anchor's path: stop there)
        if not isinstance(node, dict) or k not in node:
            break
        container, key, node = node, k, node[k]
    while isinstance(node, (dict, list)) and node and data.draw(st.integers(0, 3)) > 0:
        k = data.draw(st.sampled_from(_children(node)))
        container, key, node = node, k, node[k]
    return container, key


def _retype(v: Any) -> Any:
    """The same information in another JSON type."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return [v] if not v.lstrip("-").isdigit() else int(v)
    if isinstance(v, list):
        return {str(i): x for i, x in enumerate(v)}
    if isinstance(v, dict):
        return list(v.values())
    return 0


def _tweak(data: Any, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _hostile(data)
    how = data.draw(st.sampled_from(["+1", "-1", "neg", "big", "half", "zero"]))
    return {
        "+1": lambda: v + 1,
        "-1": lambda: v - 1,
        "neg": lambda: -v,
        "big": lambda: v * 10**6 + 10**6,
        "half": lambda: v / 2,
        "zero": lambda: 0,
    }[how]()


def _mutate(data: Any, holder: list[Any], anchors: list[tuple]) -> str:
    """Apply one mutation to the document ``holder[0]`` (in place); return what it did."""
    container, key = _walk(data, holder, data.draw(st.sampled_from(anchors)))
    op = data.draw(st.sampled_from(OPS))
    if container is holder and op in ("delete", "move"):
        op = "replace"  # the document itself cannot be deleted
    node = container[key]
    label = f"{op} at {key!r:.30}"
    if op == "delete":
        del container[key]
    elif op == "insert" and isinstance(node, dict):
        node[data.draw(st.sampled_from(["x", "class", "config", "0", ""]))] = _hostile(data)
    elif op == "insert" and isinstance(node, list):
        node.insert(data.draw(st.integers(0, len(node))), _hostile(data))
    elif op == "grow" and isinstance(node, list) and node:
        times = data.draw(st.sampled_from([2, 3, 100, 10_000]))
        container[key] = (node * times)[:200_000]
    elif op == "truncate" and isinstance(node, (list, str)) and node:
        container[key] = node[: data.draw(st.integers(0, len(node) - 1))]
    elif op == "wrap":
        container[key] = [node] if data.draw(st.booleans()) else {"value": node}
    elif op == "retype":
        container[key] = _retype(node)
    elif op == "tweak":
        container[key] = _tweak(data, node)
    elif op == "move":
        source, name = _walk(data, holder, ())
        container[key] = copy.deepcopy(source[name])
        label = f"move {name!r:.30} to {key!r:.30}"
    else:
        container[key] = _hostile(data)
        label = f"replace {key!r:.30} by {str(container[key])[:30]!r}"
    return label


def _bytes_mutation(data: Any, raw: bytes) -> tuple[bytes, str]:
    op = data.draw(st.sampled_from(BYTE_OPS))
    if op == "flip":  # in the header or in the tensor data, as often
        raw = bytearray(raw)
        (n,) = struct.unpack("<Q", raw[:8])
        lo, hi = (
            (8, 8 + n - 1)
            if data.draw(st.booleans()) or n + 8 >= len(raw)
            else (8 + n, len(raw) - 1)
        )
        positions = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=4))
        for pos in positions:
            raw[pos] ^= data.draw(st.integers(1, 255))
        return bytes(raw), f"flip bytes {positions}"
    if op == "truncate_file":
        n = data.draw(st.integers(0, len(raw) - 1))
        return raw[:n], f"truncate to {n} bytes"
    if op == "length":
        (n,) = struct.unpack("<Q", raw[:8])
        m = data.draw(st.sampled_from([0, n - 1, n + 1, n + 8, 2**40, 2**64 - 1]))
        return struct.pack("<Q", max(0, m)) + raw[8:], f"header length {m}"
    return raw + b"\0garbage", "append bytes"


def _file_bytes(info: Any, header: dict[str, Any], data_bytes: bytes) -> bytes:
    """``join_file`` with the deep-nesting placeholders expanded in the JSON text."""
    raw = join_file(info, header, data_bytes)
    (n,) = struct.unpack("<Q", raw[:8])
    text = raw[8 : 8 + n]
    for placeholder, depth in DEEP.items():
        marker = json.dumps(json.dumps(placeholder))[1:-1].encode()  # as escaped in the header
        text = text.replace(marker, b"[" * depth + b"]" * depth)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


class Tally:
    """Cases run, readers run, outcomes per reader, and the escapes (with the mutations)."""

    def __init__(self) -> None:
        self.cases = 0
        self.runs = 0
        self.outcomes: Counter[str] = Counter()
        self.escapes: list[str] = []
        self.dirty_cases = 0
        self.refusals: Counter[str] = Counter()  # why `lucidnet info` refused, in short
        self.python_warnings: Counter[str] = Counter()  # NumPy's, from commands that ran

    def add(self, ops: list[str], outcomes: list[Any]) -> None:
        self.cases += 1
        self.dirty_cases += any(o.kind == "escaped" for o in outcomes)
        for o in outcomes:
            self.runs += 1
            self.outcomes[f"{o.reader}:{o.kind}{'+warning' if o.warned else ''}"] += 1
            self.python_warnings.update(o.python_warnings)
            if o.kind == "escaped":
                self.escapes.append(f"{o.reader}: {o.detail}  <- {'; '.join(ops)}")
            if o.reader == "info" and o.kind == "refused":
                reason = re.sub(
                    r"'[^']*\.lnet'", "FILE", o.detail.removeprefix("lucidnet: error: ")
                )
                self.refusals[re.sub(r"\d+", "N", reason)[:90]] += 1


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> Bases:
    return make_bases(tmp_path_factory.mktemp("fuzz_bases"))


@pytest.mark.parametrize("base", list(WEIGHTS))
def test_fuzz_model_files(base: str, bases: Bases, tmp_path: Path) -> None:
    source = getattr(bases, base)
    info0, header, data_bytes = split_file(source.read_bytes())
    anchors = [a for a in ANCHORS if _has(info0, a)]
    target, onnx_out = tmp_path / "case.lnet", tmp_path / "case.onnx"
    tally = Tally()
    budget = max(1, round(TOTAL * WEIGHTS[base]))

    @settings(
        max_examples=budget,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def case(data: Any) -> None:
        holder = [copy.deepcopy(info0)]
        ops = [_mutate(data, holder, anchors) for _ in range(data.draw(st.integers(1, 3)))]
        raw = _file_bytes(holder[0], header, data_bytes)
        if data.draw(st.integers(0, 7)) == 0:  # one case in 8: a byte-level mutation too
            raw, op = _bytes_mutation(data, raw)
            ops.append(op)
        target.write_bytes(raw)
        tally.add(ops, readers(target, bases, onnx_out, cli_data=False))

    start = time.perf_counter()
    case()
    seconds = time.perf_counter() - start
    clean = tally.cases - tally.dirty_cases
    summary = {
        "base": base,
        "cases": tally.cases,
        "clean_cases": clean,
        "reader_runs": tally.runs,
        "escapes": len(tally.escapes),
        "seconds": round(seconds, 1),
        "outcomes": dict(sorted(tally.outcomes.items())),
        "info_refusals": dict(tally.refusals.most_common(12)),
        "command_runtime_warnings": dict(tally.python_warnings.most_common(5)),
    }
    print(json.dumps(summary))
    if os.environ.get("LUCIDNET_FUZZ_REPORT"):
        with open(os.environ["LUCIDNET_FUZZ_REPORT"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**summary, "escaped": tally.escapes[:50]}) + "\n")
    assert tally.cases >= budget * 0.9, summary
    assert not tally.escapes, "\n".join(tally.escapes[:20])


def _has(doc: Any, path: tuple) -> bool:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return False
        doc = doc[key]
    return isinstance(doc, (dict, list)) and bool(doc)
