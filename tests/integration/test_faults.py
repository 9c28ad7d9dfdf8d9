#!/usr/bin/python3
"""Origin faults and vanishing clients: an origin killed mid-stream, refusing connections,
answering with GOAWAY, resetting streams or stalling (accepting and never reading), and a client
that disappears mid-stream. For each: no call hangs (every call has a bounded deadline and must end
well before it), every client gets a gRPC status (the one asserted per fault), nothing is lost or
duplicated (the origin is checked for replays), and the pool recovers once a working origin is back
on the same port (after cooldown_ms where a connection failed). A client that vanishes has its
origin streams reset and its resources freed: the proxy's stream and connection gauges come back,
and a sanitizer build reports no leak at exit (pclib's teardown reads its stderr)."""

import json
import os
import select
import socket
import subprocess
import threading
import time

import grpc

import pclib
from grpc_origin import server_stream_message
from pclib import PortOrigin, RawH2, describe, metric_sum, origin_conf, scrape_metrics, zone_conf

UNARY = "/demo.Echo/Unary"
CLIENT_STREAM = "/demo.Echo/ClientStream"
SERVER_STREAM = "/demo.Echo/ServerStream"
BIDI = "/demo.Echo/Bidi"
SLEEP = "/demo.Echo/Sleep"
SCALE = pclib.TIME_SCALE
COOLDOWN_MS = 1000
FAULTS = ("killed", "refusing", "goaway", "reset", "stall")
CALL_DEADLINE = 20.0  # every call's deadline (s): generous, but bounded
STATUS_WITHIN = 5.0  # a fault must reach every affected client within this (s)


def host(fault):
    """The zone (host name) whose origin has this fault; covered by the edge certificate."""
    return f"{fault}-origin.example.com"


def setup():
    st = pclib.Stack("faults")
    st.echo = st.start_origin("echo")
    st.ports = {name: pclib.free_port() for name in FAULTS}
    st.admin_port = pclib.free_port()
    st.access_path = os.path.join(st.dir, "access.log")
    origins = [origin_conf("echo", st.echo.port)] + [
        origin_conf(name, port, connect_timeout_ms=1000, cooldown_ms=COOLDOWN_MS) for name, port in st.ports.items()]
    zones = pclib.default_zones("echo") + [zone_conf(name, [host(name)], name) for name in FAULTS]
    extra = {"workers": 2, "admin": {"address": f"127.0.0.1:{st.admin_port}"},
             "log": {"access": st.access_path, "level": "info"}}
    st.start_proxy(origins, zones, extra=extra)
    st.call_seq = 0
    return st


# --- calls and their outcomes ---------------------------------------------------------------------


