#!/usr/bin/python3
"""The plugin chain: a plugin built out of tree against the installed header, chains of plugins
sharing published values, plugins refused at start (wrong ABI, not a plugin, failing init, bad
config), on_error deny/continue, a message denied in the middle of a client stream (the origin gets
exactly the messages before it, then a reset), per-zone chains and message inspection with and
without protobuf descriptors.

Each test runs its own proxy with its own plugin config against the shared origins."""

import glob
import os
import re
import shlex
import subprocess
import time

import grpc

import pclib
from pclib import describe, origin_conf, rpc_error, zone_conf

SCALE = pclib.TIME_SCALE
UNARY = "/demo.Echo/Unary"
FAIL = "/demo.Echo/Fail"
CLIENT_STREAM = "/demo.Echo/ClientStream"
REFUND = "/shop.v1.Orders/Refund"

PLUGINS_DIR = os.path.join(pclib.BUILD_DIR, "plugins")
TEST_PLUGINS_DIR = os.path.join(pclib.BUILD_DIR, "tests", "plugins")
SHOP_PB = os.path.join(pclib.SOURCE_DIR, "tests", "fixtures", "protobuf", "shop.pb")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def plugin_so(name):
    """Absolute path of one of the test plugins (tests/plugins/test_plugin.c)."""
    return os.path.join(TEST_PLUGINS_DIR, f"pc-{name}.so")


def setup():
    for path in [os.path.join(PLUGINS_DIR, "pc-example.so")] + [
            plugin_so(n) for n in ("publisher", "reader", "failing", "initfail", "badabi", "nosym", "counter",
                                   "async")]:
        if not os.path.exists(path):
            raise RuntimeError(f"plugin not built: {path}")
    st = pclib.Stack("plugins")
    st.start_origin("echo")
    st.counting = st.start_stub(keep_body=True)  # never answers; keeps every request's bytes
    st.base_origins = [origin_conf("echo", st.origins["echo"].port), origin_conf("counting", st.counting.port)]
    st.base_zones = pclib.default_zones("echo") + [
        zone_conf("count.example.com", ["count.example.com"], "counting"),
        zone_conf("shop.example.com", ["shop.example.com"], "echo"),
    ]
    return st


def run_proxy(st, name, plugins, zones=None, extra=None):
    """Stops the previous test's proxy (keeping any problem it had for the teardown report) and
    starts one with this plugin list."""
    if st.proxy is not None and st.proxy.exit_code is None:
        problem = st.proxy.stop()
        if problem:
            st.problems.append(problem + "\n" + st.proxy.logs(40))
    cfg = {"plugins": plugins}
    cfg.update(extra or {})
    return st.start_proxy(st.base_origins, st.base_zones + list(zones or ()), extra=cfg, name=name)


def write_config(st, name, plugins, extra=None):
    """A config file for check / run tests (nothing started)."""
    cfg = pclib.make_config(tls_port=pclib.free_port(), h2c_port=pclib.free_port(), origins=st.base_origins,
                            zones=st.base_zones, extra=dict({"plugins": plugins}, **(extra or {})))
    return st.write_config(cfg, name=f"{name}.yaml")


def no_sanitizer_report(text, what):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, f"{what}: sanitizer finding ({marker!r}):\n{text[-4000:]}"


def assert_refused(st, name, plugins, expected, extra=None):
    """`portcullis check` exits 2 with `file:line:col: <expected>`; `portcullis run` exits non-zero
    promptly with the same message and never listens."""
    path = write_config(st, name, plugins, extra)
    r = pclib.run_check(path)
    assert r.returncode == 2, f"check exit {r.returncode} (want 2); stderr:\n{r.stderr}"
    pattern = re.escape(path) + r":\d+:\d+: " + expected
    assert re.search(pattern, r.stderr), f"check stderr lacks {pattern!r}:\n{r.stderr}"
    no_sanitizer_report(r.stderr, "check")

    err_path = os.path.join(st.dir, f"{name}.run.stderr")
    with open(err_path, "wb") as err:
        proc = pclib.spawn([pclib.BINARY, "run", "-c", path], stdout=subprocess.DEVNULL, stderr=err)
        start = time.monotonic()
        try:
            code = proc.wait(10 * SCALE)
        except subprocess.TimeoutExpired:
            pclib.stop_process(proc)
            raise AssertionError(f"run kept running with a refused plugin:\n{pclib.tail(err_path)}")
        took = time.monotonic() - start
        pclib.stop_process(proc)
    text = pclib.tail(err_path, 10000)
    assert code != 0, f"run exited 0 with a refused plugin:\n{text}"
    assert code > 0, f"run died of signal {-code}:\n{text}"
    assert took < 5 * SCALE, f"run took {took:.1f} s to give up"
    assert re.search(pattern, text), f"run stderr lacks {pattern!r}:\n{text}"
    no_sanitizer_report(text, "run")


