"""``speaker verify``: is this recording speaker ID?"""
from __future__ import annotations

import sys

from ._common import EXIT_UNDECIDED, JobError, decide_kwargs, decision_options, open_store

NAME = "verify"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run], help="is this recording speaker ID?",
                       description="Score each FILE against one enrolled speaker and decide. Prints one line per "
                                   "file: 'ID FILE score accept|reject|undecided', plus the calibrated LLR when a "
                                   "calibration is at hand; an undecided file's reason goes to stderr. Exit status: 0 "
                                   "every file was scored and decided, 1 a file could not be scored (the others are "
                                   f"still printed), {EXIT_UNDECIDED} every file was scored but some got no decision (no "
                                   "calibration and no threshold, or too little speech). To choose the decision, see "
                                   "the 'decision' options below.")
    s.add_argument("--speaker", required=True, metavar="ID", help="the claimed speaker")
    s.add_argument("files", nargs="+", metavar="FILE", help="audio (or .npy / ark:offset features) to verify")
    decision_options(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..audio import AudioError
    from ..calibration import NO_RULE
    failed = undecided = 0
    with open_store(args) as store:
        if args.speaker not in store:
            raise JobError(f"{args.store}: no speaker {args.speaker!r}")
        kw = decide_kwargs(args, store)
        for f in args.files:
            try:
                r = store.verify(args.speaker, f, **kw)
            except (ValueError, OSError, AudioError) as exc:
                failed += 1
                print(f"{f}: not scored: {exc}", file=sys.stderr)
                continue
            print(f"{args.speaker} {f} {r.score:.6f} {r.decision}" + (f" {r.llr:.6f}" if r.llr is not None else ""),
                  flush=True)
            if r.decision == "undecided":
                undecided += 1
                if r.reason != NO_RULE:                # said once already
                    print(f"{f}: undecided: {r.reason}", file=sys.stderr)
    if failed:
        raise JobError(f"{failed} of {len(args.files)} file(s) could not be scored")
    return EXIT_UNDECIDED if undecided else 0

