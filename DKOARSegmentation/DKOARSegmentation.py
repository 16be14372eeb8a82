"""DK OAR Segmentation: the 3D Slicer module (thin glue around DKOARSegmentationLib).

Everything that can run without Slicer lives in the core package ``DKOARSegmentationLib``
(the ``dkoar`` command runs the very same code); what needs MRML but no Qt (loading results as
segments with terminology, reading them back, observing edits, the correction session, export)
lives in ``DKOARSegmentationMRML`` and is tested with slicer-core. This file only wires them to
Slicer: a parameter node, the panel, a thin logic, and a self-test that runs inside Slicer. The core
is imported inside methods, so that this file loads (and Slicer can offer to install the Python
packages) before the core's dependencies exist.

Written for Slicer 5.10 and 5.12; calls that need a particular release say so.
"""

import logging
import os
import re
import shutil
import sys
import tempfile
from typing import Annotated

import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import (
    Choice,
    GuiConnector,
    parameterNodeGuiConnector,
    parameterNodeWrapper,
    unannotatedType,
)
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

HOMEPAGE = "https://github.com/dkoar/DKOARSegmentation"

# The core's Python dependencies: pyproject.toml's, except torch, which comes through the PyTorch
# extension so that the build matches the GPU driver (Testing/test_slicer_house.py keeps them equal).
# Note: Slicer 5.10 ships pydicom 2.4, so there pydicom>=3.0 replaces Slicer's own pydicom.
DEPENDENCIES = [
    "numpy>=1.24",
    "scipy>=1.10",
    "scikit-image>=0.21",
    "SimpleITK>=2.3",
    "pydicom>=3.0",
    "slicerio>=1.1",
    "pynrrd>=1.0",
    "matplotlib>=3.7",
    "highdicom>=0.22",
    # compressed DICOM CT (JPEG Lossless, JPEG-LS, JPEG 2000, RLE) through pydicom
    "pylibjpeg>=2.0",
    "pylibjpeg-libjpeg>=2.1",
    "pylibjpeg-openjpeg>=2.3",
    "pylibjpeg-rle>=2.0",
    "psutil>=5.9",  # the CT loader's memory check; Cancel ends the background process tree
]
# Installed with --no-deps, as the Makefile does: nnU-Net's network classes would otherwise pull timm,
# torchvision and a CUDA build of torch that may not match the one the PyTorch extension chose.
NO_DEPS_DEPENDENCIES = [
    "dynamic-network-architectures>=0.4",
]


#
# DKOARSegmentation
#


class DKOARSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DK OAR Segmentation")
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["DKOAR contributors (Danish head and neck radiotherapy centres)"]
        self.parent.helpText = _(
            "Contours the 32 Danish head-and-neck organs at risk on a planning CT with a deep-learning "
            "model (nnU-Net v2 result folder) and writes a DICOM RTSTRUCT, a .seg.nrrd and a NIfTI label map. "
            "Leave the model folder empty to use the bundled model. "
            "<b>Demonstration model: not for clinical use</b> (it was trained on synthetic phantoms only)."
        ) + f' <a href="{HOMEPAGE}">{_("Documentation")}</a>'
        self.parent.acknowledgementText = _(
            "Developed for the Danish head and neck cancer group's national contouring guidelines. "
            "Builds on 3D Slicer, nnU-Net, PyTorch, pydicom and SimpleITK."
        )


#
# Parameters
#


