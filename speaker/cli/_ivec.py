"""What the i-vector commands share: options, i-vectors of many files, the PLDA/cosine
branches of ``speaker enroll`` and ``speaker score`` (``--backend plda|cosine``).

Only the standard library at import time (``speaker --help`` stays quick).
"""
from __future__ import annotations

import contextlib

from ._common import JobError, as_norm_size, check_strict, load_ubm, report_skipped, say, feature_cache

MODELS_FORMAT = "gmmext-speaker-ivector-models"
IVECTORS_FORMAT = "gmmext-speaker-ivectors"


#: The options that name a command's input files, with what they are called in messages.
_INPUT_OPTIONS = (("ubm", "UBM"), ("ivector", "i-vector extractor"), ("plda", "back-end"), ("models", "models file"),
                  ("list", "list"), ("enroll", "enrolment list"), ("trials", "trial list"), ("scp", "scp"),
                  ("config", "feature configuration"), ("checkpoint", "checkpoint"))


def refuse_outputs_that_are_inputs(args, outputs: dict) -> None:
    """Before any work: an output (``{"--out": path}``) that is one of the command's input files
    (through links too) is refused (:func:`speaker._guards.refuse_inputs_as_outputs`)."""
    from .. import _guards
    inputs = [(what, getattr(args, name, None)) for name, what in _INPUT_OPTIONS
              if name not in {o.lstrip("-") for o in outputs}]
    _guards.refuse_inputs_as_outputs(outputs, inputs)


def add_backend_options(s, *, backend: bool = True) -> None:
    """``--backend``, ``--ivector``, ``--plda`` (and ``--average``) for enroll / score."""
    g = s.add_argument_group("i-vector back-end (docs/ivector.md)")
    if backend:
        g.add_argument("--backend", choices=["gmm", "plda", "cosine"], default="gmm",
                       help="gmm: MAP-adapted GMM-UBM (default); plda: i-vectors scored by PLDA; "
                            "cosine: i-vectors scored by cosine similarity")
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
    return _load(args.plda, ubm, rank=tv.rank)


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


def _space(be, X):
    """i-vectors in the back-end's space (raw i-vectors, length-normalised, without a back-end)."""
    from ..plda import length_norm
    return be.transform(X) if be is not None else length_norm(X)


def enroll_ivectors(args) -> int:
    """``speaker enroll --backend plda|cosine``: per speaker, the mean of its transformed
    i-vectors and their number (or the averaged i-vector with ``--average``)."""
    import numpy as np
    from ..model_io import save_npz
    from pathlib import Path
    from ..plda import enrol
    if not args.out or getattr(args, "store", None):
        raise JobError(f"--backend {args.backend} writes --out NPZ (the speaker store holds GMM-UBM statistics only)")
    refuse_outputs_that_are_inputs(args, {"--out": args.out})
    if Path(args.out).exists() and not args.overwrite:
        raise JobError(f"{args.out} exists; give --overwrite to replace it")
    ubm, config = load_ubm(args.ubm)
    tv = load_tv(args, ubm)
    be = load_backend(args, ubm, tv, required=args.backend == "plda")
    groups = speaker_ivectors(args, ubm, config, tv)
    if not groups:
        raise JobError("no speaker could be enrolled")
    ids = list(groups)
    if be is not None:
        means, counts = enrol(be, [groups[i] for i in ids], average=args.average or args.backend == "cosine")
    else:
        means = np.array([_space(None, g).mean(axis=0) for g in groups.values()])
        counts = np.ones(len(ids))
    save_npz(args.out, MODELS_FORMAT, 1, f"ivector-models-{args.backend}", tv.ubm_fingerprint, config,
             speaker_ids=np.array(ids, dtype=str), means=means, counts=counts)
    say(args, f"enrolled {len(ids)} speaker(s) ({args.backend} back-end"
              f"{', averaged i-vectors' if args.average else ''}) -> {args.out}")
    return 0


def _load_models(args, ubm):
    from ..model_io import ArraySpec, load_npz
    from ..model_io import ModelError
    _, a = load_npz(args.models, MODELS_FORMAT, 1, f"ivector-models-{args.backend}", ubm,
                    dict(speaker_ids=ArraySpec(1, text=True), means=ArraySpec(2), counts=ArraySpec(1)))
    if not (len(a["speaker_ids"]) == len(a["means"]) == len(a["counts"])) or (a["counts"] < 1).any():
        raise ModelError(f"{args.models}: not a usable ivector-models file: inconsistent speaker ids, means, counts")
    return {str(i): (m, c) for i, m, c in zip(a["speaker_ids"], a["means"], a["counts"])}


