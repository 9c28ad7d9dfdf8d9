#!/usr/bin/python3
"""gRPC-Web at the edge, on the wire: binary and -text calls translated to native gRPC for the
origin and answered as gRPC-Web (messages, then the trailers as a 0x80 frame), streaming, origin
errors and edge errors (WAF, malformed gRPC-Web) as gRPC statuses, CORS preflight and origin
checks, HTTP/1.1 over TLS (curl), and the access log's protocol field. The browser and Node
clients are in test_grpc_web_clients.py."""

import base64
import json
import os
import subprocess
import urllib.parse

import pclib
from pclib import origin_conf, zone_conf

UNARY = "/demo.Echo/Unary"
REPEAT = "/demo.Echo/Repeat"
APP = "https://app.test"
CRS = "/usr/share/modsecurity-crs"


def note_descriptor_set(path):
    """demo/web.proto: message demo.Note {string text = 1; int32 n = 2}, and demo.Echo's Unary and
    Repeat taking and returning it; written as a FileDescriptorSet (the edge's descriptors, and the
    browser's schema)."""
    from google.protobuf import descriptor_pb2
    from google.protobuf.descriptor import FieldDescriptor as FD

    fds = descriptor_pb2.FileDescriptorSet()
    f = fds.file.add(name="demo/web.proto", package="demo", syntax="proto3")
    note = f.message_type.add(name="Note")
    note.field.add(name="text", number=1, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL, json_name="text")
    note.field.add(name="n", number=2, type=FD.TYPE_INT32, label=FD.LABEL_OPTIONAL, json_name="n")
    svc = f.service.add(name="Echo")
    svc.method.add(name="Unary", input_type=".demo.Note", output_type=".demo.Note")
    svc.method.add(name="Repeat", input_type=".demo.Note", output_type=".demo.Note", server_streaming=True)
    with open(path, "wb") as out:
        out.write(fds.SerializeToString())
    return path


def note(text, n=0):
    """demo.Note on the wire, by hand: the test does not trust the edge's decoder to check it."""
    t = text.encode()
    out = b"\x0a" + bytes([len(t)]) + t if len(t) < 128 else b"\x0a" + bytes([len(t) & 0x7f | 0x80, len(t) >> 7]) + t
    return out + (b"\x10" + bytes([n]) if n else b"")


# A Lua rule on the decoded message of a gRPC call: it must see gRPC-Web calls the same way.
LUA_RULE = """
return {
  {
    name = "unlucky notes",
    match = "*/demo.Echo/Unary",
    on_message = function(req, msg)
      if tonumber(msg.fields["n"] or 0) == 13 then
        return req:deny("FAILED_PRECONDITION", "unlucky note " .. (msg.fields["text"] or "?"))
      end
    end,
  },
}
"""


def web_zones(origin="echo"):
    cors = {"origins": [APP, "http://127.0.0.1"], "max_age_s": 120,
            "allow_headers": ["x-repeat", "x-fail-code", "x-fail-message"], "expose_headers": ["x-origin-headers"]}
    return [
        zone_conf("example.com", ["example.com", "localhost"], origin, grpc_web=True, cors=cors),
        zone_conf("noweb", ["noweb.example.com"], origin),
        # an origin that takes no request bytes: back-pressure on an HTTP/1.1 upload
        zone_conf("stalled", ["stalled.example.com"], "stalled", grpc_web=True, max_message_bytes=65536),
    ]


def setup():
    st = pclib.Stack("grpcweb")
    st.echo = st.start_origin("echo")
    st.desc = note_descriptor_set(os.path.join(st.dir, "web.pb"))
    lua_dir = os.path.join(st.dir, "lua")
    os.makedirs(lua_dir)
    with open(os.path.join(lua_dir, "10-web.lua"), "w") as f:
        f.write(LUA_RULE)
    plugins = [{"name": "modsecurity", "config": {"crs": CRS, "paranoia": 1, "anomaly_threshold": 5,
                                                  "mode": "block"}},
               {"name": "lua", "config": {"dir": lua_dir}}]
    st.admin_port = pclib.free_port()
    st.stalled = st.start_stub(take_no_data=True)
    st.start_proxy([origin_conf("echo", st.echo.port), origin_conf("stalled", st.stalled.port)], web_zones(),
                   extra={"plugins": plugins, "descriptors": [st.desc], "workers": 1,
                          "limits": {"header_timeout_ms": 1500},
                          "admin": {"address": f"127.0.0.1:{st.admin_port}"}})
    pclib.wait_port(st.admin_port, st.proxy.proc, what="admin endpoint")
    return st


