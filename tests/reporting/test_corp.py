"""CORP reliability diagram (Dimitriadis, Gneiting & Jordan, PNAS 2021): PAV curve, consistency band, Brier decomposition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

from backpain_epi.errors import BackpainEpiError
from backpain_epi.reporting.plots import plot_reliability, text_overlaps
from backpain_epi.reporting.stats import corp_curve, corp_decomposition, corp_scores

N = 5000


def _simulated(n: int = N, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Risks of a spread like the cohort's and outcomes drawn from them: ``p`` is calibrated for ``y``."""
    rng = np.random.default_rng(seed)
    p = special.expit(rng.normal(-1.0, 0.8, n))
    return p, (rng.random(n) < p).astype(int)


def _table(models: dict[str, np.ndarray], y: np.ndarray, **kw) -> pd.DataFrame:
    frames = []
    for name, p in models.items():
        c = corp_curve(p, y, **kw)
        c.insert(0, "model", name)
        c["level"] = kw.get("level", 0.9)
        for k, v in corp_scores(p, y).items():
            c[k] = v
        frames.append(c)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- the statistics


def test_a_calibrated_predictor_lies_in_its_band_with_mcb_near_zero():
    p, y = _simulated()
    curve = corp_curve(p, y, n_resamples=300)
    assert curve["inside"].mean() >= 0.75  # a pointwise 90% band: about 90% of the points, 78–96% over 20 seeds
    rank = curve["share"].cumsum()
    middle = curve[(rank > 0.05) & (rank < 0.95)]  # at the ends PAV pools to 0 or 1 in most resamples too
    assert ((middle["band_lo"] <= middle["predicted"]) & (middle["predicted"] <= middle["band_hi"])).mean() >= 0.95
    s = corp_scores(p, y)
    assert 0 <= s["mcb"] < 0.003


@pytest.mark.parametrize("distort", [np.sqrt, lambda p: special.expit(special.logit(p) + 0.6)], ids=["sqrt", "shifted_logit"])
def test_a_miscalibrated_predictor_leaves_its_band_with_mcb_clearly_above_zero(distort):
    p, y = _simulated()
    q = distort(p)
    curve = corp_curve(q, y, n_resamples=300)
    assert curve["inside"].mean() <= 0.3
    assert (curve["recalibrated"] < curve["band_lo"]).mean() >= 0.7  # too high predictions: the curve lies below the band
    assert corp_scores(q, y)["mcb"] > 5 * corp_scores(p, y)["mcb"] and corp_scores(q, y)["mcb"] > 0.005


def test_the_decomposition_adds_up_and_matches_direct_brier_scores():
    p, y = _simulated()
    for q in (p, np.sqrt(p), np.round(p, 2)):  # the last has many ties
        s = corp_scores(q, y)
        assert s["bs"] == pytest.approx(s["mcb"] - s["dsc"] + s["unc"], abs=1e-10)
        assert s["bs"] == pytest.approx(np.mean((q - y) ** 2), abs=1e-12)
        assert s["unc"] == pytest.approx(y.mean() * (1 - y.mean()), abs=1e-12)
        assert s["mcb"] >= -1e-12 and s["dsc"] >= -1e-12


def test_the_pav_curve_is_the_isotonic_fit_pooling_ties():
    p = np.array([0.1, 0.1, 0.2, 0.3, 0.3, 0.4])
    y = np.array([1, 0, 0, 1, 1, 0])
    curve = corp_curve(p, y, n_resamples=20)
    # pooled by tie: means 0.5 (n 2), 0 (1), 1 (2), 0 (1) -> PAV: 1/3, 1/3, 2/3, 2/3
    assert curve["predicted"].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert curve["recalibrated"].to_numpy() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert curve["share"].to_numpy() == pytest.approx([2 / 6, 1 / 6, 2 / 6, 1 / 6])


def test_the_same_seed_gives_the_same_band_and_another_seed_another():
    p, y = _simulated(2000)
    a, b = corp_curve(p, y, n_resamples=200, seed=4), corp_curve(p, y, n_resamples=200, seed=4)
    pd.testing.assert_frame_equal(a, b)
    c = corp_curve(p, y, n_resamples=200, seed=5)
    assert not np.allclose(a["band_lo"], c["band_lo"])
    pd.testing.assert_series_equal(a["recalibrated"], c["recalibrated"])  # the curve itself does not depend on the seed


def test_the_band_is_reported_at_a_bounded_number_of_points_covering_the_range():
    p, y = _simulated(20_000)
    curve = corp_curve(p, y, n_resamples=20, n_points=50)
    assert len(curve) <= 50 and curve["predicted"].is_monotonic_increasing
    assert curve["predicted"].iloc[0] == p.min() and curve["predicted"].iloc[-1] == p.max()
    assert curve["share"].sum() == pytest.approx(1.0)
    wider = corp_curve(p, y, n_resamples=20, level=0.99, n_points=50)
    assert ((wider["band_hi"] - wider["band_lo"]) >= (curve["band_hi"] - curve["band_lo"]) - 1e-12).all()


