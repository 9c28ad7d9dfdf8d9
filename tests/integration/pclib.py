"""Shared helpers for the Portcullis integration tests.

Everything here runs real processes on 127.0.0.1: the proxy under test (PC_BINARY), the grpcio
origin (grpc_origin.py), curl and openssl. Every process started is recorded by PID and stopped
at the end, also when a test fails, times out or the runner is interrupted; temp dirs are removed
(set PC_KEEP_TMP=1 to keep them for a post-mortem).

A test file defines test_* functions (taking no argument, or the fixture its setup returns) and
ends with `pclib.main(globals(), setup=...)`. `test_foo.py test_a test_b` runs only those tests.
"""

import base64
import ctypes
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PC_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("PC_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
BINARY = os.environ.get("PC_BINARY") or os.path.join(BUILD_DIR, "portcullis")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
GEN_CERTS = os.path.join(SOURCE_DIR, "scripts", "gen-certs")
ORIGIN_SCRIPT = os.path.join(HERE, "grpc_origin.py")

MAX_MESSAGE = 16 << 20
TEST_TIMEOUT = float(os.environ.get("PC_TEST_TIMEOUT", "120"))
# Scale for timing limits in assertions (set e.g. PC_TIME_SCALE=3 for very slow machines).
TIME_SCALE = float(os.environ.get("PC_TIME_SCALE", "1"))

sys.path.insert(0, HERE)


def log(msg):
    print(msg, flush=True)


# --- processes and temp dirs, always cleaned up ---------------------------------------------

_procs = []  # every Popen started through spawn(), in start order
_tmpdirs = []
_lock = threading.Lock()

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _die_with_parent():
    # If the test runner itself is killed (ctest timeout), take the child down too.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(args, stdout=None, stderr=None, stdin=subprocess.DEVNULL, env=None, cwd=None):
    """Popen that is recorded for cleanup. Call from the main thread only."""
    proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, stdin=stdin, env=env, cwd=cwd,
                            preexec_fn=_die_with_parent)
    with _lock:
        _procs.append(proc)
    return proc


