"""``speaker serve``: the speaker store as an HTTP service (:mod:`speaker.serve`, uvicorn).

FastAPI and uvicorn are imported inside :func:`run` (the ``serve`` extra), so that the parser
and ``speaker --help`` stay as quick as before.  The safety checks that need no heavy module
(a non-loopback ``--host`` without ``--api-key-file``, the key file) run first.
"""
from __future__ import annotations

import ipaddress
import re
import os
import signal
import sys

from .. import _guards
from ..limits import MAX_SECONDS
from ._common import JobError, calibration as calibration_of, decision_options, gate as gate_of, open_store
from ..limits import STORE_CACHE_MB
from ._options import float_option, int_option

NAME = "serve"

#: Shortest API key accepted (characters).
MIN_KEY = 16
#: Most keys a key file may hold, and the rule of a key's name.
MAX_KEYS = 1000
KEY_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
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
    g.add_argument("--cache-mb", type=float_option(0.0, 1 << 20), default=STORE_CACHE_MB, metavar="MB",
                   help=f"memory the open store keeps to score quickly: speakers' models and prepared stacks "
                        f"(default {STORE_CACHE_MB}; about 1-2 MB per speaker at K=512, D=60 for exact scoring); "
                        "beyond it speakers are derived per request: the same scores, slower")
    g = s.add_argument_group("network and safety")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; a non-loopback address is refused without --api-key-file)")
    g.add_argument("--port", type=int_option(0, 65535), default=8000, help="TCP port (default 8000)")
    g.add_argument("--api-key-file", metavar="FILE",
                   help=f"file of API keys, one per line as 'NAME: KEY' (or a single line 'KEY', named 'default'; "
                        f"keys of at least {MIN_KEY} characters; '#' starts a comment): every endpoint but the page, "
                        "/docs, /openapi.json and /healthz then needs 'Authorization: Bearer KEY' or 'X-API-Key: KEY' "
                        "(a WebSocket may give ?api_key=KEY); the log names the key, never shows it")
    g.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let a web page from ORIGIN (e.g. https://app.example.com) call the API (CORS); "
                        "repeatable; none by default")
    g.add_argument("--max-bytes", type=int_option(1, 1 << 34), default=20 * 1024 * 1024, metavar="N",
                   help="largest request body in bytes (default 20 MB = 20971520); larger: 413")
    g.add_argument("--max-seconds", type=float_option(0.0, MAX_SECONDS, lo_open=True), default=300.0,
                   metavar="S", help="longest upload in seconds of audio (default 300); longer: 413")
    g.add_argument("--body-timeout", type=float_option(0.0, 3600.0, lo_open=True), default=60.0, metavar="S",
                   help="seconds a request body may take to arrive (default 60); slower: 408")
    g.add_argument("--head-timeout", type=float_option(0.0, 3600.0, lo_open=True), default=10.0, metavar="S",
                   help="seconds a request's line and headers may take to arrive (default 10); the connection is "
                        "closed after it (idle and half-open connections too)")
    g.add_argument("--max-head-bytes", type=int_option(1024, 1 << 20), default=16 * 1024, metavar="N",
                   help="largest request line + headers in bytes (default 16384); larger: 400, refused while "
                        "being read")
    g.add_argument("--max-connections", type=int_option(1, 1 << 20), default=1000, metavar="N",
                   help="open client connections (HTTP and WebSocket; default 1000); beyond: 503 and closed. The "
                        "soft limit of open files is raised to fit where the hard limit allows")
    g.add_argument("--threads", type=int_option(1, 256), default=4, metavar="N",
                   help="worker threads for decoding, features and scoring (default 4)")
    g.add_argument("--drain-seconds", type=float_option(0.0, 3600.0), default=30.0, metavar="S",
                   help="on SIGTERM / Ctrl-C, how long requests in flight may still take (default 30)")
    g = s.add_argument_group("streaming verification (WebSocket /v1/speakers/ID/verify/stream)")
    g.add_argument("--stream-far", type=float_option(0.0, 0.5, lo_open=True, hi_open=True), default=0.01,
                   metavar="P", help="false-accept rate the early decision aims at (Wald's alpha; default 0.01)")
    g.add_argument("--stream-miss", type=float_option(0.0, 0.5, lo_open=True, hi_open=True), default=0.05,
                   metavar="P", help="miss rate the early decision aims at (Wald's beta; default 0.05)")
    g.add_argument("--stream-min-speech", type=float_option(0.0, 3600.0), default=1.0, metavar="S",
                   help="seconds of speech before an early decision (default 1)")
    g.add_argument("--stream-reference-seconds", type=float_option(0.0, 3600.0, lo_open=True), default=3.0,
                   metavar="S", help="speech per recording of the calibration's trials: that much speech weighs as "
                                     "the calibrated LLR (default 3)")
    g.add_argument("--stream-early", choices=("accept", "both"), default="both",
                   help="what the stream may decide before its end: 'both' (accept or reject, default) or 'accept' "
                        "only (a voice that is not accepted early is decided on its whole audio)")
    g.add_argument("--stream-max-seconds", type=float_option(0.0, 3600.0, lo_open=True), default=60.0, metavar="S",
                   help="audio per stream (default 60); then it is decided on what it sent")
    g.add_argument("--max-streams", type=int_option(1, 1 << 16), default=16, metavar="N",
                   help="streams open at once (default 16); more are closed with code 1013")
    g.add_argument("--quiet", action="store_true", help="log warnings only (no access log)")
    g.add_argument("--min-speech", type=float_option(0.0, 3600.0), metavar="SECONDS",
                   help="enrolment: refuse (422) a recording with less net speech than this (default 1 s)")
    g.add_argument("--min-speaker-speech", type=float_option(0.0, 36000.0), metavar="SECONDS",
                   help="enrolment: refuse (422) a speaker whose recordings hold less net speech in all (default 10 s)")
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


