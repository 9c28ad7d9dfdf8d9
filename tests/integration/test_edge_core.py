#!/usr/bin/python3
"""Core edge behaviour the docs promise (docs/configuration.md, docs/grpc.md): the headers the origin receives (x-forwarded-for,
x-forwarded-proto, te, no hop-by-hop headers), origins with several servers (round robin, a dead
server skipped for its cool-down), the origin's MAX_CONCURRENT_STREAMS and max_pending, the
handshake / header / idle timeouts, compressed messages (passed through unchanged, size limit
applied after decompression, unknown encodings refused) and back-pressure from a slow reader."""

import gzip
import json
import os
import socket
import struct
import subprocess
import threading
import time
import zlib
from concurrent import futures

import grpc

import pclib
from grpc_origin import server_stream_message
from pclib import describe, origin_conf, rpc_error, zone_conf

UNARY = "/demo.Echo/Unary"
SLEEP = "/demo.Echo/Sleep"
SERVER_STREAM = "/demo.Echo/ServerStream"
SCALE = pclib.TIME_SCALE
MiB = 1 << 20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# The second proxy, for the timeouts: short enough to observe, distinct so one cannot pass for another.
HANDSHAKE_MS = 300
HEADER_MS = 300
IDLE_MS = 1000


class ArgsOrigin(pclib.Origin):
    """grpc_origin.py started with extra command-line options (same lifecycle as pclib.Origin)."""

    def __init__(self, workdir, name, extra_args):
        self.name = name
        self.tls = None
        self.server_name = "origin.test"
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        args = [pclib.PYTHON, pclib.ORIGIN_SCRIPT, "--port", "0", "--max-message", str(pclib.MAX_MESSAGE)]
        self.err = open(self.err_path, "wb")
        self.proc = pclib.spawn(args + list(extra_args), stdout=subprocess.PIPE, stderr=self.err)
        self.port = self._read_port()
        pclib.wait_port(self.port, self.proc, what=f"origin {name}")
        self.address = f"127.0.0.1:{self.port}"
        self._channel = None


def answer_ok(conn, stream_id, _headers):
    """Stub origin answer: a gRPC Trailers-Only OK."""
    conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0")],
                      end_stream=True)


def setup():
    st = pclib.Stack("edge-core")
    echo = st.start_origin("echo")
    echo2 = st.start_origin("echo2")
    mcs = ArgsOrigin(st.dir, "mcs2", ["--max-concurrent-streams", "2"])
    st.origins["mcs2"] = mcs
    for name, alg in (("gzip-origin", "gzip"), ("deflate-origin", "deflate")):
        st.origins[name] = ArgsOrigin(st.dir, name, ["--compression", alg])
    st.stub = st.start_stub(respond=answer_ok)  # answers at once: for request headers
    st.hang = st.start_stub(keep_body=True)  # never answers: for request bodies
    st.slow_settings = SlowSettingsOrigin()
    st.stubs.append(st.slow_settings)  # stopped by st.close()
    st.dead = f"127.0.0.1:{pclib.free_port()}"  # nothing listens there
    st.admin_port = pclib.free_port()
    origins = [
        origin_conf("echo", echo.port),
        origin_conf("rr", echo.port, servers=[echo.address, echo2.address]),
        # The dead server first, so the very first streams are queued on it and must move on.
        origin_conf("half", echo2.port, servers=[st.dead, echo2.address], connect_timeout_ms=1000, cooldown_ms=60000),
        origin_conf("cool", echo2.port, servers=[st.dead, echo2.address], connect_timeout_ms=1000, cooldown_ms=700),
        origin_conf("mcs", mcs.port, max_connections=1),
        origin_conf("slow-settings", st.slow_settings.port, max_connections=1),
        origin_conf("mcs-pending", mcs.port, max_connections=1, max_pending=2),
        origin_conf("gzip-origin", st.origins["gzip-origin"].port),
        origin_conf("deflate-origin", st.origins["deflate-origin"].port),
        origin_conf("stub", st.stub.port),
        origin_conf("hang", st.hang.port),
    ]
    zones = pclib.default_zones("echo") + [
        zone_conf("rr", ["rr.test"], "rr"),
        zone_conf("half", ["half.test"], "half"),
        zone_conf("cool", ["cool.test"], "cool"),
        zone_conf("mcs", ["mcs.test"], "mcs"),
        zone_conf("slow-settings", ["slow-settings.test"], "slow-settings"),
        zone_conf("pending", ["pending.test"], "mcs-pending"),
        zone_conf("gzip", ["gzip.example.com"], "gzip-origin"),
        zone_conf("deflate", ["deflate.example.com"], "deflate-origin"),
        zone_conf("small", ["small.test"], "echo", max_message_bytes=65536),
        zone_conf("stub", ["stub.test"], "stub"),
        zone_conf("hang", ["hang.test"], "hang"),
    ]
    # One worker: one pool per origin, so connection and failure counts are exact.
    st.start_proxy(origins, zones, extra={"workers": 1, "admin": {"address": f"127.0.0.1:{st.admin_port}"}})
    st.limited = None  # the short-timeouts proxy, started by the first test that needs it
    return st


