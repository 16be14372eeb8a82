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
  laid out canonically (see ``orientation``; a feet-first or prone series is segmented like a
  head-first supine one, which nnU-Net itself does not do); of nnU-Net's windows (same tiling of the
  whole image) only those that reach the patient's body are run, so inside the body the logits are
  nnU-Net's and no time goes to air, which is background; resampling is done in float32; and
  only the body's voxels are resampled back, with separable linear gathers (the same edge-aligned
  weights as skimage's order 1) a few channels at a time, rounded to float16 as nnU-Net stores
  them, with a running argmax, instead of every channel of the whole grid in float64. The window
  sums stay nnU-Net's (float16 for an nnU-Net model, one pass per fold): at the rim of a lens, a
  structure of about 70 voxels, float32 sums flip a voxel or two against nnU-Net (Dice 0.985).

On a GPU the network runs under float16 autocast. If the GPU runs out of memory, the run is
retried with the sums kept on the CPU and one window at a time, then on the CPU, and says so.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from .errors import DKOARError
from .model_bundle import ModelBundle
from .network import build_monai_network, build_network
from .orientation import relayout_for
from .postprocessing import apply_postprocessing
from .preprocessing import (
    IntensityProperties, body_bbox, compute_new_shape, ct_normalise, nearest_indices, nonzero_bbox,
    resample_region, resample_to_shape, separate_z_axis,
)
from .progress import Progress
from .volume import Volume

log = logging.getLogger(__name__)

MODES = ("fast", "nnunet")
_DEFAULT_DATA_RESAMPLING = {"order": 3, "order_z": 0, "force_separate_z": None}
_DEFAULT_PROB_RESAMPLING = {"order": 1, "order_z": 0, "force_separate_z": None}


@dataclass
class PredictOptions:
    mode: str = "fast"  # "fast" or "nnunet" (see the module docstring)
    tile_step_size: float = 0.5
    use_gaussian: bool = True
    use_mirroring: bool = True  # on the axes the checkpoint allows (none for NoMirroring trainers)
    half_precision: bool = True  # float16 autocast, on CUDA only
    postprocess: bool = True  # the model's postprocessing.pkl, if it has one
    windows_per_batch: int = 1  # windows run through the network together (GPU)
    optimise_cpu: bool = True  # fast mode on the CPU: the network traced, frozen and fused for inference

    def __post_init__(self):
        if self.mode not in MODES:
            raise DKOARError(f"unknown prediction mode {self.mode!r} (use {' or '.join(MODES)})")
        if not 0 < self.tile_step_size <= 1:
            raise DKOARError("tile_step_size must be in (0, 1]")


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
    transpose_forward: tuple[int, int, int] = (0, 1, 2)
    transpose_backward: tuple[int, int, int] = (0, 1, 2)
    data_resampling: dict = field(default_factory=lambda: dict(_DEFAULT_DATA_RESAMPLING))
    probability_resampling: dict = field(default_factory=lambda: dict(_DEFAULT_PROB_RESAMPLING))
    postprocessing: list = field(default_factory=list)
    # the window sums' precision, as the model's own framework sums: nnU-Net float16 (its label map
    # differs from float32 sums at the rim of small structures), MONAI and TorchScript float32
    sums_dtype: str = "float32"
    messages: list = field(default_factory=list)  # what a run had to do differently (OOM fallback)
    _cpu_graphs: dict = field(default_factory=dict, repr=False)  # network index -> frozen CPU graph

    def cpu_graph(self, index: int, example):
        """The network ``index`` traced on a window like ``example``, frozen and fused for CPU
        inference (oneDNN: about 1.5x faster on a CPU, the same results up to float32 rounding);
        the eager network when that fails."""
        key = (index, tuple(example.shape))
        if key not in self._cpu_graphs:
            import warnings

            import torch

            net = self.networks[index]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    graph = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, example, check_trace=False)))
                    graph(example)  # the first call compiles
            except Exception as exc:  # noqa: BLE001 - any failure: run the network as it is
                log.info("running the network eagerly (tracing failed: %s)", exc)
                graph = net
            self._cpu_graphs[key] = graph
        return self._cpu_graphs[key]


