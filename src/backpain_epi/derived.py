"""Variables derived from others, defined once for the simulator, validation and models."""

from __future__ import annotations

import numpy as np

#: Physical activity (MET-min/week) against which activity odds ratios are given.
ACTIVITY_REFERENCE_MET = 1500.0
#: Edges of the three activity bands of the NAKO analysis (MET-min/week): below the
#: first, between the two (both included), above the second. Their labels are the
#: dictionary's levels of ``activity_band``.
ACTIVITY_BAND_EDGES = (500.0, 5000.0)
#: The columns each derived column is made from (an analysis that reads the one reads the others).
DERIVED_FROM = {"activity_band": ("met_min_week",)}


def activity_band(met, levels: list[str]):
    """Band of each MET-min/week value (missing stays missing), labelled with ``levels``: a ``pd.Categorical``."""
    import pandas as pd  # lazy: the constants above are read by the command line's --help, which must not import pandas

    met = np.asarray(met, dtype=float)
    lo, hi = ACTIVITY_BAND_EDGES
    code = np.select([met < lo, met <= hi, met > hi], [0, 1, 2], default=-1)
    return pd.Categorical.from_codes(code, categories=list(levels))
