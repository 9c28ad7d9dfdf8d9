#!/usr/bin/python3
"""The edge as the Debian package runs it, driven by the package's own files against a real edge:
the systemd unit (packaging/portcullis.service: its ExecReload command lines, run as systemd runs
them, with $MAINPID; the notification protocol of Type=notify) and the log rotation
(packaging/portcullis.logrotate, run by the real logrotate under load).

The unit's and logrotate's paths are those of an installed system; the tests substitute the
binary under test, their config file and their log directory, and say so where they do."""

import gzip
import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time

import grpc

import pclib
from pclib import describe, origin_conf, rpc_error, zone_conf

UNARY = "/demo.Echo/Unary"
UNIT = os.path.join(pclib.SOURCE_DIR, "packaging", "portcullis.service")
LOGROTATE = os.path.join(pclib.SOURCE_DIR, "packaging", "portcullis.logrotate")
INSTALLED_BINARY = "/usr/bin/portcullis"
INSTALLED_CONFIG = "/etc/portcullis/portcullis.yaml"


def setup():
    st = pclib.Stack("service")
    st.echo = st.start_origin("echo")
    return st


# --- helpers ------------------------------------------------------------------------------------


def unit_service_section(path=UNIT):
    """[Service] of a unit file as a list of (key, value), in order (keys repeat: ExecReload)."""
    out, section = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                key, _, value = line.partition("=")
                out.append((key.strip(), value.strip()))
    return out


def unit_commands(key):
    return [v for k, v in unit_service_section() if k == key]


def localize(cmdline, config_path, mainpid=None):
    """A unit command line as argv with the installed paths swapped for the binary under test and the
    test's config, and $MAINPID expanded as systemd does."""
    assert cmdline[:1] not in "-@:+!", f"unexpected systemd command prefix in {cmdline!r}"
    argv = []
    for word in shlex.split(cmdline):
        if word == INSTALLED_BINARY:
            word = pclib.BINARY
        elif word == INSTALLED_CONFIG:
            word = config_path
        elif word in ("$MAINPID", "${MAINPID}"):
            assert mainpid is not None
            word = str(mainpid)
        argv.append(word)
    return argv


def exec_reload(config_path, mainpid):
    """Runs the unit's ExecReload lines in order, stopping at the first that fails, as systemd does.
    Returns [(argv, CompletedProcess)] for each line that ran."""
    ran = []
    for line in unit_commands("ExecReload"):
        argv = localize(line, config_path, mainpid)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        ran.append((argv, r))
        if r.returncode != 0:
            break
    return ran


