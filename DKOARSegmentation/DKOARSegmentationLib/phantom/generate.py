"""Rasterise the phantom anatomy onto a CT grid in any patient position, and write it out.

The anatomy is evaluated at voxel centres in patient LPS coordinates, so that the ground truth
is exact on the CT grid: patient left (+x) is patient left in every patient position. The image
gets a little blur (partial volume) and Gaussian noise, like a reconstructed CT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DKOARError
from ..structures.catalogue import Catalogue, default_catalogue
from ..volume import Segmentation, Volume
from .anatomy import AIR, PATIENT_POSITIONS, HeadPose, Layer, build_layers

# Row and column directions (DICOM ImageOrientationPatient) of each patient position
ORIENTATIONS = {
    "HFS": ((1, 0, 0), (0, 1, 0)),
    "FFS": ((-1, 0, 0), (0, 1, 0)),
    "HFP": ((-1, 0, 0), (0, -1, 0)),
    "FFP": ((1, 0, 0), (0, -1, 0)),
}


@dataclass(frozen=True)
class PhantomGrid:
    """The CT grid: a square matrix of ``pixel_mm`` pixels, slices from ``z_min`` to ``z_max``."""

    matrix: int = 512
    pixel_mm: float = 0.977
    slice_mm: float = 2.5
    z_min: float = -150.0
    z_max: float = 135.0

    @property
    def n_slices(self) -> int:
        return int(np.floor((self.z_max - self.z_min) / self.slice_mm)) + 1


@dataclass
class Phantom:
    ct: Volume  # in the array layout of the chosen patient position, as a DICOM reader gives it
    truth: Segmentation
    position: str
    seed: int


def _canonical_axes(grid: PhantomGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half = (grid.matrix - 1) / 2.0 * grid.pixel_mm
    x = -half + np.arange(grid.matrix) * grid.pixel_mm
    y = -half + np.arange(grid.matrix) * grid.pixel_mm
    z = grid.z_min + np.arange(grid.n_slices) * grid.slice_mm
    return x, y, z


def _paint(hu: np.ndarray, labels: np.ndarray, layer: Layer, pose: HeadPose, axes) -> None:
    xs, ys, zs = axes
    lo, hi = layer.shape.bounds()
    if np.any(hi < lo):
        return
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    world = pose.to_world(corners)
    wlo, whi = world.min(axis=0) - 1.0, world.max(axis=0) + 1.0
    ranges = []
    for axis, a0, a1 in zip((xs, ys, zs), wlo, whi):
        i0, i1 = np.searchsorted(axis, a0), np.searchsorted(axis, a1, side="right")
        if i1 <= i0:
            return
        ranges.append((i0, i1))
    (i0, i1), (j0, j1), (k0, k1) = ranges
    inv = pose.rotation  # world = R (s*a) + t  =>  a = R^T (w - t) / s
    x = xs[i0:i1][None, None, :] - pose.translation[0]
    y = ys[j0:j1][None, :, None] - pose.translation[1]
    chunk = max(1, 2_000_000 // max(1, (i1 - i0) * (j1 - j0)))
    for ks in range(k0, k1, chunk):
        ke = min(k1, ks + chunk)
        z = zs[ks:ke][:, None, None] - pose.translation[2]
        ax = (inv[0, 0] * x + inv[1, 0] * y + inv[2, 0] * z) / pose.scale[0]
        ay = (inv[0, 1] * x + inv[1, 1] * y + inv[2, 1] * z) / pose.scale[1]
        az = (inv[0, 2] * x + inv[1, 2] * y + inv[2, 2] * z) / pose.scale[2]
        inside = layer.shape.contains(ax, ay, az)
        if not np.any(inside):
            continue
        if layer.hu is not None:
            hu[ks:ke, j0:j1, i0:i1][inside] = layer.hu
        if layer.label is not None:
            labels[ks:ke, j0:j1, i0:i1][inside] = layer.label


def generate_phantom(
    seed: int = 0,
    position: str = "HFS",
    grid: PhantomGrid = PhantomGrid(),
    catalogue: Catalogue | None = None,
    vary: bool = True,
    noise_hu: float = 12.0,
) -> Phantom:
    """Make a phantom CT and its ground truth (catalogue numbering) on ``grid``."""
    if position not in PATIENT_POSITIONS:
        raise DKOARError(f"unknown patient position {position!r}; use one of {', '.join(PATIENT_POSITIONS)}")
    catalogue = catalogue or default_catalogue()
    rng = np.random.default_rng(seed)
    pose = HeadPose.sample(rng, vary)
    layers = build_layers({s.name: s.label for s in catalogue}, rng, vary)
    axes = _canonical_axes(grid)
    shape = (len(axes[2]), len(axes[1]), len(axes[0]))
    hu = np.full(shape, AIR, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    for layer in layers:
        _paint(hu, labels, layer, pose, axes)
    _add_couch(hu, axes, position)
    # partial volume: blur about half a millimetre, only where there is something to blur
    body = np.argwhere(hu > -999)
    if len(body):
        lo = np.maximum(body.min(axis=0) - 3, 0)
        hi = body.max(axis=0) + 4
        sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        sigma = (0.25, 0.5 / grid.pixel_mm, 0.5 / grid.pixel_mm)
        hu[sub] = ndimage.gaussian_filter(hu[sub], sigma=sigma, mode="nearest")
    if noise_hu > 0:
        hu += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_hu)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return _orient(hu, labels, axes, grid, position, seed, catalogue)


def _add_couch(hu: np.ndarray, axes, position: str) -> None:
    """A carbon-fibre couch top under the patient (posterior when supine, anterior when prone)."""
    _, ys, _ = axes
    if position.endswith("S"):
        rows = (ys > 96) & (ys < 104)
    else:
        rows = (ys < -104) & (ys > -112)
    hu[:, rows, :] = np.maximum(hu[:, rows, :], -350)


def _orient(hu, labels, axes, grid: PhantomGrid, position: str, seed: int, catalogue: Catalogue) -> Phantom:
    """Re-lay the canonical (k:+z, j:+y, i:+x) arrays as the DICOM series of ``position`` is laid."""
    row_dir, col_dir = (np.asarray(v, float) for v in ORIENTATIONS[position])
    normal = np.cross(row_dir, col_dir)
    if row_dir[0] < 0:
        hu, labels = hu[:, :, ::-1], labels[:, :, ::-1]
    if col_dir[1] < 0:
        hu, labels = hu[:, ::-1, :], labels[:, ::-1, :]
    if normal[2] < 0:
        hu, labels = hu[::-1], labels[::-1]
    xs, ys, zs = axes
    origin = np.array([
        xs[0] if row_dir[0] > 0 else xs[-1],
        ys[0] if col_dir[1] > 0 else ys[-1],
        zs[0] if normal[2] > 0 else zs[-1],
    ])
    affine = np.eye(4)
    affine[:3, 0] = row_dir * grid.pixel_mm
    affine[:3, 1] = col_dir * grid.pixel_mm
    affine[:3, 2] = normal * grid.slice_mm
    affine[:3, 3] = origin
    hu, labels = np.ascontiguousarray(hu), np.ascontiguousarray(labels)
    ct = Volume(hu, affine, source=f"phantom seed {seed} {position}")
    truth = Segmentation(labels, affine.copy(), tuple(catalogue), {"source": "phantom ground truth", "seed": seed})
    return Phantom(ct, truth, position, seed)


def write_phantom(out_dir: Path | str, seed: int = 0, position: str = "HFS", grid: PhantomGrid = PhantomGrid(),
                  catalogue: Catalogue | None = None) -> Phantom:
    """Write ``out_dir/ct/`` (a DICOM CT series), ``truth.nii.gz`` and ``truth.seg.nrrd``.

    An earlier phantom there is replaced; anything else is refused before any work, since
    ``out_dir/ct`` may be a real CT the user keeps there."""
    import shutil

    from ..atomic import atomic_directory, check_output_folder, prepare_output_folder
    from ..output.label_maps import write_labelmap_nifti, write_seg_nrrd
    from .ct_series_writer import write_ct_series

    out_dir = check_output_folder(Path(out_dir))
    ct_dir = out_dir / "ct"
    if ct_dir.exists() and not _is_phantom_ct(ct_dir):
        raise DKOARError(f"{ct_dir}: already exists and is not a phantom written by dkoar, so it is not replaced; "
                         "choose another output folder or remove it")
    catalogue = catalogue or default_catalogue()
    phantom = generate_phantom(seed, position, grid, catalogue)
    prepare_output_folder(out_dir)
    if ct_dir.exists():
        shutil.rmtree(ct_dir)
    with atomic_directory(ct_dir) as tmp:
        phantom.ct.dicom = write_ct_series(phantom.ct, tmp, seed=seed, position=position)
    write_labelmap_nifti(phantom.truth, out_dir / "truth.nii.gz")
    write_seg_nrrd(phantom.truth, out_dir / "truth.seg.nrrd", catalogue)
    return phantom


def _is_phantom_ct(folder: Path) -> bool:
    """Whether ``folder`` holds only a phantom CT series written by ``write_phantom``."""
    import pydicom

    from .ct_series_writer import PHANTOM_MANUFACTURER

    if not folder.is_dir() or folder.is_symlink():
        return False
    files = list(folder.iterdir())
    for file in files:
        if not file.is_file() or file.is_symlink() or not file.name.startswith("CT_"):
            return False
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["Manufacturer"])
        except Exception:  # noqa: BLE001 - anything pydicom cannot read is not our phantom
            return False
        if header.get("Manufacturer") != PHANTOM_MANUFACTURER:
            return False
    return bool(files)
