"""The node's settings, its on-disk queue and its failure RTSTRUCT, without the network."""

from __future__ import annotations

import sqlite3
import subprocess
import time

import numpy as np
import pydicom
import pytest

from DKOARSegmentationLib.cli.main import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.node.config import Destination, node_config, read_config_file
from DKOARSegmentationLib.node.failure_report import write_failure_rtstruct
from DKOARSegmentationLib.node.queue import CRASHES_BEFORE_GIVING_UP, NodeQueue
from DKOARSegmentationLib.node.status import status_lines
from DKOARSegmentationLib.node.worker import missing_slices

from .conftest import require_tool
from .node_factory import write_studies

MB = 1e6


def test_the_configuration_file_takes_every_flag_and_flags_override_it(tmp_path):
    (tmp_path / "node.toml").write_text(
        'ae_title = "HN_NODE"\nport = 11113\nallow = ["CT_SIM", "PACS"]\nsend_to = ["TPS@10.1.2.3:104"]\n'
        'work = "queue"\nidle_seconds = 20\nmax_study_mb = 500\npriority_callers = ["CT_SIM"]\norder = "smallest"\n'
        'send_seg = true\n')
    values = read_config_file(tmp_path / "node.toml")
    config = node_config(values, {"port": 4242, "allow": ["OTHER"], "idle_seconds": None})
    assert (config.ae_title, config.port, config.allow, config.idle_seconds) == ("HN_NODE", 4242, ["OTHER"], 20.0)
    assert config.send_to == [Destination("TPS", "10.1.2.3", 104)]
    assert config.work == tmp_path / "queue"  # relative to the file
    assert config.host == "127.0.0.1" and config.send_seg and config.order == "smallest"


@pytest.mark.parametrize("text, message", [
    ('allow = ["A"]\nportt = 1\n', "unknown setting portt"),
    ('allow = ["A"]\nsend_to = ["TPS:104"]\n', "is not AE@HOST:PORT"),
    ('allow = ["AN_AE_TITLE_TOO_LONG"]\n', "is not an AE title"),
    ('allow = []\n', "no caller is allowed"),
    ('allow = ["A"]\nidle_seconds = "soon"\n', "is not a number"),
    ('allow = ["A"]\norder = "random"\n', "is not one of oldest, newest, smallest"),
    ('allow = ["A"]\ntls_certificate = "node.crt"\n', "TLS needs both"),
    ('allow = ["A"\n', "not valid TOML"),
])
def test_a_bad_setting_is_named_before_the_node_starts(tmp_path, text, message):
    (tmp_path / "node.toml").write_text(text)
    with pytest.raises(DKOARError, match=message):
        node_config(read_config_file(tmp_path / "node.toml"))


def test_serve_without_an_allowed_caller_is_a_one_line_error(tmp_path, capsys):
    assert main(["serve", "--work", str(tmp_path / "w"), "--port", "4243"]) == 2
    err = capsys.readouterr().err
    assert "no caller is allowed" in err and err.count("\n") == 1


def _arrive(queue, series="1.2.3", study="9.8", caller="CT_SIM", size=1000, model="m 1", limit=100 * MB):
    return queue.slice_arrives(series, study, model, "S" + series, caller, size, limit)


def test_a_series_is_complete_after_its_idle_time_and_then_contoured_once_per_model(tmp_path):
    queue = NodeQueue(tmp_path / "q.sqlite3")
    assert _arrive(queue).action == "store" and _arrive(queue).action == "store"
    assert queue.complete_idle(60) == []
    [complete] = queue.complete_idle(0)
    assert complete.files == 2 and queue.counts()["received"] == 1
    taken = queue.take_next([], "oldest")
    queue.contoured(taken.id, [("TPS@h:1", "rtstruct", "rtstruct.dcm")], 1.0)
    [delivery] = queue.due_deliveries()
    queue.delivery_done(delivery, True)
    assert queue.counts()["sent"] == 1
    # the same series again: acknowledged, not kept, not contoured again; a new model version is new work
    assert _arrive(queue).action == "ignore"
    assert _arrive(queue, model="m 2").action == "store"


def test_a_study_over_the_limit_is_refused_with_its_reason_and_stays_refused(tmp_path):
    queue = NodeQueue(tmp_path / "q.sqlite3")
    assert _arrive(queue, series="1.1", size=int(0.6 * MB), limit=1 * MB).action == "store"
    refused = _arrive(queue, series="1.2", size=int(0.6 * MB), limit=1 * MB)
    assert refused.action == "refuse" and "larger than the node's limit of 1 MB" in refused.reason
    assert _arrive(queue, series="1.1", size=10, limit=1 * MB).action == "refuse"  # the whole study failed
    assert queue.counts()["failed"] == 2


def test_waiting_series_are_taken_by_caller_priority_then_by_the_configured_order(tmp_path):
    queue = NodeQueue(tmp_path / "q.sqlite3")
    for series, caller, size in (("1", "PACS", 5000), ("2", "RESEARCH", 100), ("3", "CT_SIM", 9000),
                                 ("4", "PACS", 200)):
        _arrive(queue, series=series, caller=caller, size=size)
        queue.complete_idle(0)
        time.sleep(0.01)
    order = [queue.take_next(["CT_SIM", "PACS"], "smallest").series_uid for _ in range(4)]
    assert order == ["3", "4", "1", "2"]
    assert queue.take_next([], "oldest") is None


