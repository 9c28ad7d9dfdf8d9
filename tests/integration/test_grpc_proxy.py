#!/usr/bin/python3
"""gRPC through the edge: the four RPC kinds over TLS and h2c, metadata and trailers both ways,
origin statuses with details, trailers-only responses, 4 MiB messages, long and concurrent
streams, a TLS origin, and what the edge itself answers for zones without gRPC or unknown hosts."""

import base64
import json
import os
import queue
import random
import time

import grpc

import pclib
from grpc_origin import server_stream_message
from pclib import describe, origin_conf, rpc_error, zone_conf

UNARY = "/demo.Echo/Unary"


def setup():
    st = pclib.Stack("grpc")
    echo = st.start_origin("echo")
    tls_origin = st.start_origin("echo-tls", tls=True)
    origins = [
        origin_conf("echo", echo.port),
        origin_conf("echo-tls", tls_origin.port, tls={"ca": "certs/ca.pem", "sni": "origin.test"}),
    ]
    zones = pclib.default_zones("echo") + [zone_conf("tls.example.com", ["tls.example.com"], "echo-tls")]
    st.start_proxy(origins, zones)
    st.example = st.tls_channel("example.com")
    return st


def test_unary_tls(st):
    call = st.example.unary_unary(UNARY)
    for msg in (b"hello, portcullis", b"", bytes(range(256)) * 3):
        reply = call(msg, timeout=10)
        assert reply == msg, f"echo of {len(msg)} bytes came back as {len(reply)} bytes"


def test_unary_h2c(st):
    ch = st.h2c_channel("example.com")
    reply = ch.unary_unary(UNARY)(b"over h2c", timeout=10)
    assert reply == b"over h2c", reply


def test_unary_to_tls_origin(st):
    origin = st.origins["echo-tls"]
    before = origin.stats()["calls"]["Unary"]
    ch = st.tls_channel("tls.example.com")
    reply = ch.unary_unary(UNARY)(b"to a TLS origin", timeout=10)
    assert reply == b"to a TLS origin", reply
    after = origin.stats()["calls"]["Unary"]
    assert after == before + 1, f"TLS origin counted {after - before} calls, expected 1"


def test_client_stream(st):
    rng = random.Random(1)
    msgs = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(200)]
    reply = json.loads(st.example.stream_unary("/demo.Echo/ClientStream")(iter(msgs), timeout=20))
    assert reply["count"] == len(msgs), f"origin got {reply['count']} of {len(msgs)} messages"
    assert reply["bytes"] == sum(map(len, msgs)), reply
    assert reply["sha256"] == pclib.sha256(b"".join(msgs)), "content changed on the way"


def test_server_stream_1000(st):
    req = json.dumps({"count": 1000, "size": 100}).encode()
    got = list(st.example.unary_stream("/demo.Echo/ServerStream")(req, timeout=30))
    assert len(got) == 1000, f"{len(got)} of 1000 messages arrived"
    bad = [i for i, m in enumerate(got) if m != server_stream_message(i, 100)]
    assert not bad, f"{len(bad)} messages differ, first at index {bad[0]}"


def test_bidi_1000_checksums(st):
    rng = random.Random(2)
    msgs = [i.to_bytes(4, "big") + rng.randbytes(rng.randrange(0, 2000)) for i in range(1000)]
    replies = list(st.example.stream_stream("/demo.Echo/Bidi")(iter(msgs), timeout=60))
    assert len(replies) == len(msgs), f"{len(replies)} of {len(msgs)} echoes arrived"
    mismatched = [i for i, (a, b) in enumerate(zip(msgs, replies)) if pclib.sha256(a) != pclib.sha256(b)]
    assert not mismatched, f"{len(mismatched)} checksums differ, first at message {mismatched[0]}"


