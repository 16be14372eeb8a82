"""DK OAR Segmentation: the 3D Slicer module (thin glue around DKOARSegmentationLib).

Everything that can run without Slicer lives in the core package ``DKOARSegmentationLib``
(the ``dkoar`` command runs the very same code). This file only wires it to Slicer: a parameter
node, the panel, a logic that moves a volume node to the core and the result back into the scene,
and a self-test that runs inside Slicer. The core is imported inside methods, so that this file
loads (and Slicer can offer to install the Python packages) before the core's dependencies exist.

Written for Slicer 5.10 and 5.12; calls that need a particular release say so.
"""

import logging
import os
import re
import shutil
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
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputFolder: str = ""


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
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._progress = None  # the core's Progress while a run is going on

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

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

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
        running = self._progress is not None
        canApply = bool(parameters and parameters.inputVolume)
        self.ui.applyButton.enabled = canApply or running
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        if running:
            self.ui.applyButton.toolTip = _("Stop the run at the next step")
        else:
            self.ui.applyButton.toolTip = _("Contour the organs at risk") if canApply else _("Select a planning CT")
        self.ui.demoWarningLabel.setVisible(bool(parameters) and not parameters.modelPath.strip())

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

        self._progress = Progress(self.onProgress)
        self.ui.progressBar.value = 0
        self.ui.progressBar.setVisible(True)
        self._updateGui()
        try:
            segmentationNode, result = self.logic.segmentVolume(
                parameters.inputVolume, parameters.outputFolder, parameters.modelPath, parameters.device,
                progress=self._progress,
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

        if parameters.modelPath.strip():
            self.ui.modelPathLineEdit.addCurrentPathToHistory()
        if parameters.outputFolder.strip():
            self.ui.outputFolderLineEdit.addCurrentPathToHistory()
        count = segmentationNode.GetSegmentation().GetNumberOfSegments()
        lines = [_("{count} structures contoured, outputs in {folder}").format(
            count=count, folder=os.path.dirname(str(result.outputs["seg_nrrd"])))]
        if "rtstruct" in result.outputs:
            lines.append(_("RTSTRUCT: {path}").format(path=result.outputs["rtstruct"]))
        lines += [_("Note: {warning}").format(warning=w) for w in result.warnings]
        self.setStatus("\n".join(lines))

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

    def getParameterNode(self):
        return DKOARSegmentationParameterNode(super().getParameterNode())

    def segmentVolume(self, volumeNode, outputFolder: str = "", modelPath: str = "", device: str = "auto",
                      progress=None):
        """Contour the organs at risk on ``volumeNode``.

        Writes the core's outputs (RTSTRUCT, .seg.nrrd, NIfTI, overview, run.json) to ``outputFolder``
        (a new temporary folder when empty), loads the segmentation into the scene with the volume as
        its reference geometry, beside the volume in the subject hierarchy. ``modelPath`` empty means
        the bundled demonstration model. ``progress`` is a DKOARSegmentationLib.progress.Progress
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
                             progress=progress)

        segmentationNode = slicer.util.loadSegmentation(str(result.outputs["seg_nrrd"]))
        segmentationNode.SetName(slicer.mrmlScene.GenerateUniqueName(f"{volumeNode.GetName()} OARs"))
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        # the core works in the volume's own coordinates: follow the volume's transform, if any
        segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        volumeParent = shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode))
        shNode.SetItemParent(shNode.GetItemByDataNode(segmentationNode), volumeParent)
        return segmentationNode, result

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
