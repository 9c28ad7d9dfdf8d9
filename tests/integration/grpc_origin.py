#!/usr/bin/python3
"""A real gRPC origin (grpcio) for the integration tests and the demo.

Service demo.Echo, raw bytes in and out (no protobuf code generation); requests that carry
parameters are JSON:

  Unary         echoes the request. Request metadata whose key starts with "x-echo" comes back
                as initial metadata under the same key and as trailing metadata
                "x-echo-trailer-<rest of key>" (x-echo-foo-bin -> x-echo-trailer-foo-bin).
  ClientStream  reads every message; replies {"count": n, "bytes": b, "sha256": hex of all
                messages concatenated}.
  ServerStream  request {"count": n, "size": s}; yields n messages, message i being
                server_stream_message(i, s) (deterministic, so a client can check each one).
  Bidi          echoes each message as it arrives.
  Repeat        server streaming, any message type: sends the request back x-repeat times (request
                metadata, default 3), then fails with x-fail-code and x-fail-message (percent-
                decoded) when those are given (trailers-only when x-repeat is 0).
  Fail          request {"code": 7 | "PERMISSION_DENIED", "message": "...", "details": "text" or
                "details_b64": "...", "trailers": {"k": "v"}, "send_headers": false}; fails the
                call with that status. details go in trailing metadata grpc-status-details-bin;
                without send_headers the response is trailers-only.
  Sleep         request {"ms": n, "tag": any}; sleeps, stopping early when the call is cancelled
                or its deadline passes. Replies {"slept_ms", "cancelled", "time_remaining", "tag"}.
  Stats         request {} or {"reset": true}; replies JSON counters: calls and messages per
                method, cancellations (total and per method), time_remaining seen at the start
                of the last call (null without a deadline), metadata of the last call.

  grpc_origin.py --port N [--tls CERT KEY] [--max-message BYTES] [--max-concurrent-streams N]
                 [--compression gzip|deflate]

--max-concurrent-streams advertises that SETTINGS_MAX_CONCURRENT_STREAMS to clients; --compression
compresses every response message with that algorithm. Stats also reports, per method, how many
calls are active now ("active") and the most that were ever active at once ("max_active").

--port 0 picks a free port; the port is printed as "PORT <n>" on stdout either way.
"""

import argparse
import base64
import hashlib
import json
import signal
import sys
import threading
import time
import urllib.parse
from concurrent import futures

import grpc

SERVICE = "demo.Echo"
METHODS = ("Unary", "ClientStream", "ServerStream", "Bidi", "Fail", "Sleep", "Stats", "Repeat")


