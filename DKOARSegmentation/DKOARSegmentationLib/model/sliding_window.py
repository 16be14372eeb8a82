"""nnU-Net's sliding window: Gaussian-weighted windows at nnU-Net's steps, optional mirroring,
one pass per fold, and a smaller footprint (then the CPU) when the device runs out of memory.

Only the windows that overlap a region (the patient's body) may be run: the windows of the whole
image at the whole image's steps, so that inside the region the logits are the whole image's.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from ..errors import DKOARError
from ..progress import Progress
from .loading import LoadedModel
from .predict_options import PredictOptions

log = logging.getLogger(__name__)


def gaussian_importance(patch, sigma_scale: float = 1 / 8, value_scaling: float = 10.0, dtype=None, device=None):
    """nnU-Net's weighting of a window (``compute_gaussian``): a Gaussian of sigma = patch / 8,
    peak ``value_scaling``, zeros replaced by the smallest non-zero value after the cast to
    ``dtype`` (nnU-Net: float16). A float32 numpy array when ``dtype`` is None, else a tensor."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(patch)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = gaussian_filter(tmp, [p * sigma_scale for p in patch], 0, mode="constant", cval=0)
    g /= np.max(g) / value_scaling
    if dtype is None:
        g = g.astype(np.float32)
        g[g == 0] = g[g != 0].min()
        return g
    import torch

    t = torch.from_numpy(g).to(device=device, dtype=dtype)
    mask = t == 0
    t[mask] = torch.min(t[~mask])
    return t


def window_starts(size: int, patch: int, step: float = 0.5) -> list[int]:
    """nnU-Net's tiling (``compute_steps_for_sliding_window``): evenly spread windows overlapping
    by at least 1 - step."""
    n = int(np.ceil((size - patch) / (patch * step))) + 1
    if n <= 1:
        return [0]
    actual = (size - patch) / (n - 1)
    return [int(np.round(actual * i)) for i in range(n)]


