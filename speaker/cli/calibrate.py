"""``speaker calibrate``: fit a score calibration (on development trials, or on a store's own
enrolments), show the calibrations a store keeps, go back to an earlier one."""
from __future__ import annotations

import json
import sys

from ._common import JobError, add_overwrite, check_outputs, open_store, say, utc
from ._options import int_option, prob

NAME = "calibrate"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.run], help="fit, show or choose a score calibration",
                       description="Fit llr = a * score + b by prior-weighted logistic regression (Brummer, BOSARIS) so "
                                   "that scores become log-likelihood ratios and decisions can be taken at the Bayes "
                                   "threshold of any prior and costs, or at a target false-accept rate. Either on the "
                                   "scores of labelled development trials (--scores, --trials: disjoint from evaluation "
                                   "trials, resembling the use), or on a store's own enrolments (--store DB "
                                   "--from-enrollments: each recording against its speaker's model re-adapted without "
                                   "it, and against the other speakers' models). A store keeps every calibration it is "
                                   "given: --show lists them, --use ID makes an earlier one current again.")
    g = s.add_argument_group("what to do (one of)")
    g.add_argument("--scores", metavar="TXT", help="development scores (speaker score), with --trials")
    g.add_argument("--from-enrollments", action="store_true",
                   help=f"with --store: calibrate the store on its own enrolments (at least {MIN_SPEAKERS_TEXT})")
    g.add_argument("--show", action="store_true", help="with --store: print the current calibration and the earlier ones")
    g.add_argument("--use", type=int_option(1), metavar="ID", help="with --store: make calibration ID (see --show) current")
    s.add_argument("--trials", metavar="TRIALS", help="the development trials, with labels (with --scores)")
    s.add_argument("--out", metavar="JSON", help="write the calibration here")
    add_overwrite(s)
    s.add_argument("--store", metavar="DB|URL",
                   help="the speaker store: keeps the calibration (used by verify / identify / serve); a SQLite file "
                        "or a URL")
    s.add_argument("--prior", "--p-target", dest="prior", type=prob, default=0.5, metavar="P",
                   help="training prior of the logistic regression, and the p_target of the reported operating point "
                        "and of later decisions unless they give their own (default 0.5; a voice login: 0.01)")
    s.add_argument("--target-far", type=prob, default=0.01, metavar="F",
                   help="also report the operating point at this false-accept rate (default 0.01)")
    s.add_argument("--max-nontarget", type=int_option(100, 1 << 22), default=50_000, metavar="N",
                   help="--from-enrollments: at most about N non-target trials (each recording against a random sample "
                        "of the other speakers when there would be more; default 50000)")
    s.add_argument("--duration-aware", action="store_true",
                   help="--from-enrollments: a calibration that also reads the net speech of the enrolment and of the "
                        "test, so that short tests get less confident LLRs (docs/calibration.md); it learns only the "
                        "range of durations the enrolled recordings span")
    s.add_argument("--json", action="store_true", help="print the report (or --show's list) as JSON")
    s.set_defaults(func=run)


#: What --from-enrollments needs, for --help (speaker.selfcal.MIN_SPEAKERS / MIN_RECORDINGS; a test checks).
MIN_SPEAKERS_TEXT = "15 speakers with 3 recordings each"


def run(args) -> int:
    modes = [m for m, on in (("--scores", args.scores), ("--from-enrollments", args.from_enrollments),
                             ("--show", args.show), ("--use", args.use is not None)) if on]
    if len(modes) != 1:
        raise JobError("give one of --scores (with --trials), --from-enrollments, --show, --use ID"
                       + (f" (not {' and '.join(modes)})" if modes else ""))
    if modes[0] != "--scores" and not args.store:
        raise JobError(f"{modes[0]} needs --store DB")
    if args.show:
        return show(args)
    if args.use is not None:
        with open_store(args) as store:
            try:
                row = store.use_calibration(args.use)
            except KeyError:
                raise JobError(f"{args.store}: no calibration {args.use} (see --show)") from None
        say(args, f"{args.store}: calibration {row.id} (made {utc(row.created_at)}, fitted on {row.fitted_on}) is "
                  "current again")
        return 0
    if args.from_enrollments:
        return from_enrollments(args)
    return from_trials(args)


