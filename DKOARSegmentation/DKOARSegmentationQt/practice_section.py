"""The panel's practice section (trainee mode): widgets and wiring over DKOARSegmentationMRML.practice.

Choose a case (a synthetic phantom, a CT with an approved RTSTRUCT or a label map, or a CT with a
segmentation in the scene) and the structures; Start hides the reference and the AI result and
lends the panel's Segment Editor to the section, on a new segmentation for the attempt; Submit
shows the scores, the borders in words and the overlay of too much (orange) and missed (blue);
Show reference loads the reference; End gives the editor back and shows what was hidden. The card
of the structure selected in the list is shown beside it. Everything without a widget is in the
MRML logic, which the browser station calls too.

Slicer settings (Edit > Application Settings, or slicer.app.settings()):
``DKOARSegmentation/PracticeHistory`` (the practice history; default practice.sqlite beside the
correction log), ``DKOARSegmentation/Trainee`` (the default trainee name), ``DKOARSegmentation/
SiteGuidelines`` (the site's guidelines folder), and the correction log's ``SiteKey``, ``Site`` and
``IdleCutoffSeconds``.
"""

import logging
import os

import slicer
from slicer.i18n import tr as _

SETTING_HISTORY = "DKOARSegmentation/PracticeHistory"
SETTING_TRAINEE = "DKOARSegmentation/Trainee"
SETTING_GUIDELINES = "DKOARSegmentation/SiteGuidelines"
SETTING_SITE_KEY = "DKOARSegmentation/SiteKey"
SETTING_SITE = "DKOARSegmentation/Site"
SETTING_IDLE_CUTOFF = "DKOARSegmentation/IdleCutoffSeconds"
SOURCES = ("phantom", "file", "segmentation")  # the items of caseSourceComboBox, in order