def server_stream_message(i, size):
    """Message i of a ServerStream reply: a repeating pattern seeded by i, exactly size bytes."""
    seed = hashlib.sha256(b"portcullis-%d" % i).digest()
    return (seed * (size // len(seed) + 1))[:size]


def status_code(value):
    """7, "7" or "PERMISSION_DENIED" -> grpc.StatusCode."""
    if isinstance(value, str) and not value.isdigit():
        return grpc.StatusCode[value.upper()]
    number = int(value)
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    raise ValueError(f"unknown status code {value!r}")


def metadata_json(metadata):
    """Metadata as [[key, value]] with -bin values base64-encoded."""
    out = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        out.append([key, value])
    return out


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.calls = {m: 0 for m in METHODS}
        self.messages = {m: 0 for m in METHODS}
        self.cancelled = {m: 0 for m in METHODS}
        self.completed = {m: 0 for m in METHODS}
        self.last_time_remaining = None
        self.time_remaining = {}
        self.last_metadata = []
        self.last_method = None
        self.resets = getattr(self, "resets", -1) + 1
        self.active = {m: 0 for m in METHODS}
        self.max_active = {m: 0 for m in METHODS}

    def snapshot(self):
        return {
            "calls": dict(self.calls),
            "messages": dict(self.messages),
            "cancellations": sum(self.cancelled.values()),
            "cancelled": dict(self.cancelled),
            "completed": dict(self.completed),
            "last_time_remaining": self.last_time_remaining,
            "time_remaining": dict(self.time_remaining),
            "last_method": self.last_method,
            "last_metadata": self.last_metadata,
            "active": dict(self.active),
            "max_active": dict(self.max_active),
        }


STATS = Stats()


def time_remaining(context):
    left = context.time_remaining()
    if left is None or left > 1e8:  # no deadline
        return None
    return round(left, 4)


class Call:
    """Per-call bookkeeping: counts the call and its messages, and notices cancellation."""

    def __init__(self, method, context):
        self.method = method
        self.context = context
        self.done = False
        self.time_remaining = time_remaining(context)
        with STATS.lock:
            STATS.calls[method] += 1
            if method != "Stats":
                STATS.last_method = method
                STATS.last_metadata = metadata_json(context.invocation_metadata())
                STATS.last_time_remaining = self.time_remaining
                STATS.time_remaining[method] = self.time_remaining
            STATS.active[method] += 1
            STATS.max_active[method] = max(STATS.max_active[method], STATS.active[method])
            self.resets = STATS.resets  # a reset in between must not drive "active" negative
        context.add_callback(self._terminated)

    def message(self):
        with STATS.lock:
            STATS.messages[self.method] += 1

    def finish(self):
        """The handler reached its normal end (or a deliberate error status)."""
        self.done = True

    def _terminated(self):
        # grpcio marks a call the client (or a proxy in between) cancelled; fall back to "the
        # handler never reached its end" if that private state is not there.
        state = getattr(getattr(self.context, "_state", None), "client", None)
        cancelled = state == "cancelled" if state is not None else not self.done
        with STATS.lock:
            if cancelled:
                STATS.cancelled[self.method] += 1
            else:
                STATS.completed[self.method] += 1
            if self.resets == STATS.resets:
                STATS.active[self.method] -= 1


def unary(request, context):
    call = Call("Unary", context)
    call.message()
    echoed = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-echo")]
    if echoed:
        context.send_initial_metadata(echoed)
        trailers = []
        for key, value in echoed:
            rest = key[len("x-echo"):].lstrip("-")
            trailers.append(("x-echo-trailer-" + rest, value))
        context.set_trailing_metadata(trailers)
    call.finish()
    return request


def client_stream(request_iterator, context):
    call = Call("ClientStream", context)
    digest = hashlib.sha256()
    count = 0
    size = 0
    for message in request_iterator:
        call.message()
        digest.update(message)
        count += 1
        size += len(message)
    call.finish()
    return json.dumps({"count": count, "bytes": size, "sha256": digest.hexdigest()}).encode()


def server_stream(request, context):
    call = Call("ServerStream", context)
    call.message()
    params = json.loads(request or b"{}")
    count = int(params.get("count", 1))
    size = int(params.get("size", 16))
    for i in range(count):
        yield server_stream_message(i, size)
    call.finish()


def repeat(request, context):
    call = Call("Repeat", context)
    call.message()
    md = dict(context.invocation_metadata())
    for _ in range(int(md.get("x-repeat", "3"))):
        yield request
    call.finish()
    if "x-fail-code" in md:
        # Percent-decoded: browsers can only send ASCII header values.
        context.abort(status_code(md["x-fail-code"]), urllib.parse.unquote(md.get("x-fail-message", "")))


def bidi(request_iterator, context):
    call = Call("Bidi", context)
    for message in request_iterator:
        call.message()
        yield message
    call.finish()


def fail(request, context):
    call = Call("Fail", context)
    call.message()
    params = json.loads(request or b"{}")
    code = status_code(params.get("code", "INTERNAL"))
    trailers = [(k, v.encode() if k.endswith("-bin") else v) for k, v in params.get("trailers", {}).items()]
    if "details_b64" in params:
        trailers.append(("grpc-status-details-bin", base64.b64decode(params["details_b64"])))
    elif "details" in params:
        trailers.append(("grpc-status-details-bin", params["details"].encode()))
    if params.get("send_headers"):
        context.send_initial_metadata([("x-origin-headers", "sent")])
    if trailers:
        context.set_trailing_metadata(trailers)
    call.finish()
    context.abort(code, params.get("message", ""))


def sleep(request, context):
    call = Call("Sleep", context)
    call.message()
    params = json.loads(request or b"{}")
    total = int(params.get("ms", 1000)) / 1000.0
    start = time.monotonic()
    cancelled = False
    while time.monotonic() - start < total:
        if not context.is_active():
            cancelled = True
            break
        time.sleep(min(0.01, max(0.0, total - (time.monotonic() - start))))
    # A full sleep reports what was asked (timer jitter is not the caller's business).
    slept = int((time.monotonic() - start) * 1000) if cancelled else int(params.get("ms", 1000))
    if not cancelled:
        call.finish()
    return json.dumps({"slept_ms": slept, "cancelled": cancelled, "time_remaining": call.time_remaining,
                       "tag": params.get("tag")}).encode()


def stats(request, context):
    call = Call("Stats", context)
    params = json.loads(request or b"{}")
    with STATS.lock:
        snapshot = STATS.snapshot()
        if params.get("reset"):
            STATS.reset()
    call.finish()
    return json.dumps(snapshot).encode()


def handler():
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Stats": grpc.unary_unary_rpc_method_handler(stats),
            "Repeat": grpc.unary_stream_rpc_method_handler(repeat),
        },
    )


def main():
    parser = argparse.ArgumentParser(description="gRPC origin for Portcullis tests (service demo.Echo)")
    parser.add_argument("--port", type=int, default=50051, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve TLS with this certificate")
    parser.add_argument("--max-message", type=int, default=16 << 20, metavar="BYTES",
                        help="largest message sent or received (default 16 MiB)")
    parser.add_argument("--workers", type=int, default=256, help="handler threads (one per active call)")
    parser.add_argument("--max-concurrent-streams", type=int, metavar="N",
                        help="advertise SETTINGS_MAX_CONCURRENT_STREAMS N (default: grpcio's, unlimited)")
    parser.add_argument("--compression", choices=("gzip", "deflate"),
                        help="compress every response message (default: none)")
    args = parser.parse_args()

    options = [
        ("grpc.max_receive_message_length", args.max_message),
        ("grpc.max_send_message_length", args.max_message),
        ("grpc.so_reuseport", 0),
    ]
    if args.max_concurrent_streams is not None:
        options.append(("grpc.max_concurrent_streams", args.max_concurrent_streams))
    compression = {None: None, "gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}[args.compression]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers), options=options,
                         maximum_concurrent_rpcs=None, compression=compression)
    server.add_generic_rpc_handlers((handler(),))
    address = f"{args.host}:{args.port}"
    if args.tls:
        with open(args.tls[0], "rb") as f:
            cert = f.read()
        with open(args.tls[1], "rb") as f:
            key = f.read()
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        print(f"grpc_origin: cannot listen on {address}", file=sys.stderr, flush=True)
        sys.exit(1)
    server.start()
    print(f"PORT {port}", flush=True)
    print(f"grpc_origin: demo.Echo on {args.host}:{port} ({'tls' if args.tls else 'h2c'})", file=sys.stderr,
          flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    server.stop(grace=0.5).wait()


if __name__ == "__main__":
    main()
