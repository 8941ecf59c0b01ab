"""``speaker score``: log-likelihood-ratio scores of verification trials."""
from __future__ import annotations

import sys

from ._common import (STORE_HELP, JobError, add_overwrite, add_top_c, as_norm_size, check_outputs, check_strict,
                      feature_cache, load_ubm, open_store, progress, report_skipped, say, store_file)
from ._ivec import add_backend_options
from .enroll import adapt_all
from ._options import int_option

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
    add_overwrite(s)
    add_top_c(s)
    s.add_argument("--scp", metavar="SCP", help="Kaldi wav.scp mapping utterance ids used in TRIALS to paths")
    add_score_options(s)
    add_backend_options(s)
    s.set_defaults(func=run)


def add_score_options(p) -> None:
    g = p.add_argument_group("speaker store and score normalisation (docs/store.md)")
    g.add_argument("--store", metavar="DB|URL",
                   help="score the store's speakers (Kaldi-style trials; --ubm not needed); " + STORE_HELP)
    g.add_argument("--norm", choices=["z", "t", "zt", "s", "as"],
                   help="normalise scores with a cohort: z (enrolment side), t (test side), zt, s (symmetric, "
                        "mean of z and t) or as (adaptive s-norm with the --cohort-size closest cohort scores)")
    g.add_argument("--cohort", metavar="LIST",
                   help="cohort recordings (audio list; speakers not in the trials, e.g. a held-back part of the UBM "
                        "list): each is enrolled as a cohort model (T side) and used as an impostor test (Z side); "
                        "default with --store: the cohort kept in the store ('speaker cohort --store DB --add LIST')")
    g.add_argument("--cohort-size", type=int_option(2), metavar="N",
                   help="as-norm: use each side's N highest cohort scores, N >= 2 (default 200, or the cohort's size "
                        "if smaller; with N at least the cohort's size as-norm is s-norm)")


def score_store(args):
    """The open store of ``speaker score --store`` (checked against --ubm when given)."""
    from ..model_io import load_model
    ubm = None
    if args.ubm:
        mf = load_model(args.ubm)
        if mf.kind != "ubm":
            raise JobError(f"{args.ubm}: holds speaker models, not a UBM")
        ubm = mf.ubm
    return open_store(args, ubm)


def store_models(db, model_ids) -> dict:
    """The models of the store's speakers named in the trials (unknown ids are left out)."""
    with db.snapshot():
        return {i: db.model(i) for i in sorted(model_ids) if i in db}


def normalise_scores(args, pairs: list, scores, models: dict, ubm, features, db=None):
    """``speaker score --norm``: the scores of (model_id, test_path) ``pairs`` normalised with the cohort.

    ``features`` is the command's FeatureCache (the cohort's features are extracted once there);
    ``db`` the open store of ``--store`` (its cohort is the default).
    """
    from ..cohort import Cohort, normalise
    from ..lists import read_audio_list
    from ..score_norm import MIN_COHORT

    def top_n(n_cohort: int) -> int | None:
        return as_norm_size(args, n_cohort) if args.norm == "as" else None
    if not args.cohort:
        cohort = db.cohort(top_c=args.top_c) if db is not None else None
        if cohort is None or len(cohort) < MIN_COHORT:
            raise JobError("--norm needs --cohort LIST" + (
                "" if not args.store else f", or a cohort of at least {MIN_COHORT} recordings kept in {args.store} (it has "
                f"{len(cohort) if cohort is not None else 0}; 'speaker cohort --store {args.store} --add LIST')"))
        out = normalise(args.norm, pairs, scores, models, features.get, cohort, top_n=top_n(len(cohort)))
        say(args, f"{args.norm}-norm with the {len(cohort)} cohort recordings kept in {args.store}")
        return out
    entries = read_audio_list(args.cohort, args.root)
    features.load([p for _, p in entries], desc="cohort")
    usable = [(k, p) for k, p in entries if p in features.features]
    if len(usable) < MIN_COHORT:
        raise JobError(f"{args.cohort}: only {len(usable)} usable cohort recordings (need at least {MIN_COHORT})")
    cohort = Cohort.from_features(ubm, [k for k, _ in usable], [features.features[p] for _, p in usable],
                                  relevance_factor=args.relevance_factor, adapt=args.adapt, top_c=args.top_c)
    out = normalise(args.norm, pairs, scores, models, features.get, cohort, top_n=top_n(len(cohort)))
    say(args, f"{args.norm}-norm with {len(cohort)} cohort recordings from {args.cohort}")
    return out


def run(args) -> int:
    if args.store and args.backend != "gmm":
        db = score_store(args)
        try:
            return _score_store_backend(args, db)
        finally:
            db.close()
    if args.backend == "fusion":
        raise JobError("--backend fusion scores a store's speakers (give --store); to fuse score files, see "
                       "'speaker fuse'")
    if args.backend != "gmm":
        if args.top_c is not None:
            raise JobError(f"--top-c applies to GMM-UBM scoring; --backend {args.backend} scores i-vectors "
                           "(their statistics use every component)")
        from ._ivec import score_ivectors
        return score_ivectors(args)
    if not args.ubm and not args.store:
        raise JobError("give --ubm NPZ (or --store DB, which holds its UBM)")
    db = score_store(args) if args.store else None      # opened once, closed at the end
    try:
        return _score(args, db)
    finally:
        if db is not None:
            db.close()


