#!/usr/bin/python3
"""The ModSecurity WAF plugin with Debian's OWASP Core Rule Set (paranoia level 1), over real gRPC:
attacks in nested protobuf string fields (with and without a descriptor set), in metadata and in
the path are blocked before the origin receives the message (with headers_first, before it sees
the call); benign messages of every kind pass; detect mode passes and logs (access log, audit
log, metrics); a zone exclusion by rule id lets one attack through; a 200-message bidi stream
stops at its one bad message; plain HTTP/2 requests are inspected; the bounded queue, the body
limit, the event loop kept free while rules run, configuration errors, the CRS rule 920420 fix
being configuration, response inspection and a reload that swaps rule sets.

Payload lists: tests/fixtures/waf/attacks.txt and benign.txt."""

import os
import queue
import re
import time

import grpc

import pclib
from pclib import describe, metric_sum, origin_conf, rpc_error, zone_conf

SCALE = pclib.TIME_SCALE
UNARY = "/demo.Echo/Unary"
BIDI = "/demo.Echo/Bidi"
CLIENT_STREAM = "/demo.Echo/ClientStream"
FIXTURES = os.path.join(pclib.SOURCE_DIR, "tests", "fixtures", "waf")
SHOP_PB = os.path.join(pclib.SOURCE_DIR, "tests", "fixtures", "protobuf", "shop.pb")
CRS = "/usr/share/modsecurity-crs"
BLOCKED = re.compile(r"^request (\S+) blocked by the WAF$")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# The zones the plugin config below gives settings of their own.
ZONES = {
    "detect.example.com": {"mode": "detect"},
    "excl.example.com": {"exclude": [942100]},
    "off.example.com": {"mode": "off"},
    "strict.example.com": {"headers_first": True},
}


def payloads(name):
    """(kind, value) pairs from a fixture file: `kind<TAB>value`, # comments."""
    out = []
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            kind, value = line.split("\t", 1)
            out.append((kind, value))
    return out


ATTACKS = payloads("attacks.txt")
BENIGN = payloads("benign.txt")


def sanitizer_build():
    try:
        with open(pclib.BINARY, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# libmodsecurity is C++ and throws (and catches) exceptions inside rule evaluation. AddressSanitizer
# intercepts __cxa_throw when the process starts; in a C binary libstdc++ only arrives later with
# the plugin, the interceptor finds no real __cxa_throw, and the first exception aborts. Having
# libstdc++ loaded from the start avoids that; without a sanitizer nothing changes.
if sanitizer_build() and "libstdc++" not in os.environ.get("LD_PRELOAD", ""):
    os.environ["LD_PRELOAD"] = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), "libstdc++.so.6"]))


# --- protobuf: shop.v1 types, and demo.Echo described with them ------------------------------


def descriptor_set(path):
    """shop.pb plus demo/echo.proto, whose demo.Echo methods take and return shop.v1.RefundRequest,
    so that calls to the echo origin are decoded with field names. Returns the message class."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet()
    with open(SHOP_PB, "rb") as f:
        fds.ParseFromString(f.read())
    echo = fds.file.add(name="demo/echo.proto", package="demo", syntax="proto3")
    echo.dependency.append("shop/v1/orders.proto")
    svc = echo.service.add(name="Echo")
    for method in ("Unary", "Bidi", "ClientStream"):
        svc.method.add(name=method, input_type=".shop.v1.RefundRequest", output_type=".shop.v1.RefundRequest")
    with open(path, "wb") as f:
        f.write(fds.SerializeToString())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    d = pool.FindMessageTypeByName("shop.v1.RefundRequest")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(d)
    return message_factory.MessageFactory(pool).GetPrototype(d)


def refund(cls, order_id="A-1001", email="ann@example.com", tags=("vip",), blob=b""):
    msg = cls(order_id=order_id, amount=-250, blob=blob)
    msg.customer.email = email
    msg.customer.tags.extend(tags)
    return msg.SerializeToString()


def attack_message(cls, i, payload):
    """The payload in a nested string field: customer.email or customer.tags (field 3.1 / 3.2)."""
    if i % 2:
        return refund(cls, order_id=f"A-{i}", email=payload)
    return refund(cls, order_id=f"A-{i}", tags=("vip", payload))


def benign_message(cls, i, kind, value):
    if kind == "blob":
        return refund(cls, order_id=f"B-{i}", blob=bytes.fromhex(value))
    if kind == "email":
        return refund(cls, order_id=f"B-{i}", email=value)
    return refund(cls, order_id=f"B-{i}", tags=(kind, value))


# --- fixture ------------------------------------------------------------------------------------


def setup():
    if not os.path.isdir(os.path.join(CRS, "rules")):
        raise RuntimeError(f"the OWASP CRS is not installed in {CRS} (Debian package modsecurity-crs)")
    so = os.path.join(pclib.BUILD_DIR, "plugins", "pc-modsecurity.so")
    if not os.path.exists(so):
        raise RuntimeError(f"plugin not built: {so}")
    st = pclib.Stack("waf")
    st.echo = st.start_origin("echo")
    st.counting = st.start_stub(keep_body=True)  # never answers; keeps every request's bytes
    # A plain HTTP origin: answers 200 once the request ended, and keeps what it received.
    st.web = st.start_stub(keep_body=True, respond=answer_ok, respond_on_end=True)
    st.echo_pb = os.path.join(st.dir, "echo.pb")
    st.Refund = descriptor_set(st.echo_pb)
    st.base_origins = [origin_conf("echo", st.echo.port), origin_conf("counting", st.counting.port),
                       origin_conf("web", st.web.port)]
    st.base_zones = pclib.default_zones("echo") + [zone_conf(name, [name], "echo") for name in ZONES] + [
        zone_conf("count.example.com", ["count.example.com"], "counting"),
        zone_conf("web.example.com", ["web.example.com"], "web")]
    st.audit = os.path.join(st.dir, "waf-audit.json")
    st.main = None
    return st


def answer_ok(conn, sid, _headers):
    conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
    conn.send_data(sid, b"ok\n", end_stream=True)


# PC_WAF_FAST_PATH=verify runs this whole file with both paths judging every transaction: the
# last test then requires that they never differed.
FAST_PATH = os.environ.get("PC_WAF_FAST_PATH", "")


def waf_plugin(**config):
    if FAST_PATH and "fast_path" not in config:
        config["fast_path"] = FAST_PATH
    return [{"name": "modsecurity", "config": config}]


def run_proxy(st, name, plugins, extra=None, admin=False):
    """Stops the previous proxy (keeping a problem it had for the teardown report) and starts one
    with one worker, so that the tests that need one event loop have it."""
    if st.proxy is not None and st.proxy.exit_code is None:
        problem = st.proxy.stop()
        if problem:
            st.problems.append(problem + "\n" + st.proxy.logs(40))
    cfg = {"plugins": plugins, "workers": 1}
    st.admin_port = None
    if admin:
        st.admin_port = pclib.free_port()
        cfg["admin"] = {"address": f"127.0.0.1:{st.admin_port}"}
    cfg.update(extra or {})
    proxy = st.start_proxy(st.base_origins, st.base_zones, extra=cfg, name=name)
    if admin:
        pclib.wait_port(st.admin_port, proxy.proc, what="admin endpoint")
    return proxy


def main_proxy(st):
    """The proxy most tests share: CRS at paranoia 1 blocking, zones with their own settings, the
    descriptor set, an audit log, a body limit of 256 KiB, metrics. Started once, on first use."""
    if st.main is None or st.proxy is not st.main or st.main.exit_code is not None:
        st.main = run_proxy(st, "main", waf_plugin(crs=CRS, paranoia=1, anomaly_threshold=5, mode="block",
                                                     audit_log=st.audit, body_limit=262144, zones=ZONES),
                            extra={"descriptors": [st.echo_pb]}, admin=True)
        st.main_admin = st.admin_port
    return st.main


def access_log(proxy, wait_for=None, timeout=5):
    """The proxy's access log entries; with `wait_for` (request ids), waits until they are there."""
    def entries():
        return pclib.read_json_lines(proxy.out_path)

    if wait_for:
        want = set(wait_for)
        pclib.wait_until(lambda: want <= {e.get("request_id") for e in entries()}, timeout)
    return entries()


