#!/usr/bin/python3
"""Running the edge: configuration reload (SIGHUP) under load, graceful drain (SIGTERM/SIGINT),
worker threads, the admin endpoint (/metrics, /healthz) and the access log with its rotation
(SIGUSR1). Each test starts a proxy of its own, since most of them signal or stop it."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import grpc

import pclib
from pclib import describe, metric_sum, origin_conf, rpc_error, zone_conf

UNARY = "/demo.Echo/Unary"
SLEEP = "/demo.Echo/Sleep"
FAIL = "/demo.Echo/Fail"
SCALE = pclib.TIME_SCALE

RELOADED = "configuration reloaded"
REFUSED = "reload refused"
ACCESS_KEYS = {"time", "client", "sni", "alpn", "tls_version", "zone", "authority", "method", "path", "user_agent",
               "grpc_service", "grpc_method", "status", "grpc_status", "request_bytes", "response_bytes",
               "request_messages", "response_messages", "duration_ms", "upstream", "reason"}


def setup():
    st = pclib.Stack("operations")
    st.echo = st.start_origin("echo")
    return st


# --- helpers ------------------------------------------------------------------------------------


def origins(st):
    return [origin_conf("echo", st.echo.port)]


def zones(flip_grpc=True):
    """The default zones plus flip.test, whose gRPC switch the reload test turns off and on."""
    return pclib.default_zones("echo") + [zone_conf("flip.test", ["flip.test"], "echo", grpc=flip_grpc)]


class running:
    """A proxy of the test's own, started on entry and stopped (with its exit checked) on exit.
    `admin=True` also serves the admin endpoint (port in .admin_port); `access_log=True` sends the
    access log to a file of its own in the work dir (path in .access_path)."""

    def __init__(self, st, name, extra=None, admin=False, access_log=False, zone_list=None):
        self.st = st
        self.name = name
        self.extra = dict(extra or {})
        self.admin_port = None
        self.access_path = None
        self.zones = zone_list or zones()
        if admin:
            self.admin_port = pclib.free_port()
            self.extra["admin"] = {"address": f"127.0.0.1:{self.admin_port}"}
        if access_log:
            self.access_path = os.path.join(st.dir, f"{name}.access.log")
            self.extra["log"] = {"access": self.access_path, "level": "info"}

    def __enter__(self):
        self.proxy = self.st.start_proxy(origins(self.st), self.zones, extra=self.extra, name=self.name)
        if self.admin_port:
            pclib.wait_port(self.admin_port, self.proxy.proc, what="admin endpoint")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.st.proxy = None  # the fixture's health check is about the origin from here on
        for ch in self.st.channels:
            try:
                ch.close()
            except Exception:
                pass
        self.st.channels.clear()
        if self.proxy.exit_code is None:
            problem = self.proxy.stop()
            if problem and exc_type is None:
                raise AssertionError(f"{problem}\n{self.proxy.logs(40)}")
        return False

    def rewrite(self, cfg):
        """Replaces the proxy's config file (takes effect at the next SIGHUP)."""
        self.st.write_config(cfg, name=os.path.basename(self.proxy.config_path))

    def signal(self, signum):
        self.proxy.proc.send_signal(signum)

    def stderr(self):
        with open(self.proxy.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def count(self, text):
        return self.stderr().count(text)

    def wait_count(self, text, n, timeout=5.0):
        """Waits until `text` appears n times on stderr; AssertionError (with the log) if not."""
        if not pclib.wait_until(lambda: self.count(text) >= n, timeout):
            raise AssertionError(f"stderr shows {self.count(text)} x {text!r}, expected {n}:\n{self.stderr()[-3000:]}")

    def wait_exit(self, timeout):
        """Waits for the proxy to exit by itself; returns its exit code, or None if it is still running.
        Once it exited, its stderr is checked for sanitizer findings."""
        try:
            self.proxy.proc.wait(timeout * SCALE)
        except subprocess.TimeoutExpired:
            return None
        code = pclib.stop_process(self.proxy.proc)  # only takes it off the cleanup list
        self.proxy.out.close()
        self.proxy.err.close()
        self.proxy.exit_code = code
        text = self.stderr()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in text, f"sanitizer finding on stderr:\n{text[-6000:]}"
        return code


def sleep_body(ms, tag=None):
    return json.dumps({"ms": ms, "tag": tag}).encode()


def wait_sleep_started(st, n=1):
    assert pclib.wait_until(lambda: st.echo.stats()["calls"]["Sleep"] >= n, 10), "the Sleep call never reached the origin"


def refuses_connections(port):
    """True when a TCP connection to the port is refused, or accepted and then closed without a
    byte of HTTP/2 (what a draining edge may do in the moment before its listener goes)."""
    import socket

    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except ConnectionRefusedError:
        return True
    except OSError:
        return True
    try:
        s.settimeout(1.0)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        data = s.recv(65536)
        return data == b""
    except OSError:
        return True
    finally:
        s.close()


class Load:
    """Unary calls back to back for `seconds` from `threads` threads, each with a channel of its own
    (alternately TLS and h2c). Every failed or wrong reply is recorded."""

    def __init__(self, st, threads=4, seconds=3.5):
        self.channels = [st.tls_channel("example.com") if i % 2 == 0 else st.h2c_channel("example.com")
                         for i in range(threads)]
        self.seconds = seconds
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i, ch), daemon=True)
                        for i, ch in enumerate(self.channels)]

    def start(self):
        self.until = time.monotonic() + self.seconds
        for t in self.threads:
            t.start()

    def _run(self, i, ch):
        call = ch.unary_unary(UNARY)
        n = 0
        while time.monotonic() < self.until:
            payload = b"load-%d-%d" % (i, n)
            n += 1
            try:
                reply = call(payload, timeout=5 * SCALE)
            except grpc.RpcError as e:
                with self.lock:
                    self.failures.append(f"{time.monotonic() - self.until + self.seconds:.2f} s: {describe(e)}")
                continue
            with self.lock:
                if reply == payload:
                    self.ok += 1
                else:
                    self.failures.append(f"wrong reply {reply[:40]!r} for {payload!r}")

    def join(self):
        for t in self.threads:
            t.join(self.seconds + 15 * SCALE)
        assert not any(t.is_alive() for t in self.threads), "load threads did not finish"


