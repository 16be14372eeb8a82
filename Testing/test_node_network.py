"""The DICOM node against real peers on loopback: dcmtk's storescu and echoscu call it, Debian's
Orthanc and dcmtk's storescp receive its structure sets; bad input is refused or reported with
its reason while the node keeps serving; callers over TLS.

Tiny phantom studies (22 slices of 64 x 64) and a fast TorchScript model keep it to seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pydicom
import pytest

from DKOARSegmentationLib.cli.main import main

from .dicom_peers import Orthanc, StoreSCP, echoscu, storescu
from .node_factory import NodeProcess, free_port, make_fast_model, write_studies

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    return make_fast_model(tmp_path_factory.mktemp("model") / "fast")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return write_studies(tmp_path_factory.mktemp("studies"), range(30, 36))


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    orthanc = Orthanc(root / "orthanc", modalities={"DKOAR": ["DKOAR", "127.0.0.1", 104]}).start()
    scp = StoreSCP(root / "storescp").start()
    yield orthanc, scp
    orthanc.stop()
    scp.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory, fast_model, peers):
    orthanc, scp = peers
    work = tmp_path_factory.mktemp("node") / "work"
    node = NodeProcess(work, free_port(), ["--allow", "CT_SIM", "--allow", "PACS", "--model", str(fast_model),
                                           "--idle-seconds", "1", "--retry-seconds", "1", "--send-seg",
                                           "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
                                           "--send-to", f"STORESCP@127.0.0.1:{scp.port}"]).start()
    yield node
    node.stop()


def _series_uid(folder) -> str:
    return str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)


def _referenced_series(rtstruct: dict) -> str:
    frame = rtstruct["ReferencedFrameOfReferenceSequence"][0]
    return frame["RTReferencedStudySequence"][0]["RTReferencedSeriesSequence"][0]["SeriesInstanceUID"]


def _eventually(find, what: str, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {what} after {timeout_s} s")


def _rtstruct_for(orthanc: Orthanc, series_uid: str) -> list[dict]:
    return _eventually(lambda: [r for r in orthanc.rtstructs() if _referenced_series(r) == series_uid],
                       f"RTSTRUCT for series {series_uid} in Orthanc")


def _stored_by_scp(scp: StoreSCP, series_uid: str) -> list:
    def find():
        received = scp.datasets()
        return [ds for ds in received if ds.Modality == "RTSTRUCT" and ds.ReferencedFrameOfReferenceSequence[0]
                .RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID == series_uid]

    return _eventually(find, f"RTSTRUCT for series {series_uid} in storescp's folder")


def _status(node: NodeProcess, capsys) -> str:
    capsys.readouterr()
    assert main(["serve", "status", "--work", str(node.work)]) == 0
    return capsys.readouterr().out


def test_echoscu_is_answered_and_a_caller_off_the_allow_list_is_rejected(node, capsys):
    assert echoscu(node.port).returncode == 0
    rejected = echoscu(node.port, "INTRUDER")
    assert rejected.returncode != 0
    assert "Rejected" in rejected.stderr or "rejected" in rejected.stderr.lower()
    assert echoscu(node.port, "CT_SIM", "NOT_DKOAR").returncode != 0  # the node's own AE title is required
    assert "INTRUDER" in _status(node, capsys) and "not on the allow-list" in node.log()


def test_a_ct_from_storescu_comes_back_as_an_rtstruct_in_orthanc_and_storescp(node, peers, studies, capsys):
    orthanc, scp = peers
    sent = storescu(node.port, [studies[0]])
    assert sent.returncode == 0, sent.stderr
    uid = _series_uid(studies[0])
    found = _rtstruct_for(orthanc, uid)
    assert len(found) == 1
    rois = {roi["ROIName"] for roi in found[0]["StructureSetROISequence"]}
    assert {"Brain", "Mandible"} <= rois  # the model labels Bone_Mandible, the catalogue names it
    assert found[0]["ApprovalStatus"] == "UNAPPROVED"
    orthanc_series = orthanc.get("/series")
    assert len(orthanc_series) >= 1
    # the same file reached dcmtk's storescp
    mine = _stored_by_scp(scp, uid)
    assert len(mine) == 1 and mine[0].SOPInstanceUID == found[0]["SOPInstanceUID"]
    # and the DICOM SEG (--send-seg) went beside it, referencing the same CT
    segs = _eventually(lambda: [ds for ds in scp.datasets() if ds.Modality == "SEG"], "DICOM SEG")
    assert [ds.ReferencedSeriesSequence[0].SeriesInstanceUID for ds in segs] == [uid]
    assert {s.SegmentLabel for s in segs[0].SegmentSequence} == {"Brain", "Mandible"}
    status = _status(node, capsys)
    assert "sent 1" in status and "rtstruct" in status and uid not in status  # pseudonyms, never UIDs


def _as_mr(folder, out):
    """The phantom's slices relabelled as an MR series (new series UID, MR Image Storage)."""
    from pydicom.uid import MRImageStorage, generate_uid

    out.mkdir()
    series = generate_uid()
    for file in sorted(folder.iterdir()):
        ds = pydicom.dcmread(file)
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SeriesInstanceUID = series
        ds.save_as(out / file.name)
    return out


