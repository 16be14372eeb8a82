"""Running a model on a CT: preprocessing, Gaussian-weighted sliding window, fold ensemble,
mirroring, post-processing, and the label map back on the CT's own grid.

Two modes, the same operations in the same order (nnU-Net v2's):

- ``"nnunet"`` follows nnU-Net's ``nnUNetPredictor`` step by step, so that its label map is the
  one nnU-Net gives for the same CT (checked in the tests against nnunetv2 itself): the array as
  the image file stores it (nnU-Net reads with SimpleITK and does not reorient), the plans'
  axis transpose, crop to the non-zero region, CT normalisation, resampling in float64 (separate
  z when anisotropic), windows at nnU-Net's steps with its float16 Gaussian and float16 sums,
  one pass per fold, logits resampled back with skimage (order 1, stored as float16), argmax.
- ``"fast"`` (the default) gives the same label map up to rounding, faster: the series is first
  laid out canonically (see ``input.orientation``; a feet-first or prone series is segmented like a
  head-first supine one, which nnU-Net itself does not do); of nnU-Net's windows (same tiling of the
  whole image) only those that reach the patient's body are run, so inside the body the logits are
  nnU-Net's and no time goes to air, which is background; resampling is done in float32; and
  only the body's voxels are resampled back, with separable linear gathers (the same edge-aligned
  weights as skimage's order 1) a few channels at a time, rounded to float16 as nnU-Net stores
  them, with a running argmax, instead of every channel of the whole grid in float64. The window
  sums stay nnU-Net's (float16 for an nnU-Net model, one pass per fold): at the rim of a lens, a
  structure of about 70 voxels, float32 sums flip a voxel or two against nnU-Net (Dice 0.985).

Beside the label map, the fast mode measures the model's own uncertainty from the same logits
(``uncertainty``; the nnU-Net mode, a reference for checking, does not), and a model with a second
stage (``crop_refinement``) refines its structures on crops placed from the first stage's result.

On a GPU the network runs under float16 autocast. If the GPU runs out of memory, the run is
retried with the sums kept on the CPU and one window at a time, then on the CPU, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..input.body import body_bbox
from ..input.orientation import relayout_for
from ..progress import Progress
from ..volume import Volume
from .loading import LoadedModel
from .postprocessing import apply_postprocessing
from .predict_options import PredictOptions
from .preprocessing import (
    compute_new_shape,
    ct_normalise,
    nonzero_bbox,
    resample_region,
    resample_to_shape,
    separate_z_axis,
)
from .resampling_back import labels_like_nnunet, logits_box_to_labels, logits_to_labels, source_region
from .sliding_window import logits_with_fallback, window_extent
from .uncertainty import SliceUncertainty, slice_uncertainty


@dataclass
class Prediction:
    labels: np.ndarray  # model label values on the CT's grid and array layout
    uncertainty: SliceUncertainty | None = None  # per model label, slice (the volume's k) and side


def predict_labels(model: LoadedModel, ct: Volume, progress: Progress | None = None,
                   options: PredictOptions | None = None) -> np.ndarray:
    """The model's label map (model label values) on the CT's grid and array layout."""
    return predict(model, ct, progress, options, uncertainty=False).labels


def predict(model: LoadedModel, ct: Volume, progress: Progress | None = None, options: PredictOptions | None = None,
            uncertainty: bool = True) -> Prediction:
    """The label map and, in the fast mode when asked, the model's uncertainty per label and slice;
    then the second stage's structures when the model has one."""
    prediction = _first_stage(model, ct, progress, options, uncertainty)
    if model.refinements:
        from .crop_refinement import refine

        refine(model, ct, prediction, options or PredictOptions(), uncertainty)
    return prediction


