#!/usr/bin/python3
"""Errors the edge must turn into gRPC statuses: unreachable or failing origins (UNAVAILABLE),
deadlines (DEADLINE_EXCEEDED, and the remaining time passed on), client cancellation reaching the
origin, over-size messages (RESOURCE_EXHAUSTED) and malformed gRPC framing (INTERNAL)."""

import json
import time

import grpc

import pclib
from pclib import describe, origin_conf, rpc_error, zone_conf

UNARY = "/demo.Echo/Unary"
SLEEP = "/demo.Echo/Sleep"
SCALE = pclib.TIME_SCALE


def setup():
    st = pclib.Stack("errors")
    echo = st.start_origin("echo")
    fragile = st.start_origin("fragile")
    tls_origin = st.start_origin("echo-tls", tls=True)
    st.stub = st.start_stub()
    down_port = pclib.free_port()  # nothing listens here
    origins = [
        origin_conf("echo", echo.port),
        origin_conf("fragile", fragile.port),
        origin_conf("down", down_port, connect_timeout_ms=1000),
        origin_conf("stub", st.stub.port),
        origin_conf("wrong-ca", tls_origin.port, connect_timeout_ms=1000,
                    tls={"ca": "certs/other-ca.pem", "sni": "origin.test"}),
    ]
    zones = pclib.default_zones("echo") + [
        zone_conf("down", ["down.example.com"], "down"),
        zone_conf("hang", ["hang.example.com"], "stub"),
        zone_conf("fragile", ["fragile.example.com"], "fragile"),
        zone_conf("wrong-ca", ["wrongca.example.com"], "wrong-ca"),
    ]
    st.start_proxy(origins, zones)
    st.example = st.tls_channel("example.com")
    return st


def raw(st, authority, chunks, end_stream=True, timeout=10.0, extra=(), path=UNARY, after_send=None):
    headers = pclib.grpc_request_headers(authority, path, extra=extra)
    return pclib.h2_request(st.tls_port, headers, chunks, end_stream=end_stream, ca=st.certs["ca"],
                            server_name=authority, timeout=timeout * SCALE, after_send=after_send)


def timed_error(fn, *args, **kwargs):
    start = time.monotonic()
    err = rpc_error(fn, *args, **kwargs)
    return err, time.monotonic() - start


def test_origin_down_unavailable_fast(st):
    for label, ch in (("tls", st.tls_channel("down.example.com")), ("h2c", st.h2c_channel("down.example.com"))):
        for attempt in (1, 2):  # the second lands in the server's cool-down
            err, took = timed_error(ch.unary_unary(UNARY), b"hi", timeout=20)
            assert err.code() == grpc.StatusCode.UNAVAILABLE, f"{label} #{attempt}: {describe(err)}"
            assert took < 5 * SCALE, f"{label} #{attempt}: UNAVAILABLE took {took:.1f} s"


def test_origin_wrong_ca_unavailable(st):
    before = st.origins["echo-tls"].stats()["calls"]["Unary"]
    err, took = timed_error(st.tls_channel("wrongca.example.com").unary_unary(UNARY), b"hi", timeout=20)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, describe(err)
    assert took < 5 * SCALE, f"took {took:.1f} s"
    assert st.origins["echo-tls"].stats()["calls"]["Unary"] == before, "call reached an origin that failed verification"


def test_origin_dies_mid_call(st):
    fragile = st.origins["fragile"]
    ch = st.tls_channel("fragile.example.com")
    future = ch.unary_unary(SLEEP).future(json.dumps({"ms": 20000}).encode(), timeout=30)
    assert pclib.wait_until(lambda: fragile.stats()["calls"]["Sleep"] >= 1, 10), "call never reached the origin"
    fragile.proc.kill()
    fragile.proc.wait()
    start = time.monotonic()
    try:
        result = future.result(timeout=15 * SCALE)
        raise AssertionError(f"call succeeded after its origin died: {result!r}")
    except grpc.RpcError as err:
        took = time.monotonic() - start
        assert err.code() not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED), describe(err)
        assert took < 5 * SCALE, f"{describe(err)} only after {took:.1f} s"
    finally:
        del st.origins["fragile"]  # dead on purpose; not a crash to report
        fragile.stop()
    # And the next call to that origin fails fast with UNAVAILABLE.
    err, took = timed_error(ch.unary_unary(UNARY), b"hi", timeout=20)
    assert err.code() == grpc.StatusCode.UNAVAILABLE and took < 5 * SCALE, f"{describe(err)} after {took:.1f} s"


def test_deadline_exceeded_and_remaining_time_propagated(st):
    origin = st.origins["echo"]
    origin.stats(reset=True)
    err, took = timed_error(st.example.unary_unary(SLEEP), json.dumps({"ms": 5000}).encode(), timeout=1.0)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, describe(err)
    assert took < 3 * SCALE, f"DEADLINE_EXCEEDED after {took:.1f} s for a 1 s deadline"
    seen = origin.stats()["time_remaining"].get("Sleep")
    assert seen is not None, "the origin saw no deadline: grpc-timeout was not passed on"
    # grpcio's own clock conversions are good to a few ms.
    assert 0 < seen <= 1.0 + 0.02, f"the origin saw {seen:.3f} s remaining for a 1 s client deadline"


