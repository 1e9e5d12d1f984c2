"""The report's statistics: numbers computed from the runs and the cohort, returned as DataFrames (or floats).

Nothing here draws or formats: the plots (:mod:`backpain_epi.reporting.plots`)
draw these tables and :mod:`backpain_epi.reporting.tables` turns them into
display text. Every function is pure: it reads its arguments and returns new data.

- participants: :func:`participant_flow`;
- odds ratios and the activity curve: :func:`odds_ratio_long`, :func:`exposure_odds_ratios`,
  :func:`all_terms`, :func:`truth_coverage`, :func:`activity_long`;
- exposures by outcome: :func:`density_by_outcome`;
- the posterior predictive check: :func:`ppc_by_decile`;
- calibration, CORP (Dimitriadis, Gneiting & Jordan, PNAS 2021): the PAV-recalibrated reliability diagram
  with its consistency band (:func:`corp_reliability`, :func:`corp_curve`) and the Brier score's
  decomposition MCB − DSC + UNC (:func:`corp_scores`, :func:`corp_decomposition`);
- segmentation: :func:`qc_counts`, and the agreement of measured with planted exposures
  (:func:`paired_exposures`, :func:`agreement_table`, :func:`icc_absolute_agreement`:
  ICC(A,1), McGraw & Wong 1996; Shrout & Fleiss ICC(2,1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import special
from scipy.optimize import isotonic_regression
from scipy.stats import gaussian_kde

from ..cohort import analysis_columns
from ..derived import DERIVED_FROM
from ..dictionary import DataDictionary
from ..errors import BackpainEpiError
from ..modelling.results import LinearPredictor
from ..segmentation.exposures import qc_failures
from ..validation import INVALID_ROWS

if TYPE_CHECKING:
    from .runs import ReportRun

#: Groups of predicted risk in the posterior predictive check.
N_DECILES = 10
#: Suffix of the planted value's column beside the measured one (``lmm_ml``, ``lmm_ml_planted``).
PLANTED_SUFFIX = "_planted"
#: Columns of an activity-curve table of several runs.
CURVE_COLUMNS = ["model", "basis", "met_min_week", "reference_met", "or_median", "or_lo95", "or_hi95"]


# --------------------------------------------------------------------------- participants


def participant_flow(data: pd.DataFrame, runs: list[ReportRun], dictionary: DataDictionary,
                     segmentation_failed: set[str] | None = None) -> pd.DataFrame:
    """STROBE-style participant flow, one column per model.

    Exclusions are applied in order, each row counting participants not already
    excluded: segmentation failed (no usable scan; with segmentation outputs),
    segmentation QC flag, invalid values left out by ``exclude_invalid_rows`` (one
    row per rule, for the rules in the columns of that model), missing exposure,
    missing covariate or activity.

    Parameters
    ----------
    data
        The analysis table the runs were fit on.
    runs
        The loaded runs; the column names are their names.
    dictionary
        Names the id column.
    segmentation_failed
        Ids of participants whose scan could not be segmented (adds that row).

    Returns
    -------
    pandas.DataFrame
        Counts (int), one row per step (index ``Step``) down to ``Analysed`` and ``  with CBP``.

    Raises
    ------
    BackpainEpiError
        A run's analysed count differs from the one this table gives for its spec.
    """
    id_col = dictionary.id_column
    rows = {}
    for run in runs:
        spec = run.spec
        left = pd.Series(True, index=data.index)
        counts = {"Participants in the table": len(data)}
        if segmentation_failed is not None:
            hit = left & data[id_col].astype(str).isin(segmentation_failed)
            counts["Excluded: segmentation failed (no usable scan)"] = int(hit.sum())
            left &= ~hit
        if "qc_flag" in data.columns and not run.provenance.data.qc_flagged_included:
            hit = left & (pd.to_numeric(data["qc_flag"], errors="coerce") == 1)
            counts["Excluded: segmentation QC flag"] = int(hit.sum())
            left &= ~hit
        used = set(analysis_columns(spec.columns(), dictionary))
        for reason, (column, where) in data.attrs.get(INVALID_ROWS, {}).items():
            if column in used:
                hit = left & data.index.isin(where)
                counts[f"Excluded: {reason}"] = int(hit.sum())
                left &= ~hit
        exposure_cols = list(spec.exposures)
        other_cols = [c for c in spec.columns() if c not in exposure_cols and c not in spec.impute]
        hit = left & data[exposure_cols].isna().any(axis=1)
        counts["Excluded: missing exposure"] = int(hit.sum())
        left &= ~hit
        hit = left & data[other_cols].isna().any(axis=1)
        counts["Excluded: missing covariate or activity"] = int(hit.sum())
        left &= ~hit
        for c in spec.impute:  # kept: the model imputes them (issue 15)
            counts[f"Kept, {' / '.join(DERIVED_FROM.get(c, (c,)))} imputed"] = int((left & data[c].isna()).sum())
        counts["Analysed"] = int(left.sum())
        counts["  with CBP"] = int(data.loc[left, spec.outcome].astype(int).sum())
        if counts["Analysed"] != run.provenance.data.n_analysed:
            raise BackpainEpiError(
                f"run {run.name} analysed {run.provenance.data.n_analysed:,} participants, but this table gives "
                f"{counts['Analysed']:,} for its spec; was it fit on another version of the data?"
            )
        rows[run.name] = counts
    table = pd.DataFrame(rows).fillna(0).astype(int)
    last = ["Analysed", "  with CBP"]
    table = table.loc[[i for i in table.index if i not in last] + last]
    table.index.name = "Step"
    return table


# --------------------------------------------------------------------------- odds ratios and the activity curve


def odds_ratio_long(runs: list[ReportRun], kinds: tuple[str, ...] | None = ("exposure",)) -> pd.DataFrame:
    """The runs' summary rows of ``kinds`` (all with ``None``) stacked, with a ``model`` column first.

    All numbers are as in the runs' ``summary.csv``; runs keep their order.
    """
    frames = []
    for run in runs:
        s = run.summary
        if kinds is not None:
            s = s[s["kind"].isin(kinds)]
        frames.append(s.assign(model=run.name))
    out = pd.concat(frames, ignore_index=True)
    return out[["model", *[c for c in out.columns if c != "model"]]]


def exposure_odds_ratios(runs: list[ReportRun]) -> pd.DataFrame:
    """The exposure rows of every run, term by term (in the order the specs name them), models in run order within a term."""
    long = odds_ratio_long(runs)
    order = {t: i for i, t in enumerate(dict.fromkeys(t for run in runs for t in run.spec.exposures))}
    return long.assign(_t=long["term"].map(order)).sort_values("_t", kind="stable").drop(columns="_t").reset_index(drop=True)


def all_terms(runs: list[ReportRun]) -> pd.DataFrame:
    """Every term of every run, model by model (in run order), exposures first, then covariates, then activity terms."""
    long = odds_ratio_long(runs, kinds=None)
    kind_order = {"exposure": 0, "covariate": 1, "activity": 2}
    model_order = {r.name: i for i, r in enumerate(runs)}
    long = long.assign(_k=long["kind"].map(kind_order)).sort_values(
        ["model", "_k"], key=lambda s: s.map(model_order) if s.name == "model" else s, kind="stable").drop(columns="_k")
    return long.reset_index(drop=True)


def activity_long(runs: list[ReportRun]) -> pd.DataFrame:
    """The runs' activity curves stacked, with ``model`` and ``basis`` columns first (no rows when no run has one)."""
    frames = [run.result.curve.assign(model=run.name, basis=run.spec.activity.basis)
              for run in runs if run.result.curve is not None]
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    return out[["model", "basis", *[c for c in out.columns if c not in ("model", "basis")]]]


