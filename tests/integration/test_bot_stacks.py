#!/usr/bin/python3
"""Bot scoring that knows gRPC clients, with the shipped rules (rules/bots, no `rules` key): each real
client stack this machine runs — gRPC C-core (Python grpcio and C++ libgrpc++), grpc-go, grpc-js on Node,
Go's net/http, Chromium, curl, h2load, Python h2 over ssl — calls the edge once with its own User-Agent and once with
another stack's. The matrix is printed; every client's fingerprint must be one the shipped stacks.rules
knows as its stack (else the shipped signatures are stale: re-capture them); with its own User-Agent
there is no ua_stack_mismatch and a gRPC client or browser scores at least 30; with another stack's, the
score is below 30 and the signal names both stacks. The access log carries each User-Agent as sent
(gRPC libraries add their own products to the one set by the application). A zone with
expect_clients lets its expected stack in, refuses another known stack and leaves an unknown
fingerprint at the neutral score."""

import os
import re
import socket
import ssl
import subprocess

import grpc
import hpack

import pclib
import pclib.stack_clients as clients
from pclib import origin_conf, zone_conf

SCALE = pclib.TIME_SCALE
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CORE_UA = "grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)"
GO_TLS = "grpc-go+go-http"  # grpc-go and Go's net/http share Go's TLS; their HTTP/2 frames differ
# client: (its TLS fingerprint's stack label, its own User-Agent (None: the library's default), another
#          stack's User-Agent, the mismatch signal that one must get)
MATRIX = {
    "grpcio": ("grpc-core", None, "grpc-go/1.60.1", "grpc-go/grpc-core"),
    "grpc-c++": ("grpc-core", None, "grpc-java-okhttp/1.58.0", "grpc-java/grpc-core"),
    "grpc-go": (GO_TLS, None, CORE_UA, f"grpc-core/{GO_TLS}"),
    "grpc-js": ("grpc-js", None, "grpc-go/1.60.1", "grpc-go/grpc-js"),
    "chromium": ("chromium", "desktop", FIREFOX_UA, "firefox/chromium"),
    # Go's TLS fits a grpc-go claim; its HTTP/2 frames do not.
    "go-http": (GO_TLS, None, "grpc-go/1.60.1", "grpc-go/go-http"),
    "curl": ("curl", None, "grpc-go/1.60.1", "grpc-go/curl"),
    "h2load": ("nghttp2", None, "grpc-java-okhttp/1.58.0", "grpc-java/nghttp2"),
    # The h2 library sends no User-Agent of its own: a script on it names itself.
    "python-h2": ("python", "python-h2/4.1.0", CORE_UA, "grpc-core/python"),
}
# HTTP libraries and tools are honest automation: as themselves they keep their band (Go's net/http and
# curl at most 29, h2load 10, Python 25).
TOOLS = {"go-http", "curl", "h2load", "python-h2"}


def setup():
    st = pclib.Stack("bot-stacks")
    st.versions = clients.prepare()
    st.start_origin("echo")
    bot = {"zones": {"mobile": {"block_below": 30, "expect_clients": ["grpc-go", "grpc-java"]}}}
    zones = pclib.default_zones("echo") + [zone_conf("mobile", ["mobile.example.com"], "echo")]
    st.start_proxy([origin_conf("echo", st.origins["echo"].port)], zones,
                   extra={"workers": 2, "plugins": [{"name": "bot", "config": bot}]})
    return st


def log_line(st, path):
    return pclib.json_lines_matching(st.proxy.out_path, lambda l: l.get("path") == path, 1, 20)[0]


def verdict(line):
    p = line.get("plugins") or {}
    return int(p["bot_score"]), p["bot_class"], p["bot.signals"].split(",")


def one_call(st, client, kind, ua, authority="example.com"):
    """A call of client with ua; the edge's access-log line for it."""
    path = f"/stacks.Probe/{client.replace('+', 'p')}_{kind}"
    clients.call(client, st.tls_port, st.certs["ca"], authority, path, ua=ua,
                 logged=lambda: any(l.get("path") == path for l in pclib.read_json_lines(st.proxy.out_path)))
    return log_line(st, path)