def web_headers(authority="example.com", path=UNARY, ctype="application/grpc-web+proto", extra=()):
    return [(":method", "POST"), (":scheme", "https"), (":authority", authority), (":path", path),
            ("content-type", ctype), ("x-grpc-web", "1"), ("accept", ctype)] + list(extra)


def call(st, body_chunks, authority="example.com", path=UNARY, text=False, extra=()):
    ctype = "application/grpc-web-text" if text else "application/grpc-web+proto"
    return pclib.h2_request(st.tls_port, web_headers(authority, path, ctype, extra), body_chunks,
                            ca=st.certs["ca"], server_name="example.com", timeout=10 * pclib.TIME_SCALE)


def b64_stream_decode(data):
    """base64 whose padding may end any chunk: decoded quad by quad."""
    data = data.replace(b"\r", b"").replace(b"\n", b"")
    assert len(data) % 4 == 0, f"base64 body of {len(data)} characters"
    out = b""
    start = 0
    for i in range(4, len(data) + 1, 4):
        if b"=" in data[i - 4:i]:
            out += base64.b64decode(data[start:i])
            start = i
    return out + base64.b64decode(data[start:])


def web_frames(body):
    """gRPC-Web body -> (messages, trailers dict, bytes after the trailer frame)."""
    msgs, trailers, i = [], None, 0
    while i + 5 <= len(body):
        flag, n = body[i], int.from_bytes(body[i + 1:i + 5], "big")
        payload = body[i + 5:i + 5 + n]
        assert len(payload) == n, f"truncated frame in answer {body!r}"
        i += 5 + n
        if flag & 0x80:
            trailers = {}
            for line in payload.decode().split("\r\n"):
                if line:
                    k, v = line.split(": ", 1)
                    trailers[k] = v
            break
        msgs.append(payload)
    return msgs, trailers, body[i:]


def answer(r, text=False):
    headers = dict(r.headers)
    body = b64_stream_decode(bytes(r.data)) if text else bytes(r.data)
    msgs, trailers, rest = web_frames(body)
    return headers, msgs, trailers, rest


def origin_calls(st, method):
    return st.echo.stats()["calls"].get(method, 0)


def check_ok(r, msgs_expected, text=False):
    headers, msgs, trailers, rest = answer(r, text)
    want_type = "application/grpc-web-text" if text else "application/grpc-web+proto"
    assert headers.get(":status") == b"200", r
    assert headers.get("content-type") == want_type.encode(), headers
    assert len(r.header_blocks) == 1, f"HTTP trailers sent to a gRPC-Web client: {r.header_blocks}"
    assert msgs == msgs_expected, msgs
    assert trailers is not None and trailers.get("grpc-status") == "0", trailers
    assert rest == b""


def test_unary_binary(st):
    msg = note("hello web", 7)
    r = call(st, [pclib.grpc_frame(msg)])
    check_ok(r, [msg])


def test_unary_text_chunks_padded_apart(st):
    # The frame split in two, each piece base64'd on its own: padding in the middle of the body.
    msg = note("text mode works", 3)
    frame = pclib.grpc_frame(msg)
    chunks = [base64.b64encode(frame[:4]), base64.b64encode(frame[4:9]), base64.b64encode(frame[9:])]
    assert any(c.endswith(b"=") for c in chunks[:-1])
    r = call(st, chunks, text=True)
    check_ok(r, [msg], text=True)


def test_server_stream_binary_and_text(st):
    msg = note("again", 1)
    for text in (False, True):
        body = pclib.grpc_frame(msg)
        r = call(st, [base64.b64encode(body) if text else body], path=REPEAT, text=text,
                 extra=[("x-repeat", "5")])
        check_ok(r, [msg] * 5, text=text)


