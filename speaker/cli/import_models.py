"""``speaker import``: add the speaker models of a models.npz to a store."""
from __future__ import annotations

from ._common import open_store, say

NAME = "import"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run], help="add the speaker models of a models.npz to a store",
                       description="Import speaker models adapted from the store's UBM. They have no statistics: "
                                   "they can be scored, exported and removed, and replaced by a new enrolment, but "
                                   "not extended.")
    s.add_argument("--models", required=True, metavar="NPZ", help="speaker models (speaker enroll --out)")
    s.add_argument("--ubm", metavar="NPZ", help="create the store with this UBM if it does not exist")
    s.add_argument("--replace", action="store_true", help="replace speakers already in the store")
    s.set_defaults(func=run)


def run(args) -> int:
    with open_store(args, args.ubm, create=bool(args.ubm)) as store:
        ids = store.import_models(args.models, replace=args.replace)
        say(args, f"imported {len(ids)} speaker model(s) from {args.models} into {args.store} "
                  "(models without statistics: they cannot be extended, only replaced)")
        return 0
