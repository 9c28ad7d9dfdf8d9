"""Origins the proxy forwards to: grpc_origin.py on a free port (Origin) or a chosen one
(PortOrigin, to be killed and brought back), and scripted peers on loopback (LoopbackServer, and
StubH2Origin, an h2c server that records requests and by default never answers)."""

import json
import os
import re
import socket
import subprocess
import threading
import time

from .channels import channel_options
from .env import MAX_MESSAGE, ORIGIN_SCRIPT, PYTHON
from .logs import tail
from .net import wait_port
from .processes import spawn, stop_process


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

    def __init__(self, respond=None, keep_body=False, respond_on_end=False, take_no_data=False):
        self.respond = respond  # callable(conn, stream_id, headers) or None to hang
        self.respond_on_end = respond_on_end  # call respond once the request ended, not at its headers
        self.keep_body = keep_body  # also keep each request's bytes (req["body"]), for grpc_messages()
        self.take_no_data = take_no_data  # never give window back: the sender stalls after 64 KiB
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
                        if not self.take_no_data:
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
