"""The shared helpers: text_overlaps finds collisions and ignores ticks out of view; log-OR ticks are readable."""

from __future__ import annotations

from matplotlib.figure import Figure

from backpain_epi.reporting.plots import text_overlaps
from backpain_epi.reporting.plots._axes import log_ticks
from backpain_epi.reporting.style import figure_style


def test_text_overlaps_detects_collisions():
    with figure_style():
        fig = Figure(figsize=(2, 2))
        ax = fig.add_subplot()
        ax.set_xticks([0, 0.01], ["a long tick label", "another long label"])
        ax.text(0.5, 0.5, "first text", transform=ax.transAxes)
        ax.text(0.52, 0.5, "second text", transform=ax.transAxes)
    pairs = text_overlaps(fig)
    assert ("text 'first text'", "text 'second text'") in pairs
    assert any("xtick" in a and "xtick" in b for a, b in pairs)


def test_text_overlaps_ignores_ticks_outside_view():
    with figure_style():
        fig = Figure(figsize=(3, 2))
        ax = fig.add_subplot()
        ax.set_xticks([0, 1, 100], ["zero", "one", "hundred"])
        ax.set_xlim(-0.5, 1.5)
    assert text_overlaps(fig) == []


def test_log_ticks_are_plain_and_include_one():
    assert log_ticks(0.8, 1.3) == [0.8, 0.9, 1, 1.2]
    assert 1 in log_ticks(0.5, 2.0) and 4 <= len(log_ticks(0.5, 2.0)) <= 8
