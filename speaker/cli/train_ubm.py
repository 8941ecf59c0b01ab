"""``speaker train-ubm``: a UBM from a list of files, on this machine or on Dask workers."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _guards
from ._common import (JobError, add_overwrite, check_outputs, check_strict, feature_config, progress,
                      refuse_old_checkpoint, report_skipped, resume_hint, say)
from ..limits import MAX_COMPONENTS
from ._options import components, float_option, int_option, max_threads

NAME = "train-ubm"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.feat, parents.run], help="train a universal background model",
                       description="Train a UBM by EM on the speech frames of every file in a list. "
                                   "LIST has one audio path per line, or 'utt_id path' (Kaldi wav.scp); "
                                   ".npy feature files and Kaldi 'file.ark:offset' entries work too.")
    s.add_argument("--list", required=True, metavar="LIST", help="audio list")
    s.add_argument("--out", required=True, metavar="NPZ", help="UBM file to write")
    add_overwrite(s, "--out (and an old --checkpoint)")
    s.add_argument("--components", type=components, default=512, metavar="K",
                   help=f"number of Gaussians, at most {MAX_COMPONENTS} (default 512; 64 to 2048 are customary)")
    s.add_argument("--iters", type=int_option(0, 100_000), default=10, metavar="N", help="EM iterations at the final size (default 10)")
    s.add_argument("--init", choices=["split", "kmeans"], default="split",
                   help="binary splitting from one Gaussian (default) or k-means on a sample of frames")
    s.add_argument("--var-floor", type=float_option(0.0, 1.0), default=0.01, metavar="F",
                   help="variance floor, fraction of the global variance, in [0, 1] (default 0.01; 0 disables)")
    s.add_argument("--seed", type=int_option(0, 2**32 - 1), default=0, help="random seed (default 0)")
    s.add_argument("--threads", type=int_option(1, max_threads), metavar="N",
                   help="threads of the EM core, at most max(1024, 4 x cores) (default all cores; with Dask, "
                        "per task: default 1)")
    g = s.add_argument_group("scale: streaming, Dask, checkpoints (docs/scaling.md)")
    g.add_argument("--stream", action="store_true",
                   help="keep no features in memory: read them from disk at every EM pass (.npy / ark entries "
                        "where they are, audio features from --cache or a temporary folder beside --out)")
    g.add_argument("--stream-above", type=float_option(0.0), default=4.0, metavar="GB",
                   help="stream automatically once the features exceed GB gigabytes (default 4; this machine only)")
    dask = g.add_mutually_exclusive_group()
    dask.add_argument("--scheduler", metavar="ADDRESS",
                      help="run feature extraction and every EM pass on this Dask cluster (e.g. tcp://host:8786); "
                           "the workers read the listed files under the same paths (shared filesystem)")
    dask.add_argument("--dask-workers", type=int_option(1, max_threads), metavar="N",
                      help="start a local Dask cluster of N worker processes and run on it")
    g.add_argument("--checkpoint", metavar="NPZ",
                   help="checkpoint written after every EM pass (default: OUT with .ckpt.npz; removed on success)")
    g.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint (same list, features and options; refused otherwise)")
    s.set_defaults(func=run)


@dataclass
class _Features:
    """Features ready for train_ubm, whichever pipeline prepared them."""

    features: Any            # list of arrays, FeatureFiles or DaskFeatures (None: nothing usable)
    used: list               # usable sources, in order
    errors: dict             # unusable source -> reason
    n_frames: int
    where: str               # for the summary line


def _needs_shared_cache(args, sources) -> bool:
    from ..sources import source_kind
    return args.stream and not args.cache and any(source_kind(s) == "audio" for s in sources)


def _local_features(args, sources, config, out: Path, stack: contextlib.ExitStack) -> _Features:
    """This machine: ``--jobs`` processes, in memory or streamed from disk."""
    from ..featcache import prepare_features
    prep = prepare_features(sources, config, cache_dir=args.cache, jobs=args.jobs,
                            stream_above=args.stream_above * 1e9, stream=args.stream,
                            temp_parent=out.parent, progress=progress(args),
                            on_temp=lambda d: stack.callback(shutil.rmtree, d, ignore_errors=True))
    return _Features(prep.features, prep.sources, prep.errors, prep.n_frames,
                     "streamed from disk" if prep.streamed else "in memory")


def _dask_features(args, sources, config, out: Path, stack: contextlib.ExitStack) -> _Features:
    """A Dask cluster: the workers extract (and hold or re-read) the features."""
    from ..cluster import DaskFeatures, dask_client
    if args.scheduler and _needs_shared_cache(args, sources):
        raise JobError("--stream on a Dask cluster needs --cache DIR on a filesystem the workers share "
                       "(or a list of .npy / Kaldi ark features)")
    cache = args.cache
    if _needs_shared_cache(args, sources):           # a local cluster shares this machine's disk
        cache = tempfile.mkdtemp(prefix=".speaker-features-", dir=out.parent)
        stack.callback(shutil.rmtree, cache, ignore_errors=True)
    client = stack.enter_context(dask_client(args.scheduler, args.dask_workers))
    absolute = {os.path.abspath(s): s for s in sources}       # workers may have another cwd
    feats, errors = DaskFeatures.from_sources(client, list(absolute), config, cache_dir=cache,
                                              stream=args.stream, progress=progress(args))
    errors = {absolute[s]: why for s, why in errors.items()}
    if feats is not None:
        feats.n_threads = args.threads or 1
    where = f"on Dask ({len(client.nthreads())} workers{', streamed' if args.stream else ''})"
    return _Features(feats, [s for s in sources if s not in errors], errors,
                     feats.n_frames if feats is not None else 0, where)


def _train(args, prepared: _Features, config, checkpoint: Path):
    """EM with a checkpoint after every pass; on Ctrl-C, say how to resume."""
    from ..ubm import CheckpointError, train_ubm
    inputs = _guards.inputs_fingerprint(config.to_json(), prepared.used, prepared.features)
    try:
        with resume_hint(NAME, checkpoint):
            return train_ubm(prepared.features, args.components, init=args.init, n_iter=args.iters,
                             var_floor=args.var_floor, random_state=args.seed, n_threads=args.threads,
                             progress=progress(args), checkpoint=checkpoint, resume=args.resume,
                             inputs_id=inputs)
    except CheckpointError as exc:
        raise JobError(str(exc)) from None


def run(args) -> int:
    """Train a UBM: features on this machine (in memory, or streamed from disk beyond
    ``--stream-above``) or on Dask workers; a checkpoint after every EM pass, ``--resume``."""
    from ..lists import read_audio_list
    from ..model_io import save_model
    config = feature_config(args)
    sources = list(dict.fromkeys(p for _, p in read_audio_list(args.list, args.root)))
    out = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out.with_name(out.stem + ".ckpt.npz")
    if checkpoint.resolve() == out.resolve():
        raise JobError("--checkpoint must differ from --out")
    inputs = [("list", args.list), ("config", args.config)] + [("listed file", s) for s in sources]
    _guards.refuse_inputs_as_outputs({"--checkpoint": checkpoint}, inputs)
    check_outputs(args, {"--out": out}, inputs)
    refuse_old_checkpoint(args, checkpoint)
    if args.resume and not checkpoint.exists():
        say(args, f"no checkpoint {checkpoint}: starting from the beginning")
    prepare = _dask_features if (args.scheduler or args.dask_workers) else _local_features
    with contextlib.ExitStack() as stack:
        prepared = prepare(args, sources, config, out, stack)
        report_skipped(args, prepared.errors)
        check_strict(args, prepared.errors)
        if not prepared.used:
            raise JobError("no usable audio in the list: nothing to train on")
        if prepared.n_frames < args.components:
            raise JobError(f"only {prepared.n_frames} speech frames for {args.components} components")
        ubm = _train(args, prepared, config, checkpoint)
    save_model(args.out, ubm, config=config, overwrite=args.overwrite)
    checkpoint.unlink(missing_ok=True)
    say(args, f"UBM: {ubm.n_components} components x {ubm.means_.shape[1]} dims from {len(prepared.used)} files "
              f"({prepared.n_frames} frames {prepared.where}, {len(prepared.errors)} skipped); average "
              f"log-likelihood {ubm.lower_bound_:.3f} nats/frame -> {args.out}")
    return 0
