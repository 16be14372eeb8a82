"""DK OAR Segmentation: the 3D Slicer module, the Qt front end of DKOARSegmentationMRML's logic.

The core (``DKOARSegmentationLib``: no Slicer) does the work and is the ``dkoar`` command line;
``DKOARSegmentationMRML.logic.SegmentationLogic`` (MRML, no Qt) runs, loads, times corrections and
exports for this panel and the browser station alike; ``DKOARSegmentationQt`` holds larger sections.
The core is imported on first use, so that this file loads (and offers to install the Python
packages) before the core's dependencies exist.

Needs Slicer 5.12 or newer (``slicer.packaging``, ``launchConsoleProcess(blocking=False)``,
pydicom 3 in Slicer's Python).
"""

import logging
import os
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

HOMEPAGE = "https://github.com/dkoar/DKOARSegmentation"
MINIMUM_SLICER = (5, 12)

# The core's Python dependencies: pyproject.toml's, except torch, which comes through the PyTorch
# extension so that the build matches the GPU driver (Testing/test_slicer_house.py keeps them equal).
DEPENDENCIES = [
    "numpy>=1.24", "scipy>=1.10", "scikit-image>=0.21", "SimpleITK>=2.3", "pydicom>=3.0", "slicerio>=1.1",
    "pynrrd>=1.0", "matplotlib>=3.7", "highdicom>=0.22",
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
# Slicer settings the panel reads (Edit > Application Settings, or slicer.app.settings())
SETTING_LOG = "DKOARSegmentation/CorrectionLog"  # the correction log; default beside Slicer's settings
SETTING_SITE = "DKOARSegmentation/Site"  # the site's name in the log
SETTING_SITE_KEY = "DKOARSegmentation/SiteKey"  # the site key file (else DKOAR_SITE_KEY)
SETTING_IDLE_CUTOFF = "DKOARSegmentation/IdleCutoffSeconds"  # pauses longer than this are not timed (30)


def slicerIsRecentEnough() -> bool:
    return (int(slicer.app.majorVersion), int(slicer.app.minorVersion)) >= MINIMUM_SLICER


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


class DKOARSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    # parameters bound by hand: a QTreeWidget has no connector, and Slicer binds a ctkPathLineEdit only
    # to a pathlib.Path, which cannot be empty (an empty model folder means the demo model)
    HAND_BOUND_PARAMETERS = ("structures", "modelPath", "outputFolder")

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingGui = False  # widgets are being set from the parameter node
        self.segmentEditorWidget = None

    @property
    def shared(self):
        """The logic shared with the browser station (DKOARSegmentationMRML.logic.SegmentationLogic)."""
        return self.logic.shared

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DKOARSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level widget's mrmlSceneChanged to each MRML widget's setMRMLScene.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DKOARSegmentationLogic()
        if not slicerIsRecentEnough():
            self.ui.applyButton.enabled = False
            self.setStatus(_("DK OAR Segmentation needs Slicer {version} or newer.").format(
                version=".".join(map(str, MINIMUM_SLICER))), error=True)
            return

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.progressBar.setVisible(False)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateGui)
        self.ui.startCorrectingButton.connect("clicked(bool)", self.onStartCorrecting)
        self.ui.finishCorrectingButton.connect("clicked(bool)", self.onFinishCorrecting)
        self.ui.exportRTStructButton.connect("clicked(bool)", lambda: self.onExport("RTSTRUCT", True))
        self.ui.exportDicomSegButton.connect("clicked(bool)", lambda: self.onExport("DICOM SEG", True))
        self.ui.exportSegNrrdButton.connect("clicked(bool)", lambda: self.onExport(".seg.nrrd", False))
        self.ui.modelCardButton.connect("clicked(bool)", self.onShowModelCard)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onPathChanged)
        self.ui.outputFolderLineEdit.connect("currentPathChanged(QString)", self.onPathChanged)
        self._setupStructureTree()
        self._setupSegmentEditor()
        from DKOARSegmentationQt.practice_section import PracticeSection
        from DKOARSegmentationQt.review_section import ReviewSection

        self.practiceSection = PracticeSection(self)  # trainee mode: its own .ui, logic in DKOARSegmentationMRML
        self.reviewSection = ReviewSection(self.layout, self.shared, self.ui.structuresTreeWidget)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: self.reviewSection.show(
            node, self._parameterNode.inputVolume if self._parameterNode else None))
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Reload or exit: unbind the parameter node from the widgets (they are deleted next), stop
        observing, close the log and end a run."""
        self.setParameterNode(None)
        self.removeObservers()
        if self.logic is not None and self.logic.hasShared:
            self.shared.shutdown()

    def enter(self) -> None:
        self.initializeParameterNode()
        if self.segmentEditorWidget is not None:
            self.segmentEditorWidget.installKeyboardShortcuts()  # as the Segment Editor module does on enter

    def exit(self) -> None:
        if self.segmentEditorWidget is not None:
            # leaving the module: no effect stays active in the views; timing goes on while correcting
            self.segmentEditorWidget.setActiveEffect(None)
            self.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        # every correction event is already in the log; stop observing, close it, end a run
        self.shared.shutdown()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.segmentEditorWidget is not None:  # the scene's editor node went with the scene
            self.segmentEditorWidget.setMRMLSegmentEditorNode(self.shared.getSegmentEditorNode())
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.structures:
            self._parameterNode.structures = self.shared.defaultStructures()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with the Qt dynamic property SlicerParameterName are bound (Slicer >= 5.4).
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    # -- the parameters bound by hand ----------------------------------------------------------

    def _setupStructureTree(self) -> None:
        """A tree of the catalogue's anatomical groups, each structure checkable."""
        import qt

        tree = self.ui.structuresTreeWidget
        tree.setHeaderHidden(True)
        self._updatingGui = True
        for group, names in self.shared.structureGroups().items():
            parent = qt.QTreeWidgetItem(tree, [group])
            # Qt >= 5.6: a group's check box follows its structures (and sets them all)
            parent.setFlags(parent.flags() | qt.Qt.ItemIsUserCheckable | qt.Qt.ItemIsAutoTristate)
            for name in names:
                child = qt.QTreeWidgetItem(parent, [name])
                child.setFlags(child.flags() | qt.Qt.ItemIsUserCheckable)
                child.setCheckState(0, qt.Qt.Unchecked)
        self._updatingGui = False
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
        if self._updatingGui or not self._parameterNode:
            return
        self._parameterNode.structures = ",".join(self._checkedStructures())

    def onPathChanged(self, path=None) -> None:
        if self._updatingGui or not self._parameterNode:
            return
        self._parameterNode.modelPath = self.ui.modelPathLineEdit.currentPath
        self._parameterNode.outputFolder = self.ui.outputFolderLineEdit.currentPath

    def _updateHandBoundWidgets(self) -> None:
        import qt

        parameters = self._parameterNode
        chosen = {n.strip() for n in (parameters.structures or "").split(",")}
        self._updatingGui = True
        try:
            # Checking a group checks its structures one by one, each change writing the parameter:
            # the tree already shows the parameter then, and must not be reset while Qt goes on
            if set(self._checkedStructures()) != chosen:
                for item in self._structureItems():
                    item.setCheckState(0, qt.Qt.Checked if item.text(0) in chosen else qt.Qt.Unchecked)
            for lineEdit, value in ((self.ui.modelPathLineEdit, parameters.modelPath),
                                    (self.ui.outputFolderLineEdit, parameters.outputFolder)):
                if lineEdit.currentPath != value:
                    lineEdit.currentPath = value
        finally:
            self._updatingGui = False

    # -- the state of the panel ------------------------------------------------------------------

    def _updateGui(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        if parameters:
            self._updateHandBoundWidgets()
        running = self.logic is not None and self.logic.hasShared and self.shared.processRunning
        canApply = bool(parameters and parameters.inputVolume)
        self.ui.applyButton.enabled = canApply or running
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        if running:
            self.ui.applyButton.toolTip = _("Stop the run")
        else:
            self.ui.applyButton.toolTip = _("Contour the organs at risk") if canApply else _("Select a planning CT")
        self.ui.demoWarningLabel.setVisible(bool(parameters) and self.shared.isDemoModel(parameters.modelPath))
        session = self.shared.correctionSession if self.logic is not None and self.logic.hasShared else None
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

    def onShowModelCard(self) -> None:
        try:
            card = self.shared.modelCard(self._parameterNode.modelPath if self._parameterNode else "")
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

    # -- running the model, in a child process ---------------------------------------------------

    def onApplyButton(self) -> None:
        if self.logic.hasShared and self.shared.processRunning:  # the button cancels the run
            self.setStatus(_("Cancelling..."))
            self.shared.cancelSegmentation()
            return
        self.setStatus(_("Checking the Python packages..."))
        try:
            if not self.ensureDependencies():
                return
        except Exception as exc:
            logging.exception("DKOARSegmentation: dependency installation failed")
            self.setStatus(_("Installing the Python packages failed: {error}").format(error=exc), error=True)
            return
        from DKOARSegmentationLib.errors import DKOARError

        parameters = self._parameterNode
        self.ui.progressBar.value = 0
        self.ui.progressBar.setVisible(True)
        try:
            self.shared.startSegmentationProcess(
                parameters.inputVolume, parameters.outputFolder, parameters.modelPath, parameters.device,
                onProgress=self.onProgress, onCompleted=self.onCompleted, structures=parameters.structures)
        except DKOARError as exc:
            self.ui.progressBar.setVisible(False)
            self.setStatus(str(exc), error=True)
        except Exception as exc:
            logging.exception("DKOARSegmentation: could not start the segmentation")
            self.ui.progressBar.setVisible(False)
            self.setStatus(_("Could not start (details in the Python console): {error}").format(error=exc), error=True)
        self._updateGui()

    def onProgress(self, stage: str, fraction: float, message: str) -> None:
        self.ui.progressBar.format = f"{stage} %p%"
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message or stage

    def onCompleted(self, segmentationNode, record, error) -> None:
        self.ui.progressBar.setVisible(False)
        self._updateGui()
        if error:
            self.setStatus(error, error=True)
            return
        self.ui.segmentationSelector.setCurrentNode(segmentationNode)
        self.reviewSection.show(segmentationNode, self._parameterNode.inputVolume)
        if self._parameterNode.modelPath.strip():
            self.ui.modelPathLineEdit.addCurrentPathToHistory()
        if self._parameterNode.outputFolder.strip():
            self.ui.outputFolderLineEdit.addCurrentPathToHistory()
        from DKOARSegmentationMRML.logic import outputFolderOf

        count = segmentationNode.GetSegmentation().GetNumberOfSegments()
        lines = [_("{count} structures contoured, outputs in {folder}").format(
            count=count, folder=outputFolderOf(record))]
        if "rtstruct" in record["outputs"]:
            lines.append(_("RTSTRUCT: {path}").format(path=record["outputs"]["rtstruct"]))
        lines += [_("Note: {warning}").format(warning=w) for w in record["warnings"]]
        self.setStatus("\n".join(lines))

    # -- correcting with the embedded Segment Editor, timed -------------------------------------

    def _setupSegmentEditor(self) -> None:
        """The Segment Editor, embedded in the panel, on the module's own editor node (observed for timing)."""
        import qt

        self.segmentEditorWidget = slicer.qMRMLSegmentEditorWidget()
        self.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.segmentEditorWidget.setMRMLSegmentEditorNode(self.shared.getSegmentEditorNode())
        self.segmentEditorWidget.setSegmentationNodeSelectorVisible(False)
        self.segmentEditorWidget.setSourceVolumeNodeSelectorVisible(False)
        layout = self.ui.segmentEditorFrame.layout() or qt.QVBoxLayout(self.ui.segmentEditorFrame)
        layout.addWidget(self.segmentEditorWidget)
        self.ui.correctionTimesTable.horizontalHeader().setStretchLastSection(True)

    @staticmethod
    def correctionLogPath() -> str:
        path = slicer.util.settingsValue(SETTING_LOG, "")
        if not path:
            path = os.path.join(os.path.dirname(slicer.app.slicerUserSettingsFilePath), "DKOARSegmentation",
                                "corrections.sqlite")
        return path

    def onStartCorrecting(self) -> None:
        from DKOARSegmentationLib.errors import DKOARError

        segmentationNode = self.ui.segmentationSelector.currentNode()
        volumeNode = self._parameterNode.inputVolume if self._parameterNode else None
        self.segmentEditorWidget.setSegmentationNode(segmentationNode)
        self.segmentEditorWidget.setSourceVolumeNode(volumeNode)
        try:
            self.shared.startCorrecting(
                segmentationNode, volumeNode, editorNode=self.shared.getSegmentEditorNode(),
                logPath=self.correctionLogPath(), site=slicer.util.settingsValue(SETTING_SITE, ""),
                siteKeyPath=slicer.util.settingsValue(SETTING_SITE_KEY, ""),
                idleCutoffSeconds=slicer.util.settingsValue(SETTING_IDLE_CUTOFF, 30.0, converter=float),
                listener=self.onCorrectionEvent)
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
        session = self.shared.correctionSession
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
            result = self.shared.finishCorrecting()
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

    # -- export ----------------------------------------------------------------------------------

    def onExport(self, kind: str, toDicomDatabase: bool) -> None:
        """Write into a new time-stamped folder of the output folder; DICOM objects also go into
        Slicer's DICOM database, beside the CT."""
        try:
            path = self.shared.exportToNewFolder(kind, self.ui.segmentationSelector.currentNode(),
                                                 self._parameterNode.inputVolume, self._parameterNode.outputFolder)
        except Exception as exc:
            logging.exception(f"DKOARSegmentation: {kind} export failed")
            self.setStatus(_("{kind} export failed: {error}").format(kind=kind, error=exc), error=True)
            return
        if toDicomDatabase:
            from DICOMLib import DICOMUtils

            if not DICOMUtils.importDicom(str(path.parent)):  # the file is written; say what did not happen
                self.setStatus(_("{kind}: {path} (written, but not added to the DICOM database)").format(
                    kind=kind, path=path), error=True)
                return
        self.setStatus(_("{kind}: {path}").format(kind=kind, path=path))

    # -- dependencies: asked for, never installed silently ---------------------------------------

    def ensureDependencies(self) -> bool:
        """Install torch (through the PyTorch extension) and the core's packages, asking first."""
        return self._ensureTorch() and ensurePythonPackages(ask=True)

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
        if torchLogic.installTorch(askConfirmation=True) is None:
            self.setStatus(_("PyTorch was not installed; it is needed to run the model."), error=True)
            return False
        return True


def ensurePythonPackages(ask: bool) -> bool:
    """Install the core's packages that are missing; ``ask``: confirm with the user first (the
    self-test installs without asking). False when the user declines."""
    from slicer import packaging  # binds "packaging" only: "import slicer.packaging" here would make slicer local

    try:
        packaging.pip_ensure(DEPENDENCIES, requester=_("DK OAR Segmentation"), prompt_install=ask, prompt_restart=ask,
                             skip_in_testing=False)
    except RuntimeError:  # the user declined
        return False
    missing = missingRequirements(NO_DEPS_DEPENDENCIES)
    if missing:
        packaging.pip_install(["--no-deps", *missing], requester=_("DK OAR Segmentation"))
    return True


def missingRequirements(requirements: list[str]) -> list[str]:
    """The requirements that the installed distributions do not satisfy."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    missing = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(text)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(text)
    return missing


class DKOARSegmentationLogic(ScriptedLoadableModuleLogic):
    """The module's parameter node; everything else is ``shared``, the logic of every front end."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._shared = None

    def getParameterNode(self):
        return DKOARSegmentationParameterNode(super().getParameterNode())

    @property
    def hasShared(self) -> bool:
        return self._shared is not None

    @property
    def shared(self):
        """DKOARSegmentationMRML's SegmentationLogic, made on first use (after the packages exist)."""
        if self._shared is None:
            from DKOARSegmentationMRML.logic import SegmentationLogic

            self._shared = SegmentationLogic(temporaryFolder=slicer.app.temporaryPath)
        return self._shared


class DKOARSegmentationTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer only (Reload and Test, or ctest through slicer_add_python_unittest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.assertTrue(ensurePythonPackages(ask=False), "the Python packages could not be installed")
        self.setUp()
        self.test_SegmentPhantomDicomInTheBackground()
        self.setUp()
        self.test_CorrectAndExport()

    @staticmethod
    def _phantomFromDicom(seed: int):
        """A small synthetic head written as DICOM, imported into a temporary DICOM database and loaded."""
        from DICOMLib import DICOMUtils

        from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom

        folder = slicer.util.tempDirectory("DKOARSegmentationTestPhantom-")
        phantom = write_phantom(folder, seed=seed, position="HFS", grid=PhantomGrid(matrix=128, pixel_mm=2.0,
                                                                                    slice_mm=3.0))
        DICOMUtils.importDicom(os.path.join(folder, "ct"))
        return phantom, slicer.mrmlScene.GetNodeByID(DICOMUtils.loadSeriesByUID([phantom.ct.dicom.series_instance_uid])[0])

    def test_SegmentPhantomDicomInTheBackground(self):
        """The panel's run: a child process, its progress, the result loaded beside the CT."""
        from DICOMLib import DICOMUtils

        with DICOMUtils.TemporaryDICOMDatabase():
            _, volumeNode = self._phantomFromDicom(7)
            logic = DKOARSegmentationLogic().shared
            done, progress = [], []
            logic.startSegmentationProcess(volumeNode, slicer.util.tempDirectory("DKOARSegmentationTest-"), "", "cpu",
                                           onProgress=lambda *a: progress.append(a),
                                           onCompleted=lambda *a: done.append(a))
            while not done:
                slicer.app.processEvents()
            segmentationNode, record, error = done[0]
        self.assertIsNone(error)
        self.assertTrue(progress, "no progress was reported")
        self.assertTrue(os.path.isfile(record["outputs"]["rtstruct"]))
        self.assertGreater(segmentationNode.GetSegmentation().GetNumberOfSegments(), 0)
        self.delayDisplay("Background run passed")

    def test_CorrectAndExport(self):
        """In this process: the demo model on CPU, Dice against the truth, one simulated correction,
        Finish, the correction log entry, the RTSTRUCT export."""
        import numpy as np
        import pydicom
        from DICOMLib import DICOMUtils
        from scipy import ndimage

        from DKOARSegmentationLib.monitoring.correction_log import open_log
        from DKOARSegmentationLib.monitoring.overlap import dice_per_structure
        from DKOARSegmentationLib.structures.catalogue import default_catalogue
        from DKOARSegmentationMRML.readback import segmentation_to_core

        catalogue = default_catalogue()
        outputFolder = slicer.util.tempDirectory("DKOARSegmentationTest-")
        with DICOMUtils.TemporaryDICOMDatabase():
            phantom, volumeNode = self._phantomFromDicom(9)
            logic = DKOARSegmentationLogic().shared
            segmentationNode, _record = logic.segmentVolume(volumeNode, outputFolder, "", "cpu")
            contoured = segmentation_to_core(segmentationNode, volumeNode, catalogue)
            dice = dice_per_structure(contoured.labels, phantom.truth.labels, catalogue.core_structures)
            self.assertGreater(float(np.mean(list(dice.values()))), 0.5)

            logPath = os.path.join(outputFolder, "corrections.sqlite")
            logic.startCorrecting(segmentationNode, volumeNode, logPath=logPath)
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, "Parotid_L", volumeNode)
            grown = ndimage.binary_dilation(mask > 0, iterations=2).astype(np.uint8)
            slicer.util.updateSegmentBinaryLabelmapFromArray(grown, segmentationNode, "Parotid_L", volumeNode)
            self.assertEqual(logic.finishCorrecting().changed, {"Parotid_L"})
            with open_log(logPath) as log:
                case = log.cases()[-1]
                self.assertEqual(log.structure_results(case["case_id"])["Parotid_L"]["unchanged"], 0)

            path = logic.exportRTStruct(segmentationNode, volumeNode, os.path.join(outputFolder, "corrected.dcm"))
            semiautomatic = {roi.ROIName for roi in pydicom.dcmread(path).StructureSetROISequence
                             if roi.ROIGenerationAlgorithm == "SEMIAUTOMATIC"}
            self.assertEqual(semiautomatic, {"Parotid_L"})
        self.delayDisplay("Correction and export test passed")