def limited_proxy(st):
    """A second proxy with short handshake / header / idle timeouts, in front of the echo origin."""
    if st.limited is None:
        st.lim_tls = pclib.free_port()
        st.lim_h2c = pclib.free_port()
        cfg = pclib.make_config(tls_port=st.lim_tls, h2c_port=st.lim_h2c,
                                origins=[origin_conf("echo", st.origins["echo"].port)],
                                zones=pclib.default_zones("echo"),
                                extra={"workers": 1, "limits": {"handshake_timeout_ms": HANDSHAKE_MS,
                                                                "header_timeout_ms": HEADER_MS,
                                                                "idle_timeout_ms": IDLE_MS}})
        path = st.write_config(cfg, name="limited.yaml")
        st.limited = pclib.Proxy(path, [st.lim_tls, st.lim_h2c], st.dir, name="limited")
        st.proxies.insert(0, st.limited)  # stopped (and checked) by st.close(); logs() keeps the main one
    assert st.limited.alive(), f"the short-timeouts proxy exited:\n{st.limited.logs(30)}"
    return st.limited


# --- small helpers ---------------------------------------------------------------------------


def metadata(stats):
    """Stats' last_metadata as {key: [values]}."""
    out = {}
    for k, v in stats["last_metadata"]:
        out.setdefault(k, []).append(v)
    return out


def failures(st, origin):
    return pclib.metric_sum(pclib.scrape_metrics(st.admin_port), "pc_upstream_connect_failures_total",
                            origin=origin) or 0


def raw(port, authority, chunks=(), extra=(), path=UNARY, tls=False, ca=None, timeout=10.0, end_stream=True):
    headers = pclib.grpc_request_headers(authority, path, scheme="https" if tls else "http", extra=extra)
    return pclib.h2_request(port, headers, chunks, end_stream=end_stream, tls=tls, ca=ca, server_name=authority,
                            timeout=timeout * SCALE)


def h2c(st, authority, chunks=(), extra=(), path=UNARY, timeout=10.0):
    return raw(st.h2c_port, authority, chunks, extra, path, timeout=timeout)


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def is_sanitizer_build():
    try:
        with open(pclib.BINARY, "rb") as f:
            return b"AddressSanitizer" in f.read()
    except OSError:
        return False


def read_until_closed(sock, timeout):
    """Reads until EOF/reset or `timeout` s. Returns (seconds until closed or None, bytes read)."""
    start = time.monotonic()
    data = b""
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            return None, data
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None, data
        except OSError:  # reset counts as closed
            return time.monotonic() - start, data
        if not chunk:
            return time.monotonic() - start, data
        data += chunk


