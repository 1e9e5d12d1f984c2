"""What a fit was made from and how: the typed contents of a run's ``provenance.json``.

:class:`Provenance` is the contract between the fit and everything that reads a
run (compare, report, pipeline, CLI): they read attributes, never JSON keys. Keys
added since the first layout (``run_id``, ``attempts``) are optional, so run
folders written by earlier versions still load.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputFileError
from ..records import MODELLING_PACKAGES, VERSION, json_default, package_versions
from .diagnostics import Check, Diagnostics
from .ladder import Attempt


@dataclass(frozen=True)
class DataRecord:
    """The table a run was fit on: its source, content hash, rows analysed and dropped, events."""

    source: str
    sha256: str
    n_rows: int
    n_analysed: int
    n_events: int
    dropped: dict[str, int]
    analysed_sha256: str
    qc_flagged_included: bool = False
    #: rows kept although missing an imputed covariate, per column (``met_min_week`` for the activity band too)
    imputed: dict[str, int] = field(default_factory=dict)
    #: per measurement-error exposure: its SE column, observed and true SD, mean SE and reliability ratio
    measurement_error: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """Everything a run records about its making (``provenance.json``).

    Attributes
    ----------
    model, formula, priors
        The spec's name, its terms as text and every prior as text.
    data
        The :class:`DataRecord` of the analysed table.
    design
        The design recipe (scaling, levels, activity basis) as a dict, enough to rebuild the design.
    activity_parameterization
        ``centred`` / ``noncentred`` for a spline or HSGP activity term, else ``None``.
    group_parameterization
        ``centred`` / ``noncentred`` for the group intercepts (``None`` without a group, and for runs
        written before the choice existed, which were non-centred).
    sampler, settings, timings
        The sampler used (and why), the draws/tune/chains/seed/target_accept, and seconds per step.
    diagnostics
        The gate's verdict (:class:`~backpain_epi.modelling.diagnostics.Diagnostics`) on the posterior kept.
    run_id
        The fit's id (uuid4 hex), also in ``posterior.nc`` and ``summary.csv``: a run folder's files belong
        together when the three agree. Empty for runs written before run ids.
    attempts
        Every sampling attempt of the gate ladder (:class:`~backpain_epi.modelling.ladder.Attempt`), the kept one
        last. Empty for runs written before the ladder (one attempt, ``settings``).
    versions, backpain_epi, created
        Package versions, this package's version, and the UTC time of the fit.
    """

    model: str
    formula: str
    priors: dict[str, str]
    data: DataRecord
    design: dict
    activity_parameterization: str | None
    sampler: dict
    settings: dict
    timings: dict[str, float]
    diagnostics: Diagnostics
    run_id: str = ""
    attempts: tuple[Attempt, ...] = ()
    group_parameterization: str | None = None
    versions: dict[str, str | None] = field(default_factory=lambda: package_versions(MODELLING_PACKAGES, python=True))
    backpain_epi: str = VERSION
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def n_attempts(self) -> int:
        """How many sampling attempts the fit took (1 for runs written before the gate ladder)."""
        return max(1, len(self.attempts))

    @property
    def gate_passed(self) -> bool:
        """Whether the diagnostics gate passed."""
        return self.diagnostics.passed

    def to_dict(self) -> dict:
        """The JSON layout of ``provenance.json`` (keys in the order the file has always had)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["data"] = asdict(self.data)
        d["diagnostics"] = self.diagnostics.to_dict()
        d["attempts"] = [a.to_dict() for a in self.attempts]
        order = ("created", "run_id", "model", "formula", "priors", "data", "design", "activity_parameterization",
                 "group_parameterization", "sampler", "settings",
                 "timings", "diagnostics", "attempts", "versions", "backpain_epi")
        return {k: d[k] for k in order}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=json_default) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> Provenance:
        diag = d["diagnostics"]
        kwargs = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kwargs["data"] = DataRecord(**d["data"])
        kwargs["diagnostics"] = Diagnostics(tuple(Check(**c) for c in diag["checks"]))
        kwargs["attempts"] = tuple(Attempt.from_dict(a) for a in d.get("attempts", ()))
        return cls(**kwargs)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Provenance:
        """Read ``provenance.json``; a file that is not one names itself and the fix."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputFileError(f"{path} is not a provenance.json written by `backpain-epi fit` ({exc}); refit the run.") from None