class NotifySocket:
    """The service manager's end of Type=notify: a datagram socket whose path goes in NOTIFY_SOCKET."""

    def __init__(self, directory):
        self.path = os.path.join(directory, f"notify-{os.getpid()}-{time.monotonic_ns()}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def receive(self, timeout):
        """The next message as a dict of its assignments; AssertionError when none comes in time."""
        self.sock.settimeout(timeout * pclib.TIME_SCALE)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            raise AssertionError(f"no notification within {timeout} s") from None
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def pending(self):
        """Messages already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return out

    def close(self):
        self.sock.close()
        os.unlink(self.path)


class Edge:
    """`portcullis run` started the way the unit's ExecStart starts it, with NOTIFY_SOCKET set."""

    def __init__(self, st, name, cfg, notify):
        self.st = st
        self.config_path = st.write_config(cfg, name=f"{name}.yaml")
        self.err_path = os.path.join(st.dir, f"{name}.stderr")
        (start,) = unit_commands("ExecStart")
        argv = localize(start, self.config_path)
        assert argv[1:] == ["run", "-c", self.config_path], f"unexpected ExecStart: {start}"
        env = dict(os.environ, NOTIFY_SOCKET=notify.path)
        with open(self.err_path, "wb") as err:
            self.proc = pclib.spawn(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)

    def stderr(self):
        return pclib.tail(self.err_path, 100000)

    def stop(self):
        return pclib.stop_process(self.proc, timeout=15)


def base_config(st, tls_port, h2c_port, flip_grpc=True, extra=None):
    zones = pclib.default_zones("echo") + [zone_conf("flip.test", ["flip.test"], "echo", grpc=flip_grpc)]
    return pclib.make_config(tls_port=tls_port, h2c_port=h2c_port, origins=[origin_conf("echo", st.echo.port)],
                             zones=zones, extra=dict({"drain_timeout_ms": 3000}, **(extra or {})))


# --- the unit -----------------------------------------------------------------------------------


def test_unit_commands_name_the_installed_config():
    """ExecStart and the ExecReload check read the same file, and the reload checks before it signals."""
    start = unit_commands("ExecStart")
    reload = unit_commands("ExecReload")
    assert start == [f"{INSTALLED_BINARY} run -c {INSTALLED_CONFIG}"], start
    assert len(reload) == 2, reload
    assert shlex.split(reload[0]) == [INSTALLED_BINARY, "check", "-c", INSTALLED_CONFIG], reload
    assert shlex.split(reload[1])[-2:] == ["-HUP", "$MAINPID"] and "kill" in reload[1], reload
    section = dict(unit_service_section())
    assert section["Type"] == "notify", section


def test_notify_and_exec_reload_keep_running_config(st):
    """Under the unit's own command lines: READY=1 comes once the listeners accept; ExecReload with a
    broken file fails at the check, SIGHUP is never sent and calls still see the running config; with
    a valid file it reloads (RELOADING=1 then READY=1) and calls see the new one; SIGTERM sends
    STOPPING=1 and the edge exits 0."""
    tls_port, h2c_port = pclib.free_port(), pclib.free_port()
    good = base_config(st, tls_port, h2c_port)
    notify = NotifySocket(st.dir)
    edge = Edge(st, "unit", good, notify)
    try:
        ready = notify.receive(30)
        assert ready == {"READY": "1"}, ready
        # READY=1 means serving: no waiting for the ports here.
        assert pclib.port_open(tls_port) and pclib.port_open(h2c_port), "READY=1 before the listeners accept"
        flip = st.h2c_channel("flip.test", port=h2c_port)
        assert flip.unary_unary(UNARY)(b"before", timeout=10) == b"before"
        tls = st.tls_channel("example.com", port=tls_port)
        assert tls.unary_unary(UNARY)(b"tls", timeout=10) == b"tls"

        # A broken file: flip.test's gRPC switched off and a zone naming an origin that does not exist.
        broken = base_config(st, tls_port, h2c_port, flip_grpc=False)
        broken["zones"].append(zone_conf("bad", ["bad.test"], "no-such-origin"))
        st.write_config(broken, name="unit.yaml")
        ran = exec_reload(edge.config_path, edge.proc.pid)
        assert len(ran) == 1, f"ExecReload went past a failed check: {[a for a, _ in ran]}"
        argv, r = ran[0]
        assert argv[1] == "check" and r.returncode == 2, (argv, r.returncode, r.stdout, r.stderr)
        assert "no-such-origin" in r.stderr and "unit.yaml" in r.stderr, f"the check does not say what is wrong: " \
                                                                         f"{r.stderr}"
        time.sleep(0.3)
        assert edge.proc.poll() is None, "the edge exited"
        assert "SIGHUP" not in edge.stderr(), f"SIGHUP reached the edge after a failed check:\n{edge.stderr()[-2000:]}"
        assert notify.pending() == [], "the edge announced a reload that was never asked for"
        # A real call: flip.test still has gRPC on, as in the running config.
        assert flip.unary_unary(UNARY)(b"still", timeout=10) == b"still"
        assert st.h2c_channel("flip.test", port=h2c_port).unary_unary(UNARY)(b"new conn", timeout=10) == b"new conn"

        # A valid change goes through both lines and takes effect.
        st.write_config(base_config(st, tls_port, h2c_port, flip_grpc=False), name="unit.yaml")
        ran = exec_reload(edge.config_path, edge.proc.pid)
        assert [r.returncode for _, r in ran] == [0, 0], [(a, r.returncode, r.stderr) for a, r in ran]
        reloading = notify.receive(30)
        assert reloading.get("RELOADING") == "1" and int(reloading.get("MONOTONIC_USEC", "0")) > 0, reloading
        assert notify.receive(30) == {"READY": "1"}
        assert "configuration reloaded" in edge.stderr(), edge.stderr()[-2000:]
        err = rpc_error(st.h2c_channel("flip.test", port=h2c_port).unary_unary(UNARY), b"after", timeout=10)
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED, f"after the reload: {describe(err)}"

        # A broken file that gets past the check (an edit between check and SIGHUP) is still refused
        # by the edge, which tells the manager it is ready again on the old config.
        st.write_config(broken, name="unit.yaml")
        edge.proc.send_signal(signal.SIGHUP)
        assert notify.receive(30).get("RELOADING") == "1" and notify.receive(30) == {"READY": "1"}
        assert "reload refused" in edge.stderr()
        err = rpc_error(st.h2c_channel("flip.test", port=h2c_port).unary_unary(UNARY), b"after", timeout=10)
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED, f"after the refused SIGHUP: {describe(err)}"
    finally:
        for ch in st.channels:
            ch.close()
        st.channels.clear()
        code = edge.stop()
        try:
            stopping = notify.receive(5)
        finally:
            notify.close()
    assert code == 0, f"exit {code} after SIGTERM:\n{edge.stderr()[-2000:]}"
    assert stopping == {"STOPPING": "1"}, stopping


# --- log rotation -------------------------------------------------------------------------------


def logrotate_config(log_dir, pid):
    """packaging/portcullis.logrotate for this test: its log glob pointed at log_dir, `create` without
    the portcullis user (which this machine may not have), and the postrotate signal sent to the
    edge's pid instead of through systemctl. Every other directive as shipped."""
    with open(LOGROTATE) as f:
        text = f.read()
    assert "/var/log/portcullis/*.log {" in text and "\tcreate 0640 portcullis adm\n" in text, text
    out, in_post = [], False
    for line in text.splitlines():
        s = line.strip()
        if s == "/var/log/portcullis/*.log {":
            line = f"{log_dir}/*.log {{"
        elif s.startswith("create "):
            line = "\tcreate 0640"
        elif s == "postrotate":
            in_post = True
        elif s == "endscript":
            in_post = False
        elif in_post:
            assert "SIGUSR1" in s and "portcullis.service" in s, f"unexpected postrotate command: {s}"
            line = f"\t\tkill -USR1 {pid}"
        out.append(line)
    return "\n".join(out) + "\n"


def test_logrotate_under_load_loses_no_line(st):
    """h2load makes 30000 gRPC calls through the edge while logrotate (the shipped file) rotates the
    access log five times: every call has its line in exactly one of the files, each line whole."""
    h2c_port = pclib.free_port()
    log_dir = os.path.join(st.dir, "logs")
    os.makedirs(log_dir)
    access = os.path.join(log_dir, "access.log")
    cfg = base_config(st, None, h2c_port, extra={"workers": 2, "log": {"access": access, "level": "info"}})
    notify = NotifySocket(st.dir)
    edge = Edge(st, "rotate", cfg, notify)
    rotations = 5
    total = 30000
    try:
        notify.receive(30)
        conf = os.path.join(st.dir, "logrotate.conf")
        with open(conf, "w") as f:
            f.write(logrotate_config(log_dir, edge.proc.pid))
        os.chmod(conf, 0o644)
        state = os.path.join(st.dir, "logrotate.state")

        body = os.path.join(st.dir, "call.bin")
        with open(body, "wb") as f:
            f.write(pclib.grpc_frame(b"rotate-me"))
        load = subprocess.Popen(
            ["h2load", "-n", str(total), "-c", "4", "-m", "8", "-d", body, "-H", "content-type: application/grpc",
             "-H", "te: trailers", f"--connect-to=127.0.0.1:{h2c_port}", f"http://example.com:{h2c_port}{UNARY}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        done = []
        reader = threading.Thread(target=lambda: done.append(load.communicate()[0]), daemon=True)
        reader.start()
        assert pclib.wait_until(lambda: os.path.exists(access) and os.path.getsize(access) > 0, 10), \
            "no access log lines under load"
        rotated = 0
        while rotated < rotations and load.poll() is None:
            r = subprocess.run(["logrotate", "-f", "-s", state, conf], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=60)
            assert r.returncode == 0, f"logrotate failed:\n{r.stdout}"
            rotated += 1
            # The edge reopens from its own loop; one rotation in flight at a time.
            n = rotated
            assert pclib.wait_until(lambda: edge.stderr().count("access log reopened") >= n, 5), \
                edge.stderr()[-2000:]
            time.sleep(0.05)
        reader.join(120 * pclib.TIME_SCALE)
        assert done, "h2load did not finish"
        report = done[0]
        assert load.returncode == 0, f"h2load exited {load.returncode}:\n{report}"
        assert f"requests: {total} total, {total} started, {total} done, {total} succeeded" in report, report
        pclib.log(next((x.strip() for x in report.splitlines() if x.startswith("finished in")), report))
        assert rotated == rotations, f"the load ended after {rotated} rotations: make it longer\n{report}"
    finally:
        code = edge.stop()
        notify.close()
    assert code == 0, f"exit {code} after SIGTERM:\n{edge.stderr()[-2000:]}"

    files = sorted(os.listdir(log_dir))
    # delaycompress: the newest rotated file stays plain (the edge may still have been writing to it),
    # the older ones are compressed.
    expected = ["access.log", "access.log.1"] + [f"access.log.{i}.gz" for i in range(2, rotations + 1)]
    assert files == sorted(expected), files
    lines = []
    for name in files:
        path = os.path.join(log_dir, name)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read().decode()
        assert data.endswith("\n"), f"{name} ends in a partial line"
        got = [json.loads(x) for x in data.splitlines()]
        assert got, f"{name} is empty"
        lines += got
    ids = [e["request_id"] for e in lines]
    assert len(ids) == total, f"{len(ids)} access-log lines for {total} calls (files {files})"
    assert len(set(ids)) == total, "an access-log line appears twice"
    assert all(e["grpc_status"] == 0 and e["path"] == UNARY for e in lines)


def test_failed_reopen_keeps_writing_the_old_file(st):
    """SIGUSR1 when the log's path cannot be opened (its directory moved away): the error is logged
    and lines keep going to the file already open; once the path works again, the next SIGUSR1
    switches to it. No call is without its line."""
    h2c_port = pclib.free_port()
    log_dir = os.path.join(st.dir, "reopen-logs")
    os.makedirs(log_dir)
    access = os.path.join(log_dir, "access.log")
    cfg = base_config(st, None, h2c_port, extra={"log": {"access": access, "level": "info"}})
    notify = NotifySocket(st.dir)
    edge = Edge(st, "reopen", cfg, notify)
    try:
        notify.receive(30)
        ch = st.h2c_channel("example.com", port=h2c_port)
        assert ch.unary_unary(UNARY)(b"one", timeout=10) == b"one"
        moved = log_dir + ".moved"
        os.rename(log_dir, moved)
        edge.proc.send_signal(signal.SIGUSR1)
        assert pclib.wait_until(lambda: "SIGUSR1: access log" in edge.stderr() and "No such file" in edge.stderr(), 5), \
            edge.stderr()[-2000:]
        assert ch.unary_unary(UNARY)(b"two", timeout=10) == b"two"
        os.makedirs(log_dir)
        edge.proc.send_signal(signal.SIGUSR1)
        assert pclib.wait_until(lambda: "access log reopened" in edge.stderr(), 5), edge.stderr()[-2000:]
        assert ch.unary_unary(UNARY)(b"three", timeout=10) == b"three"
    finally:
        for c in st.channels:
            c.close()
        st.channels.clear()
        code = edge.stop()
        notify.close()
    assert code == 0, edge.stderr()[-2000:]
    old = [e["request_bytes"] for e in pclib.read_json_lines(os.path.join(moved, "access.log"))]
    new = [e["request_bytes"] for e in pclib.read_json_lines(access)]
    assert old == [5 + 3, 5 + 3] and new == [5 + 5], (old, new)
