"""Leave-one-site-out cross-validation (``backpain-epi compare --cv site``).

PSIS-LOO asks how well a model predicts a participant of a site it has seen. A new
study would bring new sites; :func:`cross_validate_sites` asks how well each model
predicts a whole site it has *not* seen. For each model and each site (fold ``k``
of ``K``, sites in sorted order) it

1. refits the model's spec (the run's recorded sampler settings; one attempt, no
   gate ladder; seed = the spec's seed + ``k``, so serial, local-process and Dask
   runs give the same draws) on the rows the run analysed, less that site's. The
   design recipe (per-2-SD scaling, levels, activity basis) is learned again on the
   training rows, so nothing of the held-out site enters the fit: proper
   cross-validation;
2. scores the held-out site with its intercept a *new* group, drawn from the fitted
   site distribution, jointly over the site's rows:

   .. math:: \\mathrm{elpd}_k = \\log \\frac1S \\sum_s \\int \\prod_{i \\in k} p(y_i \\mid \\eta_{si} + u)\\,
             \\mathcal N(u; 0, \\sigma_s^2)\\, du

   The integral is computed per posterior draw by adaptive Gauss–Hermite quadrature
   (:func:`heldout_elpd`: centred at the mode of the integrand, scaled by its
   curvature; a site of 1,500 rows pins its intercept down far more tightly than the
   prior, which plain Gauss–Hermite nodes would straddle), then averaged over the
   draws on the log scale.

The result (:class:`CVResult`) holds the elpd of every model at every site, the
total and its standard error from the per-site contributions, the paired
differences from the best model, and whether the ranking agrees with PSIS-LOO's
(:meth:`CVResult.ranking_agrees`). Fold fits are independent tasks of
:func:`~backpain_epi.modelling.parallel.map_tasks`: serial, local processes or Dask.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from ..dictionary import DataDictionary, load_dictionary
from ..errors import BackpainEpiError, DataQualityWarning, InputFileError
from ..records import table_hash
from ..tableio import read_table, write_table
from .compare import _check_same_data, _model_names
from .diagnostics import GateFailedWarning
from .fit import FitResult, as_fit_result, fit_model, read_analysis_table
from .params import GROUP_SD
from .parallel import map_tasks
from .results import draws, eta_from_arrays
from .spec import ModelSpec

#: Gauss–Hermite nodes of the integral over a held-out site's new intercept.
NODES = 20
#: Draws × nodes × rows of float64 held at once while a site is scored (about 80 MB).
CHUNK_CELLS = 10_000_000
#: File of the by-site table in a folder given to :meth:`CVResult.save` / :meth:`CVResult.read`.
CV_FILE = "loso.csv"
#: Suffixes that make a path given to :meth:`CVResult.save` a table rather than a folder.
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".parquet", ".pq")
BY_SITE_COLUMNS = ["model", "site", "fold", "n", "n_events", "elpd", "seed", "draws", "tune", "chains", "ladder", "gate_passed",
                   "fit_s", "run_id"]
SUMMARY_COLUMNS = ["model", "rank", "elpd_total", "se", "elpd_diff", "dse", "n_sites", "n", "n_events"]


def heldout_elpd(eta: np.ndarray, y: np.ndarray, group_sd: np.ndarray, *, nodes: int = NODES,
                 chunk_cells: int = CHUNK_CELLS) -> tuple[float, np.ndarray]:
    """Log predictive density of the rows of one new group, jointly and row by row.

    Parameters
    ----------
    eta
        Log-odds draws of the rows without any group intercept: shape (draws, rows).
    y
        Outcomes (0/1) of the rows.
    group_sd
        Draws of the group standard deviation: shape (draws,).
    nodes
        Gauss–Hermite nodes per draw.

    Returns
    -------
    elpd : float
        :math:`\\log \\frac1S \\sum_s \\int \\prod_i p(y_i \\mid \\eta_{si} + u) \\mathcal N(u; 0, \\sigma_s^2) du`, the
        integral by adaptive Gauss–Hermite quadrature (Newton steps to the mode of the integrand, nodes scaled by its curvature).
    pointwise : ndarray
        The same for each row alone (each with its own draw of the intercept; plain Gauss–Hermite, the integrand of one
        row being as wide as the prior). They do not sum to ``elpd``: the rows of a site share its intercept.
    """
    eta = np.asarray(eta, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sd = np.asarray(group_sd, dtype=np.float64)
    n_draws, n = eta.shape
    x, w = np.polynomial.hermite.hermgauss(nodes)
    step = max(1, chunk_cells // max(1, nodes * n))
    joint = np.empty(n_draws)
    rows = np.empty((n_draws, n))
    for start in range(0, n_draws, step):
        c = slice(start, start + step)
        e, s = eta[c], sd[c]
        u, hess = _mode(e, y, s)
        sig = 1.0 / np.sqrt(-hess)
        uk = u[:, None] + np.sqrt(2.0) * sig[:, None] * x[None, :]             # (draws, nodes)
        g = _loglik(e[:, None, :] + uk[:, :, None], y).sum(axis=2) - 0.5 * (uk / s[:, None]) ** 2
        joint[c] = (special.logsumexp(g + np.log(w) + x**2, axis=1) + np.log(np.sqrt(2.0) * sig)
                    - np.log(np.sqrt(2.0 * np.pi) * s))
        prior = np.sqrt(2.0) * s[:, None] * x[None, :]
        ll = _loglik(e[:, None, :] + prior[:, :, None], y)                      # (draws, nodes, rows)
        rows[c] = special.logsumexp(ll + (np.log(w) - 0.5 * np.log(np.pi))[None, :, None], axis=1)
    log_s = np.log(n_draws)
    return float(special.logsumexp(joint) - log_s), special.logsumexp(rows, axis=0) - log_s


def _loglik(eta: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y * eta - np.logaddexp(0.0, eta)


def _mode(e: np.ndarray, y: np.ndarray, sd: np.ndarray, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Per draw, the mode of ``sum_i log p(y_i | e_i + u) - u^2 / (2 sd^2)`` (Newton, steps at most 2) and the curvature there."""
    u = np.zeros(len(e))
    for _ in range(iterations):
        p = special.expit(e + u[:, None])
        grad = (y - p).sum(axis=1) - u / sd**2
        hess = -(p * (1 - p)).sum(axis=1) - 1 / sd**2
        delta = np.clip(grad / hess, -2.0, 2.0)
        u = u - delta
        if np.abs(delta).max() < 1e-10:
            break
    p = special.expit(e + u[:, None])
    return u, -(p * (1 - p)).sum(axis=1) - 1 / sd**2