class Call:
    """One gRPC call of a given kind, run in a thread of its own with a bounded deadline. Records
    the status code (OK when the answer checked out), when it ended and a detail. kind:
      unary          Unary echo of a unique payload
      sleep          Sleep {"ms": N} (in flight for a while)
      server_stream  ServerStream of `count` messages, each checked against the origin's pattern
      client_stream  ClientStream of `count` messages sent `gap` s apart; the digest is checked
      bidi           Bidi, one message every `gap` s, each echo checked
    Every call carries metadata x-call-id, unique, so an origin can tell a replay."""

    def __init__(self, st, channel, kind, deadline=CALL_DEADLINE, count=5, gap=0.0, size=1000, ms=3000):
        st.call_seq += 1
        self.id = f"call-{st.call_seq}"
        self.channel = channel
        self.kind = kind
        self.deadline = deadline * SCALE
        self.count, self.gap, self.size, self.ms = count, gap, size, ms
        self.code = None
        self.detail = ""
        self.received = 0
        self.ended = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self):
        md = (("x-call-id", self.id),)
        try:
            if self.kind == "unary":
                payload = self.id.encode() + os.urandom(16).hex().encode()
                reply = self.channel.unary_unary(UNARY)(payload, timeout=self.deadline, metadata=md)
                self._check(reply == payload, f"wrong echo {reply[:40]!r}")
            elif self.kind == "sleep":
                reply = json.loads(self.channel.unary_unary(SLEEP)(json.dumps({"ms": self.ms, "tag": self.id}).encode(),
                                                                   timeout=self.deadline, metadata=md))
                self._check(reply["tag"] == self.id and not reply["cancelled"], f"reply {reply}")
            elif self.kind == "server_stream":
                req = json.dumps({"count": self.count, "size": self.size}).encode()
                replies = self.channel.unary_stream(SERVER_STREAM)(req, timeout=self.deadline, metadata=md)
                for i, m in enumerate(replies):
                    if m != server_stream_message(i, self.size):
                        self._check(False, f"message {i} differs from what the origin sent")
                        return
                    self.received += 1
                self._check(self.received == self.count, f"{self.received} of {self.count} messages")
            elif self.kind == "client_stream":
                msgs = [os.urandom(self.size) for _ in range(self.count)]

                def gen():
                    for m in msgs:
                        yield m
                        if self.gap:
                            time.sleep(self.gap)

                reply = json.loads(self.channel.stream_unary(CLIENT_STREAM)(gen(), timeout=self.deadline, metadata=md))
                self._check(reply == {"count": self.count, "bytes": self.count * self.size,
                                      "sha256": pclib.sha256(b"".join(msgs))}, f"reply {reply}")
            elif self.kind == "bidi":
                msgs = [b"%s-%d-" % (self.id.encode(), i) + os.urandom(8).hex().encode() for i in range(self.count)]

                def gen():
                    for m in msgs:
                        yield m
                        if self.gap:
                            time.sleep(self.gap)

                for i, m in enumerate(self.channel.stream_stream(BIDI)(gen(), timeout=self.deadline, metadata=md)):
                    if m != msgs[i]:
                        self._check(False, f"echo {i} differs")
                        return
                    self.received += 1
                self._check(self.received == self.count, f"{self.received} of {self.count} echoes")
            else:
                raise ValueError(self.kind)
        except grpc.RpcError as e:
            self.code = e.code()
            self.detail = e.details() or ""
        except Exception as e:  # a bug in the test, reported as such
            self.code = "error"
            self.detail = f"{type(e).__name__}: {e}"
        finally:
            self.ended = time.monotonic()

    def _check(self, ok, why):
        self.code = grpc.StatusCode.OK if ok else "wrong"
        if not ok:
            self.detail = why

    def join(self, timeout):
        self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def took(self):
        return (self.ended or time.monotonic()) - self.started

    def __repr__(self):
        code = self.code.name if isinstance(self.code, grpc.StatusCode) else self.code
        return f"{self.kind}[{self.id}]={code}({self.detail[:80]!r}, {self.took:.1f} s, {self.received} recv)"


def finish(calls, within):
    """Waits for every call; AssertionError naming any still running after `within` s."""
    end = time.monotonic() + within * SCALE
    for c in calls:
        c.join(max(0.0, end - time.monotonic()))
    hung = [c for c in calls if c.ended is None]
    assert not hung, f"calls still running after {within:.0f} s: {hung}"
    return calls


def expect(calls, codes, what):
    bad = [c for c in calls if c.code not in codes]
    assert not bad, f"{what}: expected {[x.name for x in codes]}, got {bad}"


def mixed(st, ch, n=2, **kw):
    """n calls of each kind, short ones."""
    kinds = ("unary", "server_stream", "client_stream", "bidi")
    return [Call(st, ch, k, **kw) for k in kinds for _ in range(n)]


