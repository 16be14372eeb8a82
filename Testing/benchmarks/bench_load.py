#!/usr/bin/env python
"""Loading a 512 x 512 x 300 DICOM CT series: our loader against SimpleITK's ImageSeriesReader.

Both read the same files (written once by the project's DICOM CT writer: unsigned 16-bit stored
values, RescaleIntercept -1024, as many scanners write them) in one run. Each load happens in a
child process of its own so that its peak memory is measured alone; the files are read once
beforehand so that both find them in the page cache. Each loader runs ``--repeat`` times, the
best time counts.

Memory: the child's peak resident memory (ru_maxrss) minus its resident memory just before
loading (after the imports), relative to the size of the volume returned. For our loader the
peak of Python/numpy allocations (tracemalloc) is printed too, from a separate untimed run.

Targets: our time at most 1.5x SimpleITK's (both including finding and ordering the
files: GetGDCMSeriesFileNames for SimpleITK), our peak memory at most 2x the volume's size.
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

TIME_TARGET = 1.5
MEMORY_TARGET = 2.0


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _child(which: str, folder: str) -> dict:
    """Load the series once in this (fresh) process; seconds and memory as a dict."""
    import numpy as np  # noqa: F401  imports before the baseline, for both loaders alike

    if which.startswith("ours"):
        import tracemalloc

        import psutil  # noqa: F401  what load_ct imports on first use, imported before the baseline
        import pydicom  # noqa: F401
        import pydicom.pixels  # noqa: F401

        from DKOARSegmentationLib.input.ct_loader import load_ct

        traced = which == "ours-traced"  # tracemalloc slows allocation down: a separate run, not timed
        rss0 = _rss_bytes()
        if traced:
            tracemalloc.start()
        t0 = time.perf_counter()
        volume = load_ct(folder)
        seconds = time.perf_counter() - t0
        extra = {"tracemalloc_peak": tracemalloc.get_traced_memory()[1]} if traced else {}
        voxels = volume.voxels
    else:
        import SimpleITK as sitk

        rss0 = _rss_bytes()
        t0 = time.perf_counter()
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(folder)
        t1 = time.perf_counter()
        reader.SetFileNames(names)
        image = reader.Execute()
        seconds = time.perf_counter() - t0
        voxels = sitk.GetArrayViewFromImage(image)
        extra = {"execute_seconds": time.perf_counter() - t1}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"seconds": seconds, "rss_before": rss0, "peak_rss": peak, "volume_bytes": int(voxels.nbytes),
            "shape": list(voxels.shape), "dtype": str(voxels.dtype), **extra}


def _run_child(which: str, folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", __spec__.name, "--child", which, str(folder)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{which} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_series(folder: Path, slices: int, matrix: int) -> float:
    import numpy as np

    from DKOARSegmentationLib.phantom.ct_series_writer import write_ct_series
    from DKOARSegmentationLib.volume import Volume

    rng = np.random.default_rng(0)
    j, i = np.mgrid[0:matrix, 0:matrix]
    body = ((j - matrix / 2) ** 2 + (i - matrix / 2) ** 2) < (0.4 * matrix) ** 2
    voxels = np.full((slices, matrix, matrix), -1000, dtype=np.int16)
    for k in range(slices):
        noise = rng.integers(-20, 21, size=(matrix, matrix), dtype=np.int16)
        voxels[k][body] = 40 + noise[body]
    affine = np.diag([0.977, 0.977, 1.0, 1.0])
    affine[:3, 3] = (-250.0, -250.0, -150.0)
    t0 = time.perf_counter()
    write_ct_series(Volume(voxels, affine), folder, seed=1)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("LOADER", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="dkoar-bench-load-") as tmp:
        folder = Path(tmp) / "ct"
        write_s = _write_series(folder, args.slices, args.matrix)
        for f in folder.iterdir():  # into the page cache, for both loaders alike
            f.read_bytes()
        print(f"series: {args.slices} slices of {args.matrix}x{args.matrix} (uint16 stored, intercept -1024), "
              f"written in {write_s:.1f} s to {folder}")
        runs: dict[str, list[dict]] = {"ours": [], "sitk": []}
        for _ in range(args.repeat):
            for which in runs:
                runs[which].append(_run_child(which, folder))
        traced = _run_child("ours-traced", folder)
    best = {which: min(r, key=lambda x: x["seconds"]) for which, r in runs.items()}
    ours, sitk = best["ours"], best["sitk"]
    ratio = ours["seconds"] / sitk["seconds"]
    mib = 2**20
    print(f"cpu count: {os.cpu_count()}; best of {args.repeat} runs each")
    for name, r in (("dkoar load_ct", ours), ("SimpleITK ImageSeriesReader", sitk)):
        mem = (r["peak_rss"] - r["rss_before"]) / r["volume_bytes"]
        print(f"{name:<28} {r['seconds']:6.2f} s   volume {r['dtype']} {r['shape']} {r['volume_bytes'] / mib:6.0f} MiB"
              f"   peak memory while loading {(r['peak_rss'] - r['rss_before']) / mib:6.0f} MiB = {mem:.2f}x the volume")
    print(f"SimpleITK: {sitk['execute_seconds']:.2f} s of it in Execute (after GetGDCMSeriesFileNames)")
    print(f"dkoar: tracemalloc peak of Python/numpy allocations {traced['tracemalloc_peak'] / mib:.0f} MiB "
          f"= {traced['tracemalloc_peak'] / traced['volume_bytes']:.2f}x the volume (a separate, untimed run)")
    mem_ratio = (ours["peak_rss"] - ours["rss_before"]) / ours["volume_bytes"]
    time_ok, mem_ok = ratio <= TIME_TARGET, mem_ratio <= MEMORY_TARGET
    print(f"time ratio dkoar / SimpleITK: {ratio:.2f} (target <= {TIME_TARGET}: {'met' if time_ok else 'NOT met'})")
    print(f"memory ratio dkoar peak / volume: {mem_ratio:.2f} (target <= {MEMORY_TARGET}: "
          f"{'met' if mem_ok else 'NOT met'})")
    return 0 if time_ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