def test_client_stack_matrix(st, capsys):
    rows, problems = [], []
    for client, (stack, own, spoof, want_mismatch) in MATRIX.items():
        if own == "desktop":
            own = clients.chromium_user_agent()
        for kind, ua in (("own", own), ("spoof", spoof)):
            line = one_call(st, client, kind, ua)
            score, cls, signals = verdict(line)
            sent = line.get("user_agent") or ""
            rows.append((client, kind, sent, score, cls, ",".join(signals), line["plugins"].get("ja4"),
                         line["plugins"].get("h2_fingerprint")))
            want_fp = f"fp:{stack}"
            if signals[0] != want_fp:
                problems.append(f"{client} ({kind}): {signals[0]}, not {want_fp}: its fingerprint (JA4 "
                                f"{line['plugins'].get('ja4')}, HTTP/2 {line['plugins'].get('h2_fingerprint')}) "
                                f"is not the one rules/bots/stacks.rules knows for {stack}: re-capture it "
                                f"(scripts/fingerprint-capture)")
            if ua and ua not in sent:
                problems.append(f"{client} ({kind}): access log user_agent {sent!r} lacks {ua!r}")
            mismatch = [s for s in signals if s.startswith("ua_stack_mismatch:")]
            if kind == "own":
                if mismatch:
                    problems.append(f"{client} as itself: {mismatch}")
                if client not in TOOLS and score < 30:
                    problems.append(f"{client} as itself scored {score} ({signals})")
            else:
                want = f"ua_stack_mismatch:{want_mismatch}"
                if score >= 30 or want not in signals:
                    problems.append(f"{client} claiming {spoof!r}: {score} {signals}, want < 30 with {want}")
    # Shown whether the test passes or not (pytest would keep it for failures only).
    with capsys.disabled():
        pclib.log("\n\nclient     UA     score class             signals  |  User-Agent sent")
        for client, kind, sent, score, cls, signals, ja4, h2fp in rows:
            pclib.log(f"{client:10} {kind:6} {score:5} {cls:17} {signals}  |  {sent}")
        pclib.log("")
        for client in MATRIX:
            ja4, h2fp = next((r[6], r[7]) for r in rows if r[0] == client)
            pclib.log(f"{client:10} JA4 {ja4}  HTTP/2 {h2fp}")
        for name, version in st.versions.items():
            pclib.log(f"{name:10} {version}")
    assert not problems, "\n".join(problems)