# --------------------------------------------------------------------------- the folds


@dataclass(frozen=True)
class Fold:
    """One refit: ``model`` fit on ``train`` (every site but ``site``), scored on ``test`` (the rows of ``site``)."""

    model: str
    fold: int
    site: str
    spec: ModelSpec
    train: pd.DataFrame
    test: pd.DataFrame
    include_qc_flagged: bool
    dictionary: DataDictionary
    run_id: str = ""
    nodes: int = NODES


def fit_fold(fold: Fold) -> dict:
    """Refit ``fold.spec`` on the training rows and score the held-out site (a task of :func:`map_tasks`)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GateFailedWarning)  # recorded per fold (gate_passed)
        warnings.simplefilter("ignore", DataQualityWarning)  # the table was checked when the run was fit
        res = fit_model(fold.train, fold.spec, dictionary=fold.dictionary, progress=False, ladder=False, loo_draws=1,
                        include_qc_flagged=fold.include_qc_flagged, estimands=False, reuse_compiled=True)
    X, A, _ = res.recipe.transform(fold.test)
    eta = eta_from_arrays(res.idata, res.recipe, X, A, None, S=res.recipe.smooth_columns(fold.test))
    y = fold.test[fold.spec.outcome].to_numpy(dtype=float)
    elpd, pointwise = heldout_elpd(eta, y, draws(res.idata, GROUP_SD), nodes=fold.nodes)
    s = res.spec.sampler
    return {"model": fold.model, "site": fold.site, "fold": fold.fold, "n": len(y), "n_events": int(y.sum()), "elpd": elpd,
            "seed": s.seed, "draws": s.draws, "tune": s.tune, "chains": s.chains, "ladder": False,
            "gate_passed": bool(res.diagnostics.passed), "fit_s": round(time.perf_counter() - t0, 2), "run_id": fold.run_id,
            "pointwise": pd.DataFrame({"model": fold.model, "site": fold.site,
                                       fold.dictionary.id_column: fold.test[fold.dictionary.id_column].astype(str).to_numpy(),
                                       "elpd": pointwise})}


# --------------------------------------------------------------------------- the result


@dataclass
class CVResult:
    """Leave-one-site-out elpd of each model at each site; made by :func:`cross_validate_sites`, read by :meth:`read`.

    Attributes
    ----------
    by_site
        One row per model and site: ``model``, ``site``, ``fold``, ``n``, ``n_events``, ``elpd`` (the site's rows
        jointly, its intercept new), the fold's ``seed``, ``draws``, ``tune``, ``chains``, ``ladder`` (False: one
        attempt), ``gate_passed``, ``fit_s`` and the ``run_id`` of the run refit.
    pointwise
        One row per model and participant: the held-out elpd of the row alone (``None`` when not kept).
    """

    by_site: pd.DataFrame
    pointwise: pd.DataFrame | None = None

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.by_site["model"]))

    @property
    def summary(self) -> pd.DataFrame:
        """One row per model, best first: ``elpd_total`` (sum over sites) and its ``se`` (√K × SD of the site elpds),
        ``elpd_diff`` from the best (≥ 0) and its ``dse`` (from the paired per-site differences), ``rank`` (1 = best)."""
        return summarise(self.by_site)

    def wide(self) -> pd.DataFrame:
        """Sites × models: the elpd of each site under each model (models in rank order), with each site's n and events."""
        w = self.by_site.pivot(index="site", columns="model", values="elpd")[list(self.summary["model"])]
        counts = self.by_site.drop_duplicates("site").set_index("site")[["n", "n_events"]]
        return counts.join(w).reset_index()

    def ranking(self) -> list[str]:
        return list(self.summary["model"])

    def ranking_agrees(self, loo_table: pd.DataFrame) -> bool:
        """Whether the models, ranked by their LOSO elpd, come in the order of ``loo_table`` (:func:`compare_runs`)."""
        return self.ranking() == _loo_order(loo_table, self.models)

    def verdict(self, loo_table: pd.DataFrame | None = None) -> str:
        """One sentence: the best model by LOSO, how clearly, and (with ``loo_table``) whether the PSIS-LOO ranking holds."""
        s = self.summary
        best = s.iloc[0]
        k = int(best.n_sites)
        if len(s) == 1:
            return f"Leave-one-site-out cross-validation over {k} sites: elpd {best.elpd_total:.1f} (SE {best.se:.1f}) for {best.model}."
        second = s.iloc[1]
        clear = "clearly" if second.elpd_diff > 2 * second.dse else "not clearly (difference < 2 SE)"
        detail = (f"{best.model} predicts a held-out site best, {clear} better than {second.model} "
                  f"(elpd difference {second.elpd_diff:.1f}, SE {second.dse:.1f}, over {k} sites)")
        if loo_table is None:
            return f"Leave-one-site-out cross-validation: {detail}."
        loo = _loo_order(loo_table, self.models)
        if self.ranking_agrees(loo_table):
            return f"Leave-one-site-out cross-validation confirms the PSIS-LOO ranking ({' > '.join(loo)}): {detail}."
        if loo[0] == best.model:
            return (f"Leave-one-site-out cross-validation confirms the best model of PSIS-LOO but orders the others differently "
                    f"({' > '.join(self.ranking())}; PSIS-LOO: {' > '.join(loo)}): {detail}.")
        return (f"Leave-one-site-out cross-validation does not confirm the PSIS-LOO ranking ({' > '.join(loo)}; "
                f"by held-out site: {' > '.join(self.ranking())}): {detail}.")

    def save(self, out: str | os.PathLike) -> dict[str, Path]:
        """Write the by-site table to ``out`` (a table path; a folder gets ``loso.csv``), the summary and the pointwise
        values beside it (``<name>_summary.csv``, ``<name>_pointwise.csv``). Returns the paths by kind."""
        path = _table_path(Path(out))
        paths = {"by_site": path, "summary": _companion(path, "summary")}
        write_table(self.by_site, path)
        write_table(self.summary, paths["summary"])
        if self.pointwise is not None:
            paths["pointwise"] = _companion(path, "pointwise")
            write_table(self.pointwise, paths["pointwise"])
        return paths

    @classmethod
    def read(cls, path: str | os.PathLike) -> CVResult:
        """Read what :meth:`save` wrote: the by-site table (or the folder holding ``loso.csv``), and its pointwise values."""
        path = _table_path(Path(path))
        if not path.is_file():
            raise InputFileError(f"{path}: file not found (write it with `backpain-epi compare RUNS --cv site --data TABLE --out {path}`).",
                                 param="crossval")
        t = read_table(path)
        missing = [c for c in ("model", "site", "n", "n_events", "elpd") if c not in t.columns]
        if missing:
            raise InputFileError(f"{path}: not a leave-one-site-out table (no column {', '.join(missing)}).", param="crossval")
        t = t.astype({"model": str, "site": str}).astype({c: float for c in ("elpd",)})
        for c in ("n", "n_events", "fold", "seed", "draws", "tune", "chains"):
            if c in t:
                t[c] = pd.to_numeric(t[c]).astype(int)
        for c in ("ladder", "gate_passed"):
            if c in t:
                t[c] = t[c].astype(str).str.lower().map({"true": True, "false": False, "1": True, "0": False})
        pw = _companion(path, "pointwise")
        return cls(t, read_table(pw).astype({"elpd": float}) if pw.is_file() else None)