def read_keys(path: str) -> dict[str, str]:
    """The API keys of ``--api-key-file``: ``NAME: KEY`` lines (a file of one bare ``KEY`` line
    names it ``default``; a colon followed by a space separates a name), each key one word of at least :data:`MIN_KEY` printable characters,
    names by :data:`KEY_NAME`, neither repeated; ``#`` starts a comment."""
    try:
        text = _guards.read_small_text(path, 256 * MAX_KEYS)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise JobError(f"--api-key-file {path}: cannot read the keys: {exc}") from None
    lines = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line]
    keys: dict[str, str] = {}
    for n, line in lines:
        named = re.fullmatch(r"([^\s:]+)\s*:\s+(\S.*)", line)
        if named is None and len(lines) > 1:
            raise JobError(f"--api-key-file {path}, line {n}: expected 'NAME: KEY'")
        name, key = named.groups() if named else ("default", line)
        if not KEY_NAME.fullmatch(name):
            raise JobError(f"--api-key-file {path}, line {n}: a key's name is 1 to 64 characters of A-Z a-z 0-9 _ . @ -")
        if len(key) < MIN_KEY or any(c.isspace() for c in key) or not key.isprintable():
            raise JobError(f"--api-key-file {path}, line {n}: the key must be one word of at least {MIN_KEY} "
                           "printable characters without spaces")
        if name in keys or key in keys.values():
            raise JobError(f"--api-key-file {path}, line {n}: the {'name' if name in keys else 'key'} is repeated")
        keys[name] = key
    if not keys:
        raise JobError(f"--api-key-file {path}: no key in the file")
    if len(keys) > MAX_KEYS:
        raise JobError(f"--api-key-file {path}: more than {MAX_KEYS} keys")
    return keys


