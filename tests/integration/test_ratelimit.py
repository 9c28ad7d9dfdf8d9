#!/usr/bin/python3
"""The ratelimit plugin with real peers: grpcio clients, two edges sharing one real redis-server
(started here on a free loopback port), Redis stopped and hung in the middle, a grpcio retry policy
honouring grpc-retry-pushback-ms, a stream shaped through flow control, concurrency limits, method
globs, several keys, zones, and config errors."""

import json
import os
import re
import signal
import threading
import time

import grpc

import pclib
from pclib import describe, origin_conf, rpc_error, zone_conf

SCALE = pclib.TIME_SCALE
UNARY = "/demo.Echo/Unary"
BIDI = "/demo.Echo/Bidi"
# One message a second, none kept waiting more than 200 ms: a stream's second message is refused.
TIGHT = {"name": "tight", "methods": [BIDI], "messages_per_s": 1, "burst": 1, "max_delay_ms": 200}


def setup():
    st = pclib.Stack("ratelimit")
    st.start_origin("echo")
    st.redis = pclib.Redis(st.dir)
    st.origins_conf = [origin_conf("echo", st.origins["echo"].port)]
    st.zones_conf = pclib.default_zones("echo") + [zone_conf("api", ["api.example.com"], "echo")]
    return st


def edge(st, name, config, workers=2, admin=None):
    """One more Portcullis with the ratelimit plugin; returns it with .port."""
    return st.start_edge(name, [{"name": "ratelimit", "config": config}], st.origins_conf, st.zones_conf,
                         workers=workers, admin=admin)


def channel(st, port, authority="example.com", **opts):
    options = [o for o in pclib.channel_options() if o[0] not in opts] + [("grpc.default_authority", authority)]
    options += list(opts.items())
    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
    st.channels.append(ch)
    return ch


def call(ch, method=UNARY, metadata=(), timeout=10):
    """(status code, details, trailing metadata dict) of one unary call."""
    try:
        _, c = ch.unary_unary(method).with_call(b"hi", metadata=list(metadata), timeout=timeout)
        return grpc.StatusCode.OK, "", dict(c.trailing_metadata() or ())
    except grpc.RpcError as e:
        return e.code(), e.details(), dict(e.trailing_metadata() or ())


def calls_rule(name="per-client", calls=20, window_s=3600, **more):
    r = {"name": name, "key": "client.ip", "calls": calls, "window_s": window_s}
    r.update(more)
    return r


def redis_store(st, **more):
    return st.redis.store(**more)


# --- local store ----------------------------------------------------------------------------------


def test_local_limit_shared_by_workers_with_pushback(st):
    admin = pclib.free_port()
    p = edge(st, "local", {"rules": [calls_rule(calls=20)]}, workers=2, admin=admin)
    pclib.wait_port(admin, p.proc, what="admin listener")
    before = st.origins["echo"].stats(reset=True)["calls"].get("Unary", 0)
    # Four channels: four connections, spread over both workers.
    chans = [channel(st, p.port) for _ in range(4)]
    results = [call(chans[i % 4]) for i in range(40)]
    ok = [r for r in results if r[0] == grpc.StatusCode.OK]
    refused = [r for r in results if r[0] != grpc.StatusCode.OK]
    assert len(ok) == 20, f"{len(ok)} admitted: the workers do not share one limit"
    assert st.origins["echo"].stats()["calls"].get("Unary", 0) - before == 20, "a refused call reached the origin"
    for code, details, trailers in refused:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert details == "rate limit per-client: too many calls", details
        push = int(trailers.get("grpc-retry-pushback-ms", "0"))
        # 20 per hour: the next call in 180 s
        assert 170000 <= push <= 180000, trailers
    lines = pclib.json_lines_matching(p.out_path, lambda l: l.get("grpc_status") == 8, 20, 10)
    assert all((l.get("plugins") or {}).get("ratelimit.rule") == "per-client" for l in lines), lines[:2]
    samples = pclib.scrape_metrics(admin)
    got = {l.get("result"): v for n, l, v in samples if n == "pc_ratelimit_total" and l.get("rule") == "per-client"}
    assert got.get("allowed") == 20 and got.get("refused") == 20, got
    st.stop_edges(p)


