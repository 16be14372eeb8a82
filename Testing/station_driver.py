"""Driving the browser station as a clinician does: the station in its own environment
(``.venv-station/bin/dkoar station``), Debian's chromium through playwright, real mouse events.

Shared by the browser tests (Testing/test_station_browser.py), the benchmark
(Testing/benchmarks/bench_station.py) and the README's screenshots, which are the tests' own
(``DKOAR_STATION_SCREENSHOTS=Resources/Screenshots`` writes them there).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATION_DKOAR = REPO / ".venv-station" / "bin" / "dkoar"
CHROMIUM = "/usr/bin/chromium"
READY = re.compile(r"dkoar station: ready at (\S+)")
VIEWPORT = {"width": 1600, "height": 1000}


def station_args(workdir: Path, *extra: str) -> list[str]:
    """``dkoar station`` arguments with its output folder, correction log and site key in
    ``workdir``, on the CPU."""
    return [*extra, "--out", str(workdir / "out"), "--log", str(workdir / "corrections.sqlite"),
            "--site-key", str(workdir / "site.key"), "--device", "cpu"]


def station_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not STATION_DKOAR.is_file():
        return f"{STATION_DKOAR} is absent: make station-env"
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is absent: make validators installs Debian's chromium"
    return None


@dataclass
class Station:
    """A running ``dkoar station`` process and the address it printed."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def log(self) -> str:
        """What the station wrote on stderr (its own log)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def start_station(args: list[str], workdir: Path, timeout_s: float = 120.0) -> Station:
    """Start ``dkoar station ARGS`` (``--port 0`` unless given) and wait for its address."""
    if "--port" not in args:
        args = [*args, "--port", "0"]
    out_path, log_path = workdir / "station.stdout", workdir / "station.stderr"
    with open(out_path, "w") as out, open(log_path, "w") as err:
        process = subprocess.Popen([str(STATION_DKOAR), "station", *args], stdout=out, stderr=err, cwd=workdir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = READY.search(out_path.read_text())
        if match:
            return Station(process, match.group(1), log_path)
        if process.poll() is not None:
            raise RuntimeError(f"the station stopped (exit {process.returncode}): {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the station did not start within {timeout_s} s: {log_path.read_text()[-2000:]}")


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


class StationPage:
    """A playwright page on the station, with the steps of the clinician's work."""

    def __init__(self, page, screenshots: Path | None = None):
        self.page = page
        self.screenshots = screenshots

    # -- basics

    def open(self, url: str, timeout_s: float = 60.0) -> None:
        self.page.goto(url)
        self.page.wait_for_function("() => window.trame && window.trame.state && window.trame.state.get('st_data') "
                                    "!== undefined", timeout=timeout_s * 1000)

    def state(self, name: str):
        return self.page.evaluate(f"window.trame.state.get({name!r})")

    def wait_for(self, expression: str, timeout_s: float = 60.0) -> None:
        """Wait until a JavaScript expression over the station's state (``s('name')``) is true."""
        self.page.wait_for_function(f"() => {{ const s = (n) => window.trame.state.get(n); return {expression}; }}",
                                    timeout=timeout_s * 1000, polling=100)

    def click(self, selector: str) -> None:
        """A real mouse click on an element of the panel (scrolled into view first: the panel scrolls)."""
        element = self.page.locator(selector).first
        element.scroll_into_view_if_needed()
        self.page.wait_for_timeout(150)
        box = element.bounding_box()
        self.page.mouse.click(box["x"] + min(12, box["width"] / 2), box["y"] + box["height"] / 2)

    def message(self) -> tuple[str, str]:
        return self.state("st_message"), self.state("st_message_kind")

    def screenshot(self, name: str, focus: str | None = None) -> Path | None:
        """The page as ``station-NAME.png``, the panel scrolled to ``focus`` (a selector) first."""
        if self.screenshots is None:
            return None
        if focus is not None:
            self.page.locator(focus).first.scroll_into_view_if_needed()
            self.page.wait_for_timeout(300)
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"station-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    # -- the work

    def open_series(self, row: int = 0, timeout_s: float = 120.0) -> None:
        self.click(f"#st-open-{row}")
        self.wait_for("s('st_ct_label') !== '' && !s('st_busy')", timeout_s)

    def open_path(self, text: str) -> None:
        field = self.page.locator("#st-open-path")
        field.scroll_into_view_if_needed()
        field.fill(text)
        self.click("#st-open-path-btn")
        self.page.wait_for_timeout(300)
        self.wait_for("!s('st_busy')")

    def apply(self) -> float:
        """Press Apply; returns the time (time.monotonic) it was pressed."""
        self.click("#st-apply")
        pressed = time.monotonic()
        self.wait_for("s('st_running')", 30)
        return pressed

    def wait_for_structures(self, timeout_s: float = 900.0) -> None:
        self.wait_for("!s('st_running') && s('st_structures').length > 0", timeout_s)
        self.page.wait_for_selector("#st-structures .st-row", timeout=30000)

    def structure_names(self) -> list[str]:
        return self.page.locator("#st-structures .st-name").all_inner_texts()

    def select_structure(self, name: str) -> None:
        self.click(f"#st-structure-{name} .st-name")
        self.wait_for(f"s('st_selected') === {name!r}", 30)

    def press(self, keys: str) -> None:
        """Keys pressed with the mouse over the panel (not over a view, which takes its own keys)."""
        self.page.mouse.move(5, VIEWPORT["height"] - 5)
        self.page.evaluate("document.activeElement && document.activeElement.blur && document.activeElement.blur()")
        self.page.keyboard.press(keys)

    def choose_effect(self, key: str = "1", effect: str = "Paint") -> None:
        """Slicer's Segment Editor keys: 1 is Paint."""
        self.press(key)
        self.wait_for(f"s('st_effect') === {effect!r}", 30)

    def structure(self, name: str) -> dict:
        """The review list's row of a structure."""
        return next(r for g in self.state("st_structures") for r in g["rows"] if r["name"] == name)

    def view_box(self, index: int = 0) -> dict:
        """The screen box of a view's image (0: axial, 1: 3D, 2: sagittal, 3: coronal)."""
        return self.page.locator("img").nth(index).bounding_box()

    def view_pixels(self, index: int = 0):
        import numpy as np
        from PIL import Image

        png = self.page.locator("img").nth(index).screenshot()
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)

    def shrink_brush(self, steps: int = 10, index: int = 0) -> None:
        """Shift + mouse wheel on the slice view, as in Slicer: a smaller brush."""
        box = self.view_box(index)
        self.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        self.page.keyboard.down("Shift")
        for _ in range(steps):
            self.page.mouse.wheel(0, 100)
            self.page.wait_for_timeout(60)
        self.page.keyboard.up("Shift")

    def background_point(self, index: int = 0, radius_px: int = 18) -> tuple[float, float]:
        """A screen point of a slice view whose surroundings (``radius_px``) show only grey CT,
        no structure: painting there takes no voxel from another structure. Nearest to the centre."""
        import numpy as np
        from scipy import ndimage

        pixels = self.view_pixels(index)
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        grey = (abs(r - g) < 4) & (abs(g - b) < 4) & (r > 60) & (r < 200)
        inside = ndimage.binary_erosion(grey, structure=np.ones((2 * radius_px + 1,) * 2, bool))
        ys, xs = np.nonzero(inside)
        if len(ys) == 0:
            raise AssertionError("no background large enough to paint in this slice view")
        h, w = grey.shape
        n = int(np.argmin((ys - h / 2) ** 2 + (xs - w / 2) ** 2))
        box = self.view_box(index)
        return box["x"] + float(xs[n]), box["y"] + float(ys[n])

    def stroke(self, x: float, y: float, length_px: int = 8, index: int = 0) -> None:
        """One paint stroke with real mouse events: press, drag sideways, release."""
        mouse = self.page.mouse
        mouse.move(x - length_px / 2, y)
        self.page.wait_for_timeout(200)
        mouse.down()
        for dx in range(-length_px // 2, length_px // 2 + 1, 2):
            mouse.move(x + dx, y)
            self.page.wait_for_timeout(40)
        mouse.up()

    def paint_in_background(self, index: int = 0) -> tuple[float, float]:
        """Shrink the brush, then paint one stroke in the background; waits for the edit."""
        before = self.state("st_edits") or 0
        self.shrink_brush(index=index)
        x, y = self.background_point(index)
        self.stroke(x, y, index=index)
        self.wait_for(f"s('st_edits') > {before}", 30)
        return x, y

    def finish(self) -> str:
        self.click("#st-finish")
        self.wait_for("s('st_summary') !== '' && !s('st_correcting')", 120)
        return self.state("st_summary")

    def export(self, kind: str = "RTSTRUCT") -> dict:
        key = re.sub(r"[ .]", "", kind)
        self.click(f"#st-export-{key}")
        self.wait_for(f"s('st_exports')[{kind!r}] !== undefined || s('st_message_kind') === 'error'", 120)
        return (self.state("st_exports") or {}).get(kind)

    def download(self, kind: str, to: Path) -> Path:
        key = re.sub(r"[ .]", "", kind)
        with self.page.expect_download(timeout=60000) as download:
            self.click(f"#st-download-{key}")
        download.value.save_as(str(to))
        return to


def screenshot_folder(default: Path) -> Path:
    """Where the tests put their screenshots: ``DKOAR_STATION_SCREENSHOTS`` (relative to the
    repository) or ``default``."""
    chosen = os.environ.get("DKOAR_STATION_SCREENSHOTS")
    return (REPO / chosen) if chosen else default


@contextlib.contextmanager
def open_station_page(url: str, workdir: Path):
    """A chromium tab on the station at ``url`` (a ``StationPage``), its screenshots in
    ``workdir/screenshots`` unless ``DKOAR_STATION_SCREENSHOTS`` says otherwise."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        try:
            page = StationPage(browser.new_page(viewport=VIEWPORT), screenshot_folder(workdir / "screenshots"))
            page.open(url)
            yield page
        finally:
            browser.close()
