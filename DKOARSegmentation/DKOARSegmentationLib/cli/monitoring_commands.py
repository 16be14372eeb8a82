"""``dkoar compare``, ``dkoar log add`` and ``dkoar report``: the AI against the clinician's
final contours, the correction log, and the monitoring report."""

from __future__ import annotations

from pathlib import Path

from ..errors import DKOARError
from .options import OneLineErrors, add_ct_options, announce_site_key, site_key_path_for

TIMES_HELP = ("JSON of the correction times per structure: {\"structures\": {\"Parotid_L\": {\"active_s\": 42.5, "
              "\"wall_s\": 75, \"edits\": 3}, ...}} - active_s: seconds of editing without idle pauses, wall_s: "
              "seconds from first to last touch, edits: number of editing operations; all optional")


def _cmd_compare(args) -> int:
    from ..atomic import check_output_file
    from ..monitoring.comparison import compare_contour_sets
    from ..monitoring.comparison_files import comparison_paths, write_comparison
    from ..monitoring.contour_sets import read_contour_set
    from ..structures.catalogue import default_catalogue

    for path in comparison_paths(args.out):
        check_output_file(path, inputs=(args.ai, args.final))
    catalogue = default_catalogue()
    ct = None
    if args.ct is not None:
        from ..input.ct_loader import load_ct

        ct = load_ct(args.ct, args.series)
    ai = read_contour_set(args.ai, ct, catalogue)
    final = read_contour_set(args.final, ct, catalogue)
    results = compare_contour_sets(ai, final)
    json_path, csv_path = write_comparison(results, args.out)
    edited = [name for name, r in results.items() if not r.unchanged]
    print(f"wrote {json_path} and {csv_path}: {len(results)} structures, {len(edited)} changed")
    for name in edited:
        r = results[name]
        hd95 = "-" if r.hd95_mm is None else f"{r.hd95_mm:.1f}"
        print(f"  {name:<16} Dice {r.dice:.3f}  HD95 {hd95} mm  surface Dice {r.surface_dice:.3f} "
              f"(tolerance {r.tolerance_mm:g} mm)  APL {r.apl_mm:.0f} mm")
    return 0


def _cmd_log_add(args) -> int:
    from ..atomic import check_output_file
    from ..input.ct_loader import load_dicom_ct
    from ..monitoring.case_from_files import compare_case, log_case, read_times
    from ..monitoring.correction_log import check_when, open_log, site_key_fingerprint
    from ..monitoring.guidance_log import read_run_guidance
    from ..monitoring.pseudonym import load_site_key

    # everything that can refuse the case is checked before anything is written: a refused case
    # leaves neither a new site key nor a new log behind
    key_path = site_key_path_for(args.site_key, args.log)
    check_output_file(args.log, inputs=(args.ai, args.final, args.times, key_path))
    if args.date is not None:
        check_when(args.date)
    times = read_times(args.times) if args.times else None
    guidance = read_run_guidance(args.run) if args.run else None
    key = load_site_key(key_path, create=False) if key_path.exists() else None
    if key is None:
        check_output_file(key_path)
    started_with = site_key_fingerprint(args.log) if args.log.exists() else None
    if started_with is not None and (key is None or key.fingerprint != started_with):
        raise DKOARError(f"{args.log}: this log's patients were keyed with another site key; give the site key it "
                         "was started with (--site-key or DKOAR_SITE_KEY)")
    ct = load_dicom_ct(args.ct, args.series, "a logged case")
    case = compare_case(ai_path=args.ai, final_path=args.final, ct=ct, model_name=args.model_name,
                        model_version=args.model_version)

    key = key or load_site_key(key_path)
    announce_site_key(key)
    with open_log(args.log) as log:
        added = log_case(log, case, key, site=args.site, times=times, model_hash=args.model_hash,
                         started_at=args.date, guidance=guidance)
    changed = sum(1 for r in added.results.values() if not r.unchanged)
    model = f"{added.model_name} {added.model_version}".strip() or "unknown model"
    print(f"case {added.case_id} added to {args.log}: {len(added.results)} structures, {changed} changed by the "
          f"clinician ({model}" + (f", site {args.site})" if args.site else ")"))
    return 0