def wait_recovered(st, ch, since, what, cooldown=True):
    """Unary calls every 100 ms until one succeeds; returns the seconds from `since`. The bound is
    cooldown_ms (when a connection failed) plus 5 s."""
    limit = (COOLDOWN_MS / 1000 if cooldown else 0) + 5 * SCALE
    while True:
        c = Call(st, ch, "unary", deadline=5)
        c.join(10)
        if c.code == grpc.StatusCode.OK:
            return time.monotonic() - since
        if time.monotonic() - since > limit:
            raise AssertionError(f"{what}: no call succeeded {limit:.1f} s after the origin came back: {c}")
        time.sleep(0.1)


def origin_at(st, name, tag):
    """A real origin (grpc_origin.py) on the fault's port: the origin coming back."""
    o = PortOrigin(st.dir, st.ports[name], name=f"{name}-{tag}")
    st.origins[f"{name}-{tag}"] = o
    return o


def drop_origin(st, o):
    st.origins = {k: v for k, v in st.origins.items() if v is not o}


def access_reasons(st, since_line):
    lines = pclib.read_json_lines(st.access_path)[since_line:]
    return [r.get("reason") for r in lines]


# --- scripted origins -----------------------------------------------------------------------------


class ScriptedOrigin(pclib.LoopbackServer):
    """A raw h2c origin on a given port that misbehaves on purpose:
      goaway-refuse   each request is answered with GOAWAY(last stream = before it, NO_ERROR): not
                      processed; the connection is closed 100 ms later
      goaway-after    each request is answered in full (gRPC echo of its body, grpc-status 0), then
                      GOAWAY(last stream = it, NO_ERROR) and the connection closed 100 ms later
      reset           each request is reset: RST_STREAM with the code in x-reset-code (default
                      CANCEL), at once, or with x-reset-after: message after the response headers
                      and three messages
      silent          connections are accepted and then never read from or written to
      stall           the server's SETTINGS are sent (so the HTTP/2 connection is up), and then the
                      connection is never read from or written to again
    Every request is recorded (connection number, stream id, x-call-id, answered or not)."""

    def __init__(self, port, mode):
        self.mode = mode
        self.requests = []
        super().__init__(port)

    def handle(self, c, n):
        if self.mode == "silent":
            return  # accepted, never read: the kernel buffers fill and stay full
        if self.mode == "stall":
            try:
                c.sendall(pclib.h2_settings())  # the server preface, then nothing, ever
            except OSError:
                pass
            return
        import h2.config
        import h2.connection
        import h2.events

        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None,
                                                                   validate_inbound_headers=False))
        streams = {}
        close_at = None
        try:
            conn.initiate_connection()
            c.sendall(conn.data_to_send())
            c.settimeout(0.05)
            while not self.stopping.is_set():
                if close_at and time.monotonic() >= close_at:
                    break
                try:
                    data = c.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        hdrs = {k.decode(): v.decode("latin-1") for k, v in ev.headers}
                        req = {"conn": n, "sid": ev.stream_id, "call_id": hdrs.get("x-call-id"),
                               "path": hdrs.get(":path"), "answered": False, "body": b"", "headers": hdrs}
                        with self.lock:
                            self.requests.append(req)
                        streams[ev.stream_id] = req
                        if self.mode == "goaway-refuse":
                            conn.close_connection(error_code=0, last_stream_id=max(0, ev.stream_id - 2))
                            close_at = close_at or time.monotonic() + 0.1
                        elif self.mode == "reset" and hdrs.get("x-reset-after") != "message":
                            conn.reset_stream(ev.stream_id, int(hdrs.get("x-reset-code", "8")))
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.stream_id in streams:
                            streams[ev.stream_id]["body"] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in streams:
                        req = streams[ev.stream_id]
                        if self.mode == "goaway-after" and close_at is None:
                            self._answer(conn, ev.stream_id, req)
                            conn.close_connection(error_code=0, last_stream_id=ev.stream_id)
                            close_at = time.monotonic() + 0.1
                        elif self.mode == "reset" and req["headers"].get("x-reset-after") == "message":
                            conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                            for i in range(3):
                                conn.send_data(ev.stream_id, pclib.grpc_frame(server_stream_message(i, 100)))
                            conn.reset_stream(ev.stream_id, int(req["headers"].get("x-reset-code", "8")))
                out = conn.data_to_send()
                if out:
                    c.sendall(out)
        except Exception:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    @staticmethod
    def _answer(conn, sid, req):
        msgs, _ = pclib.grpc_messages(req["body"])
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        for m in msgs:
            conn.send_data(sid, pclib.grpc_frame(m))
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        req["answered"] = True

    def answered_ids(self):
        with self.lock:
            return [r["call_id"] for r in self.requests if r["answered"]]


