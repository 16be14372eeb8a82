"""A model bundle loaded for inference: its networks on the device, with the spacing, patch,
CT normalisation, resampling and post-processing that its plans (or manifest) prescribe."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import DKOARError
from .bundle import ModelBundle
from .network import build_monai_network, build_network
from .preprocessing import IntensityProperties

log = logging.getLogger(__name__)

_DEFAULT_DATA_RESAMPLING = {"order": 3, "order_z": 0, "force_separate_z": None}
_DEFAULT_PROB_RESAMPLING = {"order": 1, "order_z": 0, "force_separate_z": None}


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
    refinements: list = field(default_factory=list)  # second stages on crops (crop_refinement.Refinement)
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
    model = LoadedModel(bundle, networks, spacing, patch, props, num_outputs, mirror, device,
                        transpose_forward=transpose_forward, transpose_backward=transpose_backward,
                        data_resampling=_resampling_kwargs(config, "data", _DEFAULT_DATA_RESAMPLING, bundle.folder),
                        probability_resampling=_resampling_kwargs(config, "probabilities", _DEFAULT_PROB_RESAMPLING,
                                                                  bundle.folder),
                        postprocessing=bundle.load_postprocessing(), sums_dtype="float16")
    if bundle.card.get("refinements"):
        from .crop_refinement import load_refinements

        model.refinements = load_refinements(bundle, device)
    return model


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
