"""gRPC on the wire: length-prefixed message framing, the HTTP/2 headers of a gRPC request, the
base64 of -bin metadata and the sha256 digests the echo origin reports."""

import base64
import hashlib


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


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def b64(data):
    return base64.b64encode(data).decode()