# --- tests ----------------------------------------------------------------------------------------


def test_origin_killed_mid_stream(st):
    """SIGKILL the origin while calls of every kind are in flight: each gets UNAVAILABLE within a few
    seconds (what a stream received before stays intact), calls during the outage get UNAVAILABLE
    fast, and once the origin is back on its port (after cooldown_ms) calls work again, with none
    of the interrupted ones replayed to it."""
    origin = origin_at(st, "killed", "1")
    ch = st.tls_channel(host("killed"))
    first = finish([Call(st, ch, "unary")], 10)
    expect(first, {grpc.StatusCode.OK}, "a call before the fault")
    inflight = ([Call(st, ch, "sleep", ms=15000) for _ in range(3)] +
                [Call(st, ch, "bidi", count=200, gap=0.05) for _ in range(2)] +
                [Call(st, ch, "client_stream", count=200, gap=0.05) for _ in range(2)] +
                [Call(st, ch, "server_stream", count=2000000, size=1000) for _ in range(2)])
    want = {"Sleep": 3, "Bidi": 2, "ClientStream": 2, "ServerStream": 2}
    assert pclib.wait_until(lambda: all(origin.stats()["calls"][m] >= n for m, n in want.items()), 10), \
        f"calls did not all reach the origin: {origin.stats()['calls']}"
    time.sleep(0.3)
    drop_origin(st, origin)
    origin.kill()
    killed_at = time.monotonic()
    finish(inflight, STATUS_WITHIN + 5)
    expect(inflight, {grpc.StatusCode.UNAVAILABLE}, "calls in flight when the origin died")
    slowest = max(c.ended for c in inflight) - killed_at
    assert slowest < STATUS_WITHIN * SCALE, f"the last in-flight call got its status {slowest:.1f} s after the kill"
    streamed = [c for c in inflight if c.kind == "server_stream"]
    assert all(c.received > 0 for c in streamed), f"server streams had received nothing: {streamed}"

    # The outage: UNAVAILABLE, fast.
    during = finish(mixed(st, ch, n=1), STATUS_WITHIN)
    expect(during, {grpc.StatusCode.UNAVAILABLE}, "calls while the origin is down")
    assert max(c.took for c in during) < 3 * SCALE, f"UNAVAILABLE took up to {max(c.took for c in during):.1f} s"

    # Back on the same port.
    origin = origin_at(st, "killed", "2")
    took = wait_recovered(st, ch, time.monotonic(), "origin killed")
    after = finish(mixed(st, ch, n=2), 30)
    expect(after, {grpc.StatusCode.OK}, "calls after the origin came back")
    calls = origin.stats()["calls"]
    assert calls["Sleep"] == 0, f"the restarted origin got {calls['Sleep']} Sleep calls: a call was replayed"
    assert calls["Bidi"] == 2 and calls["ClientStream"] == 2 and calls["ServerStream"] == 2, \
        f"the restarted origin saw {calls}, expected exactly the 2 + 2 + 2 new streaming calls"
    pclib.log(f"    killed: {len(inflight)} in-flight calls UNAVAILABLE within {slowest:.2f} s; "
              f"recovered {took:.2f} s after the restart")


