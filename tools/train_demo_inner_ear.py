#!/usr/bin/env python
"""Train the demo model's second stage: the cochleae, at 0.5 mm in-plane, on a crop around each
inner ear, and write it as an nnU-Net v2 result folder inside the demo model (``inner_ear/``).

Why a second stage: a cochlea is about 15 voxels at the first stage's 1.5 mm spacing, too few for
the whole-head network to learn (Dice 0 after 6,000 steps). At 0.5 mm it is about 130 voxels per
slice stack and a plain dark blob in the densest bone of the head, which a small network learns in
minutes. At inference the crop is placed from the first stage's output (see
``DKOARSegmentationLib.model.crop_refinement``); here crops are centred on the true cochlea with a
random offset larger than that placement's error, and mirrored left to right (the second stage
has one label, "Cochlea": the side is the crop's).

Reproducible (seeded phantoms, sampling, initialisation) and resumable (a checkpoint in the work
folder every few minutes; the same command continues).

    python tools/train_demo_inner_ear.py --work work_training_ear --minutes 60
    python tools/train_demo_inner_ear.py --work work_training_ear --export-only

NOT FOR CLINICAL USE: trained on synthetic phantoms only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from DKOARSegmentationLib.model.network import build_network
from DKOARSegmentationLib.model.preprocessing import (
    IntensityProperties,
    compute_new_shape,
    ct_normalise,
    resample_to_shape,
)
from DKOARSegmentationLib.phantom.generate import PhantomGrid, generate_phantom
from DKOARSegmentationLib.resources import demo_model_dir
from DKOARSegmentationLib.structures.catalogue import default_catalogue
from tools import train_demo_model
from tools.train_demo_model import deep_supervision_loss

SPACING_ZYX = [2.5, 0.5, 0.5]
PATCH_ZYX = [8, 32, 32]
FEATURES = [8, 16, 32]
STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
KERNELS = [[1, 3, 3], [3, 3, 3], [3, 3, 3]]
TRAIN_SEEDS = range(1000, 1060)
VALIDATION_SEEDS = range(2000, 2004)
SIDES = {"L": "Cochlea_L", "R": "Cochlea_R"}
STAGE_FOLDER = "inner_ear"
DEMO_VERSION = "0.4.1"  # the demo model's version with this second stage (0.3.0: the first stage alone)
CROP_MM = [40.0, 32.0, 32.0]  # z, y, x: the crop about each inner ear at inference
# where the crop is centred (model.crop_refinement): fitted by least squares on the ground truth of
# 24 phantoms (seeds 1000-1023): largest error 2.6 mm (x), 3.7 mm (y), 3.8 mm (z)
CENTRE = {"from": "Parotid", "towards": "Brainstem", "fraction_x": 0.384, "fraction_y": 0.23, "above_top_mm": 5.4}
# the crop kept around each cochlea (mm, half sizes z, y, x): a patch plus the largest offset
HALF_MM = (25.0, 32.0, 32.0)
NEAR_OFFSET_MM = (3.0, 5.0, 5.0)  # most patches: the cochlea within this of the patch centre
FAR_OFFSET_MM = (8.0, 10.0, 10.0)  # the rest: the cochlea anywhere, partly out, or absent


def architecture() -> dict:
    return train_demo_model.architecture(FEATURES, KERNELS, STRIDES)


def first_stage_intensity(model_dir: Path) -> dict:
    """The first stage's CT normalisation: both stages see the same intensities."""
    plans = json.loads((model_dir / "plans.json").read_text())
    return plans["foreground_intensity_properties_per_channel"]["0"]


def plans_json(intensity: dict) -> dict:
    return {
        "dataset_name": "Dataset902_DKOARPhantomInnerEar",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [2.5, 0.977, 0.977],
        "original_median_shape_after_transp": [16, 33, 33],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 4,
                "patch_size": PATCH_ZYX,
                "median_image_size_in_voxels": PATCH_ZYX,
                "spacing": SPACING_ZYX,
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                       "force_separate_z": None},
                "architecture": architecture(),
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "DKOAR demo inner-ear stage (hand-sized for a 2-core CPU)",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": intensity},
    }


def dataset_json(n_training: int) -> dict:
    return {
        "name": "Dataset902_DKOARPhantomInnerEar",
        "description": "Crops around the inner ears of synthetic head-and-neck phantoms (DKOARSegmentation), "
                       "one cochlea per crop. Demonstration only, not for clinical use.",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "Cochlea": 1},
        "numTraining": n_training,
        "file_ending": ".nii.gz",
    }


def _resample_crop(image, mask, spacing):
    """A crop to the stage's spacing as the predictor resamples (cubic in-plane, nearest across
    slices), its mask linearly (nnU-Net's order-1 labels) and thresholded."""
    shape = compute_new_shape(image.shape, spacing, SPACING_ZYX)
    img = resample_to_shape(image.astype(np.float32), shape, spacing, SPACING_ZYX, order=3,
                            work_dtype=np.float32, out_dtype=np.float32)
    lab = resample_to_shape(mask.astype(np.float32), shape, spacing, SPACING_ZYX, order=1,
                            work_dtype=np.float32, out_dtype=np.float32) >= 0.5
    return img, lab.astype(np.uint8)


