"""Methods and results paragraphs generated from the specs, provenance and results: text to paste and edit.

Everything stated is read from the runs (spec, priors, sampler settings, package
versions, counts) or computed by the report; nothing is typed in by hand.
"""

from __future__ import annotations

import pandas as pd

from ..dictionary import DataDictionary
from ..formatting import format_int, format_or, format_prob
from ..records import package_version
from .runs import ReportRun
from .tables import comparison_verdict

_BASIS = {
    "bands": "in bands ({levels}; reference {reference})",
    "spline": "as a penalized cubic regression spline of {transform}MET-min/week ({k} basis functions, smoothness SD prior {smooth})",
    "hsgp": "as a Hilbert-space approximate Gaussian process of {transform}MET-min/week ({m} basis functions)",
}


def _list(items: list[str]) -> str:
    items = [i for i in items if i]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


_PRIOR_NAMES = {"intercept": "intercept", "coefficients": "log odds ratios", "group_sd": "SD of the site intercepts",
                "smooth_sd": "SD of the spline's wiggly part", "gp_amplitude": "GP amplitude", "gp_lengthscale": "GP length scale"}


def lower(label: str) -> str:
    """``Lean muscle volume`` -> ``lean muscle volume``; acronyms (``InterMAT``, ``BMI``) stay."""
    first = label.split(" ")[0]
    return label if any(ch.isupper() for ch in first[1:]) else label[:1].lower() + label[1:]


def _labels(cols, dd: DataDictionary) -> list[str]:
    return [lower(dd.label(c, unit=False)) if c in dd else c for c in cols]


def _activity_text(run: ReportRun, dd: DataDictionary) -> str:
    a = run.spec.activity
    if a is None:
        return ""
    transform = {"log1p": "log(1 + ", "none": ""}.get(getattr(a, "transform", "none") or "none", "")
    t = "log(1 + " if transform else ""
    if a.basis == "bands":
        levels = run.result.recipe.levels.get(a.variable, [])
        return _BASIS["bands"].format(levels=", ".join(levels), reference=a.reference)
    if a.basis == "spline":
        text = _BASIS["spline"].format(transform=t, k=getattr(a, "df", "?"), smooth=run.spec.priors.get("smooth_sd", "default"))
    else:
        text = _BASIS["hsgp"].format(transform=t, m=getattr(a, "m", "?"))
    return text.replace("log(1 + MET-min/week", "log(1 + MET-min/week)") if t else text