def log_when(proxy, ready, timeout=5):
    """The access log once ready(entries) holds (or at the timeout): lines are written as calls end,
    and a call the WAF reports on ends after its check, which a loaded machine can delay."""
    pclib.wait_until(lambda: ready(access_log(proxy)), timeout)
    time.sleep(0.1)  # and any line that should not be there has had its chance
    return access_log(proxy)


def by_id(entries):
    return {e.get("request_id"): e for e in entries}


def blocked_id(err, what):
    """The request id named in a WAF denial; asserts the status and the message's shape (the
    request id, no rule internals)."""
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, f"{what}: {describe(err)}"
    m = BLOCKED.match(err.details() or "")
    assert m, f"{what}: grpc-message {err.details()!r} is not 'request <id> blocked by the WAF'"
    return m.group(1)


# --- 1. attacks in nested fields are blocked, benign messages pass -----------------------------


def check_attacks_and_benign(st, proxy, ch, cls, label):
    origin = st.echo
    before = origin.stats()["calls"]["Unary"]
    ids = {}
    for i, (kind, payload) in enumerate(ATTACKS):
        err = rpc_error(ch.unary_unary(UNARY), attack_message(cls, i, payload), timeout=10)
        ids[blocked_id(err, f"{label}: {kind} {payload!r}")] = (kind, payload)
    assert origin.stats()["calls"]["Unary"] == before, f"{label}: a blocked call reached the origin"
    kinds = {k for k, _ in ATTACKS}
    assert kinds == {"sqli", "xss", "rce", "lfi", "php"}, kinds

    passed = 0
    for i, (kind, value) in enumerate(BENIGN):
        msg = benign_message(cls, i, kind, value)
        try:
            reply = ch.unary_unary(UNARY)(msg, timeout=10)
        except grpc.RpcError as e:
            raise AssertionError(f"{label}: benign {kind} {value!r} refused: {describe(e)}") from None
        assert reply == msg, f"{label}: benign {kind} {value!r} came back altered"
        passed += 1
    assert passed >= 50 and origin.stats()["calls"]["Unary"] == before + passed

    # Each block is in the access log with the rule ids and the anomaly score that made it.
    entries = by_id(access_log(proxy, wait_for=ids))
    for rid, (kind, payload) in ids.items():
        e = entries[rid]
        p = e.get("plugins") or {}
        assert e["grpc_status"] == 7 and e["reason"] == "plugin_deny", f"{label}: {kind} {payload!r}: {e}"
        assert p.get("waf.verdict") == "blocked", f"{label}: {kind} {payload!r}: {e}"
        rules = p.get("waf.rule_ids", "").split(",")
        assert "949110" in rules and len(rules) >= 2, f"{label}: {kind} {payload!r}: rule ids {rules}"
        assert int(p.get("waf.score", "0")) >= 5, f"{label}: {kind} {payload!r}: {e}"
        family = {"sqli": "942", "xss": "941", "rce": "932", "lfi": "930", "php": "933"}[kind]
        assert any(r.startswith(family) for r in rules), f"{label}: {kind} {payload!r} matched only {rules}"
    return ids


def test_attacks_blocked_benign_pass_with_descriptors(st):
    proxy = main_proxy(st)
    ids = check_attacks_and_benign(st, proxy, st.tls_channel("example.com"), st.Refund, "descriptors")
    # The audit log has the blocked calls under their request ids, and no benign one.
    audit = {a["transaction"]["unique_id"]: a["transaction"] for a in pclib.read_json_lines(st.audit)}
    assert set(ids) <= set(audit), f"blocks missing from the audit log {st.audit}: {set(ids) - set(audit)}"
    assert all(audit[i]["producer"]["secrules_engine"] == "Enabled" for i in ids)
    benign = [e["request_id"] for e in access_log(proxy)
              if e.get("grpc_status") == 0 and e.get("zone") == "example.com"]
    assert benign and not set(benign) & set(audit), "benign calls in the audit log"
    # Counted by rule id and verdict.
    samples = pclib.scrape_metrics(st.main_admin)
    assert (metric_sum(samples, "pc_waf_total", zone="example.com", label="blocked") or 0) >= len(ATTACKS)
    assert (metric_sum(samples, "pc_waf_rule_total", zone="example.com", label="949110") or 0) >= len(ATTACKS)