def test_plain_http_gets_429_retry_after(st):
    p = edge(st, "http429", {"rules": [calls_rule(name="web", calls=1)]}, workers=1)
    codes = []
    for _ in range(2):
        rc, out, err = pclib.curl(["--http2-prior-knowledge", "-o", "/dev/null", "-D", "-",
                                   "-H", "host: nogrpc.test", f"http://127.0.0.1:{p.port}/page"])
        codes.append(out)
    # The first goes to the origin (whatever it answers a page request), the second is refused.
    assert re.search(r"^HTTP/2 \d+", codes[0], re.M) and not re.search(r"^HTTP/2 429", codes[0], re.M), codes[0]
    assert re.search(r"^HTTP/2 429", codes[1], re.M), codes[1]
    m = re.search(r"^retry-after: (\d+)", codes[1], re.M | re.I)
    assert m and 3500 <= int(m.group(1)) <= 3600, codes[1]
    st.stop_edges(p)


def test_globs_keys_and_zones(st):
    rules = [
        {"name": "echo-unary", "methods": ["/demo.Echo/Un*"], "key": ["client.ip", "header:x-api-key"], "calls": 2,
         "window_s": 3600},
        {"name": "api-only", "zones": ["api"], "calls": 1, "window_s": 3600},
    ]
    p = edge(st, "globs", {"rules": rules}, workers=1)
    ch = channel(st, p.port)
    # Per API key: two each, counted apart.
    for key in ("a", "b"):
        got = [call(ch, metadata=[("x-api-key", key)])[0] for _ in range(3)]
        assert got == [grpc.StatusCode.OK] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED], (key, got)
    # Another method is not matched by the glob.
    assert call(ch, method="/demo.Echo/Fail", metadata=[("x-api-key", "a")])[0] != \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    # The zone rule only in zone api.
    api = channel(st, p.port, authority="api.example.com")
    got = [call(api, method="/demo.Echo/Fail")[1] for _ in range(2)]
    assert "rate limit api-only" not in got[0] and got[1] == "rate limit api-only: too many calls", got
    st.stop_edges(p)


def test_concurrency_limit(st):
    p = edge(st, "parallel", {"rules": [{"name": "parallel", "concurrent_calls": 2}], "concurrency_retry_ms": 250},
             workers=2)
    ch = channel(st, p.port)
    sleep = ch.unary_unary("/demo.Echo/Sleep")
    futures = [sleep.future(json.dumps({"ms": 1500}).encode(), timeout=10) for _ in range(2)]
    time.sleep(0.4 * SCALE)
    code, details, trailers = call(ch)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert details == "rate limit parallel: too many calls in flight", details
    assert trailers.get("grpc-retry-pushback-ms") == "250", trailers
    for f in futures:
        f.result()
    # The slots are given back when the calls end.
    assert call(ch)[0] == grpc.StatusCode.OK
    st.stop_edges(p)


# --- one limit for a fleet --------------------------------------------------------------------------


