"""A PNG overview of a segmentation: axial, coronal and sagittal CT slices with contours.

Images are shown in the radiological convention (patient right on the image's left, anterior
up in axial views, superior up in coronal and sagittal ones), whatever the array layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..input.orientation import canonical_layout
from ..volume import Segmentation, Volume


def _centroid_index(labels: np.ndarray, label_values: list[int], axis: int) -> int | None:
    mask = np.isin(labels, label_values)
    if not mask.any():
        return None
    other = tuple(a for a in range(3) if a != axis)
    profile = mask.sum(axis=other)
    return int(round(float(np.average(np.arange(len(profile)), weights=profile))))


def write_overview(ct: Volume, segmentation: Segmentation, path: Path | str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, (sz, sy, sx) = canonical_layout(ct.voxels, ct.affine)
    labels, _ = canonical_layout(segmentation.labels, segmentation.affine)
    # show the patient, not the field of view's air and couch
    from ..input.body import body_bbox

    box = body_bbox(image, margin_voxels=6)
    image, labels = image[box], labels[box]
    by_name = {s.name: s.label for s in segmentation.structures}

    def level(names: list[str], axis: int) -> int:
        found = _centroid_index(labels, [by_name[n] for n in names if n in by_name], axis)
        return found if found is not None else image.shape[axis] // 2

    axial_levels = [
        ("axial, eyes", level(["Lens_L", "Lens_R", "OpticNerve_L", "OpticNerve_R"], 0)),
        ("axial, parotids", level(["Parotid_L", "Parotid_R"], 0)),
        ("axial, larynx", level(["LarynxSG", "LarynxG"], 0)),
    ]
    views = [(name, image[k], labels[k], sy / sx) for name, k in axial_levels]
    j = level(["Cochlea_L", "Cochlea_R", "Brainstem"], 1)
    views.append(("coronal", image[::-1, j, :], labels[::-1, j, :], sz / sx))
    i = image.shape[2] // 2
    views.append(("sagittal", image[::-1, :, i], labels[::-1, :, i], sz / sy))

    colours = {s.label: tuple(c / 255.0 for c in s.rgb) for s in segmentation.structures}
    fig, axes = plt.subplots(1, len(views), figsize=(4.2 * len(views), 4.8), facecolor="black")
    for ax, (name, img, lab, aspect) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=-160, vmax=240, aspect=aspect, interpolation="bilinear")
        for value in np.unique(lab):
            if value == 0 or value not in colours:
                continue
            ax.contour((lab == value).astype(np.float32), levels=[0.5], colors=[colours[value]], linewidths=0.9)
        ax.set_title(name, color="white", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, color="white", fontsize=11)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90, facecolor="black")
    finally:
        plt.close(fig)