def test_attacks_blocked_benign_pass_without_descriptors(st):
    # Without a descriptor set the fields are named by number (ARGS:json.3.1), inspected all the same.
    proxy = run_proxy(st, "raw", waf_plugin())
    check_attacks_and_benign(st, proxy, st.h2c_channel("example.com"), st.Refund, "no descriptors")


# --- 2. metadata and path ----------------------------------------------------------------------


def test_metadata_and_path_blocked(st):
    """One transaction per unary call: headers and path are judged with the first message, which
    never reaches the origin. headers_first (zone strict.example.com) judges them before the
    origin sees anything, at the cost of a second transaction."""
    proxy = main_proxy(st)
    ok = refund(st.Refund)
    metadata = [
        ("metadata x-file", [("x-file", "../../../../etc/passwd")]),
        ("metadata referer", [("referer", "http://x/?q=' UNION SELECT password FROM users--")]),
        ("metadata x-cmd", [("x-cmd", "() { :; }; /bin/bash -c 'cat /etc/passwd'")]),
    ]
    paths = [
        ("path query", UNARY + "?id=1%27%20OR%20%271%27%3D%271"),
        ("path traversal", "/demo.Echo/..%2f..%2f..%2fetc%2fpasswd"),
    ]
    ids = []
    for host in ("example.com", "strict.example.com"):
        ch = st.tls_channel(host)
        before = st.echo.stats()["calls"]["Unary"]
        for what, md in metadata:
            ids.append(blocked_id(rpc_error(ch.unary_unary(UNARY), ok, metadata=md, timeout=10), f"{host}: {what}"))
        assert st.echo.stats()["calls"]["Unary"] == before, f"{host}: a call blocked on its headers reached the origin"
        # The same message without the bad metadata passes.
        assert ch.unary_unary(UNARY)(ok, metadata=[("x-file", "report-2024.pdf")], timeout=10) == ok

    # Paths of no method: a gRPC server answers those at once, before any message. At a recording
    # origin that never answers: blocked, and not one byte of a message went there (the call's
    # headers may or may not have been sent before the verdict reset the stream).
    stub = st.counting
    n = len(stub.requests)
    for what, path in paths:
        ids.append(blocked_id(rpc_error(st.h2c_channel("count.example.com").unary_unary(path), ok, timeout=10), what))
    time.sleep(0.2)
    seen = [r for r in stub.requests[n:] if r["headers"].get(":path") in {p for _, p in paths}]
    assert all(r.get("body", b"") == b"" for r in seen), "a blocked call's message reached the origin"
    # headers_first: blocked before the origin sees the call at all, so no race with its answer.
    for what, path in paths:
        ids.append(blocked_id(rpc_error(st.tls_channel("strict.example.com").unary_unary(path), ok, timeout=10),
                              f"headers_first: {what}"))

    # A bidi handler starts on the headers alone: with headers_first the origin never hears of a
    # call with bad metadata; by default it sees the call open but never gets its message.
    bad = [("x-file", "../../../../etc/passwd")]
    for host, reaches in (("example.com", True), ("strict.example.com", False)):
        st.echo.stats(reset=True)
        err = rpc_error(lambda: list(st.tls_channel(host).stream_stream(BIDI)(iter([ok]), metadata=bad, timeout=10)))
        ids.append(blocked_id(err, f"{host}: bidi with bad metadata"))
        stats = st.echo.stats()
        assert stats["messages"]["Bidi"] == 0, f"{host}: the message of a blocked call reached the origin"
        if not reaches:
            assert stats["calls"]["Bidi"] == 0, f"{host}: the origin saw a call blocked on its headers"

    # A call that sends no message at all is judged on its headers when it ends.
    err = rpc_error(st.tls_channel("example.com").stream_unary(CLIENT_STREAM), iter([]), metadata=bad, timeout=10)
    ids.append(blocked_id(err, "client stream without messages, bad metadata"))
    assert st.tls_channel("example.com").stream_unary(CLIENT_STREAM)(iter([]), timeout=10)

    entries = by_id(access_log(proxy, wait_for=ids))
    for rid in ids:
        assert (entries[rid].get("plugins") or {}).get("waf.verdict") == "blocked", entries[rid]


# --- 3. detect mode, zone exclusion, mode off ---------------------------------------------------


def test_detect_mode_passes_and_logs(st):
    proxy = main_proxy(st)
    ch = st.tls_channel("detect.example.com")
    before = st.echo.stats()["calls"]["Unary"]
    for i, (kind, payload) in enumerate(ATTACKS):
        msg = attack_message(st.Refund, i, payload)
        try:
            assert ch.unary_unary(UNARY)(msg, timeout=10) == msg
        except grpc.RpcError as e:
            raise AssertionError(f"detect mode refused {kind} {payload!r}: {describe(e)}") from None
    assert st.echo.stats()["calls"]["Unary"] == before + len(ATTACKS), "detect mode kept calls from the origin"
    def detections(log):
        return [e for e in log if e.get("zone") == "detect.example.com"
                and (e.get("plugins") or {}).get("waf.verdict") == "detected"]

    detected = detections(log_when(proxy, lambda log: len(detections(log)) >= len(ATTACKS)))
    assert len(detected) == len(ATTACKS), f"{len(detected)} of {len(ATTACKS)} detections in the access log"
    for e in detected:
        p = e["plugins"]
        assert e["grpc_status"] == 0 and int(p["waf.score"]) >= 5 and p["waf.rule_ids"], e
    # In the audit log too, each under its request id, with the message as the JSON body it was
    # judged as, by an engine in DetectionOnly mode.
    audit = {a["transaction"]["unique_id"]: a["transaction"] for a in pclib.read_json_lines(st.audit)}
    missing = [e["request_id"] for e in detected if e["request_id"] not in audit]
    assert not missing, f"detections missing from the audit log: {missing}"
    for e in detected:
        t = audit[e["request_id"]]
        assert t["producer"]["secrules_engine"] == "DetectionOnly", t["producer"]
        assert '"customer.' in t["request"].get("body", ""), t["request"]
        assert {m["details"]["ruleId"] for m in t["messages"]} >= set(e["plugins"]["waf.rule_ids"].split(","))
    # And counted by rule id, per zone.
    samples = pclib.scrape_metrics(st.main_admin)
    assert metric_sum(samples, "pc_waf_total", zone="detect.example.com", label="detected") == len(ATTACKS), \
        [s for s in samples if s[0].startswith("pc_waf")][:20]
    assert (metric_sum(samples, "pc_waf_rule_total", zone="detect.example.com", label="942100") or 0) >= 1


