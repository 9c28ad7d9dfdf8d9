#!/usr/bin/python3
"""Lua page rules over real gRPC: every request field and action a rule can use, wildcard and capture
matching, file and list order, decoded messages with and without descriptors, the bot score (from a
stand-in bot plugin, adjusted by a bot_score hook), sandbox escapes (each refused or stopped while the
worker keeps serving), reload with a broken then a fixed file, config errors, and `portcullis rules
test` on the shipped examples.

Each test writes its own rules directory and runs its own proxy against the shared grpcio origins."""

import os
import re
import signal
import subprocess
import time

import grpc

import pclib
from pclib import describe, origin_conf, rpc_error, zone_conf

SCALE = pclib.TIME_SCALE
UNARY = "/demo.Echo/Unary"
CLIENT_STREAM = "/demo.Echo/ClientStream"
REFUND = "/shop.v1.Orders/Refund"
TEST_PLUGINS_DIR = os.path.join(pclib.BUILD_DIR, "tests", "plugins")
SHOP_PB = os.path.join(pclib.SOURCE_DIR, "tests", "fixtures", "protobuf", "shop.pb")
EXAMPLES = os.path.join(pclib.SOURCE_DIR, "rules", "lua")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def plugin_so(name):
    return os.path.join(TEST_PLUGINS_DIR, f"pc-{name}.so")


def setup():
    for path in [os.path.join(pclib.BUILD_DIR, "plugins", "pc-lua.so")] + [
            plugin_so(n) for n in ("publisher", "reader", "botscore")]:
        if not os.path.exists(path):
            raise RuntimeError(f"plugin not built: {path}")
    st = pclib.Stack("lua")
    st.start_origin("echo")
    st.start_origin("other")
    st.base_origins = [origin_conf("echo", st.origins["echo"].port), origin_conf("other", st.origins["other"].port)]
    st.base_zones = [
        zone_conf("example.com", ["example.com", "*.example.com"], "echo"),
        zone_conf("shop", ["shop.example.com"], "echo"),
        zone_conf("plain", ["plain.example.net"], "echo", grpc=False),
    ]
    st.runs = 0
    return st


def write_rules(st, name, files):
    """A rules directory under the test's temp dir: {file name: Lua text}."""
    d = os.path.join(st.dir, name)
    os.makedirs(d, exist_ok=True)
    for fname, text in files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)
    return d


def run_lua(st, name, files, before=(), after=(), conf=None, on_error=None, extra=None, workers=None):
    """Stops the previous proxy and starts one whose chain is before + lua(rules) + after."""
    if st.proxy is not None and st.proxy.exit_code is None:
        problem = st.proxy.stop()
        if problem:
            st.problems.append(problem + "\n" + st.proxy.logs(40))
    rules_dir = write_rules(st, f"rules-{name}", files)
    entry = {"name": "lua", "config": dict({"dir": os.path.basename(rules_dir)}, **(conf or {}))}
    if on_error:
        entry["on_error"] = on_error
    cfg = {"plugins": [{"path": plugin_so(p)} for p in before] + [entry] + [{"path": plugin_so(p)} for p in after]}
    if workers:
        cfg["workers"] = workers
    cfg.update(extra or {})
    st.start_proxy(st.base_origins, st.base_zones, extra=cfg, name=name)
    st.rules_dir = rules_dir
    return st.proxy


def stderr(st):
    return pclib.tail(st.proxy.err_path, 100000)


def wait_log(st, pattern, count=1, timeout=5):
    ok = pclib.wait_until(lambda: len(re.findall(pattern, stderr(st))) >= count, timeout)
    assert ok, f"no {pattern!r} (x{count}) in the proxy's log:\n{pclib.tail(st.proxy.err_path, 30)}"


def access_entry(st, pred, timeout=5):
    """The latest access log entry for which pred holds, waiting for it to be written (None if never)."""
    return pclib.wait_until(lambda: next((e for e in reversed(pclib.read_json_lines(st.proxy.out_path)) if pred(e)),
                                         None), timeout)


def published(e):
    return e.get("plugins") or {}


def md(call):
    return dict(call.initial_metadata())


def no_sanitizer_report(text, what):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, f"{what}: sanitizer finding ({marker!r}):\n{text[-4000:]}"


# --- fields -------------------------------------------------------------------------------------