def prepare_case(seed: int, cache: Path) -> Path:
    """Both inner ears of a phantom at a seeded random CT grid, as crops at the stage's spacing
    (the right one mirrored to look like the left)."""
    path = cache / f"ears_{seed}.npz"
    if path.exists():
        return path
    rng = np.random.default_rng(seed + 11)
    grid = PhantomGrid(matrix=int(rng.integers(300, 340)), pixel_mm=float(rng.uniform(0.8, 1.2)),
                       slice_mm=float(rng.choice([2.0, 2.5, 3.0])), z_min=-70.0, z_max=60.0)
    ph = generate_phantom(seed, "HFS", grid)  # HFS: the canonical layout (z, y, x)
    spacing = (grid.slice_mm, grid.pixel_mm, grid.pixel_mm)
    catalogue = default_catalogue()
    out = {}
    for side, name in SIDES.items():
        mask = ph.truth.labels == catalogue.by_name(name).label
        centre = np.argwhere(mask).mean(axis=0)
        half = [int(np.ceil(h / s)) for h, s in zip(HALF_MM, spacing)]
        lo = [max(int(round(c)) - h, 0) for c, h in zip(centre, half)]
        hi = [min(int(round(c)) + h + 1, n) for c, h, n in zip(centre, half, mask.shape)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        image, lab = _resample_crop(ph.ct.voxels[box], mask[box], spacing)
        if side == "R":
            image, lab = image[:, :, ::-1], lab[:, :, ::-1]
        out[f"image_{side}"] = image
        out[f"labels_{side}"] = lab
    np.savez(path, **out)
    return path


def load_crops(paths, intensity: IntensityProperties) -> list[dict]:
    crops = []
    for p in paths:
        with np.load(p) as z:
            for side in SIDES:
                image = ct_normalise(z[f"image_{side}"], intensity)
                labels = z[f"labels_{side}"]
                centre = np.argwhere(labels > 0).mean(axis=0) if labels.any() else np.array(labels.shape) / 2
                crops.append({"image": image, "labels": labels, "centre": centre, "pad": float(image.min())})
    return crops


def sample_patch(crop: dict, rng: np.random.Generator):
    patch = np.array(PATCH_ZYX)
    reach = NEAR_OFFSET_MM if rng.random() < 0.85 else FAR_OFFSET_MM
    offset = np.array([rng.uniform(-r, r) / s for r, s in zip(reach, SPACING_ZYX)])
    lo = np.round(crop["centre"] + offset).astype(int) - patch // 2
    shape = np.array(crop["image"].shape)
    img = np.full(PATCH_ZYX, crop["pad"], dtype=np.float32)
    lab = np.zeros(PATCH_ZYX, dtype=np.int64)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(lo + patch, shape)
    if np.all(src_hi > src_lo):
        s = tuple(slice(a, b) for a, b in zip(src_lo, src_hi))
        d = tuple(slice(a - b, a - b + (c - a)) for a, b, c in zip(src_lo, lo, src_hi))
        img[d] = crop["image"][s]
        lab[d] = crop["labels"][s]
    if rng.random() < 0.5:  # left and right ears alike
        img, lab = img[:, :, ::-1].copy(), lab[:, :, ::-1].copy()
    img = img * np.float32(rng.uniform(0.9, 1.1)) + np.float32(rng.uniform(-0.1, 0.1))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 0.05))
    return img, lab


