#!/usr/bin/python3
"""The client-facing edge and the command line: ALPN (h2 only), certificate choice by SNI, plain
HTTP/2 proxied (TLS and h2c), 421 for unknown hosts, `portcullis check` and `--version`."""

import os
import re
import shutil
import socket
import ssl
import subprocess

import pclib
from pclib import BINARY, SOURCE_DIR, s_client


def setup():
    st = pclib.Stack("front")
    echo = st.start_origin("echo")
    certificates = [
        {"cert": "certs/edge.pem", "key": "certs/edge.key"},  # default
        {"cert": "certs/origin.pem", "key": "certs/origin.key"},  # chosen for SNI origin.test
    ]
    st.start_proxy([pclib.origin_conf("echo", echo.port)], pclib.default_zones("echo"), certificates=certificates)
    return st


def alpn_line(out):
    m = re.search(r"^ALPN protocol: (\S+)", out, re.M)
    return m.group(1) if m else None


def test_alpn_h2_negotiated(st):
    _, out = s_client(st.tls_port, ["-servername", "example.com", "-alpn", "h2", "-CAfile", st.certs["ca"]])
    assert alpn_line(out) == "h2", f"ALPN not h2:\n{out[-1500:]}"
    assert "Verify return code: 0 (ok)" in out, f"edge certificate did not verify:\n{out[-1500:]}"


def test_tls12_and_tls13(st):
    """Both TLS 1.2 (ECDHE + AEAD, as RFC 9113 requires for h2) and TLS 1.3 negotiate h2; TLS 1.1 is refused."""
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        _, out = s_client(st.tls_port, ["-servername", "example.com", "-alpn", "h2", flag, "-CAfile", st.certs["ca"]])
        assert alpn_line(out) == "h2", f"{version}: ALPN not h2:\n{out[-1500:]}"
        assert f"Protocol  : {version}" in out or f", {version}," in out, f"{version} not negotiated:\n{out[-1500:]}"
    _, out = s_client(st.tls_port, ["-servername", "example.com", "-alpn", "h2", "-tls1_1", "-CAfile", st.certs["ca"]])
    assert alpn_line(out) is None, f"TLS 1.1 was accepted:\n{out[-1500:]}"


def test_alpn_http11_refused(st):
    _, out = s_client(st.tls_port, ["-servername", "example.com", "-alpn", "http/1.1", "-CAfile", st.certs["ca"]])
    assert "no application protocol" in out.lower(), f"expected alert no_application_protocol:\n{out[-1500:]}"
    assert alpn_line(out) is None, f"a protocol was negotiated: {alpn_line(out)}"

    # The same from Python's ssl module, offering only http/1.1.
    ctx = ssl.create_default_context(cafile=st.certs["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", st.tls_port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="example.com") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
                data = tls.recv(100)
                raise AssertionError(f"handshake completed (ALPN {tls.selected_alpn_protocol()!r}), read {data!r}")
        except ssl.SSLError as e:
            text = f"{e.reason} {e}".upper().replace("_", " ")
            assert "NO APPLICATION PROTOCOL" in text, f"refused, but not with no_application_protocol: {e}"


def subject_cn(out):
    m = re.search(r"^subject=.*CN\s*=\s*([^,/\n]+)", out, re.M)
    return m.group(1).strip() if m else None


def test_sni_selects_certificate(st):
    ca = st.certs["ca"]
    _, out = s_client(st.tls_port, ["-servername", "origin.test", "-alpn", "h2", "-CAfile", ca])
    assert subject_cn(out) == "origin.test", f"SNI origin.test got CN {subject_cn(out)}"
    _, out = s_client(st.tls_port, ["-servername", "example.com", "-alpn", "h2", "-CAfile", ca])
    assert subject_cn(out) == "localhost", f"SNI example.com got CN {subject_cn(out)} (want the edge cert)"
    _, out = s_client(st.tls_port, ["-noservername", "-alpn", "h2", "-CAfile", ca])
    assert subject_cn(out) == "localhost", f"no SNI got CN {subject_cn(out)} (want the first, default cert)"
    _, out = s_client(st.tls_port, ["-servername", "other.invalid", "-alpn", "h2", "-CAfile", ca])
    assert subject_cn(out) == "localhost", f"unmatched SNI got CN {subject_cn(out)} (want the default cert)"


def came_from_grpcio(headers_text):
    """grpcio answers a non-gRPC request itself, with content-type application/grpc and a
    grpc-status (or 415): proof the edge forwarded the request to the origin."""
    h = headers_text.lower()
    return "content-type: application/grpc" in h or "grpc-status:" in h or re.search(r"^http/2 415", h, re.M)


def test_curl_http2_proxied_to_origin(st):
    rc, out, err = pclib.curl(["--http2", "-i", "--cacert", st.certs["ca"],
                               "--resolve", f"example.com:{st.tls_port}:127.0.0.1",
                               f"https://example.com:{st.tls_port}/plain"])
    assert rc == 0, f"curl failed ({rc}): {err}"
    assert out.startswith("HTTP/2 "), f"not HTTP/2: {out[:300]!r}"
    assert came_from_grpcio(out), f"response did not come from the origin:\n{out[:600]}"


def test_curl_h2c_prior_knowledge_proxied(st):
    rc, out, err = pclib.curl(["--http2-prior-knowledge", "-i", "--resolve", f"example.com:{st.h2c_port}:127.0.0.1",
                               f"http://example.com:{st.h2c_port}/plain"])
    assert rc == 0, f"curl failed ({rc}): {err}"
    assert out.startswith("HTTP/2 "), f"not HTTP/2: {out[:300]!r}"
    assert came_from_grpcio(out), f"response did not come from the origin:\n{out[:600]}"


def test_plain_http_proxied_for_grpc_disabled_zone(st):
    rc, out, err = pclib.curl(["--http2", "-i", "--cacert", st.certs["ca"],
                               "--resolve", f"nogrpc.test:{st.tls_port}:127.0.0.1",
                               f"https://nogrpc.test:{st.tls_port}/plain"])
    assert rc == 0, f"curl failed ({rc}): {err}"
    assert came_from_grpcio(out), f"plain HTTP to a zone with gRPC off was not proxied:\n{out[:600]}"


def test_curl_unknown_host_421(st):
    rc, out, err = pclib.curl(["--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                               "--cacert", st.certs["ca"], "--resolve", f"example.com:{st.tls_port}:127.0.0.1",
                               "-H", "Host: unknown.example.org", f"https://example.com:{st.tls_port}/"])
    assert rc == 0, f"curl failed ({rc}): {err}"
    assert out == "2 421", f"TLS: expected HTTP/2 421, got {out!r}"
    rc, out, err = pclib.curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                               "-H", "Host: unknown.example.org", f"http://127.0.0.1:{st.h2c_port}/"])
    assert rc == 0, f"curl failed ({rc}): {err}"
    assert out == "2 421", f"h2c: expected HTTP/2 421, got {out!r}"