# --- reload -------------------------------------------------------------------------------------


def test_reload_under_load(st):
    """Three SIGHUPs under continuous load: one turning gRPC off for a zone, one with a broken
    file (refused, old config kept), one restoring it. No call of the load fails; a call started
    before the first reload finishes on the config it started with."""
    with running(st, "reload") as r:
        good = st.cfg
        flip = st.h2c_channel("flip.test")
        assert flip.unary_unary(UNARY)(b"before", timeout=10) == b"before"
        st.echo.stats(reset=True)
        sleeper = st.h2c_channel("flip.test").unary_unary(SLEEP).future(sleep_body(2500, "old"), timeout=20 * SCALE)
        wait_sleep_started(st)

        load = Load(st)
        load.start()
        try:
            # 1: flip.test loses gRPC. New calls, on an existing connection or a new one, see it.
            time.sleep(0.5)
            assert not sleeper.done(), "the Sleep call ended before the first reload"
            r.rewrite(dict(good, zones=zones(flip_grpc=False)))
            r.signal(signal.SIGHUP)
            r.wait_count(RELOADED, 1)
            time.sleep(0.1)  # each worker picks the new config up from its own loop
            for label, ch in (("same connection", flip), ("new connection", st.h2c_channel("flip.test"))):
                err = rpc_error(ch.unary_unary(UNARY), b"after", timeout=10)
                assert err.code() == grpc.StatusCode.UNIMPLEMENTED, f"{label}, after reload 1: {describe(err)}"

            # 2: a broken file is refused; the previous config keeps serving.
            time.sleep(0.4)
            broken = dict(good, zones=zones(flip_grpc=False) + [zone_conf("bad", ["bad.test"], "no-such-origin")])
            r.rewrite(broken)
            r.signal(signal.SIGHUP)
            r.wait_count(REFUSED, 1)
            time.sleep(0.1)
            err = rpc_error(flip.unary_unary(UNARY), b"after", timeout=10)
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED, f"after the refused reload: {describe(err)}"

            # 3: the original file again: flip.test serves gRPC again.
            time.sleep(0.4)
            r.rewrite(good)
            r.signal(signal.SIGHUP)
            r.wait_count(RELOADED, 2)
            time.sleep(0.1)
            assert flip.unary_unary(UNARY)(b"again", timeout=10) == b"again"
        finally:
            load.join()

        try:
            reply = json.loads(sleeper.result(timeout=15 * SCALE))
        except grpc.RpcError as e:
            raise AssertionError(f"the call in flight across the reloads failed: {describe(e)}") from None
        assert reply["slept_ms"] == 2500 and not reply["cancelled"] and reply["tag"] == "old", reply

        assert not load.failures, f"{len(load.failures)} of {load.ok + len(load.failures)} calls failed " \
                                  f"across reloads: {load.failures[:5]}"
        assert load.ok >= 50, f"only {load.ok} calls made it through in {load.seconds} s"
        assert r.proxy.alive(), "portcullis exited"
        text = r.stderr()
        assert text.count(RELOADED) == 2 and text.count(REFUSED) == 1, \
            f"expected 2 x {RELOADED!r} and 1 x {REFUSED!r}:\n{text[-3000:]}"
        refused_line = next(line for line in text.splitlines() if REFUSED in line)
        assert "no-such-origin" in refused_line, f"the refusal does not say what is wrong: {refused_line}"


