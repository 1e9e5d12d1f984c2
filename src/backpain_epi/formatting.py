"""The one place where numbers become display text: odds ratios, p-values, probabilities, counts.

Tables, figures, the printed summaries and the methods/results text all format
through these functions, so a number reads the same everywhere.
"""

from __future__ import annotations

import math


def format_or(mid: float, lo: float, hi: float, digits: int = 2, *, interval: str | None = None) -> str:
    """``1.30 (1.20–1.41)``: an estimate and its 95% interval.

    With ``interval`` (e.g. ``"95% CrI"``), as it reads in a sentence: ``1.30, 95% CrI 1.20–1.41``.
    """
    if interval:
        return f"{mid:.{digits}f}, {interval} {lo:.{digits}f}–{hi:.{digits}f}"
    return f"{mid:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def format_p(p: float, *, prefix: bool = False) -> str:
    """A p-value: ``0.023``, or ``<0.001`` below one in a thousand.

    With ``prefix``, as it reads in a sentence: ``p = 0.023`` / ``p < 0.001``.
    """
    if prefix:
        return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_prob(p: float) -> str:
    """A posterior probability to three decimals, with ``<0.001`` / ``>0.999`` at the ends (never 0 or 1)."""
    if p < 0.0005:
        return "<0.001"
    if p > 0.9995:
        return ">0.999"
    return f"{p:.3f}"


def format_int(n: float) -> str:
    """A count with thousands separators: ``27,518``."""
    return f"{round(n):,}"


def format_sig(v: float) -> str:
    """Three significant digits without scientific notation: ``2,570`` / ``210`` / ``49.7`` / ``8.71``."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{round(v, digits):,.{digits}f}"
