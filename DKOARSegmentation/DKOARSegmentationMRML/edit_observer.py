"""Segment Editor activity -> the core's EditorEvents, as it happens.

What Slicer tells us (checked on slicer-core 5.12.4):

- the segmentation node forwards vtkSegmentation's SourceRepresentationModified (no call data),
  SegmentModified / SegmentAdded / SegmentRemoved (the segment ID as call data, but ``None`` when
  the node batched several changes, e.g. an undo in vtkSlicerSegmentEditorLogic);
- binary labelmap layers are shared by many segments, and an edit may move a segment to a layer
  of its own (``slicer.util.updateSegmentBinaryLabelmapFromArray`` does), so an event does not say
  which structures a stroke changed.

So on each of these events the observer compares every segment's content with what it saw last,
cheaply: a layer whose image object and modification time are unchanged is skipped; a changed
layer is summarised in one pass (``scipy.ndimage.find_objects``: each label value's bounding box)
and each of its segments is reduced to a signature (world geometry, bounding box in absolute
voxel indices, voxel count, CRC of the cropped mask). Segments whose signature changed make one
"edit" event. A segment that disappears is not reported until it comes back (an undo removes and
re-adds segments); a segment that comes back unchanged is no edit. The Segment Editor node gives
"select" (SelectedSegmentID) and "effect" (ActiveEffectName) events. An undo or redo is seen as an
"edit" of the structures it changes (the undo history of the Segment Editor is not public).

Each event goes to the sink (``record_event(event)``, e.g. the correction log) as soon as it is
made, so closing Slicer mid-case loses nothing already recorded.

The comparison reads every changed layer once (tens of milliseconds on a planning CT). A front end
that must first show the stroke (the browser station sends the re-rendered slice image) hands a
``defer`` function: segmentation events then only note the time, and the comparison runs when the
front end calls it back, the edit timed when it happened.
"""

from __future__ import annotations

import time
import zlib
from typing import Callable, Protocol

import numpy as np
import slicer
import vtk

from DKOARSegmentationLib.monitoring.correction_timing import EditorEvent
from DKOARSegmentationLib.structures.catalogue import Catalogue, default_catalogue

from .result_loading import BINARY_LABELMAP, segment_ids

EMPTY = ("empty",)


class EventSink(Protocol):
    """Receives each editor event as it happens (the correction log's sink is one)."""

    def record_event(self, event: EditorEvent) -> None: ...


def _address(obj) -> str:
    return obj.GetAddressAsString(obj.GetClassName()) if obj is not None else ""


def _image_key(image) -> tuple:
    """The world geometry of an oriented image (its image-to-world matrix), rounded."""
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return tuple(round(matrix.GetElement(r, c), 4) for r in range(3) for c in range(4))


def layer_signatures(image, label_values) -> dict[int, tuple]:
    """label value -> signature of that label's voxels in ``image`` (a vtkOrientedImageData)."""
    from scipy import ndimage
    from vtk.util.numpy_support import vtk_to_numpy

    label_values = [int(v) for v in label_values]
    out = {v: EMPTY for v in label_values}
    extent = image.GetExtent()
    scalars = image.GetPointData().GetScalars() if image.GetPointData() else None
    if scalars is None or extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return out
    dims = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    array = vtk_to_numpy(scalars)
    if array.ndim > 1:
        array = array[:, 0]
    array = array.reshape(dims)
    if array.dtype.kind not in "iu":
        array = array.astype(np.int32)
    wanted = [v for v in label_values if v > 0]
    if not wanted:
        return out
    boxes = ndimage.find_objects(array, max_label=max(wanted))
    geometry = _image_key(image)
    offset = (extent[4], extent[2], extent[0])
    for value in wanted:
        box = boxes[value - 1]
        if box is None:
            continue
        mask = array[box] == value
        count = int(mask.sum())
        if count == 0:
            continue
        absolute = tuple((s.start + o, s.stop + o) for s, o in zip(box, offset))
        out[value] = (geometry, absolute, count, zlib.crc32(np.packbits(mask).tobytes()))
    return out


class SegmentContentTracker:
    """Signatures of every segment of a segmentation node; ``changes()`` says which differ since the
    previous call."""

    def __init__(self, segmentation_node):
        self.node = segmentation_node
        self._layers: dict[str, tuple] = {}  # image address -> (mtime, label values, signatures)
        self._signatures: dict[str, tuple] = {}  # segment id -> signature
        self._names: dict[str, str] = {}  # segment id -> segment name
        self.changes()

    def _current(self) -> dict[str, tuple]:
        vtk_segmentation = self.node.GetSegmentation()
        per_layer: dict[str, tuple] = {}
        members: dict[str, list[tuple[str, int]]] = {}
        for segment_id in segment_ids(self.node):
            segment = vtk_segmentation.GetSegment(segment_id)
            self._names[segment_id] = segment.GetName()
            image = segment.GetRepresentation(BINARY_LABELMAP)
            if image is None:
                continue
            address = _address(image)
            per_layer[address] = image
            members.setdefault(address, []).append((segment_id, int(segment.GetLabelValue())))
        current, layers = {}, {}
        for address, image in per_layer.items():
            scalars = image.GetPointData().GetScalars() if image.GetPointData() else None
            mtime = (image.GetMTime(), scalars.GetMTime() if scalars is not None else 0)
            labels = tuple(sorted({v for _, v in members[address]}))
            cached = self._layers.get(address)
            if cached is not None and cached[0] == mtime and cached[1] == labels:
                signatures = cached[2]
            else:
                signatures = layer_signatures(image, labels)
            layers[address] = (mtime, labels, signatures)
            for segment_id, value in members[address]:
                current[segment_id] = signatures.get(value, EMPTY)
        self._layers = layers
        return current

    def changes(self) -> list[str]:
        """IDs of the segments whose content differs from the previous call (new ones included).
        A segment that is gone keeps its last signature, so that one coming back unchanged is no change."""
        current = self._current()
        changed = [sid for sid, sig in current.items() if self._signatures.get(sid) != sig]
        self._signatures.update(current)
        return changed

    def name(self, segment_id: str) -> str:
        return self._names.get(segment_id, segment_id)