def test_deadline_enforced_by_edge(st):
    """The stub origin never answers: only the edge can end the call when grpc-timeout expires."""
    n = len(st.stub.requests)
    r = raw(st, "hang.example.com", [pclib.grpc_frame(b"hi")], extra=[("grpc-timeout", "500m")], timeout=10)
    assert r.grpc_status == 4, f"expected grpc-status 4 (DEADLINE_EXCEEDED): {r}"
    assert r.status == 200, r
    assert 0.45 <= r.elapsed <= 3 * SCALE, f"DEADLINE_EXCEEDED after {r.elapsed:.2f} s for 500 ms"
    assert len(st.stub.requests) > n, "the request never reached the origin"
    req = st.stub.requests[n]
    timeout = req["headers"].get("grpc-timeout")
    assert timeout is not None, f"origin got no grpc-timeout: {req['headers']}"
    ms = parse_grpc_timeout(timeout)
    assert 0 < ms <= 500, f"origin got grpc-timeout {timeout} ({ms} ms) for a 500 ms client deadline"
    assert pclib.wait_until(lambda: req["reset"] is not None or req.get("closed"), 3), \
        "the origin stream was left open after the deadline"


def parse_grpc_timeout(v):
    unit = {"H": 3600e3, "M": 60e3, "S": 1e3, "m": 1, "u": 1e-3, "n": 1e-6}[v[-1]]
    return int(v[:-1]) * unit


def test_client_cancel_reaches_origin(st):
    origin = st.origins["echo"]
    origin.stats(reset=True)

    # Unary: cancel while the origin is sleeping (no deadline, so only the cancel can end it).
    future = st.example.unary_unary(SLEEP).future(json.dumps({"ms": 20000}).encode())
    assert pclib.wait_until(lambda: origin.stats()["calls"]["Sleep"] >= 1, 10), "call never reached the origin"
    future.cancel()
    assert pclib.wait_until(lambda: origin.stats()["cancelled"]["Sleep"] >= 1, 5), \
        f"origin did not see the cancellation: {origin.stats()['cancelled']}"

    # Bidi: cancel an open stream after a few round trips.
    import queue

    q = queue.Queue()

    def requests():
        while (item := q.get()) is not None:
            yield item

    call = st.example.stream_stream("/demo.Echo/Bidi")(requests())
    replies = iter(call)
    for i in range(3):
        q.put(b"m%d" % i)
        assert next(replies) == b"m%d" % i
    call.cancel()
    q.put(None)
    assert pclib.wait_until(lambda: origin.stats()["cancelled"]["Bidi"] >= 1, 5), \
        f"origin did not see the Bidi cancellation: {origin.stats()['cancelled']}"

    # Raw RST_STREAM(CANCEL) from the client reaches a plain HTTP/2 origin as a reset.
    n = len(st.stub.requests)

    def cancel_after_arrival(conn, sock, sid):
        if not pclib.wait_until(lambda: len(st.stub.requests) > n, 5):
            return
        conn.reset_stream(sid, error_code=8)

    raw(st, "hang.example.com", [pclib.grpc_frame(b"x")], timeout=1, after_send=cancel_after_arrival)
    assert len(st.stub.requests) > n, "request never reached the stub origin"
    req = st.stub.requests[n]
    assert pclib.wait_until(lambda: req["reset"] is not None or req.get("closed"), 5), \
        "the origin stream stayed open after the client reset its stream"


def test_oversize_message_resource_exhausted(st):
    origin = st.origins["echo"]
    before = origin.stats()["messages"]["Unary"]
    err = rpc_error(st.example.unary_unary(UNARY), b"x" * ((4 << 20) + 1), timeout=30)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(err)
    assert origin.stats()["messages"]["Unary"] == before, "the over-size message reached the origin"

    # Client streaming: fine messages first, then one byte too many.
    msgs = [b"a" * 1000, b"b" * (4 << 20), b"c" * ((4 << 20) + 1)]
    err = rpc_error(st.example.stream_unary("/demo.Echo/ClientStream"), iter(msgs), timeout=30)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(err)


def test_oversize_length_prefix_rejected_early(st):
    """A prefix announcing 64 MiB is refused at once, without waiting for (or buffering) the body."""
    r = raw(st, "example.com", [pclib.grpc_frame(b"0123456789", declared_len=64 << 20)], end_stream=False,
            timeout=10)
    assert r.grpc_status == 8, f"expected grpc-status 8 (RESOURCE_EXHAUSTED): {r}"
    assert r.elapsed < 5 * SCALE, f"answered after {r.elapsed:.1f} s"


def test_malformed_flag_byte_internal(st):
    origin = st.origins["echo"]
    before = origin.stats()["messages"]["Unary"]
    for flag in (0x02, 0x80):
        r = raw(st, "example.com", [pclib.grpc_frame(b"hello", flag=flag)])
        assert r.grpc_status == 13, f"flag 0x{flag:02x}: expected grpc-status 13 (INTERNAL): {r}"
        assert r.status == 200, r
    assert origin.stats()["messages"]["Unary"] == before, "a malformed message reached the origin"


def test_truncated_message_internal(st):
    r = raw(st, "example.com", [pclib.grpc_frame(b"abc", declared_len=10)])
    assert r.grpc_status == 13, f"expected grpc-status 13 (INTERNAL) for a message cut short: {r}"
    r = raw(st, "example.com", [b"\x00\x00"])  # a prefix cut short
    assert r.grpc_status == 13, f"expected grpc-status 13 (INTERNAL) for a prefix cut short: {r}"


def test_edge_still_serves_after_errors(st):
    reply = st.tls_channel("example.com").unary_unary(UNARY)(b"still here", timeout=10)
    assert reply == b"still here", reply


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