def h2_frames(data):
    """[(type, flags, stream_id, payload)] of a server byte stream (no preface on that side)."""
    out = []
    i = 0
    while len(data) - i >= 9:
        n = int.from_bytes(data[i:i + 3], "big")
        if len(data) - i - 9 < n:
            break
        ftype, flags = data[i + 3], data[i + 4]
        sid = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
        out.append((ftype, flags, sid, data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


GOAWAY = 7


# --- 1. request headers to the origin -------------------------------------------------------


def test_forwarded_headers_tls_appends_client_address(st):
    origin = st.origins["echo"]
    origin.stats(reset=True)
    reply = st.tls_channel("example.com").unary_unary(UNARY)(
        b"xff", metadata=[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "http")], timeout=10)
    assert reply == b"xff", reply
    md = metadata(origin.stats())
    assert md.get("x-forwarded-for") == ["203.0.113.7, 127.0.0.1"], \
        f"x-forwarded-for at the origin: {md.get('x-forwarded-for')} (want the incoming value, then 127.0.0.1)"
    assert md.get("x-forwarded-proto") == ["https"], \
        f"x-forwarded-proto at the origin over TLS: {md.get('x-forwarded-proto')} (a client's value must not survive)"


def test_forwarded_headers_h2c(st):
    origin = st.origins["echo"]
    origin.stats(reset=True)
    reply = st.h2c_channel("example.com").unary_unary(UNARY)(
        b"plain", metadata=[("x-forwarded-proto", "https")], timeout=10)
    assert reply == b"plain", reply
    md = metadata(origin.stats())
    assert md.get("x-forwarded-for") == ["127.0.0.1"], f"x-forwarded-for at the origin: {md.get('x-forwarded-for')}"
    assert md.get("x-forwarded-proto") == ["http"], \
        f"x-forwarded-proto at the origin over h2c: {md.get('x-forwarded-proto')} (client sent 'https')"


def test_te_trailers_kept_and_hop_by_hop_dropped(st):
    stub = st.stub
    n = len(stub.requests)
    r = h2c(st, "stub.test", [pclib.grpc_frame(b"t")], extra=[("x-probe", "te")])
    assert r.grpc_status == 0, f"plain request through the stub failed: {r}"
    req = next((q for q in stub.requests[n:] if q["headers"].get("x-probe") == "te"), None)
    assert req is not None, "request never reached the stub origin"
    h = req["headers"]
    assert h.get("te") == "trailers", f"te at the origin: {h.get('te')!r} (headers {sorted(h)})"
    assert h.get("x-forwarded-for") == "127.0.0.1" and h.get("x-forwarded-proto") == "http", h
    assert h.get(":scheme") == "http" and h.get(":authority") == "stub.test" and h.get(":path") == UNARY, h

    hop = [("connection", "keep-alive"), ("keep-alive", "timeout=5"), ("proxy-connection", "keep-alive"),
           ("transfer-encoding", "chunked"), ("upgrade", "h2c"), ("http2-settings", "AAMAAABkAAQAAP__")]
    for name, value in hop:
        n = len(stub.requests)
        r = h2c(st, "stub.test", [pclib.grpc_frame(b"h")], extra=[("x-probe", name), (name, value)], timeout=5)
        got = [q for q in stub.requests[n:] if q["headers"].get("x-probe") == name]
        if got:
            # Forwarded: the hop-by-hop header must have been removed on the way.
            assert name not in got[0]["headers"], f"{name} reached the origin: {got[0]['headers']}"
        else:
            # Refused as a malformed HTTP/2 request (RFC 9113 8.2.2): fine, as long as it is refused.
            assert r.reset == 1, f"{name}: neither forwarded nor refused with PROTOCOL_ERROR: {r}"


# --- 2. several origin servers ---------------------------------------------------------------


def test_round_robin_two_servers(st):
    a, b = st.origins["echo"], st.origins["echo2"]
    a.stats(reset=True)
    b.stats(reset=True)
    call = st.h2c_channel("rr.test").unary_unary(UNARY)
    for i in range(10):
        assert call(b"rr%d" % i, timeout=10) == b"rr%d" % i
    na, nb = a.stats()["calls"]["Unary"], b.stats()["calls"]["Unary"]
    assert na + nb == 10, f"{na} + {nb} calls reached the servers, expected 10"
    assert na >= 3 and nb >= 3, f"servers: [A, B] round robin sent {na} calls to A and {nb} to B"


def test_dead_server_skipped(st):
    b = st.origins["echo2"]
    b.stats(reset=True)
    assert failures(st, "half") == 0
    # A burst first: the streams are queued on the dead server's connection attempt and must be
    # tried on the live server when it fails.
    ch = st.h2c_channel("half.test")
    call = ch.unary_unary(UNARY)
    with futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda i: call_result(call, b"b%d" % i), range(8)))
    bad = [(i, r) for i, r in enumerate(results) if r != b"b%d" % i]
    assert not bad, f"calls failed with one server down and one up: {bad[:3]}"
    # Then many calls within the cool-down: the dead server is not tried again.
    for i in range(30):
        assert call(b"s%d" % i, timeout=10) == b"s%d" % i
    assert b.stats()["calls"]["Unary"] == 38, b.stats()["calls"]
    f = failures(st, "half")
    assert f == 1, f"pc_upstream_connect_failures_total{{origin=\"half\"}} = {f} after 38 calls " \
                   f"(expected 1: the dead server is skipped for cooldown_ms)"


