#!/usr/bin/env python
"""Seconds per stage and peak memory of `dkoar segment` with the demo model on a full-size phantom
(512 x 512 pixels of 0.977 mm, 2.5 mm slices), on this machine's CPU (or --device cuda).

Targets: the whole demo under 60 s and under 4 GB of peak memory on a 2-core CPU.
The run happens in a child process so that its peak resident memory is measured alone.
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

from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        write_phantom(out / "ph", seed=args.seed, grid=PhantomGrid())  # in this process: not in the child's peak
        phantom_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", "segment", str(out / "ph" / "ct"),
                              "--out", str(out / "res"), "--device", args.device, "-q",
                              "--truth", str(out / "ph" / "truth.nii.gz")], capture_output=True, text=True)
        segment_s = time.perf_counter() - t0
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 1
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        stages = json.loads((out / "res" / "run.json").read_text())["seconds"]
        mean_line = [line for line in run.stdout.splitlines() if "mean Dice" in line]
    print(f"phantom (512x512x115 DICOM) written in {phantom_s:.1f} s")
    print("dkoar segment, seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"dkoar segment wall time (process start to finish): {segment_s:.1f} s   target < 60 s")
    print(f"demo total (phantom + segment): {phantom_s + segment_s:.1f} s")
    print(f"peak resident memory of dkoar segment: {peak_kb / 1024**2:.2f} GB   target < 4 GB")
    if mean_line:
        print(mean_line[0].strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