@parameterNodeWrapper
class DKOARSegmentationParameterNode:
    """
    inputVolume - the planning CT.
    modelPath - an nnU-Net v2 result folder; empty means the bundled demonstration model.
    device - where the model runs.
    outputFolder - where the outputs are written; empty means a new temporary folder.
    structures - the structures to contour, comma-separated catalogue names; empty means every
        structure the model provides (the panel fills in the 32 national ones).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputFolder: str = ""
    structures: str = ""


@parameterNodeGuiConnector
class DKOARPathLineEditToStrConnector(GuiConnector):
    """Binds a ctkPathLineEdit to a ``str`` parameter.

    Slicer (5.4 to 5.12) binds a ctkPathLineEdit only to a pathlib.Path parameter, and a Path
    cannot be empty (``Path("")`` is ``.``), while an empty model folder means "the demo model".
    """

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        import ctk

        return type(widget) == ctk.ctkPathLineEdit and unannotatedType(datatype) is str

    @staticmethod
    def create(widget, datatype):
        if DKOARPathLineEditToStrConnector.canRepresent(widget, datatype):
            return DKOARPathLineEditToStrConnector(widget)
        return None

    def __init__(self, widget):
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self):
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> str:
        return self._widget.currentPath

    def write(self, value: str) -> None:
        self._widget.currentPath = value


#
# DKOARSegmentationWidget
#


class DKOARSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    # parameters with no SlicerParameterName widget: bound by hand (a QTreeWidget has no connector)
    HAND_BOUND_PARAMETERS = ("structures",)

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._progress = None  # the core's Progress while a run is going on
        self._updatingTree = False  # the structure tree is being set from the parameter node
        self.segmentEditorWidget = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DKOARSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level widget's mrmlSceneChanged to each MRML widget's setMRMLScene.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DKOARSegmentationLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.progressBar.setVisible(False)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateGui)
        self.ui.startCorrectingButton.connect("clicked(bool)", self.onStartCorrecting)
        self.ui.finishCorrectingButton.connect("clicked(bool)", self.onFinishCorrecting)
        self.ui.exportRTStructButton.connect("clicked(bool)", self.onExportRTStruct)
        self.ui.exportDicomSegButton.connect("clicked(bool)", self.onExportDicomSeg)
        self.ui.exportSegNrrdButton.connect("clicked(bool)", self.onExportSegNrrd)
        self.ui.modelCardButton.connect("clicked(bool)", self.onShowModelCard)
        self._setupStructureTree()
        self._setupSegmentEditor()

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.logic is not None:
            self.logic.shutdown()

    def enter(self) -> None:
        self.initializeParameterNode()
        if self.segmentEditorWidget is not None:
            self.segmentEditorWidget.installKeyboardShortcuts()  # as the Segment Editor module does on enter

    def exit(self) -> None:
        if self.segmentEditorWidget is not None:
            # leaving the module: no effect stays active in the views; timing goes on while correcting
            self.segmentEditorWidget.setActiveEffect(None)
            self.segmentEditorWidget.uninstallKeyboardShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        # closing the scene mid-case: every event is already in the correction log; stop observing
        # and close the log; a background run for the closing scene is ended
        self.logic.shutdown()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.segmentEditorWidget is not None:  # the scene's editor node went with the scene
            self.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.getSegmentEditorNode())
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.structures:
            self._parameterNode.structures = self.logic.defaultStructures()

    #
    # Structures: a tree of the catalogue's groups, each structure checkable, bound by hand to the
    # parameter ``structures`` (a QTreeWidget has no parameterNodeWrapper connector)
    #

    def _setupStructureTree(self) -> None:
        import qt

        tree = self.ui.structuresTreeWidget
        tree.setHeaderHidden(True)
        self._updatingTree = True
        for group, names in self.logic.structureGroups().items():
            parent = qt.QTreeWidgetItem(tree, [group])
            # Qt >= 5.6: a group's check box follows its structures (and sets them all)
            parent.setFlags(parent.flags() | qt.Qt.ItemIsUserCheckable | qt.Qt.ItemIsAutoTristate)
            for name in names:
                child = qt.QTreeWidgetItem(parent, [name])
                child.setFlags(child.flags() | qt.Qt.ItemIsUserCheckable)
                child.setCheckState(0, qt.Qt.Unchecked)
        self._updatingTree = False
        tree.connect("itemChanged(QTreeWidgetItem*,int)", self.onStructureChecked)

    def _structureItems(self):
        tree = self.ui.structuresTreeWidget
        for g in range(tree.topLevelItemCount):
            parent = tree.topLevelItem(g)
            for c in range(parent.childCount()):
                yield parent.child(c)

    def _checkedStructures(self) -> list:
        import qt

        return [i.text(0) for i in self._structureItems() if i.checkState(0) == qt.Qt.Checked]

    def onStructureChecked(self, item=None, column=0) -> None:
        if self._updatingTree or not self._parameterNode:
            return
        self._parameterNode.structures = ",".join(self._checkedStructures())

    def _updateStructureTree(self) -> None:
        import qt

        chosen = set(n.strip() for n in (self._parameterNode.structures or "").split(",")) if self._parameterNode else set()
        # Checking a group checks its structures one by one, each change writing the parameter: the
        # tree already shows that parameter then, and must not be reset while Qt goes on
        if set(self._checkedStructures()) == chosen:
            return
        self._updatingTree = True
        try:
            for item in self._structureItems():
                item.setCheckState(0, qt.Qt.Checked if item.text(0) in chosen else qt.Qt.Unchecked)
        finally:
            self._updatingTree = False

    def onShowModelCard(self) -> None:
        try:
            card = self.logic.modelCard(self._parameterNode.modelPath if self._parameterNode else "")
        except Exception as exc:
            logging.exception("DKOARSegmentation: the model card could not be read")
            self.setStatus(_("The model card could not be read: {error}").format(error=exc), error=True)
            return
        import qt

        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle(_("Model card"))
        box.setIcon(qt.QMessageBox.Information)
        box.setText(card.splitlines()[0])
        box.setDetailedText(card)  # the whole card, one click away in the box
        box.exec_()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with the Qt dynamic property SlicerParameterName are bound (Slicer >= 5.4).
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _updateGui(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        if parameters:
            self._updateStructureTree()
        running = self._progress is not None or (self.logic is not None and self.logic.processRunning)
        canApply = bool(parameters and parameters.inputVolume)
        self.ui.applyButton.enabled = canApply or running
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        if running:
            self.ui.applyButton.toolTip = _("Stop the run at the next step")
        else:
            self.ui.applyButton.toolTip = _("Contour the organs at risk") if canApply else _("Select a planning CT")
        self.ui.demoWarningLabel.setVisible(bool(parameters) and not parameters.modelPath.strip())
        session = self.logic.correctionSession if self.logic else None
        correcting = session is not None and session.running
        haveSegmentation = self.ui.segmentationSelector.currentNode() is not None
        haveVolume = bool(parameters and parameters.inputVolume)
        self.ui.startCorrectingButton.enabled = haveSegmentation and haveVolume and not correcting and not running
        self.ui.finishCorrectingButton.enabled = correcting
        self.ui.segmentationSelector.enabled = not correcting
        canExport = haveSegmentation and haveVolume and not correcting and not running
        for button in (self.ui.exportRTStructButton, self.ui.exportDicomSegButton, self.ui.exportSegNrrdButton):
            button.enabled = canExport

    def setStatus(self, text: str, error: bool = False) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: rgb(200, 0, 0);" if error else "")

    def onProgress(self, stage: str, fraction: float, message: str) -> None:
        """Called by the core (DKOARSegmentationLib.progress.Progress); keeps the panel responsive."""
        self.ui.progressBar.format = f"{stage} %p%"
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message or stage
        slicer.app.processEvents()

    def onApplyButton(self) -> None:
        if self._progress is not None:  # a run is going on: the button cancels it
            self._progress.cancel()
            self.setStatus(_("Cancelling..."))
            return
        if self.logic.processRunning:  # a background run: end its process tree
            self.setStatus(_("Cancelling..."))
            self.logic.cancelSegmentationProcess()
            return
        parameters = self._parameterNode
        self.setStatus(_("Checking the Python packages..."))
        try:
            if not self.ensureDependencies():
                return
        except Exception as exc:
            logging.exception("DKOARSegmentation: dependency installation failed")
            self.setStatus(_("Installing the Python packages failed: {error}").format(error=exc), error=True)
            return
        from DKOARSegmentationLib.errors import DKOARError
        from DKOARSegmentationLib.progress import Progress

        if self.logic.canRunInBackground():  # Slicer >= 5.12
            self.ui.progressBar.value = 0
            self.ui.progressBar.setVisible(True)
            try:
                self.logic.startSegmentationProcess(
                    parameters.inputVolume, parameters.outputFolder, parameters.modelPath, parameters.device,
                    onProgress=self.onBackgroundProgress, onCompleted=self.onBackgroundCompleted,
                    structures=parameters.structures)
            except Exception as exc:
                logging.exception("DKOARSegmentation: could not start the segmentation")
                self.ui.progressBar.setVisible(False)
                self.setStatus(str(exc), error=True)
            self._updateGui()
            return

        self._progress = Progress(self.onProgress)
        self.ui.progressBar.value = 0
        self.ui.progressBar.setVisible(True)
        self._updateGui()
        try:
            segmentationNode, result = self.logic.segmentVolume(
                parameters.inputVolume, parameters.outputFolder, parameters.modelPath, parameters.device,
                progress=self._progress, structures=parameters.structures,
            )
        except DKOARError as exc:  # includes a cancelled run
            self.setStatus(str(exc), error=True)
            return
        except Exception as exc:
            logging.exception("DKOARSegmentation: segmentation failed")
            self.setStatus(_("Unexpected error (details in the Python console): {error}").format(error=exc), error=True)
            return
        finally:
            self._progress = None
            self.ui.progressBar.setVisible(False)
            self._updateGui()

        self._showResult(segmentationNode, {"outputs": result.outputs, "warnings": result.warnings})

    def onBackgroundProgress(self, stage: str, fraction: float, message: str) -> None:
        self.ui.progressBar.format = f"{stage} %p%"
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message or stage

    def onBackgroundCompleted(self, segmentationNode, result, error) -> None:
        self.ui.progressBar.setVisible(False)
        self._updateGui()
        if error:
            self.setStatus(error, error=True)
            return
        self._showResult(segmentationNode, result)

    def _showResult(self, segmentationNode, result: dict) -> None:
        """``result``: the outputs (name -> path) and warnings of the run."""
        parameters = self._parameterNode
        self.ui.segmentationSelector.setCurrentNode(segmentationNode)
        if parameters.modelPath.strip():
            self.ui.modelPathLineEdit.addCurrentPathToHistory()
        if parameters.outputFolder.strip():
            self.ui.outputFolderLineEdit.addCurrentPathToHistory()
        count = segmentationNode.GetSegmentation().GetNumberOfSegments()
        outputs = result["outputs"]
        lines = [_("{count} structures contoured, outputs in {folder}").format(
            count=count, folder=os.path.dirname(str(outputs["seg_nrrd"])))]
        if "rtstruct" in outputs:
            lines.append(_("RTSTRUCT: {path}").format(path=outputs["rtstruct"]))
        lines += [_("Note: {warning}").format(warning=w) for w in result["warnings"]]
        self.setStatus("\n".join(lines))

    #
    # Correcting with the embedded Segment Editor, timed
    #

    def _setupSegmentEditor(self) -> None:
        """The Segment Editor, embedded in the panel, on the module's own editor node (observed for timing)."""
        import qt

        # qMRMLSegmentEditorWidget: Slicer >= 4.10; setSourceVolumeNode (below): Slicer >= 5.2
        self.segmentEditorWidget = slicer.qMRMLSegmentEditorWidget()
        self.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.getSegmentEditorNode())
        self.segmentEditorWidget.setSegmentationNodeSelectorVisible(False)
        self.segmentEditorWidget.setSourceVolumeNodeSelectorVisible(False)
        layout = self.ui.segmentEditorFrame.layout() or qt.QVBoxLayout(self.ui.segmentEditorFrame)
        layout.addWidget(self.segmentEditorWidget)
        self.ui.correctionTimesTable.horizontalHeader().setStretchLastSection(True)

    @staticmethod
    def correctionLogPath() -> str:
        """The correction log: the setting DKOARSegmentation/CorrectionLog, else beside Slicer's settings."""
        path = slicer.util.settingsValue("DKOARSegmentation/CorrectionLog", "")
        if not path:
            path = os.path.join(os.path.dirname(slicer.app.slicerUserSettingsFilePath), "DKOARSegmentation",
                                "corrections.sqlite")
        return path

    def onStartCorrecting(self) -> None:
        from DKOARSegmentationLib.errors import DKOARError

        segmentationNode = self.ui.segmentationSelector.currentNode()
        volumeNode = self._parameterNode.inputVolume if self._parameterNode else None
        self.segmentEditorWidget.setSegmentationNode(segmentationNode)
        self.segmentEditorWidget.setSourceVolumeNode(volumeNode)  # Slicer >= 5.2 (setMasterVolumeNode before)
        idleCutoff = slicer.util.settingsValue("DKOARSegmentation/IdleCutoffSeconds", 30.0, converter=float)
        try:
            self.logic.startCorrecting(
                segmentationNode, volumeNode, editorNode=self.logic.getSegmentEditorNode(),
                logPath=self.correctionLogPath(), site=slicer.util.settingsValue("DKOARSegmentation/Site", ""),
                siteKeyPath=slicer.util.settingsValue("DKOARSegmentation/SiteKey", ""),
                idleCutoffSeconds=idleCutoff, listener=self.onCorrectionEvent)
        except DKOARError as exc:
            self.ui.correctionStatusLabel.text = str(exc)
            return
        except Exception as exc:
            logging.exception("DKOARSegmentation: could not start correcting")
            self.ui.correctionStatusLabel.text = _("Could not start correcting: {error}").format(error=exc)
            return
        self.ui.correctionTimesTable.setRowCount(0)
        self.ui.correctionStatusLabel.text = _("Correcting: edits are timed (log: {path})").format(
            path=self.correctionLogPath())
        self._updateGui()

    def onCorrectionEvent(self, event) -> None:
        """Called by the edit observer for each event: refresh the live table."""
        session = self.logic.correctionSession
        if session is not None:
            self._showTimes(session.live_timing())

    def _showTimes(self, timing, changed=None) -> None:
        import qt

        table = self.ui.correctionTimesTable
        rows = sorted(timing.structures.items(), key=lambda item: (-item[1].active_s, item[0]))
        if changed is not None:  # after Finish: every changed structure, edited through the observer or not
            rows += [(name, None) for name in sorted(changed) if name not in timing.structures]
        table.setRowCount(len(rows))
        for row, (name, t) in enumerate(rows):
            mark = " *" if changed is not None and name in changed else ""
            values = (name + mark, f"{t.active_s:.0f}" if t else "-", str(t.edits) if t else "-")
            for column, text in enumerate(values):
                table.setItem(row, column, qt.QTableWidgetItem(text))

    def onFinishCorrecting(self) -> None:
        try:
            result = self.logic.finishCorrecting()
        except Exception as exc:
            logging.exception("DKOARSegmentation: finishing the correction failed")
            self.ui.correctionStatusLabel.text = _("Finish failed: {error}").format(error=exc)
            self._updateGui()
            return
        self._showTimes(result.timing, result.changed)
        self.ui.correctionStatusLabel.text = _(
            "{changed} structures corrected (marked *, SEMIAUTOMATIC on export), {unchanged} accepted unchanged; "
            "{active:.0f} s of active correction").format(
            changed=len(result.changed), unchanged=len(result.unchanged), active=result.timing.active_s)
        self._updateGui()

    def onExportRTStruct(self) -> None:
        self._export("RTSTRUCT", "rtstruct.dcm", self.logic.exportRTStruct, toDicomDatabase=True)

    def onExportDicomSeg(self) -> None:
        self._export("DICOM SEG", "seg.dcm", self.logic.exportDicomSeg, toDicomDatabase=True)

    def onExportSegNrrd(self) -> None:
        self._export(".seg.nrrd", "segmentation.seg.nrrd", self.logic.exportSegNrrd, toDicomDatabase=False)

    def _export(self, kind: str, fileName: str, write, toDicomDatabase: bool) -> None:
        """Write into a new time-stamped folder of the output folder (a temporary one when none is
        set); DICOM objects also go into Slicer's DICOM database, beside the CT."""
        import time

        segmentationNode = self.ui.segmentationSelector.currentNode()
        volumeNode = self._parameterNode.inputVolume
        folder = self._parameterNode.outputFolder.strip() or slicer.util.tempDirectory("DKOARSegmentation-")
        folder = os.path.join(folder, kind.strip(".").replace(" ", "").replace(".", "-") + "-"
                              + time.strftime("%Y%m%d-%H%M%S"))
        os.makedirs(folder, exist_ok=True)
        try:
            path = write(segmentationNode, volumeNode, os.path.join(folder, fileName))
        except Exception as exc:
            logging.exception(f"DKOARSegmentation: {kind} export failed")
            self.setStatus(_("{kind} export failed: {error}").format(kind=kind, error=exc), error=True)
            return
        if toDicomDatabase:
            try:
                from DICOMLib import DICOMUtils

                DICOMUtils.importDicom(folder)
            except Exception as exc:  # the file is written; the database is a convenience
                logging.warning(f"DKOARSegmentation: the {kind} was not added to the DICOM database: {exc}")
        self.setStatus(_("{kind}: {path}").format(kind=kind, path=path))

    #
    # Dependencies: asked for, never installed silently
    #

    def ensureDependencies(self) -> bool:
        """Install torch (through the PyTorch extension) and the core's packages, asking first."""
        return self._ensureTorch() and self._ensurePythonPackages()

    def _ensureTorch(self) -> bool:
        try:
            import PyTorchUtils  # the PyTorch extension (EXTENSION_DEPENDS "PyTorch")
        except ImportError:
            self.setStatus(
                _("The PyTorch extension is missing: install 'PyTorch' in the Extensions Manager and restart Slicer."),
                error=True,
            )
            return False
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            return True
        # Picks the CUDA build that matches the driver (light-the-torch); shows its own confirmation.
        torch = torchLogic.installTorch(askConfirmation=True)
        if torch is None:
            self.setStatus(_("PyTorch was not installed; it is needed to run the model."), error=True)
            return False
        return True

    def _ensurePythonPackages(self) -> bool:
        try:
            import slicer.packaging  # Slicer >= 5.12
        except ImportError:
            missing = missingRequirements(DEPENDENCIES + NO_DEPS_DEPENDENCIES)
        else:
            try:
                # Slicer >= 5.12: asks the user first, shows progress, offers a restart if needed.
                slicer.packaging.pip_ensure(DEPENDENCIES, requester=_("DK OAR Segmentation"))
            except RuntimeError:  # the user declined
                self.setStatus(_("The Python packages the module needs were not installed."), error=True)
                return False
            missing = missingRequirements(NO_DEPS_DEPENDENCIES)
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
            _("DK OAR Segmentation needs these Python packages:\n{packages}\n\n"
              "Install them now? This can take a few minutes.").format(packages="\n".join(missing)),
        ):
            self.setStatus(_("The Python packages the module needs were not installed."), error=True)
            return False
        # a list is passed to pip one argument per item (Slicer 5.10 and 5.12)
        noDeps = [r for r in missing if r in NO_DEPS_DEPENDENCIES]
        if noDeps:
            slicer.util.pip_install(["--no-deps"] + noDeps)
        plain = [r for r in missing if r not in NO_DEPS_DEPENDENCIES]
        if plain:
            slicer.util.pip_install(plain)
        return True