FIELDS_RULES = r'''
local function s(v) if v == nil then return "nil" end return tostring(v) end
return {
  {
    name = "echo every field",
    match = "*.example.com/demo.Echo/*",
    on_request = function(req)
      local e = function(k, v) req:set_header("x-echo-" .. k, s(v)) end
      e("host", req.host); e("path", req.path); e("method", req.method); e("scheme", req.scheme)
      e("authority", req.authority); e("zone", req.zone); e("origin", req.origin)
      e("is-grpc", req.is_grpc); e("service", req.grpc.service); e("gmethod", req.grpc.method)
      e("subtype", req.grpc.subtype); e("ip", req.client.ip); e("port", req.client.port)
      e("port-type", math.type(req.client.port))
      e("sni", req.tls.sni); e("tls-version", req.tls.version); e("alpn", req.tls.alpn); e("ja4", req.tls.ja4)
      e("ja3-hash", req.tls.ja3_hash); e("h2fp-set", req.h2.fingerprint ~= nil)
      e("custom", req.headers["x-custom"]); e("te", req.headers["te"]); e("upper", req.headers["X-Custom"])
      local n = 0
      for k, v in pairs(req.headers) do if k == "x-custom" and v == "Hello" or k == ":path" then n = n + 1 end end
      e("pairs", n)
      e("bot", req.bot.score); e("bot-type", math.type(req.bot.score))
      e("tag", req.values["test.tag"]); e("lookup", req:lookup("test.tag"))
      e("rid", req.request_id); e("caps", table.concat(req.captures, "|")); e("rule", req.rule)
    end,
  },
}
'''


def test_request_fields_over_grpc(st):
    run_lua(st, "fields", {"10-fields.lua": FIELDS_RULES}, before=("publisher", "botscore"))
    meta = [("x-custom", "Hello"), ("x-tag", "tagged"), ("x-bot-score", "42")]
    for label, ch in (("tls", st.tls_channel("API.example.com", server_name="api.example.com")), ("h2c", st.h2c_channel("api.example.com:8443"))):
        reply, call = ch.unary_unary(UNARY).with_call(b"hi", metadata=meta, timeout=10)
        assert reply == b"hi"
        m = md(call)
        want = {"x-echo-host": "api.example.com", "x-echo-path": UNARY, "x-echo-method": "POST",
                "x-echo-zone": "example.com", "x-echo-origin": "echo", "x-echo-is-grpc": "true",
                "x-echo-service": "demo.Echo", "x-echo-gmethod": "Unary", "x-echo-subtype": "proto",
                "x-echo-ip": "127.0.0.1", "x-echo-port-type": "integer", "x-echo-custom": "Hello",
                "x-echo-te": "trailers", "x-echo-upper": "Hello", "x-echo-pairs": "2", "x-echo-bot": "42", "x-echo-bot-type": "integer", "x-echo-tag": "tagged",
                "x-echo-lookup": "tagged", "x-echo-caps": "api|Unary", "x-echo-rule": "echo every field"}
        for k, v in want.items():
            assert m.get(k) == v, f"{label}: {k} = {m.get(k)!r}, want {v!r} (all: {m})"
        assert re.fullmatch(r"\d+", m["x-echo-port"]) and int(m["x-echo-port"]) > 0, f"{label}: port {m}"
        assert re.fullmatch(r"\d+-[0-9a-f]+", m["x-echo-rid"]), f"{label}: request_id {m['x-echo-rid']!r}"
        assert m["x-echo-h2fp-set"] in ("true", "false")
        if label == "tls":
            assert m["x-echo-scheme"] == "https" and m["x-echo-authority"] == "API.example.com", m
            assert m["x-echo-sni"] == "api.example.com", m
            assert m["x-echo-tls-version"] == "TLSv1.3" and m["x-echo-alpn"] == "h2", m
            assert re.fullmatch(r"t13d\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}", m["x-echo-ja4"]), m["x-echo-ja4"]
        else:
            assert m["x-echo-scheme"] == "http" and m["x-echo-authority"] == "api.example.com:8443", m
            for k in ("x-echo-sni", "x-echo-tls-version", "x-echo-ja4", "x-echo-ja3-hash"):
                assert m[k] == "nil", f"h2c: {k} = {m[k]!r}"
            assert m["x-echo-alpn"] == "h2c", m
    # The client port matches what the access log recorded for the same request.
    def entry_of(rid):
        return next((e for e in pclib.read_json_lines(st.proxy.out_path) if e.get("request_id") == rid), None)
    entry = pclib.wait_until(lambda: entry_of(m["x-echo-rid"]), 5)
    assert entry and entry["client"] == f"127.0.0.1:{m['x-echo-port']}", f"{m['x-echo-rid']}: {entry}"
    # Without the stand-in bot plugin's value, the score is nil; hosts the pattern leaves out get nothing.
    reply, call = st.h2c_channel("api.example.com").unary_unary(UNARY).with_call(b"x", timeout=10)
    assert md(call)["x-echo-bot"] == "nil"
    reply, call = st.h2c_channel("example.com").unary_unary(UNARY).with_call(b"x", timeout=10)
    assert not any(k.startswith("x-echo-") for k in md(call)), md(call)


# --- actions ------------------------------------------------------------------------------------

