"""``speaker extract``: features of a list of files, to .npy files or a Kaldi archive."""
from __future__ import annotations

from pathlib import Path

from .. import _guards
from ._common import (JobError, add_overwrite, check_outputs, check_strict, feature_cache, feature_config,
                      report_skipped, say)

NAME = "extract"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.feat, parents.run], help="precompute features",
                       description="Extract features of every file in LIST into a folder of .npy files "
                                   "(with a list 'utt_id path' usable by the other commands) or a Kaldi ark/scp.")
    s.add_argument("--list", required=True, metavar="LIST",
                   help="audio list: one path per line, or 'utt_id path' (Kaldi wav.scp)")
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", metavar="DIR", help="folder for .npy files")
    dest.add_argument("--ark", metavar="ARK", help="Kaldi archive to write (the .scp index goes beside it; both "
                                                   "appear together when the archive is complete)")
    add_overwrite(s, "--ark, or the .npy files and feats.lst in --out,")
    s.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from .._atomic import atomic_paths, write_ark_scp
    from ..lists import format_line, read_audio_list
    config = feature_config(args)
    entries = list(dict.fromkeys(read_audio_list(args.list, args.root)))
    names = _guards.output_names(entries, flat=bool(args.ark))
    outs = ({"--ark": args.ark, "--ark (its .scp index)": Path(args.ark).with_suffix(".scp")} if args.ark else
            {"--out": Path(args.out) / "feats.lst", **{f"--out ({n}.npy)": Path(args.out) / f"{n}.npy"
                                                      for n in names.values()}})
    check_outputs(args, outs, [("list", args.list), ("config", args.config)] + [("listed file", p) for _, p in entries],
                  pairs=("--ark", "--ark (its .scp index)"))
    with feature_cache(args, config) as fc:
        fc.load([p for _, p in entries], desc="features")
    report_skipped(args, fc.errors)
    check_strict(args, fc.errors)
    ok = [(k, p) for k, p in entries if p in fc.features]
    if not ok:
        raise JobError("no usable audio in the list")
    if args.ark:
        scp = write_ark_scp(args.ark, ((names[(key, p)], fc.features[p]) for key, p in ok), overwrite=args.overwrite)
        say(args, f"wrote {len(ok)} feature matrices to {args.ark} (index {scp})")
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        targets = [out / f"{names[(key, p)]}.npy" for key, p in ok]
        lines = [format_line(key, str(target.resolve())) for (key, _), target in zip(ok, targets)]
        # the files and their list as one set: an interrupt or a failure leaves every earlier one as it was
        with atomic_paths(targets + [out / "feats.lst"], overwrite=args.overwrite) as temps:
            for (_, p), tmp in zip(ok, temps):
                with open(tmp, "wb") as f:
                    np.save(f, fc.features[p])
            temps[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
        say(args, f"wrote {len(ok)} feature files to {out} (list: {out / 'feats.lst'})")
    return 0
