"""``dkoar cohort scan``, ``dkoar dataset build``, ``dkoar train`` and ``dkoar evaluate``: from a
cohort of contoured CTs to an nnU-Net dataset, a trained model, and two models compared."""

from __future__ import annotations

from pathlib import Path

from .options import DEVICES


def _catalogue(args):
    from ..structures.catalogue import default_catalogue
    from ..structures.choice import structure_set

    return structure_set(getattr(args, "site_config", None)) or default_catalogue()


def _cmd_cohort_scan(args) -> int:
    from ..research.cohort import scan_cohort, write_cohort
    from ..research.cohort_table import cohort_lines

    catalogue = _catalogue(args)
    cohort = scan_cohort(args.folder, catalogue, args.map)
    written = write_cohort(cohort, args.out, catalogue) if args.out else None
    for line in cohort_lines(cohort, catalogue):
        print(line)
    if written is not None:
        print(f"wrote {written}")
    return 0


def _cmd_dataset_build(args) -> int:
    from ..progress import TerminalProgress
    from ..research.cohort import read_cohort
    from ..research.dataset import build_dataset, report_lines
    from ..structures.site_config import parse_structure_names

    cohort = read_cohort(args.cohort)
    include_log = (args.include_log, args.log_files) if args.include_log else None
    progress = TerminalProgress() if not args.quiet else None
    try:
        report = build_dataset(cohort, args.out, _catalogue(args),
                               parse_structure_names(args.structures) if args.structures else None,
                               include_log, args.map, progress)
    finally:
        if progress is not None:
            progress.finish()
    for line in report_lines(report):
        print(line)
    return 0


def _cmd_train(args) -> int:
    from ..research.training import TrainingOptions, train

    options = TrainingOptions(configuration=args.config, fold=args.fold, epochs=args.epochs,
                              iterations_per_epoch=args.iterations_per_epoch, patch_size=args.patch,
                              features_scale=args.features_scale, device=args.device, num_gpus=args.num_gpus,
                              name=args.name, version=args.version, processes=args.processes)
    result = train(args.dataset, args.out, options, work=args.work)
    print(f"trained {result.folder} ({result.seconds:.0f} s): dkoar model info {result.folder}")
    return 0


def _cmd_evaluate(args) -> int:
    from ..research.evaluation import evaluate_models
    from ..research.page import write_evaluation

    if len(args.model) != 2:
        from ..errors import DKOARError

        raise DKOARError("give exactly two models: --model A --model B")
    evaluation = evaluate_models(args.model[0], args.model[1], args.cohort, cases_file=args.cases, work=args.work,
                                 device=args.device, resamples=args.bootstrap, seed=args.seed,
                                 catalogue=_catalogue(args), site_map=args.map)
    page, document = write_evaluation(evaluation, args.out)
    for line in evaluation.summary_lines():
        print(line)
    print(f"wrote {page} and {document}")
    return 0


def _group(sub, name: str, help_text: str):
    """A subcommand with subcommands of its own (``dkoar cohort scan``, ``dkoar dataset build``)."""
    parent = sub.add_parser(name, help=help_text)
    return parent.add_subparsers(dest=f"{name}_command", required=True, parser_class=type(parent))


def add_parsers(sub) -> None:
    cohort_sub = _group(sub, "cohort", "research cohorts: find every CT with its RTSTRUCTs and map their ROI names")
    p = cohort_sub.add_parser("scan", help="every CT series with its RTSTRUCT(s) under a folder, ROI names mapped",
                              description="Counts, per catalogue structure, the cases that have it, and lists every "
                                          "ROI name that maps to no structure with the number of RTSTRUCTs using it.")
    p.add_argument("folder", type=Path)
    p.add_argument("--map", type=Path, default=None, help="the site's ROI name mapping: CSV roi_name,structure")
    p.add_argument("--site-config", type=Path, default=None, help="site configuration (structures the site added)")
    p.add_argument("--out", type=Path, default=None, help="write the cohort (cohort.json) for dkoar dataset build")
    p.set_defaults(func=_cmd_cohort_scan)

    dataset_sub = _group(sub, "dataset", "nnU-Net v2 datasets from a cohort")
    p = dataset_sub.add_parser("build", help="write an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json)")
    p.add_argument("cohort", type=Path, help="cohort.json of dkoar cohort scan")
    p.add_argument("--out", type=Path, required=True, help="DIR/DatasetNNN_Name")
    p.add_argument("--structures", default=None, metavar="NAMES",
                   help="only these structures (comma-separated); default: every structure some case has")
    p.add_argument("--include-log", type=Path, default=None, metavar="DB",
                   help="add the clinicians' final contours of the cases in this correction log")
    p.add_argument("--log-files", type=Path, default=None, metavar="DIR",
                   help="where the logged cases' final RTSTRUCTs and CTs are (default: the cohort's folder)")
    p.add_argument("--map", type=Path, default=None, help="ROI name mapping (default: the one the scan used)")
    p.add_argument("--site-config", type=Path, default=None, help="site configuration (structures the site added)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_dataset_build)

    p = sub.add_parser("train", help="train nnU-Net v2 on a dataset (its planning, preprocessing and trainer) "
                                     "and write a model folder with its manifest and card")
    p.add_argument("dataset", type=Path, help="DIR/DatasetNNN_Name from dkoar dataset build")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")
    p.add_argument("--config", default="3d_fullres", help="nnU-Net configuration (default 3d_fullres)")
    p.add_argument("--fold", type=int, default=0, choices=range(5), help="fold of nnU-Net's 5-fold split (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default nnU-Net's 1000)")
    p.add_argument("--iterations-per-epoch", type=int, default=None, help="training steps per epoch (default 250)")
    p.add_argument("--patch", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="patch size instead of the planned one (each divisible by the network's downsampling)")
    p.add_argument("--features-scale", type=float, default=None,
                   help="scale the planned features per stage (e.g. 0.25 for a small network)")
    p.add_argument("--device", choices=("cuda", "cpu", "mps"), default="cuda")
    p.add_argument("--num-gpus", type=int, default=1,
                   help="GPUs for nnU-Net's own distributed training (needs nnU-Net's full installation)")
    p.add_argument("--processes", type=int, default=None, help="processes for preprocessing and augmentation")
    p.add_argument("--work", type=Path, default=None,
                   help="nnU-Net's preprocessed and results folders (default: OUT's name + _nnunet beside it)")
    p.add_argument("--name", default=None, help="model name (default: the dataset's name)")
    p.add_argument("--version", default="1.0.0")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="two models on the same cases: Dice, surface Dice, HD95, APL, paired "
                                        "differences with bootstrap intervals, a verdict per structure")
    p.add_argument("--model", type=Path, action="append", required=True, help="a model folder (give two)")
    p.add_argument("--cohort", type=Path, required=True, help="cohort.json of dkoar cohort scan")
    p.add_argument("--cases", type=Path, default=None, help="a file of case ids (one a line): the held-out cases")
    p.add_argument("--out", type=Path, required=True, help="the page (eval.html); the JSON is written beside it")
    p.add_argument("--work", type=Path, default=None,
                   help="where each model's outputs per case are kept and reused (default: <cohort>_runs beside the cohort file)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--map", type=Path, default=None, help="ROI name mapping (default: the one the scan used)")
    p.add_argument("--site-config", type=Path, default=None, help="site configuration (structures the site added)")
    p.set_defaults(func=_cmd_evaluate)
