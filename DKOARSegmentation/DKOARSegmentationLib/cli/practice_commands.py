"""``dkoar practice``: trainee mode from the command line: score an attempt against a reference,
read a structure's guideline card, and the report of the practice history."""

from __future__ import annotations

from pathlib import Path

from ..errors import DKOARError
from .options import OneLineErrors, add_ct_options, site_key_for


def _cmd_score(args) -> int:
    from ..input.ct_loader import load_ct
    from ..practice.scoring import score_files, write_feedback
    from ..structures.catalogue import default_catalogue

    catalogue = default_catalogue()
    catalogue.by_name(args.structure)  # an unknown structure is refused before the CT is read
    if args.log is not None and not (args.trainee or "").strip():
        raise DKOARError("--log needs --trainee: the trainee's name or login (stored as a keyed pseudonym only)")
    ct = load_ct(args.ct, args.series)
    score = score_files(args.reference, args.attempt, ct, args.structure, catalogue)
    lines = score.summary_lines()
    if args.out is not None:
        lines.append(f"wrote {write_feedback(score, args.out)}")
    if args.log is not None:
        lines.append(_log_attempt(args, ct, score))
    print("\n".join(lines))
    return 0


def _log_attempt(args, ct, score) -> str:
    from ..practice.history import PracticeCase, open_history, trainee_key

    key = site_key_for(args.site_key, args.log)
    kind = "rtstruct" if not Path(args.reference).name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")) \
        else "labelmap"
    if ct.dicom is not None:
        case = PracticeCase.of_study(key, ct.dicom.study_instance_uid, kind)
    else:  # a CT file without DICOM identity: keyed by its file name (which may carry identifiers)
        case = PracticeCase(key.pseudonym("case", Path(args.ct).name), "", kind)
    with open_history(args.log) as history:
        history.check_site_key(key.fingerprint)
        attempt_id = history.add_attempt(trainee_key=trainee_key(key, args.trainee), case=case, score=score,
                                         site=args.site, wall_s=args.seconds)
    return f"attempt {attempt_id} stored in {args.log}"


def _cmd_report(args) -> int:
    from ..practice.history import trainee_key
    from ..practice.report import write_practice_report

    you = None
    if args.trainee:
        from ..monitoring.pseudonym import key_path_from, load_site_key

        you = trainee_key(load_site_key(key_path_from(args.site_key), create=False), args.trainee)
    out, rows = write_practice_report(args.log, args.out, you)
    trainees = len({r["trainee_key"] for r in rows})
    mine = sum(1 for r in rows if r["trainee_key"] == you)
    print(f"wrote {out}: {len(rows)} attempts by {trainees} trainee(s) from {len(args.log)} history file(s)"
          + (f", {mine} of them yours" if you else ""))
    return 0


def _cmd_card(args) -> int:
    import json

    from ..practice.cards import guideline_card

    card = guideline_card(args.structure, args.guidelines)
    print(json.dumps(card.as_dict(), indent=2, ensure_ascii=False) if args.json else card.text())
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("practice", help="trainee mode: score an attempt against a reference, guideline cards, report")
    practice = p.add_subparsers(dest="practice_command", required=True, parser_class=OneLineErrors)

    p = practice.add_parser(
        "score", help="score a trainee's attempt at one structure against a reference",
        description="Scores as dkoar compare (the attempt as --ai, the reference as --final): Dice, surface Dice "
                    "at the structure's tolerance, HD95, added path length, volumes; and how far each border lies beyond (+) "
                    "or short of (-) the reference's in patient directions, with the feedback in words. With --log "
                    "the attempt is stored in the practice history (trainee and case as keyed pseudonyms).")
    p.add_argument("--reference", type=Path, required=True,
                   help="the reference: an RTSTRUCT on the CT or a label map (catalogue numbering) on its grid")
    p.add_argument("--attempt", type=Path, required=True, help="the trainee's attempt: an RTSTRUCT or a label map")
    add_ct_options(p, ct_help="the CT both were drawn on (a DICOM folder, or a NIfTI/NRRD file for label maps)")
    p.add_argument("--structure", required=True, help="the structure to score (catalogue name or alias)")
    p.add_argument("--out", type=Path, default=None, help="write the feedback JSON here")
    p.add_argument("--log", type=Path, default=None, help="store the attempt in this practice history (SQLite)")
    p.add_argument("--trainee", default=None, help="with --log: the trainee's name or login (stored keyed only)")
    p.add_argument("--site-key", type=Path, default=None,
                   help="with --log: the site key file (default: DKOAR_SITE_KEY); created when missing")
    p.add_argument("--site", default="", help="with --log: the site's name")
    p.add_argument("--seconds", type=float, default=None, help="with --log: the time spent on the attempt")
    p.set_defaults(func=_cmd_score)

    p = practice.add_parser(
        "report", help="the practice report (HTML): learning curves, the cohort's hardest structures and borders",
        description="A self-contained HTML page (no network needed) from one or more practice histories. With "
                    "--trainee and the site key, that trainee's own curves are marked 'you'.")
    p.add_argument("--log", type=Path, action="append", required=True, help="a practice history; repeat to merge")
    p.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    p.add_argument("--trainee", default=None, help="mark this trainee's attempts as 'you' (needs the site key)")
    p.add_argument("--site-key", type=Path, default=None, help="the site key file (default: DKOAR_SITE_KEY)")
    p.set_defaults(func=_cmd_report)

    p = practice.add_parser("card", help="a structure's guideline card: borders, anatomy, pitfalls, volume, tolerance")
    p.add_argument("structure", help="catalogue name or alias")
    p.add_argument("--guidelines", type=Path, default=None,
                   help="the site's guidelines folder (default: DKOAR_SITE_GUIDELINES), over the project's cards")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=_cmd_card)
