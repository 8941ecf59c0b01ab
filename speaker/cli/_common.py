"""What the commands share: errors, messages, the feature cache, shared options, the speaker
store's option texts and the decision options of ``verify``, ``identify`` and ``serve``.

Only the standard library and light ``speaker`` modules are imported here, so that building
the parser (``speaker --help``) stays quick; each command imports what it computes with.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

from .. import _guards, _reasons
from ..limits import MAX_COMPONENTS
from ._options import components, float_option, int_option, max_threads, positive, prob


class JobError(Exception):
    """The job cannot produce a useful result (exit code 1)."""


def say(args, msg: str) -> None:
    """A summary line on stderr (not with --quiet)."""
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def progress(args) -> bool:
    """Whether long steps report progress (a bar on a terminal, else a line every few seconds)."""
    return not args.quiet


def report_skipped(args, errors: dict, what: str = "file") -> None:
    """The skipped inputs on stderr (:func:`speaker._reasons.report_skipped`, a ``--root`` hint)."""
    _reasons.report_skipped(errors, what, root=list_root(args))


def list_root(args) -> str | None:
    """The folder relative list paths were resolved against: ``--root``, else the list's own."""
    if getattr(args, "root", None):
        return args.root
    for name in ("list", "enroll", "trials"):
        lst = getattr(args, name, None)
        if lst:
            return os.path.dirname(os.path.abspath(lst))
    return None


def add_overwrite(p, what: str = "--out") -> None:
    """The ``--overwrite`` option of a command that writes files."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"let {what} replace an existing file (without it the command refuses before any work; "
                        "a FIFO or a device such as /dev/null is written into, never replaced)")


def store_file(location):
    """The SQLite file of a ``--store`` location (None: a PostgreSQL URL), as an input to protect."""
    from .._sql import store_location
    return store_location(location)[2]


def check_outputs(args, outputs: dict, inputs=(), pairs=()) -> None:
    """Before any work: the command's ``outputs`` ({option: path}) are not its ``inputs`` and can be
    written (:func:`speaker._guards.check_outputs`: an existing file needs ``--overwrite``)."""
    _guards.check_outputs(outputs, inputs, overwrite=getattr(args, "overwrite", False), pairs=pairs)


def refuse_old_checkpoint(args, checkpoint) -> None:
    """A checkpoint left by an interrupted run is continued (``--resume``) or replaced
    (``--overwrite``), never silently restarted over; it must be a regular file."""
    from .._atomic import output_problem
    why = output_problem(checkpoint, overwrite=args.resume or args.overwrite, streams=False)
    if why is not None:
        raise JobError(f"--checkpoint {why}" if "exists" not in why else
                       f"checkpoint {checkpoint} exists (left by an interrupted run): give --resume to continue "
                       "it, or --overwrite to start afresh")


def check_speaker_ids(where, ids) -> None:
    """Before any work: every speaker id of a list follows the one id rule
    (:func:`speaker.limits.speaker_id_problem`), else one line naming the first bad one."""
    from ..limits import speaker_id_problem
    bad = [i for i in ids if speaker_id_problem(i) is not None]
    if bad:
        raise JobError(f"{where}: {speaker_id_problem(bad[0])}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1
                                                                   else ""))


def check_strict(args, errors: dict, trials: dict | None = None) -> None:
    """With ``--strict``, stop (before any output) when an input file could not be used
    (``errors``) or a trial was skipped (``trials``), each counted as what it is."""
    trials = trials or {}
    if (errors or trials) and args.strict:
        parts = ([f"{len(errors)} input(s) could not be used"] if errors else []) + \
                ([f"{len(trials)} trial(s) were skipped"] if trials else [])
        raise JobError("--strict: " + " and ".join(parts))


def feature_cache(args, config, dim: int | None = None):
    """The command's feature cache (FeatureCache): one pool of ``--jobs`` warmed-up workers (use it in ``with``);
    ``dim``: the model's feature dimension (sources with another one are skipped)."""
    from ..featcache import FeatureCache
    return FeatureCache(config, cache_dir=args.cache, jobs=args.jobs, progress=progress(args), dim=dim)


