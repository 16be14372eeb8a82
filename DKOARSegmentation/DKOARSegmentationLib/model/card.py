"""The model card as text: what ``dkoar model info`` prints and the panel shows."""

from __future__ import annotations

from .bundle import ModelBundle


def model_card(bundle: ModelBundle) -> str:
    """The model card as text: identity, intended use, training data, performance, files, labels."""
    m = bundle.card
    lines = [f"{bundle.name} {bundle.version}  ({bundle.kind})",
             f"  folder:          {bundle.folder}",
             f"  clinical use:    {'yes' if bundle.clinical_use else 'NO - not for clinical use'}",
             f"  intended use:    {bundle.intended_use or '(not stated)'}",
             f"  training data:   {m.get('training_data') or '(not stated)'}"]
    if bundle.kind == "nnunetv2":
        lines.append(f"  configuration:   {bundle.configuration}, folds {bundle.folds}, {bundle.checkpoint_name}")
        if "postprocessing.pkl" in bundle.files:
            lines.append("  post-processing: postprocessing.pkl (nnU-Net's largest-component removal)")
        for entry in m.get("refinements", []) or []:
            lines.append(f"  second stage:    {entry['folder']}/ for {', '.join(entry['structures'].values())} on a "
                         f"{' x '.join(f'{v:g}' for v in entry['crop_mm'])} mm crop (z, y, x) per side, placed from "
                         f"{entry['centre']['from']} and {entry['centre']['towards']}")
    else:
        norm = m["normalisation"]
        network = m["network"] if bundle.kind == "torchscript" else f"MONAI {m['network']['class']} ({m['weights']})"
        lines.append(f"  network:         {network}, spacing {m['spacing']} mm (z, y, x), patch {m['patch_size']}")
        lines.append(f"  normalisation:   CT, clip {norm['clip']}, mean {norm['mean']}, std {norm['std']}")
    perf = m.get("performance") or {}
    if perf:
        lines.append("  performance:")
        for key, value in perf.items():
            if isinstance(value, dict):
                lines.append(f"    {key}:")
                lines.extend(f"      {k2}: {v2}" for k2, v2 in value.items())
            else:
                lines.append(f"    {key}: {value}")
    else:
        lines.append("  performance:     (not stated)")
    lines.append(f"  labels ({len(bundle.labels)}): " + ", ".join(f"{v}={n}" for v, n in sorted(bundle.labels.items())))
    lines.append("  files (sha256):")
    lines.extend(f"    {digest}  {rel}" for rel, digest in bundle.files.items())
    return "\n".join(lines)