def _pad_to_patch(data, patch):  # what _window_plan's padding does, as a tensor (tests check it against nnU-Net)
    """Pad (constant 0) to at least the patch size, half below, half (+1) above, as nnU-Net's
    ``pad_nd_image``; returns the padded tensor and the slices that undo it."""
    import torch

    shape = data.shape
    pad = [max(0, p - s) for p, s in zip(patch, shape)]
    below = [p // 2 for p in pad]
    above = [p // 2 + p % 2 for p in pad]
    if any(pad):
        # torch's pad lists the last axis first
        data = torch.nn.functional.pad(data, [v for a in reversed(range(3)) for v in (below[a], above[a])])
    undo = tuple(slice(b, b + s) for b, s in zip(below, shape))
    return data, undo


def _mirrored(net, x, axes):
    out = net(x)
    if axes:
        dims = [a + 2 for a in axes]
        combos = [c for i in range(len(dims)) for c in itertools.combinations(dims, i + 1)]
        for combo in combos:
            out += net(x.flip(combo)).flip(combo)
        out /= len(combos) + 1
    return out


@dataclass(frozen=True)
class Footprint:
    """Where a sliding-window pass runs and keeps its sums."""

    device: object  # torch.device of the network
    results_on_device: bool
    batch: int

    def describe(self) -> str:
        where = "on the device" if self.results_on_device else "on the CPU"
        return f"{self.device.type}, sums {where}, {self.batch} window(s) at a time"


def footprints(device, options: PredictOptions) -> list[Footprint]:
    """The footprints tried in turn: all on the device, then sums on the CPU and one window at a
    time, then the CPU."""
    import torch

    if device.type == "cpu":
        return [Footprint(device, False, max(1, options.windows_per_batch))]
    return [Footprint(device, True, max(1, options.windows_per_batch)), Footprint(device, False, 1),
            Footprint(torch.device("cpu"), False, 1)]


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(oom, type) and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _empty_cache(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def _window_pass(model: LoadedModel, data, slicers, fp: Footprint, options: PredictOptions, fold: int,
                 progress: Progress | None, done: int, total: int):
    """One pass of the windows over ``data`` (padded (z, y, x) float32 tensor on the CPU) with the
    network of ``fold``: Gaussian-weighted sums divided by the summed weights, a (C, z, y, x)
    tensor of ``model.sums_dtype`` (nnU-Net's sliding window for an nnU-Net model)."""
    import torch

    res_dev = fp.device if fp.results_on_device else torch.device("cpu")
    shape = tuple(data.shape)
    source = data.to(fp.device) if fp.results_on_device else data
    acc_dtype = getattr(torch, model.sums_dtype)
    logits = torch.zeros((model.num_outputs, *shape), dtype=acc_dtype, device=res_dev)
    weights = torch.zeros(shape, dtype=acc_dtype, device=res_dev)
    gaussian = gaussian_importance(model.patch_zyx, dtype=acc_dtype, device=res_dev) if options.use_gaussian else 1
    axes = model.mirror_axes if options.use_mirroring else None
    autocast = fp.device.type == "cuda" and options.half_precision
    optimise = options.optimise_cpu and options.mode == "fast" and fp.device.type == "cpu" and fp.batch == 1
    net = model.networks[fold]
    for start in range(0, len(slicers), fp.batch):
        group = slicers[start:start + fp.batch]
        window = torch.stack([source[sl] for sl in group])[:, None].to(fp.device)
        if optimise and start == 0:
            net = model.cpu_graph(fold, window)
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            pred = _mirrored(net, window, axes).to(res_dev)
        if pred.dtype != acc_dtype and acc_dtype == torch.float32:
            pred = pred.float()
        for i, sl in enumerate(group):
            p = pred[i]
            if options.use_gaussian:
                p *= gaussian
            logits[(slice(None), *sl)] += p
            weights[sl] += gaussian
        if progress is not None:
            n = done + start + len(group)
            progress.update(n / total, f"window {n}/{total}")
    torch.div(logits, weights, out=logits)
    if not torch.isfinite(logits).all():
        raise DKOARError("the network gave non-finite logits (inf or nan); the model or its input is broken")
    return logits


def _window_plan(shape, patch, step: float, region=None):
    """nnU-Net's windows on an image of ``shape`` padded to at least the patch (half below, half
    above): (padding below, window starts per axis relative to the extent, the extent in padded
    coordinates). With ``region`` (slices of the unpadded image) only the windows that overlap it,
    and the extent they cover."""
    pad = [max(0, p - s) for p, s in zip(patch, shape)]
    below = [p // 2 for p in pad]
    padded = [s + p for s, p in zip(shape, pad)]
    starts = [window_starts(s, p, step) for s, p in zip(padded, patch)]
    if region is not None:
        starts = [[a for a in st if a < sl.stop + b and a + p > sl.start + b] or st
                  for st, sl, b, p in zip(starts, region, below, patch)]
    extent = tuple(slice(st[0], st[-1] + p) for st, p in zip(starts, patch))
    return below, [[a - e.start for a in st] for st, e in zip(starts, extent)], extent


def window_extent(shape, patch, step: float, region) -> tuple[slice, ...]:
    """The part of an unpadded image of ``shape`` that the windows overlapping ``region`` read."""
    below, _, extent = _window_plan(shape, patch, step, region)
    return tuple(slice(max(e.start - b, 0), min(e.stop - b, s)) for e, b, s in zip(extent, below, shape))


def sliding_window_logits(model: LoadedModel, image: np.ndarray, progress: Progress | None = None,
                          options: PredictOptions | None = None, fp: Footprint | None = None, region=None,
                          full_shape=None, image_offset=None, fold_labels: list | None = None):
    """Logits (C, z, y, x) of a prepared (normalised, resampled) image, on the CPU, as nnU-Net
    sums them: one pass per fold (sums in ``model.sums_dtype``), the folds' mean.

    With ``region`` (slices of the image), only nnU-Net's windows that overlap the region are run
    (the windows of the whole image, at the whole image's steps), so inside the region the logits
    are the whole image's; returns (logits over the run windows' extent, the extent's offset in
    the image). Then ``image`` may be just the block of a ``full_shape`` image at ``image_offset``
    that covers ``window_extent(...)``.

    ``fold_labels``: with several folds, each fold's own label map (the argmax of its pass, uint8)
    is appended to this list, for the folds' disagreement."""
    import torch

    options = options or PredictOptions()
    fp = fp or footprints(model.device, options)[0]
    shape = tuple(full_shape) if full_shape is not None else tuple(image.shape)
    offset_in = tuple(image_offset) if image_offset is not None else (0, 0, 0)
    below, starts, extent = _window_plan(shape, model.patch_zyx, options.tile_step_size, region)
    # the windows' data: the image where the extent lies inside it, nnU-Net's zero padding elsewhere
    data = torch.zeros(tuple(e.stop - e.start for e in extent), dtype=torch.float32)
    src, dst = [], []
    for e, b, s, o, n in zip(extent, below, shape, offset_in, image.shape):
        lo, hi = max(e.start - b, 0), min(e.stop - b, s)
        if lo < o or hi > o + n:
            raise AssertionError("the image block does not cover the windows")
        src.append(slice(lo - o, hi - o))
        dst.append(slice(lo + b - e.start, hi + b - e.start))
    data[tuple(dst)] = torch.from_numpy(np.ascontiguousarray(image[tuple(src)], dtype=np.float32))
    slicers = [tuple(slice(a, a + p) for a, p in zip(corner, model.patch_zyx)) for corner in itertools.product(*starts)]
    if fold_labels is not None:
        fold_labels.clear()  # a retry after running out of memory starts again
    with torch.inference_mode():
        total = len(slicers) * len(model.networks)
        prediction = None
        for fold in range(len(model.networks)):
            part = _window_pass(model, data, slicers, fp, options, fold, progress, fold * len(slicers), total).to("cpu")
            if fold_labels is not None and len(model.networks) > 1:
                fold_labels.append(part.argmax(dim=0).to(torch.uint8))
            prediction = part if prediction is None else prediction.add_(part)
        if len(model.networks) > 1:
            prediction /= len(model.networks)
    if region is not None:
        return prediction, tuple(e.start - b for e, b in zip(extent, below))
    return prediction[(slice(None), *(slice(b - e.start, b - e.start + s) for e, b, s in zip(extent, below, shape)))]


def logits_with_fallback(model: LoadedModel, image: np.ndarray, progress: Progress | None, options: PredictOptions,
                          region=None, **block):
    """The sliding window on the model's device, retried with a smaller footprint and then on the
    CPU when the device runs out of memory (each retry noted in ``model.messages``)."""
    tries = footprints(model.device, options)
    for n, fp in enumerate(tries):
        if fp.device != model.device:
            model.networks = [net.to(fp.device) for net in model.networks]
            model.device = fp.device
        try:
            if region is None:
                return sliding_window_logits(model, image, progress, options, fp)
            return sliding_window_logits(model, image, progress, options, fp, region=region, **block)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are retried
            if not _is_out_of_memory(exc):
                raise
            _empty_cache(fp.device)
            if n + 1 == len(tries):
                raise DKOARError(f"out of memory on {fp.device.type} even with the smallest footprint "
                                 f"({fp.describe()}); close other programs or use a smaller field of view") from None
            message = f"{fp.device.type} ran out of memory ({fp.describe()}); retrying with {tries[n + 1].describe()}"
            model.messages.append(message)
            log.warning(message)
            if progress is not None:
                progress.update(0.0, message)
    raise AssertionError("unreachable")  # pragma: no cover