def test_check_accepts_good_config(st):
    r = pclib.run_check(st.config_path)
    assert r.returncode == 0, f"check exited {r.returncode}:\n{r.stderr}"


def test_shipped_config_checks(st):
    """conf/portcullis.yaml, as the demo runs it (its certificates made by scripts/gen-certs, its
    rules and descriptors found next to it), passes `check` with every plugin it names loaded."""
    root = os.path.join(st.dir, "shipped")
    os.makedirs(os.path.join(root, "conf"))
    for d in ("rules", "tests"):
        os.symlink(os.path.join(pclib.SOURCE_DIR, d), os.path.join(root, d))
    shutil.copy(os.path.join(pclib.SOURCE_DIR, "conf", "portcullis.yaml"), os.path.join(root, "conf"))
    pclib.gen_certs(os.path.join(root, "conf", "certs"))
    r = pclib.run_check(os.path.join(root, "conf", "portcullis.yaml"))
    assert r.returncode == 0, f"check exited {r.returncode}:\n{r.stderr}"
    assert re.search(r": ok \(2 listeners, \d+ origins, \d+ zones, 0 warnings\)", r.stdout), r.stdout
    for plugin in ("bot", "lua", "modsecurity", "example"):
        assert re.search(rf"plugin {plugin} [0-9.]+ loaded", r.stderr), f"{plugin} not loaded:\n{r.stderr}"


def broken_variant(st, name, old, new):
    """Copy of the running config with the first line containing `old` changed; returns the path
    and the 1-based number of that line."""
    with open(st.config_path) as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if old in line:
            lines[i] = line.replace(old, new, 1)
            break
    else:
        raise AssertionError(f"{old!r} not in the config")
    path = os.path.join(st.dir, name)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, i + 1


def test_check_rejects_broken_configs(st):
    cases = [
        ("bad-number.yaml", "max_message_bytes: 4194304", 'max_message_bytes: "lots"', True),
        ("bad-origin.yaml", "origin: echo", "origin: nowhere", True),
        ("bad-address.yaml", f"127.0.0.1:{st.tls_port}", "127.0.0.1:notaport", True),
        ("bad-yaml.yaml", "listen:", "listen: [unclosed", False),
    ]
    for name, old, new, exact_line in cases:
        path, line = broken_variant(st, name, old, new)
        r = pclib.run_check(path)
        assert r.returncode == 2, f"{name}: check exited {r.returncode}, want 2; stderr:\n{r.stderr}"
        m = re.search(re.escape(path) + r":(\d+):(\d+): \S", r.stderr) or \
            re.search(re.escape(os.path.basename(path)) + r":(\d+):(\d+): \S", r.stderr)
        assert m, f"{name}: no file:line:col: message in stderr:\n{r.stderr}"
        if exact_line:
            assert int(m.group(1)) == line, f"{name}: error names line {m.group(1)}, the problem is on {line}:\n{r.stderr}"

    path, _ = broken_variant(st, "missing-cert.yaml", "certs/edge.pem", "certs/missing.pem")
    r = pclib.run_check(path)
    assert r.returncode == 2, f"missing certificate: check exited {r.returncode}, want 2:\n{r.stderr}"
    assert "missing.pem" in r.stderr, f"missing certificate not named:\n{r.stderr}"


def test_run_refuses_broken_config(st):
    # Its own ports, so a refusal cannot be mistaken for "address in use".
    cfg = pclib.make_config(tls_port=pclib.free_port(), h2c_port=pclib.free_port(),
                            origins=[pclib.origin_conf("echo", pclib.free_port())],
                            zones=pclib.default_zones("nowhere"))
    path = st.write_config(cfg, name="bad-run.yaml")
    r = subprocess.run([BINARY, "run", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=20 * pclib.TIME_SCALE)
    assert r.returncode != 0, "run started with a broken config"
    assert "nowhere" in r.stderr, f"the error does not say what is wrong:\n{r.stderr}"


def test_version_and_help():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        version = re.search(r"project\(portcullis\s+VERSION\s+([0-9.]+)", f.read()).group(1)
    r = subprocess.run([BINARY, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 0, f"--version exited {r.returncode}: {r.stderr}"
    assert version in r.stdout, f"--version does not print {version}: {r.stdout!r}"
    r = subprocess.run([BINARY, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 0, f"--help exited {r.returncode}: {r.stderr}"
    text = r.stdout + r.stderr
    assert "run" in text and "check" in text, f"--help does not mention run and check:\n{text}"


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
