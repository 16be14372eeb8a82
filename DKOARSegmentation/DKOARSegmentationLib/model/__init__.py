"""The model: bundles checked and loaded (nnU-Net v2, TorchScript, MONAI), their manifests and
cards, networks, devices, nnU-Net's pre- and post-processing, the sliding window, and the
prediction back on the CT's grid."""
