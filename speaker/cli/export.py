"""``speaker export``: write the store's speaker models to a models.npz."""
from __future__ import annotations

from ._common import JobError, add_overwrite, check_outputs, open_store, say, store_file

NAME = "export"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run], help="write the store's speaker models to a models.npz",
                       description="Export speaker models (MAP from the stored statistics) to a model file usable "
                                   "with 'speaker score --models'.")
    s.add_argument("--out", required=True, metavar="NPZ", help="speaker models file to write")
    s.add_argument("--speaker", nargs="+", metavar="ID", help="only these speakers (default all)")
    add_overwrite(s)
    s.set_defaults(func=run)


def run(args) -> int:
    check_outputs(args, {"--out": args.out}, [("speaker store", store_file(args.store))])
    with open_store(args) as store:
        missing = [i for i in (args.speaker or []) if i not in store]
        if missing:
            raise JobError(f"{args.store}: no speaker(s) {', '.join(missing)}")
        ids = store.export(args.out, args.speaker or None, overwrite=args.overwrite)
        say(args, f"exported {len(ids)} speaker model(s) -> {args.out}")
        return 0
