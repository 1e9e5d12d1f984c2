"""A synthetic NAKO-like cohort with a known truth: the package's embedded data.

The margins follow the NAKO MRI sub-study (Ziegelmayer et al. 2025): ages
19–74 (median about 49), about 44 % women, 18 study sites of unequal size,
physical activity with about 40 % below 500, 47 % between 500 and 5000 and
14 % above 5000 MET-min/week, comorbidities that rise with age, and muscle
exposures that depend on sex, age, BMI and activity. Chronic back pain (CBP)
is drawn from a logistic model with a random intercept per site, odds ratios
per 2 SD of each exposure and covariate (optionally modified by sex, or flat
below a threshold), and a U-shaped activity curve; every
parameter of that truth is a field of :class:`CohortTruth`, so tests can plant
another truth and check that it is recovered.

Example
-------
>>> from backpain_epi import CohortTruth, simulate_cohort
>>> sim = simulate_cohort(n=2000, seed=1, truth=CohortTruth(site_sd=0.0))
>>> sim.data.shape[0], round(sim.truth["prevalence"], 2)  # doctest: +SKIP
(2000, 0.22)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .records import VERSION as __version__
from .tableio import check_output_path, write_table, write_text
from .cohort import add_activity_band
from .derived import ACTIVITY_REFERENCE_MET
from .dictionary import load_dictionary
from .errors import BackpainEpiError, unknown_choice
from .truth import ACTIVITY_SCALE_OFFSET, CONTINUOUS_TERMS, DEFAULT_SEED, EXPOSURES, MODIFIER, N_NAKO, N_SITES, TRUTH_TERMS, CohortTruth

ONSET_RISK_EXPONENT = 0.5  # how strongly CBP risk brings the onset forward
SHAPE_GRID = (0.02, 0.98, 25)  # the true exposure curve: 25 points between the 2nd and 98th percentile
COMORBIDITIES = ("diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis")
#: covariates that ``mar_missing`` may plant missing values in
MAR_COLUMNS = ("met_min_week", "bmi", *COMORBIDITIES)
MAR_MAX_FRACTION = 0.6
#: the MAR model: log odds of a missing value per SD of age and for a case (cbp = 1); the intercept is solved
MAR_LOG_OR_AGE = 0.6
MAR_LOG_OR_CBP = 0.8
MAR_MECHANISM = "MAR: logit P(missing) = a + b_age z_age + b_cbp cbp"
#: measurement error: se = value * SD(true exposure) * U, U ~ Uniform(ME_SE_FACTOR_RANGE)
ME_MAX_VALUE = 2.0
ME_SE_FACTOR_RANGE = (0.5, 1.5)
#: entropy tags of the option generators, so that an option never moves the default random stream
_STREAM_MAR, _STREAM_ME = 0x4D4152, 0x4D45


@dataclass
class SimulatedCohort:
    """A simulated cohort table and the truth that generated it."""

    data: pd.DataFrame
    truth: dict
    #: with ``measurement_error``: ``participant_id`` and the error-free values of the exposures planted with error
    true_exposures: pd.DataFrame | None = None

    def write(self, out: str | os.PathLike, truth_out: str | os.PathLike | None = None) -> None:
        """Write the table (CSV or Parquet by suffix) and, if asked, the truth as JSON.

        The truth is written first, so that a table on disk always has its truth.
        Both writes are atomic (temporary file, then rename).
        """
        check_output_path(out)
        if truth_out is not None:
            write_text(json.dumps(self.truth, indent=2) + "\n", truth_out)
        write_table(self.data, out)


def simulate_cohort(
    n: int = N_NAKO,
    seed: int = DEFAULT_SEED,
    truth: CohortTruth | None = None,
    *,
    n_sites: int = N_SITES,
    missing_frac: float = 0.0,
    mar_missing: dict[str, float] | None = None,
    measurement_error: dict[str, float] | None = None,
) -> SimulatedCohort:
    """Simulate a NAKO-like cohort table with CBP drawn from a known truth.

    Parameters
    ----------
    n
        Number of participants (default: the 27,518 of the NAKO analysis).
    seed
        Seed of the random generator; the same seed gives the same table.
    truth
        The data-generating model (default :class:`CohortTruth`).
    n_sites
        Number of study sites.
    missing_frac
        Fraction of missing values planted (completely at random) in each of
        ``bmi`` and ``met_min_week``, to exercise complete-case handling.
    mar_missing
        ``{column: fraction}``: missing values planted at random (MAR) in covariates
        (``met_min_week``, ``bmi``, the binary comorbidities), more often in older
        participants and in cases: ``logit P(missing) = a + b_age z_age + b_cbp cbp``
        with ``b_age`` = :data:`MAR_LOG_OR_AGE` per SD of age, ``b_cbp`` =
        :data:`MAR_LOG_OR_CBP`, and ``a`` solved so that the expected fraction is the
        one asked for (in [0, 0.6]). Planted after the outcome is drawn, each column
        independently; recorded in the truth's ``missingness``.
    measurement_error
        ``{exposure: value}`` with value in (0, 2]: the exposure is observed with
        classical error, ``observed = true + Normal(0, se)``, with a known per-row
        ``se = value * SD(true exposure) * U``, ``U ~ Uniform(0.5, 1.5)``
        (heteroscedastic). The outcome is drawn from the true exposure; the table
        holds the observed values and the SE column ``<exposure>_se``, and
        ``true_exposures`` the true ones. Observed values are not clipped (classical
        error), so some may fall outside the dictionary's range (below 0), which
        :func:`~backpain_epi.validation.validate_table` reports; the truth's
        ``measurement_error`` counts them (``n_outside_range``). The truth
        records the reliability ratio and the expected attenuated odds ratio.

    Returns
    -------
    SimulatedCohort
        ``data``: the cohort table with the dictionary's cohort columns and
        ``activity_band``; ``truth``: a JSON-ready dict with the odds ratios per
        2 SD, the per-unit log odds ratios, the exposure SDs, the site effects,
        the intercept, the activity curve, the realised prevalence, any planted
        ``effect_modification`` (ORs by sex stratum, RERI) and ``exposure_shape``
        (threshold, true OR curve vs the median), and the true marginal risks
        (``absolute_risk``, ``absolute_risk_by_stratum``) by g-computation on the
        true model. With nothing planted the table is the same as without these
        truths (they draw no random numbers), and ``mar_missing`` and
        ``measurement_error`` draw from generators of their own (seeded from
        ``seed``), so they leave the rest of the table as it is without them.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BackpainEpiError(f"seed must be a whole number ≥ 0, got {seed!r}.")
    if int(n) != n or n < 50:
        raise BackpainEpiError(f"n must be a whole number of at least 50 participants, got {n}.")
    if not 2 <= n_sites <= 100:
        raise BackpainEpiError(f"n_sites must lie between 2 and 100, got {n_sites}.")
    if not 0 <= missing_frac < 0.5:
        raise BackpainEpiError(f"missing_frac must lie in [0, 0.5), got {missing_frac}.")
    mar_missing = _check_mar(mar_missing)
    measurement_error = _check_measurement_error(measurement_error)
    truth = truth or CohortTruth()
    rng = np.random.default_rng(seed)
    n = int(n)

    site_names = np.array([f"site{i + 1:02d}" for i in range(n_sites)])
    site_weights = rng.dirichlet(np.full(n_sites, 4.0))
    site_idx = rng.choice(n_sites, size=n, p=site_weights)
    age = np.round(19 + 55 * rng.beta(1.3, 1.1, size=n), 1)
    male = rng.random(n) >= 0.44
    bmi = np.clip(rng.lognormal(np.log(np.where(male, 27.0, 25.8)), 0.16), 15.5, 55.0).round(1)
    met = _activity(rng, age, male)

    z_age, z_bmi = (age - 48.0) / 14.0, (bmi - 26.5) / 4.3
    z_act = np.log1p(met) - 6.85
    comorb = {
        "diabetes": _bernoulli(rng, -3.0 + 0.9 * z_age + 0.6 * z_bmi + 0.2 * male),
        "dyslipidemia": _bernoulli(rng, -1.6 + 0.8 * z_age + 0.4 * z_bmi + 0.3 * male),
        "osteoporosis": _bernoulli(rng, -4.0 + 1.2 * z_age - 1.0 * male),
        "osteoarthritis": _bernoulli(rng, -2.1 + 1.1 * z_age + 0.4 * z_bmi - 0.2 * male),
    }

    # Exposures of the autochthonous back muscles (lumbar coverage of the phantoms).
    lmm = np.clip(rng.normal(np.where(male, 1150.0, 820.0) - 6.0 * (age - 48) + 9.0 * (bmi - 26.5) + 25.0 * z_act, 110.0), 300, None)
    imf = np.clip(rng.normal(7.5 + 1.6 * (~male) + 2.2 * z_age + 1.3 * z_bmi - 0.5 * z_act, 2.2), 2.0, 30.0)
    intermat = rng.lognormal(np.log(55.0) + 0.35 * z_age + 0.30 * z_bmi + 0.15 * (~male) - 0.08 * z_act, 0.40).clip(None, 1000.0)
    psoas = np.clip(rng.normal(np.where(male, 520.0, 340.0) - 2.5 * (age - 48) + 4.0 * (bmi - 26.5), 55.0), 80, None)

    data = pd.DataFrame({
        "participant_id": [f"P{i:06d}" for i in range(1, n + 1)],
        "site": site_names[site_idx],
        "age": age,
        "sex": np.where(male, "male", "female"),
        "bmi": bmi,
        "met_min_week": met,
        **{k: v.astype(int) for k, v in comorb.items()},
        "lmm_ml": lmm.round(1),
        "intermat_ml": intermat.round(1),
        "imf_pct": imf.round(2),
        "autochthon_ml": (lmm + intermat).round(1),
        "psoas_ml": psoas.round(1),
    })

    # The logistic truth, on the scale the models use: per 2 SD of the sample.
    site_effect = rng.normal(0.0, truth.site_sd, size=n_sites)
    model = _OutcomeModel.of_sample(truth, data, site_effect[site_idx])
    sd, means, per_unit = model.sd, model.means, model.per_unit
    lp = model.linear_predictor(data)
    intercept = optimize.brentq(lambda b: stats.logistic.cdf(b + lp).mean() - truth.prevalence, -20, 20)
    p = stats.logistic.cdf(intercept + lp)
    cbp = rng.random(n) < p
    risks, risks_by_stratum = _true_marginal_risks(model, data, intercept)
    data["cbp"] = cbp.astype(int)
    data["cbp_onset_age"] = _onset_age(rng, age, cbp, lp, ONSET_RISK_EXPONENT)
    true_exposures, me_truth = None, {}
    if measurement_error:
        true_exposures = data[["participant_id", *measurement_error]].copy()
        me_truth = _plant_measurement_error(np.random.default_rng([seed, _STREAM_ME]), data, measurement_error, model)
    _plant_missing(rng, data, ("bmi", "met_min_week"), missing_frac)
    missingness = _plant_mar(np.random.default_rng([seed, _STREAM_MAR]), data, mar_missing)
    data = add_activity_band(data)

    grid = np.array([0, 100, 250, 500, 600, 1000, 1500, 2500, 5000, 7500, 10000, 15000], dtype=float)
    truth_dict = {
        "generator": f"backpain_epi.simulate_cohort (backpain-epi {__version__})",
        "seed": seed,
        "n": n,
        "n_sites": n_sites,
        "missing_frac": missing_frac,
        "odds_ratios_per_2sd": {t: truth.odds_ratios[t] for t in CONTINUOUS_TERMS},
        "odds_ratios_binary": {t: truth.odds_ratios[t] for t in TRUTH_TERMS if t not in CONTINUOUS_TERMS},
        "log_or_per_unit": per_unit,
        "sd": sd,
        "means": means,
        "scale_note": "sd and means are of the complete simulated sample, before planting missing values",
        "intercept": float(intercept),
        "prevalence_target": truth.prevalence,
        "prevalence": float(cbp.mean()),
        "site_sd": truth.site_sd,
        "site_effects": dict(zip(site_names.tolist(), site_effect.round(6).tolist())),
        "activity": {
            "optimum_met": truth.activity_optimum_met,
            "or_at_0": truth.activity_or_at_0,
            "or_at_10000": truth.activity_or_at_10000,
            "reference_met": ACTIVITY_REFERENCE_MET,
            "scale": f"log(met_min_week + {ACTIVITY_SCALE_OFFSET:g}); log OR quadratic on it either side of the optimum",
            "curve": [
                {"met_min_week": float(m), "or_vs_reference": float(r), "or_vs_optimum": float(o)}
                for m, r, o in zip(grid, truth.activity_curve(grid), np.exp(truth.activity_log_or(grid)))
            ],
        },
        "onset": {
            "model": "onset_age = 18 + (age - 18) * U ** k, U ~ Uniform(0, 1), k = exp(risk_exponent * (lp - mean(lp)))",
            "risk_exponent": ONSET_RISK_EXPONENT,
            "note": "lp is the linear predictor without the intercept; higher risk gives earlier onset",
        },
        "effect_modification": {e: model.modification_truth(e) for e in model.modifier_per_unit},
        "exposure_shape": {e: model.shape_truth(e, data[e]) for e in model.thresholds},
        "absolute_risk": risks,
        "absolute_risk_by_stratum": risks_by_stratum,
        "absolute_risk_note": (
            "true marginal risks by g-computation on the true model: each exposure in turn set to its sample mean - SD "
            "(risk_low) and mean + SD (risk_high) for every participant, the true probability averaged; everything else "
            "(covariates, activity, site effects, intercept, effect modification, shape) as simulated, and the other "
            "exposures held at their observed values although they are correlated with it"
        ),
        "missingness": missingness,
        "measurement_error": me_truth,
        "truth_parameters": asdict(truth),
    }
    return SimulatedCohort(data=data, truth=truth_dict, true_exposures=true_exposures)