def missingRequirements(requirements: list[str]) -> list[str]:
    """The requirements that the installed distributions do not satisfy."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        from packaging.requirements import Requirement
    except ImportError:  # no version check without 'packaging': a missing distribution is still caught
        Requirement = None
    missing = []
    for text in requirements:
        name = Requirement(text).name if Requirement else re.split(r"[<>=!~;\[ ]", text, maxsplit=1)[0]
        try:
            installed = version(name)
        except PackageNotFoundError:
            missing.append(text)
            continue
        if Requirement and not Requirement(text).specifier.contains(installed, prereleases=True):
            missing.append(text)
    return missing


#
# DKOARSegmentationLogic
#


class DKOARSegmentationLogic(ScriptedLoadableModuleLogic):
    """Moves a volume node to the core and the core's result back into the scene. No GUI."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.correctionSession = None  # DKOARSegmentationMRML.correction_session.CorrectionSession
        self._process = None  # the background segmentation process (subprocess.Popen) while it runs
        self._processCancelled = False
        self.editedStructures = {}  # segmentation node ID -> structures the last Finish found changed
        self._correctionLog = None

    def getParameterNode(self):
        return DKOARSegmentationParameterNode(super().getParameterNode())

    def segmentVolume(self, volumeNode, outputFolder: str = "", modelPath: str = "", device: str = "auto",
                      progress=None, structures: str = ""):
        """Contour the organs at risk on ``volumeNode``.

        Writes the core's outputs (RTSTRUCT, .seg.nrrd, NIfTI, overview, run.json) to ``outputFolder``
        (a new temporary folder when empty), loads the segmentation into the scene with the volume as
        its reference geometry, beside the volume in the subject hierarchy. ``modelPath`` empty means
        the bundled demonstration model; ``structures`` (comma-separated names) limits the structure
        set, empty means all. ``progress`` is a DKOARSegmentationLib.progress.Progress
        (it reports and cancels). The RTSTRUCT is written only for a volume loaded from DICOM, since it
        must reference the CT series. Returns ``(segmentationNode, runResult)``; raises the core's
        DKOARError for a problem the user can fix.
        """
        from DKOARSegmentationLib.errors import DKOARError
        from DKOARSegmentationLib.pipeline import segment

        if volumeNode is None or volumeNode.GetImageData() is None:
            raise DKOARError("select a planning CT volume that has image data")
        if not outputFolder or not outputFolder.strip():
            outputFolder = slicer.util.tempDirectory("DKOARSegmentation-")
        os.makedirs(outputFolder, exist_ok=True)

        with tempfile.TemporaryDirectory(prefix="DKOAR-input-") as tempDir:
            inputPath = self._coreInput(volumeNode, tempDir)
            logging.info(f"DKOARSegmentation: segmenting {inputPath} into {outputFolder}")
            result = segment(inputPath, outputFolder, model_path=modelPath.strip() or None, device=device,
                             progress=progress, **self._structureSet(structures))

        segmentationNode = self.loadResult(result.outputs["seg_nrrd"], volumeNode)
        # provenance for the correction log and the RTSTRUCT (saved with the scene)
        segmentationNode.SetAttribute("DKOAR.modelName", result.bundle.name)
        segmentationNode.SetAttribute("DKOAR.modelVersion", result.bundle.version)
        try:
            segmentationNode.SetAttribute("DKOAR.modelHash", result.bundle.manifest_sha256)
        except OSError:  # a model folder without a manifest
            pass
        return segmentationNode, result

    @staticmethod
    def structureGroups() -> dict:
        """Group name -> structure names, in the catalogue's order (the panel's tree)."""
        from DKOARSegmentationLib.catalogue import default_catalogue

        return {group: [s.name for s in members] for group, members in default_catalogue().groups().items()}

    @staticmethod
    def defaultStructures() -> str:
        """The 32 national structures, comma-separated (the panel's default choice)."""
        from DKOARSegmentationLib.catalogue import default_catalogue

        return ",".join(s.name for s in default_catalogue().core_structures)

    @staticmethod
    def modelCard(modelPath: str = "") -> str:
        """The model card as text (``dkoar model info``); empty ``modelPath``: the demo model."""
        from DKOARSegmentationLib.model_bundle import load_bundle, model_card
        from DKOARSegmentationLib.resources import demo_model_dir

        return model_card(load_bundle(modelPath.strip() or demo_model_dir(), verify=False))

    @staticmethod
    def _structureSet(structures: str) -> dict:
        """``pipeline.segment``'s catalogue for a comma-separated structure list (none: all)."""
        if not structures or not structures.strip():
            return {}
        from DKOARSegmentationLib.catalogue import default_catalogue
        from DKOARSegmentationLib.site_config import choose_structures, parse_structure_names

        return {"catalogue": choose_structures(default_catalogue(), parse_structure_names(structures))}

    #
    # The same run in a separate process: Slicer stays responsive, Cancel ends the process tree
    #

    @staticmethod
    def canRunInBackground() -> bool:
        """slicer.util.launchConsoleProcess(..., blocking=False) exists from Slicer 5.12."""
        import inspect

        launch = getattr(slicer.util, "launchConsoleProcess", None)
        return launch is not None and "completedCallback" in inspect.signature(launch).parameters

    @property
    def processRunning(self) -> bool:
        return self._process is not None

    def startSegmentationProcess(self, volumeNode, outputFolder: str = "", modelPath: str = "", device: str = "auto",
                                 onProgress=None, onCompleted=None, structures: str = ""):
        """Run the core's pipeline under PythonSlicer (DKOARSegmentationLib.json_run), reading its
        progress as JSON lines; returns at once. ``onProgress(stage, fraction, message)`` is called
        for each progress line, ``onCompleted(segmentationNode, result, error)`` at the end (the node
        is None and ``error`` a message when it failed or was cancelled). Slicer >= 5.12."""
        from DKOARSegmentationLib.errors import DKOARError
        from DKOARSegmentationLib.json_run import parse_line

        if self._process is not None:
            raise DKOARError("a segmentation is already running")
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise DKOARError("select a planning CT volume that has image data")
        self._structureSet(structures)  # an unknown structure name is refused before anything starts
        if not outputFolder or not outputFolder.strip():
            outputFolder = slicer.util.tempDirectory("DKOARSegmentation-")
        os.makedirs(outputFolder, exist_ok=True)
        inputDir = tempfile.mkdtemp(prefix="DKOAR-input-")
        try:
            inputPath = self._coreInput(volumeNode, inputDir)
        except BaseException:
            shutil.rmtree(inputDir, ignore_errors=True)
            raise
        # PythonSlicer: Slicer's Python with Slicer's packages (the launcher sets up its environment)
        args = [shutil.which("PythonSlicer") or sys.executable, "-m", "DKOARSegmentationLib.json_run",
                inputPath, "--out", outputFolder, "--device", device]
        if modelPath and modelPath.strip():
            args += ["--model", modelPath.strip()]
        if structures and structures.strip():
            args += ["--structures", structures.strip()]
        moduleDir = os.path.dirname(os.path.abspath(__file__))  # where DKOARSegmentationLib is
        environment = {"PYTHONPATH": os.pathsep.join(p for p in (moduleDir, os.environ.get("PYTHONPATH", "")) if p),
                       "PYTHONUNBUFFERED": "1"}
        state = {"result": None, "error": None}

        def onLine(line):
            message = parse_line(line)
            if message is None:
                logging.info(f"DKOARSegmentation: {line}")
            elif "error" in message:
                state["error"] = message["error"]
            elif "result" in message:
                state["result"] = message["result"]
            elif onProgress is not None:
                onProgress(message.get("stage", ""), float(message.get("progress", 0.0)), message.get("message", ""))

        def onDone(returnCode):
            shutil.rmtree(inputDir, ignore_errors=True)
            self._process = None
            segmentationNode, error = None, state["error"]
            if self._processCancelled:
                error = "cancelled by the user"
            elif returnCode == 0 and state["result"]:
                try:
                    segmentationNode = self.loadResult(state["result"]["outputs"]["seg_nrrd"], volumeNode)
                    model = state["result"].get("model", {})
                    segmentationNode.SetAttribute("DKOAR.modelName", model.get("name", ""))
                    segmentationNode.SetAttribute("DKOAR.modelVersion", model.get("version", ""))
                    segmentationNode.SetAttribute("DKOAR.modelHash", model.get("sha256", ""))
                except Exception as exc:
                    logging.exception("DKOARSegmentation: loading the result failed")
                    error = f"the result could not be loaded: {exc}"
            elif error is None:
                error = f"the segmentation process failed (exit code {returnCode}); details in the log"
            if onCompleted is not None:
                onCompleted(segmentationNode, state["result"], error)

        self._processCancelled = False
        # Slicer >= 5.12: blocking=False reads the output in a thread and calls back on the main thread
        self._process = slicer.util.launchConsoleProcess(args, updateEnvironment=environment, blocking=False,
                                                         logCallback=onLine, completedCallback=onDone)
        return self._process

    def shutdown(self) -> None:
        """Slicer closes or the module reloads: stop observing (every event is already in the log,
        the case stays unfinished there), close the log, end a background run."""
        if self.correctionSession is not None and self.correctionSession.running:
            self.correctionSession.observer.stop()
        if self._correctionLog is not None:
            self._correctionLog.close()
            self._correctionLog = None
        self.cancelSegmentationProcess()

    def cancelSegmentationProcess(self) -> None:
        """End the background process and every process it started (onCompleted still follows)."""
        from DKOARSegmentationLib.json_run import end_process_tree

        if self._process is not None:
            self._processCancelled = True
            end_process_tree(self._process.pid)

    @staticmethod
    def loadResult(segNrrdPath, volumeNode):
        """The core's .seg.nrrd as one segmentation node: a segment per structure, named, coloured and
        coded from the catalogue, the volume as reference geometry, under the volume's study."""
        from DKOARSegmentationMRML.result_loading import load_seg_nrrd

        return load_seg_nrrd(segNrrdPath, volumeNode, name=f"{volumeNode.GetName()} OARs")

    #
    # Correcting: the AI result as baseline, edits timed, the changed structures found
    #

    def getSegmentEditorNode(self):
        """The module's own Segment Editor parameter node (a singleton of the scene)."""
        node = slicer.mrmlScene.GetSingletonNode("DKOARSegmentation", "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.vtkMRMLSegmentEditorNode()
            node.SetSingletonTag("DKOARSegmentation")
            node.SetName("DKOARSegmentation segment editor")
            node = slicer.mrmlScene.AddNode(node)
        return node

    def startCorrecting(self, segmentationNode, volumeNode, editorNode=None, logPath: str = "", site: str = "",
                        siteKeyPath: str = "", idleCutoffSeconds: float = 30.0, listener=None):
        """Keep the segmentation as the AI baseline and time the edits from now on.

        With ``logPath`` the events go to that correction log (SQLite) as they happen; patient and
        study are logged as keyed pseudonyms when a site key file is given (``siteKeyPath`` or the
        environment variable DKOAR_SITE_KEY), never in clear. ``listener``
        is called with each DKOARSegmentationLib.correction_timing.EditorEvent (for a live table).
        Returns the DKOARSegmentationMRML.correction_session.CorrectionSession.
        """
        from DKOARSegmentationLib.errors import DKOARError
        from DKOARSegmentationMRML.correction_session import CorrectionSession

        if segmentationNode is None or volumeNode is None:
            raise DKOARError("select the segmentation to correct and its CT")
        if self.correctionSession is not None and self.correctionSession.running:
            raise DKOARError("correcting has already started: press Finish first")
        sink = self._openCorrectionLog(logPath, segmentationNode, volumeNode, site, siteKeyPath) if logPath else None
        session = CorrectionSession(segmentationNode, volumeNode, sink, editor_node=editorNode,
                                    idle_cutoff_s=idleCutoffSeconds)
        if listener is not None:
            session.observer.listeners.append(listener)
        session.start()
        self.correctionSession = session
        return session

    def finishCorrecting(self):
        """Compare every structure with its baseline; returns the CorrectionResult (``changed``: the
        structures to write SEMIAUTOMATIC), stored in the correction log when one was given."""
        from DKOARSegmentationLib.errors import DKOARError

        session = self.correctionSession
        if session is None or not session.running:
            raise DKOARError("press Start correcting first")
        try:
            result = session.finish()
        finally:
            if self._correctionLog is not None:
                self._correctionLog.close()
                self._correctionLog = None
        self.editedStructures[session.segmentation_node.GetID()] = result.changed
        return result

    def _openCorrectionLog(self, logPath: str, segmentationNode, volumeNode, site: str, siteKeyPath: str):
        from DKOARSegmentationLib.case_entry import case_keys, ct_properties
        from DKOARSegmentationLib.correction_log import open_log
        from DKOARSegmentationLib.errors import DKOARError
        from DKOARSegmentationLib.pseudonym import key_path_from, load_site_key
        from DKOARSegmentationMRML.correction_log_sink import CorrectionLogSink

        ct = self._dicomHeaderVolume(volumeNode)
        log = open_log(logPath)
        try:
            patientKey = studyKey = None
            try:
                key = load_site_key(key_path_from(siteKeyPath or None))
            except DKOARError as exc:  # no site key configured: the case is logged without patient/study keys
                logging.warning(f"DKOARSegmentation: {exc}")
            else:
                log.check_site_key(key.fingerprint)
                patientKey, studyKey = case_keys(ct, key)
            caseId = log.start_case(site=site, model_name=segmentationNode.GetAttribute("DKOAR.modelName") or "",
                                    model_version=segmentationNode.GetAttribute("DKOAR.modelVersion") or "",
                                    model_hash=segmentationNode.GetAttribute("DKOAR.modelHash") or "",
                                    patient_key=patientKey, study_key=studyKey, ct=ct_properties(ct))
        except BaseException:
            log.close()
            raise
        self._correctionLog = log
        return CorrectionLogSink(log, caseId)

    @staticmethod
    def _dicomHeaderVolume(volumeNode):
        """The CT's geometry and, when it came from DICOM, its first slice's header (no pixels), as a
        core Volume: enough for the log's CT properties and pseudonyms, without loading the series."""
        import numpy as np

        from DKOARSegmentationLib.volume import DicomSeriesInfo, Volume
        from DKOARSegmentationMRML.geometry import volume_node_affine_lps

        dicom = None
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if uids and database:
            path = database.fileForInstance(uids[0])
            if path and os.path.isfile(path):
                import pydicom

                dicom = DicomSeriesInfo(pydicom.dcmread(path, stop_before_pixels=True), ())
        return Volume(np.zeros((1, 1, 1), dtype=np.int16), volume_node_affine_lps(volumeNode), dicom)

    #
    # Export
    #

    def exportRTStruct(self, segmentationNode, volumeNode, outputPath: str, edited=None):
        """Write the segmentation as an RTSTRUCT with the core's writer (the command line's), on the
        CT's DICOM series. ``edited`` (default: what the last Finish found changed) are written
        SEMIAUTOMATIC. Returns the path."""
        from DKOARSegmentationLib.rtstruct_writer import RTStructOptions
        from DKOARSegmentationMRML.export import export_rtstruct

        ct, _ = self._dicomCT(volumeNode, "an RTSTRUCT", withHeaders=False)
        name, version = self._algorithm(segmentationNode)
        options = RTStructOptions(label="DKOAR", series_description="DKOAR organs at risk (unapproved)",
                                  model_name=name, model_version=version, empty_structures="keep")
        return export_rtstruct(segmentationNode, volumeNode, ct, outputPath, options,
                               edited=self._edited(segmentationNode, edited))

    def exportDicomSeg(self, segmentationNode, volumeNode, outputPath: str, edited=None):
        """Write the segmentation as a binary DICOM SEG (highdicom, coded segments) on the CT's
        DICOM series, with the core's writer (``dkoar export-seg``'s). Returns the path."""
        from DKOARSegmentationMRML.export import export_dicom_seg

        ct, headers = self._dicomCT(volumeNode, "a DICOM SEG", withHeaders=True)
        name, version = self._algorithm(segmentationNode)
        return export_dicom_seg(segmentationNode, volumeNode, ct, headers, outputPath, model_name=name,
                                model_version=version, edited=self._edited(segmentationNode, edited))

    def exportSegNrrd(self, segmentationNode, volumeNode, outputPath: str):
        """Write the segmentation as a ``.seg.nrrd`` on the CT volume's grid, with the catalogue's
        names, colours and terminology (the file ``dkoar segment`` writes). Returns the path."""
        from DKOARSegmentationMRML.export import export_seg_nrrd

        return export_seg_nrrd(segmentationNode, volumeNode, outputPath)

    def _edited(self, segmentationNode, edited) -> frozenset:
        if edited is None:  # what the last Finish found changed
            edited = self.editedStructures.get(segmentationNode.GetID(), frozenset())
        return frozenset(edited)

    @staticmethod
    def _algorithm(segmentationNode) -> tuple[str, str]:
        return (segmentationNode.GetAttribute("DKOAR.modelName") or "user segmentation",
                segmentationNode.GetAttribute("DKOAR.modelVersion") or "")

    def _dicomCT(self, volumeNode, what: str, withHeaders: bool):
        """The CT volume's DICOM series as the core's Volume (and, ``withHeaders``, its slice
        headers in k order); refused with a clear message when the volume was not loaded from DICOM."""
        from DKOARSegmentationLib.ct_loader import load_ct
        from DKOARSegmentationLib.dicom_seg import read_source_datasets
        from DKOARSegmentationLib.errors import DKOARError

        with tempfile.TemporaryDirectory(prefix="DKOAR-export-") as tempDir:
            inputPath = self._coreInput(volumeNode, tempDir)
            if not os.path.isdir(inputPath):
                raise DKOARError(f"{what} references the DICOM CT it was drawn on: load the CT from DICOM")
            ct = load_ct(inputPath)
            headers = read_source_datasets(inputPath, ct) if withHeaders else None
        return ct, headers

    @staticmethod
    def _coreInput(volumeNode, tempDir: str) -> str:
        """The CT as the core reads it: its DICOM files when it was loaded from DICOM (so that the
        RTSTRUCT references the real CT series), else a temporary NRRD.

        The NRRD is written with a storage node of its own rather than slicer.util.saveNode, which
        would point the volume's storage node at the temporary file.
        """
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if uids and database:
            files = [database.fileForInstance(uid) for uid in uids]
            if all(f and os.path.isfile(f) for f in files):
                dicomDir = os.path.join(tempDir, "dicom")
                os.makedirs(dicomDir)
                for n, f in enumerate(files):
                    shutil.copyfile(f, os.path.join(dicomDir, f"{n:05d}.dcm"))
                return dicomDir
        path = os.path.join(tempDir, "ct.nrrd")
        storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storageNode.SetFileName(path)
        storageNode.UseCompressionOff()
        if not storageNode.WriteData(volumeNode):
            raise RuntimeError(f"could not write the volume to {path}")
        return path


#
# DKOARSegmentationTest
#


class DKOARSegmentationTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer only (Reload and Test, or ctest through slicer_add_python_unittest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentPhantomDicom()
        self.setUp()
        self.test_SegmentPhantomArray()
        self.setUp()
        self.test_CorrectAndExport()

    @staticmethod
    def _smallGrid():
        from DKOARSegmentationLib.phantom import PhantomGrid

        return PhantomGrid(matrix=128, pixel_mm=2.0, slice_mm=3.0)

    def _checkSegmentation(self, segmentationNode, result):
        from DKOARSegmentationLib.catalogue import default_catalogue

        for key in ("seg_nrrd", "labels_nifti", "run_json"):
            self.assertTrue(os.path.isfile(result.outputs[key]), key)
        segmentation = segmentationNode.GetSegmentation()
        names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
        self.assertTrue(names, "no structure was contoured")
        self.assertTrue(names <= {s.name for s in default_catalogue()}, names)
        referenceGeometry = segmentation.GetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
        self.assertTrue(referenceGeometry, "the segmentation has no reference geometry")

    def test_SegmentPhantomDicom(self):
        """A CT loaded from DICOM: the RTSTRUCT is written."""
        from DICOMLib import DICOMUtils

        from DKOARSegmentationLib.phantom import write_phantom

        self.delayDisplay("Writing a small synthetic head phantom as a DICOM CT series")
        phantomDir = slicer.util.tempDirectory("DKOARSegmentationTestPhantom-")
        phantom = write_phantom(phantomDir, seed=7, position="HFS", grid=self._smallGrid())
        with DICOMUtils.TemporaryDICOMDatabase() as database:
            DICOMUtils.importDicom(os.path.join(phantomDir, "ct"), database)
            nodeIDs = DICOMUtils.loadSeriesByUID([phantom.ct.dicom.series_instance_uid])
            self.assertEqual(len(nodeIDs), 1)
            volumeNode = slicer.mrmlScene.GetNodeByID(nodeIDs[0])

            self.delayDisplay("Contouring with the demonstration model")
            outputFolder = slicer.util.tempDirectory("DKOARSegmentationTest-")
            segmentationNode, result = DKOARSegmentationLogic().segmentVolume(volumeNode, outputFolder, "", "cpu")
        self._checkSegmentation(segmentationNode, result)
        self.assertTrue(os.path.isfile(result.outputs["rtstruct"]))
        self.delayDisplay("DICOM test passed")

    def test_SegmentPhantomArray(self):
        """A volume that did not come from DICOM: everything but the RTSTRUCT, and a note saying why."""
        import numpy as np

        from DKOARSegmentationLib.phantom import generate_phantom

        phantom = generate_phantom(seed=8, position="HFS", grid=self._smallGrid())
        lpsToRas = np.diag([-1.0, -1.0, 1.0, 1.0])
        volumeNode = slicer.util.addVolumeFromArray(
            phantom.ct.voxels, ijkToRAS=lpsToRas @ phantom.ct.affine, name="DKOAR phantom CT"
        )
        self.delayDisplay("Contouring a volume without DICOM references")
        outputFolder = slicer.util.tempDirectory("DKOARSegmentationTest-")
        segmentationNode, result = DKOARSegmentationLogic().segmentVolume(volumeNode, outputFolder, "", "cpu")
        self._checkSegmentation(segmentationNode, result)
        self.assertNotIn("rtstruct", result.outputs)
        self.assertTrue(any("RTSTRUCT" in w for w in result.warnings), result.warnings)
        self.delayDisplay("Array test passed")

    def test_CorrectAndExport(self):
        """End to end on a small DICOM phantom: the demo model on CPU, Dice against the truth, one
        simulated correction, Finish, the correction log entry, the RTSTRUCT export."""
        import numpy as np
        import pydicom
        from DICOMLib import DICOMUtils
        from scipy import ndimage

        from DKOARSegmentationLib.catalogue import default_catalogue
        from DKOARSegmentationLib.correction_log import open_log
        from DKOARSegmentationLib.metrics import dice_per_structure
        from DKOARSegmentationLib.phantom import write_phantom
        from DKOARSegmentationMRML.readback import segmentation_to_core
        from DKOARSegmentationMRML.terminology import segment_codes

        catalogue = default_catalogue()
        phantomDir = slicer.util.tempDirectory("DKOARSegmentationTestPhantom-")
        phantom = write_phantom(phantomDir, seed=9, position="HFS", grid=self._smallGrid())
        with DICOMUtils.TemporaryDICOMDatabase() as database:
            DICOMUtils.importDicom(os.path.join(phantomDir, "ct"), database)
            volumeNode = slicer.mrmlScene.GetNodeByID(DICOMUtils.loadSeriesByUID([phantom.ct.dicom.series_instance_uid])[0])
            outputFolder = slicer.util.tempDirectory("DKOARSegmentationTest-")
            logic = DKOARSegmentationLogic()
            self.delayDisplay("Contouring with the demonstration model on CPU")
            segmentationNode, _result = logic.segmentVolume(volumeNode, outputFolder, "", "cpu")

            segmentation = segmentationNode.GetSegmentation()
            parotid = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Parotid_L"))
            self.assertEqual(segment_codes(parotid).modifier, catalogue.by_name("Parotid_L").modifier)
            contoured = segmentation_to_core(segmentationNode, volumeNode, catalogue)
            dice = dice_per_structure(contoured.labels, phantom.truth.labels, catalogue.core_structures)
            meanDice = float(np.mean(list(dice.values())))
            logging.info(f"DKOARSegmentationTest: mean Dice of the demo model {meanDice:.3f}")
            self.assertGreater(meanDice, 0.5)

            self.delayDisplay("Correcting one structure")
            logPath = os.path.join(outputFolder, "corrections.sqlite")
            logic.startCorrecting(segmentationNode, volumeNode, logPath=logPath)
            segmentId = segmentation.GetSegmentIdBySegmentName("Parotid_L")
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
            grown = ndimage.binary_dilation(mask > 0, iterations=2).astype(np.uint8)
            slicer.util.updateSegmentBinaryLabelmapFromArray(grown, segmentationNode, segmentId, volumeNode)
            correction = logic.finishCorrecting()
            self.assertEqual(correction.changed, {"Parotid_L"})
            with open_log(logPath) as log:
                case = log.cases()[-1]
                self.assertTrue(case["finished_at"])
                rows = log.structure_results(case["case_id"])
                self.assertEqual(rows["Parotid_L"]["unchanged"], 0)
                self.assertEqual(rows["Parotid_L"]["edits"], 1)

            self.delayDisplay("Exporting the RTSTRUCT")
            path = logic.exportRTStruct(segmentationNode, volumeNode, os.path.join(outputFolder, "corrected.dcm"))
            ds = pydicom.dcmread(path)
            semiautomatic = {roi.ROIName for roi in ds.StructureSetROISequence
                             if roi.ROIGenerationAlgorithm == "SEMIAUTOMATIC"}
            self.assertEqual(semiautomatic, {"Parotid_L"})
        self.delayDisplay("Correction and export test passed")