def format_crossval(result: CVResult, loo_table: pd.DataFrame | None = None) -> str:
    """The cross-validation as text: elpd by site (sites × models), the totals, and the verdict."""
    wide = result.wide()
    models = [c for c in wide.columns if c not in ("site", "n", "n_events")]
    lines = [f"{'site':12s} {'n':>6s} {'events':>6s} " + " ".join(f"{m[:14]:>14s}" for m in models)]
    for r in wide.itertuples(index=False):
        lines.append(f"{str(r[0])[:12]:12s} {r[1]:6d} {r[2]:6d} " + " ".join(f"{v:14.1f}" for v in r[3:]))
    lines.append("")
    lines.append(f"{'rank':>4s}  {'model':16s} {'elpd_loso':>10s} {'se':>7s} {'elpd_diff':>10s} {'dse':>7s}")
    for r in result.summary.itertuples():
        lines.append(f"{r.rank:4d}  {r.model:16s} {r.elpd_total:10.1f} {r.se:7.1f} {r.elpd_diff:10.1f} {r.dse:7.1f}")
    failed = result.by_site.loc[~result.by_site["gate_passed"].astype(bool)] if "gate_passed" in result.by_site else []
    if len(failed):
        lines.append(f"note: the diagnostics gate failed in {len(failed)} fold fit(s) (one attempt each, no ladder): "
                     + ", ".join(f"{m} without {s}" for m, s in failed[["model", "site"]].to_numpy()[:5]) + ("..." if len(failed) > 5 else ""))
    lines.append(result.verdict(loo_table))
    return "\n".join(lines)


