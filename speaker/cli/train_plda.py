"""``speaker train-plda``: the i-vector back-end (centring, LDA, WCCN, length norm, PLDA)."""
from __future__ import annotations

from ._common import JobError, add_overwrite, load_ubm, say
from ._options import int_option

NAME = "train-plda"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.run], help="train the PLDA back-end on i-vectors",
                       description="Train centring, optional LDA and WCCN, length normalisation and a two-covariance "
                                   "PLDA on the i-vectors of training speakers. ENROLL has lines "
                                   "'speaker_id path [path ...]': each line is one training speaker.")
    s.add_argument("--ubm", required=True, metavar="NPZ", help="UBM file from 'speaker train-ubm'")
    s.add_argument("--ivector", required=True, metavar="NPZ", help="i-vector extractor from 'speaker train-ivector'")
    s.add_argument("--enroll", required=True, metavar="ENROLL", help="training speakers: 'speaker_id path [path ...]' per line")
    s.add_argument("--out", required=True, metavar="NPZ", help="back-end file to write")
    add_overwrite(s)
    s.add_argument("--lda-dim", type=int_option(1), metavar="D", help="reduce to D dimensions by LDA first (default: no LDA)")
    s.add_argument("--wccn", action="store_true", help="apply within-class covariance normalisation (after LDA)")
    s.add_argument("--plda-iters", type=int_option(0), default=10, metavar="N", help="PLDA EM passes (default 10)")
    s.add_argument("--scp", metavar="SCP", help="Kaldi wav.scp mapping utterance ids used in ENROLL to paths")
    s.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from ..plda import save_backend, train_backend
    from ._ivec import load_tv, refuse_outputs_that_are_inputs, speaker_ivectors
    refuse_outputs_that_are_inputs(args, {"--out": args.out})
    ubm, config = load_ubm(args.ubm)
    tv = load_tv(args, ubm)
    groups = speaker_ivectors(args, ubm, config, tv)
    speakers = set(groups)
    if len(speakers) < 2:
        raise JobError(f"PLDA needs recordings of at least 2 speakers, got {len(speakers)}")
    if args.lda_dim and args.lda_dim > min(tv.rank, len(speakers) - 1):
        raise JobError(f"--lda-dim {args.lda_dim} exceeds min(rank {tv.rank}, speakers - 1 = {len(speakers) - 1})")
    X = np.concatenate(list(groups.values()))
    y = np.concatenate([[spk] * len(g) for spk, g in groups.items()])
    be = train_backend(X, y, lda_dim=args.lda_dim, wccn=args.wccn, plda_iters=args.plda_iters)
    be.ubm_fingerprint, be.ivector_fingerprint = tv.ubm_fingerprint, tv.fingerprint
    save_backend(args.out, be, config, overwrite=args.overwrite)
    say(args, f"PLDA back-end: {len(X)} i-vectors of {len(speakers)} speakers, dimension {tv.rank}"
              f"{f' -> LDA {args.lda_dim}' if args.lda_dim else ''}{', WCCN' if args.wccn else ''} -> {args.out}")
    return 0
