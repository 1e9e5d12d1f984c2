"""Data the plot tests draw: odds ratios, curves, a cohort, a comparison, calibration deciles, QC slabs, KM curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from backpain_epi import load_dictionary, simulate_cohort

MODELS = ["unadjusted", "paper", "full", "full_hsgp"]
EXPOSURES = [("intermat_ml", "InterMAT volume", "2 SD = 120 mL"),
             ("lmm_ml", "Lean muscle volume", "2 SD = 475 mL"),
             ("imf_pct", "Intramuscular fat fraction", "2 SD = 7.43 %")]
GRID = [0, 50, 100, 200, 300, 400, 500, 600, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 7500,
        10000, 12500, 15000]


@pytest.fixture(scope="package")
def dd():
    return load_dictionary()


@pytest.fixture(scope="package")
def ors():
    rng = np.random.default_rng(0)
    rows = []
    for m in MODELS:
        for term, label, per in EXPOSURES:
            if m == "unadjusted" and term == "imf_pct":
                continue  # a model without a term leaves its slot empty
            med = float(np.exp(rng.normal(0, 0.3)))
            rows.append({"model": m, "term": term, "kind": "exposure", "label": label, "per": per,
                         "or_median": med, "or_lo95": med / 1.12, "or_hi95": med * 1.12})
    return pd.DataFrame(rows)


def _band_value(x):
    return 1.08 if x < 500 else 1.0 if x <= 5000 else 1.35


@pytest.fixture(scope="package")
def curves():
    parts = []
    g = np.array(GRID, dtype=float)
    smooth = np.exp(0.15 * ((np.log1p(g) - np.log1p(1500)) / 3) ** 2 + 0.02 * (g / 15000))
    smooth /= smooth[GRID.index(1500)]
    for m, basis in [("paper", "bands"), ("full", "spline"), ("full_hsgp", "hsgp"), ("full_b", "spline")]:
        med = np.array([_band_value(x) for x in g]) if basis == "bands" else smooth
        width = np.where(g == 1500, 1.0, 1.1)
        parts.append(pd.DataFrame({"model": m, "basis": basis, "met_min_week": g, "reference_met": 1500.0,
                                   "or_median": med, "or_lo95": med / width, "or_hi95": med * width}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="package")
def cohort():
    return simulate_cohort(n=500, seed=1).data


@pytest.fixture(scope="package")
def comparison():
    return pd.DataFrame({
        "model": ["full_hsgp", "full", "paper", "unadjusted"], "rank": [1, 2, 3, 4],
        "elpd_loo": [-13729.0, -13729.5, -13736.5, -13896.8], "se": [90.0, 90.0, 90.0, 89.3],
        "p_loo": [32.2, 32.0, 27.4, 21.3], "elpd_diff": [0.0, 0.49, 7.47, 167.8], "dse": [0.0, 0.93, 5.4, 18.9],
        "weight": [0.76, 0.0, 0.24, 0.0]})


def ppc_table(models):
    """Calibration deciles of ``models``: observed near predicted, with binomial intervals."""
    rng = np.random.default_rng(3)
    rows = []
    for m in models:
        pred = np.sort(rng.uniform(0.15, 0.45, 10))
        for d, p in enumerate(pred, 1):
            se = np.sqrt(p * (1 - p) / 2750)
            rows.append({"model": m, "decile": d, "n": 2750, "predicted": p, "observed": p + rng.normal(0, se),
                         "rep_lo95": p - 1.96 * se, "rep_hi95": p + 1.96 * se})
    return pd.DataFrame(rows)


def qc_sample(pid, flagged=False, note="", shape=(48, 40, 10), spacing=(2.0, 2.0, 5.0), z_range=(2, 8)):
    """A synthetic slab: four elliptical muscles (labels 1–4) in a brighter body, on slices ``z_range``."""
    rng = np.random.default_rng(len(pid))
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    body = ((x - 24) / 22) ** 2 + ((y - 20) / 17) ** 2 <= 1
    lab2d = np.zeros(shape[:2], np.uint8)
    for value, (cx, cy) in {1: (17, 12), 2: (31, 12), 3: (18, 26), 4: (30, 26)}.items():
        lab2d[((x - cx) / 5) ** 2 + ((y - cy) / 4) ** 2 <= 1] = value
    water = np.where(body, 300.0, 20.0)[..., None] + rng.normal(0, 10, shape)
    labels = np.zeros(shape, np.uint8)
    labels[:, :, z_range[0]:z_range[1]] = lab2d[..., None]
    water[labels > 0] += 200
    return {"participant_id": pid, "water": water, "labels": labels, "spacing": spacing, "flagged": flagged,
            "note": note}


@pytest.fixture(scope="package")
def samples():
    return [qc_sample(f"P{i:06d}", flagged=(i == 3), note="psoas_left_ml below 20 mL" if i == 3 else "")
            for i in range(1, 6)]


@pytest.fixture(scope="package")
def km_tables():
    """Kaplan–Meier curves of three tertiles that stay above one half, as ``SurvivalResult`` gives them."""
    rows, groups = [], []
    for i, g in enumerate(["low", "middle", "high"]):
        age = np.arange(20.0, 81.0, 2.0)
        surv = np.exp(-(0.004 + 0.002 * i) * (age - 20))
        rows.append(pd.DataFrame({"group": g, "age": age, "survival": surv, "lo95": surv - 0.02, "hi95": np.minimum(surv + 0.02, 1)}))
        groups.append({"group": g, "n": 1000, "events": 200 + 60 * i})
    km, km_groups = pd.concat(rows, ignore_index=True), pd.DataFrame(groups)
    km.attrs["exposure"] = km_groups.attrs["exposure"] = "intermat_ml"
    return km, km_groups


def caller_axes(nrows: int = 1, ncols: int = 1, **subplots):
    """Axes of a figure the caller made (as in a notebook), outside the report style; a 2-D array."""
    fig = Figure(figsize=(4 * ncols, 3 * nrows))
    return fig.subplots(nrows, ncols, squeeze=False, **subplots)
