"""The ``speaker`` commands around the speaker store, calibration and score normalisation.

    speaker enroll    --ubm ubm.npz --enroll enroll.txt --store speakers.db [--replace]
    speaker speakers  --store speakers.db [--remove ID ...]
    speaker verify    --store speakers.db --speaker ID FILE ...
    speaker identify  --store speakers.db FILE ... [--top N]
    speaker score     --store speakers.db --trials trials.txt --out scores.txt [--norm as --cohort C]
    speaker calibrate --scores dev_scores.txt --trials dev_trials.txt --out calib.json [--store S]
    speaker export    --store speakers.db --out models.npz
    speaker import    --store speakers.db --models models.npz [--ubm ubm.npz]
    speaker cohort    --store speakers.db [--add cohort.lst | --remove ID ... | --clear]

Every ``--store`` takes a path (a SQLite file) or a database URL (``sqlite:///speakers.db``,
``postgresql://user@host/dbname``: docs/store.md).

:func:`register` adds the new commands to the parser of :mod:`speaker.cli`; the ``add_*_options``
functions add the store / normalisation / calibration options of ``enroll``, ``score`` and
``eval``, and the ``cmd_*`` / helper functions are what those commands call.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import _guards
from ._common import JobError

# heavy modules (numpy, the store, calibration, audio) are imported inside the functions, so
# that building the parser (speaker --help) stays quick

__all__ = ["CommandError", "register", "add_enroll_options", "add_score_options", "add_eval_options"]

DECISION_HELP = (
    "How to choose the decision: with a calibration (speaker calibrate on development trials of your "
    "conditions, then --calibration FILE or kept in the store with 'calibrate --store'), give the prior "
    "probability that a claim is genuine (--p-target, default 0.5) and the costs of a false reject and a "
    "false accept (--c-miss, --c-fa): the Bayes threshold log(c_fa (1 - p_target) / (c_miss p_target)) on "
    "the calibrated LLR minimises the expected cost (a voice login that must rarely let impostors in: "
    "small p_target or large --c-fa). Without a calibration, --threshold T on the raw score: take it from "
    "'speaker eval --target-far F' on development trials (the threshold giving false-accept rate F) or its "
    "EER threshold. With neither, raw scores >= 0 are accepted (speaker at least as likely as the UBM), "
    "which is rarely the right operating point.")


#: The commands :func:`register` adds.
NAMES = ("speakers", "verify", "identify", "calibrate", "export", "import", "cohort")

#: What every --store option says it takes.
STORE_HELP = ("the speaker store: a SQLite file path, or a database URL: sqlite:///speakers.db, "
              "postgresql://user@host/dbname (several machines sharing one store; pip install '.[postgres]')")

#: The store commands' errors are the CLI's job errors (exit code 1, one line).
CommandError = JobError


def _say(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def _open(args, ubm=None, create: bool = False):
    from ..store import SpeakerStore
    return SpeakerStore(args.store, ubm, create=create, top_c=getattr(args, "top_c", None) or None)


def _calibration(args, store=None):
    """The --calibration file's Calibration, else the store's (or None)."""
    from ..calibration import Calibration
    if getattr(args, "calibration", None):
        try:
            return Calibration.from_json(Path(args.calibration).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"{args.calibration}: not a usable calibration: {exc}") from None
    return store.calibration if store is not None else None


def _decision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-c", type=_count, metavar="C",
                   help="fast scoring with the UBM's C best components (5 is customary; default exact, as 'speaker "
                        "score'): score the development trials of a calibration the same way")
    g = p.add_argument_group("decision", DECISION_HELP)
    g.add_argument("--threshold", type=float, metavar="T", help="accept iff the raw score >= T (overrides a calibration)")
    g.add_argument("--p-target", type=_prob, metavar="P",
                   help="prior probability of a genuine claim for the Bayes threshold (needs a calibration; default 0.5)")
    g.add_argument("--c-miss", type=_positive, default=1.0, metavar="C", help="cost of rejecting a genuine speaker (default 1)")
    g.add_argument("--c-fa", type=_positive, default=1.0, metavar="C", help="cost of accepting an impostor (default 1)")
    g.add_argument("--calibration", metavar="JSON", help="calibration from 'speaker calibrate' (default: the store's, if any)")


# the CLI's one set of range-checked option types (speaker._guards)
_prob = _guards.float_option(0.0, 1.0, lo_open=True, hi_open=True)
_positive = _guards.float_option(0.0, lo_open=True)
_count = _guards.int_option(0)


# ---------------------------------------------------------------------------- enroll / score / eval
def add_enroll_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speaker store (docs/store.md)")
    g.add_argument("--store", metavar="DB|URL",
                   help="enrol into this speaker store instead of writing --out (a SQLite file path or a database "
                        "URL, sqlite:///FILE or postgresql://user@host/dbname): created on first use, bound to "
                        "the UBM; listed speakers are added, or extended with the new recordings (already "
                        "enrolled recordings are skipped)")
    g.add_argument("--replace", action="store_true", help="with --store: start the listed speakers over")


def enroll_into_store(args, ubm, config, spk_files: dict, features) -> int:
    """``speaker enroll --store``: the listed speakers' readable files into the store.

    ``features`` is the command's FeatureStore (features already extracted, errors reported).
    """
    from ..features import FeatureConfig
    from ..store import SpeakerStore, StoreError
    try:
        store = SpeakerStore(args.store, ubm, config=config or FeatureConfig(), relevance_factor=args.relevance_factor,
                             adapt=args.adapt)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if (store.relevance_factor, store.adapt) != (args.relevance_factor, args.adapt):
        _say(args, f"note: {args.store} derives models with relevance factor {store.relevance_factor:g}, adapt "
                   f"{store.adapt!r} (set when it was created); --relevance-factor/--adapt are not used")
    done, empty, dup, added = 0, [], 0, 0
    for spk, files in spk_files.items():
        paths = [p for _, p in files if p in features.features]
        if not paths:
            empty.append(spk)
            continue
        try:
            res = store.enroll(spk, paths, replace=args.replace, features=features.get)
        except StoreError as exc:
            empty.append(spk)
            print(f"speaker {spk}: {exc}", file=sys.stderr)
            continue
        dup += sum(1 for why in res.skipped.values() if why.startswith("already enrolled"))
        added += len(res.added)
        done += 1
    if empty:
        print(f"not enrolled (no usable audio): {', '.join(empty)}", file=sys.stderr)
        if args.strict:
            raise CommandError(f"--strict: {len(empty)} speaker(s) could not be enrolled")
    if not done:
        raise CommandError("no speaker could be enrolled")
    _say(args, f"enrolled {done} speaker(s), {added} new recording(s), into {args.store} ({len(store)} in the store"
               f"{f'; {dup} recording(s) already enrolled were skipped' if dup else ''})")
    return 0


def add_score_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speaker store and score normalisation (docs/store.md)")
    g.add_argument("--store", metavar="DB|URL",
                   help="score the store's speakers (Kaldi-style trials; --ubm not needed); " + STORE_HELP)
    g.add_argument("--norm", choices=["z", "t", "zt", "s", "as"],
                   help="normalise scores with a cohort: z (enrolment side), t (test side), zt, s (symmetric, "
                        "mean of z and t) or as (adaptive s-norm with the --cohort-size closest cohort scores)")
    g.add_argument("--cohort", metavar="LIST",
                   help="cohort recordings (audio list; speakers not in the trials, e.g. a held-back part of the UBM "
                        "list): each is enrolled as a cohort model (T side) and used as an impostor test (Z side); "
                        "default with --store: the cohort kept in the store ('speaker cohort --store DB --add LIST')")
    g.add_argument("--cohort-size", type=_count, metavar="N",
                   help="as-norm: use each side's N highest cohort scores (default: 200 or the cohort's size)")


def score_ubm(args):
    """(ubm, config) of ``speaker score --store`` (checked against --ubm when given)."""
    from ..model_io import load_model
    ubm = None
    if args.ubm:
        mf = load_model(args.ubm)
        if mf.kind != "ubm":
            raise CommandError(f"{args.ubm}: holds speaker models, not a UBM")
        ubm = mf.ubm
    store = _open(args, ubm)
    return store.ubm, store.config


def store_models(args, ubm, model_ids) -> dict:
    """The models of the store's speakers named in the trials (unknown ids are left out)."""
    store = _open(args, ubm)
    return {i: store.model(i) for i in sorted(model_ids) if i in store}


