"""The gate ladder: a fit that fails the diagnostics gate is refit with safer sampler settings.

NUTS is not bit-reproducible across machines (a seed that gives no divergence on one CPU gives
two on the next), so a gate that passes with no margin fails somewhere. A fit whose gate fails on
divergences, bulk ESS or R-hat is therefore sampled again along a fixed, recorded ladder: each
:class:`LadderStep` raises ``target_accept`` (never lowers the spec's) and scales the tuning steps and
draws of the spec's settings. The first attempt is the spec's own settings; the fit keeps the last
attempt, and every attempt (settings, verdict, timings) is recorded as an :class:`Attempt` in
``provenance.json``. A gate still failing after the last step stays failed.

A fit can also fail because a hierarchy meets a scale that goes to 0 (a funnel: the activity
spline's smoothing SD when activity has no effect). More tuning does not fix that, and low E-BFMI is
no sampler setting's fault. The automatic (scaled) parameterization is built to avoid it
(:func:`~backpain_epi.modelling.params.activity_parameterization`); should an attempt with such parts
(:func:`~backpain_epi.modelling.params.auto_parts`) still fail on E-BFMI, or on divergences in at least
:data:`FUNNEL_DIVERGENCE_RATE` of its draws, the next attempt refits them non-centred at the same
settings, once, and the ladder goes on from there with that form. A few divergences are not a funnel's
sign: the form is kept and refit at a higher target_accept, since where the data pin the scales
down (27,518 rows with an activity effect) the non-centred form is the one that diverges.

The ladder's cost is bounded: by default at most three attempts, the last with twice the tuning and
draws. ``GateLadder.off()`` (``fit_model(..., ladder=False)``, ``--no-ladder``) keeps one attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .diagnostics import Check, Diagnostics
from .spec import SamplerSettings

#: The checks a refit with a higher target_accept and more tuning or draws can fix (E-BFMI is a model problem).
RETRYABLE = ("divergences", "bulk ESS", "R-hat")
#: A fit with automatically parameterized parts is refit non-centred when E-BFMI fails or at least this share of its
#: draws diverged (the flat-activity benchmark: 112 of 1,000; a noisy pass: 2 of 4,000).
FUNNEL_DIVERGENCE_RATE = 0.01


@dataclass(frozen=True)
class LadderStep:
    """One rung: ``target_accept`` at least this, tuning steps and draws scaled from the spec's settings."""

    target_accept: float
    tune_factor: float = 1.0
    draws_factor: float = 1.0

    def __post_init__(self):
        if not 0.5 <= self.target_accept < 1:
            raise ValueError(f"ladder step: target_accept must lie in [0.5, 1), got {self.target_accept!r}")
        if self.tune_factor < 1 or self.draws_factor < 1:
            raise ValueError(f"ladder step: tune_factor and draws_factor must be ≥ 1, got {self.tune_factor!r}, {self.draws_factor!r}")

    def apply(self, base: SamplerSettings) -> SamplerSettings:
        """The settings of this rung, from the spec's ``base`` settings."""
        return replace(base, target_accept=max(base.target_accept, self.target_accept),
                       tune=math.ceil(base.tune * self.tune_factor), draws=math.ceil(base.draws * self.draws_factor))


@dataclass(frozen=True)
class GateLadder:
    """The refits tried after a failed gate, in order (the spec's own settings are attempt 1).

    The default: target_accept 0.95 with 1.5× the draws, then 0.99 with twice the tuning and draws;
    ``noncentre``: a centred fit that fails with a funnel's signs (:meth:`funnel`) is refit non-centred first (module docstring).
    """

    steps: tuple[LadderStep, ...] = (LadderStep(0.95, draws_factor=1.5), LadderStep(0.99, tune_factor=2.0, draws_factor=2.0))
    noncentre: bool = True

    @classmethod
    def off(cls) -> GateLadder:
        """No refits: one attempt, the spec's settings."""
        return cls(steps=(), noncentre=False)

    @classmethod
    def of(cls, ladder: GateLadder | bool | None) -> GateLadder:
        """``ladder`` as a :class:`GateLadder`: ``None``/``True`` the default, ``False`` none."""
        if isinstance(ladder, GateLadder):
            return ladder
        if ladder is None or ladder is True:
            return cls()
        if ladder is False:
            return cls.off()
        raise TypeError(f"ladder: expected a GateLadder, True or False, got {type(ladder).__name__}")

    def settings(self, base: SamplerSettings) -> list[SamplerSettings]:
        """Every attempt's settings: ``base`` first, then each step's (a step that changes nothing is skipped)."""
        out = [base]
        for step in self.steps:
            settings = step.apply(base)
            if settings not in out:
                out.append(settings)
        return out

    @staticmethod
    def retry(diagnostics: Diagnostics, chains: int) -> bool:
        """Whether a refit may fix the failed gate (a failed check in :data:`RETRYABLE`; R-hat needs ≥ 2 chains)."""
        names = {c.name for c in diagnostics.failed}
        if chains < 2:
            names.discard("R-hat")
        return bool(names & set(RETRYABLE))

    @staticmethod
    def funnel(diagnostics: Diagnostics, draws: int) -> bool:
        """Whether the failed gate shows a funnel's signs: E-BFMI failed, or divergences in at least
        :data:`FUNNEL_DIVERGENCE_RATE` of the ``draws`` (all chains)."""
        failed = {c.name: c.value for c in diagnostics.failed}
        return "E-BFMI" in failed or ("divergences" in failed and int(failed["divergences"]) >= FUNNEL_DIVERGENCE_RATE * draws)


@dataclass(frozen=True)
class Attempt:
    """One sampling attempt of a fit: its settings, the gate's verdict on it, and its timings (seconds).

    ``noncentred``: the parts the gate ladder refit non-centred for this attempt (empty: the automatic choice).
    """

    number: int
    settings: dict
    diagnostics: Diagnostics
    timings: dict[str, float]
    noncentred: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.diagnostics.passed

    def describe(self) -> str:
        """``target_accept 0.95, tune 1000, draws 1500: passed`` or ``...: failed (divergences 2)``."""
        s = self.settings
        verdict = "passed" if self.passed else "failed (" + ", ".join(f"{c.name} {c.value}" for c in self.diagnostics.failed) + ")"
        form = f", non-centred {' and '.join(self.noncentred)}" if self.noncentred else ""
        return f"target_accept {s['target_accept']:g}, tune {s['tune']}, draws {s['draws']}{form}: {verdict}"

    def to_dict(self) -> dict:
        d = {"number": self.number, "settings": dict(self.settings), "diagnostics": self.diagnostics.to_dict(),
             "timings": dict(self.timings)}
        return d | ({"noncentred": list(self.noncentred)} if self.noncentred else {})

    @classmethod
    def from_dict(cls, d: dict) -> Attempt:
        return cls(number=d["number"], settings=d["settings"], timings=d["timings"], noncentred=tuple(d.get("noncentred", ())),
                   diagnostics=Diagnostics(tuple(Check(**c) for c in d["diagnostics"]["checks"])))
