"""Run with the dicompyler-core environment (pydicom < 3): print, as one JSON object on stdout,
{ROI name: {"volume_ml": ..., "planes": n, "dicompyler_volume_ml": ...}} of an RTSTRUCT as
dicompyler-core parses it.

``volume_ml`` sums, over the planes dicompyler-core parsed, the area of each contour (shapely;
a contour inside k others counts with sign (-1)^k, the even-odd rule) times dicompyler-core's
plane thickness. ``dicompyler_volume_ml`` is its own CalculateStructureVolume, which halves the
first and last planes in the order of the planes' *string* keys ("-12.00" before "-3.00"), so it
is reported but not compared.
"""

import json
import sys

from dicompylercore import dicomparser
from shapely.geometry import Polygon

parser = dicomparser.DicomParser(sys.argv[1])
out = {}
for number, structure in parser.GetStructures().items():
    coords = parser.GetStructureCoordinates(number)
    if not coords:
        out[structure["name"]] = {"volume_ml": 0.0, "planes": 0, "dicompyler_volume_ml": 0.0}
        continue
    thickness = parser.CalculatePlaneThickness(coords)
    total = 0.0
    for plane in coords.values():
        polygons = [Polygon([p[0:2] for p in c["data"]]) for c in plane if c["type"] == "CLOSED_PLANAR"]
        for p in polygons:
            depth = sum(1 for q in polygons if q is not p and p.within(q))
            total += p.area * (-1) ** depth
    out[structure["name"]] = {
        "volume_ml": total * thickness / 1000.0,
        "planes": len(coords),
        "dicompyler_volume_ml": float(parser.CalculateStructureVolume(coords, thickness)),
    }
print(json.dumps(out))
