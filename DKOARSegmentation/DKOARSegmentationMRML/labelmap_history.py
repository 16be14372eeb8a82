"""Undo and redo of edits to a segmentation's binary labelmap layers, each step kept as the box of
voxels that one edit changed (before and after).

For an editor whose own undo does not scale to a planning CT: trame-slicer's keeps two copies of
the whole segmentation per stroke, and Slicer frees a copy of 34 segments sharing a 512 x 512 x 150
layer by clearing each segment's label from the layer in turn (seconds per copy, once the undo
limit is reached). Here a stroke costs one comparison of each layer with the copy kept since the
last step, and the changed box is what is kept.

Layers are compared on the reference volume's grid (the CT's): an edit may crop or grow a layer's
extent (Slicer keeps it to the voxels in use), which is no change of the voxels. Only the box where
a layer has had voxels is compared, not the whole CT. ``record()`` after
an edit makes one step of what changed since the previous one; ``undo()`` and ``redo()`` write a
step's voxels back and mark the layers modified, so that the views and the correction timing
(EditObserver) see them like any edit. Segments added or removed, layers made or merged, or a layer
off the reference grid start the history again: those are not voxel edits.
"""

from __future__ import annotations

import numpy as np

from .readback import layer_on_reference, layer_region
from .result_loading import BINARY_LABELMAP, segment_ids


def _layers(segmentation_node) -> dict[str, object]:
    """layer key -> vtkOrientedImageData, for the binary labelmap layers of the node's segments."""
    segmentation = segmentation_node.GetSegmentation()
    layers = {}
    for segment_id in segment_ids(segmentation_node):
        image = segmentation.GetSegment(segment_id).GetRepresentation(BINARY_LABELMAP)
        if image is not None:
            layers.setdefault(image.GetAddressAsString(image.GetClassName()), image)
    return layers


def _mtime(image) -> tuple[int, int]:
    scalars = image.GetPointData().GetScalars() if image.GetPointData() else None
    return image.GetMTime(), scalars.GetMTime() if scalars is not None else 0


def _union(a, b):
    """The box (slices) covering two boxes; None is an empty box."""
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _inside(box, outer) -> tuple[slice, ...]:
    """``box`` relative to ``outer`` (which covers it)."""
    return tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer))


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[slice, slice, slice] | None:
    diff = before != after
    if not diff.any():
        return None
    box = []
    for axis in range(3):
        hit = np.flatnonzero(diff.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _write_layer(image, values: np.ndarray) -> None:
    """Give a layer the voxels of a whole reference-grid array (its extent becomes the grid's)."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    k, j, i = values.shape
    scalar_type = image.GetScalarType()
    image.SetExtent(0, i - 1, 0, j - 1, 0, k - 1)
    image.AllocateScalars(scalar_type if scalar_type else vtk.VTK_UNSIGNED_CHAR, 1)
    target = vtk_to_numpy(image.GetPointData().GetScalars())
    target[:] = values.ravel().astype(target.dtype, copy=False)
    image.GetPointData().GetScalars().Modified()
    image.Modified()  # the segmentation, its views and the edit observer follow


class LabelmapHistory:
    """Undo/redo steps of one segmentation node's binary labelmap layers (at most ``limit``), on
    the grid of ``reference_volume_node``."""

    def __init__(self, segmentation_node, reference_volume_node, limit: int = 50):
        self.node = segmentation_node
        self.reference = reference_volume_node
        self.limit = limit
        self._kept: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}  # key -> (voxels on the grid, mtime)
        self._used: dict[str, tuple | None] = {}  # key -> the box where the kept voxels may be non-zero
        self._undo: list[dict] = []
        self._redo: list[dict] = []
        self.reset()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def reset(self) -> None:
        """Forget every step; the layers as they are now are the starting point."""
        self._undo, self._redo, self._kept, self._used = [], [], {}, {}
        for key, image in _layers(self.node).items():
            region = layer_region(image, self.reference)
            if region is None:  # off the reference grid: no history
                self._kept, self._used = {}, {}
                return
            self._kept[key] = (layer_on_reference(image, self.reference), _mtime(image))
            self._used[key] = region[1]

    def record(self) -> bool:
        """One step of what changed since the last step (True), or nothing changed (False). Layers
        made, merged or off the grid start the history again (False)."""
        layers = _layers(self.node)
        if not self._kept or set(layers) != set(self._kept):
            self.reset()
            return False
        step = {}
        for key, image in layers.items():
            kept, mtime = self._kept[key]
            if _mtime(image) == mtime:
                continue  # untouched since the last look
            region = layer_region(image, self.reference)
            if region is None or region[0].dtype != kept.dtype:
                self.reset()
                return False
            self._kept[key] = (kept, _mtime(image))
            values, where = region
            compared = _union(where, self._used[key])  # outside it the layer and the copy are both 0
            if compared is None:
                continue
            now = np.zeros(tuple(s.stop - s.start for s in compared), kept.dtype)
            if where is not None:
                now[_inside(where, compared)] = values
            changed = _changed_box(kept[compared], now)
            self._used[key] = compared
            if changed is not None:
                box = tuple(slice(c.start + s.start, c.start + s.stop) for c, s in zip(compared, changed))
                step[key] = (box, kept[box].copy(), now[changed].copy())
                kept[box] = now[changed]
        if not step:
            return False
        self._undo.append(step)
        del self._undo[:-self.limit]
        self._redo.clear()
        return True

    def undo(self) -> bool:
        """Put back the voxels of the last step; False when there is none."""
        return self._move(self._undo, self._redo, before=True)

    def redo(self) -> bool:
        return self._move(self._redo, self._undo, before=False)

    def _move(self, source: list, target: list, before: bool) -> bool:
        self.record()  # an edit not yet recorded becomes a step of its own first
        if not source:
            return False
        layers = _layers(self.node)
        step = source.pop()
        if set(step) - set(layers):
            self.reset()
            return False
        for key, (box, old, new) in step.items():
            kept, _ = self._kept[key]
            kept[box] = old if before else new
            _write_layer(layers[key], kept)
            self._kept[key] = (kept, _mtime(layers[key]))
            self._used[key] = _union(self._used[key], box)
        target.append(step)
        return True
