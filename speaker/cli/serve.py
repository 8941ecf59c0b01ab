"""``speaker serve``: the speaker store as an HTTP service (:mod:`speaker.serve`, uvicorn).

FastAPI and uvicorn are imported inside :func:`run` (the ``serve`` extra), so that the parser
and ``speaker --help`` stay as quick as before.  The safety checks that need no heavy module
(a non-loopback ``--host`` without ``--api-key-file``, the key file) run first.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import sys

from .. import _guards
from ._common import JobError, calibration as calibration_of, decision_options, open_store
from ..limits import MAX_SECONDS
from ._options import float_option, int_option

NAME = "serve"

#: Shortest API key accepted (characters).
MIN_KEY = 16
#: Thread pools of the numerical libraries, one thread each unless the environment says otherwise:
#: the service's parallelism is its worker threads (``--threads``), and a BLAS or OpenMP pool per
#: worker on top of them oversubscribes the cores (4 workers x 2 BLAS threads: 5 times fewer
#: requests per second at 4 clients on the 2-core test machine, benchmarks/results_serve.txt).
ONE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, help="serve enrolment, verification and identification over HTTP",
                       description="Serve the speaker store as a JSON HTTP API (docs/serve.md; OpenAPI at /docs): "
                                   "POST /v1/speakers/ID/enrollments, GET/DELETE /v1/speakers[/ID], "
                                   "POST /v1/speakers/ID/verify, POST /v1/identify?top=N, GET /healthz. "
                                   "Binds 127.0.0.1 by default; any other address needs --api-key-file. "
                                   "SIGTERM drains the requests in flight and exits 0.")
    g = s.add_argument_group("store")
    g.add_argument("--store", required=True, metavar="DB",
                   help="the speaker store (a file, or a database URL where the store supports it); "
                        "created with --ubm if missing")
    g.add_argument("--ubm", metavar="NPZ", help="UBM to create the store with, or to check the store against")
    g = s.add_argument_group("network and safety")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; a non-loopback address is refused without --api-key-file)")
    g.add_argument("--port", type=int_option(0, 65535), default=8000, help="TCP port (default 8000)")
    g.add_argument("--api-key-file", metavar="FILE",
                   help=f"file holding the API key (one line, at least {MIN_KEY} characters): every endpoint but "
                        "/healthz then needs 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    g.add_argument("--max-bytes", type=int_option(1, 1 << 34), default=20 * 1024 * 1024, metavar="N",
                   help="largest request body in bytes (default 20 MB = 20971520); larger: 413")
    g.add_argument("--max-seconds", type=float_option(0.0, MAX_SECONDS, lo_open=True), default=300.0,
                   metavar="S", help="longest upload in seconds of audio (default 300); longer: 413")
    g.add_argument("--threads", type=int_option(1, 256), default=4, metavar="N",
                   help="worker threads for decoding, features and scoring (default 4)")
    g.add_argument("--drain-seconds", type=float_option(0.0, 3600.0), default=30.0, metavar="S",
                   help="on SIGTERM / Ctrl-C, how long requests in flight may still take (default 30)")
    g.add_argument("--quiet", action="store_true", help="log warnings only (no access log)")
    decision_options(s)
    s.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine: ``localhost`` or a loopback IP address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False                                  # a name: it may resolve to anything


def read_key(path: str) -> str:
    """The API key of ``--api-key-file``: its one line, stripped, of at least :data:`MIN_KEY` characters."""
    try:
        key = _guards.read_small_text(path, 4096).strip()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise JobError(f"--api-key-file {path}: cannot read the key: {exc}") from None
    if len(key) < MIN_KEY or any(c.isspace() for c in key) or not key.isprintable():
        raise JobError(f"--api-key-file {path}: the key must be one line of at least {MIN_KEY} printable "
                       "characters without spaces")
    return key


def run(args) -> int:
    if args.api_key_file is None and not is_loopback(args.host):
        raise JobError(f"refusing to serve on {args.host} without --api-key-file: anyone who can reach it could "
                       "enrol, remove and probe speakers (bind 127.0.0.1 or give a key)")
    key = read_key(args.api_key_file) if args.api_key_file else None
    for var in ONE_THREAD_VARS:                       # before numpy is imported (if it is not yet)
        os.environ.setdefault(var, "1")
    try:
        import uvicorn

        from ..serve import ServiceConfig, create_app
    except ImportError as exc:
        raise JobError(f"speaker serve needs the 'serve' extra (pip install 'gmmext[serve]'): {exc}") from None
    calibration = calibration_of(args)
    with open_store(args, args.ubm, create=True) as store:           # closed when the server stops
        if args.p_target is not None and args.threshold is None and calibration is None and store.calibration is None:
            raise JobError("--p-target needs a calibration (--calibration, or one kept in the store)")
        cfg = ServiceConfig(max_bytes=args.max_bytes, max_seconds=args.max_seconds, threads=args.threads,
                            api_key=key, threshold=args.threshold, p_target=args.p_target, c_miss=args.c_miss,
                            c_fa=args.c_fa, calibration=calibration)
        app = create_app(store, cfg)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                                access_log=not args.quiet, timeout_graceful_shutdown=args.drain_seconds,
                                server_header=False, proxy_headers=False, lifespan="on")
        server = _make_server(config)
        server.run()
    if not server.started:
        raise JobError(f"could not start serving on {args.host}:{args.port}")
    print(f"speaker serve: stopped ({_signal_name(server.signals)}); requests in flight were completed",
          file=sys.stderr)
    return 0


def _signal_name(signals: list[int]) -> str:
    return ", ".join(signal.Signals(s).name for s in signals) or "no signal"


def _make_server(config):
    """uvicorn's Server, except that a SIGTERM / SIGINT that stopped it gracefully is not raised
    again afterwards (uvicorn re-raises it, which would make the command exit 143 / 130): a
    drained shutdown is a success, exit 0.  ``server.signals``: the signals received."""
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)

        def _on_signal(self, sig, frame):
            self.signals.append(sig)
            self.handle_exit(sig, frame)

    server = Server(config)
    server.signals = []
    return server