ACTION_RULES = r'''
return {
  {
    name = "actions",
    match = "*/demo.Echo/Unary",
    on_request = function(req)
      local a = req.headers["x-action"]
      req:set_response_header("x-from-rule", "yes")
      if a == "deny-name" then return req:deny("PERMISSION_DENIED", "by name") end
      if a == "deny-number" then return req:deny(5, "by number") end
      if a == "deny-http" then return req:deny(429, "slow down") end
      if a == "set" then req:set_header("x-echo-set", "v1"); req:set_header("X-Echo-Set", "v2") end
      if a == "remove" then
        assert(req.headers["x-echo-remove"] == "present")
        req:remove_header("x-echo-remove")
        assert(req.headers["x-echo-remove"] == nil, "headers table kept in step")
      end
      if a == "route" then
        local ok = req:route("other")
        req:set_header("x-echo-route", tostring(ok) .. " " .. req.origin .. " " .. tostring(req:route("nope")))
      end
      if a == "publish" then req:publish("test.tag", "from-lua") end
      if a == "skip" then
        req:publish("test.tag", "block")
        req:set_header("x-echo-skip", tostring(req:skip("reader")) .. " " .. tostring(req:skip("nope")))
      end
      if a == "log" then req:log("hello from a rule") end
      if a == "bad-header" then
        req:set_header("x-echo-bad", tostring(req:set_header("x-bad", "a\r\nb")) .. " " ..
                       tostring(req:set_header(":path", "/x")) .. " " .. tostring(req:set_header("bad name", "x")))
      end
    end,
  },
}
'''


def test_actions(st):
    run_lua(st, "actions", {"10-actions.lua": ACTION_RULES}, after=("reader",))
    echo, other = st.origins["echo"], st.origins["other"]
    ch = st.tls_channel("api.example.com")
    call = ch.unary_unary(UNARY)

    def act(action, extra=()):
        return call.with_call(b"hi", metadata=[("x-action", action)] + list(extra), timeout=10)

    for action, code, details in (("deny-name", grpc.StatusCode.PERMISSION_DENIED, "by name"),
                                  ("deny-number", grpc.StatusCode.NOT_FOUND, "by number"),
                                  ("deny-http", grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")):
        echo.stats(reset=True)
        err = rpc_error(act, action)
        assert err.code() == code and err.details() == details, f"{action}: {describe(err)}"
        # A response header set by a rule reaches the client on the edge's own answer too.
        assert dict(err.trailing_metadata()).get("x-from-rule") == "yes", f"{action}: {err.trailing_metadata()}"
        assert echo.stats()["calls"]["Unary"] == 0, f"{action}: the denied call reached the origin"

    reply, c = act("set")
    assert md(c).get("x-echo-set") == "v2" and md(c).get("x-from-rule") == "yes", md(c)
    reply, c = act("remove", [("x-echo-remove", "present")])
    assert "x-echo-remove" not in md(c), md(c)
    reply, c = act("bad-header")
    assert md(c).get("x-echo-bad") == "false false false", md(c)

    echo.stats(reset=True)
    other.stats(reset=True)
    reply, c = act("route")
    assert reply == b"hi" and md(c).get("x-echo-route") == "true other false", md(c)
    assert other.stats()["calls"]["Unary"] == 1 and echo.stats()["calls"]["Unary"] == 0, "route did not reach other"

    # publish: the reader plugin after lua sees the value and forwards it to the origin.
    reply, c = act("publish")
    assert md(c).get("x-echo-reader-saw") == "from-lua", md(c)
    # skip: the reader would refuse "block"; skipped, it never runs. Unknown plugins: false.
    reply, c = act("skip")
    assert reply == b"hi" and md(c).get("x-echo-skip") == "true false", md(c)

    act("log")
    wait_log(st, r'plugin lua: rule "actions" \(rules-actions/10-actions\.lua:6\) request \S+: hello from a rule')
    assert access_entry(st, lambda e: published(e).get("test.tag") == "from-lua"), "published value not in access log"
    log = pclib.read_json_lines(st.proxy.out_path)
    denied = [e for e in log if e.get("reason") == "plugin_deny"]
    assert denied and all(e["plugins"].get("lua.rule") == "actions" for e in denied), denied


def test_plain_http(st):
    rules = r'''
return {
  { name = "plain", match = "plain.example.net/private/*",
    on_request = function(req)
      if not req.is_grpc and req.grpc.service == nil and req.method == "GET" then
        return req:deny(404, "no such page: " .. req.captures[1])
      end
    end },
}
'''
    run_lua(st, "plain", {"10-plain.lua": rules})
    rc, out, err = pclib.curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                               "-H", "Host: plain.example.net", f"http://127.0.0.1:{st.h2c_port}/private/a/b"])
    # req:deny(404) gives plain HTTP that HTTP status (a gRPC call would get NOT_FOUND).
    assert rc == 0 and out == "404", f"curl rc {rc} status {out!r}: {err}"
    entry = access_entry(st, lambda e: e.get("reason") == "plugin_deny")
    assert entry and published(entry).get("lua.rule") == "plain", entry


