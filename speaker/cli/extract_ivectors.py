"""``speaker extract-ivectors``: i-vectors of a list of files, to ``.npz`` or a Kaldi archive."""
from __future__ import annotations

from pathlib import Path

from ._common import JobError, check_strict, load_ubm, report_skipped, say, feature_cache

NAME = "extract-ivectors"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.run], help="extract i-vectors for other tools",
                       description="Extract the i-vector (posterior mean) of every file in LIST, streaming. --out "
                                   "writes an .npz with 'ids' (U,) and 'ivectors' (U, R) float64; --ark a Kaldi "
                                   "archive of vectors (with its .scp beside it).")
    s.add_argument("--ubm", required=True, metavar="NPZ", help="UBM file from 'speaker train-ubm'")
    s.add_argument("--ivector", required=True, metavar="NPZ", help="i-vector extractor from 'speaker train-ivector'")
    s.add_argument("--list", required=True, metavar="LIST", help="audio list: one path per line, or 'utt_id path'")
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", metavar="NPZ", help=".npz file to write")
    dest.add_argument("--ark", metavar="ARK", help="Kaldi archive to write (the .scp index goes beside it)")
    s.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from .._atomic import atomic_path
    from ..lists import read_audio_list
    from ._ivec import IVECTORS_FORMAT, ivectors, load_tv, refuse_outputs_that_are_inputs
    refuse_outputs_that_are_inputs(args, {"--out": args.out, "--ark": args.ark})
    ubm, config = load_ubm(args.ubm)
    tv = load_tv(args, ubm)
    entries = read_audio_list(args.list, args.root)
    with feature_cache(args, config) as fc:
        vecs = ivectors(args, fc, ubm, tv, [p for _, p in entries])
    report_skipped(args, fc.errors)
    check_strict(args, fc.errors)
    ok = [(k, p) for k, p in entries if p in vecs]
    if not ok:
        raise JobError("no usable audio in the list")
    ids = [k.replace("/", "_") if k == p else k for k, p in ok]
    if args.ark:
        import kaldiio
        ark = Path(args.ark)
        scp = ark.with_suffix(".scp")
        with atomic_path(ark) as tmp_ark, atomic_path(scp) as tmp_scp:
            with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
                for key, (_, p) in zip(ids, ok):
                    writer(key, vecs[p])
            tmp_scp.write_text(tmp_scp.read_text().replace(str(tmp_ark), str(ark)))
        say(args, f"wrote {len(ok)} i-vectors to {ark} (index {scp})")
    else:
        with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
            np.savez(f, format=np.array(IVECTORS_FORMAT), ubm_fingerprint=np.array(tv.ubm_fingerprint),
                     ids=np.array(ids, dtype=str), ivectors=np.array([vecs[p] for _, p in ok]))
        say(args, f"wrote {len(ok)} i-vectors of dimension {tv.rank} -> {args.out}")
    return 0
