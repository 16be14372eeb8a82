"""The network's logits back on the CT's grid: linear resampling as nnU-Net's export does it,
then the argmax (the label map in model label values)."""

from __future__ import annotations

import numpy as np

from .preprocessing import nearest_indices, resample_to_shape


def logits_to_labels(logits, out_shape, separate_axis: int | None = None, chunk_channels: int = 6) -> np.ndarray:
    """Argmax of the logits linearly resampled (edge-aligned, as nnU-Net's order-1 resize) to
    ``out_shape`` (in-plane only plus nearest neighbour along ``separate_axis`` when the grid is
    anisotropic, as nnU-Net's separate z), a few channels at a time so memory stays near one
    channel of the output."""
    import torch

    logits = torch.as_tensor(logits)
    out_shape = tuple(int(v) for v in out_shape)
    best = None
    best_label = torch.zeros(out_shape, dtype=torch.uint8)
    with torch.inference_mode():
        for c0 in range(0, logits.shape[0], chunk_channels):
            part = logits[c0:c0 + chunk_channels].float()
            if tuple(part.shape[1:]) == out_shape:
                up = part
            elif separate_axis is None:
                up = torch.nn.functional.interpolate(part[None], size=out_shape, mode="trilinear",
                                                     align_corners=False)[0]
            else:
                a = separate_axis
                slabs = part.movedim(a + 1, 0)  # (slices, C, h, w)
                inplane = tuple(s for i, s in enumerate(out_shape) if i != a)
                slabs = torch.nn.functional.interpolate(slabs, size=inplane, mode="bilinear", align_corners=False)
                slabs = slabs[torch.from_numpy(nearest_indices(slabs.shape[0], out_shape[a]))]
                up = slabs.movedim(0, a + 1)
            if logits.dtype != up.dtype:  # nnU-Net stores the resampled logits in their own dtype
                up = up.to(logits.dtype).float()
            for c in range(up.shape[0]):
                if best is None:
                    best = up[c].clone()
                    continue
                better = up[c] > best
                best = torch.where(better, up[c], best)
                best_label[better] = c0 + c
    return best_label.numpy()


def _axis_weights(n_in: int, n_out: int, out_slice: slice, nearest: bool):
    """Source indices (i0, i1) and weight of i1 for the output indices of ``out_slice``: linear,
    edge-aligned (skimage order 1 / torch align_corners=False, edges extended), or nearest."""
    o = np.arange(out_slice.start, out_slice.stop)
    if nearest:
        i0 = nearest_indices(n_in, n_out)[o]
        return i0, i0, np.zeros(len(o))
    c = np.clip((o + 0.5) * (float(n_in) / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(c).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, c - i0


def source_region(in_shape, out_shape, out_box, separate_axis: int | None = None) -> tuple[slice, ...]:
    """The slices of the resampled (``in_shape``) grid that the linear resampling back to
    ``out_shape`` reads for the voxels of ``out_box``."""
    region = []
    for a, (n_in, n_out, sl) in enumerate(zip(in_shape, out_shape, out_box)):
        i0, i1, _ = _axis_weights(n_in, n_out, sl, a == separate_axis)
        region.append(slice(int(i0.min()), int(i1.max()) + 1))
    return tuple(region)


def logits_box_to_labels(logits, offset, in_shape, out_shape, out_box, separate_axis: int | None = None,
                         chunk_channels: int = 8) -> np.ndarray:
    """Argmax, on the voxels ``out_box`` of the ``out_shape`` grid, of logits given over part of
    the ``in_shape`` grid (starting at ``offset``), linearly resampled as nnU-Net's export does
    (order 1; nearest along ``separate_axis``; rounded to the logits' dtype, ties to the lower
    label): separable gathers, a few channels at a time."""
    import torch

    axes = []
    for a, (n_in, n_out, sl) in enumerate(zip(in_shape, out_shape, out_box)):
        i0, i1, w = _axis_weights(n_in, n_out, sl, a == separate_axis)
        i0, i1 = i0 - offset[a], i1 - offset[a]
        if i0.min() < 0 or i1.max() >= logits.shape[a + 1]:
            raise AssertionError("the logits do not cover the region to resample")
        axes.append((torch.from_numpy(i0), torch.from_numpy(i1), torch.from_numpy(w.astype(np.float32))))
    out_shape_box = tuple(sl.stop - sl.start for sl in out_box)
    best = torch.full(out_shape_box, -torch.inf)
    best_label = torch.zeros(out_shape_box, dtype=torch.uint8)
    with torch.inference_mode():
        for c0 in range(0, logits.shape[0], chunk_channels):
            x = logits[c0:c0 + chunk_channels].float()
            for a, (i0, i1, w) in enumerate(axes):
                dim = a + 1
                shape = [1] * x.dim()
                shape[dim] = -1
                wv = w.view(shape)
                lo = x.index_select(dim, i0)
                x = lo if bool((w == 0).all()) else lo + (x.index_select(dim, i1) - lo) * wv
            if logits.dtype != x.dtype:  # nnU-Net stores the resampled logits in their own dtype
                x = x.to(logits.dtype).float()
            top, arg = x.max(dim=0)  # the first of equal maxima, as argmax
            better = top > best  # strictly: an earlier channel wins a tie, as argmax
            best = torch.where(better, top, best)
            best_label = torch.where(better, arg.to(torch.uint8) + c0, best_label)
    return best_label.numpy()


def labels_like_nnunet(logits, out_shape, current_spacing, new_spacing, kwargs: dict) -> np.ndarray:
    """nnU-Net's export: every channel resampled with skimage (float64, stored as the logits'
    float16), then argmax."""
    arr = logits.numpy() if hasattr(logits, "numpy") else np.asarray(logits)
    out = np.empty((arr.shape[0], *out_shape), dtype=arr.dtype)
    for c in range(arr.shape[0]):
        out[c] = resample_to_shape(arr[c], out_shape, current_spacing, new_spacing, order=kwargs["order"],
                                   order_z=kwargs["order_z"], force_separate_z=kwargs["force_separate_z"],
                                   work_dtype=np.float64, out_dtype=arr.dtype)
    return np.argmax(out, axis=0).astype(np.uint8)

