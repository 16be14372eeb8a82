"""What a run writes and reads back: contours, the RTSTRUCT writer and reader, DICOM SEG, label
maps and Slicer segmentations, conversions between them, and the PNG overview."""
