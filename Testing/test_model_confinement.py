"""A model folder names only its own files: entries that point outside it (absolute paths, '..',
links, a checkpoint elsewhere) or that are too many are refused before anything is hashed or loaded,
and ``dkoar model verify`` says so in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.hashing import file_sha256
from DKOARSegmentationLib.model.bundle import MANIFEST_NAME, MAX_MODEL_FILES, load_bundle
from DKOARSegmentationLib.model.manifest import init_torchscript_manifest
from Testing.model_factory import make_model_folder


@pytest.fixture(scope="module")
def model_template(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("template") / "m")


@pytest.fixture
def model(tmp_path, model_template):
    """A fresh copy of a valid model folder, beside a secret file outside it."""
    import shutil

    folder = tmp_path / "models" / "m"
    shutil.copytree(model_template, folder)
    secret = tmp_path / "outside" / "stolen.pth"
    secret.parent.mkdir()
    secret.write_bytes((model_template / "fold_0" / "checkpoint_final.pth").read_bytes())
    return folder, secret


def _edit_manifest(folder, change) -> None:
    path = folder / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _verify(folder) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", "model", "verify", str(folder)],
                          capture_output=True, text=True, timeout=300)


def test_model_verify_refuses_an_absolute_entry_in_one_line(model):
    folder, secret = model
    _edit_manifest(folder, lambda m: m["files"].update({str(secret): file_sha256(secret)}))
    result = _verify(folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(secret) in result.stderr and "not a file inside the model folder" in result.stderr


@pytest.mark.parametrize("entry", ["../../outside/stolen.pth", "fold_0/../../../outside/stolen.pth",
                                   "C:\\outside\\stolen.pth", "fold_0\\..\\..\\stolen.pth", "", "  "])
def test_entries_that_climb_out_or_name_another_drive_are_refused(model, entry):
    folder, secret = model
    _edit_manifest(folder, lambda m: m["files"].update({entry: file_sha256(secret)}))
    for verify in (True, False):  # `model info` reads the manifest unverified: refused all the same
        with pytest.raises(DKOARError, match="not a file inside the model folder"):
            load_bundle(folder, verify=verify)


def test_a_link_leading_out_of_the_folder_is_refused(model):
    folder, secret = model
    (folder / "fold_0" / "checkpoint_final.pth").unlink()
    (folder / "fold_0" / "checkpoint_final.pth").symlink_to(secret)  # same bytes, so the sha256 matches
    with pytest.raises(DKOARError, match="leads outside the model folder"):
        load_bundle(folder)
    result = _verify(folder)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "leads outside" in result.stderr


def test_a_link_inside_the_folder_is_fine(model):
    folder, _ = model
    (folder / "plans_copy.json").write_bytes((folder / "plans.json").read_bytes())
    (folder / "plans.json").unlink()
    (folder / "plans.json").symlink_to(folder / "plans_copy.json")
    assert load_bundle(folder).files["plans.json"] == file_sha256(folder / "plans_copy.json")


def test_a_checkpoint_outside_the_folds_is_never_loaded(model):
    folder, secret = model
    # the checkpoint name climbs out; its file is not listed (so never hashed) ...
    _edit_manifest(folder, lambda m: m.update(checkpoint="../../outside/stolen.pth"))
    with pytest.raises(DKOARError, match="must be a file name in each fold_N folder"):
        load_bundle(folder, verify=False)
    # ... nor when it is listed with its real sha256
    _edit_manifest(folder, lambda m: m["files"].update({"fold_0/../../outside/stolen.pth": file_sha256(secret)}))
    result = _verify(folder)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_a_checkpoint_that_is_not_listed_is_refused_before_loading(model):
    folder, _ = model
    (folder / "fold_0" / "checkpoint_best.pth").write_bytes((folder / "fold_0" / "checkpoint_final.pth").read_bytes())
    _edit_manifest(folder, lambda m: m.update(checkpoint="checkpoint_best.pth"))
    with pytest.raises(DKOARError, match="not listed with its sha256"):
        load_bundle(folder, verify=False)


def test_a_manifest_listing_thousands_of_files_is_refused_without_hashing(model):
    folder, _ = model
    many = {f"fold_0/file_{n}.bin": "0" * 64 for n in range(5_000)}
    _edit_manifest(folder, lambda m: m["files"].update(many))
    start = time.perf_counter()
    with pytest.raises(DKOARError, match=f"at most {MAX_MODEL_FILES}"):
        load_bundle(folder)
    assert time.perf_counter() - start < 2.0


def test_a_manifest_that_is_no_object_or_nested_without_end_is_refused(model):
    folder, _ = model
    (folder / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DKOARError, match="nested too deeply"):
        load_bundle(folder)
    (folder / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(DKOARError, match="not a JSON object"):
        load_bundle(folder)
    (folder / MANIFEST_NAME).write_text(" " * (2 * 1024 * 1024))
    with pytest.raises(DKOARError, match="too large"):
        load_bundle(folder)


def test_a_torchscript_manifest_cannot_name_a_network_outside(tmp_path):
    (tmp_path / "outside.pt").write_bytes(b"not really a network")
    (tmp_path / "m").mkdir()
    with pytest.raises(DKOARError, match="not a file inside the model folder"):
        init_torchscript_manifest(tmp_path / "m", "../outside.pt", {1: "Brain"}, (2, 2, 2), (32, 32, 32), (-1000, 1000),
                                  0.0, 1.0, name="x", version="1", intended_use="tests")
    assert not (tmp_path / "m" / MANIFEST_NAME).exists()