def test_origin_error_trailers_only_and_after_messages(st):
    reason = "order 42 not found: ünïcode ✓"
    for repeat in ("0", "2"):
        for text in (False, True):
            body = pclib.grpc_frame(note("x"))
            r = call(st, [base64.b64encode(body) if text else body], path=REPEAT, text=text,
                     extra=[("x-repeat", repeat), ("x-fail-code", "5"), ("x-fail-message", reason)])
            headers, msgs, trailers, rest = answer(r, text)
            assert headers.get(":status") == b"200", r
            assert len(msgs) == int(repeat)
            assert trailers and trailers["grpc-status"] == "5", (repeat, text, trailers)
            assert urllib.parse.unquote(trailers["grpc-message"]) == reason, trailers
            assert rest == b"" and len(r.header_blocks) == 1


def test_waf_attack_in_field_denied(st):
    before = origin_calls(st, "Unary")
    for text in (False, True):
        body = pclib.grpc_frame(note("1' UNION SELECT password FROM users --"))
        r = call(st, [base64.b64encode(body) if text else body], text=text)
        headers, msgs, trailers, _ = answer(r, text)
        assert headers.get(":status") == b"200" and msgs == [], r
        assert trailers and trailers["grpc-status"] == "7", trailers
    assert origin_calls(st, "Unary") == before


def test_lua_rule_sees_fields(st):
    before = origin_calls(st, "Unary")
    for text in (False, True):
        body = pclib.grpc_frame(note("friday", 13))
        r = call(st, [base64.b64encode(body) if text else body], text=text)
        _, msgs, trailers, _ = answer(r, text)
        assert msgs == [] and trailers and trailers["grpc-status"] == "9", trailers
        assert urllib.parse.unquote(trailers["grpc-message"]) == "unlucky note friday", trailers
    assert origin_calls(st, "Unary") == before


def test_malformed_grpc_web_refused_before_the_origin(st):
    before = origin_calls(st, "Unary")
    good = pclib.grpc_frame(note("fine"))
    cases = [
        ("bad base64", [b"AAAA$$$$"], True, "invalid base64"),
        ("base64 cut short", [base64.b64encode(good)[:-1]], True, "base64"),
        ("truncated frame", [good[:-2]], False, "ended inside a message"),
        ("truncated frame, text", [base64.b64encode(good[:-2])], True, "ended inside a message"),
        ("trailer frame in a request", [pclib.grpc_frame(b"grpc-status: 0\r\n", flag=0x80)], False, "0x80"),
    ]
    for label, chunks, text, words in cases:
        r = call(st, chunks, text=text)
        headers, msgs, trailers, _ = answer(r, text)
        assert headers.get(":status") == b"200", (label, r)
        assert trailers and trailers["grpc-status"] == "13", (label, trailers)
        assert words in urllib.parse.unquote(trailers.get("grpc-message", "")), (label, trailers)
    assert origin_calls(st, "Unary") == before


def test_edge_refusals_are_grpc_web_too(st):
    # A zone without grpc_web, a host no zone serves: refused before the origin, as gRPC-Web answers.
    for authority, code, words in (("noweb.example.com", "12", "gRPC-Web is disabled for zone noweb"),
                                   ("unknown.test", "5", 'no zone serves host "unknown.test"')):
        r = call(st, [pclib.grpc_frame(note("x"))], authority=authority)
        headers, msgs, trailers, _ = answer(r)
        assert headers.get(":status") == b"200", r
        assert headers.get("content-type") == b"application/grpc-web+proto", headers
        assert trailers and trailers["grpc-status"] == code, (authority, trailers)
        assert words in urllib.parse.unquote(trailers["grpc-message"]), trailers


