"""``speaker enroll``: speaker models by MAP adaptation of the UBM."""
from __future__ import annotations

import sys

from .. import _guards
from ._common import (JobError, add_overwrite, check_outputs, check_speaker_ids, check_strict, feature_cache, gate,
                      load_ubm, open_store, progress, report_skipped, say)
from ._options import float_option
from ._ivec import add_backend_options

NAME = "enroll"
#: The defaults of --min-speech / --min-speaker-speech (speaker.quality's; a test checks they agree).
DEFAULT_RECORDING_SPEECH, DEFAULT_SPEAKER_SPEECH = 1.0, 10.0


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.root, parents.adapt, parents.run], help="enrol speakers by MAP adaptation",
                       description="Adapt the UBM to each speaker. ENROLL has lines 'speaker_id path [path ...]'. "
                                   "Features use the configuration stored in the UBM file.")
    s.add_argument("--ubm", required=True, metavar="NPZ", help="UBM file from 'speaker train-ubm'")
    s.add_argument("--enroll", required=True, metavar="ENROLL",
                   help="enrolment list: 'speaker_id path [path ...]' per line")
    s.add_argument("--out", metavar="NPZ", help="speaker models file to write (or --store)")
    add_overwrite(s)
    s.add_argument("--scp", metavar="SCP", help="Kaldi wav.scp mapping utterance ids used in ENROLL to paths")
    add_enroll_options(s)
    add_backend_options(s)
    s.set_defaults(func=run)


def add_enroll_options(p) -> None:
    g = p.add_argument_group("speaker store (docs/store.md)")
    g.add_argument("--store", metavar="DB|URL",
                   help="enrol into this speaker store instead of writing --out (a SQLite file path or a database "
                        "URL, sqlite:///FILE or postgresql://user@host/dbname): created on first use, bound to "
                        "the UBM; listed speakers are added, or extended with the new recordings (already "
                        "enrolled recordings are skipped)")
    g.add_argument("--replace", action="store_true", help="with --store: start the listed speakers over")
    g.add_argument("--min-speech", type=float_option(0.0, 3600.0), metavar="SECONDS",
                   help="with --store: refuse a recording with less net speech (after VAD) than this (default "
                        f"{DEFAULT_RECORDING_SPEECH:g} s; docs/quality.md)")
    g.add_argument("--min-speaker-speech", type=float_option(0.0, 36000.0), metavar="SECONDS",
                   help="with --store: refuse a speaker whose recordings hold less net speech than this in all "
                        f"(default {DEFAULT_SPEAKER_SPEECH:g} s). Clipped recordings (over 1 %% of the samples in flat "
                        "runs at the peak) and noise-only ones (SNR estimate under 5 dB) are refused too (docs/quality.md)")


