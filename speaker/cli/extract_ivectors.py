"""``speaker extract-ivectors``: i-vectors of a list of files, to ``.npz`` or a Kaldi archive."""
from __future__ import annotations

from pathlib import Path

from ._common import JobError, add_overwrite, check_strict, feature_cache, load_ubm, report_skipped, say

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
    dest.add_argument("--ark", metavar="ARK", help="Kaldi archive to write (the .scp index goes beside it; both "
                                                   "appear together when the archive is complete)")
    add_overwrite(s, "--out / --ark")
    s.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from .._atomic import atomic_path, write_ark_scp
    from ..lists import read_audio_list
    from ._ivec import IVECTORS_FORMAT, ivectors, load_tv, refuse_outputs_that_are_inputs
    outputs = ({"--ark": args.ark, "--ark (its .scp index)": Path(args.ark).with_suffix(".scp")} if args.ark
               else {"--out": args.out})
    refuse_outputs_that_are_inputs(args, outputs, pairs=("--ark", "--ark (its .scp index)"))
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
        scp = write_ark_scp(args.ark, ((key, vecs[p]) for key, (_, p) in zip(ids, ok)), overwrite=args.overwrite)
        say(args, f"wrote {len(ok)} i-vectors to {args.ark} (index {scp})")
    else:
        with atomic_path(args.out, overwrite=args.overwrite) as tmp, open(tmp, "wb") as f:
            np.savez(f, format=np.array(IVECTORS_FORMAT), ubm_fingerprint=np.array(tv.ubm_fingerprint),
                     ids=np.array(ids, dtype=str), ivectors=np.array([vecs[p] for _, p in ok]))
        say(args, f"wrote {len(ok)} i-vectors of dimension {tv.rank} -> {args.out}")
    return 0