def stop_process(proc, timeout=10.0):
    """SIGTERM, then SIGKILL after `timeout` s. Returns the exit code (negative: signal)."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with _lock:
        if proc in _procs:
            _procs.remove(proc)
    return proc.returncode


def kill_all():
    with _lock:
        procs = list(reversed(_procs))
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    with _lock:
        _procs.clear()


def make_tmpdir(tag):
    path = tempfile.mkdtemp(prefix=f"pc-{tag}-")
    with _lock:
        _tmpdirs.append(path)
    return path


def remove_tmpdirs():
    with _lock:
        dirs = list(_tmpdirs)
        _tmpdirs.clear()
    if os.environ.get("PC_KEEP_TMP"):
        for d in dirs:
            log(f"kept {d}")
        return
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _cleanup():
    kill_all()
    remove_tmpdirs()


def _on_signal(signum, _frame):
    _cleanup()
    os._exit(128 + signum)


# --- ports ------------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, proc=None, timeout=20.0, what="process"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on 127.0.0.1:{port} after {timeout:.0f} s")


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


# --- certificates and config ------------------------------------------------------------------


def gen_certs(directory):
    subprocess.run([GEN_CERTS, directory], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {name: os.path.join(directory, f"{name}.pem") for name in ("ca", "edge", "origin", "other-ca")} | {
        f"{name}_key": os.path.join(directory, f"{name}.key") for name in ("ca", "edge", "origin")
    }


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) if isinstance(x, str) else _yaml_scalar(x) for x in v) + "]"
    v = str(v)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]*", v) and v.lower() not in _YAML_WORDS:
        return v
    return json.dumps(v)


_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}


def _yaml_key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", k) else json.dumps(k)


def _is_flow(v):
    return not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))


def to_yaml(value, indent=0):
    """Block-style YAML for dicts/lists of scalars; lists of scalars are written inline."""
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if _is_flow(v) or v == {}:
                lines.append(f"{pad}{_yaml_key(k)}: {_yaml_scalar(v) if v != {} else '{}'}")
            else:
                lines.append(f"{pad}{_yaml_key(k)}:")
                lines.extend(to_yaml(v, indent + 1))
    elif isinstance(value, list):
        for item in value:
            if _is_flow(item):
                lines.append(f"{pad}- {_yaml_scalar(item)}")
            else:
                sub = to_yaml(item, indent + 1)
                sub[0] = pad + "- " + sub[0].lstrip()
                lines.extend(sub)
    else:
        lines.append(pad + _yaml_scalar(value))
    return lines


def config_text(cfg, style):
    """cfg uses lists of named origins/zones. style "list" writes them as such; style "map" writes
    `origins: {name: {...}}` / `zones: {name: {...}}` (the shape of conf/portcullis.yaml)."""
    doc = dict(cfg)
    if style == "map":
        for section in ("origins", "zones"):
            if section in doc:
                doc[section] = {item["name"]: {k: v for k, v in item.items() if k != "name"} for item in doc[section]}
    return "# Written by the Portcullis integration tests.\n" + "\n".join(to_yaml(doc)) + "\n"


_config_style = None


def run_check(path, timeout=30):
    return subprocess.run([BINARY, "check", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True)


def config_style(sample_cfg, directory):
    """Which shape of origins/zones the binary accepts: PC_CONFIG_STYLE (list|map) if set, else
    the first of list (named entries) and map (keyed by name) that `portcullis check` accepts."""
    global _config_style
    if _config_style:
        return _config_style
    forced = os.environ.get("PC_CONFIG_STYLE")
    if forced in ("list", "map"):
        _config_style = forced
        return forced
    errors = {}
    if os.access(BINARY, os.X_OK):
        for style in ("list", "map"):
            path = os.path.join(directory, f"probe-{style}.yaml")
            with open(path, "w") as f:
                f.write(config_text(sample_cfg, style))
            try:
                r = run_check(path)
            except (OSError, subprocess.TimeoutExpired) as e:
                errors[style] = str(e)
                continue
            if r.returncode == 0:
                _config_style = style
                if style != "list":
                    log(f"note: config written with origins/zones as maps (list form rejected: "
                        f"{errors['list'].strip()})")
                return style
            errors[style] = r.stderr.strip() or f"exit {r.returncode}"
        log("note: portcullis check accepted neither config shape: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    _config_style = "list"
    return _config_style


def make_config(certs_rel="certs", tls_port=None, h2c_port=None, origins=(), zones=(), certificates=None,
                log_level="info", extra=None):
    """The config as a dict (lists of named origins/zones), ready for write_config()."""
    listen = []
    if tls_port is not None:
        certs = certificates or [{"cert": f"{certs_rel}/edge.pem", "key": f"{certs_rel}/edge.key"}]
        listen.append({"address": f"127.0.0.1:{tls_port}", "tls": {"certificates": certs}})
    if h2c_port is not None:
        listen.append({"address": f"127.0.0.1:{h2c_port}"})
    cfg = {"listen": listen, "origins": list(origins), "zones": list(zones),
           "log": {"access": "stdout", "level": log_level}}
    cfg.update(extra or {})
    return cfg


def origin_conf(name, port, tls=None, connect_timeout_ms=2000, **more):
    o = {"name": name, "servers": [f"127.0.0.1:{port}"]}
    if tls:
        o["tls"] = tls
    o["connect_timeout_ms"] = connect_timeout_ms
    o.update(more)
    return o


def zone_conf(name, hosts, origin, grpc=True, max_message_bytes=4194304, **more):
    z = {"name": name, "hosts": list(hosts), "origin": origin, "grpc": grpc}
    if grpc:
        z["max_message_bytes"] = max_message_bytes
    z.update(more)
    return z


def default_zones(origin="echo"):
    return [
        zone_conf("example.com", ["example.com", "*.example.com", "localhost"], origin),
        zone_conf("nogrpc.test", ["nogrpc.test"], origin, grpc=False),
    ]


# --- processes under test ---------------------------------------------------------------------


class Origin:
    """grpc_origin.py on a free port (h2c, or TLS with the origin certificate)."""

    def __init__(self, workdir, name="origin", tls=None):
        self.name = name
        self.tls = tls  # (cert, key) or None
        self.server_name = "origin.test"  # name its certificate is checked against
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        args = [PYTHON, ORIGIN_SCRIPT, "--port", "0", "--max-message", str(MAX_MESSAGE)]
        if tls:
            args += ["--tls", tls[0], tls[1]]
        self.err = open(self.err_path, "wb")
        self.proc = spawn(args, stdout=subprocess.PIPE, stderr=self.err)
        self.port = self._read_port()
        wait_port(self.port, self.proc, what=f"origin {name}")
        self.address = f"127.0.0.1:{self.port}"
        self._channel = None

    def _read_port(self):
        result = {}

        def reader():
            line = self.proc.stdout.readline().decode()
            m = re.match(r"PORT (\d+)", line)
            if m:
                result["port"] = int(m.group(1))

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(20)
        if "port" not in result:
            self.stop()
            raise RuntimeError(f"origin {self.name} did not report its port:\n{tail(self.err_path)}")
        return result["port"]

    def channel(self):
        """A channel straight to the origin (not through the proxy), for Stats."""
        import grpc

        if self._channel is None:
            if self.tls:
                with open(self.tls[0], "rb") as f:
                    pem = f.read()
                self._channel = grpc.secure_channel(self.address, grpc.ssl_channel_credentials(pem),
                                                    options=channel_options() + [
                                                        ("grpc.ssl_target_name_override", self.server_name)])
            else:
                self._channel = grpc.insecure_channel(self.address, options=channel_options())
        return self._channel

    def stats(self, reset=False):
        body = json.dumps({"reset": True} if reset else {}).encode()
        return json.loads(self.channel().unary_unary("/demo.Echo/Stats")(body, timeout=10))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        code = stop_process(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err.close()
        return code


class Proxy:
    """portcullis run -c CONFIG; stdout (access log) and stderr captured in the work dir."""

    def __init__(self, config_path, ports, workdir, name="portcullis"):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"portcullis binary not found or not executable: {BINARY}")
        self.config_path = config_path
        self.ports = list(ports)
        self.name = name
        self.out_path = os.path.join(workdir, f"{name}.stdout")
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = spawn([BINARY, "run", "-c", config_path], stdout=self.out, stderr=self.err)
        self.exit_code = None
        try:
            for port in self.ports:
                wait_port(port, self.proc, timeout=30, what="portcullis")
        except Exception:
            self.stop()
            raise

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Stop with SIGTERM; returns a problem description, or None when it exited cleanly."""
        died_before = self.proc.poll() is not None
        code = stop_process(self.proc, timeout=15)
        self.out.close()
        self.err.close()
        self.exit_code = code
        problems = []
        if died_before:
            problems.append(f"{self.name} had exited on its own (code {code})")
        elif code not in (0, -signal.SIGTERM):
            problems.append(f"{self.name} exited with code {code} after SIGTERM")
        stderr = tail(self.err_path, 100000)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer"):
            if marker in stderr:
                problems.append(f"{self.name} stderr reports a sanitizer finding ({marker!r})")
                break
        return "; ".join(problems) or None

    def logs(self, lines=60):
        return (f"--- {self.name} stderr (last {lines} lines) ---\n{tail(self.err_path, lines)}\n"
                f"--- {self.name} stdout / access log (last {lines} lines) ---\n{tail(self.out_path, lines)}")


