"""The ``speaker`` command line: the GMM-UBM recipe on lists of audio files.

    speaker train-ubm --list ubm.lst --out ubm.npz --components 64
    speaker enroll    --ubm ubm.npz --enroll enroll.txt --out models.npz
    speaker score     --ubm ubm.npz --models models.npz --trials trials.txt --out scores.txt
    speaker eval      --scores scores.txt --trials trials.txt
    speaker demo      # all of the above on the bundled audio fixtures

Exit codes: 0 success, 1 the job failed (message on stderr, no traceback), 2 bad usage,
130 interrupted (Ctrl-C), 141 the reader of an output closed it (``| head``: no message),
143 terminated (SIGTERM).

One module per command (``NAME``, ``add_parser(sub, parents)``, ``run(args)``); a new command
is a new module and one entry of :data:`COMMANDS`.  Building the parser imports only the
standard library: every command imports numpy, gmmext, librosa, ... inside ``run``, so that
``speaker --help`` starts quickly.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys

from .. import _dist, _guards, _interrupt, _reasons
from .._atomic import WriteError
from ..lists import ListError
from . import (backend, calibrate, cohort, demo, enroll, evaluate, export, extract, extract_ivectors, fuse, identify,
               import_models, make_lists, score, serve, speakers, store_info, train_ivector, train_plda, train_ubm,
               verify)
from ._common import JobError, parents

__all__ = ["main", "build_parser", "JobError", "COMMANDS"]

#: The command modules, in the order ``speaker --help`` lists them.
COMMANDS = (make_lists, train_ubm, enroll, score, evaluate, extract, train_ivector, train_plda, extract_ivectors, serve, demo,
            speakers, verify, identify, backend, calibrate, fuse, export, import_models, cohort, store_info)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="speaker",
        description="GMM-UBM speaker verification: train a UBM, enrol speakers, score trials, evaluate.",
        epilog="Run 'speaker demo' to see the whole recipe on the bundled recordings. "
               "'speaker COMMAND --help' explains each command.")
    p.add_argument("--version", action="version", version=_dist.version_line(),
                   help="print the installed version (gmmext's, which carries speaker) and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    shared = parents()
    for command in COMMANDS:
        command.add_parser(sub, shared)
    # no option is ever abbreviated: '--top 3' must not silently mean '--top-c 3'
    for parser in (p, *sub.choices.values()):
        parser.allow_abbrev = False
    return p


def _job_errors() -> tuple[type[Exception], ...]:
    """Errors reported in one line: a ModelError can only come from an imported model_io."""
    model_io = sys.modules.get("speaker.model_io")
    return (JobError, ListError, _guards.GuardError, WriteError) + ((model_io.ModelError,) if model_io is not None
                                                                      else ())


#: Exit status when the reader of an output went away (``speaker score --out /dev/stdout | head``):
#: 128 + SIGPIPE, what a shell reports for ``cat`` or ``sort`` at the same point, and no message.
EXIT_BROKEN_PIPE = 141


def _reader_gone(exc: BaseException) -> bool:
    """``exc`` is a write to a pipe (standard output, ``--out /dev/stdout``) whose reader closed it."""
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


def _quiet_broken_pipe(exiting: bool) -> int:
    """:data:`EXIT_BROKEN_PIPE`; when the process ends with it (``exiting``), standard output is
    pointed at /dev/null first, so that the interpreter's last flush of what is still buffered for
    the closed pipe does not print a traceback."""
    if exiting:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None, *, exiting: bool = False) -> int:
    """Run one command; its exit status.  ``exiting``: the process ends with that status (the
    console script), so a signal after the command's end is ignored, not a kill during the
    interpreter's shut-down."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.main = main
    try:
        _interrupt.install()     # inside: a signal as the second handler goes in is the first's
        try:
            status = args.func(args)
            if exiting:          # what is still buffered goes now, while a closed pipe is reported
                sys.stdout.flush()
            return status
        except Exception as exc:
            # a Ctrl-C delivered inside a C extension can come out as another error (numpy's
            # ndarray.tofile turns one raised in its os.PathLike check into a TypeError): an error
            # raised once an interrupt was requested is the interrupt's
            _interrupt.check()
            if _reader_gone(exc):
                return _quiet_broken_pipe(exiting)
            raise
    except KeyboardInterrupt as exc:
        if exiting:              # a second Ctrl-C must not cut this line short with a traceback
            _interrupt.ignore()
        what = "terminated (SIGTERM)" if isinstance(exc, _interrupt.Terminated) else "interrupted"
        print(f"speaker {args.command}: {what}; earlier outputs are intact", file=sys.stderr)
        return _interrupt.exit_code(exc)
    except _job_errors() as exc:
        print(f"speaker {args.command}: error: {exc}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"speaker {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - MemoryError, RecursionError, a bug: one line, never a traceback
        print(f"speaker {args.command}: error: {_reasons.describe(exc)}", file=sys.stderr)
    finally:
        if exiting:
            _interrupt.ignore()
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
