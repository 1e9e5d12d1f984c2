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


def main() -> None:
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
