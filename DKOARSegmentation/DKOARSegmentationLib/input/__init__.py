"""The CT in: DICOM series found and chosen, read exactly or refused clearly, NIfTI/NRRD/MHA
files, the canonical layout, and where the patient's body lies."""