def call_result(call, msg):
    try:
        return call(msg, timeout=10)
    except grpc.RpcError as e:
        return describe(e)


def test_dead_server_retried_after_cooldown(st):
    """cooldown_ms 700: the dead server is left out that long, then tried again (and calls still
    succeed on the live one)."""
    call = st.h2c_channel("cool.test").unary_unary(UNARY)
    assert call(b"c0", timeout=10) == b"c0"
    f0 = failures(st, "cool")
    assert f0 == 1, f"first call: {f0} connect failures, expected 1"
    for i in range(10):
        assert call(b"c%d" % i, timeout=10) == b"c%d" % i
    assert failures(st, "cool") == 1, "the dead server was tried again within its cool-down"
    time.sleep(1.0)
    for i in range(10):
        assert call(b"d%d" % i, timeout=10) == b"d%d" % i
    f1 = failures(st, "cool")
    assert f1 >= 2, f"after the 700 ms cool-down the dead server was never tried again ({f1} failures)"


# --- 3. the origin's MAX_CONCURRENT_STREAMS, max_pending --------------------------------------


def sleep_burst(call, n, ms):
    def one(i):
        t0 = time.monotonic()
        try:
            r = json.loads(call(json.dumps({"ms": ms, "tag": i}).encode(), timeout=30))
            return ("ok", r, time.monotonic() - t0)
        except grpc.RpcError as e:
            return (e.code(), e.details(), time.monotonic() - t0)

    with futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def test_origin_max_concurrent_streams_queued(st):
    """Origin advertises MAX_CONCURRENT_STREAMS 2, max_connections 1: 12 concurrent 200 ms calls
    all succeed, two at a time (6 rounds)."""
    origin = st.origins["mcs2"]
    call = st.h2c_channel("mcs.test").unary_unary(SLEEP)
    json.loads(call(json.dumps({"ms": 1}).encode(), timeout=10))  # connection up, SETTINGS known
    origin.stats(reset=True)
    t0 = time.monotonic()
    results = sleep_burst(call, 12, 200)
    took = time.monotonic() - t0
    bad = [r for r in results if r[0] != "ok"]
    assert not bad, f"{len(bad)} of 12 calls failed: {bad[:3]}"
    stats = origin.stats()
    assert stats["calls"]["Sleep"] == 12, stats["calls"]
    assert stats["max_active"]["Sleep"] <= 2, f"the origin saw {stats['max_active']['Sleep']} calls at once (limit 2)"
    assert took >= 1.0, f"12 calls of 200 ms, 2 at a time, done in {took:.2f} s"