class Stack:
    """A temp dir with certificates, origins, a config and the proxy. Tests get this as fixture."""

    def __init__(self, tag):
        self.dir = make_tmpdir(tag)
        self.certs_dir = os.path.join(self.dir, "certs")
        self.certs = gen_certs(self.certs_dir)
        self.origins = {}
        self.proxies = []
        self.proxy = None
        self.stubs = []
        self.channels = []
        self.problems = []
        self.config_path = None
        self.cfg = None

    # origins
    def start_origin(self, name="echo", tls=False):
        cert = (self.certs["origin"], self.certs["origin_key"]) if tls else None
        origin = Origin(self.dir, name=name, tls=cert)
        self.origins[name] = origin
        return origin

    def start_stub(self, **kw):
        stub = StubH2Origin(**kw)
        self.stubs.append(stub)
        return stub

    # config + proxy
    def write_config(self, cfg, name="portcullis.yaml", style=None):
        style = style or config_style(cfg, self.dir)
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(config_text(cfg, style))
        return path

    def start_proxy(self, origins, zones, tls=True, h2c=True, certificates=None, extra=None, name="portcullis"):
        self.tls_port = free_port() if tls else None
        self.h2c_port = free_port() if h2c else None
        self.cfg = make_config(tls_port=self.tls_port, h2c_port=self.h2c_port, origins=origins, zones=zones,
                               certificates=certificates, extra=extra)
        self.config_path = self.write_config(self.cfg, name=f"{name}.yaml")
        ports = [p for p in (self.tls_port, self.h2c_port) if p]
        self._proxy_args = (self.config_path, ports, name)
        self.proxy = Proxy(self.config_path, ports, self.dir, name=name)
        self.proxies.append(self.proxy)
        return self.proxy

    def restart_proxy(self):
        if self.proxy is not None:
            problem = self.proxy.stop()
            if problem:
                self.problems.append(problem)
        config_path, ports, name = self._proxy_args
        self.proxy = Proxy(config_path, ports, self.dir, name=f"{name}-{len(self.proxies)}")
        self.proxies.append(self.proxy)

    def healthy(self):
        """None, or why the stack is broken (a crashed proxy or origin)."""
        if self.proxy is not None and not self.proxy.alive():
            return f"portcullis exited (code {self.proxy.proc.returncode})"
        for origin in self.origins.values():
            if not origin.alive():
                return f"origin {origin.name} exited (code {origin.proc.returncode})"
        return None

    def logs(self):
        parts = [p.logs() for p in self.proxies[-1:]]
        for origin in self.origins.values():
            parts.append(f"--- origin {origin.name} stderr ---\n{tail(origin.err_path, 30)}")
        return "\n".join(parts)

    # clients
    def tls_channel(self, authority="example.com", server_name=None, port=None):
        ch = tls_channel(port or self.tls_port, self.certs["ca"], authority=authority,
                         server_name=server_name or authority_host(authority))
        self.channels.append(ch)
        return ch

    def h2c_channel(self, authority="example.com", port=None):
        ch = h2c_channel(port or self.h2c_port, authority=authority)
        self.channels.append(ch)
        return ch

    def close(self):
        for ch in self.channels:
            try:
                ch.close()
            except Exception:
                pass
        self.channels.clear()
        for proxy in self.proxies:
            if proxy.exit_code is None:
                problem = proxy.stop()
                if problem:
                    self.problems.append(problem + "\n" + proxy.logs(40))
        for origin in self.origins.values():
            origin.stop()
        for stub in self.stubs:
            stub.stop()
        return self.problems


def authority_host(authority):
    if authority.startswith("["):
        return authority[1:].split("]")[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


# --- gRPC channels ----------------------------------------------------------------------------


def channel_options():
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.enable_http_proxy", 0),
        ("grpc.enable_retries", 0),
        # a fresh connection per channel, so tests do not share one by accident
        ("grpc.use_local_subchannel_pool", 1),
    ]


def tls_channel(port, ca_file, authority="example.com", server_name="example.com"):
    """TLS to 127.0.0.1:port, verifying the edge certificate as `server_name` (also the SNI),
    sending `authority` as :authority."""
    import grpc

    with open(ca_file, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=channel_options() + [
        ("grpc.ssl_target_name_override", server_name),
        ("grpc.default_authority", authority),
    ])


def h2c_channel(port, authority="example.com"):
    import grpc

    return grpc.insecure_channel(f"127.0.0.1:{port}",
                                 options=channel_options() + [("grpc.default_authority", authority)])


def rpc_error(fn, *args, **kwargs):
    """Call fn expecting a grpc.RpcError; returns it (AssertionError if the call succeeded)."""
    import grpc

    try:
        result = fn(*args, **kwargs)
    except grpc.RpcError as e:
        return e
    raise AssertionError(f"call succeeded unexpectedly: {result!r:.200}")


def replies_until_error(call, on_reply=None):
    """Reads a streaming call's replies until it fails (on_reply() after each): (replies, the
    grpc.RpcError). AssertionError if the call ends without an error."""
    import grpc

    got = []
    try:
        for reply in call:
            got.append(reply)
            if on_reply:
                on_reply()
    except grpc.RpcError as e:
        return got, e
    raise AssertionError(f"the call ended without an error after {len(got)} replies")


def describe(err):
    return f"{err.code().name}: {err.details()!r}"


def wait_until(predicate, timeout=5.0, interval=0.05):
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --- raw HTTP/2 client (for what grpcio will not send) -------------------------------------


def grpc_frame(payload, flag=0, declared_len=None):
    n = len(payload) if declared_len is None else declared_len
    return bytes([flag]) + n.to_bytes(4, "big") + payload


def grpc_messages(data):
    """Splits a gRPC body (5-byte prefixed messages) into (payloads, leftover bytes of an incomplete
    last message)."""
    out = []
    i = 0
    while len(data) - i >= 5:
        n = int.from_bytes(data[i + 1:i + 5], "big")
        if len(data) - i - 5 < n:
            break
        out.append(bytes(data[i + 5:i + 5 + n]))
        i += 5 + n
    return out, bytes(data[i:])


def grpc_request_headers(authority, path="/demo.Echo/Unary", scheme="https", extra=()):
    return [(":method", "POST"), (":scheme", scheme), (":authority", authority), (":path", path),
            ("content-type", "application/grpc"), ("te", "trailers")] + list(extra)


class H2Result:
    def __init__(self):
        self.header_blocks = []  # [(headers: list[(str, bytes)], end_stream: bool)]
        self.data = b""
        self.reset = None  # RST_STREAM error code
        self.goaway = None
        self.ended = False
        self.elapsed = None
        self.closed = False
        self.timed_out = False

    @property
    def headers(self):
        return dict(self.header_blocks[0][0]) if self.header_blocks else {}

    @property
    def final(self):
        """The last header block (trailers, or the only block of a trailers-only response)."""
        return dict(self.header_blocks[-1][0]) if self.header_blocks else {}

    @property
    def status(self):
        v = self.headers.get(":status")
        return int(v) if v is not None else None

    @property
    def grpc_status(self):
        v = self.final.get("grpc-status")
        return int(v) if v is not None else None

    @property
    def grpc_message(self):
        v = self.final.get("grpc-message", b"")
        from urllib.parse import unquote_to_bytes

        return unquote_to_bytes(v).decode("utf-8", "replace")

    @property
    def trailers_only(self):
        return len(self.header_blocks) == 1 and self.header_blocks[0][1] and "grpc-status" in self.headers

    def __repr__(self):
        blocks = [({k: (v if k.endswith("-bin") else v.decode("latin-1")) for k, v in h}, e)
                  for h, e in self.header_blocks]
        return (f"H2Result(blocks={blocks}, data={len(self.data)} bytes, reset={self.reset}, goaway={self.goaway}, "
                f"ended={self.ended}, closed={self.closed}, timed_out={self.timed_out}, elapsed={self.elapsed:.3f})")


