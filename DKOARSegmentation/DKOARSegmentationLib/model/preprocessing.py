"""Preparing a CT for a network as nnU-Net does for a CT model, and mapping results back.

Steps: canonical layout, crop to the patient's body, CT normalisation (clip to the training
foreground's 0.5-99.5 percentiles, subtract its mean, divide by its standard deviation), resampling
to the model spacing (third-order spline for the image, edge-aligned as nnU-Net's ``resize`` is;
for an anisotropic grid, in-plane spline and nearest neighbour across slices, as nnU-Net's
"separate z" does).

``compute_new_shape``, ``separate_z_axis``, ``resample_to_shape`` and ``nonzero_bbox`` follow
nnU-Net v2's ``default_resampling`` and ``crop_to_nonzero`` step by step (same skimage/scipy calls,
same rounding), written here so that the core runs without nnunetv2 installed; the test suite checks
them against nnunetv2's own functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


ANISO_THRESHOLD = 3.0  # nnU-Net's ANISO_THRESHOLD: spacing ratio above which a grid is "anisotropic"


def compute_new_shape(old_shape, old_spacing, new_spacing) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape`` (same order of operations, so the same rounding)."""
    return tuple(int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape))


def _lowres_axes(spacing) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=float)
    return np.where(max(spacing) / spacing == 1)[0]