def test_reload_keeps_the_admin_address(st):
    """The admin listener is bound once: a reload that moves it says so and keeps serving on the
    address it has."""
    with running(st, "readmin", admin=True) as r:
        moved = pclib.free_port()
        r.rewrite(dict(st.cfg, admin={"address": f"127.0.0.1:{moved}"}))
        r.signal(signal.SIGHUP)
        r.wait_count(RELOADED, 1)
        assert r.count("admin.address changed: takes effect at the next restart") == 1, r.stderr()[-2000:]
        status, body = pclib.http_get(r.admin_port, "/healthz")
        assert status == 200 and body.strip() == "ok", (status, body)
        assert not pclib.port_open(moved), "the moved admin address is served before a restart"


def test_reload_refuses_listen_change(st):
    with running(st, "relisten") as r:
        cfg = dict(st.cfg, listen=st.cfg["listen"][:1])  # the h2c listener dropped
        r.rewrite(cfg)
        r.signal(signal.SIGHUP)
        r.wait_count(REFUSED, 1)
        assert r.count(RELOADED) == 0, r.stderr()[-2000:]
        assert st.h2c_channel().unary_unary(UNARY)(b"h2c", timeout=10) == b"h2c", "the h2c listener went away"


def test_signals_handled_once_listening(st):
    """A supervisor may signal as soon as the port accepts: SIGHUP then must reload, not kill (its
    default action). Polled without pauses to hit the moment the first listener opens."""
    port = pclib.free_port()
    cfg_path = st.write_config(pclib.make_config(tls_port=port, h2c_port=None, origins=origins(st), zones=zones()),
                               name="early.yaml")
    for round_ in range(5):
        err_path = os.path.join(st.dir, f"early-{round_}.stderr")
        with open(err_path, "wb") as err:
            proc = pclib.spawn([pclib.BINARY, "run", "-c", cfg_path], stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while not pclib.port_open(port):
                assert proc.poll() is None and time.monotonic() < deadline, f"round {round_}: never listened"
            proc.send_signal(signal.SIGHUP)
            ok = pclib.wait_until(lambda: RELOADED in pclib.tail(err_path, 50) or proc.poll() is not None, 10)
            assert ok and proc.poll() is None, \
                f"round {round_}: SIGHUP right after the port opened: exit {proc.poll()}\n{pclib.tail(err_path)}"
        finally:
            code = pclib.stop_process(proc, timeout=15)
        assert code == 0, f"round {round_}: exit {code} after SIGTERM\n{pclib.tail(err_path)}"


# --- drain --------------------------------------------------------------------------------------


def test_drain_finishes_calls_then_exits(st):
    with running(st, "drain") as r:
        ch = st.tls_channel()
        assert ch.unary_unary(UNARY)(b"warm", timeout=10) == b"warm"
        st.echo.stats(reset=True)
        call = ch.unary_unary(SLEEP).future(sleep_body(1500, "drain"), timeout=20 * SCALE)
        wait_sleep_started(st)
        start = time.monotonic()
        r.signal(signal.SIGTERM)

        # The listeners go at once: new connections are refused, on both ports.
        ports = (st.tls_port, st.h2c_port)
        assert pclib.wait_until(lambda: all(refuses_connections(p) for p in ports), 1.5), \
            "new connections still accepted after SIGTERM"
        time.sleep(0.2)
        assert all(refuses_connections(p) for p in ports), "a listener came back while draining"
        assert r.proxy.alive(), f"exited {time.monotonic() - start:.2f} s after SIGTERM with a call in flight"

        try:
            reply = json.loads(call.result(timeout=15 * SCALE))
        except grpc.RpcError as e:
            raise AssertionError(f"the call in flight did not survive the drain: {describe(e)}") from None
        assert reply["slept_ms"] == 1500 and not reply["cancelled"], reply

        code = r.wait_exit(5)
        took = time.monotonic() - start
        assert code is not None, "portcullis still running 5 s after its last call ended"
        assert code == 0, f"exit code {code} after a graceful drain:\n{r.stderr()[-3000:]}"
        assert took < 5 * SCALE, f"the drain took {took:.1f} s for a call with 1.5 s to go"


def test_second_signal_exits_at_once(st):
    with running(st, "drain-twice") as r:
        st.echo.stats(reset=True)
        call = st.tls_channel().unary_unary(SLEEP).future(sleep_body(10000), timeout=30 * SCALE)
        wait_sleep_started(st)
        r.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert r.proxy.alive(), "exited on the first SIGTERM with a call in flight (30 s drain timeout)"
        start = time.monotonic()
        r.signal(signal.SIGTERM)
        code = r.wait_exit(3)
        assert code is not None, "still running 3 s after the second SIGTERM"
        assert code == 1, f"exit code {code} after the second signal, expected 1"
        assert time.monotonic() - start < 2 * SCALE
        err = call.exception(timeout=10 * SCALE)
        assert err is not None and err.code() != grpc.StatusCode.OK, "the call succeeded after a hard exit"


def test_drain_timeout_cuts_long_calls(st):
    with running(st, "drain-timeout", extra={"drain_timeout_ms": 500}) as r:
        st.echo.stats(reset=True)
        call = st.tls_channel().unary_unary(SLEEP).future(sleep_body(5000), timeout=30 * SCALE)
        wait_sleep_started(st)
        start = time.monotonic()
        r.signal(signal.SIGINT)
        code = r.wait_exit(4)
        took = time.monotonic() - start
        assert code is not None, "still running 4 s after SIGINT with drain_timeout_ms 500"
        assert code == 0, f"exit code {code}:\n{r.stderr()[-3000:]}"
        assert 0.4 <= took <= 2.5 * SCALE, f"exited {took:.2f} s after SIGINT with drain_timeout_ms 500"
        # The log says which call was cut and where it stood.
        cut = re.search(r"drain timeout: client \S+: stream \d+ " + re.escape(SLEEP) +
                        r": request ENDED, response (\w+).*origin (\w+)", r.stderr())
        assert cut and cut.group(2) == "attached", f"no line naming the cut call:\n{r.stderr()[-3000:]}"
        err = call.exception(timeout=10 * SCALE)
        assert err is not None, "a 5 s call completed although the drain timeout was 500 ms"


def test_drain_after_reloads_uses_current_config(st):
    """drain_timeout_ms comes from the config in force (here, set by reloads); the configs the
    reloads replaced are gone by then."""
    with running(st, "drain-reloaded", extra={"workers": 1}) as r:
        r.rewrite(dict(st.cfg, drain_timeout_ms=500))
        for n in (1, 2):  # the second reload frees the first config (nothing uses it any more)
            r.signal(signal.SIGHUP)
            r.wait_count(RELOADED, n)
        st.echo.stats(reset=True)
        call = st.tls_channel().unary_unary(SLEEP).future(sleep_body(3000), timeout=30 * SCALE)
        wait_sleep_started(st)
        start = time.monotonic()
        r.signal(signal.SIGTERM)
        code = r.wait_exit(6)
        took = time.monotonic() - start
        assert code == 0, f"exit code {code} after SIGTERM:\n{r.stderr()[-3000:]}"
        assert took <= 2.5 * SCALE, \
            f"exited {took:.2f} s after SIGTERM: the reloaded drain_timeout_ms (500) was not applied"
        err = call.exception(timeout=10 * SCALE)
        assert err is not None, "a 3 s call completed although the reloaded drain timeout was 500 ms"


# --- workers ------------------------------------------------------------------------------------


def test_two_workers_share_connections(st):
    with running(st, "workers", extra={"workers": 2}, admin=True) as r:
        assert "started with 2 workers" in r.stderr(), r.stderr()[-2000:]
        before = pclib.scrape_metrics(r.admin_port)
        base = [metric_sum(before, "pc_connections_total", worker=str(w)) for w in (0, 1)]
        assert None not in base, f"no pc_connections_total per worker: {base}"
        assert metric_sum(before, "pc_connections_total", worker="2") is None, "a third worker reported"
        calls = 40
        for i in range(calls):
            ch = pclib.tls_channel(st.tls_port, st.certs["ca"]) if i % 2 == 0 else pclib.h2c_channel(st.h2c_port)
            try:
                payload = b"conn-%d" % i
                assert ch.unary_unary(UNARY)(payload, timeout=10) == payload
            finally:
                ch.close()
        after = pclib.scrape_metrics(r.admin_port)
        per_worker = [metric_sum(after, "pc_connections_total", worker=str(w)) - base[w] for w in (0, 1)]
        assert sum(per_worker) == calls, f"{calls} connections counted as {per_worker}"
        assert all(n > 0 for n in per_worker), f"one worker took every connection: {per_worker}"
        assert pclib.wait_until(
            lambda: metric_sum(pclib.scrape_metrics(r.admin_port), "pc_connections_active") == 0, 3), \
            "pc_connections_active did not return to 0 after every client left"


# --- metrics and access log ---------------------------------------------------------------------


def test_metrics_and_access_log_match_calls(st):
    with running(st, "observe", admin=True, access_log=True) as r:
        ok = st.tls_channel("example.com")
        for i in range(7):
            payload = b"call-%02d" % i
            assert ok.unary_unary(UNARY)(payload, timeout=10) == payload
        for i in range(3):
            err = rpc_error(ok.unary_unary(FAIL), json.dumps({"code": 5, "message": "x"}).encode(), timeout=10)
            assert err.code() == grpc.StatusCode.NOT_FOUND, describe(err)
        off = st.tls_channel("nogrpc.test")
        for i in range(2):
            err = rpc_error(off.unary_unary(UNARY), b"refused", timeout=10)
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED, describe(err)
        total = 12

        # Metrics (the counters move when a call ends, which may trail the client by a moment).
        assert pclib.wait_until(lambda: metric_sum(pclib.scrape_metrics(r.admin_port),
                                                   "pc_request_duration_seconds_count") == total, 3), \
            "pc_request_duration_seconds_count never reached 12"
        m = pclib.scrape_metrics(r.admin_port)
        req = "pc_requests_total"
        assert metric_sum(m, req, zone="example.com", method=UNARY, grpc_status="OK") == 7, _series(m, req)
        assert metric_sum(m, req, zone="example.com", method=FAIL, grpc_status="NOT_FOUND") == 3, _series(m, req)
        assert metric_sum(m, req, zone="nogrpc.test", grpc_status="UNIMPLEMENTED") == 2, _series(m, req)
        assert metric_sum(m, req) == total, _series(m, req)
        assert metric_sum(m, "pc_edge_errors_total", reason="grpc_disabled") == 2, _series(m, "pc_edge_errors_total")
        assert metric_sum(m, "pc_edge_errors_total") == 2, _series(m, "pc_edge_errors_total")
        assert not metric_sum(m, "pc_upstream_connect_failures_total"), _series(m, "pc_upstream_connect_failures_total")
        assert metric_sum(m, "pc_streams_active") == 0, _series(m, "pc_streams_active")
        assert metric_sum(m, "pc_connections_active") == 2, _series(m, "pc_connections_active")
        buckets = [(s[1]["le"], s[2]) for s in m if s[0] == "pc_request_duration_seconds_bucket"]
        assert buckets and buckets[-1] == ("+Inf", total), buckets
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"histogram buckets are not cumulative: {buckets}"
        hist_sum = metric_sum(m, "pc_request_duration_seconds_sum")
        assert hist_sum is not None and 0 < hist_sum < total * 5, f"pc_request_duration_seconds_sum {hist_sum}"

        # The access log: one JSON line per call, written when it ends.
        assert pclib.wait_until(lambda: len(pclib.read_json_lines(r.access_path)) >= total, 3), \
            f"{len(pclib.read_json_lines(r.access_path))} access log lines, expected {total}"
        time.sleep(0.2)
        lines = pclib.read_json_lines(r.access_path)
        assert len(lines) == total, f"{len(lines)} access log lines, expected {total}: {lines}"
        kinds = {"unary": 0, "fail": 0, "refused": 0}
        for e in lines:
            missing = ACCESS_KEYS - set(e)
            assert not missing, f"access log line lacks {sorted(missing)}: {e}"
            assert "plugins" not in e, f"plugins key without plugins: {e}"
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", e["time"]), e
            assert re.fullmatch(r"127\.0\.0\.1:\d+", e["client"] or ""), e
            assert e["alpn"] == "h2" and str(e["tls_version"]).startswith("TLS"), e
            assert e["sni"] == e["authority"] == e["zone"], e
            assert e["method"] == "POST" and e["status"] == 200 and e["grpc_service"] == "demo.Echo", e
            assert e["path"] == f"/demo.Echo/{e['grpc_method']}", e
            assert e["request_bytes"] > 0 and e["request_messages"] <= 1, e
            assert isinstance(e["duration_ms"], (int, float)) and 0 <= e["duration_ms"] < 10000, e
            if e["zone"] == "example.com" and e["path"] == UNARY and e["grpc_status"] == 0:
                kinds["unary"] += 1
                assert e["request_bytes"] == e["response_bytes"] == 5 + 7, e
                assert e["request_messages"] == e["response_messages"] == 1, e
                assert e["upstream"] == st.echo.address and e["reason"] is None, e
            elif e["zone"] == "example.com" and e["path"] == FAIL and e["grpc_status"] == 5:
                kinds["fail"] += 1
                assert e["response_messages"] == 0 and e["request_messages"] == 1, e
                assert e["upstream"] == st.echo.address and e["reason"] is None, e
            elif e["zone"] == "nogrpc.test" and e["grpc_status"] == 12:
                kinds["refused"] += 1
                assert e["reason"] == "grpc_disabled" and e["upstream"] is None, e
                assert e["response_bytes"] == 0, e
            else:
                raise AssertionError(f"unexpected access log line: {e}")
        assert kinds == {"unary": 7, "fail": 3, "refused": 2}, kinds
        with open(r.proxy.out_path, "rb") as f:
            assert f.read() == b"", "access log lines went to stdout although log.access names a file"


def _series(samples, name):
    return "; ".join(f"{n}{ls} {v:g}" for n, ls, v in samples if n == name) or f"no {name} samples"


def test_access_log_times(st):
    """Each line's time is the wall clock when the call ended, to the millisecond (UTC), also when
    the calls cross several seconds: the date part is kept per second and must move on."""
    import datetime

    with running(st, "times", access_log=True) as r:
        ch = st.h2c_channel()
        spans = []
        for i in range(8):
            before = time.time()
            assert ch.unary_unary(UNARY)(b"t%d" % i, timeout=10) == b"t%d" % i
            spans.append((before, time.time()))
            time.sleep(0.35)
        assert pclib.wait_until(lambda: len(pclib.read_json_lines(r.access_path)) == 8, 3)
        lines = sorted(pclib.read_json_lines(r.access_path), key=pclib.request_seq)
        for (before, after), e in zip(spans, lines):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]), e["time"]
            t = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            assert before - 0.002 <= t <= after + 0.002, f"logged {e['time']} for a call in [{before:.3f}, {after:.3f}]"
        assert len({e["time"][:19] for e in lines}) >= 2, [e["time"] for e in lines]


