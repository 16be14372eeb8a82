"""Phantom cohorts as a clinic would hand them over: DICOM CT series with RTSTRUCTs written by the
project's own writer, ROI names in several planning systems' and clinics' spellings, and a
structure the site added (the pituitary gland, drawn below the chiasm)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom
from DKOARSegmentationLib.structures.catalogue import Catalogue, Structure
from DKOARSegmentationLib.structures.choice import structure_set
from DKOARSegmentationLib.volume import Segmentation

PITUITARY = {"name": "Pituitary", "aliases": ["Hypofyse", "Hypophysis"], "tg263": "Pituitary",
             "type": {"scheme": "SCT", "code": "56329008", "meaning": "Pituitary gland"},
             "color": "#c800c8", "tolerance_mm": 1.5, "group": "Brain and optic pathway",
             "guideline": "The gland in the sella turcica, below the chiasm; the stalk is not included."}
# ROI names of five clinics: the catalogue's, a capitalised TG-263 style with the side first,
# Danish, lower case with hyphens, and one site's own prefix (mapped by its names.csv)
SPELLINGS = (
    {},
    {"Brainstem": "BRAIN STEM", "SpinalCord": "SPINAL_CORD", "Parotid_L": "L_PAROTID", "Parotid_R": "R_PAROTID",
     "Mandible": "BONE_MANDIBLE", "Pituitary": "PITUITARY"},
    {"Brain": "Hjerne", "Brainstem": "Hjernestamme", "SpinalCord": "Medulla spinalis", "Parotid_L": "Parotis_sin",
     "Parotid_R": "Parotis_dx", "Mandible": "Mandibula", "Pituitary": "Hypofyse"},
    {"Brain": "brain", "Brainstem": "brain-stem", "SpinalCord": "spinal-cord", "Parotid_L": "parotid-lt",
     "Parotid_R": "parotid-rt", "Mandible": "mandible", "Pituitary": "hypophysis"},
    {"Brain": "OAR_Brain", "Brainstem": "OAR_Brainstem", "SpinalCord": "OAR_Cord", "Parotid_L": "Parotid Left",
     "Parotid_R": "Parotid Right", "Mandible": "Mandible", "Pituitary": "Pituitary"},
)
SITE_MAP = "roi_name,structure\nOAR_Brain,Brain\nOAR_Brainstem,Brainstem\nOAR_Cord,SpinalCord\nBODY,-\n"
STRUCTURES = ("Brain", "Brainstem", "SpinalCord", "Mandible", "Parotid_L", "Parotid_R", "Pituitary")


def write_site_config(folder: Path) -> Path:
    path = folder / "site.json"
    path.write_text(json.dumps({"add": [PITUITARY]}), encoding="utf-8")
    return path


def site_catalogue(folder: Path) -> Catalogue:
    return structure_set(write_site_config(folder))


def _with_pituitary(truth: Segmentation, catalogue: Catalogue, radius_mm: float) -> np.ndarray:
    """The phantom's labels with a pituitary sphere in front of the brainstem's top (where the
    sella lies), on any grid however coarse."""
    labels = truth.labels.copy()
    stem = np.argwhere(labels == catalogue.by_name("Brainstem").label)
    top = stem[stem[:, 0] >= stem[:, 0].max() - 1].mean(axis=0)[::-1]  # (i, j, k)
    affine = truth.affine
    centre = top @ affine[:3, :3].T + affine[:3, 3] + np.array([0.0, -18.0, -4.0])  # anterior, a little inferior
    k, j, i = np.indices(labels.shape)
    lps = np.stack([i, j, k], axis=-1) @ affine[:3, :3].T + affine[:3, 3]
    inside = np.linalg.norm(lps - centre, axis=-1) <= radius_mm
    soft = [0] + [catalogue.by_name(n).label for n in ("Brain", "Brainstem")]
    labels[inside & np.isin(labels, soft)] = catalogue.by_name("Pituitary").label
    return labels


def write_case(folder: Path, seed: int, catalogue: Catalogue, grid: PhantomGrid, spelling: dict[str, str],
               structures=STRUCTURES, radius_mm: float = 9.0, extra_roi: bool = True) -> Path:
    """``folder/ct/`` and ``folder/RS.<seed>.dcm``: the phantom and its contours under those names."""
    phantom = write_phantom(folder, seed=seed, grid=grid)
    labels = (_with_pituitary(phantom.truth, catalogue, radius_mm) if "Pituitary" in structures
              else phantom.truth.labels.copy())
    chosen: list[Structure] = [catalogue.by_name(name) for name in structures]
    renamed = tuple(dataclasses.replace(s, name=spelling.get(s.name, s.name)) for s in chosen)
    keep = np.isin(labels, [s.label for s in chosen])
    labels = np.where(keep, labels, 0).astype(np.uint8)
    if extra_roi:  # a structure no catalogue holds, as clinical sets have (the couch, a PTV...)
        couch = catalogue.by_name("Mandible")
        body = dataclasses.replace(couch, name="Couch_Top", label=250)
        labels[:, -3:, :] = np.where(labels[:, -3:, :] == 0, 250, labels[:, -3:, :])
        renamed += (body,)
    segmentation = Segmentation(labels, phantom.truth.affine.copy(), renamed)
    options = RTStructOptions(label="Clinic", model_name="clinicians", edited=frozenset(s.name for s in renamed),
                              series_description="Clinical structure set")
    return write_rtstruct(phantom.ct, segmentation, folder / f"RS.{seed}.dcm", options)


def write_cohort(root: Path, seeds, catalogue: Catalogue, grid: PhantomGrid, lacking: dict[int, str] | None = None
                 ) -> Path:
    """One folder per seed (clinic names rotating through SPELLINGS); ``lacking``: seed -> a
    structure that case's clinic did not draw."""
    lacking = lacking or {}
    for n, seed in enumerate(seeds):
        structures = tuple(s for s in STRUCTURES if s != lacking.get(seed))
        write_case(root / f"patient_{n}", seed, catalogue, grid, SPELLINGS[n % len(SPELLINGS)], structures)
    (root / "names.csv").write_text(SITE_MAP, encoding="utf-8")
    return root


def degraded_model(source: Path, target: Path, noise: float, seed: int = 0) -> Path:
    """A copy of the model at ``source`` whose weights carry Gaussian noise (``noise`` times each
    tensor's own standard deviation), re-manifested as a new version: a model known to be worse."""
    import shutil

    import torch

    from DKOARSegmentationLib.model.bundle import load_bundle
    from DKOARSegmentationLib.model.manifest import init_manifest

    bundle = load_bundle(source)
    shutil.copytree(source, target)
    generator = torch.Generator().manual_seed(seed)
    for rel in bundle.checkpoint_paths():
        checkpoint = torch.load(target / rel, map_location="cpu", weights_only=True)
        for name, tensor in checkpoint["network_weights"].items():
            if tensor.is_floating_point() and tensor.numel() > 1 and "weight" in name:
                tensor += torch.randn(tensor.shape, generator=generator) * tensor.std() * noise
        torch.save(checkpoint, target / rel)
    # rewritten in place, so that its second stages (refinements) stay with it
    init_manifest(target, name=bundle.name, version=f"{bundle.version}-noise{noise:g}",
                  intended_use="A deliberately degraded copy for testing model comparison.",
                  training_data=str(bundle.card.get("training_data", "")), configuration=bundle.configuration,
                  force=True)
    return target
