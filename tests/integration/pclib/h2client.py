"""HTTP/2 clients on the h2 library, for requests grpcio will not send: h2_request() sends headers and
DATA chunks on a fresh connection and returns an H2Result; h2c_unary_calls() makes unary gRPC calls
one after another on one h2c connection from a chosen source address."""

import socket
import ssl
import time


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


def h2c_unary_calls(port, n, source, ua, authority="example.com", gap=0.0):
    """n unary gRPC calls one after another on one h2c connection from address `source`, with this
    user agent (gap seconds between them); their grpc-status values."""
    import h2.config
    import h2.connection
    import h2.events

    from .env import TIME_SCALE
    from .grpcwire import grpc_frame, grpc_request_headers

    sock = socket.create_connection(("127.0.0.1", port), timeout=10 * TIME_SCALE, source_address=(source, 0))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    statuses = []
    try:
        for i in range(n):
            if i and gap:
                time.sleep(gap)
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, grpc_request_headers(authority, scheme="http", extra=[("user-agent", ua)]))
            conn.send_data(sid, grpc_frame(b"hello"), end_stream=True)
            sock.sendall(conn.data_to_send())
            status, done = None, False
            while not done:
                data = sock.recv(65536)
                if not data:
                    raise AssertionError("the edge closed the connection")
                for ev in conn.receive_data(data):
                    if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        status = dict(ev.headers).get("grpc-status", status)
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) and ev.stream_id == sid:
                        done = True
                sock.sendall(conn.data_to_send())
            statuses.append(status)
    finally:
        sock.close()
    return statuses


class SlowReader:
    """One h2c stream read by hand, to hold an edge back with HTTP/2 flow control: pump() takes what
    arrives without granting window; grant(n) acknowledges what was read and opens n more bytes for
    the stream and the connection."""

    def __init__(self, port, headers, body):
        import h2.config
        import h2.connection

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.data = bytearray()
        self.header_blocks = []  # response headers, then trailers: dicts of bytes
        self.unacked = 0
        self.ended = False
        self.reset = None
        self.conn.initiate_connection()  # default windows: 65535 per stream and for the connection
        self.sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.sid, headers)
        self.conn.send_data(self.sid, body, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())

    def pump(self, timeout):
        """Reads what arrives within timeout s; False when nothing did."""
        import h2.events

        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            return False
        assert chunk, f"edge closed the connection after {len(self.data)} bytes"
        for ev in self.conn.receive_data(chunk):
            if isinstance(ev, h2.events.DataReceived):
                self.data += ev.data
                self.unacked += ev.flow_controlled_length
            elif isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                self.header_blocks.append(dict(ev.headers))
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self.reset = ev.error_code
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)
        return True

    def stall(self, limit=10):
        """Reads without granting window until nothing more comes (at most limit s); bytes read."""
        t_end = time.monotonic() + limit
        while self.pump(0.5) and time.monotonic() < t_end:
            pass
        return len(self.data)

    def grant(self, n):
        """Acknowledges what was read, opens n more bytes, and reads until they came or the stream ended."""
        if self.unacked:
            self.conn.acknowledge_received_data(self.unacked, self.sid)
            self.unacked = 0
        self.conn.increment_flow_control_window(n)
        self.conn.increment_flow_control_window(n, stream_id=self.sid)
        self.sock.sendall(self.conn.data_to_send())
        target = len(self.data) + n
        while len(self.data) < target and not self.ended and self.pump(2.0):
            pass

    def close(self):
        self.sock.close()
