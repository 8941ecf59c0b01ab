"""``speaker calibrate``: fit a score calibration on development trials."""
from __future__ import annotations

from ._common import JobError, open_store, say
from ._options import prob

NAME = "calibrate"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.run], help="fit a score calibration on development trials",
                       description="Fit llr = a * score + b by prior-weighted logistic regression (Brummer, BOSARIS) on "
                                   "the scores of labelled development trials, so that scores become log-likelihood "
                                   "ratios and decisions can be taken at the Bayes threshold of any prior and costs. "
                                   "Development trials must be disjoint from evaluation trials and resemble the use.")
    s.add_argument("--scores", required=True, metavar="TXT", help="development scores (speaker score)")
    s.add_argument("--trials", required=True, metavar="TRIALS", help="the development trials, with labels")
    s.add_argument("--out", metavar="JSON", help="write the calibration here")
    s.add_argument("--store", metavar="DB|URL",
                   help="keep the calibration in this store (used by verify / identify): a SQLite file or a URL")
    s.add_argument("--prior", "--p-target", dest="prior", type=prob, default=0.5, metavar="P",
                   help="training prior of the logistic regression (default 0.5)")
    s.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from .._atomic import write_text_atomic
    from ..calibration import calibration_metrics, fit_calibration
    from ..lists import read_scores, read_trials
    if not args.out and not args.store:
        raise JobError("give --out JSON and/or --store DB (where to keep the calibration)")
    _, trials = read_trials(args.trials, args.root)
    scores = read_scores(args.scores)
    pairs = [(scores[(t.model, t.test)], t.label) for t in trials
             if t.label is not None and (t.model, t.test) in scores]
    if not pairs:
        raise JobError("no labelled trial has a score")
    s, lab = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=bool)
    if lab.all() or not lab.any():
        raise JobError("calibration needs scored target and non-target trials")
    cal = fit_calibration(s, lab, prior=args.prior)
    if args.out:
        write_text_atomic(args.out, cal.to_json() + "\n")
    if args.store:
        with open_store(args) as store:
            store.calibration = cal
    m = calibration_metrics(s, lab, calibration=cal, p_target=args.prior)
    say(args, f"calibration llr = {cal.a:.6g} * score + {cal.b:.6g} at prior {cal.prior:g} from {len(s)} trials "
              f"({lab.sum()} target); Cllr {m['cllr']:.4f} bits after (minCllr {m['min_cllr']:.4f}) -> "
              + " and ".join(x for x in (args.out, args.store and f"the store {args.store}") if x))
    return 0
