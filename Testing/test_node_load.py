"""The node under load: ten concurrent associations (dcmtk's storescu) sending twenty small studies,
every structure set delivered to Orthanc once; then the same with the node killed (SIGKILL) in
the middle, twice (while receiving, and while contouring and sending), and restarted."""

from __future__ import annotations

import subprocess
import time

import pydicom
import pytest

from .dicom_peers import Orthanc, require
from .node_factory import NodeProcess, free_port, make_fast_model, write_studies

pytestmark = pytest.mark.slow
STUDIES = 20
ASSOCIATIONS = 10


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    return make_fast_model(tmp_path_factory.mktemp("model") / "fast")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc"), modalities={"DKOAR": ["DKOAR", "127.0.0.1", 104]}).start()
    yield orthanc
    orthanc.stop()


def _senders(port: int, studies) -> list[subprocess.Popen]:
    """ASSOCIATIONS storescu processes at once, each sending its share of the studies."""
    shares = [studies[i::ASSOCIATIONS] for i in range(ASSOCIATIONS)]
    return [subprocess.Popen([require("storescu"), "-aet", "CT_SIM", "-aec", "DKOAR", "+sd", "+r", "-nh",
                              "127.0.0.1", str(port), *map(str, share)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for share in shares]


def _wait(processes, timeout_s: float = 180) -> list[int]:
    return [p.wait(timeout_s) for p in processes]


def _series_uids(studies) -> set[str]:
    return {str(pydicom.dcmread(next(s.iterdir()), stop_before_pixels=True).SeriesInstanceUID) for s in studies}


def _delivered(orthanc: Orthanc, series: set[str]) -> list[str]:
    """The referenced series of every RTSTRUCT instance in Orthanc, for the given series."""
    refs = []
    for rt in orthanc.rtstructs():
        uid = (rt["ReferencedFrameOfReferenceSequence"][0]["RTReferencedStudySequence"][0]
               ["RTReferencedSeriesSequence"][0]["SeriesInstanceUID"])
        if uid in series:
            refs.append(uid)
    return refs


def _wait_delivered(orthanc: Orthanc, series: set[str], timeout_s: float = 240) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = _delivered(orthanc, series)
        if len(set(found)) >= len(series) or time.monotonic() > deadline:
            time.sleep(2)  # a second delivery of one would come now
            return _delivered(orthanc, series)
        time.sleep(0.5)


def _node(work, port, model, orthanc) -> NodeProcess:
    return NodeProcess(work, port, ["--allow", "CT_SIM", "--model", str(model), "--idle-seconds", "1.5",
                                    "--retry-seconds", "1", "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"])


def test_ten_associations_sending_twenty_studies_get_twenty_structure_sets_none_twice(fast_model, orthanc,
                                                                                      tmp_path):
    studies = write_studies(tmp_path / "studies", range(100, 100 + STUDIES))
    series = _series_uids(studies)
    node = _node(tmp_path / "work", free_port(), fast_model, orthanc).start()
    try:
        assert _wait(_senders(node.port, studies)) == [0] * ASSOCIATIONS
        delivered = _wait_delivered(orthanc, series)
    finally:
        node.stop()
    assert sorted(delivered) == sorted(series), node.log()[-3000:]
    assert _sent_per_series(tmp_path / "work") == {uid: 1 for uid in series}


def test_a_node_killed_in_the_middle_of_the_load_and_restarted_still_delivers_each_once(fast_model, orthanc,
                                                                                        tmp_path):
    studies = write_studies(tmp_path / "studies", range(200, 200 + STUDIES))
    series = _series_uids(studies)
    port = free_port()
    work = tmp_path / "work"
    node = _node(work, port, fast_model, orthanc).start()
    senders = _senders(port, studies)
    # first kill: while slices are still arriving
    deadline = time.monotonic() + 60
    while len(list((work / "incoming").glob("*/*.dcm"))) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    node.kill()
    interrupted = [s for s, code in zip(range(ASSOCIATIONS), _wait(senders)) if code != 0]
    assert interrupted, "the kill came after every study was sent: nothing was interrupted"

    # restart; the senders send again (a modality repeats a transfer that failed), all of them
    node = _node(work, port, fast_model, orthanc).start()
    assert _wait(_senders(port, studies)) == [0] * ASSOCIATIONS
    # second kill: once some structure sets went out, while others are contoured or sent
    deadline = time.monotonic() + 120
    while not _delivered(orthanc, series) and time.monotonic() < deadline:
        time.sleep(0.1)
    node.kill()
    partly = len(set(_delivered(orthanc, series)))
    assert 0 < partly < STUDIES, f"{partly} delivered at the second kill"

    node = _node(work, port, fast_model, orthanc).start()
    try:
        delivered = _wait_delivered(orthanc, series)
    finally:
        node.stop()
    assert sorted(delivered) == sorted(series), node.log()[-3000:]
    assert "resuming after a restart" in node.log()
    assert _sent_per_series(work) == {uid: 1 for uid in series}


def _sent_per_series(work) -> dict[str, int]:
    """The node's own record: how many times each series' RTSTRUCT was stored to a destination."""
    import sqlite3

    with sqlite3.connect(work / "queue.sqlite3") as db:
        return dict(db.execute("SELECT s.series_uid, COUNT(*) FROM deliveries d JOIN series s ON s.id = d.series_id "
                               "WHERE d.status = 'sent' AND d.kind = 'rtstruct' GROUP BY s.series_uid").fetchall())
