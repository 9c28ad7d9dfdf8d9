"""Real client stacks, each making one call through the edge with a User-Agent of the caller's choice:
gRPC C-core (Python grpcio, and C++ libgrpc++ through a small GenericStub client), grpc-go (Debian's
golang-google-grpc-dev, built offline with Debian's Go) and Go's net/http, grpc-js (@grpc/grpc-js on Node, pinned, installed
with npm into the build tree), Chromium headless, curl, h2load and Python h2 over ssl. The compiled
clients and the npm package are built once into <build>/stack-clients/ and reused while their sources are
unchanged. `STACK_CLIENTS` maps each client's name to its stack (as rules/bots/stacks.rules names it)."""

import os
import shutil
import signal
import subprocess
import tempfile

import grpc

from .channels import channel_options
from .env import BUILD_DIR, HERE, TIME_SCALE, wait_until
from .h2client import h2_request
from .tools import curl

GRPC_JS_VERSION = "1.14.7"
CLIENTS_DIR = os.path.join(BUILD_DIR, "stack-clients")
SOURCES = os.path.join(HERE, "clients")

# client name -> the stack its fingerprints belong to
STACK_CLIENTS = {"grpcio": "grpc-core", "grpc-c++": "grpc-core", "grpc-go": "grpc-go", "go-http": "go-http",
                 "grpc-js": "grpc-js",
                 "chromium": "chromium", "curl": "curl", "h2load": "nghttp2", "python-h2": "python"}


def _stale(target, source):
    return not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(source)


def _run(args, env=None, timeout=300):
    r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       timeout=timeout * TIME_SCALE)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}:\n{r.stdout.decode(errors='replace')[-3000:]}")
    return r.stdout.decode(errors="replace")


def _build_go(name="grpc_go_client"):
    src, out = os.path.join(SOURCES, name + ".go"), os.path.join(CLIENTS_DIR, name)
    if _stale(out, src):
        os.makedirs(CLIENTS_DIR, exist_ok=True)
        # Debian's Go packages in GOPATH mode: no module download, no network.
        env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off", GOFLAGS="", GOPROXY="off",
                   GOCACHE=os.path.join(CLIENTS_DIR, "go-cache"))
        _run(["go", "build", "-o", out + ".tmp", src], env=env)
        os.replace(out + ".tmp", out)
    return out


def _build_cpp():
    src, out = os.path.join(SOURCES, "grpc_cpp_client.cc"), os.path.join(CLIENTS_DIR, "grpc_cpp_client")
    if _stale(out, src):
        os.makedirs(CLIENTS_DIR, exist_ok=True)
        flags = _run(["pkg-config", "--cflags", "--libs", "grpc++"]).split()
        _run(["g++", "-std=c++17", "-O1", "-o", out + ".tmp", src] + flags)
        os.replace(out + ".tmp", out)
    return out


def _install_grpc_js():
    prefix = os.path.join(CLIENTS_DIR, f"grpc-js-{GRPC_JS_VERSION}")
    if not os.path.exists(os.path.join(prefix, "node_modules", "@grpc", "grpc-js", "package.json")):
        os.makedirs(prefix, exist_ok=True)
        _run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", prefix,
              "--cache", os.path.join(CLIENTS_DIR, "npm-cache"), f"@grpc/grpc-js@{GRPC_JS_VERSION}"])
    return os.path.join(prefix, "node_modules")


def prepare():
    """Builds and installs what the clients need; returns the tool versions, for the record."""
    _build_go()
    _build_go("go_http_client")
    _build_cpp()
    _install_grpc_js()
    versions = {
        "grpcio": grpc.__version__,
        "grpc-c++": _run(["pkg-config", "--modversion", "grpc++"]).strip(),
        "grpc-go": _run(["dpkg-query", "-W", "-f=${Version}", "golang-google-grpc-dev"]).strip() + " (go " +
        _run(["go", "env", "GOVERSION"]).strip() + ")",
        "go-http": "net/http of go " + _run(["go", "env", "GOVERSION"]).strip(),
        "grpc-js": GRPC_JS_VERSION + " (node " + _run(["node", "--version"]).strip() + ")",
        "chromium": _run([chromium_binary(), "--version"]).strip().splitlines()[-1],
        "curl": _run(["curl", "--version"]).splitlines()[0],
        "h2load": _run(["dpkg-query", "-W", "-f=${Version}", "nghttp2-client"]).strip(),
        "python-h2": _run(["/usr/bin/python3", "-c", "import h2, ssl; print(h2.__version__, ssl.OPENSSL_VERSION)"])
        .strip(),
    }
    return versions


