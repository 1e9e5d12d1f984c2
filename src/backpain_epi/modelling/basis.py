"""The activity bases of the design, at transformed values: patsy's cubic regression spline and the HSGP eigenfunctions.

Kept apart from :mod:`.design` so that :mod:`.latent` (which :mod:`.design` imports) evaluates the same bases.
"""

from __future__ import annotations

import numpy as np
import patsy


def _cr(u: np.ndarray, inner, lo: float, hi: float) -> np.ndarray:
    u = np.clip(u, lo, hi)  # the fitted function is held constant beyond the data's range
    return np.asarray(patsy.dmatrix("cr(u, knots=inner, lower_bound=lo, upper_bound=hi) - 1",
                                    {"u": u, "inner": np.asarray(inner), "lo": lo, "hi": hi}))


def _hsgp_phi(xs: np.ndarray, L: float, m: int) -> np.ndarray:
    """Laplace eigenfunctions of ``pm.gp.HSGP`` (1-D) at centred inputs ``xs``."""
    j = np.arange(1, m + 1)
    sqrt_lambda = j * np.pi / (2 * L)
    return np.sqrt(1 / L) * np.sin(np.outer(xs + L, sqrt_lambda))


def _activity_basis_u(u: np.ndarray, recipe: dict) -> np.ndarray:
    """The activity basis at transformed values ``u`` (numpy/patsy)."""
    u = np.clip(np.asarray(u, dtype=float), recipe["lower"], recipe["upper"])
    if recipe["basis"] == "spline":
        B = _cr(u, recipe["inner_knots"], recipe["lower"], recipe["upper"])
        return (B - np.asarray(recipe["column_means"])) @ np.asarray(recipe["transform_matrix"])
    phi = _hsgp_phi(u - recipe["centre"], recipe["L"], recipe["m"])
    return phi - np.asarray(recipe["column_means"])