def test_origin_refusing_connections(st):
    """Nothing listens on the origin's port: every call gets UNAVAILABLE at once, naming the origin
    as unreachable (the server then sits out cooldown_ms). An origin started there is used again
    within cooldown_ms."""
    ch = st.tls_channel(host("refusing"))
    calls = finish(mixed(st, ch, n=2), STATUS_WITHIN)
    expect(calls, {grpc.StatusCode.UNAVAILABLE}, "calls to a port that refuses connections")
    assert all("unreachable" in c.detail for c in calls), [c.detail for c in calls]
    assert max(c.took for c in calls) < 3 * SCALE, f"UNAVAILABLE took up to {max(c.took for c in calls):.1f} s"
    origin = origin_at(st, "refusing", "1")
    took = wait_recovered(st, ch, time.monotonic(), "origin refusing connections")
    after = finish(mixed(st, ch, n=2), 30)
    expect(after, {grpc.StatusCode.OK}, "calls once the origin listens")
    assert origin.stats()["calls"]["Unary"] == 2 + 1, origin.stats()["calls"]  # the 2 + the one that succeeded
    pclib.log(f"    refusing: {len(calls)} calls UNAVAILABLE in <= {max(c.took for c in calls):.2f} s; "
              f"recovered {took:.2f} s after the origin started")
    drop_origin(st, origin)
    origin.stop()


