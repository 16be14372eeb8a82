"""Preparing a CT for a network as nnU-Net does for a CT model, and mapping results back.

Steps: canonical layout, crop to the patient's body, resampling to the model spacing (third-order
spline for the image, edge-aligned as nnU-Net's ``resize`` is), CT normalisation (clip to the
training foreground's 0.5-99.5 percentiles, subtract its mean, divide by its standard deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import resize


@dataclass(frozen=True)
class IntensityProperties:
    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float

    @classmethod
    def from_plans(cls, props: dict) -> "IntensityProperties":
        return cls(float(props["mean"]), float(props["std"]), float(props["percentile_00_5"]), float(props["percentile_99_5"]))


def ct_normalise(image: np.ndarray, props: IntensityProperties) -> np.ndarray:
    out = np.clip(image.astype(np.float32), props.percentile_00_5, props.percentile_99_5)
    out -= np.float32(props.mean)
    out /= np.float32(max(props.std, 1e-8))
    return out


def body_bbox(image_hu: np.ndarray, threshold_hu: float = -300.0, margin_voxels: int = 3) -> tuple[slice, slice, slice]:
    """Bounding box of the largest connected object above ``threshold_hu`` (the patient, not the
    couch, which is lighter than fat), found on a 4x coarser grid for speed."""
    step = 4
    coarse = image_hu[::step, ::step, ::step] > threshold_hu
    coarse = ndimage.binary_opening(coarse, iterations=1)
    labelled, n = ndimage.label(coarse)
    if n == 0:
        return tuple(slice(0, s) for s in image_hu.shape)  # type: ignore[return-value]
    sizes = ndimage.sum_labels(np.ones_like(labelled), labelled, index=np.arange(1, n + 1))
    biggest = labelled == (int(np.argmax(sizes)) + 1)
    idx = np.argwhere(biggest)
    lo = np.maximum(idx.min(axis=0) * step - step - margin_voxels, 0)
    hi = np.minimum((idx.max(axis=0) + 1) * step + step + margin_voxels, image_hu.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def shape_for_spacing(shape, spacing, target_spacing) -> tuple[int, int, int]:
    return tuple(int(round(n * s / t)) for n, s, t in zip(shape, spacing, target_spacing))  # type: ignore[return-value]


def resample_image(image: np.ndarray, new_shape) -> np.ndarray:
    if tuple(image.shape) == tuple(new_shape):
        return image.astype(np.float32, copy=False)
    return resize(image.astype(np.float32), new_shape, order=3, mode="edge", anti_aliasing=False).astype(np.float32)


def resample_labels_nearest(labels: np.ndarray, new_shape) -> np.ndarray:
    if tuple(labels.shape) == tuple(new_shape):
        return labels
    return resize(labels, new_shape, order=0, mode="edge", anti_aliasing=False, preserve_range=True).astype(labels.dtype)
