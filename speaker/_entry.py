"""The console script's entry point: Ctrl-C and SIGTERM are handled from the first instant.

Importing the command line loads numpy, scipy, librosa and gmmext (a second or more); a signal
during those imports would print a traceback.  This module (imported with the light
``speaker`` package only) first installs handlers that end the process at once with exit code
130 (SIGINT) or 143 (SIGTERM) and a one-line message (nothing has been written yet), then
imports :mod:`speaker.cli`, whose ``main`` installs the full handlers of :mod:`speaker._interrupt`.

``pip install gmmext`` installs the GMM core only: without the ``speaker`` extra, every command
(``--version`` aside) exits with code 1 and one line naming what to install, before anything of the
speech stack is imported (:func:`speaker._dist.install_hint`).
"""
from __future__ import annotations

import os
import signal
import sys


_stopping: list[int] = []


def _early(signum, frame):  # pragma: no cover - runs in the child process of the tests
    if _stopping:                # a second signal while the first one's line is written: one line
        return
    _stopping.append(signum)
    os.write(2, b"speaker: interrupted while starting; nothing was written\n")
    os._exit(143 if signum == signal.SIGTERM else 130)


def main(argv: list[str] | None = None) -> int:
    """Install the early handlers, import the command line and run it."""
    signal.signal(signal.SIGINT, _early)
    signal.signal(signal.SIGTERM, _early)
    from . import _dist
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        print(_dist.version_line())
        return 0
    hint = _dist.install_hint("speaker")
    if hint is not None:
        print(hint, file=sys.stderr)
        return 1
    from .cli import main as cli_main
    return cli_main(argv, exiting=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
