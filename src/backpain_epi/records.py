"""Facts that every stage records about what it read and ran with, each defined once.

- :func:`table_hash`: the content hash of an analysis table (``data.sha256`` of a run);
- :func:`ids_hash`: the hash of the analysed participant ids, in order (``data.analysed_sha256``);
- :func:`package_versions`: installed versions of the packages a result depends on, and :data:`VERSION`, this package's;
- :func:`json_default`: how numpy scalars, arrays and paths are written to JSON.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

#: The packages a fit, a survival analysis or a report records, in this order.
MODELLING_PACKAGES = ("backpain-epi", "pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas", "patsy", "scipy")
REPORT_PACKAGES = ("backpain-epi", "pymc", "nutpie", "arviz", "lifelines", "tableone", "pandas", "matplotlib", "monai", "torch")
SURVIVAL_PACKAGES = ("lifelines", "backpain-epi")


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or ``None`` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions(names: Iterable[str], *, python: bool = False) -> dict[str, str | None]:
    """``{name: version or None}`` for each of ``names`` (and ``python`` when asked)."""
    out = {name: package_version(name) for name in names}
    if python:
        out["python"] = platform.python_version()
    return out


def table_hash(df) -> str:
    """SHA-256 of a table's content (column names and values, in order), independent of file format."""
    import pandas as pd  # lazy: keeps `import backpain_epi.records` free of pandas for the CLI's start-up

    h = hashlib.sha256()
    h.update("\x1f".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def ids_hash(ids: Iterable) -> str:
    """SHA-256 of participant ids in order, one per line."""
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars and arrays and for paths."""
    import numpy as np  # lazy: as above

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


#: This package's version (``0+unknown`` in a source tree that is not installed).
VERSION = package_version("backpain-epi") or "0+unknown"