def test_bad_input_is_refused_naming_the_parameter():
    p, y = _simulated(100)
    with pytest.raises(BackpainEpiError, match="predictions must be probabilities"):
        corp_curve(np.append(p[:-1], 1.5), y)
    with pytest.raises(BackpainEpiError, match="outcomes must be 0 or 1"):
        corp_scores(p, np.append(y[:-1], 2))
    with pytest.raises(BackpainEpiError, match="one outcome per prediction"):
        corp_scores(p, y[:-1])
    with pytest.raises(BackpainEpiError, match="level"):
        corp_curve(p, y, level=90)
    with pytest.raises(BackpainEpiError, match="n_resamples"):
        corp_curve(p, y, n_resamples=0)


def test_corp_decomposition_has_one_row_per_model():
    p, y = _simulated(3000)
    corp = corp_decomposition(_table({"calibrated": p, "sqrt": np.sqrt(p)}, y, n_resamples=100))
    assert corp["model"].tolist() == ["calibrated", "sqrt"]
    assert corp["bs"].to_numpy() == pytest.approx((corp["mcb"] - corp["dsc"] + corp["unc"]).to_numpy(), abs=1e-10)
    assert corp.loc[1, "mcb"] > corp.loc[0, "mcb"] and corp.loc[1, "inside"] < corp.loc[0, "inside"]
    assert not corp.loc[1, "pav_inside_band"]
    with pytest.raises(BackpainEpiError, match="corp_reliability"):
        corp_decomposition(pd.DataFrame({"model": ["a"]}))


# --------------------------------------------------------------------------- the plot


def test_plot_reliability_one_panel_per_model_with_the_diagonal_band_and_scores():
    p, y = _simulated(3000)
    data = _table({"calibrated": p, "sqrt": np.sqrt(p), "shifted": special.expit(special.logit(p) - 0.5)}, y, n_resamples=50)
    axes = plot_reliability(data)
    visible = [a for a in axes if a.get_visible()]
    assert [a.get_title() for a in visible] == ["calibrated", "sqrt", "shifted"]
    for a in visible:
        assert a.get_xlim() == pytest.approx(a.get_ylim())
        lo, hi = a.get_xlim()
        diagonal = [ln for ln in a.get_lines() if len(ln.get_xdata()) == 2
                    and np.allclose(ln.get_xdata(), [lo, hi]) and np.allclose(ln.get_ydata(), [lo, hi])]
        assert len(diagonal) == 1
        assert a.collections, "the consistency band is shaded"
        assert any(t.get_text().startswith("MCB") for t in a.texts)
    assert axes[0].get_ylabel() == "Recalibrated CBP probability" and axes[0].get_xlabel() == "Predicted CBP risk"
    assert [t.get_text() for t in axes[0].figure.legends[0].get_texts()][1] == "90% consistency band"
    assert text_overlaps(axes[0].figure) == []


def test_plot_reliability_draws_into_given_axes_and_refuses_a_table_without_its_columns():
    from matplotlib.figure import Figure

    p, y = _simulated(1000)
    given = Figure().subplots(1, 3)
    axes = plot_reliability(_table({"a": p, "b": np.sqrt(p)}, y, n_resamples=20), axes=given)
    assert list(axes) == list(given) and not axes[2].get_visible() and axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="band_lo"):
        plot_reliability(pd.DataFrame({"model": ["a"], "predicted": [0.1], "recalibrated": [0.1]}))


# --------------------------------------------------------------------------- the section


def test_predictive_check_adds_the_reliability_figure_table_and_text(full_run, cohort_csv, dictionary):
    from backpain_epi.reporting.context import ReportContext, ReportOptions
    from backpain_epi.reporting.sections.checks import predictive_check
    from backpain_epi.reporting.stats import corp_reliability

    ctx = ReportContext.load([full_run], cohort_csv[0], dictionary, options=ReportOptions(survival=False))
    out = predictive_check(ctx)
    assert set(out.figures) == {"figure", "reliability"} and set(out.tables) == {"table", "corp_decomposition"}
    corp = out.values["corp"]
    assert corp["model"].tolist() == [full_run.name] and corp.loc[0, "n"] == len(ctx.runs[0].analysed)
    assert out.tables["corp_decomposition"].numeric is corp
    assert corp.loc[0, "mcb"] < 0.01  # the model is the simulation's, so it is nearly calibrated
    assert "CORP" in out.values["methods_text"] and "90% consistency band" in out.values["methods_text"]
    assert f"{full_run.name} {corp.loc[0, 'mcb']:.4f}" in out.values["results_text"]
    again = corp_reliability(ctx.runs[0], n_resamples=1000, level=0.9)
    assert corp_decomposition(again)["mcb"].iloc[0] == corp.loc[0, "mcb"]  # reproducible
    assert len(out.figures["reliability"].figure.axes) == 1


def test_posterior_mean_risk_in_chunks_equals_the_whole_draw_matrix(full_run, cohort_csv, dictionary):
    from backpain_epi.modelling.results import linear_predictor_draws
    from backpain_epi.reporting.context import ReportContext, ReportOptions
    from backpain_epi.reporting.stats import posterior_mean_risk

    run = ReportContext.load([full_run], cohort_csv[0], dictionary, options=ReportOptions(survival=False)).runs[0]
    p, y = posterior_mean_risk(run, max_draws=100, chunk_rows=700)
    whole = special.expit(linear_predictor_draws(run.result.idata, run.result.recipe, run.analysed, max_draws=100)).mean(axis=0)
    assert p == pytest.approx(whole, abs=1e-12) and y.tolist() == run.analysed[run.spec.outcome].astype(int).tolist()
