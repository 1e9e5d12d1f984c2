"""Survival sensitivity analysis: age as the time scale, CBP onset as the event (lifelines).

The main analysis is a cross-sectional logistic model of CBP. This sensitivity
analysis asks the same question in time-to-event form:

* **time scale** – age. A participant with CBP has the event at
  ``cbp_onset_age``; one without CBP is censored at ``age`` (the examination).
  Everyone is at risk from birth (onset is recalled, there is no delayed entry).
* **model** – a Cox proportional-hazards model with the covariates of the
  logistic spec (by default ``models/paper.yaml``). Age at examination stays
  in as a birth-cohort adjustment (``birth_cohort=False`` removes it): onset is
  recalled at one examination, so the young can only have early onsets, and
  exposures that change with age would otherwise carry that design effect
  (on the simulated cohort lean muscle turns from protective, HR 0.77, to
  harmful, 1.29, without it). The covariate columns are the logistic model's design
  (:func:`~backpain_epi.modelling.design.make_design`): the same complete-case
  rows, exposures per 2 SD with the same centres and scales, the same dummies
  and activity bands. The random intercept per site becomes a stratification
  by site (a baseline hazard per site).
* **proportional hazards** – a test on scaled Schoenfeld residuals against
  rank-transformed time, per term.
* **Kaplan–Meier** – CBP-free survival by tertile of the raw exposure
  (default InterMAT), with a multivariate log-rank test.

Cases without an onset age cannot be placed in time; they are excluded and counted.

>>> from backpain_epi.modelling import survival_analysis          # doctest: +SKIP
>>> res = survival_analysis("cohort.csv", "models/paper.yaml")
>>> print(res.format()); res.save("runs/survival")

The default spec is ``models/paper.yaml`` relative to the working directory
(the repository's ``models/`` folder is not installed with the package); when
it is not there, the copy in the source checkout of an editable install is
used, and otherwise an :class:`~backpain_epi.errors.InputFileError` asks for
the spec.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..dictionary import DataDictionary, load_dictionary
from ..errors import BackpainEpiError, InputFileError, unknown_choice
from ..formatting import format_p, format_sig
from ..records import SURVIVAL_PACKAGES, json_default, package_versions
from ..tableio import check_output_dir, write_table, write_text
from ..validation import INVALID_ROWS
from .design import complete_rows, make_design
from .results import describe_term
from .fit import read_analysis_table
from .spec import ModelSpec, load_spec, term_variables

#: Default spec, relative to the working directory (as on the command line).
DEFAULT_SPEC = Path("models/paper.yaml")
_CHECKOUT_MODELS = Path(__file__).resolve().parents[3] / "models"  # src/backpain_epi/modelling -> repo root

ONSET = "cbp_onset_age"
TIME_SCALE = "age"
NO_ONSET_REASON = "CBP without onset age"
INCOMPLETE_REASON = "incomplete model columns"
NO_AGE_REASON = "no CBP and missing age"

HR_COLUMNS = ["term", "kind", "label", "per", "hr", "hr_lo95", "hr_hi95", "p", "log_hr", "log_hr_se"]
PH_COLUMNS = ["term", "test_statistic", "p", "ph_violated"]
KM_COLUMNS = ["group", "age", "survival", "lo95", "hi95", "at_risk"]
KM_GROUP_COLUMNS = ["group", "n", "events", "lower", "upper", "median_event_free_age"]
FILES = ("hazard_ratios.csv", "ph_test.csv", "km.csv", "km_groups.csv", "survival.json")


class SurvivalError(BackpainEpiError):
    """The survival analysis cannot run on this table or with these settings."""


@dataclass
class SurvivalResult:
    """Results of :func:`survival_analysis`.

    Attributes
    ----------
    hazard_ratios
        One row per Cox term, exposures first: ``term, kind, label, per, hr,
        hr_lo95, hr_hi95, p, log_hr, log_hr_se`` (``per`` as in ``summary.csv``).
    ph_test
        Proportional-hazards test per term: ``term, test_statistic, p, ph_violated`` (p < 0.05).
    km
        Kaplan–Meier curves, tidy: ``group, age, survival, lo95, hi95, at_risk``.
    km_groups
        Per exposure tertile: ``group, n, events, lower, upper, median_event_free_age``
        (``inf`` when the curve stays above one half).
    logrank_p
        p-value of the multivariate log-rank test across the tertiles.
    counts
        ``n_in``, ``excluded`` (reason -> rows), ``missing`` (column -> rows, a
        row may count under several), ``n_analysed``, ``n_events``.
    notes
        What a reader of the results needs to know (time scale, strata, PH test).
    """

    hazard_ratios: pd.DataFrame
    ph_test: pd.DataFrame
    km: pd.DataFrame
    km_groups: pd.DataFrame
    logrank_p: float
    counts: dict
    notes: list[str]
    exposure: str
    spec: ModelSpec | None = None

    def format(self) -> str:
        """A plain-text report for the terminal: counts, hazard ratios, PH check, log-rank test, notes."""
        c = self.counts
        lines = [f"Survival sensitivity analysis (Cox, age as time scale, event: CBP onset){f' — spec {self.spec.name}' if self.spec else ''}"]
        lines.append(f"Rows in: {c['n_in']:,}")
        for reason, k in c["excluded"].items():
            if k:
                lines.append(f"  excluded, {reason}: {k:,}")
        lines.append(f"Analysed: {c['n_analysed']:,} participants, {c['n_events']:,} CBP onsets")
        lines.append("")
        lines.append("Hazard ratios (95% CI)")
        hr = self.hazard_ratios
        w_label = max([len(s) for s in hr["label"]] + [4])
        w_per = max([len(s) for s in hr["per"]] + [3])
        lines.append(f"  {'term':<{w_label}}  {'per':<{w_per}}  {'HR (95% CI)':<22}  p")
        for r in hr.itertuples():
            ci = f"{r.hr:.2f} ({r.hr_lo95:.2f}–{r.hr_hi95:.2f})"
            lines.append(f"  {r.label:<{w_label}}  {r.per:<{w_per}}  {ci:<22}  {format_p(r.p)}")
        lines.append("")
        lines.append("Proportional-hazards check (scaled Schoenfeld residuals vs rank of time)")
        labels = dict(zip(hr["term"], hr["label"]))
        for r in self.ph_test.itertuples():
            flag = "  departure (p < 0.05)" if r.ph_violated else ""
            lines.append(f"  {labels.get(r.term, r.term):<{w_label}}  chi² {r.test_statistic:6.2f}  p {format_p(r.p)}{flag}")
        lines.append("")
        lines.append(f"Kaplan–Meier by tertile of {self.exposure}: log-rank p {format_p(self.logrank_p)}")
        for r in self.km_groups.itertuples():
            med = "not reached" if not np.isfinite(r.median_event_free_age) else f"{r.median_event_free_age:.1f} y"
            lines.append(f"  {r.group}: n {r.n:,}, events {r.events:,}, median CBP-free age {med}")
        if self.notes:
            lines.append("")
            lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write the tables and ``survival.json`` to ``out_dir`` (the figures are drawn by :mod:`backpain_epi.reporting`).

        Every file is written atomically; returns file name -> path.
        """
        out = check_output_dir(out_dir)
        paths = {
            "hazard_ratios.csv": write_table(self.hazard_ratios, out / "hazard_ratios.csv"),
            "ph_test.csv": write_table(self.ph_test, out / "ph_test.csv"),
            "km.csv": write_table(self.km, out / "km.csv"),
            "km_groups.csv": write_table(self.km_groups, out / "km_groups.csv"),
        }
        info = {
            "analysis": "Cox proportional hazards, age as time scale, event CBP onset",
            "spec": self.spec.name if self.spec else None,
            "exposure": self.exposure,
            "counts": self.counts,
            "logrank_p": self.logrank_p,
            "notes": self.notes,
            "versions": package_versions(SURVIVAL_PACKAGES),
        }
        paths["survival.json"] = write_text(json.dumps(info, indent=2, ensure_ascii=False, default=json_default) + "\n",
                                            out / "survival.json")
        return paths


