"""How a model is run: the prediction mode and the sliding window's settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DKOARError

MODES = ("fast", "nnunet")


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
