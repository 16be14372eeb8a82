#!/usr/bin/env python
"""Monitoring at national scale, and the metrics of one full-size case.

1. A correction log of 10,000 cases x 32 structures (synthetic, two model versions, 24 months):
   the time to make the HTML report and its aggregates CSV. Target: under 10 s.
2. The metrics of one full-size phantom case (512 x 512 pixels of 0.977 mm, 2.5 mm slices: 115
   slices): the "final" is the truth with one structure grown, one shrunk and one moved; Dice,
   HD95, MSD, surface Dice, APL and volumes for the 32 structures. Target: under 5 s. Also timed:
   the worst case, every structure changed.

    python -m Testing.benchmarks.bench_report [--cases 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from DKOARSegmentationLib.monitoring.comparison import compare_segmentations
from DKOARSegmentationLib.monitoring.report import write_report
from DKOARSegmentationLib.phantom import PhantomGrid
from DKOARSegmentationLib.phantom.generate import generate_phantom
from DKOARSegmentationLib.structures.catalogue import default_catalogue
from DKOARSegmentationLib.volume import Segmentation
from Testing.log_factory import clinician_edits, synthetic_log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        log = synthetic_log(tmp / "national.sqlite", args.cases, site="Aarhus", months=24, model_switch_month=12,
                            drift=("Parotid_L", 18, 0.15))
        made = time.perf_counter() - t0
        print(f"log: {args.cases} cases x 32 structures written in {made:.1f} s "
              f"({log.stat().st_size / 1e6:.0f} MB)")
        t0 = time.perf_counter()
        html, csv_path, data = write_report([log], tmp / "report.html")
        report_s = time.perf_counter() - t0
        print(f"report: {report_s:.2f} s for {data.n_cases} cases ({html.stat().st_size / 1e6:.1f} MB HTML, "
              f"{csv_path.stat().st_size / 1e3:.0f} kB CSV)  target < 10 s: {'OK' if report_s < 10 else 'MISSED'}")
        ok &= report_s < 10

    catalogue = default_catalogue()
    core = catalogue.core_structures
    grid = PhantomGrid()
    phantom = generate_phantom(21, "HFS", grid, catalogue)
    truth = phantom.truth
    labels = np.where(np.isin(truth.labels, [s.label for s in core]), truth.labels, 0).astype(np.uint8)
    ai = Segmentation(labels, truth.affine.copy(), core)
    final = Segmentation(clinician_edits(labels, catalogue), truth.affine.copy(), core)
    print(f"phantom: {labels.shape[2]}x{labels.shape[1]} pixels, {labels.shape[0]} slices, "
          f"{len(np.unique(labels)) - 1} structures present")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        results = compare_segmentations(ai, final, catalogue)
        times.append(time.perf_counter() - t0)
    best = min(times)
    changed = [n for n, r in results.items() if not r.unchanged]
    print(f"metrics: {best:.2f} s for {len(results)} structures (best of 3: "
          f"{', '.join(f'{t:.2f}' for t in times)} s); changed: {', '.join(changed)}  "
          f"target < 5 s: {'OK' if best < 5 else 'MISSED'}")
    for name in changed:
        r = results[name]
        print(f"  {name:<12} Dice {r.dice:.3f}  HD95 {r.hd95_mm:.2f} mm  MSD {r.msd_mm:.2f} mm  "
              f"surface Dice {r.surface_dice:.3f} @ {r.tolerance_mm} mm  APL {r.apl_mm:.0f} mm")
    ok &= best < 5
    # the worst case: every structure edited (each moved by one voxel along the rows)
    everything = Segmentation(np.roll(labels, 1, axis=1), truth.affine.copy(), core)
    t0 = time.perf_counter()
    results = compare_segmentations(ai, everything, catalogue)
    worst = time.perf_counter() - t0
    print(f"metrics with all {sum(not r.unchanged for r in results.values())} structures changed: {worst:.2f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
