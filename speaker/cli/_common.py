"""What the commands share: errors, messages, the feature store, shared options.

Only the standard library and light ``speaker`` modules are imported here, so that building
the parser (``speaker --help``) stays quick; each command imports what it computes with.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

from .. import _guards


class JobError(Exception):
    """The job cannot produce a useful result (exit code 1)."""


def say(args, msg: str) -> None:
    """A summary line on stderr (not with --quiet)."""
    if not args.quiet:
        print(msg, file=sys.stderr)


def progress(args) -> bool:
    """Whether long steps report progress (a bar on a terminal, else a line every few seconds)."""
    return not args.quiet


def report_skipped(args, errors: dict, what: str = "file") -> None:
    """The skipped inputs on stderr (:func:`speaker._guards.report_skipped`, a ``--root`` hint)."""
    _guards.report_skipped(errors, what, root=_guards.list_root(args))


def check_strict(args, errors: dict) -> None:
    if errors and args.strict:
        raise JobError(f"--strict: {len(errors)} input(s) could not be used")


def store(args, config, dim: int | None = None):
    """The command's FeatureStore: one pool of ``--jobs`` warmed-up workers (use it in ``with``);
    ``dim``: the model's feature dimension (sources with another one are skipped)."""
    from ..featstore import FeatureStore
    return FeatureStore(config, cache_dir=args.cache, jobs=args.jobs, progress=progress(args), dim=dim)


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


def at_least(lo, kind=int):
    """argparse type: a ``kind`` number >= ``lo``."""
    def parse(v):
        try:
            x = kind(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {v!r}") from None
        if not x >= lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return x
    return parse


@dataclasses.dataclass
class Parents:
    """Option groups several commands share (argparse parent parsers)."""

    run: argparse.ArgumentParser
    root: argparse.ArgumentParser
    feat: argparse.ArgumentParser
    adapt: argparse.ArgumentParser


def parents() -> Parents:
    run = argparse.ArgumentParser(add_help=False)
    g = run.add_argument_group("running")
    g.add_argument("--jobs", type=_guards.int_option(1, _guards.max_threads), default=1, metavar="N",
                   help="processes for feature extraction (default 1)")
    g.add_argument("--cache", metavar="DIR", help="cache extracted features here (reused across commands)")
    g.add_argument("--quiet", action="store_true", help="no progress reports or summaries")
    g.add_argument("--strict", action="store_true", help="fail (exit 1) if any input had to be skipped")

    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", metavar="DIR", help="resolve relative paths in lists against DIR (default: the list's folder)")

    feat = argparse.ArgumentParser(add_help=False)
    g = feat.add_argument_group("features")
    g.add_argument("--config", metavar="JSON", help="FeatureConfig as JSON (see speaker.FeatureConfig)")
    g.add_argument("--sample-rate", type=_guards.int_option(1000, 384_000), metavar="HZ",
                   help="analysis sample rate, 1000 to 384000 (default 16000; 8000 for telephone audio)")

    adapt = argparse.ArgumentParser(add_help=False)
    g = adapt.add_argument_group("MAP adaptation")
    g.add_argument("--relevance-factor", type=_guards.float_option(0.0, 1e6, lo_open=True), default=16.0, metavar="R",
                   help="relevance factor r > 0 (default 16)")
    g.add_argument("--adapt", choices=["m", "mw", "mv", "mwv", "w", "v", "wv"], default="m",
                   help="adapt means (m), weights (w), variances (v) (default m)")
    return Parents(run, root, feat, adapt)


@contextlib.contextmanager
def resume_hint(command: str, checkpoint, read_checkpoint):
    """On Ctrl-C inside the block, say how far the checkpoint got and how to resume."""
    import sys
    try:
        yield
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            ck = read_checkpoint(checkpoint)
            print(f"speaker {command}: checkpoint {checkpoint} holds {ck['done']} of {ck['total']} EM passes; "
                  "run the same command with --resume to continue", file=sys.stderr)
        raise