def run(args) -> int:
    if args.api_key_file is None and not is_loopback(args.host):
        raise JobError(f"refusing to serve on {args.host} without --api-key-file: anyone who can reach it could "
                       "enrol, remove and probe speakers (bind 127.0.0.1 or give a key)")
    keys = read_keys(args.api_key_file) if args.api_key_file else {}
    for var in ONE_THREAD_VARS:                       # before numpy is imported (if it is not yet)
        os.environ.setdefault(var, "1")
    try:
        import uvicorn

        from .._server import ConnectionLimits, protocol_class, raise_descriptor_limit
        from ..serve import ServiceConfig, create_app
    except ImportError as exc:
        raise JobError(f"speaker serve needs the 'serve' extra (pip install 'gmmext[serve]'): {exc}") from None
    calibration = calibration_of(args)
    with open_store(args, args.ubm, create=True, cache_mb=args.cache_mb) as store:           # closed when the server stops
        g = gate_of(args, store)
        try:
            rule = store.decision(threshold=args.threshold, p_target=args.p_target, c_miss=args.c_miss,
                                  c_fa=args.c_fa, calibration=calibration, target_far=args.target_far, gate=g)
        except ValueError as exc:
            raise JobError(f"{args.store}: {exc}") from None
        if rule.threshold is None:
            print(f"speaker serve: WARNING: {args.store} has no calibration and no --threshold was given: every "
                  "verification and identification answers 'undecided' (never accept) until the store is calibrated "
                  "('speaker calibrate --store DB --from-enrollments', or POST /v1/calibration); /healthz says so",
                  file=sys.stderr)
        else:
            print(f"speaker serve: decisions: {rule.rule}", file=sys.stderr)
        cfg = ServiceConfig(max_bytes=args.max_bytes, max_seconds=args.max_seconds, threads=args.threads,
                            api_keys=keys, cors_origins=tuple(args.cors_origin), access_log=not args.quiet,
                            body_timeout=args.body_timeout, stream=_stream_config(args), threshold=args.threshold,
                            p_target=args.p_target, c_miss=args.c_miss, c_fa=args.c_fa, calibration=calibration,
                            target_far=args.target_far, gate=g)
        app = create_app(store, cfg)
        limits = ConnectionLimits(max_head_bytes=args.max_head_bytes, head_timeout=args.head_timeout,
                                  max_connections=_connection_cap(args.max_connections, raise_descriptor_limit))
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                                access_log=False, timeout_graceful_shutdown=args.drain_seconds,
                                server_header=False, proxy_headers=False, lifespan="on",
                                http=protocol_class(limits), h11_max_incomplete_event_size=limits.max_head_bytes,
                                ws="websockets-sansio", ws_max_size=cfg.stream.max_message_bytes,
                                ws_ping_interval=None, ws_per_message_deflate=False)
        import logging

        from .._gate import redact_keys
        for name in ("uvicorn.error", "uvicorn.access"):       # configured by uvicorn.Config above
            logging.getLogger(name).addFilter(redact_keys)
        server = _make_server(config)
        sock = _listen(args.host, args.port)              # a busy port is our one line, not uvicorn's exit 3
        host, port = sock.getsockname()[:2]
        if not args.quiet:
            print(f"speaker serve: listening on http://{f'[{host}]' if ':' in host else host}:{port}",
                  file=sys.stderr)
        try:
            server.run(sockets=[sock])
        except SystemExit:                                # uvicorn's start-up failure (its log says why)
            raise JobError(f"could not start serving on {args.host}:{args.port} (see the lines above)") from None
        finally:
            sock.close()
    if not server.started:
        raise JobError(f"could not start serving on {args.host}:{args.port}")
    print(f"speaker serve: stopped ({_signal_name(server.signals)}); requests in flight were completed",
          file=sys.stderr)
    return 0


def _listen(host: str, port: int):
    """The listening socket of ``--host`` / ``--port``, bound here so that an address in use or
    not available is one line and exit 1 (JobError)."""
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise JobError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise JobError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _stream_config(args):
    from ..stream import SequentialTest, StreamConfig
    test = SequentialTest(target_far=args.stream_far, target_miss=args.stream_miss,
                          min_speech=args.stream_min_speech, reference_seconds=args.stream_reference_seconds,
                          early_reject=args.stream_early == "both")
    return StreamConfig(max_seconds=args.stream_max_seconds, max_streams=args.max_streams, test=test)


def _connection_cap(wanted: int, raise_limit) -> int:
    """``--max-connections``, after raising the soft limit of open files to fit it and the
    descriptors the process needs besides (:data:`speaker._server.RESERVED_DESCRIPTORS`); lowered,
    with a warning, when the hard limit is lower."""
    from .._server import RESERVED_DESCRIPTORS
    soft, hard = raise_limit(wanted + RESERVED_DESCRIPTORS)
    if soft < wanted + RESERVED_DESCRIPTORS:
        cap = max(1, soft - RESERVED_DESCRIPTORS)
        print(f"speaker serve: warning: the limit of open files is {soft} (hard limit {hard}): at most {cap} "
              "connections at once (--max-connections)", file=sys.stderr)
        return cap
    return wanted


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
