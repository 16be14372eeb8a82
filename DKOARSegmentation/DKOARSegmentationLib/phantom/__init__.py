"""A synthetic head-and-neck CT with the 32 organs at risk as ground truth (test and training data)."""

from .anatomy import PATIENT_POSITIONS
from .generate import Phantom, PhantomGrid, generate_phantom, write_phantom

__all__ = ["PATIENT_POSITIONS", "Phantom", "PhantomGrid", "generate_phantom", "write_phantom"]