def spread(st, edges, n, per_thread=None):
    """n unary calls spread over the edges from as many threads; the count admitted."""
    admitted = [0]
    lock = threading.Lock()

    def run(p, k):
        ch = channel(st, p.port)
        for _ in range(k):
            if call(ch)[0] == grpc.StatusCode.OK:
                with lock:
                    admitted[0] += 1

    threads = []
    per = n // (2 * len(edges))
    for p in edges:
        for _ in range(2):
            threads.append(threading.Thread(target=run, args=(p, per)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return admitted[0]


def test_two_edges_share_one_limit_in_redis(st):
    st.redis.cli("FLUSHALL")
    cfg = {"store": redis_store(st), "rules": [calls_rule(name="fleet", calls=100)]}
    a, b = edge(st, "edge-a", cfg), edge(st, "edge-b", cfg)
    admitted = spread(st, [a, b], 300)
    assert 95 <= admitted <= 105, f"{admitted} admitted by two edges sharing calls: 100"
    # Redis holds digests only: no client address in its keys.
    keys = st.redis.cli("KEYS", "*").split()
    assert keys and all(re.fullmatch(r"pc:rl:[0-9a-f]{32}:c", k) for k in keys), keys
    assert "127.0.0.1" not in st.redis.cli("--no-raw", "GET", keys[0])
    # ... and every key expires: by the time its bucket is full again, plus a second.
    for k in keys:
        ttl = int(st.redis.cli("PTTL", k))
        assert 0 < ttl <= 3601 * 1000, (k, ttl)
    st.stop_edges(a, b)
    # The same with local stores: each edge its own limit, about twice as many.
    cfg = {"rules": [calls_rule(name="fleet", calls=100)]}
    a, b = edge(st, "local-a", cfg), edge(st, "local-b", cfg)
    admitted = spread(st, [a, b], 300)
    assert 190 <= admitted <= 200, f"{admitted} admitted by two edges with local stores"
    st.stop_edges(a, b)


def timed_calls(ch, n):
    """Codes of n calls, and the longest a call took."""
    codes, worst = [], 0.0
    for _ in range(n):
        t0 = time.monotonic()
        codes.append(call(ch, timeout=10)[0])
        worst = max(worst, time.monotonic() - t0)
    return codes, worst


def test_redis_stopped_and_hung(st):
    st.redis.cli("FLUSHALL")
    allow = edge(st, "err-allow", {"store": redis_store(st, on_error="allow"),
                                   "rules": [calls_rule(name="r", calls=5)]}, workers=1)
    local = edge(st, "err-local", {"store": redis_store(st, on_error="local"),
                                   "rules": [calls_rule(name="r", calls=3)]}, workers=1)
    ca, cl = channel(st, allow.port), channel(st, local.port)
    assert [call(ca)[0] for _ in range(6)].count(grpc.StatusCode.OK) == 5
    # Hung: every call still answered within timeout_ms + 1 s, as on_error says.
    os.kill(st.redis.proc.pid, signal.SIGSTOP)
    try:
        codes, worst = timed_calls(ca, 10)
        assert codes == [grpc.StatusCode.OK] * 10 and worst < 1.05 * SCALE, (codes, worst)
        codes, worst = timed_calls(cl, 6)
        assert codes.count(grpc.StatusCode.OK) == 3 and worst < 1.05 * SCALE, (codes, worst)
    finally:
        os.kill(st.redis.proc.pid, signal.SIGCONT)
    # Stopped.
    st.redis.stop()
    codes, worst = timed_calls(ca, 5)
    assert codes == [grpc.StatusCode.OK] * 5 and worst < 1.05 * SCALE, (codes, worst)
    # Back (empty): shared counting resumes without a restart.
    st.redis.start()
    deadline = time.monotonic() + 10 * SCALE
    while time.monotonic() < deadline and not st.redis.cli("KEYS", "*"):
        call(ca)
        time.sleep(0.1)
    assert st.redis.cli("KEYS", "*"), "the edge did not use Redis again after it came back"
    st.redis.cli("FLUSHALL")
    # A call the worker leased ahead before the flush stays usable for one emission interval (at
    # most 1 s, docs/ratelimit.md): let it lapse, then the shared bucket alone decides.
    time.sleep(1.2)
    assert [call(ca)[0] for _ in range(7)].count(grpc.StatusCode.OK) == 5
    st.stop_edges(allow, local)


def test_grpcio_retry_policy_honours_pushback(st):
    st.redis.cli("FLUSHALL")
    # One call per second: the second call is refused with about 1000 ms of pushback.
    p = edge(st, "pushback", {"rules": [calls_rule(name="slow", calls=1, window_s=1)]}, workers=1)
    config = json.dumps({"methodConfig": [{"name": [{"service": "demo.Echo"}], "retryPolicy": {
        "maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.01s", "backoffMultiplier": 1,
        "retryableStatusCodes": ["RESOURCE_EXHAUSTED"]}}]})
    ch = channel(st, p.port, **{"grpc.enable_retries": 1, "grpc.service_config": config})
    st.origins["echo"].stats(reset=True)
    assert call(ch)[0] == grpc.StatusCode.OK
    t0 = time.monotonic()
    code, details, _ = call(ch)
    took = time.monotonic() - t0
    assert code == grpc.StatusCode.OK, f"the retry did not succeed: {code} {details}"
    # Without the pushback it would have retried after 10 ms and been refused again.
    assert 0.8 <= took <= 3 * SCALE, f"retried after {took:.2f} s, not after the pushback"
    assert st.origins["echo"].stats()["calls"].get("Unary", 0) == 2
    st.stop_edges(p)


def test_stream_shaped_through_flow_control(st):
    rule = {"name": "talk", "methods": [BIDI], "messages_per_s": 100, "burst": 100}
    p = edge(st, "shaped", {"rules": [rule]}, workers=1)
    ch = channel(st, p.port)
    msgs = [b"m%04d-" % i + b"x" * 200 for i in range(500)]
    watch = pclib.RssWatch(p.proc.pid)
    t0 = time.monotonic()
    got = [r for r in ch.stream_stream(BIDI)(iter(msgs), timeout=60)]
    took = time.monotonic() - t0
    growth = watch.stop()
    assert got == msgs, f"{len(got)} messages came back, in another order or changed"
    # 100 at once, then 400 at 100 per second.
    assert took >= 4.0, f"500 messages took {took:.2f} s: not shaped"
    assert growth < 16, f"edge memory grew {growth:.1f} MiB while shaping"
    st.stop_edges(p)


def test_shaped_message_that_waits_too_long_ends_the_call(st):
    p = edge(st, "too-long", {"rules": [TIGHT]}, workers=1)
    ch = channel(st, p.port)
    err = rpc_error(lambda: list(ch.stream_stream(BIDI)(iter([b"a", b"b", b"c"]), timeout=10)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(err)
    assert err.details() == "rate limit tight: a message waited too long", describe(err)
    st.stop_edges(p)


def refused_behind(st, name, origin, messages, **origin_opts):
    """An edge (one worker, the `tight` rule) in front of `origin`, and one Bidi call whose second
    message the rule refuses; returns the edge and when the call ended."""
    p = st.start_edge(name, [{"name": "ratelimit", "config": {"rules": [TIGHT]}}],
                      [origin_conf(name, origin.port, **origin_opts)], [zone_conf("example.com", ["example.com"], name)],
                      workers=1)
    ch = channel(st, p.port)
    err = rpc_error(lambda: list(ch.stream_stream(BIDI)(iter(messages), timeout=10)))
    ended = time.monotonic()  # the call is over on both sides: the client has left it
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(err)
    return p, ended


def stop_with_no_client_left(st, p):
    """Closes the test's channels, then SIGTERM: the edge must exit cleanly and at once."""
    for c in st.channels:
        c.close()
    st.channels.clear()
    time.sleep(0.3)
    t0 = time.monotonic()
    problem = p.stop()
    took = time.monotonic() - t0
    assert problem is None, problem
    assert took < 3 * SCALE, f"exited {took:.1f} s after SIGTERM with no client left"


def test_stop_with_allowed_bytes_waiting_for_a_stalled_origin(st):
    """A message refused behind a large one the origin has not taken yet: the allowed bytes wait for
    the origin's window before its stream is reset. Once no client is left, SIGTERM does not wait for
    an origin that takes nothing (before, the edge never exited)."""
    stub = st.start_stub(take_no_data=True)
    p, _ = refused_behind(st, "stalled-origin", stub, [b"x" * (256 << 10), b"y"])
    assert pclib.wait_until(lambda: stub.requests and stub.requests[0]["data"] >= 60000), stub.requests
    time.sleep(0.3)
    assert stub.requests[0]["reset"] is None and stub.requests[0]["data"] < 256 << 10, \
        f"the origin took its window's worth and no more: {stub.requests[0]}"
    stop_with_no_client_left(st, p)


def test_allowed_bytes_wait_for_a_stalled_origin_5_s_once_the_client_is_gone(st):
    """The messages allowed before a refused one go to the origin before its stream is reset, but
    once the client is gone an origin that takes none of them gets the reset after 5 s."""
    stub = st.start_stub(take_no_data=True)
    p, gone = refused_behind(st, "stalled-flush", stub, [b"x" * (256 << 10), b"y"])
    assert pclib.wait_until(lambda: stub.requests and stub.requests[0]["data"] >= 60000), stub.requests
    assert pclib.wait_until(lambda: stub.requests[0]["reset"] is not None, timeout=15), stub.requests[0]
    took = time.monotonic() - gone
    assert stub.requests[0]["reset"] == 8, f"reset with code {stub.requests[0]['reset']}, not CANCEL"
    assert 3.5 <= took <= 8 * SCALE, f"the origin stream was reset {took:.1f} s after the client left, not 5 s"
    st.stop_edges(p)


class SilentOrigin(pclib.LoopbackServer):
    """Accepts connections and never speaks: no SETTINGS, so the edge's streams wait for it."""

    def handle(self, c, n):
        self.stopping.wait()


def test_stop_with_a_refused_call_waiting_for_an_origin_connection(st):
    """A call refused while it still waits for its origin connection (here one that never sends its
    SETTINGS) keeps its allowed message queued for that origin. Once no client is left, SIGTERM ends
    it at once: before, closing the unready connection made the pool open another for the queued
    stream, and the edge waited for that connection's timeout."""
    silent = SilentOrigin()
    st.stubs.append(silent)
    # A long connect timeout: the edge must not be waiting for it either.
    p, _ = refused_behind(st, "silent-origin", silent, [b"a", b"b"], connect_timeout_ms=20000)
    assert pclib.wait_until(lambda: len(silent.conns) >= 1), "the edge never connected to the origin"
    stop_with_no_client_left(st, p)


def test_config_errors(st):
    def check(name, config, expected):
        cfg = pclib.make_config(h2c_port=pclib.free_port(), origins=st.origins_conf, zones=st.zones_conf,
                                extra={"plugins": [{"name": "ratelimit", "config": config}]})
        path = st.write_config(cfg, name=f"bad-{name}.yaml")
        r = pclib.run_check(path)
        assert r.returncode == 2, f"{name}: check exit {r.returncode}:\n{r.stderr}"
        assert re.search(re.escape(path) + r":\d+:\d+: .*" + expected, r.stderr), f"{name}: {r.stderr}"

    check("no-rules", {}, r"plugin ratelimit: rules is required")
    check("two-kinds", {"rules": [{"name": "x", "calls": 1, "window_s": 1, "concurrent_calls": 2}]},
          r"give exactly one of calls \(with window_s\), messages_per_s or concurrent_calls")
    check("no-window", {"rules": [{"name": "x", "calls": 5}]}, r"calls needs window_s")
    check("bad-name", {"rules": [{"name": "a b", "calls": 1, "window_s": 1}]}, r"rules\[0\]\.name")
    check("dup", {"rules": [calls_rule(name="x"), calls_rule(name="x")]}, r'"x" is used twice')
    check("glob", {"rules": [calls_rule(methods=["demo.Echo/*"])]}, r"expected a path glob")
    check("rule-key", {"rules": [dict(calls_rule(), limit=3)]}, r'unknown key "limit"')
    check("no-secret", {"store": {"type": "redis", "address": "127.0.0.1:6379"}, "rules": [calls_rule()]},
          r"exactly one of secret or secret_file")
    check("name-address", {"store": redis_store(st, address="redis.local:6379"), "rules": [calls_rule()]},
          r"not a numeric address")
    check("on-error", {"store": redis_store(st, on_error="maybe"), "rules": [calls_rule()]},
          r"store.on_error: expected local, allow or deny")
    check("local-extra", {"store": {"type": "local", "timeout_ms": 5}, "rules": [calls_rule()]},
          r"store.timeout_ms: only with type: redis")


if __name__ == "__main__":
    pclib.main(__file__)
