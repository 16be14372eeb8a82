"""DKOARSegmentationMRML: the logic every front end shares, between the core (DKOARSegmentationLib)
and Slicer's scene.

Imports slicer and vtk, never qt or ctk, so that it runs in Slicer and in Kitware's Qt-free
``slicer-core`` package (PyPI), where the test suite exercises it on real MRML nodes and events.
One concept a module:

- ``logic``: ``SegmentationLogic``, what the Slicer panel and the browser station call: run,
  load, correct, export.
- ``segmentation_run``: one run of the model on a CT node, in this process or in a child process.
- ``dicom_source``: a CT node's DICOM files (Slicer's DICOM database, or a folder index).
- ``geometry``: the core's LPS index->patient matrix <-> Slicer's IJK->RAS; CT volume nodes.
- ``terminology``: catalogue codes <-> a segment's terminology entry.
- ``result_loading``: a core label map -> a segmentation node (one named, coloured, coded segment
  per structure), the CT as reference geometry, under the CT's study in the subject hierarchy.
- ``readback``: a segmentation node -> a core label map on the CT grid (catalogue numbering).
- ``edit_observer``: segmentation and Segment Editor events -> the core's EditorEvents, sent to a
  sink (the correction log) as they happen.
- ``correction_session``: "Start correcting" / "Finish": AI baseline, timing, changed structures.
- ``correction_logging`` and ``correction_log_sink``: a case and its events in the SQLite log.
- ``export``: a segmentation node -> RTSTRUCT, DICOM SEG or ``.seg.nrrd`` through the core's
  writers (the command line's).

Written against Slicer 5.12 (slicer-core 5.12.4.0); calls that need a particular release say so.
Functions that call ``slicer.util`` helpers need ``slicer.mrmlScene`` to be the nodes' scene and
``slicer.modules.segmentations`` / ``slicer.modules.volumes`` to give their logics (as in Slicer).
"""
