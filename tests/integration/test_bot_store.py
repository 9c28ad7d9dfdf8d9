#!/usr/bin/python3
"""The bot plugin's behaviour signals counted in a store: with two workers and the (default) local store,
one client's calls on both workers count together, so the rate signal fires once the client passes the
limit, not twice the limit; two edges sharing one real redis-server (started here on a free loopback port)
push the rate signal on both once the fleet's total passes the limit, which neither edge's own share does,
and Redis holds only digests; with Redis stopped, calls are still answered and scored on the edge's own
counts (whatever on_error says); and the store's config errors."""

import re
import time

import pclib
from pclib import origin_conf, zone_conf

SCALE = pclib.TIME_SCALE
GRPC_UA = "grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)"
RATE_LIMIT = 20


def setup():
    st = pclib.Stack("bot-store")
    st.start_origin("echo")
    st.redis = pclib.Redis(st.dir)
    st.origins_conf = [origin_conf("echo", st.origins["echo"].port)]
    st.zones_conf = pclib.default_zones("echo") + [zone_conf("api", ["api.example.com"], "echo")]
    return st


def bot_config(**more):
    # The shipped rules; a minute's rate window, so that the whole test is inside one.
    cfg = {"rate_window_s": 60, "rate_limit": RATE_LIMIT}
    cfg.update(more)
    return cfg


def redis_store(st, **more):
    return st.redis.store(**more)


def edge(st, name, config, workers=2):
    """One more Portcullis with the bot plugin; returns it with .port."""
    return st.start_edge(name, [{"name": "bot", "config": config}], st.origins_conf, st.zones_conf,
                         workers=workers)


def calls(port, n, source, gap=0.0):
    """n unary gRPC calls one after another on one h2c connection from `source` (gap seconds between
    them); their grpc-status values."""
    return pclib.h2c_unary_calls(port, n, source, GRPC_UA, gap=gap)


def from_ip(ip):
    return lambda l: (l.get("client") or "").rsplit(":", 1)[0] == ip


def lines_of(p, ip, count):
    """The access-log lines of ip's calls on edge p, in the order they were made."""
    lines = pclib.json_lines_matching(p.out_path, from_ip(ip), count, 10)
    return sorted(lines, key=lambda l: (l["request_id"].split("-")[0], pclib.request_seq(l)))


def rate(line):
    """The rate signal's count in a line's bot.signals, or None when it did not fire."""
    signals = ((line.get("plugins") or {}).get("bot.signals") or "").split(",")
    got = [int(s[5:]) for s in signals if re.fullmatch(r"rate:\d+", s)]
    return got[0] if got else None


def worker_of(line):
    return line["request_id"].split("-")[0]


# --- local store: one table for the process ---------------------------------------------------------


def test_local_store_counts_calls_on_every_worker(st):
    p = edge(st, "local", bot_config(), workers=2)
    ip = "127.0.0.21"
    # Connections until both workers served some of the client's calls, at least 30 calls in all: each
    # worker sees fewer than all of them.
    made = 0
    while True:
        assert calls(p.port, 3, ip) == ["0"] * 3
        made += 3
        lines = pclib.json_lines_matching(p.out_path, from_ip(ip), made, 10)
        per_worker = {}
        for l in lines:
            per_worker[worker_of(l)] = per_worker.get(worker_of(l), 0) + 1
        if made >= 30 and len(per_worker) == 2:
            break
        assert made < 90, f"every connection went to one worker: {per_worker}"
    # The request ids of one worker are in the order its calls were made; across workers, the calls were
    # made one after another, so the n-th call's estimate counts n calls: the rate values reach `made`,
    # which no single worker's count would.
    rates = sorted(r for r in (rate(l) for l in lines) if r is not None)
    assert rates, f"no call had the rate signal after {made} calls on two workers ({per_worker})"
    assert max(rates) > max(per_worker.values()), \
        f"the rate signal counted one worker's calls only: rates {rates}, calls per worker {per_worker}"
    assert max(rates) >= made - 1, (rates, made)
    # It fires at the limit: every call after the 20th (a call or two fewer if a window boundary fell in).
    assert len(rates) >= made - RATE_LIMIT - 2, (rates, made)
    st.stop_edges(p)


# --- Redis: one count for the fleet ----------------------------------------------------------------


