#!/usr/bin/env python
"""Draw the extension and module icon: an axial head slice with a few organ-at-risk contours.

Writes a 128x128 RGBA PNG to ``DKOARSegmentation.png`` (the extension icon) and
``DKOARSegmentation/Resources/Icons/DKOARSegmentation.png`` (the module icon):

    python tools/make_icon.py

The organ colours are read from ``DKOARSegmentation/Resources/structures.csv``, so the icon shows
the colours the module gives those structures. Drawn at 4x and reduced, for smooth edges.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
OUTPUTS = (REPO / "DKOARSegmentation.png", REPO / "DKOARSegmentation" / "Resources" / "Icons" / "DKOARSegmentation.png")
SIZE = 128
SCALE = 4

FALLBACK_RGB = {
    "Parotid_L": (192, 255, 0), "Parotid_R": (0, 255, 0), "SpinalCord": (244, 214, 49),
    "Mandible": (222, 198, 101), "OralCavity": (165, 161, 55), "PCM_Up": (127, 255, 212),
    "Submandibular_L": (70, 163, 117), "Submandibular_R": (40, 120, 80),
}


def structure_colours(csv_path: Path) -> dict[str, tuple[int, int, int]]:
    colours = dict(FALLBACK_RGB)
    if csv_path.is_file():
        with csv_path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if row.get("name") in colours:
                    colours[row["name"]] = (int(row["red"]), int(row["green"]), int(row["blue"]))
    return colours


def draw_icon(colours: dict[str, tuple[int, int, int]]) -> Image.Image:
    n = SIZE * SCALE

    def box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        """An ellipse's bounding box, in icon pixels (0..128) scaled to the drawing."""
        return ((cx - rx) * SCALE, (cy - ry) * SCALE, (cx + rx) * SCALE, (cy + ry) * SCALE)

    img = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)

    # backdrop: a dark rounded square so the icon reads on light and dark themes
    d.rounded_rectangle((2 * SCALE, 2 * SCALE, (SIZE - 2) * SCALE, (SIZE - 2) * SCALE),
                        radius=22 * SCALE, fill=(24, 36, 52, 255))

    # the head (skin and soft tissue), anterior at the top, patient left on the image right
    d.ellipse(box(64, 66, 46, 54), fill=(92, 92, 96, 255), outline=(236, 214, 190, 255), width=3 * SCALE)

    # mandible: a U-shaped arch open posteriorly
    d.arc(box(64, 52, 33, 33), start=160, end=380, fill=colours["Mandible"] + (255,), width=6 * SCALE)

    def organ(name: str, bbox, width: int = 2) -> None:
        rgb = colours[name]
        d.ellipse(bbox, fill=rgb + (110,), outline=rgb + (255,), width=width * SCALE)

    organ("OralCavity", box(64, 47, 17, 15))
    organ("PCM_Up", box(64, 72, 11, 5))
    organ("Parotid_R", box(30, 78, 10, 16))  # the patient's right, on the image left
    organ("Parotid_L", box(98, 78, 10, 16))
    organ("Submandibular_R", box(40, 50, 6, 7))
    organ("Submandibular_L", box(88, 50, 6, 7))

    # vertebra with the spinal cord
    d.ellipse(box(64, 94, 12, 11), fill=(226, 226, 220, 255))
    organ("SpinalCord", box(64, 96, 5.5, 5.5), width=2)

    return img.resize((SIZE, SIZE), Image.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", nargs="*", type=Path, default=list(OUTPUTS),
                        help="PNG files to write (default: the extension and module icons)")
    args = parser.parse_args(argv)
    icon = draw_icon(structure_colours(REPO / "DKOARSegmentation" / "Resources" / "structures.csv"))
    for path in args.outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        icon.save(path, format="PNG", optimize=True)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
