"""DKOARSegmentationQt: sections of the Slicer panel too large to sit in DKOARSegmentation.py.

Qt code that runs inside the Slicer application only: widgets and their wiring, each section a
class the panel makes with its part of the .ui and the shared logic
(DKOARSegmentationMRML.logic.SegmentationLogic). Nothing here is imported by the core or the MRML
logic; what a section does without widgets belongs to those.
"""
