"""The architecture, enforced: no import cycles, the import contract catches what it should, and
the public API keeps working (``lucidnet.__all__``, the lazily loaded names, ``dir(lucidnet)``,
the modules' old paths, every ``ln.`` name the README uses).

The layering itself is checked by ``lint-imports`` (``make test``; contracts in pyproject.toml);
here a mutated copy of the package proves that each contract does fail on a violation. Tests that
need ``grimp`` / ``import-linter`` (dev extra) are skipped where they are not installed.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

import lucidnet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


# --- import cycles ------------------------------------------------------------------------------


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of a directed graph: its strongly connected components of two or more
    modules, and modules importing themselves (Tarjan's algorithm, iterative).

    Args:
        edges: module -> the modules it imports directly.

    Returns:
        One sorted list of module names per cycle, sorted.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    cycles.append(sorted(component))
    return sorted(cycles)


def run_time_import_graph(package: str, exclude: Iterable[str] = ()) -> dict[str, set[str]]:
    """``package``'s modules and their direct imports of each other, as executed at run time
    (imports under ``if TYPE_CHECKING:`` left out: they are never executed, so they cannot make
    an import order fail), without the modules in ``exclude``."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(package, exclude_type_checking_imports=True, cache_dir=None)
    modules = set(graph.modules) - set(exclude)
    return {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}