def truth_coverage(true_ors: dict[str, float], terms: pd.DataFrame) -> pd.DataFrame:
    """Each model's estimate of every term with a known true odds ratio, and whether its 95% interval covers it.

    Parameters
    ----------
    true_ors
        True odds ratio by term (of a simulated cohort).
    terms
        Odds-ratio rows with a ``model`` column (:func:`all_terms`).

    Returns
    -------
    pandas.DataFrame
        ``term, label, per, model, true_or, or_median, or_lo95, or_hi95, covered``, terms in the order of ``terms``.
    """
    rows = terms[terms["term"].isin(list(true_ors))]
    out = rows[["term", "label", "per", "model"]].assign(true_or=rows["term"].map(true_ors))
    out = out.join(rows[["or_median", "or_lo95", "or_hi95"]])
    out["covered"] = (out["or_lo95"] <= out["true_or"]) & (out["true_or"] <= out["or_hi95"])
    order = {t: i for i, t in enumerate(dict.fromkeys(out["term"]))}
    return out.sort_values("term", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- exposures by outcome


def density_by_outcome(df: pd.DataFrame, column: str, outcome: str = "cbp", *, n_grid: int = 256) -> pd.DataFrame:
    """Kernel density estimate of ``column`` in each outcome group (0, 1), on one grid.

    The grid spans the 0.5–99.5th percentiles of the participants with both values,
    widened by 3% of that range on each side. A group with fewer than two values,
    or all of them equal, has no estimate (NaN).

    Returns
    -------
    pandas.DataFrame
        ``outcome`` (0, 1), ``x`` (the grid), ``density`` and ``median`` (the group's median value), ``n_grid`` rows per group.
    """
    x = pd.to_numeric(df[column], errors="coerce")
    y = pd.to_numeric(df[outcome], errors="coerce")
    ok = x.notna() & y.isin([0, 1])
    lo, hi = np.nanpercentile(x[ok], [0.5, 99.5])
    pad = 0.03 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, n_grid)
    frames = []
    for k in (0, 1):
        v = x[ok & (y == k)].to_numpy(float)
        estimable = v.size >= 2 and np.ptp(v) > 0
        frames.append(pd.DataFrame({"outcome": k, "x": grid, "density": gaussian_kde(v)(grid) if estimable else np.nan,
                                    "median": float(np.median(v)) if estimable else np.nan}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- posterior predictive check


def ppc_by_decile(run: ReportRun, *, max_draws: int = 400, seed: int = 0, chunk_rows: int = 20_000) -> pd.DataFrame:
    """Observed against predicted CBP by decile of predicted risk, with the replicated proportion's 95% interval.

    Predicted risk is each analysed participant's posterior mean probability; the
    replicated proportion draws ``y_rep ~ Bernoulli(p)`` per posterior draw, so the
    interval is where the observed proportion should fall if the model is right.

    Parameters
    ----------
    run
        A loaded run with its analysed rows.
    max_draws
        Posterior draws used at most (thinned evenly).
    seed
        Seed of the draw thinning and of the replicated outcomes.
    chunk_rows
        Participants taken at a time: memory stays at ``max_draws × chunk_rows`` whatever the cohort's
        size (the replicated outcomes are drawn chunk by chunk, in row order, from one seeded generator,
        so a cohort of at most ``chunk_rows`` rows gets the same draws as one pass over all rows).

    Returns
    -------
    pandas.DataFrame
        One row per decile: ``model, decile, n, predicted, observed, rep_lo95, rep_hi95, inside``
        (``inside``: the observed proportion lies in the replicated interval).
    """
    df = run.analysed
    p_mean, y = posterior_mean_risk(run, max_draws=max_draws, seed=seed, chunk_rows=chunk_rows)
    decile = pd.qcut(pd.Series(p_mean).rank(method="first"), N_DECILES, labels=False).to_numpy() + 1
    recipe, idata = run.result.recipe, run.result.idata
    X, A, group = recipe.transform(df)
    S = recipe.smooth_columns(df)
    rng = np.random.default_rng(seed)
    events = None
    lp = LinearPredictor(idata, recipe, max_draws)
    for lo in range(0, len(df), chunk_rows):
        s = slice(lo, lo + chunk_rows)
        eta = lp.eta(X[s], None if A is None else A[s], None if group is None else group[s], seed=seed,
                     S=None if S is None else S[s])
        p = special.expit(eta)
        y_rep = rng.random(p.shape) < p
        if events is None:
            events = np.zeros((len(p), N_DECILES))
        for d in range(N_DECILES):
            events[:, d] += y_rep[:, decile[s] == d + 1].sum(axis=1)
    rows = []
    for d in range(1, N_DECILES + 1):
        m = decile == d
        rep = events[:, d - 1] / m.sum()
        rows.append({"model": run.name, "decile": d, "n": int(m.sum()), "predicted": p_mean[m].mean(), "observed": y[m].mean(),
                     "rep_lo95": np.quantile(rep, 0.025), "rep_hi95": np.quantile(rep, 0.975)})
    out = pd.DataFrame(rows)
    out["inside"] = (out["observed"] >= out["rep_lo95"]) & (out["observed"] <= out["rep_hi95"])
    return out


# --------------------------------------------------------------------------- CORP reliability diagram and score decomposition
#
# Dimitriadis, Gneiting & Jordan (2021), "Stable reliability diagrams for probabilistic classifiers", PNAS 118(8):
# e2016191118. CORP: Consistent, Optimally binned, Reproducible, PAV-based. The recalibrated probability at each
# prediction is the isotonic (pool-adjacent-violators) regression of the outcome on the prediction; under the
# hypothesis of calibration, outcomes resampled as Bernoulli(prediction) and refit give the consistency band.


def posterior_mean_risk(run: ReportRun, *, max_draws: int = 400, seed: int = 0,
                        chunk_rows: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Each analysed participant's posterior mean probability of the outcome, and the observed outcome (0/1).

    The draws are thinned to ``max_draws`` as in :func:`ppc_by_decile`, and taken ``chunk_rows``
    participants at a time, so memory stays at ``max_draws × chunk_rows`` whatever the cohort's size.
    """
    df = run.analysed
    X, A, group = run.result.recipe.transform(df)
    S = run.result.recipe.smooth_columns(df)
    p = np.empty(len(df))
    lp = LinearPredictor(run.result.idata, run.result.recipe, max_draws)
    for lo in range(0, len(df), chunk_rows):
        s = slice(lo, lo + chunk_rows)
        eta = lp.eta(X[s], None if A is None else A[s], None if group is None else group[s], seed=seed,
                     S=None if S is None else S[s])
        p[s] = special.expit(eta).mean(axis=0)
    return p, df[run.spec.outcome].astype(int).to_numpy()


def _pav_inputs(p, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked predictions and outcomes pooled by distinct prediction: ``(x, counts, events)``, ``x`` increasing."""
    p = np.asarray(p, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if p.shape != y.shape:
        raise BackpainEpiError(f": {p.size} predictions but {y.size} outcomes; give one outcome per prediction.", param="y")
    if p.size < 2:
        raise BackpainEpiError(f": {p.size} prediction(s); the reliability diagram needs at least 2.", param="p")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        bad = int(np.flatnonzero(~(np.isfinite(p) & (p >= 0) & (p <= 1)))[0])
        raise BackpainEpiError(f": prediction {bad} is {p[bad]!r}; predictions must be probabilities in [0, 1].", param="p")
    if not np.isin(y, (0, 1)).all():
        bad = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
        raise BackpainEpiError(f": outcome {bad} is {y[bad]!r}; outcomes must be 0 or 1.", param="y")
    x, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    return x, counts.astype(float), np.bincount(inverse, weights=y, minlength=x.size)


def _pav(means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The PAV (isotonic, increasing) fit of ``means`` weighted by ``counts``."""
    return isotonic_regression(means, weights=counts, increasing=True).x


def corp_scores(p, y) -> dict[str, float]:
    """The CORP decomposition of the Brier score: ``BS = MCB − DSC + UNC``.

    With ``p̂`` the PAV-recalibrated predictions and ``ȳ`` the observed proportion:
    ``MCB = BS(p) − BS(p̂)`` (miscalibration, ≥ 0), ``DSC = BS(ȳ) − BS(p̂)`` (discrimination, ≥ 0),
    ``UNC = BS(ȳ) = ȳ(1 − ȳ)`` (uncertainty). Tied predictions are pooled before the PAV fit.

    Parameters
    ----------
    p, y
        Predicted probabilities and observed outcomes (0/1), one per participant.

    Returns
    -------
    dict
        ``n``, ``bs``, ``mcb``, ``dsc``, ``unc``.
    """
    x, counts, events = _pav_inputs(p, y)
    cep = _pav(events / counts, counts)
    n = counts.sum()
    ybar = events.sum() / n

    def brier(f):  # Brier score of forecasts f at the distinct predictions, from the pooled outcomes
        return float(np.sum(events * (1 - f) ** 2 + (counts - events) * f**2) / n)

    bs, bs_cal, unc = brier(x), brier(cep), brier(np.full_like(x, ybar))
    return {"n": int(n), "bs": bs, "mcb": bs - bs_cal, "dsc": unc - bs_cal, "unc": unc}


def corp_curve(p, y, *, n_resamples: int = 1000, seed: int = 0, level: float = 0.9, n_points: int = 200) -> pd.DataFrame:
    """The CORP reliability diagram of predictions ``p`` and outcomes ``y``, with its consistency band.

    The PAV-recalibrated probability (the isotonic regression of ``y`` on ``p``) is reported at up
    to ``n_points`` of the predictions: half at equal steps of rank (as dense as the predictions),
    half nearest to equal steps of value (the sparse tails), first and last included. The consistency band is CORP's
    resampling band: ``n_resamples`` times, outcomes are drawn as ``Bernoulli(p)`` (the data the
    predictions would give if they were calibrated) and the PAV fit is redone; the band is the
    pointwise ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of those refits at each point. Memory is
    ``n_resamples × n_points`` plus one resample of the predictions, whatever their number.

    Parameters
    ----------
    p, y
        Predicted probabilities and observed outcomes (0/1), one per participant.
    n_resamples
        Resamples of the consistency band (at least 10).
    seed
        Seed of the resampled outcomes: the same seed gives the same band.
    level
        Pointwise coverage of the band, in (0, 1); 0.9 as in the CORP paper's figures.
    n_points
        Points at which the curve and the band are reported, at most (at least 2).

    Returns
    -------
    pandas.DataFrame
        One row per point, predictions increasing: ``predicted``, ``recalibrated`` (PAV),
        ``band_lo``, ``band_hi``, ``share`` (fraction of the participants with a prediction above the
        previous point's and up to this one's: the predictions' distribution), ``inside`` (the
        recalibrated probability lies in the band).
    """
    if int(n_resamples) != n_resamples or n_resamples < 10:
        raise BackpainEpiError(f"={n_resamples!r}: give a whole number of at least 10 (1000 is the default).", param="n_resamples")
    if not 0 < level < 1:
        raise BackpainEpiError(f"={level!r}: give the band's coverage as a fraction in (0, 1), e.g. 0.9.", param="level")
    if int(n_points) != n_points or n_points < 2:
        raise BackpainEpiError(f"={n_points!r}: give a whole number of at least 2.", param="n_points")
    x, counts, events = _pav_inputs(p, y)
    cep = _pav(events / counts, counts)
    rank = np.cumsum(counts) - 1  # rank of the last participant at each distinct prediction
    by_rank = np.searchsorted(rank, np.linspace(0, rank[-1], int(n_points) - int(n_points) // 2).round())
    by_value = np.searchsorted(x, np.linspace(x[0], x[-1], int(n_points) // 2))  # the sparse tails too
    at = np.unique(np.concatenate([by_rank, np.minimum(by_value, x.size - 1)]))
    rng = np.random.default_rng(seed)
    ties = bool((counts > 1).any())
    refits = np.empty((int(n_resamples), at.size))
    for b in range(int(n_resamples)):
        drawn = rng.binomial(counts.astype(np.int64), x) if ties else rng.random(x.size) < x  # Bernoulli(p), pooled by tie
        refits[b] = _pav(drawn / counts, counts)[at]
    lo, hi = np.quantile(refits, [(1 - level) / 2, (1 + level) / 2], axis=0)
    covered = np.diff(rank[at], prepend=-1)  # participants from the previous point (exclusive) to this one
    out = pd.DataFrame({"predicted": x[at], "recalibrated": cep[at], "band_lo": lo, "band_hi": hi,
                        "share": covered / counts.sum()})
    out["inside"] = (out["recalibrated"] >= out["band_lo"]) & (out["recalibrated"] <= out["band_hi"])
    return out


def corp_reliability(run: ReportRun, *, n_resamples: int = 1000, seed: int = 0, level: float = 0.9, n_points: int = 200,
                     max_draws: int = 400) -> pd.DataFrame:
    """The CORP reliability diagram of a run, with its consistency band and the Brier score's decomposition.

    The predictions are each analysed participant's posterior mean probability
    (:func:`posterior_mean_risk`); the curve and band are :func:`corp_curve`'s, the scores :func:`corp_scores`'.

    Parameters
    ----------
    run
        A loaded run with its analysed rows.
    n_resamples, seed, level, n_points
        As in :func:`corp_curve`; ``seed`` also thins the draws.
    max_draws
        Posterior draws used at most (thinned evenly).

    Returns
    -------
    pandas.DataFrame
        :func:`corp_curve`'s rows with ``model`` first, and the model's ``level``, ``n``, ``bs``,
        ``mcb``, ``dsc``, ``unc`` repeated on each of its rows (:func:`corp_decomposition` takes one row per model).
    """
    p, y = posterior_mean_risk(run, max_draws=max_draws, seed=seed)
    out = corp_curve(p, y, n_resamples=n_resamples, seed=seed, level=level, n_points=n_points)
    out.insert(0, "model", run.name)
    out["level"] = level
    for k, v in corp_scores(p, y).items():
        out[k] = v
    return out


#: Columns of :func:`corp_decomposition`.
CORP_COLUMNS = ["model", "n", "bs", "mcb", "dsc", "unc", "level", "points", "inside", "pav_inside_band"]


def corp_decomposition(reliability: pd.DataFrame) -> pd.DataFrame:
    """The CORP Brier score decomposition, one row per model, from :func:`corp_reliability`'s table (of one or more runs).

    Returns
    -------
    pandas.DataFrame
        ``model, n, bs, mcb, dsc, unc`` (``bs = mcb − dsc + unc``), the band's ``level``, its ``points``, how many
        of them have the PAV curve ``inside`` the band, and ``pav_inside_band`` (all of them).
    """
    missing = [c for c in ("model", "n", "bs", "mcb", "dsc", "unc", "level", "inside") if c not in reliability.columns]
    if missing:
        raise BackpainEpiError(f": lacks column(s) {', '.join(missing)}; give the table corp_reliability returns.",
                               param="reliability")
    g = reliability.groupby("model", sort=False)
    out = g[["n", "bs", "mcb", "dsc", "unc", "level"]].first()
    out["points"] = g.size()
    out["inside"] = g["inside"].sum().astype(int)
    out["pav_inside_band"] = out["inside"] == out["points"]
    return out.reset_index()[CORP_COLUMNS]


# --------------------------------------------------------------------------- segmentation


def qc_counts(exposures: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """Segmentation QC as counts: scans in the manifest, segmented, failed (by reason), flagged (by rule).

    Returns
    -------
    pandas.DataFrame
        ``Step`` (text; reasons and rules indented under their count) and ``Participants`` (int).
    """
    rows = [("Scans in the manifest", len(exposures) + len(failures)), ("Segmented", len(exposures)),
            ("Failed (no exposures)", len(failures))]
    if len(failures):
        for reason, n in failures["reason"].map(lambda r: str(r).split(":")[0][:80]).value_counts().items():
            rows.append((f"  failed: {reason}", int(n)))
    flagged = exposures[exposures["qc_flag"].astype(int) == 1] if len(exposures) else exposures
    rows.append(("QC flagged (excluded from the models)", len(flagged)))
    if len(flagged):
        reasons = pd.Series([r for _, row in flagged.iterrows() for r in qc_failures(row.to_dict())]).str.split(":").str[0]
        for reason, n in reasons.value_counts().items():
            rows.append((f"  flagged: {reason}", int(n)))
    return pd.DataFrame(rows, columns=["Step", "Participants"])


def icc_absolute_agreement(ratings: np.ndarray) -> float:
    """ICC(A,1): two-way model, absolute agreement, single measurement.

    Parameters
    ----------
    ratings
        ``(n subjects, k raters)`` array without missing values; here k = 2
        (planted, measured).

    Returns
    -------
    float
        ``(MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)`` from the two-way ANOVA
        mean squares of rows (R), columns (C) and error (E). Systematic bias
        between raters lowers it, unlike a correlation.
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        raise BackpainEpiError("ICC needs an (n ≥ 2 subjects × k ≥ 2 raters) table of finite numbers.")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    return float((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n))


def paired_exposures(measured: pd.DataFrame, planted: pd.DataFrame, exposures: Sequence[str],
                     id_col: str = "participant_id") -> pd.DataFrame:
    """Measured and planted values side by side (``<col>`` and ``<col>_planted``), for participants with both.

    Raises
    ------
    BackpainEpiError
        An exposure column is missing from either table.
    """
    missing = [c for c in exposures if c not in measured.columns or c not in planted.columns]
    if missing:
        raise BackpainEpiError(f"agreement: exposure column(s) {', '.join(missing)} missing from the measured or the planted table.")
    m = measured[[id_col, *exposures]].astype({id_col: str})
    p = planted[[id_col, *exposures]].astype({id_col: str}).rename(columns={c: c + PLANTED_SUFFIX for c in exposures})
    return m.merge(p, on=id_col, how="inner").dropna()


def agreement_table(pairs: pd.DataFrame, exposures: Sequence[str]) -> pd.DataFrame:
    """Agreement of measured with planted values, one row per exposure.

    Returns
    -------
    pandas.DataFrame
        ``exposure, n, planted_median, measured_median, mean_difference`` (measured − planted),
        ``loa_lo, loa_hi`` (Bland–Altman 95% limits of agreement), ``median_abs_rel_error_pct``,
        ``icc_a1`` (:func:`icc_absolute_agreement`) and ``pearson_r``.
    """
    rows = []
    for c in exposures:
        planted, measured = pairs[c + PLANTED_SUFFIX].to_numpy(float), pairs[c].to_numpy(float)
        diff = measured - planted
        sd = diff.std(ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(diff) / np.abs(planted)
        rows.append({
            "exposure": c, "n": len(pairs),
            "planted_median": np.median(planted), "measured_median": np.median(measured),
            "mean_difference": diff.mean(), "loa_lo": diff.mean() - 1.96 * sd, "loa_hi": diff.mean() + 1.96 * sd,
            "median_abs_rel_error_pct": 100 * float(np.nanmedian(rel[np.isfinite(rel)])) if np.isfinite(rel).any() else np.nan,
            "icc_a1": icc_absolute_agreement(np.column_stack([planted, measured])),
            "pearson_r": float(np.corrcoef(planted, measured)[0, 1]),
        })
    return pd.DataFrame(rows)
