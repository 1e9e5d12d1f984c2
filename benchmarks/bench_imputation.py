"""Validity and cost of imputation inside the model and of the measurement-error model (issue 15).

    python benchmarks/bench_imputation.py coverage [--replicates 20] [--n 1000] [--workers 2]
    python benchmarks/bench_imputation.py me [--replicates 3] [--n 3000] [--value 0.6]
    python benchmarks/bench_imputation.py cost [--n 27518] [--draws 250 --tune 500 --chains 4] [--only plain imputed]
    python benchmarks/bench_imputation.py probit
    python benchmarks/bench_imputation.py loo [--n 2000] [--draws 300 --tune 300 --chains 2]

``coverage``: per replicate, a cohort with MAR missingness (``mar_missing``: activity 25 %, BMI 20 %, more often
in older participants and in cases) is fit with models/full.yaml complete case and with
``impute: [met_min_week, bmi]``; for each exposure and BMI, the true log OR on the fit's own scale
(the simulator's per-unit log OR times the fit's 2 SD) is compared with the 95 % interval. Prints one JSON
line: coverage, mean interval width (log OR) and mean bias per method and term.

``me``: a cohort with classical error planted in intermat_ml (``measurement_error``, known per-row SE) is fit
naively and with ``measurement_error: {intermat_ml: intermat_ml_se}`` (rows whose observed value fell below 0
left out: ``exclude_invalid_rows``); the naive OR per 2 SD is compared with the
attenuation the simulator's truth predicts, the ME model's with the true OR per 2 SD of the true exposure.

``cost``: wall time of the plain fit (complete cohort), the imputation fit (MAR missingness, every row kept) and the
measurement-error fit (error in lmm_ml), each of 27,518 rows.

``loo``: PSIS-LOO of an integrated imputation fit and an integrated measurement-error fit (the ``cost`` data at
``--n`` rows) from the marginal pointwise log-likelihood the fit stores, against the conditional one at the values
drawn after sampling (what fits stored before 2026-12-06): elpd, p_loo and Pareto k.

``probit``: the error of the probit approximation the measurement-error model uses for ``E[expit(m + sd * t)]``,
``t ~ Normal(0, 1)``, against 80-node Gauss–Hermite quadrature: the largest error in log p (of either outcome) over
logits m from −4 to 2, per sd.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
TERMS = ("intermat_ml", "lmm_ml", "imf_pct", "bmi")
SETTINGS = {"draws": 300, "tune": 300, "chains": 2, "progress": False, "ladder": False}


def _spec(**extra):
    from backpain_epi import load_dictionary
    from backpain_epi.modelling.spec import ModelSpec

    raw = yaml.safe_load((ROOT / "models" / "full.yaml").read_text())
    raw.update(extra)
    return ModelSpec.from_dict(raw, load_dictionary())


def _scored(result, per_unit: dict, terms=TERMS) -> dict:
    s = result.summary.set_index("term")
    out = {}
    for t in terms:
        truth = per_unit[t] * result.recipe.scaling[t][1]
        lo, hi, mid = np.log(s.loc[t, "or_lo95"]), np.log(s.loc[t, "or_hi95"]), np.log(s.loc[t, "or_median"])
        out[t] = {"truth": truth, "est": mid, "lo": lo, "hi": hi, "covered": bool(lo <= truth <= hi), "width": hi - lo}
    return out


def _one_replicate(seed: int, n: int) -> dict:
    warnings.simplefilter("ignore")
    from backpain_epi import simulate_cohort
    from backpain_epi.modelling import fit_model

    sim = simulate_cohort(n=n, seed=seed, mar_missing={"met_min_week": 0.25, "bmi": 0.2})
    per_unit = sim.truth["log_or_per_unit"]
    out = {"seed": seed}
    for method, spec in (("complete_case", _spec()), ("imputed", _spec(impute=["met_min_week", "bmi"]))):
        t = time.perf_counter()
        r = fit_model(sim.data, spec, seed=seed, **SETTINGS)
        out[method] = {"terms": _scored(r, per_unit), "n": r.provenance.data.n_analysed, "wall_s": time.perf_counter() - t,
                       "gate": r.diagnostics.passed}
    return out


def coverage(args) -> dict:
    seeds = [5000 + i for i in range(args.replicates)]
    with ProcessPoolExecutor(args.workers) as pool:
        reps = list(pool.map(_one_replicate, seeds, [args.n] * len(seeds)))
    summary = {}
    for method in ("complete_case", "imputed"):
        summary[method] = {"n_mean": float(np.mean([r[method]["n"] for r in reps])),
                           "gate_passed": int(sum(r[method]["gate"] for r in reps))}
        for t in TERMS:
            rows = [r[method]["terms"][t] for r in reps]
            summary[method][t] = {"coverage": float(np.mean([x["covered"] for x in rows])),
                                  "width": float(np.mean([x["width"] for x in rows])),
                                  "bias": float(np.mean([x["est"] - x["truth"] for x in rows])),
                                  "bias_se": float(np.std([x["est"] - x["truth"] for x in rows], ddof=1) / np.sqrt(len(rows)))}
    all_terms = {m: float(np.mean([r[m]["terms"][t]["covered"] for r in reps for t in TERMS])) for m in summary}
    return {"benchmark": "imputation coverage", "replicates": len(reps), "n": args.n, "settings": SETTINGS,
            "coverage_all_terms": all_terms, "summary": summary}


def me(args) -> dict:
    warnings.simplefilter("ignore")
    from backpain_epi import simulate_cohort
    from backpain_epi.modelling import fit_model

    out = []
    for i in range(args.replicates):
        sim = simulate_cohort(n=args.n, seed=7000 + i, measurement_error={"intermat_ml": args.value})
        truth = sim.truth["measurement_error"]["intermat_ml"]
        rec = {"seed": 7000 + i, "reliability": truth["reliability_ratio"], "true_or": truth["or_per_2sd_true"],
               "expected_naive_or_per_2sd_observed": truth["attenuated_or_per_2sd_observed"],
               "attenuation_factor": truth["attenuation_factor"]}
        true_or = truth["or_per_2sd_true"]
        for method, spec in (("naive", _spec()), ("me", _spec(measurement_error={"intermat_ml": "intermat_ml_se"}))):
            t = time.perf_counter()
            r = fit_model(sim.data, spec, seed=7000 + i, exclude_invalid_rows=True, **SETTINGS)
            row = r.summary.set_index("term").loc["intermat_ml"]
            rec[method] = {"or": float(row["or_median"]), "lo": float(row["or_lo95"]), "hi": float(row["or_hi95"]),
                           "per_2sd": r.recipe.scaling["intermat_ml"][1], "wall_s": time.perf_counter() - t, "gate": r.diagnostics.passed}
        rec["me"]["covers_true_or"] = bool(rec["me"]["lo"] <= true_or <= rec["me"]["hi"])
        out.append(rec)
    return {"benchmark": "measurement error", "n": args.n, "value": args.value, "settings": SETTINGS, "replicates": out}


def cost(args) -> dict:
    warnings.simplefilter("ignore")
    from backpain_epi import simulate_cohort
    from backpain_epi.modelling import fit_model

    settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "progress": False, "ladder": False}
    # the plain fit on the complete cohort: every fit analyses all n rows
    complete = simulate_cohort(n=args.n, seed=11).data
    missing = simulate_cohort(n=args.n, seed=11, mar_missing={"met_min_week": 0.2, "bmi": 0.15}).data
    measured = simulate_cohort(n=args.n, seed=11, measurement_error={"lmm_ml": 0.3}).data
    out = {}
    for name, data, spec in (("plain", complete, _spec()), ("imputed", missing, _spec(impute=["met_min_week", "bmi"])),
                             ("measurement_error", measured, _spec(measurement_error={"lmm_ml": "lmm_ml_se"}))):
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        r = fit_model(data, spec, **settings)
        out[name] = {"wall_s": round(time.perf_counter() - t, 1), "timings": r.provenance.timings, "n": r.provenance.data.n_analysed,
                     "gate": r.diagnostics.passed, "min_ess": float(r.summary["ess_bulk"].min()),
                     "failed_checks": [f"{c.name}: {c.value} ({c.worst})" for c in r.diagnostics.checks if not c.passed],
                     "options": r.provenance.sampler.get("options", {})}
        print(json.dumps({name: out[name]}), flush=True)
    for name in ("imputed", "measurement_error"):
        if name in out and "plain" in out:
            out[f"ratio_{name}"] = out[name]["wall_s"] / out["plain"]["wall_s"]
    return {"benchmark": "imputation cost", "n": args.n, "settings": settings, **out}


def probit(args) -> dict:
    from scipy.special import expit

    t, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    out = {}
    for sd in (0.05, 0.1, 0.2, 0.3, 0.5, 1.0):
        m = np.linspace(-4, 2, 121)[:, None]
        exact = (w * expit(m + sd * t)).sum(axis=1)
        approx = expit(m[:, 0] / np.sqrt(1 + np.pi * sd**2 / 8))
        err = np.maximum(np.abs(np.log(exact) - np.log(approx)), np.abs(np.log1p(-exact) - np.log1p(-approx)))
        out[str(sd)] = float(err.max())
        print(f"sd {sd}: largest |error| in log p {err.max():.4f}", flush=True)
    return {"benchmark": "probit approximation", "max_abs_log_p_error_by_sd": out}


def loo(args) -> dict:
    warnings.simplefilter("ignore")
    import arviz as az

    from backpain_epi import load_dictionary, simulate_cohort
    from backpain_epi.modelling import fit as fit_module
    from backpain_epi.modelling.design import make_design

    dd = load_dictionary()
    settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "progress": False, "ladder": False}
    cases = {"imputed": (simulate_cohort(n=args.n, seed=11, mar_missing={"met_min_week": 0.2, "bmi": 0.15}).data,
                         _spec(impute=["met_min_week", "bmi"])),
             "measurement_error": (simulate_cohort(n=args.n, seed=11, measurement_error={"lmm_ml": 0.3}).data,
                                   _spec(measurement_error={"lmm_ml": "lmm_ml_se"}))}
    out = {}
    for name, (data, spec) in cases.items():
        r = fit_module.fit_model(data, spec, **settings)
        table, _ = fit_module.read_analysis_table(data, dd, spec.columns())
        design = make_design(table, spec, dd)
        thin = r.idata.sel(draw=r.idata.log_likelihood.draw.values)
        conditional = r.idata.copy()
        ll = fit_module._conditional_log_likelihood(thin, design, fit_module._analysed_rows(table, design, dd))
        conditional.log_likelihood[spec.outcome].values[:] = ll.reshape(conditional.log_likelihood[spec.outcome].shape)
        out[name] = {"log_likelihood_stored": r.provenance.sampler["options"].get("log_likelihood")}
        for form, idata in (("marginal", r.idata), ("conditional", conditional)):
            lo = az.loo(idata, pointwise=True)
            k = lo.pareto_k.values
            out[name][form] = {"elpd": round(float(lo.elpd_loo), 1), "se": round(float(lo.se), 1), "p_loo": round(float(lo.p_loo), 1),
                               "k_over_0.7": int((k > 0.7).sum()), "max_k": round(float(k.max()), 2)}
        print(json.dumps({name: out[name]}), flush=True)
    return {"benchmark": "marginal against conditional LOO", "n": args.n, "settings": settings, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("coverage", "me", "cost", "probit", "loo"))
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--value", type=float, default=0.45)
    parser.add_argument("--draws", type=int, default=None, help="default: 250 (cost), 300 (loo)")
    parser.add_argument("--tune", type=int, default=None, help="default: 500 (cost), 300 (loo)")
    parser.add_argument("--chains", type=int, default=None, help="default: 4 (cost), 2 (loo)")
    parser.add_argument("--only", nargs="*", default=None, help="cost: the fits to run (plain, imputed, measurement_error)")
    args = parser.parse_args()
    args.n = args.n or {"coverage": 1000, "me": 3000, "cost": 27_518, "probit": 0, "loo": 2000}[args.part]
    for key, cost_default, loo_default in (("draws", 250, 300), ("tune", 500, 300), ("chains", 4, 2)):
        if getattr(args, key) is None:
            setattr(args, key, loo_default if args.part == "loo" else cost_default)
    result = {"coverage": coverage, "me": me, "cost": cost, "probit": probit, "loo": loo}[args.part](args)
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