def survival_analysis(data: str | os.PathLike | pd.DataFrame, spec: str | os.PathLike | ModelSpec = DEFAULT_SPEC, *,
                      exposure: str | None = None, birth_cohort: bool = True,
                      dictionary: DataDictionary | None = None, exclude_invalid_rows: bool = False,
                      sep: str | None = None, encoding: str = "utf-8", decimal: str = ".") -> SurvivalResult:
    """Cox hazard ratios (per 2 SD, adjusted as in ``spec``) and Kaplan–Meier curves by exposure tertile.

    Parameters
    ----------
    data
        Cohort table: a file or a DataFrame, read and validated as by
        :func:`~backpain_epi.modelling.fit.read_analysis_table`: errors block only in the
        columns the analysis uses (the spec's, ``cbp_onset_age``, ``age`` and ``exposure``).
        Must have ``cbp_onset_age``.
    spec
        Logistic model spec whose exposures and covariates the Cox model takes
        (the group column becomes strata; for age see ``birth_cohort``).
        Default ``models/paper.yaml`` (see the module notes).
    exposure
        Numeric column whose tertiles split the Kaplan–Meier curves (default: the
        dictionary's survival exposure, ``survival_default: true``; InterMAT in the shipped one).
    birth_cohort
        Keep age at examination as a covariate (a birth-cohort adjustment; default).
        Onset is recalled at one examination, so younger participants can only
        have had onsets at younger ages; without this adjustment, exposures that
        differ by age (lean muscle falls with age) pick up that design effect.
        On the simulated demo cohort, dropping it turns the lean-muscle hazard
        ratio from 0.77 to 1.29 (truth: protective). ``False`` removes age, as
        a time scale is often handled.
    dictionary
        Data dictionary (default: the shipped one).
    exclude_invalid_rows
        Leave out rows with errors in single rows of those columns (an onset after the
        age, ...) instead of refusing the table; counted per rule in ``counts["excluded"]``.
    sep, encoding, decimal
        How a text file is read (:func:`~backpain_epi.tableio.read_table`).

    Raises
    ------
    SurvivalError
        No ``cbp_onset_age`` column, an unknown or non-numeric exposure, no
        events after exclusions, or a Cox fit that does not converge.
    """
    # lazy: lifelines takes a second to import, and `backpain-epi --help` and the report's other sections never need it
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test

    dd = dictionary or load_dictionary()
    exposure = exposure or dd.survival_exposure
    spec = _resolve_spec(spec, dd)
    columns = [*spec.columns(), ONSET, TIME_SCALE, exposure]
    table, _ = read_analysis_table(data, dd, columns, exclude_invalid_rows=exclude_invalid_rows, sep=sep, encoding=encoding,
                                   decimal=decimal)
    if ONSET not in table.columns:
        raise SurvivalError(f"the table has no '{ONSET}' column; the survival analysis needs the age at CBP onset of every case "
                            "(add the column, empty for participants without CBP).")
    _check_exposure(table, exposure, dd)

    cox_spec, removed = (spec, []) if birth_cohort else _without_time_scale(spec)
    # the Cox model is complete case with the exposures as measured: imputation and measurement error are the logistic fit's
    cox_spec = replace(cox_spec, impute=(), measurement_error={})
    if spec.exposures and TIME_SCALE in spec.exposures:
        raise SurvivalError(f"spec '{spec.name}' has age as an exposure; age is the time scale of the survival analysis.")
    design = make_design(table, cox_spec, dd)
    rows, _ = complete_rows(table, cox_spec)
    if len(rows) != design.n:  # make_design selects the same rows; guard the alignment
        raise SurvivalError("internal error: design rows do not match the complete rows.")
    outcome = cox_spec.outcome
    event = rows[outcome].astype(int).to_numpy()
    onset = pd.to_numeric(rows[ONSET], errors="coerce").to_numpy(dtype=float)
    age = pd.to_numeric(rows[TIME_SCALE], errors="coerce").to_numpy(dtype=float)
    no_onset = (event == 1) & np.isnan(onset)
    no_age = (event == 0) & np.isnan(age)
    keep = ~(no_onset | no_age)
    duration = np.where(event == 1, onset, age)[keep]
    event = event[keep]
    invalid = {k: int(v) for k, v in design.dropped.items() if k in table.attrs.get(INVALID_ROWS, {})}
    counts = {
        "n_in": int(len(table)),
        "excluded": {**invalid, INCOMPLETE_REASON: int(design.dropped.get("any", 0)) - sum(invalid.values()),
                     NO_ONSET_REASON: int(no_onset.sum()), NO_AGE_REASON: int(no_age.sum())},
        "missing": {k: int(v) for k, v in design.dropped.items() if k != "any" and k not in invalid},
        "n_analysed": int(keep.sum()),
        "n_events": int(event.sum()),
    }
    if counts["n_events"] == 0:
        raise SurvivalError(f"no CBP onsets remain among the {counts['n_analysed']:,} analysed rows "
                            f"(excluded: {_excluded_text(counts)}); a Cox model needs events.")
    if counts["n_events"] == counts["n_analysed"]:
        raise SurvivalError(f"every one of the {counts['n_analysed']:,} analysed rows is a CBP case; a Cox model needs censored rows too.")

    cox = pd.DataFrame(design.X[keep], columns=design.terms)
    cox["_duration"], cox["_event"] = duration, event
    strata = None
    if design.group is not None:
        cox["_stratum"] = design.group[keep]
        strata = ["_stratum"]
    cph = CoxPHFitter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning etc.: reported through the PH check and the notes
            cph.fit(cox, duration_col="_duration", event_col="_event", strata=strata)
    except ConvergenceError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise SurvivalError(f"the Cox model of spec '{spec.name}' did not converge ({first}); a term may separate cases from "
                            "non-cases or be nearly collinear with another — simplify the spec.") from None
    hazard_ratios = _hazard_ratio_table(cph, design.recipe, dd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph = proportional_hazard_test(cph, cox, time_transform="rank")
    ph_test = _ph_table(ph, list(hazard_ratios["term"]))  # in the order of the hazard-ratio table

    x = pd.to_numeric(rows[exposure], errors="coerce").to_numpy(dtype=float)[keep]
    km, km_groups, logrank_p, km_note = _kaplan_meier(x, duration, event, exposure, dd)

    removed_text = f" (removed from the spec: {', '.join(removed)})" if removed else ""
    notes = [
        f"Age is the time scale (event: CBP onset at {ONSET}; participants without CBP censored at {TIME_SCALE}); "
        + ("age at examination stays a covariate as a birth-cohort adjustment (onsets are recalled, so the young can only "
           "have early onsets)." if birth_cohort and TIME_SCALE in [c for t in spec.covariates for c in term_variables(t)]
           else f"it is therefore not a covariate{removed_text}."),
        "Participants are at risk from birth (onset recalled at the examination; no delayed entry).",
        "Exposures per 2 SD with the centres and scales of the logistic model (learned on its complete rows).",
    ]
    if cox_spec.group:
        notes.append(f"Stratified by {dd.label(cox_spec.group, unit=False).lower()} ({len(design.recipe.group_levels)} strata, "
                     "a baseline hazard each): the analogue of the logistic model's random intercept.")
    n_flag = int(ph_test["ph_violated"].sum())
    notes.append(f"Proportional-hazards test: {n_flag} of {len(ph_test)} term(s) with p < 0.05; in a large cohort the test "
                 "flags departures too small to matter, so judge them by size (e.g. plot the scaled Schoenfeld residuals).")
    if counts["excluded"][NO_ONSET_REASON]:
        notes.append(f"{counts['excluded'][NO_ONSET_REASON]:,} participant(s) with CBP but no onset age were excluded.")
    if km_note:
        notes.append(km_note)
    return SurvivalResult(hazard_ratios=hazard_ratios, ph_test=ph_test, km=km, km_groups=km_groups, logrank_p=logrank_p,
                          counts=counts, notes=notes, exposure=exposure, spec=cox_spec)


# --- inputs ----------------------------------------------------------------------------------

def _resolve_spec(spec, dd: DataDictionary) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    path = Path(spec)
    if not path.is_file() and not path.is_absolute() and path == DEFAULT_SPEC and (_CHECKOUT_MODELS / path.name).is_file():
        path = _CHECKOUT_MODELS / path.name
    if not path.is_file() and Path(spec) == DEFAULT_SPEC:
        raise InputFileError(f"default model spec {DEFAULT_SPEC} not found in {Path.cwd()}; run from the repository root "
                             "or pass the spec (spec=path/to/paper.yaml).")
    return load_spec(path, dd)


def _check_exposure(table: pd.DataFrame, exposure: str, dd: DataDictionary) -> None:
    numeric = [c for c in table.columns if c in dd and dd[c].type in ("float", "integer") and dd[c].role == "exposure"]
    if exposure not in table.columns or exposure not in dd:
        raise SurvivalError(f"exposure: {unknown_choice('column', exposure, numeric)}")
    if dd[exposure].type not in ("float", "integer"):
        raise SurvivalError(f"exposure '{exposure}' is {dd[exposure].type}, not numeric; tertiles need a numeric column "
                            f"such as {', '.join(numeric[:3])}.")


def _without_time_scale(spec: ModelSpec) -> tuple[ModelSpec, list[str]]:
    removed = [t for t in spec.covariates if TIME_SCALE in term_variables(t)]
    if TIME_SCALE in spec.exposures:
        raise SurvivalError(f"spec '{spec.name}' has age as an exposure; age is the time scale of the survival analysis.")
    return replace(spec, covariates=tuple(t for t in spec.covariates if t not in removed)), removed


# --- tables ----------------------------------------------------------------------------------

def _hazard_ratio_table(cph, recipe, dd: DataDictionary) -> pd.DataFrame:
    s = cph.summary
    rows = []
    for term in recipe.terms:
        kind, label, per = describe_term(term, recipe, dd)
        if term == TIME_SCALE:
            label = "Age at examination (birth cohort)"
        r = s.loc[term]
        rows.append({"term": term, "kind": kind, "label": label, "per": per, "hr": float(r["exp(coef)"]),
                     "hr_lo95": float(r["exp(coef) lower 95%"]), "hr_hi95": float(r["exp(coef) upper 95%"]), "p": float(r["p"]),
                     "log_hr": float(r["coef"]), "log_hr_se": float(r["se(coef)"])})
    out = pd.DataFrame(rows, columns=HR_COLUMNS)
    order = out["kind"].map({"exposure": 0, "covariate": 1, "activity": 2})
    return out.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def _ph_table(ph, terms: list[str]) -> pd.DataFrame:
    s = ph.summary
    s = s.reset_index()
    name_col = s.columns[0]
    s = s.rename(columns={name_col: "term"})
    if isinstance(s["term"].iloc[0], tuple):  # several transforms give a (covariate, transform) index
        s["term"] = [t[0] for t in s["term"]]
    out = pd.DataFrame({"term": s["term"].astype(str), "test_statistic": s["test_statistic"].astype(float), "p": s["p"].astype(float)})
    out["ph_violated"] = out["p"] < 0.05
    out["_order"] = out["term"].map({t: i for i, t in enumerate(terms)})
    return out.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)[PH_COLUMNS]


