"""grpcio clients of the proxy: channels (TLS with a checked certificate, or h2c) and helpers for
calls expected to fail."""

from .env import MAX_MESSAGE


def authority_host(authority):
    if authority.startswith("["):
        return authority[1:].split("]")[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


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
