"""The panel's "Review" section: a flag icon beside each flagged structure (in the panel's
structure tree and in a table with the flags' sentences), the ranked list of where to look first
(a click centres the slice views there), and "Check again" for the segmentation as corrected.

Widgets and wiring only: the guidance and the checks come from the shared logic
(``SegmentationLogic.structureFlags``, ``reviewEntries``, ``jumpToReviewEntry``, ``checkAgain``).
"""

import logging

import ctk
import qt
import slicer


class ReviewSection:
    def __init__(self, parentLayout, shared, structureTree=None):
        """Adds a collapsible "Review" section to ``parentLayout``; ``shared`` is the panel's
        SegmentationLogic, ``structureTree`` the panel's structure tree (flag icons beside names)."""
        self.shared = shared
        self.structureTree = structureTree
        self.segmentationNode = None
        self.volumeNode = None
        self.entries = []
        button = ctk.ctkCollapsibleButton()
        button.text = "Review: flags and where to look first"
        parentLayout.addWidget(button)
        layout = qt.QVBoxLayout(button)
        self.flagsTable = qt.QTableWidget(0, 2)
        self.flagsTable.setHorizontalHeaderLabels(["Structure", "Flag"])
        self.flagsTable.horizontalHeader().setStretchLastSection(True)
        self.flagsTable.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        layout.addWidget(self.flagsTable)
        layout.addWidget(qt.QLabel("Where the model is least sure (click to go there):"))
        self.reviewList = qt.QListWidget()
        self.reviewList.connect("itemClicked(QListWidgetItem*)", self.onReviewItemClicked)
        layout.addWidget(self.reviewList)
        self.checkAgainButton = qt.QPushButton("Check again")
        self.checkAgainButton.toolTip = "Run the plausibility checks on the segmentation as corrected so far"
        self.checkAgainButton.connect("clicked(bool)", self.onCheckAgain)
        layout.addWidget(self.checkAgainButton)
        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        layout.addWidget(self.statusLabel)

    @staticmethod
    def icon(name):
        return slicer.app.style().standardIcon(getattr(qt.QStyle, name))

    def show(self, segmentationNode, volumeNode=None) -> None:
        """Show the guidance of ``segmentationNode`` (nothing for None)."""
        self.segmentationNode, self.volumeNode = segmentationNode, volumeNode
        flags = self.shared.structureFlags(segmentationNode) if segmentationNode is not None else {}
        self.entries = self.shared.reviewEntries(segmentationNode) if segmentationNode is not None else []
        order = {"error": 0, "warning": 1, "info": 2}
        rows = sorted(flags.items(), key=lambda item: (order[item[1]["severity"]], item[0]))
        self.flagsTable.setRowCount(len(rows))
        for row, (name, shown) in enumerate(rows):
            item = qt.QTableWidgetItem(name)
            item.setIcon(self.icon(shown["icon"]))
            item.setToolTip(shown["text"])
            self.flagsTable.setItem(row, 0, item)
            self.flagsTable.setItem(row, 1, qt.QTableWidgetItem(shown["text"].replace("\n", "  ")))
        self.reviewList.clear()
        for entry in self.entries:
            self.reviewList.addItem(entry["text"])
        self._markTree(flags)
        self.checkAgainButton.enabled = segmentationNode is not None and volumeNode is not None
        self.statusLabel.text = "" if segmentationNode is None else (
            f"{len(rows)} structure(s) flagged" if rows else "No plausibility flag")

    def _markTree(self, flags) -> None:
        tree = self.structureTree
        if tree is None:
            return
        for g in range(tree.topLevelItemCount):
            group = tree.topLevelItem(g)
            for c in range(group.childCount()):
                item = group.child(c)
                shown = flags.get(item.text(0))
                item.setIcon(0, self.icon(shown["icon"]) if shown else qt.QIcon())
                item.setToolTip(0, shown["text"] if shown else "")

    def onReviewItemClicked(self, item) -> None:
        row = self.reviewList.row(item)
        if 0 <= row < len(self.entries):
            self.shared.jumpToReviewEntry(self.entries[row])

    def onCheckAgain(self) -> None:
        try:
            self.shared.checkAgain(self.segmentationNode, self.volumeNode)
        except Exception as exc:
            logging.exception("DKOARSegmentation: the plausibility checks failed")
            self.statusLabel.text = f"The checks failed: {exc}"
            return
        self.show(self.segmentationNode, self.volumeNode)
