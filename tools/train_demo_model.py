#!/usr/bin/env python
"""Train the demonstration model on synthetic phantoms and write it as an nnU-Net v2 result folder.

Reproducible: seeded phantoms, seeded sampling and initialisation. Resumable: a checkpoint is
saved every few minutes in the work folder, and a second run with the same arguments continues
from it (a session that stops ends its processes). Sized for a 2-core CPU: about an hour.

    python tools/train_demo_model.py --work work_training --minutes 60
    python tools/train_demo_model.py --work work_training --export-only   # write the folder

NOT FOR CLINICAL USE: the model has only ever seen synthetic phantoms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from DKOARSegmentationLib.model.bundle import MANIFEST_NAME
from DKOARSegmentationLib.model.manifest import init_manifest
from DKOARSegmentationLib.model.network import build_network
from DKOARSegmentationLib.model.preprocessing import (
    IntensityProperties,
    ct_normalise,
    resample_image,
    resample_labels_nearest,
    shape_for_spacing,
)
from DKOARSegmentationLib.phantom.generate import PhantomGrid, generate_phantom
from DKOARSegmentationLib.resources import demo_model_dir
from DKOARSegmentationLib.structures.catalogue import default_catalogue

SPACING_ZYX = [2.5, 1.5, 1.5]
PATCH_ZYX = [48, 96, 96]
FEATURES = [8, 16, 32, 64, 96]
TRAIN_SEEDS = range(1000, 1036)
MODEL_NAME = "DKOAR demo phantom model"
MODEL_VERSION = "0.3.0"  # 0.2.0: whole field of view; 0.3.0: fine-tuned without class weights, small structures oversampled
INTENDED_USE = ("Demonstration only, NOT FOR CLINICAL USE: trained on synthetic phantoms so that the extension "
                "runs out of the box and its tests have a real network to run.")


def architecture(features=FEATURES, kernels=None, strides=None) -> dict:
    """nnU-Net's plain U-Net with ``features`` per stage: 3x3x3 kernels and a stride of 2 after the
    first stage unless ``kernels`` and ``strides`` say otherwise."""
    n = len(features)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": list(features),
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": kernels or [[3, 3, 3]] * n,
            "strides": strides or [[1, 1, 1]] + [[2, 2, 2]] * (n - 1),
            "n_conv_per_stage": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def dataset_json(n_training: int) -> dict:
    labels = {"background": 0}
    for s in default_catalogue():
        labels[s.name] = s.label
    return {
        "name": "Dataset901_DKOARPhantom",
        "description": "Synthetic head-and-neck phantoms (DKOARSegmentation). Demonstration only, not for clinical use.",
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": n_training,
        "file_ending": ".nii.gz",
    }


def plans_json(props: IntensityProperties, median_shape) -> dict:
    return {
        "dataset_name": "Dataset901_DKOARPhantom",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [2.5, 0.977, 0.977],
        "original_median_shape_after_transp": [115, 512, 512],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": PATCH_ZYX,
                "median_image_size_in_voxels": [int(v) for v in median_shape],
                "spacing": SPACING_ZYX,
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
                "architecture": architecture(),
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "DKOAR demo (hand-sized for a 2-core CPU)",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 3071.0, "min": -1024.0,
                "mean": props.mean, "median": props.mean, "std": props.std,
                "percentile_00_5": props.percentile_00_5, "percentile_99_5": props.percentile_99_5,
            }
        },
    }


def prepare_case(seed: int, cache: Path) -> Path:
    """A phantom at a seeded random CT grid, resampled to the model spacing, with its whole field
    of view: the network must see air and the couch too (a window of nothing but air is normalised
    to unit variance noise by instance normalisation; a network that never saw one paints
    structures into it, which nnU-Net, running every window, would keep)."""
    path = cache / f"case_{seed}_fov.npz"
    if path.exists():
        return path
    rng = np.random.default_rng(seed + 7)
    grid = PhantomGrid(matrix=int(rng.integers(300, 340)), pixel_mm=float(rng.uniform(0.8, 1.2)),
                       slice_mm=float(rng.choice([2.0, 2.5, 3.0])))
    ph = generate_phantom(seed, "HFS", grid)
    image, labels = ph.ct.voxels, ph.truth.labels  # HFS is already the canonical layout
    spacing = (grid.slice_mm, grid.pixel_mm, grid.pixel_mm)
    shape = shape_for_spacing(image.shape, spacing, SPACING_ZYX)
    image = resample_image(image, shape)
    labels = resample_labels_nearest(labels, shape)
    np.savez(path, image=image.astype(np.float32), labels=labels.astype(np.uint8))
    return path


def intensity_properties(cases: list[dict]) -> IntensityProperties:
    rng = np.random.default_rng(0)
    samples = []
    for case in cases:
        fg = case["image"][case["labels"] > 0]
        samples.append(rng.choice(fg, size=min(len(fg), 20000), replace=False))
    v = np.concatenate(samples)
    return IntensityProperties(float(v.mean()), float(v.std()), float(np.percentile(v, 0.5)), float(np.percentile(v, 99.5)))


def foreground_class_odds(n_classes: int, oversample: dict[int, float]) -> np.ndarray:
    """The probability of each label being the centre of a foreground patch: uniform over the
    structures as in nnU-Net, except those given a factor (tiny structures such as the cochleae,
    about 15 voxels at the model spacing, are otherwise seen too rarely to be learnt)."""
    odds = np.ones(n_classes, dtype=np.float64)
    odds[0] = 0.0
    for label, factor in oversample.items():
        odds[label] = factor
    return odds / odds.sum()


def parse_oversample(text: str) -> dict[int, float]:
    """``"Cochlea_L=4,Chiasm=2"`` -> {label: factor}, by catalogue name."""
    catalogue = default_catalogue()
    factors = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, factor = item.partition("=")
        factors[catalogue.by_name(name.strip()).label] = float(factor)
    return factors


def sample_patch(case: dict, rng: np.random.Generator, n_classes: int, foreground: bool,
                 class_odds: np.ndarray | None = None):
    image, labels = case["image"], case["labels"]
    patch = np.array(PATCH_ZYX)
    shape = np.array(image.shape)
    if foreground:
        cls = int(rng.choice(n_classes, p=class_odds)) if class_odds is not None else int(rng.integers(1, n_classes))
        where = case["where"].get(cls)
        centre = where[rng.integers(len(where))] if where is not None and len(where) else shape // 2
        centre = centre + rng.integers(-patch // 4, patch // 4 + 1)
    else:
        centre = np.array([rng.integers(0, s) for s in shape])
    lo = centre - patch // 2
    # pad where the patch leaves the volume (as nnU-Net pads)
    img = np.full(PATCH_ZYX, case["pad"], dtype=np.float32)
    lab = np.zeros(PATCH_ZYX, dtype=np.int64)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + patch, shape)
    dst_lo = src_lo - lo
    dst_hi = dst_lo + (src_hi - src_lo)
    if np.all(src_hi > src_lo):
        s = tuple(slice(a, b) for a, b in zip(src_lo, src_hi))
        d = tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))
        img[d] = image[s]
        lab[d] = labels[s]
    # intensity augmentation: contrast, brightness, noise
    img = img * np.float32(rng.uniform(0.9, 1.1)) + np.float32(rng.uniform(-0.1, 0.1))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 0.05))
    return img, lab


def class_weights(cases: list[dict], n_classes: int, cap: float = 50.0) -> torch.Tensor:
    """Cross-entropy weights (background / class frequency)^0.5, capped: with 34 mostly small
    structures, unweighted CE and soft Dice leave a small network predicting only background and
    brain for the first thousands of steps (the softmax saturates and Dice's gradient vanishes)."""
    counts = np.zeros(n_classes, dtype=np.float64)
    for case in cases:
        counts += np.bincount(case["labels"].ravel(), minlength=n_classes)[:n_classes]
    freq = np.maximum(counts / counts.sum(), 1e-9)
    return torch.tensor(np.minimum(np.sqrt(freq[0] / freq), cap), dtype=torch.float32)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, n_classes: int,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    ce = torch.nn.functional.cross_entropy(logits, target, weight=weights)
    probs = torch.softmax(logits, dim=1)
    onehot = torch.nn.functional.one_hot(target, n_classes).permute(0, 4, 1, 2, 3).float()
    dims = (2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[:, 1:].mean())


def deep_supervision_loss(outputs, target: torch.Tensor, n_classes: int, weights) -> torch.Tensor:
    """nnU-Net's deep supervision: the decoder's outputs at 1, 1/2, 1/4 ... resolution each against
    the nearest-neighbour downsampled labels, weighted 1, 1/2, 1/4 ... (the coarsest not at all),
    so that the coarse, wide layers learn which structure is where early on."""
    w = np.array([1 / (2**i) for i in range(len(outputs))])
    w[-1] = 0
    w = w / w.sum()
    total = 0.0
    for weight, out in zip(w, outputs):
        if weight == 0:
            continue
        factor = [t // o for t, o in zip(target.shape[1:], out.shape[2:])]
        down = target[:, ::factor[0], ::factor[1], ::factor[2]]
        total = total + float(weight) * dice_ce_loss(out, down, n_classes, weights)
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("work_training"))
    ap.add_argument("--out", type=Path, default=None, help="model folder (default: the bundled demo model)")
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget in this run")
    ap.add_argument("--steps", type=int, default=1800, help="total optimisation steps (learning-rate schedule)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--class-weighting", choices=("sqrt", "none"), default="sqrt",
                    help="cross-entropy class weights (see class_weights); 'none' is plain nnU-Net")
    ap.add_argument("--init-weights", type=Path, default=None,
                    help="start from the network weights of this checkpoint (a new optimiser and schedule)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--oversample", default="",
                    help="foreground patch centres: these structures this many times as often, "
                         "e.g. 'Cochlea_L=4,Cochlea_R=4' (default: every structure alike, as nnU-Net)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or demo_model_dir()
    cache = args.work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    paths = [prepare_case(s, cache) for s in TRAIN_SEEDS]
    print(f"prepared {len(paths)} phantoms in {time.time() - t0:.0f} s", flush=True)
    cases = []
    for p in paths:
        with np.load(p) as z:
            cases.append({"image": z["image"], "labels": z["labels"]})
    props = intensity_properties(cases)
    n_classes = default_catalogue().max_label + 1
    for case in cases:
        case["image"] = ct_normalise(case["image"], props)
        case["pad"] = float(case["image"].min())
        case["where"] = {}
        for cls in range(1, n_classes):
            idx = np.argwhere(case["labels"] == cls)
            if len(idx):
                case["where"][cls] = idx[:: max(1, len(idx) // 2000)]

    torch.manual_seed(0)
    net = build_network(architecture(), 1, n_classes, deep_supervision=True)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-5)
    ckpt_path = args.work / "checkpoint_latest.pth"
    step, log = 0, []
    if args.init_weights is not None and not ckpt_path.exists():
        net.load_state_dict(torch.load(args.init_weights, weights_only=True)["network_weights"])
        print(f"initialised from {args.init_weights}", flush=True)
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True)
        net.load_state_dict(ck["network_weights"])
        opt.load_state_dict(ck["optimizer_state"])
        step, log = int(ck["step"]), list(ck["log"])
        print(f"resumed at step {step}", flush=True)

    def save():
        torch.save({"network_weights": net.state_dict(), "optimizer_state": opt.state_dict(), "step": step, "log": log},
                   str(ckpt_path) + ".part")
        Path(str(ckpt_path) + ".part").replace(ckpt_path)

    weights = class_weights(cases, n_classes) if args.class_weighting == "sqrt" else None
    oversample = parse_oversample(args.oversample)
    class_odds = foreground_class_odds(n_classes, oversample) if oversample else None
    if not args.export_only:
        rng = np.random.default_rng(1234 + step)
        net.train()
        start, last_save, running = time.time(), time.time(), []
        while step < args.steps and time.time() - start < args.minutes * 60:
            lr = args.lr * (1 - step / args.steps) ** 0.9
            for g in opt.param_groups:
                g["lr"] = lr
            batch = [sample_patch(cases[rng.integers(len(cases))], rng, n_classes, fg, class_odds)
                     for fg in (True, rng.random() < 0.75)]
            x = torch.from_numpy(np.stack([b[0] for b in batch])[:, None])
            y = torch.from_numpy(np.stack([b[1] for b in batch]))
            loss = deep_supervision_loss(net(x), y, n_classes, weights)
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
            if time.time() - last_save > 180:
                save()
                last_save = time.time()
        save()
    export(net, props, out, step, log, len(cases), [c["image"].shape for c in cases])
    return 0


def export(net, props: IntensityProperties, out: Path, step: int, log: list, n_cases: int, shapes) -> None:
    """Write the nnU-Net v2 result folder (dataset.json, plans.json, fold_0/checkpoint_final.pth)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "fold_0").mkdir(exist_ok=True)
    ds = dataset_json(n_cases)
    plans = plans_json(props, np.median(np.array(shapes), axis=0))
    (out / "dataset.json").write_text(json.dumps(ds, indent=2) + "\n")
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    checkpoint = {
        "network_weights": net.state_dict(),  # aliased parameters share storage, saved once
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {"train_losses": [v for _, v in log]},
        "_best_ema": None,
        "current_epoch": step,
        "init_args": {
            "plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": ds, "device": "cpu",
        },
        "trainer_name": "nnUNetTrainerNoMirroring",
        "inference_allowed_mirroring_axes": None,
    }
    tmp = out / "fold_0" / "checkpoint_final.pth.part"
    torch.save(checkpoint, str(tmp))
    tmp.replace(out / "fold_0" / "checkpoint_final.pth")
    previous = {}
    if (out / MANIFEST_NAME).exists():
        previous = json.loads((out / MANIFEST_NAME).read_text()).get("performance", {})
    init_manifest(
        out, MODEL_NAME, MODEL_VERSION, force=True,
        intended_use=INTENDED_USE,
        training_data=(f"{n_cases} synthetic head-and-neck phantoms (dkoar phantom, seeds {TRAIN_SEEDS.start}-"
                       f"{TRAIN_SEEDS.stop - 1}, HFS, pixel 0.8-1.2 mm, slices 2-3 mm); {step} steps of "
                       f"tools/train_demo_model.py"),
        performance=previous,
    )
    print(f"wrote {out} after {step} steps", flush=True)


if __name__ == "__main__":
    sys.exit(main())