def from_trials(args) -> int:
    import numpy as np
    from .._atomic import write_text_atomic
    from ..lists import read_scores, read_trials
    from ..selfcal import fit_and_report
    if not args.trials:
        raise JobError("--scores needs --trials (the development trials, with labels)")
    if not args.out and not args.store:
        raise JobError("give --out JSON and/or --store DB (where to keep the calibration)")
    check_outputs(args, {"--out": args.out}, [("score file", args.scores), ("trial list", args.trials)])
    _, trials = read_trials(args.trials, args.root)
    scores = read_scores(args.scores)
    pairs = [(scores[(t.model, t.test)], t.label) for t in trials
             if t.label is not None and (t.model, t.test) in scores]
    if not pairs:
        raise JobError("no labelled trial has a score")
    s, lab = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=bool)
    if lab.all() or not lab.any():
        raise JobError("calibration needs scored target and non-target trials")
    try:
        cal, tar, non, report = fit_and_report(s[lab], s[~lab], prior=args.prior, target_far=args.target_far)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    if args.out:
        write_text_atomic(args.out, cal.to_json() + "\n", overwrite=args.overwrite)
    kept = None
    if args.store:
        with open_store(args) as store:
            kept = store.keep_calibration(cal, fitted_on=f"development trials {args.trials} with scores {args.scores}",
                                          report=report, target_llrs=tar, nontarget_llrs=non)
    print_report(args, cal, report, kept)
    say(args, f"calibration from {len(s)} trials ({int(lab.sum())} target) -> "
              + " and ".join(x for x in (args.out, args.store and f"the store {args.store} (calibration {kept}, current)")
                             if x))
    return 0


def from_enrollments(args) -> int:
    from ..selfcal import NotEnoughEnrolments, calibrate_from_enrollments
    with open_store(args) as store:
        try:
            res = calibrate_from_enrollments(store, prior=args.prior, target_far=args.target_far,
                                             max_nontarget=args.max_nontarget, duration_aware=args.duration_aware)
        except NotEnoughEnrolments as exc:
            raise JobError(f"{args.store}: {exc}") from None
        except ValueError as exc:
            raise JobError(f"{args.store}: cannot calibrate: {exc}") from None
    print_report(args, res.calibration, res.report, res.id, res.fitted_on)
    return 0


def print_report(args, cal, report: dict, kept: int | None, fitted_on: str | None = None) -> None:
    """The calibration and what it promises: stdout (JSON with --json); warnings on stderr."""
    if args.json:
        print(json.dumps({"id": kept, "calibration": json.loads(cal.to_json()), "fitted_on": fitted_on,
                          "report": report}, indent=2))
    else:
        print(f"calibration{f' {kept} (current)' if kept is not None else ''}: {formula(cal)}, fitted at prior "
              f"{cal.prior:g}")
        if fitted_on:
            print(f"fitted on {fitted_on}")
        _print_metrics(report)
    for w in report.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


def formula(cal) -> str:
    """``llr = a * score + b [+ w * term ...]`` of a calibration, one line."""
    terms = "".join(f" {'-' if t.weight < 0 else '+'} {abs(t.weight):.4g} * {t.name}" for t in cal.terms)
    return f"llr = {cal.a:.6g} * {cal.systems[0]} {'-' if cal.b < 0 else '+'} {abs(cal.b):.6g}{terms}"


def _print_metrics(report: dict, indent: str = "") -> None:
    from ..selfcal import describe_point
    if "cllr" in report:
        p = report["act_dcf_params"]
        print(f"{indent}Cllr {report['cllr']:.4f} bits (minCllr {report['min_cllr']:.4f}), actual DCF "
              f"{report['act_dcf']:.4f} at p_target {p['p_target']:g} on {report['n_target']} target and "
              f"{report['n_nontarget']} non-target trials")
    for pt in report.get("operating_points", []):
        print(f"{indent}{describe_point(pt)}")


def show(args) -> int:
    with open_store(args) as store:
        rows = store.calibrations()
    if args.json:
        print(json.dumps([{"id": r.id, "current": r.current, "created_at": utc(r.created_at), "fitted_on": r.fitted_on,
                           "calibration": json.loads(r.calibration.to_json()), "report": r.report,
                           "n_target": r.n_target, "n_nontarget": r.n_nontarget, "trials_kept": r.has_trials}
                          for r in rows], indent=2))
        return 0
    if not rows:
        print(f"{args.store}: no calibration (decisions are 'undecided' without --threshold): run 'speaker calibrate "
              f"--store {args.store} --from-enrollments' or calibrate on development trials")
        return 0
    if not any(r.current for r in rows):
        print("no current calibration (decisions are 'undecided' without --threshold); earlier ones:")
    for r in rows:
        cal = r.calibration
        print(f"calibration {r.id}{' (current)' if r.current else ''}: made {utc(r.created_at)}; "
              f"{formula(cal)}, fitted at prior {cal.prior:g}")
        print(f"  fitted on {r.fitted_on}")
        _print_metrics(r.report, "  ")
        if not r.has_trials:
            print("  its trials are not kept: --target-far cannot use it")
    print(f"go back to an earlier one: speaker calibrate --store {args.store} --use ID")
    return 0
