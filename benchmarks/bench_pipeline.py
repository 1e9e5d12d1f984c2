"""Time the end-to-end pipeline and check it against the truth planted in its images.

Runs ``backpain-epi pipeline`` on a configuration (default ``reports/demo.yaml``) with
an optional cohort size, then prints, as Markdown for BENCHMARKS.md: the time of every
stage, the odds ratios estimated from the segmented exposures beside the planted ones
(with whether each 95% interval covers the truth), and the agreement of the measured
exposures with the planted ones.

    .venv/bin/python benchmarks/bench_pipeline.py --n 2000 --out benchmarks/results/pipeline_2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from backpain_epi.pipeline import load_config, run_pipeline

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "reports" / "demo.yaml")
    ap.add_argument("--n", type=int, default=None, help="participants (default: the config's)")
    ap.add_argument("--out", type=Path, required=True, help="pipeline folder")
    args = ap.parse_args()

    cfg = load_config(args.config).with_overrides(n=args.n, out=args.out)
    t0 = time.perf_counter()
    result = run_pipeline(cfg, echo=print, progress=False)
    wall = time.perf_counter() - t0

    print(f"\n### Pipeline, {cfg.cohort['n']:,} participants ({args.config.name}), {wall / 60:.1f} min wall\n")
    print("| stage | status | time (s) | summary |\n| --- | --- | ---: | --- |")
    for o in result.outcomes:
        print(f"| {o.name} | {o.status} | {o.seconds:,.1f} | {o.summary.replace('|', '/')} |")

    truth = json.loads((args.out / "cohort" / "truth.json").read_text())
    ors = {**truth["odds_ratios_per_2sd"], **truth["odds_ratios_binary"]}
    print("\n| model | term | true OR | estimate (95% CrI) | covers |\n| --- | --- | ---: | --- | --- |")
    for run in cfg.models:
        s = pd.read_csv(args.out / "runs" / run.stem / "summary.csv")
        for r in s[s["kind"] == "exposure"].itertuples():
            t = ors.get(r.term)
            cover = "yes" if t is not None and r.or_lo95 <= t <= r.or_hi95 else "no"
            print(f"| {run.stem} | {r.term} | {t:.2f} | {r.or_median:.2f} ({r.or_lo95:.2f}–{r.or_hi95:.2f}) | {cover} |")

    agreement = pd.read_csv(args.out / "report" / "tables" / "segmentation_agreement_numeric.csv")
    print("\n| exposure | ICC(A,1) | mean difference | 95% limits of agreement | median abs. relative error (%) |")
    print("| --- | ---: | ---: | --- | ---: |")
    for r in agreement.itertuples():
        print(f"| {r.exposure} | {r.icc_a1:.3f} | {r.mean_difference:+.1f} | {r.loa_lo:+.1f} to {r.loa_hi:+.1f} | "
              f"{r.median_abs_rel_error_pct:.1f} |")


if __name__ == "__main__":
    main()