def test_bidi_ping_pong_not_buffered(st):
    """Each echo must come back before the next message is sent: the edge streams, it does not
    wait for the end of the request."""
    outgoing = queue.Queue()

    def requests():
        while True:
            item = outgoing.get()
            if item is None:
                return
            yield item

    call = st.example.stream_stream("/demo.Echo/Bidi")(requests(), timeout=30)
    replies = iter(call)
    try:
        for i in range(20):
            msg = b"ping %d" % i
            outgoing.put(msg)
            reply = next(replies)
            assert reply == msg, f"round {i}: sent {msg!r}, got {reply!r}"
    finally:
        outgoing.put(None)
    rest = list(replies)
    assert rest == [], f"unexpected extra replies {rest!r}"
    assert call.code() == grpc.StatusCode.OK, call.code()


def test_metadata_and_trailers_both_ways(st):
    blob = bytes(range(256))
    metadata = [
        ("x-echo-text", "hello world"),
        ("x-echo-data-bin", blob),
        ("x-custom", "plain value"),
        ("x-custom-bin", b"\x00\xff\x00"),
    ]
    reply, call = st.example.unary_unary(UNARY).with_call(b"md", metadata=metadata, timeout=10)
    assert reply == b"md"
    initial = list(call.initial_metadata())
    trailing = list(call.trailing_metadata())
    assert ("x-echo-text", "hello world") in initial, f"initial metadata {initial}"
    assert ("x-echo-data-bin", blob) in initial, f"binary initial metadata missing or changed: {initial}"
    assert ("x-echo-trailer-text", "hello world") in trailing, f"trailers {trailing}"
    assert ("x-echo-trailer-data-bin", blob) in trailing, f"binary trailer missing or changed: {trailing}"

    seen = dict(map(tuple, st.origins["echo"].stats()["last_metadata"]))
    assert seen.get("x-custom") == "plain value", f"origin saw {seen}"
    assert seen.get("x-custom-bin") == pclib.b64(b"\x00\xff\x00"), f"origin saw x-custom-bin={seen.get('x-custom-bin')}"
    assert seen.get("x-echo-data-bin") == pclib.b64(blob), "origin saw a different x-echo-data-bin"


def test_origin_status_message_details_and_trailers(st):
    details = bytes(range(256)) * 4
    message = "no access for ünïcode user, 100% sure"
    req = json.dumps({
        "code": 7,
        "message": message,
        "details_b64": pclib.b64(details),
        "trailers": {"x-custom-trailer": "t1", "x-custom-trailer-bin": "raw\x01"},
    }).encode()
    err = rpc_error(st.example.unary_unary("/demo.Echo/Fail"), req, timeout=10)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    assert err.details() == message, f"grpc-message changed: {err.details()!r}"
    trailers = dict(err.trailing_metadata())
    assert trailers.get("grpc-status-details-bin") == details, "grpc-status-details-bin changed or missing"
    assert trailers.get("x-custom-trailer") == "t1", f"trailers {trailers}"
    assert trailers.get("x-custom-trailer-bin") == b"raw\x01", f"trailers {trailers}"

    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS):
        req = json.dumps({"code": code.value[0], "message": f"origin says {code.name}"}).encode()
        err = rpc_error(st.example.unary_unary("/demo.Echo/Fail"), req, timeout=10)
        assert err.code() == code, f"origin status {code.name} arrived as {describe(err)}"
        assert err.details() == f"origin says {code.name}", describe(err)


def test_trailers_only_response_passes(st):
    headers = pclib.grpc_request_headers("example.com", "/demo.Echo/Fail")
    body = json.dumps({"code": 5, "message": "nothing here", "details": "why"}).encode()
    r = pclib.h2_request(st.tls_port, headers, [pclib.grpc_frame(body)], ca=st.certs["ca"])
    assert r.status == 200, r
    assert r.trailers_only, f"expected a trailers-only response (one HEADERS with END_STREAM): {r}"
    assert r.grpc_status == 5 and r.grpc_message == "nothing here", r
    got = r.final.get("grpc-status-details-bin", b"")
    assert base64.b64decode(got + b"=" * (-len(got) % 4)) == b"why", f"details {got!r}"

    # The same failure after response headers: headers, then trailers.
    body = json.dumps({"code": 5, "message": "late", "send_headers": True}).encode()
    r = pclib.h2_request(st.tls_port, headers, [pclib.grpc_frame(body)], ca=st.certs["ca"])
    assert len(r.header_blocks) == 2 and not r.header_blocks[0][1], f"expected headers + trailers: {r}"
    assert r.headers.get("x-origin-headers") == b"sent", r
    assert r.grpc_status == 5 and r.grpc_message == "late", r

    # grpcio sees the trailers-only failure as a normal status.
    err = rpc_error(st.example.unary_unary("/demo.Echo/Fail"),
                    json.dumps({"code": 9, "message": "trailers only"}).encode(), timeout=10)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and err.details() == "trailers only", describe(err)