def test_sigusr1_reopens_access_log(st):
    with running(st, "rotate", access_log=True) as r:
        ch = st.h2c_channel()
        for payload in (b"one", b"two"):
            assert ch.unary_unary(UNARY)(payload, timeout=10) == payload
        assert pclib.wait_until(lambda: len(pclib.read_json_lines(r.access_path)) == 2, 3), \
            pclib.read_json_lines(r.access_path)
        rotated = r.access_path + ".1"
        os.rename(r.access_path, rotated)
        r.signal(signal.SIGUSR1)
        r.wait_count("access log reopened", 1)
        assert ch.unary_unary(UNARY)(b"three!", timeout=10) == b"three!"
        assert pclib.wait_until(lambda: len(pclib.read_json_lines(r.access_path)) >= 1, 3), \
            f"no new access log at {r.access_path} after SIGUSR1"
        time.sleep(0.2)
        new = pclib.read_json_lines(r.access_path)
        assert len(new) == 1 and new[0]["request_bytes"] == 5 + 6, f"new file: {new}"
        old = pclib.read_json_lines(rotated)
        assert [e["request_bytes"] for e in old] == [5 + 3, 5 + 3], f"rotated file: {old}"

        # Reopening a file that was not moved appends to it.
        r.signal(signal.SIGUSR1)
        r.wait_count("access log reopened", 2)
        assert ch.unary_unary(UNARY)(b"four", timeout=10) == b"four"
        assert pclib.wait_until(lambda: len(pclib.read_json_lines(r.access_path)) == 2, 3), \
            f"after a second SIGUSR1: {pclib.read_json_lines(r.access_path)}"
        assert len(pclib.read_json_lines(rotated)) == 2