def enroll_into_store(args, ubm, config, spk_files: dict, features) -> int:
    """``speaker enroll --store``: the listed speakers' readable files into the store.

    ``features`` is the command's FeatureCache (features already extracted, errors reported).
    """
    from ..features import FeatureConfig
    from ..store import EnrolmentRefused, StoreError, StoreUnavailable
    try:
        store = open_store(args, ubm, create=True, config=config or FeatureConfig(),
                           relevance_factor=args.relevance_factor, adapt=args.adapt)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    with store:
        if (store.relevance_factor, store.adapt) != (args.relevance_factor, args.adapt):
            say(args, f"note: {args.store} derives models with relevance factor {store.relevance_factor:g}, adapt "
                      f"{store.adapt!r} (set when it was created); --relevance-factor/--adapt are not used")
        done, empty, dup, added, refused = 0, [], 0, 0, 0
        g = gate(args, store)
        enrolled: list[str] = []        # committed, each in its own transaction
        try:
            for spk, files in spk_files.items():
                paths = [p for _, p in files if p in features.features]
                if not paths:
                    empty.append(spk)
                    continue
                try:
                    res = store.enroll(spk, paths, replace=args.replace, features=features.get, gate=g)
                    enrolled.append(spk)
                except EnrolmentRefused as exc:
                    refused += _report_refused(exc.result)
                    empty.append(spk)
                    print(f"{exc}", file=sys.stderr)
                    continue
                except StoreUnavailable as exc:            # every other speaker would fail the same way
                    raise JobError(f"the store cannot be written ({exc}); nothing more was enrolled"
                                   + (f" ({done} speaker(s) were)" if done else "")) from None
                except StoreError as exc:
                    empty.append(spk)
                    print(f"speaker {spk}: {exc}", file=sys.stderr)
                    continue
                refused += _report_refused(res)
                dup += sum(1 for why in res.skipped.values() if why.startswith("already enrolled"))
                added += len(res.added)
                done += 1
        except KeyboardInterrupt:
            # the interrupted speaker's transaction is rolled back; the ones before it stay
            if enrolled:
                print(f"speaker enroll: {len(enrolled)} speaker(s) were enrolled into {args.store} before the "
                      f"interrupt ({', '.join(enrolled[:5])}{', ...' if len(enrolled) > 5 else ''}); the others "
                      "were not", file=sys.stderr)
            raise
        if empty:
            print(f"not enrolled: {', '.join(empty)}", file=sys.stderr)
            if args.strict:
                raise JobError(f"--strict: {len(empty)} speaker(s) could not be enrolled")
        if refused and args.strict:
            raise JobError(f"--strict: {refused} recording(s) were refused by the quality gates")
        if not done:
            raise JobError("no speaker could be enrolled")
        say(args, f"enrolled {done} speaker(s), {added} new recording(s), into {args.store} ({len(store)} in the store"
                  f"{f'; {dup} recording(s) already enrolled were skipped' if dup else ''})")
        return 0


def _report_refused(res) -> int:
    """The recordings the quality gates refused, one line each on stderr; how many."""
    for src, code in res.refused.items():
        print(f"{src}: refused ({code.replace('_', ' ')}): {res.skipped[src]}", file=sys.stderr)
    return len(res.refused)


def adapt_all(args, ubm, speakers: dict) -> dict:
    """{speaker: MAP-adapted model} of ``{speaker: [feature arrays]}``, reporting progress."""
    from ..adapt import map_adapt_many
    return map_adapt_many(ubm, speakers, relevance_factor=args.relevance_factor, adapt=args.adapt,
                          progress=progress(args))


def run(args) -> int:
    if args.backend != "gmm":
        from ._ivec import enroll_ivectors
        return enroll_ivectors(args)
    from ..lists import read_enroll_list, read_scp
    from ..model_io import save_model
    if bool(args.out) == bool(args.store):
        raise JobError("give either --out NPZ (a model file) or --store DB (a speaker store)")
    ubm, config = load_ubm(args.ubm)
    scp = read_scp(args.scp) if args.scp else None
    spk_files = read_enroll_list(args.enroll, args.root, scp)
    check_speaker_ids(args.enroll, spk_files)
    inputs = [("UBM", args.ubm), ("enrolment list", args.enroll), ("scp", args.scp)] + [
        ("listed file", p) for f in spk_files.values() for _, p in f]
    _guards.refuse_inputs_as_outputs({"--store": args.store}, inputs)
    check_outputs(args, {"--out": args.out}, inputs)
    with feature_cache(args, config, dim=ubm.means_.shape[1]) as fc:
        fc.load([p for files in spk_files.values() for _, p in files], desc="features")
    report_skipped(args, fc.errors)
    check_strict(args, fc.errors)
    if args.store:                                                  # speaker store: docs/store.md
        return enroll_into_store(args, ubm, config, spk_files, fc)
    feats = {spk: [fc.features[p] for _, p in files if p in fc.features] for spk, files in spk_files.items()}
    empty = [spk for spk, f in feats.items() if not f]
    models = adapt_all(args, ubm, {spk: f for spk, f in feats.items() if f})
    if empty:
        print(f"not enrolled (no usable audio): {', '.join(empty)}", file=sys.stderr)
        check_strict(args, dict.fromkeys(empty))
    if not models:
        raise JobError("no speaker could be enrolled")
    save_model(args.out, models, ubm=ubm, config=config, overwrite=args.overwrite)
    say(args, f"enrolled {len(models)} speaker(s) (relevance factor {args.relevance_factor:g}, "
              f"adapt {args.adapt!r}) -> {args.out}")
    return 0