def score_ivectors(args) -> int:
    """``speaker score --backend plda|cosine``: Kaldi-style trials against ``--models``, or
    VoxCeleb-style trials whose enrolment recordings are enrolled on the fly (count 1)."""
    import numpy as np
    from .._atomic import write_text_atomic
    from ..lists import read_scp, read_trials
    from ..plda import cosine, plda_llr
    refuse_outputs_that_are_inputs(args, {"--out": args.out})
    ubm, config = load_ubm(args.ubm)
    tv = load_tv(args, ubm)
    be = load_backend(args, ubm, tv, required=args.backend == "plda")
    scp = read_scp(args.scp) if args.scp else None
    fmt, trials = read_trials(args.trials, args.root, scp)
    if fmt == "kaldi" and not args.models:
        raise JobError("Kaldi-style trials need --models (the output of 'speaker enroll --backend ...')")
    models = _load_models(args, ubm) if fmt == "kaldi" else {}
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
        models = {t.model: (_space(be, vecs[t.enrol_path][None])[0], 1.0) for t in trials if t.enrol_path in vecs}
    skipped = {f"{t.model} {t.test}": ("unknown model id" if fmt == "kaldi" else "enrolment file unusable")
               for t in trials if t.model not in models}
    skipped.update({f"{t.model} {t.test}": f"test file: {st.errors.get(t.test_path, 'unusable')}"
                    for t in trials if t.model in models and t.test_path not in vecs})
    usable = [t for t in trials if t.model in models and t.test_path in vecs]
    report_skipped(args, skipped, what="trial")
    check_strict(args, {**st.errors, **skipped})
    if not usable:
        raise JobError("no trial could be scored")
    E = np.array([models[t.model][0] for t in usable])
    C = np.array([models[t.model][1] for t in usable], dtype=np.float64)
    Z = _space(be, np.array([vecs[t.test_path] for t in usable]))

    def pairs(E, C, Z):
        return plda_llr(be.plda, E, C, Z) if args.backend == "plda" else cosine(E, Z)
    scores = pairs(E, C, Z)
    if args.norm:
        scores = normalise_ivector_scores(args, pairs, scores, E, C, Z, _space(be, cohort))
    write_text_atomic(args.out, "".join(f"{t.model} {t.test} {s:.6f}\n" for t, s in zip(usable, scores)))
    say(args, f"scored {len(usable)} of {len(trials)} trials ({fmt} format, {args.backend} back-end) -> {args.out}")
    return 0


def cohort_ivectors(args, st, ubm, tv):
    """Raw i-vectors (n_c, R) of the usable ``--cohort`` recordings (unusable ones reported)."""
    import numpy as np
    from ..lists import read_audio_list
    st.errors = {}
    vecs = ivectors(args, st, ubm, tv, [p for _, p in read_audio_list(args.cohort, args.root)], desc="cohort")
    report_skipped(args, st.errors)
    if len(vecs) < 3:
        raise JobError(f"{args.cohort}: only {len(vecs)} usable cohort recordings (need at least 3)")
    return np.array(list(vecs.values()))


def normalise_ivector_scores(args, pairs, scores, E, C, Z, Q):
    """``speaker score --backend plda|cosine --norm``: the trial scores normalised with the
    i-vectors of the ``--cohort`` recordings, each one a single-recording model (T side) and an
    impostor test (Z side), scored by the same back-end (``pairs(E, C, Z)``: one score per row).

    ``E`` (n, d), ``C`` (n,): each trial's model; ``Z`` (n, d): each trial's test, all in
    back-end space, ``Q`` (n_c, d) the cohort.  Each model's and each test's cohort scores are
    computed once.
    """
    import numpy as np
    from ..score_norm import as_norm, snorm, tnorm, znorm, ztnorm

    def matrix(E, C, Q):
        """Scores of each (model row of E, C) against every cohort test: (n, n_c)."""
        n, m = len(E), len(Q)
        return pairs(np.repeat(E, m, axis=0), np.repeat(C, m), np.tile(Q, (n, 1))).reshape(n, m)

    def unique_rows(*arrays):
        key = np.column_stack([a.reshape(len(a), -1) for a in arrays])
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        return first, inverse.ravel()

    m_first, m_inv = unique_rows(E, C)
    t_first, t_inv = unique_rows(Z)
    ones = lambda k: np.ones(k)                                            # noqa: E731

    def enrol_side(rows):
        return matrix(E[m_first], C[m_first], Q[rows])[m_inv]

    def test_side(rows):       # cohort recordings as models, the trial's test as the test
        return matrix(Z[t_first], ones(len(t_first)), Q[rows])[t_inv]    # symmetric scorers
    everything = np.arange(len(Q))
    if args.norm == "zt":
        half = len(Q) // 2
        t_rows, z_rows = np.arange(half), np.arange(half, len(Q))
        if half < 2 or len(z_rows) < 2:
            raise JobError("zt-norm needs a cohort of at least 4 recordings (split into T models and Z tests)")
        tz = matrix(Q[t_rows], ones(half), Q[z_rows])
        out = ztnorm(scores, enrol_side(z_rows), test_side(t_rows), tz)
    elif args.norm == "z":
        out = znorm(scores, enrol_side(everything))
    elif args.norm == "t":
        out = tnorm(scores, test_side(everything))
    elif args.norm == "s":
        out = snorm(scores, enrol_side(everything), test_side(everything))
    else:
        out = as_norm(scores, enrol_side(everything), test_side(everything), top_n=as_norm_size(args, len(Q)))
    say(args, f"{args.norm}-norm with {len(Q)} cohort recordings from {args.cohort} ({args.backend} back-end)")
    return out