def _first_stage(model: LoadedModel, ct: Volume, progress: Progress | None, options: PredictOptions | None,
                 uncertainty: bool) -> Prediction:
    options = options or PredictOptions()
    exact = options.mode == "nnunet"
    if progress is not None:
        progress.begin("preprocessing")
    if exact:  # the array as the file stores it, like nnU-Net's SimpleITK reader
        relayout = None
        image, spacing = ct.voxels, tuple(reversed(ct.spacing))
    else:
        relayout = relayout_for(ct.affine)
        image, spacing = relayout.to_canonical(ct.voxels), relayout.spacing_zyx
    tf = model.transpose_forward
    image = np.transpose(image, tf)
    spacing = tuple(float(spacing[a]) for a in tf)
    box = nonzero_bbox(image)  # as nnU-Net: for a CT nearly always the whole image
    cropped = image[box]
    new_shape = compute_new_shape(cropped.shape, spacing, model.spacing_zyx)
    rd = model.data_resampling
    rp = model.probability_resampling
    axis = separate_z_axis(model.spacing_zyx, spacing, rp["force_separate_z"])
    linear = rp["order"] == 1 and (axis is None or rp["order_z"] == 0)
    normalised = ct_normalise(cropped, model.intensity)
    body = region = None
    block = {}
    if not exact and linear and rd["order_z"] == 0:
        # only the windows that reach the body, only their part of the image resampled, and only the
        # body's voxels resampled back
        body = body_bbox(cropped)
        region = source_region(new_shape, cropped.shape, body, axis)
        needed = window_extent(new_shape, model.patch_zyx, options.tile_step_size, region)
        prepared = resample_region(normalised, new_shape, spacing, model.spacing_zyx, needed, order=rd["order"],
                                   order_z=rd["order_z"], force_separate_z=rd["force_separate_z"])
        block = {"full_shape": new_shape, "image_offset": tuple(sl.start for sl in needed)}
        if uncertainty:
            block["fold_labels"] = []
    else:
        prepared = resample_to_shape(normalised, new_shape, spacing, model.spacing_zyx, order=rd["order"],
                                     order_z=rd["order_z"], force_separate_z=rd["force_separate_z"],
                                     work_dtype=np.float64 if exact else np.float32, out_dtype=np.float32)
    del normalised
    if progress is not None:
        progress.update(1.0, f"{cropped.shape} -> {tuple(new_shape)}")
        progress.begin("inference")
    result = logits_with_fallback(model, prepared, progress, options, region, **block)
    del prepared
    if progress is not None:
        progress.begin("resampling")
    labels = np.zeros(image.shape, dtype=np.uint8)
    measured = None
    if region is not None:
        logits, offset = result
        labels[box][body] = logits_box_to_labels(logits, offset, new_shape, cropped.shape, body, axis)
        if uncertainty:
            measured = _uncertainty(model, ct, relayout, logits, offset, new_shape, cropped.shape, box,
                                    block.get("fold_labels"))
    elif exact or not linear:
        labels[box] = labels_like_nnunet(result, cropped.shape, model.spacing_zyx, spacing, rp)
    else:
        labels[box] = logits_to_labels(result, cropped.shape, axis)
    del result
    labels = np.transpose(labels, model.transpose_backward)
    if options.postprocess and model.postprocessing:
        labels = apply_postprocessing(labels, model.postprocessing)
    if progress is not None:
        progress.update(1.0)
    labels = relayout.from_canonical(labels) if relayout is not None else np.ascontiguousarray(labels)
    return Prediction(labels, measured)


def _uncertainty(model: LoadedModel, ct: Volume, relayout, logits, offset, new_shape, cropped_shape, box,
                 fold_labels) -> SliceUncertainty:
    """The uncertainty of the fast mode's logits (model layout, from ``offset`` of the model grid
    ``new_shape``, which resamples ``cropped_shape`` = the image's ``box``), per CT slice and side."""
    from ..input.body import body_midline_x

    back = tuple(int(a) for a in model.transpose_backward)  # model layout -> canonical layout
    permute = (0, *(1 + a for a in back))
    logits = logits.permute(*permute)
    folds = [f.permute(*back) for f in fold_labels] if fold_labels else None
    offset = [offset[a] for a in back]
    grid = [int(new_shape[a]) for a in back]
    n_cropped = [int(cropped_shape[a]) for a in back]
    start = [int(box[a].start) for a in back]
    canonical_shape = relayout.canonical_shape(ct.shape)
    # the model plane of each canonical slice, then in the volume's own slice order
    c = np.arange(canonical_shape[0]) - start[0]
    inside = (c >= 0) & (c < n_cropped[0])
    plane = np.full(canonical_shape[0], -1, dtype=np.int64)
    plane[inside] = np.clip(np.floor((c[inside] + 0.5) * grid[0] / n_cropped[0]).astype(np.int64), 0, grid[0] - 1)
    if relayout.flips[0]:
        plane = plane[::-1].copy()
    # the canonical x of the midline, in model-grid columns
    x0, dx = relayout.canonical_x(ct.affine, ct.shape)
    column = (body_midline_x(ct) - x0) / dx - start[2]
    left_from = (column + 0.5) * grid[2] / n_cropped[2] - 0.5
    voxel_ml = float(np.prod(model.spacing_zyx)) / 1000.0
    method = "disagreement of the folds" if folds else "entropy of the averaged probabilities"
    return slice_uncertainty(logits, offset, grid, plane, left_from, voxel_ml, model.num_outputs, method, folds)