def test_zone_exclusion_lets_one_through(st):
    main_proxy(st)
    # This payload trips exactly one rule at paranoia 1 (942100, libinjection SQLi): excluded in
    # excl.example.com, so it passes there, and only there.
    msg = refund(st.Refund, order_id="1' OR '1'='1' --")
    err = rpc_error(st.tls_channel("example.com").unary_unary(UNARY), msg, timeout=10)
    blocked_id(err, "default zone")
    assert st.tls_channel("excl.example.com").unary_unary(UNARY)(msg, timeout=10) == msg
    # The exclusion is of that rule only: another attack is still blocked in that zone.
    err = rpc_error(st.tls_channel("excl.example.com").unary_unary(UNARY),
                    refund(st.Refund, email="<script>alert(1)</script>"), timeout=10)
    blocked_id(err, "excl zone, XSS")
    # mode: off in a zone: no inspection at all.
    assert st.tls_channel("off.example.com").unary_unary(UNARY)(msg, timeout=10) == msg


# --- 4. streams ---------------------------------------------------------------------------------


def test_bidi_stream_stops_at_the_bad_message(st):
    main_proxy(st)
    cls = st.Refund
    bad_at = 100
    msgs = [refund(cls, order_id=f"S-{i:03d}", tags=("note", f"message number {i}")) for i in range(200)]
    msgs[bad_at] = refund(cls, order_id="S-bad", tags=("note", "'; DROP TABLE users; --"))
    origin = st.echo
    origin.stats(reset=True)

    # Lockstep: each message is sent after the previous one came back, so every earlier message
    # has provably gone through the edge and the origin before the bad one is sent.
    echoed = queue.Queue()
    sent = []

    def requests():
        for i, m in enumerate(msgs):
            if i:
                try:
                    echoed.get(timeout=10 * SCALE)
                except queue.Empty:
                    return
            sent.append(i)
            yield m

    call = st.tls_channel("example.com").stream_stream(BIDI)(requests(), timeout=60)
    got, err = pclib.replies_until_error(call, on_reply=lambda: echoed.put(True))
    blocked_id(err, "bidi stream")
    assert got == msgs[:bad_at], f"{len(got)} replies; want exactly the {bad_at} messages before the bad one"
    stats = origin.stats()
    assert stats["messages"]["Bidi"] == bad_at, f"the origin received {stats['messages']['Bidi']} messages"
    assert pclib.wait_until(lambda: origin.stats()["cancelled"]["Bidi"] == 1, 5), "the origin stream was not reset"

    # Byte-exact at a recording origin: the first 100 messages whole, then a reset, never the bad one.
    stub = st.counting
    n = len(stub.requests)
    err = rpc_error(st.h2c_channel("count.example.com").stream_unary(CLIENT_STREAM), iter(msgs), timeout=30)
    blocked_id(err, "client stream")
    assert pclib.wait_until(lambda: len(stub.requests) > n and stub.requests[n]["reset"] is not None, 5), \
        "the origin stream was not reset"
    body, rest = pclib.grpc_messages(stub.requests[n]["body"])
    assert rest == b"" and body == msgs[:bad_at], f"origin got {len(body)} messages (+{len(rest)} bytes)"


# --- 5. plain HTTP/2 ----------------------------------------------------------------------------


def test_plain_http_requests(st):
    proxy = main_proxy(st)
    base = f"http://127.0.0.1:{st.h2c_port}"

    def curl(path, *args):
        rc, out, err = pclib.curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                                   "-H", "Host: example.com"] + list(args) + [base + path])
        assert rc == 0, f"curl {path}: {err}"
        return int(out)

    assert curl("/?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E") == 403
    assert curl("/search", "-H", "Referer: http://x/' OR 1=1--") == 403
    # A content type CRS does not allow is still refused (920420): allowing gRPC removed nothing.
    assert curl("/upload", "-X", "POST", "-H", "Content-Type: application/x-evil", "--data", "a=1") == 403
    # Benign requests go to the origin (a gRPC server, which answers plain HTTP its own way).
    assert curl("/index.html?page=2&sort=name") != 403
    assert curl("/form", "-X", "POST", "-H", "Content-Type: application/x-www-form-urlencoded",
                "--data", "name=Ann&city=Berlin") != 403
    def plain_blocks(log):
        return [e for e in log if e.get("grpc_service") is None and e.get("zone") == "example.com"
                and e.get("reason") == "plugin_deny"]

    blocked = plain_blocks(log_when(proxy, lambda log: len(plain_blocks(log)) >= 3))
    assert len(blocked) == 3, f"plain HTTP blocks in the access log: {blocked}"
    assert any("941" in (e.get("plugins") or {}).get("waf.rule_ids", "") for e in blocked), blocked
    assert any("920420" in (e.get("plugins") or {}).get("waf.rule_ids", "") for e in blocked), blocked


