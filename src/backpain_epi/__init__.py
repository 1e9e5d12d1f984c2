"""backpain-epi: back-muscle composition and chronic back pain.

Three stages share one vocabulary, the data dictionary (``data_dictionary.yaml``):
segmentation of Dixon MRI into muscle exposures, Bayesian hierarchical models of
chronic back pain on those exposures, and publication reports. The whole tour
is one import::

    >>> import backpain_epi as bp
    >>> sim = bp.simulate_cohort(n=2000, seed=1)                      # doctest: +SKIP
    >>> paper = bp.fit_model(sim.data, "models/paper.yaml")            # doctest: +SKIP
    >>> full = bp.fit_model(sim.data, "models/full.yaml")              # doctest: +SKIP
    >>> bp.compare_runs([paper, full])                                 # doctest: +SKIP
    >>> bp.build_report([paper, full], sim.data, out="report/")        # doctest: +SKIP

Names are loaded on first use (SPEC 1, ``lazy_loader``), so ``import backpain_epi``
and ``backpain-epi --help`` stay quick, and reading or comparing runs never
imports PyMC, PyTensor or torch.
"""

import lazy_loader as _lazy

from .records import VERSION as __version__

__getattr__, __dir__, _names = _lazy.attach(__name__, submod_attrs={
    "cohort": ["add_activity_band", "load_cohort", "merge_exposures", "scale_per_2sd"],
    "dictionary": ["DataDictionary", "load_dictionary"],
    "errors": ["BackpainEpiError", "BackpainEpiWarning", "DataQualityWarning", "DataValidationError", "DictionaryError",
               "InputFileError"],
    "simulate": ["SimulatedCohort", "simulate_cohort"],
    "table1": ["describe_cohort", "table1"],
    "truth": ["CohortTruth"],
    "tableio": ["read_table", "write_table"],
    "validation": ["ValidationReport", "conform_table", "load_table", "validate_table"],
    "modelling": ["FitResult", "ModelSpec", "SurvivalResult", "compare_runs", "fit_model", "load_run", "load_spec",
                  "survival_analysis"],
    "modelling.diagnostics": ["GateFailedWarning"],
    "modelling.provenance": ["Provenance"],
    "segmentation": ["EngineSpec", "SegmentationOutput", "segment_manifest", "write_phantoms"],
    "reporting": ["Report", "build_report"],
    "pipeline": ["PipelineResult", "load_config", "run_pipeline"],
})
__all__ = ["__version__", *_names]
