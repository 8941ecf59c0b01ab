"""``speaker fuse``: the linear fusion of several systems' score files, fitted on development
trials, and applied to new score files."""
from __future__ import annotations

from .._reasons import report_skipped
from ._common import JobError, say
from ._options import prob

NAME = "fuse"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(
        NAME, parents=[parents.root], help="fuse several systems' scores (fit on development trials, or apply)",
        description="Fit: llr = w1 * s1 + w2 * s2 + ... + b by prior-weighted logistic regression (BOSARIS's linear "
                    "fusion; with one score file, a calibration) on the labelled trials of --trials, and write it to "
                    "--out as JSON. Apply (--apply JSON): write 'model_id test fused_llr' lines for the trials every "
                    "score file has. Score files are 'model_id test score' lines (speaker score's output); trials "
                    "are matched by (model_id, test) as written. A trial missing from one of the files is reported "
                    "and skipped.")
    s.add_argument("--scores", nargs="+", required=True, metavar="TXT",
                   help="one score file per system, in the same order when fitting and when applying")
    s.add_argument("--trials", metavar="TRIALS",
                   help="labelled development trials (Kaldi or VoxCeleb style) to fit the fusion on")
    s.add_argument("--apply", metavar="JSON", help="apply this fusion (written by 'speaker fuse --out') instead of fitting")
    s.add_argument("--out", required=True, metavar="JSON|TXT",
                   help="where to write the fusion (fit) or the fused scores (--apply)")
    s.add_argument("--names", nargs="+", metavar="NAME",
                   help="names of the systems in --scores order, kept in the fusion (default s1 s2 ...)")
    s.add_argument("--prior", "--p-target", dest="prior", type=prob, default=0.5, metavar="P",
                   help="training prior of the logistic regression, in (0, 1) (default 0.5)")
    s.add_argument("--overwrite", action="store_true", help="let --out replace an existing file")
    s.add_argument("--quiet", action="store_true", help="no summaries")
    s.add_argument("--strict", action="store_true", help="fail (exit 1) if any trial had to be skipped")
    s.set_defaults(func=run)


def _join(files: list[str], keys=None):
    """Scores of every key that all files have, as rows (file order), and the keys skipped with
    the files they are missing from.  ``keys``: the keys wanted (default: every key of any file)."""
    from ..lists import read_scores
    tables = [read_scores(f) for f in files]
    wanted = list(keys) if keys is not None else list(dict.fromkeys(k for tab in tables for k in tab))
    rows, kept, missing = [], [], {}
    for k in wanted:
        absent = [f for f, tab in zip(files, tables) if k not in tab]
        if absent:
            missing[k] = absent
        else:
            kept.append(k)
            rows.append([tab[k] for tab in tables])
    return kept, rows, missing


def _report(args, missing: dict) -> None:
    report_skipped({f"{m} {t}": f"not in {', '.join(files)}" for (m, t), files in missing.items()}, "trial")
    if missing and args.strict:
        raise JobError(f"--strict: {len(missing)} trial(s) could not be used")


def run(args) -> int:
    from .. import _guards
    _guards.refuse_inputs_as_outputs({"--out": args.out}, [("score file", f) for f in args.scores]
                                     + [("trial list", args.trials), ("fusion", args.apply)])
    _guards.refuse_existing_outputs({"--out": args.out}, args.overwrite)
    if args.names is not None and len(args.names) != len(args.scores):
        raise JobError(f"{len(args.names)} --names for {len(args.scores)} score files")
    if (args.apply is None) == (args.trials is None):
        raise JobError("give --trials DEV (fit a fusion) or --apply FUSION.json (apply one), not both")
    return apply(args) if args.apply else fit(args)


def fit(args) -> int:
    import numpy as np
    from .._atomic import write_text_atomic
    from ..calibration import cllr, fit_calibration, min_cllr
    from ..lists import read_trials
    _, trials = read_trials(args.trials, args.root)
    label = {(t.model, t.test): t.label for t in trials if t.label is not None}
    if not label:
        raise JobError(f"{args.trials}: no trial has a label (target/nontarget, or 1/0)")
    keys, rows, missing = _join(args.scores, label)
    _report(args, missing)
    if not rows:
        raise JobError("no labelled trial is in every score file")
    S, lab = np.array(rows), np.array([label[k] for k in keys], dtype=bool)
    X = S[:, 0] if S.shape[1] == 1 else S                      # one system: a calibration
    if lab.all() or not lab.any():
        raise JobError("fusion needs scored target and non-target trials")
    try:
        cal = fit_calibration(X, lab, prior=args.prior, systems=args.names)
    except ValueError as exc:
        raise JobError(f"cannot fit the fusion: {exc}") from None
    llr = cal.llr(X)
    weights = " + ".join(f"{w:.6g} * {n}" for w, n in zip([cal.a] + [t.weight for t in cal.terms], cal.systems))
    summary = (f"fusion llr = {weights} + {cal.b:.6g} at prior {cal.prior:g} from {len(keys)} trials "
               f"({int(lab.sum())} target); Cllr {cllr(llr, lab):.4f} bits (minCllr {min_cllr(llr, lab):.4f}; "
               "each system alone: minCllr " + ", ".join(f"{min_cllr(S[:, j], lab):.4f}" for j in range(S.shape[1]))
               + f") -> {args.out}")
    # the output last: a Ctrl-C while the summary is computed must not come after it was replaced
    write_text_atomic(args.out, cal.to_json() + "\n")
    say(args, summary)
    return 0


def apply(args) -> int:
    import numpy as np
    from .._atomic import write_text_atomic
    from .._guards import read_small_text
    from ..calibration import Calibration
    from ..lists import format_line
    try:
        cal = Calibration.from_json(read_small_text(args.apply, 1 << 16))
    except (OSError, ValueError) as exc:
        raise JobError(f"{args.apply}: not a fusion: {exc}") from None
    if cal.inputs:
        raise JobError(f"{args.apply} needs quality inputs {list(cal.inputs)}: score files cannot give them")
    if len(cal.systems) != len(args.scores):
        raise JobError(f"{args.apply} fuses {len(cal.systems)} systems ({', '.join(cal.systems)}), "
                       f"got {len(args.scores)} score files")
    if args.names is not None and tuple(args.names) != cal.systems:
        raise JobError(f"--names {' '.join(args.names)} differ from the fusion's systems {' '.join(cal.systems)}")
    keys, rows, missing = _join(args.scores)
    _report(args, missing)
    if not rows:
        raise JobError("no trial is in every score file")
    S = np.array(rows)
    llr = cal.llr(S if S.shape[1] > 1 else S[:, 0])
    write_text_atomic(args.out, "".join(format_line(m, t, f"{v:.6f}") + "\n" for (m, t), v in zip(keys, llr)))
    say(args, f"fused {len(keys)} trial(s) of {len(cal.systems)} systems -> {args.out}")
    return 0