def test_plain_http_bodies(st):
    """Bodies of plain HTTP/2 requests are collected and judged whole (form, JSON, XML body
    processors chosen by content-type) before the origin sees any of the request; benign bodies
    arrive intact, larger than the window; bodies over body_limit are refused with 413."""
    proxy = main_proxy(st)
    base = f"http://127.0.0.1:{st.h2c_port}"
    body_file = os.path.join(st.dir, "body.bin")

    def post(path, ctype, body):
        with open(body_file, "wb") as f:
            f.write(body)
        rc, out, err = pclib.curl(["--http2-prior-knowledge", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                   "-H", "Host: web.example.com", "-H", f"Content-Type: {ctype}",
                                   "--data-binary", "@" + body_file, base + path])
        assert rc == 0, f"curl {path}: {err}"
        return int(out)

    def seen(path):
        with st.web.lock:
            return [r for r in st.web.requests if r["headers"].get(":path") == path]

    form = "application/x-www-form-urlencoded"
    attacks = [("/b-sqli", form, b"id=1&q=1' UNION SELECT username, password FROM users--", "942"),
               ("/b-xss", "application/json", b'{"profile":{"bio":"<script>alert(document.cookie)</script>"}}',
                "941"),
               ("/b-rce", form, b"host=example.com;cat /etc/passwd", "932"),
               ("/b-xml", "text/xml", b"<a><b>x' or 1=1 union select password from users--</b></a>", "942")]
    for path, ctype, body, _family in attacks:
        assert post(path, ctype, body) == 403, f"{path}: attack body not blocked"
    # Benign bodies, one well past the 64 KiB stream window, reach the origin byte for byte.
    benign = [("/b-form", form, b"name=Ann%20Lee&city=Berlin&note=see+you+at+8"),
              ("/b-json", "application/json", b'{"order":{"id":"A-1","items":[1,2,3],"gift":true}}'),
              ("/b-big", form, b"a=1&note=" + b"see+you+at+the+station+tomorrow+" * 3000)]
    for path, ctype, body in benign:
        assert post(path, ctype, body) == 200, f"{path}: benign body refused"
        got = seen(path)
        assert len(got) == 1 and got[0]["ended"] and got[0]["body"] == body, \
            f"{path}: the origin got {len(got)} requests, {[len(r.get('body', b'')) for r in got]} bytes"
    # Over body_limit (256 KiB here): refused whole, nothing forwarded. The answer comes while the
    # client is still sending, so the stream is then reset with NO_ERROR (RFC 9113 8.1), which
    # curl 7.88 reports as an error: a plain HTTP/2 client reads the answer instead.
    huge = pclib.h2_request(st.h2c_port, [(":method", "POST"), (":scheme", "http"), (":path", "/b-huge"),
                                          (":authority", "web.example.com"), ("content-type", form)],
                            chunks=[b"a=" + b"x" * 16382] + [b"x" * 16384] * 19, tls=False)
    assert huge.status == 413 and b"larger than 262144 bytes" in huge.data, huge
    # A body declared too large is refused on its headers, before any of it is sent.
    declared = pclib.h2_request(st.h2c_port, [(":method", "POST"), (":scheme", "http"), (":path", "/b-declared"),
                                              (":authority", "web.example.com"), ("content-type", form),
                                              ("content-length", "300000")], end_stream=False, tls=False, timeout=5)
    assert declared.status == 413 and not declared.timed_out, declared
    # Nothing of a refused request reached the origin, not even its headers.
    for path in [a[0] for a in attacks] + ["/b-huge", "/b-declared"]:
        assert seen(path) == [], f"{path}: the origin saw a refused request"
    want = {a[0] for a in attacks} | {"/b-huge"}
    entries = [e for e in log_when(proxy, lambda log: want <= {e.get("path") for e in log})
               if e.get("zone") == "web.example.com"]
    for path, _ctype, _body, family in attacks:
        e = [x for x in entries if x.get("path") == path]
        assert len(e) == 1 and e[0]["status"] == 403 and e[0]["reason"] == "plugin_deny", f"{path}: {e}"
        rules = (e[0].get("plugins") or {}).get("waf.rule_ids", "").split(",")
        assert any(r.startswith(family) for r in rules) and "949110" in rules, f"{path}: rules {rules}"
    huge = [x for x in entries if x.get("path") == "/b-huge"]
    assert len(huge) == 1 and huge[0]["status"] == 413 and huge[0]["reason"] == "body_too_large", huge


def test_body_held_behind_a_paused_plugin(st):
    """A plugin before the WAF holds the headers (thread-pool work) while the client sends its body:
    the bytes that arrived meanwhile join the body the WAF collects, so an attack in them is still
    caught and a benign body still arrives whole."""
    async_so = os.path.join(pclib.BUILD_DIR, "tests", "plugins", "pc-async.so")
    run_proxy(st, "hold-after-pause", [{"path": async_so, "config": {"delay_ms": 150}}] + waf_plugin(body_limit=262144))
    base = f"http://127.0.0.1:{st.h2c_port}"
    form = "application/x-www-form-urlencoded"

    def post(path, body):
        rc, out, err = pclib.curl(["--http2-prior-knowledge", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                   "-H", "Host: web.example.com", "-H", f"Content-Type: {form}",
                                   "--data-binary", body, base + path])
        assert rc == 0, f"curl {path}: {err}"
        return int(out)

    assert post("/paused-attack", "id=1&q=1' UNION SELECT username, password FROM users--") == 403
    benign = "name=Ann&note=" + "see+you+soon+" * 2000
    assert post("/paused-benign", benign) == 200
    with st.web.lock:
        got = {r["headers"].get(":path"): r for r in st.web.requests}
    assert "/paused-attack" not in got, "the attack reached the origin"
    assert got["/paused-benign"]["body"] == benign.encode(), "the benign body arrived altered"


def test_held_bodies_count_per_client(st):
    """Bodies the edge collects for the WAF count against max_held_bytes_per_client: past it the
    request is refused (503) and nothing reaches the origin; its bytes are given back."""
    run_proxy(st, "held-bodies", waf_plugin(body_limit=262144), extra={"limits": {"max_held_bytes_per_client": 100000}})
    form = "application/x-www-form-urlencoded"
    res = pclib.h2_request(st.h2c_port, [(":method", "POST"), (":scheme", "http"), (":path", "/held-big"),
                                         (":authority", "web.example.com"), ("content-type", form)],
                           chunks=[b"a=" + b"x" * 16382] + [b"x" * 16384] * 9, tls=False)
    assert res.status == 503 and b"too many request bodies" in res.data, res
    small = pclib.h2_request(st.h2c_port, [(":method", "POST"), (":scheme", "http"), (":path", "/held-small"),
                                           (":authority", "web.example.com"), ("content-type", form)],
                             chunks=[b"a=" + b"y" * 90000], tls=False)
    # 90 KB passes: what the refused request held was given back.
    assert small.status == 200, small
    with st.web.lock:
        paths = [r["headers"].get(":path") for r in st.web.requests]
    assert "/held-big" not in paths and "/held-small" in paths, paths


# --- 6. limits and the event loop ---------------------------------------------------------------


def test_body_limit(st):
    main_proxy(st)
    big = refund(st.Refund, tags=("x" * 270000,))  # over the 256 KiB body_limit once rendered
    err = rpc_error(st.tls_channel("example.com").unary_unary(UNARY), big, timeout=10)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(err)
    assert re.fullmatch(r"request \S+ refused: message too large for the WAF", err.details()), describe(err)
    # Detect mode lets it through, uninspected and said so.
    assert st.tls_channel("detect.example.com").unary_unary(UNARY)(big, timeout=10) == big