def feature_config(args):
    from ..features import MAX_JSON_BYTES, FeatureConfig
    config = FeatureConfig()
    if args.config:
        try:
            config = FeatureConfig.from_json(_guards.read_small_text(args.config, MAX_JSON_BYTES))
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            raise JobError(f"{args.config}: bad feature configuration: {exc}") from None
    if args.sample_rate is not None:
        changes = {"sample_rate": args.sample_rate}
        if config.fmax is not None and config.fmax > args.sample_rate / 2:
            changes["fmax"] = None
        config = dataclasses.replace(config, **changes)
    return config


def load_ubm(path):
    """(UBM, FeatureConfig) of a UBM file."""
    from ..features import FeatureConfig
    from ..model_io import load_model
    mf = load_model(path)
    if mf.kind != "ubm":
        raise JobError(f"{path}: holds speaker models, not a UBM")
    return mf.ubm, (mf.config or FeatureConfig())


@dataclasses.dataclass
class Parents:
    """Option groups several commands share (argparse parent parsers)."""

    run: argparse.ArgumentParser
    root: argparse.ArgumentParser
    feat: argparse.ArgumentParser
    adapt: argparse.ArgumentParser
    store: argparse.ArgumentParser


def parents() -> Parents:
    run = argparse.ArgumentParser(add_help=False)
    g = run.add_argument_group("running")
    g.add_argument("--jobs", type=int_option(1, max_threads), default=1, metavar="N",
                   help="processes for feature extraction (default 1)")
    g.add_argument("--cache", metavar="DIR", help="cache extracted features here (reused across commands)")
    g.add_argument("--quiet", action="store_true", help="no progress reports or summaries")
    g.add_argument("--strict", action="store_true", help="fail (exit 1) if any input had to be skipped")

    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", metavar="DIR", help="resolve relative paths in lists against DIR (default: the list's folder)")

    feat = argparse.ArgumentParser(add_help=False)
    g = feat.add_argument_group("features")
    g.add_argument("--config", metavar="JSON", help="FeatureConfig as JSON (see speaker.FeatureConfig)")
    g.add_argument("--sample-rate", type=int_option(1000, 384_000), metavar="HZ",
                   help="analysis sample rate, 1000 to 384000 (default 16000; 8000 for telephone audio)")

    adapt = argparse.ArgumentParser(add_help=False)
    g = adapt.add_argument_group("MAP adaptation")
    g.add_argument("--relevance-factor", type=float_option(0.0, 1e6, lo_open=True), default=16.0, metavar="R",
                   help="relevance factor r > 0 (default 16)")
    g.add_argument("--adapt", choices=["m", "mw", "mv", "mwv", "w", "v", "wv"], default="m",
                   help="adapt means (m), weights (w), variances (v) (default m)")

    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", required=True, metavar="DB|URL", help=STORE_HELP)
    return Parents(run, root, feat, adapt, store)


@contextlib.contextmanager
def resume_hint(command: str, checkpoint):
    """On Ctrl-C inside the block, say how far the checkpoint got and how to resume (its two
    counters are read, not its arrays)."""
    import sys
    try:
        yield
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            from .._npz import checkpoint_progress
            done, total = checkpoint_progress(checkpoint)
            print(f"speaker {command}: checkpoint {checkpoint} holds {done} of {total} EM passes; "
                  "run the same command with --resume to continue", file=sys.stderr)
        raise


# ---------------------------------------------------------------------------- the speaker store
#: What every --store option says it takes.
STORE_HELP = ("the speaker store: a SQLite file path, or a database URL: sqlite:///speakers.db, "
              "postgresql://user@host/dbname (several machines sharing one store; pip install '.[postgres]')")

DECISION_HELP = (
    "How the decision is taken. No accept without a calibration or a threshold: with neither, scores are printed "
    "with the decision 'undecided' and the command exits with status 3. With a calibration (kept in the store by "
    "'speaker calibrate --store DB --from-enrollments' or on development trials, or --calibration FILE): "
    "--target-far F accepts at the false-accept rate F measured on the calibration's non-target trials; otherwise "
    "the Bayes threshold log(c_fa (1 - p_target) / (c_miss p_target)) on the calibrated LLR, from the prior "
    "probability that a claim is genuine (--p-target, default the prior the calibration was fitted at) and the "
    "costs of a false reject and a false accept (--c-miss, --c-fa): a voice login that must rarely let impostors "
    "in takes a small --p-target (0.01) or a large --c-fa. Without a calibration, --threshold T on the raw score "
    "(e.g. 'speaker eval --target-far F' on development trials prints it). A test with less net speech than "
    "--min-test-speech is 'undecided' (insufficient speech), never accepted.")

#: Exit status of verify / identify when every file was scored but some got no decision.
EXIT_UNDECIDED = 3

def open_store(args, ubm=None, create: bool = False, **options):
    """The speaker store of ``--store`` (bound to ``ubm`` when given; ``options`` go to SpeakerStore).

    A store bound to another UBM is a :class:`JobError` that says how to find out which UBM is the
    store's (``speaker store-info``)."""
    from ..store import NoSuchStore, SpeakerStore, UBMMismatchError
    try:
        return SpeakerStore(args.store, ubm, create=create, top_c=getattr(args, "top_c", None), **options)
    except NoSuchStore as exc:
        if ubm is not None:
            raise
        how = ("give --ubm UBM to create it" if hasattr(args, "ubm") else
               "'speaker enroll --ubm UBM --enroll LIST --store ...' creates it")
        raise JobError(str(NoSuchStore(exc.path, exc.why, how))) from None
    except UBMMismatchError as exc:
        raise JobError(f"{exc}; 'speaker store-info --store {args.store} --ubm FILE ...' tells which UBM file is "
                       "the store's, and its --export-ubm FILE writes the store's UBM") from None


def calibration(args, store=None):
    """The --calibration file's Calibration, else the store's (or None)."""
    from ..calibration import Calibration
    if getattr(args, "calibration", None):
        try:
            return Calibration.from_json(Path(args.calibration).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise JobError(f"{args.calibration}: not a usable calibration: {exc}") from None
    return store.calibration if store is not None else None


#: What --top-c means, in every command that scores.
TOP_C_HELP = ("Gaussian selection, the fast approximate scoring: score each frame with the UBM's C best components "
                f"only (C from 1 to {MAX_COMPONENTS}; 5 is customary). Without --top-c scores are exact (all components). "
                "A calibration or a threshold holds for scores computed the same way: give the same --top-c "
                "to 'speaker score' on the development trials and to verify / identify / serve.")


def add_top_c(p) -> None:
    """The ``--top-c C`` option (``args.top_c``: None = exact scoring, else C >= 1)."""
    p.add_argument("--top-c", dest="top_c", type=components, metavar="C", help=TOP_C_HELP)


def decision_options(p: argparse.ArgumentParser) -> None:
    """--top-c and the decision options (threshold, target false-accept rate, prior, costs,
    calibration, shortest test) of verify / identify / serve."""
    add_top_c(p)
    add_store_backend(p)
    g = p.add_argument_group("decision", DECISION_HELP)
    g.add_argument("--threshold", type=float_option(-1e300, 1e300), metavar="T",
                   help="accept iff the raw score >= T (overrides a calibration)")
    g.add_argument("--target-far", type=prob, metavar="F",
                   help="accept at the false-accept rate F (e.g. 0.01) of the store's calibration, measured on its "
                        "non-target trials (needs a calibration kept with its trials: 'speaker calibrate --store')")
    g.add_argument("--p-target", type=prob, metavar="P",
                   help="prior probability of a genuine claim for the Bayes threshold (needs a calibration; default: "
                        "the prior the calibration was fitted at)")
    g.add_argument("--c-miss", type=positive, default=1.0, metavar="COST", help="cost of rejecting a genuine speaker (default 1)")
    g.add_argument("--c-fa", type=positive, default=1.0, metavar="COST", help="cost of accepting an impostor (default 1)")
    g.add_argument("--calibration", metavar="JSON", help="calibration from 'speaker calibrate' (default: the store's, if any)")
    g.add_argument("--min-test-speech", type=float_option(0.0, 3600.0), metavar="SECONDS",
                   help=f"shortest net speech (after VAD) a test needs for a decision (default {DEFAULT_TEST_SPEECH:g} s); "
                        "a shorter one is 'undecided: insufficient speech'")


#: The back-ends a store scores with (speaker.store_backend.BACKENDS; a test checks they agree).
STORE_BACKENDS = ("gmm", "plda", "cosine", "fusion")


def add_store_backend(p, default: str = "gmm") -> None:
    """``--backend`` of the commands that score a store's speakers."""
    p.add_argument("--backend", choices=STORE_BACKENDS, default=default,
                   help="gmm: MAP-adapted GMM-UBM (default); plda: i-vectors scored by PLDA (by count over the "
                        "speaker's recordings); cosine: i-vectors by cosine similarity; fusion: gmm and plda fused by "
                        "the store's fusion calibration. plda, cosine and fusion need an i-vector back-end bound to "
                        "the store ('speaker backend'); each back-end has its own calibration ('speaker calibrate "
                        "--backend')")


#: ``--min-test-speech``'s default (speaker.quality.MIN_TEST_SPEECH; a test checks they agree).
DEFAULT_TEST_SPEECH = 1.0


def decide_kwargs(args, store) -> dict:
    """The decision keywords of ``SpeakerStore.verify`` / ``identify`` from the decision options
    (``calibration``: the --calibration file's, else None: the store's current one, with its trials);
    a rule that cannot be made (``--target-far`` without a calibration kept with its trials) is
    a JobError, and no rule at all is said once on stderr."""
    kw = dict(threshold=args.threshold, p_target=args.p_target, c_miss=args.c_miss, c_fa=args.c_fa,
              target_far=args.target_far, calibration=calibration(args), gate=gate(args, store),
              backend=getattr(args, "backend", "gmm"))
    try:
        rule = store.decision(**kw)
    except ValueError as exc:
        raise JobError(f"{args.store}: {exc}") from None
    if rule.threshold is None:
        print(f"speaker {args.command}: no decisions, every one is 'undecided' (exit status {EXIT_UNDECIDED}): "
              f"{args.store} has no calibration{'' if kw['backend'] == 'gmm' else ' for --backend ' + kw['backend']} "
              "and no --threshold was given; raw scores >= 0 are not accepted by default any more: calibrate the "
              f"store ('speaker calibrate --store DB{'' if kw['backend'] == 'gmm' else ' --backend ' + kw['backend']} "
              "--from-enrollments') or give a threshold on the raw score, --threshold T ('speaker eval "
              "--target-far F' on development trials prints one)", file=sys.stderr)
    return kw


def gate(args, store):
    """The store's quality gates with the command's --min-speech / --min-speaker-speech /
    --min-test-speech."""
    return store.gate.with_min_speech(getattr(args, "min_speech", None), getattr(args, "min_speaker_speech", None),
                                      getattr(args, "min_test_speech", None))


def as_norm_size(args, n_cohort: int) -> int:
    """AS-norm's number of cohort scores per side (``--cohort-size``, default
    :data:`speaker.score_norm.AS_NORM_TOP_N`, at most the cohort's size); says so on stderr when
    that keeps the whole cohort, i.e. ``--norm as`` is ``--norm s``."""
    from ..score_norm import AS_NORM_TOP_N
    n = AS_NORM_TOP_N if args.cohort_size is None else args.cohort_size
    if n >= n_cohort:
        say(args, f"note: --norm as keeps each side's {n} highest cohort scores but the cohort has {n_cohort} "
                  f"recordings, so it equals --norm s here (give a larger cohort, or --cohort-size below {n_cohort})")
    return min(n, n_cohort)


def utc(t: float) -> str:
    """A UNIX time as ISO 8601 UTC (the JSON's format, :func:`speaker._json.iso_time`)."""
    from .._json import iso_time
    return iso_time(t)


def removed(args, remove, left, what: str) -> int:
    """--remove, all or nothing: ``remove()`` removes in one transaction and returns how many, or
    raises KeyError naming the unknown ids (nothing removed: exit 1, saying so); ``left()`` counts
    what remains."""
    try:
        n = remove()
    except KeyError as exc:
        unknown = [str(u) for u in exc.args]
        raise JobError(f"unknown {what}(s): {', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''}; "
                       f"nothing was removed") from None
    say(args, f"removed {n} {what}(s); {left()} left")
    return 0


def printed_json(args, rows, face) -> bool:
    """With --json: print the rows as a JSON list (``face``: a row's JSON, from :mod:`speaker._json`,
    the field names and ISO 8601 times the HTTP service uses too) and say so."""
    if args.json:
        print(json.dumps([face(r) for r in rows], indent=2))
    return bool(args.json)