# --- messages and the bot score ----------------------------------------------------------------

MESSAGE_RULES = r'''
return {
  {
    name = "no refunds over 10000 from suspected bots",
    match = "*/shop.v1.Orders/Refund",
    on_message = function(req, msg)
      if req.bot.score < 30 and tonumber(msg.fields["amount"] or 0) > 10000 then
        return req:deny("PERMISSION_DENIED", "refused")
      end
    end,
  },
  {
    name = "few tags",
    match = "*/shop.v1.Orders/Refund",
    on_message = function(req, msg)
      local tags = msg.all["customer.tags"] or {}
      if #tags >= 3 then
        return req:deny("INVALID_ARGUMENT", "tags: " .. table.concat(tags, ",") .. " for " .. msg.fields["customer.email"])
      end
    end,
  },
  {
    name = "a note for the message hooks",
    match = "*/demo.Echo/ClientStream",
    on_request = function(req) req.note = req.headers["x-note"] end,
  },
  {
    name = "numbered fields without descriptors",
    match = "*/demo.Echo/ClientStream",
    on_message = function(req, msg)
      if msg.index == 2 then
        return req:deny("OUT_OF_RANGE", string.format("message %d of %d bytes, field 1 %s, error %s, note %s, json %s",
          msg.index, msg.size, tostring(msg.fields["1"]), tostring(msg.error), tostring(req.note), msg.json))
      end
    end,
  },
}
'''

BOT_HOOK = r'''
function bot_score(req, score)
  if req.headers["x-trusted"] == "yes" then return 95 end
  return score
end
return {
  { name = "score seen after adjustment", match = "*/demo.Echo/Unary",
    on_request = function(req) req:set_header("x-echo-score", tostring(req.bot.score)) end },
}
'''