def methods_paragraph(runs: list[ReportRun], flow: pd.DataFrame, comparison: pd.DataFrame | None, survival, dd: DataDictionary,
                      *, segmentation: bool = False) -> str:
    """The statistical-methods paragraph: models, priors, sampler, checks, comparison, sensitivity analysis, software."""
    p0 = runs[0].provenance
    v = p0.versions
    s = p0.settings
    parts = []
    if segmentation:
        parts.append("Lean muscle volume, intermuscular adipose tissue (InterMAT) volume and intramuscular fat fraction of the "
                     "autochthonous back muscles and psoas were measured on Dixon MRI with the backpain-epi 3D U-Net "
                     "(MONAI), trained on synthetic phantoms (see its model card); scans flagged by the automatic quality "
                     "checks were excluded.")
    model_texts = []
    for r in runs:
        spec = r.spec
        adj = _labels(spec.covariates, dd)
        act = _activity_text(r, dd)
        t = f"{r.name} ({_list(_labels(spec.exposures, dd))}"
        t += f", adjusted for {_list(adj)}" if adj else ", unadjusted"
        t += f", with physical activity {act}" if act else ""
        t += f" and a random intercept per {dd.label(spec.group, unit=False).lower()}" if spec.group else ""
        model_texts.append(t + ")")
    outcome = lower(dd.label(runs[0].spec.outcome, unit=False))
    parts.append(f"We related {outcome} to back-muscle composition with Bayesian hierarchical logistic regression models: "
                 + "; ".join(model_texts) + ".")
    parts.append("Exposures and continuous covariates were centred and divided by two standard deviations (Gelman 2008), so that "
                 "odds ratios compare participants 2 SD apart and are comparable with those of binary covariates; participants "
                 "with a missing value in a model's variables were excluded from that model.")
    latent = latent_methods(runs, dd)
    if latent:
        parts.append(latent)
    priors: dict[str, str] = {}
    for r in runs:
        for k, val in r.provenance.priors.items():
            priors.setdefault(k, val)
    prior_text = "; ".join(f"{_PRIOR_NAMES.get(k, k.replace('_', ' '))} {val}" for k, val in priors.items())
    parts.append(f"Priors were weakly informative ({prior_text}).")
    failed = [r.name for r in runs if not r.provenance.diagnostics.passed]
    samplers = sorted({r.provenance.sampler["used"] for r in runs})
    sampler_v = {"nutpie": f"nutpie {v.get('nutpie')}", "pymc": f"PyMC {v.get('pymc')}"}
    parts.append(f"Posteriors were sampled with the No-U-Turn sampler ({', '.join(sampler_v.get(x, x) for x in samplers)}; "
                 f"{s['chains']} chains of {format_int(s['draws'])} draws after {format_int(s['tune'])} tuning steps, target acceptance "
                 f"{s['target_accept']}, seed {s['seed']}). Convergence required R-hat ≤ 1.01, bulk effective sample size ≥ 400 "
                 "for every reported parameter, no divergent transitions and E-BFMI ≥ 0.3 in every chain"
                 + (f"; {_list(failed)} did not meet these criteria" if failed else "; all models met them") + ".")
    parts.append("We report posterior medians with 95% equal-tailed credible intervals (CrI) and the posterior probability that "
                 "the odds ratio exceeds 1.")
    if comparison is not None:
        parts.append(f"Models were compared by Pareto-smoothed importance-sampling leave-one-out cross-validation (PSIS-LOO; ArviZ "
                     f"{v.get('arviz')}) with stacking weights, and calibration was checked by comparing observed and "
                     "posterior-predicted proportions with chronic back pain across deciles of predicted risk.")
    if survival is not None:
        surv_terms = [t for t in survival.hazard_ratios["term"] if t not in runs[0].spec.exposures]
        parts.append("In a sensitivity analysis, a Cox proportional-hazards model with age as the time scale took the age at onset "
                     "of chronic back pain as the event and censored participants without it at their current age; it was "
                     "stratified by study site and adjusted as the paper model, age at examination entering as a "
                     f"birth-cohort term ({len(surv_terms)} covariate terms). Proportional hazards were checked with scaled Schoenfeld residuals, and "
                     "Kaplan–Meier curves of CBP-free survival were drawn by exposure tertile (lifelines "
                     f"{package_version('lifelines')}).")
    parts.append(f"Analyses used Python {v.get('python')}, PyMC {v.get('pymc')}, ArviZ {v.get('arviz')} and backpain-epi "
                 f"{v.get('backpain-epi')}.")
    return " ".join(parts)


def latent_methods(runs: list[ReportRun], dd: DataDictionary) -> str:
    """Sentences on imputation inside the model and on measurement error (issue 15); empty when no run has either."""
    out = []
    imputing = [r for r in runs if r.spec.impute]
    if imputing:
        counts = "; ".join(f"{r.name}: " + ", ".join(f"{format_int(n)} {dd.label(c, unit=False).lower()}"
                                                     for c, n in r.provenance.data.imputed.items()) for r in imputing)
        out.append("Missing covariate values were imputed inside the model rather than excluded (" + counts + " values): each "
                   "imputed covariate had an imputation model conditional on the fully observed exposures and covariates and a "
                   "random intercept per study site (normal on the scale of the design, physical activity on log1p(MET-min/week) "
                   "entering the activity term at its imputed value), and binary covariates and activity bands were "
                   "marginalised as mixtures over their values.")
        integrated = [r for r in imputing if _option(r, "imputation") == "quadrature"]
        if integrated:
            out.append("The missing values of numeric covariates and of physical activity were integrated out of the outcome's "
                       "likelihood rather than sampled per participant: given the observed ones they are jointly normal, the "
                       "mean and variance of what they add to the log-odds were computed exactly for a numeric covariate and by "
                       "Gauss–Hermite quadrature for the activity term, and the logistic's expectation was taken by the probit "
                       "approximation; their values were drawn after sampling from their posterior given each participant's "
                       "outcome" + (", for the g-computed risks, and the pointwise log-likelihood for PSIS-LOO was this "
                                    "marginal likelihood." if all(_marginal_ll(r) for r in integrated) else "."))
        conditional = [r for r in imputing if not _marginal_ll(r)]  # log-likelihood at the drawn values
        if conditional:
            named = f" of {_list([r.name for r in conditional])}" if len(conditional) < len(imputing) else ""
            out.append(f"The pointwise log-likelihood{named} and the g-computed risks used the posterior draws of the imputed "
                       "values.")
    measured = [(r, e, se) for r in runs for e, se in r.spec.measurement_error.items()]
    if measured:
        parts = []
        for r, e, se in measured:
            m = r.provenance.data.measurement_error.get(e, {})
            rel = f", reliability {m['reliability']:.2f}" if "reliability" in m else ""
            parts.append(f"{dd.label(e, unit=False).lower()} in {r.name} (SE column {se}{rel})")
        out.append("Segmentation error was modelled for " + _list(parts) + ": the true exposure was latent, with a regression on "
                   "the covariates and a random intercept per site as its prior, and observed with the per-participant standard "
                   "error; its odds ratio is per 2 SD of the true exposure, SD = sqrt(var(observed) − mean(SE²)).")
        marginal = [r for r, _, _ in measured if _option(r, "measurement_error") == "marginal"]
        if marginal:
            out.append("The true exposure was integrated out of the outcome's likelihood (the logistic–normal integral by the "
                       "probit approximation) rather than sampled per participant, and its values were drawn after sampling "
                       "from their posterior given each participant's outcome, for " +
                       ("the g-computed risks; the pointwise log-likelihood for PSIS-LOO was this marginal likelihood."
                        if all(_marginal_ll(r) for r in marginal) else "the pointwise log-likelihood and the g-computed risks."))
    return " ".join(out)