class SlowSettingsOrigin(pclib.LoopbackServer):
    """A raw h2c origin whose SETTINGS (MAX_CONCURRENT_STREAMS `mcs`) arrive `delay` s after the
    connection is accepted, and which, like an nghttp2-based server, refuses with
    RST_STREAM(REFUSED_STREAM) any stream beyond `mcs` open at once. Others are answered after
    `hold` s with one message b"ok" and grpc-status 0."""

    def __init__(self, delay=0.3, mcs=2, hold=0.15):
        self.delay, self.mcs, self.hold = delay, mcs, hold
        self.opened = self.refused = self.answered = self.max_open = 0
        super().__init__()

    def handle(self, c, n):
        import hpack

        enc = hpack.Encoder()
        try:
            if self.stopping.wait(self.delay):
                return
            c.sendall(frame(4, 0, 0, struct.pack(">HI", 3, self.mcs)))  # SETTINGS_MAX_CONCURRENT_STREAMS
            buf = b""
            preface = False
            due = {}  # stream id -> when to answer
            while not self.stopping.is_set():
                now = time.monotonic()
                for sid in [s for s, t in due.items() if t <= now]:
                    del due[sid]
                    c.sendall(frame(1, 0x4, sid, enc.encode([(":status", "200"), ("content-type", "application/grpc")]))
                              + frame(0, 0, sid, pclib.grpc_frame(b"ok"))
                              + frame(1, 0x5, sid, enc.encode([("grpc-status", "0")])))
                    with self.lock:
                        self.answered += 1
                c.settimeout(max(0.005, min([0.05] + [t - now for t in due.values()])))
                try:
                    chunk = c.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buf += chunk
                if not preface:
                    if len(buf) < len(PREFACE):
                        continue
                    buf, preface = buf[len(PREFACE):], True
                frames = h2_frames(buf)
                buf = buf[sum(9 + len(f[3]) for f in frames):]
                for ftype, flags, sid, payload in frames:
                    if ftype == 4 and not flags & 1:
                        c.sendall(frame(4, 1, 0))  # SETTINGS ACK
                    elif ftype == 6 and not flags & 1:
                        c.sendall(frame(6, 1, 0, payload))  # PING ACK
                    elif ftype == 1:
                        with self.lock:
                            self.opened += 1
                            if len(due) >= self.mcs:
                                self.refused += 1
                                c.sendall(frame(3, 0, sid, struct.pack(">I", 7)))  # REFUSED_STREAM
                                continue
                            due[sid] = time.monotonic() + self.hold
                            self.max_open = max(self.max_open, len(due))
                    elif ftype == 3:
                        due.pop(sid, None)
        except OSError:
            pass
        finally:
            c.close()


def test_origin_max_concurrent_streams_before_settings(st):
    """A fresh origin connection whose SETTINGS (limit 2) arrive 300 ms late: the 12 calls waiting
    for it must still all succeed; the edge may not open streams the origin then refuses (or must
    retry those it refused with REFUSED_STREAM, which the origin never processed)."""
    slow = st.slow_settings
    call = st.h2c_channel("slow-settings.test").unary_unary(UNARY)
    with futures.ThreadPoolExecutor(12) as ex:
        results = list(ex.map(lambda i: call_result(call, b"q%d" % i), range(12)))
    bad = [r for r in results if r != b"ok"]
    assert not bad, (f"{len(bad)} of 12 calls failed ({bad[0]}); the origin (MAX_CONCURRENT_STREAMS 2, "
                     f"SETTINGS after 300 ms) saw {slow.opened} streams opened, refused {slow.refused}, "
                     f"at most {slow.max_open} accepted at once")


def test_max_pending_refuses_excess_quickly(st):
    """max_connections 1, origin limit 2, max_pending 2: of 8 concurrent 600 ms calls, 4 run
    (2 at once, 2 waiting) and 4 are refused at once with UNAVAILABLE."""
    origin = st.origins["mcs2"]
    call = st.h2c_channel("pending.test").unary_unary(SLEEP)
    json.loads(call(json.dumps({"ms": 1}).encode(), timeout=10))  # connection up, SETTINGS known
    origin.stats(reset=True)
    results = sleep_burst(call, 8, 600)
    ok = [r for r in results if r[0] == "ok"]
    refused = [r for r in results if r[0] == grpc.StatusCode.UNAVAILABLE]
    assert len(ok) + len(refused) == 8, f"unexpected outcomes: {[r for r in results if r not in ok + refused]}"
    assert len(ok) == 4 and len(refused) == 4, f"{len(ok)} succeeded, {len(refused)} refused (expected 4 and 4)"
    slow = [r for r in refused if r[2] > 0.4 * SCALE]
    assert not slow, f"refusals took {[round(r[2], 2) for r in slow]} s (should not wait for a slot)"
    assert all("overload" in (r[1] or "") for r in refused), f"refusal messages: {[r[1] for r in refused]}"
    assert origin.stats()["calls"]["Sleep"] == 4


