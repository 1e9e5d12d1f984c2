"""Time and memory of the foundation: simulate, write, and load (read + validate + conform).

Usage:  .venv/bin/python benchmarks/bench_foundation.py [--sizes 27518 100000 300000]

Each size runs in a fresh process so that peak memory (max RSS) is its own.
Prints a Markdown table for BENCHMARKS.md.
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


def one(n: int) -> dict:
    import backpain_epi as bp

    out = {"n": n}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        sim = bp.simulate_cohort(n=n, seed=1)
        out["simulate_s"] = time.perf_counter() - t
        for suffix in ("csv", "parquet"):
            path = os.path.join(tmp, f"cohort.{suffix}")
            t = time.perf_counter()
            sim.write(path)
            out[f"write_{suffix}_s"] = time.perf_counter() - t
            t = time.perf_counter()
            df, report = bp.load_cohort(path)
            out[f"load_{suffix}_s"] = time.perf_counter() - t
            assert report.ok and len(df) == n
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[27_518, 100_000, 300_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    print("| rows | simulate (s) | write CSV (s) | load CSV (s) | write Parquet (s) | load Parquet (s) | peak RSS (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {n:,} | {r['simulate_s']:.2f} | {r['write_csv_s']:.2f} | {r['load_csv_s']:.2f} | "
              f"{r['write_parquet_s']:.2f} | {r['load_parquet_s']:.2f} | {r['max_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
