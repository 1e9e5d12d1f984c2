"""backpain-epi: back-muscle composition and chronic back pain.

Three stages share one vocabulary, the data dictionary (``data_dictionary.yaml``):
segmentation of Dixon MRI into muscle exposures, Bayesian hierarchical models of
chronic back pain on those exposures, and publication reports. This release
holds the foundation: the dictionary, table validation and the synthetic
NAKO-like cohort that serves as the embedded demo and test data.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("backpain-epi")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .cohort import add_activity_band, describe_cohort, load_cohort, scale_per_2sd
from .dictionary import DataDictionary, load_dictionary
from .errors import BackpainEpiError, DataQualityWarning, DataValidationError, DictionaryError, InputFileError
from .simulate import CohortTruth, SimulatedCohort, simulate_cohort
from .tableio import read_table, write_table
from .validation import ValidationReport, conform_table, load_table, validate_table

__all__ = [
    "__version__",
    "BackpainEpiError", "DataQualityWarning", "DataValidationError", "DictionaryError", "InputFileError",
    "CohortTruth", "DataDictionary", "SimulatedCohort", "ValidationReport",
    "add_activity_band", "conform_table", "describe_cohort", "load_cohort", "load_dictionary", "load_table",
    "read_table", "scale_per_2sd", "simulate_cohort", "validate_table", "write_table",
]