def chromium_binary():
    return shutil.which("chromium") or "/usr/bin/chromium"


def chromium_user_agent():
    """The User-Agent this Chromium sends as a desktop browser: its headless one without "Headless"
    (headless is how a test drives it, not what a user runs)."""
    version = _run([chromium_binary(), "--version"]).strip().splitlines()[-1].split()[1]
    return (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{version} "
            "Safari/537.36")


def call(name, port, ca, authority, path, ua=None, timeout=10, logged=None):
    """One call from client `name` to the edge's TLS port; ua None: the client's own default. logged():
    whether the edge logged the call, for Chromium, which keeps running after its fetch."""
    t = int(timeout * TIME_SCALE)
    if name == "grpcio":
        with open(ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        opts = channel_options() + [("grpc.ssl_target_name_override", "example.com"),
                                    ("grpc.default_authority", authority)]
        if ua:
            opts.append(("grpc.primary_user_agent", ua))
        ch = grpc.secure_channel(f"127.0.0.1:{port}", creds, options=opts)
        try:
            ch.unary_unary(path)(b"", timeout=t)
        except grpc.RpcError:
            pass
        finally:
            ch.close()
    elif name == "grpc-c++":
        _run([_build_cpp(), f"127.0.0.1:{port}", ca, authority, path] + ([ua] if ua else []), timeout=t + 5)
    elif name == "grpc-go":
        _run([_build_go(), "-addr", f"127.0.0.1:{port}", "-ca", ca, "-authority", authority, "-method", path,
              "-timeout", f"{t}s"] + (["-ua", ua] if ua else []), timeout=t + 5)
    elif name == "go-http":
        _run([_build_go("go_http_client"), "-addr", f"127.0.0.1:{port}", "-ca", ca, "-authority", authority,
              "-path", path, "-timeout", f"{t}s"] + (["-ua", ua] if ua else []), timeout=t + 5)
    elif name == "grpc-js":
        env = dict(os.environ, NODE_PATH=_install_grpc_js())
        _run(["node", os.path.join(SOURCES, "grpc_js_client.js"), f"127.0.0.1:{port}", ca, authority, path] +
             ([ua] if ua else []), env=env, timeout=t + 5)
    elif name == "chromium":
        with tempfile.TemporaryDirectory(prefix="pc-chromium-") as profile:
            args = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-default-apps", "--ignore-certificate-errors", f"--user-data-dir={profile}",
                    f"--host-resolver-rules=MAP {authority} 127.0.0.1", f"--timeout={t * 1000}",
                    "--dump-dom", f"https://{authority}:{port}{path}"]
            if ua:
                args.insert(1, f"--user-agent={ua}")
            # Its own session, so that its helper processes go with it.
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            try:
                wait_until(lambda: p.poll() is not None or (logged and logged()), timeout=timeout + 20)
            finally:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
    elif name == "curl":
        rc, _, err = curl(["--http2", "-o", "/dev/null", "--cacert", ca, "--resolve", f"{authority}:{port}:127.0.0.1"]
                          + (["-A", ua] if ua else []) + [f"https://{authority}:{port}{path}"], timeout=timeout)
        assert rc == 0, f"curl: {err}"
    elif name == "h2load":
        _run(["h2load", "-n", "1", "-c", "1", f"--connect-to=127.0.0.1:{port}"] +
             (["-H", f"user-agent: {ua}"] if ua else []) + [f"https://{authority}:{port}{path}"], timeout=t + 5)
    elif name == "python-h2":
        headers = [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", path)]
        if ua:
            headers.append(("user-agent", ua))
        h2_request(port, headers, ca=ca, server_name="example.com", timeout=timeout)
    else:
        raise ValueError(f"unknown client {name}")