def test_rules_run_off_the_event_loop(st):
    """One worker: while a costly transaction (a message of hundreds of fields) runs on the thread
    pool, calls to a zone without the WAF are answered; they would wait behind it were it on the
    loop."""
    main_proxy(st)
    slow_ch = st.tls_channel("example.com")
    fast_ch = st.tls_channel("off.example.com")
    ok = refund(st.Refund)
    assert fast_ch.unary_unary(UNARY)(ok, timeout=10) == ok  # connection up
    # As many fields as it takes (within the body limit) for the inspection to take a while here.
    for n in (300, 1200, 4800):
        heavy = refund(st.Refund, tags=[f"tag {i}" for i in range(n)])
        t0 = time.monotonic()
        assert slow_ch.unary_unary(UNARY)(heavy, timeout=60) == heavy
        alone = time.monotonic() - t0
        if alone > 0.25:
            break
    assert alone > 0.1, f"the heavy message took only {alone * 1000:.0f} ms: not heavy enough to tell"

    done_at = {}
    fut = slow_ch.unary_unary(UNARY).future(heavy, timeout=60)
    fut.add_done_callback(lambda f: done_at.setdefault("slow", time.monotonic()))
    start = time.monotonic()
    time.sleep(min(0.01, alone / 5))
    fast = []
    while "slow" not in done_at and time.monotonic() - start < alone * 3:
        t = time.monotonic()
        assert fast_ch.unary_unary(UNARY)(ok, timeout=10) == ok
        fast.append((time.monotonic(), time.monotonic() - t))
    assert fut.result() == heavy
    # Were rules run on the loop, at most the call that got in before the heavy one's transaction
    # could be answered before it; the others would wait for it.
    early = [d for at, d in fast if at < done_at["slow"]]
    assert len(early) >= 3, f"{len(early)} calls answered while the heavy one ({alone * 1000:.0f} ms) was inspected"
    assert max(early) < alone, f"calls beside the heavy one took up to {max(early) * 1000:.0f} ms"


def concurrent_calls(ch, msg, n):
    futs = [ch.unary_unary(UNARY).future(msg, timeout=30) for _ in range(n)]
    out = []
    for f in futs:
        try:
            out.append(f.result())
        except grpc.RpcError as e:
            out.append(e)
    return out


def test_queue_bound(st):
    """The queue bounds transactions that go to libmodsecurity: with the fast path off every call
    does; with it on, benign calls are judged on the loop and never wait for the queue."""
    heavy = refund(st.Refund, tags=[f"tag number {i}" for i in range(60)])
    run_proxy(st, "queue-fast", waf_plugin(max_queue=1, fast_path="on"), admin=True)
    results = concurrent_calls(st.h2c_channel("example.com"), heavy, 24)
    assert all(r == heavy for r in results), [describe(r) for r in results if isinstance(r, grpc.RpcError)]
    samples = pclib.scrape_metrics(st.admin_port)
    assert metric_sum(samples, "pc_waf_fast_path_total", result="clean") == 24, samples

    run_proxy(st, "queue-deny", waf_plugin(max_queue=1, fast_path="off"), admin=True)
    results = concurrent_calls(st.h2c_channel("example.com"), heavy, 24)
    refused = [r for r in results if isinstance(r, grpc.RpcError)]
    assert all(r == heavy for r in results if not isinstance(r, grpc.RpcError))
    for e in refused:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(e)
        assert re.fullmatch(r"request \S+ refused: the WAF is busy", e.details()), describe(e)
    assert refused, "24 concurrent calls never found the queue of one full"
    assert len(refused) < 24, "no call got through"
    samples = pclib.scrape_metrics(st.admin_port)
    assert metric_sum(samples, "pc_waf_total", label="queue_full") == len(refused)

    run_proxy(st, "queue-open", waf_plugin(max_queue=1, on_queue_full="open", fast_path="off"), admin=True)
    results = concurrent_calls(st.h2c_channel("example.com"), heavy, 24)
    assert all(r == heavy for r in results), [describe(r) for r in results if isinstance(r, grpc.RpcError)]
    assert (metric_sum(pclib.scrape_metrics(st.admin_port), "pc_waf_total", label="fail_open") or 0) >= 1
    # Fail-open is for capacity only: an attack that finds a free queue is still blocked.
    err = rpc_error(st.h2c_channel("example.com").unary_unary(UNARY),
                    refund(st.Refund, email="<script>alert(1)</script>"), timeout=10)
    blocked_id(err, "fail-open proxy, idle")


# --- 7. configuration ---------------------------------------------------------------------------


def test_grpc_allowed_by_configuration(st):
    """Rule 920420 stays active: a rules file that puts CRS's default content-type list back makes
    every gRPC call a block by 920420; the shipped override is what lets gRPC through."""
    revert = os.path.join(st.dir, "revert-content-types.conf")
    with open(revert, "w") as f:
        f.write("SecAction \"id:19000,phase:1,pass,nolog,setvar:'tx.allowed_request_content_type="
                "|application/x-www-form-urlencoded| |multipart/form-data| |multipart/related| |text/xml| "
                "|application/xml| |application/soap+xml| |application/json| |application/cloudevents+json| "
                "|application/cloudevents-batch+json|'\"\n")
        # A local rule with its own status: plain HTTP requests get it (gRPC calls get 7).
        f.write('SecRule ARGS:probe "@streq teapot" "id:19001,phase:1,deny,status:418,log"\n')
    proxy = run_proxy(st, "revert", waf_plugin(rules=[revert]))
    err = rpc_error(st.h2c_channel("example.com").unary_unary(UNARY), refund(st.Refund), timeout=10)
    rid = blocked_id(err, "benign call with gRPC not allowed")
    entry = by_id(access_log(proxy, wait_for=[rid]))[rid]
    assert "920420" in entry["plugins"]["waf.rule_ids"].split(","), entry
    rc, out, err = pclib.curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                               "Host: example.com", f"http://127.0.0.1:{st.h2c_port}/?probe=teapot"])
    assert rc == 0 and out == "418", f"plain HTTP denial status {out!r} (want the rule's 418): {err}"