def h2_request(port, headers, chunks=(), end_stream=True, tls=True, server_name="example.com", ca=None,
               timeout=10.0, after_send=None):
    """One request over a fresh connection. `chunks` are sent as DATA frames in order; END_STREAM
    goes on the last one when end_stream. Reads until the response stream ends, is reset, the
    connection goes, or `timeout` s pass. Header names are str, values bytes."""
    import h2.config
    import h2.connection

    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock = raw
    if tls:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(raw, server_hostname=server_name)
        if sock.selected_alpn_protocol() != "h2":
            sock.close()
            raise AssertionError(f"ALPN negotiated {sock.selected_alpn_protocol()!r}, not h2")
    result = H2Result()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None,
                                                               validate_outbound_headers=False,
                                                               normalize_outbound_headers=False,
                                                               validate_inbound_headers=False))
    start = time.monotonic()
    try:
        conn.initiate_connection()
        conn.increment_flow_control_window(8 << 20)
        sid = conn.get_next_available_stream_id()
        chunks = list(chunks)
        conn.send_headers(sid, headers, end_stream=end_stream and not chunks)
        sock.sendall(conn.data_to_send())
        finished = False
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            # An answer (or a reset) that ends the stream early stops the upload.
            if _h2_send_data(conn, sock, sid, chunk, end_stream and last, result, start, timeout):
                finished = True
                break
        if after_send and not finished:
            after_send(conn, sock, sid)
            sock.sendall(conn.data_to_send())
        if not finished:
            _h2_read(conn, sock, sid, result, start, timeout)
        if result.elapsed is None:
            result.timed_out = True
            result.elapsed = time.monotonic() - start
    finally:
        try:
            sock.close()
        except OSError:
            pass
    return result


def _h2_send_data(conn, sock, sid, chunk, end, result, start, timeout):
    view = memoryview(chunk)
    while True:
        window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        if len(view) <= window:
            conn.send_data(sid, bytes(view), end_stream=end)
            sock.sendall(conn.data_to_send())
            return
        if window > 0:
            conn.send_data(sid, bytes(view[:window]))
            view = view[window:]
            sock.sendall(conn.data_to_send())
            continue
        # wait for WINDOW_UPDATE (or an early answer)
        if _h2_read(conn, sock, sid, result, start, timeout, until_window=True):
            return True


def _h2_read(conn, sock, sid, result, start, timeout, until_window=False):
    """Process incoming frames; returns True when the stream is finished."""
    import h2.events
    import h2.exceptions

    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            return True
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            result.closed = True
            result.elapsed = time.monotonic() - start
            return True
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            result.closed = True
            result.elapsed = time.monotonic() - start
            return True
        finished = False
        for ev in events:
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived,
                               h2.events.InformationalResponseReceived)) and ev.stream_id == sid:
                hdrs = [(k.decode("latin-1") if isinstance(k, bytes) else k,
                         v if isinstance(v, bytes) else v.encode("latin-1")) for k, v in ev.headers]
                result.header_blocks.append((hdrs, ev.stream_ended is not None))
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                result.data += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                result.ended = True
                finished = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                result.reset = int(ev.error_code)
                finished = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                result.goaway = int(ev.error_code)
                finished = True
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                pass
        if finished:
            result.elapsed = time.monotonic() - start
            return True
        if until_window and conn.local_flow_control_window(sid) > 0:
            return False


# --- a scripted HTTP/2 origin (h2c) ----------------------------------------------------------


class LoopbackServer:
    """A TCP listener on 127.0.0.1 for scripted peers: accepts on a thread of its own and runs
    handle(conn, n) on a thread per connection (n counts connections from 1). Subclasses set their
    own attributes before calling __init__, which starts accepting. stop() closes the listener and
    every connection, then joins the threads."""

    def __init__(self, port=0, backlog=64):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)  # how soon the accept loop sees stop()
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def handle(self, c, n):
        raise NotImplementedError

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                t = threading.Thread(target=self.handle, args=(c, len(self.conns)), daemon=True)
                self.threads.append(t)
            t.start()

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns, threads = list(self.conns), list(self.threads)
        for c in conns:
            for end in (lambda: c.shutdown(socket.SHUT_RDWR), c.close):
                try:
                    end()
                except OSError:
                    pass
        for t in threads:
            t.join(2)


class StubH2Origin(LoopbackServer):
    """An h2c server that records each request (headers, body bytes, resets) and by default never
    answers: for deadlines the edge must enforce itself and cancellations it must pass on."""

    def __init__(self, respond=None, keep_body=False, respond_on_end=False):
        self.respond = respond  # callable(conn, stream_id, headers) or None to hang
        self.respond_on_end = respond_on_end  # call respond once the request ended, not at its headers
        self.keep_body = keep_body  # also keep each request's bytes (req["body"]), for grpc_messages()
        self.requests = []  # dicts: headers, data, ended, reset, t
        super().__init__()

    def handle(self, c, n):
        import h2.config
        import h2.connection
        import h2.events

        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None,
                                                                   validate_inbound_headers=False))
        streams = {}
        try:
            conn.initiate_connection()
            c.sendall(conn.data_to_send())
            c.settimeout(0.2)
            while not self.stopping.is_set():
                try:
                    data = c.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        req = {"headers": {k.decode(): v.decode("latin-1") for k, v in ev.headers},
                               "data": 0, "ended": ev.stream_ended is not None, "reset": None, "t": time.monotonic()}
                        if self.keep_body:
                            req["body"] = b""
                        with self.lock:
                            self.requests.append(req)
                        streams[ev.stream_id] = req
                        if self.respond and not self.respond_on_end:
                            self.respond(conn, ev.stream_id, req["headers"])
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.stream_id in streams:
                            streams[ev.stream_id]["data"] += len(ev.data)
                            if self.keep_body:
                                streams[ev.stream_id]["body"] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in streams:
                        streams[ev.stream_id]["ended"] = True
                        if self.respond and self.respond_on_end:
                            self.respond(conn, ev.stream_id, streams[ev.stream_id]["headers"])
                    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id in streams:
                        streams[ev.stream_id]["reset"] = int(ev.error_code)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        for req in streams.values():
                            if req["reset"] is None and not req.get("answered"):
                                req["reset"] = "goaway"
                out = conn.data_to_send()
                if out:
                    c.sendall(out)
        except Exception:
            pass
        finally:
            for req in streams.values():
                if req["reset"] is None:
                    req["closed"] = True
            try:
                c.close()
            except OSError:
                pass


