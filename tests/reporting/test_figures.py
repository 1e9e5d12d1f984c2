"""The report's figures: labels with units, scales, series, no overlapping text, saved files."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from backpain_epi import load_dictionary, simulate_cohort
from backpain_epi.reporting import figures as F
from backpain_epi.reporting.style import (
    DOUBLE_COLUMN_IN, FLAG_COLOUR, OUTCOME_COLOURS, SINGLE_COLUMN_IN, figure_style, model_colour, save_figure,
)

MODELS = ["unadjusted", "paper", "full", "full_hsgp"]
EXPOSURES = [("intermat_ml", "InterMAT volume", "2 SD = 120 mL"),
             ("lmm_ml", "Lean muscle volume", "2 SD = 475 mL"),
             ("imf_pct", "Intramuscular fat fraction", "2 SD = 7.43 %")]


@pytest.fixture(scope="module")
def dd():
    return load_dictionary()


@pytest.fixture(scope="module")
def ors():
    rng = np.random.default_rng(0)
    rows = []
    for m in MODELS:
        for term, label, per in EXPOSURES:
            if m == "unadjusted" and term == "imf_pct":
                continue  # a model without a term leaves its slot empty
            med = float(np.exp(rng.normal(0, 0.3)))
            rows.append({"model": m, "term": term, "kind": "exposure", "label": label, "per": per,
                         "or_median": med, "or_lo95": med / 1.12, "or_hi95": med * 1.12})
    return pd.DataFrame(rows)


GRID = [0, 50, 100, 200, 300, 400, 500, 600, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 7500,
        10000, 12500, 15000]


def _band_value(x):
    return 1.08 if x < 500 else 1.0 if x <= 5000 else 1.35


@pytest.fixture(scope="module")
def curves():
    parts = []
    g = np.array(GRID, dtype=float)
    smooth = np.exp(0.15 * ((np.log1p(g) - np.log1p(1500)) / 3) ** 2 + 0.02 * (g / 15000))
    smooth /= smooth[GRID.index(1500)]
    for m, basis in [("paper", "bands"), ("full", "spline"), ("full_hsgp", "hsgp"), ("full_b", "spline")]:
        med = np.array([_band_value(x) for x in g]) if basis == "bands" else smooth
        width = np.where(g == 1500, 1.0, 1.1)
        parts.append(pd.DataFrame({"model": m, "basis": basis, "met_min_week": g, "reference_met": 1500.0,
                                   "or_median": med, "or_lo95": med / width, "or_hi95": med * width}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(n=500, seed=1).data


@pytest.fixture(scope="module")
def comparison():
    return pd.DataFrame({
        "model": ["full_hsgp", "full", "paper", "unadjusted"], "rank": [1, 2, 3, 4],
        "elpd_loo": [-13729.0, -13729.5, -13736.5, -13896.8], "se": [90.0, 90.0, 90.0, 89.3],
        "p_loo": [32.2, 32.0, 27.4, 21.3], "elpd_diff": [0.0, 0.49, 7.47, 167.8], "dse": [0.0, 0.93, 5.4, 18.9],
        "weight": [0.76, 0.0, 0.24, 0.0]})


def _ppc(models):
    rng = np.random.default_rng(3)
    rows = []
    for m in models:
        pred = np.sort(rng.uniform(0.15, 0.45, 10))
        for d, p in enumerate(pred, 1):
            se = np.sqrt(p * (1 - p) / 2750)
            rows.append({"model": m, "decile": d, "n": 2750, "predicted": p, "observed": p + rng.normal(0, se),
                         "rep_lo95": p - 1.96 * se, "rep_hi95": p + 1.96 * se})
    return pd.DataFrame(rows)


def _sample(pid, flagged=False, note="", shape=(48, 40, 10), spacing=(2.0, 2.0, 5.0), z_range=(2, 8)):
    """A synthetic slab: four elliptical muscles (labels 1–4) in a brighter body, on slices ``z_range``."""
    rng = np.random.default_rng(len(pid))
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    body = ((x - 24) / 22) ** 2 + ((y - 20) / 17) ** 2 <= 1
    lab2d = np.zeros(shape[:2], np.uint8)
    for value, (cx, cy) in {1: (17, 12), 2: (31, 12), 3: (18, 26), 4: (30, 26)}.items():
        lab2d[((x - cx) / 5) ** 2 + ((y - cy) / 4) ** 2 <= 1] = value
    water = np.where(body, 300.0, 20.0)[..., None] + rng.normal(0, 10, shape)
    labels = np.zeros(shape, np.uint8)
    labels[:, :, z_range[0]:z_range[1]] = lab2d[..., None]
    water[labels > 0] += 200
    return {"participant_id": pid, "water": water, "labels": labels, "spacing": spacing, "flagged": flagged,
            "note": note}


@pytest.fixture(scope="module")
def samples():
    return [_sample(f"P{i:06d}", flagged=(i == 3), note="psoas_left_ml below 20 mL" if i == 3 else "")
            for i in range(1, 6)]


def _texts(fig):
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and callable(a.get_text))]


# --------------------------------------------------------------------------- forest


def test_forest_plot(ors, dd):
    fig = F.forest_plot(ors, dd)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Odds ratio per 2 SD (95% credible interval)"
    assert len(ax.containers) == len(MODELS)  # one error-bar series per model
    assert [t.get_text() for t in fig.legends[0].get_texts()] == MODELS
    colours = [mcolors.to_hex(c.lines[0].get_color()) for c in ax.containers]
    assert colours == [model_colour(i).lower() for i in range(len(MODELS))]
    ylabels = [t.get_text() for t in ax.get_yticklabels()]
    assert ylabels[0] == "InterMAT volume\n(2 SD = 120 mL)" and "mL" in ylabels[1] and "%" in ylabels[2]
    ticks = ax.get_xticks()
    assert 1.0 in ticks and len(ticks) >= 4
    assert all(t.get_text() for t in ax.get_xticklabels())  # plain numbers, no empty or 10^x labels
    assert any(isinstance(a, Line2D) and list(a.get_xdata()) == [1, 1] for a in ax.lines)  # reference at 1
    assert fig.get_size_inches()[0] == pytest.approx(SINGLE_COLUMN_IN)
    assert F.text_overlaps(fig) == []


def test_forest_plot_grows_with_rows(ors):
    small = F.forest_plot(ors[ors["term"] == "intermat_ml"])
    big = F.forest_plot(ors)
    assert big.get_size_inches()[1] > small.get_size_inches()[1]
    many = pd.concat([ors, ors.assign(term="psoas_ml", label="Psoas volume", per="2 SD = 150 mL")])
    assert F.forest_plot(many).get_size_inches()[0] == pytest.approx(DOUBLE_COLUMN_IN)


def test_missing_columns_are_reported(ors):
    with pytest.raises(ValueError, match="or_hi95"):
        F.forest_plot(ors.drop(columns="or_hi95"))


# --------------------------------------------------------------------------- activity curve


def test_activity_curve_plot(curves, cohort, dd):
    fig = F.activity_curve_plot(curves, cohort["met_min_week"], dictionary=dd)
    ax, hx = fig.axes
    assert ax.get_yscale() == "log"
    assert hx.get_xlabel() == "Physical activity (MET-min/week)"
    assert ax.get_ylabel() == "Odds ratio of CBP\nvs 1,500 MET-min/week"
    assert hx.get_ylabel() == "Participants" and len(hx.patches) > 10
    who = [ln for ln in ax.lines if list(ln.get_xdata()) == [600.0, 600.0]]
    assert len(who) == 1
    assert any(t.get_text().strip() == "WHO minimum (600)" for t in ax.texts)
    models = curves["model"].unique()
    series = [ln for ln in ax.lines if ln.get_label().split(" (")[0] in models]
    assert len(series) == len(models)
    assert len(ax.collections) == len(models)  # one credible band per model
    # the bands model is piecewise constant with jumps at the band edges
    bands = next(ln for ln in series if ln.get_label() == "paper (bands)")
    x, y = np.asarray(bands.get_xdata()), np.asarray(bands.get_ydata())
    assert list(x) == [0, 500, 500, 5000, 5000, 15000]
    assert list(y) == pytest.approx([1.08, 1.08, 1.0, 1.0, 1.35, 1.35])
    # reference point and the readable 0–2,000 range: it takes more than half of the width
    assert any(list(ln.get_xdata()) == [1500.0] for ln in ax.lines)
    x0, x1 = ax.transData.transform([(0, 1), (2000, 1)])[:, 0]
    left, right = ax.get_window_extent().x0, ax.get_window_extent().x1
    assert (x1 - x0) / (right - left) > 0.5
    assert F.text_overlaps(fig) == []


# --------------------------------------------------------------------------- distributions


def test_exposure_distributions(cohort, dd):
    exposures = ["intermat_ml", "lmm_ml", "imf_pct"]
    fig = F.exposure_distributions(cohort, exposures, dictionary=dd)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 3
    assert [a.get_xlabel() for a in axes] == [dd.label(c) for c in exposures]
    assert "(mL)" in axes[0].get_xlabel() and "(%)" in axes[2].get_xlabel()
    assert axes[0].get_ylabel() == "Density"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["No CBP", "CBP"]
    curve_colours = {mcolors.to_hex(ln.get_color()) for ln in axes[0].lines}
    assert {c.lower() for c in OUTCOME_COLOURS} <= curve_colours
    assert fig.get_size_inches()[0] == pytest.approx(DOUBLE_COLUMN_IN)
    assert F.text_overlaps(fig) == []


# --------------------------------------------------------------------------- LOO


def test_loo_plot(comparison):
    fig = F.loo_plot(comparison.sample(frac=1, random_state=2))  # input order does not matter
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["full_hsgp", "full", "paper", "unadjusted"]
    assert ax.get_xlabel() == "ELPD (LOO, higher is better)"
    elpd = ax.containers[0].lines[0]
    assert list(elpd.get_xdata()) == pytest.approx([-13729.0, -13729.5, -13736.5, -13896.8])
    assert len(ax.containers[1].lines[0].get_xdata()) == 3  # differences for all but the best
    right = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert right[0] == "best" and right[3].startswith("\u2212167.8")
    assert F.text_overlaps(fig) == []


# --------------------------------------------------------------------------- calibration


def test_calibration_plot():
    fig = F.calibration_plot(_ppc(MODELS))
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 4 and [a.get_title() for a in axes] == MODELS
    for a in axes:
        assert a.get_xlim() == pytest.approx(a.get_ylim())
        assert a.get_xlabel() == "Predicted CBP risk"
    assert axes[0].get_ylabel() == "Observed CBP proportion"
    assert all(a.get_xlim() == axes[0].get_xlim() for a in axes)
    assert F.text_overlaps(fig) == []


def test_calibration_plot_wraps_after_four():
    fig = F.calibration_plot(_ppc(MODELS + ["extra"]))
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(visible) == 5
    assert len({round(a.get_position().y0, 3) for a in visible}) == 2  # two rows
    assert F.text_overlaps(fig) == []


# --------------------------------------------------------------------------- QC overlays


def test_qc_overlays(samples):
    fig = F.qc_overlays(samples)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 5
    assert fig.get_size_inches()[0] == pytest.approx(DOUBLE_COLUMN_IN)
    assert axes[0].get_title() == "P000001"
    flagged = axes[2]
    assert flagged.get_title() == "P000003 \u00b7 QC flagged"
    assert mcolors.to_hex(flagged.title.get_color()) == FLAG_COLOUR.lower()
    assert "psoas_left_ml below 20 mL" in flagged.get_xlabel()
    assert "slice 5/10" in axes[0].get_xlabel()  # the middle of the labelled slices 3–8
    for a in axes:
        assert len(a.get_xticks()) == 0 and len(a.get_yticks()) == 0
        assert len(a.images) == 1
        assert len(a.collections) >= 4  # one contour set per label
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "Autochthonous L", "Autochthonous R", "Psoas L", "Psoas R"]
    assert F.text_overlaps(fig) == []


def test_qc_overlays_aspect_follows_spacing():
    s = _sample("P000009", spacing=(1.0, 3.0, 5.0))
    fig = F.qc_overlays([s], crop_mm=None)
    ax = fig.axes[0]
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    assert (x1 - x0, y1 - y0) == pytest.approx((48 * 1.0, 40 * 3.0))
    assert ax.get_aspect() == 1.0
    assert ax.xaxis_inverted()  # radiological view
    image = ax.images[0].get_array()
    lo, hi = np.percentile(s["water"][:, :, 4], [1, 99])  # slice 5 of 10: middle of slices 3–8
    assert ax.images[0].get_clim() == pytest.approx((lo, hi))
    assert image.shape == (40, 48)


def test_qc_overlays_takes_six_at_most(samples):
    fig = F.qc_overlays(samples + [_sample(f"P1{i:05d}") for i in range(4)])
    assert len([a for a in fig.axes if a.get_visible()]) == 6


# --------------------------------------------------------------------------- text overlaps and saving


def test_text_overlaps_detects_collisions():
    with figure_style():
        fig = Figure(figsize=(2, 2))
        ax = fig.add_subplot()
        ax.set_xticks([0, 0.01], ["a long tick label", "another long label"])
        ax.text(0.5, 0.5, "first text", transform=ax.transAxes)
        ax.text(0.52, 0.5, "second text", transform=ax.transAxes)
    pairs = F.text_overlaps(fig)
    assert ("text 'first text'", "text 'second text'") in pairs
    assert any("xtick" in a and "xtick" in b for a, b in pairs)


def test_text_overlaps_ignores_ticks_outside_view():
    with figure_style():
        fig = Figure(figsize=(3, 2))
        ax = fig.add_subplot()
        ax.set_xticks([0, 1, 100], ["zero", "one", "hundred"])
        ax.set_xlim(-0.5, 1.5)
    assert F.text_overlaps(fig) == []


def test_save_figure_png_300_dpi_and_svg(tmp_path, ors):
    paths = save_figure(F.forest_plot(ors), tmp_path / "fig", "forest")
    with Image.open(paths["png"]) as im:
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.5)
        assert im.size[0] == pytest.approx(SINGLE_COLUMN_IN * 300, rel=0.1)
    svg = paths["svg"].read_text()
    assert "<svg" in svg
    assert "InterMAT volume" in svg  # text kept as text, editable