def normalise_scores(args, pairs: list, scores, models: dict, ubm, features):
    """``speaker score --norm``: the scores of (model_id, test_path) ``pairs`` normalised with the cohort.

    ``features`` is the command's FeatureStore (the cohort's features are extracted once there).
    """
    from ..cohort import Cohort, normalise
    from ..lists import read_audio_list
    if not args.cohort:
        cohort = _open(args, ubm).cohort(top_c=args.top_c) if args.store else None
        if cohort is None or len(cohort) < 3:
            raise CommandError("--norm needs --cohort LIST" + (
                "" if not args.store else f", or a cohort of at least 3 recordings kept in {args.store} (it has "
                f"{len(cohort) if cohort is not None else 0}; 'speaker cohort --store {args.store} --add LIST')"))
        out = normalise(args.norm, pairs, scores, models, features.get, cohort, top_n=args.cohort_size)
        _say(args, f"{args.norm}-norm with the {len(cohort)} cohort recordings kept in {args.store}")
        return out
    entries = read_audio_list(args.cohort, args.root)
    features.load([p for _, p in entries], desc="cohort")
    usable = [(k, p) for k, p in entries if p in features.features]
    if len(usable) < 3:
        raise CommandError(f"{args.cohort}: only {len(usable)} usable cohort recordings (need at least 3)")
    cohort = Cohort.from_features(ubm, [k for k, _ in usable], [features.features[p] for _, p in usable],
                                  relevance_factor=args.relevance_factor, adapt=args.adapt, top_c=args.top_c)
    out = normalise(args.norm, pairs, scores, models, features.get, cohort, top_n=args.cohort_size)
    _say(args, f"{args.norm}-norm with {len(cohort)} cohort recordings from {args.cohort}")
    return out