def separate_z_axis(current_spacing, new_spacing, force_separate_z=None,
                    threshold: float = ANISO_THRESHOLD) -> int | None:
    """The axis nnU-Net resamples separately (nearest neighbour) or None, as its
    ``determine_do_sep_z_and_axis``: the low-resolution axis of an anisotropic current spacing,
    else of an anisotropic new spacing; none when two or three axes share the largest spacing."""
    if force_separate_z is not None:
        if not force_separate_z:
            return None
        axes = _lowres_axes(current_spacing)
    elif max(current_spacing) / min(current_spacing) > threshold:
        axes = _lowres_axes(current_spacing)
    elif max(new_spacing) / min(new_spacing) > threshold:
        axes = _lowres_axes(new_spacing)
    else:
        return None
    return int(axes[0]) if len(axes) == 1 else None


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output index for order-0 resampling with nnU-Net's edge-aligned
    coordinates (scale * (i + 0.5) - 0.5, rounded as scipy's ``map_coordinates`` order 0 does)."""
    scale = float(n_in) / n_out
    coords = scale * (np.arange(n_out) + 0.5) - 0.5
    return np.clip(np.floor(coords + 0.5), 0, n_in - 1).astype(np.intp)


def resample_to_shape(image: np.ndarray, new_shape, current_spacing, new_spacing, order: int = 3, order_z: int = 0,
                      force_separate_z=None, work_dtype=np.float64, out_dtype=None) -> np.ndarray:
    """One channel resampled to ``new_shape`` as nnU-Net's ``resample_data_or_seg_to_shape`` does
    for images and logits (``is_seg=False``): skimage ``resize`` (mode edge, no anti-aliasing),
    in-plane only plus nearest neighbour across slices when the grid is anisotropic.

    ``work_dtype`` float64 is nnU-Net's; float32 is faster and differs by rounding only."""
    new_shape = tuple(int(v) for v in new_shape)
    out_dtype = image.dtype if out_dtype is None else np.dtype(out_dtype)
    if tuple(image.shape) == new_shape:
        return image.astype(out_dtype, copy=False)
    data = image.astype(work_dtype, copy=False)
    axis = separate_z_axis(current_spacing, new_spacing, force_separate_z)
    if axis is None:
        return resize(data, new_shape, order, mode="edge", anti_aliasing=False).astype(out_dtype, copy=False)
    if order_z != 0:
        raise ValueError("only nearest-neighbour resampling across slices (order_z 0) is implemented")
    inplane_shape = tuple(s for a, s in enumerate(new_shape) if a != axis)
    tmp_shape = list(new_shape)
    tmp_shape[axis] = image.shape[axis]
    inplane = np.empty(tmp_shape, dtype=work_dtype)
    index = [slice(None)] * 3
    for k in range(image.shape[axis]):
        index[axis] = k
        inplane[tuple(index)] = resize(data[tuple(index)], inplane_shape, order, mode="edge", anti_aliasing=False)
    if image.shape[axis] != new_shape[axis]:
        inplane = np.take(inplane, nearest_indices(image.shape[axis], new_shape[axis]), axis=axis)
    return inplane.astype(out_dtype, copy=False)


def nonzero_bbox(image: np.ndarray) -> tuple[slice, ...]:
    """nnU-Net's ``crop_to_nonzero`` box: the bounding box of ``image != 0`` with holes filled
    (for a CT with air at -1000 HU, nearly always the whole image). Filling holes never widens a
    bounding box, so it is skipped: the same box, without a pass of ``binary_fill_holes``."""
    mask = image != 0
    if not mask.any():
        return tuple(slice(0, s) for s in image.shape)
    box = []
    for axis in range(image.ndim):
        other = tuple(a for a in range(image.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def resample_region(image: np.ndarray, new_shape, current_spacing, new_spacing, region, order: int = 3,
                    order_z: int = 0, force_separate_z=None, work_dtype=np.float32, margin: int = 12) -> np.ndarray:
    """``resample_to_shape(...)[region]`` without resampling the rest: the spline of the source
    block the region reads (plus ``margin`` voxels, beyond which a cubic spline's prefilter reaches
    less than 0.27 ** margin of a value), evaluated at the region's edge-aligned coordinates and
    clipped to the whole image's range, as skimage's ``resize`` does."""
    from scipy.ndimage import affine_transform

    new_shape = tuple(int(v) for v in new_shape)
    axis = separate_z_axis(current_spacing, new_spacing, force_separate_z)
    if tuple(image.shape) == new_shape:
        return image[tuple(region)].astype(work_dtype)
    src, scale, offset, pick = [], [], [], None
    for a, (n_in, n_out, sl) in enumerate(zip(image.shape, new_shape, region)):
        if a == axis:
            if order_z != 0:
                raise ValueError("only nearest-neighbour resampling across slices (order_z 0) is implemented")
            idx = nearest_indices(n_in, n_out)[sl.start:sl.stop]
            src.append(slice(int(idx.min()), int(idx.max()) + 1))
            pick = idx - idx.min()
            scale.append(1.0)
            offset.append(0.0)
            continue
        s = float(n_in) / n_out
        first, last = (sl.start + 0.5) * s - 0.5, (sl.stop - 1 + 0.5) * s - 0.5
        lo = max(int(np.floor(first)) - 1 - margin, 0)
        hi = min(int(np.floor(last)) + 3 + margin, n_in)
        src.append(slice(lo, hi))
        scale.append(s)
        offset.append(first - lo)
    block = image[tuple(src)].astype(work_dtype)
    out_shape = tuple(sl.stop - sl.start for sl in region)
    if axis is None:
        out = affine_transform(block, np.array(scale), offset=np.array(offset), output_shape=out_shape, order=order,
                               mode="nearest")
    else:
        inplane = [a for a in range(3) if a != axis]
        shape2d = tuple(out_shape[a] for a in inplane)
        slices = []
        for k in range(block.shape[axis]):
            plane = np.take(block, k, axis=axis)
            whole = np.take(image, src[axis].start + k, axis=axis)  # skimage clips each slice to its own range
            out2d = affine_transform(plane, np.array([scale[a] for a in inplane]),
                                     offset=np.array([offset[a] for a in inplane]), output_shape=shape2d,
                                     order=order, mode="nearest")
            slices.append(np.clip(out2d, float(whole.min()), float(whole.max()), out=out2d))
        return np.take(np.stack(slices, axis=axis), pick, axis=axis)
    lo_val, hi_val = float(image.min()), float(image.max())
    return np.clip(out, lo_val, hi_val, out=out)