def test_two_edges_share_counts_in_redis(st):
    st.redis.cli("FLUSHALL")
    cfg = bot_config(store=redis_store(st))
    a, b = edge(st, "fleet-a", cfg), edge(st, "fleet-b", cfg)
    ip = "127.0.0.22"
    # 12 calls on each edge, alternating: the first 8 of each (16 in the fleet) under the limit of 20 ...
    for _ in range(4):
        for p in (a, b):
            assert calls(p.port, 2, ip) == ["0"] * 2
    for p in (a, b):
        early = lines_of(p, ip, 8)
        assert all(rate(l) is None for l in early), [l["plugins"]["bot.signals"] for l in early]
    # ... 4 more on each (24 in the fleet) ...
    for _ in range(2):
        for p in (a, b):
            assert calls(p.port, 2, ip) == ["0"] * 2
    before = {p.name: {l["request_id"] for l in lines_of(p, ip, 12)} for p in (a, b)}
    # ... the last counts flushed (every 100 ms) and answered ...
    time.sleep(0.3 * SCALE)
    # ... then 3 more on each edge on one connection (so one worker), 150 ms apart: 15 per edge, under the
    # limit, 30 in the fleet.
    for p in (a, b):
        assert calls(p.port, 3, ip, gap=0.15 * SCALE) == ["0"] * 3
    for p in (a, b):
        later = sorted((l for l in lines_of(p, ip, 15) if l["request_id"] not in before[p.name]),
                       key=pclib.request_seq)
        assert len(later) == 3 and len({worker_of(l) for l in later}) == 1, later
        # The edge's own count is at most 15: only the fleet's passes 20. (The first of the three is scored
        # on the totals its worker last got, which may be from early on: not checked.)
        got = [rate(l) for l in later]
        assert all(r is not None and r > 20 for r in got[1:]), \
            f"{p.name}: signals {[l['plugins']['bot.signals'] for l in later]}: the fleet's calls not counted"
        assert got[-1] >= 25, got
    # Redis holds digests only: keys <prefix><32 hex>:<r|d|e>:<slot>, expiring, and no client address.
    keys = st.redis.cli("KEYS", "*").split()
    assert keys and all(re.fullmatch(r"pc:bot:[0-9a-f]{32}:[rde]:\d+", k) for k in keys), keys
    assert len({k.split(":")[2] for k in keys}) == 1, keys  # one client
    assert not any(ip in k for k in keys)
    ttl = int(st.redis.cli("PTTL", keys[0]))
    assert 0 < ttl <= 66000, ttl  # 11 slots of 6 s
    st.stop_edges(a, b)


def test_config_errors(st):
    def check(name, config, expected):
        cfg = pclib.make_config(h2c_port=pclib.free_port(), origins=st.origins_conf, zones=st.zones_conf,
                                extra={"plugins": [{"name": "bot", "config": config}]})
        path = st.write_config(cfg, name=f"bad-{name}.yaml")
        r = pclib.run_check(path)
        assert r.returncode == 2, f"{name}: check exit {r.returncode}:\n{r.stderr}"
        assert re.search(re.escape(path) + r":\d+:\d+: .*" + expected, r.stderr), f"{name}: {r.stderr}"

    check("no-secret", {"store": {"type": "redis", "address": "127.0.0.1:6379"}},
          r"exactly one of secret or secret_file")
    check("name-address", {"store": redis_store(st, address="redis.local:6379")}, r"not a numeric address")
    check("on-error", {"store": redis_store(st, on_error="maybe")}, r"store.on_error: expected local, allow or deny")
    check("local-extra", {"store": {"type": "local", "timeout_ms": 5}}, r"store.timeout_ms: only with type: redis")
    check("type", {"store": {"type": "memcached"}}, r"store.type: expected local or redis")
    check("key", {"store": {"type": "local", "size": 5}}, r'store: unknown key "size"')
    check("not-map", {"store": "redis"}, r"store")


def test_redis_stopped_scores_on_own_counts(st):
    """(Last: it stops Redis.) on_error deny would refuse a rate-limited call; for the bot it means the same
    as local: the edge's own counts."""
    st.redis.cli("FLUSHALL")
    p = edge(st, "no-redis", bot_config(store=redis_store(st, on_error="deny")), workers=1)
    ip = "127.0.0.23"
    assert calls(p.port, 5, ip) == ["0"] * 5
    pclib.wait_until(lambda: st.redis.cli("KEYS", "*"), timeout=5 * SCALE)
    assert st.redis.cli("KEYS", "*"), "the edge did not count in Redis"
    st.redis.stop()
    t0 = time.monotonic()
    statuses = []
    for _ in range(5):
        statuses += calls(p.port, 5, ip)
    took = time.monotonic() - t0
    assert statuses == ["0"] * 25, statuses
    assert took < 10 * SCALE, f"25 calls took {took:.1f} s with Redis stopped"
    lines = lines_of(p, ip, 30)
    rates = [rate(l) for l in lines]
    # Every call after the limit still has the signal, counted by the edge itself.
    assert all(r is not None for r in rates[RATE_LIMIT + 1:]), rates
    assert rates[-1] >= 29, rates
    st.stop_edges(p)


if __name__ == "__main__":
    pclib.main(__file__)
