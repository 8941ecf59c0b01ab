"""``speaker backend``: bind an i-vector extractor and a PLDA back-end to a speaker store."""
from __future__ import annotations

from ._common import JobError, open_store, say

NAME = "backend"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run],
                       help="bind an i-vector extractor and a PLDA back-end to a store",
                       description="Bind an i-vector extractor ('speaker train-ivector') and a PLDA back-end ('speaker "
                                   "train-plda') to a speaker store, so that verify / identify / score / serve can "
                                   "use --backend plda|cosine|fusion. The extractor must have been trained on the "
                                   "store's UBM and the back-end on that extractor's i-vectors (fingerprints). The "
                                   "i-vector of every enrolled recording is computed from the statistics the store "
                                   "keeps (no audio is read) and kept; binding another extractor recomputes them all "
                                   "in one transaction. Later enrolments get theirs as they are enrolled.")
    s.add_argument("--ivector", metavar="NPZ", help="total-variability model from 'speaker train-ivector'")
    s.add_argument("--plda", metavar="NPZ", help="back-end from 'speaker train-plda' (trained on --ivector's i-vectors)")
    s.add_argument("--unbind", action="store_true",
                   help="forget the bound extractor, back-end and i-vectors (the store scores with gmm only)")
    s.set_defaults(func=run)


def run(args) -> int:
    from ..ivector import load_tv
    from ..model_io import ModelError
    from ..plda import load_backend
    from ..store import BackendMismatchError
    if args.unbind:
        if args.ivector or args.plda:
            raise JobError("--unbind takes no --ivector / --plda")
        with open_store(args) as store:
            store.unbind_backend()
        say(args, f"{args.store}: no i-vector back-end bound (gmm only)")
        return 0
    if not args.ivector or not args.plda:
        raise JobError("give --ivector NPZ and --plda NPZ (or --unbind)")
    with open_store(args) as store:
        try:
            tv = load_tv(args.ivector, store.ubm)
        except ModelError as exc:
            raise JobError(f"{exc} (the extractor must be trained on the store's UBM: 'speaker store-info --store "
                           f"{args.store} --export-ubm UBM.npz', then 'speaker train-ivector --ubm UBM.npz')") from None
        try:
            be = load_backend(args.plda, store.ubm, rank=tv.rank, tv=tv)
        except ModelError as exc:
            raise JobError(f"{exc} (train it with 'speaker train-plda --ivector {args.ivector}')") from None
        try:
            r = store.bind_backend(tv, be)
        except BackendMismatchError as exc:
            raise JobError(str(exc)) from None
    say(args, f"{args.store}: bound extractor {r.ivector_fingerprint[:12]}... (rank {tv.rank}) and PLDA back-end "
              f"{r.backend_fingerprint[:12]}...; {r.recomputed} recording i-vector(s) computed from the kept "
              f"statistics ({r.speakers} speaker(s), {r.ivector_bytes} bytes of i-vectors)")
    return 0