def refund(amount, tags=("vip",), email="ann@example.com"):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet()
    with open(SHOP_PB, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    d = pool.FindMessageTypeByName("shop.v1.RefundRequest")
    cls = message_factory.GetMessageClass(d) if hasattr(message_factory, "GetMessageClass") else \
        message_factory.MessageFactory(pool).GetPrototype(d)
    msg = cls(order_id="A-1", amount=amount)
    msg.customer.email = email
    msg.customer.tags.extend(tags)
    return msg.SerializeToString()


def test_messages_and_bot_score(st):
    run_lua(st, "messages", {"10-shop.lua": MESSAGE_RULES, "20-bot.lua": BOT_HOOK}, before=("botscore",),
            extra={"descriptors": [SHOP_PB]})
    ch = st.tls_channel("shop.example.com")
    refund_call = ch.unary_unary(REFUND)
    for amount, score, trusted, want in ((20000, "10", None, grpc.StatusCode.PERMISSION_DENIED),
                                         (20000, "80", None, grpc.StatusCode.UNIMPLEMENTED),
                                         (5000, "10", None, grpc.StatusCode.UNIMPLEMENTED),
                                         (20000, "10", "yes", grpc.StatusCode.UNIMPLEMENTED)):
        meta = [("x-bot-score", score)] + ([("x-trusted", trusted)] if trusted else [])
        err = rpc_error(refund_call, refund(amount), metadata=meta, timeout=10)
        # UNIMPLEMENTED: the rules let it through and the origin has no shop service.
        assert err.code() == want, f"amount {amount} score {score} trusted {trusted}: {describe(err)}"
        if want == grpc.StatusCode.PERMISSION_DENIED:
            assert err.details() == "refused", describe(err)
    # Typed: the adjusted score is a JSON number in the access log.
    assert access_entry(st, lambda e: published(e).get("bot.score") == 95), "adjusted score not published"
    err = rpc_error(refund_call, refund(1, tags=("a", "b", "c")), metadata=[("x-bot-score", "90")], timeout=10)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, describe(err)
    assert err.details() == "tags: a,b,c for ann@example.com", describe(err)

    reply, c = st.h2c_channel("api.example.com").unary_unary(UNARY).with_call(
        b"x", metadata=[("x-bot-score", "12"), ("x-trusted", "yes")], timeout=10)
    assert md(c).get("x-echo-score") == "95", md(c)
    reply, c = st.h2c_channel("api.example.com").unary_unary(UNARY).with_call(
        b"x", metadata=[("x-bot-score", "12")], timeout=10)
    assert md(c).get("x-echo-score") == "12", md(c)

    # msg.index and msg.size along a stream; without a descriptor, fields by number.
    msgs = [b"\x0a\x03abc", b"\x0a\x04abcd", b"\x0a\x05hello", b"\x0a\x01z"]
    err = rpc_error(st.h2c_channel("api.example.com").stream_unary(CLIENT_STREAM), iter(msgs),
                    metadata=[("x-note", "kept")], timeout=10)
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE, describe(err)
    # req is one table per request: what on_request left in it is there for on_message.
    assert err.details() == 'message 2 of 7 bytes, field 1 hello, error false, note kept, json {"1":"hello"}', \
        describe(err)


# --- matching and order ------------------------------------------------------------------------


def order_rule(tag, match, deny=None):
    d = f'return req:deny("ABORTED", "{deny}")' if deny else ""
    return (f'  {{ name = "{tag}", match = {match}, on_request = function(req)\n'
            f'      req.order = (req.order and req.order .. "," or "") .. "{tag}"\n'
            f'      req:set_header("x-echo-order", req.order)\n'
            f'      if req.headers["x-deny"] then {d} end\n'
            f'    end }},\n')


def test_matching_and_file_order(st):
    files = {
        "20-b.lua": "return {\n" + order_rule("20a", '"*/demo.Echo/*"', deny="from 20")
        + order_rule("20b", '{"nomatch.example.com/*", "*.example.com/demo.Echo/Un*"}') + "}\n",
        "10-a.lua": "return {\n" + order_rule("10a", '"*"', None) + order_rule("10b", '"api.example.com/*"', "from 10b")
        + "}\n",
        "30-c.lua": "return {\n" + order_rule("30", '"*/other.Svc/*"') + "}\n",
        "15-caps.lua": r'''return {
  { name = "caps", match = "*.*.example.com/demo.*/*",
    on_request = function(req) req:set_header("x-echo-caps", table.concat(req.captures, "|")) end },
  { name = "no caps", match = "deep.api.example.com/demo.Echo/Unary",
    on_request = function(req) req:set_header("x-echo-nocaps", tostring(#req.captures)) end },
}
''',
        "notes.txt": "not a rules file",
        ".hidden.lua": "this is not Lua and must not be loaded",
    }
    run_lua(st, "order", files)
    # File-name order (10, 15, 20), then list order; a list of patterns matches on any.
    reply, c = st.h2c_channel("www.example.com").unary_unary(UNARY).with_call(b"x", timeout=10)
    assert md(c).get("x-echo-order") == "10a,20a,20b", md(c)
    reply, c = st.h2c_channel("api.example.com").unary_unary(UNARY).with_call(b"x", timeout=10)
    assert md(c).get("x-echo-order") == "10a,10b,20a,20b", md(c)
    # The first rule that denies ends the evaluation.
    err = rpc_error(st.h2c_channel("api.example.com").unary_unary(UNARY), b"x", metadata=[("x-deny", "1")],
                    timeout=10)
    assert err.code() == grpc.StatusCode.ABORTED and err.details() == "from 10b", describe(err)
    err = rpc_error(st.h2c_channel("www.example.com").unary_unary(UNARY), b"x", metadata=[("x-deny", "1")],
                    timeout=10)
    assert err.details() == "from 20", describe(err)
    # Captures, host part lower-cased; a wildcard in the host never spans into the path.
    reply, c = st.h2c_channel("Deep.API.example.com").unary_unary(UNARY).with_call(b"x", timeout=10)
    assert md(c).get("x-echo-caps") == "deep|api|Echo|Unary", md(c)
    assert md(c).get("x-echo-nocaps") == "0", md(c)
    reply, c = st.tls_channel("api.example.com").unary_unary(UNARY).with_call(b"x", timeout=10)
    assert "x-echo-caps" not in md(c), md(c)


# --- the sandbox --------------------------------------------------------------------------------

SANDBOX_RULES = r'''
local function try(f, ...) local ok, v = pcall(f, ...) if ok then return tostring(v) end return "refused" end
kept = nil
return {
  {
    name = "escapes",
    match = "*/demo.Echo/Unary",
    on_request = function(req)
      local a = req.headers["x-action"]
      if a == "probe" then
        local bytecode = "\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86" .. string.rep("\0", 40)
        local r = {
          "io=" .. type(io), "os.execute=" .. type(os.execute), "os.getenv=" .. type(os.getenv),
          "os.time=" .. type(os.time()), "require=" .. type(require), "package=" .. type(package),
          "dump=" .. type(string.dump), "debug=" .. type(debug), "dofile=" .. type(dofile),
          "loadfile=" .. type(loadfile), "bytecode=" .. tostring(load(bytecode)),
          "text=" .. load("return 1 + 1")(), "gcstop=" .. try(collectgarbage, "stop"),
          "gccount=" .. type(collectgarbage("count")),
          "finalizer=" .. try(setmetatable, {}, {__gc = function() end}),
          "strmeta=" .. tostring(getmetatable("")), "coroutine=" .. type(coroutine),
          "io.open=" .. try(function() return io.open("/etc/passwd") end),
          "os.execute()=" .. try(function() return os.execute("id") end),
          "require()=" .. try(function() return require("io") end),
          "dump()=" .. try(function() return string.dump(try) end),
          "loadbin=" .. try(function() return assert(load(bytecode, "x", "b")) end),
        }
        req:set_header("x-echo-probe", table.concat(r, " "))
      elseif a == "loop" then
        while true do end
      elseif a == "pcall-loop" then
        while true do pcall(function() while true do end end) end
      elseif a == "memory" then
        local t = {}
        for i = 1, 1e9 do t[i] = string.rep("x", 1024) .. i end
      elseif a == "big-string" then
        local s = string.rep("x", 1 << 30)
      elseif a == "hoard" then
        hoard = hoard or {}
        hoard[#hoard + 1] = string.rep(tostring(#hoard), 1 << 20)
      elseif a == "error" then
        error("boom")
      elseif a == "keep" then
        kept = req
      elseif a == "stale" then
        return kept:deny("PERMISSION_DENIED", "through a stale req")
      end
    end,
  },
}
'''


def test_sandbox_escapes(st):
    run_lua(st, "sandbox", {"50-sandbox.lua": SANDBOX_RULES}, conf={"max_memory": 8 << 20}, workers=1)
    ch = st.h2c_channel("api.example.com")
    call = ch.unary_unary(UNARY)
    reply, c = call.with_call(b"x", metadata=[("x-action", "probe")], timeout=10)
    probe = dict(kv.split("=", 1) for kv in md(c)["x-echo-probe"].split(" "))
    want = {"io": "nil", "os.execute": "nil", "os.getenv": "nil", "os.time": "number", "require": "nil",
            "package": "nil", "dump": "nil", "debug": "nil", "dofile": "nil", "loadfile": "nil", "bytecode": "nil",
            "text": "2", "gcstop": "refused", "gccount": "number", "finalizer": "refused", "strmeta": "false",
            "coroutine": "nil", "io.open": "refused", "os.execute()": "refused", "require()": "refused",
            "dump()": "refused", "loadbin": "refused"}
    assert probe == want, f"sandbox probe: {probe}"

    stopped = {"loop": "instruction budget of 1000000 exceeded",
               "pcall-loop": "instruction budget of 1000000 exceeded",
               "memory": "memory limit of 8388608 bytes reached",
               "big-string": "memory limit of 8388608 bytes reached",
               "error": r"rules-sandbox/50-sandbox\.lua:\d+: boom",
               "stale": r"rules-sandbox/50-sandbox\.lua:\d+: req:deny: not the req of the hook running now"}
    call.with_call(b"x", metadata=[("x-action", "keep")], timeout=10)
    for n, (action, logged) in enumerate(stopped.items(), 1):
        t0 = time.monotonic()
        err = rpc_error(call, b"x", metadata=[("x-action", action)], timeout=20)
        took = time.monotonic() - t0
        assert err.code() == grpc.StatusCode.UNAVAILABLE, f"{action}: {describe(err)}"
        assert err.details() == "refused: plugin lua failed", f"{action}: {describe(err)}"
        assert took < 5 * SCALE, f"{action}: took {took:.1f} s to stop"
        # What the rule ran into is in the access log entry of that call (and in the error log).
        def errors():
            return [published(e)["lua.error"] for e in pclib.read_json_lines(st.proxy.out_path)
                    if published(e).get("lua.error")]
        assert pclib.wait_until(lambda: len(errors()) == n, 5), f"{action}: {errors()}"
        assert re.search(logged, errors()[-1]), f"{action}: {errors()[-1]}"
        # The worker keeps serving, with the same rules.
        assert call(b"after " + action.encode(), timeout=10) == b"after " + action.encode()
    wait_log(st, r'rule "escapes" \(rules-sandbox/50-sandbox\.lua:\d+\) failed on /demo\.Echo/Unary \(request '
             r'\S+\): rules-sandbox/50-sandbox\.lua:\d+: instruction budget of 1000000 exceeded')

    # A rule piling data up in a global fills the state: once a collection cannot make room, the
    # worker starts a fresh state (globals gone) and the rules work again.
    codes = []
    for i in range(20):
        try:
            call(b"x", metadata=[("x-action", "hoard")], timeout=10)
            codes.append("ok")
        except grpc.RpcError as e:
            codes.append(e.code().name)
            break
    assert codes[-1] == "UNAVAILABLE" and len(codes) > 3, f"hoarding: {codes}"
    wait_log(st, r"Lua state holds \d+ of 8388608 bytes after a full collection .*starting a fresh state")
    assert call(b"x", metadata=[("x-action", "hoard")], timeout=10) == b"x", "the fresh state did not take over"
    log = stderr(st)
    assert re.search(r"rules-sandbox/50-sandbox\.lua:\d+: instruction budget", log), log[-2000:]
    assert st.proxy.alive()


def test_load_time_errors_refused(st):
    cases = {
        "syntax": ("return {\n  { name = 'x', on_request = function(req) if then end },\n}\n",
                   r"bad/10-x\.lua:2: unexpected symbol near 'then'"),
        "top-level io": ("local f = io.open('/etc/passwd')\nreturn {}\n",
                         r"bad/10-x\.lua:1: attempt to index a nil value \(global 'io'\)"),
        "top-level loop": ("while true do end\nreturn {}\n", r"bad/10-x\.lua:1: instruction budget of 100000 exceeded"),
        "top-level memory": ("local t = {}\nfor i = 1, 1e9 do t[i] = {} end\n",
                             r"bad/10-x\.lua: memory limit of 262144 bytes reached"),
        "not a list": ("return 42\n", r"bad/10-x\.lua: must return a list of rules, got number"),
        "unknown key": ("return {\n  { on_requests = function(req) end },\n}\n",
                        r'bad/10-x\.lua:2: rule 1 \(10-x\.lua#1\): unknown key "on_requests"'),
        "bad pattern": ("return {\n  { match = 'api.example.com:443/*',\n    on_request = function(req) end },\n}\n",
                        r'bad/10-x\.lua:3: rule 1 \(10-x\.lua#1\): match "api\.example\.com:443/\*": no port'),
        "no hook": ("return { { name = 'idle' } }\n", r"bad/10-x\.lua: rule 1 \(idle\): no hook"),
    }
    for label, (text, pattern) in cases.items():
        d = os.path.join(st.dir, "bad")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "10-x.lua"), "w") as f:
            f.write(text)
        cfg = pclib.make_config(h2c_port=pclib.free_port(), origins=st.base_origins, zones=st.base_zones,
                                extra={"plugins": [{"name": "lua", "config": {"dir": "bad", "max_instructions": 100000,
                                                                           "max_memory": 262144}}]})
        path = st.write_config(cfg, name="bad-rules.yaml")
        r = pclib.run_check(path)
        assert r.returncode == 2, f"{label}: check exit {r.returncode}:\n{r.stderr}"
        assert re.search(re.escape(path) + r":\d+:\d+: plugin lua: init failed: " + pattern, r.stderr), \
            f"{label}: {r.stderr}"
        no_sanitizer_report(r.stderr, label)
    for conf, pattern in (({}, "dir is required"), ({"dir": "nowhere"}, r"dir .*/nowhere: No such file"),
                          ({"dir": "bad", "max_memory": "lots"}, "max_memory: expected a whole number"),
                          ({"dir": "bad", "typo": 1}, 'unknown key "typo"')):
        cfg = pclib.make_config(h2c_port=pclib.free_port(), origins=st.base_origins, zones=st.base_zones,
                                extra={"plugins": [{"name": "lua", "config": conf}]})
        r = pclib.run_check(st.write_config(cfg, name="bad-conf.yaml"))
        assert r.returncode == 2 and re.search(pattern, r.stderr), f"{conf}: {r.stderr}"


