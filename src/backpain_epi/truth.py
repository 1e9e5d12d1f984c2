"""The data-generating truth of the simulated cohort, and the simulator's defaults.

Kept apart from :mod:`backpain_epi.simulate` (pandas, SciPy) so that the command
line can show these defaults in ``--help`` without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .derived import ACTIVITY_REFERENCE_MET
from .errors import BackpainEpiError

N_NAKO = 27_518  # participants with whole-body MRI in the NAKO analysis
DEFAULT_SEED = 2025
N_SITES = 18  # NAKO study centres
ACTIVITY_SCALE_OFFSET = 100.0  # MET-min/week added before the log of the activity truth

#: Terms of the logistic truth and the column each is computed from.
TRUTH_TERMS = ("intermat_ml", "lmm_ml", "imf_pct", "age", "bmi", "sex[male]", "diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis")
CONTINUOUS_TERMS = ("intermat_ml", "lmm_ml", "imf_pct", "age", "bmi")  # odds ratios per 2 SD


@dataclass(frozen=True)
class CohortTruth:
    """The data-generating model of the CBP outcome.

    Attributes
    ----------
    odds_ratios
        Conditional odds ratios of CBP: per 2 SD (of the simulated sample) for
        ``intermat_ml``, ``lmm_ml``, ``imf_pct``, ``age`` and ``bmi``; male vs
        female for ``sex[male]``; yes vs no for the comorbidities. Terms left
        out keep their defaults.
    prevalence
        Target CBP prevalence; the intercept is solved so that the expected
        prevalence of the simulated sample equals it.
    site_sd
        Standard deviation of the site random intercept (log-odds scale).
    activity_optimum_met
        Physical activity (MET-min/week) of lowest CBP risk.
    activity_or_at_0, activity_or_at_10000
        Odds ratio at 0 and at 10 000 MET-min/week against the optimum (both
        ≥ 1, so the optimum is the activity of lowest risk); the log odds ratio
        is quadratic in :meth:`activity_scale` on either side of the optimum,
        so both equal to 1 make activity unrelated to CBP.
    """

    odds_ratios: dict[str, float] = field(default_factory=lambda: {
        "intermat_ml": 1.22, "lmm_ml": 0.80, "imf_pct": 1.10, "age": 1.15, "bmi": 1.10,
        "sex[male]": 0.80, "diabetes": 1.20, "dyslipidemia": 1.15, "osteoporosis": 1.40, "osteoarthritis": 1.80,
    })
    prevalence: float = 0.22
    site_sd: float = 0.25
    activity_optimum_met: float = 1500.0
    activity_or_at_0: float = 1.35
    activity_or_at_10000: float = 1.25

    def __post_init__(self):
        unknown = set(self.odds_ratios) - set(TRUTH_TERMS)
        if unknown:
            raise BackpainEpiError(f"unknown truth term(s) {sorted(unknown)}; terms are: {', '.join(TRUTH_TERMS)}.")
        defaults = CohortTruth.__dataclass_fields__["odds_ratios"].default_factory()
        object.__setattr__(self, "odds_ratios", {**defaults, **self.odds_ratios})
        for name, value in self.odds_ratios.items():
            if not (np.isfinite(value) and value > 0):
                raise BackpainEpiError(f"truth {name} must be a positive odds ratio, got {value}.")
        for name in ("activity_or_at_0", "activity_or_at_10000"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 1):
                raise BackpainEpiError(
                    f"truth {name} must be an odds ratio ≥ 1 against the optimum (the activity of lowest risk), got {value}; "
                    "to make low activity protective, move activity_optimum_met instead."
                )
        if not 0 < self.prevalence < 1:
            raise BackpainEpiError(f"truth prevalence must lie between 0 and 1, got {self.prevalence}.")
        if not (np.isfinite(self.site_sd) and self.site_sd >= 0):
            raise BackpainEpiError(f"truth site_sd must be a finite number ≥ 0, got {self.site_sd}.")
        if not 0 < self.activity_optimum_met < 10_000:
            raise BackpainEpiError(f"truth activity_optimum_met must lie between 0 and 10000, got {self.activity_optimum_met}.")

    @staticmethod
    def activity_scale(met: np.ndarray | float) -> np.ndarray:
        """The scale on which the activity curve is quadratic: log(MET-min/week + 100).

        The offset of 100 keeps the inactive (0 MET-min/week) from sitting far
        out on a log scale, so that the excess risk of low activity is spread
        over the lower band rather than concentrated at exactly 0.
        """
        return np.log(np.asarray(met, dtype=float) + ACTIVITY_SCALE_OFFSET)

    def activity_log_or(self, met: np.ndarray | float) -> np.ndarray:
        """Log odds ratio of CBP at ``met`` MET-min/week against the optimum."""
        u, u_opt = self.activity_scale(met), self.activity_scale(self.activity_optimum_met)
        low = np.log(self.activity_or_at_0) / (self.activity_scale(0.0) - u_opt) ** 2
        high = np.log(self.activity_or_at_10000) / (self.activity_scale(10_000.0) - u_opt) ** 2
        return np.where(u < u_opt, low, high) * (u - u_opt) ** 2

    def activity_curve(self, met: np.ndarray | float, reference: float = ACTIVITY_REFERENCE_MET) -> np.ndarray:
        """Odds ratio of CBP at ``met`` against ``reference`` MET-min/week."""
        return np.exp(self.activity_log_or(met) - self.activity_log_or(reference))