def test_config_errors(st):
    def check(name, config, expect=None):
        cfg = pclib.make_config(tls_port=pclib.free_port(), origins=st.base_origins, zones=st.base_zones,
                                extra={"plugins": waf_plugin(**config)})
        path = st.write_config(cfg, name=f"{name}.yaml")
        r = pclib.run_check(path, timeout=60)
        for marker in SANITIZER_MARKERS:
            assert marker not in r.stderr, f"{name}: sanitizer finding:\n{r.stderr[-3000:]}"
        if expect is None:
            assert r.returncode == 0, f"{name}: check failed:\n{r.stderr}"
            return
        assert r.returncode == 2, f"{name}: check exit {r.returncode}, want 2:\n{r.stderr}"
        # The core checks keys, types and bounds (the descriptor's config map); the plugin the rest.
        pattern = re.escape(path) + r":\d+:\d+: plugin modsecurity: (?:init failed: config \(.*?\): )?" + expect
        assert re.search(pattern, r.stderr), f"{name}: stderr lacks {pattern!r}:\n{r.stderr}"

    broken = os.path.join(st.dir, "broken.conf")
    with open(broken, "w") as f:
        f.write('SecRule ARGS "@rx x" "id:19001,phase:2,deny,nosuchaction"\n')
    # The shipped local.conf loads, and so do its commented examples once uncommented.
    local = os.path.join(pclib.SOURCE_DIR, "rules", "waf", "local.conf")
    examples = os.path.join(st.dir, "local-examples.conf")
    with open(local) as f, open(examples, "w") as out:
        lines = f.read().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("# Examples"))
        code = [line[2:] for line in lines[start:] if line.startswith(("# Sec", "#     "))]
        assert len(code) >= 4, code
        out.write("\n".join(code) + "\n")
    check("good", {"paranoia": 2, "mode": "detect", "rules": [local, examples],
                   "zones": {"example.com": {"paranoia": 1, "exclude": [920350], "headers_first": True,
                                             "inspect_response": True}}})
    check("unknown-key", {"paranoya": 2}, r'unknown key "paranoya"')
    check("bad-paranoia", {"paranoia": 7}, r'paranoia: expected a whole number from 1 to 4, got "7"')
    check("bad-mode", {"zones": {"example.com": {"mode": "maybe"}}}, r'mode: expected block, detect or off')
    check("bad-zone-response", {"zones": {"example.com": {"inspect_response": "sometimes"}}},
          r'inspect_response: expected true or false')
    check("bad-exclude", {"exclude": ["abc"]}, r'exclude\[0\]: expected a rule id')
    check("missing-rules", {"rules": ["nowhere.conf"]}, r"rules\[0\]: .*nowhere\.conf: no such file")
    check("broken-rules", {"rules": [broken]}, re.escape(broken) + ": ")
    check("no-crs", {"crs": os.path.join(st.dir, "no-crs")}, r"crs: .*no-crs has no rules/ directory")


# --- 8. responses (optional) ---------------------------------------------------------------------


def sql_error_reply(st):
    """A message that passes request inspection but, as a reply, leaks an SQL error (rules 951xxx)."""
    return refund(st.Refund, tags=("error", "You have an error in your SQL syntax; check the manual that "
                                            "corresponds to your MySQL server version for the right syntax"))


def test_inspect_response(st):
    """inspect_response: true. Block mode holds each response message for its verdict: an SQL error
    in a reply (the 95x data-leakage rules) never reaches the client, which gets PERMISSION_DENIED;
    in a stream the replies before it arrive. Detect mode passes it and reports it. Benign replies
    pass untouched and unreported."""
    zones = dict(ZONES, **{"excl.example.com": {"exclude": [942100], "inspect_response": False}})
    proxy = run_proxy(st, "responses", waf_plugin(inspect_response=True, zones=zones),
                      extra={"descriptors": [st.echo_pb]})
    leak = sql_error_reply(st)
    ok = refund(st.Refund)
    ch = st.h2c_channel("example.com")
    err = rpc_error(ch.unary_unary(UNARY), leak, timeout=10)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    m = re.fullmatch(r"response to request (\S+) blocked by the WAF", err.details() or "")
    assert m, describe(err)
    assert ch.unary_unary(UNARY)(ok, timeout=10) == ok

    # A stream: replies before the leaking one arrive, then the call ends; nothing after it.
    msgs = [refund(st.Refund, order_id=f"S-{i}") for i in range(30)]
    msgs[12] = leak
    got, err = pclib.replies_until_error(ch.stream_stream(BIDI)(iter(msgs), timeout=20))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    assert got == msgs[:12], f"{len(got)} replies before the denial, want the 12 before the leak"

    # Detect mode: the same reply goes through and is reported.
    dch = st.h2c_channel("detect.example.com")
    assert dch.unary_unary(UNARY)(leak, timeout=10) == leak
    assert dch.unary_unary(UNARY)(ok, timeout=10) == ok
    # A zone that switched it off: through, and not judged at all.
    assert st.h2c_channel("excl.example.com").unary_unary(UNARY)(leak, timeout=10) == leak
    time.sleep(0.3)
    entries = by_id(access_log(proxy, wait_for=[m.group(1)]))
    excl = [e for e in entries.values() if e.get("zone") == "excl.example.com"]
    assert len(excl) == 1 and excl[0]["grpc_status"] == 0 and not excl[0].get("plugins"), excl
    blocked = entries[m.group(1)]
    p = blocked.get("plugins") or {}
    assert blocked["grpc_status"] == 7 and p.get("waf.verdict") == "blocked", blocked
    assert any(r.startswith("951") for r in p.get("waf.rule_ids", "").split(",")), blocked
    assert int(p.get("waf.response_score", "0")) > 0, blocked
    # Log lines come in the order calls end; the leaking call may end after the next one, since its
    # line waits for the response check. Order them as they were made.
    detect = sorted((e for e in entries.values() if e.get("zone") == "detect.example.com" and e.get("path") == UNARY),
                    key=pclib.request_seq)
    assert len(detect) == 2, detect
    assert (detect[0].get("plugins") or {}).get("waf.verdict") == "detected" and detect[0]["grpc_status"] == 0, detect
    assert detect[1].get("plugins") is None, f"a benign reply was reported: {detect[1]}"
    assert not [e for e in entries.values() if e.get("zone") == "example.com" and e.get("grpc_status") == 0
                and (e.get("plugins") or {}).get("waf.verdict")], "a benign call was reported"


