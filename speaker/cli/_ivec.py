"""What the i-vector commands share: options, i-vectors of many files, the PLDA/cosine
branches of ``speaker enroll`` and ``speaker score`` (``--backend plda|cosine``).

Only the standard library at import time (``speaker --help`` stays quick).
"""
from __future__ import annotations

import contextlib

from ._common import JobError, as_norm_size, check_strict, load_ubm, report_skipped, say, feature_cache

IVECTORS_FORMAT = "gmmext-speaker-ivectors"


#: The options that name a command's input files, with what they are called in messages.
_INPUT_OPTIONS = (("ubm", "UBM"), ("ivector", "i-vector extractor"), ("plda", "back-end"), ("models", "models file"),
                  ("list", "list"), ("enroll", "enrolment list"), ("trials", "trial list"), ("scp", "scp"),
                  ("config", "feature configuration"), ("checkpoint", "checkpoint"))


def refuse_outputs_that_are_inputs(args, outputs: dict, pairs=()) -> None:
    """Before any work: an output (``{"--out": path}``) that is one of the command's input files
    (through links too), an existing file without ``--overwrite``, or something that is not a file
    to write is refused (:func:`speaker.cli._common.check_outputs`)."""
    from ._common import check_outputs
    inputs = [(what, getattr(args, name, None)) for name, what in _INPUT_OPTIONS
              if name not in {o.lstrip("-") for o in outputs}]
    check_outputs(args, outputs, inputs, pairs)


def add_backend_options(s, *, backend: bool = True) -> None:
    """``--backend``, ``--ivector``, ``--plda`` (and ``--average``) for enroll / score."""
    g = s.add_argument_group("i-vector back-end (docs/ivector.md)")
    if backend:
        g.add_argument("--backend", choices=["gmm", "plda", "cosine", "fusion"], default="gmm",
                       help="gmm: MAP-adapted GMM-UBM (default); plda: i-vectors scored by PLDA; "
                            "cosine: i-vectors scored by cosine similarity; fusion (with --store): gmm and plda fused "
                            "by the store's fusion calibration. With --store, plda / cosine / fusion use the "
                            "extractor and back-end bound to the store ('speaker backend')")
    g.add_argument("--ivector", metavar="NPZ", help="total-variability model from 'speaker train-ivector' "
                                                     "(needed by --backend plda|cosine)")
    g.add_argument("--plda", metavar="NPZ", help="back-end from 'speaker train-plda' (needed by --backend plda; "
                                                  "with cosine: its centring/LDA/WCCN are applied first)")
    g.add_argument("--average", action="store_true",
                   help="PLDA enrolment by the averaged i-vector (as one recording) instead of by the model "
                        "with all the speaker's recordings")


def load_tv(args, ubm):
    from ..ivector import load_tv as _load
    if not getattr(args, "ivector", None):
        raise JobError("this needs --ivector (the output of 'speaker train-ivector')")
    return _load(args.ivector, ubm)


def load_backend(args, ubm, tv, required: bool):
    from ..plda import load_backend as _load
    if not args.plda:
        if required:
            raise JobError("--backend plda needs --plda (the output of 'speaker train-plda')")
        return None
    return _load(args.plda, ubm, rank=tv.rank, tv=tv)


def ivectors(args, st, ubm, tv, sources, desc: str = "i-vectors") -> dict:
    """{source: i-vector (R,)} of every usable source, streamed: features of one batch at a
    time (``st.results``), unusable sources in ``st.errors``."""
    import numpy as np
    from ..ivector import BATCH, centred_stats, extract_ivectors
    out: dict = {}
    names, feats = [], []

    def flush():
        if names:
            means, _ = extract_ivectors(tv, [centred_stats(ubm, feats)])
            out.update(zip(names, means))
            names.clear()
            feats.clear()

    with contextlib.closing(st.results(sources, desc)) as results:
        for src, x, err in results:
            if err is None and x.shape[0] == 0:
                err = "no speech frames"
            if err is not None:
                st.errors[src] = err
                continue
            names.append(src)
            feats.append(np.asarray(x))
            if len(names) == BATCH:
                flush()
    flush()
    return out


def speaker_ivectors(args, ubm, config, tv) -> dict:
    """{speaker: i-vectors (n, R)} of the ``--enroll`` list (speakers without usable audio left out)."""
    import numpy as np
    from ..lists import read_enroll_list, read_scp
    scp = read_scp(args.scp) if args.scp else None
    spk_files = read_enroll_list(args.enroll, args.root, scp)
    with feature_cache(args, config) as st:
        vecs = ivectors(args, st, ubm, tv, [p for files in spk_files.values() for _, p in files])
    report_skipped(args, st.errors)
    check_strict(args, st.errors)
    groups = {spk: np.array([vecs[p] for _, p in files if p in vecs]) for spk, files in spk_files.items()}
    return {spk: g for spk, g in groups.items() if len(g)}


