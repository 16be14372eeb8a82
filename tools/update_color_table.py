#!/usr/bin/env python
"""Regenerate Resources/DKOARSegmentation_ColorTable.csv (Slicer's colour table with terminology
columns) from the structure catalogue Resources/structures.csv."""

from DKOARSegmentationLib.resources import resources_dir
from DKOARSegmentationLib.structures.catalogue import default_catalogue
from DKOARSegmentationLib.structures.color_table import slicer_color_table_csv

if __name__ == "__main__":
    path = resources_dir() / "DKOARSegmentation_ColorTable.csv"
    path.write_text(slicer_color_table_csv(default_catalogue()))
    print(f"wrote {path}")
