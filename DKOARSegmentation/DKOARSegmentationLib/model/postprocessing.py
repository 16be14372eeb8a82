"""nnU-Net's post-processing (``postprocessing.pkl``), read without running the pickle.

nnU-Net's ``determine_postprocessing`` saves ``(pp_fns, pp_fn_kwargs)``: a list of functions and a
list of their keyword arguments. The only function it ever saves is
``remove_all_but_largest_component_from_segmentation`` with ``labels_or_regions`` = a label, a
region (tuple of labels) or a list of them. A pickle names its functions by module and name, and an
ordinary ``pickle.load`` would import and call whatever it names; here a restricted unpickler accepts
that one name (as a marker, importing nothing) and refuses every other global with a clear message.

The operation is implemented here (nnunetv2 is not needed at run time): the mask of the labels is
labelled with full connectivity (26 neighbours in 3D, as skimage's ``label`` default that nnU-Net
uses), every component but the largest (all of equal largest size are kept) is set to background.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass

import numpy as np

from ..errors import DKOARError

_NNUNET_MODULE = "nnunetv2.postprocessing.remove_connected_components"
KEEP_LARGEST = "remove_all_but_largest_component_from_segmentation"
ALLOWED_FUNCTIONS = {(_NNUNET_MODULE, KEEP_LARGEST)}
ALLOWED_KWARGS = {"labels_or_regions", "background_label"}


@dataclass(frozen=True)
class _FunctionRef:
    name: str


@dataclass(frozen=True)
class PostprocessingStep:
    function: str
    labels_or_regions: tuple  # each item an int label or a tuple of labels (a region)
    background_label: int = 0

    def describe(self) -> str:
        return f"keep the largest connected component of {list(self.labels_or_regions)}"


class _Refused(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_FUNCTIONS:
            return _FunctionRef(name)
        raise _Refused(f"it names {module}.{name}, which is not one of nnU-Net's post-processing "
                                     f"functions ({_NNUNET_MODULE}.{KEEP_LARGEST})")

    def persistent_load(self, pid):
        raise _Refused("it uses persistent references")


def _as_label_or_region(value, where: str):
    if isinstance(value, bool) or not isinstance(value, (int, tuple, list)):
        raise DKOARError(f"{where}: labels_or_regions holds {value!r}, not a label or a region")
    if isinstance(value, int):
        return int(value)
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise DKOARError(f"{where}: a region in labels_or_regions must be a non-empty tuple of labels")
    return tuple(int(v) for v in value)


def parse_postprocessing(data: bytes, where: str = "postprocessing.pkl") -> list[PostprocessingStep]:
    """The steps of a ``postprocessing.pkl``; anything but nnU-Net's known function is refused."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise DKOARError(f"{where}: refused, {exc}; nothing from it was run") from None
    except Exception as exc:  # a damaged pickle: EOFError, ValueError, ...
        raise DKOARError(f"{where}: not a readable post-processing pickle ({type(exc).__name__}: {exc})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], list)
            and isinstance(obj[1], list) and len(obj[0]) == len(obj[1])):
        raise DKOARError(f"{where}: expected (functions, keyword arguments) as nnU-Net saves it")
    steps = []
    for fn, kwargs in zip(*obj):
        if not isinstance(fn, _FunctionRef):
            raise DKOARError(f"{where}: a post-processing step is {type(fn).__name__}, not a known function")
        if not isinstance(kwargs, dict) or not set(kwargs) <= ALLOWED_KWARGS or "labels_or_regions" not in kwargs:
            raise DKOARError(f"{where}: the arguments of {fn.name} must be labels_or_regions (and background_label)")
        value = kwargs["labels_or_regions"]
        items = value if isinstance(value, list) else [value]
        background = kwargs.get("background_label", 0)
        if isinstance(background, bool) or not isinstance(background, int):
            raise DKOARError(f"{where}: background_label must be a label")
        steps.append(PostprocessingStep(fn.name, tuple(_as_label_or_region(v, where) for v in items), int(background)))
    return steps


def remove_all_but_largest_component(labels: np.ndarray, labels_or_regions, background_label: int = 0) -> np.ndarray:
    """A copy of ``labels`` where the voxels of ``labels_or_regions`` outside their largest
    connected component (26-connectivity) are set to ``background_label``."""
    from scipy import ndimage

    mask = np.zeros(labels.shape, dtype=bool)
    for item in labels_or_regions:
        for value in (item if isinstance(item, tuple) else (item,)):
            mask |= labels == value
    out = labels.copy()
    if not mask.any():
        return out
    components, n = ndimage.label(mask, structure=np.ones((3,) * labels.ndim, dtype=bool))
    sizes = np.bincount(components.ravel())[1:]
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = sizes == sizes.max()
    out[mask & ~keep[components]] = background_label
    return out


def apply_postprocessing(labels: np.ndarray, steps: list[PostprocessingStep]) -> np.ndarray:
    for step in steps:
        if step.function != KEEP_LARGEST:  # parse_postprocessing admits no other
            raise DKOARError(f"unknown post-processing step {step.function}")
        labels = remove_all_but_largest_component(labels, step.labels_or_regions, step.background_label)
    return labels
