#!/usr/bin/env python
"""The browser station's speed as the clinician feels it, in Debian's chromium on this CPU.

On a full-size phantom (512 x 512 pixels of 0.977 mm, 2.5 mm slices) with the demo model:

- seconds from pressing Apply to the structures shown in the page (the model run in its child
  process, the result loaded, the list filled);
- the round trip of one paint stroke: from the mouse button released over the axial view to the
  first slice image shown in the browser whose pixel at the stroke has the structure's colour
  (Paint) or the CT's grey again (Erase), median of 20 strokes in the background, Paint and Erase
  in turn at one place so that each stroke changes voxels. The brush is drawn as an outline: its
  centre shows what the segmentation holds. Target: under 150 ms. Also the station's CPU time per
  stroke, which does not depend on what else the machine runs (the round trip does).

    python -m Testing.benchmarks.bench_station [--strokes 20] [--device cpu] [--keep FOLDER]

Run from the repository's root with .venv's Python (playwright); the station runs in
.venv-station (``make station-env``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom
from Testing.station_driver import VIEWPORT, StationPage, launch_browser, start_station, station_missing

TARGET_MS = 150.0
PAINTED = "Parotid_R"

# In the page: when the mouse button goes up (window, capture phase: before the view sees it), and
# for every image the axial view shows, when it was shown and the colour of its pixel at (x, y).
WATCH_SCRIPT = """
([x, y]) => {
  const w = window.dkoarBench = {ups: [], images: []};
  window.addEventListener('mouseup', () => w.ups.push(performance.now()), true);
  const img = document.querySelectorAll('img')[0];
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', {willReadFrequently: true});
  img.addEventListener('load', () => {
    const shown = performance.now();
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    context.drawImage(img, 0, 0);
    const px = Math.round(x * img.naturalWidth / img.clientWidth);
    const py = Math.round(y * img.naturalHeight / img.clientHeight);
    const d = context.getImageData(px, py, 1, 1).data;
    w.images.push([shown, d[0], d[1], d[2]]);
  });
}
"""


def coloured(r: int, g: int, b: int) -> bool:
    """A structure's colour over the CT, not the CT's grey."""
    return max(abs(r - g), abs(g - b), abs(r - b)) > 30


def stroke_round_trips(page: StationPage, strokes: int) -> list[float]:
    """Milliseconds from each stroke's mouse up to the first image showing its result."""
    page.select_structure(PAINTED)
    page.choose_effect("1", "Paint")
    page.shrink_brush(steps=12)
    x, y = page.background_point(0, radius_px=12)
    box = page.view_box(0)
    length = 6  # the stroke ends at x + length / 2, where the brush outline is centred: probe there
    page.page.evaluate(WATCH_SCRIPT, [x + length / 2 - box["x"], y - box["y"]])
    round_trips = []
    for n in range(1, strokes + 1):
        painting = n % 2 == 1
        if n > 1:
            page.choose_effect(*(("1", "Paint") if painting else ("3", "Erase")))
        page.stroke(x, y, length_px=length)
        page.wait_for(f"window.dkoarBench.ups.length >= {n} && s('st_edits') >= {n}", 60)
        deadline = time.monotonic() + 30
        while True:
            up, images = page.page.evaluate("[window.dkoarBench.ups, window.dkoarBench.images]")
            shown = [t for t, r, g, b in images if t > up[n - 1] and coloured(r, g, b) == painting]
            if shown:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"stroke {n}: no image showed it within 30 s")
            page.page.wait_for_timeout(50)
        round_trips.append(shown[0] - up[n - 1])
    return round_trips


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strokes", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", type=Path, default=None, help="keep the phantom, outputs and station log here")
    args = ap.parse_args()
    missing = station_missing()
    if missing:
        print(f"bench_station: {missing}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        phantom = write_phantom(work / "data", seed=7, grid=PhantomGrid())
        slices, rows, cols = phantom.ct.shape
        station = start_station(["--data", str(work / "data"), "--out", str(work / "out"), "--device", args.device],
                                work)
        try:
            with sync_playwright() as playwright:
                browser = launch_browser(playwright)
                page = StationPage(browser.new_page(viewport=VIEWPORT))
                page.open(station.url)
                page.open_series(0, timeout_s=300)
                pressed = page.apply()
                page.wait_for_structures(timeout_s=1800)
                apply_s = time.monotonic() - pressed

                import psutil

                server = psutil.Process(station.process.pid)
                cpu_before = sum(server.cpu_times()[:2])
                round_trips = stroke_round_trips(page, args.strokes)
                station_cpu_ms = (sum(server.cpu_times()[:2]) - cpu_before) * 1000 / args.strokes
                browser.close()
        finally:
            station.stop()
    median = statistics.median(round_trips)
    print(f"phantom: {slices} slices of {rows} x {cols} pixels; demo model on {args.device}")
    print(f"Apply to structures shown: {apply_s:.1f} s")
    print(f"paint stroke round trip (mouse up to the updated slice image), {len(round_trips)} strokes: "
          f"median {median:.0f} ms, min {min(round_trips):.0f} ms, max {max(round_trips):.0f} ms "
          f"(target under {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'NOT met'})")
    print(f"the station's CPU time per stroke (press, drag, release, the views re-rendered): {station_cpu_ms:.0f} ms; "
          f"load average of this machine: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
