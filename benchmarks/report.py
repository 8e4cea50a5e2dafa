"""Formatting helpers shared by the benchmark modules: Markdown tables and ratios."""

from __future__ import annotations

import math


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (list of lines) with columns padded to equal width."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return out


def ratio(t: float, ref: float, digits: int = 2) -> str:
    """``t / ref`` as ``"1.23x"`` (``"-"`` when either is missing)."""
    ok = math.isfinite(t) and math.isfinite(ref) and ref > 0
    return f"{t / ref:.{digits}f}x" if ok else "-"


def fmt_range(times: list[float], scale: float, digits: int) -> str:
    """``"min-max"`` of ``times`` scaled (e.g. 1e3 for milliseconds)."""
    if not times:
        return "-"
    return f"{min(times) * scale:.{digits}f}-{max(times) * scale:.{digits}f}"
