"""Sampling: nutpie where it works, PyMC's NUTS otherwise, with the reason printed.

Two measured costs shape this module (BENCHMARKS.md, "Modelling"):

- **BLAS threads.** The gradient is dominated by two matrix-vector products
  over all rows. OpenBLAS starts its own threads for each, and with chains
  already running in parallel the threads oversubscribe the cores: on 2 cores a
  27,518 × 30 product took 15 ms instead of 0.9 ms. Sampling therefore runs
  with BLAS limited to one thread per chain (``threadpoolctl``).
- **Mass matrix.** Exposures, sex and lean muscle are correlated, and so are the
  intercept and the site effects; a diagonal mass matrix needed about 20
  leapfrog steps per draw (23 at target_accept 0.9). nutpie's low-rank modified
  mass matrix captures these directions and brings it to about 8 (13 at 0.9).
  Its adaptation costs per draw in proportion to the number of parameters: a
  model with latent values (imputation, measurement error: thousands of them)
  sampled twice as fast with the diagonal one (:data:`LOW_RANK_MAX_DIM`).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections import OrderedDict

import pandas as pd

import pymc as pm
from threadpoolctl import threadpool_limits

from ..errors import BackpainEpiWarning
from .parallel import CORES_ENV
from .spec import SamplerSettings


class SamplerFallbackWarning(BackpainEpiWarning):
    """nutpie could not sample this model; PyMC's NUTS was used instead (the message says why)."""


#: Compiled nutpie models of this process by :func:`~backpain_epi.modelling.build.structure_key`, most recent last.
_COMPILED: OrderedDict[str, object] = OrderedDict()
#: Models with more free parameters than this use nutpie's diagonal mass matrix: at 10,000 rows with imputed
#: activity and BMI (thousands of parameters) the low-rank one took 15.6 s for 300 draws at 40 leapfrog steps per
#: draw, the diagonal 7.4 s at 34 (BENCHMARKS.md).
LOW_RANK_MAX_DIM = 500
#: Compiled models kept at most (each holds its own copy of the data it was last given).
COMPILED_CACHE_SIZE = 8


def sample_model(model: pm.Model, settings: SamplerSettings, *, progress: bool = True, cache: dict | None = None,
                 key: str | None = None, data: dict | None = None):
    """Sample ``model`` with the spec's sampler; returns the InferenceData and what was done.

    The second value records the sampler requested and used, the reason for a
    fallback, and the timings (``compile_s``, ``sampling_s``). ``cache``, a dict
    kept by the caller across calls on the same ``model`` (the gate ladder's
    attempts), holds the compiled nutpie model, so a refit does not compile again.

    With ``key`` (the model's :func:`~backpain_epi.modelling.build.structure_key`) and
    ``data`` (its ``pm.Data`` values), a model compiled earlier in this process for
    the same key is reused with ``data`` swapped in (nutpie's ``with_data``) and the
    coordinates of ``model``: a fit of the same structure on other rows, as each
    fold of a cross-validation, does not compile again. The draws are the same as
    after a fresh compile (a test checks). ``info["compiled"]`` says which happened.
    """
    info = {"requested": settings.sampler, "used": settings.sampler, "fallback_reason": None, "timings": {}}
    cores = min(settings.chains, int(os.environ.get(CORES_ENV) or 0) or os.cpu_count() or 1)
    with threadpool_limits(limits=1, user_api="blas"):
        if settings.sampler == "nutpie":
            try:
                idata = _nutpie(model, settings, cores, progress, info, {} if cache is None else cache, key, data)
            except Exception as exc:  # noqa: BLE001 - any nutpie failure falls back, with the reason shown
                reason = f"nutpie failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                warnings.warn(f"{reason}; sampling with PyMC's NUTS instead.", SamplerFallbackWarning, stacklevel=3)
                info |= {"used": "pymc", "fallback_reason": reason}
                idata = _pymc(model, settings, cores, progress, info)
        else:
            idata = _pymc(model, settings, cores, progress, info)
    return idata, info


def _nutpie(model, settings: SamplerSettings, cores: int, progress: bool, info: dict, cache: dict, key: str | None = None,
            data: dict | None = None):
    # lazy: nutpie pulls numba in; a fit with sampler: pymc never needs it
    import nutpie

    t = time.perf_counter()
    if "nutpie" not in cache:
        cache["nutpie"], info["compiled"] = _compiled(nutpie, model, key, data)
    compiled = cache["nutpie"]
    info["timings"]["compile_s"] = time.perf_counter() - t
    t = time.perf_counter()
    low_rank = bool(compiled.n_dim <= LOW_RANK_MAX_DIM)
    idata = nutpie.sample(compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains, cores=cores,
                          seed=settings.seed, target_accept=settings.target_accept, progress_bar=progress,
                          low_rank_modified_mass_matrix=low_rank, save_warmup=False)
    info["timings"]["sampling_s"] = time.perf_counter() - t
    info["version"] = nutpie.__version__
    info["options"] = {"backend": "numba", "low_rank_modified_mass_matrix": low_rank, "free_parameters": int(compiled.n_dim)}
    return idata


def _compiled(nutpie, model, key: str | None, data: dict | None):
    """``(compiled model, "compiled" | "reused")``: from the process cache when ``key`` is in it, else freshly compiled."""
    if key is not None and data is not None and key in _COMPILED:
        _COMPILED.move_to_end(key)
        base = _COMPILED[key]
        coords = {**base.coords, **{name: pd.Index(values) for name, values in model.coords.items()}}
        return dataclasses.replace(base.with_data(**data), _coords=coords), "reused"
    compiled = nutpie.compile_pymc_model(model)
    if key is not None and data is not None:
        _COMPILED[key] = compiled
        while len(_COMPILED) > COMPILED_CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return compiled, "compiled"


def _pymc(model, settings: SamplerSettings, cores: int, progress: bool, info: dict):
    t = time.perf_counter()
    with model:
        idata = pm.sample(draws=settings.draws, tune=settings.tune, chains=settings.chains, cores=cores,
                          random_seed=settings.seed, target_accept=settings.target_accept, progressbar=progress,
                          compute_convergence_checks=False)
    info["timings"]["sampling_s"] = time.perf_counter() - t
    info["timings"].setdefault("compile_s", 0.0)
    info["version"] = pm.__version__
    return idata