# --- 4. timeouts -------------------------------------------------------------------------------


def test_handshake_timeout(st):
    limited_proxy(st)
    with socket.create_connection(("127.0.0.1", st.lim_tls), timeout=5) as s:
        took, _ = read_until_closed(s, 5 * SCALE)
    assert took is not None, "a TLS connection that sent nothing was still open after 5 s"
    assert HANDSHAKE_MS / 1000 * 0.8 <= took <= 1.0 * SCALE, \
        f"closed after {took:.2f} s (handshake_timeout_ms {HANDSHAKE_MS})"


def test_header_timeout_incomplete_headers(st):
    """HEADERS without END_HEADERS and no CONTINUATION: the connection is ended after
    header_timeout_ms (the idle timeout, 1 s, must not be what ends it)."""
    import hpack

    limited_proxy(st)
    block = hpack.Encoder().encode(pclib.grpc_request_headers("example.com", UNARY, scheme="http"))
    with socket.create_connection(("127.0.0.1", st.lim_h2c), timeout=5) as s:
        s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x1, 1, block))  # END_STREAM, no END_HEADERS
        took, data = read_until_closed(s, 5 * SCALE)
    assert took is not None, "a connection with an unfinished header block was still open after 5 s"
    assert HEADER_MS / 1000 * 0.8 <= took <= 0.85 * SCALE, f"closed after {took:.2f} s (header_timeout_ms {HEADER_MS})"
    kinds = [f[0] for f in h2_frames(data)]
    assert GOAWAY in kinds, f"closed without GOAWAY (frames {kinds})"


def test_idle_timeout_closes_connection_without_streams(st):
    limited_proxy(st)
    with socket.create_connection(("127.0.0.1", st.lim_h2c), timeout=5) as s:
        s.sendall(PREFACE + frame(4, 0, 0))
        took, data = read_until_closed(s, 5 * SCALE)
    assert took is not None, "an idle connection was still open after 5 s"
    assert IDLE_MS / 1000 * 0.8 <= took <= (IDLE_MS / 1000 + 1.0) * SCALE, \
        f"closed after {took:.2f} s (idle_timeout_ms {IDLE_MS})"
    goaways = [f for f in h2_frames(data) if f[0] == GOAWAY]
    assert goaways, "idle connection closed without GOAWAY"
    code = int.from_bytes(goaways[0][3][4:8], "big")
    assert code == 0, f"idle GOAWAY error code {code}, expected NO_ERROR"


def test_idle_timeout_spares_open_streams(st):
    """A call lasting 2.5 idle periods on an otherwise quiet connection is not cut."""
    limited_proxy(st)
    ch = pclib.h2c_channel(st.lim_h2c, "example.com")
    st.channels.append(ch)
    ms = int(IDLE_MS * 2.5)
    reply = json.loads(ch.unary_unary(SLEEP)(json.dumps({"ms": ms}).encode(), timeout=20))
    assert reply["cancelled"] is False and reply["slept_ms"] >= ms - 20, reply
    # A bidi stream that stays silent for as long between two messages is not cut either.
    import queue

    q = queue.Queue()
    call = ch.stream_stream("/demo.Echo/Bidi")(iter(q.get, None), timeout=20)
    q.put(b"first")
    assert next(call) == b"first"
    time.sleep(ms / 1000)
    q.put(b"second")
    q.put(None)
    rest = list(call)
    assert rest == [b"second"], f"after {ms} ms of silence the stream gave {rest}"
    assert call.code() == grpc.StatusCode.OK, call.code()


# --- 5. compression --------------------------------------------------------------------------


