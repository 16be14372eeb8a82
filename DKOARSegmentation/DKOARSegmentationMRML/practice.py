"""Trainee mode in the scene: a practice round against a hidden reference, what the Slicer panel
and the browser station call.

A round is one CT and one or more structures. The reference comes from a phantom's truth, an
approved RTSTRUCT on the CT (or a label map on its grid), or a segmentation node already in the
scene; it is kept out of sight (read into the core, never shown, a node is hidden) and so is every
other segmentation of the CT, the AI result among them. The trainee draws in a new segmentation
node with one empty, named, coloured and coded segment per structure, with the Segment Editor;
her edits are timed as corrections are (``edit_observer``: active time without idle pauses).
``submit`` scores each structure with the core (``practice.scoring``: the metrics of ``dkoar
compare``, the borders and the words), adds an overlay node with what was drawn too much
(attempt only) and what was missed (reference only) in two colours, and stores each attempt in the
practice history when one is configured. ``showReference`` then loads the reference as a segmentation
node; ``endRound`` stops timing and shows the hidden nodes again.

Errors a user can fix are DKOARError; methods are camelCase as Slicer's logics name theirs.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import slicer

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.contour_sets import ContourSet, contour_set_from_segmentation, read_contour_set
from DKOARSegmentationLib.monitoring.correction_timing import correction_times
from DKOARSegmentationLib.practice.cards import GuidelineCard, guideline_card
from DKOARSegmentationLib.practice.scoring import PracticeScore, score_contour_sets
from DKOARSegmentationLib.structures.catalogue import Catalogue, default_catalogue
from DKOARSegmentationLib.volume import Segmentation

from .dicom_source import DicomFileLookup, default_database, dicom_ct
from .edit_observer import EditObserver
from .geometry import add_ct_volume_node, same_grid
from .readback import segment_masks
from .result_loading import load_segmentation, place_beside

TOO_MUCH_RGB = (255, 140, 0)  # drawn but not in the reference: orange
MISSED_RGB = (0, 120, 255)  # in the reference but not drawn: blue
ROUND_ATTRIBUTE = "DKOAR.practiceRound"  # marks the nodes a round made


@dataclass
class PracticeRound:
    volume_node: object
    reference: ContourSet  # the hidden reference, on the CT grid
    structures: tuple[str, ...]
    case_label: str  # "phantom seed 3 HFS", or the kind of reference for a real CT
    case_kind: str  # phantom, rtstruct, labelmap, segmentation
    study_uid: str = ""  # a real CT's StudyInstanceUID, for its keyed pseudonym in the history
    attempt_node: object = None
    observer: EditObserver | None = None
    started: float = 0.0
    started_at: _dt.datetime | None = None
    scores: dict[str, PracticeScore] = field(default_factory=dict)
    overlay_node: object = None
    reference_node: object = None
    hidden: list[tuple[object, bool]] = field(default_factory=list)  # display nodes hidden, and their visibility
    stored: list[int] = field(default_factory=list)  # attempt ids in the practice history
    store_error: str = ""  # why the last submission was not stored (the scores stand)

    @property
    def running(self) -> bool:
        return self.observer is not None and self.observer.active


class PracticeLogic:
    def __init__(self, dicomDatabase: DicomFileLookup | None = None, catalogue: Catalogue | None = None,
                 clock: Callable[[], float] = time.time):
        """``historyPath``, ``trainee``, ``siteKeyPath``, ``site`` (attributes, set by the front end
        from its settings) say where attempts are stored and for whom; empty history: not stored."""
        self._dicomDatabase = dicomDatabase
        self.catalogue = catalogue or default_catalogue()
        self.clock = clock
        self.historyPath = ""
        self.trainee = ""
        self.siteKeyPath = ""
        self.site = ""
        self.siteGuidelines = ""
        self.idleCutoffSeconds = 30.0
        self.round: PracticeRound | None = None

    @property
    def dicomDatabase(self) -> DicomFileLookup | None:
        return self._dicomDatabase if self._dicomDatabase is not None else default_database()

    @dicomDatabase.setter
    def dicomDatabase(self, lookup: DicomFileLookup | None) -> None:
        """A front end without a DICOM database (the browser station) gives its CT's files."""
        self._dicomDatabase = lookup

    @staticmethod
    def overlayLegend() -> str:
        """What the overlay's two colours mean, for the front ends."""
        return "Overlay: orange = drawn but not in the reference (too much); blue = in the reference but not drawn " \
               "(missed)."

    # -- guideline cards -------------------------------------------------------------------------

    def guidelineCard(self, name: str) -> GuidelineCard:
        """The structure's card (``.html()`` for the panel, ``.text()``), the site's text over the project's."""
        return guideline_card(name, self.siteGuidelines or None, self.catalogue)

    # -- starting a round ------------------------------------------------------------------------

    def startPhantomRound(self, seed: int, structures, position: str = "HFS", grid=None, editorNode=None):
        """A synthetic CT (``dkoar phantom``) in the scene, its truth as the hidden reference."""
        from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom

        phantom = generate_phantom(int(seed), position, grid or PhantomGrid(), self.catalogue)
        volume_node = add_ct_volume_node(phantom.ct, f"Practice phantom {int(seed)} {position}")
        reference = contour_set_from_segmentation(phantom.truth, self.catalogue)
        return self._start(volume_node, reference, structures, f"phantom seed {int(seed)} {position}", "phantom",
                           editorNode=editorNode)

    def startRoundFromFile(self, volumeNode, referencePath: str, structures, allowUnapproved: bool = False,
                           editorNode=None):
        """The reference from a file: an RTSTRUCT drawn on the CT (APPROVED, unless ``allowUnapproved``),
        or a label map in catalogue numbering on the CT's grid."""
        path = Path(referencePath)
        if path.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")):
            reference = read_contour_set(path, None, self.catalogue)
            if not same_grid(volumeNode, reference.shape, reference.affine):
                raise DKOARError(f"{path}: the label map is not on the grid of {volumeNode.GetName()}")
            return self._start(volumeNode, reference, structures, "label map", "labelmap", editorNode=editorNode)
        status = _approval(path)
        if status != "APPROVED" and not allowUnapproved:
            raise DKOARError(f"{path}: the structure set is {status or 'without an approval status'}; practise "
                             "against an approved one (or allow unapproved references)")
        ct, _ = dicom_ct(volumeNode, "a practice reference from an RTSTRUCT", self.dicomDatabase)
        reference = read_contour_set(path, ct, self.catalogue)
        return self._start(volumeNode, reference, structures, "RTSTRUCT", "rtstruct", ct.dicom.study_instance_uid,
                           editorNode=editorNode)

    def startRoundFromSegmentation(self, volumeNode, referenceNode, structures, editorNode=None):
        """The reference from a segmentation node in the scene (hidden for the round)."""
        from .readback import segmentation_to_core

        reference = contour_set_from_segmentation(segmentation_to_core(referenceNode, volumeNode, self.catalogue),
                                                  self.catalogue)
        return self._start(volumeNode, reference, structures, "segmentation", "segmentation", editorNode=editorNode)

    def _start(self, volume_node, reference: ContourSet, structures, label: str, kind: str, study_uid: str = "",
               editorNode=None) -> PracticeRound:
        if self.round is not None and self.round.running:
            raise DKOARError("a practice round is going on: submit it or end it first")
        names = _names(structures)
        held = [n for n, (box, _) in reference.items.items() if box is not None]
        chosen = []
        for name in names:
            structure = self.catalogue.by_name(name)
            if structure.name not in held:
                raise DKOARError(f"the reference has no {structure.name}; choose among {', '.join(held) or 'nothing'}")
            chosen.append(structure.name)
        if not chosen:
            raise DKOARError("choose the structures to practise")
        practice = PracticeRound(volume_node, reference, tuple(chosen), label, kind, study_uid)
        practice.hidden = _hide_segmentations(volume_node.GetScene())
        empty = Segmentation(np.zeros(reference.shape, dtype=np.uint8), reference.affine,
                             tuple(self.catalogue.by_name(n) for n in chosen))
        practice.attempt_node = load_segmentation(empty, volume_node, f"{volume_node.GetName()} practice")
        practice.attempt_node.SetAttribute(ROUND_ATTRIBUTE, "attempt")
        practice.observer = EditObserver(practice.attempt_node, None, editorNode, self.catalogue, self.clock)
        practice.observer.start()
        practice.observer.emit("start")
        practice.started = self.clock()
        practice.started_at = _dt.datetime.now(_dt.timezone.utc)
        self.round = practice
        return practice

    # -- submitting --------------------------------------------------------------------------------

    def submit(self, structures=None) -> dict[str, PracticeScore]:
        """Score the attempt (all the round's structures, or those named), show the overlay of too
        much and missed, store each attempt in the practice history (``round.store_error`` says why
        not, when it could not be). Returns name -> score."""
        practice = self._round()
        names = tuple(self.catalogue.by_name(n).name for n in _names(structures)) if structures else practice.structures
        observer = practice.observer
        if observer.active:
            observer.check()  # an edit not yet seen (events batched by the node)
        timing = correction_times(observer.events, self.idleCutoffSeconds)
        masks = segment_masks(practice.attempt_node, practice.volume_node, self.catalogue)
        attempt = ContourSet(practice.reference.affine, practice.reference.shape,
                             {n: (m.box, m.crop) for n, m in masks.items()},
                             {n: self.catalogue.by_name(n) for n in masks})
        scores = {name: score_contour_sets(practice.reference, attempt, name, self.catalogue) for name in names}
        practice.scores.update(scores)
        self._show_overlay(practice, attempt, names)
        wall = self.clock() - practice.started
        practice.store_error = ""
        try:
            practice.stored += self._store(practice, scores, timing, wall)
        except DKOARError as exc:  # the trainee still sees her scores; the front end says why they were not kept
            practice.store_error = str(exc)
        return scores

    def _show_overlay(self, practice: PracticeRound, attempt: ContourSet, names) -> None:
        scene = practice.volume_node.GetScene()
        if practice.overlay_node is not None:
            scene.RemoveNode(practice.overlay_node)
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                       scene.GenerateUniqueName(f"{practice.volume_node.GetName()} practice feedback"))
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(practice.volume_node)
        node.SetAttribute(ROUND_ATTRIBUTE, "feedback")
        shape = practice.reference.shape
        for name in names:
            reference, drawn = _full(practice.reference, name, shape), _full(attempt, name, shape)
            for what, mask, rgb in (("too much", drawn & ~reference, TOO_MUCH_RGB),
                                    ("missed", reference & ~drawn, MISSED_RGB)):
                segment_id = node.GetSegmentation().AddEmptySegment(f"{name} {what}", f"{name} {what}",
                                                                    [c / 255.0 for c in rgb])
                if mask.any():
                    slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), node, segment_id,
                                                                     practice.volume_node)
        place_beside(node, practice.volume_node)
        practice.overlay_node = node

    def _store(self, practice: PracticeRound, scores, timing, wall_s: float) -> list[int]:
        if not self.historyPath:
            return []
        from DKOARSegmentationLib.monitoring.pseudonym import key_path_from, load_site_key
        from DKOARSegmentationLib.practice.history import PracticeCase, open_history, trainee_key

        if not self.trainee.strip():
            raise DKOARError("give the trainee's name or login to store the attempts (it is stored keyed only)")
        key = load_site_key(key_path_from(self.siteKeyPath or None))
        if practice.case_kind == "phantom":
            case = PracticeCase(key.pseudonym("case", practice.case_label), practice.case_label, "phantom")
        elif practice.study_uid:
            case = PracticeCase.of_study(key, practice.study_uid, practice.case_kind)
        else:
            case = PracticeCase(key.pseudonym("case", practice.volume_node.GetName()), "", practice.case_kind)
        ids = []
        with open_history(self.historyPath) as history:
            history.check_site_key(key.fingerprint)
            for name, score in scores.items():
                spent = timing.structures.get(name)
                ids.append(history.add_attempt(
                    trainee_key=trainee_key(key, self.trainee), case=case, score=score, site=self.site,
                    active_s=spent.active_s if spent else 0.0, wall_s=wall_s, edits=spent.edits if spent else 0,
                    started_at=practice.started_at))
        return ids

    # -- after submitting --------------------------------------------------------------------------

    def showReference(self):
        """Load the round's reference (its structures) as a visible segmentation node."""
        practice = self._round()
        if not practice.scores:
            raise DKOARError("submit the attempt before looking at the reference")
        if practice.reference_node is None:
            labels = np.zeros(practice.reference.shape, dtype=np.uint8)
            for name in practice.structures:
                labels[_full(practice.reference, name, labels.shape)] = self.catalogue.by_name(name).label
            reference = Segmentation(labels, practice.reference.affine,
                                     tuple(self.catalogue.by_name(n) for n in practice.structures))
            practice.reference_node = load_segmentation(reference, practice.volume_node,
                                                        f"{practice.volume_node.GetName()} reference")
            practice.reference_node.SetAttribute(ROUND_ATTRIBUTE, "reference")
        return practice.reference_node

    def endRound(self) -> None:
        """Stop timing and show again what the round hid; the round's nodes stay in the scene."""
        practice = self.round
        if practice is None:
            return
        if practice.observer is not None:
            practice.observer.stop()
        for display, visible in practice.hidden:
            display.SetVisibility(visible)
        practice.hidden = []

    def _round(self) -> PracticeRound:
        if self.round is None:
            raise DKOARError("start a practice round first")
        return self.round


