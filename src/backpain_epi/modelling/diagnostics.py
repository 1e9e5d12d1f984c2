"""The diagnostics gate: a fit is reported only if its sampler converged.

Checks (Vehtari et al. 2021; Betancourt 2017): R-hat ≤ 1.01 and bulk ESS ≥ 400
for every reported term and every scale parameter, no divergent transitions,
and E-BFMI ≥ 0.3 in every chain. The verdict is data (:class:`Diagnostics`),
recorded in ``provenance.json``; printing and the exit status are the caller's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import arviz as az
import numpy as np

from ..errors import BackpainEpiWarning

RHAT_MAX = 1.01
FIXES = "more tuning/draws (--tune, --draws), a higher target_accept in the spec's sampler, or a simpler model"
ESS_MIN = 400
BFMI_MIN = 0.3


@dataclass(frozen=True)
class Check:
    """One check of the gate: its name, whether it passed, the value and the rule."""

    name: str
    passed: bool
    value: str
    rule: str
    worst: str = ""


@dataclass(frozen=True)
class Diagnostics:
    """The gate's verdict: every check, and whether all passed."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def format(self) -> str:
        head = "Diagnostics: PASSED" if self.passed else "DIAGNOSTICS FAILED: do not report these estimates"
        lines = [head]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.name}: {c.value} (rule: {c.rule}){f'; worst: {c.worst}' if c.worst and not c.passed else ''}")
        if not self.passed:
            lines.append(f"  Fixes: {FIXES}; see the failed checks above.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


class GateFailedWarning(BackpainEpiWarning):
    """A fit's diagnostics gate failed: its estimates should not be reported as they are."""

    @classmethod
    def for_model(cls, model: str, diagnostics: Diagnostics, attempts: int = 1) -> GateFailedWarning:
        failed = "; ".join(f"{c.name} {c.value} (rule {c.rule})" for c in diagnostics.failed)
        tried = f" after {attempts} attempts of the gate ladder" if attempts > 1 else ""
        return cls(f"diagnostics gate failed for model '{model}'{tried}: {failed}. Do not report these estimates; "
                   "fit again with more tuning or draws (fit_model(..., tune=, draws=)), a higher target_accept in the "
                   "spec's sampler, or a simpler model.")


def check_diagnostics(idata: az.InferenceData, var_names: list[str]) -> Diagnostics:
    """Run the gate on ``idata``.

    Parameters
    ----------
    idata
        Posterior with ``sample_stats`` (``diverging``, ``energy``).
    var_names
        Parameters checked for R-hat and ESS (the reported terms and the scales).
    """
    summary = az.summary(idata, var_names=var_names, kind="diagnostics")
    rhat = summary["r_hat"]
    ess = summary["ess_bulk"]
    nchains = idata.posterior.sizes["chain"]
    checks = []
    if nchains > 1:
        checks.append(Check("R-hat", bool((rhat <= RHAT_MAX).all()), f"max {rhat.max():.3f}", f"≤ {RHAT_MAX}", _worst(rhat, high=True)))
    else:
        checks.append(Check("R-hat", False, "not computable from 1 chain", "≥ 2 chains, R-hat ≤ 1.01"))
    checks.append(Check("bulk ESS", bool((ess >= ESS_MIN).all()), f"min {ess.min():.0f}", f"≥ {ESS_MIN}", _worst(ess, high=False)))
    stats = idata.sample_stats
    n_div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    checks.append(Check("divergences", n_div == 0, f"{n_div}", "none"))
    if "energy" in stats:
        bfmi = np.atleast_1d(az.bfmi(idata))
        checks.append(Check("E-BFMI", bool((bfmi >= BFMI_MIN).all()), f"min {bfmi.min():.2f}", f"≥ {BFMI_MIN} in every chain"))
    return Diagnostics(tuple(checks))


def _worst(values, high: bool) -> str:
    name = values.idxmax() if high else values.idxmin()
    return f"{name} ({values[name]:.3f})" if high else f"{name} ({values[name]:.0f})"
