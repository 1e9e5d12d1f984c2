"""Pipeline configurations: the demo's loads; mistakes are named with the fix, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backpain_epi.pipeline.config import ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]


def _cfg(**over):
    raw = {"out": "out", "models": [str(ROOT / "models" / "unadjusted.yaml")]}
    raw.update(over)
    return raw


def _problems(raw: dict, base: Path) -> list[str]:
    """The problems a ConfigError lists, one a line (each after "  - ")."""
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, base=base)
    return [line.split("  - ", 1)[1] for line in str(err.value).splitlines() if line.startswith("  - ")]


def test_demo_config_loads_with_paths_relative_to_it():
    cfg = load_config(ROOT / "reports" / "demo.yaml")
    assert cfg.out.resolve() == (ROOT / "demo_output").resolve()
    assert [p.stem for p in cfg.models] == ["paper", "full", "unadjusted", "paper_by_sex", "paper_intermat_spline"]
    assert all(p.is_file() for p in cfg.models)
    assert cfg.segmentation["device"] == "auto" and cfg.cohort["n"] >= 50


def test_defaults_fill_every_section(tmp_path):
    cfg = config_from_dict(_cfg(), base=tmp_path)
    assert cfg.out == tmp_path / "out"
    assert cfg.cohort["sites"] == 18 and cfg.phantoms["inplane_mm"] == [2.0, 2.5] and cfg.sampler["draws"] is None


def test_every_problem_at_once_with_did_you_mean(tmp_path):
    raw = _cfg(cohrt={}, cohort={"n": 10, "sead": 1}, models=["missing.yaml"], sampler={"draws": 0},
               phantoms={"slice_mm": [6, 2]}, segmentation={"workers": "two"})
    problems = _problems(raw, tmp_path)
    expected = ["unknown key 'cohrt'; did you mean 'cohort'?", "cohort: unknown key 'sead'; did you mean 'seed'?",
                "cohort.n: must be a whole number of at least 50", "models: missing.yaml: file not found",
                "sampler.draws: must be a whole number ≥ 1", "phantoms.slice_mm: give [smallest, largest]",
                "segmentation.workers: must be a whole number ≥ 1, got 'two'"]
    assert len(problems) == len(expected)
    for text in expected:
        assert any(text in line for line in problems), text


def test_truth_fields_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'prevalence'"):
        config_from_dict(_cfg(cohort={"truth": {"prevalance": 0.3}}), base=tmp_path)
    with pytest.raises(ConfigError, match="unknown truth term"):
        config_from_dict(_cfg(cohort={"truth": {"odds_ratios": {"intermat": 1.5}}}), base=tmp_path)
    cfg = config_from_dict(_cfg(cohort={"truth": {"odds_ratios": {"intermat_ml": 1.5}}}), base=tmp_path)
    assert cfg.truth().odds_ratios["intermat_ml"] == 1.5


def test_overrides_and_file_errors(tmp_path):
    cfg = config_from_dict(_cfg(), base=tmp_path)
    assert cfg.with_overrides(n=500).cohort["n"] == 500
    with pytest.raises(ConfigError, match="cohort.n"):
        cfg.with_overrides(n=5)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump(_cfg(models=[str(ROOT / "models" / "full.yaml")] * 2)))
    with pytest.raises(ConfigError, match="same file name"):
        load_config(same)


def test_sampler_overrides_reach_the_spec(tmp_path):
    from backpain_epi.modelling import load_spec

    cfg = config_from_dict(_cfg(sampler={"draws": 300, "target_accept": 0.97}), base=tmp_path)
    spec = load_spec(cfg.models[0]).with_sampler(**cfg.sampler)
    assert spec.sampler.draws == 300 and spec.sampler.target_accept == 0.97
    assert spec.sampler.tune == load_spec(cfg.models[0]).sampler.tune  # left out: the spec's own
    with pytest.raises(ConfigError, match="sampler.target_accept: a number from 0.5 to below 1"):
        config_from_dict(_cfg(sampler={"target_accept": 1.2}), base=tmp_path)


def test_fit_workers_and_crossval_are_checked(tmp_path):
    cfg = config_from_dict(_cfg(), base=tmp_path)
    assert cfg.fit == {"workers": 1} and cfg.crossval["by"] is None
    raw = _cfg(fit={"workers": 0}, crossval={"by": "sites", "models": ["unadjustd"], "workers": 2, "draws": 0})
    problems = "\n".join(_problems(raw, tmp_path))
    for text in ("fit.workers: must be a whole number ≥ 1, got 0",
                 "crossval.by: site (leave one site out) or null (no cross-validation), got 'sites'",
                 "crossval.models: unknown model 'unadjustd'; did you mean 'unadjusted'?",
                 "crossval.draws: must be a whole number ≥ 1"):
        assert text in problems


def test_segmentation_mirror_axes_is_checked(tmp_path):
    assert config_from_dict(_cfg(), base=tmp_path).segmentation["mirror_axes"] is None  # the weights' own
    for good in ("none", "x", "zx"):
        assert config_from_dict(_cfg(segmentation={"mirror_axes": good}), base=tmp_path).segmentation["mirror_axes"] == good
    problems = _problems(_cfg(segmentation={"mirror_axes": "xw"}), tmp_path)
    assert problems == ["segmentation.mirror_axes: give distinct axes from x, y, z (or none), got ['x', 'w']"]
    problems = _problems(_cfg(segmentation={"mirror_axes": 3}), tmp_path)
    assert problems == ["segmentation.mirror_axes: axes among x, y, z (e.g. xz) or none, got 3"]


def test_mirror_axes_keys_the_segment_stage_and_reaches_the_engine(tmp_path, monkeypatch):
    from backpain_epi import load_dictionary
    from backpain_epi.pipeline import run

    def segment_key(**segmentation):
        cfg = config_from_dict(_cfg(segmentation=segmentation), base=tmp_path)
        stages = run._stages(cfg, run._Folders(cfg.out), load_dictionary(), progress=False)
        return next(s for s in stages if s.name == "segment").key()

    unset = segment_key()
    assert segment_key(mirror_axes="none") != unset and segment_key(mirror_axes="x") != segment_key(mirror_axes="none")
    assert segment_key(workers=2) == unset  # how it runs is not what it gives
    assert segment_key(mirror_axes="zx") == segment_key(mirror_axes="xz")  # the same mirroring: no needless rerun
    seen = {}

    class Stop(Exception):
        pass

    def segment_manifest(*args, engine, **kwargs):
        seen["engine"] = engine
        raise Stop  # what segment_manifest is given is all this test is about

    monkeypatch.setattr(run, "segment_manifest", segment_manifest)
    cfg = config_from_dict(_cfg(segmentation={"mirror_axes": "none"}), base=tmp_path)
    with pytest.raises(Stop):
        run._segment(cfg, run._Folders(cfg.out), load_dictionary(), progress=False)
    assert seen["engine"].mirror_axes == () and seen["engine"].engine == "builtin"