def _kaplan_meier(x, duration, event, exposure: str, dd: DataDictionary):
    # lazy: as in survival_analysis
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    ok = ~np.isnan(x)
    note = None
    if not ok.all():
        note = f"{int((~ok).sum()):,} analysed row(s) without {exposure} are left out of the Kaplan–Meier curves."
    x, duration, event = x[ok], duration[ok], event[ok]
    q1, q2 = (float(v) for v in np.quantile(x, [1 / 3, 2 / 3]))
    if not q1 < q2 or not x.min() < q1:
        raise SurvivalError(f"exposure '{exposure}' has too few distinct values to split into tertiles.")
    unit = dd[exposure].unit
    u = f" {unit}" if unit else ""
    labels = [f"T1 (≤ {format_sig(q1)}{u})", f"T2 ({format_sig(q1)}–{format_sig(q2)}{u})", f"T3 (> {format_sig(q2)}{u})"]
    tertile = np.where(x <= q1, 0, np.where(x <= q2, 1, 2))
    km_parts, group_rows = [], []
    for g, label in enumerate(labels):
        m = tertile == g
        kmf = KaplanMeierFitter().fit(duration[m], event[m], label=label)
        sf = kmf.survival_function_[label]
        ci = kmf.confidence_interval_survival_function_
        at_risk = kmf.event_table["at_risk"].reindex(sf.index)
        km_parts.append(pd.DataFrame({"group": label, "age": sf.index.to_numpy(dtype=float), "survival": sf.to_numpy(),
                                      "lo95": ci.iloc[:, 0].to_numpy(), "hi95": ci.iloc[:, 1].to_numpy(),
                                      "at_risk": at_risk.to_numpy(dtype=np.int64)}))
        group_rows.append({"group": label, "n": int(m.sum()), "events": int(event[m].sum()), "lower": float(x[m].min()),
                           "upper": float(x[m].max()), "median_event_free_age": float(kmf.median_survival_time_)})
    km = pd.concat(km_parts, ignore_index=True)[KM_COLUMNS]
    km_groups = pd.DataFrame(group_rows, columns=KM_GROUP_COLUMNS)
    km.attrs["exposure"] = km_groups.attrs["exposure"] = exposure
    logrank_p = float(multivariate_logrank_test(duration, np.asarray(labels)[tertile], event).p_value)
    return km, km_groups, logrank_p, note


# --- small helpers ---------------------------------------------------------------------------

def _excluded_text(counts: dict) -> str:
    parts = [f"{reason} {k:,}" for reason, k in counts["excluded"].items() if k]
    return ", ".join(parts) or "none"
