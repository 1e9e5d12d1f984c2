"""Seconds per volume and peak memory of `backpain-epi segment`, end to end.

Phantoms of 192 x 160 x 48 voxels (2 x 2 x 5 mm, the size of a lumbar Dixon
slab) are written as NIfTI in a child process; this process then segments
them with the shipped weights through the public API (reading, reorientation,
resampling, sliding-window network, largest components, resampling back,
exposures, atomic writing of labels and records, exposures.csv), and prints
seconds per volume, volumes per second, peak RSS and, on CUDA, peak GPU memory.

Usage::

    .venv/bin/python benchmarks/bench_segmentation.py --n 8 --device cpu --threads 2
    .venv/bin/python benchmarks/bench_segmentation.py --n 64 --device cuda --batch-size 8

``se-calibration`` fits the factors of the exposures' standard errors
(:mod:`backpain_epi.segmentation.uncertainty`) on held-out phantoms of the training
generator (one seed), checks the coverage of ``measured ± 1.96 SE`` on phantoms of
another seed and on the independent generator, times the SE step, and with
``--write`` writes the factors beside the weights::

    .venv/bin/python benchmarks/bench_segmentation.py se-calibration --out /tmp/se-cal --write
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (192, 160, 48)


def generate(folder: Path, n: int, seed: int) -> None:
    """Write ``n`` phantoms of exactly ``SHAPE`` (centre-cropped or zero-padded) and a manifest."""
    import nibabel as nib
    import numpy as np
    import pandas as pd

    from backpain_epi.segmentation.phantom import Protocol, make_phantom

    proto = Protocol(inplane_mm=(2.0, 2.0), slice_mm=(5.0, 5.0), slice_axes=(2,))
    rows = []
    for i, ss in enumerate(np.random.SeedSequence(seed).spawn(n)):
        ph = make_phantom(ss, protocol=proto)
        pid = f"B{i:03d}"
        for key, arr in (("water", ph.water), ("fat", ph.fat)):
            out = np.zeros(SHAPE, arr.dtype)
            src, dst = [], []
            for have, want in zip(arr.shape, SHAPE):
                lo = max(0, (have - want) // 2)
                off = max(0, (want - have) // 2)
                m = min(have, want)
                src.append(slice(lo, lo + m))
                dst.append(slice(off, off + m))
            out[tuple(dst)] = arr[tuple(src)]
            nib.save(nib.Nifti1Image(out, ph.affine), folder / f"{pid}_{key}.nii.gz")
        rows.append({"participant_id": pid, "water": f"{pid}_water.nii.gz", "fat": f"{pid}_fat.nii.gz"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)


#: (role, phantom family, seed): the calibration set, and the two held-out sets it is checked on
SE_SETS = (("calibration", "training", 4100), ("heldout", "training", 4200), ("independent", "independent", 4300))


def se_calibration(argv) -> None:
    """Fit the SE factors on one seed of training-generator phantoms; coverage on another seed and the independent family."""
    parser = argparse.ArgumentParser(prog="bench_segmentation.py se-calibration", description=se_calibration.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the phantoms and segmentations (reused on a rerun)")
    parser.add_argument("--n", type=int, default=40, help="phantoms per set")
    parser.add_argument("--workers", type=int, default=2, help="processes drawing phantoms and segmenting them (a local Dask cluster)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--write", action="store_true", help="write the factors beside the weights")
    args = parser.parse_args(argv)
    import numpy as np
    import pandas as pd
    import torch

    from backpain_epi.segmentation import uncertainty as unc
    from backpain_epi.segmentation.batch import segment_manifest
    from backpain_epi.segmentation.engines import EngineSpec, make_engine
    from backpain_epi.segmentation.exposures import compute_exposures, fat_fraction
    from backpain_epi.segmentation.io import load_dixon
    from backpain_epi.segmentation.network import default_weights_path
    from backpain_epi.segmentation.output import record_path
    from backpain_epi.segmentation.phantom import TRUTH_EXPOSURES_FILE, write_phantoms

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = Path(args.weights or default_weights_path())
    raw, err, seconds, rows = {}, {}, [], []
    for role, family, seed in SE_SETS:
        folder = args.out / role
        manifest = write_phantoms(folder / "phantoms", args.n, seed, protocol="heldout", family=family, progress=False,
                                  workers=args.workers, resume=True)
        result = segment_manifest(manifest, folder / "segmentation", weights=weights, device="cpu", progress=False,
                                  workers=args.workers if args.workers > 1 else None)
        truth = pd.read_csv(folder / "phantoms" / TRUTH_EXPOSURES_FILE).set_index("participant_id")
        measured = result.exposures.set_index("participant_id")
        records = [json.loads(record_path(folder / "segmentation", pid).read_text()) for pid in measured.index]
        seconds += [r["seconds"] for r in records]
        raw[role] = {e: np.array([r["se"]["raw"][e] for r in records]) for e in unc.SE_EXPOSURES}
        err[role] = {e: (measured[e] - truth.loc[measured.index, e]).to_numpy() for e in unc.SE_EXPOSURES}
        rows.append((role, family, seed, len(measured), len(result.failures)))
    factors = unc.fit_factors(raw["calibration"], err["calibration"])
    report = {"method": unc.METHOD, "band": list(unc.BAND), "weights": weights.name, "factors": factors, "sets": {}}
    for role, family, seed, n, n_failed in rows:
        entry = {"family": family, "seed": seed, "protocol": "heldout" if family == "training" else "independent",
                 "n": n, "failed": n_failed}
        for e in unc.SE_EXPOSURES:
            se = factors[e] * raw[role][e]
            entry[e] = {**unc.coverage(se, err[role][e]), "median_se": float(np.median(se)),
                        "median_abs_error": float(np.median(np.abs(err[role][e]))),
                        "mean_error": float(np.mean(err[role][e])),
                        "spearman_se_abs_error": float(pd.Series(se).corr(pd.Series(np.abs(err[role][e])), method="spearman"))}
        report["sets"][role] = entry
    # the cost of the SE step: one network pass and the exposures, against the band exposures added to them
    engine = make_engine(EngineSpec("builtin", weights=str(weights), device="cpu"))
    manifest = pd.read_csv(args.out / "heldout" / "phantoms" / "manifest.csv")
    base, extra = [], []
    for w, f in list(zip(manifest["water"], manifest["fat"]))[:5]:
        pair = load_dixon(args.out / "heldout" / "phantoms" / w, args.out / "heldout" / "phantoms" / f)
        t0 = time.perf_counter()
        labels, probs = engine.segment_scan(pair, {})
        ff, reliable = fat_fraction(pair.water, pair.fat)
        compute_exposures(labels, ff, pair.voxel_ml, reliable, slice_axis=pair.slice_axis)
        t1 = time.perf_counter()
        unc.raw_spread(probs, ff, pair.voxel_ml, reliable, slice_axis=pair.slice_axis)
        base.append(t1 - t0)
        extra.append(time.perf_counter() - t1)
    report["cost"] = {"s_per_scan_segment_and_exposures": round(float(np.median(base)), 3),
                      "s_per_scan_se_step": round(float(np.median(extra)), 3),
                      "s_per_scan_end_to_end_median": round(float(np.median(seconds)), 3),
                      "threads": torch.get_num_threads()}
    if args.write:
        info = {"fitted_on": {k: report["sets"]["calibration"][k] for k in ("family", "seed", "protocol", "n")},
                "rule": "factor = 95th percentile of |measured - true| / raw spread over the calibration phantoms, / 1.96",
                "validation": {role: {k: v for k, v in entry.items()} for role, entry in report["sets"].items() if role != "calibration"},
                "command": " ".join(["benchmarks/bench_segmentation.py se-calibration", *argv])}
        report["written"] = str(unc.write_calibration(weights, factors, info))
    text = json.dumps(report, indent=1)
    (args.out / "se_calibration.json").write_text(text + "\n")
    print(text)


def main() -> None:
    if sys.argv[1:2] == ["se-calibration"]:
        se_calibration(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="volumes to segment")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--generate-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_only:
        generate(args.generate_only, args.n, args.seed)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        subprocess.run([sys.executable, __file__, "--n", str(args.n), "--seed", str(args.seed), "--generate-only", str(tmp / "in")], check=True)
        import torch

        from backpain_epi.segmentation import batch
        from backpain_epi.segmentation.engines import EngineSpec, make_engine
        from backpain_epi.segmentation.network import default_weights_path, resolve_device
        from backpain_epi.segmentation.output import record_path

        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        t0 = time.perf_counter()
        weights = args.weights or str(default_weights_path())
        engine_spec = EngineSpec("builtin", weights=weights, device=str(device), batch_size=args.batch_size)
        seg = make_engine(engine_spec).segmenter
        load_s = time.perf_counter() - t0
        # warm-up on the first volume (first CUDA call, allocator); it is segmented again below
        rows = batch.read_manifest(tmp / "in" / "manifest.csv")
        batch.process_one(rows[0], out=tmp / "warm", engine=engine_spec)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        result = batch.segment_manifest(tmp / "in" / "manifest.csv", tmp / "out", weights=weights, device=str(device),
                                        batch_size=args.batch_size, progress=False)
        wall = time.perf_counter() - t0
        per_scan = [json.loads(record_path(tmp / "out", r["participant_id"]).read_text())["seconds"] for r in rows]
        assert len(result.exposures) == args.n, result.failures
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "volumes": args.n, "shape": "x".join(map(str, SHAPE)), "device": str(device), "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "model_load_s": round(load_s, 2),
        "s_per_volume_end_to_end": round(wall / args.n, 3),
        "s_per_volume_median_in_worker": round(sorted(per_scan)[len(per_scan) // 2], 3),
        "volumes_per_s": round(args.n / wall, 2),
        "projected_hours_30000_scans": round(30000 * wall / args.n / 3600, 1),
        "peak_rss_mb": round(peak_rss),
        "torch": torch.__version__, "seg_spacing_mm": seg.config["spacing_mm"],
    }
    if device.type == "cuda":
        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        report["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