class PracticeSection:
    """Made by the panel's setup with the panel (DKOARSegmentationWidget): its layout receives the
    section, its Segment Editor is lent to the round."""

    def __init__(self, widget):
        from DKOARSegmentationMRML.practice import PracticeLogic

        self.widget = widget
        self.logic = PracticeLogic()
        uiWidget = slicer.util.loadUI(widget.resourcePath("UI/PracticeSection.ui"))
        widget.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.practiceStructuresList.addItems([s for names in widget.shared.structureGroups().values() for s in names])
        self.ui.traineeLineEdit.text = slicer.util.settingsValue(SETTING_TRAINEE, "") or _loginName()
        self.ui.caseSourceComboBox.connect("currentIndexChanged(int)", self._updateGui)
        self.ui.practiceStructuresList.connect("currentTextChanged(QString)", self.onCurrentStructure)
        self.ui.startRoundButton.connect("clicked(bool)", self.onStart)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.showReferenceButton.connect("clicked(bool)", self.onShowReference)
        self.ui.endRoundButton.connect("clicked(bool)", self.onEnd)
        widget.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self._updateGui()

    # -- state -----------------------------------------------------------------------------------

    def _running(self) -> bool:
        return self.logic.round is not None and self.logic.round.running

    def _updateGui(self, *unused) -> None:
        source = SOURCES[max(0, self.ui.caseSourceComboBox.currentIndex)]
        for widgets, shown in (((self.ui.phantomLabel, self.ui.phantomSeedSpinBox, self.ui.phantomPositionComboBox),
                                source == "phantom"),
                               ((self.ui.practiceVolumeLabel, self.ui.practiceVolumeSelector), source != "phantom"),
                               ((self.ui.referencePathLabel, self.ui.referencePathLineEdit,
                                 self.ui.allowUnapprovedCheckBox), source == "file"),
                               ((self.ui.referenceSegmentationLabel, self.ui.referenceSegmentationSelector),
                                source == "segmentation")):
            for w in widgets:
                w.setVisible(shown)
        running = self._running()
        practice = self.logic.round
        self.ui.startRoundButton.enabled = not running
        self.ui.submitButton.enabled = running
        self.ui.showReferenceButton.enabled = practice is not None and bool(practice.scores)
        self.ui.endRoundButton.enabled = running
        self.ui.caseSourceComboBox.enabled = not running

    def setStatus(self, text: str, error: bool = False) -> None:
        self.ui.practiceStatusLabel.text = text
        self.ui.practiceStatusLabel.setStyleSheet("color: rgb(200, 0, 0);" if error else "")

    def _configure(self) -> None:
        logic = self.logic
        logic.historyPath = slicer.util.settingsValue(SETTING_HISTORY, "") or os.path.join(
            os.path.dirname(slicer.app.slicerUserSettingsFilePath), "DKOARSegmentation", "practice.sqlite")
        logic.trainee = self.ui.traineeLineEdit.text
        logic.siteKeyPath = slicer.util.settingsValue(SETTING_SITE_KEY, "")
        logic.site = slicer.util.settingsValue(SETTING_SITE, "")
        logic.siteGuidelines = slicer.util.settingsValue(SETTING_GUIDELINES, "")
        logic.idleCutoffSeconds = slicer.util.settingsValue(SETTING_IDLE_CUTOFF, 30.0, converter=float)

    def _guard(self, what: str, action):
        """Run ``action``; a user's error is shown as it is, anything else with a pointer to the log."""
        from DKOARSegmentationLib.errors import DKOARError

        try:
            return action()
        except DKOARError as exc:
            self.setStatus(str(exc), error=True)
        except Exception as exc:
            logging.exception(f"DKOARSegmentation: practice: {what} failed")
            self.setStatus(_("{what} failed (details in the Python console): {error}").format(what=what, error=exc),
                           error=True)
        finally:
            self._updateGui()
        return None

    # -- the card --------------------------------------------------------------------------------

    def onCurrentStructure(self, name: str) -> None:
        if name:
            self.logic.siteGuidelines = slicer.util.settingsValue(SETTING_GUIDELINES, "")
            card = self._guard(_("The guideline card"), lambda: self.logic.guidelineCard(name))
            self.ui.guidelineCardBrowser.setHtml(card.html() if card is not None else "")

    # -- the round -------------------------------------------------------------------------------

    def onStart(self) -> None:
        session = self.widget.shared.correctionSession
        if session is not None and session.running:
            self.setStatus(_("Finish correcting before practising."), error=True)
            return
        self._configure()
        structures = [item.text() for item in self.ui.practiceStructuresList.selectedItems()]
        editorNode = self.widget.shared.getSegmentEditorNode()
        source = SOURCES[self.ui.caseSourceComboBox.currentIndex]
        volume = self.ui.practiceVolumeSelector.currentNode()

        def start():
            if source == "phantom":
                return self.logic.startPhantomRound(self.ui.phantomSeedSpinBox.value, structures,
                                                    self.ui.phantomPositionComboBox.currentText, editorNode=editorNode)
            if volume is None:
                self.setStatus(_("Select the CT to practise on."), error=True)
                return None
            if source == "file":
                return self.logic.startRoundFromFile(volume, self.ui.referencePathLineEdit.currentPath, structures,
                                                     self.ui.allowUnapprovedCheckBox.checked, editorNode=editorNode)
            return self.logic.startRoundFromSegmentation(volume, self.ui.referenceSegmentationSelector.currentNode(),
                                                         structures, editorNode=editorNode)

        practice = self._guard(_("Starting the round"), start)
        if practice is None:
            return
        slicer.util.setSliceViewerLayers(background=practice.volume_node, fit=True)
        editor = self.widget.segmentEditorWidget
        self.ui.practiceEditorFrame.layout().addWidget(editor)  # lent to the section for the round
        editor.setSegmentationNode(practice.attempt_node)
        editor.setSourceVolumeNode(practice.volume_node)
        self.ui.feedbackBrowser.setHtml("")
        self.setStatus(_("Draw {names}; the reference and the AI result are hidden. Submit when done.").format(
            names=", ".join(practice.structures)))
        self._updateGui()

    def onSubmit(self) -> None:
        self._configure()
        scores = self._guard(_("Submitting"), self.logic.submit)
        if scores is None:
            return
        practice = self.logic.round
        html = "".join(score.html() for score in scores.values())
        self.ui.feedbackBrowser.setHtml(html + f"<p><small>{self.logic.overlayLegend()}</small></p>")
        stored = _("stored in the practice history") if practice.stored and not practice.store_error else \
            _("not stored: {reason}").format(reason=practice.store_error or _("no practice history"))
        self.setStatus(_("Scored {count} structure(s), {stored}. Show the reference, or draw on and submit again.")
                       .format(count=len(scores), stored=stored))

    def onShowReference(self) -> None:
        self._guard(_("Showing the reference"), self.logic.showReference)

    def onEnd(self) -> None:
        self.logic.endRound()
        editor = self.widget.segmentEditorWidget
        self.widget.ui.segmentEditorFrame.layout().addWidget(editor)  # back to the correction section
        editor.setSegmentationNode(None)
        self.setStatus(_("Round ended."))
        self._updateGui()

    def onSceneStartClose(self, caller, event) -> None:
        if self.logic.round is not None:
            self.onEnd()
            self.logic.round = None


def _loginName() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name in the environment
        return ""
