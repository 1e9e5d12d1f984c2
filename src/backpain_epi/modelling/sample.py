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
"""

from __future__ import annotations

import os
import time
import warnings

import pymc as pm
from threadpoolctl import threadpool_limits

from ..errors import BackpainEpiWarning
from .parallel import CORES_ENV
from .spec import SamplerSettings


class SamplerFallbackWarning(BackpainEpiWarning):
    """nutpie could not sample this model; PyMC's NUTS was used instead (the message says why)."""


def sample_model(model: pm.Model, settings: SamplerSettings, *, progress: bool = True, cache: dict | None = None):
    """Sample ``model`` with the spec's sampler; returns the InferenceData and what was done.

    The second value records the sampler requested and used, the reason for a
    fallback, and the timings (``compile_s``, ``sampling_s``). ``cache``, a dict
    kept by the caller across calls on the same ``model`` (the gate ladder's
    attempts), holds the compiled nutpie model, so a refit does not compile again.
    """
    info = {"requested": settings.sampler, "used": settings.sampler, "fallback_reason": None, "timings": {}}
    cores = min(settings.chains, int(os.environ.get(CORES_ENV) or 0) or os.cpu_count() or 1)
    with threadpool_limits(limits=1, user_api="blas"):
        if settings.sampler == "nutpie":
            try:
                idata = _nutpie(model, settings, cores, progress, info, {} if cache is None else cache)
            except Exception as exc:  # noqa: BLE001 - any nutpie failure falls back, with the reason shown
                reason = f"nutpie failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                warnings.warn(f"{reason}; sampling with PyMC's NUTS instead.", SamplerFallbackWarning, stacklevel=3)
                info |= {"used": "pymc", "fallback_reason": reason}
                idata = _pymc(model, settings, cores, progress, info)
        else:
            idata = _pymc(model, settings, cores, progress, info)
    return idata, info


def _nutpie(model, settings: SamplerSettings, cores: int, progress: bool, info: dict, cache: dict):
    # lazy: nutpie pulls numba in; a fit with sampler: pymc never needs it
    import nutpie

    t = time.perf_counter()
    if "nutpie" not in cache:
        cache["nutpie"] = nutpie.compile_pymc_model(model)
    compiled = cache["nutpie"]
    info["timings"]["compile_s"] = time.perf_counter() - t
    t = time.perf_counter()
    idata = nutpie.sample(compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains, cores=cores,
                          seed=settings.seed, target_accept=settings.target_accept, progress_bar=progress,
                          low_rank_modified_mass_matrix=True, save_warmup=False)
    info["timings"]["sampling_s"] = time.perf_counter() - t
    info["version"] = nutpie.__version__
    info["options"] = {"backend": "numba", "low_rank_modified_mass_matrix": True}
    return idata


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