def test_grpcio_compressed_calls_pass_through(st):
    payload = b"portcullis compresses nothing, it only looks " * 200
    targets = [(st.tls_channel("example.com"), "identity origin"), (st.tls_channel("gzip.example.com"), "gzip origin"),
               (st.tls_channel("deflate.example.com"), "deflate origin")]
    for comp in (grpc.Compression.Gzip, grpc.Compression.Deflate):
        for ch, label in targets:
            reply = ch.unary_unary(UNARY)(payload, compression=comp, timeout=10)
            assert reply == payload, f"{comp.name} to the {label}: {len(reply)} bytes came back"
            msgs = [payload[i:i + 1000] + bytes([i % 251]) for i in range(0, 20000, 1000)]
            got = list(ch.stream_stream("/demo.Echo/Bidi")(iter(msgs), compression=comp, timeout=20))
            assert got == msgs, f"{comp.name} bidi to the {label}: {len(got)} of {len(msgs)} echoes match"


def test_compressed_request_forwarded_byte_for_byte(st):
    """Messages are forwarded to the origin exactly as received: a gzip and a deflate message
    arrive compressed, with their grpc-encoding."""
    for enc, data in (("gzip", gzip.compress(b"squeeze me " * 500, mtime=0)),
                      ("deflate", zlib.compress(b"squash me " * 500, 9))):
        body = pclib.grpc_frame(data, flag=1) + pclib.grpc_frame(b"plain", flag=0)
        n = len(st.hang.requests)
        result = {}

        def send():
            result["r"] = h2c(st, "hang.test", [body], extra=[("grpc-encoding", enc)], timeout=1)

        t = threading.Thread(target=send)
        t.start()
        try:
            assert pclib.wait_until(lambda: len(st.hang.requests) > n and st.hang.requests[n]["ended"], 5), \
                f"{enc}: the request never fully reached the origin"
            req = st.hang.requests[n]
            assert req["headers"].get("grpc-encoding") == enc, req["headers"]
            assert req["body"] == body, \
                f"{enc}: origin got {len(req['body'])} bytes ({req['body'][:12]!r}...), sent {len(body)}"
        finally:
            t.join(10)


def test_origin_compressed_response_passes_through(st):
    payload = b"0123456789abcdef" * 1024
    for enc, host, unpack in (("gzip", "gzip.example.com", gzip.decompress),
                              ("deflate", "deflate.example.com", zlib.decompress)):
        r = h2c(st, host, [pclib.grpc_frame(payload)], extra=[("grpc-accept-encoding", "identity,deflate,gzip")])
        assert r.grpc_status == 0, f"{enc}: {r}"
        assert r.headers.get("grpc-encoding") == enc.encode(), f"{enc}: response headers {r.headers}"
        assert r.data[:1] == b"\x01", f"{enc}: response message not marked compressed: {r.data[:5]!r}"
        msgs, rest = pclib.grpc_messages(r.data)
        assert len(msgs) == 1 and not rest, f"{enc}: {len(msgs)} messages, {len(rest)} bytes left over"
        assert len(msgs[0]) < len(payload) // 4, f"{enc}: response not compressed on the way ({len(msgs[0])} bytes)"
        assert unpack(msgs[0]) == payload, f"{enc}: response changed on the way"


def test_decompressed_size_limit(st):
    """max_message_bytes 65536 applies to the decompressed size: 1 MiB of zeros is ~1 KiB on the
    wire and still RESOURCE_EXHAUSTED; 60000 bytes compressed pass."""
    origin = st.origins["echo"]
    before = origin.stats()["messages"]["Unary"]
    for enc, pack in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        bomb = pack(bytes(MiB))
        assert len(bomb) < 65536 // 8
        r = h2c(st, "small.test", [pclib.grpc_frame(bomb, flag=1)], extra=[("grpc-encoding", enc)])
        assert r.grpc_status == 8, f"{enc}: {len(bomb)} bytes inflating to 1 MiB: expected RESOURCE_EXHAUSTED: {r}"
        ok = bytes(60000)
        r = h2c(st, "small.test", [pclib.grpc_frame(pack(ok), flag=1)], extra=[("grpc-encoding", enc)])
        assert r.grpc_status == 0, f"{enc}: 60000 bytes under a 65536 limit: {r}"
        assert pclib.grpc_messages(r.data)[0] == [ok], f"{enc}: echo of 60000 bytes differs"
    assert origin.stats()["messages"]["Unary"] == before + 2, "an over-size message reached the origin"
    err = rpc_error(st.h2c_channel("small.test").unary_unary(UNARY), bytes(MiB), compression=grpc.Compression.Gzip,
                    timeout=10)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(err)