def add_eval_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("calibration and thresholds")
    g.add_argument("--calibration", metavar="JSON",
                   help="apply this calibration (speaker calibrate) before Cllr and the actual DCF")
    g.add_argument("--calibrated", action="store_true",
                   help="the scores are already calibrated LLRs: report the actual DCF at the Bayes threshold")
    g.add_argument("--p-target", type=_prob, default=0.01, metavar="P",
                   help="operating point of the actual DCF (default 0.01, costs 1)")
    g.add_argument("--target-far", type=_prob, default=0.01, metavar="F",
                   help="report the threshold whose false-accept rate is at most F (default 0.01)")


def eval_metrics(args, scores, labels) -> dict:
    """What ``speaker eval`` adds: Cllr, minCllr, actual DCF, thresholds at the EER and at --target-far."""
    from ..calibration import calibration_metrics
    cal = _calibration(args)
    m = calibration_metrics(scores, labels, calibration=cal, p_target=args.p_target, target_far=args.target_far)
    if cal is None and not args.calibrated:
        m.pop("act_dcf")                              # raw scores: no Bayes threshold to speak of
    return m


def format_eval(m: dict) -> str:
    lines = [f"{'Cllr' + ('' if m['calibrated'] else ' (scores read as LLRs)'):34s} {m['cllr']:9.4f} bits",
             f"{'minCllr (PAV)':34s} {m['min_cllr']:9.4f} bits"]
    if "act_dcf" in m:
        lines.append(f"{'actual DCF p=%g (Bayes threshold)' % m['act_dcf_params']['p_target']:34s} {m['act_dcf']:9.4f}")
    lines.append(f"{'threshold at the EER':34s} {m['threshold_eer']:9.4f}  (miss {100 * m['threshold_eer_p_miss']:.2f} %, "
                 f"false accept {100 * m['threshold_eer_p_fa']:.2f} %)")
    lines.append(f"{'threshold at false accept <= %g %%' % (100 * m['target_far']):34s} {m['threshold_far']:9.4f}  "
                 f"(miss {100 * m['threshold_far_p_miss']:.2f} %, false accept {100 * m['threshold_far_p_fa']:.2f} %)")
    return "\n" + "\n".join(lines)


