"""Two segmentation weights scored on the same phantoms: each pooled against the targets, a bootstrap of
"all five targets met", and the paired per-scan differences with bootstrap 95 % intervals.

Score each weights file on the same seeds with ``evaluate-segmenter`` (copy the first run's
``<family>/phantoms`` folder into the second's ``--out`` so that both segment the very same scans), then::

    .venv/bin/python benchmarks/compare_weights.py --family independent \\
        --a e8_9300 e8_9400 --b e9_9300 e9_9400          # the numbers of BENCHMARKS.md, stage 9 against stage 8

Each folder is an ``evaluate-segmenter --out`` folder (its ``evaluation.csv``); the folders of ``--a`` and
``--b`` pair up in order, and scans pair by participant id within a pair.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from backpain_epi.segmentation.evaluate import FAMILY_TARGETS


def _load(folders: list[str], family: str) -> pd.DataFrame:
    frames = []
    for i, folder in enumerate(folders):
        df = pd.read_csv(Path(folder) / "evaluation.csv")
        frames.append(df[df["family"] == family].assign(pair=i))
    return pd.concat(frames, ignore_index=True)


def _value(df: pd.DataFrame, metric: str, stat: str) -> float:
    return float(getattr(df[metric], stat)())


def _all_met(df: pd.DataFrame, targets) -> bool:
    return all((_value(df, m, st) >= t) if op == ">=" else (_value(df, m, st) <= t) for m, st, op, t in targets)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", nargs="+", required=True, help="evaluation folders of the first weights")
    p.add_argument("--b", nargs="+", required=True, help="evaluation folders of the second weights, in the same order")
    p.add_argument("--family", choices=sorted(FAMILY_TARGETS), default="independent")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if len(a.a) != len(a.b):
        p.error("--a and --b need as many folders each")
    targets, rng = FAMILY_TARGETS[a.family], np.random.default_rng(a.seed)
    runs = {"a": _load(a.a, a.family), "b": _load(a.b, a.family)}
    for name, df in runs.items():
        values = ", ".join(f"{m} {st} {_value(df, m, st):.4f}" for m, st, _, _ in targets)
        boot = np.mean([_all_met(df.iloc[rng.integers(0, len(df), len(df))], targets) for _ in range(a.draws)])
        print(f"{name}: {len(df)} scans; {values}; all five met: {_all_met(df, targets)}; bootstrap P(all five) {boot:.4f}")
    joined = runs["a"].merge(runs["b"], on=["pair", "participant_id"], suffixes=("_a", "_b"))
    print(f"paired b - a over {len(joined)} scans (mean difference, bootstrap 95 % interval):")
    for metric, stat, _, _ in targets:
        d = (joined[f"{metric}_b"] - joined[f"{metric}_a"]).to_numpy()
        boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(a.draws)]
        print(f"  {metric}: {d.mean():+.4f} ({np.percentile(boot, 2.5):+.4f}, {np.percentile(boot, 97.5):+.4f})")


if __name__ == "__main__":
    main()