def summarise(by_site: pd.DataFrame) -> pd.DataFrame:
    """The summary of a by-site table (see :attr:`CVResult.summary`); the models must share their sites."""
    w = by_site.pivot(index="site", columns="model", values="elpd")
    if w.isna().any().any():
        raise BackpainEpiError("leave-one-site-out table: the models were not all scored at the same sites.")
    k = len(w)
    total = w.sum()
    se = np.sqrt(k) * w.std(ddof=1) if k > 1 else w.sum() * np.nan
    order = list(total.sort_values(ascending=False, kind="stable").index)
    best = order[0]
    counts = by_site.drop_duplicates("site")
    rows = []
    for rank, m in enumerate(order, 1):
        d = w[best] - w[m]
        rows.append({"model": m, "rank": rank, "elpd_total": total[m], "se": se[m], "elpd_diff": d.sum(),
                     "dse": float(np.sqrt(k) * d.std(ddof=1)) if m != best and k > 1 else 0.0, "n_sites": k,
                     "n": int(counts["n"].sum()), "n_events": int(counts["n_events"].sum())})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _loo_order(loo_table: pd.DataFrame, models: list[str]) -> list[str]:
    if not {"model", "rank"} <= set(loo_table.columns):
        raise BackpainEpiError(": expected the table of compare_runs (columns model, rank).", param="loo_table")
    order = [str(m) for m in loo_table.sort_values("rank")["model"]]
    if sorted(order) != sorted(models):
        raise BackpainEpiError(f": PSIS-LOO compared {', '.join(order)}; the cross-validation {', '.join(models)}: "
                               "compare the same runs.", param="loo_table")
    return order


def _table_path(path: Path) -> Path:
    return path if path.suffix.lower() in TABLE_SUFFIXES else path / CV_FILE


def _companion(path: Path, kind: str) -> Path:
    return path.with_name(f"{path.stem}_{kind}{path.suffix}")


# --------------------------------------------------------------------------- the driver