def _cmd_report(args) -> int:
    from ..monitoring.report import write_report

    html_path, csv_path, data = write_report(args.log, args.out, args.csv, metric=args.metric,
                                             baseline_months=args.baseline_months, baseline_min=args.manual_minutes)
    print(f"wrote {html_path} and {csv_path}: {data.n_cases} cases from {len(args.log)} log(s)")
    return 0


def _add_contour_pair(p, kind: str) -> None:
    """``--ai`` and ``--final``: the AI's contours and the clinician's final (approved) ones."""
    p.add_argument("--ai", type=Path, required=True, help=f"the AI contours: {kind}")
    p.add_argument("--final", type=Path, required=True, help=f"the final (approved) contours: {kind}")


def add_parsers(sub) -> None:
    p = sub.add_parser("compare", help="compare AI with final contours per structure (Dice, HD95, surface Dice, APL)",
                       description="Metrics per structure of the final contours against the AI contours, in mm on "
                                   "the CT's voxels: Dice, HD95, mean surface distance, surface Dice at the "
                                   "catalogue's tolerance, added path length, volumes. Writes JSON and a CSV beside it.")
    _add_contour_pair(p, "an RTSTRUCT or a label map (catalogue numbering)")
    add_ct_options(p, required=False, ct_help="the CT the contours were drawn on (needed for RTSTRUCTs)")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write (the CSV goes beside it)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("log", help="the correction log (SQLite): add a case from files")
    log_sub = p.add_subparsers(dest="log_command", required=True, parser_class=OneLineErrors)
    p = log_sub.add_parser("add", help="add a case: AI and final RTSTRUCTs on their CT, optionally with times",
                           description="Compare the final with the AI contours and add the case to the log. The "
                                       "patient and study are stored only as HMAC-SHA256 pseudonyms made with the "
                                       "site key, a file kept outside the log (created, 0600, when missing).")
    p.add_argument("--log", type=Path, required=True, help="the log file (created when missing)")
    _add_contour_pair(p, "an RTSTRUCT")
    add_ct_options(p)
    p.add_argument("--times", type=Path, default=None, help=TIMES_HELP)
    p.add_argument("--site", default="", help="the site's name, as reported")
    p.add_argument("--site-key", type=Path, default=None,
                   help="the site key file (default: the file named by DKOAR_SITE_KEY); created when missing")
    p.add_argument("--model-name", default=None, help="default: from the AI RTSTRUCT")
    p.add_argument("--model-version", default=None, help="default: from the AI RTSTRUCT")
    p.add_argument("--model-hash", default="", help="the model bundle's sha256")
    p.add_argument("--date", default=None, help="when the correction was done (ISO 8601; default: now)")
    p.add_argument("--run", type=Path, default=None,
                   help="the AI run's run.json: its review guidance (flags, review list) goes to the log too")
    p.set_defaults(func=_cmd_log_add)

    p = sub.add_parser("report", help="the monitoring report (HTML + CSV of aggregates) from one or more logs",
                       description="A self-contained HTML page (no network needed) with time saved, per-structure "
                                   "effort and agreement, monthly control charts, and breakdowns by model and site; "
                                   "and a CSV of the aggregates (no patient data) for pooling across sites.")
    p.add_argument("--log", type=Path, action="append", required=True, help="a correction log; repeat to merge sites")
    p.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    p.add_argument("--csv", type=Path, default=None, help="the aggregates CSV (default: beside the HTML, .csv)")
    p.add_argument("--metric", default="surface_dice",
                   choices=("surface_dice", "dice", "hd95_mm", "msd_mm", "apl_mm", "active_s"),
                   help="the metric of the control charts (default surface_dice)")
    p.add_argument("--baseline-months", type=int, default=3, help="months of the baseline period (default 3)")
    p.add_argument("--manual-minutes", type=float, default=120.0,
                   help="minutes to draw the 32 structures by hand, for the time saved (default 120)")
    p.set_defaults(func=_cmd_report)
