"""``dkoar model init|info|verify``: write a model folder's manifest, show its card, verify it."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DKOARError


def _cmd_model_init(args) -> int:
    from ..model.manifest import init_manifest, init_monai_manifest, init_torchscript_manifest

    performance = {}
    if args.performance:
        try:
            performance = json.loads(Path(args.performance).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DKOARError(f"{args.performance}: cannot read the performance summary ({exc})") from None
    common = dict(name=args.name or args.folder.resolve().name, version=args.version, intended_use=args.intended_use,
                  clinical_use=args.clinical_use, training_data=args.training_data, performance=performance,
                  force=args.force)
    if args.torchscript and args.monai:
        raise DKOARError("give --torchscript or --monai, not both")
    if args.torchscript or args.monai:
        missing = [o for o, v in (("--spacing", args.spacing), ("--patch", args.patch), ("--ct-clip", args.ct_clip),
                                  ("--ct-mean", args.ct_mean), ("--ct-std", args.ct_std), ("--labels", args.labels))
                   if v is None]
        if missing:
            raise DKOARError(f"a TorchScript model needs {', '.join(missing)}")
        try:
            labels = {int(k): str(v) for k, v in json.loads(Path(args.labels).read_text(encoding="utf-8")).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise DKOARError(f"{args.labels}: labels must be a JSON object {{\"1\": \"Brain\", ...}} ({exc})") from None
        geometry = (labels, args.spacing, args.patch, args.ct_clip, args.ct_mean, args.ct_std)
        if args.torchscript:
            path = init_torchscript_manifest(args.folder, args.torchscript, *geometry, mirror_axes=args.mirror_axes,
                                             **common)
        else:
            if args.monai_network is None:
                raise DKOARError("a MONAI model needs --monai-network (JSON {\"class\": \"UNet\", \"kwargs\": {...}})")
            try:
                spec = json.loads(Path(args.monai_network).read_text(encoding="utf-8"))
                network_class, network_kwargs = spec["class"], spec.get("kwargs", {})
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DKOARError(f"{args.monai_network}: not a MONAI network description ({exc})") from None
            path = init_monai_manifest(args.folder, args.monai, network_class, network_kwargs, *geometry,
                                       mirror_axes=args.mirror_axes, **common)
    else:
        path = init_manifest(args.folder, configuration=args.configuration, **common)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    print(f"wrote {path}: {len(manifest['files'])} files hashed, {len(manifest['labels'])} labels")
    for rel in manifest["files"]:
        print(f"  {rel}")
    return 0


def _cmd_model_info(args) -> int:
    from ..model.bundle import load_bundle
    from ..model.card import model_card
    from ..structures.catalogue import default_catalogue
    from ..structures.model_labels import map_model_labels

    bundle = load_bundle(args.folder, verify=False)
    print(model_card(bundle))
    mapping = map_model_labels(bundle.labels, default_catalogue())
    if mapping.merged:
        print("  merged left/right labels (split by patient side): "
              + ", ".join(f"{v}={bundle.labels[v]}" for v in mapping.merged))
    if mapping.unmapped:
        print("  labels that map to no catalogue structure: " + ", ".join(f"{v}={n}" for v, n in mapping.unmapped.items()))
    if mapping.missing:
        print("  catalogue structures the model does not provide: " + ", ".join(s.name for s in mapping.missing))
    return 0


def _cmd_model_verify(args) -> int:
    from ..model.bundle import load_bundle

    bundle = load_bundle(args.folder, verify=True)
    if bundle.kind == "nnunetv2":
        steps = bundle.load_postprocessing()
        for rel in bundle.checkpoint_paths():
            bundle.load_checkpoint(rel)
        extra = f", {len(steps)} post-processing step(s)" if steps else ""
    else:
        import torch

        from ..model.loading import load_model

        load_model(bundle, torch.device("cpu"))
        extra = ""
    print(f"verified {bundle.identity}: {len(bundle.files)} files match the manifest's sha256, the weights load "
          f"as weights only{extra}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("model", help="model bundles: write the manifest of a model folder, show its card, verify it")
    model_sub = p.add_subparsers(dest="model_command", required=True, parser_class=type(p))

    p = model_sub.add_parser("init", help="write dkoar_model.json for an nnU-Net v2 result folder (or a TorchScript network)",
                             description="Hash every file that is loaded and take the labels from dataset.json; "
                                         "with --torchscript, describe one TorchScript network instead.")
    p.add_argument("folder", type=Path)
    p.add_argument("--force", action="store_true", help="rewrite an existing manifest")
    p.add_argument("--name", default=None, help="model name (default: the folder's name)")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--intended-use", default="", help="the model card's intended use")
    p.add_argument("--clinical-use", action="store_true", help="the model is approved for clinical use at this site")
    p.add_argument("--training-data", default="", help="the model card's training data summary")
    p.add_argument("--performance", type=Path, default=None, help="a JSON file with the performance summary")
    p.add_argument("--configuration", default="3d_fullres", help="nnU-Net configuration (default 3d_fullres)")
    p.add_argument("--torchscript", default=None, metavar="FILE", help="a TorchScript network file in the folder")
    p.add_argument("--monai", default=None, metavar="FILE", help="a MONAI network's state dict in the folder")
    p.add_argument("--monai-network", type=Path, default=None,
                   help="MONAI: JSON {\"class\": \"UNet\", \"kwargs\": {...}} (UNet, DynUNet, SegResNet, ...)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), help="TorchScript/MONAI: voxel size in mm")
    p.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"), help="TorchScript/MONAI: window size in voxels")
    p.add_argument("--ct-clip", type=float, nargs=2, metavar=("LOW", "HIGH"), help="TorchScript/MONAI: HU clip")
    p.add_argument("--ct-mean", type=float, default=None, help="TorchScript/MONAI: mean subtracted after clipping")
    p.add_argument("--ct-std", type=float, default=None, help="TorchScript/MONAI: standard deviation divided by")
    p.add_argument("--mirror-axes", type=int, nargs="*", default=None, help="TorchScript/MONAI: mirroring axes (0-2)")
    p.add_argument("--labels", type=Path, default=None, help="TorchScript/MONAI: JSON {\"1\": \"Brain\", ...}")
    p.set_defaults(func=_cmd_model_init)

    p = model_sub.add_parser("info", help="print the model card (identity, intended use, training data, performance)")
    p.add_argument("folder", type=Path)
    p.set_defaults(func=_cmd_model_info)

    p = model_sub.add_parser("verify", help="check every file against the manifest's sha256 and load the weights")
    p.add_argument("folder", type=Path)
    p.set_defaults(func=_cmd_model_verify)
