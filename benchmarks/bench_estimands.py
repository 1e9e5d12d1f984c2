"""Cost of the estimands beyond odds ratios at the NAKO size (issue 14): g-computation, E-values, psens.

    python benchmarks/bench_estimands.py [--n 27518] [--spec models/paper_by_sex.yaml] [--draws 250 --chains 4]

Fits the spec once (nutpie, no gate ladder) on a simulated cohort of ``--n`` rows, then times, on that fit:
the absolute risks of every exposure (observed sites and a new site), the effect modification by stratum,
the log prior and the power-scaling sensitivity (psens); prints one JSON line with the timings and the
process's peak memory. 4 chains × 250 draws give the 1,000 draws the g-computation uses at most.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=27_518)
    parser.add_argument("--spec", default=str(ROOT / "models" / "paper_by_sex.yaml"))
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()

    import backpain_epi as bp
    from backpain_epi.modelling.design import make_design
    from backpain_epi.modelling.estimands import absolute_risks, effect_modification
    from backpain_epi.modelling.fit import _analysed_rows, read_analysis_table
    from backpain_epi.modelling.sensitivity import add_log_prior, prior_sensitivity

    warnings.simplefilter("ignore")
    sim = bp.simulate_cohort(n=args.n, seed=2025)
    dd = bp.load_dictionary()
    t = time.perf_counter()
    run = bp.fit_model(sim.data, args.spec, draws=args.draws, tune=args.tune, chains=args.chains, progress=False, ladder=False)
    fit_s = time.perf_counter() - t
    table, _ = read_analysis_table(sim.data, dd, run.spec.columns())
    design = make_design(table, run.spec, dd)
    rows = _analysed_rows(table, design, dd)
    timings = {"fit_s": fit_s, **run.provenance.timings}
    t = time.perf_counter()
    absolute_risks(run.idata, run.recipe, rows)
    timings["absolute_risk_s"] = time.perf_counter() - t
    if run.spec.effect_modifiers:
        t = time.perf_counter()
        effect_modification(run.idata, run.recipe, rows)
        timings["effect_modification_s"] = time.perf_counter() - t
    t = time.perf_counter()
    add_log_prior(run.idata, design)
    timings["log_prior_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prior_sensitivity(run.idata)
    timings["psens_s"] = time.perf_counter() - t
    print(json.dumps({"n": args.n, "spec": Path(args.spec).name, "draws": args.draws * args.chains,
                      **{k: round(v, 2) for k, v in timings.items()},
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
