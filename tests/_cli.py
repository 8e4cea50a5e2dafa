"""The command line in-process for tests: ``run(argv)`` -> (exit status, stdout, stderr)."""

from __future__ import annotations

import contextlib
import io

from lucidnet.cli import commands


def run(argv: list) -> tuple[int, str, str]:
    """``lucidnet ARGV`` in-process (``commands.main``; each item made a string), stdout and
    stderr captured (usable in module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = commands.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