def cross_validate_sites(
    runs: list[FitResult | str | os.PathLike],
    data: str | os.PathLike | pd.DataFrame,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    out: str | os.PathLike | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    nodes: int = NODES,
    dictionary: DataDictionary | None = None,
    exclude_invalid_rows: bool = False,
    sep: str | None = None,
    encoding: str = "utf-8",
    decimal: str = ".",
) -> CVResult:
    """Leave-one-site-out cross-validation of ``runs``: one refit per model and held-out site (see the module notes).

    Parameters
    ----------
    runs
        Fits with a random intercept per site: :class:`~backpain_epi.modelling.fit.FitResult` objects or run folders.
        Two or more must have analysed the same rows of the same table.
    data
        The cohort table the runs were fit on (path or DataFrame; checked by content hash).
    workers, scheduler
        Refit in ``workers`` local processes, or on the Dask cluster at ``scheduler``
        (:func:`~backpain_epi.modelling.parallel.map_tasks`); the result is the same.
    progress
        A progress bar over the folds.
    out
        Also write the tables (:meth:`CVResult.save`): a table path, or a folder (``loso.csv``).
    draws, tune, chains
        Override the runs' sampler settings in the folds (default: as each run was fit).
    nodes
        Gauss–Hermite nodes of the integral over a held-out site's intercept.
    exclude_invalid_rows, sep, encoding, decimal
        How ``data`` is read, as when the runs were fit.

    Returns
    -------
    CVResult

    Raises
    ------
    BackpainEpiError
        A model has no group term, the runs were fit on other data or on different rows, or fewer than two sites.
    """
    dd = dictionary or load_dictionary()
    results = [as_fit_result(r, dd) for r in runs]
    if not results:
        raise BackpainEpiError(": give at least one run.", param="runs")
    if len(results) > 1:
        _check_same_data(results)
    names = _model_names(results)
    for name, r in zip(names, results):
        if r.spec.group is None:
            raise BackpainEpiError(f"model '{name}' has no group term (random intercept per site): leave-one-site-out "
                                   "cross-validation holds out one group at a time; add `group: site` to its spec or leave it out.")
    used = list(dict.fromkeys(c for r in results for c in r.spec.columns()))
    table, source = read_analysis_table(data, dd, used, exclude_invalid_rows=exclude_invalid_rows, sep=sep, encoding=encoding,
                                        decimal=decimal)
    sha256 = table_hash(table)
    for r in results:
        if r.provenance.data.sha256 != sha256:
            where = f"run {r.out}" if r.out is not None else f"the in-memory fit of '{r.name}'"
            raise BackpainEpiError(f"{source}: {where} was fit on other data ({r.provenance.data.source}); give the table the "
                                   "runs were fit on.", param="data")
    id_col = dd.id_column
    by_id = table.set_index(table[id_col].astype(str), drop=False)
    folds = []
    for name, r in zip(names, results):
        analysed = by_id.loc[r.analysed_ids].reset_index(drop=True)
        group = analysed[r.spec.group].astype(str)
        sites = sorted(group.unique())
        if len(sites) < 2:
            raise BackpainEpiError(f"model '{name}': the run analysed {len(sites)} site(s); holding one out needs two or more.")
        if r.spec.impute or r.spec.measurement_error:
            raise BackpainEpiError(f"model '{name}': leave-one-site-out scoring of a model with impute or measurement_error is "
                                   "not supported (a held-out site's missing and true values have no draws); cross-validate "
                                   "the same spec without those keys, and compare the two fits by PSIS-LOO.")
        spec = r.spec.with_sampler(draws=draws, tune=tune, chains=chains)
        for k, site in enumerate(sites):
            folds.append(Fold(model=name, fold=k, site=site, spec=spec.with_sampler(seed=spec.sampler.seed + k),
                              train=analysed[group != site].reset_index(drop=True), test=analysed[group == site].reset_index(drop=True),
                              include_qc_flagged=r.provenance.data.qc_flagged_included, dictionary=dd, run_id=r.provenance.run_id,
                              nodes=nodes))
    scored = map_tasks(fit_fold, folds, workers=workers, scheduler=scheduler, desc="leave-one-site-out", progress=progress,
                       labels=[f"{f.model} without site {f.site}" for f in folds])
    pointwise = pd.concat([s.pop("pointwise") for s in scored], ignore_index=True)
    result = CVResult(pd.DataFrame(scored, columns=BY_SITE_COLUMNS), pointwise)
    if out is not None:
        result.save(out)
    return result
