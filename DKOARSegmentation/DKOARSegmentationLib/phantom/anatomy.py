"""The phantom's anatomy: tissues and organs at risk as solid primitives in patient LPS mm.

Origin at the midpoint between the cochleae; +x patient left, +y posterior, +z superior.
Sizes and places follow adult anatomy closely enough for the structures to keep their usual
neighbours (parotid beside the mandible ramus, cord inside the vertebral canal, lens in the
front of the globe, constrictors as thin sheets behind the pharynx). Each seed varies the
whole head (size, position, rotation) and each structure group (place and size) a little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import ArchBar, Box, Ellipsoid, EllipticCylinder, Jittered, Shape, SheetAroundTube, Tube, rotation

PATIENT_POSITIONS = ("HFS", "FFS", "HFP", "FFP")

# Hounsfield units of the tissues
AIR, FAT, SOFT, MUSCLE, BRAIN, CSF = -1000, -90, 40, 55, 32, 8
BONE, DENSE_BONE, SPONGY_BONE, TEETH, CARTILAGE = 1100, 1500, 380, 1800, 260
VITREOUS, LENS, GLAND_FATTY, GLAND, THYROID, CONTRAST_BLOOD = 12, 115, -5, 48, 110, 170


@dataclass
class Layer:
    """Paint ``shape`` with ``hu`` (None: leave the image) and ``label`` (None: leave the
    labels, 0: clear them, else the catalogue number of the structure)."""

    name: str
    shape: Shape
    hu: float | None
    label: int | None


@dataclass
class HeadPose:
    """The whole-head variation: scale, then rotation, then translation (LPS mm)."""

    scale: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator, vary: bool = True) -> "HeadPose":
        if not vary:
            return cls(np.ones(3), np.eye(3), np.zeros(3))
        s = rng.uniform(0.93, 1.07) * rng.uniform(0.97, 1.03, size=3)
        r = rotation(rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-4, 4))
        t = np.array([rng.uniform(-8, 8), rng.uniform(-8, 8), rng.uniform(-6, 6)])
        return cls(s, r, t)

    def to_world(self, points: np.ndarray) -> np.ndarray:
        return (points * self.scale) @ self.rotation.T + self.translation


class _Jitter:
    def __init__(self, rng: np.random.Generator, vary: bool):
        self.rng, self.vary = rng, vary

    def __call__(self, shapes: list[Shape], centre, shift_mm: float = 1.5, scale: float = 0.08) -> list[Shape]:
        """Move and scale a group of shapes together (one structure and its surroundings)."""
        if not self.vary:
            return shapes
        c = np.asarray(centre, float)
        d = self.rng.uniform(-shift_mm, shift_mm, size=3)
        s = self.rng.uniform(1 - scale, 1 + scale, size=3)
        return [Jittered(sh, c, d, s) for sh in shapes]


def build_layers(labels: dict[str, int], rng: np.random.Generator, vary: bool = True) -> list[Layer]:
    """The painting order: tissues first, organs after; later layers override earlier ones."""
    j = _Jitter(rng, vary)
    L: list[Layer] = []

    def tissue(name, shape, hu, label=None):
        L.append(Layer(name, shape, hu, label))

    def organ(name, shapes, hu):
        for sh in shapes:
            L.append(Layer(name, sh, hu, labels[name]))

    side = {"L": 1.0, "R": -1.0}

    # --- body outline with subcutaneous fat
    head = Ellipsoid((0, 5, 40), (80, 98, 88))
    face = Ellipsoid((0, -30, -30), (70, 67, 48))
    nose = Ellipsoid((0, -88, -4), (10, 14, 20))
    neck = EllipticCylinder((0, 18), (60, 62), (-400, -20))
    body = head | face | nose | neck
    tissue("body", body, FAT, 0)
    inner = (Ellipsoid((0, 5, 40), (74, 92, 82)) | Ellipsoid((0, -30, -30), (64, 61, 42))
             | EllipticCylinder((0, 18), (54, 56), (-400, -20)))
    tissue("soft tissue", inner, SOFT)
    # neck muscles: paraspinal, sternocleidomastoid, masseters
    for s in side.values():
        tissue("paraspinal", Ellipsoid((s * 22, 62, -90), (17, 14, 75)), MUSCLE)
        tissue("sternocleidomastoid", Tube(((s * 40, 30, -20), (s * 36, 5, -90), (s * 14, -30, -150)), 8), MUSCLE)
        tissue("masseter", Ellipsoid((s * 55, -25, -32), (6, 14, 22)), MUSCLE)

    # --- skull, skull base, petrous bones, brain
    brain_c, brain_s = (0, 10, 52), (66, 84, 58)
    cranial = Ellipsoid(brain_c, tuple(v + 11 for v in brain_s)) & Box((-200, -200, -2), (200, 200, 400))
    tissue("skull", cranial, BONE, 0)
    tissue("cranial csf", Ellipsoid(brain_c, tuple(v + 3 for v in brain_s)) & Box((-200, -200, 0), (200, 200, 400)), CSF, 0)
    skull_base = ((EllipticCylinder((0, 10), (74, 90), (-9, 0)) & Ellipsoid((0, 5, 40), (74, 92, 82)))
                  - Tube(((0, 40, -20), (0, 40, 5)), 16))
    tissue("skull base", skull_base, BONE, 0)
    for s in side.values():
        tissue("petrous bone", Ellipsoid((s * 33, 10, -3), (15, 9, 8), rotation(yaw_deg=-s * 40)), DENSE_BONE, 0)
    brain = Ellipsoid(brain_c, brain_s) & Box((-200, -200, 0), (200, 200, 400))
    organ("Brain", [brain], BRAIN)

    # --- cisterns, brainstem, spinal canal and cord, vertebrae
    cistern = Ellipsoid((0, -12, 10), (20, 16, 9))
    tissue("suprasellar cistern", cistern, CSF, 0)
    stem_axis = ((0, 22, 30), (0, 32, 5), (0, 44, -24))
    tissue("prepontine cistern", Tube(stem_axis, 14), CSF, 0)
    vertebral_body = Tube(((0, 24, -24), (0, 28, -70), (0, 26, -400)), 11)
    tissue("vertebral bodies", vertebral_body, SPONGY_BONE, 0)
    for z in np.arange(-38.0, -400.0, -17.0):
        tissue("intervertebral disc", vertebral_body & Box((-50, -50, z - 2), (50, 80, z + 2)), 85, 0)
    cord_axis = ((0, 44, -22), (0, 45, -70), (0, 44, -400))
    tissue("vertebral arch", Tube(cord_axis, 13) & Box((-50, -50, -400), (50, 120, -12)), BONE, 0)
    tissue("spinal canal", Tube(cord_axis, 7.5) & Box((-50, -50, -400), (50, 120, 0)), CSF, 0)
    organ("Brainstem", j([Tube(stem_axis[:2], 12.5), Tube(stem_axis[1:], 9.5)], (0, 32, 5), 1.5, 0.06), BRAIN)
    organ("SpinalCord", j([Tube(cord_axis, 4.8)], (0, 44, -70), 1.0, 0.06), 35)

    # --- orbits, eyes, lenses, lacrimal glands, optic nerves, chiasm
    for lat, s in side.items():
        eye_c = (s * 32, -62, 15)
        tissue("orbit", Ellipsoid((s * 32, -50, 15), (17, 26, 16)), FAT, 0)
        globe = Ellipsoid(eye_c, (12, 12, 12))
        front = globe & Box((-200, -200, -200), (200, eye_c[1] - 5.5, 200))
        lens = Ellipsoid((s * 32, eye_c[1] - 7.5, 15), (4.5, 2.0, 4.5))
        g = j([globe, front, lens], eye_c, 1.5, 0.06)
        organ(f"EyeBack_{lat}", [g[0]], VITREOUS)
        organ(f"EyeFront_{lat}", [g[1]], VITREOUS + 8)
        organ(f"Lens_{lat}", [g[2]], LENS)
        organ(f"Lacrimal_{lat}", j([Ellipsoid((s * 45, -60, 27), (6, 9, 3.5), rotation(yaw_deg=s * 30))], (s * 45, -60, 27)), GLAND)
        nerve = Tube(((s * 30, -50, 15), (s * 13, -28, 12), (s * 6, -14, 10)), 2.5)
        organ(f"OpticNerve_{lat}", j([nerve], (s * 18, -32, 12), 1.0, 0.05), 36)
    organ("Chiasm", j([Ellipsoid((0, -10, 10), (7.5, 4.5, 2.5))], (0, -10, 10), 1.0, 0.08), 38)

    # --- cochleae inside the petrous bones
    for lat, s in side.items():
        organ(f"Cochlea_{lat}", j([Ellipsoid((s * 31, 6, -2), (3.0, 2.8, 2.4))], (s * 31, 6, -2), 1.0, 0.06), 25)

    # --- parotids around the mandible ramus, mandible, maxilla and teeth
    for lat, s in side.items():
        organ(f"Parotid_{lat}", j([Ellipsoid((s * 50, -4, -25), (11, 16, 21))], (s * 50, -4, -25), 2.0, 0.1), GLAND_FATTY)
    mandible_parts = [ArchBar((0, -30), (42, 45), 9, (-64, -42))]
    for s in side.values():
        mandible_parts.append(Box((s * 44 - 4.5, -31, -50), (s * 44 + 4.5, -13, -4)))
    organ("Mandible", j(mandible_parts, (0, -30, -40), 1.5, 0.05), BONE)
    tissue("maxilla and upper teeth", ArchBar((0, -30), (40, 44), 9, (-34, -25)), TEETH, 0)
    tissue("lower teeth", ArchBar((0, -30), (42, 45), 7, (-42, -37)), TEETH, 0)

    # --- submandibular glands, oral cavity, buccal mucosa, lips
    for lat, s in side.items():
        organ(f"Submandibular_{lat}", j([Ellipsoid((s * 30, -22, -70), (10, 12, 9))], (s * 30, -22, -70), 2.0, 0.1), GLAND)
    organ("OralCavity", j([Ellipsoid((0, -45, -44), (24, 25, 11))], (0, -45, -44), 1.5, 0.06), 62)
    for lat, s in side.items():
        organ(f"BuccalMuc_{lat}", j([Ellipsoid((s * 27, -52, -42), (3.5, 14, 10))], (s * 27, -52, -42), 1.0, 0.06), 70)
    organ("Lips", j([Ellipsoid((0, -88, -40), (22, 6, 13))], (0, -88, -40), 1.0, 0.06), 58)

    # --- pharynx with its constrictor muscles, larynx, trachea, oesophagus
    pharynx_axis = ((0, -5, -8), (0, -2, -40), (0, -6, -80))
    tissue("retropharyngeal fat", SheetAroundTube(pharynx_axis, 11.5, 14.5, (-88, -12), 110), FAT, 0)
    for name, zr in (("PCM_Up", (-40, -12)), ("PCM_Mid", (-58, -40)), ("PCM_Low", (-88, -58))):
        organ(name, [SheetAroundTube(pharynx_axis, 8.0, 11.5, zr, 110)], MUSCLE + 10)
    tissue("thyroid cartilage", Ellipsoid((0, -18, -96), (22.5, 18.5, 18)) - Ellipsoid((0, -18, -96), (20, 16, 16)), CARTILAGE, 0)
    organ("LarynxSG", j([Ellipsoid((0, -18, -92), (16, 12, 8))], (0, -18, -92), 1.0, 0.06), 45)
    organ("LarynxG", j([Ellipsoid((0, -18, -104), (15, 11, 4.5))], (0, -18, -104), 1.0, 0.06), 50)
    tissue("tracheal cartilage", Tube(((0, -20, -110), (0, -20, -400)), 10), CARTILAGE, 0)
    organ("Esophagus", j([Tube(((0, 6, -106), (0, 8, -400)), 7)], (0, 7, -130), 1.0, 0.06), 45)
    for lat, s in side.items():
        organ(f"Carotid_{lat}", [Tube(((s * 24, 8, -400), (s * 22, 10, -60), (s * 20, 12, -30)), 3.5)], CONTRAST_BLOOD)
    thyroid = [Ellipsoid((s * 17, -14, -122), (8, 9, 20)) for s in side.values()]
    thyroid.append(Ellipsoid((0, -27, -116), (9, 4, 5)))
    organ("Thyroid", j(thyroid, (0, -16, -120), 1.5, 0.08), THYROID)
    # air in the lumens, inside labelled organs where the organ includes its lumen
    tissue("pharyngeal airway", Tube(pharynx_axis, 7.0), AIR, 0)
    tissue("laryngeal airway", Tube(((0, -6, -80), (0, -18, -88), (0, -20, -108), (0, -20, -400)), 5.0), AIR)
    tissue("tracheal airway", Tube(((0, -20, -110), (0, -20, -400)), 7.5), AIR, 0)
    tissue("oesophageal air", Tube(((0, 6, -110), (0, 8, -400)), 1.5), AIR)
    return L