# --- curl and openssl -------------------------------------------------------------------------


def curl(args, timeout=20):
    """curl with no proxy; returns (returncode, stdout, stderr)."""
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(int(timeout * TIME_SCALE))] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout * TIME_SCALE + 10)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def s_client(port, args, timeout=15):
    """openssl s_client against 127.0.0.1:port with stdin closed; returns combined output."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}"] + args,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout * TIME_SCALE)
    return r.returncode, r.stdout.decode("utf-8", "replace")


# --- the admin endpoint and the access log -----------------------------------------------------


def http_get(port, path, timeout=5.0):
    """A plain HTTP/1.1 GET to 127.0.0.1:port (the admin endpoint); returns (status, body text)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * TIME_SCALE)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


_METRIC_LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_METRIC_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """Prometheus text exposition -> [(name, {label: value}, float)]. Raises AssertionError on a
    sample line that does not parse."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            raise AssertionError(f"unparseable metrics line: {line!r}")
        labels = {}
        rest = m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = _METRIC_LABEL.match(rest, pos)
            if not lm or lm.end() == pos:
                raise AssertionError(f"unparseable labels in metrics line: {line!r}")
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), lm.group(2))
            pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples, name, **labels):
    """Sum of the samples called `name` whose labels include `labels`; None when none matches."""
    values = [v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items())]
    return sum(values) if values else None


def scrape_metrics(port, timeout=5.0):
    """GET /metrics from the admin endpoint, parsed (see parse_metrics)."""
    status, body = http_get(port, "/metrics", timeout=timeout)
    if status != 200:
        raise AssertionError(f"/metrics answered {status}: {body[:200]!r}")
    return parse_metrics(body)


def read_json_lines(path):
    """Every line of a JSON-lines file, parsed; AssertionError naming the first line that is not JSON.
    A missing file reads as no lines."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(data.splitlines(), 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path} line {i} is not JSON: {line[:200]!r}") from None
    return out


def request_seq(entry):
    """The per-worker sequence number in an access-log line's request id ("<worker>-<hex seq>"): the
    order a worker's calls were made in, where the file has them in the order they ended."""
    return int(entry["request_id"].split("-")[1], 16)


def json_lines_matching(path, pred, count=1, timeout=10):
    """The lines of a JSON-lines file (an access log) that match pred, once at least `count` do;
    lines are written as calls end, so a test waits for the ones it counts. AssertionError if
    they do not come."""
    def found():
        lines = [x for x in read_json_lines(path) if pred(x)]
        return lines if len(lines) >= count else None

    lines = wait_until(found, timeout)
    assert lines, f"fewer than {count} lines of {path} match the request:\n{tail(path, 10)}"
    return lines


# --- attacks, faults and soak: raw HTTP/2 frames, memory, honest load, fixed-port origins -------
# (used by test_attacks.py, test_faults.py and scripts/soak)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
(H2_DATA, H2_HEADERS, H2_PRIORITY, H2_RST_STREAM, H2_SETTINGS, H2_PUSH_PROMISE, H2_PING, H2_GOAWAY,
 H2_WINDOW_UPDATE, H2_CONTINUATION) = range(10)
H2_END_STREAM = 0x1
H2_ACK = 0x1
H2_END_HEADERS = 0x4
H2_SETTINGS_INITIAL_WINDOW_SIZE = 0x4
H2_ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
                  4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
                  8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
                  12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def h2_frame(ftype, flags, sid, payload=b""):
    """One HTTP/2 frame, byte by byte (RFC 9113 section 4.1)."""
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + (sid & 0x7FFFFFFF).to_bytes(4, "big") + payload


def h2_settings(pairs=(), ack=False):
    return h2_frame(H2_SETTINGS, H2_ACK if ack else 0, 0, b"".join(
        k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs))


def h2_ping(data=b"\0" * 8, ack=False):
    return h2_frame(H2_PING, H2_ACK if ack else 0, 0, data)


def h2_rst_stream(sid, code=8):
    return h2_frame(H2_RST_STREAM, 0, sid, code.to_bytes(4, "big"))


def h2_window_update(sid, increment):
    return h2_frame(H2_WINDOW_UPDATE, 0, sid, increment.to_bytes(4, "big"))


def h2_priority(sid, depends_on=0, weight=16, exclusive=False):
    dep = (depends_on & 0x7FFFFFFF) | (0x80000000 if exclusive else 0)
    return h2_frame(H2_PRIORITY, 0, sid, dep.to_bytes(4, "big") + bytes([weight - 1]))


def h2_data(sid, payload, end_stream=False):
    return h2_frame(H2_DATA, H2_END_STREAM if end_stream else 0, sid, payload)


def h2_error_name(code):
    return H2_ERROR_NAMES.get(code, str(code))


