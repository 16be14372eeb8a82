"""``slicer.mrmlScene`` and ``slicer.modules`` for an application without Slicer's GUI.

The logic calls ``slicer.util`` helpers (``addVolumeFromArray``, ``arrayFromSegmentBinaryLabelmap``
...), which work on ``slicer.mrmlScene`` and reach the module logics as
``slicer.modules.<name>.logic()``. In Slicer the application sets both up; an application made of
Slicer's libraries alone (trame-slicer's ``SlicerApp`` in the browser station, the tests' scene on
slicer-core) binds them here to its own scene and to the logics registered in its application logic.
"""

from __future__ import annotations

import types

import slicer

# the module logics slicer.util reaches, by their registered names
MODULE_NAMES = ("Colors", "Volumes", "Segmentations", "Terminologies", "SubjectHierarchy")


def bind_slicer_namespace(scene, app_logic, names=MODULE_NAMES):
    """Point ``slicer.mrmlScene`` at ``scene`` and ``slicer.modules.<name>.logic()`` at the logics
    registered in ``app_logic`` (``vtkSlicerApplicationLogic.GetModuleLogic``). Returns a function
    that puts back what was there before."""
    saved = {key: getattr(slicer, key) for key in ("mrmlScene", "modules") if hasattr(slicer, key)}
    modules = {}
    for name in names:
        logic = app_logic.GetModuleLogic(name)
        if logic is not None:
            modules[name.lower()] = types.SimpleNamespace(logic=(lambda logic=logic: logic))
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(**modules)

    def restore() -> None:
        for key in ("mrmlScene", "modules"):
            if key in saved:
                setattr(slicer, key, saved[key])
            elif hasattr(slicer, key):
                delattr(slicer, key)

    return restore