# --- 1. out-of-tree build against the installed header ---------------------------------------


def test_out_of_tree_example_against_installed_header(st):
    inst = os.path.join(st.dir, "inst")
    r = subprocess.run(["cmake", "--install", pclib.BUILD_DIR, "--prefix", inst], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, f"cmake --install failed:\n{r.stdout}"
    header = os.path.join(inst, "include", "portcullis", "plugin.h")
    assert os.path.isfile(header), f"no installed header at {header}:\n{r.stdout}"
    pcs = glob.glob(os.path.join(inst, "lib*", "pkgconfig", "portcullis-plugin.pc")) + \
        glob.glob(os.path.join(inst, "lib*", "*", "pkgconfig", "portcullis-plugin.pc"))
    assert len(pcs) == 1, f"expected one installed portcullis-plugin.pc, found {pcs}:\n{r.stdout}"
    libdir = os.path.dirname(os.path.dirname(pcs[0]))
    assert glob.glob(os.path.join(libdir, "portcullis", "plugins", "pc-example.so")), \
        f"the example plugin was not installed under {libdir}/portcullis/plugins"

    # The .pc carries the configure-time prefix; point it at where this tree was installed.
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
    r = subprocess.run(["pkg-config", f"--define-variable=prefix={inst}", "--cflags", "portcullis-plugin"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0, f"pkg-config failed: {r.stderr}"
    cflags = shlex.split(r.stdout)
    incs = [f[2:] for f in cflags if f.startswith("-I")]
    assert any(os.path.realpath(os.path.join(i, "portcullis", "plugin.h")) == os.path.realpath(header)
               for i in incs), f"pkg-config --cflags {cflags} does not point at the installed header {header}"

    mydir = os.path.join(st.dir, "myplugins")
    os.makedirs(mydir)
    src = os.path.join(pclib.SOURCE_DIR, "plugins", "example", "example.c")
    out = os.path.join(mydir, "pc-example.so")
    # Only the installed include dir is on the command line (never the source tree's core/include).
    r = subprocess.run(["cc", "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror"] + cflags +
                       [src, "-o", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, f"out-of-tree build failed:\n{r.stdout}"
    nm = subprocess.run(["nm", "-D", "--defined-only", out], stdout=subprocess.PIPE, text=True, timeout=30)
    assert re.search(r"\bpc_plugin_v2\b", nm.stdout), f"pc_plugin_v2 not exported:\n{nm.stdout}"

    run_proxy(st, "oot", [{"name": "example", "config": {"deny_methods": [FAIL]}}], extra={"plugin_dir": mydir})
    log = pclib.tail(st.proxy.err_path, 200)
    assert out in log, f"the proxy did not log loading {out}:\n{log}"

    origin = st.origins["echo"]
    origin.stats(reset=True)
    ch = st.tls_channel("example.com")
    err = rpc_error(ch.unary_unary(FAIL), b'{"code": 0}', timeout=10)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    assert err.details() == "method blocked by the example plugin", describe(err)
    assert ch.unary_unary(UNARY)(b"through", timeout=10) == b"through"
    calls = origin.stats()["calls"]
    assert calls["Fail"] == 0, f"the denied call reached the origin: {calls}"
    assert calls["Unary"] == 1, f"the allowed call did not reach the origin once: {calls}"


# --- 2. a chain of two plugins sharing a published value ------------------------------------


def test_publisher_then_reader(st):
    run_proxy(st, "chain", [{"path": plugin_so("publisher")}, {"path": plugin_so("reader")}])
    origin = st.origins["echo"]
    origin.stats(reset=True)
    for label, ch in (("tls", st.tls_channel("example.com")), ("h2c", st.h2c_channel("example.com"))):
        reply, call = ch.unary_unary(UNARY).with_call(b"hi", metadata=[("x-tag", "hello")], timeout=10)
        assert reply == b"hi", label
        md = dict(call.initial_metadata())
        assert md.get("x-echo-reader-saw") == "hello", f"{label}: origin did not see the reader's header: {md}"

        # No tag: the reader adds nothing.
        reply, call = ch.unary_unary(UNARY).with_call(b"hi", timeout=10)
        assert "x-echo-reader-saw" not in dict(call.initial_metadata()), label

        before = origin.stats()["calls"]["Unary"]
        err = rpc_error(ch.unary_unary(UNARY), b"hi", metadata=[("x-tag", "block")], timeout=10)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, f"{label}: {describe(err)}"
        assert err.details() == "reader saw block", f"{label}: {describe(err)}"
        assert origin.stats()["calls"]["Unary"] == before, f"{label}: the blocked call reached the origin"

    # Order matters: with the reader first, nothing has been published when it looks.
    run_proxy(st, "chain-reversed", [{"path": plugin_so("reader")}, {"path": plugin_so("publisher")}])
    reply, call = st.tls_channel("example.com").unary_unary(UNARY).with_call(
        b"hi", metadata=[("x-tag", "block")], timeout=10)
    assert reply == b"hi" and "x-echo-reader-saw" not in dict(call.initial_metadata())


# --- 3. plugins refused at start ------------------------------------------------------------


def test_wrong_abi_refused(st):
    assert_refused(st, "badabi", [{"path": plugin_so("badabi")}],
                   re.escape(f"plugin {plugin_so('badabi')}: built for plugin ABI 99, this core speaks ABI 2"))
    # A plugin built for ABI 1 exports pc_plugin_v1: told to rebuild, not "not a plugin".
    assert_refused(st, "abi1", [{"path": plugin_so("abi1")}],
                   re.escape(f"plugin {plugin_so('abi1')}: {plugin_so('abi1')} is built for plugin ABI 1; this core "
                             "speaks ABI 2: rebuild it against this version's portcullis/plugin.h"))


def test_missing_symbol_refused(st):
    assert_refused(st, "nosym", [{"path": plugin_so("nosym")}],
                   re.escape(f"plugin {plugin_so('nosym')}: {plugin_so('nosym')} exports no symbol pc_plugin_v2: "
                             "not a Portcullis plugin"))


def test_init_failure_refused(st):
    # A good plugin first: loaded (and initialised) before the failing one refuses.
    assert_refused(st, "initfail", [{"path": plugin_so("publisher")}, {"path": plugin_so("initfail")}],
                   re.escape("plugin initfail: init failed: initfail: this plugin always refuses to start"))


def test_missing_plugin_file_refused(st):
    empty = os.path.join(st.dir, "empty-plugin-dir")
    os.makedirs(empty, exist_ok=True)
    assert_refused(st, "missing", [{"name": "nothere"}], r"plugin nothere: cannot load: .*pc-nothere\.so",
                   extra={"plugin_dir": empty})


# --- 4. on_error ----------------------------------------------------------------------------


def test_on_error_deny_and_continue(st):
    origin = st.origins["echo"]
    for on_error in (None, "deny"):
        entry = {"path": plugin_so("failing")}
        if on_error:
            entry["on_error"] = on_error
        run_proxy(st, f"failing-{on_error or 'default'}", [entry])
        origin.stats(reset=True)
        err = rpc_error(st.tls_channel("example.com").unary_unary(UNARY), b"hi", timeout=10)
        assert err.code() == grpc.StatusCode.UNAVAILABLE, f"on_error {on_error}: {describe(err)}"
        assert err.details() == "refused: plugin failing failed", f"on_error {on_error}: {describe(err)}"
        assert origin.stats()["calls"]["Unary"] == 0, f"on_error {on_error}: the call reached the origin"

    run_proxy(st, "failing-continue", [{"path": plugin_so("failing"), "on_error": "continue"},
                                       {"path": plugin_so("publisher")}, {"path": plugin_so("reader")}])
    origin.stats(reset=True)
    reply, call = st.tls_channel("example.com").unary_unary(UNARY).with_call(
        b"hi", metadata=[("x-tag", "after-error")], timeout=10)
    assert reply == b"hi"
    # The rest of the chain still ran after the failing hook.
    assert dict(call.initial_metadata()).get("x-echo-reader-saw") == "after-error", call.initial_metadata()
    assert origin.stats()["calls"]["Unary"] == 1

    path = write_config(st, "bad-on-error", [{"path": plugin_so("failing"), "on_error": "ignore"}])
    r = pclib.run_check(path)
    assert r.returncode != 0 and "expected deny or continue" in r.stderr, f"exit {r.returncode}: {r.stderr}"


# --- 5. deny in the middle of a client stream -----------------------------------------------


def test_stream_denied_midway_origin_gets_exactly_the_allowed_messages(st):
    run_proxy(st, "counter", [{"path": plugin_so("counter"), "config": {"deny_index": 49}}])
    stub = st.counting
    for label, ch in (("h2c", st.h2c_channel("count.example.com")), ("tls", st.tls_channel("count.example.com"))):
        n = len(stub.requests)
        msgs = [b"msg-%03d-" % i + b"x" * 100 for i in range(100)]
        err = rpc_error(ch.stream_unary(CLIENT_STREAM), iter(msgs), timeout=15)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, f"{label}: {describe(err)}"
        assert err.details() == "message 49 denied", f"{label}: {describe(err)}"
        assert pclib.wait_until(lambda: len(stub.requests) > n, 5), f"{label}: the call never reached the origin"
        req = stub.requests[n]
        assert req["headers"].get(":path") == CLIENT_STREAM, req["headers"]
        assert pclib.wait_until(lambda: req["reset"] is not None or req["ended"] or req.get("closed"), 5), \
            f"{label}: the origin stream was left open after the deny"
        got, rest = pclib.grpc_messages(req["body"])
        assert not req["ended"], f"{label}: the origin stream was ended normally (END_STREAM), not reset"
        assert isinstance(req["reset"], int), f"{label}: origin saw no RST_STREAM (reset={req['reset']!r}, " \
            f"closed={req.get('closed')})"
        assert rest == b"", f"{label}: origin got a partial message ({len(rest)} bytes) after {len(got)} messages"
        assert len(got) == 49, f"{label}: origin received {len(got)} messages, want exactly 49"
        assert got == msgs[:49], f"{label}: origin received other messages than the first 49"


def test_on_log_for_every_request_with_lasting_strings(st):
    """on_log runs for a call the core refused before the chain (no zone for its host) as for one
    that passed, and request_info strings stay valid together (service and method both held)."""
    log = os.path.join(st.dir, "on_log.txt")
    run_proxy(st, "on-log", [{"path": plugin_so("counter"), "config": {"log_file": log}}])
    reply = st.h2c_channel("example.com").unary_unary(UNARY)(b"hi", timeout=10)
    assert reply == b"hi"
    err = rpc_error(st.h2c_channel("nowhere.invalid").unary_unary(REFUND), b"hi", timeout=10)
    assert err.code() == grpc.StatusCode.NOT_FOUND, describe(err)

    def lines():
        try:
            with open(log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []
    assert pclib.wait_until(lambda: len(lines()) >= 2, 5 * SCALE), f"on_log lines: {lines()}"
    got = lines()
    assert "/demo.Echo/Unary 0 demo.Echo Unary" in got, got
    assert "/shop.v1.Orders/Refund 5 shop.v1.Orders Refund" in got, got
    assert len(got) == 2, got


# --- 6. per-zone chains ---------------------------------------------------------------------


def test_zone_without_plugins(st):
    run_proxy(st, "zones", [{"name": "example", "config": {"deny_methods": [FAIL, "/pkg.Svc/"]}}],
              zones=[zone_conf("open", ["open.example.com"], "echo", plugins=[]),
                     zone_conf("tagged", ["tagged.example.com"], "echo", plugins=["example"])])
    origin = st.origins["echo"]
    origin.stats(reset=True)
    body = b'{"code": "NOT_FOUND", "message": "from the origin"}'

    for host in ("example.com", "tagged.example.com"):
        err = rpc_error(st.tls_channel(host).unary_unary(FAIL), body, timeout=10)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, f"{host}: {describe(err)}"
        # A prefix entry covers every method of the service.
        err = rpc_error(st.tls_channel(host).unary_unary("/pkg.Svc/Anything"), b"", timeout=10)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, f"{host}: {describe(err)}"
    assert origin.stats()["calls"]["Fail"] == 0, "a denied call reached the origin"

    err = rpc_error(st.tls_channel("open.example.com").unary_unary(FAIL), body, timeout=10)
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "from the origin", describe(err)
    err = rpc_error(st.h2c_channel("open.example.com").unary_unary(FAIL), body, timeout=10)
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "from the origin", describe(err)
    assert origin.stats()["calls"]["Fail"] == 2, origin.stats()["calls"]
    # /pkg.Svc/ is not a method of the origin: it answers UNIMPLEMENTED, not the plugin.
    err = rpc_error(st.tls_channel("open.example.com").unary_unary("/pkg.Svc/Anything"), b"", timeout=10)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, describe(err)

    cfg = pclib.make_config(tls_port=pclib.free_port(), origins=st.base_origins,
                            zones=st.base_zones + [zone_conf("bad", ["bad.example.com"], "echo", plugins=["nosuch"])],
                            extra={"plugins": [{"path": plugin_so("publisher")}]})
    path = st.write_config(cfg, name="zone-unknown-plugin.yaml")
    r = pclib.run_check(path)
    assert r.returncode == 2 and 'no plugin named "nosuch"' in r.stderr, f"exit {r.returncode}: {r.stderr}"

    # Every zone with its own chain (no zone falls back to the top-level list).
    zones = [dict(z, plugins=["publisher"] if i % 2 else []) for i, z in enumerate(st.base_zones)]
    cfg = pclib.make_config(tls_port=pclib.free_port(), origins=st.base_origins, zones=zones,
                            extra={"plugins": [{"path": plugin_so("publisher")}]})
    path = st.write_config(cfg, name="all-zones-own-chain.yaml")
    r = pclib.run_check(path)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    no_sanitizer_report(r.stderr, "check")


# --- 7. message inspection, with and without descriptors -------------------------------------


def refund_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet()
    with open(SHOP_PB, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    d = pool.FindMessageTypeByName("shop.v1.RefundRequest")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(d)
    return message_factory.MessageFactory(pool).GetPrototype(d)


def refund(order_id="A-1001", email="ann@example.com", tags=("vip",)):
    msg = refund_class()(order_id=order_id, amount=-250)
    msg.customer.email = email
    msg.customer.tags.extend(tags)
    return msg.SerializeToString()


def test_deny_text_names_field_by_name_or_number(st):
    plugins = [{"name": "example", "config": {"deny_text": "DROP TABLE"}}]
    cases = [  # message, field path with descriptors, without
        (refund(order_id="1; DROP TABLE orders"), "order_id", "1"),
        (refund(email="x@y'; DROP TABLE users"), "customer.email", "3.1"),
        (refund(tags=("ok", "DROP TABLE--")), "customer.tags", "3.2"),
    ]
    for with_desc in (True, False):
        run_proxy(st, f"inspect-{'desc' if with_desc else 'raw'}", plugins,
                  extra={"descriptors": [SHOP_PB]} if with_desc else None)
        ch = st.tls_channel("shop.example.com")
        for data, named, numbered in cases:
            want = f"message 0 refused: field {named if with_desc else numbered}"
            err = rpc_error(ch.unary_unary(REFUND), data, timeout=10)
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
            assert err.details() == want, f"{describe(err)}, want {want!r}"
        # A clean message goes through; the origin has no such service and says so.
        err = rpc_error(ch.unary_unary(REFUND), refund(), timeout=10)
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED, describe(err)
        # Text in a bytes field: with the descriptor it is bytes (not inspected); without, valid UTF-8
        # can only be taken for a string.
        msg = refund_class()(order_id="A-2", blob=b"DROP TABLE")
        err = rpc_error(ch.unary_unary(REFUND), msg.SerializeToString(), timeout=10)
        if with_desc:
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED, describe(err)
        else:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
            assert err.details() == "message 0 refused: field 5", describe(err)

    # The index is counted along a stream: the third message is refused.
    origin = st.origins["echo"]
    origin.stats(reset=True)
    msgs = [refund(order_id="A-1"), refund(order_id="A-2"), refund(order_id="A-3 DROP TABLE")]
    err = rpc_error(st.tls_channel("example.com").stream_unary(CLIENT_STREAM), iter(msgs), timeout=10)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    assert err.details() == "message 2 refused: field 1", describe(err)
    # Non-protobuf payloads are passed on untouched.
    assert st.tls_channel("example.com").unary_unary(UNARY)(b"\xff\xff DROP TABLE", timeout=10) == \
        b"\xff\xff DROP TABLE"


# --- 8. config errors a plugin reports ------------------------------------------------------


def test_unknown_config_key_refused(st):
    path = write_config(st, "unknown-key", [{"name": "example", "config": {"deny_method": [FAIL]}}])
    r = pclib.run_check(path)
    assert r.returncode == 2, f"check exit {r.returncode} (want 2):\n{r.stderr}"
    # Checked by the core against the keys the plugin declares, at the offending key's position.
    m = re.search(re.escape(path) + r':(\d+):\d+: plugin example: unknown key "deny_method" \(valid keys: '
                  r'deny_methods, require_header, deny_text, lookup_delay_ms\)', r.stderr)
    assert m, r.stderr
    # The location the plugin got from the host points at the offending key's line.
    with open(path) as f:
        key_line = next(i for i, text in enumerate(f, 1) if "deny_method:" in text)
    assert int(m.group(1)) == key_line, f"location is not line {key_line}: {r.stderr}"
    no_sanitizer_report(r.stderr, "check")

    path = write_config(st, "bad-deny-methods", [{"name": "example", "config": {"deny_methods": ["demo.Echo/Fail"]}}])
    r = pclib.run_check(path)
    assert r.returncode == 2 and "deny_methods[0]" in r.stderr and "expected a gRPC path" in r.stderr, r.stderr

    # And a good config passes check.
    path = write_config(st, "good", [{"name": "example", "config": {"deny_methods": [FAIL], "deny_text": "x"}}],
                        extra={"descriptors": [SHOP_PB]})
    r = pclib.run_check(path)
    assert r.returncode == 0, f"check exit {r.returncode}:\n{r.stderr}"


def test_example_is_the_model(st):
    """The example plugin uses the whole ABI 2 surface a plugin needs: declared config keys, worker
    and request state handed to hooks, a paused hook resumed from the thread pool, typed published
    values, a metric from on_log."""
    admin = pclib.free_port()
    run_proxy(st, "model", [{"name": "example", "config": {"require_header": "x-api-key", "lookup_delay_ms": 150}}],
              extra={"admin": {"address": f"127.0.0.1:{admin}"}, "workers": 1})
    pclib.wait_port(admin, st.proxy.proc, what="admin listener")
    ch = st.h2c_channel("example.com")
    start = time.monotonic()
    assert ch.unary_unary(UNARY)(b"hi", metadata=[("x-api-key", "k1")], timeout=10) == b"hi"
    assert time.monotonic() - start >= 0.15, "the header was not checked on the thread pool after the delay"
    err = rpc_error(ch.unary_unary(UNARY), b"hi", metadata=[("x-api-key", "")], timeout=10)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and err.details() == "empty required header", describe(err)
    err = rpc_error(ch.unary_unary(UNARY), b"hi", timeout=10)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and err.details() == "missing required header", describe(err)

    lines = pclib.json_lines_matching(st.proxy.out_path, lambda l: l.get("path") == UNARY, 3, 10)
    ok = [l for l in lines if l.get("grpc_status") in (0, "0")]
    assert len(ok) == 1, lines
    p = ok[0].get("plugins") or {}
    # Typed published values: a JSON boolean and a JSON number, the latter from the worker context.
    assert p.get("example.checked") is True, p
    assert type(p.get("example.worker_calls")) is int and p["example.worker_calls"] >= 1, p
    samples = pclib.scrape_metrics(admin)
    got = {l.get("result"): v for n, l, v in samples if n == "pc_example_requests_total"}
    assert got.get("passed") == 1 and got.get("denied") == 2, f"on_log metric: {got}"

    # `plugins describe` prints the declared keys.
    r = subprocess.run([pclib.BINARY, "plugins", "describe", "example"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for text in ("example 2.0", "deny_methods", "list", "lookup_delay_ms", "integer, default 0, 0 to 10000",
                 "a request header every call must carry"):
        assert text in r.stdout, f"describe lacks {text!r}:\n{r.stdout}"
    r = subprocess.run([pclib.BINARY, "plugins", "describe", "nosuchplugin"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 2 and "nosuchplugin" in r.stderr, (r.returncode, r.stderr)


def test_core_checks_every_plugins_config(st):
    """Types, bounds, allowed values and required keys are checked by the core, with the position
    of the offending node, for built-in and test plugins alike."""
    cases = [
        ("type", [{"name": "example", "config": {"lookup_delay_ms": "soon"}}],
         r'plugin example: lookup_delay_ms: expected a whole number from 0 to 10000, got "soon"'),
        ("range", [{"name": "example", "config": {"lookup_delay_ms": 20000}}],
         r'plugin example: lookup_delay_ms: expected a whole number from 0 to 10000, got "20000"'),
        ("list", [{"name": "example", "config": {"deny_methods": "/demo.Echo/Fail"}}],
         r"plugin example: deny_methods: expected a list"),
        ("choice", [{"name": "modsecurity", "config": {"mode": "maybe"}}],
         r'plugin modsecurity: mode: expected one of block\|detect\|off, got "maybe"'),
        ("bool", [{"path": plugin_so("async"), "config": {"responses": "sometimes"}}],
         r'plugin async: responses: expected true or false, got "sometimes"'),
        ("required", [{"name": "lua", "config": {"max_memory": 1048576}}],
         r"plugin lua: dir is required \(the directory of \*\.lua rule files\)"),
    ]
    for name, plugins, expected in cases:
        path = write_config(st, f"conf-{name}", plugins)
        r = pclib.run_check(path)
        assert r.returncode == 2, f"{name}: check exit {r.returncode}:\n{r.stderr}"
        assert re.search(re.escape(path) + r":\d+:\d+: " + expected, r.stderr), f"{name}: {r.stderr}"
    # The offending node's line: the value, not the plugin entry.
    path = write_config(st, "conf-line", [{"name": "example", "config": {"lookup_delay_ms": -5}}])
    r = pclib.run_check(path)
    m = re.search(re.escape(path) + r":(\d+):\d+: plugin example: lookup_delay_ms", r.stderr)
    with open(path) as f:
        want = next(i for i, text in enumerate(f, 1) if "lookup_delay_ms:" in text)
    assert m and int(m.group(1)) == want, (want, r.stderr)


# --- asynchronous plugins: PC_PAUSE, queue_work, resume -------------------------------------


BIDI = "/demo.Echo/Bidi"


def test_async_plugin_keeps_order_and_streams(st):
    """Every header block and message is decided on the thread pool: the call waits, nothing is lost
    or reordered, and other calls go on meanwhile."""
    run_proxy(st, "async", [{"path": plugin_so("async"), "config": {"delay_ms": 5}}])
    msgs = [b"m%03d-" % i + b"y" * (i * 37 % 3000) for i in range(60)]
    got = list(st.tls_channel("example.com").stream_stream(BIDI)(iter(msgs), timeout=30))
    assert got == msgs, f"bidi through the async plugin: {len(got)} messages back, order or bytes differ"
    # Ten concurrent calls: the pauses overlap instead of queueing behind each other.
    ch = st.h2c_channel("example.com")
    futs = [ch.unary_unary(UNARY).future(b"c%d" % i, timeout=20) for i in range(10)]
    assert [f.result() for f in futs] == [b"c%d" % i for i in range(10)]


def test_thread_pool_sized_from_workers(st):
    """Plugin work (queue_work) runs on the process's one thread pool: it gets a thread per worker
    (at least libuv's 4), unless UV_THREADPOOL_SIZE is set."""

    def threads(env_size):
        saved = os.environ.pop("UV_THREADPOOL_SIZE", None)
        if env_size:
            os.environ["UV_THREADPOOL_SIZE"] = str(env_size)
        try:
            proxy = run_proxy(st, f"pool-{env_size or 'auto'}", [{"path": plugin_so("async"), "config": {"delay_ms": 1}}],
                              extra={"workers": 6})
        finally:
            os.environ.pop("UV_THREADPOOL_SIZE", None)
            if saved is not None:
                os.environ["UV_THREADPOOL_SIZE"] = saved
        # The pool starts its threads on first use.
        assert st.h2c_channel("example.com").unary_unary(UNARY)(b"p", timeout=10) == b"p"
        return len(os.listdir(f"/proc/{proxy.proc.pid}/task"))

    auto, two = threads(None), threads(2)
    assert auto - two == 6 - 2, f"threads with 6 workers: {auto} sized automatically, {two} with a pool of 2"


def test_async_plugin_holds_responses(st):
    """on_response_message may pause too (resume_response): every reply waits for its verdict and
    keeps its order while the request direction pauses and resumes independently; replies larger
    than the windows flow through; a denied reply ends the call after the replies before it."""
    run_proxy(st, "async-resp", [{"path": plugin_so("async"), "config": {"delay_ms": 2, "responses": True}}])
    msgs = [b"r%03d-" % i + b"z" * (i * 5011 % 200000) for i in range(40)]
    got = list(st.tls_channel("example.com").stream_stream(BIDI)(iter(msgs), timeout=60))
    assert got == msgs, f"{len(got)} replies back, order or bytes differ"
    run_proxy(st, "async-resp-deny", [{"path": plugin_so("async"),
                                       "config": {"delay_ms": 2, "responses": True, "deny_response_index": 5}}])
    got, err = pclib.replies_until_error(st.tls_channel("example.com").stream_stream(BIDI)(iter(msgs[:10]),
                                                                                          timeout=30))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    assert err.details() == "reply 5 denied after async check", describe(err)
    assert got == msgs[:5], f"{len(got)} replies before the denied one, want 5"


def test_async_plugin_denies_midstream(st):
    run_proxy(st, "async-deny", [{"path": plugin_so("async"), "config": {"deny_index": 7, "delay_ms": 2}}])
    stub = st.counting
    n = len(stub.requests)
    msgs = [b"a%03d" % i for i in range(20)]
    err = rpc_error(st.h2c_channel("count.example.com").stream_unary(CLIENT_STREAM), iter(msgs), timeout=15)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, describe(err)
    assert err.details() == "message 7 denied after async check", describe(err)
    assert pclib.wait_until(lambda: len(stub.requests) > n and stub.requests[n]["reset"] is not None, 5), \
        "the origin stream was not reset after the async deny"
    got, rest = pclib.grpc_messages(stub.requests[n]["body"])
    assert got == msgs[:7] and rest == b"", f"origin received {len(got)} messages, want exactly the first 7"


def test_async_plugin_client_cancel_while_paused(st):
    """A client that goes away while the plugin works: the request is released when the work ends."""
    run_proxy(st, "async-cancel", [{"path": plugin_so("async"), "config": {"delay_ms": 300}}])
    origin = st.origins["echo"]
    origin.stats(reset=True)
    err = rpc_error(st.h2c_channel("example.com").unary_unary(UNARY), b"gone", timeout=0.1)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, describe(err)
    time.sleep(0.5)  # the paused work finishes after the call is gone
    assert origin.stats()["calls"]["Unary"] == 0, "a call answered by the edge still reached the origin"
    assert st.h2c_channel("example.com").unary_unary(UNARY)(b"after", timeout=10) == b"after"


def test_proxy_survived(st):
    """The last proxy still serves and stops cleanly (sanitizer findings are reported at teardown)."""
    if st.proxy is None or st.proxy.exit_code is not None:
        run_proxy(st, "final", [{"name": "example"}])
    assert st.tls_channel("example.com").unary_unary(UNARY)(b"ok", timeout=10) == b"ok"


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
