"""The pipeline's configuration: one YAML file (``reports/demo.yaml`` is the demo's).

Relative paths in it are relative to the file itself, as in a segmentation manifest.
Every key is checked when the file is loaded; a mistake names the key and the fix,
and every problem is reported at once::

    out: ../demo_output          # the pipeline folder (cohort/, phantoms/, segmentation/, runs/, report/)
    cohort:   {n: 200, seed: 2025, sites: 18, truth: {odds_ratios: {intermat_ml: 1.5}}}
    phantoms: {seed: 1, inplane_mm: [2.0, 2.5], slice_mm: [4.5, 6.0], workers: 2}
    segmentation: {device: auto, workers: 1, batch_size: 4, weights: null, mirror_axes: null}  # null: the weights' own
    models: [../models/unadjusted.yaml, ../models/full.yaml]
    sampler:  {draws: 500, tune: 500, chains: 4, target_accept: 0.95}   # overrides every spec's sampler settings
    fit:      {workers: 2}           # model fits at once, in local processes (or on the cluster of --scheduler)
    crossval: {by: site, models: [paper, full], workers: 2, draws: null, tune: null, chains: null}
    report:   {title: "...", survival: true}
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import BackpainEpiError, unknown_choice
from ..simulate import DEFAULT_SEED, N_SITES, CohortTruth


class ConfigError(BackpainEpiError):
    """A pipeline configuration cannot be used; the message lists every problem."""


#: Each section's keys and their defaults (``None``: the package's default applies).
SECTIONS: dict[str, dict] = {
    "cohort": {"n": 200, "seed": DEFAULT_SEED, "sites": N_SITES, "truth": {}},
    "phantoms": {"seed": 1, "inplane_mm": [2.0, 2.5], "slice_mm": [4.5, 6.0], "workers": 2},
    "segmentation": {"device": "auto", "workers": 1, "batch_size": 4, "weights": None, "mirror_axes": None},
    "sampler": {"draws": None, "tune": None, "chains": None, "seed": None, "target_accept": None},
    "fit": {"workers": 1},
    "crossval": {"by": None, "models": None, "workers": 1, "draws": None, "tune": None, "chains": None},
    "report": {"title": "Back-muscle composition and chronic back pain", "survival": True, "survival_spec": None},
}
TOP_KEYS = ("out", "models", *SECTIONS)


@dataclass(frozen=True)
class PipelineConfig:
    """A checked pipeline configuration; the sections are plain dicts with every key filled in."""

    path: Path | None
    out: Path
    models: list[Path]
    cohort: dict = field(default_factory=dict)
    phantoms: dict = field(default_factory=dict)
    segmentation: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    crossval: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def with_overrides(self, *, n: int | None = None, out: str | os.PathLike | None = None) -> PipelineConfig:
        """A copy with the cohort size or the output folder replaced (the command line's ``--n`` and ``--out``)."""
        cfg = self
        if n is not None:
            cfg = dataclasses.replace(cfg, cohort={**cfg.cohort, "n": n})
            _raise_if(_check_cohort(cfg.cohort), self.path)
        if out is not None:
            cfg = dataclasses.replace(cfg, out=Path(out))
        return cfg

    def truth(self) -> CohortTruth:
        return CohortTruth(**self.cohort["truth"])


def load_config(config: str | os.PathLike) -> PipelineConfig:
    """Read and check the pipeline configuration file ``config``."""
    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (the demo's is reports/demo.yaml).", param="config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
    return config_from_dict(raw, base=path.parent, path=path)


def config_from_dict(raw: dict, *, base: str | os.PathLike = ".", path: Path | None = None) -> PipelineConfig:
    """Check a configuration given as a dict; relative paths are taken relative to ``base``."""
    base = Path(base)
    problems: list[str] = []
    if not isinstance(raw, dict):
        _raise_if(["the configuration must be a mapping of keys (out, cohort, models, ...)"], path)
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(unknown_choice("key", key, TOP_KEYS))
    sections = {}
    for name, defaults in SECTIONS.items():
        given = raw.get(name) or {}
        if not isinstance(given, dict):
            problems.append(f"{name}: expected a mapping of keys ({', '.join(defaults)}), got {given!r}")
            given = {}
        for key in given:
            if key not in defaults:
                problems.append(f"{name}: " + unknown_choice("key", key, defaults))
        sections[name] = {**defaults, **{k: v for k, v in given.items() if k in defaults}}
    problems += _check_cohort(sections["cohort"])
    problems += _check_phantoms(sections["phantoms"])
    problems += _check_segmentation(sections["segmentation"])
    problems += _check_sampler(sections["sampler"])
    problems += _check_workers(sections["fit"], "fit")
    problems += _check_crossval(sections["crossval"])
    if not isinstance(sections["report"]["title"], str) or not sections["report"]["title"].strip():
        problems.append("report.title: must be a non-empty text")
    if not isinstance(sections["report"]["survival"], bool):
        problems.append("report.survival: must be true or false")
    survival_spec = sections["report"]["survival_spec"]
    if survival_spec is not None:
        if not isinstance(survival_spec, str) or not (base / survival_spec).is_file():
            problems.append(f"report.survival_spec: {survival_spec}: file not found (a model spec; null: the first of models)")
        else:
            sections["report"]["survival_spec"] = str(base / survival_spec)

    out = raw.get("out")
    if not isinstance(out, str) or not out.strip():
        problems.append("out: give the pipeline folder, e.g. `out: ../demo_output` (relative to this file)")
        out = "."
    models = raw.get("models")
    model_paths: list[Path] = []
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        problems.append("models: give a list of model spec files, e.g. `models: [../models/paper.yaml]`")
    else:
        for m in models:
            p = base / m
            if not p.is_file():
                problems.append(f"models: {m}: file not found (looked for {p})")
            model_paths.append(p)
        stems = [p.stem for p in model_paths]
        if len(set(stems)) < len(stems):
            problems.append("models: two specs have the same file name; each run folder is named after its spec file")
        chosen = sections["crossval"]["models"]
        if isinstance(chosen, list):
            problems += ["crossval.models: " + unknown_choice("model", m, stems) for m in chosen if m not in stems]
    weights = sections["segmentation"]["weights"]
    if weights is not None:
        sections["segmentation"]["weights"] = str(base / weights)
        if not Path(sections["segmentation"]["weights"]).is_file():
            problems.append(f"segmentation.weights: {weights}: file not found")
    _raise_if(problems, path)
    return PipelineConfig(path=path, out=base / out, models=model_paths, **sections)


def _check_cohort(c: dict) -> list[str]:
    problems = []
    if not _whole(c["n"]) or c["n"] < 50:
        problems.append(f"cohort.n: must be a whole number of at least 50 participants, got {c['n']!r}")
    if not _whole(c["seed"]) or c["seed"] < 0:
        problems.append(f"cohort.seed: must be a whole number ≥ 0, got {c['seed']!r}")
    if not _whole(c["sites"]) or not 2 <= c["sites"] <= 100:
        problems.append(f"cohort.sites: must be a whole number between 2 and 100, got {c['sites']!r}")
    truth = c["truth"]
    fields = [f.name for f in dataclasses.fields(CohortTruth)]
    if not isinstance(truth, dict):
        problems.append(f"cohort.truth: expected a mapping of CohortTruth fields ({', '.join(fields)})")
    else:
        bad = [k for k in truth if k not in fields]
        problems += ["cohort.truth: " + unknown_choice("field", k, fields) for k in bad]
        if not bad:
            try:
                CohortTruth(**truth)
            except (BackpainEpiError, TypeError) as exc:
                problems.append(f"cohort.truth: {exc}")
    return problems


def _check_phantoms(p: dict) -> list[str]:
    problems = []
    if not _whole(p["seed"]) or p["seed"] < 0:
        problems.append(f"phantoms.seed: must be a whole number ≥ 0, got {p['seed']!r}")
    for key, lo, hi in (("inplane_mm", 0.8, 4.0), ("slice_mm", 1.0, 8.0)):
        v = p[key]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and lo <= v[0] <= v[1] <= hi):
            problems.append(f"phantoms.{key}: give [smallest, largest] spacing in mm between {lo} and {hi}, got {v!r}")
    if not _whole(p["workers"]) or p["workers"] < 1:
        problems.append(f"phantoms.workers: must be a whole number ≥ 1, got {p['workers']!r}")
    return problems


def _check_segmentation(s: dict) -> list[str]:
    problems = []
    if not isinstance(s["device"], str):
        problems.append(f"segmentation.device: auto, cpu, cuda or cuda:N, got {s['device']!r}")
    for key in ("workers", "batch_size"):
        if not _whole(s[key]) or s[key] < 1:
            problems.append(f"segmentation.{key}: must be a whole number ≥ 1, got {s[key]!r}")
    if s["mirror_axes"] is not None:  # test-time mirroring in place of the weights' own (none: one pass instead of xz's 4)
        # lazy: network imports no torch at the top, but keep the config light all the same
        from ..segmentation.network import check_mirror_axes

        axes = s["mirror_axes"]
        try:
            if not isinstance(axes, (str, list)):
                raise BackpainEpiError(f"segmentation.mirror_axes: axes among x, y, z (e.g. xz) or none, got {axes!r}")
            check_mirror_axes("" if axes == "none" else axes, "segmentation.mirror_axes")
        except BackpainEpiError as exc:
            problems.append(str(exc))
    return problems


def _check_sampler(s: dict) -> list[str]:
    problems = [f"sampler.{k}: must be a whole number ≥ {0 if k == 'seed' else 1} (or left out for the spec's own), got {v!r}"
                for k, v in s.items() if k != "target_accept" and v is not None and (not _whole(v) or v < (0 if k == "seed" else 1))]
    ta = s["target_accept"]
    if ta is not None and not (isinstance(ta, float) and 0.5 <= ta < 1):
        problems.append(f"sampler.target_accept: a number from 0.5 to below 1 (0.9 in the shipped specs), got {ta!r}")
    return problems


def _check_workers(section: dict, name: str) -> list[str]:
    w = section["workers"]
    return [] if _whole(w) and w >= 1 else [f"{name}.workers: must be a whole number ≥ 1, got {w!r}"]


def _check_crossval(c: dict) -> list[str]:
    problems = _check_workers(c, "crossval")
    if c["by"] not in (None, "site"):
        problems.append(f"crossval.by: site (leave one site out) or null (no cross-validation), got {c['by']!r}")
    models = c["models"]
    if models is not None and not (isinstance(models, list) and models and all(isinstance(m, str) for m in models)):
        problems.append(f"crossval.models: a list of model names (the spec files' names, e.g. [paper, full]) or null for every "
                        f"model, got {models!r}")
    problems += [f"crossval.{k}: must be a whole number ≥ 1 (or null for the runs' own), got {c[k]!r}"
                 for k in ("draws", "tune", "chains") if c[k] is not None and (not _whole(c[k]) or c[k] < 1)]
    return problems


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _raise_if(problems: list[str], path: Path | None) -> None:
    if problems:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{len(problems)} problem(s) in the pipeline configuration:\n  - " + "\n  - ".join(problems))