# ---------------------------------------------------------------------------- new commands
def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _removed(args, n: int, left: int, unknown: list, what: str) -> int:
    """--remove's summary; exit 1 (after removing the others) when some ids were unknown."""
    _say(args, f"removed {n} {what}(s); {left} left")
    if unknown:
        raise CommandError(f"unknown {what}(s): {', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''}")
    return 0


def _printed_json(args, rows) -> bool:
    """With --json: print the rows (NamedTuples) as a JSON list and say so."""
    if args.json:
        print(json.dumps([r._asdict() for r in rows], indent=2))
    return bool(args.json)


def cmd_speakers(args) -> int:
    store = _open(args)
    if args.remove:
        unknown = [i for i in args.remove if i not in store]
        for i in args.remove:
            if i in store:
                store.remove(i)
        return _removed(args, len(args.remove) - len(unknown), len(store), unknown, "speaker")
    rows = store.speakers()
    if _printed_json(args, rows):
        return 0
    stamp = _utc
    print(f"{'id':20s} {'recordings':>10s} {'frames':>9s}  {'enrolled at':20s}  {'updated at':20s}")
    for r in rows:
        print(f"{r.id:20s} {r.n_recordings:10d} {r.n_frames:9d}  {stamp(r.enrolled_at):20s}  {stamp(r.updated_at):20s}"
              + ("  (imported model)" if r.kind == "model" else ""))
    _say(args, f"{len(rows)} speaker(s) in {args.store}")
    return 0


def _decide_kwargs(args, store) -> dict:
    return dict(threshold=args.threshold, p_target=args.p_target, c_miss=args.c_miss, c_fa=args.c_fa,
                calibration=_calibration(args, store))


def cmd_verify(args) -> int:
    from ..audio import AudioError
    store = _open(args)
    if args.speaker not in store:
        raise CommandError(f"{args.store}: no speaker {args.speaker!r}")
    kw = _decide_kwargs(args, store)
    failed = 0
    for f in args.files:
        try:
            r = store.verify(args.speaker, f, **kw)
        except (ValueError, OSError, AudioError) as exc:
            failed += 1
            print(f"{f}: not scored: {exc}", file=sys.stderr)
            continue
        print(f"{args.speaker} {f} {r.score:.6f} {'accept' if r.accept else 'reject'}"
              + (f" {r.llr:.6f}" if r.llr is not None else ""), flush=True)
    if failed:
        raise CommandError(f"{failed} of {len(args.files)} file(s) could not be scored")
    return 0


def cmd_identify(args) -> int:
    from ..audio import AudioError
    store = _open(args)
    if not len(store):
        raise CommandError(f"{args.store}: no speakers enrolled")
    kw = _decide_kwargs(args, store)
    cal = kw["calibration"]
    failed = 0
    for f in args.files:
        try:
            hits = store.identify(f, args.top, **kw)
        except (ValueError, OSError, AudioError) as exc:
            failed += 1
            print(f"{f}: not scored: {exc}", file=sys.stderr)
            continue
        items = [f"{i} {s:.6f}" + (f" {cal.llr(s):.6f}" if cal is not None and args.threshold is None else "")
                 for i, s in hits]
        print(f"{f} " + (" ".join(items) if items else "none"), flush=True)
    if failed:
        raise CommandError(f"{failed} of {len(args.files)} file(s) could not be scored")
    return 0