@dataclass(frozen=True)
class _OutcomeModel:
    """The true linear predictor (without intercept), fixed by the sample it was planted in.

    Each continuous term enters as ``per_unit * h(x)``, with ``h(x) = x - mean`` or, for an
    exposure with a threshold, ``h(x) = max(x - threshold, 0) - max(mean - threshold, 0)``;
    an exposure modified by sex adds ``modifier_per_unit * h(x) * male``. So the sex odds
    ratio is that at the exposure's mean, whatever the shape.
    """

    truth: CohortTruth
    sd: dict[str, float]
    means: dict[str, float]
    per_unit: dict[str, float]
    thresholds: dict[str, float]
    modifier_per_unit: dict[str, float]
    site_offset: np.ndarray = field(repr=False)

    @classmethod
    def of_sample(cls, truth: CohortTruth, data: pd.DataFrame, site_offset: np.ndarray) -> "_OutcomeModel":
        sd = {name: float(data[name].std()) for name in CONTINUOUS_TERMS}
        means = {name: float(data[name].mean()) for name in CONTINUOUS_TERMS}
        per_unit = {t: np.log(truth.odds_ratios[t]) / (2 * sd[t]) if t in sd else np.log(truth.odds_ratios[t]) for t in TRUTH_TERMS}
        thresholds = {e: float(np.quantile(data[e], truth.threshold_quantile(e))) for e in EXPOSURES if truth.threshold_quantile(e) is not None}
        modifier = {e: np.log(truth.ratio_of_ors(e)) / (2 * sd[e]) for e in EXPOSURES if f"{e}:sex[male]" in truth.effect_modification}
        return cls(truth, sd, means, per_unit, thresholds, modifier, site_offset)

    def shape(self, name: str, x) -> np.ndarray:
        """``h(x)``: the term's covariate, centred so that ``h(mean) = 0``."""
        if name not in self.thresholds:
            return x - self.means[name]
        tau = self.thresholds[name]
        return np.maximum(np.asarray(x, dtype=float) - tau, 0.0) - max(self.means[name] - tau, 0.0)

    def linear_predictor(self, data: pd.DataFrame) -> np.ndarray:
        """The log odds of CBP less the intercept, for every row of ``data`` (site effects included)."""
        male = (data["sex"] == MODIFIER[1]).to_numpy()
        terms = {t: self.per_unit[t] * self.shape(t, data[t]) for t in CONTINUOUS_TERMS}
        for e, beta in self.modifier_per_unit.items():
            terms[e] = terms[e] + beta * self.shape(e, data[e]) * male
        lp = sum(terms[t] for t in CONTINUOUS_TERMS)
        lp = lp + self.per_unit["sex[male]"] * male + sum(self.per_unit[k] * data[k] for k in COMORBIDITIES)
        lp = lp + self.truth.activity_log_or(data["met_min_week"].to_numpy())
        return np.asarray(lp + self.site_offset, dtype=float)

    def log_or(self, exposure: str, x, male: bool) -> np.ndarray:
        """Log OR of CBP at exposure ``x`` and sex against a woman at the exposure's mean (all else equal)."""
        h = self.shape(exposure, np.asarray(x, dtype=float))
        slope = self.per_unit[exposure] + (self.modifier_per_unit.get(exposure, 0.0) if male else 0.0)
        return slope * h + (self.per_unit["sex[male]"] if male else 0.0)

    def modification_truth(self, exposure: str) -> dict:
        """The truth JSON's entry of a modified exposure: ORs per 2 SD by stratum and the RERI."""
        ratio, odds_ratio = self.truth.ratio_of_ors(exposure), self.truth.odds_ratios[exposure]
        x_high = self.means[exposure] + 2 * self.sd[exposure]
        or10, or01, or11 = (float(np.exp(self.log_or(exposure, x, m))) for x, m in
                            ((x_high, False), (self.means[exposure], True), (x_high, True)))
        _, level, reference = MODIFIER
        return {
            "modifier": MODIFIER[0], "level": level, "reference": reference,
            "ratio_of_ors": ratio,
            "or_by_stratum": {reference: odds_ratio, level: odds_ratio * ratio},
            "log_or_per_unit_interaction": float(self.modifier_per_unit[exposure]),
            "note": f"odds_ratios_per_2sd holds the OR in the reference stratum ({reference}); the generator adds "
                    f"log_or_per_unit_interaction * (x - mean) * {level} (x - mean taken as the shape's h(x) under a threshold)",
            "reri": {
                "value": or11 - or10 - or01 + 1,
                "or10": or10, "or01": or01, "or11": or11,
                "definition": (f"RERI = OR11 - OR10 - OR01 + 1 against women at the exposure mean: OR10 women at mean + 2 SD, "
                               f"OR01 men at the mean, OR11 men at mean + 2 SD; other terms held fixed"),
            },
        }

    def shape_truth(self, exposure: str, x: pd.Series) -> dict:
        """The truth JSON's entry of a threshold exposure: the threshold and the true OR curve vs the median."""
        lo, hi, k = SHAPE_GRID
        grid = np.linspace(*np.quantile(x, [lo, hi]), k)
        median = float(np.median(x))
        curve = np.exp(self.per_unit[exposure] * (self.shape(exposure, grid) - self.shape(exposure, median)))
        return {
            "kind": "threshold",
            "threshold": self.thresholds[exposure],
            "quantile": self.truth.threshold_quantile(exposure),
            "median": median,
            "log_or_per_unit_above": float(self.per_unit[exposure]),
            "note": "flat below the threshold, linear above it with the OR per 2 SD of odds_ratios_per_2sd; "
                    "curve in the reference stratum (women) when effect modification is planted",
            "curve": [{"x": float(g), "or_vs_median": float(c)} for g, c in zip(grid, curve)],
        }


