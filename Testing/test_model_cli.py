"""``dkoar model init|info|verify`` and TorchScript model bundles."""

import json

import numpy as np
import pytest
import torch

from DKOARSegmentationLib.cli import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.model.bundle import MANIFEST_NAME, load_bundle
from DKOARSegmentationLib.model.loading import load_model
from DKOARSegmentationLib.model.manifest import init_torchscript_manifest
from DKOARSegmentationLib.model.predict_options import PredictOptions
from DKOARSegmentationLib.model.predictor import predict_labels
from DKOARSegmentationLib.volume import Volume
from Testing.model_factory import make_model_folder


def test_model_init_info_verify(tmp_path, capsys):
    folder = make_model_folder(tmp_path / "m")
    (folder / MANIFEST_NAME).unlink()
    (tmp_path / "perf.json").write_text(json.dumps({"mean_dice_32": 0.87, "per_structure": {"Brain": 0.97}}))
    args = ["model", "init", str(folder), "--name", "DK national OAR", "--version", "2.1.0",
            "--intended-use", "Head-and-neck OAR contouring, adults, planning CT", "--training-data", "DCPT 2019-2023",
            "--performance", str(tmp_path / "perf.json")]
    assert main(args) == 0
    assert "3 files hashed" in capsys.readouterr().out
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["name"] == "DK national OAR" and manifest["version"] == "2.1.0"
    assert manifest["performance"]["mean_dice_32"] == 0.87

    assert main(args) == 2  # an existing manifest is not overwritten
    assert "--force" in capsys.readouterr().err
    assert main(args[:-2] + ["--version", "2.1.1", "--force"]) == 0
    assert json.loads((folder / MANIFEST_NAME).read_text())["version"] == "2.1.1"
    capsys.readouterr()

    assert main(["model", "info", str(folder)]) == 0
    card = capsys.readouterr().out
    for text in ("DK national OAR 2.1.1", "NOT for clinical use", "Head-and-neck OAR contouring", "DCPT 2019-2023",
                 "17=Parotid_L", "fold_0/checkpoint_final.pth"):
        assert text.lower() in card.lower(), text

    assert main(["model", "verify", str(folder)]) == 0
    assert "3 files match" in capsys.readouterr().out
    with open(folder / "fold_0" / "checkpoint_final.pth", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    assert main(["model", "verify", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint_final.pth: its sha256 differs" in err and len(err.strip().splitlines()) == 1


def test_model_init_of_a_folder_that_is_not_nnunet(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["model", "init", str(tmp_path / "x")]) == 2
    assert "dataset.json is missing" in capsys.readouterr().err


class Thresholds(torch.nn.Module):
    """Logits for background / soft tissue / bone of a CT normalised with clip (-1000, 2000),
    mean 0, std 1000: bone above 300 HU, soft tissue -300..300 HU."""

    def forward(self, x):
        bone = 20.0 * (x - 0.3)
        soft = 20.0 * torch.minimum(x + 0.3, 0.3 - x)
        return torch.cat([torch.zeros_like(x), soft, bone], dim=1)


@pytest.fixture()
def torchscript_folder(tmp_path):
    folder = tmp_path / "ts"
    folder.mkdir()
    torch.jit.save(torch.jit.script(Thresholds()), str(folder / "network.pt"))
    (tmp_path / "labels.json").write_text(json.dumps({"1": "Brain", "2": "Bone_Mandible"}))
    return folder


def test_torchscript_model_runs_and_is_verified(torchscript_folder, tmp_path, capsys):
    args = ["model", "init", str(torchscript_folder), "--torchscript", "network.pt", "--spacing", "4", "4", "4",
            "--patch", "16", "32", "32", "--ct-clip", "-1000", "2000", "--ct-mean", "0", "--ct-std", "1000",
            "--labels", str(tmp_path / "labels.json"), "--intended-use", "tests"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["model", "info", str(torchscript_folder)]) == 0
    assert "torchscript" in capsys.readouterr().out
    assert main(["model", "verify", str(torchscript_folder)]) == 0

    bundle = load_bundle(torchscript_folder)
    model = load_model(bundle, torch.device("cpu"))
    assert model.num_outputs == 3 and model.patch_zyx == (16, 32, 32)
    hu = np.full((30, 40, 40), -1000, np.int16)
    hu[5:25, 5:35, 5:35] = 40
    hu[10:20, 15:25, 15:25] = 1200
    ct = Volume(hu, np.diag([2.0, 2.0, 2.5, 1.0]))
    labels = predict_labels(model, ct)
    from scipy.ndimage import binary_erosion

    inside = {v: binary_erosion(hu == v, iterations=2) for v in (-1000, 40, 1200)}  # away from resampling blur
    assert np.mean(labels[inside[1200]] == 2) > 0.99
    assert np.mean(labels[inside[40]] == 1) > 0.99
    assert np.mean(labels[inside[-1000]] == 0) > 0.99

    (torchscript_folder / "network.pt").write_bytes((torchscript_folder / "network.pt").read_bytes() + b"x")
    with pytest.raises(DKOARError, match="sha256 differs"):
        load_bundle(torchscript_folder)


def test_torchscript_manifest_needs_its_fields(torchscript_folder):
    with pytest.raises(DKOARError, match="clip"):
        init_torchscript_manifest(torchscript_folder, "network.pt", {1: "Brain"}, (4, 4, 4), (16, 32, 32),
                                  (2000, -1000), 0, 1000, name="x", version="1", intended_use="t")
    with pytest.raises(DKOARError, match="no such network file"):
        init_torchscript_manifest(torchscript_folder, "missing.pt", {1: "Brain"}, (4, 4, 4), (16, 32, 32),
                                  (-1000, 2000), 0, 1000, name="x", version="1", intended_use="t")
    assert main(["model", "init", str(torchscript_folder), "--torchscript", "network.pt"]) == 2


def test_monai_network_runs_and_foreign_classes_are_refused(tmp_path, capsys):
    from monai.networks.nets import UNet

    folder = tmp_path / "monai"
    folder.mkdir()
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8, 16], "strides": [2, 2],
              "num_res_units": 1, "norm": "INSTANCE"}
    torch.manual_seed(0)
    net = UNet(**kwargs).eval()
    torch.save(net.state_dict(), folder / "model.pt")
    (tmp_path / "net.json").write_text(json.dumps({"class": "UNet", "kwargs": kwargs}))
    (tmp_path / "labels.json").write_text(json.dumps({"1": "Brain", "2": "Bone_Mandible"}))
    args = ["model", "init", str(folder), "--monai", "model.pt", "--monai-network", str(tmp_path / "net.json"),
            "--spacing", "4", "4", "4", "--patch", "16", "32", "32", "--ct-clip", "-1000", "2000", "--ct-mean", "0",
            "--ct-std", "1000", "--labels", str(tmp_path / "labels.json")]
    assert main(args) == 0
    assert main(["model", "verify", str(folder)]) == 0
    assert main(["model", "info", str(folder)]) == 0
    assert "MONAI UNet" in capsys.readouterr().out

    model = load_model(load_bundle(folder), torch.device("cpu"))
    ct = Volume(np.random.default_rng(0).normal(0, 300, (16, 32, 32)).astype(np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    # a MONAI model's windows are summed in float32, as MONAI does (nnU-Net's float16 sums would
    # lose the image's border voxels, where one window's Gaussian weight is below float16's range)
    labels = predict_labels(model, ct, options=PredictOptions(mode="fast"))
    x = torch.from_numpy(np.clip(ct.voxels, -1000, 2000) / 1000.0)[None, None].float()
    with torch.inference_mode():
        logits = net(x)[0]  # one window exactly covering the CT: the network's own argmax
    direct = logits.argmax(0).numpy()
    top2 = logits.topk(2, dim=0).values
    clear = (top2[0] - top2[1]).numpy() > 0.01  # away from ties, which float16 sums may break either way
    assert clear.mean() > 0.9 and np.array_equal(labels[clear], direct[clear])

    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["network"]["class"] = "os.system"
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DKOARError, match="network: a class of UNet"):
        load_bundle(folder)