def test_after_a_kill_unfinished_work_resumes_and_a_series_that_keeps_crashing_is_given_up(tmp_path):
    queue = NodeQueue(tmp_path / "q.sqlite3")
    _arrive(queue, series="1")
    queue.complete_idle(0)
    _arrive(queue, series="2")  # still arriving: gets its idle time again from the restart
    for crash in range(1, CRASHES_BEFORE_GIVING_UP):
        assert queue.take_next([], "oldest").runs == crash
        assert queue.recover() == {"contouring resumed": 1, "receiving resumed": 1, "deliveries resumed": 0,
                                   "given up": 0}
        assert queue.counts()["received"] == 1
    queue.take_next([], "oldest")
    assert queue.recover()["given up"] == 1 and queue.counts()["failed"] == 1
    assert "stopped 3 times without finishing" in queue.series("WHERE series_uid='1'")[0].reason


def test_a_delivery_is_retried_with_back_off_and_given_up_with_its_reason(tmp_path):
    from DKOARSegmentationLib.node.config import NodeConfig
    from DKOARSegmentationLib.node.sender import Sender

    config = NodeConfig(allow=["A"], work=tmp_path, retry_seconds=2, retry_max_seconds=5, max_attempts=4)
    sender = Sender(config, NodeQueue(tmp_path / "q.sqlite3"))
    assert [sender.retry_in(n) for n in range(4)] == [2, 4, 5, None]


def test_status_shows_the_queue_and_the_last_deliveries_without_uids(tmp_path, capsys):
    queue = NodeQueue(tmp_path / "queue.sqlite3")
    _arrive(queue, series="1.2.840.99")
    queue.complete_idle(0)
    row = queue.take_next([], "oldest")
    queue.contoured(row.id, [("TPS@h:1", "rtstruct", "rtstruct.dcm")], 3.5)
    queue.delivery_done(queue.due_deliveries()[0], True)
    _arrive(queue, series="1.2.840.100", caller="PACS")
    queue.event("refused", "slice from X refused: MR is not CT")
    queue.event("refused", "slice from X refused: MR is not CT")  # each slice of the series
    text = "\n".join(status_lines(tmp_path / "queue.sqlite3"))
    assert "receiving 1" in text and "sent 1" in text and "S1.2.840.100" in text and "PACS" in text
    assert "rtstruct to TPS@h:1 (from CT_SIM, 3.5 s contouring)" in text
    assert "MR is not CT (2 times)" in text
    assert main(["serve", "status", "--work", str(tmp_path)]) == 0
    assert "last deliveries" in capsys.readouterr().out
    assert main(["serve", "status", "--work", str(tmp_path / "none")]) == 2


def test_the_queue_is_an_sqlite_database_in_wal_mode(tmp_path):
    NodeQueue(tmp_path / "q.sqlite3")
    with sqlite3.connect(tmp_path / "q.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_failure_rtstruct_has_one_empty_roi_named_for_the_failure(tmp_path):
    [folder] = write_studies(tmp_path / "studies", [7])
    uid = str(pydicom.dcmread(folder / "CT_0001.dcm", stop_before_pixels=True).SeriesInstanceUID)
    path = write_failure_rtstruct(tmp_path / "f.dcm", "missing slices", "3 slices missing (...)", "model", "1.0",
                                  folder, uid)
    ds = pydicom.dcmread(path)
    assert [roi.ROIName for roi in ds.StructureSetROISequence] == ["DKOAR FAILED missing slices"]
    assert not hasattr(ds.ROIContourSequence[0], "ContourSequence")
    assert ds.StructureSetDescription.startswith("Not contoured: 3 slices missing")
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == uid and len(series.ContourImageSequence) == 22
    checked = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    assert not [line for line in checked.stderr.splitlines() if line.startswith(("Error", "Warning"))], checked.stderr
    assert write_failure_rtstruct(tmp_path / "g.dcm", "x", "y", "m", "1", folder, "1.2.3") is None


def test_missing_slices_are_found_along_the_slice_normal(tmp_path):
    [folder] = write_studies(tmp_path / "studies", [8])
    assert missing_slices(load_ct(folder)) is None
    for name in ("CT_0004.dcm", "CT_0005.dcm"):
        (folder / name).unlink()
    message = missing_slices(load_ct(folder))
    assert message.startswith("2 slices missing (first gap of 18.0 mm")
    assert np.isclose(float(message.split("slice at ")[1].split(" mm")[0]), -60 + 2 * 6.0)


def test_a_second_node_on_the_same_work_folder_is_refused(tmp_path):
    from DKOARSegmentationLib.node.server import _one_node_per_work_folder

    held = _one_node_per_work_folder(tmp_path)
    with pytest.raises(DKOARError, match="another dkoar node is running with this work folder"):
        _one_node_per_work_folder(tmp_path)
    held.close()  # as when the first node ends, however it ends
    _one_node_per_work_folder(tmp_path).close()
