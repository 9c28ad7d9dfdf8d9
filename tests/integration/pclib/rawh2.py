"""HTTP/2 byte by byte: frame builders (h2_frame, h2_settings, ...) and RawH2, a hand-written
client that sends what a conforming library refuses to (floods, resets, endless CONTINUATION) and
records what the server answers. Used by test_attacks.py and test_faults.py."""

import socket
import ssl
import time

from .env import TIME_SCALE

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
