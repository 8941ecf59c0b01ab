"""``speaker score``: log-likelihood-ratio scores of verification trials."""
from __future__ import annotations

import sys

from .. import _guards
from .store_commands import add_score_options, score_ubm, store_models, normalise_scores
from ._common import JobError, check_strict, load_ubm, progress, report_skipped, say, store
from ._ivec import add_backend_options
from .enroll import adapt_all

NAME = "score"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.adapt, parents.run], help="score verification trials",
                       description="Score trials; writes 'model_id test_path score' lines in trial order "
                                   "(score: average log-likelihood ratio per frame, nats). TRIALS is Kaldi style "
                                   "'model_id test_path [target|nontarget]' (needs --models) or VoxCeleb style "
                                   "'1|0 enrol_path test_path' (each enrolment file is enrolled on the fly).")
    s.add_argument("--ubm", metavar="NPZ", help="UBM file from 'speaker train-ubm' (not needed with --store)")
    s.add_argument("--models", metavar="NPZ", help="speaker models from 'speaker enroll' (Kaldi-style trials)")
    s.add_argument("--trials", required=True, metavar="TRIALS",
                   help="trial list, Kaldi style (model_id test_path [label]) or VoxCeleb style (label enrol test)")
    s.add_argument("--out", required=True, metavar="TXT", help="score file to write")
    s.add_argument("--top-c", type=_guards.int_option(1, 4096), metavar="C", help="fast scoring with the UBM's C best components per frame (Reynolds: 5); default all")
    s.add_argument("--scp", metavar="SCP", help="Kaldi wav.scp mapping utterance ids used in TRIALS to paths")
    add_score_options(s)
    add_backend_options(s)
    s.set_defaults(func=run)


def run(args) -> int:
    if args.backend != "gmm":
        from ._ivec import score_ivectors
        return score_ivectors(args)
    from .._atomic import write_text_atomic
    import numpy as np
    from ..lists import format_line, read_scp, read_trials
    from ..model_io import load_speakers
    from ..scoring import score_trials
    if not args.ubm and not args.store:
        raise JobError("give --ubm NPZ (or --store DB, which holds its UBM)")
    ubm, config = score_ubm(args) if args.store else load_ubm(args.ubm)
    scp = read_scp(args.scp) if args.scp else None
    fmt, trials = read_trials(args.trials, args.root, scp)
    _guards.refuse_inputs_as_outputs({"--out": args.out}, [("UBM", args.ubm), ("models file", args.models),
                                     ("trial list", args.trials), ("scp", args.scp),
                                     ("speaker store", args.store), ("cohort list", args.cohort)]
                                     + [("listed file", p) for t in trials for p in (t.test_path, t.enrol_path)])
    skipped: dict[str, str] = {}
    with store(args, config, dim=ubm.means_.shape[1]) as st:
        if fmt == "voxceleb":
            enrol = {t.model: t.enrol_path for t in trials}
            st.load(list(enrol.values()) + [t.test_path for t in trials], desc="features")
            models = adapt_all(args, ubm, {name: [st.features[path]] for name, path in enrol.items()
                                           if path in st.features})
        else:
            if not args.models and not args.store:
                raise JobError("Kaldi-style trials need --models (the output of 'speaker enroll') or --store")
            models = (store_models(args, ubm, {t.model for t in trials}) if args.store
                      else load_speakers(args.models, ubm))
            st.load([t.test_path for t in trials], desc="features")
    report_skipped(args, st.errors)
    usable, rows = [], []
    for i, t in enumerate(trials):
        if t.model not in models:
            why = (st.errors.get(t.enrol_path, "enrolment failed") if fmt == "voxceleb"
                   else "unknown model id")
            skipped[f"{t.model} {t.test}"] = f"model: {why}"
        elif t.test_path in st.errors:
            skipped[f"{t.model} {t.test}"] = f"test file: {st.errors[t.test_path]}"
        else:
            usable.append(i)
    if usable:
        scores = score_trials([(trials[i].model, trials[i].test_path) for i in usable], models, ubm,
                              st.get, top_c=args.top_c, progress=progress(args))
        if args.norm:
            scores = normalise_scores(args, [(trials[i].model, trials[i].test_path) for i in usable],
                                      scores, models, ubm, st)
        for i, sc in zip(usable, scores):
            if np.isfinite(sc):
                rows.append(format_line(trials[i].model, trials[i].test, f"{sc:.6f}"))
            else:
                skipped[f"{trials[i].model} {trials[i].test}"] = f"score is {sc} (the model or the features give " \
                                                                  "non-finite log-likelihoods)"
    if skipped:
        print(f"skipped {len(skipped)} trial(s) (not scored, not in {args.out}):", file=sys.stderr)
        for k, why in list(skipped.items())[:50]:
            print(f"  {k}: {why}", file=sys.stderr)
        if len(skipped) > 50:
            print(f"  ... and {len(skipped) - 50} more", file=sys.stderr)
    check_strict(args, {**st.errors, **skipped})
    if not rows:
        raise JobError("no trial could be scored")
    write_text_atomic(args.out, "\n".join(rows) + "\n")
    say(args, f"scored {len(rows)} of {len(trials)} trials ({fmt} format"
              f"{', top-C ' + str(args.top_c) if args.top_c else ''}) -> {args.out}")
    return 0
