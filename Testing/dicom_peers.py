"""Real DICOM peers on loopback for the node's tests: Debian's Orthanc and dcmtk's storescp,
each started by the test in its own temporary folder on free ports (never a system service)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .node_factory import free_port, wait_for_port


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; `make validators` installs Debian's orthanc and dcmtk")
    return path


class Orthanc:
    """An Orthanc of the test's own: storage and index in ``folder``, loopback only."""

    def __init__(self, folder: Path, aet: str = "ORTHANC", modalities: dict | None = None):
        self.folder, self.aet = folder, aet
        self.dicom_port, self.http_port = free_port(), free_port()
        self.modalities = modalities or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> "Orthanc":
        binary = require("Orthanc")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "dkoar-test", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"), "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomModalities": self.modalities, "Plugins": [], "HttpServerEnabled": True,
            "DicomServerEnabled": True, "ConcurrentJobs": 1, "HttpsCACertificates": "",
            "StorageCompression": False, "DicomCheckCalledAet": False,
        }
        (self.folder / "config.json").write_text(json.dumps(config, indent=1))
        log = open(self.folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([binary, str(self.folder / "config.json")], stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.folder)
        log.close()
        wait_for_port(self.http_port, 60, self.process)
        wait_for_port(self.dicom_port, 60, self.process)
        return self

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def rtstructs(self) -> list[dict]:
        """The RTSTRUCT instances stored, each with its tags (simplified)."""
        found = []
        for series_id in self.get("/series"):
            series = self.get(f"/series/{series_id}")
            if series["MainDicomTags"].get("Modality") == "RTSTRUCT":
                for instance_id in series["Instances"]:
                    found.append(self.get(f"/instances/{instance_id}/simplified-tags"))
        return found

    def wait_for_rtstructs(self, count: int, timeout_s: float) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.rtstructs()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class StoreSCP:
    """dcmtk's storescp writing what it receives into ``folder``."""

    def __init__(self, folder: Path, aet: str = "STORESCP"):
        self.folder, self.aet, self.port = folder, aet, free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "StoreSCP":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([require("storescp"), "-aet", self.aet, "-od", str(self.folder),
                                         "--accept-all", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 30, self.process)
        return self

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def datasets(self) -> list:
        """The files received so far, read. storescp writes each under its final name, so a file
        changed in the last second or not yet readable is left for the next look."""
        import pydicom
        from pydicom.errors import InvalidDicomError

        found = []
        for path in self.files():
            if time.time() - path.stat().st_mtime < 1.0:
                continue
            try:
                found.append(pydicom.dcmread(path))
            except (InvalidDicomError, EOFError, ValueError):
                continue
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def storescu(port: int, files_or_folders, calling: str = "CT_SIM", called: str = "DKOAR", *extra: str,
             timeout_s: float = 120) -> subprocess.CompletedProcess:
    """dcmtk's storescu sending files (folders are scanned) to the node on loopback."""
    args = [require("storescu"), "-aet", calling, "-aec", called, "+sd", "+r", "-nh", *extra, "127.0.0.1", str(port)]
    args += [str(f) for f in files_or_folders]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)


def echoscu(port: int, calling: str = "CT_SIM", called: str = "DKOAR", *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([require("echoscu"), "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=60)
