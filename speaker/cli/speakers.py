"""``speaker speakers``: list or remove the speakers of a store."""
from __future__ import annotations

from .._json import speaker_json
from ._common import open_store, printed_json, removed, say, utc

NAME = "speakers"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run], help="list or remove the speakers of a store",
                       description="List the store's speakers (id, recordings, frames, enrolled at, updated at; "
                                   "times in UTC), or remove some.")
    s.add_argument("--remove", nargs="+", metavar="ID",
                   help="remove these speakers, all or nothing (an unknown id: nothing is removed, exit 1)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run)


def run(args) -> int:
    with open_store(args) as store:
        if args.remove:
            return removed(args, lambda: store.remove_many(args.remove), lambda: len(store), "speaker")
        rows = store.speakers()
        if printed_json(args, rows, speaker_json):
            return 0
        print(f"{'id':20s} {'recordings':>10s} {'frames':>9s}  {'enrolled at':20s}  {'updated at':20s}")
        for r in rows:
            print(f"{r.id:20s} {r.n_recordings:10d} {r.n_frames:9d}  {utc(r.enrolled_at):20s}  {utc(r.updated_at):20s}"
                  + ("  (imported model)" if r.kind == "model" else ""))
        say(args, f"{len(rows)} speaker(s) in {args.store}")
        return 0