def unknown_client_call(st, authority, path):
    """A client no rule knows: Python ssl restricted to TLS 1.2 with two ciphers, and HTTP/2 SETTINGS no
    listed client sends; one GET."""
    ctx = ssl.create_default_context(cafile=st.certs["ca"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", st.tls_port), timeout=10 * SCALE) as raw, \
            ctx.wrap_socket(raw, server_hostname="example.com") as s:
        settings = pclib.h2_settings([(2, 0), (4, 123457), (6, 9999)])
        block = hpack.Encoder().encode([(":method", "GET"), (":path", path), (":scheme", "https"),
                                        (":authority", authority), ("user-agent", "inhouse/3.1")])
        s.sendall(pclib.H2_PREFACE + settings + pclib.h2_frame(pclib.H2_HEADERS, 0x5, 1, block))
        pclib.wait_until(lambda: any(l.get("path") == path for l in pclib.read_json_lines(st.proxy.out_path)),
                         timeout=10)
    return log_line(st, path)


def test_expect_clients(st):
    ca = st.certs["ca"]
    # grpc-go is expected: through, at its fingerprint's score.
    go = one_call(st, "grpc-go", "mobile", None, authority="mobile.example.com")
    assert go["zone"] == "mobile" and go["grpc_status"] != 7 and verdict(go)[0] >= 30, go
    # grpcio, honest about being grpcio, is a known stack the zone does not expect: refused.
    core = one_call(st, "grpcio", "mobile", None, authority="mobile.example.com")
    score, _, signals = verdict(core)
    assert core["grpc_status"] == 7 and core["plugins"].get("bot.blocked"), core
    assert score < 30 and "unexpected_client:grpc-core" in signals and not any("mismatch" in s for s in signals), \
        signals
    # An unknown fingerprint keeps the neutral score: not refused.
    line = unknown_client_call(st, "mobile.example.com", "/stacks.Probe/unknown")
    score, cls, signals = verdict(line)
    assert line["zone"] == "mobile" and not line["plugins"].get("bot.blocked"), line
    assert score == 50 and signals[0] == "fp:unknown" and not any("unexpected" in s for s in signals), signals
    # The same client stacks in a zone without the list: nothing unexpected.
    err = None
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    ch = grpc.secure_channel(f"127.0.0.1:{st.tls_port}", creds,
                             options=pclib.channel_options() + [("grpc.ssl_target_name_override", "example.com")])
    try:
        ch.unary_unary("/demo.Echo/Unary")(b"x", timeout=10 * SCALE)
    except grpc.RpcError as e:
        err = e
    finally:
        ch.close()
    assert err is None, err


def test_expect_clients_names_declared_stacks(st):
    for value, want in (("[grpc-go, grpc-gp]", 'unknown client stack "grpc-gp" (the rules declare: grpc-core '),
                        ("grpc-go", "expected a list of client stacks")):
        bot = {"zones": {"mobile": {"expect_clients": ["grpc-go", "grpc-gp"] if "[" in value else value}}}
        path = st.write_config(dict(st.cfg, plugins=[{"name": "bot", "config": bot}]), name="bad-expect.yaml")
        r = pclib.run_check(path)
        assert r.returncode != 0, r.stderr
        assert re.search(re.escape(path) + r":\d+:\d+: .*expect_clients: " + re.escape(want), r.stderr), r.stderr


def test_capture_script_reproduces_shipped_signatures(st):
    """scripts/fingerprint-capture, the documented procedure, run on this edge's access log: for the
    clients called above it prints the rules stacks.rules ships, and they load."""
    shipped = {}  # stack -> {(type, value, kind, score)} of the fingerprints whose label names it
    with open(os.path.join(pclib.SOURCE_DIR, "rules", "bots", "stacks.rules")) as f:
        for line in f:
            w = line.split()
            if w and w[0] == "fingerprint":
                for stack in w[5].split("+"):
                    shipped.setdefault(stack, set()).add(tuple(w[1:5]))
    for ua, stack, kind, score in (("grpc-node-js/", "grpc-js", "grpc_library", "60"),
                                   ("grpc-go/1.33", "grpc-go", "grpc_library", "60"),
                                   ("curl/", "curl", "http_library", "20")):
        r = subprocess.run([pclib.PYTHON, os.path.join(pclib.SOURCE_DIR, "scripts", "fingerprint-capture"), "--log",
                            st.proxy.out_path, "--user-agent", ua, "--stack", stack, "--kind", kind, "--score", score,
                            "--product", ua.split("/")[0]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30, text=True)
        assert r.returncode == 0, r.stderr
        rules = [l.split() for l in r.stdout.splitlines() if l.startswith("fingerprint ")]
        captured = {tuple(w[1:5]) for w in rules}
        assert all(w[5] == stack for w in rules), rules
        assert captured == shipped[stack], f"{stack}: captured {sorted(captured)}, shipped {sorted(shipped[stack])}"
        rules_dir = os.path.join(st.dir, f"captured-{stack}")
        os.makedirs(rules_dir, exist_ok=True)
        with open(os.path.join(rules_dir, "zz-local.rules"), "w") as f:
            f.write(r.stdout)
        cfg = {"plugins": [{"name": "bot", "config": {"rules": rules_dir}}]}
        check = pclib.run_check(st.write_config(dict(st.cfg, **cfg), name=f"check-{stack}.yaml"))
        assert check.returncode == 0 and f"rules {rules_dir}" in check.stderr + check.stdout, \
            (check.returncode, check.stdout, check.stderr)


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