def _names(structures) -> list[str]:
    if isinstance(structures, str):
        return [n.strip() for n in structures.split(",") if n.strip()]
    return [str(n).strip() for n in structures or () if str(n).strip()]


def _full(contours: ContourSet, name: str, shape) -> np.ndarray:
    box = contours.items.get(name, (None, None))[0]
    return contours.mask_in(name, tuple(slice(0, n) for n in shape)) if box is not None else np.zeros(shape, bool)


def _approval(path: Path) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["ApprovalStatus", "Modality"])
    except Exception as exc:  # pydicom raises several types for a file that is not DICOM
        raise DKOARError(f"{path}: not a DICOM file ({exc})") from None
    if str(ds.get("Modality", "")) != "RTSTRUCT":
        raise DKOARError(f"{path}: not an RTSTRUCT (modality {ds.get('Modality', 'missing')})")
    return str(ds.get("ApprovalStatus", "") or "")


def _hide_segmentations(scene) -> list[tuple[object, bool]]:
    """Hide every segmentation of the scene (the AI result, a reference node) for the round."""
    hidden = []
    for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode", scene):
        for index in range(node.GetNumberOfDisplayNodes()):
            display = node.GetNthDisplayNode(index)
            if display is not None and display.GetVisibility():
                hidden.append((display, True))
                display.SetVisibility(False)
    return hidden