def _configuration(plans: dict, name: str, where) -> dict:
    configs = plans.get("configurations", {})
    if name not in configs:
        raise DKOARError(f"{where}: plans.json has no configuration {name!r} ({', '.join(configs)})")
    config = dict(configs[name])
    seen = {name}
    while "inherits_from" in config:
        parent = config.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise DKOARError(f"{where}: configuration {name!r} inherits from a missing or circular {parent!r}")
        seen.add(parent)
        config = {**configs[parent], **config}
    return config


def _resampling_kwargs(config: dict, which: str, default: dict, where) -> dict:
    fn = config.get(f"resampling_fn_{which}", "resample_data_or_seg_to_shape")
    if fn != "resample_data_or_seg_to_shape":
        raise DKOARError(f"{where}: plans.json resamples with {fn!r}; only nnU-Net's resample_data_or_seg_to_shape "
                         "is supported")
    kwargs = dict(default)
    kwargs.update({k: v for k, v in config.get(f"resampling_fn_{which}_kwargs", {}).items() if k in default})
    return kwargs


def load_model(bundle: ModelBundle, device) -> LoadedModel:
    if bundle.kind in ("torchscript", "monai"):
        return _load_network_model(bundle, device)
    plans = bundle.read_json("plans.json")
    dataset = bundle.read_json("dataset.json")
    try:
        config = _configuration(plans, bundle.configuration, bundle.folder)
        props = IntensityProperties.from_plans(plans["foreground_intensity_properties_per_channel"]["0"])
        spacing, patch = tuple(float(v) for v in config["spacing"]), tuple(int(v) for v in config["patch_size"])
    except KeyError as exc:
        raise DKOARError(f"{bundle.folder}: plans.json lacks {exc}") from None
    if config.get("normalization_schemes") != ["CTNormalization"]:
        raise DKOARError(f"{bundle.folder}: only single-channel CT models (CTNormalization) are supported")
    if len(spacing) != 3 or len(patch) != 3:
        raise DKOARError(f"{bundle.folder}: configuration {bundle.configuration!r} is not 3D; only 3D models are supported")
    num_outputs = len(dataset["labels"])
    networks, mirror = [], None
    for n, rel in enumerate(bundle.checkpoint_paths()):
        checkpoint = bundle.load_checkpoint(rel)
        net = build_network(config["architecture"], 1, num_outputs)
        try:
            net.load_state_dict(checkpoint["network_weights"])
        except (KeyError, RuntimeError) as exc:
            raise DKOARError(f"{bundle.folder / rel}: the weights do not fit the network of plans.json ({str(exc).splitlines()[0]})") from None
        net.eval().to(device)
        networks.append(net)
        if n == 0:  # nnU-Net takes the mirroring axes of the first fold
            axes = checkpoint.get("inference_allowed_mirroring_axes")
            mirror = tuple(int(a) for a in axes) if axes else None
    transpose_forward = tuple(int(v) for v in plans.get("transpose_forward", (0, 1, 2)))
    transpose_backward = tuple(int(v) for v in plans.get("transpose_backward", np.argsort(transpose_forward)))
    return LoadedModel(bundle, networks, spacing, patch, props, num_outputs, mirror, device,
                       transpose_forward=transpose_forward, transpose_backward=transpose_backward,
                       data_resampling=_resampling_kwargs(config, "data", _DEFAULT_DATA_RESAMPLING, bundle.folder),
                       probability_resampling=_resampling_kwargs(config, "probabilities", _DEFAULT_PROB_RESAMPLING,
                                                                 bundle.folder),
                       postprocessing=bundle.load_postprocessing(), sums_dtype="float16")


def _load_network_model(bundle: ModelBundle, device) -> LoadedModel:
    """A TorchScript or MONAI network with spacing, patch and CT normalisation from the manifest."""
    m = bundle.card
    norm = m["normalisation"]
    lo, hi = (float(v) for v in norm["clip"])
    props = IntensityProperties(float(norm["mean"]), float(norm["std"]), lo, hi)
    if bundle.kind == "torchscript":
        net = bundle.load_torchscript(device)
    else:
        net = build_monai_network(m["network"])
        weights = bundle.load_checkpoint(m["weights"])
        for key in ("state_dict", "model", "network_weights"):
            if isinstance(weights, dict) and isinstance(weights.get(key), dict):
                weights = weights[key]
        try:
            net.load_state_dict(weights)
        except (RuntimeError, TypeError) as exc:
            raise DKOARError(f"{bundle.folder / m['weights']}: the weights do not fit the MONAI network "
                             f"({str(exc).splitlines()[0]})") from None
        net = net.eval().to(device)
    axes = m.get("mirror_axes")
    return LoadedModel(bundle, [net], tuple(float(v) for v in m["spacing"]), tuple(int(v) for v in m["patch_size"]),
                       props, max(bundle.labels) + 1, tuple(int(a) for a in axes) if axes else None, device)