def test_bad_input_is_refused_or_reported_with_its_reason_and_the_node_keeps_serving(node, peers, studies, fast_model,
                                                                                     tmp_path, capsys):
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    orthanc, _ = peers
    # a non-CT series: every image refused, with the reason in the C-STORE status
    mr = storescu(node.port, [_as_mr(studies[1], tmp_path / "mr")], "CT_SIM", "DKOAR", "-v")
    assert "Received Store Response (Error: CannotUnderstand)" in mr.stderr
    assert "MR is not CT" in node.log()

    # a series with missing slices: reported by an RTSTRUCT whose only ROI names the failure
    gap = tmp_path / "gap"
    shutil.copytree(studies[2], gap)
    for name in ("CT_0010.dcm", "CT_0011.dcm", "CT_0012.dcm"):
        (gap / name).unlink()
    assert storescu(node.port, [gap]).returncode == 0
    failure = _rtstruct_for(orthanc, _series_uid(studies[2]))
    assert [roi["ROIName"] for roi in failure[0]["StructureSetROISequence"]] == ["DKOAR FAILED missing slices"]
    assert "3 slices missing" in failure[0]["StructureSetDescription"]

    # a truncated file (storescu will not send one; pynetdicom sends the file's bytes as they are)
    truncated = tmp_path / "truncated.dcm"
    data = (studies[3] / "CT_0005.dcm").read_bytes()
    truncated.write_bytes(data[:-3000])
    ae = AE(ae_title="CT_SIM")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="DKOAR")
    assert assoc.is_established
    status = assoc.send_c_store(truncated)
    assoc.release()
    assert status.Status == 0xC000 and "truncated" in str(status.get("ErrorComment", ""))

    # a study over the size limit, at a node whose limit is smaller than a tiny study and that
    # takes one association at a time
    limited = NodeProcess(tmp_path / "limited", free_port(), ["--allow", "CT_SIM", "--model", str(fast_model),
                                                              "--idle-seconds", "1", "--max-study-mb", "0.1",
                                                              "--max-associations", "1"]).start()
    try:
        too_big = storescu(limited.port, [studies[4]], "CT_SIM", "DKOAR", "-v")
        assert "OutOfResources" in too_big.stderr, too_big.stderr
        capsys.readouterr()
        assert main(["serve", "status", "--work", str(limited.work)]) == 0
        assert "larger than the node's limit of 0.1 MB" in capsys.readouterr().out
        held = ae.associate("127.0.0.1", limited.port, ae_title="DKOAR")
        assert held.is_established
        assert echoscu(limited.port).returncode != 0  # the one association is taken
        held.release()
        deadline = time.monotonic() + 20  # the node frees the association once it sees the release
        while echoscu(limited.port).returncode != 0:
            assert time.monotonic() < deadline, "the released association was never freed"
            time.sleep(0.2)
    finally:
        limited.stop()
    # a disk without the free space the node keeps: every slice refused
    full = NodeProcess(tmp_path / "full", free_port(), ["--allow", "CT_SIM", "--model", str(fast_model),
                                                        "--min-free-mb", "1e12"]).start()
    try:
        refused = storescu(full.port, [studies[4]], "CT_SIM", "DKOAR", "-v")
        assert refused.stderr.count("OutOfResources") == 22
        assert "disk nearly full" in full.log()
    finally:
        full.stop()

    # and the node goes on: echo, and a good study still comes back
    assert echoscu(node.port).returncode == 0
    assert storescu(node.port, [studies[5]], "PACS").returncode == 0
    assert _rtstruct_for(orthanc, _series_uid(studies[5]))
    status = _status(node, capsys)
    assert "truncated" in status and "MR is not CT" in status and "missing" in status


def test_callers_must_speak_tls_when_the_node_has_a_certificate(fast_model, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "node.key", tmp_path / "node.crt"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    node = NodeProcess(tmp_path / "work", free_port(), ["--allow", "CT_SIM", "--model", str(fast_model),
                                                        "--tls-certificate", str(cert), "--tls-key", str(key)]).start()
    try:
        assert echoscu(node.port, "CT_SIM", "DKOAR", "+tla", "-ic").returncode == 0
        assert echoscu(node.port).returncode != 0  # no TLS: no association
    finally:
        node.stop()
