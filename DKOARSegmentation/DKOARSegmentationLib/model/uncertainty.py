"""The model's own uncertainty, from the logits of the prediction pass itself (no second pass):
per model label, per CT slice and per side of the patient, how much uncertain volume touches it.

Per voxel of the model grid the uncertainty is the entropy of the averaged probabilities (one
fold), in units of a 50/50 choice between two labels (ln 2) and capped at 1, or, with several folds,
the fraction of folds whose label differs from the ensemble's, doubled and capped at 1 (half the
folds disagreeing is as uncertain as it gets). A voxel's uncertainty counts for its two most
likely labels: a structure is uncertain where it might end as much as where it might begin.

Most voxels are certain (the runner-up label far below the winner): only the voxels whose two
best logits lie within ``MARGIN`` of each other are looked at, which keeps the cost a small
fraction of the prediction's, and a voxel counts from ``FLOOR`` on (a runner-up of a percent or
two), so that millions of nearly certain voxels do not add up to an uncertain volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MARGIN = 4.6  # logit gap beyond which the runner-up's probability is below 1 % of the winner's: certain
FLOOR = 0.1  # per-voxel uncertainty below this counts as none
_LN2 = float(np.log(2.0))


@dataclass
class SliceUncertainty:
    """Uncertain volume (ml) per model label, per CT slice (the volume's k axis) and side
    (0: patient's right of the midline, 1: left), and how it was measured."""

    values: np.ndarray  # (labels, slices, 2) float64
    method: str

    def for_label(self, label: int) -> np.ndarray:
        """Per slice, both sides."""
        return self.values[label].sum(axis=1)


def voxel_uncertainty(logits, fold_labels=None, chunk: int = 4):
    """(uncertainty, best label, runner-up label) of the voxels that are not certain, and their flat
    indices in the logits' grid (C, z, y, x), as numpy arrays."""
    import torch

    logits = torch.as_tensor(logits)
    n_planes = logits.shape[1]
    plane = int(np.prod(logits.shape[2:]))
    found = []
    with torch.inference_mode():
        for z0 in range(0, n_planes, chunk):
            x = logits[:, z0:z0 + chunk].reshape(logits.shape[0], -1)
            top, index = torch.topk(x, 2, dim=0)
            open_ = torch.nonzero((top[0] - top[1]).float() < MARGIN).squeeze(1)
            if open_.numel() == 0:
                continue
            best, second = index[0, open_], index[1, open_]
            if fold_labels:
                votes = torch.stack([f.reshape(-1)[z0 * plane:(z0 + chunk) * plane][open_].long()
                                     for f in fold_labels])
                u = torch.clamp(2.0 * (votes != best[None]).float().mean(dim=0), max=1.0)
            else:
                v = x[:, open_].float()
                v = v - v.max(dim=0, keepdim=True).values
                e = torch.exp(v)
                s = e.sum(dim=0)
                entropy = torch.log(s) - (e * v).sum(dim=0) / s
                u = torch.clamp(entropy / _LN2, max=1.0)
            keep = u >= FLOOR
            found.append((u[keep].numpy(), best[keep].numpy(), second[keep].numpy(), open_[keep].numpy() + z0 * plane))
    if not found:
        empty = np.zeros(0)
        return empty, empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64)
    return tuple(np.concatenate(parts) for parts in zip(*found))


def slice_uncertainty(logits, grid_offset, model_shape, plane_of_slice: np.ndarray, left_from: float,
                      voxel_ml: float, n_labels: int, method: str, fold_labels=None) -> SliceUncertainty:
    """Per model label, slice and side, the uncertain volume of logits (C, z, y, x) in the canonical
    layout that cover the model grid (of ``model_shape``) from ``grid_offset``.

    ``plane_of_slice[k]``: the model-grid plane that slice k of the output stands for (-1: none);
    ``left_from``: the model-grid x (increasing to the patient's left) of the body's midline."""
    u, best, second, flat = voxel_uncertainty(logits, fold_labels)
    shape = tuple(int(v) for v in logits.shape[1:])
    per_plane = np.zeros((n_labels, int(model_shape[0]), 2))
    if len(u):
        z, y, x = (index + int(offset) for index, offset in zip(np.unravel_index(flat, shape), grid_offset))
        # a volume smaller than the network's patch is padded: the padding's voxels are no slice's
        inside = ((z >= 0) & (z < int(model_shape[0])) & (y >= 0) & (y < int(model_shape[1]))
                  & (x >= 0) & (x < int(model_shape[2])))
        z, side = z[inside], (x[inside] >= left_from).astype(np.int64)
        for labels in (best, second):
            np.add.at(per_plane, (labels[inside], z, side), u[inside] * voxel_ml)
    values = np.zeros((n_labels, len(plane_of_slice), 2))
    used = plane_of_slice >= 0
    # each model plane shared among the slices that stand for it: the volume is kept
    share = np.bincount(plane_of_slice[used], minlength=int(model_shape[0])).astype(float)
    values[:, used] = per_plane[:, plane_of_slice[used]] / np.maximum(share[plane_of_slice[used]], 1)[None, :, None]
    return SliceUncertainty(values, method)
