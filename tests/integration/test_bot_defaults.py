#!/usr/bin/python3
"""Bot scoring with the shipped rules: a `bot` plugin whose config has no `rules` key (or no config at
all) reads the project's rules/bots, installed under the prefix's share/portcullis/rules/bots, else
the source tree's (the binary under test runs from the build tree). So curl's own User-Agent scores
as the honest automation it is (at most 29, not the neutral 50 of a plugin that knows no rules), a
crawler's User-Agent from an address outside its published ranges scores near 1, a gRPC library is
recognised and not lowered for that, and the error log names the directory the rules came from.
A plugin that finds no shipped rules refuses to load, naming the paths it tried, instead of scoring
everyone 50; an explicit `rules` directory, even an empty one, is still taken as given."""

import glob
import os
import re
import subprocess

import pclib
from pclib import origin_conf

SCALE = pclib.TIME_SCALE
LOADED = re.compile(r"plugin bot: rules (\S+) \(shipped\): (\d+) fingerprints, (\d+) user-agent rules, "
                    r"(\d+) verified bots, (\d+) client stacks")


def setup():
    st = pclib.Stack("bot-defaults")
    st.start_origin("echo")
    st.admin_port = pclib.free_port()
    # Every key but `rules`: the shipped rules are the default.
    bot = {"header": "x-bot-score"}
    st.start_proxy([origin_conf("echo", st.origins["echo"].port)], pclib.default_zones("echo"),
                   extra={"workers": 1, "plugins": [{"name": "bot", "config": bot}],
                          "admin": {"address": f"127.0.0.1:{st.admin_port}"}})
    return st


def log_lines(st, pred, count=1, timeout=10):
    return pclib.json_lines_matching(st.proxy.out_path, pred, count, timeout)


def by_path(path):
    return lambda l: l.get("path") == path


def bot(line):
    p = line.get("plugins") or {}
    return int(p["bot_score"]), p["bot_class"], p["bot.signals"].split(",")


def curl(st, path, ua=None, interface="127.0.0.1"):
    args = ["--http2", "-o", "/dev/null", "--cacert", st.certs["ca"], "--interface", interface,
            "--resolve", f"example.com:{st.tls_port}:127.0.0.1"]
    if ua:
        args += ["-A", ua]
    rc, _, err = pclib.curl(args + [f"https://example.com:{st.tls_port}{path}"])
    assert rc == 0, f"curl failed ({rc}): {err}"
    return bot(log_lines(st, by_path(path))[0])


def count_rules(directory):
    """Lines of each kind in the *.rules files of directory."""
    counts = {"fingerprint": 0, "useragent": 0, "verified": 0, "stack": 0}
    for path in glob.glob(os.path.join(directory, "*.rules")):
        with open(path) as f:
            for line in f:
                word = line.split(None, 1)[0] if line.strip() else ""
                if word in counts:
                    counts[word] += 1
    return counts


def shipped_dirs():
    """Where the plugin may find the shipped rules: installed (the configured prefix), else the source tree."""
    dirs = [os.path.realpath(os.path.join(pclib.SOURCE_DIR, "rules", "bots"))]
    cache = os.path.join(pclib.BUILD_DIR, "CMakeCache.txt")
    if os.path.exists(cache):
        with open(cache) as f:
            m = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", f.read(), re.M)
        if m:
            dirs.append(os.path.realpath(os.path.join(m.group(1), "share", "portcullis", "rules", "bots")))
    return dirs


def check_config(st, name, plugins):
    cfg = dict(st.cfg, plugins=plugins)
    cfg.pop("admin", None)
    return pclib.run_check(st.write_config(cfg, name=name))


def test_log_names_the_shipped_rules(st):
    text = pclib.tail(st.proxy.err_path, 100000)
    m = LOADED.search(text)
    assert m, f"no 'plugin bot: rules ... (shipped)' line in the error log:\n{pclib.tail(st.proxy.err_path, 20)}"
    directory, nfps, nuas, nver = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    assert os.path.realpath(directory) in shipped_dirs(), f"rules read from {directory}, not from {shipped_dirs()}"
    want = count_rules(directory)
    assert want["useragent"] > 0 and want["verified"] > 0 and want["fingerprint"] > 0, (directory, want)
    assert (nuas, nver) == (want["useragent"], want["verified"]), (m.group(0), want)
    assert 0 < int(m.group(5)) <= want["stack"], (m.group(0), want)
    assert 0 < nfps <= want["fingerprint"], (m.group(0), want)


def test_curl_user_agent_scores_as_a_library(st):
    """curl/x.y is an http_library User-Agent in the shipped useragents.rules: at most 29 whatever its TLS
    fingerprint (the shipped one, measured on Debian 12, or unknown). Without rules: ua:unknown, 50."""
    score, cls, signals = curl(st, "/defaults-curl")
    assert "ua:curl" in signals, signals
    assert 2 <= score <= 29 and cls == "likely_automated", (score, cls, signals)


def test_other_library_user_agent_scores_low(st):
    score, cls, signals = curl(st, "/defaults-requests", ua="python-requests/2.31.0")
    assert "ua:python-requests" in signals, signals
    assert score <= 29 and cls == "likely_automated", (score, cls, signals)


def test_unverified_crawler_scores_near_one(st):
    """Googlebot's User-Agent from loopback, outside the shipped verified.rules ranges."""
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    score, cls, signals = curl(st, "/defaults-googlebot", ua=ua, interface="127.0.0.7")
    assert "bot_ua_unverified:googlebot" in signals and "ua:crawler" in signals, signals
    assert score <= 5 and cls == "likely_automated", (score, cls, signals)


