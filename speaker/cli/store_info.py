"""``speaker store-info``: what a speaker store holds and which UBM it is bound to; export that UBM."""
from __future__ import annotations

import json

from .._reasons import reason
from ._common import add_overwrite, check_outputs, open_store, say, store_file
from .calibrate import formula

NAME = "store-info"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.store, parents.run],
                       help="show a store's UBM fingerprint and contents; export its UBM",
                       description="Show what a speaker store holds: its UBM (size and SHA-256 fingerprint), feature "
                                   "configuration, model derivation, number of speakers and cohort recordings, and "
                                   "calibration. A store is bound to the UBM it was created with: enrolling or scoring "
                                   "with another UBM file is refused. --ubm tells which of your UBM files is the "
                                   "store's; --export-ubm writes the store's UBM as a UBM file (for 'speaker score "
                                   "--ubm', 'speaker train-ivector', or a new store).")
    s.add_argument("--ubm", nargs="+", metavar="NPZ",
                   help="model files to compare with the store's UBM: prints the fingerprint of each UBM file (or of "
                        "the UBM a speaker models file was adapted from) and whether it is the store's")
    s.add_argument("--export-ubm", metavar="NPZ", help="write the store's UBM (with its feature configuration) here")
    add_overwrite(s, "--export-ubm")
    s.add_argument("--upgrade", action="store_true",
                   help="upgrade a store made by an earlier version to this version's format, in one transaction "
                        "(one-way: earlier versions cannot open it afterwards, so copy the store first to keep the "
                        "old one; docs/store.md, 'Format versions')")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run)


def _ubm_files(paths: list[str], fingerprint: str) -> dict[str, dict]:
    """What each model file says about its UBM: {path: {kind, fingerprint, is_store_ubm} or {error}}.
    A UBM file's fingerprint is its own; a speaker models file's is the UBM they were adapted from."""
    from ..model_io import ModelError, load_model
    out = {}
    for p in paths:
        try:
            mf = load_model(p)
        except (ModelError, OSError, ValueError) as exc:
            out[p] = {"error": reason(p, str(exc))}
            continue
        out[p] = {"kind": mf.kind, "fingerprint": mf.ubm_fingerprint, "is_store_ubm": mf.ubm_fingerprint == fingerprint}
    return out


def run(args) -> int:
    if args.export_ubm:
        check_outputs(args, {"--export-ubm": args.export_ubm}, [("speaker store", store_file(args.store))])
    with open_store(args, upgrade=args.upgrade) as store:
        if args.upgrade:
            say(args, f"{args.store}: " + ("upgraded to format 2: recordings enrolled from now on keep their "
                                            "statistics, features and quality measures (docs/store.md)" if store.upgraded
                                            else "format 2 already, nothing to upgrade"))
        rows = store.speakers()
        cal = store.current_calibration()
        n_cal = len(store.calibrations())
        info = {"store": str(args.store), "ubm_fingerprint": store.fingerprint,
                "ubm_components": int(store.K), "feature_dim": int(store.D),
                "covariance_type": store.ubm.covariance_type,
                "feature_config": store.config.to_dict(),
                "relevance_factor": store.relevance_factor, "adapt": store.adapt,
                "n_speakers": len(rows), "n_imported_models": sum(r.kind == "model" for r in rows),
                "n_cohort": len(store.cohort_info()),
                "calibration": None if cal is None else {"id": cal.id, "a": cal.calibration.a, "b": cal.calibration.b,
                                                         "prior": cal.calibration.prior, "fitted_on": cal.fitted_on},
                "calibrations_kept": n_cal}
        if args.ubm:
            info["ubm_files"] = _ubm_files(args.ubm, store.fingerprint)
        if args.export_ubm:
            from ..model_io import save_model
            save_model(args.export_ubm, store.ubm, config=store.config, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{'store':16s} {info['store']}")
        print(f"{'UBM':16s} {info['ubm_components']} components x {info['feature_dim']} dims "
              f"({info['covariance_type']} covariances)")
        print(f"{'UBM fingerprint':16s} {info['ubm_fingerprint']}")
        print(f"{'features':16s} {store.config.sample_rate} Hz, {info['feature_dim']} values per frame "
              "(whole configuration: --json)")
        print(f"{'models':16s} MAP, relevance factor {info['relevance_factor']:g}, adapt {info['adapt']!r}")
        print(f"{'speakers':16s} {info['n_speakers']}"
              + (f" ({info['n_imported_models']} imported models)" if info["n_imported_models"] else ""))
        print(f"{'cohort':16s} {info['n_cohort']} recordings")
        print(f"{'calibration':16s} " + ("none: decisions are 'undecided' without --threshold ('speaker calibrate "
                                          "--store DB --from-enrollments')" if cal is None else
                                          f"{cal.id}: {formula(cal.calibration)} (prior {cal.calibration.prior:g}); "
                                          f"{n_cal} kept ('speaker calibrate --show')"))
        for p, u in info.get("ubm_files", {}).items():
            if "error" in u:
                print(f"{p}: {u['error']}")
                continue
            what = "UBM" if u["kind"] == "ubm" else "speaker models adapted from the UBM"
            print(f"{p}: {what} with fingerprint {u['fingerprint']}: "
                  + ("the store's UBM" if u["is_store_ubm"] else "another UBM (this store refuses it)"))
    if args.export_ubm:
        say(args, f"the store's UBM (fingerprint {info['ubm_fingerprint'][:12]}...) -> {args.export_ubm}")
    return 0