def enroll_ivectors(args) -> int:
    """``speaker enroll --backend plda|cosine``: the speakers of ``--enroll`` enrolled in back-end
    space (:func:`speaker.ivector_backend.enrol_speakers`) into a models file."""
    from ..ivector_backend import enrol_speakers, save_models
    if not args.out or getattr(args, "store", None):
        raise JobError(f"--backend {args.backend} writes --out NPZ; a speaker store enrols every back-end at once "
                       "(enrol without --backend: a store bound to an i-vector back-end with 'speaker backend' keeps "
                       "each recording's i-vector too)")
    if args.backend == "fusion":
        raise JobError("--backend fusion is a store's ('speaker enroll --store DB', then 'speaker calibrate --store DB "
                       "--backend fusion')")
    refuse_outputs_that_are_inputs(args, {"--out": args.out})
    from ..lists import read_enroll_list
    from ._common import check_speaker_ids
    check_speaker_ids(args.enroll, read_enroll_list(args.enroll, args.root))
    ubm, config = load_ubm(args.ubm)
    tv = load_tv(args, ubm)
    be = load_backend(args, ubm, tv, required=args.backend == "plda")
    groups = speaker_ivectors(args, ubm, config, tv)
    if not groups:
        raise JobError("no speaker could be enrolled")
    models = enrol_speakers(groups, args.backend, be, average=args.average, ubm_fingerprint=tv.ubm_fingerprint,
                            ivector_fingerprint=tv.fingerprint)
    save_models(args.out, models, config, overwrite=args.overwrite)
    say(args, f"enrolled {len(models)} speaker(s) ({args.backend} back-end"
              f"{', averaged i-vectors' if args.average else ''}) -> {args.out}")
    return 0


def score_ivectors(args) -> int:
    """``speaker score --backend plda|cosine``: Kaldi-style trials against ``--models``, or
    VoxCeleb-style trials whose enrolment recordings are enrolled on the fly (count 1)."""
    import numpy as np
    from .._atomic import write_text_atomic
    from ..ivector_backend import load_models, normalise_scores, score_pairs, to_space
    from ..lists import read_scp, read_trials
    refuse_outputs_that_are_inputs(args, {"--out": args.out})
    ubm, config = load_ubm(args.ubm)
    tv = load_tv(args, ubm)
    be = load_backend(args, ubm, tv, required=args.backend == "plda")
    scp = read_scp(args.scp) if args.scp else None
    fmt, trials = read_trials(args.trials, args.root, scp)
    if fmt == "kaldi" and not args.models:
        raise JobError("Kaldi-style trials need --models (the output of 'speaker enroll --backend ...')")
    models = (load_models(args.models, args.backend, ubm, tv=tv, backend=be, check_chain=True).as_dict()
              if fmt == "kaldi" else {})
    sources = [t.test_path for t in trials] + ([t.enrol_path for t in trials] if fmt == "voxceleb" else [])
    if args.norm and not args.cohort:
        raise JobError("--norm needs --cohort LIST")
    with feature_cache(args, config) as st:
        vecs = ivectors(args, st, ubm, tv, list(dict.fromkeys(sources)))
        errors = dict(st.errors)
        cohort = cohort_ivectors(args, st, ubm, tv) if args.norm else None
    st.errors = errors
    report_skipped(args, st.errors)
    if fmt == "voxceleb":
        models = {t.model: (to_space(be, vecs[t.enrol_path][None])[0], 1.0) for t in trials if t.enrol_path in vecs}
    skipped = {f"{t.model} {t.test}": ("unknown model id" if fmt == "kaldi" else "enrolment file unusable")
               for t in trials if t.model not in models}
    skipped.update({f"{t.model} {t.test}": f"test file: {st.errors.get(t.test_path, 'unusable')}"
                    for t in trials if t.model in models and t.test_path not in vecs})
    usable = [t for t in trials if t.model in models and t.test_path in vecs]
    report_skipped(args, skipped, what="trial")
    check_strict(args, st.errors, skipped)
    if not usable:
        raise JobError("no trial could be scored")
    E = np.array([models[t.model][0] for t in usable])
    C = np.array([models[t.model][1] for t in usable], dtype=np.float64)
    Z = to_space(be, np.array([vecs[t.test_path] for t in usable]))

    def pairs(E, C, Z):
        return score_pairs(args.backend, be, E, C, Z)
    scores = pairs(E, C, Z)
    if args.norm:
        top_n = as_norm_size(args, len(cohort)) if args.norm == "as" else None
        scores = normalise_scores(args.norm, scores, E, C, Z, to_space(be, cohort), pairs, top_n=top_n)
        say(args, f"{args.norm}-norm with {len(cohort)} cohort recordings from {args.cohort} "
                  f"({args.backend} back-end)")
    write_text_atomic(args.out, "".join(f"{t.model} {t.test} {s:.6f}\n" for t, s in zip(usable, scores)),
                      overwrite=args.overwrite)
    say(args, f"scored {len(usable)} of {len(trials)} trials ({fmt} format, {args.backend} back-end) -> {args.out}")
    return 0


def cohort_ivectors(args, st, ubm, tv):
    """Raw i-vectors (n_c, R) of the usable ``--cohort`` recordings (unusable ones reported)."""
    import numpy as np
    from ..lists import read_audio_list
    from ..score_norm import MIN_COHORT
    st.errors = {}
    vecs = ivectors(args, st, ubm, tv, [p for _, p in read_audio_list(args.cohort, args.root)], desc="cohort")
    report_skipped(args, st.errors)
    if len(vecs) < MIN_COHORT:
        raise JobError(f"{args.cohort}: only {len(vecs)} usable cohort recordings (need at least {MIN_COHORT})")
    return np.array(list(vecs.values()))
