"""The image data handed along the pipeline: a CT volume with its geometry, and label maps on it.

Array axes are (slice, row, column) = (k, j, i). ``affine`` maps the homogeneous index
(i, j, k, 1) to patient LPS millimetres, the DICOM patient coordinate system: +x is the patient's
left, +y posterior, +z superior, whatever the patient position on the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .structures.catalogue import Structure


def voxel_volume_ml(spacing_mm) -> float:
    """The volume of one voxel in millilitres, from its size in mm along three orthogonal axes."""
    return float(np.prod(np.asarray(spacing_mm, dtype=np.float64))) / 1000.0


@dataclass(frozen=True)
class SliceReference:
    """What an RTSTRUCT needs to reference one CT slice."""

    sop_class_uid: str
    sop_instance_uid: str
    position: tuple[float, float, float]  # ImagePositionPatient of the slice, LPS mm


@dataclass
class DicomSeriesInfo:
    """The DICOM identity of a CT series, kept for export.

    ``header`` is the first slice's dataset without pixel data (patient, study, frame of
    reference and equipment attributes); ``slices`` follow the volume's k axis.
    """

    header: object  # pydicom.Dataset; typed loosely so this module does not import pydicom
    slices: tuple[SliceReference, ...]

    @property
    def study_instance_uid(self) -> str:
        return str(self.header.StudyInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.header.SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.header.FrameOfReferenceUID)


@dataclass
class Volume:
    voxels: np.ndarray  # (k, j, i), Hounsfield units for CT
    affine: np.ndarray  # 4x4, (i, j, k, 1) -> LPS mm
    dicom: DicomSeriesInfo | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.voxels.ndim != 3 or self.affine.shape != (4, 4):
            raise ValueError("a Volume needs a 3D array and a 4x4 affine")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.voxels.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along (i, j, k) in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """Unit vectors of the i, j, k axes in LPS, as columns."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3].copy()

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


@dataclass
class Segmentation:
    """A label map on a volume's grid, values being catalogue label numbers (0 = background)."""

    labels: np.ndarray  # (k, j, i) uint8
    affine: np.ndarray
    structures: tuple[Structure, ...]
    provenance: dict = field(default_factory=dict)

    def mask(self, structure: Structure) -> np.ndarray:
        return self.labels == structure.label

    def volumes_ml(self) -> dict[str, float]:
        voxel_ml = voxel_volume_ml(np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))
        counts = np.bincount(self.labels.ravel(), minlength=max((s.label for s in self.structures), default=0) + 1)
        return {s.name: round(float(counts[s.label]) * voxel_ml, 3) for s in self.structures}
