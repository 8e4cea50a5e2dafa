"""The two fast paths every equality test runs: NumPy only, and with the compiled kernels.

A test module declares the fixtures with ``jit_fixture = _jit.JIT`` and ``calls_fixture =
_jit.CALLS``; its tests then take ``jit`` and ``calls`` arguments:

* ``jit`` is ``"numpy"`` (``kernels.set_mode("0")``, as ``LUCIDNET_JIT=0``) or ``"kernels"``
  (``set_mode("1")``: every kernel runs from the first call, whatever the size, so that small
  test shapes exercise them); the kernels variant is skipped where numba is not installed;
* ``calls`` lists the kernels called during the test, in order (to show the path really ran).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lucidnet import kernels

MODES = ["numpy", "kernels"]


def _jit(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "kernels" and not kernels.available():
        pytest.skip("numba is not installed")
    previous = kernels.set_mode("1" if request.param == "kernels" else "0")
    try:
        yield request.param
    finally:
        kernels.set_mode(previous)


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = kernels.kernel

    def spy(name: str, size: int = 0):
        seen.append(name)
        return original(name, size)

    monkeypatch.setattr(kernels, "kernel", spy)
    return seen


JIT = pytest.fixture(params=MODES, name="jit")(_jit)
CALLS = pytest.fixture(name="calls")(_calls)