def test_on_error_continue(st):
    rules = 'return { { name = "fails", match = "*", on_request = function(req) error("oops") end } }\n'
    run_lua(st, "continue", {"10-fail.lua": rules}, on_error="continue")
    assert st.h2c_channel("api.example.com").unary_unary(UNARY)(b"through", timeout=10) == b"through"
    wait_log(st, r'rule "fails" \(rules-continue/10-fail\.lua:1\) failed on /demo\.Echo/Unary .*10-fail\.lua:1: oops')
    assert access_entry(st, lambda e: "oops" in published(e).get("lua.error", "")), "no lua.error in the access log"


# --- reload -------------------------------------------------------------------------------------


def test_reload_keeps_old_rules_until_fixed(st):
    v1 = 'return { { name = "v", match = "*/demo.Echo/Unary", on_request = function(req) ' \
         'return req:deny("ABORTED", "v1") end } }\n'
    run_lua(st, "reload", {"10-r.lua": v1})
    ch = st.h2c_channel("api.example.com")
    err = rpc_error(ch.unary_unary(UNARY), b"x", timeout=10)
    assert err.details() == "v1", describe(err)

    path = os.path.join(st.rules_dir, "10-r.lua")
    with open(path, "w") as f:
        f.write('return {\n  { name = "v", match = "*",\n    on_request = function(req) return req:deny("ABORTED", '
                '"v2") end end },\n}\n')
    st.proxy.proc.send_signal(signal.SIGHUP)
    wait_log(st, r"SIGHUP: reload refused, still serving the previous config: .*plugin lua: init failed: "
                 r"rules-reload/10-r\.lua:3: .*near 'end'")
    for c in (ch, st.h2c_channel("api.example.com")):
        err = rpc_error(c.unary_unary(UNARY), b"x", timeout=10)
        assert err.details() == "v1", f"after the refused reload: {describe(err)}"

    with open(path, "w") as f:
        f.write(v1.replace("v1", "v2"))
    st.proxy.proc.send_signal(signal.SIGHUP)
    wait_log(st, r"SIGHUP: configuration reloaded")
    ok = pclib.wait_until(lambda: rpc_error(st.h2c_channel("api.example.com").unary_unary(UNARY), b"x",
                                            timeout=10).details() == "v2", 5)
    assert ok, "the fixed rules were not taken after the reload"
    err = rpc_error(ch.unary_unary(UNARY), b"x", timeout=10)
    assert err.details() == "v2", f"existing connection after the reload: {describe(err)}"


