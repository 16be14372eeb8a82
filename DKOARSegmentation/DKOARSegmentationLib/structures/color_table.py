"""The catalogue as Slicer's colour table with terminology columns (``Resources/
DKOARSegmentation_ColorTable.csv``, made by ``tools/update_color_table.py``)."""

from __future__ import annotations

import csv
import io

from .catalogue import Catalogue, Code

SLICER_COLOR_TABLE_COLUMNS = (
    "LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A",
    "Category_CodingScheme", "Category_CodeValue", "Category_CodeMeaning",
    "Type_CodingScheme", "Type_CodeValue", "Type_CodeMeaning",
    "TypeModifier_CodingScheme", "TypeModifier_CodeValue", "TypeModifier_CodeMeaning",
    "Region_CodingScheme", "Region_CodeValue", "Region_CodeMeaning",
    "RegionModifier_CodingScheme", "RegionModifier_CodeValue", "RegionModifier_CodeMeaning",
)


def slicer_color_table_csv(catalogue: Catalogue) -> str:
    """The catalogue as a Slicer colour table with terminology columns (Slicer >= 5.8 reads it;
    the column names are those of vtkMRMLColorTableStorageNode)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SLICER_COLOR_TABLE_COLUMNS)
    writer.writerow([0, "Background", 0, 0, 0, 0] + [""] * 15)
    for s in catalogue:
        mod = s.modifier or Code("", "", "")
        writer.writerow([
            s.label, s.name, *s.rgb, 255,
            s.category.scheme, s.category.value, s.category.meaning,
            s.type.scheme, s.type.value, s.type.meaning,
            mod.scheme, mod.value, mod.meaning,
            "", "", "", "", "", "",
        ])
    return out.getvalue()