class RawH2:
    """A hand-written HTTP/2 client: frames are built byte by byte, so it sends what a conforming
    library refuses to (floods, more streams than allowed, RST_STREAM right after HEADERS, endless
    CONTINUATION). What the server sends is parsed and recorded: GOAWAY (.goaway = (last stream,
    code)), RST_STREAM per stream (.resets), response header blocks (.blocks[sid], lists of dicts
    with str keys and values), DATA (.data[sid]) and whether the connection is gone (.closed).

    source: local address to connect from (any 127.x.y.z), so an attacker is a client of its own
    for the per-client connection limit. tls: ALPN h2 over TLS; else h2c with prior knowledge.
    ack_settings: answer the server's SETTINGS (a normal client does). window_updates: give back
    received DATA at once (WINDOW_UPDATE for the stream and the connection)."""

    def __init__(self, port, tls=True, source=None, ca=None, server_name="example.com", timeout=5.0,
                 preface=True, settings=(), ack_settings=True, window_updates=True):
        import hpack

        self.raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.raw.bind((source, 0))
        self.raw.settimeout(timeout * TIME_SCALE)
        self.raw.connect(("127.0.0.1", port))
        self.local = "%s:%d" % self.raw.getsockname()[:2]  # as the proxy logs this client
        self.sock = self.raw
        if tls:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.raw, server_hostname=server_name)
            if self.sock.selected_alpn_protocol() != "h2":
                self.sock.close()
                raise AssertionError(f"ALPN negotiated {self.sock.selected_alpn_protocol()!r}, not h2")
        self.tls = tls
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 20)
        self.ack_settings = ack_settings
        self.window_updates = window_updates
        self.inbuf = b""
        self.pending_block = None  # (sid, flags, bytes) while CONTINUATION frames are expected
        self.goaway = None
        self.resets = {}
        self.blocks = {}
        self.data = {}
        self.ended = set()
        self.frames_in = {}
        self.settings_seen = 0
        self.ping_acks = set()
        self.peer_initial_window = 65535  # flow control for send_body()
        self.conn_window = 65535
        self.stream_windows = {}
        self.closed = False
        self.closed_at = None
        self.send_blocked = False
        self.next_sid = 1
        self.started = time.monotonic()
        if preface:
            self.send(H2_PREFACE + h2_settings(settings))

    # sending
    def send(self, data):
        """sendall; False (and .closed or .send_blocked set) when the server is gone or not reading."""
        if self.closed:
            return False
        try:
            self.sock.settimeout(2.0 * TIME_SCALE)
            self.sock.sendall(data)
            return True
        except socket.timeout:
            self.send_blocked = True
            return False
        except (OSError, ssl.SSLError):
            self._gone()
            return False

    def header_block(self, headers):
        return self.encoder.encode(headers)

    def headers_frame(self, sid, headers, end_stream=False, end_headers=True):
        block = headers if isinstance(headers, bytes) else self.header_block(headers)
        flags = (H2_END_STREAM if end_stream else 0) | (H2_END_HEADERS if end_headers else 0)
        return h2_frame(H2_HEADERS, flags, sid, block)

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def request(self, headers, body=None, end_stream=True):
        """Opens a stream (HEADERS, then `body` as one DATA frame when given); returns its id."""
        sid = self.new_sid()
        out = self.headers_frame(sid, headers, end_stream=end_stream and body is None)
        if body is not None:
            out += h2_data(sid, body, end_stream=end_stream)
        self.send(out)
        return sid

    # receiving
    def _gone(self):
        if not self.closed:
            self.closed = True
            self.closed_at = time.monotonic()

    def pump(self, timeout=0.0):
        """Reads and handles what arrives within `timeout` s (at least what is already there)."""
        if self.closed:
            return
        end = time.monotonic() + timeout
        while not self.closed:
            left = max(0.001, end - time.monotonic())
            try:
                self.sock.settimeout(left)
                chunk = self.sock.recv(1 << 16)
            except (socket.timeout, ssl.SSLWantReadError):
                return
            except (OSError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self._gone()
                return
            self._feed(chunk)
            if time.monotonic() >= end and not (self.tls and self.sock.pending()):
                return

    def _feed(self, chunk):
        self.inbuf += chunk
        out = b""
        while len(self.inbuf) >= 9:
            n = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + n:
                break
            ftype, flags = self.inbuf[3], self.inbuf[4]
            sid = int.from_bytes(self.inbuf[5:9], "big") & 0x7FFFFFFF
            payload = self.inbuf[9:9 + n]
            self.inbuf = self.inbuf[9 + n:]
            self.frames_in[ftype] = self.frames_in.get(ftype, 0) + 1
            out += self._frame(ftype, flags, sid, payload)
        if out:
            self.send(out)

    def _frame(self, ftype, flags, sid, payload):
        reply = b""
        if ftype == H2_SETTINGS and not flags & H2_ACK:
            self.settings_seen += 1
            for i in range(0, len(payload) - 5, 6):
                if int.from_bytes(payload[i:i + 2], "big") == H2_SETTINGS_INITIAL_WINDOW_SIZE:
                    new = int.from_bytes(payload[i + 2:i + 6], "big")
                    for k in self.stream_windows:
                        self.stream_windows[k] += new - self.peer_initial_window
                    self.peer_initial_window = new
            if self.ack_settings:
                reply = h2_settings(ack=True)
        elif ftype == H2_GOAWAY:
            self.goaway = (int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, int.from_bytes(payload[4:8], "big"))
        elif ftype == H2_RST_STREAM:
            self.resets[sid] = int.from_bytes(payload[:4], "big")
        elif ftype == H2_WINDOW_UPDATE:
            inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if sid == 0:
                self.conn_window += inc
            else:
                self.stream_windows[sid] = self.stream_windows.get(sid, self.peer_initial_window) + inc
        elif ftype == H2_PING and not flags & H2_ACK:
            reply = h2_ping(payload, ack=True)
        elif ftype == H2_PING:
            self.ping_acks.add(bytes(payload))
        elif ftype in (H2_HEADERS, H2_CONTINUATION):
            if ftype == H2_HEADERS:
                pad = payload[0] if flags & 0x8 else 0
                start = (1 if flags & 0x8 else 0) + (5 if flags & 0x20 else 0)
                self.pending_block = (sid, flags, payload[start:len(payload) - pad])
            elif self.pending_block:
                s, f, b = self.pending_block
                self.pending_block = (s, f | (flags & H2_END_HEADERS), b + payload)
            s, f, b = self.pending_block
            if f & H2_END_HEADERS:
                self.pending_block = None
                hdrs = self.decoder.decode(b, raw=True)
                self.blocks.setdefault(s, []).append({k.decode("latin-1"): v.decode("latin-1") for k, v in hdrs})
                if f & H2_END_STREAM:
                    self.ended.add(s)
        elif ftype == H2_DATA:
            pad = payload[0] if flags & 0x8 else 0
            body = payload[(1 if flags & 0x8 else 0):len(payload) - pad]
            self.data[sid] = self.data.get(sid, b"") + body
            if flags & H2_END_STREAM:
                self.ended.add(sid)
            if self.window_updates and payload:
                reply = h2_window_update(0, len(payload)) + (
                    h2_window_update(sid, len(payload)) if not flags & H2_END_STREAM else b"")
        return reply

    def send_body(self, sid, data, end_stream=True, frame_size=16384, timeout=10.0):
        """Sends `data` on stream `sid` as DATA frames of at most frame_size bytes, within the
        server's flow-control windows (waiting for WINDOW_UPDATE). Stops early when the stream is
        answered and ended or reset, or the connection goes. Returns the bytes sent."""
        end = time.monotonic() + timeout * TIME_SCALE
        view = memoryview(data)
        sent = 0
        while True:
            if self.closed or self.stream_done(sid) or time.monotonic() > end:
                return sent
            window = min(self.conn_window, self.stream_windows.get(sid, self.peer_initial_window))
            n = min(len(view) - sent, frame_size, window)
            last = sent + n == len(view)
            if n <= 0 and not (last and len(view) == sent):
                self.pump(0.05)
                continue
            frames = [h2_data(sid, bytes(view[sent:sent + n]), end_stream=end_stream and last)]
            self.conn_window -= n
            self.stream_windows[sid] = self.stream_windows.get(sid, self.peer_initial_window) - n
            sent += n
            # Small frames go out in batches (one syscall for many frames).
            while frame_size < 1024 and not last and len(frames) < 256:
                window = min(self.conn_window, self.stream_windows[sid])
                n = min(len(view) - sent, frame_size, window)
                if n <= 0:
                    break
                last = sent + n == len(view)
                frames.append(h2_data(sid, bytes(view[sent:sent + n]), end_stream=end_stream and last))
                self.conn_window -= n
                self.stream_windows[sid] -= n
                sent += n
            self.send(b"".join(frames))
            self.pump(0)
            if last:
                return sent

    def wait(self, predicate, timeout):
        """Pumps until predicate(self) is true, the connection is gone or `timeout` s passed."""
        end = time.monotonic() + timeout * TIME_SCALE
        while True:
            if predicate(self):
                return True
            if self.closed or time.monotonic() >= end:
                return bool(predicate(self))
            self.pump(min(0.05, max(0.0, end - time.monotonic())))

    def sync(self, timeout=5.0, before=b""):
        """A PING round trip: once its ACK is back, the server has read everything sent before it.
        `before` (frames) goes out in the same write, ahead of the PING. Returns False when the
        connection went (or GOAWAY came) first. The PING counts as a frame like any other (on a
        connection without streams, a glitch)."""
        self.sync_n = getattr(self, "sync_n", 0) + 1
        token = b"sync%04d" % (self.sync_n % 10000)
        if not self.send(before + h2_ping(token)):
            return False
        return self.wait(lambda c: token in c.ping_acks or c.goaway is not None, timeout) and token in self.ping_acks

    def wait_closed(self, timeout):
        """Waits for the server to close the connection; True if it did within `timeout` s."""
        self.wait(lambda c: c.closed, timeout)
        return self.closed

    def grpc_status(self, sid):
        """grpc-status of the stream's last header block (None: none yet)."""
        blocks = self.blocks.get(sid) or []
        v = blocks[-1].get("grpc-status") if blocks else None
        return int(v) if v is not None else None

    def stream_done(self, sid):
        return sid in self.ended or sid in self.resets

    def close(self, abort=False):
        """Closes the socket; abort: with a TCP RST (SO_LINGER 0), as a client that vanishes."""
        try:
            if abort:
                import struct

                # (wrapping in TLS moved the descriptor from self.raw to self.sock)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self._gone()

    def __repr__(self):
        goaway = f"({self.goaway[0]}, {h2_error_name(self.goaway[1])})" if self.goaway else None
        return (f"RawH2(goaway={goaway}, resets={ {k: h2_error_name(v) for k, v in list(self.resets.items())[:8]} }"
                f"{'...' if len(self.resets) > 8 else ''}, streams answered={len(self.blocks)}, closed={self.closed}"
                f"{f' after {self.closed_at - self.started:.2f} s' if self.closed else ''}, "
                f"frames in={self.frames_in})")


def proc_status_kib(pid, key):
    """A size line (VmRSS, VmHWM, ...) of /proc/PID/status in KiB; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib(pid):
    kib = proc_status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024.0


class RssWatch:
    """The growth of a process's resident memory over a stretch of time: the peak (VmHWM, reset at
    start via /proc/PID/clear_refs, plus samples every 50 ms) minus the RSS at start, in MiB."""

    def __init__(self, pid):
        self.pid = pid
        self.stopping = threading.Event()
        self.base = rss_mib(pid) or 0.0
        self.peak = self.base
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.hwm = True
        except OSError:
            self.hwm = False
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.stopping.wait(0.05):
            v = rss_mib(self.pid)
            if v is not None:
                self.peak = max(self.peak, v)

    def stop(self):
        self.stopping.set()
        self.thread.join(2)
        if self.hwm:
            kib = proc_status_kib(self.pid, "VmHWM")
            if kib is not None:
                self.peak = max(self.peak, kib / 1024.0)
        self.growth = self.peak - self.base
        return self.growth


_sanitized = {}


def binary_sanitized(path=None):
    """True when the binary was built with AddressSanitizer (memory figures are then inflated)."""
    path = path or BINARY
    if path not in _sanitized:
        try:
            with open(path, "rb") as f:
                _sanitized[path] = b"__asan_init" in f.read()
        except OSError:
            _sanitized[path] = False
    return _sanitized[path]


class HonestClient:
    """An honest grpcio client calling in a background thread for as long as it runs: Unary with a
    unique payload (checked), and every `stream_every`-th call a ServerStream whose messages are
    each checked. Each call has a `deadline` (s). Failures and wrong answers are recorded with the
    time they happened; assert_clean() raises AssertionError naming them."""

    def __init__(self, channel, name="honest", stream_every=4, deadline=10.0, pause=0.0):
        self.channel = channel
        self.name = name
        self.stream_every = stream_every
        self.deadline = deadline * TIME_SCALE
        self.pause = pause
        self.ok = 0
        self.failures = []
        self.max_latency = 0.0  # s, the slowest successful call
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = None

    def start(self):
        # The first call must work before the attack starts: the channel is up.
        reply = self.channel.unary_unary("/demo.Echo/Unary")(b"warm-up", timeout=self.deadline)
        if reply != b"warm-up":
            raise AssertionError(f"{self.name}: warm-up call answered {reply!r}")
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def _fail(self, what):
        with self.lock:
            self.failures.append(f"{time.monotonic() - self.t0:.2f} s: {what}")

    def _run(self):
        import grpc
        from grpc_origin import server_stream_message

        unary = self.channel.unary_unary("/demo.Echo/Unary")
        stream = self.channel.unary_stream("/demo.Echo/ServerStream")
        n = 0
        while not self.stopping.is_set():
            n += 1
            started = time.monotonic()
            try:
                if self.stream_every and n % self.stream_every == 0:
                    count, size = 8, 1000 + n % 7
                    got = list(stream(json.dumps({"count": count, "size": size}).encode(), timeout=self.deadline))
                    if len(got) != count or any(m != server_stream_message(i, size) for i, m in enumerate(got)):
                        self._fail(f"ServerStream #{n}: {len(got)} messages, not the {count} expected")
                        continue
                else:
                    payload = b"%s-%d-" % (self.name.encode(), n) + os.urandom(8).hex().encode()
                    reply = unary(payload, timeout=self.deadline)
                    if reply != payload:
                        self._fail(f"Unary #{n}: wrong reply {reply[:40]!r}")
                        continue
            except grpc.RpcError as e:
                self._fail(f"call #{n}: {describe(e)}")
                continue
            with self.lock:
                self.ok += 1
                self.max_latency = max(self.max_latency, time.monotonic() - started)
            if self.pause:
                self.stopping.wait(self.pause)

    def stop(self):
        self.stopping.set()
        self.thread.join(self.deadline + 5)
        if self.thread.is_alive():
            self._fail("a call was still running long after its deadline")
        return self

    def assert_clean(self, min_calls=5):
        """Stops the client; AssertionError when any call failed or too few got through."""
        self.stop()
        if self.failures:
            raise AssertionError(f"{self.name} client: {len(self.failures)} of {self.ok + len(self.failures)} calls "
                                 f"failed: {self.failures[:5]}")
        if self.ok < min_calls:
            raise AssertionError(f"{self.name} client: only {self.ok} calls went through")


class PortOrigin(Origin):
    """grpc_origin.py on a port chosen by the caller, so an origin can be killed and brought back
    where the proxy expects it. extra_args go to grpc_origin.py."""

    def __init__(self, workdir, port, name="origin", extra_args=()):
        self.name = name
        self.tls = None
        self.server_name = "origin.test"
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        args = [PYTHON, ORIGIN_SCRIPT, "--port", str(port), "--max-message", str(MAX_MESSAGE)] + list(extra_args)
        self.err = open(self.err_path, "ab")
        self.proc = spawn(args, stdout=subprocess.PIPE, stderr=self.err)
        self.port = self._read_port()
        wait_port(self.port, self.proc, what=f"origin {name}")
        self.address = f"127.0.0.1:{self.port}"
        self._channel = None

    def kill(self):
        """SIGKILL, as a crash: open streams die with the connection."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        stop_process(self.proc)  # takes it off the cleanup list
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err.close()