def test_origin_goaway(st):
    """An origin that answers with GOAWAY. (1) Refusing (last stream before the request: not
    processed): each call gets UNAVAILABLE, none hangs. (2) Graceful (the request answered, then
    GOAWAY and close): every call succeeds, each reaching the origin exactly once, on fresh
    connections. (3) Graceful with calls in parallel: each gets OK or UNAVAILABLE, no call is
    answered twice. Then a real origin on the port serves again."""
    ch = st.tls_channel(host("goaway"))
    o = ScriptedOrigin(st.ports["goaway"], "goaway-refuse")
    try:
        calls = finish([Call(st, ch, "unary") for _ in range(6)] + [Call(st, ch, "client_stream", count=3)],
                       STATUS_WITHIN)
        expect(calls, {grpc.StatusCode.UNAVAILABLE}, "calls refused by GOAWAY")
        assert all(r["answered"] is False for r in o.requests)
    finally:
        o.stop()

    o = ScriptedOrigin(st.ports["goaway"], "goaway-after")
    try:
        time.sleep(COOLDOWN_MS / 1000)
        seq = []
        for _ in range(8):
            c = Call(st, ch, "unary")
            finish([c], STATUS_WITHIN)
            seq.append(c)
        expect(seq, {grpc.StatusCode.OK}, "sequential calls, each answered then GOAWAY")
        ids = o.answered_ids()
        assert sorted(ids) == sorted(c.id for c in seq), f"answered at the origin: {ids}"
        conns = {r["conn"] for r in o.requests}
        assert len(conns) >= 4, f"{len(seq)} calls used only {len(conns)} origin connections after GOAWAYs"

        par = finish([Call(st, ch, "unary") for _ in range(12)], STATUS_WITHIN + 5)
        expect(par, {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, "parallel calls across GOAWAYs")
        ids = o.answered_ids()
        assert len(ids) == len(set(ids)), f"a call was answered twice by the origin: {ids}"
        ok = {c.id for c in par if c.code == grpc.StatusCode.OK}
        assert ok <= set(ids), f"calls reported OK that the origin never answered: {ok - set(ids)}"
        assert ok, "no parallel call got through"
    finally:
        o.stop()

    origin = origin_at(st, "goaway", "1")
    wait_recovered(st, ch, time.monotonic(), "origin answering GOAWAY")
    expect(finish(mixed(st, ch, n=1), 30), {grpc.StatusCode.OK}, "calls to a real origin after the GOAWAYs")
    drop_origin(st, origin)
    origin.stop()
    pclib.log(f"    goaway: {len(seq)} sequential calls over {len(conns)} connections; parallel: "
              f"{len(ok)} OK, {len(par) - len(ok)} UNAVAILABLE")


def test_origin_resetting_streams(st):
    """An origin that resets streams: the client sees the same reset as a gRPC status (REFUSED_STREAM
    -> UNAVAILABLE, CANCEL -> CANCELLED, INTERNAL_ERROR and NO_ERROR -> INTERNAL, ENHANCE_YOUR_CALM ->
    RESOURCE_EXHAUSTED); the connection to the origin survives the resets; a real origin on the
    port serves again."""
    ch = st.tls_channel(host("reset"))
    o = ScriptedOrigin(st.ports["reset"], "reset")
    cases = {7: grpc.StatusCode.UNAVAILABLE, 8: grpc.StatusCode.CANCELLED, 2: grpc.StatusCode.INTERNAL,
             0: grpc.StatusCode.INTERNAL, 11: grpc.StatusCode.RESOURCE_EXHAUSTED}
    try:
        for code, want in cases.items():
            for _ in range(3):
                err = pclib.rpc_error(ch.unary_unary(UNARY), b"x", timeout=CALL_DEADLINE,
                                      metadata=(("x-reset-code", str(code)),))
                assert err.code() == want, f"origin RST_STREAM {pclib.h2_error_name(code)}: {describe(err)}"
        assert len(o.requests) == 3 * len(cases), f"{len(o.requests)} requests at the origin"
        assert len(o.conns) <= 2, f"{len(o.conns)} origin connections for {len(o.requests)} resets (2 workers)"
    finally:
        o.stop()
    origin = origin_at(st, "reset", "1")
    wait_recovered(st, ch, time.monotonic(), "origin resetting streams")
    expect(finish(mixed(st, ch, n=1), 30), {grpc.StatusCode.OK}, "calls to a real origin after the resets")
    drop_origin(st, origin)
    origin.stop()


def test_origin_reset_after_messages(st):
    """An origin that sends the response headers and three messages, then resets the stream
    (INTERNAL_ERROR): the client receives the three messages, in order, then the RST_STREAM, as
    it would from the origin itself; the edge must not drop data the origin sent before its reset.
    Checked on the wire with a raw HTTP/2 client, over TLS and h2c (a grpcio client itself
    discards messages it has not yet handed to the application when a RST_STREAM comes, so it
    cannot tell)."""
    o = ScriptedOrigin(st.ports["reset"], "reset")
    want = [server_stream_message(i, 100) for i in range(3)]
    try:
        for tls in (True, False, True, False):
            c = RawH2(st.tls_port if tls else st.h2c_port, tls=tls, ca=st.certs["ca"])
            headers = pclib.grpc_request_headers(host("reset"), SERVER_STREAM, scheme="https" if tls else "http",
                                                 extra=[("x-reset-code", "2"), ("x-reset-after", "message")])
            sid = c.request(headers, pclib.grpc_frame(b"{}"))
            assert c.wait(lambda c: c.stream_done(sid), STATUS_WITHIN), f"no reset reached the client: {c!r}"
            c.close()
            got, rest = pclib.grpc_messages(c.data.get(sid, b""))
            assert c.resets.get(sid) == 2, f"expected RST_STREAM INTERNAL_ERROR: {c!r}"
            assert got == want and rest == b"", \
                f"the origin sent 3 messages before its reset; {'TLS' if tls else 'h2c'} client got {len(got)}" \
                f"{' and a partial one' if rest else ''}"
    finally:
        o.stop()


def test_origin_stalling(st):
    """An origin that completes the HTTP/2 handshake (its SETTINGS) and then never reads or writes
    again. Each call ends at its deadline with DEADLINE_EXCEEDED from the edge (grpc-timeout),
    including a 20 MiB upload held back by flow control (memory stays flat); no call hangs past
    its deadline. When a working origin replaces it on the port, calls succeed again."""
    ch = st.tls_channel(host("stall"))
    o = ScriptedOrigin(st.ports["stall"], "stall")
    rss = pclib.RssWatch(st.proxy.proc.pid)
    try:
        calls = [Call(st, ch, k, deadline=2) for k in ("unary", "sleep", "server_stream", "bidi")]
        calls += [Call(st, ch, "client_stream", deadline=3, count=20, size=1 << 20)]
        finish(calls, 3 + STATUS_WITHIN)
        expect(calls, {grpc.StatusCode.DEADLINE_EXCEEDED}, "calls to a stalled origin")
        late = [c for c in calls if c.took > c.deadline + 2 * SCALE]
        assert not late, f"calls ended long after their deadline: {late}"

        # The edge itself ends the call (the client sets no deadline of its own here).
        c = RawH2(st.h2c_port, tls=False)
        headers = pclib.grpc_request_headers(host("stall"), UNARY, scheme="http", extra=[("grpc-timeout", "1000m")])
        sid = c.request(headers, pclib.grpc_frame(b"x"))
        assert c.wait(lambda c: c.stream_done(sid), 5), f"no answer from the edge 5 s into a 1 s deadline: {c!r}"
        assert c.grpc_status(sid) == 4, f"expected grpc-status 4 (DEADLINE_EXCEEDED) from the edge: {c.blocks}"
        c.close()
        assert o.conns, "the proxy never connected to the stalled origin"
    finally:
        growth = rss.stop()
        o.stop()
    bound = 64 + (256 if pclib.binary_sanitized() else 0)
    assert growth < bound, f"proxy RSS grew by {growth:.1f} MiB with uploads held by a stalled origin"
    origin = origin_at(st, "stall", "1")
    took = wait_recovered(st, ch, time.monotonic(), "stalled origin replaced", cooldown=False)
    expect(finish(mixed(st, ch, n=1), 30), {grpc.StatusCode.OK}, "calls after the stalled origin was replaced")
    drop_origin(st, origin)
    origin.stop()
    pclib.log(f"    stall: {len(calls)} calls DEADLINE_EXCEEDED on time; RSS +{growth:.1f} MiB; "
              f"recovered {took:.2f} s after the replacement")


def test_origin_stalling_before_settings(st):
    """A call without a deadline to an origin that accepts the TCP connection but never speaks
    HTTP/2 (no SETTINGS): the connection never becomes a working HTTP/2 connection, so the edge
    gives up on it as on a failed connect (connect_timeout_ms, 1 s here) and answers UNAVAILABLE,
    instead of holding the call for ever (or until the client's own deadline)."""
    o = ScriptedOrigin(st.ports["stall"], "silent")
    try:
        # The client's deadline only bounds the test; the edge sees no grpc-timeout.
        c = RawH2(st.h2c_port, tls=False)
        sid = c.request(pclib.grpc_request_headers(host("stall"), UNARY, scheme="http"), pclib.grpc_frame(b"x"))
        c.wait(lambda c: c.stream_done(sid), 6 * SCALE)
        c.close()
        assert c.stream_done(sid), "no answer 6 s into a call to an origin that never sent SETTINGS " \
                                   "(connect_timeout_ms is 1 s): the call would wait forever"
        assert c.grpc_status(sid) == 14, f"expected grpc-status 14 (UNAVAILABLE): {c.blocks.get(sid)} {c!r}"
    finally:
        o.stop()
    origin = origin_at(st, "stall", "2")
    wait_recovered(st, st.tls_channel(host("stall")), time.monotonic(), "stalled origin replaced")
    drop_origin(st, origin)
    origin.stop()


_VANISHING_CLIENT = r"""
import sys, time, grpc
ch = grpc.insecure_channel(sys.argv[1], options=[("grpc.default_authority", "example.com"),
                                                  ("grpc.enable_http_proxy", 0)])
def gen():
    i = 0
    while True:
        yield b"vanishing-%d" % i
        i += 1
        time.sleep(0.05)
for reply in ch.stream_stream("/demo.Echo/Bidi")(gen()):
    print(reply.decode(), flush=True)
"""


def test_client_disappears_mid_stream(st):
    """Clients that vanish mid-call: raw connections dropped with a TCP reset while a client
    stream, a bidi stream, a sleeping unary call and a server stream (response queued at the
    edge, window shut) are open, and a grpcio client process killed with SIGKILL mid-bidi. Every
    origin stream is cancelled, and the edge's gauges of open streams and connections return to
    where they were (nothing leaked; the sanitizer build checks memory at exit)."""
    origin = st.echo
    before = origin.stats()
    samples = scrape_metrics(st.admin_port)
    streams0 = metric_sum(samples, "pc_streams_active") or 0
    conns0 = metric_sum(samples, "pc_connections_active") or 0
    log0 = len(pclib.read_json_lines(st.access_path))

    hdr = lambda path: pclib.grpc_request_headers("example.com", path)  # noqa: E731
    vanished = []
    for tls in (True, False):
        port = st.tls_port if tls else st.h2c_port
        c = RawH2(port, tls=tls, ca=st.certs["ca"],
                  settings=[(pclib.H2_SETTINGS_INITIAL_WINDOW_SIZE, 0)], window_updates=False)
        c.request(hdr(CLIENT_STREAM), pclib.grpc_frame(b"part one"), end_stream=False)
        c.request(hdr(BIDI), pclib.grpc_frame(b"echo me"), end_stream=False)
        c.request(hdr(SLEEP), pclib.grpc_frame(json.dumps({"ms": 20000}).encode()))
        c.request(hdr(SERVER_STREAM), pclib.grpc_frame(json.dumps({"count": 1000, "size": 65536}).encode()))
        vanished.append(c)
    proc = pclib.spawn([pclib.PYTHON, "-c", _VANISHING_CLIENT, f"127.0.0.1:{st.h2c_port}"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        want = {"ClientStream": 2, "Bidi": 3, "Sleep": 2, "ServerStream": 2}

        def arrived():
            calls = origin.stats()["calls"]
            return all(calls[m] - before["calls"][m] >= n for m, n in want.items())

        assert pclib.wait_until(arrived, 15), f"calls did not reach the origin: {origin.stats()['calls']}"
        ready, _, _ = select.select([proc.stdout], [], [], 10 * SCALE)
        assert ready and proc.stdout.readline().startswith(b"vanishing-"), "the grpcio client got no echo"
        time.sleep(0.5)
        for c in vanished:
            c.close(abort=True)
        proc.kill()
        proc.wait(10)
    finally:
        pclib.stop_process(proc)
        if proc.stdout:
            proc.stdout.close()

    def cancelled():
        now = origin.stats()["cancelled"]
        return {m: now[m] - before["cancelled"][m] for m in want}

    assert pclib.wait_until(lambda: all(cancelled()[m] >= n for m, n in want.items()), STATUS_WITHIN), \
        f"origin streams not all cancelled (got {cancelled()}, want {want})"

    def gauges():
        s = scrape_metrics(st.admin_port)
        return metric_sum(s, "pc_streams_active") or 0, metric_sum(s, "pc_connections_active") or 0

    assert pclib.wait_until(lambda: gauges()[0] <= streams0 and gauges()[1] <= conns0, STATUS_WITHIN), \
        f"streams/connections still counted after the clients vanished: {gauges()} (before: {streams0}, {conns0})"
    reasons = access_reasons(st, log0)
    assert reasons.count("client_reset") >= 9, f"access log reasons: {reasons[-20:]}"
    pclib.log(f"    vanished: origin cancellations {cancelled()}; gauges back to {gauges()}")


def test_edge_healthy_after_faults(st):
    ch = st.tls_channel("example.com")
    expect(finish(mixed(st, ch, n=2), 30), {grpc.StatusCode.OK}, "the edge after all faults")
    assert st.proxy.alive()


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