def test_grpc_library_recognised_and_not_lowered(st):
    ch = st.tls_channel("example.com")
    assert ch.unary_unary("/demo.Echo/Unary")(b"probe", timeout=10 * SCALE) == b"probe"
    score, cls, signals = bot(log_lines(st, by_path("/demo.Echo/Unary"))[0])
    assert "ua:grpc-python" in signals, signals
    assert score >= 30 and cls == "likely_human", (score, cls, signals)
    meta = dict(st.origins["echo"].stats()["last_metadata"])
    assert meta.get("x-bot-score") == str(score), f"origin metadata: {meta}"


def test_metrics_count_library_clients(st):
    samples = pclib.scrape_metrics(st.admin_port)
    n = pclib.metric_sum(samples, "pc_bot_class_total", zone="example.com", label="likely_automated")
    assert n and n >= 3, f"pc_bot_class_total{{label=likely_automated}}: {n}"
    low = pclib.metric_sum(samples, "pc_bot_score_bucket", zone="example.com", le="30")
    assert low and low >= 3, f"scores up to 30 in the histogram: {low}"


def test_no_config_at_all_loads_the_shipped_rules(st):
    r = check_config(st, "bot-noconfig.yaml", [{"name": "bot"}])
    assert r.returncode == 0, f"check exited {r.returncode}:\n{r.stderr}"
    m = LOADED.search(r.stderr)
    assert m and int(m.group(3)) > 0, f"no shipped rules loaded:\n{r.stderr}"


def test_explicit_rules_taken_as_given(st):
    """An explicit `rules` directory is read alone, even an empty one (no shipped rules added to it)."""
    empty = os.path.join(st.dir, "no-bot-rules")
    os.makedirs(empty, exist_ok=True)
    r = check_config(st, "bot-empty.yaml", [{"name": "bot", "config": {"rules": "no-bot-rules"}}])
    assert r.returncode == 0, f"check exited {r.returncode}:\n{r.stderr}"
    assert re.search(r"plugin bot: rules \S*no-bot-rules: 0 fingerprints, 0 user-agent rules, 0 verified bots",
                     r.stderr), r.stderr
    assert "(shipped)" not in r.stderr, r.stderr


def test_missing_shipped_rules_refuse_to_load(st):
    """The plugin built (as a third-party one, from its sources) with shipped-rules paths that do not
    exist: without `rules` it fails to load, naming both paths; with `rules` it loads."""
    out = os.path.join(st.dir, "pc-bot-nowhere.so")
    installed = os.path.join(st.dir, "nowhere", "share", "portcullis", "rules", "bots")
    source = os.path.join(st.dir, "nowhere", "src", "rules", "bots")
    plugins = os.path.join(pclib.SOURCE_DIR, "plugins")
    # The plugin's sources, and the store library it shares with the ratelimit plugin (plugins/CMakeLists.txt).
    srcs = [os.path.join(plugins, "bot", f) for f in ("bot.c", "rules.c", "stacks.c", "clients.c", "score.c",
                                                      "table.c", "fleet_cache.c", "fleet.c")]
    srcs += [os.path.join(plugins, "store", f) for f in ("store_config.c", "redis_store.c")]
    libs = subprocess.run(["pkg-config", "--cflags", "--libs", "hiredis", "libuv", "libcrypto"],
                          stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    r = subprocess.run(["cc", "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Werror",
                        "-D_GNU_SOURCE", f"-I{os.path.join(pclib.SOURCE_DIR, 'core', 'include')}",
                        f"-I{os.path.join(plugins, 'store')}",
                        f'-DPC_BOT_RULES_DIR="{installed}"', f'-DPC_BOT_SOURCE_RULES_DIR="{source}"']
                       + srcs + libs + ["-pthread", "-o", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert r.returncode == 0, f"building the plugin failed:\n{r.stdout}"

    r = check_config(st, "bot-nowhere.yaml", [{"path": out, "config": {"header": "x-bot-score"}}])
    assert r.returncode != 0, f"check accepted a bot plugin without rules:\n{r.stderr}"
    assert re.search(r"plugin bot: init failed: rules: not set, and no shipped rules in " + re.escape(installed) +
                     " or " + re.escape(source), r.stderr), r.stderr
    r = check_config(st, "bot-nowhere-noconfig.yaml", [{"path": out}])
    assert r.returncode != 0 and installed in r.stderr, f"check exited {r.returncode}:\n{r.stderr}"

    # An empty installed directory is a broken install too.
    os.makedirs(installed)
    r = check_config(st, "bot-empty-install.yaml", [{"path": out}])
    assert r.returncode != 0 and f"shipped rules directory {installed} holds no rules" in r.stderr, r.stderr
    # Once the installed directory holds rules it is read, before the source tree.
    with open(os.path.join(installed, "ua.rules"), "w") as f:
        f.write("useragent http_library curl ^curl/\n")
    r = check_config(st, "bot-installed.yaml", [{"path": out}])
    assert r.returncode == 0, f"check exited {r.returncode}:\n{r.stderr}"
    assert f"plugin bot: rules {installed} (shipped): 0 fingerprints, 1 user-agent rules" in r.stderr, r.stderr

    r = check_config(st, "bot-nowhere-explicit.yaml",
                     [{"path": out, "config": {"rules": os.path.join(pclib.SOURCE_DIR, "rules", "bots")}}])
    assert r.returncode == 0, f"check exited {r.returncode}:\n{r.stderr}"


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
