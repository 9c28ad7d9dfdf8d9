#!/usr/bin/python3
"""gRPC-Web with real clients: Debian's chromium, headless, loads a page that calls demo.Echo's
Unary and Repeat (server streaming) through the edge with @connectrpc/connect-web (binary) and
grpc-web (text mode), messages built at run time from a descriptor set; Node runs the binary calls
with connect-node over HTTP/2 and HTTP/1.1. In each: the answers arrive, a WAF attack in a field
comes back PERMISSION_DENIED, an origin error keeps its status and message.

The npm packages (tests/integration/grpcweb/package.json, pinned) are installed into the build
tree on first use, with npm's cache there too; the page is bundled with esbuild."""

import filecmp
import http.server
import json
import os
import shutil
import subprocess
import threading

import pclib
from pclib import origin_conf, zone_conf
from test_grpc_web import CRS, note_descriptor_set

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_SRC = os.path.join(HERE, "grpcweb")
NPM_DIR = os.path.join(pclib.BUILD_DIR, "npm-grpc-web")
REASON = "order 42 not found: ünïcode ✓"
NOT_FOUND, PERMISSION_DENIED = 5, 7


def npm_clients():
    """The pinned packages in NPM_DIR (installed again only when package.json changed), the test's
    scripts beside them, and the page bundled."""
    os.makedirs(NPM_DIR, exist_ok=True)
    pkg = os.path.join(NPM_DIR, "package.json")
    src_pkg = os.path.join(CLIENT_SRC, "package.json")
    marker = os.path.join(NPM_DIR, "node_modules", ".installed-package.json")
    if not (os.path.exists(marker) and filecmp.cmp(marker, src_pkg, shallow=False)):
        shutil.copy(src_pkg, pkg)
        env = dict(os.environ, npm_config_cache=os.path.join(NPM_DIR, "cache"), npm_config_update_notifier="false")
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save"], cwd=NPM_DIR, env=env,
                           capture_output=True, timeout=600)
        assert r.returncode == 0, f"npm install failed: {r.stderr.decode()[-2000:]}"
        shutil.copy(src_pkg, marker)
    for name in os.listdir(CLIENT_SRC):
        if name.endswith((".js", ".mjs")):
            shutil.copy(os.path.join(CLIENT_SRC, name), NPM_DIR)
    r = subprocess.run([os.path.join(NPM_DIR, "node_modules", ".bin", "esbuild"), "page.js", "--bundle",
                        "--format=iife", "--outfile=bundle.js", "--log-level=warning"], cwd=NPM_DIR,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, f"esbuild failed: {r.stderr.decode()}"


class PageServer:
    """The test page's own origin, http://127.0.0.1:<port>: index.html, bundle.js, web.pb."""

    def __init__(self, directory, port):
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=directory, **kw)
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def spki_sha256(cert):
    """base64 SHA-256 of the certificate's public key, for chromium's --ignore-certificate-errors-spki-list
    (trusts exactly the edge's key, nothing else)."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    import base64
    import hashlib
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def setup():
    npm_clients()
    st = pclib.Stack("grpcweb-clients")
    st.echo = st.start_origin("echo")
    site = os.path.join(st.dir, "site")
    os.makedirs(site)
    st.desc = note_descriptor_set(os.path.join(site, "web.pb"))
    shutil.copy(os.path.join(NPM_DIR, "bundle.js"), site)
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write('<!doctype html><meta charset="utf-8"><title>gRPC-Web</title><script src="bundle.js"></script>\n')
    page_port = pclib.free_port()
    st.page_origin = f"http://127.0.0.1:{page_port}"
    cors = {"origins": [st.page_origin], "allow_headers": ["x-repeat", "x-fail-code", "x-fail-message"]}
    plugins = [{"name": "modsecurity", "config": {"crs": CRS, "paranoia": 1, "anomaly_threshold": 5,
                                                  "mode": "block"}}]
    st.start_proxy([origin_conf("echo", st.echo.port)],
                   [zone_conf("example.com", ["example.com", "localhost"], "echo", grpc_web=True, cors=cors)],
                   extra={"plugins": plugins, "descriptors": [st.desc], "workers": 1})
    st.page = PageServer(site, page_port)
    close = st.close

    def close_all():
        st.page.stop()
        return close()
    st.close = close_all
    return st


def check_binary(res, where):
    assert res["unary"] == {"ok": {"text": "hello from the web", "n": 5}}, (where, res["unary"])
    assert res["stream"] == {"ok": ["streamed"] * 4}, (where, res["stream"])
    assert res["waf"].get("code") == PERMISSION_DENIED, (where, res["waf"])
    assert "WAF" in res["waf"].get("message", ""), (where, res["waf"])
    assert res["origin_error"] == {"code": NOT_FOUND, "message": REASON}, (where, res["origin_error"])


def node(*args, timeout=60):
    r = subprocess.run(["node", *args], cwd=NPM_DIR, capture_output=True, timeout=timeout * pclib.TIME_SCALE)
    assert r.returncode == 0, f"node {args[0]} failed:\n{r.stderr.decode()[-3000:]}"
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def test_node_binary_over_http2_and_http1(st):
    before = st.echo.stats()["calls"]["Unary"]
    out = node("node_check.mjs", f"https://localhost:{st.tls_port}", st.certs["ca"], st.desc)
    check_binary(out["http2"], "node http/2")
    check_binary(out["http1.1"], "node http/1.1")
    # Each run: one good unary call reached the origin; the attacks did not.
    assert st.echo.stats()["calls"]["Unary"] == before + 2
    log = pclib.read_json_lines(st.proxy.out_path)
    alpns = {e.get("alpn") for e in log if e.get("protocol") == "grpc-web"}
    assert {"h2", "http/1.1"} <= alpns, alpns


def browser_run(st, *flags):
    """The page in chromium; its results, checked. The edge's access log lines for its calls."""
    seen = len(pclib.read_json_lines(st.proxy.out_path))
    before = st.echo.stats()["calls"]["Unary"]
    url = f"{st.page_origin}/index.html?edge=https://example.com:{st.tls_port}"
    out = node("run_page.mjs", url, "MAP example.com 127.0.0.1", spki_sha256(st.certs["edge"]), *flags, timeout=90)
    res = out["results"]
    assert "failed" not in res, (res, out["console"])
    check_binary(res["binary"], "chromium, connect-web (binary)")
    text = res["text"]
    assert text["unary"] == {"ok": {"text": "hello in text mode", "n": 6}}, text["unary"]
    assert text["stream"] == {"ok": ["streamed"] * 4}, text["stream"]
    assert text["waf"].get("code") == PERMISSION_DENIED, text["waf"]
    assert text["origin_error"].get("code") == NOT_FOUND and text["origin_error"].get("got") == ["streamed"], \
        text["origin_error"]
    assert text["origin_error"].get("message") == REASON, text["origin_error"]
    assert st.echo.stats()["calls"]["Unary"] == before + 2
    log = pclib.read_json_lines(st.proxy.out_path)[seen:]
    # Its calls are gRPC-Web; its preflights (cross-origin, custom headers) answered at the edge.
    preflights = [e for e in log if e.get("method") == "OPTIONS"]
    assert preflights and all(e.get("reason") == "cors_preflight" and e.get("status") == 200 for e in preflights)
    assert all(e.get("protocol") == "grpc-web" for e in log if e.get("method") != "OPTIONS"), log
    assert any(e.get("grpc_method") == "Repeat" and e.get("grpc_status") == NOT_FOUND for e in log)
    return log


def test_browser_binary_and_text(st):
    log = browser_run(st)
    assert {e["alpn"] for e in log} == {"h2"}


def test_browser_over_http1(st):
    # The same page with chromium's HTTP/2 off: ALPN http/1.1, preflights and chunked answers.
    log = browser_run(st, "--disable-http2")
    assert {e["alpn"] for e in log} == {"http/1.1"}, {e["alpn"] for e in log}


if __name__ == "__main__":
    pclib.main(globals())
