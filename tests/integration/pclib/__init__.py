"""Shared helpers for the Portcullis integration tests, one module per concept:

    env        paths (PC_BINARY, PC_SOURCE_DIR, PC_BUILD_DIR), TIME_SCALE, TEST_TIMEOUT, log, wait_until
    processes  spawn() and the reaper: every process stopped and temp dir removed at the end
    net        free_port, port_open, wait_port
    certs      gen_certs (scripts/gen-certs)
    config     the YAML emitter and the config dict: make_config, origin_conf, zone_conf, run_check
    origins    Origin and PortOrigin (grpc_origin.py), LoopbackServer, StubH2Origin
    proxy      Proxy: `portcullis run`, and what its exit says
    redis      Redis: a real redis-server on a free loopback port
    stack      Stack: what a test file's setup() builds and its tests get as `st`
    stack_clients  real gRPC / HTTP/2 client stacks (grpcio, C++, grpc-go, grpc-js, Chromium, curl, h2load,
               Python h2), each making one call with a chosen User-Agent (import pclib.stack_clients)
    channels   grpcio channels to the proxy, rpc_error, describe
    grpcwire   gRPC message framing and request headers, b64, sha256
    h2client   h2_request: one request on the h2 library
    rawh2      HTTP/2 frames byte by byte, and RawH2
    memory     RSS of a process, RssWatch, binary_sanitized
    load       HonestClient: checked background calls
    tools      curl, openssl s_client
    metrics    the admin endpoint: http_get, /metrics parsed
    logs       tail, JSON-lines access logs
    runner     main(): a test file run on its own (under pytest)

Everything here runs real processes on 127.0.0.1: the proxy under test (PC_BINARY), the grpcio
origin (grpc_origin.py), curl and openssl.

The tests run under pytest (tests/integration/conftest.py): a test file defines setup(), which
returns the Stack its tests get as the `st` argument, and test_* functions that run in the order
they are written. `python3 -m pytest tests/integration/test_foo.py -k test_a` runs one test, and so
does `python3 tests/integration/test_foo.py test_a` (pclib.main).

Everything is re-exported here: `import pclib` and `from pclib import ...` see one namespace.
"""

from .certs import gen_certs
from .channels import (authority_host, channel_options, describe, h2c_channel, replies_until_error, rpc_error,
                       tls_channel)
from .config import (config_style, config_text, default_zones, make_config, origin_conf, run_check, to_yaml,
                     zone_conf)
from .env import (BINARY, BUILD_DIR, GEN_CERTS, HERE, MAX_MESSAGE, ORIGIN_SCRIPT, PYTHON, SOURCE_DIR, TEST_TIMEOUT,
                  TIME_SCALE, log, wait_until)
from .grpcwire import b64, grpc_frame, grpc_messages, grpc_request_headers, sha256
from .h2client import H2Result, SlowReader, h2_request, h2c_unary_calls
from .load import HonestClient
from .logs import json_lines_matching, read_json_lines, request_seq, tail
from .memory import RssWatch, binary_sanitized, proc_status_kib, rss_mib
from .metrics import http_get, metric_sum, parse_metrics, scrape_metrics
from .net import free_port, port_open, wait_port
from .origins import LoopbackServer, Origin, PortOrigin, StubH2Origin
from .processes import _cleanup, _on_signal, kill_all, make_tmpdir, remove_tmpdirs, spawn, stop_process
from .proxy import Proxy
from .redis import Redis
from .rawh2 import (H2_ACK, H2_CONTINUATION, H2_DATA, H2_END_HEADERS, H2_END_STREAM, H2_ERROR_NAMES, H2_GOAWAY,
                    H2_HEADERS, H2_PING, H2_PREFACE, H2_PRIORITY, H2_PUSH_PROMISE, H2_RST_STREAM, H2_SETTINGS,
                    H2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW_UPDATE, RawH2, h2_data, h2_error_name, h2_frame,
                    h2_ping, h2_priority, h2_rst_stream, h2_settings, h2_window_update)
from .runner import main
from .stack import Stack
from .tools import curl, s_client