def test_4mib_messages_both_ways(st):
    big = random.Random(3).randbytes(4 << 20)  # exactly the zone's max_message_bytes
    reply = st.example.unary_unary(UNARY)(big, timeout=60)
    assert len(reply) == len(big) and reply == big, "4 MiB echo differs"

    reply = json.loads(st.example.stream_unary("/demo.Echo/ClientStream")(iter([big, big[::-1]]), timeout=60))
    assert reply["count"] == 2 and reply["sha256"] == pclib.sha256(big + big[::-1]), reply

    req = json.dumps({"count": 2, "size": 4 << 20}).encode()
    got = list(st.example.unary_stream("/demo.Echo/ServerStream")(req, timeout=60))
    assert [len(m) for m in got] == [4 << 20] * 2, [len(m) for m in got]
    assert got[1] == server_stream_message(1, 4 << 20), "4 MiB server message differs"


def test_100_concurrent_calls(st):
    ch = st.tls_channel("example.com")
    sleep = ch.unary_unary("/demo.Echo/Sleep")
    start = time.monotonic()
    futures = [sleep.future(json.dumps({"ms": 300, "tag": i}).encode(), timeout=60) for i in range(100)]
    tags = sorted(json.loads(f.result())["tag"] for f in futures)
    took = time.monotonic() - start
    assert tags == list(range(100)), f"lost or mixed up calls: {sorted(set(range(100)) - set(tags))}"
    # 100 x 300 ms one after another would take 30 s.
    assert took < 10 * pclib.TIME_SCALE, f"100 concurrent 300 ms calls took {took:.1f} s"

    unary = ch.unary_unary(UNARY)
    payloads = [b"call %d " % i + os.urandom(i * 10) for i in range(100)]
    futures = [unary.future(p, timeout=60) for p in payloads]
    wrong = [i for i, (p, f) in enumerate(zip(payloads, futures)) if f.result() != p]
    assert not wrong, f"{len(wrong)} concurrent echoes came back wrong, first {wrong[0]}"


def test_grpc_disabled_zone_unimplemented(st):
    origin = st.origins["echo"]
    before = origin.stats()["calls"]["Unary"]
    ch = st.tls_channel("nogrpc.test")
    err = rpc_error(ch.unary_unary(UNARY), b"hi", timeout=10)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, describe(err)
    text = err.details().lower()
    assert "grpc" in text and "disabled" in text, f"message should say gRPC is disabled: {err.details()!r}"

    headers = pclib.grpc_request_headers("nogrpc.test")
    r = pclib.h2_request(st.tls_port, headers, [pclib.grpc_frame(b"hi")], server_name="nogrpc.test",
                         ca=st.certs["ca"])
    assert r.status == 200 and r.trailers_only and r.grpc_status == 12, f"expected HTTP 200 trailers-only 12: {r}"
    after = origin.stats()["calls"]["Unary"]
    assert after == before, f"the origin got {after - before} calls for a zone with gRPC off"


def test_unknown_host_grpc_error(st):
    origin = st.origins["echo"]
    before = origin.stats()["calls"]["Unary"]
    for ch in (st.tls_channel("unknown.invalid", server_name="example.com"), st.h2c_channel("unknown.invalid")):
        err = rpc_error(ch.unary_unary(UNARY), b"hi", timeout=10)
        assert err.code() != grpc.StatusCode.OK, describe(err)
        assert "unknown.invalid" in (err.details() or ""), f"message should name the host: {describe(err)}"
    after = origin.stats()["calls"]["Unary"]
    assert after == before, "a call for an unknown host reached the origin"


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