# --- the sliding window ---------------------------------------------------------------------------

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
                          full_shape=None, image_offset=None):
    """Logits (C, z, y, x) of a prepared (normalised, resampled) image, on the CPU, as nnU-Net
    sums them: one pass per fold (sums in ``model.sums_dtype``), the folds' mean.

    With ``region`` (slices of the image), only nnU-Net's windows that overlap the region are run
    (the windows of the whole image, at the whole image's steps), so inside the region the logits
    are the whole image's; returns (logits over the run windows' extent, the extent's offset in
    the image). Then ``image`` may be just the block of a ``full_shape`` image at ``image_offset``
    that covers ``window_extent(...)``."""
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
    with torch.inference_mode():
        total = len(slicers) * len(model.networks)
        prediction = None
        for fold in range(len(model.networks)):
            part = _window_pass(model, data, slicers, fp, options, fold, progress, fold * len(slicers), total).to("cpu")
            prediction = part if prediction is None else prediction.add_(part)
        if len(model.networks) > 1:
            prediction /= len(model.networks)
    if region is not None:
        return prediction, tuple(e.start - b for e, b in zip(extent, below))
    return prediction[(slice(None), *(slice(b - e.start, b - e.start + s) for e, b, s in zip(extent, below, shape)))]


def _logits_with_fallback(model: LoadedModel, image: np.ndarray, progress: Progress | None, options: PredictOptions,
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


# --- back to the CT grid ----------------------------------------------------------------------------

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


def _labels_like_nnunet(logits, out_shape, current_spacing, new_spacing, kwargs: dict) -> np.ndarray:
    """nnU-Net's export: every channel resampled with skimage (float64, stored as the logits'
    float16), then argmax."""
    arr = logits.numpy() if hasattr(logits, "numpy") else np.asarray(logits)
    out = np.empty((arr.shape[0], *out_shape), dtype=arr.dtype)
    for c in range(arr.shape[0]):
        out[c] = resample_to_shape(arr[c], out_shape, current_spacing, new_spacing, order=kwargs["order"],
                                   order_z=kwargs["order_z"], force_separate_z=kwargs["force_separate_z"],
                                   work_dtype=np.float64, out_dtype=arr.dtype)
    return np.argmax(out, axis=0).astype(np.uint8)


# --- the whole prediction -----------------------------------------------------------------------------

def predict_labels(model: LoadedModel, ct: Volume, progress: Progress | None = None,
                   options: PredictOptions | None = None) -> np.ndarray:
    """The model's label map (model label values) on the CT's grid and array layout."""
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
    else:
        prepared = resample_to_shape(normalised, new_shape, spacing, model.spacing_zyx, order=rd["order"],
                                     order_z=rd["order_z"], force_separate_z=rd["force_separate_z"],
                                     work_dtype=np.float64 if exact else np.float32, out_dtype=np.float32)
    del normalised
    if progress is not None:
        progress.update(1.0, f"{cropped.shape} -> {tuple(new_shape)}")
        progress.begin("inference")
    result = _logits_with_fallback(model, prepared, progress, options, region, **block)
    del prepared
    if progress is not None:
        progress.begin("resampling")
    labels = np.zeros(image.shape, dtype=np.uint8)
    if region is not None:
        logits, offset = result
        labels[box][body] = logits_box_to_labels(logits, offset, new_shape, cropped.shape, body, axis)
    elif exact or not linear:
        labels[box] = _labels_like_nnunet(result, cropped.shape, model.spacing_zyx, spacing, rp)
    else:
        labels[box] = logits_to_labels(result, cropped.shape, axis)
    del result
    labels = np.transpose(labels, model.transpose_backward)
    if options.postprocess and model.postprocessing:
        labels = apply_postprocessing(labels, model.postprocessing)
    if progress is not None:
        progress.update(1.0)
    labels = relayout.from_canonical(labels) if relayout is not None else np.ascontiguousarray(labels)
    return labels
