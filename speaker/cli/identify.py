"""``speaker identify``: who among the enrolled speakers is this?"""
from __future__ import annotations

import sys

from ._common import EXIT_UNDECIDED, JobError, decide_kwargs, decision_options, open_store
from ._options import int_option

NAME = "identify"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run], help="who among the enrolled speakers is this?",
                       description="Open-set identification: for each FILE, the --top N best-scoring speakers, best "
                                   "first, one line each: 'FILE ID score accept|reject|undecided [llr]' (the LLR when a "
                                   "calibration is at hand), whether or not any is accepted; the file's speaker is the "
                                   "first line's if it says accept, else nobody enrolled. Exit status: 0 every file "
                                   "was scored and decided, 1 a file could not be scored, "
                                   f"{EXIT_UNDECIDED} some got no decision (no calibration and no threshold, or too "
                                   "little speech). To choose the decision, see the 'decision' options below.")
    s.add_argument("files", nargs="+", metavar="FILE", help="audio (or .npy / ark:offset features) to identify")
    s.add_argument("--top", type=int_option(1), default=1, metavar="N",
                   help="how many candidate speakers to list per file, best first (default 1)")
    decision_options(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..audio import AudioError
    from ..calibration import NO_RULE
    failed = undecided = 0
    with open_store(args) as store:
        if not len(store):
            raise JobError(f"{args.store}: no speakers enrolled")
        kw = decide_kwargs(args, store)
        for f in args.files:
            try:
                ranked = store.candidates(f, args.top, **kw)
            except (ValueError, OSError, AudioError) as exc:
                failed += 1
                print(f"{f}: not scored: {exc}", file=sys.stderr)
                continue
            for m in ranked:
                print(f"{f} {m.id} {m.score:.6f} {m.decision}" + (f" {m.llr:.6f}" if m.llr is not None else ""),
                      flush=True)
            if any(m.decision == "undecided" for m in ranked):
                undecided += 1
                if ranked[0].reason != NO_RULE:        # said once already
                    print(f"{f}: undecided: {ranked[0].reason}", file=sys.stderr)
    if failed:
        raise JobError(f"{failed} of {len(args.files)} file(s) could not be scored")
    return EXIT_UNDECIDED if undecided else 0