# --- rules test ---------------------------------------------------------------------------------


def rules_test(config, cases):
    return subprocess.run([pclib.BINARY, "rules", "test", "-c", config, cases], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)


def test_rules_test_on_shipped_examples(st):
    config = os.path.join(EXAMPLES, "rules-test.yaml")
    cases = os.path.join(EXAMPLES, "cases.yaml")
    r = rules_test(config, cases)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"(\d+) cases, \1 passed, 0 failed", lines[-1]), r.stdout
    assert all(line.startswith("ok ") for line in lines[:-1]), r.stdout
    assert any('deny PERMISSION_DENIED "admin API is office-only" by rule "admin API only from the office"' in line
               for line in lines), r.stdout
    no_sanitizer_report(r.stderr, "rules test")

    # Header names match in any case, in the cases and in their expectations, as on the wire.
    with open(cases) as f:
        text = f.read()
    mixed = os.path.join(st.dir, "mixed-case.yaml")
    with open(mixed, "w") as f:
        f.write(text.replace('x-canary: "1"', 'X-Canary: "1"').replace("x-served-by: canary", "X-Served-By: canary"))
    assert "X-Served-By" in open(mixed).read() and "X-Canary" in open(mixed).read()
    r = rules_test(config, mixed)
    assert r.returncode == 0, f"mixed-case header names: exit {r.returncode}\n{r.stdout}\n{r.stderr}"

    # A wrong expectation fails the run and says what differs.
    wrong = os.path.join(st.dir, "wrong-cases.yaml")
    with open(wrong, "w") as f:
        f.write(text.replace("message: admin API is office-only", "message: admin API is closed"))
    r = rules_test(config, wrong)
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert re.search(r'^FAIL +2 +the admin API from elsewhere is refused: deny PERMISSION_DENIED', r.stdout, re.M), \
        r.stdout
    assert 'expected message "admin API is closed", got "admin API is office-only"' in r.stdout, r.stdout
    assert re.search(r"cases, \d+ passed, 1 failed$", r.stdout), r.stdout

    # A case file mistake is not a failing rule: exit 2, with the place.
    with open(wrong, "w") as f:
        f.write("cases:\n  - host: api.example.com\n    pth: /x\n")
    r = rules_test(config, wrong)
    assert r.returncode == 2 and re.search(re.escape(wrong) + r':3:5: case: unknown key "pth"', r.stderr), \
        f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    # A rule error shows as verdict error, with the rule's file:line.
    rules = write_rules(st, "cli-rules", {"10-e.lua": 'return { { name = "broken", match = "*",\n'
                                                      '  on_request = function(req) return req.nope.x end } }\n'})
    cfg = pclib.make_config(h2c_port=pclib.free_port(), origins=st.base_origins, zones=st.base_zones,
                            extra={"plugins": [{"name": "lua", "config": {"dir": os.path.basename(rules)}}]})
    cfg_path = st.write_config(cfg, name="cli.yaml")
    with open(wrong, "w") as f:
        f.write("- { host: api.example.com, path: /a.B/C, expect: { verdict: error, rule: broken } }\n"
                "- { host: api.example.com, path: /a.B/C, expect: { verdict: allow } }\n"
                "- { host: unknown.test, path: /a.B/C }\n")
    r = rules_test(cfg_path, wrong)
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = r.stdout.splitlines()
    assert out[0].startswith("ok     1  case 1: deny UNAVAILABLE") and "by rule \"broken\"" in out[0], r.stdout
    assert re.search(r"rule error: cli-rules/10-e\.lua:2: attempt to index a nil value \(field 'nope'\)", r.stdout), \
        r.stdout
    assert any(line.startswith("FAIL   2") and "expected verdict \"allow\", got \"error\"" in r.stdout
               for line in out), r.stdout
    assert any(line.startswith("FAIL   3") and 'no zone of the config serves host "unknown.test"' in line
               for line in out), r.stdout
    no_sanitizer_report(r.stderr, "rules test")


def test_proxy_survived(st):
    """A last proxy with an empty rules file serves and stops cleanly (sanitizer findings at teardown)."""
    run_lua(st, "final", {"10-ok.lua": "return {}\n"})
    assert st.h2c_channel("api.example.com").unary_unary(UNARY)(b"ok", timeout=10) == b"ok"


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
