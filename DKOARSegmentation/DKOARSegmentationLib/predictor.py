"""Running an nnU-Net v2 model on a CT: preprocessing, Gaussian-weighted sliding window, fold
ensemble, and the label map back on the CT's own grid.

The series is first laid out canonically (see ``orientation``) and cropped to the body, so a
feet-first or prone series is segmented like a head-first supine one and no time goes to air.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import DKOARError
from .model_bundle import ModelBundle
from .network import build_network
from .orientation import relayout_for
from .preprocessing import (
    IntensityProperties, body_bbox, ct_normalise, resample_image, shape_for_spacing,
)
from .progress import Progress
from .volume import Volume


@dataclass
class LoadedModel:
    bundle: ModelBundle
    networks: list  # one per fold, in eval mode on the device
    spacing_zyx: tuple[float, float, float]
    patch_zyx: tuple[int, int, int]
    intensity: IntensityProperties
    num_outputs: int
    mirror_axes: tuple[int, ...] | None
    device: object


def load_model(bundle: ModelBundle, device) -> LoadedModel:
    plans = bundle.read_json("plans.json")
    dataset = bundle.read_json("dataset.json")
    try:
        config = plans["configurations"][bundle.configuration]
        props = IntensityProperties.from_plans(plans["foreground_intensity_properties_per_channel"]["0"])
    except KeyError as exc:
        raise DKOARError(f"{bundle.folder}: plans.json lacks {exc}") from None
    if config.get("normalization_schemes") != ["CTNormalization"]:
        raise DKOARError(f"{bundle.folder}: only single-channel CT models (CTNormalization) are supported")
    num_outputs = len(dataset["labels"])
    networks, mirror = [], None
    for rel in bundle.checkpoint_paths():
        checkpoint = bundle.load_checkpoint(rel)
        net = build_network(config["architecture"], 1, num_outputs)
        try:
            net.load_state_dict(checkpoint["network_weights"])
        except (KeyError, RuntimeError) as exc:
            raise DKOARError(f"{bundle.folder / rel}: the weights do not fit the network of plans.json ({str(exc).splitlines()[0]})") from None
        net.eval().to(device)
        networks.append(net)
        axes = checkpoint.get("inference_allowed_mirroring_axes")
        mirror = tuple(axes) if axes else None
    return LoadedModel(bundle, networks, tuple(config["spacing"]), tuple(config["patch_size"]), props,
                       num_outputs, mirror, device)


def gaussian_importance(patch: tuple[int, int, int], sigma_scale: float = 1 / 8, value_scaling: float = 10.0) -> np.ndarray:
    """nnU-Net's weighting of a window: a Gaussian of sigma = patch / 8, peak ``value_scaling``."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(patch, dtype=np.float32)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = gaussian_filter(tmp, [p * sigma_scale for p in patch], 0, mode="constant", cval=0)
    g = g / g.max() * value_scaling
    g[g == 0] = g[g != 0].min()
    return g.astype(np.float32)


def window_starts(size: int, patch: int, step: float = 0.5) -> list[int]:
    """nnU-Net's tiling: evenly spread windows overlapping by at least 1 - step."""
    if size <= patch:
        return [0]
    n = math.ceil((size - patch) / (patch * step)) + 1
    actual = (size - patch) / (n - 1)
    return [int(round(actual * i)) for i in range(n)]


def sliding_window_logits(model: LoadedModel, image: np.ndarray, progress: Progress | None) -> np.ndarray:
    import torch

    patch = model.patch_zyx
    pad = [max(0, p - s) for p, s in zip(patch, image.shape)]
    pad_width = [(p // 2, p - p // 2) for p in pad]
    padded = np.pad(image, pad_width, mode="constant", constant_values=0) if any(pad) else image
    shape = padded.shape
    weights = torch.from_numpy(gaussian_importance(patch)).to(model.device)
    logits = torch.zeros((model.num_outputs, *shape), dtype=torch.float32, device=model.device)
    norm = torch.zeros(shape, dtype=torch.float32, device=model.device)
    data = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)).to(model.device)
    tiles = [(z, y, x) for z in window_starts(shape[0], patch[0]) for y in window_starts(shape[1], patch[1])
             for x in window_starts(shape[2], patch[2])]
    with torch.inference_mode():
        for n, (z, y, x) in enumerate(tiles):
            sl = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
            window = data[sl][None, None]
            pred = None
            for net in model.networks:
                out = _predict_with_mirroring(net, window, model.mirror_axes)
                pred = out if pred is None else pred + out
            pred = pred[0] / len(model.networks)
            logits[(slice(None), *sl)] += pred * weights
            norm[sl] += weights
            if progress is not None:
                progress.update((n + 1) / len(tiles), f"window {n + 1}/{len(tiles)}")
    logits /= norm
    crop = tuple(slice(a, s - b) for (a, b), s in zip(pad_width, shape))
    return logits[(slice(None), *crop)].cpu().numpy()


def _predict_with_mirroring(net, window, axes):
    out = net(window)
    if axes:
        import itertools

        count = 1
        for r in range(1, len(axes) + 1):
            for combo in itertools.combinations(axes, r):
                dims = [a + 2 for a in combo]
                out = out + net(window.flip(dims)).flip(dims)
                count += 1
        out = out / count
    return out


def logits_to_labels(logits: np.ndarray, out_shape: tuple[int, int, int], chunk_channels: int = 6) -> np.ndarray:
    """Argmax of the logits linearly resampled (edge-aligned, as nnU-Net's order-1 resize) to
    ``out_shape``, a few channels at a time so memory stays near one channel of the output."""
    import torch

    best = None
    best_label = np.zeros(out_shape, dtype=np.uint8)
    for c0 in range(0, logits.shape[0], chunk_channels):
        part = torch.from_numpy(np.ascontiguousarray(logits[c0:c0 + chunk_channels]))[None]
        up = torch.nn.functional.interpolate(part, size=out_shape, mode="trilinear", align_corners=False)[0].numpy()
        for c in range(up.shape[0]):
            if best is None:
                best = up[c].copy()
                continue
            better = up[c] > best
            best[better] = up[c][better]
            best_label[better] = c0 + c
    return best_label


def predict_labels(model: LoadedModel, ct: Volume, progress: Progress | None = None) -> np.ndarray:
    """The model's label map (model label values) on the CT's grid and array layout."""
    relayout = relayout_for(ct.affine)
    image = relayout.to_canonical(ct.voxels)
    if progress is not None:
        progress.begin("preprocessing")
    box = body_bbox(image)
    cropped = image[box]
    target_shape = shape_for_spacing(cropped.shape, relayout.spacing_zyx, model.spacing_zyx)
    prepared = ct_normalise(resample_image(cropped, target_shape), model.intensity)
    if progress is not None:
        progress.update(1.0, f"{cropped.shape} -> {prepared.shape}")
        progress.begin("inference")
    logits = sliding_window_logits(model, prepared, progress)
    if progress is not None:
        progress.begin("resampling")
    labels_cropped = logits_to_labels(logits, cropped.shape)
    del logits
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[box] = labels_cropped
    if progress is not None:
        progress.update(1.0)
    return relayout.from_canonical(labels)