class EditObserver:
    """Watches a segmentation node (and optionally a vtkMRMLSegmentEditorNode) and turns what
    happens into EditorEvents: each one is appended to ``events``, passed to ``sink.record_event``
    and to every listener, at once."""

    SEGMENTATION_EVENTS = ("SourceRepresentationModified", "SegmentModified", "SegmentAdded", "SegmentRemoved")

    def __init__(self, segmentation_node, sink: EventSink | None = None, editor_node=None,
                 catalogue: Catalogue | None = None, clock: Callable[[], float] = time.time,
                 defer: Callable[[Callable[[], None]], None] | None = None):
        self.segmentation_node = segmentation_node
        self.defer = defer  # defer(callback): call back soon, after the front end's own work
        self._pending_since: float | None = None  # when a deferred comparison was asked for
        self.editor_node = editor_node
        self.sink = sink
        self.catalogue = catalogue or default_catalogue()
        self.clock = clock
        self.events: list[EditorEvent] = []
        self.listeners: list[Callable[[EditorEvent], None]] = []
        self.last_segment_hint: str | None = None  # the segment ID of the last SegmentModified, when given
        self._tracker: SegmentContentTracker | None = None
        self._observations: list[tuple[object, int]] = []
        self._selected = ""
        self._effect = ""

    # -- lifecycle

    @property
    def active(self) -> bool:
        return bool(self._observations)

    def start(self) -> None:
        if self.active:
            return
        self._tracker = SegmentContentTracker(self.segmentation_node)
        node = self.segmentation_node
        for name in self.SEGMENTATION_EVENTS:
            event_id = getattr(slicer.vtkSegmentation, name)
            callback = self._on_segment_event if name != "SourceRepresentationModified" else self._on_source_modified
            self._observations.append((node, node.AddObserver(event_id, callback)))
        if self.editor_node is not None:
            self._selected = self.editor_node.GetSelectedSegmentID() or ""
            self._effect = self.editor_node.GetActiveEffectName() or ""
            self._observations.append(
                (self.editor_node, self.editor_node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_editor_modified)))

    def stop(self) -> None:
        for obj, tag in self._observations:
            obj.RemoveObserver(tag)
        self._observations = []

    # -- events

    def emit(self, kind: str, segments: tuple[str, ...] = (), at: float | None = None) -> EditorEvent:
        event = EditorEvent(self.clock() if at is None else at, kind, tuple(segments))
        self.events.append(event)
        if self.sink is not None:
            self.sink.record_event(event)
        for listener in list(self.listeners):
            listener(event)
        return event

    def structure_name(self, segment_name: str) -> str:
        structure = self.catalogue.find(segment_name)
        return structure.name if structure is not None else segment_name

    def check(self) -> EditorEvent | None:
        """Compare the segments with what was seen last; one "edit" event for those that changed."""
        at, self._pending_since = self._pending_since, None
        if self._tracker is None:
            return None
        changed = self._tracker.changes()
        if not changed:
            return None
        names = tuple(sorted({self.structure_name(self._tracker.name(sid)) for sid in changed}))
        return self.emit("edit", names, at)

    def _changed(self) -> None:
        """A segmentation event: compare now, or (``defer``) when called back, timed as now."""
        if self.defer is None:
            self.check()
        elif self._pending_since is None:
            self._pending_since = self.clock()
            self.defer(self._check_deferred)

    def _check_deferred(self) -> None:
        if self.active and self._pending_since is not None:
            self.check()

    def _on_source_modified(self, caller, event) -> None:
        self._changed()

    @vtk.calldata_type(vtk.VTK_STRING)
    def _on_segment_event(self, caller, event, segment_id=None) -> None:
        # the segment ID is only a hint (None when the node batched the change): contents decide
        self.last_segment_hint = segment_id
        self._changed()

    def _on_editor_modified(self, caller, event) -> None:
        self.note_selected(caller.GetSelectedSegmentID() or "")
        self.note_effect(caller.GetActiveEffectName() or "")

    def note_selected(self, segment_id: str) -> EditorEvent | None:
        """A segment was selected: one "select" event when it differs from the last one. An editor
        without a vtkMRMLSegmentEditorNode to observe (trame-slicer's) reports its selection here."""
        if segment_id == self._selected:
            return None
        self._selected = segment_id
        if not segment_id:
            return None
        segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id)
        name = segment.GetName() if segment is not None else segment_id
        return self.emit("select", (self.structure_name(name),))

    def note_effect(self, effect: str) -> EditorEvent | None:
        """An effect was chosen (or none): one "effect" event when it differs from the last one."""
        if effect == self._effect:
            return None
        self._effect = effect
        return self.emit("effect")
