"""``speaker eval``: EER and minDCF of one or several score files, optionally a DET plot."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ._common import JobError, add_overwrite, calibration, check_outputs
from ._options import prob

NAME = "eval"
PRESETS = ("vox_p01", "vox_p05", "sre08", "sre10")


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root], help="EER and minDCF of scored trials",
                       description="Match scores to labelled trials and print EER (ROC convex hull, as BOSARIS) "
                                   "and minDCF at p_target 0.01 and 0.05 and the NIST SRE08/SRE10 operating points. "
                                   "Several score files (systems) on the same trials give one table each and, "
                                   "with --det, one curve each on the same plot.")
    s.add_argument("--scores", required=True, nargs="+", metavar="TXT",
                   help="score file(s) from 'speaker score' ('model_id test score' lines)")
    s.add_argument("--trials", required=True, metavar="TRIALS", help="labelled trial list (target/nontarget or 1/0)")
    s.add_argument("--det", metavar="PNG",
                   help="also draw the DET curves (one per score file, EER in the legend below the plot) to this PNG "
                        "(needs matplotlib)")
    add_overwrite(s, "--det")
    s.add_argument("--label", action="append", metavar="NAME",
                   help="name of a system in the tables and the DET legend; repeat it once per --scores file, in the "
                        "same order (--label GMM --label PLDA); default: the score files' names")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_eval_options(s)
    s.set_defaults(func=run, quiet=False, strict=False)


def add_eval_options(p) -> None:
    g = p.add_argument_group("calibration and thresholds")
    g.add_argument("--calibration", metavar="JSON",
                   help="apply this calibration (speaker calibrate) before Cllr and the actual DCF")
    g.add_argument("--calibrated", action="store_true",
                   help="the scores are already calibrated LLRs: report the actual DCF at the Bayes threshold")
    g.add_argument("--p-target", type=prob, default=0.01, metavar="P",
                   help="operating point of the actual DCF (default 0.01, costs 1)")
    g.add_argument("--target-far", type=prob, default=0.01, metavar="F",
                   help="report the threshold whose false-accept rate is at most F (default 0.01)")


def eval_metrics(args, scores, labels) -> dict:
    """What ``speaker eval`` adds: Cllr, minCllr, actual DCF, thresholds at the EER and at --target-far."""
    from ..calibration import calibration_metrics
    cal = calibration(args)
    m = calibration_metrics(scores, labels, calibration=cal, p_target=args.p_target, target_far=args.target_far)
    if cal is None and not args.calibrated:
        m.pop("act_dcf")                              # raw scores: no Bayes threshold to speak of
    return m


def format_eval(m: dict) -> str:
    lines = [f"{'Cllr' + ('' if m['calibrated'] else ' (scores read as LLRs)'):34s} {m['cllr']:9.4f} bits",
             f"{'minCllr (PAV)':34s} {m['min_cllr']:9.4f} bits"]
    if "act_dcf" in m:
        lines.append(f"{'actual DCF p=%g (Bayes threshold)' % m['act_dcf_params']['p_target']:34s} {m['act_dcf']:9.4f}")
    lines.append(f"{'threshold at the EER':34s} {m['threshold_eer']:9.4f}  (miss {100 * m['threshold_eer_p_miss']:.2f} %, "
                 f"false accept {100 * m['threshold_eer_p_fa']:.2f} %)")
    lines.append(f"{'threshold at false accept <= %g %%' % (100 * m['target_far']):34s} {m['threshold_far']:9.4f}  "
                 f"(miss {100 * m['threshold_far_p_miss']:.2f} %, false accept {100 * m['threshold_far_p_fa']:.2f} %)")
    return "\n" + "\n".join(lines)


def metrics_table(scores, labels) -> dict:
    from ..metrics import DCF_PRESETS, evaluate
    out = {"n_trials": int(len(labels)), "n_target": int(labels.sum()),
           "n_nontarget": int((~labels).sum())}
    out.update(evaluate(scores, labels, presets=PRESETS))
    out["dcf_params"] = {k: dict(DCF_PRESETS[k]._asdict()) for k in PRESETS}
    return out


def format_table(m: dict) -> str:
    lines = [f"trials: {m['n_trials']} ({m['n_target']} target, {m['n_nontarget']} non-target)",
             f"{'EER (ROCCH)':34s} {100 * m['eer']:7.2f} %"]
    names = {"vox_p01": "minDCF p=0.01", "vox_p05": "minDCF p=0.05",
             "sre08": "minDCF SRE08 (p=0.01, Cmiss=10)", "sre10": "minDCF SRE10 (p=0.001)"}
    for k, label in names.items():
        lines.append(f"{label:34s} {m['min_dcf_' + k]:9.4f}")
    return "\n".join(lines)


def _matched(path: str, trials):
    """(scores, labels) of the labelled trials scored in ``path``; notes what is left out."""
    import numpy as np
    from ..lists import read_scores
    scores = read_scores(path)
    s, lab, missing, unlabelled = [], [], 0, 0
    for t in trials:
        if t.label is None:
            unlabelled += 1
            continue
        key = (t.model, t.test)
        if key not in scores:
            missing += 1
            continue
        s.append(scores[key])
        lab.append(t.label)
    if unlabelled:
        print(f"{unlabelled} trial(s) without a target/nontarget label ignored", file=sys.stderr)
    if missing:
        print(f"{path}: {missing} labelled trial(s) have no score (skipped when scoring?) and are left out",
              file=sys.stderr)
    s, lab = np.asarray(s, dtype=np.float64), np.asarray(lab, dtype=bool)
    if lab.size == 0 or lab.all() or not lab.any():
        raise JobError(f"{path}: evaluation needs scored target and non-target trials")
    return s, lab


def _systems(args) -> list[tuple[str, str]]:
    """(name, score file) of each system: the --label names, else the file names (or the paths as given
    where file names repeat)."""
    if args.label is None:
        paths = list(dict.fromkeys(args.scores))
        names = [Path(p).name for p in paths]
        return list(zip(names if len(set(names)) == len(names) else paths, paths))
    if len(args.label) != len(args.scores):
        raise JobError(f"{len(args.label)} --label for {len(args.scores)} --scores file(s): give one --label per "
                       "score file, in the same order")
    if len(set(args.label)) != len(args.label):
        raise JobError("two systems have the same --label: give each its own name")
    return list(zip(args.label, args.scores))


def run(args) -> int:
    from ..lists import read_trials
    check_outputs(args, {"--det": args.det}, [("score file", p) for p in args.scores] + [("trial list", args.trials)])
    _, trials = read_trials(args.trials, args.root)
    systems = {name: _matched(p, trials) for name, p in _systems(args)}
    tables = {name: {**metrics_table(s, lab), **eval_metrics(args, s, lab)}
              for name, (s, lab) in systems.items()}
    if args.json:
        print(json.dumps(next(iter(tables.values())) if len(tables) == 1 else tables, indent=2))
    else:
        text = {name: format_table(m) + format_eval(m) for name, m in tables.items()}
        print("\n\n".join(t if len(text) == 1 else f"== {name}\n{t}" for name, t in text.items()))
    if args.det:
        from ..det import save_det_plots
        save_det_plots(args.det, systems, overwrite=args.overwrite)
        print(f"DET plot of {len(systems)} system(s) written to {args.det}", file=sys.stderr)
    return 0