def cmd_calibrate(args) -> int:
    import numpy as np
    from .._atomic import write_text_atomic
    from ..calibration import calibration_metrics, fit_calibration
    from ..lists import read_scores, read_trials
    if not args.out and not args.store:
        raise CommandError("give --out JSON and/or --store DB (where to keep the calibration)")
    _, trials = read_trials(args.trials, args.root)
    scores = read_scores(args.scores)
    pairs = [(scores[(t.model, t.test)], t.label) for t in trials
             if t.label is not None and (t.model, t.test) in scores]
    if not pairs:
        raise CommandError("no labelled trial has a score")
    s, lab = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=bool)
    if lab.all() or not lab.any():
        raise CommandError("calibration needs scored target and non-target trials")
    cal = fit_calibration(s, lab, prior=args.prior)
    if args.out:
        write_text_atomic(args.out, cal.to_json() + "\n")
    if args.store:
        _open(args).calibration = cal
    m = calibration_metrics(s, lab, calibration=cal, p_target=args.prior)
    _say(args, f"calibration llr = {cal.a:.6g} * score + {cal.b:.6g} at prior {cal.prior:g} from {len(s)} trials "
               f"({lab.sum()} target); Cllr {m['cllr']:.4f} bits after (minCllr {m['min_cllr']:.4f}) -> "
               + " and ".join(x for x in (args.out, args.store and f"the store {args.store}") if x))
    return 0


def cmd_export(args) -> int:
    if Path(args.out).exists() and not args.overwrite:
        raise CommandError(f"{args.out} exists; give --overwrite to replace it")
    store = _open(args)
    missing = [i for i in (args.speaker or []) if i not in store]
    if missing:
        raise CommandError(f"{args.store}: no speaker(s) {', '.join(missing)}")
    ids = store.export(args.out, args.speaker or None)
    _say(args, f"exported {len(ids)} speaker model(s) -> {args.out}")
    return 0


def cmd_import(args) -> int:
    from ..store import SpeakerStore
    store = SpeakerStore(args.store, args.ubm, create=bool(args.ubm))
    ids = store.import_models(args.models, replace=args.replace)
    _say(args, f"imported {len(ids)} speaker model(s) from {args.models} into {args.store} "
               "(models without statistics: they cannot be extended, only replaced)")
    return 0


