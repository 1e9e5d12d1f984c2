"""Modelling benchmarks: sampler speed against PyMC's default and bambi, and cost against cohort size.

    python benchmarks/bench_modelling.py sampler            # full.yaml, 27,518 rows, 4 chains × 1000 after 1000 tuning
    python benchmarks/bench_modelling.py scaling            # full.yaml at 10k, 30k, 100k, 300k rows
    python benchmarks/bench_modelling.py flat-truth         # full.yaml recovers a flat-activity truth at 27,518 rows
    python benchmarks/bench_modelling.py forms              # the sampler in each parameterization, one cohort

``flat-truth`` was a CI test until 2026-12-04 (7 minutes of CI's 30): with no activity effect the
spline's smooth_sd (and with no site effect the site SD) sits at zero, a funnel for the centred form that
``auto`` picked at this size then. It checks what the test checked, and the gate, prints every attempt of the
gate ladder, and exits 1 if a check fails (``--draws/--tune/--chains``: full.yaml's 1,000/1,000/4 unless given;
results in BENCHMARKS.md). ``forms`` samples one cohort (``--truth flat|default``) once in each form
(``--forms scaled,noncentred,centred-activity``) without the ladder.

Each fit runs in its own process, which reports wall time, ESS of the InterMAT
coefficient and its own peak memory (ru_maxrss) as one JSON line; the parent
prints a Markdown table for BENCHMARKS.md. bambi runs from its own virtual
environment (``benchmarks/.bambi-venv``, see BENCHMARKS.md for why), on the
same design columns: the spline basis enters as plain columns.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "models" / "full.yaml"
BAMBI_PYTHON = ROOT / "benchmarks" / ".bambi-venv" / "bin" / "python"


def _cohort(n: int, seed: int = 2025):
    from backpain_epi import simulate_cohort

    return simulate_cohort(n=n, seed=seed)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ours(n: int, draws: int, tune: int, chains: int) -> dict:
    from backpain_epi.modelling import fit_model

    sim = _cohort(n)
    t = time.perf_counter()
    run = fit_model(sim.data, SPEC, draws=draws, tune=tune, chains=chains, progress=False)
    wall = time.perf_counter() - t
    s = run.summary.set_index("term").loc["intermat_ml"]
    tm = run.provenance.timings
    return {"engine": "backpain-epi (nutpie)", "n": n, "wall_s": wall, "compile_s": tm.get("compile_s"), "sampling_s": tm["sampling_s"],
            "ess_bulk": float(s.ess_bulk), "or": float(s.or_median), "divergences": int(run.idata.sample_stats.diverging.sum()),
            "steps_per_draw": float(run.idata.sample_stats.n_steps.mean()), "gate": run.diagnostics.passed, "peak_mb": _peak_mb()}


def worker_pymc(n: int, draws: int, tune: int, chains: int) -> dict:
    import arviz as az
    import pymc as pm

    from backpain_epi import load_dictionary
    from backpain_epi.modelling.build import build_model
    from backpain_epi.modelling.design import make_design
    from backpain_epi.modelling.fit import read_analysis_table
    from backpain_epi.modelling.spec import load_spec

    dd = load_dictionary()
    table, _ = read_analysis_table(_cohort(n).data, dd)
    model = build_model(make_design(table, load_spec(SPEC, dd), dd))
    t = time.perf_counter()
    with model:  # PyMC's defaults: its NUTS, the C backend, a diagonal mass matrix
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=min(chains, os.cpu_count()), random_seed=2025, progressbar=False)
    wall = time.perf_counter() - t
    ess = float(az.ess(idata, var_names=["beta"]).sel(term="intermat_ml")["beta"])
    return {"engine": "PyMC default NUTS", "n": n, "wall_s": wall, "sampling_s": wall, "ess_bulk": ess,
            "divergences": int(idata.sample_stats.diverging.sum()), "steps_per_draw": float(idata.sample_stats.n_steps.mean()),
            "peak_mb": _peak_mb()}


def bambi_design(n: int, path: Path) -> None:
    """The full model's design as plain columns, for bambi."""
    import numpy as np
    import pandas as pd

    from backpain_epi import load_dictionary
    from backpain_epi.modelling.design import make_design
    from backpain_epi.modelling.fit import read_analysis_table
    from backpain_epi.modelling.spec import load_spec

    dd = load_dictionary()
    table, _ = read_analysis_table(_cohort(n).data, dd)
    d = make_design(table, load_spec(SPEC, dd), dd)
    cols = {t.replace("[", "_").replace("]", "").replace("<", "lt").replace(">", "gt"): d.X[:, j] for j, t in enumerate(d.terms)}
    cols |= {f"act{j}": d.A[:, j] for j in range(d.A.shape[1])}
    frame = pd.DataFrame(cols)
    frame["site"] = np.asarray(d.recipe.group_levels)[d.group]
    frame["cbp"] = d.y
    frame.to_csv(path, index=False)