def _score_store_backend(args, db) -> int:
    """``speaker score --store DB --backend plda|cosine|fusion``: Kaldi-style trials against the
    store's speakers through its one scoring path (the store's bound i-vector back-end), each
    test file's features read once and scored against the speakers it is tried on."""
    from .._atomic import write_text_atomic
    from ..lists import format_line, read_scp, read_trials
    if args.norm:
        raise JobError(f"--norm with --store applies to --backend gmm (for {args.backend}, normalise batch scores: "
                       "'speaker score --ubm ... --ivector ... --plda ... --norm')")
    if args.models or args.ivector or args.plda:
        raise JobError("with --store the speakers, the extractor and the back-end are the store's "
                       "(no --models / --ivector / --plda; bind them with 'speaker backend')")
    scp = read_scp(args.scp) if args.scp else None
    fmt, trials = read_trials(args.trials, args.root, scp)
    if fmt != "kaldi":
        raise JobError("with --store, trials are Kaldi style ('model_id test_path [label]')")
    check_outputs(args, {"--out": args.out}, [("trial list", args.trials), ("scp", args.scp),
                  ("speaker store", store_file(args.store))] + [("listed file", t.test_path) for t in trials])
    with db.snapshot():
        known = {t.model for t in trials if t.model in db}
    by_test: dict = {}
    for t in trials:
        if t.model in known:
            by_test.setdefault(t.test_path, set()).add(t.model)
    skipped = {f"{t.model} {t.test}": "model: unknown model id" for t in trials if t.model not in known}
    scores: dict = {}
    with feature_cache(args, db.config, dim=db.D) as fc:
        fc.load(list(by_test), desc="features")
        for path, models in by_test.items():
            if path in fc.errors:
                continue
            try:
                ids, sc = db.scores_all(fc.get(path), sorted(models), backend=args.backend)
            except KeyError as exc:                   # removed meanwhile
                fc.errors[path] = f"speaker {exc.args[0]!r} is no longer in the store"
                continue
            scores.update({(i, path): float(v) for i, v in zip(ids, sc)})
    report_skipped(args, fc.errors)
    rows = []
    for t in trials:
        if t.model in known and (t.model, t.test_path) in scores:
            rows.append(format_line(t.model, t.test, f"{scores[(t.model, t.test_path)]:.6f}"))
        elif t.model in known:
            skipped[f"{t.model} {t.test}"] = f"test file: {fc.errors.get(t.test_path, 'unusable')}"
    report_skipped(args, skipped, what="trial")
    check_strict(args, fc.errors, skipped)
    if not rows:
        raise JobError("no trial could be scored")
    write_text_atomic(args.out, "\n".join(rows) + "\n", overwrite=args.overwrite)
    say(args, f"scored {len(rows)} of {len(trials)} trials ({args.backend} back-end of {args.store}) -> {args.out}")
    return 0


def _score(args, db) -> int:
    """``speaker score --backend gmm`` with the open store ``db`` (or None: --ubm and --models)."""
    import numpy as np
    from .._atomic import write_text_atomic
    from ..lists import format_line, read_scp, read_trials
    from ..model_io import load_speakers
    from ..scoring import score_trials
    ubm, config = (db.ubm, db.config) if db is not None else load_ubm(args.ubm)
    scp = read_scp(args.scp) if args.scp else None
    fmt, trials = read_trials(args.trials, args.root, scp)
    check_outputs(args, {"--out": args.out}, [("UBM", args.ubm), ("models file", args.models),
                  ("trial list", args.trials), ("scp", args.scp),
                  ("speaker store", store_file(args.store) if args.store else None), ("cohort list", args.cohort)]
                  + [("listed file", p) for t in trials for p in (t.test_path, t.enrol_path)])
    skipped: dict[str, str] = {}
    with feature_cache(args, config, dim=ubm.means_.shape[1]) as fc:
        if fmt == "voxceleb":
            enrol = {t.model: t.enrol_path for t in trials}
            fc.load(list(enrol.values()) + [t.test_path for t in trials], desc="features")
            models = adapt_all(args, ubm, {name: [fc.features[path]] for name, path in enrol.items()
                                           if path in fc.features})
        else:
            if not args.models and not args.store:
                raise JobError("Kaldi-style trials need --models (the output of 'speaker enroll') or --store")
            if db is not None:
                models = store_models(db, {t.model for t in trials})
            else:                               # only the trials' models are built (SpeakerModels)
                every = load_speakers(args.models, ubm)
                models = {m: every[m] for m in dict.fromkeys(t.model for t in trials) if m in every}
            fc.load([t.test_path for t in trials], desc="features")
    report_skipped(args, fc.errors)
    usable, rows = [], []
    for i, t in enumerate(trials):
        if t.model not in models:
            why = (fc.errors.get(t.enrol_path, "enrolment failed") if fmt == "voxceleb"
                   else "unknown model id")
            skipped[f"{t.model} {t.test}"] = f"model: {why}"
        elif t.test_path in fc.errors:
            skipped[f"{t.model} {t.test}"] = f"test file: {fc.errors[t.test_path]}"
        else:
            usable.append(i)
    if usable:
        scores = score_trials([(trials[i].model, trials[i].test_path) for i in usable], models, ubm,
                              fc.get, top_c=args.top_c, progress=progress(args))
        if args.norm:
            scores = normalise_scores(args, [(trials[i].model, trials[i].test_path) for i in usable],
                                      scores, models, ubm, fc, db)
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
    check_strict(args, fc.errors, skipped)
    if not rows:
        raise JobError("no trial could be scored")
    write_text_atomic(args.out, "\n".join(rows) + "\n", overwrite=args.overwrite)
    say(args, f"scored {len(rows)} of {len(trials)} trials ({fmt} format"
              f"{', --top-c ' + str(args.top_c) if args.top_c else ''}) -> {args.out}")
    return 0
