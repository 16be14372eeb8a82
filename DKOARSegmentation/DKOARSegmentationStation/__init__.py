"""DKOARSegmentationStation: the contouring station in a web browser, on Slicer's own libraries.

Kitware's trame-slicer serves Slicer's MRML scene, slice and 3D views and Segment Editor effects to
a browser; this package is a thin front end on it: widgets and their wiring. Everything else is the
logic the Slicer panel calls (``DKOARSegmentationMRML.logic.SegmentationLogic``: run the model in a
child process, load the result, time the corrections into the SQLite log, export) and the core.

- ``server``: ``StationOptions`` and ``serve``: the checks before anything starts, the access
  token for a non-loopback host, the trame server.
- ``app``: ``StationApp``: the Slicer application, the views, the CT, the run and the exports.
- ``editing``: the structure list's and the Segment Editor panel's controls (review, correcting,
  undo, Finish).
- ``guidance``: the review guidance: flag icons beside the structures, the "Review first" list,
  Check again, an earlier run of the output folder opened again.
- ``practice``: trainee mode: a practice round against a hidden reference (``PracticeLogic``).
- ``guard``: every control's refusals as one message in the page, never a traceback.
- ``page``: the page: the CT, run, structures, review, correction, export and practice panels
  around the views.

It runs in its own environment (``make station-env``: trame-slicer needs slicer-core 5.11), and is
started by ``dkoar station`` (``DKOARSegmentationLib.cli.station_commands``).
"""