BAMBI_SCRIPT = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import arviz as az, bambi as bmb, pandas as pd
path, draws, tune, chains = sys.argv[1], *map(int, sys.argv[2:5])
df = pd.read_csv(path)
terms = [c for c in df.columns if c not in ("cbp", "site")]
model = bmb.Model("cbp ~ " + " + ".join(terms) + " + (1|site)", df, family="bernoulli")
t = time.perf_counter()
idata = model.fit(draws=draws, tune=tune, chains=chains, cores=min(chains, 2), random_seed=2025, progressbar=False)
wall = time.perf_counter() - t
ess = float(az.ess(idata, var_names=["intermat_ml"])["intermat_ml"])
print(json.dumps({"engine": f"bambi {bmb.__version__} (PyMC NUTS)", "n": len(df), "wall_s": wall, "sampling_s": wall, "ess_bulk": ess,
                  "divergences": int(idata.sample_stats.diverging.sum()), "steps_per_draw": float(idata.sample_stats.n_steps.mean()),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _subprocess(args: list[str], python: str = sys.executable) -> dict:
    out = subprocess.run([python, *args], capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"benchmark worker failed ({' '.join(args[:3])}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def run_sampler(n: int, draws: int, tune: int, chains: int, engines: list[str]) -> list[dict]:
    rows = []
    for engine in engines:
        if engine == "bambi":
            if not BAMBI_PYTHON.exists():
                print("bambi: skipped (make benchmarks/.bambi-venv, see BENCHMARKS.md)", file=sys.stderr)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                design = Path(tmp) / "design.csv"
                bambi_design(n, design)
                script = Path(tmp) / "bambi_fit.py"
                script.write_text(BAMBI_SCRIPT)
                rows.append(_subprocess([str(script), str(design), str(draws), str(tune), str(chains)], python=str(BAMBI_PYTHON)))
        else:
            rows.append(_subprocess([__file__, "worker", engine, str(n), str(draws), str(tune), str(chains)]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    ours = next((r for r in rows if r["engine"].startswith("backpain")), None)
    head = "| engine | rows | wall (s) | ESS bulk, InterMAT | ESS/s | vs this package | steps/draw | divergences | peak memory (MB) |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        rate = r["ess_bulk"] / r["wall_s"]
        ratio = f"{(ours['ess_bulk'] / ours['wall_s']) / rate:.1f}× slower" if ours and r is not ours else "–"
        lines.append(f"| {r['engine']} | {r['n']:,} | {r['wall_s']:.1f} | {r['ess_bulk']:.0f} | {rate:.1f} | {ratio} | "
                     f"{r['steps_per_draw']:.1f} | {r['divergences']} | {r['peak_mb']:.0f} |")
    return "\n".join(lines)


def flat_truth(n: int = 27_518, seed: int = 77, draws: int | None = None, tune: int | None = None, chains: int | None = None) -> int:
    """Fit full.yaml to a cohort with OR 1.8 for InterMAT, none for lean muscle, flat activity and no site effect
    (sampler settings: the spec's, 4 chains × 1,000 draws, unless given)."""
    from backpain_epi import CohortTruth, simulate_cohort
    from backpain_epi.modelling import fit_model

    truth = CohortTruth(odds_ratios={"intermat_ml": 1.8, "lmm_ml": 1.0}, site_sd=0.0, activity_or_at_0=1.0, activity_or_at_10000=1.0)
    sim = simulate_cohort(n=n, seed=seed, truth=truth)
    start = time.perf_counter()
    run = fit_model(sim.data, SPEC, draws=draws, tune=tune, chains=chains, progress=False)
    wall = time.perf_counter() - start
    s, curve = run.summary.set_index("term"), run.curve
    checks = {
        "InterMAT 95% CrI holds 1.8": s.loc["intermat_ml", "or_lo95"] <= 1.8 <= s.loc["intermat_ml", "or_hi95"],
        "lean muscle 95% CrI holds 1": s.loc["lmm_ml", "or_lo95"] <= 1.0 <= s.loc["lmm_ml", "or_hi95"],
        "every activity interval holds 1": bool(((curve.or_lo95 <= 1.0) & (curve.or_hi95 >= 1.0)).all()),
        "site SD median < 0.1": float(run.idata.posterior["group_sd"].median()) < 0.1,
        "gate passed": run.diagnostics.passed,
    }
    print(f"n={n:,} seed={seed}: {wall:.0f} s, {len(run.provenance.attempts)} attempt(s); "
          f"InterMAT OR {s.loc['intermat_ml', 'or_lo95']:.2f}-{s.loc['intermat_ml', 'or_hi95']:.2f}")
    for a in run.provenance.attempts:
        print(f"  attempt {a.number}. {a.describe()} ({a.timings.get('compile_s', 0):.0f} s compile, "
              f"{a.timings.get('sampling_s', 0):.0f} s sampling)")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


FLAT = {"odds_ratios": {"intermat_ml": 1.8, "lmm_ml": 1.0}, "site_sd": 0.0, "activity_or_at_0": 1.0, "activity_or_at_10000": 1.0}


def forms(n: int, seed: int, truth_name: str, names: list[str], spec_path: Path = SPEC) -> None:
    """Sample the spec (its own settings, no gate ladder) on one cohort in each parameterization of ``names``:
    ``scaled`` (the automatic form), ``noncentred`` (every automatic part, as the gate ladder's switch) or
    ``centred-activity`` (the spec's centred activity term, the rest scaled); print the sampler's figures."""
    from dataclasses import replace

    import numpy as np
    import yaml

    from backpain_epi import CohortTruth, load_dictionary, simulate_cohort
    from backpain_epi.modelling.build import build_model
    from backpain_epi.modelling.design import make_design
    from backpain_epi.modelling.diagnostics import check_diagnostics
    from backpain_epi.modelling.params import BETA
    from backpain_epi.modelling.results import scale_parameters
    from backpain_epi.modelling.sample import sample_model
    from backpain_epi.modelling.spec import ModelSpec

    dd = load_dictionary()
    truth = CohortTruth(**FLAT) if truth_name == "flat" else CohortTruth()
    data = simulate_cohort(n=n, seed=seed, truth=truth).data
    raw = yaml.safe_load(Path(spec_path).read_text())
    print(f"{Path(spec_path).name}, {truth_name} truth, n={n:,}, seed {seed}")
    print("| form | divergences | steps/draw | min bulk ESS | min E-BFMI | R-hat max | sampling (s) | scale medians |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in names:
        chosen = dict(raw, activity={**raw["activity"], "parameterization": "centred" if name == "centred-activity" else "auto"})
        spec = ModelSpec.from_dict(chosen, dd)
        design = make_design(data, spec, dd)
        if name == "noncentred":
            design = replace(design, noncentred=True)
        idata, info = sample_model(build_model(design), spec.sampler, progress=False)
        checks = {c.name: c.value for c in check_diagnostics(idata, [BETA, *scale_parameters(design.recipe)]).checks}
        st, post = idata.sample_stats, idata.posterior
        scales = ", ".join(f"{v} {float(post[v].median()):.3f}" for v in ("smooth_sd", "gp_amplitude", "group_sd") if v in post)
        print(f"| {name} | {int(st['diverging'].sum())} | {float(st['n_steps'].mean()):.1f} | {checks['bulk ESS']} | "
              f"{checks['E-BFMI']} | {checks['R-hat']} | {info['timings']['sampling_s']:.0f} | {scales} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    s = sub.add_parser("sampler", help="this package vs PyMC default vs bambi on full.yaml")
    s.add_argument("--n", type=int, default=27_518)
    s.add_argument("--engines", default="ours,pymc,bambi")
    sc = sub.add_parser("scaling", help="fit time and memory against cohort size")
    sc.add_argument("--sizes", default="10000,30000,100000,300000")
    for q in (s, sc):
        q.add_argument("--draws", type=int, default=1000)
        q.add_argument("--tune", type=int, default=1000)
        q.add_argument("--chains", type=int, default=4)
    f = sub.add_parser("flat-truth", help="full.yaml recovers a flat-activity truth at the NAKO size (was a CI test)")
    f.add_argument("--n", type=int, default=27_518)
    f.add_argument("--seed", type=int, default=77)
    for k in ("draws", "tune", "chains"):
        f.add_argument(f"--{k}", type=int, default=None, help=f"{k} (default: full.yaml's)")
    fo = sub.add_parser("forms", help="the sampler's figures in each parameterization (scaled, noncentred, centred-activity)")
    fo.add_argument("--n", type=int, default=27_518)
    fo.add_argument("--seed", type=int, default=77)
    fo.add_argument("--truth", choices=["flat", "default"], default="flat")
    fo.add_argument("--forms", default="scaled,noncentred,centred-activity")
    fo.add_argument("--spec", type=Path, default=SPEC)
    w = sub.add_parser("worker")
    w.add_argument("engine", choices=["ours", "pymc"])
    w.add_argument("n", type=int)
    w.add_argument("draws", type=int)
    w.add_argument("tune", type=int)
    w.add_argument("chains", type=int)
    a = p.parse_args()
    if a.part == "worker":
        fn = worker_ours if a.engine == "ours" else worker_pymc
        print(json.dumps(fn(a.n, a.draws, a.tune, a.chains)))
    elif a.part == "forms":
        forms(a.n, a.seed, a.truth, a.forms.split(","), a.spec)
    elif a.part == "flat-truth":
        sys.exit(flat_truth(a.n, a.seed, a.draws, a.tune, a.chains))
    elif a.part == "sampler":
        print(table(run_sampler(a.n, a.draws, a.tune, a.chains, a.engines.split(","))))
    else:
        rows = [_subprocess([__file__, "worker", "ours", size, str(a.draws), str(a.tune), str(a.chains)]) for size in a.sizes.split(",")]
        print(table(rows))


if __name__ == "__main__":
    main()
