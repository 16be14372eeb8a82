"""Test data for the DICOM node and the batch: a model fast enough for twenty studies on two
shared cores, tiny phantom studies with distinct identities, and the node as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from DKOARSegmentationLib.model.manifest import init_torchscript_manifest
from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom

# 64 x 64 pixels of 4 mm, 6 mm slices over 126 mm: 22 slices of 8 kB, a study in 0.2 s
TINY_STUDY_GRID = PhantomGrid(matrix=64, pixel_mm=4.0, slice_mm=6.0, z_min=-60.0, z_max=66.0)
# the grid of Testing/test_slicer_mrml.py (72 slices of 18 kB)
SMALL_STUDY_GRID = PhantomGrid(matrix=96, pixel_mm=2.6, slice_mm=4.0)


class BodyAndBone(torch.nn.Module):
    """Logits of background, body (-500..300 HU) and bone (above 300 HU) on a CT normalised with
    clip (-1000, 2000), mean 0, std 1000: a real network file, deterministic, milliseconds a window."""

    def forward(self, x):
        above_air = x + 0.5
        above_bone = x - 0.3
        body = torch.where(above_bone > 0, -above_bone, above_air) * 20.0
        return torch.cat([torch.zeros_like(x), body, above_bone * 20.0], dim=1)


def make_fast_model(folder: Path, version: str = "1.0") -> Path:
    """A TorchScript model bundle (kind "torchscript") labelling Brain (the body) and Bone_Mandible
    (all bone) at 8 mm: the node's and the batch's tests need a real model run, not a good one."""
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch calls TorchScript deprecated; models are still shipped this way
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(BodyAndBone()), str(folder / "network.pt"))
    init_torchscript_manifest(folder, "network.pt", {1: "Brain", 2: "Bone_Mandible"}, spacing_zyx=(8, 8, 8),
                              patch_zyx=(16, 16, 16), ct_clip=(-1000, 2000), ct_mean=0.0, ct_std=1000.0,
                              name="fast test model", version=version, intended_use="tests only")
    return folder


def write_studies(root: Path, seeds, grid: PhantomGrid = TINY_STUDY_GRID) -> list[Path]:
    """One phantom CT folder per seed (each seed its own patient, study and series UIDs)."""
    folders = []
    for seed in seeds:
        write_phantom(root / f"p{seed:02d}", seed=seed, grid=grid)
        folders.append(root / f"p{seed:02d}" / "ct")
    return folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class NodeProcess:
    """``dkoar serve`` as a process of its own (so that a test can kill -9 it)."""

    def __init__(self, work: Path, port: int, args: list[str]):
        self.work, self.port, self.args = work, port, args
        self.process: subprocess.Popen | None = None

    def start(self) -> "NodeProcess":
        self.work.mkdir(parents=True, exist_ok=True)
        offset = len(self.log()) if (self.work / "stderr.txt").exists() else 0
        log = open(self.work / "stderr.txt", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "DKOARSegmentationLib.cli", "serve", "--port",
                                         str(self.port), "--work", str(self.work), *self.args],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        # ready when it says so: probing the port would hold one of its association slots until
        # pynetdicom's timeout
        deadline = time.monotonic() + 120
        while f"on 127.0.0.1:{self.port}" not in self.log()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"dkoar serve exited with {self.process.returncode}:\n{self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dkoar serve not ready after 120 s:\n{self.log()[-2000:]}")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int | None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode if self.process else None

    def log(self) -> str:
        return (self.work / "stderr.txt").read_text(errors="replace")