def _true_marginal_risks(model: _OutcomeModel, data: pd.DataFrame, intercept: float) -> tuple[dict, dict]:
    """True mean risks with each exposure set to its mean - SD and mean + SD for everyone (g-computation).

    Only the exposure itself is set; every other column keeps its simulated value.
    Returns the whole-sample risks and, for each exposure modified by sex, the risks
    averaged within each stratum of the modifier.
    """
    male = (data[MODIFIER[0]] == MODIFIER[1]).to_numpy()
    risks, by_stratum = {}, {}
    for e in EXPOSURES:
        low_value, high_value = model.means[e] - model.sd[e], model.means[e] + model.sd[e]
        p_low, p_high = (stats.logistic.cdf(intercept + model.linear_predictor(data.assign(**{e: v})))
                         for v in (low_value, high_value))

        def summary(keep):
            low, high = float(p_low[keep].mean()), float(p_high[keep].mean())
            return {"risk_low": low, "risk_high": high, "rd_per_1000": 1000 * (high - low), "rr": high / low,
                    "low_value": low_value, "high_value": high_value}

        risks[e] = summary(np.ones(len(data), dtype=bool))
        if e in model.modifier_per_unit:
            by_stratum[e] = {MODIFIER[2]: summary(~male), MODIFIER[1]: summary(male)}
    return risks, by_stratum


