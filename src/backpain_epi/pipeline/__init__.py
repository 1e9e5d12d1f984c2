"""The end-to-end pipeline: simulated cohort -> phantom Dixon scans -> segmentation -> models -> report.

:func:`run_pipeline` (``backpain-epi pipeline --config reports/demo.yaml``) runs the
stages of :mod:`.run` through the input-hash cache of :mod:`.stages`; :mod:`.config`
reads and checks the YAML configuration.
"""

from .config import ConfigError, PipelineConfig, load_config
from .run import PipelineResult, run_pipeline

__all__ = ["ConfigError", "PipelineConfig", "PipelineResult", "load_config", "run_pipeline"]
