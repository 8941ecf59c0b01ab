"""``speaker train-ivector``: the total-variability matrix T from a list of files, by EM."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

from ._common import (JobError, add_overwrite, check_strict, load_ubm, progress, refuse_old_checkpoint,
                      report_skipped, say)
from ..limits import MAX_RANK
from ._options import float_option, int_option

NAME = "train-ivector"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.run], help="train an i-vector extractor (total variability)",
                       description="Train the total-variability matrix T (K*D x RANK) by EM on the UBM's per-utterance "
                                   "statistics of every file in LIST (one path per line, or 'utt_id path'). Features "
                                   "use the configuration stored in the UBM file. A checkpoint is written after every "
                                   "EM pass; --resume continues from it.")
    s.add_argument("--ubm", required=True, metavar="NPZ", help="UBM file from 'speaker train-ubm'")
    s.add_argument("--list", required=True, metavar="LIST", help="training audio list")
    s.add_argument("--out", required=True, metavar="NPZ", help="i-vector extractor file to write")
    add_overwrite(s, "--out (and an old --checkpoint)")
    s.add_argument("--rank", type=int_option(1, MAX_RANK), default=200, metavar="R", help=f"i-vector dimension R, at most {MAX_RANK} (default 200; 100-600 customary)")
    s.add_argument("--iters", type=int_option(0, 100_000), default=10, metavar="N", help="EM passes (default 10)")
    s.add_argument("--no-min-div", action="store_true",
                   help="plain EM, without minimum-divergence re-estimation after every pass")
    s.add_argument("--seed", type=int_option(0, 2**32 - 1), default=0, help="random seed of the initial T (default 0)")
    s.add_argument("--stats-memory", type=float_option(0.0), default=2.0, metavar="GB",
                   help="keep the per-utterance statistics in memory up to GB gigabytes (default 2); beyond, "
                        "they are recomputed from the features at every pass")
    s.add_argument("--stream-above", type=float_option(0.0), default=4.0, metavar="GB",
                   help="read the features from disk at every pass once they exceed GB gigabytes (default 4)")
    s.add_argument("--checkpoint", metavar="NPZ",
                   help="checkpoint written after every EM pass (default: OUT with .ckpt.npz; removed on success)")
    s.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint (same UBM, list and options; refused otherwise)")
    s.set_defaults(func=run)


def _batches(args, ubm, prep):
    """A callable giving a fresh iterable of statistics batches per EM pass."""
    from ..ivector import stats_batches
    feats = prep.features
    fresh = (lambda: feats()) if callable(feats) else (lambda: iter(feats))
    nbytes = len(prep.sources) * (ubm.means_.size + ubm.n_components) * 8
    if nbytes <= args.stats_memory * 1e9:
        cached = list(stats_batches(ubm, fresh()))
        return lambda: cached
    return lambda: stats_batches(ubm, fresh())


def run(args) -> int:
    from ..featcache import prepare_features
    from ..ivector import CheckpointError, save_tv, train_tv
    from ..lists import read_audio_list
    from ._common import resume_hint
    from ._ivec import refuse_outputs_that_are_inputs
    from .. import _guards
    refuse_outputs_that_are_inputs(args, {"--out": args.out})
    ubm, config = load_ubm(args.ubm)
    sources = list(dict.fromkeys(p for _, p in read_audio_list(args.list, args.root)))
    out = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out.with_name(out.stem + ".ckpt.npz")
    if checkpoint.resolve() == out.resolve():
        raise JobError("--checkpoint must differ from --out")
    _guards.refuse_inputs_as_outputs({"--checkpoint": checkpoint}, [("UBM", args.ubm), ("list", args.list)]
                                     + [("listed file", s) for s in sources])
    refuse_old_checkpoint(args, checkpoint)
    if args.resume and not checkpoint.exists():
        say(args, f"no checkpoint {checkpoint}: starting from the beginning")
    with contextlib.ExitStack() as stack:
        prep = prepare_features(sources, config, cache_dir=args.cache, jobs=args.jobs,
                                stream_above=args.stream_above * 1e9, temp_parent=out.parent, progress=progress(args),
                                on_temp=lambda d: stack.callback(shutil.rmtree, d, ignore_errors=True))
        report_skipped(args, prep.errors)
        check_strict(args, prep.errors)
        if not prep.sources:
            raise JobError("no usable audio in the list: nothing to train on")
        inputs = hashlib.sha256("\n".join([config.to_json()] + [os.path.abspath(s) for s in prep.sources]
                                          ).encode()).hexdigest()
        try:
            with resume_hint(NAME, checkpoint):
                tv = train_tv(ubm, _batches(args, ubm, prep), args.rank, n_iter=args.iters,
                              min_div=not args.no_min_div, random_state=args.seed, n_utterances=len(prep.sources),
                              progress=progress(args), checkpoint=checkpoint, resume=args.resume, inputs_id=inputs)
        except CheckpointError as exc:
            raise JobError(str(exc)) from None
    save_tv(args.out, tv, config, overwrite=args.overwrite)
    checkpoint.unlink(missing_ok=True)
    say(args, f"i-vector extractor: rank {args.rank}, {args.iters} EM passes on {len(prep.sources)} files "
              f"({len(prep.errors)} skipped) -> {args.out}")
    return 0