def _activity(rng: np.random.Generator, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    """MET-min/week: 8 % inactive, the rest log-normal; younger and male more active.

    The log-normal is driven by a normal score that mixes age rank and noise, so
    the margins (40 % < 500, 47 % 500–5000, 14 % > 5000) hold whatever the age mix.
    """
    n = len(age)
    age_score = stats.norm.ppf((stats.rankdata(age) - 0.5) / n)
    sex_score = np.where(male, 1.0, -1.0) * 0.1
    z = -0.25 * age_score + sex_score + np.sqrt(1 - 0.25**2 - 0.1**2) * rng.standard_normal(n)
    met = np.exp(6.8497 + 1.6230 * z)
    # GPAQ cleaning caps plausible totals; redraw the far tail inside 5000–24000,
    # which keeps the share above 5000 unchanged.
    tail = met > 24_000
    met[tail] = np.exp(rng.uniform(np.log(5000), np.log(24_000), size=tail.sum()))
    met[rng.random(n) < 0.08] = 0.0
    return np.round(met, -1)


def _bernoulli(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    return rng.random(len(logit)) < stats.logistic.cdf(logit)


def _onset_age(rng, age, cbp, lp, risk_exponent: float) -> np.ndarray:
    """Onset for cases, between 18 and the age at examination; earlier at higher risk."""
    k = np.exp(risk_exponent * (lp - lp.mean()))
    onset = 18 + (age - 18) * rng.random(len(age)) ** k
    return np.where(cbp, np.minimum(np.round(onset, 1), age), np.nan)


def _plant_missing(rng, data: pd.DataFrame, columns, frac: float) -> None:
    if frac <= 0:
        return
    for name in columns:
        data.loc[rng.random(len(data)) < frac, name] = np.nan


def _check_mar(mar_missing) -> dict[str, float]:
    if mar_missing is None:
        return {}
    if not isinstance(mar_missing, dict):
        raise BackpainEpiError(f"mar_missing must be a mapping {{column: fraction}}, got {mar_missing!r}.", param="mar_missing")
    for name, frac in mar_missing.items():
        if name not in MAR_COLUMNS:
            raise BackpainEpiError(f": {unknown_choice('column', name, MAR_COLUMNS)} (missing values are planted in covariates "
                                   "only; the outcome and the exposures are never missing at random here).", param="mar_missing")
        if isinstance(frac, bool) or not isinstance(frac, (int, float, np.integer, np.floating)) or not 0 <= frac <= MAR_MAX_FRACTION:
            raise BackpainEpiError(f"{name}: the fraction must be a number in [0, {MAR_MAX_FRACTION:g}], got {frac!r}.",
                                   param="mar_missing")
    return {name: float(frac) for name, frac in mar_missing.items()}


def _check_measurement_error(measurement_error) -> dict[str, float]:
    if measurement_error is None:
        return {}
    if not isinstance(measurement_error, dict):
        raise BackpainEpiError(f"measurement_error must be a mapping {{exposure: value}}, got {measurement_error!r}.",
                               param="measurement_error")
    for name, value in measurement_error.items():
        if name not in EXPOSURES:
            raise BackpainEpiError(f": {unknown_choice('exposure', name, EXPOSURES)}", param="measurement_error")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value <= ME_MAX_VALUE:
            raise BackpainEpiError(f"{name}: the error SD, as a multiple of the exposure's SD, must lie in (0, {ME_MAX_VALUE:g}], "
                                   f"got {value!r}.", param="measurement_error")
    return {name: float(value) for name, value in measurement_error.items()}


def _plant_mar(rng: np.random.Generator, data: pd.DataFrame, fractions: dict[str, float]) -> dict:
    """Plant MAR missing values (see ``mar_missing`` of :func:`simulate_cohort`); the truth JSON's ``missingness``."""
    if not fractions:
        return {}
    age = data["age"].to_numpy(float)
    z_age = (age - age.mean()) / age.std()
    cbp = data["cbp"].to_numpy(float)
    slope = MAR_LOG_OR_AGE * z_age + MAR_LOG_OR_CBP * cbp
    out = {}
    for name, frac in fractions.items():  # dict order: the same call gives the same table
        u = rng.random(len(data))  # drawn for every column asked, so one fraction never moves another column
        if frac == 0:
            a, p = -np.inf, np.zeros(len(data))
        else:
            a = optimize.brentq(lambda b: stats.logistic.cdf(b + slope).mean() - frac, -30, 30)
            p = stats.logistic.cdf(a + slope)
        miss = u < p
        data[name] = data[name].astype(float)
        data.loc[miss, name] = np.nan
        out[name] = {
            "fraction": frac,
            "realised_fraction": float(miss.mean()),
            "mechanism": MAR_MECHANISM,
            "coefficients": {"a": float(a), "b_age": MAR_LOG_OR_AGE, "b_cbp": MAR_LOG_OR_CBP},
            "z_age": {"mean": float(age.mean()), "sd": float(age.std())},
            "note": "z_age = (age - mean) / sd of the sample; planted after the outcome, independently per column; "
                    "a solved so that the mean of P(missing) is the fraction",
        }
    return out


def _plant_measurement_error(rng: np.random.Generator, data: pd.DataFrame, values: dict[str, float],
                             model: "_OutcomeModel") -> dict:
    """Replace each exposure of ``values`` by an observation with error and add its ``<exposure>_se`` column.

    Returns the truth JSON's ``measurement_error``: per exposure the SE model, the reliability ratio
    var(true) / var(observed), and the odds ratio a naive covariate-adjusted fit is expected to give
    (first-order regression calibration: the true linear predictor projected on the observed design).
    """
    true = data[list(values)].to_numpy(float).copy()
    lo, hi = ME_SE_FACTOR_RANGE
    for j, (name, value) in enumerate(values.items()):
        se = value * model.sd[name] * rng.uniform(lo, hi, size=len(data))
        data[name] = true[:, j] + rng.normal(0.0, se)
        data[f"{name}_se"] = se
    # the naive design: observed exposures and the true other terms; regress the true linear predictor on it
    male = (data["sex"] == MODIFIER[1]).to_numpy(float)
    columns = {t: data[t].to_numpy(float) for t in CONTINUOUS_TERMS}
    design = np.column_stack([np.ones(len(data)), *columns.values(), male, *(data[k].to_numpy(float) for k in COMORBIDITIES),
                              model.truth.activity_log_or(data["met_min_week"].to_numpy())])
    lp_true = model.linear_predictor(data.assign(**{name: true[:, j] for j, name in enumerate(values)})) - model.site_offset
    naive = np.linalg.lstsq(design, lp_true, rcond=None)[0][1:1 + len(CONTINUOUS_TERMS)]
    dd, out = load_dictionary(), {}
    for j, (name, value) in enumerate(values.items()):
        observed, se = data[name].to_numpy(float), data[f"{name}_se"].to_numpy(float)
        var_true, var_obs = float(np.var(true[:, j], ddof=1)), float(np.var(observed, ddof=1))
        per_unit_naive = float(naive[list(CONTINUOUS_TERMS).index(name)])
        column = dd[name]
        low, high = (float(v) if v is not None else None for v in (column.min, column.max))
        low, high = -np.inf if low is None else low, np.inf if high is None else high
        sd_obs = float(np.sqrt(var_obs))
        out[name] = {
            "value": value,
            "se_model": f"se = {value:g} * sd_true * U, U ~ Uniform({lo:g}, {hi:g}); observed = true + Normal(0, se)",
            "se_column": f"{name}_se",
            "sd_true": model.sd[name],
            "sd_observed": sd_obs,
            "mean_se": float(se.mean()),
            "rms_se": float(np.sqrt(np.mean(se**2))),
            "reliability_ratio": var_true / var_obs,
            "reliability_ratio_expected": var_true / (var_true + float(np.mean(se**2))),
            "n_outside_range": int(((observed < low) | (observed > high)).sum()),
            "allowed_range": [low, high],
            "or_per_2sd_true": model.truth.odds_ratios[name],
            "attenuated_or_per_2sd_true": float(np.exp(per_unit_naive * 2 * model.sd[name])),
            "attenuated_or_per_2sd_observed": float(np.exp(per_unit_naive * 2 * sd_obs)),
            "attenuation_factor": per_unit_naive / model.per_unit[name] if model.per_unit[name] else None,
            "note": ("the outcome is drawn from the true exposure; attenuated_or_* is what a naive fit adjusted for the "
                     "other terms is expected to give (first-order regression calibration: the true linear predictor "
                     "projected on the observed design), per 2 SD of the true exposure and per 2 SD of the observed one; "
                     "attenuation_factor is the naive per-unit slope over the true one (the reliability ratio given the "
                     "other terms). Observed values are not clipped: n_outside_range of them lie outside the dictionary's "
                     "allowed range, which validate_table reports as errors"),
        }
    return out
