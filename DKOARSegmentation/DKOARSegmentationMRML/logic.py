"""The logic every front end shares: the Slicer panel and the browser station call these methods.

Run the model on a CT volume node (in a child process, or here), load the result as segments,
time the clinician's corrections into the correction log, export RTSTRUCT, DICOM SEG and
``.seg.nrrd``. Imports slicer, never Qt: it runs in Slicer and on slicer-core alike. What differs
between front ends is handed in: the DICOM database (``slicer.dicomDatabase`` in Slicer), the
process launcher (``slicer.util.launchConsoleProcess`` in Slicer), the folder for temporary files.

Methods are named as Slicer's module logics name theirs (camelCase); errors a user can fix are the
core's DKOARError, with a message to show as it is.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import slicer

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.progress import Progress
from DKOARSegmentationLib.structures.catalogue import default_catalogue

from . import segmentation_run
from .correction_logging import open_case
from .correction_session import CorrectionSession
from .dicom_source import DicomFileLookup, default_database, dicom_ct
from .export import export_dicom_seg, export_rtstruct, export_seg_nrrd

# what each export writes, and the file name it gets in its time-stamped folder
EXPORTS = {"RTSTRUCT": "rtstruct.dcm", "DICOM SEG": "seg.dcm", ".seg.nrrd": "segmentation.seg.nrrd"}
EDITOR_NODE_TAG = "DKOARSegmentation"


class SegmentationLogic:
    def __init__(self, dicomDatabase: DicomFileLookup | None = None, launcher=None, python: str | None = None,
                 temporaryFolder: str | None = None):
        """``dicomDatabase``: finds a CT's DICOM files (default ``slicer.dicomDatabase``);
        ``launcher``: runs the child process (default ``slicer.util.launchConsoleProcess``);
        ``python``: the Python the child runs in (default PythonSlicer, else this Python);
        ``temporaryFolder``: where temporary output and input folders go (default the system's)."""
        self._dicomDatabase = dicomDatabase
        self.launcher = launcher
        self.python = python or shutil.which("PythonSlicer") or sys.executable
        self.temporaryFolder = temporaryFolder
        self.correctionSession: CorrectionSession | None = None
        self.editedStructures: dict[str, frozenset] = {}  # segmentation node ID -> what the last Finish found changed
        self._background: segmentation_run.BackgroundRun | None = None
        self._progress: Progress | None = None  # a run in this process
        self._correctionLog = None

    @property
    def dicomDatabase(self) -> DicomFileLookup | None:
        return self._dicomDatabase if self._dicomDatabase is not None else default_database()

    # -- structures and model ------------------------------------------------------------------

    @staticmethod
    def structureGroups() -> dict[str, list[str]]:
        """Group name -> structure names, in the catalogue's order."""
        return {group: [s.name for s in members] for group, members in default_catalogue().groups().items()}

    @staticmethod
    def defaultStructures() -> str:
        """The 32 national structures, comma-separated (the default choice)."""
        return ",".join(s.name for s in default_catalogue().core_structures)

    @staticmethod
    def modelCard(modelPath: str = "") -> str:
        """The model card as text (``dkoar model info``); empty ``modelPath``: the demo model."""
        from DKOARSegmentationLib.model.bundle import load_bundle
        from DKOARSegmentationLib.model.card import model_card
        from DKOARSegmentationLib.resources import demo_model_dir

        return model_card(load_bundle(modelPath.strip() or demo_model_dir(), verify=False))

    @staticmethod
    def isDemoModel(modelPath: str) -> bool:
        """Whether a run with ``modelPath`` uses the bundled demonstration model (not for clinical use)."""
        return not (modelPath or "").strip()

    def addCTVolume(self, ct, name: str = "CT", dicomFiles: DicomFileLookup | None = None):
        """A CT loaded by the core (``ct_loader.load_ct``) as a volume node of ``slicer.mrmlScene``,
        marked with its DICOM instances; ``dicomFiles`` (a ``DicomFolderIndex`` of its folder)
        becomes the logic's DICOM lookup, so that runs and exports read and reference the real
        series where there is no DICOM database (the browser station)."""
        from .dicom_source import mark_as_dicom
        from .geometry import add_ct_volume_node

        node = add_ct_volume_node(ct, name)
        mark_as_dicom(node, ct)
        if dicomFiles is not None:
            self._dicomDatabase = dicomFiles
        return node

    # -- running the model -----------------------------------------------------------------------

    @property
    def processRunning(self) -> bool:
        """A run is going on, in a child process or in this one."""
        return self._background is not None or self._progress is not None

    def segmentVolume(self, volumeNode, outputFolder: str = "", modelPath: str = "", device: str = "auto",
                      structures: str = "", onProgress=None):
        """Contour ``volumeNode`` in this process; returns ``(segmentationNode, record)``.

        ``record`` is the run's record (outputs, warnings, seconds, device, model). The outputs go to
        ``outputFolder`` (a new temporary folder when empty); the RTSTRUCT is written only for a CT
        loaded from DICOM. ``modelPath`` empty: the demo model; ``structures``: comma-separated
        names, empty for all. ``cancelSegmentation`` stops it at the next progress check."""
        if self.processRunning:
            raise DKOARError("a segmentation is already running")
        run = segmentation_run.prepare(volumeNode, outputFolder, modelPath, device, structures, self.dicomDatabase,
                                       self.temporaryFolder)
        self._progress = Progress(onProgress)
        try:
            record = segmentation_run.run_here(run, progress=self._progress)
        finally:
            self._progress = None
        return segmentation_run.load_run_result(record, volumeNode), record

    def startSegmentationProcess(self, volumeNode, outputFolder: str = "", modelPath: str = "", device: str = "auto",
                                 onProgress=None, onCompleted=None, structures: str = ""):
        """The same run in a child process; returns at once. ``onProgress(stage, fraction,
        message)`` for each progress line, ``onCompleted(segmentationNode, record, error)`` at the
        end (the node None and ``error`` one sentence when it failed or was cancelled)."""
        if self.processRunning:
            raise DKOARError("a segmentation is already running")
        run = segmentation_run.prepare(volumeNode, outputFolder, modelPath, device, structures, self.dicomDatabase,
                                       self.temporaryFolder)

        def completed(node, record, error):
            self._background = None
            if onCompleted is not None:
                onCompleted(node, record, error)

        launcher = self.launcher or slicer.util.launchConsoleProcess
        module_dir = str(Path(__file__).resolve().parent.parent)  # the Slicer module folder holding the core
        self._background = segmentation_run.start(run, launcher, onProgress, completed, python=self.python,
                                                  module_dir=module_dir)
        return self._background.process

    def cancelSegmentation(self) -> None:
        """Stop the run: end the child's process tree (its completion callback follows), or stop
        the run in this process at its next progress check."""
        if self._background is not None:
            self._background.cancel()
        if self._progress is not None:
            self._progress.cancel()

    def loadResult(self, segNrrdPath, volumeNode):
        """A ``.seg.nrrd`` of the core as a segmentation node beside the volume, named, coloured and
        coded from the catalogue."""
        from .result_loading import load_seg_nrrd

        return load_seg_nrrd(segNrrdPath, volumeNode, name=f"{volumeNode.GetName()} OARs")

    def loadRunFolder(self, runFolder, volumeNode):
        """A run's output folder opened again on its CT: the segmentation with the model's
        provenance and the run's review guidance (``segmentation_run.load_run_folder``)."""
        from .segmentation_run import load_run_folder

        return load_run_folder(runFolder, volumeNode)

    # -- correcting ------------------------------------------------------------------------------

    def getSegmentEditorNode(self):
        """The module's own Segment Editor parameter node (a singleton of the scene)."""
        node = slicer.mrmlScene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.vtkMRMLSegmentEditorNode()
            node.SetSingletonTag(EDITOR_NODE_TAG)
            node.SetName("DKOARSegmentation segment editor")
            node = slicer.mrmlScene.AddNode(node)
        return node

    def startCorrecting(self, segmentationNode, volumeNode, editorNode=None, logPath: str = "", site: str = "",
                        siteKeyPath: str = "", idleCutoffSeconds: float = 30.0, listener=None,
                        deferChecks=None) -> CorrectionSession:
        """Keep the segmentation as the AI baseline and time the edits from now on. With
        ``logPath`` every event goes to that correction log as it happens (see
        ``correction_logging``); ``listener`` is called with each event (a live table);
        ``deferChecks(callback)`` lets the front end show a stroke before it is compared
        (``edit_observer``)."""
        if segmentationNode is None or volumeNode is None:
            raise DKOARError("select the segmentation to correct and its CT")
        if self.correctionSession is not None and self.correctionSession.running:
            raise DKOARError("correcting has already started: press Finish first")
        sink = None
        if logPath:
            self._correctionLog, sink = open_case(logPath, segmentationNode, volumeNode, site, siteKeyPath,
                                                  self.dicomDatabase)
        session = CorrectionSession(segmentationNode, volumeNode, sink, editor_node=editorNode,
                                    idle_cutoff_s=idleCutoffSeconds, defer=deferChecks)
        if listener is not None:
            session.observer.listeners.append(listener)
        session.start()
        self.correctionSession = session
        return session

    def segmentSelected(self, segmentId: str) -> None:
        """For an editor without a Segment Editor node to observe (trame-slicer's): a segment was
        selected. Times the same way as the node's SelectedSegmentID does."""
        if self.correctionSession is not None and self.correctionSession.running:
            self.correctionSession.observer.note_selected(segmentId or "")

    def effectChosen(self, effectName: str) -> None:
        """For an editor without a Segment Editor node to observe: an effect was chosen."""
        if self.correctionSession is not None and self.correctionSession.running:
            self.correctionSession.observer.note_effect(effectName or "")

    def checkEdits(self) -> None:
        """Look for edits not announced by a segmentation event (an editor's own undo that restores
        the segmentation wholesale); each structure found changed makes one edit event."""
        if self.correctionSession is not None and self.correctionSession.running:
            self.correctionSession.observer.check()

    def finishCorrecting(self):
        """Compare every structure with its baseline; returns the CorrectionResult (``changed``: the
        structures written SEMIAUTOMATIC on export), stored in the correction log when one was given."""
        session = self.correctionSession
        if session is None or not session.running:
            raise DKOARError("press Start correcting first")
        try:
            result = session.finish()
        finally:
            self._closeCorrectionLog()
        self.editedStructures[session.segmentation_node.GetID()] = result.changed
        return result

    def _closeCorrectionLog(self) -> None:
        if self._correctionLog is not None:
            self._correctionLog.close()
            self._correctionLog = None

    def shutdown(self) -> None:
        """The scene closes or the module reloads: stop observing (every event is already in the log,
        the case stays unfinished there), close the log, end a run."""
        if self.correctionSession is not None and self.correctionSession.running:
            self.correctionSession.observer.stop()
        self._closeCorrectionLog()
        self.cancelSegmentation()

    # -- review guidance: flags beside the structures, the list of where to look first ----------

    @staticmethod
    def structureFlags(segmentationNode) -> dict:
        """Structure -> its flags' worst severity, icon and sentences (``review_guidance``)."""
        from .review_guidance import structure_flags

        return structure_flags(segmentationNode)

    @staticmethod
    def reviewEntries(segmentationNode) -> list:
        """The ranked (structure, slices) to review first, each with the RAS point to jump to."""
        from .review_guidance import review_entries

        return review_entries(segmentationNode)

    @staticmethod
    def jumpToReviewEntry(entry: dict) -> None:
        from .review_guidance import jump_to

        jump_to(entry["ras"])

    @staticmethod
    def checkAgain(segmentationNode, volumeNode) -> list:
        """The plausibility checks on the segmentation as corrected so far."""
        from .review_guidance import check_again

        return check_again(segmentationNode, volumeNode)

    # -- export ----------------------------------------------------------------------------------

    def exportRTStruct(self, segmentationNode, volumeNode, outputPath: str, edited=None) -> Path:
        """Write the segmentation as an RTSTRUCT on the CT's DICOM series with the core's writer;
        ``edited`` (default: what the last Finish found changed) are written SEMIAUTOMATIC."""
        from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions

        ct, _ = dicom_ct(volumeNode, "an RTSTRUCT", self.dicomDatabase)
        name, version, _ = segmentation_run.model_identity(segmentationNode)
        options = RTStructOptions(label="DKOAR", series_description="DKOAR organs at risk (unapproved)",
                                  model_name=name or "user segmentation", model_version=version,
                                  empty_structures="keep")
        return export_rtstruct(segmentationNode, volumeNode, ct, outputPath, options,
                               edited=self._edited(segmentationNode, edited))

    def exportDicomSeg(self, segmentationNode, volumeNode, outputPath: str, edited=None) -> Path:
        """Write the segmentation as a binary DICOM SEG (coded segments) on the CT's DICOM series."""
        ct, headers = dicom_ct(volumeNode, "a DICOM SEG", self.dicomDatabase, with_headers=True)
        name, version, _ = segmentation_run.model_identity(segmentationNode)
        return export_dicom_seg(segmentationNode, volumeNode, ct, headers, outputPath,
                                model_name=name or "user segmentation", model_version=version,
                                edited=self._edited(segmentationNode, edited))

    def exportSegNrrd(self, segmentationNode, volumeNode, outputPath: str) -> Path:
        """Write the segmentation as a ``.seg.nrrd`` on the CT's grid, with the catalogue's names,
        colours and terminology (the file ``dkoar segment`` writes)."""
        return export_seg_nrrd(segmentationNode, volumeNode, outputPath)

    def exportToNewFolder(self, kind: str, segmentationNode, volumeNode, outputFolder: str = "") -> Path:
        """Export ``kind`` (a key of EXPORTS) into a new time-stamped folder of ``outputFolder`` (a
        temporary folder when empty), so that nothing written before is replaced. Returns the file."""
        if kind not in EXPORTS:
            raise ValueError(f"unknown export {kind!r} ({', '.join(EXPORTS)})")
        import tempfile

        parent = outputFolder.strip() if outputFolder and outputFolder.strip() else \
            tempfile.mkdtemp(prefix="DKOARSegmentation-", dir=self.temporaryFolder)
        from DKOARSegmentationLib.atomic import new_folder_path

        folder = new_folder_path(parent, kind.strip(".").replace(" ", "").replace(".", "-"))
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise DKOARError(f"{folder}: cannot create the export folder ({exc.strerror})") from None
        path = folder / EXPORTS[kind]
        try:
            if kind == "RTSTRUCT":
                return self.exportRTStruct(segmentationNode, volumeNode, str(path))
            if kind == "DICOM SEG":
                return self.exportDicomSeg(segmentationNode, volumeNode, str(path))
            return self.exportSegNrrd(segmentationNode, volumeNode, str(path))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _edited(self, segmentationNode, edited) -> frozenset:
        if edited is None:
            edited = self.editedStructures.get(segmentationNode.GetID(), frozenset())
        return frozenset(edited)


def outputFolderOf(record: dict) -> str:
    """The folder a run wrote its outputs into."""
    return os.path.dirname(str(record["outputs"]["seg_nrrd"]))