# --- admin endpoint -----------------------------------------------------------------------------


def test_admin_healthz_and_unknown_path(st):
    with running(st, "admin", admin=True) as r:
        status, body = pclib.http_get(r.admin_port, "/healthz")
        assert status == 200 and body.strip() == "ok", (status, body)
        status, body = pclib.http_get(r.admin_port, "/no-such-page")
        assert status == 404, (status, body)
        status, body = pclib.http_get(r.admin_port, "/metrics")
        assert status == 200 and "# TYPE pc_requests_total counter" in body, (status, body[:300])
        # The admin port is not a gRPC listener.
        assert st.tls_channel().unary_unary(UNARY)(b"still", timeout=10) == b"still"



def test_admin_port_taken_is_a_failed_start(st):
    """An admin address that cannot be bound stops the start, as a listener's would: the edge says
    which address and why, exits non-zero, and never reports itself started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = pclib.make_config(tls_port=pclib.free_port(), h2c_port=None, origins=origins(st), zones=zones(),
                                extra={"admin": {"address": f"127.0.0.1:{port}"}})
        cfg_path = st.write_config(cfg, name="admin-taken.yaml")
        err_path = os.path.join(st.dir, "admin-taken.stderr")
        with open(err_path, "wb") as err:
            proc = pclib.spawn([pclib.BINARY, "run", "-c", cfg_path], stdout=subprocess.DEVNULL, stderr=err)
        try:
            code = proc.wait(timeout=30)
        finally:
            pclib.stop_process(proc, timeout=15)
        log = pclib.tail(err_path)
        assert code == 1, f"exit {code}\n{log}"
        assert f"admin: cannot listen on 127.0.0.1:{port}: address already in use: not starting" in log, log
        assert "started with" not in log, log

if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