def curl(st, *args):
    cmd = ["curl", "-sS", "--max-time", "10", "--cacert", st.certs["ca"], "--resolve",
           f"example.com:{st.tls_port}:127.0.0.1", "-D", "-", "-o", "/dev/null"] + list(args)
    out = subprocess.run(cmd, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    lines = out.stdout.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    return status, {k.lower(): v for k, _, v in (l.partition(": ") for l in lines[1:] if ": " in l)}


def test_cors_preflight_at_the_edge(st):
    def calls():
        return {k: v for k, v in st.echo.stats()["calls"].items() if k != "Stats"}
    before = calls()
    for version in ("--http2", "--http1.1"):
        status, h = curl(st, version, "-X", "OPTIONS", f"https://example.com:{st.tls_port}{UNARY}",
                         "-H", f"Origin: {APP}", "-H", "Access-Control-Request-Method: POST",
                         "-H", "Access-Control-Request-Headers: content-type,x-grpc-web,x-repeat")
        assert status == 200, (version, status, h)
        assert h.get("access-control-allow-origin") == APP, h
        assert "POST" in h.get("access-control-allow-methods", "")
        allow = h.get("access-control-allow-headers", "")
        assert "x-grpc-web" in allow and "x-repeat" in allow and "content-type" in allow, allow
        assert h.get("access-control-max-age") == "120"
        status, h = curl(st, version, "-X", "OPTIONS", f"https://example.com:{st.tls_port}{UNARY}",
                         "-H", "Origin: https://evil.test", "-H", "Access-Control-Request-Method: POST")
        assert status == 403 and "access-control-allow-origin" not in h, (version, status, h)
    assert calls() == before  # preflights never reach the origin


def test_cors_headers_on_answers_and_origins_refused(st):
    r = call(st, [pclib.grpc_frame(note("hi"))], extra=[("origin", APP)])
    headers = dict(r.headers)
    assert headers.get("access-control-allow-origin") == APP.encode(), headers
    expose = headers.get("access-control-expose-headers", b"").decode()
    assert "grpc-status" in expose and "grpc-message" in expose and "x-origin-headers" in expose, expose
    before = origin_calls(st, "Unary")
    r = call(st, [pclib.grpc_frame(note("hi"))], extra=[("origin", "https://evil.test")])
    _, msgs, trailers, _ = answer(r)
    assert trailers and trailers["grpc-status"] == "7" and "not allowed" in trailers.get("grpc-message", "")
    assert origin_calls(st, "Unary") == before


def test_http1_over_tls(st):
    # curl --http1.1: ALPN http/1.1, a chunked streaming answer, the trailer frame in the body.
    msg = note("carried over HTTP one", 9)
    body_path = os.path.join(st.dir, "h1body.bin")
    with open(body_path, "wb") as f:
        f.write(pclib.grpc_frame(msg))
    out_path = os.path.join(st.dir, "h1out.bin")
    cmd = ["curl", "-sS", "--http1.1", "--max-time", "10", "--cacert", st.certs["ca"], "--resolve",
           f"example.com:{st.tls_port}:127.0.0.1", "-D", "-", "-o", out_path, "-X", "POST",
           "-H", "content-type: application/grpc-web+proto", "-H", "x-grpc-web: 1", "-H", "x-repeat: 3",
           "--data-binary", f"@{body_path}", f"https://example.com:{st.tls_port}{REPEAT}"]
    out = subprocess.run(cmd, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    head = out.stdout.decode("latin-1").lower()
    assert head.startswith("http/1.1 200"), head
    assert "content-type: application/grpc-web+proto" in head and "transfer-encoding: chunked" in head, head
    msgs, trailers, rest = web_frames(open(out_path, "rb").read())
    assert msgs == [msg] * 3 and trailers and trailers["grpc-status"] == "0" and rest == b"", (msgs, trailers)
    # A client that asks "Expect: 100-continue" gets it.
    big = note("b" * 3000)
    with open(body_path, "wb") as f:
        f.write(pclib.grpc_frame(big))
    out = subprocess.run(cmd[:-1] + ["-H", "Expect: 100-continue", f"https://example.com:{st.tls_port}{UNARY}"],
                         capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    head = out.stdout.decode("latin-1")
    assert head.startswith("HTTP/1.1 100 Continue") and "HTTP/1.1 200" in head, head
    msgs, trailers, rest = web_frames(open(out_path, "rb").read())
    assert msgs == [big] and trailers["grpc-status"] == "0", trailers
    # Native gRPC has no business on HTTP/1.1.
    cmd = cmd[:cmd.index("-H")] + ["-H", "content-type: application/grpc", "--data-binary", f"@{body_path}",
                                   f"https://example.com:{st.tls_port}{UNARY}"]
    out = subprocess.run(cmd, capture_output=True, timeout=20)
    assert out.stdout.decode("latin-1").startswith("HTTP/1.1 415"), out.stdout
    # A zone that does not take gRPC-Web is not offered HTTP/1.1 at all (SNI names it).
    out = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", "10", "--cacert", st.certs["ca"], "--resolve",
                          f"noweb.example.com:{st.tls_port}:127.0.0.1", f"https://noweb.example.com:{st.tls_port}/"],
                         capture_output=True, timeout=20)
    assert out.returncode != 0 and b"no application protocol" in out.stderr, out


def test_http1_header_timeout(st):
    # HTTP/1.1 headers that never finish: closed after limits.header_timeout_ms, as on HTTP/2.
    import socket
    import ssl
    import time

    ctx = ssl.create_default_context(cafile=st.certs["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", st.tls_port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="example.com")
    try:
        assert sock.selected_alpn_protocol() == "http/1.1"
        sock.sendall(b"POST /demo.Echo/Unary HTTP/1.1\r\nHost: example.com\r\ncontent-type: appl")
        start = time.monotonic()
        sock.settimeout(10 * pclib.TIME_SCALE)
        try:
            got = sock.recv(1024)
        except (ConnectionResetError, ssl.SSLError):
            got = b""
        assert got == b"", got
        assert time.monotonic() - start < 8 * pclib.TIME_SCALE, "not closed by the header timeout"
    finally:
        sock.close()


def test_http1_upload_held_back_by_the_origin(st):
    """An HTTP/1.1 upload of 32 MiB of messages to an origin that takes none: the edge stops reading
    the socket once 256 KiB wait for the origin, so the client's sending stalls while the connection
    stays open (before, the edge read on and cut the connection at its buffer limit). When the call's
    deadline ends it, the edge reads again and drops the rest, and the client gets the status."""
    import socket
    import ssl
    import threading
    import time

    total = 32 << 20
    msg = pclib.grpc_frame(note("u" * 16000))
    count = total // len(msg)
    ctx = ssl.create_default_context(cafile=st.certs["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", st.tls_port), timeout=60)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock = ctx.wrap_socket(raw, server_hostname="stalled.example.com")
    sent = {"bytes": 0, "error": None}
    timeout_s = int(10 * pclib.TIME_SCALE)

    def upload():
        try:
            sock.sendall(b"POST /demo.Echo/Upload HTTP/1.1\r\nHost: stalled.example.com\r\n"
                         b"content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n"
                         b"grpc-timeout: %dS\r\ncontent-length: %d\r\n\r\n" % (timeout_s, count * len(msg)))
            for _ in range(count):
                sock.sendall(msg)
                sent["bytes"] += len(msg)
        except OSError as e:
            sent["error"] = e

    sender = threading.Thread(target=upload, daemon=True)
    try:
        assert sock.selected_alpn_protocol() == "http/1.1"
        rss0 = pclib.rss_mib(st.proxy.proc.pid)
        start = time.monotonic()
        sender.start()
        assert pclib.wait_until(lambda: st.stalled.requests and st.stalled.requests[0]["data"] >= 60000,
                                timeout=5), st.stalled.requests
        # Sending stops making progress while the connection stays open.
        prev = -1
        while sent["bytes"] != prev and time.monotonic() - start < timeout_s - 2:
            prev = sent["bytes"]
            time.sleep(1.0)
        assert sent["error"] is None, f"the edge cut the upload after {sent['bytes']} bytes: {sent['error']!r}"
        assert sent["bytes"] == prev and sender.is_alive(), f"still sending after {sent['bytes']} bytes"
        assert sent["bytes"] < total // 2, f"{sent['bytes']} bytes went in although the origin took none"
        assert st.stalled.requests[0]["data"] <= 128 << 10, st.stalled.requests[0]
        grew = pclib.rss_mib(st.proxy.proc.pid) - rss0
        assert grew < 16, f"edge memory grew {grew:.1f} MiB while holding an upload back"
        # The deadline ends the call: the rest of the body is read and dropped, the answer comes.
        sender.join(60 * pclib.TIME_SCALE)
        assert not sender.is_alive() and sent["error"] is None, (sent, "after the deadline")
        assert sent["bytes"] == count * len(msg)
        answer = b""
        while not answer.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {answer!r}"
            answer += chunk
    finally:
        sock.close()
        raw.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    data, rest = b"", body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        data, rest = data + rest[:int(size, 16)], rest[int(size, 16) + 2:]
    msgs, trailers, _ = web_frames(data)
    assert msgs == [] and trailers and trailers["grpc-status"] == "4", (msgs, trailers)
    # The origin's copy of the call is reset (it reaches the stub origin's own thread a moment later).
    assert pclib.wait_until(lambda: st.stalled.requests[0]["reset"] is not None), st.stalled.requests[0]


def test_access_log_marks_grpc_web(st):
    r = call(st, [pclib.grpc_frame(note("logged"))], extra=[("x-request-tag", "weblog")])
    assert dict(r.headers).get(":status") == b"200"

    def entries():
        return [e for e in pclib.read_json_lines(st.proxy.out_path) if e.get("protocol") == "grpc-web"
                and e.get("grpc_method") == "Unary" and e.get("grpc_status") == 0]
    assert pclib.wait_until(lambda: entries(), timeout=5), "no access log entry with protocol grpc-web"
    native = [e for e in pclib.read_json_lines(st.proxy.out_path) if e.get("protocol") == "grpc"]
    assert native == []  # every call here was gRPC-Web


def test_text_stream_streams_with_backpressure(st):
    """A 10 MiB server stream in text mode to a client that stops granting window after 64 KiB: the
    origin is held back (its handler cannot finish), nothing is buffered whole; granting window
    again brings every message intact, then the trailer frame."""
    import time

    from grpc_origin import server_stream_message

    count, size = 160, 64 * 1024
    st.echo.stats(reset=True)
    headers = web_headers(path="/demo.Echo/ServerStream", ctype="application/grpc-web-text")
    body = pclib.grpc_frame(json.dumps({"count": count, "size": size}).encode())
    r = pclib.SlowReader(st.h2c_port, [(k, "http" if k == ":scheme" else v) for k, v in headers],
                         base64.b64encode(body))
    try:
        stalled_at = r.stall()
        assert 0 < stalled_at <= 65535, stalled_at
        time.sleep(1.0)
        stats = st.echo.stats()
        assert stats["calls"]["ServerStream"] == 1
        assert stats["completed"]["ServerStream"] == 0, "the origin finished: the edge did not hold it back"
        t_end = time.monotonic() + 60 * pclib.TIME_SCALE
        while not r.ended and r.reset is None and time.monotonic() < t_end:
            r.grant(1 << 20)
        assert r.ended, f"stream did not end (reset {r.reset}, {len(r.data)} bytes)"
    finally:
        r.close()
    data = r.data
    msgs, trailers, rest = web_frames(b64_stream_decode(bytes(data)))
    assert len(msgs) == count and rest == b"", (len(msgs), len(rest))
    bad = [i for i, m in enumerate(msgs) if m != server_stream_message(i, size)]
    assert not bad, f"{len(bad)} messages differ, first at index {bad[0]}"
    assert trailers and trailers["grpc-status"] == "0", trailers


def test_metrics_count_grpc_web(st):
    before = pclib.metric_sum(pclib.scrape_metrics(st.admin_port), "pc_grpc_web_requests_total", zone="example.com")
    for _ in range(3):
        call(st, [pclib.grpc_frame(note("counted"))])
    samples = pclib.scrape_metrics(st.admin_port)
    after = pclib.metric_sum(samples, "pc_grpc_web_requests_total", zone="example.com")
    assert after == (before or 0) + 3, (before, after)
    # The same calls are gRPC calls in the request counters, by method and status.
    assert pclib.metric_sum(samples, "pc_requests_total", zone="example.com", method=UNARY, grpc_status="OK") >= 3


if __name__ == "__main__":
    pclib.main(globals())