# --- the runner ---------------------------------------------------------------------------------


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def b64(data):
    return base64.b64encode(data).decode()


def main(namespace, setup=None):
    """Run the test_* functions of `namespace` in definition order; print PASS/FAIL per test and
    `N passed, M failed`; exit non-zero on any failure. setup() builds the fixture handed to tests
    that take an argument; fixture.close() (returning a list of problems) runs at the end."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    selected = sys.argv[1:]
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    if selected:
        unknown = set(selected) - {n for n, _ in tests}
        if unknown:
            log(f"unknown tests: {', '.join(sorted(unknown))}")
            sys.exit(2)
        tests = [(n, f) for n, f in tests if n in selected]
    passed = failed = 0
    fixture = None
    state = {"current": None, "done": False}

    def watchdog_fire(name):
        if state["done"] or state["current"] != name:
            return
        state["timed_out"] = True  # the main thread now only waits for the exit below
        log(f"FAIL {name}: timed out after {TEST_TIMEOUT * TIME_SCALE:.0f} s")
        if fixture is not None and hasattr(fixture, "logs"):
            try:
                log(fixture.logs())
            except Exception as e:
                log(f"(no logs: {e})")
        _cleanup()
        log(f"{passed} passed, {failed + 1 + remaining[0]} failed")
        sys.stdout.flush()
        os._exit(1)

    remaining = [len(tests)]
    try:
        if setup is not None:
            t0 = time.monotonic()
            try:
                fixture = setup()
            except Exception as e:
                log(f"FAIL setup: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stdout)
                for n, _ in tests:
                    log(f"FAIL {n}: setup failed")
                log(f"0 passed, {len(tests)} failed")
                sys.stdout.flush()
                _cleanup()
                sys.exit(1)
            log(f"setup done in {time.monotonic() - t0:.1f} s")
        for name, fn in tests:
            remaining[0] -= 1
            state["current"] = name
            timer = threading.Timer(TEST_TIMEOUT * TIME_SCALE, watchdog_fire, args=(name,))
            timer.daemon = True
            timer.start()
            t0 = time.monotonic()
            reason = None
            try:
                if inspect.signature(fn).parameters:
                    fn(fixture)
                else:
                    fn()
            except AssertionError as e:
                reason = str(e) or "assertion failed"
                tb = traceback.extract_tb(e.__traceback__)
                where = next((f"{os.path.basename(fr.filename)}:{fr.lineno}" for fr in reversed(tb)
                              if fr.filename == namespace.get("__file__")), None)
                if where:
                    reason = f"{reason} ({where})"
            except Exception as e:
                reason = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
            finally:
                timer.cancel()
                while state.get("timed_out"):
                    time.sleep(1)
            elapsed = time.monotonic() - t0
            if reason is None and fixture is not None and hasattr(fixture, "healthy"):
                broken = fixture.healthy()
                if broken:
                    reason = broken
            if reason is None:
                passed += 1
                log(f"PASS {name} ({elapsed:.2f} s)")
            else:
                failed += 1
                log(f"FAIL {name} ({elapsed:.2f} s): {reason}")
                if fixture is not None and hasattr(fixture, "logs"):
                    log(fixture.logs())
                if fixture is not None and hasattr(fixture, "healthy") and fixture.healthy():
                    try:
                        fixture.restart_proxy()
                        log("(restarted portcullis for the remaining tests)")
                    except Exception as e:
                        log(f"(could not restart portcullis: {e})")
        state["done"] = True
        if fixture is not None and hasattr(fixture, "close"):
            for problem in fixture.close() or ():
                failed += 1
                log(f"FAIL teardown: {problem}")
    finally:
        state["done"] = True
        _cleanup()
    log(f"{passed} passed, {failed} failed")
    sys.stdout.flush()
    sys.exit(1 if failed else 0)
