#!/usr/bin/env python
"""The DICOM node and the batch on this machine's CPU.

1. Node: a full-size phantom (``dkoar phantom``'s default grid, 512 x 512 x 115) sent by dcmtk's
   storescu to ``dkoar serve`` (bundled demo model), the RTSTRUCT stored to an Orthanc started
   here: seconds from the last slice acknowledged to the RTSTRUCT in Orthanc (its REST API),
   of which the idle wait that marks the series complete, and the contouring.
2. Batch: series per hour of ``dkoar batch`` with 1 and with 2 local worker processes, on
   ``--series`` phantoms (the 96 x 96 grid of the MRML tests by default; the demo model works at
   its own 1.5 mm spacing over the same 250 mm field of view, so the grid changes little).

    python -m Testing.benchmarks.bench_node [--series 4] [--idle-seconds 2] [--skip-node] [--skip-batch]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom
from Testing.dicom_peers import Orthanc, storescu
from Testing.node_factory import SMALL_STUDY_GRID, NodeProcess, free_port


def bench_node(root: Path, idle_s: float) -> None:
    t0 = time.perf_counter()
    write_phantom(root / "full", seed=11, grid=PhantomGrid())
    print(f"full-size phantom written in {time.perf_counter() - t0:.1f} s")
    orthanc = Orthanc(root / "orthanc", modalities={"DKOAR": ["DKOAR", "127.0.0.1", 104]}).start()
    node = NodeProcess(root / "work", free_port(), ["--allow", "CT_SIM", "--idle-seconds", str(idle_s),
                                                    "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"]).start()
    try:
        t0 = time.perf_counter()
        sent = storescu(node.port, [root / "full" / "ct"], timeout_s=600)
        last_slice = time.perf_counter()
        if sent.returncode != 0:
            raise SystemExit(f"storescu failed: {sent.stderr[-2000:]}")
        found = orthanc.wait_for_rtstructs(1, 3600)
        stored = time.perf_counter()
        if not found:
            raise SystemExit(f"no RTSTRUCT in Orthanc:\n{node.log()[-3000:]}")
        contouring = [line for line in node.log().splitlines() if "contoured in" in line]
    finally:
        node.stop()
        orthanc.stop()
    print(f"storescu sent 115 slices in {last_slice - t0:.1f} s")
    print(f"node: last slice sent -> RTSTRUCT stored in Orthanc: {stored - last_slice:.1f} s "
          f"(of which {idle_s:g} s idle wait marking the series complete)")
    if contouring:
        print("  " + contouring[-1].split(" INFO ")[-1])


def bench_batch(root: Path, series: int) -> None:
    t0 = time.perf_counter()
    for seed in range(series):
        write_phantom(root / "archive" / f"p{seed}", seed=seed, grid=SMALL_STUDY_GRID)
    print(f"{series} phantoms ({SMALL_STUDY_GRID.matrix}x{SMALL_STUDY_GRID.matrix}x{SMALL_STUDY_GRID.n_slices}) "
          f"written in {time.perf_counter() - t0:.1f} s")
    for workers in (1, 2):
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", "batch", str(root / "archive"),
                              "--out", str(root / f"out{workers}"), "--workers", str(workers), "--device", "cpu",
                              "-q"], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if run.returncode != 0:
            raise SystemExit(f"dkoar batch failed: {run.stdout}{run.stderr}")
        print(f"batch, {workers} worker{'s' if workers > 1 else ''}: {series} series in {seconds:.0f} s = "
              f"{series * 3600 / seconds:.0f} series per hour")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=4, help="phantoms in the batch (default 4)")
    ap.add_argument("--idle-seconds", type=float, default=2.0, help="the node's idle time (default 2)")
    ap.add_argument("--skip-node", action="store_true")
    ap.add_argument("--skip-batch", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dkoar-bench-node-") as tmp:
        if not args.skip_node:
            bench_node(Path(tmp), args.idle_seconds)
        if not args.skip_batch:
            bench_batch(Path(tmp), args.series)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