def test_cycle_finder_finds_cycles_and_nothing_else():
    edges = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},  # a -> b -> c -> a
        "d": {"e"},
        "e": set(),
        "f": {"f"},  # imports itself
        "g": {"h"},
        "h": {"g"},  # a two-module cycle
    }
    assert import_cycles(edges) == [["a", "b", "c"], ["f"], ["g", "h"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b"}}) == []


def test_run_time_graph_sees_cycles_but_not_type_checking_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a  # a lazy import still counts\n")
    (pkg / "c.py").write_text("from . import d\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = run_time_import_graph("cyclepkg")
    assert import_cycles(graph) == [["cyclepkg.a", "cyclepkg.b"]]


def test_the_package_has_no_run_time_import_cycles():
    """No module of lucidnet imports, directly or through others, a module that imports it;
    lazy imports inside functions count. The package root (``lucidnet/__init__.py``) is left
    out: it is the composition root, which imports the core and wires the delegations, and no
    module imports it (next test)."""
    graph = run_time_import_graph("lucidnet", exclude={"lucidnet"})
    assert len(graph) > 30, sorted(graph)  # the whole package was found, not an empty graph
    assert import_cycles(graph) == []


def test_no_module_imports_the_package_root():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("lucidnet", cache_dir=None)
    assert graph.find_modules_that_directly_import("lucidnet") == set()


def test_the_training_loop_does_not_import_the_model_at_run_time():
    graph = run_time_import_graph("lucidnet")
    assert "lucidnet.training" in graph["lucidnet.model"]  # the model calls the loop ...
    assert "lucidnet.model" not in graph["lucidnet.training"]  # ... the loop never the model


# --- the import contract (pyproject.toml) -------------------------------------------------------

#: file to change in a copy of the package, the import added to it, and the contract it breaks.
VIOLATIONS = [
    ("metrics.py", "from .glassbox import explain", "The core imports nothing above it"),
    ("training.py", "import pandas", "The core needs NumPy only"),
    ("data/splits.py", "from .. import losses", "Data and the core are independent"),
    ("glassbox/plots.py", "from ..data import prep", "Glass box and interop use the core only"),
    ("interop/estimators.py", "from ..glassbox import explain", "Layers:"),
    ("splitting.py", "from . import layers", "Layers:"),
]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    cmd = [str(exe), "--no-logo", "--no-cache"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_each_import_contract_fails_on_a_violation(tmp_path):
    """A copy of the package with one forbidden import per contract: every contract must report
    BROKEN (a contract that cannot fail, e.g. one naming a module that does not exist, would
    otherwise pass silently)."""
    shutil.copytree(
        ROOT / "lucidnet", tmp_path / "lucidnet", ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path, statement, _ in VIOLATIONS:
        with open(tmp_path / "lucidnet" / path, "a", encoding="utf-8") as fh:
            fh.write(f"\n{statement}  # violation planted by test_architecture\n")
    broken = lint_imports(tmp_path)
    assert broken.returncode != 0, broken.stdout
    report = re.sub(r"\s+", " ", broken.stdout)
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = [c["name"] for c in contracts["tool"]["importlinter"]["contracts"]]
    assert len(names) >= 5, names
    for name in names:
        assert f"{name} BROKEN" in report, (name, broken.stdout[-3000:])
    for path, statement, contract in VIOLATIONS:  # each planted import is reported
        module = "lucidnet." + path.removesuffix(".py").replace("/", ".")
        assert module in broken.stdout, (path, statement, contract)


def test_the_import_contracts_hold():
    kept = lint_imports(ROOT)
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-2000:]
    assert "BROKEN" not in kept.stdout


# --- the public API -----------------------------------------------------------------------------


def test_every_public_name_resolves():
    for name in lucidnet.__all__:
        assert getattr(lucidnet, name) is not None, name
    for name, module in lucidnet._LAZY_NAMES.items():
        assert getattr(lucidnet, name) is getattr(importlib.import_module(module), name), name
    for short, module in lucidnet._LAZY_MODULES.items():
        assert getattr(lucidnet, short) is importlib.import_module(module), short


def test_dir_lists_the_lazily_loaded_names():
    listed = set(dir(lucidnet))
    assert set(lucidnet.__all__) <= listed
    assert set(lucidnet._LAZY_NAMES) <= listed
    assert set(lucidnet._LAZY_MODULES) <= listed
    assert {"prep", "explain", "find_learning_rate", "NeuralNetworkClassifier"} <= listed


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        lucidnet.not_a_name  # noqa: B018
    assert not hasattr(lucidnet, "not_a_name")


OLD_PATHS = """
import importlib, sys
import lucidnet as ln
import lucidnet.data.prep, lucidnet.losses

assert ln.prep is lucidnet.data.prep
assert ln.prep.prepare is lucidnet.data.prep.prepare
assert ln.losses.get is lucidnet.losses.get

import lucidnet.prep
assert lucidnet.prep is lucidnet.data.prep
assert sys.modules["lucidnet.prep"] is lucidnet.data.prep
assert lucidnet.prep.__name__ == "lucidnet.data.prep"
assert lucidnet.prep.__spec__.name == "lucidnet.data.prep"

from lucidnet.prep import prepare
assert prepare is lucidnet.data.prep.prepare

for short, home in ln._LAZY_MODULES.items():  # every old path, imported first by its old name
    old = importlib.import_module("lucidnet." + short)
    assert old is importlib.import_module(home), short
    assert old.__spec__.name == home, short
print("ok")
"""


def test_old_module_paths_are_the_new_modules():
    """``ln.prep``, ``import lucidnet.prep``, ``from lucidnet.prep import ...``: the module in
    its new home, the same object. In a fresh interpreter, so that the old path is the first
    import (the test session has long imported the new homes)."""
    proc = subprocess.run(
        [sys.executable, "-c", OLD_PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"


def test_import_lucidnet_loads_only_the_core():
    code = textwrap.dedent(
        """
        import sys
        import lucidnet as ln
        dir(ln)
        heavy = ("pandas", "sklearn", "matplotlib", "onnx", "onnxruntime", "tqdm", "safetensors")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        print(sorted(m for m in sys.modules if m.startswith("lucidnet.")))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    heavy, loaded = proc.stdout.splitlines()
    assert heavy == "[]"
    for part in ("data", "glassbox", "interop", "cli"):
        assert f"'lucidnet.{part}" not in loaded, loaded


def readme_names() -> list[str]:
    """Every dotted ``ln.name`` / ``lucidnet.name`` the README mentions (code and prose)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"(?<![\w.])(?:ln|lucidnet)\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", text)
    return sorted(set(found))


def test_every_name_in_the_readme_resolves():
    names = readme_names()
    assert {"Sequential", "losses.get", "prep.prepare", "datasets.load_idx"} <= set(names)
    for dotted in names:
        obj: object = lucidnet
        for part in dotted.split("."):
            assert hasattr(obj, part), f"README names ln.{dotted}: no {part!r} in {obj!r}"
            obj = getattr(obj, part)
