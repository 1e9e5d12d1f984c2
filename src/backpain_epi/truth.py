"""The data-generating truth of the simulated cohort, and the simulator's defaults.

Kept apart from :mod:`backpain_epi.simulate` (pandas, SciPy) so that the command
line can show these defaults in ``--help`` without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .derived import ACTIVITY_REFERENCE_MET
from .errors import BackpainEpiError, unknown_choice

N_NAKO = 27_518  # participants with whole-body MRI in the NAKO analysis
DEFAULT_SEED = 2025
N_SITES = 18  # NAKO study centres
ACTIVITY_SCALE_OFFSET = 100.0  # MET-min/week added before the log of the activity truth

#: Terms of the logistic truth and the column each is computed from.
TRUTH_TERMS = ("intermat_ml", "lmm_ml", "imf_pct", "age", "bmi", "sex[male]", "diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis")
CONTINUOUS_TERMS = ("intermat_ml", "lmm_ml", "imf_pct", "age", "bmi")  # odds ratios per 2 SD
EXPOSURES = ("intermat_ml", "lmm_ml", "imf_pct")  # the terms that may be modified by sex or take a shape
MODIFIER = ("sex", "male", "female")  # the effect modifier: its column, the modified level, the reference
EFFECT_MODIFICATION_KEYS = tuple(f"{e}:sex[male]" for e in EXPOSURES)
SHAPES = ("linear", "threshold")
DEFAULT_THRESHOLD_QUANTILE = 0.5


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
    effect_modification
        Ratio of odds ratios (men vs women) of an exposure per 2 SD, keyed
        ``"<exposure>:sex[male]"`` for ``intermat_ml``, ``lmm_ml`` or ``imf_pct``:
        the exposure's odds ratio is ``odds_ratios[exposure]`` in women (the
        reference stratum, which ``odds_ratios`` then describes) and that times
        the ratio in men. ``odds_ratios["sex[male]"]`` stays the odds ratio of
        men vs women at the exposure's mean. Default: none.
    exposure_shape
        Dose–response shape of an exposure other than linear, keyed by exposure:
        ``"threshold"`` (at the median) or ``{"threshold_quantile": q}``: the log
        odds is flat below the exposure's sample quantile ``q`` and linear above
        it, with ``odds_ratios[exposure]`` the odds ratio per 2 SD above the
        threshold. ``"linear"`` is the default and is dropped. Stored as
        ``{exposure: {"threshold_quantile": q}}``.

    Examples
    --------
    >>> CohortTruth(effect_modification={"intermat_ml:sex[male]": 1.5},
    ...             exposure_shape={"lmm_ml": {"threshold_quantile": 0.3}}).exposure_shape
    {'lmm_ml': {'threshold_quantile': 0.3}}
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
    effect_modification: dict[str, float] = field(default_factory=dict)
    exposure_shape: dict[str, str | dict] = field(default_factory=dict)

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
        _check_effect_modification(self.effect_modification)
        object.__setattr__(self, "exposure_shape", _normalise_shapes(self.exposure_shape))

    def threshold_quantile(self, exposure: str) -> float | None:
        """The sample quantile below which ``exposure``'s log odds is flat, or None when it is linear."""
        shape = self.exposure_shape.get(exposure)
        return None if shape is None else shape["threshold_quantile"]

    def ratio_of_ors(self, exposure: str) -> float:
        """Planted ratio of odds ratios (men vs women) of ``exposure``; 1 when unmodified."""
        return float(self.effect_modification.get(f"{exposure}:sex[male]", 1.0))

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


def _check_effect_modification(modification) -> None:
    if not isinstance(modification, dict):
        raise BackpainEpiError(
            f"truth effect_modification must be a mapping of ratios of odds ratios, e.g. "
            f"{{'intermat_ml:sex[male]': 1.5}}, got {modification!r}; keys: {', '.join(EFFECT_MODIFICATION_KEYS)}."
        )
    for key, ratio in modification.items():
        if key not in EFFECT_MODIFICATION_KEYS:
            raise BackpainEpiError(
                "truth effect_modification: " + unknown_choice("key", key, EFFECT_MODIFICATION_KEYS)
                + f" Allowed keys: {', '.join(EFFECT_MODIFICATION_KEYS)} (an exposure modified by sex, men vs women)."
            )
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating, np.integer)) or not (np.isfinite(ratio) and ratio > 0):
            raise BackpainEpiError(
                f"truth effect_modification {key} must be a positive ratio of odds ratios (men vs women, per 2 SD), got {ratio!r}."
            )


def _normalise_shapes(shapes) -> dict[str, dict]:
    """``{exposure: {"threshold_quantile": q}}`` for every non-linear shape; linear ones dropped."""
    if not isinstance(shapes, dict):
        raise BackpainEpiError(
            f"truth exposure_shape must be a mapping of exposure to shape, e.g. {{'intermat_ml': {{'threshold_quantile': 0.5}}}}, "
            f"got {shapes!r}."
        )
    out = {}
    for exposure, shape in shapes.items():
        where = f"truth exposure_shape {exposure}"
        if exposure not in EXPOSURES:
            raise BackpainEpiError(
                "truth exposure_shape: " + unknown_choice("exposure", exposure, EXPOSURES) + f" Allowed: {', '.join(EXPOSURES)}."
            )
        if isinstance(shape, str):
            if shape not in SHAPES:
                raise BackpainEpiError(f"{where}: " + unknown_choice("shape", shape, SHAPES)
                                       + " Or give {'threshold_quantile': q} for a threshold at the quantile q.")
            if shape == "threshold":
                out[exposure] = {"threshold_quantile": DEFAULT_THRESHOLD_QUANTILE}
            continue
        if not isinstance(shape, dict) or set(shape) != {"threshold_quantile"}:
            extra = sorted(set(shape) - {"threshold_quantile"}) if isinstance(shape, dict) else []
            raise BackpainEpiError(
                f"{where}: expected 'linear', 'threshold' or {{'threshold_quantile': q}}, got {shape!r}"
                + (f"; unknown key(s) {extra}" if extra else "") + "."
            )
        q = shape["threshold_quantile"]
        if isinstance(q, bool) or not isinstance(q, (int, float, np.floating, np.integer)) or not 0.05 <= q <= 0.95:
            raise BackpainEpiError(
                f"{where}: threshold_quantile must be a number between 0.05 and 0.95 (a sample quantile of the exposure), got {q!r}."
            )
        out[exposure] = {"threshold_quantile": float(q)}
    return out