def validation_dice(net, crops: list[dict]) -> float:
    """Dice of the cochlea on centred patches of the validation crops."""
    net.eval()
    inter = total = 0
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for crop in crops:
            img, lab = sample_patch(crop, rng)
            out = net(torch.from_numpy(img)[None, None])
            out = out[0] if isinstance(out, (list, tuple)) else out
            pred = out.argmax(1)[0].numpy()
            inter += int(np.count_nonzero((pred == 1) & (lab == 1)))
            total += int(np.count_nonzero(pred == 1) + np.count_nonzero(lab == 1))
    net.train()
    return 2 * inter / max(total, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("work_training_ear"))
    ap.add_argument("--model", type=Path, default=None, help="the first stage's folder (default: the demo model)")
    ap.add_argument("--out", type=Path, default=None, help=f"the stage's folder (default: MODEL/{STAGE_FOLDER})")
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget in this run")
    ap.add_argument("--steps", type=int, default=1500, help="total optimisation steps (learning-rate schedule)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-only", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = args.model or demo_model_dir()
    cache = args.work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    intensity_json = first_stage_intensity(model_dir)
    intensity = IntensityProperties.from_plans(intensity_json)
    t0 = time.time()
    train = load_crops([prepare_case(s, cache) for s in TRAIN_SEEDS], intensity)
    valid = load_crops([prepare_case(s, cache) for s in VALIDATION_SEEDS], intensity)
    print(f"prepared {len(train)} training and {len(valid)} validation crops in {time.time() - t0:.0f} s", flush=True)

    torch.manual_seed(0)
    net = build_network(architecture(), 1, 2, deep_supervision=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-5)
    ckpt_path = args.work / "checkpoint_latest.pth"
    step, log = 0, []
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True)
        net.load_state_dict(ck["network_weights"])
        opt.load_state_dict(ck["optimizer_state"])
        step, log = int(ck["step"]), list(ck["log"])
        print(f"resumed at step {step}", flush=True)

    def save():
        torch.save({"network_weights": net.state_dict(), "optimizer_state": opt.state_dict(), "step": step,
                    "log": log}, str(ckpt_path) + ".part")
        Path(str(ckpt_path) + ".part").replace(ckpt_path)

    if not args.export_only:
        rng = np.random.default_rng(4321 + step)
        net.train()
        start, last_save, running = time.time(), time.time(), []
        while step < args.steps and time.time() - start < args.minutes * 60:
            lr = args.lr * (1 - step / args.steps) ** 0.9
            for g in opt.param_groups:
                g["lr"] = lr
            batch = [sample_patch(train[rng.integers(len(train))], rng) for _ in range(args.batch)]
            x = torch.from_numpy(np.stack([b[0] for b in batch])[:, None])
            y = torch.from_numpy(np.stack([b[1] for b in batch]))
            loss = deep_supervision_loss(net(x), y, 2, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            opt.step()
            step += 1
            running.append(float(loss.detach()))
            if step % 25 == 0:
                log.append([step, float(np.mean(running))])
                print(f"step {step} loss {np.mean(running):.4f} lr {lr:.2e} {time.time() - start:.0f}s", flush=True)
                running = []
            if step % 100 == 0:
                print(f"step {step} validation Dice {validation_dice(net, valid):.3f}", flush=True)
            if time.time() - last_save > 180:
                save()
                last_save = time.time()
        save()
    print(f"validation Dice {validation_dice(net, valid):.3f} after {step} steps", flush=True)
    out = args.out or model_dir / STAGE_FOLDER
    export(net, intensity_json, out, step, log, len(train))
    if out.resolve().parent == model_dir.resolve() and (model_dir / "dkoar_model.json").exists():
        from DKOARSegmentationLib.model.manifest import add_refinement

        add_refinement(model_dir, {"folder": out.name, "structures": SIDES, "crop_mm": CROP_MM, "centre": CENTRE})
        describe_stage(model_dir, step)
        print(f"described the second stage in {model_dir / 'dkoar_model.json'}", flush=True)
    return 0


def describe_stage(model_dir: Path, step: int) -> None:
    """The model card's version and training data, with the second stage."""
    path = model_dir / "dkoar_model.json"
    manifest = json.loads(path.read_text())
    text = manifest.get("training_data", "").split(" The cochleae (about 15 voxels")[0].split(" Second stage")[0]
    manifest["version"] = DEMO_VERSION
    manifest["training_data"] = (
        f"{text} Second stage ({STAGE_FOLDER}/, tools/train_demo_inner_ear.py, {step} steps): the cochleae at "
        f"{' x '.join(f'{v:g}' for v in SPACING_ZYX)} mm (z, y, x) on a {' x '.join(f'{v:g}' for v in CROP_MM)} mm "
        "crop per side, placed from the first stage's parotid and brainstem; trained on crops around both ears "
        f"of {len(TRAIN_SEEDS)} phantoms (seeds {TRAIN_SEEDS.start}-{TRAIN_SEEDS.stop - 1}, pixel 0.8-1.2 mm, "
        "slices 2-3 mm), the cochlea up to 10 x 14 x 14 mm off the patch centre, left and right mirrored.")
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def export(net, intensity: dict, out: Path, step: int, log: list, n_crops: int) -> None:
    """Write the stage's nnU-Net v2 result folder (dataset.json, plans.json, fold_0)."""
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    plans = plans_json(intensity)
    ds = dataset_json(n_crops)
    (out / "dataset.json").write_text(json.dumps(ds, indent=2) + "\n")
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    checkpoint = {
        "network_weights": net.state_dict(),
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {"train_losses": [v for _, v in log]},
        "_best_ema": None,
        "current_epoch": step,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": ds, "device": "cpu"},
        "trainer_name": "nnUNetTrainerNoMirroring",
        "inference_allowed_mirroring_axes": None,
    }
    tmp = out / "fold_0" / "checkpoint_final.pth.part"
    torch.save(checkpoint, str(tmp))
    tmp.replace(out / "fold_0" / "checkpoint_final.pth")
    print(f"wrote {out} after {step} steps", flush=True)


if __name__ == "__main__":
    sys.exit(main())
