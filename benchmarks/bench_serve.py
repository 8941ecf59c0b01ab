"""A bounded load test of ``speaker serve`` on loopback (issue 14).

C concurrent clients (threads with one keep-alive httpx connection each; default 1, 4, 16) send
``POST /v1/speakers/ID/verify`` with a 3-s recording (cut from a speechocean762 utterance,
``--data``; synthesised when the data are not there), each request to a speaker drawn at random
from a store of ``--speakers`` (1,000), K = ``--components`` (512), D = 60.  Each level stops after
``--requests`` requests or ``--time-limit`` seconds, whichever comes first.  Printed per level:
requests/s, p50 / p99 latency, errors (non-200 answers and transport errors); and, in the same
run, ``SpeakerStore.verify`` of the same recording in this process (no HTTP), as the reference
of the ratios, with the numerical libraries' thread pools at one thread, as in the server.

The UBM is synthetic (means drawn from real feature frames, as in bench_store.py) and the
speakers' statistics are synthetic too (one real recording's UBM statistics, scaled by a random
factor per speaker, added with ``SpeakerStore.enroll_statistics``): timings do not depend on
their quality.  The server runs in its own process (``python -m speaker serve``, 127.0.0.1 only).

    python benchmarks/bench_serve.py                        # writes benchmarks/results_serve.txt
    python benchmarks/bench_serve.py --speakers 100 --requests 40 --clients 1,4   # quicker
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# the server's numerical thread pools are one thread each (speaker/cli/serve.py: ONE_THREAD_VARS);
# the in-process reference runs the same way
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report  # noqa: E402
from bench_store import DEFAULT_DATA, ROOT, pct, setup  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, threads: int, top_c: int | None) -> tuple[subprocess.Popen, str]:
    import httpx
    port = free_port()
    cmd = [sys.executable, "-m", "speaker", "serve", "--store", str(db), "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(threads), "--quiet"] + (["--top-c", str(top_c)] if top_c else [])
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def load(url: str, audio: bytes, ids: list[str], clients: int, n_requests: int, time_limit: float) -> dict:
    """``clients`` threads verifying until ``n_requests`` were sent or ``time_limit`` s passed."""
    import httpx
    lock, sent = threading.Lock(), [0]
    lat: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + time_limit

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=max(1.0, time_limit)) as c:
            while time.monotonic() < stop_at:
                with lock:
                    if sent[0] >= n_requests:
                        return
                    sent[0] += 1
                t0 = time.perf_counter()
                try:
                    r = c.post(f"/v1/speakers/{rng.choice(ids)}/verify", content=audio,
                               headers={"Content-Type": "audio/wav"})
                    ok = r.status_code == 200
                    why = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, why = False, type(exc).__name__
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        lat.append(dt)
                    else:
                        errors.append(why)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return dict(n=len(lat), errors=errors, wall=wall, lat=lat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="speechocean762 folder (for the 3-s recording)")
    ap.add_argument("--components", type=int, default=512, help="UBM components K (default 512)")
    ap.add_argument("--speakers", type=int, default=1000, help="speakers in the store (default 1000)")
    ap.add_argument("--clients", default="1,4,16", help="concurrent clients per level (default 1,4,16)")
    ap.add_argument("--requests", type=int, default=200, help="requests per level (default 200)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per level at most (default 60)")
    ap.add_argument("--threads", type=int, default=4, help="the server's --threads (default 4)")
    ap.add_argument("--top-c", dest="top_c", type=int, default=None,
                    help="the server's --top-c (default exact scoring)")
    ap.add_argument("--work", type=Path, help="folder for the store (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_serve.txt")
    a = ap.parse_args(argv)
    from gmmext import GMMStats
    from speaker import extract_features
    from speaker.gates import NO_GATE
    from speaker.store import SpeakerStore

    work = Path(a.work or tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    say = Report(argv, __file__)

    cfg, test, feats, _, rng, ubm = setup(a.data, work, a.components)
    K, D = ubm.means_.shape
    db = work / "serve.db"
    for p in work.glob("serve.db*"):
        p.unlink()
    st = SpeakerStore(db, ubm, config=cfg, top_c=a.top_c)
    base = ubm.accumulate_segments([feats[0]])[0]
    t0 = time.perf_counter()
    ids = [f"spk{i:05d}" for i in range(a.speakers)]
    for sid in ids:
        s = rng.uniform(0.5, 2.0)
        fake = GMMStats(base.n * s, base.sum_x * s, base.sum_xx * s, base.loglik * s, base.n_samples * s)
        st.enroll_statistics(sid, [("<synthetic>", hashlib.sha256(sid.encode()).hexdigest(), fake)],
                             gate=NO_GATE)                   # synthetic statistics: no recording to gate
    t_fill = time.perf_counter() - t0
    audio = test.read_bytes()
    n_frames = extract_features(test, config=cfg).shape[0]
    say(f"speaker serve load test: K={K}, D={D}, {a.speakers} speakers (synthetic UBM and statistics), "
        f"{'exact scoring' if not a.top_c else f'top-C {a.top_c}'}, server --threads {a.threads}; "
        f"loopback only")
    say(f"request: POST /v1/speakers/ID/verify, a 3-s recording ({len(audio)} bytes WAV, {n_frames} speech frames), "
        f"ID drawn at random; at most {a.requests} requests or {a.time_limit:g} s per level (store filled in "
        f"{t_fill:.1f} s)")

    # in-process reference: the same verifications without HTTP (its own store connection and
    # cache), half before and half after the load levels, so that a change of the machine's load
    # during the run hits both
    pyrng = random.Random(1)
    ref: list[float] = []

    def reference(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            st.verify(pyrng.choice(ids), test)
            ref.append(time.perf_counter() - t0)

    for _ in range(3):
        st.verify(pyrng.choice(ids), test)
    n_ref = min(a.requests, 100)
    reference(n_ref // 2)
    proc, url = start_server(db, a.threads, a.top_c)
    try:
        load(url, audio, ids[:2], 1, 3, 30.0)                 # warm-up (first requests load numba, librosa)
        rows = []
        for c in [int(x) for x in a.clients.split(",")]:
            rows.append((c, load(url, audio, ids, c, a.requests, a.time_limit)))
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    reference(n_ref - n_ref // 2)
    st.close()
    ref_p50 = pct(ref, 50)
    say()
    say(f"{'clients':>7s} {'requests':>8s} {'errors':>6s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'p50 / in-process':>17s}")
    for c, r in rows:
        p50 = pct(r["lat"], 50) if r["lat"] else float("nan")
        p99 = pct(r["lat"], 99) if r["lat"] else float("nan")
        say(f"{c:7d} {r['n']:8d} {len(r['errors']):6d} {r['n'] / r['wall']:7.1f} {p50:8.1f} {p99:8.1f} "
            f"{p50 / ref_p50:16.2f}x" + (f"  errors: {sorted(set(r['errors']))}" if r["errors"] else ""))
    say(f"in process, SpeakerStore.verify of the same recording (features + scoring, random speaker, "
        f"{len(ref)} runs): median {ref_p50:.1f} ms, p99 {pct(ref, 99):.1f} ms")
    say(f"server stopped by SIGTERM: exit {rc}")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