def _option(run: ReportRun, key: str):
    """The sampler option ``key`` the run's provenance records (``None`` when absent)."""
    return (run.provenance.sampler.get("options") or {}).get(key)


def _marginal_ll(run: ReportRun) -> bool:
    """Whether the run's pointwise log-likelihood is the marginal one of its integrated form (runs since 2026-12-06)."""
    return _option(run, "log_likelihood") == "marginal"


def results_paragraph(runs: list[ReportRun], flow: pd.DataFrame, comparison: pd.DataFrame | None, survival,
                      dd: DataDictionary) -> str:
    """The headline results: participants, exposure odds ratios of the primary model, activity, comparison, survival."""
    primary = runs[0]
    f = flow[primary.name]
    n, events = int(f["Analysed"]), int(f["  with CBP"])
    excluded = int(f["Participants in the table"]) - n
    parts = [f"Of {format_int(f['Participants in the table'])} participants, {format_int(n)} were analysed"
             + (f" ({format_int(excluded)} excluded)" if excluded else "")
             + f"; {format_int(events)} ({100 * events / n:.1f}%) reported chronic back pain."]
    s = primary.summary.set_index("term")
    sentences = []
    for term in primary.spec.exposures:
        r = s.loc[term]
        label = lower(dd.label(term, unit=False))
        per = str(r["per"]).replace("2 SD = ", "")
        direction = ("higher odds of chronic back pain" if r["or_lo95"] > 1 else
                     "lower odds of chronic back pain" if r["or_hi95"] < 1 else "no clear difference in the odds of chronic back pain")
        sentences.append(f"each 2 SD ({per}) higher {label} was associated with {direction} (OR {_or_text(r)}; "
                         f"P(OR > 1) {format_prob(r['p_or_gt_1'])})")
    parts.append(f"In the {primary.name} model, " + "; ".join(sentences) + ".")
    for other in runs[1:]:
        o = other.summary.set_index("term")
        common = [t for t in primary.spec.exposures if t in o.index]
        if common:
            parts.append(f"In the {other.name} model the corresponding odds ratios were "
                         + _list([f"{_or_text(o.loc[t])} for {lower(dd.label(t, unit=False))}" for t in common]) + ".")
    curve_run = next((r for r in runs if r.result.curve is not None and r.spec.activity.basis != "bands"), None)
    if curve_run is not None:
        c = curve_run.result.curve.set_index("met_min_week")
        ref = c["reference_met"].iloc[0]
        ends = [m for m in (0.0, 10_000.0) if m in c.index]
        if ends:
            parts.append(f"Physical activity was related to chronic back pain non-linearly ({curve_run.name}): relative to "
                         f"{format_int(ref)} MET-min/week, the OR was "
                         + _list([f"{format_or(*c.loc[m, ['or_median', 'or_lo95', 'or_hi95']])} at {format_int(m)}" for m in ends]) + ".")
    if comparison is not None and len(comparison) >= 2:
        parts.append(comparison_verdict(comparison))
    if survival is not None:
        hr = survival.hazard_ratios.set_index("term")
        common = [t for t in primary.spec.exposures if t in hr.index]
        if common:
            parts.append("With age as the time scale, the hazard ratios of chronic back pain onset per 2 SD were "
                         + _list([f"{format_or(*hr.loc[t, ['hr', 'hr_lo95', 'hr_hi95']])} for {lower(dd.label(t, unit=False))}" for t in common])
                         + f" ({format_int(survival.counts.get('n_events', 0))} onsets among {format_int(survival.counts.get('n_analysed', 0))} "
                         "participants).")
    return " ".join(parts)


def _or_text(r) -> str:
    return format_or(r["or_median"], r["or_lo95"], r["or_hi95"], interval="95% CrI")

