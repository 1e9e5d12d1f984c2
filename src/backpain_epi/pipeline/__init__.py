"""The end-to-end pipeline: simulated cohort -> phantom Dixon scans -> segmentation -> models -> report.

:func:`run_pipeline` (``backpain-epi pipeline --config reports/demo.yaml``) runs the
stages of :mod:`.run` through the input-hash cache of :mod:`.stages`; :mod:`.config`
reads and checks the YAML configuration.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "config": ["ConfigError", "PipelineConfig", "load_config"],
    "run": ["PipelineResult", "run_pipeline"],
})
