"""``speaker identify``: who among the enrolled speakers is this?"""
from __future__ import annotations

import sys

from ._common import JobError, decide_kwargs, decision_options, open_store
from ._options import int_option

NAME = "identify"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run], help="who among the enrolled speakers is this?",
                       description="Open-set identification: for each FILE, the --top N best-scoring speakers that pass "
                                   "the decision (one line 'FILE ID score [llr] ...'), or 'FILE none'. To choose the decision, see "
                                   "the 'decision' options below.")
    s.add_argument("files", nargs="+", metavar="FILE", help="audio (or .npy / ark:offset features) to identify")
    s.add_argument("--top", type=int_option(1), default=1, metavar="N",
                   help="how many candidate speakers to list per file, best first (default 1)")
    decision_options(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..audio import AudioError
    failed = 0
    with open_store(args) as store:
        if not len(store):
            raise JobError(f"{args.store}: no speakers enrolled")
        kw = decide_kwargs(args, store)
        for f in args.files:
            try:
                hits = store.identify(f, args.top, **kw)
            except (ValueError, OSError, AudioError) as exc:
                failed += 1
                print(f"{f}: not scored: {exc}", file=sys.stderr)
                continue
            items = [f"{m.id} {m.score:.6f}" + (f" {m.llr:.6f}" if m.llr is not None else "") for m in hits]
            print(f"{f} " + (" ".join(items) if items else "none"), flush=True)
    if failed:
        raise JobError(f"{failed} of {len(args.files)} file(s) could not be scored")
    return 0