def register(sub, *, run: argparse.ArgumentParser, root: argparse.ArgumentParser) -> None:
    """Add ``speakers``, ``verify``, ``identify``, ``calibrate``, ``export`` and ``import`` to ``sub``
    (the subparsers of :func:`speaker.cli.build_parser`); ``run``/``root`` are its parent parsers."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", required=True, metavar="DB|URL", help=STORE_HELP)

    s = sub.add_parser("speakers", parents=[store, run], help="list or remove the speakers of a store",
                       description="List the store's speakers (id, recordings, frames, enrolled at, updated at; "
                                   "times in UTC), or remove some.")
    s.add_argument("--remove", nargs="+", metavar="ID", help="remove these speakers")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_speakers)

    s = sub.add_parser("verify", parents=[store, run], help="is this recording speaker ID?",
                       description="Score each FILE against one enrolled speaker and decide. Prints one line per "
                                   "file: 'ID FILE score accept|reject', plus the calibrated LLR when a calibration is "
                                   "set. Exit 0 when every file was scored. " + DECISION_HELP)
    s.add_argument("--speaker", required=True, metavar="ID", help="the claimed speaker")
    s.add_argument("files", nargs="+", metavar="FILE", help="audio (or .npy / ark:offset features) to verify")
    _decision_options(s)
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("identify", parents=[store, run], help="who among the enrolled speakers is this?",
                       description="Open-set identification: for each FILE, the --top N best-scoring speakers that pass "
                                   "the decision (one line 'FILE ID score [llr] ...'), or 'FILE none'. " + DECISION_HELP)
    s.add_argument("files", nargs="+", metavar="FILE", help="audio (or .npy / ark:offset features) to identify")
    s.add_argument("--top", type=_count, default=1, metavar="N", help="how many speakers to list per file (default 1)")
    _decision_options(s)
    s.set_defaults(func=cmd_identify)

    s = sub.add_parser("calibrate", parents=[root, run], help="fit a score calibration on development trials",
                       description="Fit llr = a * score + b by prior-weighted logistic regression (Brummer, BOSARIS) on "
                                   "the scores of labelled development trials, so that scores become log-likelihood "
                                   "ratios and decisions can be taken at the Bayes threshold of any prior and costs. "
                                   "Development trials must be disjoint from evaluation trials and resemble the use.")
    s.add_argument("--scores", required=True, metavar="TXT", help="development scores (speaker score)")
    s.add_argument("--trials", required=True, metavar="TRIALS", help="the development trials, with labels")
    s.add_argument("--out", metavar="JSON", help="write the calibration here")
    s.add_argument("--store", metavar="DB|URL",
                   help="keep the calibration in this store (used by verify / identify): a SQLite file or a URL")
    s.add_argument("--prior", "--p-target", dest="prior", type=_prob, default=0.5, metavar="P",
                   help="training prior of the logistic regression (default 0.5)")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("export", parents=[store, run], help="write the store's speaker models to a models.npz",
                       description="Export speaker models (MAP from the stored statistics) to a model file usable "
                                   "with 'speaker score --models'.")
    s.add_argument("--out", required=True, metavar="NPZ", help="speaker models file to write")
    s.add_argument("--speaker", nargs="+", metavar="ID", help="only these speakers (default all)")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("import", parents=[store, run], help="add the speaker models of a models.npz to a store",
                       description="Import speaker models adapted from the store's UBM. They have no statistics: "
                                   "they can be scored, exported and removed, and replaced by a new enrolment, but "
                                   "not extended.")
    s.add_argument("--models", required=True, metavar="NPZ", help="speaker models (speaker enroll --out)")
    s.add_argument("--ubm", metavar="NPZ", help="create the store with this UBM if it does not exist")
    s.add_argument("--replace", action="store_true", help="replace speakers already in the store")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("cohort", parents=[store, root, run], help="keep a score-normalisation cohort in a store",
                       description="The cohort of 'speaker score --store DB --norm {z,t,zt,s,as}' when --cohort is "
                                   "not given: recordings of speakers who are not in the trials (e.g. a held-back part "
                                   "of the UBM list). --add extracts each recording's features and UBM statistics "
                                   "once and keeps them in the store (recordings already in it, by id or content, are "
                                   "skipped); without an action, lists the cohort (id, frames, added at, source).")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--add", metavar="LIST", help="add these recordings (audio list: 'path' or 'id path' lines)")
    g.add_argument("--remove", nargs="+", metavar="ID", help="remove these cohort recordings")
    g.add_argument("--clear", action="store_true", help="remove the whole cohort")
    s.add_argument("--json", action="store_true", help="list as JSON")
    s.set_defaults(func=cmd_cohort)


def cmd_cohort(args) -> int:
    """``speaker cohort``: add to, remove from, clear or list the store's cohort."""
    from ..lists import read_audio_list
    from ._common import report_skipped, store as feature_store
    store = _open(args)
    if args.add:
        entries = read_audio_list(args.add, args.root)
        with feature_store(args, store.config, dim=store.D) as fs:
            fs.load([p for _, p in entries], desc="cohort")
        report_skipped(args, fs.errors)
        usable = [(k, p) for k, p in entries if p in fs.features]
        res = store.add_cohort(usable, features=fs.get)
        for k, why in list(res.skipped.items())[:50]:
            print(f"  {k}: not added: {why}", file=sys.stderr)
        _say(args, f"added {len(res.added)} cohort recording(s) from {args.add}; the cohort of {args.store} has "
                   f"{res.n_recordings}")
        if args.strict and (fs.errors or any(not w.startswith("already") for w in res.skipped.values())):
            raise CommandError("--strict: some cohort recordings could not be added")
        return 0
    if args.remove or args.clear:
        have = {r.id for r in store.cohort_info()}
        n = store.remove_cohort(None if args.clear else args.remove)
        unknown = [] if args.clear else [i for i in dict.fromkeys(args.remove) if i not in have]
        return _removed(args, n, len(store.cohort_info()), unknown, "cohort recording")
    rows = store.cohort_info()
    if _printed_json(args, rows):
        return 0
    for r in rows:
        print(f"{r.id} {r.n_frames} {_utc(r.added_at)} {r.source}")
    _say(args, f"{len(rows)} cohort recording(s) in {args.store}")
    return 0
