#!/usr/bin/python3
"""The Grafana dashboard (docs/grafana/portcullis.json) against a real edge's /metrics: traffic that
makes every kind of series appear (calls on several zones, a WAF block, a bot block, a rate-limit
refusal, an origin that refuses connections, a host no zone serves), then every metric a panel or
a template variable queries must be on /metrics, with a sample for each label matcher of the query
and every label it groups by. A panel that would stay empty fails here."""

import json
import os
import re
import subprocess

import grpc

import pclib
from pclib import origin_conf, rpc_error, zone_conf

DASHBOARD = os.path.join(pclib.SOURCE_DIR, "docs", "grafana", "portcullis.json")
UNARY = "/demo.Echo/Unary"
# PromQL words that are not metric names.
PROMQL = {"sum", "rate", "by", "without", "histogram_quantile", "topk", "label_values", "irate", "increase", "avg",
          "max", "min", "count"}


def setup():
    st = pclib.Stack("dashboard")
    st.echo = st.start_origin("echo")
    return st


def queries(dash):
    """(where, expr) for every target of every panel (rows included) and every query variable."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p['title']!r}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']!r}", q))
    return out


def selectors(expr):
    """(metric, [(label, op, value)]) for each metric selector in a PromQL expression, with the
    dashboard's variables as their 'All' values."""
    expr = expr.replace("$zone", ".*").replace("$__rate_interval", "1m")
    found = []
    for m in re.finditer(r"\b(pc_[a-z0-9_]+)\b(\{([^}]*)\})?", expr):
        matchers = [(k, op, v) for k, op, v in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', m.group(3) or "")]
        found.append((m.group(1), matchers))
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*\(", expr)) - PROMQL
    assert not words, f"unknown function(s) {words} in {expr}"
    return found


def grouping(expr):
    """Label names of every `by (...)` and of label_values(metric, label)."""
    labels = set()
    for g in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in g.split(",") if x.strip()}
    for g in re.findall(r"label_values\(\s*pc_[a-z0-9_]+\s*,\s*(\w+)\s*\)", expr):
        labels.add(g)
    return labels


def matches(sample_labels, matchers):
    for k, op, v in matchers:
        have = sample_labels.get(k, "")
        ok = {"=": have == v, "!=": have != v, "=~": re.fullmatch(v, have) is not None,
              "!~": re.fullmatch(v, have) is None}[op]
        if not ok:
            return False
    return True


def make_traffic(st, tls_port, h2c_port):
    tls = st.tls_channel("example.com", port=tls_port)
    h2c = st.h2c_channel("example.com", port=h2c_port)
    for i in range(5):
        assert tls.unary_unary(UNARY)(b"tls-%d" % i, timeout=10) == b"tls-%d" % i
        assert h2c.unary_unary(UNARY)(b"h2c-%d" % i, timeout=10) == b"h2c-%d" % i
    # The WAF blocks a path traversal in the metadata.
    err = rpc_error(tls.unary_unary(UNARY), b"x", timeout=10,
                    metadata=(("x-file", "../../../../etc/passwd"),))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, pclib.describe(err)
    detect = st.h2c_channel("detect.test", port=h2c_port)  # detect mode: reported, passed
    assert detect.unary_unary(UNARY)(b"x", timeout=10, metadata=(("x-file", "../../../../etc/passwd"),)) == b"x"
    # The rate limit on limited.test: one call a minute.
    limited = st.h2c_channel("limited.test", port=h2c_port)
    assert limited.unary_unary(UNARY)(b"first", timeout=10) == b"first"
    err = rpc_error(limited.unary_unary(UNARY), b"second", timeout=10)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, pclib.describe(err)
    # h2load's TLS fingerprint is a known-bad tool's: refused on bots.test.
    r = subprocess.run(["h2load", "-n", "2", "-c", "1", f"--connect-to=127.0.0.1:{tls_port}",
                        f"https://bots.test:{tls_port}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout
    # An origin that refuses connections, and a host no zone serves.
    err = rpc_error(st.h2c_channel("down.test", port=h2c_port).unary_unary(UNARY), b"x", timeout=10)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, pclib.describe(err)
    err = rpc_error(st.h2c_channel("nobody.test", port=h2c_port).unary_unary(UNARY), b"x", timeout=10)
    assert err.code() != grpc.StatusCode.OK


def test_every_panel_query_has_series(st):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    tls_port, h2c_port, admin_port = pclib.free_port(), pclib.free_port(), pclib.free_port()
    down_port = pclib.free_port()  # nothing listens there
    plugins = [
        {"name": "bot", "config": {"zones": {"bots.test": {"block_below": 30}}}},
        {"name": "modsecurity", "config": {"crs": "/usr/share/modsecurity-crs", "paranoia": 1, "mode": "block",
                                           "zones": {"detect.test": {"mode": "detect"}}}},
        {"name": "ratelimit", "config": {"rules": [
            {"name": "one-a-minute", "zones": ["limited.test"], "key": "client.ip", "calls": 1, "window_s": 60}]}},
    ]
    zones = pclib.default_zones("echo") + [zone_conf(n, [n], "echo") for n in ("limited.test", "bots.test", "detect.test")] + [
        zone_conf("down.test", ["down.test"], "down")]
    cfg_extra = {"admin": {"address": f"127.0.0.1:{admin_port}"}, "plugins": plugins, "workers": 1}
    st.cfg = pclib.make_config(tls_port=tls_port, h2c_port=h2c_port, zones=zones, extra=cfg_extra,
                               origins=[origin_conf("echo", st.echo.port), origin_conf("down", down_port)])
    path = st.write_config(st.cfg, name="dashboard.yaml")
    proxy = pclib.Proxy(path, [tls_port, h2c_port, admin_port], st.dir, name="dashboard")
    st.proxies.append(proxy)
    st.proxy = proxy
    try:
        make_traffic(st, tls_port, h2c_port)
        samples = pclib.scrape_metrics(admin_port)
    finally:
        for ch in st.channels:
            ch.close()
        st.channels.clear()

    by_name = {}
    for name, labels, _value in samples:
        by_name.setdefault(name, []).append(labels)
    problems = []
    qs = queries(dash)
    assert len(qs) >= 15, f"only {len(qs)} queries in the dashboard"
    seen = set()
    for where, expr in qs:
        sels = selectors(expr)
        if not sels:
            problems.append(f"{where}: no pc_ metric in {expr}")
        for metric, matchers in sels:
            seen.add(metric)
            have = by_name.get(metric)
            if not have:
                problems.append(f"{where}: {metric} is not on /metrics")
                continue
            if not any(matches(s, matchers) for s in have):
                problems.append(f"{where}: no {metric} sample matches {matchers}: {have[:5]}")
            for label in grouping(expr):
                if not any(label in s for s in have) and not (label == "le" and metric.endswith("_bucket")):
                    problems.append(f"{where}: {metric} has no label {label!r}")
    assert not problems, "\n".join(problems)
    # What the issue asks the dashboard to show.
    for metric in ("pc_requests_total", "pc_request_duration_seconds_bucket", "pc_waf_total", "pc_waf_fast_path_total",
                   "pc_bot_class_total", "pc_ratelimit_total", "pc_connections_active"):
        assert metric in seen, f"no panel queries {metric}"
