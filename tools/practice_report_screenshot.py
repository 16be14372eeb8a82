"""The practice report rendered in headless Chromium: the README's screenshot and its test.

    python -m tools.practice_report_screenshot    # writes Resources/Screenshots/practice-report.png

A cohort's history is simulated with real scores (``Testing.practice_factory``), the report is
written by ``practice.report`` as ``dkoar practice report`` writes it, and Debian's chromium, driven
by playwright, opens the file with every request that is not the page itself refused (the page
must be self-contained) and takes the screenshot. The test runs this same function.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "Resources" / "Screenshots" / "practice-report.png"
CHROMIUM = "/usr/bin/chromium"


def render_page(html_path: Path, png_path: Path, width: int = 1400) -> dict:
    """Open the page in headless Chromium, check what it shows, write a full-page screenshot.
    Returns what was seen: title, headings, images (loaded or not), requests refused."""
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})

            def only_the_page(route):
                url = route.request.url
                if url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    refused.append(url)
                    route.abort()

            page.route("**/*", only_the_page)
            page.goto(html_path.resolve().as_uri())
            page.wait_for_load_state("load")
            seen = {
                "title": page.title(),
                "headings": page.locator("h2").all_inner_texts(),
                "images": page.evaluate(
                    "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"),
                "refused": refused,
            }
            png_path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(png_path), full_page=True)
        finally:
            browser.close()
    return seen


def render_example(out_dir: Path, png_path: Path) -> dict:
    """Simulate a cohort, write its report into ``out_dir`` and screenshot it to ``png_path``."""
    from DKOARSegmentationLib.monitoring.pseudonym import SiteKey
    from DKOARSegmentationLib.practice.report import write_practice_report
    from Testing.practice_factory import make_example_history

    out_dir = Path(out_dir)
    key = SiteKey(b"example site key for the README!")
    history = out_dir / "practice.sqlite"
    keys = make_example_history(history, key)
    page, rows = write_practice_report([history], out_dir / "trainee.html", you_key=keys["anna"])
    seen = render_page(page, Path(png_path))
    seen.update(page=page, attempts=len(rows))
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SCREENSHOT, help=f"the PNG to write (default {SCREENSHOT})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        seen = render_example(Path(folder), args.out)
    print(f"wrote {args.out}: {seen['attempts']} attempts, sections {', '.join(seen['headings'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
