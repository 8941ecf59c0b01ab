"""``speaker cohort``: keep a score-normalisation cohort in a store."""
from __future__ import annotations

import sys

from .._json import cohort_json
from ._common import JobError, open_store, printed_json, removed, report_skipped, say, feature_cache, utc

NAME = "cohort"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.root, parents.run],
                       help="keep a score-normalisation cohort in a store",
                       description="The cohort of 'speaker score --store DB --norm {z,t,zt,s,as}' when --cohort is "
                                   "not given: recordings of speakers who are not in the trials (e.g. a held-back part "
                                   "of the UBM list). --add extracts each recording's features and UBM statistics "
                                   "once and keeps them in the store (recordings already in it, by id or content, are "
                                   "skipped); without an action, lists the cohort (id, frames, added at, source).")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--add", metavar="LIST", help="add these recordings (audio list: 'path' or 'id path' lines)")
    g.add_argument("--remove", nargs="+", metavar="ID", help="remove these cohort recordings, all or nothing (an unknown id: nothing is removed, exit 1)")
    g.add_argument("--clear", action="store_true", help="remove the whole cohort")
    s.add_argument("--json", action="store_true", help="list as JSON")
    s.set_defaults(func=run)


def run(args) -> int:
    """Add to, remove from, clear or list the store's cohort."""
    from ..lists import read_audio_list
    with open_store(args) as store:
        if args.add:
            entries = read_audio_list(args.add, args.root)
            with feature_cache(args, store.config, dim=store.D) as fs:
                fs.load([p for _, p in entries], desc="cohort")
            report_skipped(args, fs.errors)
            usable = [(k, p) for k, p in entries if p in fs.features]
            res = store.add_cohort(usable, features=fs.get)
            for k, why in list(res.skipped.items())[:50]:
                print(f"  {k}: not added: {why}", file=sys.stderr)
            say(args, f"added {len(res.added)} cohort recording(s) from {args.add}; the cohort of {args.store} has "
                      f"{res.n_recordings}")
            if args.strict and (fs.errors or any(not w.startswith("already") for w in res.skipped.values())):
                raise JobError("--strict: some cohort recordings could not be added")
            return 0
        if args.remove or args.clear:
            return removed(args, lambda: store.remove_cohort(None if args.clear else args.remove),
                           lambda: len(store.cohort_info()), "cohort recording")
        rows = store.cohort_info()
        if printed_json(args, rows, cohort_json):
            return 0
        for r in rows:
            print(f"{r.id} {r.n_frames} {utc(r.added_at)} {r.source}")
        say(args, f"{len(rows)} cohort recording(s) in {args.store}")
        return 0