def test_inspect_response_per_zone(st):
    """inspect_response off at the top and on for one zone: only that zone's replies are judged."""
    zones = dict(ZONES, **{"strict.example.com": {"inspect_response": True}})
    proxy = run_proxy(st, "responses-zone", waf_plugin(zones=zones), extra={"descriptors": [st.echo_pb]})
    leak = sql_error_reply(st)
    assert st.h2c_channel("example.com").unary_unary(UNARY)(leak, timeout=10) == leak
    err = rpc_error(st.h2c_channel("strict.example.com").unary_unary(UNARY), leak, timeout=10)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    m = re.fullmatch(r"response to request (\S+) blocked by the WAF", err.details() or "")
    assert m, describe(err)
    entries = access_log(proxy, wait_for=[m.group(1)])
    plain = [e for e in entries if e.get("zone") == "example.com"]
    assert len(plain) == 1 and plain[0]["grpc_status"] == 0 and not plain[0].get("plugins"), plain


def test_reload_swaps_rule_sets(st):
    """SIGHUP with another WAF config: calls judged by the old rules finish, new calls use the new
    ones (block -> detect); the engine shared by both generations survives the old one's end."""
    import signal

    proxy = run_proxy(st, "reload", waf_plugin(mode="block"))
    ch = st.h2c_channel("example.com")
    attack = refund(st.Refund, email="<script>alert(1)</script>")
    blocked_id(rpc_error(ch.unary_unary(UNARY), attack, timeout=10), "before the reload")
    # A stream open across the reload keeps the rules it started with.
    slow = ch.unary_unary("/demo.Echo/Sleep").future(b'{"ms": 600}', timeout=20)
    cfg = dict(st.cfg)
    cfg["plugins"] = waf_plugin(mode="detect")
    st.write_config(cfg, name="reload.yaml")
    proxy.proc.send_signal(signal.SIGHUP)
    assert pclib.wait_until(lambda: "configuration reloaded" in pclib.tail(proxy.err_path, 200), 20), \
        pclib.tail(proxy.err_path, 40)
    assert ch.unary_unary(UNARY)(attack, timeout=10) == attack, "detect mode after the reload still blocked"
    assert b"slept_ms" in slow.result()
    ok = refund(st.Refund)
    assert ch.unary_unary(UNARY)(ok, timeout=10) == ok
    assert proxy.alive()


# --- 9. the fast path ---------------------------------------------------------------------------


def test_fast_path_judges_benign_calls(st):
    """Benign calls are judged by the fast path (counted clean), attacks fall back to libmodsecurity
    and are blocked as before; the fallback reasons are counted."""
    proxy = run_proxy(st, "fast", waf_plugin(crs=CRS, paranoia=1), extra={"descriptors": [st.echo_pb]}, admin=True)
    ch = st.h2c_channel("example.com")
    before = metric_sum(pclib.scrape_metrics(st.admin_port), "pc_waf_fast_path_total", result="clean") or 0
    for i in range(20):
        msg = refund(st.Refund, order_id=f"C-{i}", email=f"user{i}@example.com", tags=("vip", f"note {i}"))
        assert ch.unary_unary(UNARY)(msg, timeout=10) == msg
    blocked_id(rpc_error(ch.unary_unary(UNARY), refund(st.Refund, email="1' OR '1'='1' --"), timeout=10), "sqli")
    samples = pclib.scrape_metrics(st.admin_port)
    clean = metric_sum(samples, "pc_waf_fast_path_total", result="clean") or 0
    fallback = metric_sum(samples, "pc_waf_fast_path_total", result="fallback") or 0
    if FAST_PATH == "off":
        assert clean == 0 and fallback == 0, samples
        return
    assert clean - before == 20, f"{clean - before} of 20 benign calls judged by the fast path"
    assert fallback >= 1, "the attack did not fall back"
    assert (metric_sum(samples, "pc_waf_fast_path_fallback_total") or 0) >= 1, samples
    assert proxy.alive()


def test_fast_path_verify_mode(st):
    """fast_path: verify runs both paths on every transaction and counts differences: the WAF
    suite's own calls in this mode show none (and this file run with PC_WAF_FAST_PATH=verify
    checks every test's calls the same way, below)."""
    # Paranoia 1, and 2 (where every gRPC call without an Accept header scores: rule 920300).
    for paranoia in (1, 2):
        run_proxy(st, f"verify-pl{paranoia}", waf_plugin(crs=CRS, paranoia=paranoia, fast_path="verify"),
                  extra={"descriptors": [st.echo_pb]}, admin=True)
        ch = st.h2c_channel("example.com")
        for i, (kind, value) in enumerate(BENIGN):
            msg = benign_message(st.Refund, i, kind, value)
            try:
                ch.unary_unary(UNARY)(msg, metadata=[("accept", "application/grpc")], timeout=10)
            except grpc.RpcError:
                pass  # a higher paranoia level refuses some benign values; both paths must still agree
        for i, (kind, payload) in enumerate(ATTACKS):
            rpc_error(ch.unary_unary(UNARY), attack_message(st.Refund, i, payload), timeout=10)
        samples = pclib.scrape_metrics(st.admin_port)
        assert metric_sum(samples, "pc_waf_fast_path_total", result="clean"), \
            f"paranoia {paranoia}: verify mode judged nothing clean"
        assert not metric_sum(samples, "pc_waf_fast_path_mismatch_total"), samples


# --- last -----------------------------------------------------------------------------------------


def test_no_library_output_on_stderr(st):
    """The library prints nothing of its own: rule messages go to the plugin, not to stderr."""
    proxy = main_proxy(st)
    ch = st.tls_channel("example.com")
    rpc_error(ch.unary_unary(UNARY), refund(st.Refund, email="<script>alert(1)</script>"), timeout=10)
    time.sleep(0.2)
    for p in st.proxies:
        text = pclib.tail(p.err_path, 100000)
        assert "ModSecurity" not in text, f"{p.name} stderr has library output:\n{text[-2000:]}"
        # In verify mode (any test's proxy), a difference between the paths is logged.
        assert "fast path mismatch" not in text, f"{p.name}: the fast path and libmodsecurity differed:\n" + \
            "\n".join(line for line in text.splitlines() if "fast path mismatch" in line)[:4000]
    assert proxy.alive()


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