def test_unknown_encoding_unimplemented(st):
    origin = st.origins["echo"]
    before = origin.stats()["messages"]["Unary"]
    r = h2c(st, "example.com", [pclib.grpc_frame(b"\x00\x10snappy?", flag=1)], extra=[("grpc-encoding", "snappy")])
    assert r.grpc_status == 12, f"message compressed with 'snappy': expected UNIMPLEMENTED (12): {r}"
    assert r.status == 200, r
    assert origin.stats()["messages"]["Unary"] == before, "the undecodable message reached the origin"


# --- 6. back-pressure ------------------------------------------------------------------------


def test_slow_reader_backpressure_bounds_memory(st):
    """10 MiB server stream to a client that stops reading after its first 64 KiB window: the edge
    stops reading the origin (its RSS stays flat, the origin's handler cannot finish); reading in
    1 MiB gulps afterwards gets all of it, intact."""
    origin = st.origins["echo"]
    pid = st.proxy.proc.pid
    count, size = 160, 64 * 1024
    # Warm up: the origin connection exists and has carried a large stream once.
    warm = st.h2c_channel("example.com").unary_stream(SERVER_STREAM)
    assert len(list(warm(json.dumps({"count": 40, "size": size}).encode(), timeout=20))) == 40
    rss0 = vmrss_kib(pid)
    origin.stats(reset=True)

    r = pclib.SlowReader(st.h2c_port, pclib.grpc_request_headers("example.com", SERVER_STREAM, scheme="http"),
                         pclib.grpc_frame(json.dumps({"count": count, "size": size}).encode()))
    try:
        # Read without granting any window until nothing more comes, then hold still for 1 s.
        stalled_at = r.stall()
        assert stalled_at <= 65535 + 5, f"received {stalled_at} bytes beyond a 65535-byte window"
        time.sleep(1.0)
        r.pump(0.05)
        rss1 = vmrss_kib(pid)
        stats = origin.stats()
        assert stats["calls"]["ServerStream"] == 1, stats["calls"]
        assert stats["completed"]["ServerStream"] == 0 and stats["active"]["ServerStream"] == 1, \
            f"the origin finished its 10 MiB stream while the client read {stalled_at} bytes: no back-pressure"
        grew = (rss1 - rss0) / 1024
        assert grew < 4, f"edge RSS grew {grew:.1f} MiB while a client held a 10 MiB stream at 64 KiB"

        # Now read in 1 MiB gulps (one WINDOW_UPDATE per gulp), slowly.
        peak = rss1
        t_end = time.monotonic() + 60 * SCALE
        while not r.ended and r.reset is None and time.monotonic() < t_end:
            r.grant(MiB)
            peak = max(peak, vmrss_kib(pid))
            time.sleep(0.05)
        assert r.ended, f"stream did not end (reset {r.reset}, {len(r.data)} bytes)"
    finally:
        r.close()
    state = {"data": r.data, "headers": r.header_blocks}
    msgs, rest = pclib.grpc_messages(bytes(state["data"]))
    assert len(msgs) == count and not rest, f"{len(msgs)} of {count} messages, {len(rest)} bytes left over"
    bad = [i for i, m in enumerate(msgs) if m != server_stream_message(i, size)]
    assert not bad, f"{len(bad)} messages differ, first at index {bad[0]}"
    assert state["headers"] and state["headers"][-1].get(b"grpc-status") == b"0", state["headers"]
    if not is_sanitizer_build():  # ASan's quarantine keeps freed buffers resident
        grew = (peak - rss0) / 1024
        assert grew < 8, f"edge RSS grew {grew:.1f} MiB while relaying a 10 MiB stream read in 1 MiB gulps"


def test_edge_still_serves(st):
    assert st.tls_channel("example.com").unary_unary(UNARY)(b"still here", timeout=10) == b"still here"
    if st.limited is not None:
        assert st.limited.alive(), "the short-timeouts proxy exited"


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
